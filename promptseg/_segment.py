"""The one-call entry point: an image and words in, :class:`~promptseg.types.Detections` out."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from promptseg.backends.base import Backend
from promptseg.backends.registry import DEFAULT_BACKEND, load_backend
from promptseg.image import load_image
from promptseg.query.engine import Conversation, Parser
from promptseg.types import Detections, UInt8Array

__all__ = ["segment"]


def segment(
    image: str | os.PathLike[str] | bytes | UInt8Array,
    prompt: str | Sequence[str],
    *,
    backend: str | Backend = DEFAULT_BACKEND,
    threshold: float | None = None,
    max_pixels: int | None = None,
    parser: str | Parser | None = None,
    **backend_options: Any,
) -> Detections:
    """Find every object in an image that matches a prompt, with boxes and masks.

    The prompt is parsed into concepts and modifiers ("the third cup from the left", "people
    without a helmet", "all chairs except the red one"): the concepts go to the backend, the modifiers
    are resolved over its instances (:mod:`promptseg.query`).

    Args:
        image: a file path, encoded bytes, or an ``(H, W, 3)`` uint8 RGB array.
        prompt: plain words ("the bottle", "bags and luggage"), or several prompts (their union).
        backend: a registered backend name, or a loaded backend (reuse one for many calls:
            loading the models is most of the cost of a single call).
        threshold: minimum score (None: the backend's default).
        max_pixels: refuse larger images (None: ``$PROMPTSEG_MAX_PIXELS`` or 100 MP).
        parser: how the prompt is read: ``"rules"`` (default, offline), ``"gemini[:MODEL]"`` or
            ``"openai[:MODEL]"`` (see :func:`~promptseg.query.load_parser`).
        **backend_options: passed to :func:`~promptseg.backends.load_backend` when ``backend`` is a name.

    Returns:
        Detections in image pixels, each with ``attributes["explanation"]`` (why it was chosen),
        ``color``, ``size`` and ``position``; ``meta`` records the backend, weights, prompt, the parsed
        ``query``, an ``explanation`` of the whole answer and any notes (e.g. words the backend's
        vocabulary cannot express).

    Example:
        >>> det = segment("photo.jpg", "people")            # doctest: +SKIP
        >>> det.labels, det.scores, det.masks.shape          # doctest: +SKIP
    """
    pixels = load_image(image, max_pixels=max_pixels)
    model = load_backend(backend, **backend_options) if isinstance(backend, str) else backend
    return Conversation(pixels, model, threshold=threshold, parser=parser).ask(prompt)
