"""A local OpenAI-compatible chat API for tests: ``POST /v1/chat/completions`` on 127.0.0.1.

The same spirit as :mod:`tests.fakes.gemini_server`, whose :class:`Reply` and :class:`Hang` actions it
takes: each request gets the next scripted action, every request is recorded (:class:`Recorded`: the
``Authorization`` header, the messages), the server listens on loopback only, answers at most
``max_requests`` requests (later ones get a 500), and stops by itself after ``lifetime`` seconds or when
its ``with`` block ends.

Example:
    >>> with FakeOpenAI([Reply(body=chat_reply('{"include": []}'))]) as server:   # doctest: +SKIP
    ...     LLMParser("openai", base_url=server.base_url).parse("cups")
    ...     server.requests[0].messages[-1]["content"]
    'Prompt: "cups"'
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fakes.gemini_server import Hang, Reply, ScriptedServer

__all__ = ["FakeOpenAI", "Hang", "Recorded", "Reply", "chat_reply", "openai_error"]

_PATH = "/v1/chat/completions"
_MAX_BODY = 16 * 1024 * 1024


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
        """The bearer token, or None when no ``Authorization`` header was sent."""
        value = self.headers.get("authorization")
        return value.removeprefix("Bearer ") if value is not None else None

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.json.get("messages", []))


def chat_reply(
    content: str | None,
    *,
    model: str = "gpt-4o-mini",
    finish_reason: str = "stop",
    prompt_tokens: int = 2200,
    completion_tokens: int = 40,
) -> dict[str, Any]:
    """A chat completion body carrying ``content``, shaped as OpenAI's API sends it."""
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1767225600,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def openai_error(
    status: int,
    message: str,
    *,
    error_type: str = "invalid_request_error",
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """An error reply in OpenAI's JSON error shape (``{"error": {"message", "type", "param", "code"}}``)."""
    body = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    return Reply(status=status, body=body, headers=dict(headers or {}))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, owner: FakeOpenAI) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def do_POST(self) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, _MAX_BODY)) if length > 0 else b""
        owner._record(Recorded("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        if self.path.split("?", 1)[0] != _PATH:
            self._send(openai_error(404, f"fake OpenAI serves only {_PATH}, not {self.path}"))
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
        self.send_header("Content-Type", "application/json")
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


class FakeOpenAI(ScriptedServer):
    """A scripted OpenAI-compatible server on 127.0.0.1 (see
    :class:`~tests.fakes.gemini_server.ScriptedServer`); ``base_url`` is ``http://127.0.0.1:PORT/v1``,
    the URL before ``/chat/completions``."""

    name = "fake OpenAI"
    url_suffix = "/v1"
    poll_interval = 0.01

    def _make_server(self) -> ThreadingHTTPServer:
        return _Server(self)

    def _error(self, message: str) -> Reply:
        return openai_error(500, message, error_type="server_error")
