"""The backend registry: names map to import strings, so nothing heavy loads until asked for.

Example:
    >>> from promptseg.backends import load_backend
    >>> backend = load_backend("offline")          # doctest: +SKIP
    >>> det = backend.detect(image, "people")       # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from promptseg._deps import distribution_name
from promptseg.backends.base import Backend
from promptseg.errors import ConfigError, MissingDependencyError, PromptsegError, UnknownBackendError
from promptseg.text.minilm import MINILM_WEIGHTS
from promptseg.weights import resolve_weights

__all__ = ["BackendSpec", "BackendStatus", "check_backend", "get_spec", "list_backends", "load_backend"]

DEFAULT_BACKEND = "offline"


@dataclass(frozen=True)
class BackendSpec:
    """A registered backend, as data.

    Attributes:
        target: ``"module:Class"`` to import when the backend is loaded.
        description: one line for ``promptseg backends``.
        extra: the promptseg extra that installs its Python dependencies.
        requires: import names of those dependencies (checked without importing them).
        weights: ``{role: default weights spec}``, checked by :func:`check_backend`.
        options: keyword arguments passed to the class (fixed per registered name).
        license: licence of the default weights.
        capabilities: what it takes and gives (keys of :data:`~promptseg.backends.base.CAPABILITIES`).
        preprocessing: how it sees an image (input size, normalisation), as facts for the user.
        env: environment variables of which at least one must be set (API keys).
    """

    target: str
    description: str
    extra: str | None = None
    requires: tuple[str, ...] = ()
    weights: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    license: str = ""
    capabilities: frozenset[str] = frozenset()
    preprocessing: str = ""
    env: tuple[str, ...] = ()


_TEXT_ENCODER = MINILM_WEIGHTS

_HF_REQUIRES = ("torch", "torchvision", "transformers")
_OFFLINE_CAPS = frozenset({"text", "boxes", "masks", "cache"})
_SAM_CAPS = frozenset({"boxes", "points", "masks", "cache"})
_DETECTOR_CAPS = frozenset({"text", "boxes", "masks"})

_BACKENDS: dict[str, BackendSpec] = {
    "offline": BackendSpec(
        target="promptseg.backends.offline:OfflineBackend",
        description="PicoDet-S COCO-80 detector + MiniLM word mapping + box-to-mask refinement; CPU, offline",
        extra="onnx",
        requires=("onnxruntime", "cv2", "tokenizers"),
        weights={"detector": "picodet-s-coco/picodet_s_416_coco.onnx", "text encoder": _TEXT_ENCODER},
        options={"detector": "picodet-s"},
        license="Apache-2.0",
        capabilities=_OFFLINE_CAPS,
        preprocessing="416x416 stretch, ImageNet mean/std; 80 COCO classes",
    ),
    "offline-yolox": BackendSpec(
        target="promptseg.backends.offline:OfflineBackend",
        description="YOLOX-Nano COCO-80 detector (faster, a little less accurate), same words and masks",
        extra="onnx",
        requires=("onnxruntime", "cv2", "tokenizers"),
        weights={"detector": "yolox-nano-coco/yolox_nano.onnx", "text encoder": _TEXT_ENCODER},
        options={"detector": "yolox-nano"},
        license="Apache-2.0",
        capabilities=_OFFLINE_CAPS,
        preprocessing="416x416 letterbox (pad 114), raw 0-255 BGR; 80 COCO classes",
    ),
    "sam3": BackendSpec(
        target="promptseg.backends.hf_sam3:Sam3Backend",
        description="SAM 3: every instance of a text concept (and of exemplar boxes), with masks",
        extra="hf",
        requires=_HF_REQUIRES,
        weights={"model": "hf:facebook/sam3"},
        license="SAM License (Meta)",
        capabilities=frozenset({"text", "exemplars", "masks", "cache", "video"}),
        preprocessing="1008x1008 resize, mean/std 0.5",
    ),
    "owlv2": BackendSpec(
        target="promptseg.backends.hf_detectors:Owlv2Backend",
        description="OWLv2 open-vocabulary boxes, composed with a box-to-mask method",
        extra="hf",
        requires=_HF_REQUIRES,
        weights={"model": "hf:google/owlv2-base-patch16-ensemble"},
        license="Apache-2.0",
        capabilities=_DETECTOR_CAPS,
        preprocessing="pad to square (gray 0.5), 960x960, CLIP mean/std",
    ),
    "grounding-dino": BackendSpec(
        target="promptseg.backends.hf_detectors:GroundingDinoBackend",
        description="Grounding DINO open-vocabulary boxes, composed with a box-to-mask method",
        extra="hf",
        requires=_HF_REQUIRES,
        weights={"model": "hf:IDEA-Research/grounding-dino-tiny"},
        license="Apache-2.0",
        capabilities=_DETECTOR_CAPS,
        preprocessing="shortest side 800 (longest at most 1333), ImageNet mean/std",
    ),
    "florence-2": BackendSpec(
        target="promptseg.backends.hf_detectors:Florence2Backend",
        description="Florence-2 phrase grounding boxes, composed with a box-to-mask method",
        extra="hf",
        requires=_HF_REQUIRES,
        weights={"model": "hf:florence-community/Florence-2-base"},
        license="MIT",
        capabilities=_DETECTOR_CAPS,
        preprocessing="768x768 resize, ImageNet mean/std; boxes on a 1000-bin grid",
    ),
    "sam": BackendSpec(
        target="promptseg.backends.hf_sam:SamBackend",
        description="SAM (ViT): box and point prompts to masks",
        extra="hf",
        requires=_HF_REQUIRES,
        weights={"model": "hf:facebook/sam-vit-base"},
        license="Apache-2.0",
        capabilities=_SAM_CAPS,
        preprocessing="longest side 1024, pad to 1024x1024, ImageNet mean/std",
    ),
    "sam2": BackendSpec(
        target="promptseg.backends.hf_sam:Sam2Backend",
        description="SAM 2.1 (Hiera): box and point prompts to masks",
        extra="hf",
        requires=_HF_REQUIRES,
        weights={"model": "hf:facebook/sam2.1-hiera-tiny"},
        license="Apache-2.0",
        capabilities=_SAM_CAPS | {"video"},
        preprocessing="1024x1024 resize, ImageNet mean/std",
    ),
    "edgetam": BackendSpec(
        target="promptseg.backends.hf_sam:EdgeTamBackend",
        description="EdgeTAM: SAM 2 prompts on a small RepViT encoder, fast on a laptop",
        extra="hf",
        requires=(*_HF_REQUIRES, "timm"),
        weights={"model": "hf:yonigozlan/EdgeTAM-hf"},
        license="Apache-2.0",
        capabilities=_SAM_CAPS | {"video"},
        preprocessing="1024x1024 resize, ImageNet mean/std",
    ),
    "gemini": BackendSpec(
        target="promptseg.backends.gemini:GeminiBackend",
        description="Google Gemini API (cloud): conversational boxes and masks; sends the image to Google",
        extra="gemini",
        requires=("google.genai",),
        license="Google API terms",
        capabilities=frozenset({"text", "masks"}),
        preprocessing="longest side 1024 JPEG upload; boxes on a 0-1000 grid",
        env=("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    ),
}


@dataclass(frozen=True)
class BackendStatus:
    """Whether a backend can run here, and if not, why."""

    name: str
    available: bool
    reason: str
    description: str


def list_backends() -> list[str]:
    """Names of every registered backend, sorted."""
    return sorted(_BACKENDS)


def get_spec(name: str) -> BackendSpec:
    """The :class:`BackendSpec` of a registered name.

    Raises:
        UnknownBackendError: with close matches, when the name is not registered.
    """
    try:
        return _BACKENDS[name]
    except KeyError:
        close = difflib.get_close_matches(name, _BACKENDS, n=3)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownBackendError(
            f"unknown backend {name!r}{hint} (registered: {', '.join(list_backends())})"
        ) from None


def check_backend(name: str) -> BackendStatus:
    """Check, without loading any model, whether a backend's packages and default weights are present."""
    spec = get_spec(name)
    missing = [m for m in spec.requires if not _importable(m)]
    if missing:
        return BackendStatus(
            name,
            False,
            f"missing Python packages {', '.join(missing)}: pip install 'promptseg[{spec.extra}]'",
            spec.description,
        )
    if spec.env and not any(os.environ.get(var) for var in spec.env):
        return BackendStatus(name, False, f"set {' or '.join(spec.env)} to your API key", spec.description)
    for role, weights in spec.weights.items():
        try:
            resolve_weights(weights, purpose=f"backend {name!r} ({role})", download=False)
        except PromptsegError as exc:
            return BackendStatus(name, False, str(exc), spec.description)
    return BackendStatus(name, True, "ready", spec.description)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a dotted name whose parent is missing
        return False


def load_backend(name: str = DEFAULT_BACKEND, **options: Any) -> Backend:
    """Build a backend by name; its heavy imports happen here, not at ``import promptseg``.

    Args:
        name: a registered name (see :func:`list_backends`).
        **options: passed to the backend's constructor (e.g. ``weights="file:/m.onnx"``, ``masks="box"``).

    Raises:
        UnknownBackendError: for an unregistered name.
        MissingDependencyError: when a package it needs is missing (names the extra).
        BackendUnavailable: when its weights are missing (the message says where it looked, and the fix).
    """
    spec = get_spec(name)
    module_name, _, class_name = spec.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        # Heavy imports sit at the top of backend modules, so a missing package surfaces here.
        raise MissingDependencyError(
            f"backend {name!r} needs the Python package {distribution_name(exc.name or '?')!r}, "
            "which is not installed; "
            f"install it with: pip install 'promptseg[{spec.extra}]'"
        ) from None
    cls = getattr(module, class_name)
    _check_options(name, cls, options)
    backend: Backend = cls(**{**spec.options, **options, "name": name})
    return backend


def _check_options(name: str, cls: Any, options: Mapping[str, Any]) -> None:
    """Refuse an option the backend does not take, naming those it does (instead of a TypeError)."""
    params = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = sorted(
        k for k, p in params.items() if k != "name" and p.kind is not inspect.Parameter.VAR_POSITIONAL
    )
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        close = difflib.get_close_matches(unknown[0], accepted, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"backend {name!r} has no option {unknown[0]!r}{hint}; its options are: {', '.join(accepted)}"
        )
