"""Shared geometry of the box refiners: input checks, box regions, crops, soft-to-hard masks.

Frames: the image frame is pixels with the origin at the top-left corner; a *region* is a box rounded
outwards to whole pixels and clipped to the image, ``(x1, y1, x2, y2)`` ints with exclusive ends; a
*crop* is a window around a region, possibly downscaled (its *small* frame).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from promptseg._deps import require
from promptseg.errors import ConfigError, InputError
from promptseg.image import check_rgb
from promptseg.types import BoolArray, UInt8Array

Region = tuple[int, int, int, int]
"""A box region in image pixels: ``(x1, y1, x2, y2)`` ints, exclusive ends, inside the image."""


def load_cv2() -> ModuleType:
    """OpenCV, or :class:`~promptseg.errors.MissingDependencyError` naming the ``onnx`` extra."""
    return require("cv2", extra="onnx", purpose="box-to-mask refinement")


def check_inputs(image: Any, xyxy: ArrayLike) -> tuple[UInt8Array, NDArray[np.float64]]:
    """Validate a refiner's inputs.

    Returns:
        The image as a C-contiguous ``(H, W, 3)`` uint8 array and the boxes as ``(N, 4)`` float64.

    Raises:
        InputError: for an image that is not ``(H, W, 3)`` uint8, boxes that are not ``(N, 4)``, non-finite
            coordinates or reversed corners (``x2 < x1`` or ``y2 < y1``).
    """
    img = check_rgb(image, purpose="mask refinement")
    boxes = np.asarray(xyxy, dtype=np.float64)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise InputError(f"boxes must have shape (N, 4) as xyxy pixels, got {boxes.shape}")
    if not np.isfinite(boxes).all():
        raise InputError("boxes must be finite (found NaN or inf)")
    bad = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(f"boxes must have x1 <= x2 and y1 <= y2; row {row} is {boxes[row].tolist()}")
    return np.ascontiguousarray(img), boxes


def box_regions(boxes: NDArray[np.float64], image_size: tuple[int, int]) -> NDArray[np.int64]:
    """Round ``(N, 4)`` xyxy boxes outwards to whole pixels and clip them to an ``(H, W)`` image.

    A region is empty (``x2 <= x1`` or ``y2 <= y1``) for a box of zero width or height, or one that lies
    outside the image.
    """
    h, w = image_size
    out = np.empty((boxes.shape[0], 4), np.int64)
    out[:, 0] = np.floor(boxes[:, 0]).clip(0, w)
    out[:, 1] = np.floor(boxes[:, 1]).clip(0, h)
    out[:, 2] = np.ceil(boxes[:, 2]).clip(0, w)
    out[:, 3] = np.ceil(boxes[:, 3]).clip(0, h)
    return out


def refine_each(
    image: Any, xyxy: ArrayLike, region_mask: Callable[[UInt8Array, Region], BoolArray]
) -> BoolArray:
    """Run ``region_mask(image, region)`` on each box's non-empty region and paste the results.

    Returns:
        ``(N, H, W)`` bool masks; empty where a box's region is empty.
    """
    img, boxes = check_inputs(image, xyxy)
    h, w = img.shape[:2]
    out = np.zeros((boxes.shape[0], h, w), bool)
    for i, region in enumerate(box_regions(boxes, (h, w)).tolist()):
        if not is_empty(region):
            x1, y1, x2, y2 = region
            out[i, y1:y2, x1:x2] = region_mask(img, (x1, y1, x2, y2))
    return out


def is_empty(region: Region) -> bool:
    return region[2] <= region[0] or region[3] <= region[1]


@dataclass(frozen=True)
class Crop:
    """A window of the image around one box region, downscaled so that its long side is at most a limit.

    Attributes:
        window: ``(x1, y1, x2, y2)`` of the window in image pixels (full resolution, exclusive ends).
        small: ``(h, w, 3)`` uint8, the window resized to the small frame (the window itself when no
            downscaling was needed).
        box: the box region in small-frame pixels, floats ``(x1, y1, x2, y2)``.
        inside: ``(h, w)`` bool, small pixels whose centres lie inside the box region.
    """

    window: Region
    small: UInt8Array
    box: tuple[float, float, float, float]
    inside: BoolArray

    @property
    def ring(self) -> BoolArray:
        """``(h, w)`` bool: the window's pixels outside the box (the background sample)."""
        return ~self.inside


def make_crop(
    cv2: ModuleType, image: UInt8Array, region: Region, *, pad: float, min_pad: int, max_side: int | None
) -> Crop:
    """Cut the window ``region`` + ``max(min_pad, pad * side)`` pixels per side, and downscale it.

    Args:
        cv2: the OpenCV module.
        image: ``(H, W, 3)`` uint8.
        region: a non-empty box region.
        pad: margin per side as a fraction of the box's width (left/right) or height (top/bottom).
        min_pad: smallest margin in pixels.
        max_side: the long side of the small frame is at most this (None: keep full resolution).
    """
    h, w = image.shape[:2]
    x1, y1, x2, y2 = region
    px = max(float(min_pad), pad * (x2 - x1))
    py = max(float(min_pad), pad * (y2 - y1))
    wx1, wy1 = max(0, int(np.floor(x1 - px))), max(0, int(np.floor(y1 - py)))
    wx2, wy2 = min(w, int(np.ceil(x2 + px))), min(h, int(np.ceil(y2 + py)))
    cw, ch = wx2 - wx1, wy2 - wy1
    window = image[wy1:wy2, wx1:wx2]
    scale = 1.0 if max_side is None else min(1.0, max_side / max(cw, ch))
    if scale < 1.0:
        sw, sh = max(1, round(cw * scale)), max(1, round(ch * scale))
        small = cv2.resize(window, (sw, sh), interpolation=cv2.INTER_AREA)
    else:
        sw, sh = cw, ch
        small = np.ascontiguousarray(window)
    sx, sy = sw / cw, sh / ch
    box = ((x1 - wx1) * sx, (y1 - wy1) * sy, (x2 - wx1) * sx, (y2 - wy1) * sy)
    xs = np.arange(sw) + 0.5
    ys = np.arange(sh) + 0.5
    inside = ((ys >= box[1]) & (ys < box[3]))[:, None] & ((xs >= box[0]) & (xs < box[2]))[None, :]
    return Crop(window=(wx1, wy1, wx2, wy2), small=small, box=box, inside=inside)


def elliptic_radius(shape: tuple[int, int], box: tuple[float, float, float, float]) -> NDArray[np.float32]:
    """``(h, w)`` float32: each pixel centre's distance from the box centre, 1 on the inscribed ellipse."""
    h, w = shape
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    ax, ay = max((box[2] - box[0]) / 2, 0.5), max((box[3] - box[1]) / 2, 0.5)
    dx = ((np.arange(w, dtype=np.float32) + 0.5 - cx) / ax) ** 2
    dy = ((np.arange(h, dtype=np.float32) + 0.5 - cy) / ay) ** 2
    r2: NDArray[np.float32] = dy[:, None] + dx[None, :]
    return np.sqrt(r2)


def ellipse_mask(h: int, w: int) -> BoolArray:
    """``(h, w)`` bool: the ellipse inscribed in an ``h x w`` region (pixel centres inside or on it)."""
    mask: BoolArray = elliptic_radius((h, w), (0.0, 0.0, float(w), float(h))) <= 1.0
    return mask


def largest_component(cv2: ModuleType, mask: BoolArray) -> BoolArray:
    """Keep the largest 8-connected component of ``mask`` (unchanged when it has at most one)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    if n <= 2:
        return mask
    keep = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    out: BoolArray = labels == keep
    return out


def fill_holes(cv2: ModuleType, mask: BoolArray) -> BoolArray:
    """Fill the background areas of ``mask`` that do not reach its border (4-connected)."""
    padded = np.pad(~mask, 1, constant_values=True).view(np.uint8)
    _, labels = cv2.connectedComponents(padded, connectivity=4)
    holes = (labels != labels[0, 0])[1:-1, 1:-1] & ~mask
    out: BoolArray = mask | holes
    return out


def soft_to_mask(
    cv2: ModuleType,
    crop: Crop,
    region: Region,
    soft: NDArray[np.float32],
    *,
    threshold: float = 0.5,
    keep_largest: bool = True,
    holes: bool = False,
) -> BoolArray:
    """Turn a soft small-frame map into the region's hard mask.

    The map is upsampled to the window's full resolution with bilinear interpolation (smooth edges,
    where nearest-neighbour would give staircases of the small frame's pixels), cut to the region and
    thresholded.

    Args:
        cv2: the OpenCV module.
        crop: the crop the map belongs to.
        region: the box region of the crop.
        soft: ``(h, w)`` float32 in [0, 1] in the crop's small frame.
        threshold: foreground where the map is above this.
        keep_largest: keep only the largest connected component.
        holes: fill holes.

    Returns:
        ``(y2 - y1, x2 - x1)`` bool, the mask inside the region.
    """
    wx1, wy1, wx2, wy2 = crop.window
    cw, ch = wx2 - wx1, wy2 - wy1
    up = soft if soft.shape == (ch, cw) else cv2.resize(soft, (cw, ch), interpolation=cv2.INTER_LINEAR)
    x1, y1, x2, y2 = region
    mask: BoolArray = up[y1 - wy1 : y2 - wy1, x1 - wx1 : x2 - wx1] > threshold
    if keep_largest and mask.any():
        mask = largest_component(cv2, mask)
    if holes and mask.any():
        mask = fill_holes(cv2, mask)
    return mask


def check_fraction(value: float, name: str, *, low: float = 0.0, high: float = 1.0) -> None:
    if not (isinstance(value, (int, float)) and low <= value <= high):
        raise ConfigError(f"{name} must be a number in [{low}, {high}], got {value!r}")


def check_int(value: int, name: str, *, low: int) -> None:
    if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= low):
        raise ConfigError(f"{name} must be an int >= {low}, got {value!r}")


def check_range(value: tuple[float, float], name: str) -> None:
    if not (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, (int, float)) for v in value)
        and 0.0 <= value[0] < value[1] <= 1.0
    ):
        raise ConfigError(f"{name} must be (low, high) with 0 <= low < high <= 1, got {value!r}")


def to_small_frame(
    cv2: ModuleType, full: NDArray[np.float32], window: Region, dst: Crop
) -> NDArray[np.float32]:
    """Move a full-resolution map of image window ``window`` into crop ``dst``'s small frame.

    Args:
        cv2: the OpenCV module.
        full: ``(y2 - y1, x2 - x1)`` float32 over ``window``.
        window: ``(x1, y1, x2, y2)`` in image pixels.
        dst: the crop to resample into.

    Returns:
        ``(h, w)`` float32 in ``dst``'s small frame; zero where ``window`` does not reach.
    """
    sx1, sy1, sx2, sy2 = window
    dx1, dy1, dx2, dy2 = dst.window
    canvas = np.zeros((dy2 - dy1, dx2 - dx1), np.float32)
    ox1, oy1, ox2, oy2 = max(sx1, dx1), max(sy1, dy1), min(sx2, dx2), min(sy2, dy2)
    if ox2 > ox1 and oy2 > oy1:
        src = full[oy1 - sy1 : oy2 - sy1, ox1 - sx1 : ox2 - sx1]
        canvas[oy1 - dy1 : oy2 - dy1, ox1 - dx1 : ox2 - dx1] = src
    h, w = dst.inside.shape
    if canvas.shape == (h, w):
        return canvas
    out: NDArray[np.float32] = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA)
    return out
