"""Gemini's conversational segmentation output, both ways, and every reply shape seen in the wild.

Gemini 2.5 answers a segmentation request with a JSON list, one item per object::

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

:func:`from_gemini` also reads the other shapes Gemini has been seen to send:

- the list inside a Markdown ```json fence, with prose around it, or with a trailing comma;
- a reply cut off by the output-token limit: the complete items are kept and ``meta["truncated"]``
  says so (a reply cut off before its first complete item raises :class:`FormatError`);
- ``mask`` as a polygon on the 0-1000 grid of the whole image (Gemini 3 and Robotics-ER):
  ``[[x, y], ...]`` points, several such lists, a flat ``[x1, y1, x2, y2, ...]`` list or
  ``[{"x": .., "y": ..}, ...]``. Pairs are read as ``[x, y]``, the order these replies have been seen
  in; because Gemini writes its own points and boxes y first, a polygon whose extent matches
  ``box_2d`` better when read as ``[y, x]`` is read that way (noted in ``meta["notes"]``). An item
  with a polygon needs no ``box_2d``: its box is the polygon's extent;
- ``mask`` as a 2-D array over the box (booleans, 0/1, probabilities in [0, 1] or 0-255 values),
  scaled to the box like a PNG;
- ``mask`` as ``<start_of_mask><seg_NN>...`` codebook tokens (PaliGemma style, also a whole reply of
  ``<locNNNN>`` x4 box + ``<segNNN>`` x16 + label segments separated by ``;``). Turning the tokens
  into pixels needs PaliGemma's VQ-VAE mask decoder, which promptseg does not ship, so such items keep
  their box (from ``box_2d``, else from the ``<loc>`` tokens: ``[y0, x0, y1, x1]`` in 1024 bins) and
  get no mask; ``meta["masks_missing"]`` lists their indices and ``meta["notes"]`` says why.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from promptseg.errors import FormatError
from promptseg.formats.result import _decode_png, _encode_png, _preview
from promptseg.ops.boxes import BOX_2D_SCALE, box_2d_to_xyxy, clip_xyxy, mask_to_xyxy
from promptseg.ops.masks import from_polygons
from promptseg.types import BoolArray, Detections, ImageSize

__all__ = ["from_gemini", "to_gemini"]

_DATA_URI = "data:image/png;base64,"
_FENCE = re.compile(r"```[ \t]*(?:json)?[ \t]*\r?\n?(.*?)```", re.DOTALL | re.IGNORECASE)
_OPEN_FENCE = re.compile(r"```[ \t]*(?:json)?[ \t]*\r?\n?(.*)\Z", re.DOTALL | re.IGNORECASE)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_SEG_TOKEN = re.compile(r"<seg_?(\d{1,4})>")
_LOC_TOKEN = re.compile(r"<loc_?(\d{1,4})>")
_PALIGEMMA_SEGMENT = re.compile(
    r"((?:<loc_?\d{1,4}>\s*){4})((?:<start_of_mask>\s*)?(?:<seg_?\d{1,4}>\s*)*(?:<end_of_mask>\s*)?)([^;<]*)"
)
_LOC_BINS = 1024  # PaliGemma's <locNNNN>: NNNN / 1024 of the image side
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
    """Read Gemini's segmentation list (or its reply text) into Detections.

    Args:
        items: the list, or Gemini's reply text holding it: bare, inside a Markdown ```json fence,
            after a line of prose, cut off by the token limit, or PaliGemma-style token text.
        image_size: ``(H, W)`` of the image whose detections these are. Boxes, polygons and masks are
            relative to the image (0-1000 grid, box-cropped maps), so this may be the original size of
            an image that was sent downscaled.

    Returns:
        Detections with ``scores`` None (Gemini gives none) and labels as Gemini wrote them. Boxes
        with reversed corners are put in order and values outside 0-1000 are clipped. Masks are None
        when no item has one; otherwise an item without a mask (missing, null, "" or undecodable
        ``<seg>`` tokens) gets an empty mask, not its box filled. A mask PNG (or array) of another size
        than its box is resized (bilinear) before the threshold; RGB, palette and LA PNGs are read as
        gray (luminance, or the L of LA); 16-bit PNGs are scaled to 0-255; the ``data:`` prefix is
        optional. ``meta`` is empty for a clean reply; otherwise ``meta["notes"]`` explains what was
        recovered, with ``meta["truncated"]`` (True) and ``meta["masks_missing"]`` (item indices).

    Raises:
        FormatError: when the reply is not JSON, not a list, or an item is malformed (naming the item
            index and field). A reply that does not parse never gives an empty result.

    Example:
        >>> det = from_gemini('```json\\n[{"box_2d": [0, 0, 500, 500], "label": "cup"}]\\n```', (100, 200))
        >>> det.xyxy.tolist()
        [[0.0, 0.0, 100.0, 50.0]]
    """
    try:
        return _read_reply(items, image_size)
    except FormatError as exc:
        if exc.raw_response is None and isinstance(items, (str, bytes)):
            raw = items.decode("utf-8", errors="replace") if isinstance(items, bytes) else items
            raise FormatError(str(exc), raw_response=raw) from None
        raise


def _read_reply(items: Sequence[Mapping[str, Any]] | str | bytes, image_size: ImageSize) -> Detections:
    notes: list[str] = []
    meta: dict[str, Any] = {}
    if isinstance(items, (str, bytes)):
        parsed, kept = _parse_reply(items)
        if kept is not None:
            meta["truncated"] = True
            notes.append(
                f"the reply was cut off (output token limit?) after {kept} complete "
                f"item{'s' * (kept != 1)}; objects after those are missing"
            )
    else:
        parsed = items
    if isinstance(parsed, Mapping) or not isinstance(parsed, Sequence) or isinstance(parsed, (str, bytes)):
        raise FormatError(
            f"Gemini segmentation must be a JSON list of {{box_2d, label, mask}} objects, "
            f"got {_preview(parsed)}"
        )
    h, w = image_size
    decoded = [_read_item(item, i, (h, w)) for i, item in enumerate(parsed)]
    if not decoded:
        return Detections(
            xyxy=np.zeros((0, 4), np.float32), image_size=(h, w), labels=np.zeros(0, np.str_), meta=meta
        )

    missing = [i for i, d in enumerate(decoded) if d.mask_missing]
    if missing:
        meta["masks_missing"] = missing
        notes.append(
            f"item{'s' * (len(missing) > 1)} {', '.join(map(str, missing))}: the mask came as <seg> codebook "
            "tokens, which only PaliGemma's VQ-VAE decoder turns into pixels; kept the box, no mask"
        )
    swapped = [i for i, d in enumerate(decoded) if d.swapped]
    if swapped:
        notes.append(
            f"item{'s' * (len(swapped) > 1)} {', '.join(map(str, swapped))}: polygon points read as "
            "[y, x], the order that fits box_2d"
        )
    if notes:
        meta["notes"] = notes

    masks: BoolArray | None = None
    if any(d.pixels is not None for d in decoded):
        masks = np.zeros((len(decoded), h, w), bool)
        for i, d in enumerate(decoded):
            if d.pixels is None:
                continue
            if d.region is None:
                masks[i] = d.pixels
            else:
                y0, x0, y1, x1 = d.region
                masks[i, y0:y1, x0:x1] = d.pixels
    return Detections(
        xyxy=box_2d_to_xyxy([d.box_2d for d in decoded], (h, w)),
        image_size=(h, w),
        labels=np.array([d.label for d in decoded], np.str_),
        masks=masks,
        meta=meta,
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


@dataclass
class _Item:
    """One item as read: its box on the 0-1000 grid, and mask pixels within ``region`` (or the image)."""

    box_2d: list[float]
    label: str
    pixels: BoolArray | None = None
    region: tuple[int, int, int, int] | None = None
    mask_missing: bool = False
    swapped: bool = False


def _read_item(item: Any, i: int, image_size: ImageSize) -> _Item:
    where = f"Gemini item {i}"
    if not isinstance(item, Mapping):
        raise FormatError(f"{where}: expected an object with box_2d, label and mask, got {_preview(item)}")
    box = None if item.get("box_2d") is None else _box_2d(item["box_2d"], where)
    value = item.get("mask")
    if isinstance(value, str) and ("<start_of_mask>" in value or _SEG_TOKEN.search(value)):
        if box is None:
            locs = [int(v) for v in _LOC_TOKEN.findall(value)]
            box = [v * BOX_2D_SCALE / _LOC_BINS for v in locs[:4]] if len(locs) >= 4 else None
        return _Item(_need_box(box, where), _need_label(item, where), mask_missing=True)
    if isinstance(value, (list, tuple)) and value:
        read = _polygons(value, f"{where}.mask")
        if read is not None:
            polygons, explicit = read
            swapped = not explicit and box is not None and _fits_better_swapped(polygons, box)
            if swapped:
                polygons = [p[:, ::-1] for p in polygons]
            region, pixels = _rasterise(polygons, image_size)
            return _Item(
                box if box is not None else _extent(polygons),
                _need_label(item, where),
                pixels=pixels,
                region=region,
                swapped=swapped,
            )
    box = _need_box(box, where)
    label = _need_label(item, where)
    if value is None or (isinstance(value, (str, list, tuple)) and not _strip(value)):
        return _Item(box, label)
    if isinstance(value, (list, tuple)):
        prob = _bitmap(value, f"{where}.mask")
    elif isinstance(value, str):
        try:
            prob = _decode_png(value)
        except FormatError as exc:
            raise FormatError(f"{where}.mask: {exc}") from None
    else:
        raise FormatError(
            f"{where}.mask: expected a base64 PNG string, a polygon or a 2-D array, got {_preview(value)}"
        )
    region = _pixel_region(box, image_size)
    y0, x0, y1, x1 = region
    if y1 <= y0 or x1 <= x0:
        return _Item(box, label, pixels=np.zeros((max(y1 - y0, 0), max(x1 - x0, 0)), bool), region=region)
    if prob.shape != (y1 - y0, x1 - x0):
        from PIL import Image

        resized = Image.fromarray(prob).resize((x1 - x0, y1 - y0), Image.Resampling.BILINEAR)
        prob = np.asarray(resized, np.uint8)
    return _Item(box, label, pixels=prob > _THRESHOLD, region=region)


def _strip(value: str | Sequence[Any]) -> Any:
    return value.strip() if isinstance(value, str) else value


def _need_box(box: list[float] | None, where: str) -> list[float]:
    if box is None:
        raise FormatError(f"{where}.box_2d: expected [ymin, xmin, ymax, xmax] numbers, got None")
    return box


def _need_label(item: Mapping[str, Any], where: str) -> str:
    label = item.get("label")
    if not isinstance(label, str):
        raise FormatError(f"{where}.label: expected a string, got {_preview(label)}")
    return label


def _parse_reply(text: str | bytes) -> tuple[Any, int | None]:
    """The JSON value in a reply, and how many items were kept when the reply was cut off (else None)."""
    raw = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text
    fence = _FENCE.search(raw)
    open_fence = None if fence else _OPEN_FENCE.search(raw)
    body = fence.group(1) if fence else open_fence.group(1) if open_fence else raw
    candidates = [body.strip()] if body is raw else [body.strip(), raw.strip()]
    start, end = raw.find("["), raw.rfind("]")
    if 0 <= start < end:
        candidates.append(raw[start : end + 1])
    error: ValueError | None = None
    for candidate in candidates:
        try:
            return json.loads(candidate), None
        except ValueError as exc:
            error = exc if error is None else error
    items, state = _scan_list(body)
    if state == "closed":  # a trailing comma, or prose with brackets around the list
        return items, None
    if state == "truncated" and items:
        return items, len(items)
    tokens = _paligemma_items(raw)
    if tokens:
        return tokens, None
    if state == "truncated":
        raise FormatError(
            f"Gemini reply is not a JSON list: it was cut off before its first complete item "
            f"(output token limit?); the reply starts {_preview(raw, 120)}"
        )
    raise FormatError(f"Gemini reply is not a JSON list ({error}); the reply starts {_preview(raw, 120)}")


def _scan_list(text: str) -> tuple[list[Any], str]:
    """Read a JSON list item by item: ``(items, "closed" | "truncated" | "bad")``.

    "truncated" means the text ends inside the list (after a complete item, or inside an item whose
    brackets never close); "bad" means malformed JSON before the end, where nothing is recovered.
    """
    start = re.search(r"\[\s*(?=[{\]])", text)
    if start is None:
        return [], "bad"
    decoder = json.JSONDecoder()
    items: list[Any] = []
    pos, n = start.end(), len(text)
    while True:  # each turn consumes an item and moves pos forward, or returns
        pos = _skip_space(text, pos)
        if pos >= n:
            return items, "truncated"
        if text[pos] == "]":
            return items, "closed"
        try:
            value, pos = decoder.raw_decode(text, pos)
        except ValueError:
            return items, "truncated" if text[pos] == "{" and _runs_to_end(text, pos) else "bad"
        items.append(value)
        pos = _skip_space(text, pos)
        if pos >= n:
            return items, "truncated"
        if text[pos] == ",":
            pos += 1
        elif text[pos] == "]":
            return items, "closed"
        else:
            return items, "bad"


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _runs_to_end(text: str, pos: int) -> bool:
    """Whether the JSON value starting at ``pos`` is still open when the text ends (a cut, not an error)."""
    depth = 0
    while pos < len(text):
        char = text[pos]
        if char == '"':
            string = _STRING.match(text, pos)
            if string is None:
                return True  # a string still open at the end
            pos = string.end()
            continue
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
            if depth <= 0:
                return False
        pos += 1
    return True


def _paligemma_items(raw: str) -> list[dict[str, Any]]:
    """Items of a PaliGemma-style reply: ``<loc>`` x4, optional ``<seg>`` tokens, a label; ``;`` between."""
    items: list[dict[str, Any]] = []
    for match in _PALIGEMMA_SEGMENT.finditer(raw):
        locs = [int(v) for v in _LOC_TOKEN.findall(match.group(1))]
        item: dict[str, Any] = {
            "box_2d": [v * BOX_2D_SCALE / _LOC_BINS for v in locs],
            "label": match.group(3).strip() or "object",
        }
        if _SEG_TOKEN.search(match.group(2)):
            item["mask"] = match.group(2).strip()
        items.append(item)
    return items


def _box_2d(value: Any, where: str) -> list[float]:
    if (
        not isinstance(value, Sequence)
        or isinstance(value, (str, bytes))
        or len(value) != 4
        or not all(_is_number(v) and math.isfinite(v) for v in value)
    ):
        raise FormatError(f"{where}.box_2d: expected [ymin, xmin, ymax, xmax] numbers, got {_preview(value)}")
    return [float(v) for v in value]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _polygons(value: Sequence[Any], where: str) -> tuple[list[NDArray[np.float64]], bool] | None:
    """A polygon mask as ``(N_k, 2)`` grid points per polygon, and whether x and y were named.

    Returns None for a 2-D array that is not a polygon (rows of any length but 2, fewer than 3 rows, or
    only 0/1 values: a bitmap).

    Raises:
        FormatError: for a list that is shaped like a polygon but holds something else.
    """
    if all(isinstance(p, Mapping) for p in value):
        try:
            points = np.array([[float(p["x"]), float(p["y"])] for p in value], np.float64)
        except (KeyError, TypeError, ValueError):
            raise FormatError(
                f'{where}: expected points as {{"x": .., "y": ..}}, got {_preview(value)}'
            ) from None
        return [_finite(points, where)], True
    first = value[0]
    if _is_number(first):
        flat = np.array(value) if all(not isinstance(v, (list, tuple, Mapping)) for v in value) else None
        if flat is None or flat.dtype.kind not in "iuf" or flat.size % 2 or flat.size < 6:
            raise FormatError(
                f"{where}: a flat polygon needs an even number (at least 6) of numbers, got {_preview(value)}"
            )
        return [_finite(flat.astype(np.float64).reshape(-1, 2), where)], False
    if isinstance(first, (list, tuple)) and first and isinstance(first[0], (list, tuple, Mapping)):
        polygons: list[NDArray[np.float64]] = []
        for k, polygon in enumerate(value):
            read = (
                _polygons(polygon, f"{where}[{k}]")
                if isinstance(polygon, (list, tuple)) and polygon
                else None
            )
            if read is None or read[1]:
                raise FormatError(
                    f"{where}[{k}]: expected a polygon of [x, y] points, got {_preview(polygon)}"
                )
            polygons.extend(read[0])
        return polygons, False
    if len(value) < 3 or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in value):
        return None
    points = np.array(value)  # numbers give an int or float array; booleans a bool one, text a str one
    if points.dtype.kind not in "iuf":
        return None
    if np.isin(points, (0, 1)).all():  # a 0/1 array two columns wide is a bitmap
        return None
    return [_finite(points.astype(np.float64), where)], False


def _finite(points: NDArray[np.float64], where: str) -> NDArray[np.float64]:
    if not np.isfinite(points).all():
        raise FormatError(f"{where}: polygon points must be finite numbers")
    return points


def _extent(polygons: Sequence[NDArray[np.float64]]) -> list[float]:
    """``[ymin, xmin, ymax, xmax]`` around ``[x, y]`` grid points."""
    points = np.concatenate(polygons)
    lo, hi = points.min(axis=0), points.max(axis=0)
    return [float(lo[1]), float(lo[0]), float(hi[1]), float(hi[0])]


def _fits_better_swapped(polygons: Sequence[NDArray[np.float64]], box_2d: Sequence[float]) -> bool:
    """Whether the points, read as ``[y, x]``, match the item's box better than read as ``[x, y]``."""
    as_xy = _extent(polygons)
    as_yx = [as_xy[1], as_xy[0], as_xy[3], as_xy[2]]
    return _grid_iou(as_yx, box_2d) > _grid_iou(as_xy, box_2d)


def _grid_iou(a: Sequence[float], b: Sequence[float]) -> float:
    ya0, ya1 = sorted((a[0], a[2]))
    xa0, xa1 = sorted((a[1], a[3]))
    yb0, yb1 = sorted((b[0], b[2]))
    xb0, xb1 = sorted((b[1], b[3]))
    inter = max(0.0, min(ya1, yb1) - max(ya0, yb0)) * max(0.0, min(xa1, xb1) - max(xa0, xb0))
    union = (ya1 - ya0) * (xa1 - xa0) + (yb1 - yb0) * (xb1 - xb0) - inter
    return inter / union if union > 0 else 0.0


def _rasterise(
    polygons: Sequence[NDArray[np.float64]], image_size: ImageSize
) -> tuple[tuple[int, int, int, int], BoolArray]:
    """``[x, y]`` polygons on the 0-1000 grid of the image as a mask (COCO rasterisation, pixel centres).

    Returns:
        The pixel region ``(y0, x0, y1, x1)`` around the polygons (clipped to the image) and the mask
        of that region: drawing only there costs the region's pixels, not the image's.
    """
    h, w = image_size
    xy = [p * np.array([w / BOX_2D_SCALE, h / BOX_2D_SCALE]) for p in polygons]
    points = np.concatenate(xy)
    lo = np.maximum(np.floor(points.min(axis=0)) - 1, 0).astype(int)
    hi = np.minimum(np.ceil(points.max(axis=0)) + 1, [w, h]).astype(int)
    x0, y0, x1, y1 = int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1])
    if x1 <= x0 or y1 <= y0:
        return (0, 0, 0, 0), np.zeros((0, 0), bool)
    # whole-pixel shifts leave pycocotools' 1/5-pixel snapping unchanged
    shifted = [(p - [x0, y0]).ravel().tolist() for p in xy]
    return (y0, x0, y1, x1), from_polygons(shifted, (y1 - y0, x1 - x0))


def _bitmap(rows: Sequence[Any], where: str) -> NDArray[np.uint8]:
    """A 2-D mask array (booleans, 0/1, probabilities in [0, 1] or 0-255) as a 0-255 map."""
    if not all(isinstance(r, (list, tuple)) for r in rows):
        raise FormatError(
            f"{where}: expected a base64 PNG string, a polygon or a 2-D array, got {_preview(rows)}"
        )
    widths = sorted({len(r) for r in rows})
    if len(widths) != 1 or widths[0] == 0:
        raise FormatError(f"{where}: a 2-D mask needs rows of one non-zero length, got lengths {widths[:5]}")
    if not all(isinstance(v, (bool, int, float)) for r in rows for v in r):
        raise FormatError(f"{where}: a 2-D mask holds booleans or numbers, got {_preview(rows)}")
    values = np.array(rows, np.float64)
    if not np.isfinite(values).all() or values.min() < 0 or values.max() > 255:
        raise FormatError(f"{where}: a 2-D mask holds values in [0, 1] or 0-255, got {_preview(rows)}")
    if values.max() <= 1:  # booleans, 0/1 and probabilities: above one half is in
        values = values * 255
    return np.rint(values).astype(np.uint8)
