"""A local Gemini REST API for tests: ``POST /{version}/models/{model}:generateContent`` on 127.0.0.1.

The real ``google-genai`` client talks to it through ``HttpOptions(base_url=server.base_url)``. Each
request takes the next scripted action from a queue:

- :class:`Reply`: an HTTP status, headers and a body (a dict or list is sent as JSON); ``cut_at`` sends
  only that many body bytes under a ``Content-Length`` of the whole body, then drops the connection;
- :class:`Hang`: hold the request without answering (past the client's timeout), then drop it.

Every request is recorded (:class:`Recorded`), so tests can check the API key header, the prompt and
the image that were sent. The server listens on loopback only, answers at most ``max_requests``
requests (later ones get a 500 saying the script ran out), and stops by itself after ``lifetime``
seconds or when its ``with`` block ends, whichever comes first; a hanging request wakes up then too.

Example:
    >>> with FakeGemini([Reply(body=gemini_reply("[]"))]) as server:   # doctest: +SKIP
    ...     backend = GeminiBackend(api_key="k", base_url=server.base_url)
    ...     backend.detect(image, "cups")
    ...     server.requests[0].api_key
    'k'
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, TypeVar

__all__ = ["FakeGemini", "Hang", "Recorded", "Reply", "ScriptedServer", "api_error", "gemini_reply"]

_PATH = re.compile(r"^/(?P<version>v1(?:beta|alpha)?)/models/(?P<model>[^/:]+):generateContent$")


@dataclass(frozen=True)
class Reply:
    """One scripted HTTP answer.

    Attributes:
        status: HTTP status code.
        body: a dict or list (sent as JSON), str or bytes.
        headers: extra response headers (``{"Retry-After": "1"}``).
        cut_at: when set, send only this many bytes of the body (the ``Content-Length`` still gives the
            full size) and drop the connection: a reply truncated in transit.
    """

    status: int = 200
    body: Any = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    cut_at: int | None = None

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


@dataclass(frozen=True)
class Hang:
    """Hold the request this many seconds without answering, then drop the connection."""

    seconds: float = 5.0


@dataclass(frozen=True)
class Recorded:
    """A request as the server received it (header names lower-case)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def api_key(self) -> str | None:
        return self.headers.get("x-goog-api-key")

    @property
    def model(self) -> str | None:
        match = _PATH.match(self.path.split("?", 1)[0])
        return match.group("model") if match else None

    def parts(self) -> list[dict[str, Any]]:
        """Every part of every content of a generateContent request body."""
        return [part for content in self.json.get("contents", []) for part in content.get("parts", [])]

    @property
    def texts(self) -> list[str]:
        return [p["text"] for p in self.parts() if "text" in p]

    @property
    def images(self) -> list[tuple[str, bytes]]:
        """``(mime type, bytes)`` of every inline image sent."""
        out = []
        for p in self.parts():
            blob = p.get("inlineData") or p.get("inline_data")
            if blob:
                # google-genai sends URL-safe base64; the API takes both alphabets
                data = blob["data"].replace("+", "-").replace("/", "_")
                out.append((blob.get("mimeType") or blob.get("mime_type"), base64.urlsafe_b64decode(data)))
        return out


def gemini_reply(
    text: str,
    *,
    finish_reason: str = "STOP",
    prompt_tokens: int = 1290,
    output_tokens: int = 100,
    thinking_tokens: int | None = None,
    model_version: str = "gemini-2.5-flash",
) -> dict[str, Any]:
    """A generateContent response body carrying ``text``, shaped as the REST API sends it."""
    usage: dict[str, Any] = {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": output_tokens,
        "totalTokenCount": prompt_tokens + output_tokens + (thinking_tokens or 0),
        "promptTokensDetails": [{"modality": "IMAGE", "tokenCount": prompt_tokens}],
    }
    if thinking_tokens is not None:
        usage["thoughtsTokenCount"] = thinking_tokens
    return {
        "candidates": [
            {
                "content": {"parts": [{"text": text}], "role": "model"},
                "finishReason": finish_reason,
                "index": 0,
            }
        ],
        "usageMetadata": usage,
        "modelVersion": model_version,
        "responseId": "fake-response",
    }


_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def api_error(
    status: int,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    details: list[dict[str, Any]] | None = None,
) -> Reply:
    """An error reply in Google's JSON error shape (``{"error": {"code", "message", "status"}}``)."""
    error: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": _STATUS_NAMES.get(status, "UNKNOWN"),
    }
    if details:
        error["details"] = details
    return Reply(status=status, body={"error": error}, headers=dict(headers or {}))


class _ScriptedHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, owner: ScriptedServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _ScriptedHandler)


class _ScriptedHandler(BaseHTTPRequestHandler):
    """POST: record the request, then answer with the owner's next scripted action."""

    server: _ScriptedHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def do_POST(self) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, owner.max_body)) if length > 0 else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        owner._record(owner.recorded_class("POST", self.path, headers, body))
        if not owner._serves(self.path.split("?", 1)[0]):
            self._send(owner._not_found(self.path))
            return
        action = owner._next()
        if isinstance(action, Hang):
            owner._stop.wait(action.seconds)
            self.close_connection = True
            return
        self._send(action)

    def _send(self, reply: Reply) -> None:
        payload = reply.payload()
        self.send_response(reply.status)
        self.send_header("Content-Type", self.server.owner.content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if reply.cut_at is not None:
            self.wfile.write(payload[: reply.cut_at])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(payload)


_S = TypeVar("_S", bound="ScriptedServer")


class ScriptedServer:
    """A scripted HTTP API on 127.0.0.1 for tests; use it as a context manager.

    Each request gets the next scripted action; every request is recorded; the server answers at most
    ``max_requests`` (later ones get an error reply) and stops by itself after ``lifetime`` seconds or
    when its ``with`` block ends. Subclasses give the paths they serve (:meth:`_serves`), their 404 and
    error replies, the record type, their name and the path after the host in :attr:`base_url`.

    Args:
        script: actions (:class:`Reply` or :class:`Hang`) for the requests, in order.
        lifetime: seconds after which the server stops by itself.
        max_requests: requests it records at most; later ones are refused with a 500.

    Attributes:
        base_url: ``http://127.0.0.1:PORT`` plus :attr:`url_suffix`.
        requests: the requests received so far, in order.
    """

    name = "fake server"
    url_suffix = ""
    poll_interval = 0.05
    content_type = "application/json"
    max_body = 64 * 1024 * 1024
    recorded_class: Any = None  # builds a record from (method, path, lower-case headers, body)

    def __init__(
        self, script: Iterable[Reply | Hang] = (), *, lifetime: float = 20.0, max_requests: int = 50
    ) -> None:
        self._script: deque[Reply | Hang] = deque(script)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.requests: list[Recorded] = []
        self.lifetime = lifetime
        self.max_requests = max_requests
        self._server: ThreadingHTTPServer | None = None
        self._serving: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    def _serves(self, path: str) -> bool:
        raise NotImplementedError

    def _not_found(self, path: str) -> Reply:
        raise NotImplementedError

    def _error(self, message: str) -> Reply:
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not running: use it in a with block")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{self.url_suffix}"

    def add(self, *actions: Reply | Hang) -> None:
        """Append actions to the script."""
        with self._lock:
            self._script.extend(actions)

    def _record(self, request: Recorded) -> None:
        with self._lock:
            self.requests.append(request)

    def _next(self) -> Reply | Hang:
        with self._lock:
            if len(self.requests) > self.max_requests:
                return self._error(f"{self.name}: more than {self.max_requests} requests")
            if not self._script:
                return self._error(f"{self.name}: no scripted reply left for this request")
            return self._script.popleft()

    def __enter__(self: _S) -> _S:
        self._server = _ScriptedHTTPServer(self)
        self._serving = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": self.poll_interval}, daemon=True
        )
        self._timer = threading.Timer(self.lifetime, self._shutdown)
        self._timer.daemon = True
        self._serving.start()
        self._timer.start()
        return self

    def _shutdown(self) -> None:
        self._stop.set()  # wakes hanging requests
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()  # nothing listens any more: connections are refused

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._shutdown()
        for thread in (self._serving, self._timer):
            if thread is not None:
                thread.join(timeout=5)


class FakeGemini(ScriptedServer):
    """A scripted Gemini API server on 127.0.0.1 (see :class:`ScriptedServer`); ``base_url`` is what
    the client takes as its base URL."""

    name = "fake Gemini"
    content_type = "application/json; charset=UTF-8"
    recorded_class = Recorded

    def _serves(self, path: str) -> bool:
        return _PATH.match(path) is not None

    def _not_found(self, path: str) -> Reply:
        return api_error(404, f"fake Gemini serves only generateContent, not {path}")

    def _error(self, message: str) -> Reply:
        return api_error(500, message)
