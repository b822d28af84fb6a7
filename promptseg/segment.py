"""The one-call entry point: an image and words in, :class:`~promptseg.types.Detections` out."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from promptseg.backends.base import Backend
from promptseg.backends.registry import DEFAULT_BACKEND, load_backend
from promptseg.image import load_image
from promptseg.types import Detections, UInt8Array

__all__ = ["segment"]


def segment(
    image: str | os.PathLike[str] | bytes | UInt8Array,
    prompt: str | Sequence[str],
    *,
    backend: str | Backend = DEFAULT_BACKEND,
    threshold: float | None = None,
    max_pixels: int | None = None,
    **backend_options: Any,
) -> Detections:
    """Find every object in an image that matches a prompt, with boxes and masks.

    Args:
        image: a file path, encoded bytes, or an ``(H, W, 3)`` uint8 RGB array.
        prompt: plain words ("the bottle", "bags and luggage"), or several prompts.
        backend: a registered backend name, or a loaded backend (reuse one for many calls:
            loading the models is most of the cost of a single call).
        threshold: minimum score (None: the backend's default).
        max_pixels: refuse larger images (None: ``$PROMPTSEG_MAX_PIXELS`` or 100 MP).
        **backend_options: passed to :func:`~promptseg.backends.load_backend` when ``backend`` is a name.

    Returns:
        Detections in image pixels; ``meta`` records the backend, weights, prompt and any notes
        (e.g. words the backend's vocabulary cannot express).

    Example:
        >>> det = segment("photo.jpg", "people")            # doctest: +SKIP
        >>> det.labels, det.scores, det.masks.shape          # doctest: +SKIP
    """
    pixels = load_image(image, max_pixels=max_pixels)
    model = load_backend(backend, **backend_options) if isinstance(backend, str) else backend
    return model.detect(pixels, prompt, threshold=threshold)
