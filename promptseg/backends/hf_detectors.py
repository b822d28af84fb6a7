"""Open-vocabulary text-to-box detectors over Hugging Face transformers, with masks drawn from the boxes.

A prompt is split into concepts ("red cups and plates" -> "red cups", "plates"); the detector finds
boxes for every concept, overlapping boxes of one concept are merged (class-aware NMS), and a
box-to-mask method (:mod:`promptseg.backends._masks`: a refiner such as ``"color"``, a SAM-family
model such as ``"sam2"``, or ``"none"``) draws a mask in each box.

- :class:`Owlv2Backend`: one text query per concept; every image patch proposes a box, scored by the
  sigmoid of its best query's logit.
- :class:`GroundingDinoBackend`: one caption, ``"red cups. plates."``; a box's score is its best token
  probability, and its concept the one whose words it matches best.
- :class:`Florence2Backend`: one generated answer per concept (its task prompt), boxes written as
  ``<loc_N>`` tokens on a 1000-bin grid; the score is the geometric mean of the probabilities of the
  box's four location tokens (Florence-2 has no detection score).

All three run several images in one batch (:meth:`~_TextDetector.detect_batch`).

Example:
    >>> from promptseg import load_backend
    >>> owl = load_backend("owlv2", masks="sam2")                 # doctest: +SKIP
    >>> det = owl.detect(image, "red cups and plates")            # doctest: +SKIP
    >>> det.attributes["reason"][0]                               # doctest: +SKIP
    "OWLv2 matched 'red cups' with score 0.41"
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from promptseg.backends._common import prompt_texts as _prompt_texts
from promptseg.backends._hf import load_pretrained
from promptseg.backends._masks import Masker, load_masker
from promptseg.backends.registry import get_spec
from promptseg.errors import ConfigError, InputError
from promptseg.image import check_rgb
from promptseg.ops.boxes import clip_xyxy
from promptseg.ops.nms import nms
from promptseg.text.words import split_concepts
from promptseg.types import Detections, FloatArray, ImageSize, IntArray, UInt8Array

__all__ = [
    "FLORENCE2_TASKS",
    "Florence2Answer",
    "Florence2Backend",
    "GroundingDinoBackend",
    "Owlv2Backend",
    "parse_florence2_answer",
]

FLORENCE2_TASKS = ("<CAPTION_TO_PHRASE_GROUNDING>", "<OPEN_VOCABULARY_DETECTION>")
"""The Florence-2 tasks that answer with boxes for a phrase."""


@dataclass
class _Found:
    """One image's boxes before clipping and NMS, with the concept each answers."""

    xyxy: FloatArray  # (N, 4) pixels of the image, possibly outside it
    scores: FloatArray  # (N,) in [0, 1]
    concepts: IntArray  # (N,) index into the concept list
    details: list[str]  # (N,) the model-specific part of each reason ("with score 0.41")
    notes: list[str] = field(default_factory=list)
    answers: dict[str, str] = field(default_factory=dict)  # generative models: concept -> raw answer


class _TextDetector:
    """The shared flow: prompt -> concepts -> the model's boxes -> NMS -> masks -> :class:`Detections`.

    Subclasses name the model and implement :meth:`_find`, one batched pass over several images.
    """

    DEFAULT_WEIGHTS: ClassVar[str]
    DEFAULT_THRESHOLD: ClassVar[float]
    capabilities: frozenset[str] = frozenset({"text", "boxes", "masks"})  # without "masks" for masks="none"
    _REGISTRY_NAME: ClassVar[str]
    _DISPLAY: ClassVar[str]
    _MODEL_CLASS: ClassVar[str]
    _PROCESSOR_CLASS: ClassVar[str]
    _MODEL_TYPES: ClassVar[tuple[str, ...]]

    def __init__(
        self,
        *,
        weights: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        threshold: float | None = None,
        masks: str = "color",
        mask_weights: str | None = None,
        nms_iou: float = 0.5,
        name: str | None = None,
    ) -> None:
        self.name = name or self._REGISTRY_NAME
        self.threshold = _check_fraction(
            self.DEFAULT_THRESHOLD if threshold is None else threshold, "threshold"
        )
        self.nms_iou = _check_fraction(nms_iou, "nms_iou")
        # the masker first: a mistyped mask method fails before a large checkpoint is read
        self._masker: Masker = load_masker(
            masks, weights=mask_weights, device=device, dtype=dtype, owner=self.name
        )
        loaded = load_pretrained(
            self._MODEL_CLASS,
            self._PROCESSOR_CLASS,
            weights or self.DEFAULT_WEIGHTS,
            backend=self.name,
            device=device,
            dtype=dtype,
            license=get_spec(self._REGISTRY_NAME).license,
            model_types=self._MODEL_TYPES,
        )
        self._model = loaded.model
        self._processor = loaded.processor
        self._device = loaded.device
        self._dtype = loaded.dtype
        self.masks = masks
        self.capabilities = frozenset(
            {"text", "boxes", "masks"} if self._masker.draws_masks else {"text", "boxes"}
        )
        self._provenance = {**loaded.provenance, **self._masker.provenance, "nms_iou": self.nms_iou}

    @property
    def model(self) -> Any:
        """The transformers model (read-only use: inspection, hooks)."""
        return self._model

    def detect(
        self, image: UInt8Array, prompts: str | Sequence[str], *, threshold: float | None = None
    ) -> Detections:
        """Find every instance of each concept the prompts name.

        Args:
            image: ``(H, W, 3)`` uint8 RGB.
            prompts: a prompt ("red cups and plates") or several; each is split into concepts
                (:func:`~promptseg.text.words.split_concepts`) and every concept is looked for.
            threshold: minimum score, exclusive (None: the backend's default).

        Returns:
            Detections in the image's pixel frame: ``xyxy`` boxes clipped to the image, labels = the
            concept phrase each box answers, scores above ``threshold``, masks ``(N, H, W)`` bool
            (None with ``masks="none"``), ``attributes["concept"]`` and ``attributes["reason"]`` (one
            sentence each; ``attributes["mask_score"]`` too when a SAM-family model drew the masks).
            Instances are grouped by concept in prompt order, best first. ``meta`` holds the
            provenance (model, weights, device, dtype, mask method), the prompt, threshold, concepts
            and ``notes``.

        Raises:
            InputError: for a bad image, or prompts that are not strings.
            QueryError: for a prompt that names nothing.
            ConfigError: for a threshold outside [0, 1].
        """
        return self.detect_batch([image], prompts, threshold=threshold)[0]

    def detect_batch(
        self, images: Sequence[UInt8Array], prompts: str | Sequence[str], *, threshold: float | None = None
    ) -> list[Detections]:
        """The same prompts on several images, in one forward pass of the model.

        Args:
            images: ``(H_i, W_i, 3)`` uint8 RGB images; sizes may differ.
            prompts: as in :meth:`detect`.
            threshold: as in :meth:`detect`.

        Returns:
            One :class:`Detections` per image, in order, as :meth:`detect` would return it.
        """
        checked = [check_rgb(im, purpose=f"backend {self.name!r} (image {i})") for i, im in enumerate(images)]
        if not checked:
            raise InputError("detect_batch needs at least one image (got none)")
        threshold = self.threshold if threshold is None else _check_fraction(threshold, "threshold")
        texts = _prompt_texts(prompts)
        concepts = list(dict.fromkeys(c for text in texts for c in split_concepts(text)))
        with torch.inference_mode():
            found = self._find(checked, concepts, threshold)
        return [
            self._to_detections(image, answer, concepts, texts, threshold)
            for image, answer in zip(checked, found, strict=True)
        ]

    def predict(
        self,
        image: UInt8Array,
        *,
        boxes: Any = None,
        points: Any = None,
        point_labels: Any = None,
        labels: Any = None,
    ) -> Detections:
        """A mask for each box prompt (and point prompt, with a SAM-family ``masks``), drawn by the
        backend's box-to-mask method; the detector itself is not involved.

        See :class:`~promptseg.backends.base.Promptable` for the arguments.

        Raises:
            ConfigError: with ``masks="none"``, or point prompts to a refiner.
            InputError: for prompts :func:`~promptseg.backends.prompts.visual_prompts` refuses.
        """
        return self._masker.predict(
            image, boxes=boxes, points=points, point_labels=point_labels, labels=labels, owner=self.name
        )

    def _find(self, images: list[UInt8Array], concepts: list[str], threshold: float) -> list[_Found]:
        """Boxes of the concepts above ``threshold`` in each image, one batched pass."""
        raise NotImplementedError

    def _to_detections(
        self, image: UInt8Array, found: _Found, concepts: list[str], texts: list[str], threshold: float
    ) -> Detections:
        size: ImageSize = (int(image.shape[0]), int(image.shape[1]))
        notes = list(found.notes)
        xyxy = clip_xyxy(found.xyxy, size) if len(found.xyxy) else np.zeros((0, 4), np.float32)
        inside = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
        if not inside.all():
            notes.append(f"{int((~inside).sum())} box(es) had no area inside the image and were dropped")
        keep = np.flatnonzero(inside)
        keep = keep[
            nms(xyxy[keep], found.scores[keep], iou_threshold=self.nms_iou, class_ids=found.concepts[keep])
        ]
        # grouped by concept in prompt order, best first within each
        keep = keep[np.lexsort((-found.scores[keep], found.concepts[keep]))]
        xyxy, scores, which = xyxy[keep], found.scores[keep], found.concepts[keep]
        labels = [concepts[int(c)] for c in which]
        reasons = [f"{self._DISPLAY} {found.details[int(i)]}" for i in keep]
        masks, mask_scores = self._masker.masks(image, xyxy, labels)
        attributes: dict[str, Any] = {
            "concept": np.asarray(labels, dtype=np.str_).reshape(-1),
            "reason": np.asarray(reasons, dtype=np.str_).reshape(-1),
        }
        if mask_scores is not None:
            attributes["mask_score"] = np.asarray(mask_scores, np.float32)
        meta = {
            **self._provenance,
            "prompt": texts[0] if len(texts) == 1 else texts,
            "threshold": threshold,
            "concepts": concepts,
            "notes": notes,
            **self._extra_meta(),
        }
        if found.answers:
            meta["answers"] = found.answers
        return Detections(
            xyxy=xyxy,
            image_size=size,
            labels=np.asarray(labels, dtype=np.str_).reshape(-1),
            scores=scores,
            masks=masks,
            attributes=attributes,
            meta=meta,
        )

    def _extra_meta(self) -> dict[str, Any]:
        return {}

    def _pixels(self, inputs: Any) -> torch.Tensor:
        pixels: torch.Tensor = inputs["pixel_values"].to(self._device, self._dtype)
        return pixels


class Owlv2Backend(_TextDetector):
    """OWLv2 (Google): every image patch proposes a box, scored against each concept's text embedding.

    Args:
        weights: weights spec of a ``save_pretrained`` folder (default :attr:`DEFAULT_WEIGHTS`).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or None/``"auto"`` (the best present).
        dtype: ``"float32"``, ``"bfloat16"``, ``"float16"`` or None/``"auto"``.
        threshold: default minimum score; OWLv2's scores are low (0.1 is the transformers default, and
            true objects often score 0.2 to 0.5).
        masks: box-to-mask method: a refiner (``"color"``, ``"grabcut"``, ``"u2net"``, ``"ellipse"``,
            ``"box"``), a SAM-family backend (``"sam"``, ``"sam2"``, ``"edgetam"``) or ``"none"``.
        mask_weights: weights spec for ``masks="u2net"`` or the SAM-family model (default: its own).
        nms_iou: boxes of one concept overlapping a better one by more IoU than this are dropped.
        name: the registry name, recorded in ``meta``.

    Raises:
        ConfigError: for a threshold or nms_iou outside [0, 1], an unknown mask method, or a device or
            dtype this machine lacks.
        MissingDependencyError: when torch or transformers is missing.
        BackendUnavailable: when the weights are missing or are not an OWLv2 checkpoint.

    Example:
        >>> owl = Owlv2Backend(masks="box")                     # doctest: +SKIP
        >>> det = owl.detect(image, "cups")                      # doctest: +SKIP
    """

    DEFAULT_WEIGHTS = get_spec("owlv2").weights["model"]
    DEFAULT_THRESHOLD = 0.1
    _REGISTRY_NAME = "owlv2"
    _DISPLAY = "OWLv2"
    _MODEL_CLASS = "Owlv2ForObjectDetection"
    _PROCESSOR_CLASS = "Owlv2Processor"
    _MODEL_TYPES = ("owlv2",)

    def _find(self, images: list[UInt8Array], concepts: list[str], threshold: float) -> list[_Found]:
        sizes = [(int(im.shape[0]), int(im.shape[1])) for im in images]
        limit = int(self._model.config.text_config.max_position_embeddings)
        lengths = [len(ids) for ids in self._processor.tokenizer(concepts)["input_ids"]]
        cut = [c for c, n in zip(concepts, lengths, strict=True) if n > limit]
        notes = (
            [f"OWLv2 reads {limit} tokens of a concept; read only in part: {', '.join(map(repr, cut))}"]
            if cut
            else []
        )
        inputs = self._processor(
            text=[concepts] * len(images),
            images=images,
            return_tensors="pt",
            truncation=True,
            input_data_format="channels_last",
        )
        outputs = self._model(
            input_ids=inputs["input_ids"].to(self._device),
            attention_mask=inputs["attention_mask"].to(self._device),
            pixel_values=self._pixels(inputs),
        )
        results = self._processor.post_process_grounded_object_detection(
            outputs, threshold=threshold, target_sizes=sizes
        )
        found = []
        for result in results:
            scores = _numpy(result["scores"])
            which = _numpy(result["labels"]).astype(np.int64)
            details = [
                f"matched '{concepts[c]}' with score {s:.2f}" for c, s in zip(which, scores, strict=True)
            ]
            found.append(
                _Found(_numpy(result["boxes"]).reshape(-1, 4), scores, which, details, notes[: bool(cut)])
            )
        return found


class GroundingDinoBackend(_TextDetector):
    """Grounding DINO (IDEA Research): boxes for the phrases of one caption, ``"red cups. plates."``.

    Each box's score is its best token probability (as in the original); its concept is the one whose
    words it matches best, read from the per-token probabilities rather than decoded text, so a box
    always answers exactly one concept.

    Args:
        weights: weights spec of a ``save_pretrained`` folder (default :attr:`DEFAULT_WEIGHTS`).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or None/``"auto"``.
        dtype: ``"float32"``, ``"bfloat16"``, ``"float16"`` or None/``"auto"``.
        threshold: default minimum box score (0.35, the authors' box threshold).
        masks: box-to-mask method, as for :class:`Owlv2Backend`.
        mask_weights: weights spec for ``masks="u2net"`` or the SAM-family model.
        nms_iou: IoU above which a box of one concept is dropped for a better one.
        name: the registry name, recorded in ``meta``.

    Raises:
        ConfigError, MissingDependencyError, BackendUnavailable: as for :class:`Owlv2Backend`.

    Example:
        >>> dino = GroundingDinoBackend(masks="sam")             # doctest: +SKIP
        >>> det = dino.detect(image, "people and bags")          # doctest: +SKIP
    """

    DEFAULT_WEIGHTS = get_spec("grounding-dino").weights["model"]
    DEFAULT_THRESHOLD = 0.35
    _REGISTRY_NAME = "grounding-dino"
    _DISPLAY = "Grounding DINO"
    _MODEL_CLASS = "GroundingDinoForObjectDetection"
    _PROCESSOR_CLASS = "GroundingDinoProcessor"
    _MODEL_TYPES = ("grounding-dino",)

    def _find(self, images: list[UInt8Array], concepts: list[str], threshold: float) -> list[_Found]:
        sizes = [(int(im.shape[0]), int(im.shape[1])) for im in images]
        caption = ". ".join(concepts) + "."
        max_tokens = int(self._model.config.max_text_len)
        token_concept, notes = _caption_tokens(self._processor.tokenizer, caption, concepts, max_tokens)
        inputs = self._processor(
            images=images,
            text=[caption] * len(images),
            return_tensors="pt",
            truncation=True,
            max_length=max_tokens,
            input_data_format="channels_last",
        )
        input_ids = inputs["input_ids"].to(self._device)
        outputs = self._model(
            input_ids=input_ids,
            attention_mask=inputs["attention_mask"].to(self._device),
            token_type_ids=inputs["token_type_ids"].to(self._device),
            pixel_values=self._pixels(inputs),
            pixel_mask=inputs["pixel_mask"].to(self._device),
        )
        results = self._processor.post_process_grounded_object_detection(
            outputs, input_ids=input_ids, threshold=threshold, text_threshold=threshold, target_sizes=sizes
        )
        token_probs = torch.sigmoid(outputs.logits.float())  # (B, queries, max_text_len)
        found = []
        for probs, result in zip(token_probs, results, strict=True):
            kept = probs[probs.max(dim=-1).values > threshold]  # the post-processor's own selection
            scores = _numpy(result["scores"])
            if len(kept) != len(scores):  # a transformers change in how boxes are kept
                raise InputError(
                    f"{self._DISPLAY}: the post-processor kept {len(scores)} boxes, the logits {len(kept)}"
                )
            per_concept = _concept_probs(_numpy(kept), token_concept, len(concepts))
            which = per_concept.argmax(axis=1).astype(np.int64) if len(kept) else np.zeros(0, np.int64)
            details = [
                f"matched '{concepts[c]}' with score {s:.2f} (its words {per_concept[i, c]:.2f})"
                for i, (c, s) in enumerate(zip(which, scores, strict=True))
            ]
            found.append(_Found(_numpy(result["boxes"]).reshape(-1, 4), scores, which, details, list(notes)))
        return found


class Florence2Backend(_TextDetector):
    """Florence-2 (Microsoft): a sequence-to-sequence model that answers a task prompt with text and
    ``<loc_N>`` location tokens; four make a box on a 1000x1000 grid over the image.

    Each concept gets its own answer (all answers of a batch are generated together, greedily), so a
    box's label is the concept it was asked for. Florence-2 gives no detection score: the score here is
    the geometric mean of the model's probabilities for the box's four location tokens, how sure it
    was of where the box lies (``meta["score"]`` says so). It is not calibrated like a detector's
    score; the default threshold keeps every box. ``meta["answers"]`` keeps each concept's answer as
    the model wrote it, and ``meta["notes"]`` says what in it could not be read.

    Args:
        weights: weights spec of a ``save_pretrained`` folder (default :attr:`DEFAULT_WEIGHTS`).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or None/``"auto"``.
        dtype: ``"float32"``, ``"bfloat16"``, ``"float16"`` or None/``"auto"``.
        threshold: default minimum score (see above).
        masks: box-to-mask method, as for :class:`Owlv2Backend`.
        mask_weights: weights spec for ``masks="u2net"`` or the SAM-family model.
        nms_iou: IoU above which a box of one concept is dropped for a better one.
        task: ``"<CAPTION_TO_PHRASE_GROUNDING>"`` (default) or ``"<OPEN_VOCABULARY_DETECTION>"``.
        max_new_tokens: the longest answer, in tokens (a box takes about six).
        name: the registry name, recorded in ``meta``.

    Raises:
        ConfigError: for an unknown task or a ``max_new_tokens`` below 1, and as for
            :class:`Owlv2Backend`.
        MissingDependencyError, BackendUnavailable: as for :class:`Owlv2Backend`.

    Example:
        >>> florence = Florence2Backend(masks="sam2")            # doctest: +SKIP
        >>> det = florence.detect(image, "the red car")          # doctest: +SKIP
    """

    DEFAULT_WEIGHTS = get_spec("florence-2").weights["model"]
    DEFAULT_THRESHOLD = 0.0
    _REGISTRY_NAME = "florence-2"
    _DISPLAY = "Florence-2"
    _MODEL_CLASS = "Florence2ForConditionalGeneration"
    _PROCESSOR_CLASS = "Florence2Processor"
    _MODEL_TYPES = ("florence2",)

    def __init__(
        self,
        *,
        weights: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        masks: str = "color",
        mask_weights: str | None = None,
        nms_iou: float = 0.5,
        task: str = FLORENCE2_TASKS[0],
        max_new_tokens: int = 1024,
        name: str = "florence-2",
    ) -> None:
        if task not in FLORENCE2_TASKS:
            raise ConfigError(f"unknown Florence-2 task {task!r}; use one of {', '.join(FLORENCE2_TASKS)}")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
        self.task = task
        self.max_new_tokens = max_new_tokens
        super().__init__(
            weights=weights,
            device=device,
            dtype=dtype,
            threshold=threshold,
            masks=masks,
            mask_weights=mask_weights,
            nms_iou=nms_iou,
            name=name,
        )

    def _extra_meta(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "score": "geometric mean of the probabilities of the box's 4 location tokens (greedy decoding)",
        }

    def _find(self, images: list[UInt8Array], concepts: list[str], threshold: float) -> list[_Found]:
        # one answer per (image, concept), image-major
        pairs = [(i, c) for i in range(len(images)) for c in range(len(concepts))]
        inputs = self._processor(
            text=[f"{self.task}{concepts[c]}" for _, c in pairs],
            images=[images[i] for i, _ in pairs],
            return_tensors="pt",
            padding=True,
            input_data_format="channels_last",
        )
        generated = self._model.generate(
            input_ids=inputs["input_ids"].to(self._device),
            attention_mask=inputs["attention_mask"].to(self._device),
            pixel_values=self._pixels(inputs),
            max_new_tokens=self.max_new_tokens,
            num_beams=1,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
        )
        tokens = generated.sequences[:, 1:]  # after the decoder's start token
        # each chosen token's probability under the model's raw logits, one step at a time (a (B, T, V)
        # stack of a long answer would take hundreds of MB)
        token_log_probs = _numpy(
            torch.stack(
                [
                    step.float().log_softmax(dim=-1).gather(-1, tokens[:, t : t + 1])[:, 0]
                    for t, step in enumerate(generated.logits)
                ],
                dim=1,
            )
        )
        tokenizer = self._processor.tokenizer
        per_image: list[list[tuple[int, Florence2Answer, FloatArray, str]]] = [[] for _ in images]
        for row, (i, c) in enumerate(pairs):
            ids = tokens[row].tolist()
            answer = parse_florence2_answer(
                _token_pieces(tokenizer, ids), (int(images[i].shape[0]), int(images[i].shape[1]))
            )
            # cut short: no end before the last step (BART's generation config forces </s> there)
            ended = ids.index(tokenizer.eos_token_id) if tokenizer.eos_token_id in ids else len(ids)
            if len(ids) >= self.max_new_tokens and ended >= len(ids) - 1:
                answer.notes.append(
                    f"the answer reached max_new_tokens={self.max_new_tokens} before it ended; "
                    "boxes after that were not written"
                )
            scores = [math.exp(float(token_log_probs[row, list(idx)].mean())) for idx in answer.pieces]
            raw = tokenizer.decode(ids, skip_special_tokens=False).replace("<pad>", "")
            per_image[i].append((c, answer, np.asarray(scores, np.float32).reshape(-1), raw))
        return [_florence2_found(answers, concepts, threshold) for answers in per_image]


def _florence2_found(
    answers: list[tuple[int, Florence2Answer, FloatArray, str]], concepts: list[str], threshold: float
) -> _Found:
    """One image's boxes from its answers (concept, parsed, scores, raw text), above ``threshold``."""
    xyxy: list[FloatArray] = []
    scores: list[float] = []
    which: list[int] = []
    details: list[str] = []
    notes: list[str] = []
    for c, answer, answer_scores, _ in answers:
        for box, phrase, score in zip(answer.xyxy, answer.phrases, answer_scores, strict=True):
            if score <= threshold:
                continue
            said = f" (its answer: '{phrase}')" if phrase and phrase != concepts[c] else ""
            xyxy.append(box)
            scores.append(score)
            which.append(c)
            details.append(f"located '{concepts[c]}'{said} with location-token probability {score:.2f}")
        notes.extend(f"'{concepts[c]}': {note}" for note in answer.notes)
    return _Found(
        np.asarray(xyxy, np.float32).reshape(-1, 4),
        np.asarray(scores, np.float32).reshape(-1),
        np.asarray(which, np.int64).reshape(-1),
        details,
        notes,
        {concepts[c]: raw for c, _, _, raw in answers},
    )


@dataclass(frozen=True)
class Florence2Answer:
    """What one Florence-2 answer says, read by :func:`parse_florence2_answer`.

    Attributes:
        xyxy: ``(N, 4)`` float32 boxes in the image's pixels (each location bin's centre).
        phrases: ``(N,)`` the text before each box (``""`` when there is none).
        pieces: ``(N,)`` indices of each box's four location tokens among the answer's pieces (its
            tokens, when the answer was given as tokens).
        notes: what could not be read, and was left out (partial boxes, polygons, text with no box).
    """

    xyxy: FloatArray
    phrases: list[str]
    pieces: list[tuple[int, int, int, int]]
    notes: list[str]


_LOC = re.compile(r"<loc_(\d+)>")
_PIECE = re.compile(r"<[^<>\s]{1,40}>|[^<]+|<")


def parse_florence2_answer(answer: str | Sequence[str], image_size: ImageSize) -> Florence2Answer:
    """Read the boxes out of a Florence-2 answer such as ``"cup<loc_52><loc_333><loc_932><loc_774>"``.

    An answer is phrases, each followed by one or more groups of four location tokens ``<loc_N>``
    (``N`` in 0..999: x1, y1, x2, y2 on a 1000-bin grid); ``<s>``, ``</s>`` and ``<pad>`` are ignored.
    What does not fit is left out and described in ``notes``, never guessed at: location tokens that
    do not make a whole group of four, bins above 999, boxes with reversed corners, polygons
    (``<poly>`` .. ``</poly>``), and text followed by no box. Nothing raises on a malformed answer.

    Args:
        answer: the decoded answer (special tokens kept), or its tokens as strings, in order.
        image_size: ``(H, W)`` of the image the answer is about.

    Returns:
        The boxes in the image's pixels, with their phrases, token positions and notes.

    Raises:
        InputError: when ``answer`` is neither a string nor a sequence of strings.

    Example:
        >>> a = parse_florence2_answer("</s><s>cup<loc_0><loc_0><loc_499><loc_999></s>", (1000, 2000))
        >>> a.xyxy.tolist(), a.phrases
        ([[1.0, 0.5, 999.0, 999.5]], ['cup'])
    """
    if isinstance(answer, str):
        pieces = _PIECE.findall(answer)
    elif isinstance(answer, Sequence) and all(isinstance(p, str) for p in answer):
        pieces = list(answer)
    else:
        raise InputError(
            f"a Florence-2 answer is a string or a sequence of token strings, got {answer!r:.80}"
        )
    h, w = image_size
    boxes: list[list[float]] = []
    phrases: list[str] = []
    positions: list[tuple[int, int, int, int]] = []
    problems: Counter[str] = Counter()
    unboxed: list[str] = []
    phrase: list[str] = []  # text pieces of the pending phrase
    locs: list[tuple[int, int]] = []  # pending (bin, piece index)
    in_polygon = False

    def end_phrase() -> None:
        """Turn the pending location tokens into boxes of the pending phrase, and end that phrase."""
        text = "".join(phrase).strip()
        phrase.clear()
        if not locs:
            if text:
                unboxed.append(text)
            return
        problems["partial"] += len(locs) % 4
        for k in range(0, len(locs) - len(locs) % 4, 4):
            group = locs[k : k + 4]
            b = [g[0] for g in group]
            if max(b) > 999:
                problems["range"] += 1
            elif b[2] < b[0] or b[3] < b[1]:
                problems["reversed"] += 1
            else:
                boxes.append([(b[0] + 0.5) * w / 1000, (b[1] + 0.5) * h / 1000,
                              (b[2] + 0.5) * w / 1000, (b[3] + 0.5) * h / 1000])  # fmt: skip
                phrases.append(text)
                positions.append((group[0][1], group[1][1], group[2][1], group[3][1]))
        locs.clear()

    for index, piece in enumerate(pieces):
        if in_polygon:
            in_polygon = piece != "</poly>"
            continue
        loc = _LOC.fullmatch(piece)
        if loc is not None:
            locs.append((int(loc.group(1)), index))
        elif piece == "<poly>":
            if not locs:
                phrase.clear()  # its text names the polygon, which is reported below
            end_phrase()
            problems["polygon"] += 1
            in_polygon = True
        elif piece.startswith("<") and piece.endswith(">") and len(piece) > 2:
            end_phrase()  # a marker (</s>, <pad>, <sep>, <od>, ...) ends the pending phrase
        else:
            if locs:  # text after boxes starts the next phrase
                end_phrase()
            phrase.append(piece)
    end_phrase()

    notes = []
    if problems["partial"]:
        notes.append(
            f"{problems['partial']} location token(s) did not make a whole box of four and were ignored"
        )
    if problems["range"]:
        notes.append(f"{problems['range']} box(es) had a location bin above 999 and were ignored")
    if problems["reversed"]:
        notes.append(
            f"{problems['reversed']} box(es) had reversed corners (x2 < x1 or y2 < y1) and were ignored"
        )
    if problems["polygon"]:
        notes.append(f"{problems['polygon']} polygon(s) were not read (only boxes are)")
    if unboxed:
        shown = ", ".join(repr(t[:40]) for t in unboxed[:3]) + (" ..." if len(unboxed) > 3 else "")
        notes.append(f"text with no box after it was ignored: {shown}")
    return Florence2Answer(
        xyxy=np.asarray(boxes, np.float32).reshape(-1, 4),
        phrases=phrases,
        pieces=positions,
        notes=notes,
    )


def _token_pieces(tokenizer: Any, ids: list[int]) -> list[str]:
    """Each token's text, special tokens as written (``"<loc_52>"``, ``"</s>"``), words decoded."""
    tokens = tokenizer.convert_ids_to_tokens(ids)
    special = set(tokenizer.all_special_tokens) | set(tokenizer.get_added_vocab())
    return [t if t in special else tokenizer.convert_tokens_to_string([t]) for t in tokens]


def _caption_tokens(
    tokenizer: Any, caption: str, concepts: list[str], max_tokens: int
) -> tuple[IntArray, list[str]]:
    """For each token of the caption, the index of the concept it spells (-1: none, such as ".")."""
    encoded = tokenizer(caption, return_offsets_mapping=True, truncation=True, max_length=max_tokens)
    starts, position = [], 0
    for concept in concepts:
        starts.append(position)
        position += len(concept) + 2  # ". "
    token_concept = np.full(len(encoded["input_ids"]), -1, np.int64)
    read_to = [-1] * len(concepts)  # how far into the caption each concept's tokens reach
    for t, (begin, end) in enumerate(encoded["offset_mapping"]):
        if end <= begin:
            continue  # a special token
        for c, start in enumerate(starts):
            if start <= begin < start + len(concepts[c]):
                token_concept[t] = c
                read_to[c] = max(read_to[c], end)
    lost = [concepts[c] for c in range(len(concepts)) if read_to[c] < 0]
    part = [concepts[c] for c in range(len(concepts)) if 0 <= read_to[c] < starts[c] + len(concepts[c])]
    notes = []
    if lost or part:
        said = [f"not looked for: {', '.join(repr(c) for c in lost)}"] if lost else []
        said += [f"read only in part: {', '.join(repr(c) for c in part)}"] if part else []
        notes.append(f"the caption is longer than the model's {max_tokens} tokens; {'; '.join(said)}")
    return token_concept, notes


def _concept_probs(token_probs: FloatArray, token_concept: IntArray, n_concepts: int) -> FloatArray:
    """``(N, C)``: for each box, the best probability among each concept's tokens."""
    out = np.zeros((len(token_probs), n_concepts), np.float32)
    for c in range(n_concepts):
        columns = np.flatnonzero(token_concept == c)
        if len(columns) and len(token_probs):
            out[:, c] = token_probs[:, columns].max(axis=1)
    return out


def _check_fraction(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def _numpy(tensor: torch.Tensor) -> Any:
    return tensor.detach().float().cpu().numpy()
