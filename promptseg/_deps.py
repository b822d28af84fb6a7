"""Optional dependencies: import them on demand, or say exactly which extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from promptseg.errors import MissingDependencyError

__all__ = ["distribution_name", "require"]

# import name -> pip distribution name, where they differ
_DIST = {"cv2": "opencv-python-headless", "PIL": "pillow", "google.genai": "google-genai"}


def distribution_name(module: str) -> str:
    """The pip distribution that provides an import name (``"cv2"`` -> ``"opencv-python-headless"``)."""
    top = module if module in _DIST else module.split(".")[0]
    return _DIST.get(top, top)


def require(module: str, *, extra: str, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra that provides it.

    Args:
        module: import name, e.g. ``"onnxruntime"`` or ``"cv2"``.
        extra: the promptseg extra that installs it, e.g. ``"onnx"``.
        purpose: what needs it, for the message ("the offline backend").
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        dist = distribution_name(module)
        who = f"{purpose} needs" if purpose else "this needs"
        raise MissingDependencyError(
            f"{who} the Python package {dist!r}, which is not installed ({exc}); "
            f"install it with: pip install 'promptseg[{extra}]'"
        ) from None
