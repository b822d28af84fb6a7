"""Labelling projects: real photos, the real offline backend, a real SQLite file, real kills."""

from __future__ import annotations

import io
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from promptseg.errors import ConfigError, InputError
from promptseg.labeling import Project, label, run_label

PROMPT = "people, chairs and cats"


@pytest.fixture
def photos(tmp_path: Path, voc: dict[str, Any], skimage_data: Path) -> Path:
    """12 image files (6 VOC copies, 5 skimage photos, 1 corrupt JPEG) and a text file, in tmp_path/photos."""
    folder = tmp_path / "photos"
    (folder / "more").mkdir(parents=True)
    for i in (1, 2, 3, 10, 11, 12):
        shutil.copy(voc["path"], folder / f"voc{i}.jpg")
    for name in ("astronaut", "chelsea", "coffee", "camera"):
        shutil.copy(skimage_data / f"{name}.png", folder / f"{name}.png")
    shutil.copy(skimage_data / "motorcycle_left.png", folder / "more" / "motorcycle.png")
    (folder / "broken.jpg").write_bytes(voc["path"].read_bytes()[:10])  # header only: truncated
    (folder / "notes.txt").write_text("not an image\n")
    return folder


def _db_rows(project: Path) -> dict[str, int]:
    """Annotations per image, straight from the file."""
    with sqlite3.connect(project / "project.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = conn.execute(
            "SELECT i.path, COUNT(a.id) FROM images i LEFT JOIN annotations a ON a.image_id = i.id "
            "WHERE i.status = 'done' GROUP BY i.path"
        ).fetchall()
    conn.close()
    return dict(rows)


def test_label_everything_once(photos: Path, tmp_path: Path, offline_env: Path) -> None:
    stream = io.StringIO()
    summary = label(photos, PROMPT, tmp_path / "proj", workers=2, stream=stream)
    assert summary.images_done == 11 and summary.objects > 11 and not summary.interrupted
    assert [path for path, _ in summary.failures] == ["broken.jpg"]
    assert "ImageLoadError" in summary.failures[0][1] and "truncated" in summary.failures[0][1]
    assert "ETA" in stream.getvalue() and "11 images labelled" in str(summary)
    with Project.open(tmp_path / "proj") as proj:
        paths = [row["path"] for row in proj.images()]
        assert paths[:4] == ["astronaut.png", "broken.jpg", "camera.png", "chelsea.png"]
        assert paths[-6:] == ["voc1.jpg", "voc2.jpg", "voc3.jpg", "voc10.jpg", "voc11.jpg", "voc12.jpg"]
        assert "more/motorcycle.png" in paths and "notes.txt" not in paths
        voc_row = next(row for row in proj.images() if row["path"] == "voc1.jpg")
        assert (voc_row["width"], voc_row["height"], len(voc_row["sha256"])) == (500, 375, 64)
        counts = proj.counts()
        assert counts["images"] == {"pending": 0, "done": 11, "failed": 1}
        assert sum(counts["review"].values()) == summary.objects
        first = proj.annotations("voc1.jpg")
        assert first and first[0].mask_rle is not None and first[0].prompt == PROMPT
        assert first[0].backend == "offline" and first[0].model and first[0].source == "model"
        assert proj.pending() == ["broken.jpg"]
    before = _db_rows(tmp_path / "proj")
    again = label(photos, PROMPT, tmp_path / "proj", workers=1, progress=False)
    assert again.images_done == 0 and again.already_done == 11 and len(again.failures) == 1
    assert _db_rows(tmp_path / "proj") == before
    with pytest.raises(ConfigError, match="new project folder"):
        label(photos, "dogs", tmp_path / "proj", progress=False)


def test_run_label_exit_status(photos: Path, tmp_path: Path, offline_env: Path, capsys: Any) -> None:
    (photos / "broken.jpg").unlink()
    options = {"dir": photos, "prompt": "cats", "backend": "offline", "workers": 1, "quiet": True}
    options.update(accept=0.8, reject=0.3)
    assert run_label(SimpleNamespace(project=tmp_path / "p", **options)) == 0
    assert "11 images labelled" in capsys.readouterr().out
    (photos / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    assert run_label(SimpleNamespace(project=tmp_path / "p", **options)) == 1
    assert "failed: bad.png: ImageLoadError" in capsys.readouterr().out


def test_thresholds_route_drafts(photos: Path, tmp_path: Path, offline_backend: Any) -> None:
    from promptseg._segment import segment

    det = segment(photos / "voc1.jpg", "people and chairs", backend=offline_backend)
    assert det.scores is not None
    scores = sorted(float(s) for s in det.scores)
    assert scores[0] < 0.5 < scores[-1]
    thresholds = {"accept": 0.7, "reject": 0.5}
    new = Project.create(tmp_path / "proj", prompt="people and chairs", backend="offline", **thresholds)
    with new as p:
        p.add_images(photos)
        assert p.record_result("voc1.jpg", det, 0.1)
        assert not p.record_result("voc1.jpg", det, 0.1)  # never twice
        with pytest.raises(InputError, match="not in this project"):
            p.record_result("nope.jpg", det, 0.1)
        for a in p.annotations():
            assert a.score is not None
            expected = "accepted" if a.score >= 0.7 else "rejected" if a.score < 0.5 else "pending"
            assert a.review_state == expected
            assert a.decided_by == (None if expected == "pending" else "auto:threshold")
        queue = p.queue()
        assert [a.score for a in queue] == sorted(s for s in scores if 0.5 <= s < 0.7)
        human = queue[0]
        p.decide(human.id, "rejected", who="ana")
        moved = p.set_thresholds(accept=0.95, reject=0.0)
        assert moved > 0
        assert all(a.review_state == "pending" for a in p.annotations() if a.id != human.id)
        assert p.annotation(human.id).review_state == "rejected"  # a human decision stays
        assert p.settings["accept"] == 0.95
        log = p.decisions()
        assert {row["who"] for row in log} == {"ana", "auto:threshold"}
        with pytest.raises(InputError, match="reject <= accept"):
            p.set_thresholds(accept=0.2, reject=0.4)
    with pytest.raises(ConfigError, match="already holds"):
        Project.create(tmp_path / "proj", prompt="x", backend="offline")


def test_decide_logs_who_and_when(photos: Path, tmp_path: Path, offline_backend: Any) -> None:
    from promptseg._segment import segment

    det = segment(photos / "voc1.jpg", "people", backend=offline_backend)
    with Project.create(tmp_path / "proj", prompt="people", backend="offline") as p:
        p.add_images(photos)
        p.record_result("voc1.jpg", det, 0.1)
        target = p.annotations()[0]
        p.decide(target.id, "accepted", who="bo", label="waiter", box=[1, 2, 30, 40])
        after = p.annotation(target.id)
        assert (after.review_state, after.label) == ("accepted", "waiter")
        assert after.box_xyxy == (1.0, 2.0, 30.0, 40.0)
        assert after.decided_by == "bo" and after.decided_at
        log = {row["field"]: row for row in p.decisions(target.id)}
        assert log["label"]["old"] == target.label and log["label"]["new"] == "waiter"
        assert log["review_state"]["new"] == "accepted" and log["box_xyxy"]["who"] == "bo"
        assert all(row["at"] for row in log.values())
        with pytest.raises(InputError, match="review state"):
            p.decide(target.id, "maybe", who="bo")  # type: ignore[arg-type]
        with pytest.raises(InputError, match="who"):
            p.decide(target.id, "accepted", who=" ")
        with pytest.raises(InputError, match="x1 < x2"):
            p.decide(target.id, "accepted", who="bo", box=[5, 5, 1, 1])
    with Project.open(tmp_path / "proj") as again:  # decisions survive a reopen
        assert len(again.decisions(target.id)) == 3


def test_a_person_adds_objects_and_corrects_masks(photos: Path, tmp_path: Path, offline_backend: Any) -> None:
    from promptseg._segment import segment
    from promptseg.ops.masks import from_rle

    det = segment(photos / "voc1.jpg", "people", backend=offline_backend)
    with Project.create(tmp_path / "proj", prompt="people", backend="offline") as p:
        p.add_images(photos)
        p.record_result("voc1.jpg", det, 0.1)
        h, w = det.image_size
        missed = np.zeros((h, w), bool)
        missed[40:90, 300:340] = True
        added = p.add_annotation("voc1.jpg", " bottle ", [300, 40, 340, 90], who="ana", mask=missed)
        assert (added.source, added.review_state, added.label, added.score) == (
            "human",
            "accepted",
            "bottle",
            None,
        )
        assert added.decided_by == "ana" and added.box_xyxy == (300.0, 40.0, 340.0, 90.0)
        assert added.mask_rle is not None and (from_rle(added.mask_rle) == missed).all()
        assert [row["field"] for row in p.decisions(added.id)] == ["created"]
        assert p.labels() == ["bottle", "person"]

        target = p.annotations()[0]
        assert target.mask_rle is not None
        fixed = from_rle(target.mask_rle).copy()
        fixed[: h // 2] = False
        after = p.decide(target.id, "accepted", who="bo", mask=fixed)
        assert (from_rle(after.mask_rle) == fixed).all()  # type: ignore[arg-type]
        log = {row["field"]: row for row in p.decisions(target.id)}
        assert set(log) == {"review_state", "mask_rle"} and log["mask_rle"]["old"] is not None
        p.decide(target.id, "accepted", who="bo", mask=fixed)  # the same mask again is no mask change
        assert [row["field"] for row in p.decisions(target.id)].count("mask_rle") == 1

        boxed = p.add_annotation("voc1.jpg", "cup", [10.5, 10, 20, 30], who="ana")  # a box, no mask
        dataset = p.to_dataset(["accepted"])
        item = next(i for i in dataset.items if i.path == "voc1.jpg")
        det = item.detections
        ids = det.attributes["annotation_id"].tolist()
        assert added.id in ids and target.id in ids and boxed.id in ids
        assert det.attributes["source"][ids.index(added.id)] == "human"
        assert det.masks is not None and (det.masks[ids.index(added.id)] == missed).all()  # kept exactly
        assert det.attributes["mask_from_box"].tolist() == [i == boxed.id for i in ids]
        filled = np.zeros((h, w), bool)
        filled[10:30, 10:20] = True  # rounded outwards
        assert (det.masks[ids.index(boxed.id)] == filled).all()

        with pytest.raises(InputError, match="bool array of the image's size"):
            p.decide(target.id, "accepted", who="bo", mask=np.ones((3, 3), bool))
        with pytest.raises(InputError, match="not drafted yet"):
            p.add_annotation("voc2.jpg", "person", [0, 0, 5, 5], who="ana")
        with pytest.raises(InputError, match="non-empty name"):
            p.add_annotation("voc1.jpg", "  ", [0, 0, 5, 5], who="ana")
        with pytest.raises(InputError, match="four numbers"):
            p.add_annotation("voc1.jpg", "cup", ["a", 0, 5, 5], who="ana")
        with pytest.raises(InputError, match="not in this project"):
            p.add_annotation("nope.jpg", "cup", [0, 0, 5, 5], who="ana")


_SLOW_LABEL = """
import sys, time
import promptseg.labeling._run as run
draft = run._draft
run._draft = lambda image: (time.sleep(0.25), draft(image))[1]  # slow enough to be killed midway
s = run.label(sys.argv[1], sys.argv[2], sys.argv[3], workers=1, progress=False)
print("INTERRUPTED" if s.interrupted else "FINISHED", s.images_done)
"""


def _wait_for_done(
    proc: subprocess.Popen[Any], project: Path, n: int, *, timeout: float, each: Any = None
) -> None:
    """Poll the project file until ``n`` images are done, the run still going (``each`` called per poll)."""
    deadline, done = time.monotonic() + timeout, 0
    while done < n and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
        if each is not None:
            each()
        if (project / "project.db").exists():
            try:
                with sqlite3.connect(project / "project.db", timeout=5) as conn:
                    done = conn.execute("SELECT COUNT(*) FROM images WHERE status = 'done'").fetchone()[0]
                conn.close()
            except sqlite3.OperationalError:  # schema not written yet
                pass
    assert done >= n and proc.poll() is None, f"the run should still be going after {n} images"


def _run_and_stop(photos: Path, project: Path, sig: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-c", textwrap.dedent(_SLOW_LABEL), str(photos), PROMPT, str(project)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_done(proc, project, 1, timeout=30)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill", "ctrl-c"])
def test_resume_after_stop(photos: Path, tmp_path: Path, offline_env: Path, sig: int) -> None:
    clean = label(photos, PROMPT, tmp_path / "clean", workers=1, progress=False)
    stopped = _run_and_stop(photos, tmp_path / "stopped", sig)
    if sig == signal.SIGKILL:
        assert stopped.returncode == -signal.SIGKILL
    else:
        assert stopped.returncode == 0 and stopped.stdout.startswith("INTERRUPTED"), stopped.stderr
    partial = _db_rows(tmp_path / "stopped")
    assert 1 <= len(partial) < 11
    resumed = label(photos, PROMPT, tmp_path / "stopped", workers=1, progress=False)
    assert resumed.images_done == 11 - len(partial) and resumed.already_done == len(partial)
    assert _db_rows(tmp_path / "stopped") == _db_rows(tmp_path / "clean")
    with Project.open(tmp_path / "stopped") as proj:
        assert proj.counts() == Project.open(tmp_path / "clean").counts()
        assert len({(a.image, a.box_xyxy, a.label) for a in proj.annotations()}) == clean.objects
        failed = [row for row in proj.images() if row["status"] == "failed"]
        assert [(row["path"], "ImageLoadError" in row["error"]) for row in failed] == [("broken.jpg", True)]


def test_kill_a_parallel_run_and_resume(photos: Path, tmp_path: Path, offline_env: Path) -> None:
    """SIGKILL the parent of a 2-worker run midway: its workers leave too, and a rerun finishes the job.

    48 images, 4 copies of each of the 11 readable photos plus 4 truncated ones: identical files give
    identical drafts, so any image stored twice, or half-stored, shows as a copy whose annotation count
    differs from its siblings'.
    """
    import psutil

    many = tmp_path / "many"
    many.mkdir()
    for path in sorted(p for p in photos.rglob("*") if p.suffix in (".jpg", ".png")):
        for k in range(4):
            shutil.copy(path, many / f"{path.stem}-{k}{path.suffix}")
    project = tmp_path / "proj"
    code = "import sys; from promptseg.labeling import label; label(*sys.argv[1:4], workers=2)"
    proc = subprocess.Popen([sys.executable, "-c", code, str(many), PROMPT, str(project)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    workers: list[Any] = []

    def watch() -> None:
        workers[:] = psutil.Process(proc.pid).children(recursive=True) or workers

    _wait_for_done(proc, project, 2, timeout=60, each=watch)
    assert len(workers) >= 2
    proc.kill()
    proc.wait(timeout=10)
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, f"workers outlived their killed parent: {alive}"
    partial = _db_rows(project)
    assert 2 <= len(partial) < 44
    resumed = label(many, PROMPT, project, workers=2, progress=False)
    assert resumed.already_done == len(partial) and resumed.images_done == 44 - len(partial)
    assert len(resumed.failures) == 4 and all(path.startswith("broken-") for path, _ in resumed.failures)
    rows = _db_rows(project)
    assert len(rows) == 44
    by_photo: dict[str, set[int]] = {}
    for path, count in rows.items():
        by_photo.setdefault(path.rsplit("-", 1)[0], set()).add(count)
    assert len(by_photo) == 11 and all(len(counts) == 1 for counts in by_photo.values()), by_photo


def test_the_label_command(photos: Path, tmp_path: Path, offline_env: Path) -> None:
    """`promptseg label` from the shell: a summary, a failure and its reason, a rerun that adds nothing."""
    project = tmp_path / "cli-project"
    command = [sys.executable, "-m", "promptseg", "label", str(photos), "--prompt", "people", "--project",
               str(project), "--workers", "1", "-q"]  # fmt: skip
    env = {**os.environ, "PROMPTSEG_MODELS": str(offline_env)}
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert first.returncode == 1, first.stderr  # the truncated JPEG failed, the rest were labelled
    assert (
        "images labelled" in first.stdout and "failed:" in first.stdout and "ImageLoadError" in first.stdout
    )
    before = _db_rows(project)
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert again.returncode == 1 and "0 images labelled" in again.stdout
    assert _db_rows(project) == before


def test_a_reviewed_project_exports_to_coco_and_yolo_with_the_corrections(
    photos: Path, tmp_path: Path, offline_env: Path
) -> None:
    """label -> a person's corrections -> COCO (read back by pycocotools) and YOLO, corrections kept."""
    from pycocotools.coco import COCO

    from promptseg.datasets import import_yolo
    from promptseg.ops.masks import from_rle

    project = tmp_path / "proj"
    label(photos, PROMPT, project, workers=1, progress=False)
    with Project.open(project) as proj:
        drafts = [a for a in proj.annotations() if a.image == "voc1.jpg"]
        fixed, dropped = drafts[0], drafts[1]
        proj.decide(fixed.id, "accepted", who="ana", label="diner")  # relabelled by a person
        proj.decide(dropped.id, "rejected", who="ana")
        accepted = [a for a in proj.annotations() if a.review_state == "accepted"]
    env = {**os.environ, "PROMPTSEG_MODELS": str(offline_env)}
    for fmt in ("coco", "yolo"):
        out = tmp_path / fmt
        proc = subprocess.run(
            [sys.executable, "-m", "promptseg", "export", str(project), "--format", fmt, "--out", str(out)],
            capture_output=True, text=True, env=env, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert f"{len(accepted)} objects" in proc.stdout
    coco = COCO(str(tmp_path / "coco" / "annotations.json"))
    assert len(coco.getAnnIds()) == len(accepted)
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    voc1 = next(i for i in coco.loadImgs(coco.getImgIds()) if i["file_name"] == "voc1.jpg")
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[voc1["id"]]))
    assert "diner" in [names[a["category_id"]] for a in anns]
    assert len(anns) == len([a for a in accepted if a.image == "voc1.jpg"])
    diner = next(a for a in anns if names[a["category_id"]] == "diner")
    assert fixed.mask_rle is not None
    assert (coco.annToMask(diner).astype(bool) == from_rle(fixed.mask_rle)).all()  # the mask, exactly
    yolo = import_yolo(tmp_path / "yolo")
    assert "diner" in yolo.categories
    assert sum(len(item.detections) for item in yolo.items) == len(accepted)
