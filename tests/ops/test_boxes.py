from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promptseg.ops.boxes import (
    box_2d_to_xyxy,
    box_iou,
    clip_xyxy,
    cxcywh_to_xyxy,
    mask_to_xyxy,
    xywh_to_xyxy,
    xyxy_to_box_2d,
    xyxy_to_cxcywh,
    xyxy_to_xywh,
)
from promptseg.ops.nms import nms

coords = st.floats(0, 1000, allow_nan=False, width=32)


@st.composite
def boxes(draw: st.DrawFn, max_n: int = 8) -> np.ndarray:
    n = draw(st.integers(0, max_n))
    a = np.array([[draw(coords) for _ in range(4)] for _ in range(n)], np.float32).reshape(n, 4)
    return np.concatenate([np.minimum(a[:, :2], a[:, 2:]), np.maximum(a[:, :2], a[:, 2:])], axis=1)


@given(boxes())
def test_conversions_invert(b: np.ndarray) -> None:
    np.testing.assert_allclose(xywh_to_xyxy(xyxy_to_xywh(b)), b, atol=1e-3)
    np.testing.assert_allclose(cxcywh_to_xyxy(xyxy_to_cxcywh(b)), b, atol=1e-3)


def test_conversion_values() -> None:
    b = np.array([[10, 20, 50, 80]], np.float32)
    assert xyxy_to_xywh(b).tolist() == [[10, 20, 40, 60]]
    assert xyxy_to_cxcywh(b).tolist() == [[30, 50, 40, 60]]
    assert clip_xyxy([[-5, -5, 200, 50]], (40, 100)).tolist() == [[0, 0, 100, 40]]


@pytest.mark.parametrize(
    ("xyxy", "image_size", "box_2d"),
    [
        ([[0, 0, 500, 375]], (375, 500), [[0, 0, 1000, 1000]]),  # the whole image
        ([[250, 75, 375, 300]], (375, 500), [[200, 500, 800, 750]]),  # exact fractions
        ([[-10, -10, 600, 400]], (375, 500), [[0, 0, 1000, 1000]]),  # outside: clipped
        ([[1, 1, 2, 2]], (3000, 4000), [[0, 0, 1, 1]]),  # sub-grid box rounds
    ],
)
def test_box_2d(xyxy: list, image_size: tuple[int, int], box_2d: list) -> None:
    assert xyxy_to_box_2d(xyxy, image_size).tolist() == box_2d


@given(boxes(), st.integers(1, 4000), st.integers(1, 4000))
@settings(max_examples=60)
def test_box_2d_round_trip_error_is_within_one_grid_step(b: np.ndarray, h: int, w: int) -> None:
    b = clip_xyxy(b, (h, w))
    back = box_2d_to_xyxy(xyxy_to_box_2d(b, (h, w)), (h, w))
    step = np.array([w, h, w, h]) / 1000
    assert (np.abs(back - b) <= step / 2 + 1e-3 * step + 1e-3).all()


def test_box_2d_reversed_corners_are_ordered() -> None:
    assert box_2d_to_xyxy([[800, 750, 200, 500]], (375, 500)).tolist() == [[250, 75, 375, 300]]


def test_box_iou() -> None:
    a = [[0, 0, 10, 10], [20, 20, 30, 30]]
    b = [[5, 0, 15, 10], [0, 0, 10, 10], [100, 100, 100, 100]]
    iou = box_iou(a, b)
    assert iou.shape == (2, 3)
    np.testing.assert_allclose(iou[0], [50 / 150, 1.0, 0.0], atol=1e-6)
    assert (iou[1] == 0).all()
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 3)


def test_mask_to_xyxy_uses_pixel_edges() -> None:
    m = np.zeros((2, 10, 10), bool)
    m[0, 2:5, 3:7] = True
    assert mask_to_xyxy(m).tolist() == [[3, 2, 7, 5], [0, 0, 0, 0]]


def test_nms_keeps_the_best_of_overlaps() -> None:
    b = [[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60], [0, 0, 10, 10]]
    s = [0.9, 0.95, 0.5, 0.3]
    assert nms(b, s, iou_threshold=0.5).tolist() == [1, 2]
    # class-aware: the same box in another class survives
    assert sorted(nms(b, s, iou_threshold=0.5, class_ids=[0, 0, 0, 1]).tolist()) == [1, 2, 3]
    assert nms(np.zeros((0, 4)), []).tolist() == []
    with pytest.raises(ValueError, match="scores"):
        nms(b, [0.1])


@given(boxes(12), st.floats(0.1, 0.9))
@settings(max_examples=60)
def test_nms_kept_boxes_do_not_overlap_beyond_threshold(b: np.ndarray, thr: float) -> None:
    scores = np.linspace(1, 0, len(b))
    keep = nms(b, scores, iou_threshold=thr)
    iou = box_iou(b[keep], b[keep])
    np.fill_diagonal(iou, 0)
    assert (iou <= thr + 1e-6).all()
    # every dropped box overlaps a kept, better one
    dropped = np.setdiff1d(np.arange(len(b)), keep)
    if len(dropped):
        assert (box_iou(b[dropped], b[keep]).max(axis=1) > thr - 1e-6).all()


def test_mask_to_xyxy_of_no_masks() -> None:
    assert mask_to_xyxy(np.zeros((0, 5, 6), bool)).shape == (0, 4)
