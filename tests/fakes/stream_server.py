"""Live video streams on 127.0.0.1 for tests: HTTP (MPEG-TS, MJPEG, a plain MP4 file) and RTSP.

Both servers make their streams from a real clip while they send it, so a client sees what a camera or a
streaming server sends, and PyAV/FFmpeg's own demuxers (``mpegts``, ``mpjpeg``, ``mov``, ``rtsp``) read
it on the other side:

- :class:`FakeHttpStream`

  - ``/live.ts``: the clip's H.264 packets remuxed (copied, not re-encoded) into MPEG-TS by PyAV and
    written to the socket as they are muxed; no ``Content-Length``, the body ends when the connection
    does (an HTTP live stream);
  - ``/live.mjpeg``: each decoded frame as a JPEG part of a ``multipart/x-mixed-replace`` reply (what IP
    cameras serve);
  - ``/clip.mp4``: the clip file itself, with ``Content-Length`` and ``Range`` (a recorded video on a web
    server: not live); its only fault is ``file_cut_at``: the first reply that would send that byte of
    the file is reset there.

- :class:`FakeRtspStream`: ``rtsp://127.0.0.1:PORT/live`` answers OPTIONS, DESCRIBE (an SDP carrying the
  clip's SPS and PPS), SETUP (TCP-interleaved transport only; a request for UDP gets 461 Unsupported
  Transport, after which FFmpeg falls back to TCP), PLAY, GET_PARAMETER and TEARDOWN. After PLAY the
  clip's H.264 goes out as RTP (RFC 6184: single NAL unit packets and FU-A fragments, SPS and PPS again
  before each key frame) interleaved on the RTSP connection (RFC 2326 §10.12).

Faults of the live streams, the same for both servers:

- ``drop_after=N``: each stream is cut after N frames, with a TCP reset (a network failure);
- ``stall_after=N``: each stream goes silent after N frames, the connection left open, until the server
  stops (a hung camera: only the client's read timeout gets it out);
- ``loops``: the clip is sent this many times per connection (timestamps keep increasing), then the
  connection is closed cleanly (an end of stream, which a live client must treat as a drop);
- ``down_for=S``: after a stream ends, new requests are answered 503 for S seconds (a camera rebooting);
- ``max_connections=K``: once K streams have ended the server stops listening, so later connections are
  refused: the stream never comes back.

Frames are paced at ``fps`` frames per second when it is given (else sent as fast as the client reads).
The servers listen on loopback only and stop by themselves after ``lifetime`` seconds or when their
``with`` block ends, whichever comes first.

Example:
    >>> with FakeHttpStream(clip, drop_after=40, down_for=0.2) as server:   # doctest: +SKIP
    ...     source = open_source(server.url("/live.ts"), backoff=0.05)
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, TypeVar

import av

__all__ = ["FakeHttpStream", "FakeRtspStream", "h264_rtp_packets"]

_MAX_HEAD = 16 * 1024
_RTP_PAYLOAD = 1400  # bytes of NAL data per RTP packet, under a typical MTU
_RTP_CLOCK = 90_000  # H.264's RTP clock rate (RFC 6184 §8.2.1)
_PAYLOAD_TYPE = 96
_S = TypeVar("_S", bound="_FakeStream")


class _Cut(Exception):
    """The server decided to drop this connection now."""


class _FakeStream:
    """What both servers share: a listening socket, the faults, the pacing and the lifetime."""

    scheme = ""

    def __init__(
        self,
        clip: str | os.PathLike[str],
        *,
        fps: float | None = None,
        loops: int = 1,
        drop_after: int | None = None,
        stall_after: int | None = None,
        down_for: float = 0.0,
        max_connections: int | None = None,
        file_cut_at: int | None = None,
        lifetime: float = 20.0,
    ) -> None:
        self.clip = Path(clip)
        self.file_cut_at = file_cut_at
        self.fps = fps
        self.loops = loops
        self.drop_after = drop_after
        self.stall_after = stall_after
        self.down_for = down_for
        self.max_connections = max_connections
        self.lifetime = lifetime
        self.streams_started = 0  # connections that got a stream
        self.streams_ended = 0
        self.refused = 0  # requests answered 503 while down
        self.frames_sent: list[int] = []  # per stream, in the order they started
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._down_until = 0.0
        self._listener: socket.socket | None = None
        self._port = 0
        self._threads: list[threading.Thread] = []
        self._conns: set[socket.socket] = set()
        self._timer: threading.Timer | None = None

    def url(self, path: str = "/live") -> str:
        if not self._port:
            raise RuntimeError(f"{type(self).__name__} is not running: use it in a with block")
        return f"{self.scheme}://127.0.0.1:{self._port}{path}"

    def __enter__(self: _S) -> _S:
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(0.05)
        self._listener = listener
        self._port = listener.getsockname()[1]
        self._spawn(self._accept_loop)
        self._timer = threading.Timer(self.lifetime, self._shutdown)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._shutdown()
        for thread in list(self._threads):
            thread.join(timeout=5)

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _shutdown(self) -> None:
        self._stop.set()
        self._stop_listening()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            _reset(conn)

    def _stop_listening(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            # shutdown first: a bare close leaves the port listening until the accept() under way returns
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                listener = self._listener
            if listener is None:
                return
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed under us
                return
            conn.settimeout(5.0)
            with self._lock:
                self._conns.add(conn)
            self._spawn(self._handle, conn)

    def _handle(self, conn: socket.socket) -> None:
        try:
            self._serve(conn)
        except (OSError, _Cut, av.error.FFmpegError):
            pass
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()

    def _serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def _is_down(self) -> bool:
        with self._lock:
            down = time.monotonic() < self._down_until
            if down:
                self.refused += 1
            return down

    def _start_stream(self) -> int:
        with self._lock:
            self.streams_started += 1
            self.frames_sent.append(0)
            return len(self.frames_sent) - 1

    def _end_stream(self, conn: socket.socket, *, cut: bool) -> None:
        """A stream is over: maybe go away for good, go down for a while, and close or reset the socket."""
        with self._lock:
            self.streams_ended += 1
            self._down_until = time.monotonic() + self.down_for
            gone = self.max_connections is not None and self.streams_ended >= self.max_connections
        if gone:  # before the client sees the end, so that its reconnection is refused
            self._stop_listening()
        if cut:
            _reset(conn)
        else:
            conn.shutdown(socket.SHUT_RDWR)

    def _paced(self, items: Iterator[Any], stream: int, conn: socket.socket) -> Iterator[Any]:
        """The items, one per frame, paced, counted, and cut or stalled as the faults say."""
        start = time.monotonic()
        for n, item in enumerate(items):
            if self._stop.is_set():
                raise _Cut
            if self.drop_after is not None and n >= self.drop_after:
                self._end_stream(conn, cut=True)
                raise _Cut
            if self.stall_after is not None and n >= self.stall_after:
                self._stop.wait()
                raise _Cut
            if self.fps:
                delay = start + n / self.fps - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    raise _Cut
            yield item
            with self._lock:
                self.frames_sent[stream] += 1

    def _packets(self) -> Iterator[tuple[Any, Any]]:
        # (packet, its stream)
        """The clip's video packets, ``loops`` times over, with timestamps that keep increasing."""
        offset = 0
        for _ in range(self.loops):
            end = offset
            with av.open(str(self.clip)) as container:
                stream = container.streams.video[0]
                for packet in container.demux(stream):
                    if packet.dts is None:  # the flush packet
                        continue
                    last = (packet.pts or 0) + (packet.duration or 0)
                    end = max(end, last + offset)
                    packet.pts = None if packet.pts is None else packet.pts + offset
                    packet.dts += offset
                    yield packet, stream
            offset = end

    def _frames(self) -> Iterator[av.VideoFrame]:
        for _ in range(self.loops):
            with av.open(str(self.clip)) as container:
                yield from container.decode(video=0)


class FakeHttpStream(_FakeStream):
    """An HTTP server of live streams (``/live.ts``, ``/live.mjpeg``) and a plain file (``/clip.mp4``).

    Args:
        clip: the video whose frames are sent (its first stream must be H.264 for ``/live.ts``).
        fps: frames sent per second (None: as fast as the client reads).
        loops: times the clip is sent per connection before the connection is closed cleanly.
        drop_after: frames sent per connection before it is reset (None: never).
        stall_after: frames sent per connection before it goes silent until the server stops.
        down_for: seconds after a stream ends during which requests get 503.
        max_connections: streams served before the server stops listening for good (None: no limit).
        file_cut_at: reset the first ``/clip.mp4`` reply that gets to this byte of the file, there.
        lifetime: seconds after which the server stops by itself.

    Attributes:
        streams_started, streams_ended, refused: counts so far; frames_sent: frames per stream.
    """

    scheme = "http"

    def _serve(self, conn: socket.socket) -> None:
        method, path, headers = _read_http_head(conn)
        if path == "/clip.mp4" and method in ("GET", "HEAD"):
            self._send_file(conn, headers.get("range"), head=method == "HEAD")
            return
        if path not in ("/live.ts", "/live.mjpeg") or method != "GET":
            conn.sendall(_http_status(404, "Not Found"))
            return
        if self._is_down():
            conn.sendall(_http_status(503, "Service Unavailable"))
            return
        stream = self._start_stream()
        boundary = "promptsegframe"
        kind = "video/mp2t" if path == "/live.ts" else f"multipart/x-mixed-replace; boundary={boundary}"
        conn.sendall(
            f"HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nCache-Control: no-cache\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        if path == "/live.ts":
            self._send_ts(conn, stream)
        else:
            self._send_mjpeg(conn, stream, boundary)
        self._end_stream(conn, cut=False)

    def _send_ts(self, conn: socket.socket, stream: int) -> None:
        writer = _SocketWriter(conn)
        # a small I/O buffer so that what is muxed goes out at once, as a live encoder's output would
        output = av.open(writer, "w", format="mpegts", buffer_size=188 * 7)
        try:
            out_stream = None
            for packet, in_stream in self._paced(self._packets(), stream, conn):
                if out_stream is None:
                    out_stream = output.add_stream_from_template(in_stream)
                packet.stream = out_stream
                output.mux(packet)
        except BaseException:
            writer.dead = True  # the connection is gone: the trailer has nowhere to go
            raise
        finally:
            output.close()

    def _send_mjpeg(self, conn: socket.socket, stream: int, boundary: str) -> None:
        for frame in self._paced(self._frames(), stream, conn):
            buf = io.BytesIO()
            frame.to_image().save(buf, "JPEG", quality=85)
            jpeg = buf.getvalue()
            head = f"--{boundary}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
            conn.sendall(head.encode() + jpeg + b"\r\n")

    def _send_file(self, conn: socket.socket, byte_range: str | None, *, head: bool) -> None:
        size = self.clip.stat().st_size
        start, end = 0, size - 1
        if byte_range and byte_range.startswith("bytes="):
            first, _, last = byte_range[len("bytes=") :].partition("-")
            start = int(first) if first else 0
            end = min(int(last), size - 1) if last else size - 1
        if start >= size:
            conn.sendall(_http_status(416, "Range Not Satisfiable", f"Content-Range: bytes */{size}\r\n"))
            return
        status = "206 Partial Content" if byte_range else "200 OK"
        extra = f"Content-Range: bytes {start}-{end}/{size}\r\n" if byte_range else ""
        conn.sendall(
            f"HTTP/1.1 {status}\r\nContent-Type: video/mp4\r\nAccept-Ranges: bytes\r\n{extra}"
            f"Content-Length: {end - start + 1}\r\nConnection: close\r\n\r\n".encode()
        )
        if head:
            return
        cut = self.file_cut_at
        cutting = cut is not None and start < cut <= end
        if cut is not None and cutting:
            self.file_cut_at = None  # once
            end = cut - 1
        with self.clip.open("rb") as f:
            f.seek(start)
            remaining = end - start + 1
            while remaining > 0 and not self._stop.is_set():
                chunk = f.read(min(remaining, 64 * 1024))
                if not chunk:
                    break
                conn.sendall(chunk)
                remaining -= len(chunk)
        if cutting:
            _reset(conn)


class FakeRtspStream(_FakeStream):
    """An RTSP server of one live H.264 stream, ``rtsp://127.0.0.1:PORT/live``, over TCP-interleaved RTP.

    Takes the arguments of :class:`FakeHttpStream` (the clip's first stream must be H.264 in an MP4,
    whose ``avcC`` extradata gives the SPS and PPS). A connection counts as a stream from its PLAY.

    Attributes:
        requests: the RTSP methods received, in order, over all connections.
    """

    scheme = "rtsp"

    def __init__(self, clip: str | os.PathLike[str], **kwargs: Any) -> None:
        super().__init__(clip, **kwargs)
        self.requests: list[str] = []
        with av.open(str(self.clip)) as container:
            stream = container.streams.video[0]
            if stream.codec_context.name != "h264":
                raise ValueError(f"FakeRtspStream sends H.264; {self.clip} holds {stream.codec_context.name}")
            self._nal_length, self._parameter_sets = _avcc(bytes(stream.codec_context.extradata or b""))

    def _sdp(self) -> bytes:
        sps, pps = self._parameter_sets
        sprop = ",".join(base64.b64encode(p).decode() for p in (sps, pps))
        return (
            "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=promptseg fake camera\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
            "a=control:*\r\n"
            f"m=video 0 RTP/AVP {_PAYLOAD_TYPE}\r\n"
            f"a=rtpmap:{_PAYLOAD_TYPE} H264/{_RTP_CLOCK}\r\n"
            f"a=fmtp:{_PAYLOAD_TYPE} packetization-mode=1;profile-level-id={sps[1:4].hex()};"
            f"sprop-parameter-sets={sprop}\r\n"
            "a=control:track0\r\n"
        ).encode()

    def _serve(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        lock = threading.Lock()  # the sender thread and this one both write to the socket
        session = f"{id(conn) & 0xFFFFFFF:08X}"
        playing = False
        while not self._stop.is_set():
            first = reader.read(1)
            if not first:
                return
            if first == b"$":  # an interleaved RTCP report from the client: read past it
                channel_and_length = reader.read(3)
                if len(channel_and_length) < 3:
                    return
                reader.read(struct.unpack(">H", channel_and_length[1:])[0])
                continue
            method, url, headers = _parse_head(first + _read_head_rest(reader))
            length = int(headers.get("content-length", "0"))
            if length:
                reader.read(length)
            with self._lock:
                self.requests.append(method)
            cseq = headers.get("cseq", "0")
            base = url.split("?", 1)[0].rstrip("/")
            if method == "OPTIONS":
                reply = _rtsp(cseq, "Public: OPTIONS, DESCRIBE, SETUP, PLAY, GET_PARAMETER, TEARDOWN\r\n")
            elif method == "DESCRIBE":
                if self._is_down():
                    reply = _rtsp(cseq, status="503 Service Unavailable")
                else:
                    sdp = self._sdp()
                    reply = _rtsp(
                        cseq,
                        f"Content-Base: {base}/\r\nContent-Type: application/sdp\r\n"
                        f"Content-Length: {len(sdp)}\r\n",
                        body=sdp,
                    )
            elif method == "SETUP":
                transport = headers.get("transport", "")
                if "TCP" not in transport.upper():
                    reply = _rtsp(cseq, status="461 Unsupported Transport")
                else:
                    transport = "RTP/AVP/TCP;unicast;interleaved=0-1"
                    reply = _rtsp(cseq, f"Transport: {transport}\r\nSession: {session};timeout=60\r\n")
            elif method == "PLAY" and not playing:
                playing = True
                stream = self._start_stream()
                reply = _rtsp(cseq, f"Session: {session}\r\nRange: npt=0.000-\r\n")
                with lock:
                    conn.sendall(reply)
                self._spawn(self._send_rtp, conn, lock, stream)
                continue
            elif method == "TEARDOWN":
                with lock:
                    conn.sendall(_rtsp(cseq, f"Session: {session}\r\n"))
                return
            elif method in ("PLAY", "GET_PARAMETER", "SET_PARAMETER"):
                reply = _rtsp(cseq, f"Session: {session}\r\n")
            else:
                reply = _rtsp(cseq, status="501 Not Implemented")
            with lock:
                conn.sendall(reply)

    def _send_rtp(self, conn: socket.socket, lock: threading.Lock, stream: int) -> None:
        ssrc = 0x50534547  # "PSEG"
        seq = 0
        try:
            for packet, in_stream in self._paced(self._packets(), stream, conn):
                pts = packet.pts if packet.pts is not None else packet.dts
                stamp = int(Fraction(pts) * in_stream.time_base * _RTP_CLOCK) + 1000
                nals = _split_avcc(bytes(packet), self._nal_length)
                if packet.is_keyframe:
                    nals = [*self._parameter_sets, *nals]
                for payload, marker in h264_rtp_packets(nals):
                    header = struct.pack(
                        ">BBHII", 0x80, (marker << 7) | _PAYLOAD_TYPE, seq & 0xFFFF, stamp & 0xFFFFFFFF, ssrc
                    )
                    seq += 1
                    rtp = header + payload
                    with lock:
                        conn.sendall(b"$\x00" + struct.pack(">H", len(rtp)) + rtp)
            self._end_stream(conn, cut=False)
        except (OSError, _Cut, av.error.FFmpegError):
            pass


def h264_rtp_packets(nals: list[bytes], max_payload: int = _RTP_PAYLOAD) -> Iterator[tuple[bytes, bool]]:
    """RTP payloads for one access unit (RFC 6184, packetization mode 1), each with its marker bit.

    A NAL unit that fits goes out whole (a single NAL unit packet); a larger one is split into FU-A
    fragments: FU indicator (the NAL's F and NRI bits, type 28), FU header (start, end, the NAL's type),
    then a slice of the NAL's payload. The marker is set on the last packet of the access unit.
    """
    for i, nal in enumerate(nals):
        last_nal = i == len(nals) - 1
        if len(nal) <= max_payload:
            yield nal, last_nal
            continue
        indicator = (nal[0] & 0xE0) | 28
        body = nal[1:]
        for start in range(0, len(body), max_payload - 2):
            end = start + max_payload - 2 >= len(body)
            fu_header = (0x80 if start == 0 else 0) | (0x40 if end else 0) | (nal[0] & 0x1F)
            yield bytes([indicator, fu_header]) + body[start : start + max_payload - 2], last_nal and end


def _avcc(extradata: bytes) -> tuple[int, tuple[bytes, bytes]]:
    """NAL length size and the first (SPS, PPS) of an ``avcC`` box (ISO/IEC 14496-15 §5.3.3.1)."""
    if len(extradata) < 7 or extradata[0] != 1:
        raise ValueError("the clip's H.264 extradata is not an avcC record")
    nal_length = (extradata[4] & 0x03) + 1
    pos = 6
    sps_len = struct.unpack(">H", extradata[pos : pos + 2])[0]
    sps = extradata[pos + 2 : pos + 2 + sps_len]
    pos += 2 + sps_len
    for _ in range((extradata[5] & 0x1F) - 1):  # further SPS, unused
        pos += 2 + struct.unpack(">H", extradata[pos : pos + 2])[0]
    pos += 1  # number of PPS
    pps_len = struct.unpack(">H", extradata[pos : pos + 2])[0]
    pps = extradata[pos + 2 : pos + 2 + pps_len]
    return nal_length, (sps, pps)


def _split_avcc(data: bytes, nal_length: int) -> list[bytes]:
    nals, pos = [], 0
    while pos + nal_length <= len(data):
        size = int.from_bytes(data[pos : pos + nal_length], "big")
        pos += nal_length
        nals.append(data[pos : pos + size])
        pos += size
    return nals


class _SocketWriter:
    """A write-only file over a socket for PyAV's muxer; after a failure it swallows what follows."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.dead = False

    def write(self, data: bytes) -> int:
        if self.dead:
            return len(data)
        try:
            self.conn.sendall(data)
        except OSError:
            self.dead = True
            raise
        return len(data)


def _reset(conn: socket.socket) -> None:
    """Drop a connection the hard way: a TCP reset, as when a camera or a network link dies."""
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _read_http_head(conn: socket.socket) -> tuple[str, str, dict[str, str]]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk or len(data) > _MAX_HEAD:
            raise _Cut
        data += chunk
    method, path, headers = _parse_head(data.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
    return method, path.split("?", 1)[0], headers


def _read_head_rest(reader: BinaryIO) -> bytes:
    data = b""
    while not data.endswith(b"\r\n\r\n"):
        line = reader.readline(_MAX_HEAD)
        if not line or len(data) > _MAX_HEAD:
            raise _Cut
        data += line
    return data


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split()
    if len(parts) < 2:
        raise _Cut
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return parts[0].upper(), parts[1], headers


def _http_status(code: int, reason: str, extra: str = "") -> bytes:
    return f"HTTP/1.1 {code} {reason}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n".encode()


def _rtsp(cseq: str, headers: str = "", *, status: str = "200 OK", body: bytes = b"") -> bytes:
    return f"RTSP/1.0 {status}\r\nCSeq: {cseq}\r\n{headers}\r\n".encode() + body
