"""Visual prompts (boxes, positive and negative points), validated once for every backend."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from promptseg.errors import InputError
from promptseg.types import FloatArray, ImageSize, IntArray, StrArray

__all__ = ["VisualPrompts", "visual_prompts"]


@dataclass(frozen=True)
class VisualPrompts:
    """N object prompts: each has a box, some points, or both.

    Attributes:
        boxes: ``(N, 4)`` float32 xyxy pixels, or None.
        points: ``(N, K, 2)`` float32 xy pixels, or None.
        point_labels: ``(N, K)`` int64, 1 = positive, 0 = negative; None when there are no points.
        labels: ``(N,)`` str, the label each resulting instance gets.
    """

    boxes: FloatArray | None
    points: FloatArray | None
    point_labels: IntArray | None
    labels: StrArray

    def __len__(self) -> int:
        return len(self.labels)


def visual_prompts(
    image_size: ImageSize,
    *,
    boxes: Any = None,
    points: Any = None,
    point_labels: Any = None,
    labels: str | Sequence[str] | None = None,
) -> VisualPrompts:
    """Check and shape visual prompts for an image of ``image_size``.

    Args:
        image_size: ``(H, W)``.
        boxes: ``(N, 4)`` or ``(4,)`` xyxy pixels.
        points: ``(N, K, 2)``, or ``(K, 2)`` for one object (``(2,)``: one point).
        point_labels: ``(N, K)`` or ``(K,)`` of 1/0 (True/False); default all positive.
        labels: one label for all objects, or one per object (default ``"object"``).

    Raises:
        InputError: when nothing is given, shapes disagree, coordinates are not finite, boxes have
            their corners reversed, a point lies outside the image, a point label is not 0 or 1, or
            every point of an object is negative with no box (a model cannot tell what is meant).
    """
    h, w = image_size
    if boxes is None and points is None:
        raise InputError("no visual prompt given: pass boxes=[[x1, y1, x2, y2]] and/or points=[[x, y]]")
    box_arr = None
    if boxes is not None:
        box_arr = _floats(boxes, "boxes")
        if box_arr.ndim == 1:
            box_arr = box_arr[None]
        if box_arr.ndim != 2 or box_arr.shape[1] != 4:
            raise InputError(f"boxes must be (N, 4) [x1, y1, x2, y2] pixels, got shape {box_arr.shape}")
        if np.any(box_arr[:, 2] < box_arr[:, 0]) or np.any(box_arr[:, 3] < box_arr[:, 1]):
            raise InputError("boxes must be [x1, y1, x2, y2] with x1 <= x2 and y1 <= y2")
        box_arr = np.stack(
            [
                box_arr[:, 0].clip(0, w),
                box_arr[:, 1].clip(0, h),
                box_arr[:, 2].clip(0, w),
                box_arr[:, 3].clip(0, h),
            ],
            axis=1,
        ).astype(np.float32)
    pt_arr: FloatArray | None = None
    lab_arr: IntArray | None = None
    if points is not None:
        pt_arr = _floats(points, "points")
        if pt_arr.ndim == 1:
            pt_arr = pt_arr[None]
        if pt_arr.ndim == 2:
            pt_arr = pt_arr[None]
        if pt_arr.ndim != 3 or pt_arr.shape[2] != 2 or pt_arr.shape[1] == 0:
            raise InputError(f"points must be (N, K, 2) or (K, 2) [x, y] pixels, got shape {pt_arr.shape}")
        outside = (pt_arr[..., 0] < 0) | (pt_arr[..., 0] > w) | (pt_arr[..., 1] < 0) | (pt_arr[..., 1] > h)
        if outside.any():
            x, y = pt_arr[outside][0]
            raise InputError(f"point ({x:g}, {y:g}) lies outside the {w}x{h} image")
        if point_labels is None:
            lab_arr = np.ones(pt_arr.shape[:2], np.int64)
        else:
            raw = np.asarray(point_labels)
            if raw.dtype == bool:
                raw = raw.astype(np.int64)
            if raw.dtype.kind not in "iuf" or not np.isin(raw, (0, 1)).all():
                raise InputError("point_labels must be 1 (on the object) or 0 (not on it)")
            lab_arr = raw.astype(np.int64).reshape(-1, raw.shape[-1]) if raw.ndim else raw.reshape(1, 1)
            if lab_arr.shape != pt_arr.shape[:2]:
                raise InputError(
                    f"point_labels has shape {np.shape(point_labels)}, points give {pt_arr.shape[:2]} "
                    "(objects, points per object)"
                )
    n = len(box_arr) if box_arr is not None else len(pt_arr)  # type: ignore[arg-type]
    if box_arr is not None and pt_arr is not None and len(pt_arr) != n:
        raise InputError(f"{n} boxes but points for {len(pt_arr)} objects: give one set of points per box")
    if lab_arr is not None and box_arr is None and not lab_arr.any(axis=1).all():
        raise InputError(
            "an object prompted only with negative points has nothing to segment: add a positive point"
        )
    if labels is None:
        label_arr = np.array(["object"] * n, dtype=np.str_)
    elif isinstance(labels, str):
        label_arr = np.array([labels] * n, dtype=np.str_)
    else:
        label_arr = np.asarray(list(labels), dtype=np.str_)
        if label_arr.shape != (n,):
            raise InputError(f"{len(label_arr)} labels for {n} objects")
    return VisualPrompts(box_arr, pt_arr, lab_arr, label_arr)


def _floats(value: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be numbers, got {value!r:.80}") from None
    if not np.isfinite(arr).all():
        raise InputError(f"{name} must be finite numbers")
    return arr.astype(np.float32)
