"""promptseg as a Label Studio ML backend: ``GET /health``, ``POST /setup``, ``POST /predict``.

The protocol is Label Studio's own (``label_studio/ml/api_connector.py``): ``/setup`` gets ``{"project",
"schema", "hostname", "access_token", "extra_params"}`` and answers ``{"model_version"}`` within Label
Studio's 3 s (so the model is loaded on the first ``/predict``, not here); ``/predict`` gets ``{"tasks":
[task], "label_config", "project", "params"}`` and answers ``{"results": [{"result", "score",
"model_version"}]}``, one per task, in order. Errors are ``{"error": one line, "type"}``: Label Studio
shows a backend's ``error`` field to the user.
"""

from __future__ import annotations

import os
import threading
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urljoin, urlsplit

import numpy as np

from promptseg.datasets.labelstudio import region_results
from promptseg.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from fastapi import FastAPI

__all__ = ["create_ml_backend_app", "run_ml_backend"]


@dataclass(frozen=True)
class _Config:
    """What a Label Studio labeling config asks for: tag names, the image's data key and label names."""

    image_key: str
    to_name: str
    box_name: str | None
    mask_name: str | None
    mask_kind: str | None
    labels: tuple[str, ...]


def _parse_config(xml: str) -> _Config:

    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise InputError(f"label_config is not valid XML: {exc}") from None
    image = next((e for e in root.iter() if e.tag == "Image"), None)
    if image is None or not image.get("name") or not str(image.get("value", "")).startswith("$"):
        raise InputError('label_config has no <Image name=... value="$key"/> tag')
    to_name = str(image.get("name"))
    box_name = mask_name = mask_kind = None
    labels: dict[str, None] = {}
    for tag in root.iter():
        if tag.get("toName") != to_name:
            continue
        if tag.tag == "RectangleLabels" and box_name is None:
            box_name = tag.get("name")
        elif tag.tag in ("BrushLabels", "PolygonLabels") and mask_name is None:
            mask_name, mask_kind = tag.get("name"), "brush" if tag.tag == "BrushLabels" else "polygon"
        else:
            continue
        labels.update((str(lab.get("value")), None) for lab in tag.iter("Label") if lab.get("value"))
    if box_name is None and mask_name is None:
        raise InputError(f"label_config has no RectangleLabels, BrushLabels or PolygonLabels for {to_name!r}")
    if not labels:
        raise InputError("label_config lists no <Label value=...> names")
    return _Config(str(image.get("value"))[1:], to_name, box_name, mask_name, mask_kind, tuple(labels))


class _ImageSource:
    """Reads ``data.image`` values: a path, ``/data/local-files/?d=`` under a root, or a Label Studio URL."""

    def __init__(self, image_root: str | os.PathLike[str] | None, url: str | None, token: str | None) -> None:
        self.root = None if image_root is None else Path(image_root).resolve()
        self.url, self.token = url, token

    def read(self, ref: str) -> Any:
        from promptseg.image import load_image

        parts = urlsplit(ref)
        if parts.path.endswith("/data/local-files/") and self.root is not None:
            rel = (parse_qs(parts.query).get("d") or [""])[0]
            return load_image(self._under_root(self.root / rel, ref))
        if parts.scheme in ("http", "https") or ref.startswith(("/data/", "/storage-data/")):
            return load_image(self._fetch(ref))
        if parts.scheme == "" and os.path.isabs(ref):
            path = Path(ref)
            return load_image(path if self.root is None else self._under_root(path, ref))
        raise InputError(
            f"cannot read image {ref!r:.120}: expected an absolute path, a /data/local-files/?d= URL "
            "(with image_root) or a Label Studio URL"
        )

    def _under_root(self, path: Path, ref: str) -> Path:
        assert self.root is not None
        resolved = path.resolve()
        if self.root != resolved and self.root not in resolved.parents:
            raise InputError(f"image {ref!r:.120} is outside the image root {self.root}")
        return resolved

    def _fetch(self, ref: str) -> bytes:
        import httpx

        if self.url is None and urlsplit(ref).scheme == "":
            raise InputError(
                f"image {ref!r:.120} is on Label Studio, whose URL is not known; pass label_studio_url"
            )
        full = urljoin((self.url or "").rstrip("/") + "/", ref)
        same_site = self.url is not None and urlsplit(full).netloc == urlsplit(self.url).netloc
        headers = {"Authorization": f"Token {self.token}"} if self.token and same_site else {}
        try:
            reply = httpx.get(full, headers=headers, timeout=30.0, follow_redirects=True)
            reply.raise_for_status()
        except httpx.HTTPError as exc:
            raise InputError(f"cannot fetch image {full}: {exc}") from None
        return reply.content


def create_ml_backend_app(
    *,
    backend: str = "offline",
    prompt: str | None = None,
    image_root: str | os.PathLike[str] | None = None,
    label_studio_url: str | None = None,
    api_key: str | None = None,
    backend_options: Mapping[str, Any] | None = None,
    threshold: float | None = None,
) -> FastAPI:
    """A Label Studio ML backend serving promptseg pre-annotations (protocol in the module docs).

    Each task's ``data[<the Image tag's $key>]`` is read (see below) and segmented. Without ``prompt``
    every label of the config's ``RectangleLabels`` / mask tag is asked for in turn and its objects get
    that label; with ``prompt`` the prompt is asked once and detections keep the backend's labels
    (matched to the config's names case-insensitively). Each object is a ``rectanglelabels`` result and,
    when the config has a mask tag, a ``brushlabels`` (RLE) or ``polygonlabels`` result.

    Args:
        backend: a registered backend name, loaded on the first prediction.
        prompt: the words to ask for; None: the config's label names.
        image_root: where ``/data/local-files/?d=<rel>`` URLs and absolute paths are read from (a path
            outside it is refused); None: absolute paths are read as they are.
        label_studio_url: Label Studio's base URL for ``/data/upload/...`` and other Label Studio
            URLs; None: the ``hostname`` Label Studio sends to ``/setup``.
        api_key: the token for those downloads; None: the ``access_token`` sent to ``/setup``.
        backend_options: passed to :func:`~promptseg.backends.load_backend`.
        threshold: minimum score (None: the backend's default).

    Example:
        >>> import uvicorn                                                          # doctest: +SKIP
        >>> uvicorn.run(create_ml_backend_app(image_root="photos"), port=9090)     # doctest: +SKIP
    """
    from fastapi import FastAPI, HTTPException
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from promptseg._http import http_error, validation_error
    from promptseg._segment import segment
    from promptseg._version import __version__
    from promptseg.backends.registry import get_spec, load_backend
    from promptseg.errors import PromptsegError

    get_spec(backend)  # an unknown name fails now, with suggestions
    options = dict(backend_options or {})
    version = f"promptseg-{__version__}:{backend}"
    source = _ImageSource(image_root, label_studio_url, api_key)
    lock = threading.Lock()
    loaded: list[Any] = []
    app = FastAPI(title="promptseg Label Studio ML backend", version=__version__)
    # errors as {"error": one line, "type"}: Label Studio shows a backend's `error` field to the user
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "UP", "model_class": "promptseg", "backend": backend, "model_version": version}

    @app.post("/setup")
    def setup(body: dict[str, Any] | None = None) -> dict[str, Any]:
        body = body or {}
        if label_studio_url is None and isinstance(body.get("hostname"), str):
            source.url = body["hostname"]
        if api_key is None and isinstance(body.get("access_token"), str):
            source.token = body["access_token"]
        return {"model_version": version}

    @app.post("/predict")
    def predict(body: dict[str, Any]) -> dict[str, Any]:
        tasks, xml = body.get("tasks"), body.get("label_config")
        if not isinstance(tasks, list) or not isinstance(xml, str):
            raise HTTPException(422, "expected {'tasks': [...], 'label_config': '<View>...'}")
        try:
            config = _parse_config(xml)
            results = []
            for task in tasks:
                data = task.get("data") if isinstance(task, Mapping) else None
                ref = data.get(config.image_key) if isinstance(data, Mapping) else None
                if not isinstance(ref, str):
                    raise InputError(
                        f"task {task.get('id') if isinstance(task, Mapping) else task!r}: "
                        f"no data.{config.image_key}"
                    )
                pixels = source.read(ref)
                with lock:
                    if not loaded:
                        loaded.append(load_backend(backend, **options))
                    asks = [(prompt, None)] if prompt else [(name, name) for name in config.labels]
                    found = [
                        (segment(pixels, words, backend=loaded[0], threshold=threshold), name)
                        for words, name in asks
                    ]
                results.append(_prediction(found, config, version))
        except PromptsegError as exc:
            raise HTTPException(400, f"{type(exc).__name__}: {exc}") from None
        return {"results": results, "model_version": version}

    return app


def _prediction(found: Sequence[tuple[Any, str | None]], config: _Config, version: str) -> dict[str, Any]:
    by_lower = {name.lower(): name for name in config.labels}
    result: list[dict[str, Any]] = []
    scores: list[float] = []
    for det, name in found:
        for i in range(len(det)):
            label = name or by_lower.get(str(det.labels[i]).lower(), str(det.labels[i]))
            score = 1.0 if det.scores is None else float(det.scores[i])
            mask = None if det.masks is None or config.mask_name is None else det.masks[i]
            rid = f"p{len(scores)}"
            regions = region_results(
                label, det.xyxy[i].tolist(), mask, det.image_size,
                region_id=rid, mask_id=f"{rid}m", masks=config.mask_kind,
                from_name=config.box_name or "", mask_from_name=config.mask_name, to_name=config.to_name,
                score=score,
            )  # fmt: skip
            result += regions if config.box_name is not None else regions[1:]
            scores.append(score)
    return {"result": result, "score": float(np.mean(scores)) if scores else 0.0, "model_version": version}


def run_ml_backend(args: Any) -> int:
    """``promptseg labelstudio ml-backend``: serve :func:`create_ml_backend_app` with uvicorn.

    ``args`` has ``backend``, ``prompt`` (or None), ``image_root`` (or None), ``label_studio_url`` (or
    None), ``api_key`` (or None; else ``$LABEL_STUDIO_API_KEY``), ``host`` (default ``127.0.0.1``),
    ``port`` (default 9090) and ``option`` (list of ``(key, value)`` backend options).
    """
    from promptseg._deps import require

    for module in ("fastapi", "uvicorn"):
        require(module, extra="label", purpose="'promptseg labelstudio ml-backend'")
    import uvicorn

    app = create_ml_backend_app(
        backend=args.backend,
        prompt=args.prompt,
        image_root=args.image_root,
        label_studio_url=args.label_studio_url,
        api_key=args.api_key or os.environ.get("LABEL_STUDIO_API_KEY") or None,
        backend_options=dict(getattr(args, "option", None) or []),
    )
    uvicorn.run(
        app, host=getattr(args, "host", None) or "127.0.0.1", port=getattr(args, "port", None) or 9090
    )
    return 0
