"""Compositional prompts against ground truth: the public evaluation set, answered two ways.

1. ``ground-truth`` backend: a perfect detector of the annotated objects
   (:class:`~promptseg.query.evaluate.GroundTruthBackend`), so the scores measure how prompts are
   read and resolved, apart from detection;
2. ``offline`` backend: the real default detector (PicoDet-S + box-to-mask), end to end; predictions
   are matched to the ground truth by IoU >= 0.5.

Each is run with every answer function asked for: ``plain`` (the backend's own ``detect`` on the whole
prompt, conversation turns without memory: the baseline without a query engine) and ``query``
(``promptseg.query.ask``, follow-ups through ``Session.ask``), which is skipped with a note until
``promptseg.query.ask`` exists. Every prompt is timed: the time inside the backend is detection, the
rest is the query engine's overhead (target: <= 10 ms per prompt). Each configuration runs once to warm
up (lazy imports, caches), then once measured.

Usage: PROMPTSEG_MODELS=../shared/models python bench/queries.py [--answer plain query]
Writes bench/results/queries.json and bench/results/queries.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from _machine import machine_info  # noqa: E402
from latency import summary  # noqa: E402

from promptseg.query.evaluate import (  # noqa: E402
    KINDS,
    OVERHEAD_TARGET_MS,
    EvalSet,
    GroundTruthBackend,
    Report,
    evaluate,
    load_public_set,
    plain_answer,
    plain_turn,
    session_ask,
)

RESULTS = ROOT / "bench" / "results"


def answer_functions(names: list[str]) -> tuple[dict[str, tuple[Callable[..., Any], Any]], list[str]]:
    """The answer and conversation-turn functions asked for, and notes on those not available."""
    from promptseg.query import ask

    found: dict[str, tuple[Callable[..., Any], Any]] = {}
    notes: list[str] = []
    if "plain" in names:
        found["plain"] = (plain_answer, plain_turn)
    if "query" in names:
        found["query"] = (lambda image, prompt, backend: ask(image, prompt, backend=backend), session_ask)
    return found, notes


def run(eval_set: EvalSet, answer: Any, turn: Any, factory: Any, name: str) -> Report:
    evaluate(eval_set, answer, factory, converse=turn)  # warm-up: lazy imports, detector caches
    return evaluate(eval_set, answer, factory, converse=turn, name=name)


def load_average() -> str:
    try:
        return " / ".join(f"{v:.1f}" for v in os.getloadavg()) + " (1 / 5 / 15 min)"
    except OSError:
        return "unknown"


def timing(report: Report) -> dict[str, Any]:
    ms = {
        "total": [r.seconds * 1000 for r in report.results],
        "detection": [r.detect_seconds * 1000 for r in report.results],
        "overhead": [r.overhead_seconds * 1000 for r in report.results],
        "overhead_cpu": [r.overhead_cpu_seconds * 1000 for r in report.results],
    }
    out: dict[str, Any] = {k: summary(v) for k, v in ms.items()}
    for key in ("overhead", "overhead_cpu"):
        out[key]["max_ms"] = round(max(ms[key]), 2)
    out["prompts_over_target"] = sum(v > OVERHEAD_TARGET_MS for v in ms["overhead"])
    out["prompts_over_target_cpu"] = sum(v > OVERHEAD_TARGET_MS for v in ms["overhead_cpu"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answer", nargs="+", choices=["plain", "query"], default=["plain", "query"])
    args = parser.parse_args()
    if not os.environ.get("PROMPTSEG_MODELS"):
        raise SystemExit("set PROMPTSEG_MODELS to the offline weights folder (../shared/models)")
    os.environ.setdefault("PROMPTSEG_OFFLINE", "1")

    from promptseg import load_backend

    eval_set = load_public_set()
    offline = load_backend("offline")
    answers, notes = answer_functions(args.answer)
    backends = {"ground-truth": GroundTruthBackend, "offline": lambda photo: offline}
    runs: dict[str, Any] = {}
    for answer_name, (answer, turn) in answers.items():
        for backend_name, factory in backends.items():
            name = f"{answer_name} / {backend_name}"
            report = run(eval_set, answer, turn, factory, name)
            runs[name] = {**report.to_dict(), "timing_ms": timing(report)}
            print(f"{name}: F1 {runs[name]['overall']['f1']}, exact {runs[name]['overall']['exact']}")
    result = {
        "machine": machine_info("onnxruntime", "opencv-python-headless"),
        "set": {
            "prompts": len(eval_set.prompts),
            "per_image": dict(Counter(p.image for p in eval_set.prompts)),
            "per_kind": {k: sum(k in p.kinds for p in eval_set.prompts) for k in KINDS},
            "images": {i.id: {"photo": i.photo, "source": i.source} for i in eval_set.images.values()},
        },
        "offline_mask_method": offline.masks,
        "notes": notes,
        "runs": runs,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "queries.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "queries.md").write_text(render_md(result))
    print(render_md(result))


def render_md(r: dict[str, Any]) -> str:
    m, runs = r["machine"], r["runs"]
    names = list(runs)
    lines = [
        "# Compositional prompts against ground truth",
        "",
        f"{m['date']} · {m['cpu']} · {m['affinity']} cores · Python {m['python']} · "
        f"onnxruntime {m['versions'].get('onnxruntime')}",
        "",
        f"The public set (`promptseg/query/data/public.json`): {r['set']['prompts']} prompts on "
        f"{len(r['set']['images'])} photos. Runs are *answer / backend*: `plain` is the backend's own "
        "`detect` on the whole prompt (no query engine), `query` is `promptseg.query.ask`; `ground-truth` "
        "is a perfect detector of the annotated objects, `offline` the default detector with "
        f"`{r['offline_mask_method']}` masks, matched to the ground truth at IoU >= 0.5. F1, precision "
        "and recall are means over prompts; exact is the share of prompts answered with exactly the "
        "right objects. Command: `python bench/queries.py`.",
        "",
        *(f"Note: {n}." for n in r["notes"]),
        "",
        "Overhead is what a prompt costs beyond the backend: wall-clock time, and the CPU time of the "
        "answering thread (`time.thread_time`, which other processes on a busy machine do not inflate).",
        "",
        "| run | F1 | exact | precision | recall | mean IoU | overhead ms median / p90 / max | "
        f"over {OVERHEAD_TARGET_MS:g} ms | overhead CPU ms median / p90 / max | "
        f"over {OVERHEAD_TARGET_MS:g} ms |",
        "|---|---:|---:|---:|---:|---:|---|---:|---|---:|",
    ]
    for name in names:
        o, t = runs[name]["overall"], runs[name]["timing_ms"]
        iou = "–" if o["mean_iou"] is None else f"{o['mean_iou']:.3f}"
        lines.append(
            f"| {name} | {o['f1']:.3f} | {o['exact']:.3f} | {o['precision']:.3f} | {o['recall']:.3f} | "
            f"{iou} | {t['overhead']['median_ms']} / {t['overhead']['p90_ms']} / "
            f"{t['overhead']['max_ms']} | {t['prompts_over_target']} | "
            f"{t['overhead_cpu']['median_ms']} / {t['overhead_cpu']['p90_ms']} / "
            f"{t['overhead_cpu']['max_ms']} | {t['prompts_over_target_cpu']} |"
        )
    for title, key in (("kind", "by_kind"), ("relation", "by_relation"), ("image", "by_image")):
        groups = list(dict.fromkeys(g for name in names for g in runs[name][key]))
        lines += [
            "",
            f"F1 (exact) per {title}:",
            "",
            f"| {title} | prompts | " + " | ".join(names) + " |",
            "|---|---:|" + "---:|" * len(names),
        ]
        for g in groups:
            cells = [runs[name][key].get(g) for name in names]
            n = next(c["prompts"] for c in cells if c)
            text = " | ".join("–" if not c else f"{c['f1']:.2f} ({c['exact']:.2f})" for c in cells)
            lines.append(f"| {g} | {n} | {text} |")
    lines += [
        "",
        "Milliseconds per prompt (median / p90): total, inside the backend, overhead beyond it.",
        "",
        "| run | total | detection | overhead |",
        "|---|---|---|---|",
    ]
    for name in names:
        t = runs[name]["timing_ms"]
        cells = [f"{t[k]['median_ms']} / {t[k]['p90_ms']}" for k in ("total", "detection", "overhead")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"Load average when the run ended: {load_average()}.", ""]
    lines += ["", "Every prompt's answer, expected and selected ids: `bench/results/queries.json`.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
