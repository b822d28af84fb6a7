"""promptseg: conversational image segmentation, local first.

Ask for objects in plain words and get every match as a labelled box and a pixel mask::

    import promptseg
    det = promptseg.segment("photo.jpg", "the bottle")
    det.xyxy, det.labels, det.masks

``import promptseg`` is cheap: the public names below load on first use (PEP 562), and no model
runtime (onnxruntime, torch, transformers) is imported until a backend needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from promptseg._version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from promptseg._segment import segment
    from promptseg.backends.registry import check_backend, list_backends, load_backend
    from promptseg.errors import (
        BackendUnavailable,
        ConfigError,
        FormatError,
        ImageLoadError,
        InputError,
        InvalidWeightsSpecError,
        MissingDependencyError,
        PromptsegError,
        PromptsegWarning,
        QueryError,
        RemoteBackendError,
        UnknownBackendError,
        WeightsNotFoundError,
    )
    from promptseg.image import load_image, read_image_size
    from promptseg.render import annotate
    from promptseg.types import Detections

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "BackendUnavailable": "promptseg.errors",
    "ConfigError": "promptseg.errors",
    "Detections": "promptseg.types",
    "FormatError": "promptseg.errors",
    "ImageLoadError": "promptseg.errors",
    "InputError": "promptseg.errors",
    "InvalidWeightsSpecError": "promptseg.errors",
    "MissingDependencyError": "promptseg.errors",
    "PromptsegError": "promptseg.errors",
    "PromptsegWarning": "promptseg.errors",
    "QueryError": "promptseg.errors",
    "RemoteBackendError": "promptseg.errors",
    "Session": "promptseg.session",
    "UnknownBackendError": "promptseg.errors",
    "WeightsNotFoundError": "promptseg.errors",
    "annotate": "promptseg.render",
    "check_backend": "promptseg.backends.registry",
    "list_backends": "promptseg.backends.registry",
    "load_backend": "promptseg.backends.registry",
    "load_image": "promptseg.image",
    "read_image_size": "promptseg.image",
    "segment": "promptseg._segment",
}

__all__ = [
    "BackendUnavailable",
    "ConfigError",
    "Detections",
    "FormatError",
    "ImageLoadError",
    "InputError",
    "InvalidWeightsSpecError",
    "MissingDependencyError",
    "PromptsegError",
    "PromptsegWarning",
    "QueryError",
    "RemoteBackendError",
    "Session",
    "UnknownBackendError",
    "WeightsNotFoundError",
    "__version__",
    "annotate",
    "check_backend",
    "list_backends",
    "load_backend",
    "load_image",
    "read_image_size",
    "segment",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'promptseg' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
