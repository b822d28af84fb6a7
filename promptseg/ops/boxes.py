"""Box conversions and box IoU.

Names carry the convention: ``xyxy`` is ``(x1, y1, x2, y2)``, ``xywh`` is ``(x, y, w, h)`` with
``(x, y)`` the top-left corner (COCO ``bbox``), ``cxcywh`` is ``(cx, cy, w, h)``. All are absolute
pixels. ``box_2d`` is Gemini's ``[ymin, xmin, ymax, xmax]`` as ints on a 0-1000 scale of the image.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from promptseg.types import FloatArray, ImageSize

__all__ = [
    "box_2d_to_xyxy",
    "box_iou",
    "clip_xyxy",
    "cxcywh_to_xyxy",
    "mask_to_xyxy",
    "xywh_to_xyxy",
    "xyxy_to_box_2d",
    "xyxy_to_cxcywh",
    "xyxy_to_xywh",
]

BOX_2D_SCALE = 1000


def _as_boxes(boxes: ArrayLike) -> FloatArray:
    arr = np.asarray(boxes, dtype=np.float32)
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4), got {arr.shape}")
    return arr


def xyxy_to_xywh(xyxy: ArrayLike) -> FloatArray:
    """``(N, 4)`` xyxy to ``(N, 4)`` xywh (top-left corner, width, height)."""
    b = _as_boxes(xyxy).copy()
    b[:, 2:] -= b[:, :2]
    return b


def xywh_to_xyxy(xywh: ArrayLike) -> FloatArray:
    """``(N, 4)`` xywh (top-left corner, width, height) to ``(N, 4)`` xyxy."""
    b = _as_boxes(xywh).copy()
    b[:, 2:] += b[:, :2]
    return b


def xyxy_to_cxcywh(xyxy: ArrayLike) -> FloatArray:
    """``(N, 4)`` xyxy to ``(N, 4)`` centre, width, height."""
    b = _as_boxes(xyxy)
    wh = b[:, 2:] - b[:, :2]
    return np.concatenate([b[:, :2] + wh / 2, wh], axis=1)


def cxcywh_to_xyxy(cxcywh: ArrayLike) -> FloatArray:
    """``(N, 4)`` centre, width, height to ``(N, 4)`` xyxy."""
    b = _as_boxes(cxcywh)
    half = b[:, 2:] / 2
    return np.concatenate([b[:, :2] - half, b[:, :2] + half], axis=1)


def clip_xyxy(xyxy: ArrayLike, image_size: ImageSize) -> FloatArray:
    """Clip ``(N, 4)`` xyxy boxes to an image of ``image_size`` ``(H, W)``."""
    b = _as_boxes(xyxy).copy()
    h, w = image_size
    b[:, 0::2] = b[:, 0::2].clip(0, w)
    b[:, 1::2] = b[:, 1::2].clip(0, h)
    return b


def xyxy_to_box_2d(xyxy: ArrayLike, image_size: ImageSize) -> NDArray[np.int64]:
    """Pixel xyxy boxes to Gemini's ``box_2d``: ``(N, 4)`` ints ``[ymin, xmin, ymax, xmax]`` on 0-1000.

    Values are rounded half up to the nearest integer and clipped to [0, 1000].
    """
    b = clip_xyxy(xyxy, image_size).astype(np.float64)
    h, w = image_size
    scale = np.array([BOX_2D_SCALE / h, BOX_2D_SCALE / w, BOX_2D_SCALE / h, BOX_2D_SCALE / w])
    yxyx = b[:, [1, 0, 3, 2]] * scale
    out: NDArray[np.int64] = np.floor(yxyx + 0.5).clip(0, BOX_2D_SCALE).astype(np.int64)
    return out


def box_2d_to_xyxy(box_2d: ArrayLike, image_size: ImageSize) -> FloatArray:
    """Gemini's ``box_2d`` ``(N, 4)`` ``[ymin, xmin, ymax, xmax]`` on 0-1000 to pixel xyxy.

    Reversed corners (Gemini sometimes returns ``ymax < ymin``) are put in order.
    """
    yxyx = np.asarray(box_2d, dtype=np.float64)
    if yxyx.size == 0:
        return np.zeros((0, 4), np.float32)
    if yxyx.ndim != 2 or yxyx.shape[1] != 4:
        raise ValueError(f"box_2d must have shape (N, 4), got {yxyx.shape}")
    h, w = image_size
    y = np.sort(yxyx[:, [0, 2]], axis=1) * (h / BOX_2D_SCALE)
    x = np.sort(yxyx[:, [1, 3]], axis=1) * (w / BOX_2D_SCALE)
    out = np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1)
    return clip_xyxy(out, image_size)


def box_iou(a: ArrayLike, b: ArrayLike) -> FloatArray:
    """Pairwise IoU of ``(N, 4)`` and ``(M, 4)`` xyxy boxes: an ``(N, M)`` float32 matrix."""
    a, b = _as_boxes(a), _as_boxes(b)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod((rb - lt).clip(min=0), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    iou: FloatArray = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0).astype(np.float32)
    return iou


def mask_to_xyxy(masks: NDArray[np.bool_]) -> FloatArray:
    """Tight boxes around ``(N, H, W)`` bool masks: ``(N, 4)`` xyxy, pixel edges (x2 = last column + 1).

    An empty mask gives ``(0, 0, 0, 0)``.
    """
    m: NDArray[np.bool_] = np.asarray(masks, dtype=bool)
    n = m.shape[0]
    out = np.zeros((n, 4), np.float32)
    rows = np.any(m, axis=2, keepdims=False).reshape(n, m.shape[1])
    cols = np.any(m, axis=1, keepdims=False).reshape(n, m.shape[2])
    for i in range(n):
        ys, xs = np.flatnonzero(rows[i]), np.flatnonzero(cols[i])
        if ys.size:
            out[i] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
    return out
