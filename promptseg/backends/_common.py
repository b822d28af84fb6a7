"""Small checks every backend shares, with no heavy imports (a backend of one extra must not need
another extra's packages)."""

from __future__ import annotations

import datetime
import email.utils
import hashlib
import math
from collections.abc import Sequence

from promptseg.errors import ConfigError, InputError
from promptseg.types import UInt8Array

__all__ = ["check_threshold", "image_key", "prompt_texts", "retry_after"]


def image_key(image: UInt8Array) -> bytes:
    """A digest of the pixels and shape: cached image features are never reused for another image."""
    return hashlib.blake2b(image.tobytes(), digest_size=16).digest() + repr(image.shape).encode()


def check_threshold(value: float, name: str) -> None:
    """Refuse a threshold that is not a number in [0, 1], naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"{name} must be a number in [0, 1], got {value!r}")


def prompt_texts(prompts: str | Sequence[str]) -> list[str]:
    """One prompt or several as a non-empty list of strings; a one-line error otherwise."""
    texts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not texts:
        raise InputError("no prompt given: pass a prompt such as 'people' or 'the bottle'")
    bad = [t for t in texts if not isinstance(t, str)]
    if bad:
        raise InputError(f"prompts must be strings, got {type(bad[0]).__name__} ({bad[0]!r:.60})")
    return texts


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP date); None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.timezone.utc)
        seconds = (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None
