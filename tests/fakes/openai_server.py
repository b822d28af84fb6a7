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

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tests.fakes import gemini_server
from tests.fakes.gemini_server import Hang, Reply, ScriptedServer

__all__ = ["FakeOpenAI", "Hang", "Recorded", "Reply", "chat_reply", "openai_error"]

_PATH = "/v1/chat/completions"


@dataclass(frozen=True)
class Recorded(gemini_server.Recorded):
    """A request as the server received it (header names lower-case): the Gemini fake's record, read
    as a chat completion request."""

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


class FakeOpenAI(ScriptedServer):
    """A scripted OpenAI-compatible server on 127.0.0.1 (see
    :class:`~tests.fakes.gemini_server.ScriptedServer`); ``base_url`` is ``http://127.0.0.1:PORT/v1``,
    the URL before ``/chat/completions``."""

    name = "fake OpenAI"
    url_suffix = "/v1"
    poll_interval = 0.01
    max_body = 16 * 1024 * 1024
    recorded_class = Recorded

    def _serves(self, path: str) -> bool:
        return path == _PATH

    def _not_found(self, path: str) -> Reply:
        return openai_error(404, f"fake OpenAI serves only {_PATH}, not {path}")

    def _error(self, message: str) -> Reply:
        return openai_error(500, message, error_type="server_error")
