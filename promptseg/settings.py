"""Settings read from the environment, at call time (never at import).

| variable | meaning | default |
|---|---|---|
| ``PROMPTSEG_MODELS`` | folder of named model weights (``picodet-s-coco/``, ``u2net/``, ...) | unset |
| ``PROMPTSEG_CACHE_DIR`` | where downloaded weights are kept | ``~/.cache/promptseg`` |
| ``PROMPTSEG_OFFLINE`` / ``HF_HUB_OFFLINE`` | ``1`` forbids every download | ``0`` |
| ``PROMPTSEG_MAX_PIXELS`` | largest image accepted, in pixels (decompression-bomb guard) | 100 000 000 |
| ``GEMINI_API_KEY`` / ``GOOGLE_API_KEY`` | the Gemini backend's API key (the first one set) | unset |
| ``PROMPTSEG_GEMINI_BASE_URL`` | another endpoint for the Gemini API (a proxy, a local server) | Google's |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from promptseg.errors import ConfigError

__all__ = ["DEFAULT_MAX_PIXELS", "GEMINI_KEY_VARIABLES", "Settings", "get_settings"]

DEFAULT_MAX_PIXELS = 100_000_000
GEMINI_KEY_VARIABLES = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    """A snapshot of the environment that promptseg reads."""

    models_dir: Path | None
    cache_dir: Path
    offline: bool
    max_pixels: int
    gemini_api_key: str | None = None
    gemini_base_url: str | None = None
    openai_api_key: str | None = None
    llm_base_url: str | None = None


def get_settings() -> Settings:
    """Read the environment now.

    Raises:
        ConfigError: when a variable is set to a value that cannot be used.
    """
    env = os.environ
    models = env.get("PROMPTSEG_MODELS", "").strip()
    cache = env.get("PROMPTSEG_CACHE_DIR", "").strip()
    offline = any(env.get(k, "").strip().lower() in _TRUE for k in ("PROMPTSEG_OFFLINE", "HF_HUB_OFFLINE"))
    raw_max = env.get("PROMPTSEG_MAX_PIXELS", "").strip()
    try:
        max_pixels = int(raw_max) if raw_max else DEFAULT_MAX_PIXELS
    except ValueError:
        raise ConfigError(f"PROMPTSEG_MAX_PIXELS must be a whole number of pixels, got {raw_max!r}") from None
    if max_pixels <= 0:
        raise ConfigError(f"PROMPTSEG_MAX_PIXELS must be positive, got {max_pixels}")
    return Settings(
        models_dir=Path(models).expanduser() if models else None,
        cache_dir=Path(cache).expanduser() if cache else Path.home() / ".cache" / "promptseg",
        offline=offline,
        max_pixels=max_pixels,
        gemini_api_key=next((env[k].strip() for k in GEMINI_KEY_VARIABLES if env.get(k, "").strip()), None),
        gemini_base_url=env.get("PROMPTSEG_GEMINI_BASE_URL", "").strip() or None,
        openai_api_key=env.get("OPENAI_API_KEY", "").strip() or None,
        llm_base_url=env.get("PROMPTSEG_LLM_BASE_URL", "").strip() or None,
    )
