"""Box to mask: turn each detected box into a pixel mask of the object in it.

Every refiner has a ``name`` and one method, ``refine(image, xyxy) -> masks``: an ``(H, W, 3)`` uint8
RGB image and ``(N, 4)`` float boxes ``(x1, y1, x2, y2)`` in its pixels give ``(N, H, W)`` bool masks.
Each mask lies inside its box rounded outwards to whole pixels and clipped to the image (as Gemini's
masks are cropped to their boxes, and as the ground truth of a tight box is): the margin around a box is
looked at, to learn what the background looks like, but never painted. A box of zero width or height,
or one wholly outside the image, gives an empty mask; a partly outside one is clipped first.

| name | what | IoU VOC* / tote | ms/box | ms 7 boxes |
|---|---|---|---|---|
| ``"color"`` (default) | colour likelihood vs the surroundings x a centred prior | 0.58 / 0.62 | 0.6 | 4 |
| ``"grabcut"`` | GrabCut, 64 px crop; implausible results -> ``"color"`` | 0.59 / 0.67 | 7 | 53 |
| ``"u2net"`` | U²-Net saliency of the crop in ``"color"``'s prior; weights | 0.58 / 0.64 | 1300 | 9000 |
| ``"ellipse"`` | the inscribed ellipse | 0.48 / 0.54 | <0.1 | 0.3 |
| ``"box"`` | the filled box | 0.46 / 0.52 | <0.1 | 0.1 |

\\* VOC cafeteria photo (19 objects), its void band ignored; tote: ARC2017 robotics tote (8 objects);
ground-truth boxes; medians on 2 shared CPU cores; "7 boxes": one call with the 7 VOC people. The full
table, jittered boxes, the variants measured and rejected, and why ``"color"`` is the default are in
``bench/results/mask_refine.md`` (``python bench/mask_refine.py`` remeasures).

Example:
    >>> from promptseg.refine import load_refiner
    >>> refiner = load_refiner("color")
    >>> masks = refiner.refine(image, det.xyxy)        # doctest: +SKIP
    >>> det = det.replace(masks=masks)                 # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from numpy.typing import ArrayLike

from promptseg.errors import ConfigError
from promptseg.refine._color import ColorPriorRefiner
from promptseg.refine._grabcut import GrabCutRefiner
from promptseg.refine._shapes import BoxFillRefiner, EllipseRefiner
from promptseg.refine._u2net import U2NetRefiner
from promptseg.types import BoolArray

__all__ = [
    "DEFAULT_REFINER",
    "BoxFillRefiner",
    "BoxRefiner",
    "ColorPriorRefiner",
    "EllipseRefiner",
    "GrabCutRefiner",
    "U2NetRefiner",
    "list_refiners",
    "load_refiner",
]

DEFAULT_REFINER = "color"
"""The refiner the offline backend uses unless told otherwise (see the module table for why)."""


@runtime_checkable
class BoxRefiner(Protocol):
    """Turns boxes into masks. Implementations are cheap to call repeatedly and safe to reuse."""

    @property
    def name(self) -> str:
        """The registry name (``"color"``, ``"grabcut"``, ...)."""
        ...

    def refine(self, image: Any, xyxy: ArrayLike) -> BoolArray:
        """Segment the object in each box.

        Args:
            image: ``(H, W, 3)`` uint8 RGB.
            xyxy: ``(N, 4)`` float boxes ``(x1, y1, x2, y2)`` in image pixels.

        Returns:
            ``(N, H, W)`` bool masks, each inside its box rounded outwards to whole pixels and clipped to
            the image; ``(0, H, W)`` for no boxes.
        """
        ...


_REFINERS: dict[str, Callable[..., BoxRefiner]] = {
    "box": BoxFillRefiner,
    "color": ColorPriorRefiner,
    "ellipse": EllipseRefiner,
    "grabcut": GrabCutRefiner,
    "u2net": U2NetRefiner,
}


def list_refiners() -> list[str]:
    """The registered refiner names, sorted."""
    return sorted(_REFINERS)


def load_refiner(name: str, **options: Any) -> BoxRefiner:
    """Build a refiner by name.

    Args:
        name: one of :func:`list_refiners` (``"color"``, the default, needs no weights; ``"u2net"`` needs
            ``weights="/path/to/u2net.onnx"``).
        **options: the refiner's options (see its class: :class:`ColorPriorRefiner`,
            :class:`GrabCutRefiner`, :class:`U2NetRefiner`, :class:`EllipseRefiner`,
            :class:`BoxFillRefiner`).

    Raises:
        ConfigError: for an unknown name (the message lists the valid ones), an option the refiner does
            not take, or an option out of range.
        WeightsNotFoundError: for ``"u2net"`` when its weights file is missing.
        MissingDependencyError: when OpenCV / onnxruntime are not installed (the ``onnx`` extra).

    Example:
        >>> load_refiner("grabcut", max_side=96).name
        'grabcut'
    """
    factory = _REFINERS.get(name) if isinstance(name, str) else None
    if factory is None:
        close = difflib.get_close_matches(str(name), list(_REFINERS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown mask refiner {name!r}{hint}; choose one of: {', '.join(list_refiners())}")
    signature = inspect.signature(factory)
    try:
        signature.bind(**options)
    except TypeError as exc:
        accepted = [p for p in signature.parameters if not p.startswith("_")]
        raise ConfigError(
            f"mask refiner {name!r}: {exc}; its options are: {', '.join(accepted) or 'none'}"
        ) from None
    return factory(**options)
