"""What every backend is: a name, capabilities, and ``detect(image, prompts) -> Detections``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from promptseg.types import Detections, UInt8Array

__all__ = ["Backend"]


@runtime_checkable
class Backend(Protocol):
    """The contract every backend implements.

    Attributes:
        name: the registry name ("offline").
        capabilities: what it can take and give: ``"text"`` prompts, ``"boxes"``, ``"masks"``,
            ``"points"``, ``"video"``.
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
