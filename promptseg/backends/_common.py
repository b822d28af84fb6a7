"""Small checks every backend shares, with no heavy imports (a backend of one extra must not need
another extra's packages)."""

from __future__ import annotations

import hashlib

from promptseg.errors import ConfigError
from promptseg.types import UInt8Array

__all__ = ["check_threshold", "image_key"]


def image_key(image: UInt8Array) -> bytes:
    """A digest of the pixels and shape: cached image features are never reused for another image."""
    return hashlib.blake2b(image.tobytes(), digest_size=16).digest() + repr(image.shape).encode()


def check_threshold(value: float, name: str) -> None:
    """Refuse a threshold that is not a number in [0, 1], naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"{name} must be a number in [0, 1], got {value!r}")
