"""Tracking metrics: hand-made sequences with known answers, the Hungarian solver against scipy, DAVIS'
J&F against a reference written from the DAVIS code, and MOTA / IDF1 against ``motmetrics``."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from promptseg.errors import InputError
from promptseg.ops.boxes import box_iou
from promptseg.video.metrics import (
    TrackingMetrics,
    TrackingSummary,
    boundary_f_measure,
    boundary_map,
    jaccard,
    linear_sum_assignment,
)
from promptseg.video.metrics import _dilate_disk as dilate_disk

Box = list[float]
# one frame: ({gt id: box}, {pred id: box})
FrameBoxes = tuple[dict[int, Box], dict[int, Box]]


def box(x: float, y: float = 0.0, w: float = 10.0, h: float = 10.0) -> Box:
    return [x, y, x + w, y + h]


def run(frames: list[FrameBoxes], **kwargs: Any) -> TrackingSummary:
    acc = TrackingMetrics(**kwargs)
    for gt, pred in frames:
        acc.update(list(gt), list(gt.values()), None, list(pred), list(pred.values()), None)
    return acc.summary()


# --------------------------------------------------------------------------- hand-made sequences

A, B = box(0), box(100)  # two far-apart objects


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        # perfect: two objects, four frames, ids never change
        ([({1: A, 2: B}, {7: A, 8: B})] * 4, {"mota": 1.0, "idf1": 1.0, "idsw": 0, "fp": 0, "fn": 0}),
        # one object whose predicted id changes after two frames: one switch, the best id covers half
        (
            [({1: A}, {7: A})] * 2 + [({1: A}, {8: A})] * 2,
            {"mota": 0.75, "idf1": 0.5, "idsw": 1, "idtp": 2, "idfp": 2, "idfn": 2, "fragmentations": 0},
        ),
        # two objects whose ids swap at frame 2: two switches; IDF1 keeps 2 of 4 frames per object
        (
            [({1: A, 2: B}, {7: A, 8: B})] * 2 + [({1: A, 2: B}, {8: A, 7: B})] * 2,
            {"mota": 0.75, "idf1": 0.5, "idsw": 2},
        ),
        # a miss at frame 2 (a fragment) and a false positive at frame 1
        (
            [({1: A}, {7: A}), ({1: A}, {7: A, 9: B}), ({1: A}, {}), ({1: A}, {7: A})],
            {"mota": 0.5, "fn": 1, "fp": 1, "idsw": 0, "fragmentations": 1, "idf1": 0.75, "idp": 0.75},
        ),
        # the object leaves for two frames and comes back with a new id: still a switch (gaps count)
        (
            [({1: A}, {7: A}), ({}, {}), ({}, {}), ({1: A}, {8: A})],
            {"idsw": 1, "mota": 0.5, "fragmentations": 0, "idf1": 0.5},
        ),
        # IoU 0.45 < 0.5: never paired, a miss and a false positive every frame
        (
            [({1: box(0)}, {7: box(0, w=4.5)})] * 3,
            {"mota": -1.0, "fn": 3, "fp": 3, "matches": 0, "idf1": 0.0},
        ),
        # IoU exactly 0.5 pairs
        ([({1: box(0)}, {7: box(0, w=5)})] * 3, {"mota": 1.0, "matches": 3, "motp": 0.5}),
        # continuity: id 8 fits better from frame 1 on, but 7 still holds (IoU >= 0.5): no switch
        (
            [({1: box(0)}, {7: box(0)}), ({1: box(0)}, {7: box(3), 8: box(0)})],
            {"idsw": 0, "fp": 1, "matches": 2, "motp": (1 + 7 / 13) / 2},
        ),
        # an object missed in 5 of 6 frames is mostly lost; one always paired is mostly tracked
        (
            [({1: A, 2: B}, {7: A, 8: B})] + [({1: A, 2: B}, {7: A})] * 5,
            {"mostly_tracked": 1, "partly_tracked": 0, "mostly_lost": 1},
        ),
        # paired in 1 of 5 frames: 20 % is partly tracked (motmetrics' bounds)
        (
            [({1: A}, {7: A})] + [({1: A}, {})] * 4,
            {"mostly_tracked": 0, "partly_tracked": 1, "mostly_lost": 0},
        ),
    ],
)
def test_hand_made_sequences(frames: list[FrameBoxes], expected: dict[str, float]) -> None:
    s = run(frames)
    for key, value in expected.items():
        assert getattr(s, key) == pytest.approx(value), key


def test_empty_accumulator_gives_nan_ratios() -> None:
    s = TrackingMetrics().summary()
    assert s.frames == 0 and s.gt == 0
    assert math.isnan(s.mota) and math.isnan(s.idf1) and s.jf is None


def test_dont_care_ground_truth_and_regions() -> None:
    acc = TrackingMetrics()
    # frame 0: object 2 is flagged (barely visible): neither missed nor paired; the prediction on it
    # is dropped, and so is one lying mostly inside an ignore box, while a prediction that pairs with
    # real ground truth is kept even inside an ignore box.
    acc.update(
        [1, 2],
        [box(0), box(100)],
        None,
        [7, 8, 9],
        [box(0), box(101), box(202)],
        None,
        gt_ignore=[False, True],
        ignore_boxes=[box(-5, -5, 20, 20), box(200, 0, 15, 12)],
    )
    # frame 1: a prediction with only 30 % of its box inside the ignore box is still a false positive
    acc.update([1], [box(0)], None, [7, 9], [box(0), box(290)], None, ignore_boxes=[box(297)])
    s = acc.summary()
    assert (s.gt, s.matches, s.fn, s.fp, s.predictions) == (2, 2, 0, 1, 3)
    assert s.mota == pytest.approx(0.5)
    assert s.idf1 == pytest.approx(2 * 2 / (2 + 3))  # dropped predictions are out of the id counts


@pytest.mark.parametrize(
    ("call", "message"),
    [
        # three ids for two boxes
        (lambda acc: acc.update([1, 2, 3], [box(0), box(20)], None, [], [], None), "3 ids for 2 boxes"),
        # the same id twice in one frame
        (lambda acc: acc.update([1, 1], [box(0), box(20)], None, [], [], None), "repeated ids"),
        # boxes that are not (N, 4)
        (lambda acc: acc.update([1], [[0, 0, 1]], None, [], [], None), "shape (N, 4)"),
        # masks for one side only
        (
            lambda acc: acc.update([1], [box(0)], np.zeros((1, 8, 8), bool), [], [], None),
            "or for neither",
        ),
        # a flag per ground-truth box
        (lambda acc: acc.update([1], [box(0)], None, [], [], None, gt_ignore=[True, False]), "gt_ignore"),
    ],
)
def test_bad_input_is_refused(call: Any, message: str) -> None:
    acc = TrackingMetrics()
    with pytest.raises(InputError, match=re.escape(message)):
        call(acc)
    assert acc.frames == 0  # nothing was counted


# --------------------------------------------------------------------------------- Hungarian


def _check_against_scipy(cost: NDArray[np.float64]) -> None:
    scipy_opt = pytest.importorskip("scipy.optimize", reason="scipy is the reference (test only)")
    rows, cols = linear_sum_assignment(cost)
    ref_rows, ref_cols = scipy_opt.linear_sum_assignment(cost)
    assert len(rows) == len(ref_rows) == min(cost.shape)
    assert len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)
    assert np.all(np.diff(rows) > 0)
    assert cost[rows, cols].sum() == pytest.approx(cost[ref_rows, ref_cols].sum(), abs=1e-9)


@pytest.mark.parametrize("seed", range(60))
def test_hungarian_matches_scipy_on_random_matrices(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, m = (int(v) for v in rng.integers(1, 16, 2))
    kind = seed % 3
    if kind == 0:  # continuous: a unique optimum, so the very same assignment
        cost = rng.random((n, m))
        rows, cols = linear_sum_assignment(cost)
        ref = pytest.importorskip("scipy.optimize").linear_sum_assignment(cost)
        assert rows.tolist() == ref[0].tolist() and cols.tolist() == ref[1].tolist()
    elif kind == 1:  # small integers: many ties, compare the optimal cost
        cost = rng.integers(0, 4, (n, m)).astype(np.float64)
    else:  # negative and large values, as in maximisation (-counts)
        cost = -rng.integers(0, 1000, (n, m)).astype(np.float64)
    _check_against_scipy(cost)


@pytest.mark.parametrize(
    "shape",
    [(0, 0), (0, 3), (3, 0), (1, 1), (1, 7), (7, 1), (40, 60), (60, 40)],
)
def test_hungarian_shapes(shape: tuple[int, int]) -> None:
    cost = np.random.default_rng(1).random(shape)
    rows, cols = linear_sum_assignment(cost)
    assert len(rows) == len(cols) == min(shape)
    if min(shape):
        _check_against_scipy(cost)


def test_hungarian_refuses_non_finite_costs() -> None:
    with pytest.raises(InputError, match="finite"):
        linear_sum_assignment([[1.0, np.inf]])
    with pytest.raises(InputError, match="2-D"):
        linear_sum_assignment([1.0, 2.0])


# ------------------------------------------------------------------------------------ J and F


def _square(size: tuple[int, int], x: int, y: int, side: int) -> NDArray[np.bool_]:
    m = np.zeros(size, bool)
    m[y : y + side, x : x + side] = True
    return m


def _blob(rng: np.random.Generator, size: tuple[int, int]) -> NDArray[np.bool_]:
    h, w = size
    ys, xs = np.mgrid[:h, :w]
    m = np.zeros(size, bool)
    for _ in range(int(rng.integers(1, 4))):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(3, h / 3), rng.uniform(3, w / 3)
        m |= ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 <= 1
    return m


def _davis_f(pred: NDArray[np.bool_], gt: NDArray[np.bool_], bound_th: float = 0.008) -> float:
    """``db_eval_boundary`` of davis2017-evaluation, with OpenCV for skimage's disk dilation."""
    cv2 = pytest.importorskip("cv2")
    bound_pix = bound_th if bound_th >= 1 else math.ceil(bound_th * np.linalg.norm(pred.shape))
    r = int(bound_pix)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disk = ((xx**2 + yy**2) <= r**2).astype(np.uint8)
    fg_b, gt_b = boundary_map(pred), boundary_map(gt)
    fg_dil = cv2.dilate(fg_b.astype(np.uint8), disk).astype(bool)
    gt_dil = cv2.dilate(gt_b.astype(np.uint8), disk).astype(bool)
    gt_match, fg_match = gt_b & fg_dil, fg_b & gt_dil
    n_fg, n_gt = fg_b.sum(), gt_b.sum()
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision, recall = fg_match.sum() / n_fg, gt_match.sum() / n_gt
    return 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))


def _davis_seg2bmap(seg: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """``_seg2bmap`` of davis2017-evaluation, as written there."""
    seg = seg.astype(bool)
    e, s, se = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = seg ^ e | seg ^ s | seg ^ se
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = 0
    return b


def test_identical_and_empty_masks() -> None:
    m = _square((60, 80), 10, 10, 20)
    assert jaccard(m, m) == 1.0 and boundary_f_measure(m, m) == 1.0
    empty = np.zeros_like(m)
    assert jaccard(empty, empty) == 1.0 and boundary_f_measure(empty, empty) == 1.0
    assert jaccard(m, empty) == 0.0 and boundary_f_measure(empty, m) == 0.0


def test_shifted_masks() -> None:
    size = (360, 640)  # diagonal 734 px: tolerance ceil(0.008 * 734) = 6 px
    gt = _square(size, 100, 100, 40)
    near = _square(size, 104, 100, 40)  # 4 px to the right: every boundary pixel within 6 px
    far = _square(size, 120, 100, 40)  # 20 px: only the top and bottom edges overlap
    assert jaccard(near, gt) == pytest.approx(36 / 44)
    assert boundary_f_measure(near, gt) == 1.0
    assert jaccard(far, gt) == pytest.approx(20 / 60)
    assert 0.2 < boundary_f_measure(far, gt) < 0.8
    assert boundary_f_measure(far, gt) == pytest.approx(_davis_f(far, gt))
    assert boundary_f_measure(far, gt, tolerance=25) == 1.0  # a tolerance >= 1 is in pixels


@pytest.mark.parametrize("seed", range(12))
def test_f_measure_matches_the_davis_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    size = (int(rng.integers(40, 200)), int(rng.integers(40, 200)))
    gt = _blob(rng, size)
    pred = np.roll(_blob(rng, size) if seed % 2 else gt, int(rng.integers(-6, 7)), axis=1)
    if seed % 3 == 0:  # touch the last row and column, where DAVIS' boundary map is special
        gt[-3:, -5:] = True
    assert np.array_equal(boundary_map(gt), _davis_seg2bmap(gt))
    assert boundary_f_measure(pred, gt) == pytest.approx(_davis_f(pred, gt), abs=1e-12)


@pytest.mark.parametrize("radius", [0, 1, 2, 5, 9])
def test_disk_dilation_matches_opencv(radius: int) -> None:
    cv2 = pytest.importorskip("cv2")
    b = np.random.default_rng(radius).random((50, 70)) > 0.97
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disk = ((xx**2 + yy**2) <= radius**2).astype(np.uint8)
    assert np.array_equal(dilate_disk(b, radius), cv2.dilate(b.astype(np.uint8), disk).astype(bool))


def _mask_frames(
    size: tuple[int, int], gt: dict[int, NDArray[np.bool_]], pred: dict[int, NDArray[np.bool_]]
) -> tuple[Any, ...]:
    def boxes(ms: dict[int, NDArray[np.bool_]]) -> list[list[int]]:
        out = []
        for m in ms.values():
            ys, xs = np.nonzero(m)
            out.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] if len(xs) else [0, 0, 0, 0])
        return out

    def stack(ms: dict[int, NDArray[np.bool_]]) -> NDArray[np.bool_]:
        return np.array(list(ms.values()), bool).reshape(-1, *size)

    return list(gt), boxes(gt), stack(gt), list(pred), boxes(pred), stack(pred)


def test_jf_over_a_sequence() -> None:
    size = (100, 120)
    a, b = _square(size, 10, 10, 20), _square(size, 60, 50, 30)
    acc = TrackingMetrics()
    acc.update(*_mask_frames(size, {1: a, 2: b}, {5: b, 4: a}))  # ids are arbitrary
    acc.update(*_mask_frames(size, {1: a, 2: b}, {5: b, 4: a}))
    acc.update(*_mask_frames(size, {1: a, 2: b}, {5: b}))  # object 1 missed once: J = 2 / 3
    acc.update(*_mask_frames(size, {2: b}, {5: b, 4: a}))  # 4 shown where 1 is not: J = 2 / 4
    s = acc.summary()
    assert s.per_object[2]["j"] == 1.0 and s.per_object[2]["pred_id"] == 5
    assert s.per_object[1]["j"] == pytest.approx(2 / 4) and s.per_object[1]["frames"] == 4
    assert s.j == pytest.approx((1 + 0.5) / 2) and s.jf == pytest.approx((s.j + s.f) / 2)


def test_jf_of_an_object_without_partner_is_zero() -> None:
    size = (50, 50)
    acc = TrackingMetrics()
    acc.update(*_mask_frames(size, {1: _square(size, 5, 5, 10)}, {9: _square(size, 30, 30, 10)}))
    s = acc.summary()
    assert s.per_object[1]["pred_id"] is None and s.jf == 0.0


# ---------------------------------------------------------------------- cross-check: motmetrics


def _random_sequence(seed: int) -> list[tuple[list[int], NDArray[Any], list[int], NDArray[Any]]]:
    """Objects moving in straight lines, missed now and then, ids that sometimes jump, false alarms."""
    rng = np.random.default_rng(seed)
    n_obj, frames = int(rng.integers(2, 7)), 60
    pos, vel = rng.uniform(0, 200, (n_obj, 2)), rng.normal(0, 3, (n_obj, 2))
    size = rng.uniform(20, 50, (n_obj, 2))
    pred_id = np.arange(n_obj) + 100
    out = []
    for t in range(frames):
        if rng.random() < 0.1:
            pred_id[rng.integers(n_obj)] = rng.integers(100, 130)
        gids, gboxes, pids, pboxes = [], [], [], []
        for k in range(n_obj):
            if rng.random() < 0.85:
                p = pos[k] + vel[k] * t
                b = [*p, *(p + size[k])]
                gids.append(k)
                gboxes.append(b)
                if rng.random() < 0.8 and int(pred_id[k]) not in pids:
                    pids.append(int(pred_id[k]))
                    pboxes.append(np.array(b) + rng.normal(0, size[k].mean() * 0.15, 4))
        for j in range(int(rng.integers(0, 3))):
            p = rng.uniform(0, 200, 2)
            pids.append(200 + 3 * t + j)
            pboxes.append([*p, *(p + 30)])
        out.append((gids, np.array(gboxes).reshape(-1, 4), pids, np.array(pboxes).reshape(-1, 4)))
    return out


@pytest.mark.parametrize("seed", range(15))
def test_agrees_with_motmetrics(seed: int) -> None:
    mm = pytest.importorskip("motmetrics", reason="motmetrics is the reference: pip install motmetrics")
    theirs = mm.MOTAccumulator(auto_id=True)
    ours = TrackingMetrics()
    for gids, gboxes, pids, pboxes in _random_sequence(seed):
        # motmetrics' iou_matrix calls np.asfarray (gone in numpy 2): the same distances, made here
        iou = box_iou(gboxes, pboxes).astype(np.float64)
        theirs.update(gids, pids, np.where(iou >= 0.5, 1.0 - iou, np.nan))
        ours.update(gids, gboxes, None, pids, pboxes, None)
    names = [
        "mota", "motp", "idf1", "idp", "idr", "num_switches", "num_false_positives", "num_misses",
        "num_fragmentations", "mostly_tracked", "partially_tracked", "mostly_lost", "num_objects",
        "num_matches",
    ]  # fmt: skip
    ref = mm.metrics.create().compute(theirs, metrics=names, name="seq")
    s = ours.summary()
    mine = {
        "mota": s.mota,
        "motp": 1.0 - s.motp,  # motmetrics' MOTP is the mean distance 1 - IoU
        "idf1": s.idf1,
        "idp": s.idp,
        "idr": s.idr,
        "num_switches": s.idsw,
        "num_false_positives": s.fp,
        "num_misses": s.fn,
        "num_fragmentations": s.fragmentations,
        "mostly_tracked": s.mostly_tracked,
        "partially_tracked": s.partly_tracked,
        "mostly_lost": s.mostly_lost,
        "num_objects": s.gt,
        "num_matches": s.matches - s.idsw,  # motmetrics counts a switch apart from its matches
    }
    assert s.idsw > 0 and s.fp > 0 and s.fn > 0  # the sequence exercises every kind of error
    for name in names:
        assert mine[name] == pytest.approx(float(ref[name].iloc[0]), abs=1e-9), name
