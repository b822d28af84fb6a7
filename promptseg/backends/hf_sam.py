"""SAM, SAM 2 and EdgeTAM over Hugging Face transformers: box and point prompts to masks.

The three share one flow, SAM's: the image encoder (the slow part) runs once per image, and each set
of prompts then costs only the prompt encoder and the small mask decoder.

- :meth:`~_PromptableSam.set_image` encodes an image and keeps its features; :meth:`predict` on the
  same pixels reuses them, on other pixels it encodes that image without touching the cache.
- :meth:`~_PromptableSam.predict_batch` encodes several images in one pass of the image encoder.
- Prompts are validated by :func:`promptseg.backends.prompts.visual_prompts`, scaled from image pixels
  into the model's input frame here, and masks come back through the processor's
  ``post_process_masks`` in the original image frame.

Example:
    >>> from promptseg import load_backend
    >>> sam = load_backend("sam2")                                     # doctest: +SKIP
    >>> sam.set_image(image)                                           # doctest: +SKIP
    >>> det = sam.predict(image, boxes=[[40, 60, 200, 310]], labels="cup")   # doctest: +SKIP
    >>> det = sam.predict(image, points=[[120, 180], [300, 40]], point_labels=[1, 0])  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from promptseg._deps import require
from promptseg.backends._common import image_key as _image_key
from promptseg.backends._hf import HF_EXTRA, load_pretrained
from promptseg.backends.prompts import VisualPrompts, visual_prompts
from promptseg.errors import ConfigError, InputError
from promptseg.image import check_rgb
from promptseg.ops.boxes import mask_to_xyxy
from promptseg.types import BoolArray, Detections, FloatArray, ImageSize, UInt8Array

__all__ = ["EdgeTamBackend", "Sam2Backend", "SamBackend"]

_PROMPT_KEYS = frozenset({"boxes", "points", "point_labels", "labels"})
_UPSCALE_CHUNK = 16  # objects whose masks are upscaled to the image size together


@dataclass(frozen=True)
class _Encoded:
    """One image's features and the two frames its prompts and masks move between."""

    key: bytes
    embeddings: Any  # SAM: a (1, C, h, w) tensor; SAM 2 and EdgeTAM: a list of three, fine to coarse
    original_size: ImageSize  # (H, W) of the image
    input_size: ImageSize  # (h, w) the image was resized to inside the model's square input


class _PromptableSam:
    """The shared SAM-family backend; the subclasses name the model, processor and checkpoint types.

    Args:
        weights: weights spec of a ``save_pretrained`` folder (default: :attr:`DEFAULT_WEIGHTS`).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or None/``"auto"`` (the best present).
        dtype: ``"float32"``, ``"bfloat16"``, ``"float16"`` or None/``"auto"``.
        multimask: let the decoder propose three masks per object (whole, part, sub-part) and keep the
            one with the highest predicted IoU; helps with a single ambiguous point. False asks for one
            mask (SAM 2 and EdgeTAM still fall back to the best of three when that one is unstable).
        mask_threshold: mask logit above which a pixel is on the object (0.0: the models' own).
        name: the registry name, recorded in ``meta`` (None: the class's).

    Raises:
        MissingDependencyError: when torch, transformers (or, for EdgeTAM, timm) is missing.
        BackendUnavailable: when the weights are missing or are not a checkpoint of this model.
        ConfigError: for an unknown or absent device or dtype, or a non-finite ``mask_threshold``.
    """

    DEFAULT_WEIGHTS: ClassVar[str]
    capabilities: ClassVar[frozenset[str]]
    _REGISTRY_NAME: ClassVar[str]
    _DISPLAY: ClassVar[str]
    _MODEL_CLASS: ClassVar[str]
    _PROCESSOR_CLASS: ClassVar[str]
    _MODEL_TYPES: ClassVar[tuple[str, ...]]
    _LICENSE: ClassVar[str] = "Apache-2.0"

    def __init__(
        self,
        *,
        weights: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        multimask: bool = False,
        mask_threshold: float = 0.0,
        name: str | None = None,
    ) -> None:
        if isinstance(mask_threshold, bool) or not isinstance(mask_threshold, (int, float)):
            raise ConfigError(f"mask_threshold must be a number (a mask logit), got {mask_threshold!r}")
        if not math.isfinite(mask_threshold):
            raise ConfigError(f"mask_threshold must be finite, got {mask_threshold!r}")
        self.name = name or self._REGISTRY_NAME
        self._multimask = bool(multimask)
        self._mask_threshold = float(mask_threshold)
        self._check_extra_dependencies()
        loaded = load_pretrained(
            self._MODEL_CLASS,
            self._PROCESSOR_CLASS,
            weights or self.DEFAULT_WEIGHTS,
            backend=self.name,
            device=device,
            dtype=dtype,
            license=self._LICENSE,
            model_types=self._MODEL_TYPES,
        )
        self._model = loaded.model
        self._processor = loaded.processor
        self._device = loaded.device
        self._dtype = loaded.dtype
        self._provenance = {
            **loaded.provenance,
            "multimask": self._multimask,
            "mask_threshold": self._mask_threshold,
        }
        self._cache: _Encoded | None = None

    def __repr__(self) -> str:
        p = self._provenance
        return (
            f"{type(self).__name__}(weights={p['weights']!r}, device={p['device']!r}, dtype={p['dtype']!r}, "
            f"multimask={self._multimask}, mask_threshold={self._mask_threshold:g})"
        )

    @property
    def multimask(self) -> bool:
        """Whether the decoder proposes three masks per object and the best by predicted IoU is kept."""
        return self._multimask

    @property
    def mask_threshold(self) -> float:
        """Mask logit above which a pixel is on the object."""
        return self._mask_threshold

    @property
    def model(self) -> Any:
        """The transformers model (read-only use: hooks, inspection); its ``vision_encoder`` is the
        image encoder that :meth:`set_image` runs."""
        return self._model

    def _check_extra_dependencies(self) -> None:
        """Fail fast, naming the extra, when the model needs a package beyond torch and transformers."""

    def set_image(self, image: UInt8Array) -> None:
        """Encode ``image`` once; :meth:`predict` calls on the same pixels then skip the image encoder.

        Args:
            image: ``(H, W, 3)`` uint8 RGB.

        Raises:
            InputError: for an image of another shape or dtype.
        """
        image = check_rgb(image, purpose=f"backend {self.name!r}")
        key = _image_key(image)
        if self._cache is None or self._cache.key != key:
            self._cache = self._encode([image], [key])[0]

    def predict(
        self,
        image: UInt8Array,
        *,
        boxes: Any = None,
        points: Any = None,
        point_labels: Any = None,
        labels: str | Sequence[str] | None = None,
    ) -> Detections:
        """One mask per object prompt.

        Args:
            image: ``(H, W, 3)`` uint8 RGB.
            boxes: ``(N, 4)`` xyxy pixels: N objects, one box each.
            points: ``(N, K, 2)`` xy pixels, K points per object; ``(K, 2)`` means one object.
            point_labels: ``(N, K)`` (or ``(K,)``): 1 = on the object, 0 = not on it (default all 1).
            labels: one label for every object or ``(N,)`` labels (default ``"object"``).

        Returns:
            N instances in prompt order, in the frame of ``image``: ``masks`` ``(N, H, W)`` bool,
            ``xyxy`` the tight box of each mask (the prompt box, or the box of the positive points,
            when a mask is empty), ``scores`` the model's predicted IoU clipped to [0, 1], and
            ``attributes["reason"]`` one sentence per instance. ``meta`` holds the provenance, the
            prompts and whether the image features came from :meth:`set_image`'s cache.

        Raises:
            InputError: for a bad image, or prompts :func:`~promptseg.backends.prompts.visual_prompts`
                refuses (none at all, bad shapes, points outside the image, reversed boxes).
        """
        image = check_rgb(image, purpose=f"backend {self.name!r}")
        prompts = visual_prompts(
            image.shape[:2], boxes=boxes, points=points, point_labels=point_labels, labels=labels
        )
        key = _image_key(image)
        if self._cache is not None and self._cache.key == key:
            return self._decode(self._cache, prompts, cached=True)
        return self._decode(self._encode([image], [key])[0], prompts, cached=False)

    def predict_batch(
        self,
        images: Sequence[UInt8Array],
        prompts: Sequence[Mapping[str, Any]],
        *,
        batch_size: int = 4,
    ) -> list[Detections]:
        """:meth:`predict` over several images, encoding them ``batch_size`` at a time.

        The image encoder, where nearly all the time goes, runs on batches of images; each image's
        prompts are then decoded on their own, so images may have different numbers of objects and
        points, and boxes on one image with points on another. An image that appears twice, or matches
        :meth:`set_image`'s cache, is encoded once or not at all; the cache itself is left as it was.

        Args:
            images: ``(H, W, 3)`` uint8 RGB images, of any sizes.
            prompts: one mapping per image with the keyword arguments of :meth:`predict`
                (``boxes``, ``points``, ``point_labels``, ``labels``).
            batch_size: images per pass of the image encoder (memory grows with it).

        Returns:
            One :class:`Detections` per image, in order, as :meth:`predict` returns them.

        Raises:
            InputError: when the lengths differ, a mapping has an unknown key, or any image or prompt
                is bad; everything is checked before the model runs.
            ConfigError: for a ``batch_size`` below 1.

        Example:
            >>> prompts = [{"boxes": [[10, 10, 90, 80]]}, {"points": [[50, 40]], "labels": "dog"}]
            >>> dets = sam.predict_batch([img_a, img_b], prompts)      # doctest: +SKIP
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if len(images) != len(prompts):
            raise InputError(f"{len(images)} images but {len(prompts)} prompt mappings: give one per image")
        checked: list[tuple[UInt8Array, VisualPrompts, bytes]] = []
        for i, (image, prompt) in enumerate(zip(images, prompts, strict=True)):
            if not isinstance(prompt, Mapping):
                raise InputError(f"prompts[{i}] must be a mapping such as {{'boxes': [[x1, y1, x2, y2]]}}")
            unknown = sorted(set(prompt) - _PROMPT_KEYS)
            if unknown:
                raise InputError(
                    f"prompts[{i}] has unknown keys {unknown}; use {', '.join(sorted(_PROMPT_KEYS))}"
                )
            rgb = check_rgb(image, purpose=f"backend {self.name!r} (image {i})")
            checked.append((rgb, visual_prompts(rgb.shape[:2], **prompt), _image_key(rgb)))

        cache = self._cache
        encoded: dict[bytes, _Encoded] = {cache.key: cache} if cache is not None else {}
        todo = list({key: rgb for rgb, _, key in checked if key not in encoded}.items())
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            for item in self._encode([rgb for _, rgb in chunk], [key for key, _ in chunk]):
                encoded[item.key] = item
        return [
            self._decode(encoded[key], vp, cached=cache is not None and key == cache.key)
            for _, vp, key in checked
        ]

    def detect(
        self, image: UInt8Array, prompts: str | Sequence[str], *, threshold: float | None = None
    ) -> Detections:
        """Not supported: these models take boxes and points, not words.

        Raises:
            ConfigError: always, naming the two ways to get what was meant.
        """
        raise ConfigError(
            f"backend {self.name!r} ({self._DISPLAY}) takes box and point prompts, not text: call "
            f"predict(image, boxes=..., points=...), or find objects by words with a text backend that "
            f"makes its masks with SAM, e.g. load_backend('owlv2', masks='sam')"
        )

    def _encode(self, images: Sequence[UInt8Array], keys: Sequence[bytes]) -> list[_Encoded]:
        """Run the image encoder once on ``images`` (one batch) and split the features per image."""
        # channels_last: a very small image (3 rows) must not be taken for channels-first
        # a writable copy of read-only pixels, else torch warns that it cannot honour read-only arrays
        pixels = [image if image.flags.writeable else image.copy() for image in images]
        inputs = self._processor(images=pixels, return_tensors="pt", input_data_format="channels_last")
        pixel_values = inputs["pixel_values"].to(self._device, dtype=self._dtype)
        with torch.inference_mode():
            embeddings = self._model.get_image_embeddings(pixel_values)
        original_sizes = inputs["original_sizes"].tolist()
        input_sizes = self._input_sizes(inputs)
        out = []
        for i, key in enumerate(keys):
            if isinstance(embeddings, torch.Tensor):
                own: Any = embeddings[i : i + 1]
            else:
                own = [level[i : i + 1] for level in embeddings]
            h, w = original_sizes[i]
            ih, iw = input_sizes[i]
            out.append(_Encoded(key, own, (int(h), int(w)), (int(ih), int(iw))))
        return out

    def _input_sizes(self, inputs: Mapping[str, Any]) -> list[list[int]]:
        """``(h, w)`` per image of the image inside the model's input, the frame prompts are given in."""
        size = int(self._processor.target_size)
        return [[size, size]] * len(inputs["original_sizes"])

    def _post_process(self, logits: torch.Tensor, encoded: _Encoded) -> torch.Tensor:
        """``(1, N, 1, h, w)`` low-resolution logits -> ``(N, 1, H, W)`` bool in the image frame."""
        masks: torch.Tensor = self._processor.post_process_masks(
            logits, [list(encoded.original_size)], mask_threshold=self._mask_threshold
        )[0]
        return masks

    def _decode(self, encoded: _Encoded, prompts: VisualPrompts, *, cached: bool) -> Detections:
        """Run the prompt encoder and mask decoder on one image's features and build Detections."""
        (h, w), (ih, iw) = encoded.original_size, encoded.input_size
        scale = np.array([iw / w, ih / h], np.float32)
        inputs: dict[str, torch.Tensor] = {}
        # Coordinates stay float32 whatever the model's dtype: the model divides them by its input
        # size before casting, and bfloat16 cannot hold pixel positions of a 1024 frame exactly.
        if prompts.boxes is not None:
            frame_boxes = prompts.boxes.reshape(-1, 2, 2) * scale
            inputs["input_boxes"] = torch.from_numpy(frame_boxes.reshape(1, -1, 4)).to(self._device)
        if prompts.points is not None and prompts.point_labels is not None:
            inputs["input_points"] = torch.from_numpy(prompts.points * scale)[None].to(self._device)
            inputs["input_labels"] = torch.from_numpy(prompts.point_labels)[None].to(self._device)
        with torch.inference_mode():
            out = self._model(image_embeddings=encoded.embeddings, multimask_output=self._multimask, **inputs)
            iou = out.iou_scores[0].float()  # (N, M): M = 3 candidates with multimask, else 1
            best = iou.argmax(dim=1)
            rows = torch.arange(len(best), device=best.device)
            logits = out.pred_masks[0][rows, best].float()  # (N, h, w), the chosen candidate only
            # full-size float masks are the memory peak: upscale a few objects at a time
            chunks = [logits[i : i + _UPSCALE_CHUNK] for i in range(0, len(logits), _UPSCALE_CHUNK)]
            masks: BoolArray = np.concatenate(
                [self._post_process(c[None, :, None], encoded)[:, 0].cpu().numpy() for c in chunks]
            )
            scores = iou[rows, best].clamp(0.0, 1.0).cpu().numpy().astype(np.float32)
        candidates = int(iou.shape[1])
        xyxy = mask_to_xyxy(masks)
        empty: BoolArray = ~np.any(masks, axis=(1, 2))
        if empty.any():
            xyxy[empty] = _fallback_boxes(prompts)[empty]
        reasons = [
            _reason(self._DISPLAY, prompts, i, float(scores[i]), candidates, bool(empty[i]))
            for i in range(len(prompts))
        ]
        return Detections(
            xyxy=xyxy,
            image_size=(h, w),
            labels=prompts.labels,
            scores=scores,
            masks=masks,
            attributes={"reason": np.array(reasons, dtype=np.str_)},
            meta={
                **self._provenance,
                "prompt": _describe(prompts),
                "visual_prompts": {
                    "boxes": None if prompts.boxes is None else prompts.boxes.tolist(),
                    "points": None if prompts.points is None else prompts.points.tolist(),
                    "point_labels": None if prompts.point_labels is None else prompts.point_labels.tolist(),
                },
                "image_features": "cached by set_image" if cached else "computed for this call",
            },
        )


class SamBackend(_PromptableSam):
    """SAM (ViT image encoder): box and point prompts to masks.

    The processor resizes the longest side to 1024 and pads to a 1024x1024 square. See
    :class:`_PromptableSam` for the arguments.

    Example:
        >>> sam = SamBackend()                                              # doctest: +SKIP
        >>> det = sam.predict(image, boxes=[[40, 60, 200, 310]])            # doctest: +SKIP
    """

    DEFAULT_WEIGHTS = "hf:facebook/sam-vit-base"
    capabilities = frozenset({"boxes", "points", "masks", "cache"})
    _REGISTRY_NAME = "sam"
    _DISPLAY = "SAM"
    _MODEL_CLASS = "SamModel"
    _PROCESSOR_CLASS = "SamProcessor"
    _MODEL_TYPES = ("sam",)

    def _input_sizes(self, inputs: Mapping[str, Any]) -> list[list[int]]:
        # SAM keeps the aspect ratio: the image fills the top-left of the padded square
        return [list(map(int, size)) for size in inputs["reshaped_input_sizes"].tolist()]

    def _post_process(self, logits: torch.Tensor, encoded: _Encoded) -> torch.Tensor:
        masks: torch.Tensor = self._processor.post_process_masks(
            logits,
            [list(encoded.original_size)],
            [list(encoded.input_size)],
            mask_threshold=self._mask_threshold,
        )[0]
        return masks


class Sam2Backend(_PromptableSam):
    """SAM 2.1 (Hiera image encoder): box and point prompts to masks.

    The processor resizes every image to 1024x1024 (no padding). Loads ``sam2`` checkpoints and the
    Hub's ``sam2_video`` ones (the image part of them). See :class:`_PromptableSam` for the arguments.
    """

    DEFAULT_WEIGHTS = "hf:facebook/sam2.1-hiera-tiny"
    capabilities = frozenset({"boxes", "points", "masks", "cache", "video"})
    _REGISTRY_NAME = "sam2"
    _DISPLAY = "SAM 2"
    _MODEL_CLASS = "Sam2Model"
    _PROCESSOR_CLASS = "Sam2Processor"
    _MODEL_TYPES = ("sam2", "sam2_video")


class EdgeTamBackend(_PromptableSam):
    """EdgeTAM (a RepViT image encoder from timm, SAM 2's decoder): box and point prompts to masks.

    Several times faster than SAM 2 on a CPU. Uses SAM 2's processor (1024x1024 resize). Loads
    ``edgetam`` and ``edgetam_video`` checkpoints. Needs ``timm``. See :class:`_PromptableSam` for the
    arguments.
    """

    DEFAULT_WEIGHTS = "hf:yonigozlan/EdgeTAM-hf"
    capabilities = frozenset({"boxes", "points", "masks", "cache", "video"})
    _REGISTRY_NAME = "edgetam"
    _DISPLAY = "EdgeTAM"
    _MODEL_CLASS = "EdgeTamModel"
    _PROCESSOR_CLASS = "Sam2Processor"
    _MODEL_TYPES = ("edgetam", "edgetam_video")

    def _check_extra_dependencies(self) -> None:
        require("timm", extra=HF_EXTRA, purpose=f"backend {self.name!r} (its RepViT image encoder)")


def _fallback_boxes(prompts: VisualPrompts) -> FloatArray:
    """The box to report for an empty mask: the prompt box, else the box of the positive points."""
    out = np.zeros((len(prompts), 4), np.float32)
    if prompts.boxes is not None:
        return prompts.boxes.copy()
    if prompts.points is None or prompts.point_labels is None:  # visual_prompts gives boxes or points
        return out
    for i, (pts, labs) in enumerate(zip(prompts.points, prompts.point_labels, strict=True)):
        pos = pts[labs == 1]  # visual_prompts guarantees a positive point when there is no box
        out[i] = (pos[:, 0].min(), pos[:, 1].min(), pos[:, 0].max(), pos[:, 1].max())
    return out


def _reason(display: str, prompts: VisualPrompts, i: int, iou: float, candidates: int, empty: bool) -> str:
    parts = []
    if prompts.boxes is not None:
        parts.append(f"box prompt [{', '.join(_num(v) for v in prompts.boxes[i])}]")
    if prompts.point_labels is not None:
        parts.append(_count_points(prompts.point_labels[i]))
    text = f"{display} mask for {', '.join(parts)}; predicted IoU {iou:.2f}"
    if candidates > 1:
        text += f", best of {candidates} candidate masks"
    if empty:
        text += "; the mask is empty, so the box is the prompt's"
    return text


def _count_points(point_labels: np.ndarray) -> str:
    # "1 positive point", "2 positive and 1 negative point": the noun agrees with the last count
    counts = [
        (int(n), kind)
        for n, kind in (((point_labels == 1).sum(), "positive"), ((point_labels == 0).sum(), "negative"))
        if n
    ]
    words = " and ".join(f"{n} {kind}" for n, kind in counts)
    return f"{words} point{'s' if counts[-1][0] > 1 else ''}"


def _describe(prompts: VisualPrompts) -> str:
    n = len(prompts)
    kinds = []
    if prompts.boxes is not None:
        kinds.append("a box")
    if prompts.points is not None:
        k = prompts.points.shape[1]
        kinds.append(f"{k} point{'s' if k > 1 else ''}")
    if n == 1:
        return f"1 object with {' and '.join(kinds)}"
    return f"{n} objects, each with {' and '.join(kinds)}"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"
