"""Tracking accuracy, accumulated frame by frame: CLEAR-MOT, identity (IDF1) and DAVIS J&F.

Feed one frame at a time to :class:`TrackingMetrics` (ground truth and prediction, each with ids, boxes
and optionally masks), then read :meth:`TrackingMetrics.summary`. Nothing per frame is kept beyond a few
counters per id and per id pair, so memory stays flat however long the video.

Definitions (the standard ones; ``motmetrics`` gives the same MOTA / IDF1 / IDSW, see the tests):

- **Per-frame matching** (CLEAR-MOT, Bernardin & Stiefelhagen 2008): a ground-truth box and a predicted
  box may pair when their IoU is at least ``iou_threshold`` (0.5). A pair kept from the previous frame
  (same ground-truth id, same predicted id) is kept first if it still may pair; the rest are paired by a
  Hungarian assignment that takes as many pairs as possible, then the smallest total ``1 - IoU``
  (:func:`linear_sum_assignment`, a numpy Kuhn–Munkres). This is ``motmetrics``' algorithm.
- **FN** (misses): ground-truth boxes left unpaired; **FP**: predicted boxes left unpaired; **IDSW**: a
  ground-truth object paired with a different predicted id than the last one it was paired with (at any
  earlier frame, gaps allowed). **MOTA** ``= 1 - (FN + FP + IDSW) / GT`` (``GT``: ground-truth boxes over
  all frames; NaN when there are none). **MOTP**: the mean IoU of the pairs (higher is better;
  ``motmetrics``' ``motp`` is the mean distance ``1 - IoU``). **Fragmentations**: per ground-truth object,
  the runs of missed frames between its first and last paired frame. **MT / PT / ML**: objects paired in
  at least 80 %, 20 to 80 %, under 20 % of the frames they appear in.
- **IDF1** (Ristani et al. 2016): each ground-truth trajectory is assigned at most one predicted trajectory
  and vice versa, by a global bipartite matching that maximises **IDTP**, the number of frames in which
  the two boxes have IoU >= ``iou_threshold`` (equivalently, minimises IDFN + IDFP). **IDFN** / **IDFP**:
  ground-truth / predicted boxes not covered by their trajectory's partner. ``IDP = IDTP / (IDTP + IDFP)``,
  ``IDR = IDTP / (IDTP + IDFN)``, ``IDF1 = 2 IDTP / (2 IDTP + IDFP + IDFN)``.
- **J&F** (DAVIS, Perazzi et al. 2016 / Pont-Tuset et al. 2017): **J** is mask IoU, **F** the boundary
  F-measure: the boundary pixels of each mask (DAVIS' ``seg2bmap``) match when within ``ceil(0.008 x
  image diagonal)`` pixels (a disk) of the other's boundary; precision and recall of the matches give F.
  Objects are paired DAVIS-unsupervised style: one global assignment of ground-truth objects to
  predicted ids maximising the sum over frames of ``(J + F) / 2``. Each ground-truth object's J and F
  are averaged over the frames where it or its partner has a non-empty mask (a frame with only one of
  them scores 0; an object without partner scores 0 wherever it is visible). DAVIS also counts the
  frames where both are empty, as 1; leaving them out keeps an object that is in view for a few frames
  from scoring high by being absent. J, F and J&F are then averaged over ground-truth objects.

Don't-care regions (optional), for what is really there but not in the ground truth: ground-truth
entries flagged in ``gt_ignore`` (e.g. a person less than 20 % visible) and extra ``ignore_boxes`` (e.g.
people walking in the background video). Flagged entries are taken out before matching, so they are
never missed; after matching, a prediction left unpaired with at least half of its box inside a
don't-care box is dropped: not a false positive, and left out of the identity counts. (MOTChallenge
removes predictions matched to distractors at IoU >= 0.5 instead; the share of the prediction's box also
covers a detection of the visible part of a partly covered background person, whose box on the clean
background is larger.) Masks are not affected: J&F uses every ground-truth mask given and every
prediction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from promptseg.errors import InputError
from promptseg.ops.assignment import linear_sum_assignment
from promptseg.ops.boxes import box_iou

__all__ = [
    "TrackingMetrics",
    "TrackingSummary",
    "boundary_f_measure",
    "boundary_map",
    "jaccard",
    "linear_sum_assignment",
]

BOUNDARY_TOLERANCE = 0.008
"""DAVIS' boundary tolerance, as a fraction of the image diagonal."""

DONTCARE_COVER = 0.5
"""An unpaired prediction is dropped when at least this share of its box lies in a don't-care box."""


def _max_pairs(valid: NDArray[np.bool_], distance: NDArray[np.float64]) -> list[tuple[int, int]]:
    """As many pairs as possible among ``valid`` ones, then the least total distance (in [0, 1]).

    An invalid pair costs more than any set of valid ones (``motmetrics``' constant), so the optimum takes
    an invalid pair only where no valid one is left; those are then dropped.
    """
    if not valid.any():
        return []
    large = 2.0 * min(valid.shape) * max(1.0, float(np.abs(distance[valid]).max())) + 1.0
    rows, cols = linear_sum_assignment(np.where(valid, distance, large))
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if valid[r, c]]


def jaccard(a: ArrayLike, b: ArrayLike) -> float:
    """DAVIS' J: the IoU of two ``(H, W)`` bool masks; 1.0 when both are empty (unlike
    :func:`promptseg.ops.masks.mask_iou`, which is pairwise and gives 0 there)."""
    x, y = np.asarray(a, bool), np.asarray(b, bool)
    union = int(np.count_nonzero(x | y))
    return 1.0 if union == 0 else int(np.count_nonzero(x & y)) / union


def boundary_map(mask: ArrayLike) -> NDArray[np.bool_]:
    """DAVIS' ``seg2bmap``: the one-pixel-wide boundary of an ``(H, W)`` bool mask.

    A pixel is on the boundary when it differs from its right, lower or lower-right neighbour (outside
    the image counts as background), with DAVIS' handling of the last row and column.
    """
    seg = np.asarray(mask, bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    out: NDArray[np.bool_] = b
    return out


def _dilate_disk(b: NDArray[np.bool_], radius: int) -> NDArray[np.bool_]:
    """Binary dilation by the disk ``x² + y² <= radius²`` (skimage's ``disk``), outside = background.

    Row by row: each row offset ``dy`` of the disk is a horizontal run of half-width
    ``isqrt(r² - dy²)``, summed with a cumulative sum, so the cost is O((2r + 1) H W).
    """
    if radius <= 0:
        return b.copy()
    h, w = b.shape
    r = radius
    padded = np.pad(b, r).astype(np.int32)
    csum = np.zeros((h + 2 * r, w + 2 * r + 1), np.int32)
    np.cumsum(padded, axis=1, out=csum[:, 1:])
    out = np.zeros((h, w), bool)
    for dy in range(-r, r + 1):
        half = math.isqrt(r * r - dy * dy)
        rows = csum[r + dy : r + dy + h]
        out |= (rows[:, r + half + 1 : r + half + 1 + w] - rows[:, r - half : r - half + w]) > 0
    return out


def _boundary_radius(image_size: tuple[int, int], tolerance: float) -> int:
    return int(tolerance) if tolerance >= 1 else math.ceil(tolerance * math.hypot(*image_size))


def _f_from_boundaries(pb: NDArray[np.bool_], gb: NDArray[np.bool_], radius: int) -> float:
    n_pred, n_gt = int(pb.sum()), int(gb.sum())
    if n_pred == 0 and n_gt == 0:
        return 1.0
    if n_pred == 0 or n_gt == 0:
        return 0.0  # precision or recall is 0 (DAVIS sets the other to 1)
    precision = int(np.count_nonzero(pb & _dilate_disk(gb, radius))) / n_pred
    recall = int(np.count_nonzero(gb & _dilate_disk(pb, radius))) / n_gt
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def boundary_f_measure(pred: ArrayLike, gt: ArrayLike, *, tolerance: float = BOUNDARY_TOLERANCE) -> float:
    """DAVIS' F: the boundary F-measure of two ``(H, W)`` bool masks.

    Args:
        pred: predicted mask.
        gt: ground-truth mask, same shape.
        tolerance: match distance as a fraction of the image diagonal (rounded up to whole pixels), or,
            when >= 1, in pixels.

    Returns:
        F in [0, 1]; 1.0 when both masks are empty, 0.0 when only one is.
    """
    p, g = np.asarray(pred, bool), np.asarray(gt, bool)
    if p.shape != g.shape or p.ndim != 2:
        raise InputError(f"masks must be two (H, W) arrays of one shape, got {p.shape} and {g.shape}")
    radius = _boundary_radius(p.shape[:2], tolerance)
    box = _union_box([_mask_box(p), _mask_box(g)], p.shape, radius + 2)
    if box is None:
        return 1.0
    x1, y1, x2, y2 = box
    pc, gc = p[y1:y2, x1:x2], g[y1:y2, x1:x2]
    return _f_from_boundaries(_crop_boundary(pc, box, p.shape), _crop_boundary(gc, box, p.shape), radius)


_Box = tuple[int, int, int, int]


def _mask_box(mask: NDArray[np.bool_]) -> _Box | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _union_box(boxes: list[_Box | None], shape: tuple[int, ...], margin: int) -> _Box | None:
    present = [b for b in boxes if b is not None]
    if not present:
        return None
    h, w = shape[:2]
    return (
        max(0, min(b[0] for b in present) - margin),
        max(0, min(b[1] for b in present) - margin),
        min(w, max(b[2] for b in present) + margin),
        min(h, max(b[3] for b in present) + margin),
    )


def _crop_boundary(crop: NDArray[np.bool_], box: _Box, shape: tuple[int, ...]) -> NDArray[np.bool_]:
    """The full image's boundary map, computed on a crop whose margin keeps the mask off interior edges.

    ``boundary_map`` treats the crop's last row and column as the image's; that is only right where the
    crop really ends at the image's edge. Elsewhere the margin leaves them empty, so they come out empty
    either way.
    """
    b = boundary_map(crop)
    h, w = shape[:2]
    _, _, x2, y2 = box
    if y2 < h:
        b[-1, :] = False
    if x2 < w:
        b[:, -1] = False
    return b


def _cover(boxes: NDArray[np.float32], regions: NDArray[np.float32]) -> NDArray[np.float64]:
    """``(N,)``: the largest share of each box's area inside any one of the regions."""
    lt = np.maximum(boxes[:, None, :2], regions[None, :, :2])
    rb = np.minimum(boxes[:, None, 2:], regions[None, :, 2:])
    inter = np.prod((rb - lt).clip(min=0), axis=2).astype(np.float64)
    area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1).astype(np.float64)
    share = np.divide(inter, area[:, None], out=np.zeros_like(inter), where=area[:, None] > 0)
    out: NDArray[np.float64] = share.max(axis=1)
    return out


def _boxes(value: ArrayLike, what: str) -> NDArray[np.float32]:
    arr = np.asarray(value, dtype=np.float32)
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise InputError(f"{what} must have shape (N, 4) as xyxy pixels, got {arr.shape}")
    return arr


def _ids(value: ArrayLike, n: int, what: str) -> list[int]:
    arr = np.asarray(value).reshape(-1)
    if arr.shape[0] != n:
        raise InputError(f"{what} has {arr.shape[0]} ids for {n} boxes")
    ids = [int(i) for i in arr]
    if len(set(ids)) != len(ids):
        raise InputError(f"{what} has repeated ids in one frame: {sorted(ids)}")
    return ids


def _masks(value: ArrayLike | None, n: int, what: str) -> NDArray[np.bool_] | None:
    if value is None:
        return None
    arr = np.asarray(value, dtype=bool)
    if arr.ndim != 3 or arr.shape[0] != n:
        raise InputError(f"{what} must have shape (N, H, W) with N = {n}, got {arr.shape}")
    return arr


@dataclass(frozen=True)
class TrackingSummary:
    """What :meth:`TrackingMetrics.summary` reports (see the module docstring for the definitions).

    Counts are over all frames; ratios are NaN where their denominator is 0; the J&F fields are None when
    no masks were given.
    """

    frames: int
    gt: int  # ground-truth boxes (don't-care ones excluded)
    predictions: int  # predicted boxes (those dropped on don't-care regions excluded)
    matches: int
    fp: int
    fn: int
    idsw: int
    fragmentations: int
    mota: float
    motp: float
    gt_tracks: int
    pred_tracks: int
    mostly_tracked: int
    partly_tracked: int
    mostly_lost: int
    idtp: int
    idfp: int
    idfn: int
    idp: float
    idr: float
    idf1: float
    j: float | None = None
    f: float | None = None
    jf: float | None = None
    per_object: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN left as float NaN)."""
        out = asdict(self)
        out["per_object"] = {str(k): dict(v) for k, v in self.per_object.items()}
        return out


class TrackingMetrics:
    """Accumulates CLEAR-MOT, IDF1 and J&F over a video, one :meth:`update` per frame.

    Args:
        iou_threshold: minimum box IoU for a ground-truth box and a predicted box to count as the same
            object (0.5, the MOTChallenge convention).
        boundary_tolerance: DAVIS' F tolerance, a fraction of the image diagonal (or pixels when >= 1).

    Example:
        >>> acc = TrackingMetrics()
        >>> acc.update([1], [[0, 0, 10, 10]], None, [7], [[1, 0, 10, 10]], None)
        >>> acc.update([1], [[2, 0, 12, 10]], None, [7], [[2, 0, 12, 10]], None)
        >>> s = acc.summary()
        >>> (s.mota, s.idf1, s.idsw)
        (1.0, 1.0, 0)
    """

    def __init__(self, *, iou_threshold: float = 0.5, boundary_tolerance: float = BOUNDARY_TOLERANCE) -> None:
        if not 0.0 < iou_threshold <= 1.0:
            raise InputError(f"iou_threshold must be in (0, 1], got {iou_threshold!r}")
        if boundary_tolerance <= 0:
            raise InputError(f"boundary_tolerance must be > 0, got {boundary_tolerance!r}")
        self.iou_threshold = float(iou_threshold)
        self.boundary_tolerance = float(boundary_tolerance)
        self.frames = 0
        # CLEAR-MOT
        self._last_pred: dict[int, int] = {}  # ground-truth id -> the predicted id it was last paired with
        self._gt = self._pred = self._matches = self._fp = self._fn = self._idsw = self._frag = 0
        self._iou_sum = 0.0
        self._seen: dict[int, int] = {}  # ground-truth id -> frames present
        self._hit: dict[int, int] = {}  # ground-truth id -> frames paired
        self._in_gap: dict[int, bool] = {}  # missed since its last pairing (a fragment if paired again)
        # identity
        self._pred_seen: dict[int, int] = {}
        self._pair_hits: dict[tuple[int, int], int] = {}
        # J&F
        self._masks_given = False
        self._gt_shown: dict[int, int] = {}  # ground-truth id -> frames with a non-empty mask
        self._pred_shown: dict[int, int] = {}
        self._both_shown: dict[tuple[int, int], int] = {}
        self._j_sum: dict[tuple[int, int], float] = {}
        self._f_sum: dict[tuple[int, int], float] = {}

    def update(
        self,
        gt_ids: ArrayLike,
        gt_boxes: ArrayLike,
        gt_masks: ArrayLike | None,
        pred_ids: ArrayLike,
        pred_boxes: ArrayLike,
        pred_masks: ArrayLike | None,
        *,
        gt_ignore: ArrayLike | None = None,
        ignore_boxes: ArrayLike | None = None,
    ) -> None:
        """Add one frame.

        Args:
            gt_ids: ``(N,)`` int ground-truth ids, unique in the frame.
            gt_boxes: ``(N, 4)`` xyxy pixels.
            gt_masks: ``(N, H, W)`` bool masks, or None (no J&F).
            pred_ids: ``(M,)`` int predicted track ids, unique in the frame.
            pred_boxes: ``(M, 4)`` xyxy pixels.
            pred_masks: ``(M, H, W)`` bool masks, or None (no J&F).
            gt_ignore: ``(N,)`` bool, True for don't-care ground truth (see the module docstring).
            ignore_boxes: ``(K, 4)`` xyxy don't-care regions without identity.

        Raises:
            InputError: for mismatched lengths, repeated ids in the frame or masks of different sizes.
        """
        gb = _boxes(gt_boxes, "gt_boxes")
        pb = _boxes(pred_boxes, "pred_boxes")
        gids = _ids(gt_ids, len(gb), "gt_ids")
        pids = _ids(pred_ids, len(pb), "pred_ids")
        gm = _masks(gt_masks, len(gb), "gt_masks")
        pm = _masks(pred_masks, len(pb), "pred_masks")
        ignore = np.zeros(len(gb), bool) if gt_ignore is None else np.asarray(gt_ignore, bool).reshape(-1)
        if ignore.shape[0] != len(gb):
            raise InputError(f"gt_ignore has {ignore.shape[0]} flags for {len(gb)} ground-truth boxes")
        extra = _boxes(np.zeros((0, 4)) if ignore_boxes is None else ignore_boxes, "ignore_boxes")
        if (gm is None) != (pm is None):
            raise InputError("give masks for both ground truth and predictions, or for neither")
        if gm is not None and pm is not None and gm.shape[1:] != pm.shape[1:] and len(gm) and len(pm):
            raise InputError(f"mask sizes differ: ground truth {gm.shape[1:]}, prediction {pm.shape[1:]}")
        self.frames += 1
        if gm is not None and pm is not None:
            self._masks_given = True
            self._update_masks(gids, gm, pids, pm)

        real = ~ignore
        dontcare = np.concatenate([gb[ignore], extra])
        self._update_boxes([g for g, k in zip(gids, real, strict=True) if k], gb[real], pids, pb, dontcare)

    def _update_boxes(
        self,
        gids: list[int],
        gb: NDArray[np.float32],
        pids: list[int],
        pb: NDArray[np.float32],
        dontcare: NDArray[np.float32],
    ) -> None:
        iou = box_iou(gb, pb).astype(np.float64)
        valid = iou >= self.iou_threshold
        pairs: list[tuple[int, int]] = []
        g_free = np.ones(len(gids), bool)
        p_free = np.ones(len(pids), bool)
        col = {p: j for j, p in enumerate(pids)}
        for i, g in enumerate(gids):  # 1. keep last frame's pairs that still hold
            prev = self._last_pred.get(g)
            j = None if prev is None else col.get(prev)
            if j is not None and p_free[j] and valid[i, j]:
                pairs.append((i, j))
                g_free[i] = p_free[j] = False
        sub = valid & g_free[:, None] & p_free[None, :]  # 2. the rest: Hungarian
        for i, j in _max_pairs(sub, 1.0 - iou):
            g, p = gids[i], pids[j]
            if g in self._last_pred and self._last_pred[g] != p:
                self._idsw += 1
            pairs.append((i, j))
            g_free[i] = p_free[j] = False

        kept = np.ones(len(pids), bool)
        if len(dontcare) and p_free.any():  # 3. unpaired predictions inside a don't-care region go
            kept = ~(p_free & (_cover(pb, dontcare) >= DONTCARE_COVER))
        self._gt += len(gids)
        self._pred += int(kept.sum())
        for g in gids:
            self._seen[g] = self._seen.get(g, 0) + 1
        for p, k in zip(pids, kept, strict=True):
            if k:
                self._pred_seen[p] = self._pred_seen.get(p, 0) + 1
        for r, c in zip(*np.nonzero(valid & kept[None, :]), strict=True):
            key = (gids[r], pids[c])
            self._pair_hits[key] = self._pair_hits.get(key, 0) + 1

        for i, j in pairs:
            g = gids[i]
            self._last_pred[g] = pids[j]
            self._iou_sum += float(iou[i, j])
            self._hit[g] = self._hit.get(g, 0) + 1
            if self._in_gap.get(g):
                self._frag += 1
            self._in_gap[g] = False
        self._matches += len(pairs)
        for row in np.flatnonzero(g_free):
            g = gids[int(row)]
            if g in self._in_gap:  # paired before: a miss now opens (or continues) a gap
                self._in_gap[g] = True
        self._fn += int(g_free.sum())
        self._fp += int((p_free & kept).sum())

    def _update_masks(
        self, gids: list[int], gm: NDArray[np.bool_], pids: list[int], pm: NDArray[np.bool_]
    ) -> None:
        shape = gm.shape[1:] if len(gm) else pm.shape[1:]
        if len(shape) != 2:
            return
        radius = _boundary_radius((int(shape[0]), int(shape[1])), self.boundary_tolerance)
        gboxes = [_mask_box(m) for m in gm]
        pboxes = [_mask_box(m) for m in pm]
        for g, b in zip(gids, gboxes, strict=True):
            if b is not None:
                self._gt_shown[g] = self._gt_shown.get(g, 0) + 1
        for p, b in zip(pids, pboxes, strict=True):
            if b is not None:
                self._pred_shown[p] = self._pred_shown.get(p, 0) + 1
        reach = radius + 1  # boundaries farther apart than this cannot match: J = F = 0
        for i, (g, gbx) in enumerate(zip(gids, gboxes, strict=True)):
            if gbx is None:
                continue
            for j, (p, pbx) in enumerate(zip(pids, pboxes, strict=True)):
                if pbx is None:
                    continue
                key = (g, p)
                self._both_shown[key] = self._both_shown.get(key, 0) + 1
                apart = (
                    gbx[0] >= pbx[2] + reach
                    or pbx[0] >= gbx[2] + reach
                    or gbx[1] >= pbx[3] + reach
                    or pbx[1] >= gbx[3] + reach
                )
                if apart:
                    continue
                box = _union_box([gbx, pbx], shape, radius + 2)
                assert box is not None  # both masks are non-empty here
                x1, y1, x2, y2 = box
                gc, pc = gm[i, y1:y2, x1:x2], pm[j, y1:y2, x1:x2]
                j_value = jaccard(pc, gc)
                f_value = _f_from_boundaries(
                    _crop_boundary(pc, box, shape), _crop_boundary(gc, box, shape), radius
                )
                self._j_sum[key] = self._j_sum.get(key, 0.0) + j_value
                self._f_sum[key] = self._f_sum.get(key, 0.0) + f_value

    def summary(self) -> TrackingSummary:
        """The metrics over every frame so far (cheap; can be called at any time)."""
        gt_list = sorted(self._seen)
        pred_list = sorted(self._pred_seen)
        idtp = 0
        if gt_list and pred_list and self._pair_hits:
            hits = np.zeros((len(gt_list), len(pred_list)))
            gi = {g: i for i, g in enumerate(gt_list)}
            pj = {p: j for j, p in enumerate(pred_list)}
            for (g, p), n in self._pair_hits.items():
                hits[gi[g], pj[p]] = n
            rows, cols = linear_sum_assignment(-hits)
            idtp = int(hits[rows, cols].sum())
        idfn = self._gt - idtp
        idfp = self._pred - idtp
        ratios = [self._hit.get(g, 0) / self._seen[g] for g in gt_list]
        out: dict[str, Any] = {
            "frames": self.frames,
            "gt": self._gt,
            "predictions": self._pred,
            "matches": self._matches,
            "fp": self._fp,
            "fn": self._fn,
            "idsw": self._idsw,
            "fragmentations": self._frag,
            "mota": _ratio(self._gt - self._fn - self._fp - self._idsw, self._gt),
            "motp": _ratio(self._iou_sum, self._matches),
            "gt_tracks": len(gt_list),
            "pred_tracks": len(pred_list),
            "mostly_tracked": sum(r >= 0.8 for r in ratios),
            "partly_tracked": sum(0.2 <= r < 0.8 for r in ratios),
            "mostly_lost": sum(r < 0.2 for r in ratios),
            "idtp": idtp,
            "idfp": idfp,
            "idfn": idfn,
            "idp": _ratio(idtp, idtp + idfp),
            "idr": _ratio(idtp, idtp + idfn),
            "idf1": _ratio(2 * idtp, 2 * idtp + idfp + idfn),
        }
        if self._masks_given:
            out.update(self._jf())
        return TrackingSummary(**out)

    def _jf(self) -> dict[str, Any]:
        gts = sorted(g for g, n in self._gt_shown.items() if n > 0)
        if not gts:
            return {"j": math.nan, "f": math.nan, "jf": math.nan, "per_object": {}}
        preds = sorted(self._pred_shown)
        partner: dict[int, int] = {}
        if preds:
            score = np.zeros((len(gts), len(preds)))
            gi = {g: i for i, g in enumerate(gts)}
            pj = {p: j for j, p in enumerate(preds)}
            for (g, p), s in self._j_sum.items():
                score[gi[g], pj[p]] += (s + self._f_sum[(g, p)]) / 2
            rows, cols = linear_sum_assignment(-score)
            partner = {gts[r]: preds[c] for r, c in zip(rows, cols, strict=True) if score[r, c] > 0}
        per_object: dict[int, dict[str, Any]] = {}
        for g in gts:
            if g not in partner:
                per_object[g] = {"pred_id": None, "frames": self._gt_shown[g], "j": 0.0, "f": 0.0, "jf": 0.0}
                continue
            p = partner[g]
            union = self._gt_shown[g] + self._pred_shown[p] - self._both_shown.get((g, p), 0)
            j = self._j_sum.get((g, p), 0.0) / union
            f = self._f_sum.get((g, p), 0.0) / union
            per_object[g] = {"pred_id": p, "frames": union, "j": j, "f": f, "jf": (j + f) / 2}
        j_mean = float(np.mean([o["j"] for o in per_object.values()]))
        f_mean = float(np.mean([o["f"] for o in per_object.values()]))
        return {"j": j_mean, "f": f_mean, "jf": (j_mean + f_mean) / 2, "per_object": per_object}


def _ratio(num: float, den: float) -> float:
    return float(num) / den if den else math.nan
