"""GrabCut on a shrunk crop of each box, with a plausibility check and a fallback.

GrabCut (Rother et al. 2004, ``cv2.grabCut``) fits colour mixtures to the box and to its surroundings
and cuts the graph of pixels between them. Where it works its edges follow the object closely, but on
cluttered photos it often fails in one of two ways: the object's colours also occur around the box and
the mask collapses to nothing (occluded chairs, tables, people in a crowd), or the first iteration never
separates anything and returns the whole box. So a result is accepted only when it covers a plausible
share of the box (``plausible``, 20-95 % by default); otherwise the box gets the fallback, the colour
refiner by default.

Determinism: ``cv2.grabCut`` initialises its mixtures with k-means on OpenCV's random generator, so
two calls on the same crop can differ, and it advances the caller's generator. Each call here runs in a
worker thread (OpenCV's generator is per thread) right after ``cv2.setRNGSeed(seed)``: results are
repeatable, whatever the thread, and the caller's own OpenCV random state is left untouched.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from promptseg.errors import ConfigError
from promptseg.refine._color import ColorPriorRefiner
from promptseg.refine._common import (
    Crop,
    Region,
    box_regions,
    check_fraction,
    check_inputs,
    check_int,
    check_range,
    ellipse_mask,
    is_empty,
    load_cv2,
    make_crop,
    soft_to_mask,
    to_small_frame,
)
from promptseg.types import BoolArray, UInt8Array

_INITS = ("rect", "color")
_FALLBACKS = ("color", "ellipse", "box")


def run_grabcut(
    cv2: ModuleType,
    crop: Crop,
    *,
    iterations: int,
    seed: int,
    init_prob: NDArray[np.float32] | None = None,
) -> BoolArray | None:
    """One seeded ``cv2.grabCut`` on a crop; the foreground in the small frame, or None if it cannot run.

    Args:
        cv2: the OpenCV module.
        crop: the crop; pixels outside its box are fixed as background.
        iterations: GrabCut iterations.
        seed: seed of OpenCV's (per-thread) random generator, set right before the call.
        init_prob: None to initialise with the box as GrabCut's rectangle; else ``(h, w)`` float32 in the
            small frame: inside the box, "probably object" where it is above 0.5, "probably background"
            elsewhere (GrabCut's mask initialisation).

    Returns:
        ``(h, w)`` bool, or None when the crop has no background outside the box, no object pixels to
        start from, or OpenCV refuses.
    """
    inside = crop.inside
    if not inside.any() or inside.all():
        return None
    labels = np.zeros(inside.shape, np.uint8)
    bgd = np.zeros((1, 65), np.float64)
    fgd = np.zeros((1, 65), np.float64)
    if init_prob is None:
        ys = np.flatnonzero(inside.any(axis=1))
        xs = np.flatnonzero(inside.any(axis=0))
        rect: tuple[int, int, int, int] | None = (
            int(xs[0]),
            int(ys[0]),
            int(xs[-1] - xs[0] + 1),
            int(ys[-1] - ys[0] + 1),
        )
        mode = cv2.GC_INIT_WITH_RECT
    else:
        labels[inside] = cv2.GC_PR_BGD
        labels[inside & (init_prob > 0.5)] = cv2.GC_PR_FGD
        if not (labels == cv2.GC_PR_FGD).any():
            return None
        rect = None
        mode = cv2.GC_INIT_WITH_MASK
    cv2.setRNGSeed(seed)
    try:
        cv2.grabCut(crop.small, labels, rect, bgd, fgd, iterations, mode)
    except cv2.error:
        return None
    # GC_FGD = 1 and GC_PR_FGD = 3 are the odd labels
    fg: BoolArray = (labels & 1).astype(bool)
    return fg


@dataclass(frozen=True)
class GrabCutRefiner:
    """Box to mask with GrabCut on a shrunk crop, checked for plausibility, with a fallback.

    Each mask lies inside its box rounded outwards to whole pixels (and clipped to the image).

    Args:
        pad: margin around the box that GrabCut learns the background from, as a fraction of the box's
            width (left/right) or height (top/bottom); at least 1 pixel. Small margins work best: a wide
            margin brings in other objects whose colours then explain the object away.
        max_side: the box plus margin is shrunk so that its long side is at most this many pixels
            (GrabCut's cost grows with the pixel count: ~7 ms per box at 64, ~30 ms at 192).
        iterations: GrabCut iterations (more is not better here: later iterations drift).
        init: ``"rect"``: the box is GrabCut's rectangle; ``"color"``: start from the colour refiner's
            posterior (GrabCut's mask initialisation).
        plausible: ``(low, high)``: a GrabCut mask covering at most ``low`` or at least ``high`` of its box
            is rejected.
        fallback: what a rejected box gets: ``"color"`` (the colour refiner), ``"ellipse"`` or ``"box"``.
        largest_component: keep only the largest connected component of each GrabCut mask.
        seed: OpenCV random seed set before each GrabCut call (in a worker thread; see the module notes).
        workers: threads running boxes in parallel (OpenCV releases the GIL).

    Raises:
        ConfigError: for an option out of range.
        MissingDependencyError: when OpenCV is not installed (the ``onnx`` extra).
    """

    pad: float = 0.05
    max_side: int = 64
    iterations: int = 1
    init: Literal["rect", "color"] = "rect"
    plausible: tuple[float, float] = (0.2, 0.95)
    fallback: Literal["color", "ellipse", "box"] = "color"
    largest_component: bool = True
    seed: int = 0
    workers: int = 2
    name: str = field(default="grabcut", init=False, repr=False)
    _color: ColorPriorRefiner = field(
        default_factory=ColorPriorRefiner, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        check_fraction(self.pad, "pad", high=4.0)
        check_int(self.max_side, "max_side", low=8)
        check_int(self.iterations, "iterations", low=1)
        check_int(self.workers, "workers", low=1)
        check_int(self.seed, "seed", low=0)
        check_range(self.plausible, "plausible")
        if self.init not in _INITS:
            raise ConfigError(f"init must be one of {', '.join(_INITS)}; got {self.init!r}")
        if self.fallback not in _FALLBACKS:
            raise ConfigError(f"fallback must be one of {', '.join(_FALLBACKS)}; got {self.fallback!r}")
        load_cv2()

    def refine(self, image: Any, xyxy: ArrayLike) -> BoolArray:
        """Segment the object in each box.

        Args:
            image: ``(H, W, 3)`` uint8 RGB.
            xyxy: ``(N, 4)`` boxes ``(x1, y1, x2, y2)`` in image pixels (floats; partly or wholly outside
                the image is allowed).

        Returns:
            ``(N, H, W)`` bool masks, each inside its box rounded outwards to whole pixels and clipped to
            the image; a box of zero area or outside the image gives an empty mask.

        Raises:
            InputError: for an image that is not ``(H, W, 3)`` uint8 or boxes that are not ``(N, 4)``
                finite xyxy with ``x1 <= x2`` and ``y1 <= y2``.
        """
        cv2 = load_cv2()
        img, boxes = check_inputs(image, xyxy)
        h, w = img.shape[:2]
        out = np.zeros((boxes.shape[0], h, w), bool)
        regions = [(i, r) for i, r in enumerate(box_regions(boxes, (h, w)).tolist()) if not is_empty(r)]
        if not regions:
            return out

        def task(item: tuple[int, list[int]]) -> BoolArray:
            x1, y1, x2, y2 = item[1]
            return self.refine_region(cv2, img, (x1, y1, x2, y2))

        # Always in worker threads, also for one box: seeding OpenCV's generator there leaves the
        # caller's thread's generator alone.
        with ThreadPoolExecutor(max_workers=min(self.workers, len(regions))) as pool:
            masks = list(pool.map(task, regions))
        for (i, (x1, y1, x2, y2)), mask in zip(regions, masks, strict=True):
            out[i, y1:y2, x1:x2] = mask
        return out

    def refine_region(self, cv2: ModuleType, image: UInt8Array, region: Region) -> BoolArray:
        """The mask of one non-empty box region: ``(y2 - y1, x2 - x1)`` bool.

        Seeds OpenCV's random generator of the calling thread: call it from a worker thread.
        """
        mask = self.grabcut_region(cv2, image, region)
        if mask is not None:
            return mask
        x1, y1, x2, y2 = region
        if self.fallback == "color":
            return self._color.refine_region(cv2, image, region)
        if self.fallback == "ellipse":
            return ellipse_mask(y2 - y1, x2 - x1)
        return np.ones((y2 - y1, x2 - x1), bool)

    def grabcut_region(self, cv2: ModuleType, image: UInt8Array, region: Region) -> BoolArray | None:
        """GrabCut's mask of one region, or None when it failed or is implausible (no fallback)."""
        crop = make_crop(cv2, image, region, pad=self.pad, min_pad=1, max_side=self.max_side)
        init_prob = None
        if self.init == "color":
            color_crop = self._color.crop(cv2, image, region)
            prob = self._color.posterior(color_crop)
            if prob is None:
                return None
            wx1, wy1, wx2, wy2 = color_crop.window
            full = cv2.resize(prob, (wx2 - wx1, wy2 - wy1), interpolation=cv2.INTER_LINEAR)
            init_prob = to_small_frame(cv2, full, color_crop.window, crop)
        fg = run_grabcut(cv2, crop, iterations=self.iterations, seed=self.seed, init_prob=init_prob)
        if fg is None:
            return None
        low, high = self.plausible
        share = float(fg[crop.inside].mean())
        if not low < share < high:
            return None
        mask = soft_to_mask(
            cv2, crop, region, fg.astype(np.float32), threshold=0.5, keep_largest=self.largest_component
        )
        return mask if mask.any() else None
