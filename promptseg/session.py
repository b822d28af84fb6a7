"""A conversation about one image: the features are computed once, the answers are kept.

:class:`Session` is SAM's ``set_image`` / ``predict`` split for every backend. The first prompt pays for
the image features (the detector pass of the offline backend, the vision encoder of SAM or SAM 3);
later prompts on the same image reuse them, and a box or a point can refine an earlier answer.

Example:
    >>> session = Session("photo.jpg")                     # doctest: +SKIP
    >>> people = session.ask("people")                     # doctest: +SKIP
    >>> cups = session.ask("the cups")                     # reuses the detector pass  # doctest: +SKIP
    >>> left = session.ask("only the left one")            # a follow-up on the last answer  # doctest: +SKIP
    >>> # a point-promptable backend redraws an answer from a point
    >>> session.refine(0, points=[[120, 80]], point_labels=[0])  # doctest: +SKIP
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from promptseg.backends.base import Backend, CachesImage, Promptable
from promptseg.backends.registry import DEFAULT_BACKEND, load_backend
from promptseg.errors import ConfigError, InputError
from promptseg.image import load_image
from promptseg.query.engine import Conversation, Parser, load_parser
from promptseg.types import Detections, UInt8Array

__all__ = ["Session", "Turn"]


@dataclass(frozen=True)
class Turn:
    """One exchange: what was asked, what came back, and how long it took."""

    request: str
    result: Detections
    seconds: float


class Session:
    """One image and one backend in conversation.

    Args:
        image: a file path, encoded bytes, or an ``(H, W, 3)`` uint8 RGB array.
        backend: a registered backend name or a loaded backend.
        masker: for box and point prompts when ``backend`` takes none: a SAM-family backend name
            (``"sam"``, ``"sam2"``, ``"edgetam"``) or a loaded one. Default: the backend itself.
        max_pixels: refuse larger images (None: ``$PROMPTSEG_MAX_PIXELS`` or 100 MP).
        parser: how prompts are read: ``"rules"`` (default), ``"gemini[:MODEL]"``, ``"openai[:MODEL]"``
            (see :func:`~promptseg.query.load_parser`).
        **backend_options: passed to :func:`~promptseg.backends.load_backend` when ``backend`` is a name.

    Attributes:
        history: every :class:`Turn`, oldest first.
    """

    def __init__(
        self,
        image: str | os.PathLike[str] | bytes | UInt8Array,
        backend: str | Backend = DEFAULT_BACKEND,
        *,
        masker: str | Promptable | None = None,
        max_pixels: int | None = None,
        parser: str | Parser | None = None,
        **backend_options: Any,
    ) -> None:
        self._image = load_image(image, max_pixels=max_pixels)
        self.backend: Backend = (
            load_backend(backend, **backend_options) if isinstance(backend, str) else backend
        )
        if isinstance(masker, str):
            masker = load_backend(masker)  # type: ignore[assignment]
        if masker is not None and not isinstance(masker, Promptable):
            raise ConfigError(f"masker {getattr(masker, 'name', masker)!r} takes no box or point prompts")
        self.masker: Promptable | None = masker
        self.history: list[Turn] = []
        self._prepared: set[int] = set()
        self._parser = load_parser(parser)
        self._conversation: Conversation | None = None

    @property
    def image(self) -> UInt8Array:
        """The image, ``(H, W, 3)`` uint8 RGB (read-only)."""
        view = self._image.view()
        view.flags.writeable = False
        return view

    @property
    def last(self) -> Detections | None:
        """The latest answer, or None before the first."""
        return self.history[-1].result if self.history else None

    def ask(
        self, prompt: str | Sequence[str], *, threshold: float | None = None, **options: Any
    ) -> Detections:
        """Answer a prompt, reusing the image features and, for follow-ups, the last answer.

        Prompts are compositional ("the third cup from the left", "people without a helmet") and may
        refer to the last answer ("only the left one", "and the chairs too", "not that one", "the
        other bottle"); see :mod:`promptseg.query`. Each concept is detected once per threshold.

        Args:
            prompt: plain words, or several prompts (their union).
            threshold: minimum score (None: the backend's default). A new threshold starts a new
                conversation: earlier answers cannot be referred to after it.
            **options: extra keyword arguments of the backend's ``detect`` (e.g. SAM 3's
                ``exemplars``); with options the prompt goes to the backend as it is, unparsed.
        """
        if "text" not in self.backend.capabilities:
            raise ConfigError(
                f"backend {self.backend.name!r} takes no text prompts; use predict(boxes=..., points=...)"
            )
        start = time.perf_counter()
        self._prepare(self.backend)
        text = prompt if isinstance(prompt, str) else " | ".join(prompt)
        if options:
            result = self.backend.detect(self._image, prompt, threshold=threshold, **options)
            return self._record(f"ask {text!r}", result, start)
        conversation = self._conversation
        if conversation is None or conversation.threshold != threshold:
            conversation = Conversation(
                self._image, self.backend, threshold=threshold, parser=self._parser, prepared=True
            )
            self._conversation = conversation
        result = conversation.ask(prompt)
        return self._record(f"ask {text!r}", result, start)

    def predict(
        self,
        *,
        boxes: Any = None,
        points: Any = None,
        point_labels: Any = None,
        labels: str | Sequence[str] | None = None,
    ) -> Detections:
        """One mask per box and/or set of points (see :class:`~promptseg.backends.base.Promptable`)."""
        start = time.perf_counter()
        prompter = self._prompter(points is not None)
        self._prepare(prompter)
        result = prompter.predict(
            self._image, boxes=boxes, points=points, point_labels=point_labels, labels=labels
        )
        return self._record(_describe(boxes, points, point_labels), result, start)

    def refine(
        self,
        index: int,
        *,
        points: Any = None,
        point_labels: Any = None,
        box: Any = None,
    ) -> Detections:
        """Redraw instance ``index`` of the latest answer from its box (or ``box``) and extra points.

        The other instances are kept as they are; the refined one keeps its label and attributes, and
        its ``reason`` says how it was refined.

        Raises:
            InputError: before any answer, for an index out of range, or with neither points nor box.
        """
        last = self.last
        if last is None:
            raise InputError("nothing to refine yet: ask for something first")
        if not -len(last) <= index < len(last):
            raise InputError(f"no instance #{index}: the last answer has {len(last)}")
        if points is None and box is None:
            raise InputError(
                "refine needs points=[[x, y], ...] (with point_labels) and/or box=[x1, y1, x2, y2]"
            )
        index %= len(last)
        start = time.perf_counter()
        prompter = self._prompter(points is not None)
        self._prepare(prompter)
        prompt_box = last.xyxy[index] if box is None else np.asarray(box, np.float32).reshape(4)
        pts = None if points is None else np.asarray(points, np.float32).reshape(1, -1, 2)
        pls = None if point_labels is None else np.asarray(point_labels).reshape(1, -1)
        new = prompter.predict(
            self._image,
            boxes=prompt_box[None],
            points=pts,
            point_labels=pls,
            labels=[str(last.labels[index])],
        )
        how = _describe(prompt_box[None], pts, pls)
        result = _replace_instance(last, index, new, how)
        return self._record(f"refine #{index}: {how}", result, start)

    def reset(self) -> None:
        """Forget the answers; keep the image features and the detections made so far."""
        self.history.clear()
        if self._conversation is not None:
            self._conversation.forget()

    def _prompter(self, needs_points: bool) -> Promptable:
        candidates: list[Any] = [self.masker, self.backend]
        for candidate in candidates:
            if isinstance(candidate, Promptable) and "boxes" in candidate.capabilities:
                if needs_points and "points" not in candidate.capabilities:
                    continue
                return candidate
        kind = "point" if needs_points else "box"
        raise ConfigError(
            f"backend {self.backend.name!r} takes no {kind} prompts; start the session with "
            "masker='sam' (or 'sam2', 'edgetam') to add them"
        )

    def _prepare(self, model: Any) -> None:
        if id(model) not in self._prepared and isinstance(model, CachesImage):
            model.set_image(self._image)
            self._prepared.add(id(model))

    def _record(self, request: str, result: Detections, start: float) -> Detections:
        self.history.append(Turn(request, result, time.perf_counter() - start))
        return result


def _describe(boxes: Any, points: Any, point_labels: Any) -> str:
    parts = []
    if boxes is not None:
        arr = np.asarray(boxes, np.float32).reshape(-1, 4)
        parts.append(f"{len(arr)} box{'es' if len(arr) != 1 else ''}")
    if points is not None:
        n = np.asarray(points).size // 2
        neg = 0 if point_labels is None else int((np.asarray(point_labels) == 0).sum())
        parts.append(f"{n - neg} positive and {neg} negative point{'s' if neg != 1 else ''}")
    return ", ".join(parts)


def _replace_instance(det: Detections, index: int, new: Detections, how: str) -> Detections:
    xyxy = det.xyxy.copy()
    xyxy[index] = new.xyxy[0]
    scores = det.scores
    if scores is not None and new.scores is not None:
        scores = scores.copy()
        scores[index] = new.scores[0]
    masks = det.masks
    if new.masks is not None:
        masks = np.zeros((len(det), *det.image_size), bool) if masks is None else masks.copy()
        masks[index] = new.masks[0]
    attributes = {key: value.copy() for key, value in det.attributes.items()}
    if "reason" in attributes:
        reasons = attributes["reason"].astype(object)
        reasons[index] = f"{reasons[index]}; refined with {how}"
        attributes["reason"] = reasons.astype(np.str_)
    return det.replace(xyxy=xyxy, scores=scores, masks=masks, attributes=attributes)
