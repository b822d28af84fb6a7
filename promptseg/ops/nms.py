"""Non-maximum suppression over xyxy boxes (and mask IoU for masks)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from promptseg.ops.boxes import _as_boxes, box_iou

__all__ = ["nms"]


def nms(
    xyxy: ArrayLike,
    scores: ArrayLike,
    *,
    iou_threshold: float = 0.5,
    class_ids: ArrayLike | None = None,
) -> NDArray[np.int64]:
    """Greedy non-maximum suppression.

    Args:
        xyxy: ``(N, 4)`` boxes in pixels.
        scores: ``(N,)`` scores; higher wins.
        iou_threshold: a box is dropped when its IoU with a kept, higher-scoring box exceeds this.
        class_ids: ``(N,)`` ints; when given, boxes only suppress boxes of the same class.

    Returns:
        ``(K,)`` int64 indices of the kept boxes, by descending score.
    """
    boxes = _as_boxes(xyxy).astype(np.float64)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.shape[0] != boxes.shape[0]:
        raise ValueError(f"scores has {s.shape[0]} values for {boxes.shape[0]} boxes")
    if boxes.shape[0] == 0:
        return np.zeros(0, np.int64)
    if class_ids is not None:
        # Offsetting each class into its own region makes one pass class-aware (torchvision's trick).
        cls = np.asarray(class_ids, dtype=np.float64).reshape(-1)
        boxes = boxes + (cls * (boxes.max() + 1.0))[:, None]
    order = np.argsort(-s, kind="stable")
    iou = box_iou(boxes[order], boxes[order])
    keep = np.ones(order.shape[0], bool)
    for i in range(order.shape[0]):
        if keep[i]:
            later = np.arange(i + 1, order.shape[0])
            keep[later[iou[i, i + 1 :] > iou_threshold]] = False
    return order[keep].astype(np.int64)
