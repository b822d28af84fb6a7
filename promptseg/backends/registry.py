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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from promptseg._deps import distribution_name
from promptseg.backends.base import Backend
from promptseg.errors import MissingDependencyError, PromptsegError, UnknownBackendError
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
    """

    target: str
    description: str
    extra: str | None = None
    requires: tuple[str, ...] = ()
    weights: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    license: str = ""


_TEXT_ENCODER = MINILM_WEIGHTS

_BACKENDS: dict[str, BackendSpec] = {
    "offline": BackendSpec(
        target="promptseg.backends.offline:OfflineBackend",
        description="PicoDet-S COCO-80 detector + MiniLM word mapping + box-to-mask refinement; CPU, offline",
        extra="onnx",
        requires=("onnxruntime", "cv2", "tokenizers"),
        weights={"detector": "picodet-s-coco/picodet_s_416_coco.onnx", "text encoder": _TEXT_ENCODER},
        options={"detector": "picodet-s"},
        license="Apache-2.0",
    ),
    "offline-yolox": BackendSpec(
        target="promptseg.backends.offline:OfflineBackend",
        description="YOLOX-Nano COCO-80 detector (faster, a little less accurate), same words and masks",
        extra="onnx",
        requires=("onnxruntime", "cv2", "tokenizers"),
        weights={"detector": "yolox-nano-coco/yolox_nano.onnx", "text encoder": _TEXT_ENCODER},
        options={"detector": "yolox-nano"},
        license="Apache-2.0",
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
    missing = [m for m in spec.requires if importlib.util.find_spec(m) is None]
    if missing:
        return BackendStatus(
            name,
            False,
            f"missing Python packages {', '.join(missing)}: pip install 'promptseg[{spec.extra}]'",
            spec.description,
        )
    for role, weights in spec.weights.items():
        try:
            resolve_weights(weights, purpose=f"backend {name!r} ({role})")
        except PromptsegError as exc:
            return BackendStatus(name, False, str(exc), spec.description)
    return BackendStatus(name, True, "ready", spec.description)


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
    backend: Backend = cls(**{**spec.options, **options, "name": name})
    return backend
