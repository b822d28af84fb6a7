"""The query engine's entry points: :func:`ask` for one prompt, :class:`Conversation` for follow-ups.

Both parse the prompt (the rule-based :func:`~promptseg.query.parser.parse` by default, or a language
model: ``parser="gemini"``), detect each concept once on the image, and resolve the modifiers
(:mod:`promptseg.query.resolve`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol

from promptseg.backends.base import Backend, CachesImage
from promptseg.backends.registry import DEFAULT_BACKEND, load_backend
from promptseg.errors import ConfigError, InputError
from promptseg.image import load_image
from promptseg.query.model import Query
from promptseg.query.parser import parse
from promptseg.query.resolve import Answer, Resolver
from promptseg.types import Detections, UInt8Array

__all__ = ["Conversation", "Parser", "ask", "load_parser"]


class Parser(Protocol):
    """Anything that reads a prompt into a :class:`Query`, given the previous one for follow-ups."""

    def __call__(self, prompt: str, *, previous: Query | None = None) -> Query: ...


def _rules(prompt: str, *, previous: Query | None = None) -> Query:
    return parse(prompt)


def load_parser(spec: str | Parser | None = None) -> Parser:
    """A parser from a spec: ``None`` or ``"rules"`` (the default, offline), ``"gemini[:MODEL]"`` or
    ``"openai[:MODEL]"`` (a language model; see :class:`~promptseg.query.llm.LLMParser`), or a parser.
    """
    if spec is None or spec == "rules":
        return _rules
    if callable(spec):
        return spec
    if isinstance(spec, str) and spec.split(":", 1)[0] in ("gemini", "openai"):
        from promptseg.query.llm import LLMParser

        return LLMParser.from_spec(spec)
    raise ConfigError(f"unknown parser {spec!r}: use 'rules', 'gemini[:MODEL]' or 'openai[:MODEL]'")


def _prompt_text(prompt: str | Sequence[str]) -> str:
    if isinstance(prompt, str):
        return prompt
    if not prompt or not all(isinstance(p, str) for p in prompt):
        raise InputError("prompt: expected a string or a non-empty list of strings")
    return " and ".join(prompt)


class Conversation:
    """Queries about one image with one backend; follow-ups refer to the last answer.

    Each concept is detected once (at the threshold given here); later prompts that name it again,
    and follow-ups such as "only the left one", "and the chairs too", "not that one" or "the other
    bottle", cost only the parsing and the resolving.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        backend: a loaded backend with the ``text`` capability.
        threshold: the backend's minimum score (None: its default).
        parser: see :func:`load_parser`.
        prepared: the backend already holds this image's features (``set_image`` was called).
        **detect_options: extra keyword arguments of the backend's ``detect``.
    """

    def __init__(
        self,
        image: UInt8Array,
        backend: Backend,
        *,
        threshold: float | None = None,
        parser: str | Parser | None = None,
        prepared: bool = False,
        **detect_options: Any,
    ) -> None:
        if "text" not in backend.capabilities:
            raise ConfigError(f"backend {backend.name!r} takes no text prompts, so it cannot answer queries")
        self.image = image
        self.backend = backend
        self.threshold = threshold
        self.parser = load_parser(parser)
        self._options = detect_options
        self._prepared = prepared
        self.resolver = Resolver(image, self._detect)

    @property
    def last(self) -> Answer | None:
        """The latest answer, or None before the first."""
        return self.resolver.last

    def ask(self, prompt: str | Sequence[str] | Query) -> Detections:
        """Answer a prompt (or an already parsed query); see :func:`ask`."""
        return self.answer(prompt).detections

    def answer(self, prompt: str | Sequence[str] | Query) -> Answer:
        """Like :meth:`ask`, with the parsed query and the pool numbers of the chosen instances."""
        if isinstance(prompt, Query):
            query = prompt
        else:
            previous = self.last.query if self.last is not None else None
            query = self.parser(_prompt_text(prompt), previous=previous)
        return self.resolver.resolve(query)

    def forget(self) -> None:
        """Drop the last answer (the detections stay cached)."""
        self.resolver.last = None

    def _detect(self, concept: str) -> Detections:
        if not self._prepared and isinstance(self.backend, CachesImage):
            self.backend.set_image(self.image)
        self._prepared = True
        return self.backend.detect(self.image, concept, threshold=self.threshold, **self._options)


def ask(
    image: str | os.PathLike[str] | bytes | UInt8Array,
    prompt: str | Sequence[str] | Query,
    *,
    backend: str | Backend = DEFAULT_BACKEND,
    threshold: float | None = None,
    parser: str | Parser | None = None,
    max_pixels: int | None = None,
    **backend_options: Any,
) -> Detections:
    """Answer a compositional prompt: "the third cup from the left", "people without a helmet".

    Args:
        image: a file path, encoded bytes, or an ``(H, W, 3)`` uint8 RGB array.
        prompt: plain words, several prompts (their union), or a parsed :class:`Query`.
        backend: a registered backend name or a loaded backend.
        threshold: the backend's minimum score (None: its default).
        parser: ``"rules"`` (default), ``"gemini[:MODEL]"``, ``"openai[:MODEL]"`` or a parser.
        max_pixels: refuse larger images (None: ``$PROMPTSEG_MAX_PIXELS`` or 100 MP).
        **backend_options: passed to :func:`~promptseg.backends.load_backend` when ``backend`` is a name.

    Returns:
        The chosen instances, each with ``attributes["explanation"]`` (why it was chosen), ``color``,
        ``size`` and ``position``; ``meta["query"]`` is the parsed query, ``meta["explanation"]`` one
        sentence about the whole answer (why it is empty, when it is), ``meta["notes"]`` what could not
        be used, ``meta["timing"]`` the detection and resolving times.

    Example:
        >>> det = ask("cafeteria.jpg", "the person on the left")      # doctest: +SKIP
        >>> det.attributes["explanation"][0]                          # doctest: +SKIP
        'person #1: leftmost of 7'
    """
    pixels = load_image(image, max_pixels=max_pixels)
    model = load_backend(backend, **backend_options) if isinstance(backend, str) else backend
    return Conversation(pixels, model, threshold=threshold, parser=parser).ask(prompt)
