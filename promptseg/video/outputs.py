"""Track outputs: JSON lines, MOT Challenge text, an annotated MP4 and a summary, each kill-safe.

Every output is a :class:`~promptseg.video.types.TrackOutput`: ``write(frame, detections)`` once per
frame, then ``close()``. After every ``write`` returns, the file on disk is valid and holds every frame
written so far, so Ctrl-C, a crash or ``kill -9`` loses at most the frame being written:

- JSON lines and MOT text: each frame is one ``write`` of whole lines, flushed to the OS at once
  (unbuffered file). A kill mid-write can leave a partial last line; :func:`read_jsonl` and
  :func:`read_mot` skip it and report it, ``close()`` cuts it off, and ``append=True`` cuts it off
  before appending.
- MP4: fragmented MP4 (an empty ``moov`` up front, then a ``moof`` + ``mdat`` fragment per frame,
  flushed per packet), so there is no index to write at the end. The muxer writes a frame's fragment
  when the next frame arrives, so a killed file plays every frame but the last one written; ``close()``
  writes it and the trailer. (Killed before its first frame, the file is empty. A kill within the
  microseconds of a fragment's write leaves a cut last fragment: players skip it, PyAV's ``decode``
  yields every complete frame and then raises ``InvalidDataError``.)
- Summary JSON: written to a temporary file and moved over the old one (``os.replace``) when opened,
  every ``every`` frames and on close, so it is always a complete JSON document, at most ``every``
  frames old.

None of this survives a power cut without ``fsync``, which is not done per frame (it costs
milliseconds per call).

Example:
    >>> with Outputs(open_outputs(jsonl="out.jsonl", video="out.mp4", fps=25)) as out:  # doctest: +SKIP
    ...     for frame in source:
    ...         out.write(frame, tracker.update(frame))
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray
from PIL import Image

from promptseg._deps import require
from promptseg.errors import ConfigError, FormatError, InputError, PromptsegWarning
from promptseg.formats.result import MaskFormat, from_json, to_json
from promptseg.image import check_rgb
from promptseg.ops.boxes import xyxy_to_xywh
from promptseg.render import annotate, id_colors
from promptseg.types import Detections, UInt8Array
from promptseg.video.types import Frame, TrackOutput

if TYPE_CHECKING:
    from av.container import OutputContainer
    from av.video.stream import VideoStream

__all__ = [
    "JsonlLog",
    "JsonlOutput",
    "MotLog",
    "MotOutput",
    "Outputs",
    "SummaryOutput",
    "TrackSummary",
    "VideoOutput",
    "annotate_tracks",
    "from_jsonl_record",
    "open_outputs",
    "read_jsonl",
    "read_mot",
    "to_jsonl_record",
    "track_colors",
]

logger = logging.getLogger(__name__)

_RECORD_KEYS = ("frame", "time", "width", "height", "instances")
# fragment per frame, no index at the end: a file cut anywhere still plays (see the module docstring)
_MP4_OPTIONS = {"movflags": "frag_every_frame+empty_moov+default_base_moof", "fflags": "+flush_packets"}


def track_colors(track_ids: ArrayLike) -> UInt8Array:
    """``(N, 3)`` uint8 RGB colours keyed by track id: the same id gets the same colour in every frame
    (:func:`promptseg.render.id_colors`; track ``k`` has the colour ``annotate`` gives instance ``k``)."""
    return id_colors(track_ids)


def annotate_tracks(
    image: UInt8Array, detections: Detections, *, mask_alpha: float = 0.45, show_scores: bool = False
) -> UInt8Array:
    """Draw tracked objects: masks, boxes and ``label #id`` tags in a colour fixed per track id.

    Drawn as :func:`promptseg.render.annotate` draws (small masks on top, halo outlines, contrasting tag
    text), but coloured by :func:`track_colors` of ``track_ids`` (by index when there are none).

    Args:
        image: ``(H, W, 3)`` uint8 RGB frame.
        detections: the frame's objects (masks optional).
        mask_alpha: opacity of the mask fill, 0-1.
        show_scores: append the score to each tag.

    Returns:
        A new ``(H, W, 3)`` uint8 RGB image.
    """
    image = check_rgb(image, purpose="annotate_tracks")
    n = len(detections)
    ids = detections.track_ids
    tags = [str(label) for label in detections.labels]
    if ids is not None:
        tags = [f"{tag} #{int(i)}" for tag, i in zip(tags, ids, strict=True)]
    if show_scores and detections.scores is not None:
        tags = [f"{tag} {float(score):.2f}" for tag, score in zip(tags, detections.scores, strict=True)]
    colors = track_colors(ids if ids is not None else np.arange(n))
    return annotate(image, detections, mask_alpha=mask_alpha, legend=False, colors=colors, tags=tags)


def to_jsonl_record(
    frame: Frame,
    detections: Detections,
    *,
    mask_format: MaskFormat = "rle",
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One frame as a JSON-lines record (see :class:`JsonlOutput` for the layout)."""
    h, w = detections.image_size
    instances = to_json(detections, mask_format=mask_format)["instances"]
    if detections.track_ids is None:
        instances = [{"track_id": None, **inst} for inst in instances]
    else:  # track_id first: it is what a reader of a track file looks for
        instances = [{"track_id": inst.pop("track_id"), **inst} for inst in instances]
    record = {"frame": int(frame.index), "time": round(float(frame.time), 6), "width": w, "height": h}
    return {**record, "instances": instances, **(extra or {})}


def from_jsonl_record(record: Mapping[str, Any]) -> Detections:
    """The Detections of one JSON-lines record (the inverse of :func:`to_jsonl_record`).

    Raises:
        FormatError: for a malformed record, naming the field.
    """
    for key in _RECORD_KEYS:
        if key not in record:
            raise FormatError(
                f"JSON-lines record has no {key!r}: expected the keys {', '.join(_RECORD_KEYS)}"
            )
    image = {"width": record["width"], "height": record["height"]}
    return from_json({"image": image, "instances": record["instances"]})


class _LineFile:
    """A text log written in whole lines: one unbuffered write per frame, cut back to whole lines."""

    def __init__(self, path: str | os.PathLike[str], *, overwrite: bool, append: bool) -> None:
        self.path = Path(path)
        if overwrite and append:
            raise ConfigError(f"{self.path}: choose overwrite=True or append=True, not both")
        mode = "ab" if append else "wb" if overwrite else "xb"
        self.last_line: bytes | None = None  # the last complete line already in the file (append)
        try:
            self._file = open(self.path, mode, buffering=0)  # noqa: SIM115  # closed by close()
        except FileExistsError:
            raise ConfigError(
                f"{self.path} exists; pass overwrite=True (or append=True to continue it), "
                "or choose another path"
            ) from None
        except OSError as exc:
            raise ConfigError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        if append:
            self._cut_partial_line()
        self._end = self._file.seek(0, os.SEEK_END)

    def _cut_partial_line(self) -> None:
        with open(self.path, "rb") as f:
            data = f.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            logger.warning("%s: cut off an unfinished last line of %d bytes", self.path, len(data) - end)
            self._file.truncate(end)
        lines = data[:end].splitlines()
        self.last_line = next((line for line in reversed(lines) if line.strip()), None)

    def write(self, text: str) -> None:
        if self._file.closed:
            raise InputError(f"{self.path} is closed")
        data = text.encode("utf-8")
        done = 0
        while done < len(data):  # one write for a regular file; the loop is for short writes
            done += self._file.write(data[done:]) or 0
        self._end += len(data)

    def close(self) -> None:
        if self._file.closed:
            return
        try:
            if self._file.tell() != self._end:  # interrupted mid-line: keep whole lines only
                self._file.truncate(self._end)
        finally:
            self._file.close()


class JsonlOutput:
    """Per-frame JSON lines: one object per frame, one frame per line.

    Each line is ``{"frame", "time", "width", "height", "instances", **extra}`` with ``frame`` the
    0-based frame index, ``time`` seconds from the start, and each instance
    ``{"track_id", "label", "score", "box_xyxy", "box_2d", "mask_rle", "attributes"}`` as in
    promptseg's JSON result (:mod:`promptseg.formats.result`): ``score`` only when scored, a mask only
    when there are masks and ``mask_format`` is not "none", ``attributes`` only when there are any,
    ``track_id`` null when the detections carry no track ids. Frames with nothing in them are written
    too (``"instances": []``). Lines are UTF-8 JSON; labels keep their commas, quotes and non-ASCII
    text, escaped as JSON escapes them.

    Args:
        path: the file to write.
        mask_format: "rle" (COCO compressed RLE, exact), "polygon", "png" or "none".
        extra: JSON values added to every line (e.g. ``{"source": "cam1", "prompt": "person"}``); the
            keys must not clash with the ones above.
        overwrite: replace an existing file (default: refuse with :class:`ConfigError`).
        append: continue an existing file (a resumed run): an unfinished last line is cut off first,
            and :attr:`last_frame` tells which frame it ended with.

    Example:
        >>> out = JsonlOutput("tracks.jsonl")  # doctest: +SKIP
        >>> out.write(frame, detections); out.close()  # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        mask_format: MaskFormat = "rle",
        extra: Mapping[str, Any] | None = None,
        overwrite: bool = False,
        append: bool = False,
    ) -> None:
        if mask_format not in ("rle", "polygon", "png", "none"):
            raise ConfigError(f"mask_format must be 'rle', 'polygon', 'png' or 'none', got {mask_format!r}")
        self.extra = dict(extra or {})
        clash = sorted(set(self.extra) & set(_RECORD_KEYS))
        if clash:
            raise ConfigError(f"extra must not redefine {', '.join(clash)} (JSON-lines record keys)")
        try:
            json.dumps(self.extra, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"extra must hold JSON values only: {exc}") from None
        self.mask_format = mask_format
        self._lines = _LineFile(path, overwrite=overwrite, append=append)
        self.path = self._lines.path
        self.last_frame: int | None = None
        """Index of the last frame in the file (written now, or by the run this one appends to)."""
        if self._lines.last_line is not None:
            try:
                self.last_frame = int(json.loads(self._lines.last_line)["frame"])
            except (ValueError, KeyError, TypeError):
                self._lines.close()
                raise FormatError(f"{self.path}: the last line is not a JSON-lines frame record") from None

    def write(self, frame: Frame, detections: Detections) -> None:
        record = to_jsonl_record(frame, detections, mask_format=self.mask_format, extra=self.extra)
        self._lines.write(
            json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n"
        )
        self.last_frame = frame.index

    def close(self) -> None:
        self._lines.close()


@dataclass(frozen=True)
class JsonlLog:
    """What :func:`read_jsonl` found: the complete records, and an unfinished last line if any."""

    records: list[dict[str, Any]]
    partial_line: str | None = None


def read_jsonl(path: str | os.PathLike[str]) -> JsonlLog:
    """Read a JSON-lines file as :class:`JsonlOutput` writes it, also one cut off by a kill.

    A last line without its newline that does not parse is what a killed writer leaves: it is left out
    of ``records`` and returned as ``partial_line`` (a cut JSON object never parses, so nothing complete
    is dropped). Blank lines are skipped. Use :func:`from_jsonl_record` for a record's Detections.

    Raises:
        FormatError: for a line other than the last that is not a JSON object (names the line).
    """
    data = Path(path).read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    records: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            records.append(_json_line(line, path, number))
    partial = None
    if tail.strip():
        try:
            records.append(_json_line(tail, path, len(lines) + 1))
        except FormatError:
            partial = tail.decode("utf-8", errors="replace")
    return JsonlLog(records, partial)


def _json_line(line: bytes, path: str | os.PathLike[str], number: int) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except ValueError as exc:
        raise FormatError(f"{path}:{number}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise FormatError(f"{path}:{number}: expected a JSON object, got {type(value).__name__}")
    return value


class MotOutput:
    """MOT Challenge text: one line per object, ``frame,id,bb_left,bb_top,bb_width,bb_height,conf,-1,-1,-1``.

    The MOTChallenge convention (motchallenge.net/instructions, as TrackEval and py-motmetrics read
    it): ``frame`` counts from 1 (the sequence's first image is ``000001.jpg``), so frame index ``i`` is
    written as ``i + 1``; ``id`` is the track id (-1 when the detections have none, as in MOT ``det.txt``
    files); the box is the top-left corner, width and height in pixels of the frame (promptseg's
    ``xyxy`` unchanged, no 1-based pixel shift); ``conf`` is the score (1 when unscored); the three
    world coordinates are -1 (2-D tracking). Numbers are written as the shortest text that reads back
    as the same float32. The format has no label column: labels are in the JSON lines. Frames without
    objects have no lines.

    Args:
        path: the file to write.
        overwrite: replace an existing file (default: refuse with :class:`ConfigError`).
        append: continue an existing file; an unfinished last line is cut off first.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, overwrite: bool = False, append: bool = False
    ) -> None:
        self._lines = _LineFile(path, overwrite=overwrite, append=append)
        self.path = self._lines.path
        self.last_frame: int | None = None
        """0-based index of the last frame with a line in the file."""
        if self._lines.last_line is not None:
            try:
                self.last_frame = int(float(self._lines.last_line.split(b",")[0])) - 1
            except ValueError:
                self._lines.close()
                raise FormatError(f"{self.path}: the last line is not a MOT Challenge line") from None

    def write(self, frame: Frame, detections: Detections) -> None:
        n = len(detections)
        if not n:
            return
        xywh = xyxy_to_xywh(detections.xyxy)
        ids = detections.track_ids if detections.track_ids is not None else np.full(n, -1, np.int64)
        conf = detections.scores if detections.scores is not None else np.ones(n, np.float32)
        lines = [
            f"{frame.index + 1},{int(ids[i])},{','.join(_num(v) for v in xywh[i])},{_num(conf[i])},-1,-1,-1\n"
            for i in range(n)
        ]
        self._lines.write("".join(lines))
        self.last_frame = frame.index

    def close(self) -> None:
        self._lines.close()


def _num(value: Any) -> str:
    return np.format_float_positional(np.float32(value), trim="-")


@dataclass(frozen=True)
class MotLog:
    """What :func:`read_mot` found.

    Attributes:
        rows: ``(N, 10)`` float64, the MOT columns ``frame, id, bb_left, bb_top, bb_width, bb_height,
            conf, x, y, z``; ``frame`` as in the file, 1-based. Shorter lines are padded with -1.
        partial_line: an unfinished last line that was left out, or None.
    """

    rows: NDArray[np.float64]
    partial_line: str | None = None


def read_mot(path: str | os.PathLike[str]) -> MotLog:
    """Read MOT Challenge text (comma or whitespace separated, 6 to 10 columns), also one cut by a kill.

    Raises:
        FormatError: for a line other than an unfinished last one that does not parse (names the line).
    """
    text = Path(path).read_bytes().decode("utf-8")
    lines = text.split("\n")
    tail = lines.pop()
    rows = [r for n, line in enumerate(lines, 1) if (r := _mot_row(line, path, n)) is not None]
    partial = None
    if tail.strip():
        try:
            row = _mot_row(tail, path, len(lines) + 1)
            if row is not None:
                rows.append(row)
        except FormatError:
            partial = tail
    return MotLog(np.array(rows, np.float64).reshape(len(rows), 10), partial)


def _mot_row(line: str, path: str | os.PathLike[str], number: int) -> list[float] | None:
    if not line.strip():
        return None
    parts = line.replace(",", " ").split()
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if not 6 <= len(values) <= 10 or not all(np.isfinite(values)):
        raise FormatError(f"{path}:{number}: expected 6 to 10 comma-separated numbers, got {line[:80]!r}")
    return values + [-1.0] * (10 - len(values))


class VideoOutput:
    """An annotated MP4 (H.264), playable after a kill: fragmented MP4 with one fragment per frame.

    Frames are drawn with :func:`annotate_tracks` (colours fixed per track id) and encoded at a constant
    ``fps``, one video frame per written frame. Needs PyAV (``pip install av``).

    Args:
        path: the ``.mp4`` file to write.
        fps: frames per second of the output (normally the source's).
        size_wh: ``(W, H)`` of the video; None: the first frame's size. Frames of another size are
            resized to it. Odd sizes get one replicated row or column (H.264 4:2:0 needs even sizes).
        codec: "libx264" (H.264, default) or another FFmpeg encoder; when it is not available, "mpeg4"
            (MPEG-4 Part 2) is used with a warning.
        crf: H.264 quality, 0 (lossless) to 51; 18 looks lossless, 23 is the x264 default.
        preset: x264 speed preset ("ultrafast" ... "veryslow").
        keyframe_interval: frames between keyframes (seeking granularity); None: two seconds.
        mask_alpha, show_scores: passed to :func:`annotate_tracks`.
        overwrite: replace an existing file (default: refuse with :class:`ConfigError`).

    Raises:
        MissingDependencyError: when PyAV is not installed.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fps: float,
        size_wh: tuple[int, int] | None = None,
        codec: str = "libx264",
        crf: int = 23,
        preset: str = "veryfast",
        keyframe_interval: int | None = None,
        mask_alpha: float = 0.45,
        show_scores: bool = False,
        overwrite: bool = False,
    ) -> None:
        av = require("av", extra="video", purpose="writing MP4 video")
        self.path = Path(path)
        try:
            self.fps = Fraction(float(fps)).limit_denominator(1001)
        except (TypeError, ValueError, OverflowError):
            self.fps = Fraction(0)
        if not 0 < self.fps < 1000:
            raise ConfigError(f"fps must be a number in (0, 1000), got {fps!r}")
        if size_wh is not None and not all(isinstance(v, int) and v > 0 for v in size_wh):
            raise ConfigError(f"size_wh must be two positive ints (W, H), got {size_wh!r}")
        self.size_wh = size_wh
        try:
            encoder = av.codec.Codec(codec, "w")
        except ValueError:  # UnknownCodecError: no encoder of that name in this FFmpeg build
            encoder = None
        if encoder is None or encoder.type != "video":
            warnings.warn(
                f"{codec!r} is not a video encoder in this PyAV build; writing MPEG-4 Part 2 instead",
                PromptsegWarning,
                stacklevel=2,
            )
            encoder = av.codec.Codec("mpeg4", "w")
        self.codec: str = encoder.name  # "h264" resolves to "libx264"
        self._av = av
        self._crf, self._preset = crf, preset
        self._gop = keyframe_interval or max(1, round(2 * float(self.fps)))
        self._mask_alpha, self._show_scores = mask_alpha, show_scores
        try:  # claim the path now: PyAV creates the file only when the first frame is muxed
            with open(self.path, "wb" if overwrite else "xb"):
                pass
        except FileExistsError:
            raise ConfigError(f"{self.path} exists; pass overwrite=True or choose another path") from None
        except OSError as exc:
            raise ConfigError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        self._container: OutputContainer = av.open(
            str(self.path), "w", format="mp4", container_options=_MP4_OPTIONS
        )
        self._stream: VideoStream | None = None
        self._closed = False
        self.frames_written = 0

    def _start(self, size_wh: tuple[int, int]) -> None:
        self.size_wh = size_wh
        w, h = size_wh
        stream = cast("VideoStream", self._container.add_stream(self.codec, rate=self.fps))
        stream.width, stream.height = w + w % 2, h + h % 2
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = 1 / self.fps
        options: dict[str, object] = {"g": str(self._gop)}
        if self.codec == "libx264":
            # zerolatency: no lookahead or B-frames, so each frame's packet leaves the encoder at once
            options |= {"crf": str(self._crf), "preset": self._preset, "tune": "zerolatency"}
        else:
            stream.bit_rate = int(stream.width * stream.height * float(self.fps) * 0.2)
        stream.options = options
        self._stream = stream

    def write(self, frame: Frame, detections: Detections) -> None:
        if self._closed:
            raise InputError(f"{self.path} is closed")
        image = annotate_tracks(
            frame.image, detections, mask_alpha=self._mask_alpha, show_scores=self._show_scores
        )
        if self._stream is None:
            self._start(self.size_wh or (image.shape[1], image.shape[0]))
        assert self._stream is not None  # for mypy: both set by _start
        assert self.size_wh is not None
        w, h = self.size_wh
        if image.shape[:2] != (h, w):
            image = np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR))
        if w % 2 or h % 2:
            image = np.pad(image, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        video_frame = self._av.VideoFrame.from_ndarray(image, format="rgb24")
        video_frame.pts = self.frames_written
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder and write the trailer; a video without frames is a valid empty MP4."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._stream is None:
                self._start(self.size_wh or (16, 16))
                self._container.start_encoding()
            assert self._stream is not None
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        finally:
            self._container.close()


@dataclass
class _TrackStats:
    first_frame: int
    first_time: float
    last_frame: int = 0
    last_time: float = 0.0
    frames_seen: int = 0
    labels: Counter[str] = field(default_factory=Counter)
    score_sum: float = 0.0
    scored: int = 0


@dataclass
class _Bin:
    start_frame: int
    start_time: float
    end_frame: int
    end_time: float
    frames: int = 0
    sums: Counter[str] = field(default_factory=Counter)
    peaks: Counter[str] = field(default_factory=Counter)


class TrackSummary:
    """Running figures of a tracking run: every track's span and label, and object counts over time.

    Memory stays flat however long the run: one record per track, and counts kept in at most
    ``max_bins`` time bins (one frame each at first; when full, neighbours merge and bins double).

    Args:
        max_bins: most time bins kept for counts over time.
        meta: JSON values recorded as ``meta`` (source, prompt, backend, version).
    """

    def __init__(self, *, max_bins: int = 512, meta: Mapping[str, Any] | None = None) -> None:
        if max_bins < 2:
            raise ConfigError(f"max_bins must be at least 2, got {max_bins}")
        self.max_bins = max_bins
        self.meta = dict(meta or {})
        self.frames = 0
        self.first: tuple[int, float] | None = None  # (frame index, time)
        self.last: tuple[int, float] | None = None
        self.tracks: dict[int, _TrackStats] = {}
        self.instances: Counter[str] = Counter()
        self.peaks: Counter[str] = Counter()
        self._bins: list[_Bin] = []
        self._bin_frames = 1

    def update(self, frame: Frame, detections: Detections) -> None:
        """Add one frame's objects (frames without objects count too)."""
        self.frames += 1
        self.first = self.first or (frame.index, frame.time)
        self.last = (frame.index, frame.time)
        counts = Counter(detections.labels.tolist())
        self.instances.update(counts)
        self.peaks |= counts
        if detections.track_ids is not None:
            scores = detections.scores
            for i, tid in enumerate(detections.track_ids.tolist()):
                t = self.tracks.get(tid)
                if t is None:
                    t = self.tracks[tid] = _TrackStats(frame.index, frame.time)
                t.last_frame, t.last_time = frame.index, frame.time
                t.frames_seen += 1
                t.labels[str(detections.labels[i])] += 1
                if scores is not None:
                    t.score_sum += float(scores[i])
                    t.scored += 1
        if not self._bins or self._bins[-1].frames >= self._bin_frames:
            self._bins.append(_Bin(frame.index, frame.time, frame.index, frame.time))
            if len(self._bins) > self.max_bins:
                self._bins = [_merge(*self._bins[k : k + 2]) for k in range(0, len(self._bins), 2)]
                self._bin_frames *= 2
        b = self._bins[-1]
        b.end_frame, b.end_time = frame.index, frame.time
        b.frames += 1
        b.sums.update(counts)
        b.peaks |= counts

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON values.

        Layout: ``{"frames", "first_frame", "last_frame", "first_time", "last_time", "tracks": [{"track_id",
        "label", "labels", "first_frame", "last_frame", "first_time", "last_time", "frames_seen",
        "mean_score"}], "labels": {label: {"tracks", "instances", "max_per_frame", "mean_per_frame"}},
        "counts": {"bin_frames", "bins": [{"start_frame", "end_frame", "start_time", "end_time",
        "frames", "mean", "max"}]}, "meta"}``. A track's ``label`` is its most frequent one (``labels``
        counts them all); ``mean_score`` is null without scores; a bin's ``mean`` and ``max`` map each
        label to objects per frame in that bin. Frame numbers are 0-based indices, times seconds.
        :class:`SummaryOutput` adds ``"final"``: true once closed, false in a file a kill left behind.
        """
        tracks = []
        for tid in sorted(self.tracks):
            t = self.tracks[tid]
            tracks.append(
                {
                    "track_id": tid,
                    "label": t.labels.most_common(1)[0][0],
                    "labels": dict(t.labels),
                    "first_frame": t.first_frame,
                    "last_frame": t.last_frame,
                    "first_time": round(t.first_time, 6),
                    "last_time": round(t.last_time, 6),
                    "frames_seen": t.frames_seen,
                    "mean_score": round(t.score_sum / t.scored, 6) if t.scored else None,
                }
            )
        per_label_tracks = Counter(t["label"] for t in tracks)
        labels = {
            label: {
                "tracks": per_label_tracks.get(label, 0),
                "instances": self.instances[label],
                "max_per_frame": self.peaks[label],
                "mean_per_frame": round(self.instances[label] / self.frames, 6),
            }
            for label in sorted(self.instances)
        }
        bins = [
            {
                "start_frame": b.start_frame,
                "end_frame": b.end_frame,
                "start_time": round(b.start_time, 6),
                "end_time": round(b.end_time, 6),
                "frames": b.frames,
                "mean": {k: round(v / b.frames, 6) for k, v in sorted(b.sums.items())},
                "max": dict(sorted(b.peaks.items())),
            }
            for b in self._bins
        ]
        first, last = self.first or (None, None), self.last or (None, None)
        return {
            "frames": self.frames,
            "first_frame": first[0],
            "last_frame": last[0],
            "first_time": None if first[1] is None else round(first[1], 6),
            "last_time": None if last[1] is None else round(last[1], 6),
            "tracks": tracks,
            "labels": labels,
            "counts": {"bin_frames": self._bin_frames, "bins": bins},
            "meta": self.meta,
        }

    def to_text(self, *, max_tracks: int = 20) -> str:
        """A few lines for people: totals, per label, then the longest tracks."""
        if not self.frames or self.first is None or self.last is None:
            return "no frames"
        span = f"frames {self.first[0]}-{self.last[0]}, {self.last[1] - self.first[1]:.1f} s"
        lines = [f"{self.frames} frames ({span}), {len(self.tracks)} tracks"]
        d = self.to_dict()
        for label, s in d["labels"].items():
            lines.append(
                f"  {label}: {s['tracks']} tracks, up to {s['max_per_frame']} per frame "
                f"(mean {s['mean_per_frame']:.2f})"
            )
        longest = sorted(d["tracks"], key=lambda t: (-t["frames_seen"], t["track_id"]))
        for t in longest[:max_tracks]:
            score = "" if t["mean_score"] is None else f", mean score {t['mean_score']:.2f}"
            lines.append(
                f"  #{t['track_id']} {t['label']}: frames {t['first_frame']}-{t['last_frame']} "
                f"({t['frames_seen']} seen{score})"
            )
        if len(longest) > max_tracks:
            lines.append(f"  ... and {len(longest) - max_tracks} more tracks")
        return "\n".join(lines)


def _merge(a: _Bin, b: _Bin | None = None) -> _Bin:
    if b is None:
        return a
    return _Bin(
        a.start_frame,
        a.start_time,
        b.end_frame,
        b.end_time,
        a.frames + b.frames,
        a.sums + b.sums,
        a.peaks | b.peaks,
    )


class SummaryOutput:
    """The :class:`TrackSummary` as a JSON file, replaced atomically when opened, every ``every`` frames
    and on close.

    Args:
        path: the ``.json`` file to write (a ``.tmp`` file beside it is used for the atomic replace).
        every: rewrite the file after this many frames (a kill leaves a summary at most this old).
        meta: JSON values recorded as ``meta``.
        overwrite: replace an existing file (default: refuse with :class:`ConfigError`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        every: int = 25,
        meta: Mapping[str, Any] | None = None,
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path)
        if every < 1:
            raise ConfigError(f"every must be at least 1, got {every}")
        if self.path.exists() and not overwrite:
            raise ConfigError(f"{self.path} exists; pass overwrite=True or choose another path")
        self.every = every
        self.summary = TrackSummary(meta=meta)
        self._closed = False
        try:
            self._save(final=False)
        except OSError as exc:
            raise ConfigError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def write(self, frame: Frame, detections: Detections) -> None:
        if self._closed:
            raise InputError(f"{self.path} is closed")
        self.summary.update(frame, detections)
        if self.summary.frames % self.every == 0:
            self._save(final=False)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._save(final=True)

    def _save(self, *, final: bool) -> None:
        data = {**self.summary.to_dict(), "final": final}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1, allow_nan=False) + "\n", "utf-8")
        os.replace(tmp, self.path)


def open_outputs(
    jsonl: str | os.PathLike[str] | None = None,
    mot: str | os.PathLike[str] | None = None,
    video: str | os.PathLike[str] | None = None,
    summary: str | os.PathLike[str] | None = None,
    *,
    fps: float | None = None,
    mask_format: MaskFormat = "rle",
    meta: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> list[TrackOutput]:
    """Open the outputs that have a path, in the order jsonl, mot, video, summary.

    Args:
        jsonl, mot, video, summary: paths, or None for outputs not wanted.
        fps: frames per second, needed for ``video``.
        mask_format: masks in the JSON lines (see :class:`JsonlOutput`).
        meta: provenance (source, prompt, backend, version): the summary's ``meta``.
        overwrite: replace existing files instead of refusing.

    Raises:
        ConfigError: for an existing file (without ``overwrite``), an unwritable path, or ``video``
            without ``fps``. Outputs already opened are closed first.
    """
    if video is not None and fps is None:
        raise ConfigError("an annotated video needs fps (frames per second of the source)")
    outputs: list[TrackOutput] = []
    try:
        if jsonl is not None:
            outputs.append(JsonlOutput(jsonl, mask_format=mask_format, overwrite=overwrite))
        if mot is not None:
            outputs.append(MotOutput(mot, overwrite=overwrite))
        if video is not None:
            assert fps is not None
            outputs.append(VideoOutput(video, fps=fps, overwrite=overwrite))
        if summary is not None:
            outputs.append(SummaryOutput(summary, meta=meta, overwrite=overwrite))
    except BaseException:
        Outputs(outputs).close()
        raise
    return outputs


class Outputs:
    """Several outputs as one, and a context manager that closes them all, also on Ctrl-C.

    ``close()`` closes every output even when some fail or a second Ctrl-C arrives, then raises the
    first error. Leaving the ``with`` block by an exception closes everything and lets that exception
    through (close errors are then logged).
    """

    def __init__(self, outputs: Iterable[TrackOutput]) -> None:
        self.outputs = list(outputs)
        self.frames_written = 0

    def write(self, frame: Frame, detections: Detections) -> None:
        for output in self.outputs:
            output.write(frame, detections)
        self.frames_written += 1

    def close(self) -> None:
        errors: list[BaseException] = []
        for output in self.outputs:
            try:
                output.close()
            except BaseException as exc:  # close the rest, then raise
                errors.append(exc)
        if errors:
            raise errors[0]

    def __enter__(self) -> Outputs:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
            return
        try:
            self.close()
        except BaseException:  # the exception that ended the block matters more
            logger.exception("closing outputs after %s failed", exc_type.__name__)
