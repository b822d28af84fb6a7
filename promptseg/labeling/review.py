"""The review page: ``promptseg review PROJ`` serves a browser UI that walks a project's review queue.

The page (``static/review.html``, ``review.js``, ``review.css``; no build step, nothing fetched from
outside) talks only to the JSON API below, all under ``/api``. Every write goes through
:class:`~promptseg.labeling.Project` with ``who`` = the server's ``user``; a name sent by the client is
never used.

- ``GET /api/summary``: counts, thresholds, label names, user, refiner.
- ``GET /api/queue``: ``images`` with pending annotations, least confident first, and ``all`` the
  drafted images in natural order (so every image can be reached).
- ``GET /api/images/{image_id}``: the image row and its annotations; ``.../file``: the image, upright.
- ``GET /api/annotations/{id}``: one annotation; ``.../mask.png``: its mask as a white PNG with alpha.
- ``POST /api/annotations/{id}/decision`` ``{state, label?, box?}``: accept, reject, relabel, move.
- ``POST /api/annotations/{id}/refine`` ``{box?}``: box -> mask with the refiner; accepts it (a
  correction confirms the object; the page sends relabels and moves as ``state: accepted`` too).
- ``POST /api/annotations/{id}/undo`` ``{at}``: put back what the decision made at ``at`` (the
  annotation's ``decided_at`` after it) changed; the page keeps a stack of its own decisions.
- ``POST /api/images/{image_id}/annotations`` ``{label, box, refine?, state?}``: a missed object
  (``source = "human"``), 201.

Errors are ``{"error": one line, "type"}``: 401 no or wrong token, 404 unknown id or route, 422 bad
input, 500 a bug (logged here with its traceback).
With a token set, every ``/api`` route needs ``Authorization: Bearer <token>``; the page reads the
token from the URL fragment (``/#token=...``, never sent to the server as part of the URL).

SQLite connections are per thread, and uvicorn serves these routes from a thread pool: each request
opens the project and holds one lock while it uses it, so decisions never interleave.

Example:
    >>> import uvicorn                                                       # doctest: +SKIP
    >>> uvicorn.run(create_review_app("proj", user="ana"))     # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import hashlib
import io
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import numpy as np

from promptseg.errors import InputError, PromptsegError
from promptseg.labeling._project import Annotation, Project, _natural_key
from promptseg.types import UInt8Array

if TYPE_CHECKING:  # pragma: no cover
    from fastapi import FastAPI

__all__ = ["create_review_app", "run_review"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

STATIC_DIR = Path(__file__).with_name("static")
_STATIC_TYPES = {
    "review.js": "text/javascript; charset=utf-8",
    "review.css": "text/css; charset=utf-8",
}
_BROWSER_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".gif": "PNG"}


def create_review_app(
    project_dir: str | os.PathLike[str], *, user: str, refiner: str = "color", token: str | None = None
) -> FastAPI:
    """Build the review page and its API for one project.

    Args:
        project_dir: a project folder made by ``promptseg label`` (its ``project.db``).
        user: the name every decision made through this app is logged with.
        refiner: the box -> mask refiner (:func:`promptseg.refine.load_refiner` name) for ``F``/refine.
        token: when set, every ``/api`` route needs ``Authorization: Bearer <token>``.

    Raises:
        ConfigError: not a project, an unknown refiner, or a token that cannot work.
        MissingDependencyError: FastAPI is not installed (the ``server`` extra).
    """
    from promptseg._deps import require

    require("fastapi", extra="label", purpose="'promptseg review'")
    from fastapi import Body, Depends, FastAPI, Header, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from promptseg._http import (
        INTERNAL_ERROR,
        check_token,
        error_body,
        http_error,
        token_problem,
        validation_error,
    )
    from promptseg.refine import load_refiner

    if not user or not user.strip():
        raise InputError("the review server needs a user name to log decisions with (--user)")
    if token is not None:
        check_token(token)
    folder = Path(project_dir)
    Project.open(folder).close()  # not a project: fail now, not on the first request
    box_refiner = load_refiner(refiner)
    lock = threading.Lock()
    pixels: _LastFew[UInt8Array] = _LastFew(2)
    encoded: _LastFew[bytes] = _LastFew(8)

    @contextmanager
    def opened() -> Iterator[Project]:
        with lock, Project.open(folder) as project:
            yield project

    digest = None if token is None else hashlib.sha256(token.encode()).digest()

    # annotations are strings here (PEP 563) that FastAPI resolves in this module's globals, where
    # fastapi is not (it is imported lazily): so the routes' parameters name only builtin and typing
    # types, and say where a value comes from with defaults (Body(...), Header(...))
    def require_token(authorization: str | None = Header(None)) -> None:
        if digest is None:
            return
        problem = token_problem(None if authorization is None else authorization.encode(), digest)
        if problem is not None:
            raise HTTPException(401, problem, headers={"WWW-Authenticate": "Bearer"})

    app = FastAPI(title="promptseg review", description="Review a labelling project's drafts.")

    async def promptseg_error(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(error_body(str(exc), type(exc).__name__), 422)

    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse(error_body(INTERNAL_ERROR, "InternalServerError"), 500)

    app.add_exception_handler(Exception, internal_error)
    app.add_exception_handler(PromptsegError, promptseg_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    api = [Depends(require_token)]

    @app.get("/", include_in_schema=False, response_model=None)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "review.html", media_type="text/html; charset=utf-8")

    @app.get("/static/{name}", include_in_schema=False, response_model=None)
    def static(name: str) -> FileResponse:
        if name not in _STATIC_TYPES:
            raise HTTPException(404, f"no static file {name[:64]!r}")
        return FileResponse(STATIC_DIR / name, media_type=_STATIC_TYPES[name])

    @app.get("/api/summary", dependencies=api)
    def summary() -> dict[str, Any]:
        with opened() as project:
            s = project.settings
            return {
                "project": str(folder),
                "prompt": s.get("prompt"),
                "user": user,
                "refiner": box_refiner.name,
                "counts": project.counts(),
                "thresholds": {"accept": s.get("accept"), "reject": s.get("reject")},
                "labels": project.labels(),
            }

    @app.get("/api/queue", dependencies=api)
    def queue() -> dict[str, Any]:
        with opened() as project:
            rows = project.review_progress()
        ordered = [r for r in rows if r["pending"]]
        return {"images": ordered, "all": sorted(rows, key=lambda r: _natural_key(r["path"]))}

    def image_row(project: Project, image_id: int) -> dict[str, Any]:
        try:
            return project.image(image_id)
        except InputError:
            raise HTTPException(404, f"no image with id {image_id} in this project") from None

    def annotation(project: Project, annotation_id: int) -> Annotation:
        try:
            return project.annotation(annotation_id)
        except InputError:
            raise HTTPException(404, f"no annotation with id {annotation_id} in this project") from None

    def image_pixels(project: Project, row: dict[str, Any]) -> UInt8Array:
        from promptseg.image import load_image

        path = project.image_path(row["path"])
        return pixels.get((path, path.stat().st_mtime_ns), lambda: load_image(path))

    def refine_mask(project: Project, row: dict[str, Any], box: list[float]) -> np.ndarray:
        rgb = image_pixels(project, row)
        if rgb.shape[:2] != (row["height"], row["width"]):
            raise InputError(
                f"image {row['path']!r} is now {rgb.shape[1]}x{rgb.shape[0]}, drafted as "
                f"{row['width']}x{row['height']}; it changed on disk, draft it again"
            )
        return np.asarray(box_refiner.refine(rgb, np.asarray([box], np.float32))[0], bool)

    @app.get("/api/images/{image_id}", dependencies=api)
    def image(image_id: int) -> dict[str, Any]:
        with opened() as project:
            row = image_row(project, image_id)
            return {"image": row, "annotations": [_ann_json(a) for a in project.annotations(row["path"])]}

    @app.get("/api/images/{image_id}/file", dependencies=api, response_class=Response)
    def image_file(image_id: int) -> Response:
        from PIL import Image

        with opened() as project:
            row = image_row(project, image_id)
            path = project.image_path(row["path"])
            # decoded and re-encoded: upright (EXIF), RGB, and in a format every browser shows
            kind = _BROWSER_FORMATS.get(path.suffix.lower(), "PNG")

            def encode() -> bytes:
                buf = io.BytesIO()
                rgb = image_pixels(project, row)
                Image.fromarray(rgb).save(buf, format=kind, **({"quality": 95} if kind == "JPEG" else {}))
                return buf.getvalue()

            data = encoded.get((path, path.stat().st_mtime_ns), encode)
        return Response(data, media_type=f"image/{kind.lower()}", headers=_NO_STORE)

    @app.get("/api/annotations/{annotation_id}", dependencies=api)
    def get_annotation(annotation_id: int) -> dict[str, Any]:
        with opened() as project:
            return _ann_json(annotation(project, annotation_id))

    @app.get("/api/annotations/{annotation_id}/mask.png", dependencies=api, response_class=Response)
    def mask_png(annotation_id: int) -> Response:
        from PIL import Image

        from promptseg.ops.masks import from_rle

        with opened() as project:
            ann = annotation(project, annotation_id)
        if ann.mask_rle is None:
            raise HTTPException(404, f"annotation {annotation_id} has no mask; refine its box to make one")
        alpha = from_rle(ann.mask_rle).astype(np.uint8) * 255
        la = np.dstack([np.full_like(alpha, 255), alpha])
        buf = io.BytesIO()
        Image.fromarray(la).save(buf, format="PNG")
        return Response(buf.getvalue(), media_type="image/png", headers=_NO_STORE)

    @app.post("/api/annotations/{annotation_id}/decision", dependencies=api)
    def decision(
        annotation_id: int,
        state: Literal["accepted", "rejected", "pending"] = Body(...),
        label: str | None = Body(None),
        box: tuple[float, float, float, float] | None = Body(None),
    ) -> dict[str, Any]:
        with opened() as project:
            annotation(project, annotation_id)
            return _ann_json(project.decide(annotation_id, state, who=user, label=label, box=box))

    @app.post("/api/annotations/{annotation_id}/refine", dependencies=api)
    def refine(
        annotation_id: int, box: tuple[float, float, float, float] | None = Body(None, embed=True)
    ) -> dict[str, Any]:
        with opened() as project:
            ann = annotation(project, annotation_id)
            xyxy = list(ann.box_xyxy) if box is None else _box(box)
            mask = refine_mask(project, project.image(ann.image), xyxy)
            # a correction is a person confirming the object, as the page's relabel and move are
            new = project.decide(annotation_id, "accepted", who=user, box=xyxy, mask=mask)
            return _ann_json(new)

    @app.post("/api/annotations/{annotation_id}/undo", dependencies=api)
    def undo(annotation_id: int, at: str = Body(..., embed=True)) -> dict[str, Any]:
        with opened() as project:
            annotation(project, annotation_id)
            return _ann_json(project.revert(annotation_id, at, who=user))

    @app.post("/api/images/{image_id}/annotations", dependencies=api, status_code=201)
    def add(
        image_id: int,
        label: str = Body(...),
        box: tuple[float, float, float, float] = Body(...),
        refine: bool = Body(False),
        state: Literal["accepted", "rejected", "pending"] = Body("accepted"),
    ) -> dict[str, Any]:
        with opened() as project:
            row = image_row(project, image_id)
            xyxy = _box(box)
            mask = refine_mask(project, row, xyxy) if refine else None
            return _ann_json(
                project.add_annotation(row["path"], label, xyxy, who=user, mask=mask, state=state)
            )

    return app


def run_review(args: argparse.Namespace) -> int:
    """The ``promptseg review`` command: serve the review page until Ctrl-C; returns the exit code.

    ``args`` has ``project``, ``host``, ``port``, ``user`` (None: the login name), ``refiner``, ``token``
    (None: ``$PROMPTSEG_API_TOKEN``) and ``no_browser``.
    """
    import getpass
    import sys
    import webbrowser

    from promptseg._deps import require

    require("uvicorn", extra="label", purpose="'promptseg review'")
    import uvicorn

    user = getattr(args, "user", None) or getpass.getuser()
    token = getattr(args, "token", None) or os.environ.get("PROMPTSEG_API_TOKEN") or None
    host = getattr(args, "host", "127.0.0.1")
    port = int(getattr(args, "port", 8700))
    app = create_review_app(args.project, user=user, refiner=getattr(args, "refiner", "color"), token=token)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/" + (f"#token={token}" if token else "")
    print(f"reviewing {args.project} as {user!r}: open {url}  (Ctrl-C to stop)")
    if token is None and host not in ("127.0.0.1", "localhost", "::1"):
        sys.stderr.write(
            f"promptseg: note: serving on {host} with no token: anyone who can reach this port can change "
            "the project; set PROMPTSEG_API_TOKEN\n"
        )
    if not getattr(args, "no_browser", False):
        threading.Timer(1.0, webbrowser.open, (url,)).start()
    uvicorn.run(app, host=host, port=port, log_level="warning")
    return 0


_NO_STORE = {"Cache-Control": "no-store"}


class _LastFew(Generic[T]):
    """The last few values by key (decoded images: refining the boxes of one image decodes it once;
    encoded images: going back and forth between images encodes each once)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Any, T] = OrderedDict()

    def get(self, key: Any, load: Callable[[], T]) -> T:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = load()
        self._items[key] = value
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return value


def _box(box: Sequence[float]) -> list[float]:
    from promptseg.labeling._project import _check_box

    return _check_box(box)


def _ann_json(ann: Annotation) -> dict[str, Any]:
    doc = asdict(ann)
    doc["box_xyxy"] = list(ann.box_xyxy)
    doc["has_mask"] = ann.mask_rle is not None
    doc.pop("mask_rle")
    # changes whenever the mask may have: the page reloads mask.png only then
    doc["version"] = ann.decided_at or ""
    return doc
