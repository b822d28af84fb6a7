"""The optional language-model parser: a prompt read into a :class:`~promptseg.query.model.Query` by an LLM.

Two providers, one contract:

- ``gemini``: the Gemini API through ``google-genai`` (key ``$GEMINI_API_KEY`` / ``$GOOGLE_API_KEY``,
  endpoint ``$PROMPTSEG_GEMINI_BASE_URL``), the client built as :mod:`promptseg.backends.gemini` builds it;
- ``openai``: any OpenAI-compatible ``POST {base_url}/chat/completions`` (OpenAI, vLLM, llama.cpp server,
  Ollama) through ``httpx``; ``base_url`` defaults to ``$PROMPTSEG_LLM_BASE_URL``, else OpenAI's, and the
  key to ``$OPENAI_API_KEY`` (needed for OpenAI's own endpoint; local servers may need none).

Each request carries one system instruction (:func:`system_instruction`: the fields, the palette, the
relations, the JSON Schema and worked :data:`EXAMPLES`), asks for a JSON object at temperature 0, and the
reply goes through :meth:`Query.from_dict`, the validator every parser shares. A reply that is not a valid
query is sent back once with the validation error; a second bad reply raises :class:`QueryError` with
the text on ``raw_response``. HTTP 408, 429, 500, 502, 503 and 504 and dropped connections are retried
once, after the server's ``Retry-After`` when it sends one, within ``retry_budget`` seconds of waiting
per parse; timeouts and other errors are not.

Example:
    >>> parser = LLMParser.from_spec("openai:gpt-4o-mini")                    # doctest: +SKIP
    >>> q = parser.parse("the third book from the left")                      # doctest: +SKIP
    >>> parser.parse("only the red one", previous=q).refer, parser.last_usage  # doctest: +SKIP
    ('narrow', {'requests': 1, 'prompt_tokens': 2210, 'output_tokens': 31, 'total_tokens': 2241})
"""

from __future__ import annotations

import json
import math
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from promptseg._deps import require
from promptseg._version import __version__
from promptseg.backends._common import retry_after as _retry_after
from promptseg.errors import ConfigError, InputError, QueryError, RemoteBackendError
from promptseg.query.model import COLORS, REGIONS, Query, json_schema
from promptseg.settings import GEMINI_KEY_VARIABLES, get_settings

if TYPE_CHECKING:
    import httpx

__all__ = [
    "DEFAULT_MODELS",
    "EXAMPLES",
    "OPENAI_BASE_URL",
    "PROVIDERS",
    "Example",
    "LLMParser",
    "system_instruction",
]

PROVIDERS = ("gemini", "openai")
DEFAULT_MODELS: Mapping[str, str] = {"gemini": "gemini-2.5-flash", "openai": "gpt-4o-mini"}
OPENAI_BASE_URL = "https://api.openai.com/v1"

_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_DEFAULT_WAIT = 1.0  # seconds before the retry when the server does not say
_RAW_LIMIT = 20_000  # characters of a reply kept on an error


@dataclass(frozen=True)
class Example:
    """A worked example of the system instruction: a prompt, the previous query if any, the answer."""

    prompt: str
    answer: Mapping[str, Any]
    previous: Mapping[str, Any] | None = None


EXAMPLES: tuple[Example, ...] = (
    Example(
        "the third book from the left",
        {
            "include": [
                {
                    "concept": "book",
                    "ordinal": {"n": 3, "direction": "left"},
                    "text": "the third book from the left",
                }
            ]
        },
    ),
    Example(
        "people without a helmet",
        {
            "include": [
                {
                    "concept": "person",
                    "plural": True,
                    "relations": [{"kind": "wearing", "target": {"concept": "helmet"}, "negated": True}],
                    "text": "people without a helmet",
                }
            ]
        },
    ),
    Example(
        "all chairs except the red one",
        {
            "include": [
                {
                    "concept": "chair",
                    "plural": True,
                    "exclude": [{"concept": "chair", "colors": ["red"]}],
                    "text": "all chairs except the red one",
                }
            ]
        },
    ),
    Example(
        "the two largest dogs",
        {
            "include": [
                {
                    "concept": "dog",
                    "plural": True,
                    "size": "largest",
                    "count": 2,
                    "text": "the two largest dogs",
                }
            ]
        },
    ),
    Example(
        "the woman on the left holding a shiny grey umbrella",
        {
            "include": [
                {
                    "concept": "woman",
                    "region": "left",
                    "count": 1,
                    "relations": [{"kind": "holding", "target": {"concept": "umbrella", "colors": ["gray"]}}],
                    "text": "the woman on the left holding a shiny grey umbrella",
                }
            ],
            "notes": ["ignored 'shiny': no field for it"],
        },
    ),
    Example(
        "the last bottle on the shelf",
        {
            "include": [
                {
                    "concept": "bottle",
                    "ordinal": {"n": -1, "direction": "left"},
                    "relations": [{"kind": "on", "target": {"concept": "shelf"}}],
                    "text": "the last bottle on the shelf",
                }
            ]
        },
    ),
    Example(
        "people and dogs, but not the person on the left",
        {
            "include": [
                {"concept": "person", "plural": True, "text": "people"},
                {"concept": "dog", "plural": True, "text": "dogs"},
            ],
            "exclude": [
                {"concept": "person", "region": "left", "count": 1, "text": "the person on the left"}
            ],
        },
    ),
    Example(
        "only the left one",
        {
            "include": [{"concept": "@that", "region": "left", "count": 1, "text": "the left one"}],
            "refer": "narrow",
        },
        previous={"include": [{"concept": "cup", "plural": True, "text": "cups"}], "prompt": "cups"},
    ),
    Example(
        "and the chairs too",
        {"include": [{"concept": "chair", "plural": True, "text": "the chairs"}], "refer": "add"},
        previous={"include": [{"concept": "table", "plural": True, "text": "tables"}], "prompt": "tables"},
    ),
    Example(
        "the other bottle",
        {"include": [{"concept": "bottle", "text": "the other bottle"}], "refer": "other"},
        previous={
            "include": [
                {
                    "concept": "bottle",
                    "relations": [{"kind": "nearest", "target": {"concept": "sink"}}],
                    "text": "the bottle nearest to the sink",
                }
            ],
            "prompt": "the bottle nearest to the sink",
        },
    ),
)
"""The worked examples in :func:`system_instruction`; each answer is :meth:`Query.to_dict` output."""

_INSTRUCTION = """\
You turn a request for objects in a photo into a JSON query for an object detector followed by a \
geometric resolver. You never see the image: read only the words. Answer with one JSON object and \
nothing else.

The query object:
- include: the terms to find, one per concept named ("bags and luggage" is two terms).
- exclude: terms to leave out of the whole answer ("people and dogs, but not the person on the left").
- refer: how the prompt relates to the previous query of a conversation. "new" (the default: leave it \
out) when it does not; "narrow": select among the last answer ("only the left one", "those on the \
table"); "add": the last answer plus these ("and the chairs too"); "remove": the last answer minus the \
exclude terms, with include empty ("not the red one": {{"include": [], "exclude": [{{"concept": "@that", \
"colors": ["red"]}}], "refer": "remove"}}); "other": the previous request again without the last \
answer's objects ("the other bottle"; "not that one" and "the other one" are {{"concept": "@that"}}).
- notes: optional short strings naming words you could not express ("ignored 'shiny': no field for it").

A term:
- concept: the object's noun phrase, singular and lower case, without colour, size, position or number: \
"person" for "people", "wine glass", "traffic light". For a follow-up's pronoun that points at the last \
answer ("the left one", "that one", "those", "them") the concept is "@that".
- plural: true when several are asked for ("cups", "all the cups", "people"); leave it out for one.
- colors: any of {colors}. Map other colour words onto the nearest of these ("grey" is gray, "navy" \
blue, "crimson" red, "beige" brown, "golden" yellow); several colours mean any of them.
- size: "largest" or "smallest" for a superlative (one object, or count of them: "the two largest \
dogs"); "large" or "small" for an adjective ("the big boxes"), relative to the other objects of the \
concept.
- region: where in the image, one of {regions} ("on the left" is left, "in the upper right corner" \
top right, "in the middle" center).
- ordinal: {{"n": 3, "direction": "left"}} for "the third from the left". n counts from 1; -1 is the \
last ("the last cup": {{"n": -1, "direction": "left"}}), -2 the second to last. direction is the side \
counted from: left (the default, also for "first" and "last" alone), right, top or bottom.
- count: how many to return, when the prompt gives a number ("a cup" or "one cup" is 1, "two cups" is 2) \
or picks one by position ("the person on the left" is the leftmost person: region left, count 1). Leave it \
out for "all", for plurals without a number ("people on the left" are all of them in the left part), \
when an ordinal or superlative already picks them, and in a relation's target ("holding an umbrella": \
any umbrella).
- relations: conditions that must all hold, each {{"kind": ..., "target": term}}. Kinds: "on" (the cup \
on the table), "in" (the apple in the bowl), "holding" (also carrying, with, has), "wearing", "next to" \
(also beside, by, near), "nearest" (the closest one: "the cup nearest to the laptop"), "left of", \
"right of", "above", "below" (also under, beneath), "behind", "in front of", and "between", which takes \
its second target in "second" ("between the laptop and the phone"). Negation: "negated": true keeps \
objects with no such target ("without a helmet" is wearing helmet, negated; "not on the table" is on \
table, negated; "with no bag" is holding bag, negated).
- exclude: some of this term's own objects to leave out ("all chairs except the red one": chair, plural, \
excluding chair with colors red).
- text: the words of the prompt the term was read from (on the top-level terms).

Leave out every field at its default (false, empty, null, "new") except include, which is always there. \
Use no other fields. When a previous \
query is given, read the prompt as a follow-up to it where it is one; otherwise ignore it.

JSON Schema of the answer: {schema}

Examples:
{examples}"""


def system_instruction() -> str:
    """The system instruction both providers send: the structure, the JSON Schema and :data:`EXAMPLES`."""
    shown = []
    for ex in EXAMPLES:
        shown.append(_user_message(ex.prompt, ex.previous) + "\nAnswer: " + json.dumps(ex.answer))
    return _INSTRUCTION.format(
        colors=", ".join(COLORS),
        regions=", ".join(REGIONS),
        schema=json.dumps(json_schema()),
        examples="\n\n".join(shown),
    )


def _user_message(prompt: str, previous: Mapping[str, Any] | None) -> str:
    head = f"Previous query: {json.dumps(previous)}\n" if previous is not None else ""
    return f"{head}Prompt: {json.dumps(prompt)}"


@dataclass(frozen=True)
class _Reply:
    text: str
    finish: str | None
    usage: dict[str, int]


class _Transient(Exception):
    """A failure worth one retry: HTTP 408, 429, 500, 502, 503, 504 or a dropped connection."""

    def __init__(self, message: str, *, status: int | None, wait: float | None, raw: str | None) -> None:
        super().__init__(message)
        self.message, self.status, self.wait, self.raw = message, status, wait, raw

    @classmethod
    def dropped(cls, exc: Exception) -> _Transient:
        """A connection that failed or dropped (no HTTP status, no reply)."""
        return cls(
            f"connection failed ({type(exc).__name__}: {_one_line(str(exc))})",
            status=None,
            wait=None,
            raw=None,
        )


class LLMParser:
    """Reads prompts into queries with a language model: Gemini, or any OpenAI-compatible chat API.

    Args:
        provider: ``"gemini"`` or ``"openai"`` (:data:`PROVIDERS`).
        model: the model name; default :data:`DEFAULT_MODELS` for the provider.
        api_key: default ``$GEMINI_API_KEY`` / ``$GOOGLE_API_KEY`` (gemini) or ``$OPENAI_API_KEY`` (openai;
            needed only by OpenAI's own endpoint).
        base_url: the endpoint; gemini: default ``$PROMPTSEG_GEMINI_BASE_URL``, else Google's; openai: the
            URL before ``/chat/completions`` (``http://localhost:11434/v1`` for Ollama), default
            ``$PROMPTSEG_LLM_BASE_URL``, else :data:`OPENAI_BASE_URL`.
        timeout: seconds one request may take (timeouts are not retried).
        retry_budget: seconds this parser may wait before retries in one :meth:`parse` call; a server that
            asks for a longer wait gets no retry.
        thinking_budget: Gemini's thinking tokens (0: off; None: the model's default). Not sent to
            OpenAI-compatible servers.

    Attributes:
        spec: ``"provider:model"``, as :meth:`from_spec` takes it.
        last_usage: tokens of the last :meth:`parse` call over all its requests: ``requests``,
            ``prompt_tokens``, ``output_tokens``, ``total_tokens`` (and ``thinking_tokens`` for Gemini).

    Raises:
        ConfigError: for an unknown provider, a bad option, or no API key where one is needed.
        MissingDependencyError: when ``google-genai`` (gemini) or ``httpx`` (openai) is not installed.

    Example:
        >>> ollama = "http://localhost:11434/v1"
        >>> with LLMParser("openai", model="llama3.1", base_url=ollama) as p:  # doctest: +SKIP
        ...     p.parse("people without a helmet").include[0].relations[0].negated
        True
    """

    def __init__(
        self,
        provider: str = "gemini",
        *,
        model: str | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 30.0,
        retry_budget: float = 5.0,
        thinking_budget: int | None = 0,
    ) -> None:
        if provider not in PROVIDERS:
            raise ConfigError(
                f"query parser provider must be one of {', '.join(PROVIDERS)}, got {provider!r} "
                "(the rule-based parser needs no provider)"
            )
        model = DEFAULT_MODELS[provider] if model is None else model
        if not isinstance(model, str) or not model.strip():
            raise ConfigError(
                f"model must be a model name such as {DEFAULT_MODELS[provider]!r}, got {model!r}"
            )
        if not _number(timeout) or timeout <= 0:
            raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if not _number(retry_budget) or retry_budget < 0:
            raise ConfigError(f"retry_budget must be a number of seconds >= 0, got {retry_budget!r}")
        if thinking_budget is not None and (
            not isinstance(thinking_budget, int) or isinstance(thinking_budget, bool) or thinking_budget < -1
        ):
            raise ConfigError(f"thinking_budget must be None, -1 (dynamic) or >= 0, got {thinking_budget!r}")
        self.provider = provider
        self.model = model.strip()
        self.spec = f"{provider}:{self.model}"
        self.retry_budget = float(retry_budget)
        self.last_usage: dict[str, int] = {}
        self._waited = 0.0  # seconds spent waiting for retries in the current parse() call
        self._system = system_instruction()
        self._chat: _GeminiChat | _OpenAIChat
        if provider == "gemini":
            self._chat = _GeminiChat(self.model, api_key, base_url, float(timeout), thinking_budget)
        else:
            self._chat = _OpenAIChat(self.model, api_key, base_url, float(timeout))
        self.base_url = self._chat.base_url

    @classmethod
    def from_spec(cls, spec: str, **options: Any) -> LLMParser:
        """A parser from ``"provider"`` or ``"provider:model"``, as the CLI's ``--parser`` takes it.

        Everything after the first colon is the model, so Ollama's ``"openai:llama3.1:8b"`` works.

        Args:
            spec: ``"gemini"``, ``"gemini:gemini-2.5-pro"``, ``"openai"``, ``"openai:gpt-4o-mini"``, ...
            options: the other keyword arguments of :class:`LLMParser`.

        Example:
            >>> LLMParser.from_spec("gemini:gemini-2.5-flash-lite").model   # doctest: +SKIP
            'gemini-2.5-flash-lite'
        """
        if not isinstance(spec, str):
            raise ConfigError(f"parser spec must be a string such as 'gemini:gemini-2.5-flash', got {spec!r}")
        provider, _, model = spec.strip().partition(":")
        if provider not in PROVIDERS:
            raise ConfigError(
                f"parser spec must be PROVIDER or PROVIDER:MODEL with PROVIDER one of "
                f"{', '.join(PROVIDERS)} (e.g. 'openai:gpt-4o-mini'), got {spec!r}"
            )
        if ":" in spec and not model.strip():
            raise ConfigError(f"parser spec {spec!r} names no model after the colon")
        return cls(provider, model=model.strip() or None, **options)

    def close(self) -> None:
        """Close the HTTP connections (the parser cannot be used afterwards)."""
        self._chat.close()

    def __enter__(self) -> LLMParser:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __call__(self, prompt: str, *, previous: Query | None = None) -> Query:
        """The same as :meth:`parse`, so a parser can stand wherever a parse function is expected."""
        return self.parse(prompt, previous=previous)

    def parse(self, prompt: str, *, previous: Query | None = None) -> Query:
        """Read a prompt into a validated query.

        Args:
            prompt: the words ("the third book from the left", "only the red one").
            previous: the conversation's last query, so follow-ups ("only the left one", "and the chairs
                too", "the other bottle") can be read against it.

        Returns:
            The query, with ``prompt`` set to the prompt as given.

        Raises:
            InputError: for an empty prompt.
            QueryError: when the model's reply is not a valid query twice in a row (the message names the
                provider and the validation error; ``raw_response`` holds the second reply).
            RemoteBackendError: when the API refuses the request (no retry for 4xx other than 408 and 429),
                times out, or fails twice; ``status`` and ``raw_response`` say what came back.
        """
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError(
                f"the query parser needs a non-empty text prompt such as 'the red cup', got {prompt!r}"
            )
        if previous is not None and not isinstance(previous, Query):
            raise InputError(f"previous must be a Query or None, got {type(previous).__name__}")
        before = None
        if previous is not None:
            before = previous.to_dict()
            before.pop("notes", None)
        turns = [("user", _user_message(prompt, before))]
        self.last_usage = {"requests": 0}
        self._waited = 0.0
        error = ""
        for attempt in (1, 2):
            reply = self._request(prompt, turns)
            try:
                return Query.from_dict(_json_object(reply.text, reply.finish), prompt=prompt)
            except (QueryError, ValueError) as exc:
                error = _one_line(str(exc))
            if attempt == 1:
                turns += [
                    ("model", reply.text or "(an empty reply)"),
                    (
                        "user",
                        f"That is not a valid query: {error}. "
                        "Answer again with only the corrected JSON object.",
                    ),
                ]
        raise QueryError(
            f"the {self.spec} query parser's reply to {prompt!r} is not a valid query after 2 attempts: "
            f"{error} (try another model or the rule-based parser; the reply is on .raw_response)",
            raw_response=reply.text[:_RAW_LIMIT],
        )

    def _request(self, prompt: str, turns: list[tuple[str, str]]) -> _Reply:
        """One conversation turn, retried once on a transient failure."""
        attempts = 0
        while True:  # bounded: the second failure raises
            attempts += 1
            try:
                reply = self._chat.send(self._system, turns)
            except _Transient as exc:
                where = f"{self._chat.label} ({self.model})"
                if attempts == 2:
                    raise RemoteBackendError(
                        f"{where} failed 2 attempts for {prompt!r}; last: {exc.message}",
                        status=exc.status,
                        raw_response=exc.raw,
                    ) from None
                wait = min(_DEFAULT_WAIT, self.retry_budget) if exc.wait is None else exc.wait
                if self._waited + wait > self.retry_budget:
                    raise RemoteBackendError(
                        f"{where} failed for {prompt!r} ({exc.message}); a retry needs a {wait:g} s wait, "
                        f"beyond retry_budget={self.retry_budget:g} s; try again later",
                        status=exc.status,
                        raw_response=exc.raw,
                    ) from None
                self._waited += wait
                time.sleep(wait)
                continue
            usage = self.last_usage
            usage["requests"] += 1
            for key, value in reply.usage.items():
                usage[key] = usage.get(key, 0) + value
            return reply


class _OpenAIChat:
    """``POST {base_url}/chat/completions`` with httpx, one attempt per :meth:`send`."""

    def __init__(self, model: str, api_key: str | None, base_url: str | None, timeout: float) -> None:
        http = require("httpx", extra="llm", purpose="the OpenAI-compatible query parser")
        env_key, env_url = _openai_env()
        self.base_url = (base_url or env_url or OPENAI_BASE_URL).rstrip("/")
        _check_url(self.base_url)
        key = (api_key or env_key or "").strip()
        host = urllib.parse.urlsplit(self.base_url).hostname or ""
        if not key and (host == "openai.com" or host.endswith(".openai.com")):
            raise ConfigError(
                f"the openai query parser needs an API key for {self.base_url}: pass api_key=... or set "
                "OPENAI_API_KEY; or point base_url (PROMPTSEG_LLM_BASE_URL) at a local OpenAI-compatible "
                "server such as http://localhost:11434/v1"
            )
        self.model = model
        self.label = f"OpenAI-compatible API at {self.base_url}"
        self._has_key = bool(key)
        headers = {"User-Agent": f"promptseg/{__version__}"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._http = http
        self._headers = headers
        self._timeout = timeout
        self._client: httpx.Client | None = None  # made on the first request: building one loads TLS roots

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def send(self, system: str, turns: list[tuple[str, str]]) -> _Reply:
        http = self._http
        messages = [{"role": "system", "content": system}]
        messages += [
            {"role": "assistant" if role == "model" else "user", "content": text} for role, text in turns
        ]
        body = {
            "model": self.model,
            "messages": messages,
            "temperature": 0,
            "response_format": {"type": "json_object"},
        }
        if self._client is None:
            self._client = http.Client(timeout=self._timeout, headers=self._headers)
        try:
            response = self._client.post(f"{self.base_url}/chat/completions", json=body)
        except http.TimeoutException:
            raise RemoteBackendError(
                f"{self.label} gave no answer within {self._timeout:g} s (timeout)"
            ) from None
        except http.TransportError as exc:
            raise _Transient.dropped(exc) from None
        raw = response.text[:_RAW_LIMIT]
        if response.status_code >= 400:
            last = f"HTTP {response.status_code}: {_error_message(response)}"
            if response.status_code in _RETRY_STATUSES:
                wait = _retry_after(response.headers.get("retry-after"))
                raise _Transient(last, status=response.status_code, wait=wait, raw=raw)
            hint = ""
            if response.status_code in (401, 403):
                hint = "; check the API key (OPENAI_API_KEY)" if self._has_key else "; set OPENAI_API_KEY"
            elif response.status_code == 404:
                hint = (
                    f"; check the model name {self.model!r} and that base_url ends before /chat/completions"
                )
            raise RemoteBackendError(
                f"{self.label} refused the request: {last}{hint}",
                status=response.status_code,
                raw_response=raw,
            )
        try:
            data = response.json()
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            finish = choice.get("finish_reason")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise RemoteBackendError(
                f"{self.label} answered with a body that is not a chat completion: {_one_line(raw[:200])}",
                status=response.status_code,
                raw_response=raw,
            ) from None
        usage = data.get("usage") if isinstance(data.get("usage"), Mapping) else {}
        counts = {
            "prompt_tokens": _int(usage.get("prompt_tokens")),
            "output_tokens": _int(usage.get("completion_tokens")),
            "total_tokens": _int(usage.get("total_tokens")),
        }
        return _Reply(text=str(text), finish=None if finish is None else str(finish), usage=counts)


class _GeminiChat:
    """``generateContent`` through google-genai, one attempt per :meth:`send` (the SDK's retries off)."""

    def __init__(
        self,
        model: str,
        api_key: str | None,
        base_url: str | None,
        timeout: float,
        thinking_budget: int | None,
    ) -> None:
        require("google.genai", extra="gemini", purpose="the Gemini query parser")
        from google import genai
        from google.genai import errors as genai_errors
        from google.genai import types as genai_types

        from promptseg.backends import gemini as backend

        settings = get_settings()
        key = (api_key or settings.gemini_api_key or "").strip()
        if not key:
            raise ConfigError(
                f"the gemini query parser needs a Gemini API key: pass api_key=... or set "
                f"{' or '.join(GEMINI_KEY_VARIABLES)} (create one at https://aistudio.google.com/apikey), "
                "or use the rule-based parser"
            )
        self.base_url = base_url or settings.gemini_base_url
        if self.base_url is not None:
            _check_url(self.base_url)
        self.model = model
        self.label = "Gemini API"
        self._timeout = timeout
        self._backend = backend
        self._errors = genai_errors
        self._types = genai_types
        try:
            self._client = genai.Client(
                api_key=key,
                vertexai=False,
                http_options=genai_types.HttpOptions(
                    base_url=self.base_url,
                    api_version="v1beta",
                    timeout=backend._milliseconds(timeout),
                    retry_options=genai_types.HttpRetryOptions(attempts=1),
                ),
            )
        except ValueError as exc:
            raise ConfigError(f"the gemini query parser: google-genai refused the settings: {exc}") from None
        self._thinking = (
            None if thinking_budget is None else genai_types.ThinkingConfig(thinking_budget=thinking_budget)
        )

    def close(self) -> None:
        self._client.close()

    def send(self, system: str, turns: list[tuple[str, str]]) -> _Reply:
        types, backend = self._types, self._backend
        contents = [types.Content(role=role, parts=[types.Part(text=text)]) for role, text in turns]
        config = types.GenerateContentConfig(
            system_instruction=system,
            response_mime_type="application/json",
            temperature=0,
            thinking_config=self._thinking,
        )
        try:
            response = self._client.models.generate_content(
                model=self.model, contents=contents, config=config
            )
        except self._errors.APIError as exc:
            last = f"HTTP {exc.code} {exc.status or ''}: {_one_line(exc.message)}".replace(" :", ":")
            raw = backend._dump(exc.details)
            if exc.code in _RETRY_STATUSES:
                raise _Transient(last, status=exc.code, wait=backend._server_wait(exc), raw=raw) from None
            raise RemoteBackendError(
                f"Gemini API refused the request: {last}{backend._hint(exc.code, self.model)}",
                status=exc.code,
                raw_response=raw,
            ) from None
        except backend._TIMEOUTS:
            raise RemoteBackendError(
                f"Gemini API gave no answer within {self._timeout:g} s (timeout)"
            ) from None
        except backend._TRANSPORT as exc:
            raise _Transient.dropped(exc) from None
        except ValueError as exc:  # a body that is not JSON, or google-genai's own checks (pydantic)
            raise RemoteBackendError(
                "google-genai could not read the Gemini API's reply "
                f"({type(exc).__name__}: {_one_line(str(exc))})",
                status=200,
                raw_response=str(exc)[:_RAW_LIMIT],
            ) from None
        candidate = response.candidates[0] if response.candidates else None
        content = candidate.content if candidate is not None else None
        text = "".join(p.text for p in (content.parts if content else None) or [] if p.text and not p.thought)
        finish = backend._enum_name(candidate.finish_reason) if candidate is not None else None
        if candidate is None and response.prompt_feedback and response.prompt_feedback.block_reason:
            finish = f"blocked: {backend._enum_name(response.prompt_feedback.block_reason)}"
        counts = backend._usage_counts(response.usage_metadata)
        return _Reply(text=text, finish=finish, usage=counts)


def _json_object(text: str, finish: str | None) -> Any:
    """The JSON object in a reply: bare, in a Markdown fence, or with prose around it."""
    stripped = text.strip()
    if not stripped:
        raise ValueError(f"the reply is empty (finish reason {finish})")
    try:
        return json.loads(stripped)
    except ValueError as exc:
        first_error = exc
    decoder = json.JSONDecoder()
    start = stripped.find("{")
    while start >= 0:  # the first "{" that opens a whole JSON object; prose may hold stray braces
        try:
            value, _ = decoder.raw_decode(stripped, start)
        except ValueError:
            start = stripped.find("{", start + 1)
            continue
        return value
    cut = " (cut off at the output token limit)" if finish in ("MAX_TOKENS", "length") else ""
    raise ValueError(f"the reply is not a JSON object{cut}: {first_error}") from None


def _openai_env() -> tuple[str | None, str | None]:
    """``$OPENAI_API_KEY`` and ``$PROMPTSEG_LLM_BASE_URL``, read now."""
    settings = get_settings()
    return settings.openai_api_key, settings.llm_base_url


def _check_url(url: str) -> None:
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"base_url must start with http:// or https://, got {url!r}")


def _error_message(response: httpx.Response) -> str:
    """The server's error message: OpenAI and llama.cpp ``{"error": {"message"}}``, Ollama ``{"error": str}``,
    older vLLM ``{"message"}``; else the start of the body."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, Mapping):
        error = data.get("error")
        if isinstance(error, Mapping) and error.get("message"):
            return _one_line(str(error["message"]))
        if isinstance(error, str) and error:
            return _one_line(error)
        if data.get("message"):
            return _one_line(str(data["message"]))
    return _one_line(response.text[:300]) or response.reason_phrase


def _one_line(text: str | None) -> str:
    line = " ".join((text or "").split())
    return line if len(line) <= 300 else line[:297] + "..."


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
