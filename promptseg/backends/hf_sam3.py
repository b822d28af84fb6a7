"""SAM 3 over Hugging Face transformers: every instance of a concept, named in words or shown by boxes.

A prompt is split into concepts ("bags and luggage" -> "bags", "luggage"); SAM 3 looks for each concept
in the image and returns every instance it finds, each with a score and a mask. Exemplar boxes (positive:
"more like this", negative: "not like this") sharpen a concept or, without words, define it.

The image passes through the vision encoder (the expensive part: a ViT-L at 1008x1008) once per call,
and once per image with :meth:`Sam3Backend.set_image`; all concepts of one call then share a single
decoder pass, the image's features broadcast over the concepts without a copy.

Video: ``promptseg track --backend sam3`` uses SAM 3's tracker (``Sam3VideoModel``) through
:class:`promptseg.video.hf_video.Sam3VideoTracker`, with a bounded memory bank.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from promptseg.backends._common import check_threshold as _check_threshold
from promptseg.backends._common import image_key as _image_key
from promptseg.backends._common import prompt_texts as _prompt_texts
from promptseg.backends._hf import load_pretrained
from promptseg.backends.registry import get_spec
from promptseg.errors import InputError
from promptseg.image import check_rgb
from promptseg.ops.boxes import box_iou, clip_xyxy
from promptseg.text.words import singularize, split_concepts
from promptseg.types import BoolArray, Detections, FloatArray, ImageSize, IntArray, UInt8Array

__all__ = ["Sam3Backend"]

_SPEC = get_spec("sam3")

_VISUAL_TEXT = "visual"
"""The text SAM 3 was trained to see when a concept is given by exemplar boxes alone."""

_VISUAL_LABEL = "object"
"""Label of instances found from exemplar boxes alone."""

_SAME_OBJECT_IOU = 0.8
"""Mask IoU from which two instances found for different concepts are one object, reported once."""


@dataclass
class _Concept:
    """One thing to look for: the phrase it is reported under and the text the model reads."""

    label: str
    text: str


@dataclass
class _Exemplars:
    xyxy: FloatArray  # (M, 4) pixels, inside the image
    labels: IntArray  # (M,) 1 = positive, 0 = negative

    def describe(self) -> str:
        """``"2 exemplar boxes (1 positive, 1 negative)"``."""
        pos = int(self.labels.sum())
        neg = len(self.labels) - pos
        parts = [f"{n} {kind}" for n, kind in ((pos, "positive"), (neg, "negative")) if n]
        return f"{len(self.labels)} exemplar box{'es' if len(self.labels) != 1 else ''} ({', '.join(parts)})"


class Sam3Backend:
    """SAM 3 (Promptable Concept Segmentation): all instances of each concept, with masks.

    Args:
        weights: a weights spec of a ``save_pretrained`` folder (default :attr:`DEFAULT_WEIGHTS`).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or None/``"auto"`` (the best one here).
        dtype: ``"float32"``, ``"bfloat16"``, ``"float16"`` or None/``"auto"`` (float32 on the CPU,
            bfloat16 or float16 on a GPU).
        threshold: default minimum instance score (SAM 3's query score times its presence score).
        mask_threshold: probability above which a mask pixel is on.
        name: the registry name, recorded in ``meta``.

    Raises:
        ConfigError: for a threshold outside [0, 1], or a device or dtype this machine lacks.
        MissingDependencyError: when torch or transformers is missing.
        BackendUnavailable: when the weights are missing or are not a SAM 3 checkpoint.

    Example:
        >>> backend = Sam3Backend(weights="file:/models/sam3")            # doctest: +SKIP
        >>> det = backend.detect(image, "bags and luggage")                # doctest: +SKIP
        >>> backend.set_image(image)                                       # doctest: +SKIP
        >>> cups = backend.detect(image, "cup", exemplars=[[10, 20, 60, 90]])  # doctest: +SKIP
    """

    DEFAULT_WEIGHTS: str = _SPEC.weights["model"]
    capabilities = frozenset({"text", "exemplars", "masks", "cache", "video"})

    def __init__(
        self,
        *,
        weights: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        threshold: float = 0.5,
        mask_threshold: float = 0.5,
        name: str = "sam3",
    ) -> None:
        _check_threshold(threshold, "threshold")
        _check_threshold(mask_threshold, "mask_threshold")
        self.name = name
        self.threshold = float(threshold)
        self.mask_threshold = float(mask_threshold)
        loaded = load_pretrained(
            "Sam3Model",
            "Sam3Processor",
            weights or self.DEFAULT_WEIGHTS,
            backend=name,
            device=device,
            dtype=dtype,
            license=_SPEC.license,
        )
        self._model = loaded.model
        self._processor = loaded.processor
        self._device = loaded.device
        self._dtype = loaded.dtype
        self._provenance = loaded.provenance
        self._cached_key: bytes | None = None
        self._cached_features: Any = None

    def set_image(self, image: UInt8Array) -> None:
        """Run the vision encoder once on ``image``; :meth:`detect` calls on the same pixels reuse it.

        Only the last image set is kept. Any other image is encoded afresh (and not kept).

        Args:
            image: ``(H, W, 3)`` uint8 RGB.
        """
        image = check_rgb(image, purpose=f"backend {self.name!r}")
        features = self._encode([image])
        self._cached_key, self._cached_features = _image_key(image), features

    def detect(
        self,
        image: UInt8Array,
        prompts: str | Sequence[str],
        *,
        threshold: float | None = None,
        exemplars: Any = None,
        exemplar_labels: Any = None,
    ) -> Detections:
        """Find every instance of each concept the prompts name, or of the exemplar boxes.

        Args:
            image: ``(H, W, 3)`` uint8 RGB.
            prompts: a prompt ("bags and luggage") or several; each is split into concepts, every
                concept is looked for, and the answers are joined. With exemplars and no words, pass
                ``""`` or ``"visual"``.
            threshold: minimum score (None: the backend's default).
            exemplars: ``(M, 4)`` (or ``(4,)``) xyxy pixel boxes around examples of the one concept the
                prompt names, or defining it when the prompt has no words.
            exemplar_labels: ``(M,)`` 1 (an example) or 0 (a counter-example); default all 1.

        Returns:
            Detections in the image's pixel frame: labels = the concept phrase (``"object"`` for
            exemplars alone), scores in [threshold, 1], masks ``(N, H, W)`` bool, xyxy boxes, and
            ``attributes["concept"]`` / ``attributes["reason"]``. Instances are grouped by concept in
            prompt order, best first. ``meta`` holds the provenance, prompt, threshold, ``concepts``,
            ``notes`` and whether the image features came from :meth:`set_image`'s cache.

        Raises:
            InputError: for a bad image, bad exemplar boxes or labels, or exemplars with several concepts.
            QueryError: for a prompt that names nothing (and no exemplars).
            ConfigError: for a threshold outside [0, 1].
        """
        image = check_rgb(image, purpose=f"backend {self.name!r}")
        threshold = self._threshold(threshold)
        size = (int(image.shape[0]), int(image.shape[1]))
        examples = _check_exemplars(exemplars, exemplar_labels, size)
        texts = _prompt_texts(prompts)
        concepts, notes = _concepts(texts, examples)
        cached = self._cached_key is not None and self._cached_key == _image_key(image)
        features = self._cached_features if cached else self._encode([image])
        per_concept = self._decode(features, [size], concepts, examples, threshold)[0]
        det = self._to_detections(per_concept, concepts, size, examples, texts, threshold, notes)
        return det.with_meta(image_features="cached by set_image" if cached else "computed for this call")

    def detect_batch(
        self, images: Sequence[UInt8Array], prompts: str | Sequence[str], *, threshold: float | None = None
    ) -> list[Detections]:
        """The same prompts on several images, in one vision pass and one decoder pass.

        Args:
            images: ``(H_i, W_i, 3)`` uint8 RGB images; sizes may differ.
            prompts: as in :meth:`detect` (words only: exemplar boxes belong to one image).
            threshold: minimum score (None: the backend's default).

        Returns:
            One :class:`Detections` per image, in order, each as :meth:`detect` would return it.
        """
        images = [check_rgb(im, purpose=f"backend {self.name!r}") for im in images]
        if not images:
            raise InputError("detect_batch needs at least one image (got none)")
        threshold = self._threshold(threshold)
        texts = _prompt_texts(prompts)
        concepts, notes = _concepts(texts, None)
        sizes = [(int(im.shape[0]), int(im.shape[1])) for im in images]
        features = self._encode(images)
        answers = self._decode(features, sizes, concepts, None, threshold)
        return [
            self._to_detections(per_concept, concepts, size, None, texts, threshold, list(notes)).with_meta(
                image_features="computed for this call"
            )
            for per_concept, size in zip(answers, sizes, strict=True)
        ]

    def _threshold(self, threshold: float | None) -> float:
        if threshold is None:
            return self.threshold
        _check_threshold(threshold, "threshold")
        return float(threshold)

    def _encode(self, images: list[UInt8Array]) -> Any:
        """Vision features of the images, batched: SAM 3's ``Sam3VisionEncoderOutput``."""
        # channels_last said outright: a (3, W, 3) image would otherwise be taken as channels-first
        pixels = self._processor(images=images, input_data_format="channels_last", return_tensors="pt")
        pixels = pixels["pixel_values"]
        with torch.inference_mode():
            return self._model.get_vision_features(pixel_values=pixels.to(self._device, self._dtype))

    def _decode(
        self,
        features: Any,
        sizes: list[ImageSize],
        concepts: list[_Concept],
        examples: _Exemplars | None,
        threshold: float,
    ) -> list[list[dict[str, Any]]]:
        """One decoder pass over every (image, concept) pair: ``[image][concept]`` post-processed dicts."""
        n_images, n_concepts = len(sizes), len(concepts)
        inputs = self._processor(
            text=[c.text for c in concepts] * n_images,
            input_boxes=None if examples is None else [examples.xyxy.tolist()],
            input_boxes_labels=None if examples is None else [examples.labels.tolist()],
            original_sizes=[list(s) for s in sizes] if examples is not None else None,
            return_tensors="pt",
        )
        model_inputs: dict[str, Any] = {
            "input_ids": inputs["input_ids"].to(self._device),
            "attention_mask": inputs["attention_mask"].to(self._device),
        }
        if examples is not None:
            model_inputs["input_boxes"] = inputs["input_boxes"].to(self._device, self._dtype)
            model_inputs["input_boxes_labels"] = inputs["input_boxes_labels"].to(self._device)
        with torch.inference_mode():
            outputs = self._model(vision_embeds=_repeat_features(features, n_concepts), **model_inputs)
            results = self._processor.post_process_instance_segmentation(
                outputs,
                threshold=threshold,
                mask_threshold=self.mask_threshold,
                target_sizes=[s for s in sizes for _ in range(n_concepts)],
            )
        return [results[i * n_concepts : (i + 1) * n_concepts] for i in range(n_images)]

    def _to_detections(
        self,
        per_concept: list[dict[str, Any]],
        concepts: list[_Concept],
        size: ImageSize,
        examples: _Exemplars | None,
        texts: list[str],
        threshold: float,
        notes: list[str],
    ) -> Detections:
        parts = []
        for concept, result in zip(concepts, per_concept, strict=True):
            scores = result["scores"].float().cpu().numpy()
            n = len(scores)
            if n == 0:
                notes.append(f"nothing found for '{concept.label}' with a score of at least {threshold:.2f}")
                continue
            order = np.argsort(-scores, kind="stable")
            scores = scores[order].clip(0.0, 1.0)
            xyxy = clip_xyxy(result["boxes"].float().cpu().numpy()[order], size)
            masks = result["masks"].bool().cpu().numpy()[order]
            parts.append(
                Detections(
                    xyxy=xyxy,
                    image_size=size,
                    labels=np.array([concept.label] * n, dtype=np.str_),
                    scores=scores,
                    masks=masks,
                    attributes={
                        "concept": np.array([concept.label] * n, dtype=np.str_),
                        "reason": np.array([_reason(concept, examples, s) for s in scores], dtype=np.str_),
                    },
                )
            )
        if parts:
            det = _merge_same_objects(Detections.concat(parts), notes)
        else:
            none = np.zeros(0, np.str_)
            det = Detections.empty(size, with_masks=True).replace(
                attributes={"concept": none, "reason": none}
            )
        return det.with_meta(
            **self._provenance,
            prompt=texts[0] if len(texts) == 1 else texts,
            threshold=threshold,
            mask_threshold=self.mask_threshold,
            concepts=[c.label for c in concepts],
            exemplars=0 if examples is None else len(examples.labels),
            notes=notes,
        )


def _reason(concept: _Concept, examples: _Exemplars | None, score: float) -> str:
    if examples is None:
        return f"SAM 3 found '{concept.label}' here with score {score:.2f}"
    if concept.text == _VISUAL_TEXT:
        return f"SAM 3 found an object like the {examples.describe()} here with score {score:.2f}"
    return f"SAM 3 found '{concept.label}' here with score {score:.2f}, guided by {examples.describe()}"


def _repeat_features(features: Any, times: int) -> Any:
    """Vision features for ``B * times`` decoder rows: each image's features ``times`` times in a row."""
    if times == 1:
        return features

    def repeat(t: torch.Tensor) -> torch.Tensor:
        if t.shape[0] == 1:  # one image: a broadcast view, no copy
            return t.expand(times, *t.shape[1:])
        return t.repeat_interleave(times, dim=0)

    return type(features)(
        fpn_hidden_states=tuple(repeat(t) for t in features.fpn_hidden_states),
        fpn_position_encoding=tuple(repeat(t) for t in features.fpn_position_encoding),
    )


def _concepts(texts: list[str], examples: _Exemplars | None) -> tuple[list[_Concept], list[str]]:
    """The concepts to look for, each once, and notes on merged duplicates.

    Phrases that differ only in number ("cup", "cups") are one concept, looked for once under the
    first phrase. With exemplars, words are optional ("" or "visual" means none) and at most one
    concept may be named, because the boxes are examples of that one concept.
    """
    if examples is not None and all(t.strip().lower() in ("", _VISUAL_TEXT) for t in texts):
        if not examples.labels.any():
            raise InputError(
                "exemplar boxes without words need at least one positive box (label 1): negative boxes "
                "only say what the concept is not"
            )
        return [_Concept(_VISUAL_LABEL, _VISUAL_TEXT)], []
    phrases = [p for t in texts if t.strip() for p in split_concepts(t)]
    if not phrases:  # every text blank: let split_concepts say so
        split_concepts(texts[0])
    concepts: list[_Concept] = []
    notes: list[str] = []
    seen: dict[str, str] = {}
    for phrase in phrases:
        key = " ".join(singularize(w) for w in phrase.split())
        if key in seen:
            if seen[key] != phrase:
                notes.append(
                    f"'{phrase}' and '{seen[key]}' name one concept; looked for once as '{seen[key]}'"
                )
            continue
        seen[key] = phrase
        concepts.append(_Concept(phrase, phrase))
    if examples is not None and len(concepts) > 1:
        named = ", ".join(f"'{c.label}'" for c in concepts)
        raise InputError(
            f"exemplar boxes are examples of one concept, but the prompt names {len(concepts)} ({named}); "
            "ask about one concept at a time when giving exemplars"
        )
    return concepts, notes


def _check_exemplars(exemplars: Any, labels: Any, size: ImageSize) -> _Exemplars | None:
    """Validated exemplar boxes and labels, or None when there are none."""
    h, w = size
    if exemplars is None:
        if labels is not None:
            raise InputError(
                "exemplar_labels given without exemplars: pass exemplars=[[x1, y1, x2, y2], ...]"
            )
        return None
    try:
        boxes = np.asarray(exemplars, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(
            f"exemplars must be (M, 4) [x1, y1, x2, y2] pixel numbers, got {exemplars!r:.80}"
        ) from None
    if boxes.ndim == 1 and boxes.shape[0] == 4:
        boxes = boxes[None]
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise InputError(f"exemplars must be (M, 4) [x1, y1, x2, y2] pixels, got shape {boxes.shape}")
    if boxes.shape[0] == 0:
        raise InputError("exemplars is empty: pass at least one box, or exemplars=None for words only")
    if not np.isfinite(boxes).all():
        raise InputError("exemplars must be finite numbers (found NaN or inf)")
    flat = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    if flat.any():
        i = int(np.flatnonzero(flat)[0])
        raise InputError(
            f"exemplar box {i} is {boxes[i].tolist()}: boxes are [x1, y1, x2, y2] with x1 < x2 and y1 < y2"
        )
    clipped = clip_xyxy(boxes, size)
    outside = (clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise InputError(f"exemplar box {i} {boxes[i].tolist()} lies outside the {w}x{h} image")
    if labels is None:
        label_arr = np.ones(len(boxes), np.int64)
    else:
        raw = np.asarray(labels)
        if raw.dtype == bool:
            raw = raw.astype(np.int64)
        if raw.ndim == 0:
            raw = raw.reshape(1)
        if raw.dtype.kind not in "iuf" or not np.isin(raw, (0, 1)).all():
            raise InputError(
                f"exemplar_labels must be 1 (an example) or 0 (a counter-example), got {labels!r:.80}"
            )
        if raw.shape != (len(boxes),):
            raise InputError(f"{len(boxes)} exemplar boxes but exemplar_labels has shape {raw.shape}")
        label_arr = raw.astype(np.int64)
    return _Exemplars(clipped.astype(np.float32), label_arr)


def _merge_same_objects(det: Detections, notes: list[str]) -> Detections:
    """Report an object found for two concepts once, under its better-scoring concept.

    Within one concept SAM 3's answer stands (one query per instance, trained without duplicates), so
    touching or overlapping instances of one kind are never merged. Across concepts ("bags", "luggage")
    two instances whose masks overlap with IoU at least :data:`_SAME_OBJECT_IOU` are one object; the
    kept one's reason names the other concept.
    """
    if len(det) < 2 or det.masks is None or det.scores is None:
        return det
    concept = det.attributes["concept"]
    if len(set(concept.tolist())) < 2:
        return det
    reasons = det.attributes["reason"].astype(object)
    # Boxes of one object overlap well; only such pairs pay for a full-resolution mask comparison.
    candidates = box_iou(det.xyxy, det.xyxy) >= 0.5
    keep = np.ones(len(det), bool)
    pending = np.ones(len(det), bool)  # not yet visited as the keeper, nor absorbed
    merged: Counter[tuple[str, str]] = Counter()
    for i in np.argsort(-det.scores, kind="stable"):
        if not keep[i]:
            continue
        pending[i] = False
        # Each concept's answer holds an object at most once: absorb at most one instance per concept.
        near = pending & (concept != concept[i]) & candidates[i]
        for other in dict.fromkeys(concept[near].tolist()):
            js = np.flatnonzero(near & (concept == other))
            ious = [_mask_iou_pair(det.masks[i], det.masks[j]) for j in js]
            if max(ious) < _SAME_OBJECT_IOU:
                continue
            j = int(js[int(np.argmax(ious))])
            keep[j] = pending[j] = False
            reasons[i] += f"; it also matches '{other}' (score {det.scores[j]:.2f})"
            merged[str(concept[i]), other] += 1
    for (kept, other), n in merged.items():
        objects = "one object" if n == 1 else f"{n} objects"
        notes.append(f"{objects} matched both '{kept}' and '{other}'; reported once, as '{kept}'")
    if keep.all():
        return det
    det = det.replace(attributes={**det.attributes, "reason": reasons.astype(np.str_)})
    return det[keep]


def _mask_iou_pair(a: BoolArray, b: BoolArray) -> float:
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b) / union) if union else 0.0
