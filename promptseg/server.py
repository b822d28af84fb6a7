"""The HTTP API: the library behind FastAPI, for ``promptseg serve`` or any ASGI server.

Endpoints (JSON; OpenAPI at ``/docs`` and ``/openapi.json``):

- ``GET /health``: ``{"status": "ok", "version", "backend"}``; open even when a token is set.
- ``GET /v1/backends``: what ``promptseg backends --json`` prints.
- ``POST /v1/segment``: multipart ``image`` (file), ``prompt``, optional ``threshold`` and ``mask_format``;
  answers with the object ``promptseg segment --json`` prints, ``image.path`` being the upload's file name.
- ``POST /v1/sessions`` (multipart ``image``) -> 201 ``{"session_id", "width", "height"}``; then
  ``POST /v1/sessions/{id}/ask`` with ``{"prompt", "threshold"}`` -> that turn's result (as above),
  ``GET /v1/sessions/{id}`` -> image size and history, ``GET /v1/sessions/{id}/image.png?turn=-1`` -> the
  turn drawn on the image, ``DELETE /v1/sessions/{id}``.

Every error is ``{"error": "<one line>", "type": "<class>"}`` with a fitting status: 400 bad input,
401 no or wrong token, 404 unknown session or route, 413 upload too large, 422 malformed request or a
prompt that cannot be answered, 502 a remote model failed, 503 the backend cannot run here, 500 a bug
(logged here with its traceback, answered with a generic message).

Trust: images arrive only as uploaded bytes, never as a path or URL, and are decoded by
:func:`~promptseg.image.load_image` (pixel limit before decoding, corrupt data, EXIF). The body size is
checked from ``Content-Length`` and counted while it arrives, and the token is checked, before FastAPI
reads any of it. One backend serves every request; models are not thread-safe, so each model call holds
a lock (requests are served from a threadpool). Sessions live in a bounded LRU with an idle timeout.

Example:
    >>> import uvicorn                                               # doctest: +SKIP
    >>> uvicorn.run(create_app(backend="offline", token="s3cret"))   # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import io
import logging
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import FastAPI, File, Form, HTTPException, Query, Request, Security, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPBearer
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from promptseg._http import (
    HTTP_TYPES,
    INTERNAL_ERROR,
    check_token,
    error_body,
    http_error,
    token_problem,
    validation_error,
)
from promptseg._segment import segment as segment_image
from promptseg._version import __version__
from promptseg.backends.base import Backend
from promptseg.backends.registry import get_spec, load_backend
from promptseg.cli import backend_rows
from promptseg.errors import (
    BackendUnavailable,
    ConfigError,
    FormatError,
    InputError,
    PromptsegError,
    QueryError,
    RemoteBackendError,
)
from promptseg.formats.result import to_json
from promptseg.image import load_image
from promptseg.render import annotate
from promptseg.session import Session
from promptseg.types import UInt8Array

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_BYTES = 20 * 2**20
_FORM_OVERHEAD = 64 * 1024  # multipart boundaries, part headers and the small fields beside the image
_PUBLIC_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
# most specific first: ImageLoadError is an InputError, WeightsNotFoundError a BackendUnavailable
_STATUS: tuple[tuple[type[PromptsegError], int], ...] = (
    (InputError, 400),
    (ConfigError, 400),
    (QueryError, 422),
    (FormatError, 422),
    (BackendUnavailable, 503),
    (RemoteBackendError, 502),
)


MaskFormatName = Literal["rle", "polygon", "png", "none"]


class ErrorBody(BaseModel):
    """Every error the API answers with."""

    error: str = Field(description="what went wrong and what to do, on one line")
    type: str = Field(description="the error class, e.g. ImageLoadError, QueryError, NotFound")


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    backend: str


class ImageInfo(BaseModel):
    path: str | None = Field(description="the uploaded file's name (never a path on the server)")
    width: int
    height: int


class MaskRle(BaseModel):
    size: list[int] = Field(description="[height, width]")
    counts: str = Field(description="COCO compressed RLE, column-major")


class Instance(BaseModel):
    model_config = ConfigDict(extra="allow")

    label: str
    score: float | None = Field(None, description="0-1; absent when the backend gives none")
    box_xyxy: list[float] = Field(description="[x1, y1, x2, y2] in pixels")
    box_2d: list[int] = Field(description="[ymin, xmin, ymax, xmax] on a 0-1000 grid (Gemini's)")
    mask_rle: MaskRle | None = None
    attributes: dict[str, Any] | None = None


class SegmentResult(BaseModel):
    """The JSON of ``promptseg segment --json``; see :mod:`promptseg.formats.result`."""

    image: ImageInfo
    prompt: str | None
    backend: str | None
    instances: list[Instance]
    meta: dict[str, Any] = Field(description="which model, weights, prompt and version made it; notes")


class SessionCreated(BaseModel):
    session_id: str
    width: int
    height: int


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, description="plain words; may refer to earlier answers")
    threshold: float | None = Field(None, ge=0, le=1, description="minimum score (null: the default)")
    mask_format: MaskFormatName = "rle"


class TurnInfo(BaseModel):
    index: int
    request: str
    instances: int
    seconds: float


class SessionImage(BaseModel):
    name: str
    width: int
    height: int


class SessionInfo(BaseModel):
    session_id: str
    backend: str
    image: SessionImage
    turns: list[TurnInfo]


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": what}
    for code, what in [
        (400, "bad input: an image that cannot be read, an empty prompt"),
        (401, "no or wrong bearer token"),
        (413, "upload too large"),
        (422, "a malformed request, or a prompt that cannot be answered"),
        (502, "a remote model failed"),
        (503, "the backend cannot run on this server"),
    ]
}
_SESSION_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    404: {"model": ErrorBody, "description": "no such session (deleted, expired or evicted)"},
}


def create_app(
    *,
    backend: str | Backend = "offline",
    token: str | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_pixels: int | None = None,
    max_sessions: int = 32,
    session_ttl_s: float = 1800.0,
    max_turns: int = 100,
    **backend_options: Any,
) -> FastAPI:
    """Build the HTTP API around one backend.

    Args:
        backend: a registered backend name, loaded on first use, or a loaded backend (shared, and only
            called under this app's lock).
        token: when set, every route but ``/health`` and the docs needs ``Authorization: Bearer <token>``.
        max_upload_bytes: largest image upload; bigger requests get 413 before anything is decoded.
        max_pixels: refuse larger images (None: ``$PROMPTSEG_MAX_PIXELS`` or 100 MP).
        max_sessions: sessions kept at once; the least recently used one is dropped for a new one.
        session_ttl_s: a session unused this long is dropped.
        max_turns: turns one session may take (each keeps its masks in memory); then 409.
        **backend_options: passed to :func:`~promptseg.backends.load_backend` when ``backend`` is a name.

    Raises:
        ConfigError: for an unknown backend name, options beside a loaded backend, or limits that
            cannot work.

    Example:
        >>> from fastapi.testclient import TestClient                  # doctest: +SKIP
        >>> client = TestClient(create_app(backend="offline"))        # doctest: +SKIP
        >>> client.post("/v1/segment", files={"image": open("photo.jpg", "rb")},
        ...             data={"prompt": "people"}).json()["instances"]  # doctest: +SKIP
    """
    _check_limits(max_upload_bytes=max_upload_bytes, max_sessions=max_sessions, max_turns=max_turns)
    if not session_ttl_s > 0:
        raise ConfigError(f"session_ttl_s must be a positive number of seconds, got {session_ttl_s!r}")
    if token is not None:
        check_token(token)
    model = _Model(backend, backend_options)
    sessions = _Sessions(max_sessions=max_sessions, ttl_s=session_ttl_s)

    app = FastAPI(
        title="promptseg",
        version=__version__,
        description="Conversational image segmentation: plain words in, labelled boxes and pixel masks out.",
    )
    app.add_middleware(_Guard, token=token, max_body=max_upload_bytes + _FORM_OVERHEAD)
    app.add_exception_handler(PromptsegError, _promptseg_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    # _Guard enforces the token; this dependency only puts the scheme (and the lock icons) into OpenAPI.
    v1 = [Security(HTTPBearer(auto_error=False))] if token is not None else []

    def read_upload(upload: UploadFile) -> tuple[UInt8Array, str]:
        data = upload.file.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise HTTPException(413, _too_large(None, max_upload_bytes))
        return load_image(data, max_pixels=max_pixels), _upload_name(upload.filename)

    @app.get("/health", tags=["meta"])
    def health() -> Health:
        """Liveness: answers without loading the model and without a token."""
        return Health(status="ok", version=__version__, backend=model.name)

    @app.get("/v1/backends", tags=["meta"], dependencies=v1, responses={401: _ERRORS[401]})
    def backends() -> list[dict[str, Any]]:
        """Every registered backend: capabilities, licence, and whether it can run on this server."""
        return backend_rows()

    @app.post("/v1/segment", tags=["segment"], dependencies=v1, response_model=None, responses=_ok(_ERRORS))
    def segment(
        image: Annotated[UploadFile, File(description="a JPEG, PNG, WebP, BMP, TIFF or GIF image")],
        prompt: Annotated[str, Form(description="what to find, in plain words: 'people', 'the bottle'")],
        threshold: Annotated[float | None, Form(ge=0, le=1, description="minimum score, 0-1")] = None,
        mask_format: Annotated[MaskFormatName, Form(description="how masks are written")] = "rle",
    ) -> JSONResponse:
        """Find every object matching the prompt in one image (the JSON of ``promptseg segment --json``)."""
        pixels, name = read_upload(image)
        with model.lock:
            det = segment_image(pixels, prompt, backend=model.get(), threshold=threshold)
        return JSONResponse(
            to_json(det, image_path=name, prompt=prompt, backend=model.name, mask_format=mask_format)
        )

    @app.post(
        "/v1/sessions",
        tags=["sessions"],
        dependencies=v1,
        status_code=201,
        responses=_ERRORS,
    )
    def create_session(
        image: Annotated[UploadFile, File(description="the image to talk about")], response: Response
    ) -> SessionCreated:
        """Start a conversation about one image; the id is needed for every later call."""
        pixels, name = read_upload(image)
        with model.lock:
            session = Session(pixels, model.get())
        session_id = sessions.add(session, name)
        response.headers["Location"] = f"/v1/sessions/{session_id}"
        height, width = pixels.shape[:2]
        return SessionCreated(session_id=session_id, width=width, height=height)

    @app.post(
        "/v1/sessions/{session_id}/ask",
        tags=["sessions"],
        dependencies=v1,
        response_model=None,
        responses=_ok({**_SESSION_ERRORS, 409: {"model": ErrorBody, "description": "session is full"}}),
    )
    def ask(session_id: str, body: AskRequest) -> JSONResponse:
        """Ask about the session's image; follow-ups may refer to earlier answers."""
        entry = sessions.get(session_id)
        with model.lock:
            if len(entry.session.history) >= max_turns:
                raise HTTPException(
                    409,
                    f"session {session_id!r} has had its {max_turns} turns; start a new one with "
                    "POST /v1/sessions",
                )
            det = entry.session.ask(body.prompt, threshold=body.threshold)
        doc = to_json(
            det, image_path=entry.name, prompt=body.prompt, backend=model.name, mask_format=body.mask_format
        )
        return JSONResponse(doc)

    @app.get("/v1/sessions/{session_id}", tags=["sessions"], dependencies=v1, responses=_SESSION_ERRORS)
    def session_info(session_id: str) -> SessionInfo:
        """The session's image size and every turn so far, oldest first."""
        entry = sessions.get(session_id)
        height, width = entry.session.image.shape[:2]
        turns = [
            TurnInfo(index=i, request=t.request, instances=len(t.result), seconds=t.seconds)
            for i, t in enumerate(list(entry.session.history))
        ]
        return SessionInfo(
            session_id=session_id,
            backend=model.name,
            image=SessionImage(name=entry.name, width=width, height=height),
            turns=turns,
        )

    @app.get(
        "/v1/sessions/{session_id}/image.png",
        tags=["sessions"],
        dependencies=v1,
        response_class=Response,
        responses={200: {"content": {"image/png": {}}, "description": "the image, drawn"}, **_SESSION_ERRORS},
    )
    def session_image(
        session_id: str,
        turn: Annotated[int, Query(description="turn index; -1 is the latest")] = -1,
        legend: Annotated[bool, Query(description="add a panel explaining each match under it")] = False,
    ) -> Response:
        """A turn's masks, boxes and labels drawn on the session's image, as PNG.

        Without the legend the PNG has the image's own size, so it can be laid over the upload."""
        entry = sessions.get(session_id)
        history = list(entry.session.history)
        if not -len(history) <= turn < len(history):
            have = f"turns 0 to {len(history) - 1}" if history else "no turns yet"
            raise HTTPException(404, f"session {session_id!r} has no turn {turn}; it has {have}")
        drawn = annotate(entry.session.image, history[turn].result, legend=legend)
        buf = io.BytesIO()
        Image.fromarray(drawn).save(buf, format="PNG")
        return Response(buf.getvalue(), media_type="image/png")

    @app.delete(
        "/v1/sessions/{session_id}",
        tags=["sessions"],
        dependencies=v1,
        status_code=204,
        response_class=Response,
        responses=_SESSION_ERRORS,
    )
    def delete_session(session_id: str) -> Response:
        """Forget the session and its image now."""
        sessions.remove(session_id)
        return Response(status_code=204)

    return app


class _Model:
    """The one backend of an app, loaded on first use; call :meth:`get` with :attr:`lock` held."""

    def __init__(self, backend: str | Backend, options: dict[str, Any]) -> None:
        if isinstance(backend, str):
            get_spec(backend)  # an unknown name fails now, with suggestions, not on the first request
            self.name = backend
            self._backend: Backend | None = None
        else:
            if options:
                raise ConfigError(
                    f"backend options {sorted(options)} were given with an already loaded backend; "
                    "pass its name instead, or load it with those options"
                )
            self.name = backend.name
            self._backend = backend
        self._options = options
        self.lock = threading.Lock()

    def get(self) -> Backend:
        if self._backend is None:
            try:
                self._backend = load_backend(self.name, **self._options)
            except BackendUnavailable:
                raise
            except PromptsegError as exc:  # the server's set-up, not the client's request, is wrong
                raise BackendUnavailable(f"backend {self.name!r} cannot be loaded: {exc}") from exc
        return self._backend


@dataclass
class _Entry:
    session: Session
    name: str
    used: float


class _Sessions:
    """Sessions by id: at most ``max_sessions``, least recently used dropped first, idle ones expire."""

    def __init__(self, *, max_sessions: int, ttl_s: float) -> None:
        self.max_sessions = max_sessions
        self.ttl_s = ttl_s
        self._items: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, session: Session, name: str) -> str:
        session_id = secrets.token_urlsafe(18)
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            self._items[session_id] = _Entry(session, name, now)
            while len(self._items) > self.max_sessions:
                self._items.popitem(last=False)
        return session_id

    def get(self, session_id: str) -> _Entry:
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            entry = self._items.get(session_id)
            if entry is None:
                raise HTTPException(404, self._unknown(session_id))
            entry.used = now
            self._items.move_to_end(session_id)
            return entry

    def remove(self, session_id: str) -> None:
        with self._lock:
            self._expire(time.monotonic())
            if self._items.pop(session_id, None) is None:
                raise HTTPException(404, self._unknown(session_id))

    def _expire(self, now: float) -> None:
        while self._items:
            oldest = next(iter(self._items.values()))
            if now - oldest.used <= self.ttl_s:
                break
            self._items.popitem(last=False)

    def _unknown(self, session_id: str) -> str:
        return (
            f"no session {session_id[:64]!r}: it was deleted, unused for {self.ttl_s:g} s, or dropped for "
            f"a newer one (at most {self.max_sessions} are kept); start one with POST /v1/sessions"
        )


class _Guard:
    """Token, body size and last-resort errors, as plain ASGI: before FastAPI reads the body."""

    def __init__(self, app: ASGIApp, *, token: str | None, max_body: int) -> None:
        self.app = app
        self.token_digest = None if token is None else hashlib.sha256(token.encode()).digest()
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if self.token_digest is not None and _route_path(scope) not in _PUBLIC_PATHS:
            problem = token_problem(headers.get(b"authorization"), self.token_digest)
            if problem is not None:
                await _reply(scope, receive, send, 401, problem, extra={"WWW-Authenticate": "Bearer"})
                return
        length = _int_or_none(headers.get(b"content-length"))
        if length is not None and length > self.max_body:
            await _reply(scope, receive, send, 413, _too_large(length, self.max_body))
            return

        received = 0
        too_large = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    too_large = True
                    raise HTTPException(413, _too_large(None, self.max_body))
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if too_large:  # whatever the app made of the interrupted body, the answer is 413
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await _reply(scope, receive, send, 413, _too_large(None, self.max_body))
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except Exception:
            if started:
                raise
            if too_large:
                await _reply(scope, receive, send, 413, _too_large(None, self.max_body))
                return
            logger.exception("%s %s failed", scope.get("method"), scope.get("path"))
            await _reply(scope, receive, send, 500, INTERNAL_ERROR, kind="InternalServerError")


async def _reply(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    message: str,
    *,
    kind: str | None = None,
    extra: dict[str, str] | None = None,
) -> None:
    response = JSONResponse(error_body(message, kind or HTTP_TYPES.get(status, "HTTPError")), status, extra)
    await response(scope, receive, send)  # a JSONResponse never reads the request body


async def _promptseg_error(request: Request, exc: Exception) -> JSONResponse:
    status = next((code for cls, code in _STATUS if isinstance(exc, cls)), 500)
    if status >= 500:
        logger.warning("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
    return JSONResponse(error_body(str(exc), type(exc).__name__), status)


def _ok(errors: dict[int | str, dict[str, Any]]) -> dict[int | str, dict[str, Any]]:
    return {200: {"model": SegmentResult, "description": "as `promptseg segment --json`"}, **errors}


def _too_large(length: int | None, limit: int) -> str:
    size = f"{length:,} bytes" if length is not None else "larger"
    return (
        f"the request is {size}, over this server's limit of {limit:,} bytes; send a smaller image "
        "(or start the server with a larger --max-upload-mb)"
    )


def _route_path(scope: Scope) -> str:
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", ""))
    return path[len(root) :] if root and path.startswith(root) else path


def _int_or_none(value: bytes | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _upload_name(filename: str | None) -> str:
    """The upload's own name for ``image.path``: no folders, no control characters, never our paths."""
    base = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    clean = "".join(c for c in base if c.isprintable()).strip()[:200]
    return clean if clean not in ("", ".", "..") else "upload"


def _check_limits(**limits: int) -> None:
    for name, value in limits.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{name} must be a positive whole number, got {value!r}")
