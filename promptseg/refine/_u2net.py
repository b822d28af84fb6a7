"""U²-Net salient-object segmentation on each box's crop (slow: about 1 s per box on 2 CPU cores).

U²-Net (Qin et al. 2020; the ``u2net.onnx`` that rembg ships) maps a ``1x3x320x320`` RGB image,
normalised with ImageNet's mean and standard deviation after scaling by its maximum, to seven saliency
maps, the first of which is the fused one; as rembg does, that map is min-max normalised per image.

Saliency answers "what stands out in this crop", not "what is the object in this box", so alone it is
all or nothing: near perfect on a crop with one clear object, empty or wrong on an occluded chair. Used
as part of the colour refiner's prior (``mode="prior"``, the default) it helps on clean scenes and does
little harm on cluttered ones; ``mode="mask"`` thresholds the saliency itself and falls back to the
colour refiner where the result is implausible.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from promptseg._deps import require
from promptseg.errors import BackendUnavailable, ConfigError, WeightsNotFoundError
from promptseg.refine._color import ColorPriorRefiner
from promptseg.refine._common import (
    Region,
    check_fraction,
    check_int,
    check_range,
    largest_component,
    load_cv2,
    make_crop,
    refine_each,
    to_small_frame,
)
from promptseg.types import BoolArray, UInt8Array

_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)
_MODES = ("prior", "mask")


@dataclass(frozen=True)
class _Options:
    pad: float
    mode: str
    prior_weight: float
    threshold: float
    plausible: tuple[float, float]


class U2NetRefiner:
    """Box to mask with U²-Net saliency on each box's crop.

    Each mask lies inside its box rounded outwards to whole pixels (and clipped to the image). Boxes run
    one after another; onnxruntime uses ``threads`` threads for each.

    Args:
        weights: path of ``u2net.onnx`` (176 MB; the offline models folder has it at
            ``u2net/u2net.onnx``). A ``file:`` prefix is accepted.
        mode: ``"prior"``: the saliency is mixed into the colour refiner's shape prior; ``"mask"``: the
            saliency thresholded is the mask, with the colour refiner where it is implausible.
        pad: margin around the box given to U²-Net, as a fraction of the box's width or height.
        prior_weight: weight of the saliency in the prior (``mode="prior"``).
        threshold: saliency threshold (``mode="mask"``).
        plausible: ``(low, high)``: a saliency mask covering at most ``low`` or at least ``high`` of its box
            is replaced by the colour refiner's (``mode="mask"``).
        threads: onnxruntime intra-op threads.

    Raises:
        WeightsNotFoundError: when ``weights`` is not a file.
        BackendUnavailable: when onnxruntime cannot load the file.
        MissingDependencyError: when onnxruntime or OpenCV is not installed (the ``onnx`` extra).
        ConfigError: for an option out of range.

    Example:
        >>> refiner = U2NetRefiner("models/u2net/u2net.onnx")      # doctest: +SKIP
        >>> masks = refiner.refine(image, boxes)                   # doctest: +SKIP
    """

    name = "u2net"

    def __init__(
        self,
        weights: str | Path,
        *,
        mode: Literal["prior", "mask"] = "prior",
        pad: float = 0.25,
        prior_weight: float = 0.5,
        threshold: float = 0.5,
        plausible: tuple[float, float] = (0.1, 0.95),
        threads: int = 2,
    ) -> None:
        if mode not in _MODES:
            raise ConfigError(f"mode must be one of {', '.join(_MODES)}; got {mode!r}")
        check_fraction(pad, "pad", high=4.0)
        check_fraction(prior_weight, "prior_weight")
        check_fraction(threshold, "threshold")
        check_range(plausible, "plausible")
        check_int(threads, "threads", low=1)
        self._options = _Options(pad, mode, prior_weight, threshold, (plausible[0], plausible[1]))
        text = str(weights)
        path = Path(text[len("file:") :] if text.startswith("file:") else text).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(
                f"refiner 'u2net' needs the U²-Net weights file (u2net.onnx), not found at {path}; "
                "pass weights='/path/to/u2net.onnx' (the offline models folder has it at u2net/u2net.onnx)"
            )
        self.weights = path
        ort = require("onnxruntime", extra="onnx", purpose="the 'u2net' mask refiner")
        load_cv2()
        session_options = ort.SessionOptions()
        session_options.log_severity_level = 3  # the graph optimiser's warnings are noise here
        session_options.intra_op_num_threads = threads
        session_options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                str(path), session_options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own, unexported exception types
            raise BackendUnavailable(
                f"refiner 'u2net' could not load {path} with onnxruntime ({exc}); "
                "is it the U²-Net u2net.onnx file?"
            ) from exc
        model_input = self._session.get_inputs()[0]
        self._input_name = model_input.name
        self._output_name = self._session.get_outputs()[0].name
        side = model_input.shape[-1]
        self._side = side if isinstance(side, int) else 320
        self._color = ColorPriorRefiner()

    def __repr__(self) -> str:
        o = self._options
        return (
            f"U2NetRefiner(weights={str(self.weights)!r}, mode={o.mode!r}, pad={o.pad}, "
            f"prior_weight={o.prior_weight}, threshold={o.threshold}, plausible={o.plausible})"
        )

    def saliency(self, crop: UInt8Array) -> NDArray[np.float32]:
        """U²-Net's fused saliency map of an RGB crop.

        Args:
            crop: ``(h, w, 3)`` uint8 RGB.

        Returns:
            ``(h, w)`` float32 in [0, 1], min-max normalised (as rembg does).
        """
        cv2 = load_cv2()
        side = self._side
        x = cv2.resize(crop, (side, side), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        x /= max(float(x.max()), 1e-6)
        x = ((x - _MEAN) / _STD).transpose(2, 0, 1)[None]
        pred = self._session.run([self._output_name], {self._input_name: np.ascontiguousarray(x)})[0][0, 0]
        lo, hi = float(pred.min()), float(pred.max())
        pred = (pred - lo) / max(hi - lo, 1e-6)
        h, w = crop.shape[:2]
        out: NDArray[np.float32] = cv2.resize(pred.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        return out

    def refine(self, image: Any, xyxy: ArrayLike) -> BoolArray:
        """Segment the object in each box.

        Args:
            image: ``(H, W, 3)`` uint8 RGB.
            xyxy: ``(N, 4)`` boxes ``(x1, y1, x2, y2)`` in image pixels.

        Returns:
            ``(N, H, W)`` bool masks, each inside its box rounded outwards to whole pixels and clipped to
            the image; a box of zero area or outside the image gives an empty mask.

        Raises:
            InputError: for an image that is not ``(H, W, 3)`` uint8 or boxes that are not ``(N, 4)``
                finite xyxy with ``x1 <= x2`` and ``y1 <= y2``.
        """
        cv2 = load_cv2()
        return refine_each(image, xyxy, lambda img, region: self.refine_region(cv2, img, region))

    def refine_region(self, cv2: ModuleType, image: UInt8Array, region: Region) -> BoolArray:
        """The mask of one non-empty box region: ``(y2 - y1, x2 - x1)`` bool."""
        o = self._options
        window = make_crop(cv2, image, region, pad=o.pad, min_pad=2, max_side=None).window
        wx1, wy1, wx2, wy2 = window
        sal = self.saliency(image[wy1:wy2, wx1:wx2])
        if o.mode == "prior":
            crop = self._color.crop(cv2, image, region)
            prior = to_small_frame(cv2, sal, window, crop)
            return self._color.refine_region(
                cv2, image, region, saliency=prior, saliency_weight=o.prior_weight
            )
        x1, y1, x2, y2 = region
        mask = sal[y1 - wy1 : y2 - wy1, x1 - wx1 : x2 - wx1] > o.threshold
        if mask.any():
            mask = largest_component(cv2, mask)
        low, high = o.plausible
        if not low < float(mask.mean()) < high:
            return self._color.refine_region(cv2, image, region)
        return mask
