"""Shared plumbing of the Hugging Face transformers backends: weights, device, dtype, provenance.

Every transformers backend loads through :func:`load_pretrained`, whether its weights are the real
checkpoint from the Hub (``hf:facebook/sam3``), a local folder (``file:/models/sam3``), a folder under
``$PROMPTSEG_MODELS`` (``sam3``), or a tiny random model a test saved with ``save_pretrained``: one
code path for all.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptseg._deps import require
from promptseg._version import __version__
from promptseg.errors import BackendUnavailable, ConfigError
from promptseg.weights import resolve_weights

__all__ = ["HF_EXTRA", "Loaded", "load_pretrained", "select_device", "select_dtype"]

HF_EXTRA = "hf"

_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "float16": "float16",
    "fp16": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}


def select_device(device: str | None) -> str:
    """``"cuda"``, ``"mps"`` or ``"cpu"``: the one asked for, or the best one present when None/"auto".

    Raises:
        ConfigError: for an unknown device, or one this machine does not have.
    """
    torch = require("torch", extra=HF_EXTRA, purpose="transformers backends")
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    kind = device.split(":")[0]
    if kind not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unknown device {device!r}; use 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r} asked for, but torch sees no CUDA GPU here; use 'cpu' or 'auto'"
        )
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device 'mps' asked for, but this machine has no Apple GPU; use 'cpu' or 'auto'")
    return device


def select_dtype(dtype: str | None, device: str) -> Any:
    """A torch dtype: the one named, or for None/"auto" float32 on CPU and bfloat16/float16 on a GPU."""
    torch = require("torch", extra=HF_EXTRA, purpose="transformers backends")
    if dtype in (None, "auto"):
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float16 if device == "mps" else torch.float32
    name = _DTYPES.get(str(dtype).lower().removeprefix("torch."))
    if name is None:
        raise ConfigError(f"unknown dtype {dtype!r}; use 'float32', 'float16', 'bfloat16' or 'auto'")
    if device == "cpu" and name == "float16":
        raise ConfigError("float16 is not supported on the CPU; use 'float32' or 'bfloat16'")
    return getattr(torch, name)


@dataclass
class Loaded:
    """A model and its processor, ready on a device, with the facts for ``meta``."""

    model: Any
    processor: Any
    folder: Path
    device: str
    dtype: Any
    provenance: dict[str, Any]


def load_pretrained(
    model_class: str,
    processor_class: str,
    weights: str,
    *,
    backend: str,
    device: str | None = None,
    dtype: str | None = None,
    license: str = "",
    model_types: Collection[str] = (),
) -> Loaded:
    """Load a transformers model and its processor from a weights spec.

    Args:
        model_class: the transformers class name (``"Sam3Model"``).
        processor_class: its processor class name (``"Sam3Processor"``).
        weights: a weights spec (:func:`promptseg.weights.resolve_weights`) of a ``save_pretrained``
            folder.
        backend: the registry name, for messages and ``meta``.
        device: ``"cpu"``, ``"cuda"``, ``"mps"`` or None/"auto".
        dtype: ``"float32"``, ``"bfloat16"``, ``"float16"`` or None/"auto".
        license: licence of the weights, recorded in ``meta``.
        model_types: the ``model_type`` values (``config.json``) that ``model_class`` can load, e.g.
            ``("sam2", "sam2_video")``; checked before loading when given, since transformers loads some
            other types only to fail later with an unrelated error.

    Raises:
        MissingDependencyError: when torch or transformers is missing (names the extra).
        BackendUnavailable: when the folder is missing or is not a checkpoint of ``model_class``.
    """
    require("torch", extra=HF_EXTRA, purpose=f"backend {backend!r}")
    transformers = require("transformers", extra=HF_EXTRA, purpose=f"backend {backend!r}")
    folder = resolve_weights(weights, purpose=f"backend {backend!r}")
    if not (folder / "config.json").is_file():
        raise BackendUnavailable(
            f"backend {backend!r}: weights {weights!r} resolve to {folder}, which has no config.json; "
            f"point it at a folder saved with {model_class}.save_pretrained (or a Hub id)"
        )
    model_type = json.loads((folder / "config.json").read_text()).get("model_type", "?")
    if model_types and model_type not in model_types:
        raise BackendUnavailable(
            f"backend {backend!r}: weights {weights!r} hold a {model_type!r} checkpoint, but {model_class} "
            f"loads {' or '.join(repr(t) for t in model_types)}; pass weights of that kind"
        )
    device = select_device(device)
    torch_dtype = select_dtype(dtype, device)
    model_cls = getattr(transformers, model_class, None)
    processor_cls = getattr(transformers, processor_class, None)
    if model_cls is None or processor_cls is None:
        missing = model_class if model_cls is None else processor_class
        raise BackendUnavailable(
            f"backend {backend!r} needs transformers.{missing}, which transformers "
            f"{transformers.__version__} does not have; upgrade it: pip install -U 'promptseg[{HF_EXTRA}]'"
        )
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()  # a library prints no "Loading weights" bars
    try:
        model = model_cls.from_pretrained(folder, dtype=torch_dtype)
        processor = processor_cls.from_pretrained(folder)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BackendUnavailable(
            f"backend {backend!r} could not load {model_class} (model_type {model_type!r}) "
            f"from {folder}: {first}"
        ) from None
    finally:
        if bars:
            transformers.utils.logging.enable_progress_bar()
    model = model.to(device).eval()

    provenance = {
        "promptseg_version": __version__,
        "backend": backend,
        "model": model_class,
        "model_type": model_type,
        "weights": weights,
        "weights_sha256": _config_digest(folder),
        "device": device,
        "dtype": str(torch_dtype).removeprefix("torch."),
        "transformers_version": transformers.__version__,
        "license": license,
    }
    return Loaded(model, processor, folder, device, torch_dtype, provenance)


def _config_digest(folder: Path) -> str:
    """A short digest of the checkpoint: its config and the sizes and names of its weight files."""
    digest = hashlib.sha256((folder / "config.json").read_bytes())
    for path in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        digest.update(f"{path.name}:{path.stat().st_size}".encode())
    return digest.hexdigest()[:16]
