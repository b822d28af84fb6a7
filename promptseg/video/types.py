"""What the video parts share: a decoded frame, a source of frames, a tracker, and an output.

Frames are decoded one at a time and never held as a whole video. A tracker turns frames into
:class:`~promptseg.types.Detections` with ``track_ids``; outputs consume ``(frame, detections)`` pairs and
must leave a valid file behind after every :meth:`TrackOutput.write` (so a kill loses at most the frame
being written).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from promptseg.types import Detections, UInt8Array

__all__ = ["Frame", "FrameSource", "SourceStats", "TrackOutput", "Tracker"]


@dataclass(frozen=True)
class Frame:
    """One decoded frame.

    Attributes:
        index: 0-based position in the source, counting frames that were skipped as corrupt.
        time: seconds from the start of the source (the frame's presentation time when known, else
            ``index / fps``).
        image: ``(H, W, 3)`` uint8 RGB.
    """

    index: int
    time: float
    image: UInt8Array


@dataclass
class SourceStats:
    """What a source has seen so far (updated while iterating)."""

    frames: int = 0  # frames yielded
    corrupt: int = 0  # frames that could not be decoded and were skipped
    reconnects: int = 0  # times a dropped stream was opened again
    fps: float | None = None  # the source's nominal frame rate, when it says
    size: tuple[int, int] | None = None  # (H, W) of the frames
    notes: list[str] = field(default_factory=list)  # e.g. "stream ended after 3 reconnect attempts"


@runtime_checkable
class FrameSource(Protocol):
    """Frames of a video file, a folder of images, a webcam or a network stream, in order."""

    name: str
    stats: SourceStats

    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...


@runtime_checkable
class Tracker(Protocol):
    """Follows objects from frame to frame: each call returns the frame's objects with stable ids."""

    def update(self, frame: Frame) -> Detections:
        """The objects in ``frame``: ``track_ids`` set, a mask per object when the tracker draws masks."""
        ...


@runtime_checkable
class TrackOutput(Protocol):
    """A file written frame by frame (JSON lines, MOT text, an annotated MP4)."""

    def write(self, frame: Frame, detections: Detections) -> None: ...

    def close(self) -> None: ...
