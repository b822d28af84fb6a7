"""The Gemini API backend (``google-genai``): conversational boxes and masks from Google's cloud.

Each prompt is one ``generateContent`` request carrying the image (downscaled so its longest side is
at most ``max_side``, as JPEG) and an instruction in the form Google documents for Gemini 2.5
segmentation: a JSON list of ``{"box_2d", "mask", "label"}`` items (``box_2d`` on a 0-1000 grid, the mask
a PNG of the box). The reply is read by :func:`promptseg.formats.gemini.from_gemini` into the frame of
the image as given, so the downscaling never shows in the result. Thinking is off by default
(``thinking_budget=0``), which Google recommends for detection and segmentation with 2.5 Flash.

Retries are ours alone (the SDK's are switched off with ``HttpRetryOptions(attempts=1)``): HTTP 408,
429, 500, 502, 503 and 504, timeouts and dropped connections are retried up to ``max_retries`` times,
with exponential backoff and full jitter, or after the wait the server asks for (a ``Retry-After``
header in seconds or as an HTTP date, or Google's ``RetryInfo.retryDelay``), all within
``total_budget`` seconds per :meth:`GeminiBackend.detect` call. Other errors (400, 401, 403, 404)
are not retried.

Gemini gives no confidence scores, so ``scores`` is None (promptseg's JSON then omits ``score``).
``meta`` records the model, attempts, latency, token counts and an estimated cost from
:data:`PRICES`.
"""

from __future__ import annotations

import importlib
import io
import json
import math
import random
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types
from PIL import Image

from promptseg._version import __version__
from promptseg.backends._common import retry_after as _parse_retry_after
from promptseg.errors import BackendUnavailable, ConfigError, FormatError, InputError, RemoteBackendError
from promptseg.formats.gemini import from_gemini
from promptseg.image import check_rgb
from promptseg.settings import GEMINI_KEY_VARIABLES, get_settings
from promptseg.types import Detections, ImageSize, UInt8Array

__all__ = ["PRICES", "PRICES_AS_OF", "GeminiBackend", "ModelPrice"]

DEFAULT_MODEL = "gemini-2.5-flash"
API_KEY_VARIABLES = GEMINI_KEY_VARIABLES


@dataclass(frozen=True)
class ModelPrice:
    """What one model costs, in USD per million tokens (paid tier, standard processing).

    Attributes:
        input: prompt tokens (text and image).
        output: output tokens, thinking tokens included.
        long_input: prompt tokens when the prompt is longer than ``long_context`` tokens (None: same).
        long_output: output tokens for such prompts (None: same).
        long_context: the prompt length, in tokens, above which the long prices apply.
    """

    input: float
    output: float
    long_input: float | None = None
    long_output: float | None = None
    long_context: int = 200_000


PRICES_AS_OF = "2026-03, https://ai.google.dev/gemini-api/docs/pricing"
"""When and where :data:`PRICES` were read; prices change, so costs are estimates."""

PRICES: Mapping[str, ModelPrice] = {
    "gemini-2.5-pro": ModelPrice(1.25, 10.00, long_input=2.50, long_output=15.00),
    "gemini-2.5-flash": ModelPrice(0.30, 2.50),
    "gemini-2.5-flash-lite": ModelPrice(0.10, 0.40),
    "gemini-2.0-flash": ModelPrice(0.10, 0.40),
    "gemini-2.0-flash-lite": ModelPrice(0.075, 0.30),
}
"""USD per million tokens by model name (exact names; another model gets ``cost_usd`` None)."""

_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_BACKOFF_CAP = 32.0  # seconds: the longest wait between attempts that backoff alone gives
_MIN_ATTEMPT = 0.05  # seconds: an attempt with less time than this left in the budget is not made
_RAW_LIMIT = 20_000  # characters of a reply kept on an error
_RETRY_DELAY = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")

_MASK_INSTRUCTION = (
    "Segment every object in the image that matches: {prompt}\n"
    "Answer with a JSON list holding one entry per object. Each entry has the 2D bounding box in the key "
    '"box_2d" as [ymin, xmin, ymax, xmax] on a 0-1000 scale, the segmentation mask in the key "mask", '
    'and a short descriptive text label in the key "label". If nothing matches, answer with [].'
)
_BOX_INSTRUCTION = (
    "Find every object in the image that matches: {prompt}\n"
    "Answer with a JSON list holding one entry per object. Each entry has the 2D bounding box in the key "
    '"box_2d" as [ymin, xmin, ymax, xmax] on a 0-1000 scale and a short descriptive text label in the '
    'key "label". Do not return masks. If nothing matches, answer with [].'
)


def _transport_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """Timeout and connection exception classes of the HTTP libraries google-genai may use."""
    timeouts: list[type[BaseException]] = [TimeoutError]
    transport: list[type[BaseException]] = [ConnectionError]
    for name in ("httpx2", "httpx"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        timeouts.append(module.TimeoutException)
        transport.append(module.TransportError)
    return tuple(timeouts), tuple(transport)


_TIMEOUTS, _TRANSPORT = _transport_errors()


@dataclass(frozen=True)
class _Call:
    """One prompt's successful request: the reply and what it took."""

    prompt: str
    text: str
    finish_reason: str | None
    model_version: str | None
    usage: dict[str, int]
    cost_usd: float | None
    attempts: int
    latency_s: float


class GeminiBackend:
    """Gemini 2.5 conversational segmentation through the Gemini API.

    Args:
        model: Gemini model name (segmentation needs a 2.5 model).
        api_key: the API key; default ``$GEMINI_API_KEY``, else ``$GOOGLE_API_KEY``.
        base_url: API endpoint (default ``$PROMPTSEG_GEMINI_BASE_URL``, else Google's).
        timeout: seconds one attempt may take.
        max_retries: retries after the first attempt, for transient failures only.
        total_budget: seconds one :meth:`detect` call may spend, waits and retries included.
        masks: ask for masks (False: boxes only, and no ``"masks"`` capability).
        max_side: the longest side, in pixels, of the image sent (larger images are downscaled).
        thinking_budget: Gemini's thinking tokens (0: off; None: the model's default; -1: dynamic).
        backoff: seconds of the first backoff step; the n-th retry waits a random time up to
            ``backoff * 2 ** (n - 1)`` (at most 32 s), unless the server says how long to wait.
        name: the registry name, recorded in ``meta``.

    Raises:
        BackendUnavailable: when no API key is given or set.
        ConfigError: for an option that cannot work.

    Example:
        >>> backend = GeminiBackend()                          # doctest: +SKIP
        >>> det = backend.detect(image, "the red cup")         # doctest: +SKIP
        >>> det.meta["cost_usd"], det.attributes["reason"][0]  # doctest: +SKIP
        (0.00047, "Gemini labelled this 'red cup'")
    """

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 60,
        max_retries: int = 4,
        total_budget: float = 120,
        masks: bool = True,
        max_side: int = 1024,
        thinking_budget: int | None = 0,
        backoff: float = 1.0,
        name: str = "gemini",
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise ConfigError(f"model must be a Gemini model name such as {DEFAULT_MODEL!r}, got {model!r}")
        for option, value in (("timeout", timeout), ("total_budget", total_budget)):
            if not _positive(value):
                raise ConfigError(f"{option} must be a positive number of seconds, got {value!r}")
        if not _non_negative(backoff):
            raise ConfigError(f"backoff must be a number of seconds >= 0, got {backoff!r}")
        if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
            raise ConfigError(f"max_retries must be a whole number >= 0, got {max_retries!r}")
        if not isinstance(max_side, int) or isinstance(max_side, bool) or max_side < 16:
            raise ConfigError(f"max_side must be a whole number of pixels >= 16, got {max_side!r}")
        if thinking_budget is not None and (not isinstance(thinking_budget, int) or thinking_budget < -1):
            raise ConfigError(f"thinking_budget must be None, -1 (dynamic) or >= 0, got {thinking_budget!r}")
        settings = get_settings()
        key = api_key or settings.gemini_api_key
        if not key or not key.strip():
            raise BackendUnavailable(
                f"backend {name!r} needs a Gemini API key: pass api_key=... or set "
                f"{' or '.join(API_KEY_VARIABLES)} (create one at https://aistudio.google.com/apikey)"
            )
        base_url = base_url or settings.gemini_base_url
        if base_url is not None and not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must start with http:// or https://, got {base_url!r}")

        self.name = name
        self.model = model.strip()
        self.masks = bool(masks)
        self.capabilities = frozenset({"text", "masks"} if self.masks else {"text"})
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.total_budget = float(total_budget)
        self.max_side = max_side
        self.thinking_budget = thinking_budget
        self.backoff = float(backoff)
        self.base_url = base_url
        self._random = random.Random()
        no_sdk_retries = genai_types.HttpRetryOptions(attempts=1)
        try:
            self._client = genai.Client(
                api_key=key.strip(),
                vertexai=False,
                http_options=genai_types.HttpOptions(
                    base_url=base_url,
                    api_version="v1beta",
                    timeout=_milliseconds(self.timeout),
                    retry_options=no_sdk_retries,
                ),
            )
        except ValueError as exc:
            raise ConfigError(f"backend {name!r}: google-genai refused the settings: {exc}") from None
        self._config = genai_types.GenerateContentConfig(
            response_mime_type="application/json",
            thinking_config=(
                None
                if thinking_budget is None
                else genai_types.ThinkingConfig(thinking_budget=thinking_budget)
            ),
        )

    def close(self) -> None:
        """Close the HTTP connections (the backend cannot be used afterwards)."""
        self._client.close()

    def detect(
        self, image: UInt8Array, prompts: str | Sequence[str], *, threshold: float | None = None
    ) -> Detections:
        """Ask Gemini for every instance matching each prompt, one request per prompt.

        Args:
            image: ``(H, W, 3)`` uint8 RGB.
            prompts: a prompt ("the red cup") or several; their matches are joined.
            threshold: accepted for the common contract and not applied: Gemini gives no scores.

        Returns:
            Detections in the pixel frame of ``image``: ``scores`` None, masks (unless ``masks=False``,
            or Gemini sent none), ``attributes["concept"]`` (the prompt each instance answers) and
            ``attributes["reason"]`` ("Gemini labelled this 'red cup'"). ``meta`` holds ``model``,
            ``attempts``, ``latency_s``, ``usage`` (prompt, output, thinking and total tokens),
            ``cost_usd`` (None for a model not in :data:`PRICES`), ``sent_size`` (the ``(H, W)``
            uploaded), ``calls`` (the same per prompt) and ``notes``.

        Raises:
            InputError: for a bad image or an empty prompt.
            RemoteBackendError: when the API refuses the request (400, 401, 403, 404: no retry), when
                retries or the time budget run out (saying how many attempts and the last failure), or
                when the reply cannot be read (``raw_response`` holds its text).
        """
        image = check_rgb(image, purpose=f"backend {self.name!r}")
        texts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not texts or any(not isinstance(t, str) or not t.strip() for t in texts):
            raise InputError(
                f"backend {self.name!r} needs non-empty text prompts such as 'the red cup', got {prompts!r}"
            )
        if threshold is not None and not (_non_negative(threshold) and threshold <= 1):
            raise InputError(f"threshold must lie in [0, 1], got {threshold!r}")
        start = time.monotonic()
        deadline = start + self.total_budget
        h, w = image.shape[:2]
        jpeg, sent_size = _encode_jpeg(image, self.max_side)
        image_part = genai_types.Part.from_bytes(data=jpeg, mime_type="image/jpeg")
        calls: list[_Call] = []
        parts: list[Detections] = []
        for text in texts:
            calls.append(self._call(image_part, text.strip(), deadline))
            parts.append(self._read(calls[-1], (h, w)))

        notes = [note for p in parts for note in p.meta.get("notes", [])]
        if threshold is not None:
            notes.append("threshold not applied: Gemini gives no scores")
        masks_missing: list[int] = []
        offset = 0
        for k, part in enumerate(parts):
            missing = list(part.meta.get("masks_missing", []))
            if len(part) and part.masks is None and any(p.masks is not None for p in parts if len(p)):
                # another prompt's answer has masks: this one's instances get empty ones, said so
                parts[k] = part.replace(masks=np.zeros((len(part), h, w), bool))
                missing = list(range(len(part)))
            masks_missing.extend(offset + i for i in missing)
            offset += len(part)
        meta: dict[str, Any] = {
            "promptseg_version": __version__,
            "backend": self.name,
            "model": self.model,
            "prompt": texts[0] if len(texts) == 1 else texts,
            "sent_size": list(sent_size),
            "attempts": sum(c.attempts for c in calls),
            "latency_s": round(time.monotonic() - start, 4),
            "usage": {k: sum(c.usage[k] for c in calls) for k in calls[0].usage},
            "cost_usd": None
            if any(c.cost_usd is None for c in calls)
            else sum(c.cost_usd or 0.0 for c in calls),
            "prices_as_of": PRICES_AS_OF,
            "calls": [_call_meta(c) for c in calls],
            "notes": notes,
        }
        if any(p.meta.get("truncated") for p in parts):
            meta["truncated"] = True
        if masks_missing and self.masks:
            meta["masks_missing"] = masks_missing
        joined = Detections.concat(parts) if len(parts) > 1 else parts[0]
        return joined.replace(meta=meta)

    def _read(self, call: _Call, image_size: ImageSize) -> Detections:
        """One reply as Detections in the caller's frame, with ``concept`` and ``reason`` attributes."""
        try:
            det = from_gemini(call.text, image_size)
        except FormatError as exc:
            cut = " (cut off by the output token limit)" if call.finish_reason == "MAX_TOKENS" else ""
            raise RemoteBackendError(
                f"Gemini's reply to {call.prompt!r}{cut} is not a segmentation list: {exc}",
                status=200,
                raw_response=call.text[:_RAW_LIMIT],
            ) from exc
        meta = dict(det.meta)
        if call.finish_reason == "MAX_TOKENS" and not meta.get("truncated"):
            meta["truncated"] = True
            meta.setdefault("notes", []).append("Gemini stopped at its output token limit")
        if not self.masks:
            det = det.replace(masks=None)
        elif det.masks is None and len(det):
            meta.setdefault("notes", []).append(f"Gemini sent boxes without masks for {call.prompt!r}")
        h, w = image_size
        if not len(det):
            det = Detections.empty((h, w), with_masks=self.masks).replace(scores=None)
        reasons = [f"Gemini labelled this {label!r}" for label in det.labels.tolist()]
        return det.replace(
            attributes={
                "concept": np.full(len(det), call.prompt),
                "reason": np.array(reasons, np.str_).reshape(len(det)),
            },
            meta=meta,
        )

    def _call(self, image_part: genai_types.Part, prompt: str, deadline: float) -> _Call:
        """One prompt's request, retried on transient failures until it succeeds or time runs out."""
        template = _MASK_INSTRUCTION if self.masks else _BOX_INSTRUCTION
        contents: list[Any] = [image_part, template.format(prompt=prompt)]
        start = time.monotonic()
        attempts = 0
        last_status: int | None = None
        while True:  # bounded: every turn makes an attempt, and attempts <= max_retries + 1
            remaining = deadline - time.monotonic()
            if remaining < _MIN_ATTEMPT:
                raise self._budget_error(prompt, attempts, start, "", last_status)
            attempts += 1
            per_try = min(self.timeout, remaining)
            config = self._config.model_copy(
                update={
                    "http_options": genai_types.HttpOptions(
                        timeout=_milliseconds(per_try), retry_options=genai_types.HttpRetryOptions(attempts=1)
                    )
                }
            )
            wait: float | None = None
            try:
                response = self._client.models.generate_content(
                    model=self.model, contents=contents, config=config
                )
            except genai_errors.APIError as exc:
                last_status = exc.code
                last = f"HTTP {exc.code} {exc.status or ''}: {_one_line(exc.message)}".replace(" :", ":")
                if exc.code not in _RETRY_STATUSES:
                    raise RemoteBackendError(
                        f"Gemini API refused the request for {prompt!r}: {last}{_hint(exc.code, self.model)}",
                        status=exc.code,
                        raw_response=_dump(exc.details),
                    ) from None
                wait = _server_wait(exc)
            except json.JSONDecodeError as exc:
                raise RemoteBackendError(
                    f"Gemini API answered {prompt!r} with a body that is not JSON ({exc.msg})",
                    status=200,
                    raw_response=exc.doc[:_RAW_LIMIT],
                ) from None
            except ValueError as exc:  # google-genai's own checks of the request or the reply (pydantic)
                raise RemoteBackendError(
                    f"google-genai could not handle the request or reply for {prompt!r} "
                    f"({type(exc).__name__}: {_one_line(str(exc))})",
                    raw_response=str(exc)[:_RAW_LIMIT],
                ) from None
            except _TIMEOUTS:
                last_status = None
                last = f"no answer within {per_try:.3g} s (timeout)"
            except _TRANSPORT as exc:
                last_status = None
                last = f"connection failed ({type(exc).__name__}: {_one_line(str(exc))})"
            else:
                return self._reply(response, prompt, attempts, time.monotonic() - start)

            if attempts > self.max_retries:
                raise RemoteBackendError(
                    f"Gemini API failed {attempts} attempt{'s' * (attempts > 1)} for {prompt!r} "
                    f"(max_retries={self.max_retries}); last: {last}",
                    status=last_status,
                )
            if wait is None:
                wait = self._random.uniform(0, min(_BACKOFF_CAP, self.backoff * 2 ** (attempts - 1)))
            if time.monotonic() + wait + _MIN_ATTEMPT > deadline:
                raise self._budget_error(
                    prompt, attempts, start, f"; last: {last}, next try in {wait:.3g} s", last_status
                )
            time.sleep(wait)

    def _budget_error(
        self, prompt: str, attempts: int, start: float, detail: str, status: int | None
    ) -> RemoteBackendError:
        return RemoteBackendError(
            f"Gemini API gave up on {prompt!r} after {attempts} attempt{'s' * (attempts != 1)} in "
            f"{time.monotonic() - start:.3g} s: total_budget={self.total_budget:g} s is spent{detail}",
            status=status,
        )

    def _reply(
        self, response: genai_types.GenerateContentResponse, prompt: str, attempts: int, latency: float
    ) -> _Call:
        candidate = response.candidates[0] if response.candidates else None
        finish = _enum_name(candidate.finish_reason) if candidate is not None else None
        parts = candidate.content.parts if candidate is not None and candidate.content is not None else None
        text = "".join(p.text for p in parts or [] if p.text and not p.thought)
        if not text.strip():
            blocked = response.prompt_feedback.block_reason if response.prompt_feedback else None
            why = f"block reason {_enum_name(blocked)}" if blocked else f"finish reason {finish}"
            raise RemoteBackendError(
                f"Gemini sent no text for {prompt!r} ({why})",
                status=200,
                raw_response=response.model_dump_json(exclude_none=True)[:_RAW_LIMIT],
            )
        counts = _usage_counts(response.usage_metadata)
        return _Call(
            prompt=prompt,
            text=text,
            finish_reason=finish,
            model_version=response.model_version,
            usage=counts,
            cost_usd=_cost_usd(self.model, counts),
            attempts=attempts,
            latency_s=latency,
        )


def _positive(value: Any) -> bool:
    return (
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )


def _non_negative(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def _milliseconds(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _encode_jpeg(image: UInt8Array, max_side: int) -> tuple[bytes, ImageSize]:
    """The image as JPEG bytes, downscaled so its longest side is at most ``max_side``; and its (H, W)."""
    h, w = image.shape[:2]
    pil = Image.fromarray(image)
    if max(h, w) > max_side:
        scale = max_side / max(h, w)
        pil = pil.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=90)
    return buf.getvalue(), (pil.height, pil.width)


def _cost_usd(model: str, usage: Mapping[str, int]) -> float | None:
    price = PRICES.get(model.removeprefix("models/"))
    if price is None:
        return None
    long = usage["prompt_tokens"] > price.long_context
    input_price = price.long_input if long and price.long_input is not None else price.input
    output_price = price.long_output if long and price.long_output is not None else price.output
    output = usage["output_tokens"] + usage["thinking_tokens"]
    return (usage["prompt_tokens"] * input_price + output * output_price) / 1e6


def _call_meta(call: _Call) -> dict[str, Any]:
    return {
        "prompt": call.prompt,
        "attempts": call.attempts,
        "latency_s": round(call.latency_s, 4),
        "finish_reason": call.finish_reason,
        "model_version": call.model_version,
        "usage": dict(call.usage),
        "cost_usd": call.cost_usd,
    }


def _server_wait(exc: genai_errors.APIError) -> float | None:
    """Seconds the server asked us to wait: ``Retry-After`` (seconds or HTTP date), else ``RetryInfo``."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    value = headers.get("retry-after") if headers is not None else None
    if isinstance(value, str):
        wait = _parse_retry_after(value)
        if wait is not None:
            return wait
    error = exc.details.get("error") if isinstance(exc.details, Mapping) else None
    for detail in (error or {}).get("details") or []:
        if isinstance(detail, Mapping) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            match = _RETRY_DELAY.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


def _hint(status: int, model: str) -> str:
    if status in (401, 403):
        return f"; check the API key ({' or '.join(API_KEY_VARIABLES)})"
    if status == 404:
        return f"; check the model name {model!r}"
    return ""


def _one_line(text: str | None) -> str:
    line = " ".join((text or "").split())
    return line if len(line) <= 300 else line[:297] + "..."


def _dump(value: Any) -> str:
    try:
        return json.dumps(value)[:_RAW_LIMIT]
    except (TypeError, ValueError):
        return repr(value)[:_RAW_LIMIT]


def _usage_counts(usage: Any) -> dict[str, int]:
    """Token counts of a reply's ``usage_metadata`` (zeros for what it leaves out)."""
    return {
        "prompt_tokens": (usage.prompt_token_count if usage else None) or 0,
        "output_tokens": (usage.candidates_token_count if usage else None) or 0,
        "thinking_tokens": (usage.thoughts_token_count if usage else None) or 0,
        "total_tokens": (usage.total_token_count if usage else None) or 0,
    }


def _enum_name(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "name", value))
