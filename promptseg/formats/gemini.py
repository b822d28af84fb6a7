"""Gemini 2.5's conversational segmentation output, both ways.

Gemini answers a segmentation request with a JSON list, one item per object::

    [{"box_2d": [ymin, xmin, ymax, xmax], "label": "red cup", "mask": "data:image/png;base64,..."}]

``box_2d`` is on a 0-1000 grid over the image (ints), and ``mask`` is a PNG probability map (0-255)
of the box only, at whatever resolution Gemini chose: the reader scales it to the box's size in
pixels and keeps the values above 127. Gemini gives no scores.

The pixel region of a box is ``rows [floor(ymin * H / 1000), floor(ymax * H / 1000))`` and the same
for columns, computed in exact integer arithmetic by one helper that :func:`to_gemini` and
:func:`from_gemini` share. :func:`to_gemini` rounds each box outward on the 0-1000 grid (and widens it
to cover the whole mask), then writes the mask PNG at exactly the region's size, so no resizing
happens on the way back: masks round-trip exactly, and each box comes back containing the original
box, each side moved out by less than one grid step: at most ``W / 1000`` px in x and ``H / 1000`` px in
y (when the mask lies inside its box; a mask sticking out of its box widens the box to hold it).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from promptseg.errors import FormatError
from promptseg.formats.result import _decode_png, _encode_png, _preview
from promptseg.ops.boxes import BOX_2D_SCALE, box_2d_to_xyxy, clip_xyxy, mask_to_xyxy
from promptseg.types import BoolArray, Detections, ImageSize

__all__ = ["from_gemini", "to_gemini"]

_DATA_URI = "data:image/png;base64,"
_FENCE = re.compile(r"```[ \t]*(?:json)?[ \t]*\r?\n?(.*?)```", re.DOTALL | re.IGNORECASE)
_THRESHOLD = 127


def to_gemini(det: Detections) -> list[dict[str, Any]]:
    """Detections as Gemini's segmentation list.

    Args:
        det: detections of one image; scores, track ids, attributes and meta are not written.

    Returns:
        One dict per instance: ``box_2d`` (``[ymin, xmin, ymax, xmax]`` ints on 0-1000, rounded
        outward so it contains the box and the mask), ``label`` and, when ``det.masks`` is set,
        ``mask``: a ``data:image/png;base64,`` 8-bit grayscale PNG (0 or 255) of the box region at its
        pixel size (one black pixel when the region is empty).

    Example:
        >>> det = Detections(xyxy=[[10, 20, 50, 80]], image_size=(100, 200), labels=["cup"])
        >>> to_gemini(det)
        [{'box_2d': [200, 50, 800, 250], 'label': 'cup'}]
    """
    box_2d = _outward_box_2d(det)
    items: list[dict[str, Any]] = []
    for i in range(len(det)):
        item: dict[str, Any] = {"box_2d": [int(v) for v in box_2d[i]], "label": str(det.labels[i])}
        if det.masks is not None:
            y0, x0, y1, x1 = _pixel_region(item["box_2d"], det.image_size)
            crop = det.masks[i, y0:y1, x0:x1].astype(np.uint8) * np.uint8(255)
            if crop.size == 0:
                # a box less than a pixel wide holds no mask pixels, and a PNG cannot be empty: one
                # black pixel keeps saying "this item has a mask" (from_gemini pastes nothing)
                crop = np.zeros((1, 1), np.uint8)
            item["mask"] = _DATA_URI + _encode_png(crop)
        items.append(item)
    return items


def from_gemini(items: Sequence[Mapping[str, Any]] | str | bytes, image_size: ImageSize) -> Detections:
    """Read Gemini's segmentation list into Detections.

    Args:
        items: the list, or Gemini's reply text holding it (also inside a Markdown ```json fence, or
            after a line of prose).
        image_size: ``(H, W)`` of the image that was sent to Gemini.

    Returns:
        Detections with ``scores`` None (Gemini gives none) and labels as Gemini wrote them. Boxes
        with reversed corners are put in order and values outside 0-1000 are clipped. Masks are None
        when no item has one; otherwise an item without a mask (missing, null or "") gets an empty
        mask, not its box filled. A mask PNG of another size than its box is resized (bilinear) before
        the threshold; RGB, palette and LA PNGs are read as gray (luminance, or the L of LA);
        16-bit PNGs are scaled to 0-255; the ``data:`` prefix is optional.

    Raises:
        FormatError: when the reply is not JSON, not a list, or an item is malformed (naming the item
            index and field). A reply that does not parse never gives an empty result.
    """
    parsed = _parse_reply(items) if isinstance(items, (str, bytes)) else items
    if isinstance(parsed, Mapping) or not isinstance(parsed, Sequence) or isinstance(parsed, (str, bytes)):
        raise FormatError(
            f"Gemini segmentation must be a JSON list of {{box_2d, label, mask}} objects, "
            f"got {_preview(parsed)}"
        )
    h, w = image_size
    boxes: list[list[float]] = []
    labels: list[str] = []
    masks: list[BoolArray | None] = []
    for i, item in enumerate(parsed):
        where = f"Gemini item {i}"
        if not isinstance(item, Mapping):
            raise FormatError(
                f"{where}: expected an object with box_2d, label and mask, got {_preview(item)}"
            )
        box = _box_2d(item.get("box_2d"), where)
        label = item.get("label")
        if not isinstance(label, str):
            raise FormatError(f"{where}.label: expected a string, got {_preview(label)}")
        boxes.append(box)
        labels.append(label)
        masks.append(_item_mask(item.get("mask"), box, (h, w), where))

    if not boxes:
        return Detections(xyxy=np.zeros((0, 4), np.float32), image_size=(h, w), labels=np.zeros(0, np.str_))
    have_masks = any(m is not None for m in masks)
    return Detections(
        xyxy=box_2d_to_xyxy(boxes, (h, w)),
        image_size=(h, w),
        labels=np.array(labels, np.str_),
        masks=np.stack([np.zeros((h, w), bool) if m is None else m for m in masks]) if have_masks else None,
    )


def _pixel_region(box_2d: Sequence[float], image_size: ImageSize) -> tuple[int, int, int, int]:
    """Pixel rows and columns ``(y0, x0, y1, x1)`` (ends exclusive) that a ``box_2d`` covers.

    Corners are put in order and clipped to 0-1000; each edge goes to ``floor(v * size / 1000)``,
    in exact integer arithmetic when ``v`` is a whole number.
    """
    h, w = image_size
    ymin, ymax = sorted((_clip_grid(box_2d[0]), _clip_grid(box_2d[2])))
    xmin, xmax = sorted((_clip_grid(box_2d[1]), _clip_grid(box_2d[3])))
    return _grid_to_pixel(ymin, h), _grid_to_pixel(xmin, w), _grid_to_pixel(ymax, h), _grid_to_pixel(xmax, w)


def _clip_grid(v: float) -> float:
    return min(max(v, 0), BOX_2D_SCALE)


def _grid_to_pixel(v: float, size: int) -> int:
    if float(v).is_integer():
        return int(v) * size // BOX_2D_SCALE
    return math.floor(v * size / BOX_2D_SCALE)


def _outward_box_2d(det: Detections) -> NDArray[np.int64]:
    """``(N, 4)`` ``[ymin, xmin, ymax, xmax]`` on 0-1000 holding each box and each mask."""
    h, w = det.image_size
    xyxy = clip_xyxy(det.xyxy, det.image_size).astype(np.float64)
    scale = np.array([BOX_2D_SCALE / w, BOX_2D_SCALE / h])
    lo = np.floor(xyxy[:, :2] * scale).astype(np.int64)
    hi = np.ceil(xyxy[:, 2:] * scale).astype(np.int64)
    if det.masks is not None and len(det):
        # whole pixels in exact integer arithmetic: the first/last row and column of each mask
        # must fall inside the region _pixel_region() gives back
        tight = mask_to_xyxy(det.masks).astype(np.int64)
        has = det.masks.reshape(len(det), -1).any(axis=1)
        size = np.array([w, h])
        mask_lo = tight[:, :2] * BOX_2D_SCALE // size
        mask_hi = -(-tight[:, 2:] * BOX_2D_SCALE // size)
        lo[has] = np.minimum(lo[has], mask_lo[has])
        hi[has] = np.maximum(hi[has], mask_hi[has])
    lo, hi = lo.clip(0, BOX_2D_SCALE), hi.clip(0, BOX_2D_SCALE)
    return np.stack([lo[:, 1], lo[:, 0], hi[:, 1], hi[:, 0]], axis=1)


def _parse_reply(text: str | bytes) -> Any:
    raw = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text
    candidates = [raw.strip()]
    fence = _FENCE.search(raw)
    if fence:
        candidates.insert(0, fence.group(1).strip())
    start, end = raw.find("["), raw.rfind("]")
    if 0 <= start < end:
        candidates.append(raw[start : end + 1])
    error: ValueError | None = None
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except ValueError as exc:
            error = exc if error is None else error
    raise FormatError(f"Gemini reply is not a JSON list ({error}); the reply starts {_preview(raw, 120)}")


def _box_2d(value: Any, where: str) -> list[float]:
    if (
        not isinstance(value, Sequence)
        or isinstance(value, (str, bytes))
        or len(value) != 4
        or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value
        )
    ):
        raise FormatError(f"{where}.box_2d: expected [ymin, xmin, ymax, xmax] numbers, got {_preview(value)}")
    return [float(v) for v in value]


def _item_mask(value: Any, box_2d: Sequence[float], image_size: ImageSize, where: str) -> BoolArray | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise FormatError(f"{where}.mask: expected a base64 PNG string, got {_preview(value)}")
    try:
        prob = _decode_png(value)
    except FormatError as exc:
        raise FormatError(f"{where}.mask: {exc}") from None
    h, w = image_size
    full = np.zeros((h, w), bool)
    y0, x0, y1, x1 = _pixel_region(box_2d, image_size)
    if y1 <= y0 or x1 <= x0:
        return full
    if prob.shape != (y1 - y0, x1 - x0):
        from PIL import Image

        resized = Image.fromarray(prob).resize((x1 - x0, y1 - y0), Image.Resampling.BILINEAR)
        prob = np.asarray(resized, np.uint8)
    full[y0:y1, x0:x1] = prob > _THRESHOLD
    return full
