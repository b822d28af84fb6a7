"""Frame sources: a video file, a folder of images, a webcam or a network stream, one frame at a time.

:func:`open_source` picks the kind of source from its argument and returns a
:class:`~promptseg.video.types.FrameSource` that is also an iterator of
:class:`~promptseg.video.types.Frame` and a context manager. Nothing is read whole: a source holds the
frame it is decoding (plus what the decoder itself buffers), never the video.

What a bad input does, for every kind:

- Before the first frame, anything that cannot work (a missing file, a file that is not a video, no
  camera at that index, a stream that cannot be opened) raises a one-line :class:`InputError`.
- After that nothing is raised. A frame that cannot be decoded is skipped and counted in
  ``stats.corrupt``, and ``Frame.index`` counts it, so the indices have a gap where it was. Frames of
  a video are accounted by presentation time: each packet handed to the decoder stands for one frame,
  and a frame that never comes out (the decoder refused its packet or dropped it while it recovered)
  is counted as soon as a later one does, or at the end.
- After ``MAX_FAILURES_IN_A_ROW`` failures with no good frame between them a file or a recording stops,
  and a live stream reconnects; ``stats.notes`` says why.
- A live stream that drops (an error, a read timeout, or an end of stream, which a live stream does not
  have) is opened again after a pause that doubles from ``backoff`` up to ``max_backoff``; after
  ``reconnect`` attempts in a row with no frame it ends, with a note. Indices keep increasing across
  reconnections (frames lost while the stream was down are not known, so not counted).

``Frame.time``: for files and recordings, the presentation time minus the stream's start (``index /
fps`` for a frame without one); for folders ``index / fps``; for live sources (webcams, live streams)
the seconds since the source was opened, on the monotonic clock, when the frame was decoded (stream
timestamps restart with every reconnection and are often missing or made up, as in MJPEG).
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import os
import re
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import unquote, urlsplit

import numpy as np

from promptseg._deps import require
from promptseg.errors import ConfigError, ImageLoadError, InputError
from promptseg.video.types import Frame, SourceStats

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.frame import VideoFrame
    from av.video.stream import VideoStream

    from promptseg.types import UInt8Array

__all__ = [
    "DEFAULT_FPS",
    "IMAGE_SUFFIXES",
    "MAX_FAILURES_IN_A_ROW",
    "NETWORK_SCHEMES",
    "VideoSource",
    "open_source",
]

logger = logging.getLogger(__name__)

NETWORK_SCHEMES: Final = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp")
IMAGE_SUFFIXES: Final = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
MAX_FAILURES_IN_A_ROW: Final = 50
DEFAULT_FPS: Final = 30.0

_PENDING_LIMIT: Final = 64  # packets in flight in one decoder (frame threads + reorder delay stay far below)
_MAX_DETAIL_NOTES: Final = 10  # per-frame notes kept in stats.notes (the end of a source is always noted)
_REFUSED_FORMATS: Final = frozenset({"tty"})  # FFmpeg renders any .txt file as an ANSI-art "video"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_T = TypeVar("_T")
_V = TypeVar("_V", bound="VideoSource")


def open_source(
    source: str | int | os.PathLike[str],
    *,
    max_frames: int | None = None,
    fps: float | None = None,
    reconnect: int = 5,
    backoff: float = 0.5,
    max_backoff: float = 8.0,
    timeout: float = 10.0,
    realtime: bool | None = None,
) -> VideoSource:
    """Open a video file, a folder of images, a webcam or a network stream as a source of RGB frames.

    Args:
        source: what to read:

            - an ``int`` or a string of digits (``"0"``): a webcam by index, read with OpenCV
              (``cv2.VideoCapture``), as is a ``/dev/video*`` path; PyAV's wheels cannot open capture
              devices everywhere (this one has no ``v4l2``), and OpenCV picks the right API on each OS;
            - a folder: its images (``IMAGE_SUFFIXES``) in natural order (``frame_2`` before
              ``frame_10``); other files, hidden files and subfolders are ignored, an image that cannot
              be read is skipped and counted;
            - an ``rtsp://``, ``rtsps://``, ``rtmp://``, ``rtmps://``, ``http://``, ``https://``,
              ``udp://`` or ``tcp://`` URL: a network stream, read with PyAV (RTSP over TCP);
            - any other path: a video file, read with PyAV (FFmpeg: MP4, MKV, MOV, AVI, WebM, TS...).
        max_frames: stop after yielding this many frames (None: all).
        fps: frames per second of a folder of images (default ``DEFAULT_FPS``); for a video, used only
            to time frames that carry no timestamp when the stream does not give its rate.
        reconnect: attempts in a row to reopen a dropped live stream (or webcam) before giving up. The
            first connection is tried once: an address that does not work is reported at once.
        backoff: seconds before the first attempt; each further one waits twice as long as the last.
        max_backoff: the longest wait between attempts, in seconds.
        timeout: seconds a network stream may take to open, or stay silent, before it counts as dropped.
        realtime: whether a network stream is live (a camera, a broadcast: frames are timed by the clock
            and an end of stream is a drop) rather than a recording served over the network. None: live
            unless the server gives the stream's duration. Files and folders are recordings and webcams
            are live; the other value for them is a :class:`ConfigError`.

    Returns:
        A :class:`VideoSource` (a :class:`~promptseg.video.types.FrameSource`): iterate it for
        :class:`Frame` objects (``image`` ``(H, W, 3)`` uint8 RGB, upright: a video's display rotation
        is applied), read ``stats`` while or after iterating, and ``close()`` it (or use it in a
        ``with`` block). Iterating again continues where it stopped.

    Raises:
        InputError: the source cannot be read at all (message on one line, credentials in URLs hidden).
        ConfigError: an argument out of range, or ``realtime`` given for a source it does not fit.
        MissingDependencyError: PyAV (videos, streams) or OpenCV (webcams) is not installed.

    Example:
        >>> with open_source("clip.mp4", max_frames=2) as frames:  # doctest: +SKIP
        ...     for frame in frames:
        ...         print(frame.index, round(frame.time, 3), frame.image.shape)
        0 0.0 (272, 640, 3)
        1 0.04 (272, 640, 3)
    """
    _check_options(max_frames, fps, reconnect, backoff, max_backoff, timeout)
    common: dict[str, Any] = {"max_frames": max_frames, "fps": fps}
    retry: dict[str, Any] = {"reconnect": reconnect, "backoff": backoff, "max_backoff": max_backoff}
    if isinstance(source, bool) or not isinstance(source, (str, int, os.PathLike)):
        raise InputError(
            f"a source must be a path, a URL or a webcam index, not {type(source).__name__} {source!r}"
        )
    if isinstance(source, int) or (isinstance(source, str) and source.isascii() and source.isdigit()):
        _only_live(realtime, "a webcam")
        return _Webcam(int(source), **common, **retry)
    text = os.fspath(source)
    if not isinstance(text, str):
        raise InputError(f"a source path must be text, not bytes: {text!r}")
    if not text.strip():
        raise InputError(
            "the source is empty; give a video file, a folder of frames, a webcam index or a URL"
        )
    match = _SCHEME.match(text)
    if match:
        scheme = match.group(1).lower()
        if scheme == "file":
            text = unquote(urlsplit(text).path)
        elif scheme in NETWORK_SCHEMES:
            return _Stream(text, timeout=timeout, realtime=realtime, **common, **retry)
        else:
            raise InputError(
                f"unsupported URL scheme {scheme!r} in {_redact(text)}; "
                f"expected a path or one of {', '.join(s + '://' for s in NETWORK_SCHEMES)}"
            )
    path = Path(text)
    if path.is_dir():
        _only_recorded(realtime, "a folder of images")
        return _Folder(path, **common)
    if text.startswith("/dev/video"):
        _only_live(realtime, "a webcam")
        return _Webcam(text, **common, **retry)
    _only_recorded(realtime, "a video file")
    return _VideoFile(path, **common)


def _check_options(
    max_frames: int | None,
    fps: float | None,
    reconnect: int,
    backoff: float,
    max_backoff: float,
    timeout: float,
) -> None:
    problems = []
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int)):
        problems.append(f"max_frames must be a whole number or None, not {max_frames!r}")
    elif max_frames is not None and max_frames < 0:
        problems.append(f"max_frames must be 0 or more, not {max_frames}")
    if fps is not None and not fps > 0:
        problems.append(f"fps must be above 0, not {fps!r}")
    if isinstance(reconnect, bool) or not isinstance(reconnect, int) or reconnect < 0:
        problems.append(f"reconnect must be a whole number, 0 or more, not {reconnect!r}")
    if not backoff >= 0 or not max_backoff >= 0:
        problems.append(f"backoff and max_backoff must be 0 or more, not {backoff!r} and {max_backoff!r}")
    if not timeout > 0:
        problems.append(f"timeout must be above 0 seconds, not {timeout!r}")
    if problems:
        raise ConfigError("; ".join(problems))


def _only_live(realtime: bool | None, what: str) -> None:
    if realtime is False:
        raise ConfigError(f"realtime=False does not fit {what}, which is always live; leave realtime unset")


def _only_recorded(realtime: bool | None, what: str) -> None:
    if realtime:
        raise ConfigError(
            f"realtime=True does not fit {what}, which is a recording; leave realtime unset "
            "(it is for network streams)"
        )


class _Stuck(Exception):
    """Too many failures in a row: the data is not getting better."""


class _ReadError(Exception):
    """A network stream failed while it was being read."""


class VideoSource:
    """What :func:`open_source` returns: a ``FrameSource`` that is also an iterator and a context manager.

    Attributes:
        name: the path, URL (password hidden) or webcam it reads.
        stats: what it has seen so far (:class:`SourceStats`), updated while iterating.
    """

    _reconnect = 0  # what _retry goes by; set by the sources that reconnect
    _backoff = 0.0
    _max_backoff = 0.0

    def __init__(self, name: str, *, max_frames: int | None, fps: float | None) -> None:
        self.name = name
        self.stats = SourceStats()
        self._max_frames = max_frames
        self._fps_hint = fps
        self._next_index = 0
        self._failures = 0  # failures since the last good frame
        self._last_time = -1.0
        self._detail_notes = 0
        self._frames: Generator[Frame, None, None] | None = None
        self._closed = False
        self._clock_start = time.perf_counter()

    def __iter__(self: _V) -> _V:
        return self

    def __next__(self) -> Frame:
        if self._closed or (self._max_frames is not None and self.stats.frames >= self._max_frames):
            self.close()
            raise StopIteration
        if self._frames is None:
            self._frames = self._read()
        try:
            return next(self._frames)
        except BaseException:  # the end, or a bug: release the file, device or connection either way
            self.close()
            raise

    def __enter__(self: _V) -> _V:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the file, device or connection; iterating afterwards yields nothing. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._frames is not None:
            self._frames.close()
        self._release()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {self.name!r} {state}, {self.stats.frames} frames>"

    def _read(self) -> Generator[Frame, None, None]:
        raise NotImplementedError

    def _release(self) -> None:
        pass

    @property
    def _fps(self) -> float:
        return self.stats.fps or self._fps_hint or DEFAULT_FPS

    def _emit(self, image: UInt8Array, seconds: float) -> Frame:
        size = (int(image.shape[0]), int(image.shape[1]))
        before = self.stats.size
        if self.stats.frames and before is not None and size != before:  # (the first frame settles it)
            self._note(
                f"frame {self._next_index} is {size[0]}x{size[1]}, not {before[0]}x{before[1]} (H x W) "
                "as before",
                detail=True,
            )
        self.stats.size = size
        seconds = max(seconds, self._last_time)  # never backwards, whatever the timestamps say
        self._last_time = seconds
        frame = Frame(self._next_index, seconds, image)
        self._next_index += 1
        self.stats.frames += 1
        self._failures = 0
        return frame

    def _skip(self, count: int = 1) -> None:
        """Count frames that could not be decoded: they take their indices."""
        self._next_index += count
        self.stats.corrupt += count
        self._failures += count
        if self._failures >= MAX_FAILURES_IN_A_ROW:
            raise _Stuck

    def _clock(self) -> float:
        """Seconds since the source was opened, strictly increasing: the time of a live frame."""
        return max(time.perf_counter() - self._clock_start, self._last_time + 1e-6)

    def _note(self, message: str, *, detail: bool = False) -> None:
        if detail:
            self._detail_notes += 1
            if self._detail_notes > _MAX_DETAIL_NOTES:
                return
        self.stats.notes.append(message)
        logger.info("%s: %s", self.name, message)

    def _retry(self, open_once: Callable[[], _T], attempts: int, reason: str) -> tuple[_T | None, int]:
        """Reopen after a drop, waiting ``backoff * 2**k`` (capped) before try k; None when out of tries.

        Every failure here is worth another try, even one that would be final on a first open (a 404,
        a garbled reply): a camera or server that is restarting says odd things for a moment.
        """
        cause = reason
        while attempts < self._reconnect:
            time.sleep(min(self._backoff * 2**attempts, self._max_backoff))
            attempts += 1
            try:
                opened = open_once()
            except Exception as exc:
                cause = f"{reason}; reopening failed: {_brief(exc)}"
                continue
            self.stats.reconnects += 1
            self._note(f"reconnected at frame {self._next_index} ({cause})", detail=True)
            return opened, attempts
        tries = "1 reconnect attempt" if attempts == 1 else f"{attempts} reconnect attempts"
        self._note(f"{cause}; stopped at frame {self._next_index} after {tries}")
        return None, attempts


class _Folder(VideoSource):
    """The images of a folder, in natural order, timed ``index / fps``."""

    def __init__(self, folder: Path, *, max_frames: int | None, fps: float | None) -> None:
        super().__init__(str(folder), max_frames=max_frames, fps=fps)
        try:
            files = [
                p
                for p in folder.iterdir()
                if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
            ]
        except OSError as exc:
            raise InputError(f"cannot list the folder {folder}: {_brief(exc)}") from None
        if not files:
            kinds = ", ".join(sorted(IMAGE_SUFFIXES))
            raise InputError(f"the folder {folder} holds no images ({kinds}); give a folder of frames")
        files.sort(key=lambda p: (_natural_key(p.name), p.name))
        self._files = files
        self.stats.fps = fps or DEFAULT_FPS

    def _read(self) -> Generator[Frame, None, None]:
        from promptseg.image import load_image

        for path in self._files:
            try:
                image = load_image(path)
            except ImageLoadError as exc:
                self._note(f"frame {self._next_index} skipped: {exc}", detail=True)
                # one bad file says nothing about the next, so a folder never stops early
                self._next_index += 1
                self.stats.corrupt += 1
                continue
            yield self._emit(image, self._next_index / self._fps)


def _natural_key(name: str) -> list[Any]:
    """``frame_2.png`` before ``frame_10.png``: digit runs compare as numbers, the rest ignoring case."""
    return [int(part) if i % 2 else part.casefold() for i, part in enumerate(re.split(r"(\d+)", name))]


class _Timeline:
    """Which frames of one decoder came out, by presentation timestamp (pts).

    Every packet sent to the decoder is one frame to account for. A frame that comes out settles every
    earlier pts still pending: those frames were lost (the decoder refused their packets, or dropped
    them while it recovered). Near damage, a frame that comes out behind one already shown (a
    recovering decoder can emit a stale frame late) is dropped, so that indices and times only go
    forwards, and a packet behind the last shown frame is counted lost when it is sent.

    Far from any damage, a timestamp that goes backwards means the timestamps are wrong, not the frames
    (a badly muxed file: all zero, repeated): the timeline stops trusting them, and from then on frames
    are taken in decoding order, each packet the decoder refuses counting as one frame lost. Pts at or
    before ``seen`` belong to frames shown before a reconnection and are ignored.
    """

    def __init__(self, seen: int | None = None) -> None:
        self._pending: list[int] = []
        self._seen = seen
        self._since_error = _PENDING_LIMIT + 1  # packets sent since the last decoding error
        self.last = seen
        self.trusted = True

    def error(self) -> None:
        """The decoder or the demuxer just failed."""
        self._since_error = 0

    @property
    def _damaged(self) -> bool:
        return self._since_error <= _PENDING_LIMIT

    def sent(self, pts: int | None) -> int:
        """Note a packet sent to the decoder; returns the frames lost by it (1 when it is late, else 0)."""
        self._since_error += 1
        if not self.trusted or pts is None or (self._seen is not None and pts <= self._seen):
            return 0
        if self.last is not None and pts <= self.last:
            if self._damaged:
                return 1
            self._distrust()
            return 0
        heapq.heappush(self._pending, pts)
        lost = 0
        while len(self._pending) > _PENDING_LIMIT:  # packets the decoder swallowed without a word
            heapq.heappop(self._pending)
            lost += 1
        return lost

    def shown(self, pts: int | None) -> tuple[bool, int]:
        """Whether a decoded frame with this pts is to be shown, and the frames lost before it."""
        if not self.trusted:
            return True, 0
        if pts is not None and self._seen is not None and pts <= self._seen:
            return False, 0
        pending = self._pending
        if pts is None:  # no timestamp to go by: take it for the earliest frame in flight
            if pending:
                heapq.heappop(pending)
            return True, 0
        if self.last is not None and pts <= self.last:
            if self._damaged:
                return False, 0
            self._distrust()
            return True, 0
        lost = 0
        while pending and pending[0] < pts:
            heapq.heappop(pending)
            lost += 1
        if pending and pending[0] == pts:
            heapq.heappop(pending)
        self.last = pts
        return True, lost

    def end(self) -> int:
        """Frames still pending when the stream ended: lost."""
        lost = len(self._pending)
        self._pending.clear()
        return lost

    def _distrust(self) -> None:
        self.trusted = False
        self._pending.clear()


class _AVSource(VideoSource):
    """Decoding with PyAV, shared by video files and network streams."""

    _av: ModuleType
    _container: InputContainer | None = None
    _origin = 0  # the pts of time 0
    _reformatter: Any = None
    _distrust_noted = False

    def _attach(self, container: InputContainer, what: str) -> VideoStream:
        """The container's first video stream (not cover art), threads on; InputError if it has none."""
        fmt = container.format.name
        candidates = [s for s in container.streams.video if not s.disposition & s.disposition.attached_pic]
        if fmt in _REFUSED_FORMATS or not candidates:
            kinds = sorted({s.type for s in container.streams})
            holds = f"only {', '.join(kinds)} streams" if kinds else "no streams"
            if container.streams.video and not candidates:
                holds = "only cover art"
            container.close()
            hint = "text" if fmt in _REFUSED_FORMATS else holds
            raise InputError(
                f"{what} holds no video ({hint}); give a video file, a folder of frames or a URL"
            )
        stream = candidates[0]
        stream.thread_type = "AUTO"
        self.stats.fps = float(stream.average_rate) if stream.average_rate else self.stats.fps
        codec = stream.codec_context
        if self.stats.size is None and codec.height and codec.width:
            self.stats.size = (codec.height, codec.width)
        return stream

    def _release(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def _decode(
        self, container: InputContainer, stream: VideoStream, timeline: _Timeline, *, network: bool
    ) -> Iterator[VideoFrame]:
        """Decoded frames in presentation order; lost ones are counted with :meth:`_skip` as found.

        A demuxer error on a file is counted as a failure and reading goes on from where the demuxer
        is; on a network stream it means the connection is gone: the decoder's buffered frames come out,
        then :class:`_ReadError`. Raises :class:`_Stuck` after too many failures in a row.
        """
        av = self._av
        codec = stream.codec_context
        packets = container.demux(stream)
        errors = 0  # decoder and demuxer errors since the last good frame
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except (av.error.FFmpegError, OSError) as exc:
                if network:
                    yield from self._shown(_drain(codec, av), timeline)
                    raise _ReadError(_brief(exc)) from exc
                timeline.error()
                errors += 1
                if errors >= MAX_FAILURES_IN_A_ROW:
                    raise _Stuck from exc
                packets = container.demux(stream)
                continue
            lost = timeline.sent(packet.pts)
            self._check_trust(timeline)
            if lost:
                self._skip(lost)
            try:
                frames = codec.decode(packet)
            except av.error.EOFError:  # already drained
                frames = []
            except av.error.FFmpegError as exc:  # this packet is damaged: its frame is lost
                logger.debug("%s: packet at pts %s not decoded: %s", self.name, packet.pts, _brief(exc))
                timeline.error()
                if packet.pts is None or not timeline.trusted:  # no timestamp to settle it later
                    self._skip()
                errors += 1
                if errors >= MAX_FAILURES_IN_A_ROW:
                    raise _Stuck from exc
                continue
            for frame in self._shown(frames, timeline):
                errors = 0
                yield frame
        lost = timeline.end()
        if lost:
            self._skip(lost)

    def _shown(self, frames: list[VideoFrame], timeline: _Timeline) -> Iterator[VideoFrame]:
        for frame in frames:
            show, lost = timeline.shown(frame.pts)
            self._check_trust(timeline)
            if lost:
                self._skip(lost)
            if not show:
                continue
            if frame.is_corrupt:  # decoded, but with damage concealed: not a frame to track on
                self._skip()
                continue
            yield frame

    def _check_trust(self, timeline: _Timeline) -> None:
        if not timeline.trusted and not self._distrust_noted:
            self._distrust_noted = True
            self._note(
                f"timestamps go backwards at frame {self._next_index} with no damage near: from there on "
                "frames are taken in decoding order and timed index / fps"
            )

    def _rgb(self, frame: VideoFrame) -> UInt8Array:
        if self._reformatter is None:  # one per source: it keeps its conversion context between frames
            self._reformatter = self._av.video.reformatter.VideoReformatter()
        rgb = self._reformatter.reformat(frame, format="rgb24").to_ndarray()
        rotation = getattr(frame, "rotation", 0)  # (PyAV 13 and later)
        turns = round(rotation / 90) % 4 if rotation else 0
        if turns:  # the display matrix says how to show it upright (a phone held upright)
            rgb = np.rot90(rgb, k=turns)
        return np.ascontiguousarray(rgb)

    def _pts_time(self, frame: VideoFrame, stream: VideoStream, timeline: _Timeline) -> float:
        if frame.pts is None or stream.time_base is None or not timeline.trusted:
            return self._next_index / self._fps
        return max(0.0, float((frame.pts - self._origin) * stream.time_base))


class _VideoFile(_AVSource):
    """A video file, decoded with PyAV."""

    def __init__(self, path: Path, *, max_frames: int | None, fps: float | None) -> None:
        super().__init__(str(path), max_frames=max_frames, fps=fps)
        self._av = require("av", extra="video", purpose="reading video files")
        self._path = path
        # Only local files: a playlist (.m3u8, .ffconcat) must not make FFmpeg fetch URLs.
        options = {"protocol_whitelist": "file,crypto,data"}
        try:
            container = self._av.open(str(path), container_options=options)
        except (self._av.error.FFmpegError, OSError) as exc:
            raise InputError(_file_problem(path, exc)) from None
        self._container = container
        self._stream = self._attach(container, f"the file {path}")
        start = self._stream.start_time
        self._origin = start if start is not None else 0

    def _read(self) -> Generator[Frame, None, None]:
        container, stream = self._container, self._stream
        assert container is not None  # set in __init__, cleared only by close()
        timeline = _Timeline()
        try:
            for frame in self._decode(container, stream, timeline, network=False):
                yield self._emit(self._rgb(frame), self._pts_time(frame, stream, timeline))
        except _Stuck:
            self._note(
                f"stopped at frame {self._next_index}: {MAX_FAILURES_IN_A_ROW} failures in a row, "
                "the rest of the file looks damaged"
            )
            return
        self._note_if_short(stream)

    def _note_if_short(self, stream: VideoStream) -> None:
        """Say so when the file ended well before the frame count or duration in its header."""
        seconds = None
        if stream.duration and stream.time_base:
            seconds = float(stream.duration * stream.time_base)
        elif self._container is not None and self._container.duration:
            seconds = self._container.duration / 1_000_000  # AV_TIME_BASE
        if stream.frames:
            expected, about = stream.frames, "the "
        elif seconds and self.stats.fps:
            expected, about = round(seconds * self.stats.fps), "about "
        else:
            return
        if expected - self._next_index > max(2, expected // 50):  # (edit lists may drop a frame or two)
            self._note(
                f"the file ended after {self._next_index} of {about}{expected} frames its header lists "
                "(truncated?)"
            )


def _file_problem(path: Path, exc: BaseException) -> str:
    """A one-line reason why a path cannot be opened as a video."""
    if isinstance(exc, FileNotFoundError):
        return f"no such file: {path}; give a video file, a folder of frames, a webcam index or a URL"
    if isinstance(exc, PermissionError):
        return f"cannot read {path}: permission denied"
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(12)
    except OSError as err:
        return f"cannot read {path}: {_brief(err)}"
    if size == 0:
        return f"the file {path} is empty; expected a video"
    if head[4:8] == b"ftyp":
        return (
            f"the MP4/MOV file {path} cannot be read ({_brief(exc)}): its index ('moov') is missing, "
            "so it is truncated or still being written"
        )
    return f"{path} is not a video FFmpeg can read ({_brief(exc)}); expected MP4, MKV, MOV, AVI, WebM, TS..."


class _Stream(_AVSource):
    """A network stream, decoded with PyAV; a live one reconnects when it drops."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        realtime: bool | None,
        reconnect: int,
        backoff: float,
        max_backoff: float,
        max_frames: int | None,
        fps: float | None,
    ) -> None:
        super().__init__(_redact(url), max_frames=max_frames, fps=fps)
        self._av = require("av", extra="video", purpose="reading network streams")
        self._url = url
        self._timeout = timeout
        self._reconnect, self._backoff, self._max_backoff = reconnect, backoff, max_backoff
        # The first connection is tried once: an address that does not work is reported at once.
        try:
            opened = self._open()
        except InputError:
            raise
        except Exception as exc:
            raise InputError(
                f"cannot open the stream {self.name}: {_brief(exc)}; check the address and that the "
                "camera or server is up"
            ) from None
        self._container, self._stream = opened
        self._live = realtime if realtime is not None else self._container.duration is None
        self._origin = self._stream.start_time or 0
        self._last_pts: int | None = None

    def _open(self) -> tuple[InputContainer, VideoStream]:
        """Connect once; InputError for what retrying cannot fix (not found, forbidden, not a video)."""
        av = self._av
        scheme = self._url.split(":", 1)[0].lower()
        micros = str(int(self._timeout * 1_000_000))
        options = {"rw_timeout": micros}
        if scheme in ("rtsp", "rtsps"):
            # TCP-interleaved RTP: no UDP ports to open, nothing lost to a firewall or packet loss
            options.update(rtsp_transport="tcp", timeout=micros)
        started = time.monotonic()
        try:
            container = av.open(self._url, container_options=options, timeout=(self._timeout, self._timeout))
        except Exception as exc:
            if time.monotonic() - started >= 0.9 * self._timeout:  # FFmpeg's error then says little
                raise TimeoutError(f"no answer within {self._timeout:g} s") from None
            if isinstance(exc, (av.error.HTTPClientError, av.error.InvalidDataError)):
                raise InputError(f"cannot read the stream {self.name}: {_brief(exc)}") from None
            raise
        return container, self._attach(container, f"the stream {self.name}")

    def _read(self) -> Generator[Frame, None, None]:
        attempts = 0  # reconnection attempts since the last frame
        assert self._container is not None  # set in __init__, cleared only by close()
        opened: tuple[InputContainer, VideoStream] | None = (self._container, self._stream)
        while opened is not None:
            container, stream = opened
            self._container = container
            if self._last_pts is not None and not self._live:
                _seek(container, stream, self._last_pts, self._av)
            timeline = _Timeline(None if self._live else self._last_pts)
            try:
                for frame in self._decode(container, stream, timeline, network=True):
                    attempts = 0
                    if not self._live:
                        self._last_pts = frame.pts
                    seconds = self._clock() if self._live else self._pts_time(frame, stream, timeline)
                    yield self._emit(self._rgb(frame), seconds)
                if not self._live:
                    return
                reason = "the stream ended"
            except _ReadError as exc:
                reason = f"the stream dropped ({exc})"
            except _Stuck:
                reason = f"{MAX_FAILURES_IN_A_ROW} failures in a row"
                if not self._live:
                    self._note(f"stopped at frame {self._next_index}: {reason}")
                    return
            finally:
                self._release()
            opened, attempts = self._retry(self._open, attempts, reason)


def _seek(container: InputContainer, stream: VideoStream, pts: int, av: ModuleType) -> None:
    """Jump back near ``pts`` in a recording that was reopened (frames up to it are skipped anyway).

    A stream that cannot seek is read from its start: the timeline drops what was already shown.
    """
    with contextlib.suppress(av.error.FFmpegError, OSError):
        container.seek(pts, stream=stream, backward=True)


def _drain(codec: Any, av: ModuleType) -> list[VideoFrame]:
    """The frames a decoder still holds (its reorder and thread delay) when its input is gone."""
    try:
        return list(codec.decode(None))
    except (av.error.FFmpegError, OSError):
        return []


class _Webcam(VideoSource):
    """A camera through OpenCV (V4L2 on Linux, AVFoundation on macOS, MSMF on Windows)."""

    def __init__(
        self,
        device: int | str,
        *,
        reconnect: int,
        backoff: float,
        max_backoff: float,
        max_frames: int | None,
        fps: float | None,
    ) -> None:
        name = f"webcam {device}" if isinstance(device, int) else device
        super().__init__(name, max_frames=max_frames, fps=fps)
        self._cv2 = require("cv2", extra="video", purpose="reading a webcam")
        self._device = device
        self._reconnect, self._backoff, self._max_backoff = reconnect, backoff, max_backoff
        self._capture: Any = self._open()
        cv2 = self._cv2
        rate = self._capture.get(cv2.CAP_PROP_FPS)
        self.stats.fps = float(rate) if rate and rate > 0 else None
        width, height = (
            self._capture.get(cv2.CAP_PROP_FRAME_WIDTH),
            self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT),
        )
        if width > 0 and height > 0:
            self.stats.size = (int(height), int(width))

    def _open(self) -> Any:
        cv2 = self._cv2
        # OpenCV logs a warning for every capture API it tries; the error below says it once
        previous = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        try:
            capture = cv2.VideoCapture(self._device)
        finally:
            cv2.utils.logging.setLogLevel(previous)
        if not capture.isOpened():
            capture.release()
            what = (
                f"no camera at index {self._device}"
                if isinstance(self._device, int)
                else (f"cannot open the camera {self._device}")
            )
            raise InputError(
                f"{what}: OpenCV could not open it; check that a camera is connected and not in use "
                "by another program, or give a video file, a folder of frames or a stream URL"
            )
        return capture

    def _release(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def _read(self) -> Generator[Frame, None, None]:
        cv2 = self._cv2
        attempts = 0
        while self._capture is not None:
            ok, image = self._capture.read()
            if ok and image is not None:
                attempts = 0
                if image.ndim == 2:
                    rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
                elif image.shape[2] == 4:
                    rgb = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
                else:
                    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
                yield self._emit(np.ascontiguousarray(rgb), self._clock())
                continue
            self._release()
            self._capture, attempts = self._retry(self._open, attempts, "the camera stopped sending")


def _brief(exc: BaseException) -> str:
    """An exception as one short line, without the file name or URL FFmpeg appends."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())


def _redact(url: str) -> str:
    """A URL with its password hidden: ``rtsp://admin:***@10.0.0.5/live``."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/@:]*):[^/]*@", r"\1:***@", url)
