"""``track``: a prompt followed through a video, frame by frame, with the query applied per frame.

The prompt is parsed once (:func:`promptseg.query.parse`); its concepts go to the backend on keyframes
and a tracker follows the objects in between (the offline :class:`~promptseg.video.tracker.OfflineTracker`
by default). The rest of the prompt is resolved on every frame over the tracked objects, so "the person
on the left" may pass from one person to another: the frame then says so (:attr:`TrackedFrame.change`).

Example:
    >>> for step in track("street.mp4", "people on the left", max_frames=100):   # doctest: +SKIP
    ...     print(step.frame.index, step.detections.track_ids, step.change)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from promptseg.backends.base import Backend
from promptseg.backends.registry import load_backend
from promptseg.errors import ConfigError, QueryError
from promptseg.query.engine import Parser, load_parser
from promptseg.query.model import Query, Term
from promptseg.query.resolve import Resolver
from promptseg.types import Detections, UInt8Array
from promptseg.video.sources import open_source
from promptseg.video.types import Frame, FrameSource, Tracker

__all__ = ["TrackedFrame", "VideoQuery", "track"]

_CONCEPT = "query_concept"  # the attribute that records which concept of the prompt found a track
VIDEO_TRACKERS = ("sam2", "edgetam", "sam3")
"""Backends with a video model: ``sam3`` tracks the prompt's concepts itself; ``sam2`` and ``edgetam``
propagate masks of the objects a text detector (``-o detector=offline`` by default) finds on keyframes."""


@dataclass(frozen=True)
class TrackedFrame:
    """One frame's answer.

    Attributes:
        frame: the decoded frame.
        detections: the objects that answer the prompt in this frame, ``track_ids`` set; with a
            compositional prompt each has ``attributes["explanation"]``.
        change: for a prompt that picks particular objects ("the person on the left", "the largest
            car"), a sentence when the pick moved to other tracks since the previous frame; else None.
        seconds: time spent on this frame (tracking and resolving, not decoding).
    """

    frame: Frame
    detections: Detections
    change: str | None = None
    seconds: float = 0.0


class VideoQuery:
    """A parsed prompt bound to a backend and a tracker, applied frame by frame.

    Args:
        prompt: plain words, or a parsed :class:`~promptseg.query.Query`.
        backend: a registered backend name or a loaded backend; with the offline default the detector
            runs without masks and the tracker draws them (``masks``).
        tracker: a tracker to use (None: an :class:`~promptseg.video.tracker.OfflineTracker` on the
            backend's detections).
        threshold: the backend's minimum score (None: its default).
        parser: ``"rules"`` (default), ``"gemini[:MODEL]"``, ``"openai[:MODEL]"`` or a parser.
        masks: the box-to-mask method of the offline tracker (``"none"`` for boxes only).
        keyframe_interval: frames between detector runs at most (the tracker runs it sooner when the
            scene changes).
        **backend_options: passed to :func:`~promptseg.backends.load_backend` for a backend name.
    """

    def __init__(
        self,
        prompt: str | Query,
        *,
        backend: str | Backend = "offline",
        tracker: Tracker | None = None,
        threshold: float | None = None,
        parser: str | Parser | None = None,
        masks: str = "color",
        keyframe_interval: int = 5,
        **backend_options: Any,
    ) -> None:
        self.query = prompt if isinstance(prompt, Query) else load_parser(parser)(prompt)
        if self.query.refer != "new":
            raise QueryError(
                f"{self.query.prompt!r} refers to an earlier answer; a video prompt must name what to track"
            )
        self.concepts = self.query.concepts()
        if not self.concepts:
            raise QueryError(f"{self.query.prompt!r} names nothing to track")
        masker = None
        self.backend: Backend | None = None
        if tracker is None and isinstance(backend, str) and backend in VIDEO_TRACKERS:
            tracker, self.backend = self._video_tracker(backend, backend_options)
        elif isinstance(backend, str):
            if backend.startswith("offline"):
                backend_options.setdefault("masks", "none")  # the tracker draws masks on tracked boxes
                if masks != "none":
                    from promptseg.refine import load_refiner

                    masker = load_refiner(masks)
            self.backend = load_backend(backend, **backend_options)
        else:
            self.backend = backend
        self.threshold = threshold
        if tracker is None:
            from promptseg.video.tracker import OfflineTracker

            tracker = OfflineTracker(self._detect, masker=masker, keyframe_interval=keyframe_interval)
        self.tracker = tracker
        self._simple = _is_simple(self.query)
        self._picks = _picks(self.query)
        self._previous: list[int] | None = None

    def _video_tracker(self, name: str, options: dict[str, Any]) -> tuple[Tracker, Backend | None]:
        """SAM 3 video for a text prompt; SAM 2 / EdgeTAM video prompted by a text detector."""
        from promptseg.video import hf_video

        detector_name = options.pop("detector", "offline")
        if name == "sam3":
            return hf_video.Sam3VideoTracker(self.concepts, **options), None
        detector = load_backend(detector_name, masks="none")
        return hf_video.Sam2VideoTracker(detect=self._detect, **options), detector

    def _detect(self, image: UInt8Array) -> Detections:
        """Every concept of the prompt on one image, each instance tagged with its concept."""
        if self.backend is None:
            raise ConfigError("this video query has no detector: its tracker finds the objects itself")
        parts = []
        for concept in self.concepts:
            det = self.backend.detect(image, concept, threshold=self.threshold)
            tags = np.array([concept] * len(det), dtype=np.str_)
            parts.append(det.replace(attributes={**det.attributes, _CONCEPT: tags}))
        return Detections.concat(parts)

    def update(self, frame: Frame) -> TrackedFrame:
        """Track one more frame and answer the prompt on it."""
        start = time.perf_counter()
        tracked = self.tracker.update(frame)
        if self._simple:
            answer = tracked
        else:
            resolver = Resolver(frame.image, lambda concept: _of_concept(tracked, concept))
            answer = resolver.resolve(self.query).detections.with_meta(**_frame_meta(tracked))
        change = None
        if self._picks:
            ids = [] if answer.track_ids is None else sorted(int(i) for i in answer.track_ids)
            if self._previous is not None and ids != self._previous:
                change = _change_text(self.query, self._previous, ids)
            self._previous = ids
        return TrackedFrame(frame, answer, change, time.perf_counter() - start)


def track(
    source: str | int | os.PathLike[str] | FrameSource,
    prompt: str | Query,
    *,
    backend: str | Backend = "offline",
    tracker: Tracker | None = None,
    threshold: float | None = None,
    parser: str | Parser | None = None,
    masks: str = "color",
    keyframe_interval: int = 5,
    max_frames: int | None = None,
    progress: Callable[[TrackedFrame, FrameSource], None] | None = None,
    **backend_options: Any,
) -> Iterator[TrackedFrame]:
    """Follow everything a prompt names through a video, frame by frame.

    Args:
        source: a video file, a folder of frames, a webcam index, an RTSP/HTTP URL, or an opened source
            (see :func:`~promptseg.video.sources.open_source`).
        prompt: plain words ("people", "the person on the left", "cars except the red one").
        max_frames: stop after this many frames (None: until the source ends).
        progress: called after each frame with the answer and the source (for its ``stats``).
        backend, tracker, threshold, parser, masks, keyframe_interval, backend_options: see
            :class:`VideoQuery`.

    Yields:
        :class:`TrackedFrame` per decoded frame; corrupt frames are skipped (``source.stats.corrupt``).
        The source is closed when the iteration ends or is abandoned.
    """
    video_query = VideoQuery(
        prompt,
        backend=backend,
        tracker=tracker,
        threshold=threshold,
        parser=parser,
        masks=masks,
        keyframe_interval=keyframe_interval,
        **backend_options,
    )
    frames = (
        open_source(source, max_frames=max_frames) if isinstance(source, (str, int, os.PathLike)) else source
    )
    try:
        for frame in frames:
            step = video_query.update(frame)
            if progress is not None:
                progress(step, frames)
            yield step
    finally:
        frames.close()


def _is_simple(query: Query) -> bool:
    """A prompt that only names concepts ("people", "bags and luggage"): every track answers it."""
    return not query.exclude and all(
        term == Term(term.concept, plural=term.plural, text=term.text) for term in query.include
    )


def _picks(query: Query) -> bool:
    """Whether the prompt picks particular objects, so the pick can move between tracks."""
    return any(
        t.count is not None
        or t.ordinal is not None
        or t.size in ("largest", "smallest")
        or any(r.kind == "nearest" for r in t.relations)
        for t in query.include
    )


def _of_concept(tracked: Detections, concept: str) -> Detections:
    tags = tracked.attributes.get(_CONCEPT)
    if tags is None:  # a tracker that names objects by concept (SAM 3 video), or one that keeps no attributes
        named = tracked.labels == concept
        return tracked[named] if named.any() else tracked
    return tracked[tags == concept]


def _frame_meta(tracked: Detections) -> dict[str, Any]:
    keys = ("frame_index", "keyframe", "keyframe_reason", "scene_change", "lost_tracks", "timing_ms")
    return {k: tracked.meta[k] for k in keys if k in tracked.meta}


def _change_text(query: Query, before: list[int], after: list[int]) -> str:
    what = query.prompt or "the pick"
    if not after:
        return f"{what!r} matches no track any more (was {_ids(before)})"
    if not before:
        return f"{what!r} is now {_ids(after)}"
    return f"{what!r} is now {_ids(after)} (was {_ids(before)})"


def _ids(ids: list[int]) -> str:
    return ", ".join(f"track {i}" for i in ids)
