"""Project state in SQLite: images, annotations, decisions log, settings (see :mod:`promptseg.labeling`)."""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np

from promptseg.errors import ConfigError, InputError
from promptseg.types import BoolArray, Detections

if TYPE_CHECKING:  # pragma: no cover
    from promptseg.datasets import Dataset

__all__ = ["IMAGE_SUFFIXES", "Annotation", "Project"]

SCHEMA_VERSION: Final = 2
DB_NAME: Final = "project.db"
IMAGE_SUFFIXES: Final = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
"""File suffixes taken as images by :meth:`Project.add_images`; other files are ignored."""
AUTO: Final = "auto:threshold"

ReviewState = Literal["accepted", "rejected", "pending"]
_STATES: Final = ("accepted", "rejected", "pending")

# schema version -> the statements that bring a project of that version to the next one
_MIGRATIONS: Final = {
    1: (  # 2: where an annotation came from outside (a Label Studio region id), to find it again
        "ALTER TABLE annotations ADD COLUMN external_id TEXT",
        "CREATE INDEX annotations_external ON annotations(external_id)",
    ),
}

_SCHEMA: Final = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE images (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    sha256 TEXT,
    width INTEGER,
    height INTEGER,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
    error TEXT,
    seconds REAL,
    drafted_at TEXT
);
CREATE TABLE annotations (
    id INTEGER PRIMARY KEY,
    image_id INTEGER NOT NULL REFERENCES images(id),
    label TEXT NOT NULL,
    score REAL,
    box_xyxy TEXT NOT NULL,
    mask_rle TEXT,
    source TEXT NOT NULL CHECK (source IN ('model', 'human')),
    model TEXT,
    backend TEXT,
    prompt TEXT,
    review_state TEXT NOT NULL CHECK (review_state IN ('accepted', 'rejected', 'pending')),
    decided_by TEXT,
    decided_at TEXT,
    created_at TEXT NOT NULL,
    external_id TEXT
);
CREATE INDEX annotations_image ON annotations(image_id);
CREATE INDEX annotations_external ON annotations(external_id);
CREATE INDEX annotations_review ON annotations(review_state, score);
CREATE TABLE decisions (
    id INTEGER PRIMARY KEY,
    annotation_id INTEGER NOT NULL REFERENCES annotations(id),
    who TEXT NOT NULL,
    at TEXT NOT NULL,
    field TEXT NOT NULL,
    old TEXT,
    new TEXT
);
"""


@dataclass(frozen=True)
class Annotation:
    """One object of one image, as stored (``box_xyxy`` in absolute pixels of that image)."""

    id: int
    image: str
    label: str
    score: float | None
    box_xyxy: tuple[float, float, float, float]
    mask_rle: dict[str, Any] | None
    source: str
    review_state: str
    decided_by: str | None
    decided_at: str | None
    model: str | None = None
    backend: str | None = None
    prompt: str | None = None
    external_id: str | None = None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _natural_key(path: str) -> list[Any]:
    return [
        (0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in re.split(r"(\d+)", path)
    ]


class Project:
    """A labelling project stored in ``path/project.db``; use :meth:`create` or :meth:`open`."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn

    # -- opening -------------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        *,
        prompt: str,
        backend: str,
        accept: float = 0.8,
        reject: float = 0.3,
    ) -> Project:
        """Create a new project folder (refused if it already holds a project)."""
        _check_thresholds(accept, reject)
        if not prompt.strip():
            raise InputError("the project prompt is empty; pass the words to label, e.g. 'people'")
        folder = Path(path)
        if (folder / DB_NAME).exists():
            raise ConfigError(f"{folder} already holds a project ({DB_NAME}); open it instead")
        folder.mkdir(parents=True, exist_ok=True)
        conn = _connect(folder / DB_NAME)
        with conn:
            conn.executescript("BEGIN;" + _SCHEMA + "COMMIT;")
        with conn:
            conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            settings = {"prompt": prompt, "backend": backend, "accept": accept, "reject": reject}
            settings["created_at"] = _now()
            conn.executemany(
                "INSERT INTO settings VALUES (?, ?)", [(k, json.dumps(v)) for k, v in settings.items()]
            )
        return cls(folder, conn)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Project:
        """Open an existing project folder."""
        folder = Path(path)
        if not (folder / DB_NAME).is_file():
            raise ConfigError(f"{folder} is not a promptseg project (no {DB_NAME}); create one first")
        conn = _connect(folder / DB_NAME)
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        if row is not None and row[0] in _MIGRATIONS:
            _migrate(conn, row[0])
            row = conn.execute("SELECT version FROM schema_version").fetchone()
        if row is None or row[0] != SCHEMA_VERSION:
            raise ConfigError(
                f"{folder / DB_NAME} has schema version {row and row[0]}, expected {SCHEMA_VERSION}"
            )
        return cls(folder, conn)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def settings(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self._conn.execute("SELECT key, value FROM settings")}

    # -- images ---------------------------------------------------------------------------------------
    def add_images(self, folder: str | os.PathLike[str]) -> int:
        """Register every image file under ``folder`` (recursively; others ignored); returns the new count.

        Paths are stored relative to ``folder``, which becomes the project's image root; a different
        root later is refused.
        """
        root = Path(folder).resolve()
        if not root.is_dir():
            raise InputError(f"image folder {folder} does not exist or is not a folder")
        known = self.settings.get("root")
        if known is not None and Path(known) != root:
            raise ConfigError(f"this project labels images under {known}, not {root}")
        project_dir = self.path.resolve()
        paths = [
            p.relative_to(root).as_posix()
            for p in root.rglob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES
            and p.is_file()
            and project_dir not in p.parents
            and not any(part.startswith(".") for part in p.relative_to(root).parts)
        ]
        with self._conn:
            if known is None:
                self._conn.execute("INSERT INTO settings VALUES ('root', ?)", (json.dumps(str(root)),))
            before = self._conn.total_changes
            self._conn.executemany("INSERT OR IGNORE INTO images(path) VALUES (?)", [(p,) for p in paths])
            return self._conn.total_changes - before

    @property
    def root(self) -> Path | None:
        root = self.settings.get("root")
        return None if root is None else Path(root)

    def pending(self) -> list[str]:
        """Images not done yet (pending or failed), in natural order ("img2" before "img10")."""
        rows = self._conn.execute("SELECT path FROM images WHERE status != 'done'").fetchall()
        return sorted((r[0] for r in rows), key=_natural_key)

    def images(self) -> list[dict[str, Any]]:
        """Every image row, in natural order."""
        cur = self._conn.execute("SELECT * FROM images")
        names = [d[0] for d in cur.description]
        return sorted(
            (dict(zip(names, row, strict=True)) for row in cur), key=lambda r: _natural_key(r["path"])
        )

    def record_result(
        self, image: str, detections: Detections, seconds: float, *, sha256: str | None = None
    ) -> bool:
        """Store an image's drafts and mark it done, in one transaction.

        Returns False (and writes nothing) when the image is already done, so a result can never be
        stored twice. Raises :class:`~promptseg.errors.InputError` for an image the project does not know.
        """
        from promptseg.ops.masks import to_rle

        s = self.settings
        accept, reject = float(s["accept"]), float(s["reject"])
        meta = detections.meta
        model = next(
            (str(meta[k]) for k in ("weights", "detector_weights", "model", "detector") if k in meta), None
        )
        backend = str(meta.get("backend", s["backend"]))
        prompt = str(meta.get("prompt", s["prompt"]))
        height, width = detections.image_size
        now = _now()
        rows = []
        for i in range(len(detections)):
            score = None if detections.scores is None else float(detections.scores[i])
            state = _route(score, accept, reject)
            rle = None if detections.masks is None else json.dumps(to_rle(detections.masks[i]))
            box = json.dumps([round(float(v), 2) for v in detections.xyxy[i]])
            rows.append(
                (str(detections.labels[i]), score, box, rle, model, backend, prompt, state,
                 None if state == "pending" else AUTO, None if state == "pending" else now, now)
            )  # fmt: skip
        with self._conn:
            cur = self._conn.execute(
                "UPDATE images SET status = 'done', error = NULL, sha256 = ?, width = ?, height = ?, "
                "seconds = ?, "
                "drafted_at = ? WHERE path = ? AND status != 'done' RETURNING id",
                (sha256, width, height, seconds, now, image),
            )
            found = cur.fetchone()
            if found is None:
                self._check_known(image)
                return False
            self._conn.executemany(
                "INSERT INTO annotations(image_id, label, score, box_xyxy, mask_rle, source, model, backend, "
                "prompt, review_state, decided_by, decided_at, created_at) "
                "VALUES (?, ?, ?, ?, ?, 'model', ?, ?, ?, ?, ?, ?, ?)",
                [(found[0], *row) for row in rows],
            )
        return True

    def record_failure(self, image: str, reason: str) -> None:
        """Mark an image failed with a one-line reason (a done image is left as it is)."""
        with self._conn:
            cur = self._conn.execute(
                "UPDATE images SET status = 'failed', error = ?, drafted_at = ? "
                "WHERE path = ? AND status != 'done'",
                (reason, _now(), image),
            )
            if cur.rowcount == 0:
                self._check_known(image)

    def _check_known(self, image: str) -> None:
        if self._conn.execute("SELECT 1 FROM images WHERE path = ?", (image,)).fetchone() is None:
            raise InputError(f"image {image!r} is not in this project; add_images() first")

    # -- review ---------------------------------------------------------------------------------------
    def annotations(self, image: str | None = None) -> list[Annotation]:
        """Every annotation (of one image, if given), by id."""
        where, params = ("WHERE i.path = ?", (image,)) if image is not None else ("", ())
        return self._annotations(f"{where} ORDER BY a.id", params)

    def to_dataset(self, states: Sequence[str] = ("accepted",)) -> Dataset:
        """The project's labelled images with their annotations in ``states``, for
        :mod:`promptseg.datasets` exports (COCO, YOLO, Pascal VOC, Label Studio).

        Every done image is included, also those left with no annotation in ``states`` (a reviewed
        image with nothing on it is a negative example). Masks come back exact from their RLE; an
        image whose annotations all lack masks has none, and on an image where only some have one
        (a person drew a box for a missed object) the others get their box filled as the mask, marked
        in ``attributes["mask_from_box"]``, so no drawn mask is dropped. Each item's detections also
        carry the project's ``attributes["annotation_id"]`` and ``attributes["source"]``
        (``model`` | ``human``).
        """
        from promptseg.datasets import Dataset, DatasetItem

        wanted = set(states)
        unknown = wanted - {"accepted", "rejected", "pending"}
        if unknown:
            raise ConfigError(
                f"unknown review state {sorted(unknown)[0]!r}: use accepted, rejected or pending"
            )
        by_image: dict[str, list[Annotation]] = {}
        for ann in self.annotations():
            if ann.review_state in wanted:
                by_image.setdefault(ann.image, []).append(ann)
        items = []
        for row in self.images():
            if row["status"] != "done":
                continue
            h, w = int(row["height"]), int(row["width"])
            anns = by_image.get(row["path"], [])
            with_masks = any(a.mask_rle is not None for a in anns)
            det = Detections(
                xyxy=np.array([a.box_xyxy for a in anns], np.float32).reshape(-1, 4),
                image_size=(h, w),
                labels=np.array([a.label for a in anns], np.str_),
                scores=np.array([1.0 if a.score is None else a.score for a in anns], np.float32),
                masks=np.stack([_mask_or_box(a, (h, w)) for a in anns]) if with_masks else None,
                attributes={
                    "annotation_id": np.array([a.id for a in anns], np.int64),
                    "source": np.array([a.source for a in anns], np.str_),
                    "mask_from_box": np.array([with_masks and a.mask_rle is None for a in anns], bool),
                },
            )
            items.append(DatasetItem(row["path"], w, h, det))
        categories = sorted({str(label) for item in items for label in item.detections.labels})
        return Dataset(tuple(items), categories)

    def review_progress(self) -> list[dict[str, Any]]:
        """Per drafted image: ``id``, ``path``, ``total`` and ``pending`` annotation counts and
        ``min_score`` (the least confident pending draft's score, None without one); images with pending
        drafts first, least confident first (as :meth:`queue`), then the rest in natural order.

        One aggregate query: no annotation is loaded, so it stays fast on large projects.
        """
        cur = self._conn.execute(
            "SELECT i.id, i.path, COUNT(a.id), COALESCE(SUM(a.review_state = 'pending'), 0), "
            "MIN(CASE WHEN a.review_state = 'pending' THEN a.score END), "
            "MIN(CASE WHEN a.review_state = 'pending' THEN (a.score IS NOT NULL) END) "
            "FROM images i LEFT JOIN annotations a ON a.image_id = i.id WHERE i.status = 'done' GROUP BY i.id"
        )
        rows = [
            {"id": r[0], "path": r[1], "total": r[2], "pending": r[3], "min_score": r[4], "_scored": r[5]}
            for r in cur
        ]
        rows.sort(key=lambda r: _natural_key(r["path"]))
        # pending first; unscored pending drafts before scored ones, as queue() orders them
        rows.sort(key=lambda r: (r["pending"] == 0, r["_scored"] or 0, r["min_score"] or 0.0))
        for r in rows:
            del r["_scored"]
        return rows

    def queue(self, limit: int | None = None) -> list[Annotation]:
        """Annotations waiting for review, least confident first."""
        tail = "" if limit is None else f" LIMIT {int(limit)}"
        return self._annotations(
            "WHERE a.review_state = 'pending' ORDER BY a.score IS NOT NULL, a.score, a.id" + tail, ()
        )

    def annotation(self, annotation_id: int) -> Annotation:
        found = self._annotations("WHERE a.id = ?", (annotation_id,))
        if not found:
            raise InputError(f"no annotation with id {annotation_id}")
        return found[0]

    def decide(
        self,
        annotation_id: int,
        state: ReviewState,
        *,
        who: str,
        label: str | None = None,
        box: Sequence[float] | None = None,
        mask: BoolArray | None = None,
    ) -> Annotation:
        """Set an annotation's review state (and optionally correct its label, box or mask), logging
        each change in :meth:`decisions` (a mask as its COCO RLE JSON).

        ``mask`` is an ``(H, W)`` bool array of the image's size; a box correction without a mask keeps
        the old mask (re-run a box -> mask refinement and pass it to replace it).
        """
        if state not in _STATES:
            raise InputError(f"review state must be one of {', '.join(_STATES)}, got {state!r}")
        _check_who(who)
        current = self.annotation(annotation_id)
        # the state is always logged, even unchanged: a human confirming a draft is a decision too
        changes: dict[str, tuple[Any, Any]] = {"review_state": (current.review_state, state)}
        if label is not None:
            label = _check_label(label)
            if label != current.label:
                changes["label"] = (current.label, label)
        if box is not None:
            new_box = _check_box(box)
            if tuple(new_box) != current.box_xyxy:
                changes["box_xyxy"] = (json.dumps(list(current.box_xyxy)), json.dumps(new_box))
        if mask is not None:
            rle = json.dumps(self._mask_rle(current.image, mask))
            old_rle = None if current.mask_rle is None else json.dumps(current.mask_rle)
            if rle != old_rle:
                changes["mask_rle"] = (old_rle, rle)
        self._apply(annotation_id, changes, who, decided=True)
        return self.annotation(annotation_id)

    def add_annotation(
        self,
        image: str,
        label: str,
        box: Sequence[float],
        *,
        who: str,
        mask: BoolArray | None = None,
        state: ReviewState = "accepted",
        external_id: str | None = None,
    ) -> Annotation:
        """Add an object a person drew (``source = "human"``, accepted unless ``state`` says otherwise).

        The creation is logged in :meth:`decisions` as field ``created``. ``image`` must be drafted
        (done), so its size is known; ``mask`` is an ``(H, W)`` bool array of that size.
        ``external_id`` names the object in another tool (e.g. ``"labelstudio:<region id>"``), so a
        later import finds it again (:meth:`find_external`).
        """
        if state not in _STATES:
            raise InputError(f"review state must be one of {', '.join(_STATES)}, got {state!r}")
        _check_who(who)
        label = _check_label(label)
        xyxy = _check_box(box)
        row = self.image(image)
        if row["status"] != "done":
            raise InputError(f"image {image!r} is not drafted yet ({row['status']}); run 'promptseg label'")
        rle = None if mask is None else json.dumps(self._mask_rle(image, mask))
        now = _now()
        with self._conn:
            cur = self._conn.execute(
                "INSERT INTO annotations(image_id, label, score, box_xyxy, mask_rle, source, review_state, "
                "decided_by, decided_at, created_at, external_id) "
                "VALUES (?, ?, NULL, ?, ?, 'human', ?, ?, ?, ?, ?) RETURNING id",
                (row["id"], label, json.dumps(xyxy), rle, state, who, now, now, external_id),
            )
            annotation_id = int(cur.fetchone()[0])
            self._log(annotation_id, who, now, {"created": (None, json.dumps({"label": label, "box": xyxy}))})
        return self.annotation(annotation_id)

    def find_external(self, image: str, prefix: str) -> dict[str, int]:
        """The annotations of ``image`` whose ``external_id`` starts with ``prefix``: external id -> id."""
        rows = self._conn.execute(
            "SELECT a.external_id, a.id FROM annotations a JOIN images i ON i.id = a.image_id "
            "WHERE i.path = ? AND a.external_id IS NOT NULL AND substr(a.external_id, 1, ?) = ?",
            (image, len(prefix), prefix),
        )
        return dict(rows.fetchall())

    def image(self, image: str | int) -> dict[str, Any]:
        """One image row, by relative path or by id."""
        column = "id" if isinstance(image, int) else "path"
        cur = self._conn.execute(f"SELECT * FROM images WHERE {column} = ?", (image,))
        row = cur.fetchone()
        if row is None:
            raise InputError(f"image {image!r} is not in this project")
        return dict(zip([d[0] for d in cur.description], row, strict=True))

    def image_path(self, image: str) -> Path:
        """The image file on disk (the project's root joined with the stored relative path)."""
        root = self.root
        if root is None:
            raise ConfigError("this project has no images yet; add_images() first")
        return root / str(self.image(image)["path"])

    def labels(self) -> list[str]:
        """The label names in use (every annotation, any state), sorted."""
        return [r[0] for r in self._conn.execute("SELECT DISTINCT label FROM annotations ORDER BY label")]

    def _mask_rle(self, image: str, mask: BoolArray) -> dict[str, Any]:
        from promptseg.ops.masks import to_rle

        row = self.image(image)
        m = np.asarray(mask)
        if m.dtype != bool or m.shape != (row["height"], row["width"]):
            raise InputError(
                f"mask must be a bool array of the image's size {(row['height'], row['width'])}, "
                f"got {m.dtype} {m.shape}"
            )
        return dict(to_rle(m))

    def revert(self, annotation_id: int, at: str, *, who: str) -> Annotation:
        """Undo one decision: put back the old values of the changes logged for ``annotation_id`` at
        ``at`` (its ``decided_at`` right after that decision). A creation is undone by rejecting the
        object. The undo is itself logged, by ``who``; an annotation put back to ``pending`` is
        undecided again (``decided_by`` None), so thresholds route it as before.

        Raises:
            InputError: no decision on that annotation at ``at``.
        """
        _check_who(who)
        logged = [d for d in self.decisions(annotation_id) if d["at"] == at]
        if not logged:
            raise InputError(f"annotation {annotation_id} has no decision at {at!r} to undo")
        row = self._conn.execute(
            "SELECT review_state, label, box_xyxy, mask_rle FROM annotations WHERE id = ?", (annotation_id,)
        ).fetchone()
        current = dict(zip(("review_state", "label", "box_xyxy", "mask_rle"), row, strict=True))
        changes: dict[str, tuple[Any, Any]] = {}
        for d in logged:
            if d["field"] == "created":
                changes["review_state"] = (current["review_state"], "rejected")
            elif d["field"] in current and d["old"] != current[d["field"]]:
                changes[d["field"]] = (current[d["field"]], d["old"])
        state = changes.get("review_state", (None, current["review_state"]))[1]
        self._apply(
            annotation_id, changes or {"review_state": (state, state)}, who, decided=state != "pending"
        )
        return self.annotation(annotation_id)

    def set_thresholds(self, *, accept: float | None = None, reject: float | None = None) -> int:
        """Change the thresholds and re-route model drafts no human decided; returns how many moved."""
        s = self.settings
        accept = float(s["accept"]) if accept is None else accept
        reject = float(s["reject"]) if reject is None else reject
        _check_thresholds(accept, reject)
        now = _now()
        changed = 0
        with self._conn:
            self._conn.executemany(
                "UPDATE settings SET value = ? WHERE key = ?",
                [(json.dumps(accept), "accept"), (json.dumps(reject), "reject")],
            )
            rows = self._conn.execute(
                "SELECT id, score, review_state FROM annotations WHERE source = 'model' "
                "AND (decided_by IS NULL OR decided_by = ?)",
                (AUTO,),
            ).fetchall()
            for annotation_id, score, old in rows:
                new = _route(score, accept, reject)
                if new == old:
                    continue
                self._conn.execute(
                    "UPDATE annotations SET review_state = ?, decided_by = ?, decided_at = ? WHERE id = ?",
                    (
                        new,
                        None if new == "pending" else AUTO,
                        None if new == "pending" else now,
                        annotation_id,
                    ),
                )
                self._log(annotation_id, AUTO, now, {"review_state": (old, new)})
                changed += 1
        return changed

    def decisions(self, annotation_id: int | None = None) -> list[dict[str, Any]]:
        """The decisions log (of one annotation, if given), oldest first."""
        where, params = (
            ("WHERE annotation_id = ?", (annotation_id,)) if annotation_id is not None else ("", ())
        )
        cur = self._conn.execute(f"SELECT * FROM decisions {where} ORDER BY id", params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur]

    def counts(self) -> dict[str, dict[str, int]]:
        """``{"images": {status: n}, "review": {review_state: n}}``, every key present."""
        images = dict.fromkeys(("pending", "done", "failed"), 0)
        images.update(self._conn.execute("SELECT status, COUNT(*) FROM images GROUP BY status").fetchall())
        review = dict.fromkeys(_STATES, 0)
        rows = self._conn.execute("SELECT review_state, COUNT(*) FROM annotations GROUP BY 1").fetchall()
        review.update(rows)
        return {"images": images, "review": review}

    def _apply(
        self, annotation_id: int, changes: Mapping[str, tuple[Any, Any]], who: str, *, decided: bool
    ) -> None:
        """Write ``changes`` (column -> (old, new)) and who decided (None when not ``decided``), and log
        them, in one transaction."""
        now = _now()
        with self._conn:
            for column, (_, new) in changes.items():
                self._conn.execute(f"UPDATE annotations SET {column} = ? WHERE id = ?", (new, annotation_id))
            self._conn.execute(
                "UPDATE annotations SET decided_by = ?, decided_at = ? WHERE id = ?",
                (who, now, annotation_id) if decided else (None, None, annotation_id),
            )
            self._log(annotation_id, who, now, changes)

    def _log(self, annotation_id: int, who: str, at: str, changes: Mapping[str, tuple[Any, Any]]) -> None:
        self._conn.executemany(
            "INSERT INTO decisions(annotation_id, who, at, field, old, new) VALUES (?, ?, ?, ?, ?, ?)",
            [(annotation_id, who, at, col, old, new) for col, (old, new) in changes.items()],
        )

    def _annotations(self, clause: str, params: Sequence[Any]) -> list[Annotation]:
        cur = self._conn.execute(
            "SELECT a.id, i.path, a.label, a.score, a.box_xyxy, a.mask_rle, a.source, a.review_state, "
            "a.decided_by, a.decided_at, a.model, a.backend, a.prompt, a.external_id "
            f"FROM annotations a JOIN images i ON i.id = a.image_id {clause}",
            params,
        )
        return [
            Annotation(
                r[0],
                r[1],
                r[2],
                r[3],
                tuple(json.loads(r[4])),
                None if r[5] is None else json.loads(r[5]),
                *r[6:],
            )
            for r in cur
        ]


def _migrate(conn: sqlite3.Connection, version: int) -> None:
    """Bring a project of an older schema version up to :data:`SCHEMA_VERSION`, one transaction per step."""
    while version in _MIGRATIONS:
        with conn:
            for statement in _MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute("UPDATE schema_version SET version = ?", (version + 1,))
        version += 1


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    conn.isolation_level = "DEFERRED"  # `with conn:` is one transaction
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable against a killed process
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def _check_thresholds(accept: float, reject: float) -> None:
    if not (0.0 <= reject <= accept <= 1.0):
        raise InputError(f"thresholds need 0 <= reject <= accept <= 1, got reject={reject}, accept={accept}")


def _route(score: float | None, accept: float, reject: float) -> ReviewState:
    if score is None:
        return "pending"
    if score >= accept:
        return "accepted"
    return "rejected" if score < reject else "pending"


def _mask_or_box(ann: Annotation, size: tuple[int, int]) -> BoolArray:
    """The annotation's mask, or its box filled (rounded outwards, clipped) when it has none."""
    from promptseg.ops.masks import from_rle
    from promptseg.refine._common import box_regions

    if ann.mask_rle is not None:
        return from_rle(ann.mask_rle)
    x1, y1, x2, y2 = box_regions(np.array([ann.box_xyxy], np.float64), size)[0].tolist()
    mask = np.zeros(size, bool)
    mask[y1:y2, x1:x2] = True
    return mask


def _check_who(who: str) -> None:
    if not isinstance(who, str) or not who.strip():
        raise InputError("a review decision needs who made it (a user name)")


def _check_label(label: str) -> str:
    if not isinstance(label, str) or not label.strip():
        raise InputError(f"a label must be a non-empty name, got {label!r}")
    return label.strip()


def _check_box(box: Sequence[float]) -> list[float]:
    try:
        xyxy = [float(v) for v in box]
    except (TypeError, ValueError):
        raise InputError(f"box must be four numbers [x1, y1, x2, y2], got {box!r}") from None
    if len(xyxy) != 4 or not all(np.isfinite(xyxy)) or not (xyxy[0] < xyxy[2] and xyxy[1] < xyxy[3]):
        raise InputError(f"box must be [x1, y1, x2, y2] with x1 < x2 and y1 < y2, got {list(box)}")
    return [round(v, 2) for v in xyxy]
