"""What every backend is: a name, capabilities, and ``detect(image, prompts) -> Detections``.

Two optional parts, told apart by :attr:`Backend.capabilities` and checked with ``isinstance``:

- :class:`CachesImage`: ``set_image`` computes the image features once; later calls on the same image
  reuse them (SAM's ``set_image`` / ``predict`` split).
- :class:`Promptable`: ``predict`` takes visual prompts (boxes, positive and negative points) and
  returns one mask per object.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from promptseg.types import Detections, UInt8Array

__all__ = ["CAPABILITIES", "Backend", "CachesImage", "Promptable"]

CAPABILITIES: dict[str, str] = {
    "text": "finds objects named in words",
    "boxes": "box prompt -> that object's mask",
    "points": "positive/negative point prompts -> a mask",
    "exemplars": "example boxes of the concept -> every similar instance",
    "masks": "returns pixel masks",
    "video": "tracks objects through frames",
    "cache": "computes image features once for follow-up prompts",
}
"""Every capability flag a backend may declare, with what it means (shown by ``promptseg backends``)."""


@runtime_checkable
class Backend(Protocol):
    """The contract every backend implements.

    Attributes:
        name: the registry name ("offline").
        capabilities: a subset of :data:`CAPABILITIES`' keys.
    """

    name: str
    capabilities: frozenset[str]

    def detect(
        self, image: UInt8Array, prompts: str | Sequence[str], *, threshold: float | None = None
    ) -> Detections:
        """Find every instance matching the prompts.

        Args:
            image: ``(H, W, 3)`` uint8 RGB.
            prompts: one prompt or several; their matches are joined.
            threshold: minimum score (None: the backend's default).

        Returns:
            Detections in image pixels, with ``meta`` saying which model, weights and prompt made them.
        """
        ...


@runtime_checkable
class CachesImage(Protocol):
    """A backend that can compute an image's features once and reuse them."""

    def set_image(self, image: UInt8Array) -> None:
        """Compute and keep the features of ``image``; calls on the same pixels reuse them."""
        ...


@runtime_checkable
class Promptable(Protocol):
    """A backend that turns visual prompts into masks (SAM-style)."""

    name: str
    capabilities: frozenset[str]

    def predict(
        self,
        image: UInt8Array,
        *,
        boxes: Any = None,
        points: Any = None,
        point_labels: Any = None,
        labels: Any = None,
    ) -> Detections:
        """One mask per object prompt.

        Args:
            image: ``(H, W, 3)`` uint8 RGB.
            boxes: ``(N, 4)`` xyxy pixels: N objects, one box each.
            points: ``(N, K, 2)`` xy pixels, K points per object; ``(K, 2)`` means one object.
            point_labels: ``(N, K)`` (or ``(K,)``): 1 = on the object, 0 = not on it (default all 1).
            labels: ``(N,)`` labels to give the objects (default ``"object"``).

        Returns:
            N instances in prompt order, each with a mask, a score (the model's own quality estimate)
            and a box (the mask's tight box; the prompt box when the mask is empty). See
            :func:`promptseg.backends.prompts.visual_prompts` for the validation rules.
        """
        ...
