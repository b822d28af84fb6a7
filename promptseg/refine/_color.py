"""The default refiner: a colour model of the box against its surroundings, weighted by a shape prior.

For each box, a window of the box plus a margin is shrunk to at most ``max_side`` pixels. The margin
outside the box gives a colour histogram of the background; the box, weighted by a prior that is high in
the box centre and low near its edges, gives one of the object. Each pixel's posterior probability of
being the object is Bayes' rule with these two::

    P(object | colour, position) = p * f(c) / (p * f(c) + (1 - p) * b(c))
    p = lo + (hi - lo) * exp(-r^2 / (2 sigma^2)),  r = elliptic radius from the box centre (1 on the
    inscribed ellipse)

and the object histogram is re-estimated from the posterior (a couple of EM steps, as GrabCut does
with its colour models). The posterior is blurred lightly, upsampled bilinearly to full resolution,
thresholded at 0.5 and reduced to its largest connected component.

It is GrabCut's colour model without GrabCut's graph cut, plus the shape prior. That is deterministic
(no random initialisation), under 1 ms per box (4 ms for the 7 people of the VOC photo), and never
collapses: GrabCut alone returns an empty mask or the whole box whenever the object's colours also
appear around it (cluttered scenes, occlusion), which on the VOC photo is 15 of 19 boxes. Measured
numbers are in ``bench/results/mask_refine.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from promptseg.errors import ConfigError
from promptseg.refine._common import (
    Crop,
    Region,
    check_fraction,
    check_int,
    check_range,
    ellipse_mask,
    elliptic_radius,
    load_cv2,
    make_crop,
    refine_each,
    soft_to_mask,
)
from promptseg.types import BoolArray, UInt8Array

# A colour never seen in a histogram gets this fraction of the uniform probability, so that one
# unseen colour cannot veto a pixel on its own.
_HIST_FLOOR = 0.1
# Fewer background pixels than this and there is no background model to compare against.
_MIN_RING_PIXELS = 8
# Crop margin floor in full-resolution pixels: even a tiny box gets some background around it.
_MIN_PAD = 2


@dataclass(frozen=True)
class ColorPriorRefiner:
    """Box to mask by colour likelihood against the box's surroundings, times a centred shape prior.

    Deterministic, no weights, under 1 ms per box. Each mask lies inside its box rounded
    outwards to whole pixels (and clipped to the image); the margin around the box is only looked at.

    Args:
        pad: margin around the box that samples the background, as a fraction of the box's width
            (left/right) or height (top/bottom); at least 2 pixels.
        max_side: the box plus margin is shrunk so that its long side is at most this many pixels.
        color_bits: bits per RGB channel of the colour histograms (4: 16^3 bins).
        iterations: EM steps re-estimating the object's colours from the posterior.
        prior_sigma: width of the Gaussian shape prior, in units of the box's half sides.
        prior_range: ``(edge, centre)``: the prior probability of "object" far from and at the box centre.
        smoothing: Gaussian blur of the posterior, sigma in small-frame pixels (0: none).
        threshold: a pixel is foreground when its (upsampled) posterior is above this.
        largest_component: keep only the largest connected component of each mask.
        fill_holes: fill holes in each mask (off: measured no better, and it closes real gaps such as the
            space between a chair's legs).

    Raises:
        ConfigError: for an option out of range.
        MissingDependencyError: when OpenCV is not installed (the ``onnx`` extra).

    Example:
        >>> refiner = ColorPriorRefiner()
        >>> masks = refiner.refine(image, [[10, 20, 110, 220]])     # doctest: +SKIP
        >>> masks.shape                                              # doctest: +SKIP
        (1, 480, 640)
    """

    pad: float = 0.1
    max_side: int = 64
    color_bits: int = 4
    iterations: int = 2
    prior_sigma: float = 0.5
    prior_range: tuple[float, float] = (0.3, 0.8)
    smoothing: float = 1.0
    threshold: float = 0.5
    largest_component: bool = True
    fill_holes: bool = False
    name: str = field(default="color", init=False, repr=False)

    def __post_init__(self) -> None:
        check_fraction(self.pad, "pad", high=4.0)
        check_int(self.max_side, "max_side", low=8)
        check_int(self.color_bits, "color_bits", low=1)
        if self.color_bits > 6:
            raise ConfigError(f"color_bits must be at most 6 (2^18 bins), got {self.color_bits}")
        check_int(self.iterations, "iterations", low=1)
        check_fraction(self.prior_sigma, "prior_sigma", low=0.05, high=10.0)
        check_range(self.prior_range, "prior_range")
        check_fraction(self.smoothing, "smoothing", high=10.0)
        check_fraction(self.threshold, "threshold")
        load_cv2()

    def refine(self, image: Any, xyxy: ArrayLike) -> BoolArray:
        """Segment the object in each box.

        Args:
            image: ``(H, W, 3)`` uint8 RGB.
            xyxy: ``(N, 4)`` boxes ``(x1, y1, x2, y2)`` in image pixels (floats; partly or wholly outside
                the image is allowed).

        Returns:
            ``(N, H, W)`` bool masks, each inside its box rounded outwards to whole pixels and clipped to
            the image. A box of zero area or outside the image gives an empty mask; a box whose
            surroundings are all inside it (it covers the whole image) gives its inscribed ellipse.

        Raises:
            InputError: for an image that is not ``(H, W, 3)`` uint8 or boxes that are not ``(N, 4)``
                finite xyxy with ``x1 <= x2`` and ``y1 <= y2``.
        """
        cv2 = load_cv2()
        return refine_each(image, xyxy, lambda img, region: self.refine_region(cv2, img, region))

    def crop(self, cv2: ModuleType, image: UInt8Array, region: Region) -> Crop:
        """The window this refiner looks at for ``region`` (used by refiners built on this one)."""
        return make_crop(cv2, image, region, pad=self.pad, min_pad=_MIN_PAD, max_side=self.max_side)

    def posterior(
        self, crop: Crop, *, saliency: NDArray[np.float32] | None = None, saliency_weight: float = 0.0
    ) -> NDArray[np.float32] | None:
        """The smoothed posterior of "object" in ``crop``'s small frame, or None without a background.

        Args:
            crop: from :meth:`crop`.
            saliency: optional ``(h, w)`` float32 in [0, 1] in the small frame, mixed into the shape prior.
            saliency_weight: weight of ``saliency`` in the prior (0: ignore it).

        Returns:
            ``(h, w)`` float32 in [0, 1], zero outside the box; None when fewer than 8 pixels of the window
            lie outside the box (nothing to learn the background from).
        """
        inside = crop.inside
        ring = crop.ring
        if int(ring.sum()) < _MIN_RING_PIXELS or not inside.any():
            return None
        lo, hi = self.prior_range
        r = elliptic_radius(inside.shape, crop.box)
        prior = lo + (hi - lo) * np.exp(-(r**2) / (2.0 * self.prior_sigma**2))
        if saliency is not None and saliency_weight > 0:
            prior = (1.0 - saliency_weight) * prior + saliency_weight * saliency
        prior = np.clip(prior, 0.02, 0.98)

        bits = self.color_bits
        n_bins = 1 << (3 * bits)
        q = (crop.small >> (8 - bits)).astype(np.int32)
        codes = (q[..., 0] << (2 * bits)) | (q[..., 1] << bits) | q[..., 2]
        flat = codes.ravel()
        floor = _HIST_FLOOR / n_bins
        background = np.bincount(codes[ring], minlength=n_bins).astype(np.float64)
        background = background / background.sum() + floor
        weights = (prior * inside).ravel()
        post = prior
        for _ in range(self.iterations):
            obj = np.bincount(flat, weights=weights, minlength=n_bins)
            obj = obj / obj.sum() + floor
            ratio = obj[codes] / background[codes]
            post = prior * ratio / (prior * ratio + (1.0 - prior))
            post[~inside] = 0.0
            weights = post.ravel()
        soft: NDArray[np.float32] = np.asarray(post, np.float32)
        if self.smoothing > 0:
            cv2 = load_cv2()
            soft = np.asarray(cv2.GaussianBlur(soft, (0, 0), self.smoothing), np.float32)
            soft[~inside] = 0.0
        return soft

    def refine_region(
        self,
        cv2: ModuleType,
        image: UInt8Array,
        region: Region,
        *,
        saliency: NDArray[np.float32] | None = None,
        saliency_weight: float = 0.0,
    ) -> BoolArray:
        """The mask of one non-empty box region: ``(y2 - y1, x2 - x1)`` bool (see :meth:`refine`)."""
        crop = self.crop(cv2, image, region)
        soft = self.posterior(crop, saliency=saliency, saliency_weight=saliency_weight)
        x1, y1, x2, y2 = region
        if soft is None:
            return ellipse_mask(y2 - y1, x2 - x1)
        mask = soft_to_mask(
            cv2,
            crop,
            region,
            soft,
            threshold=self.threshold,
            keep_largest=self.largest_component,
            holes=self.fill_holes,
        )
        # Nothing above the threshold: the box still holds an object, so answer with the prior's shape.
        return mask if mask.any() else ellipse_mask(y2 - y1, x2 - x1)
