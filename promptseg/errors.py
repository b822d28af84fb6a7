"""Every exception promptseg raises on purpose, in one tree.

```
PromptsegError
 ├ ConfigError                 a setting or argument that cannot work
 │  ├ UnknownBackendError      a backend name not in the registry (with suggestions)
 │  └ InvalidWeightsSpecError  a weights spec without a known scheme
 ├ BackendUnavailable          a backend that cannot run on this machine as installed
 │  ├ MissingDependencyError   a Python package is missing (names the extra to install)
 │  └ WeightsNotFoundError     weights are not where they were looked for (says where and how to fix)
 ├ InputError                  bad input from the caller: an image, an array, a prompt
 │  └ ImageLoadError           an image file that cannot be decoded or is too large
 ├ QueryError                  a prompt that cannot be answered as asked
 ├ FormatError                 a file or object in an interchange format that does not parse
 └ RemoteBackendError          a remote API failed (keeps .status and .raw_response)
```

Warnings go through :class:`PromptsegWarning`. Every message says what was expected, what was
received and, where there is one, what to do next; the CLI prints it on one line.
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailable",
    "ConfigError",
    "FormatError",
    "ImageLoadError",
    "InputError",
    "InvalidWeightsSpecError",
    "MissingDependencyError",
    "PromptsegError",
    "PromptsegWarning",
    "QueryError",
    "RemoteBackendError",
    "UnknownBackendError",
    "WeightsNotFoundError",
]


class PromptsegError(Exception):
    """Base class of every error promptseg raises on purpose."""


class ConfigError(PromptsegError):
    """A setting or argument that cannot work, whatever the input."""


class UnknownBackendError(ConfigError, KeyError):
    """A backend name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class InvalidWeightsSpecError(ConfigError, ValueError):
    """A weights spec that is not ``file:``, ``hf:``, ``pkg:`` or a bare model name."""


class BackendUnavailable(PromptsegError):
    """A backend that cannot run on this machine as it is installed."""


class MissingDependencyError(BackendUnavailable, ImportError):
    """A Python package a backend needs is not installed."""


class WeightsNotFoundError(BackendUnavailable, FileNotFoundError):
    """Model weights are not where they were looked for."""


class InputError(PromptsegError, ValueError):
    """Bad input from the caller: an image, an array or a prompt."""


class ImageLoadError(InputError):
    """An image that cannot be read: missing, empty, truncated, corrupt, not an image, or too large."""


class QueryError(PromptsegError, ValueError):
    """A prompt that cannot be answered as it was asked.

    Attributes:
        raw_response: a language-model parser's reply that did not read as a query (else None).
    """

    def __init__(self, message: str, *, raw_response: str | None = None) -> None:
        super().__init__(message)
        self.raw_response = raw_response


class FormatError(PromptsegError, ValueError):
    """A file or object in an interchange format (COCO, Gemini, ...) that does not parse.

    Attributes:
        raw_response: the text that did not parse, when it came from a model's reply (else None).
    """

    def __init__(self, message: str, *, raw_response: str | None = None) -> None:
        super().__init__(message)
        self.raw_response = raw_response


class RemoteBackendError(PromptsegError):
    """A remote API call failed.

    Attributes:
        status: the HTTP status, or None when no response came back.
        raw_response: the body as received, for debugging.
    """

    def __init__(self, message: str, *, status: int | None = None, raw_response: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.raw_response = raw_response


class PromptsegWarning(UserWarning):
    """Base class of the warnings promptseg emits."""
