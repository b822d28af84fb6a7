"""Video: frame sources, trackers, outputs and the ``track`` pipeline.

Importing this package loads nothing heavy; PyAV and OpenCV are imported when a source is opened or a
tracker is built.
"""

from promptseg.video.track import TrackedFrame, VideoQuery, track
from promptseg.video.types import Frame, FrameSource, SourceStats, Tracker, TrackOutput

__all__ = [
    "Frame",
    "FrameSource",
    "SourceStats",
    "TrackOutput",
    "TrackedFrame",
    "Tracker",
    "VideoQuery",
    "track",
]
