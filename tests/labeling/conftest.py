"""A drafted labelling project of real photos, shared by the review-page and Label Studio tests."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import pytest

from promptseg.labeling import Project, label

DRAFT_PROMPT = "people, chairs and cups"


@pytest.fixture(scope="session")
def _drafted_once(
    tmp_path_factory: pytest.TempPathFactory, voc: dict[str, Any], skimage_data: Path, models_dir: Path
) -> Path:
    """Drafted once per run: the VOC cafeteria photo, skimage's coffee cup and astronaut, offline backend."""
    base = tmp_path_factory.mktemp("drafted")
    photos = base / "photos"
    photos.mkdir()
    shutil.copy(voc["path"], photos / "cafeteria.jpg")
    shutil.copy(skimage_data / "coffee.png", photos / "coffee.png")
    shutil.copy(skimage_data / "astronaut.png", photos / "astronaut.png")
    mp = pytest.MonkeyPatch()
    mp.setenv("PROMPTSEG_MODELS", str(models_dir))
    mp.setenv("PROMPTSEG_OFFLINE", "1")
    try:
        summary = label(photos, DRAFT_PROMPT, base / "proj", workers=1, stream=io.StringIO())
    finally:
        mp.undo()
    assert summary.images_done == 3 and summary.objects >= 5, str(summary)
    return base


@pytest.fixture
def drafted(_drafted_once: Path, tmp_path: Path) -> Project:
    """A private copy of the drafted project (images + project.db), opened; closed after the test.

    Its root is ``tmp_path/photos``; drafts are routed with the default thresholds (accept >= 0.8,
    reject < 0.3), so the cafeteria photo leaves several people and chairs pending.
    """
    shutil.copytree(_drafted_once / "photos", tmp_path / "photos")
    shutil.copytree(_drafted_once / "proj", tmp_path / "proj")
    with Project(tmp_path / "proj", _connect_copy(tmp_path / "proj", tmp_path / "photos")) as project:
        yield project


def _connect_copy(proj: Path, photos: Path) -> Any:
    """Open the copied database and point its image root at the copied photos."""
    import json

    from promptseg.labeling._project import DB_NAME, _connect

    conn = _connect(proj / DB_NAME)
    with conn:
        conn.execute("UPDATE settings SET value = ? WHERE key = 'root'", (json.dumps(str(photos.resolve())),))
    return conn
