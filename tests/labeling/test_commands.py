"""The labelling commands from the shell: `promptseg review` and `promptseg labelstudio ...`."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from promptseg.labeling import Project
from tests.labeling.test_labelstudio import WHO, check_reviewed, person_reviews


def _promptseg(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "promptseg", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _serving(*args: str, ready: str) -> Iterator[str]:
    """Run a serving command on a free loopback port until ``ready`` answers 200; Ctrl-C it after."""
    port = _free_port()
    command = [sys.executable, "-m", "promptseg", *args, "--port", str(port)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                if httpx.get(url + ready, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not come up in 60 s"
            time.sleep(0.2)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


def test_review_command_serves_the_page_and_records_the_user(drafted: Project) -> None:
    pending = drafted.queue()[0]
    with _serving("review", str(drafted.path), "--user", "ana", "--no-browser", ready="/api/summary") as url:
        assert "promptseg review" in httpx.get(url + "/").text
        summary = httpx.get(url + "/api/summary").json()
        assert summary["user"] == "ana" and summary["counts"] == drafted.counts()
        decided = httpx.post(url + f"/api/annotations/{pending.id}/decision", json={"state": "rejected"})
        assert decided.status_code == 200, decided.text
    after = drafted.annotation(pending.id)
    assert (after.review_state, after.decided_by) == ("rejected", "ana")


def test_review_command_refuses_a_folder_that_is_not_a_project(tmp_path: Path) -> None:
    done = _promptseg("review", str(tmp_path), "--no-browser")
    assert done.returncode == 2 and "not a promptseg project" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_labelstudio_export_then_import_from_the_shell(drafted: Project, tmp_path: Path) -> None:
    out = tmp_path / "ls"
    exported = _promptseg("labelstudio", "export", str(drafted.path), str(out))
    assert exported.returncode == 0, exported.stderr
    assert "wrote 3 tasks" in exported.stdout and (out / "config.xml").is_file()
    export, done = person_reviews(drafted, json.loads((out / "tasks.json").read_text()))
    before = {a.id: a for a in drafted.annotations()}
    unreviewed = set(export[0]["data"]["promptseg_ids"])

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"data": {"image": 3}}]))
    refused = _promptseg("labelstudio", "import", str(drafted.path), str(bad))
    assert refused.returncode == 2 and str(bad) in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert drafted.annotations() == list(before.values())  # a bad file writes nothing

    path = tmp_path / "export.json"
    path.write_text(json.dumps(export))
    imported = _promptseg("labelstudio", "import", str(drafted.path), str(path))
    assert imported.returncode == 0, imported.stderr
    assert len(imported.stdout.strip().splitlines()) == 1 and "rejected" in imported.stdout
    check_reviewed(drafted, before, done, unreviewed, WHO)


def test_labelstudio_ml_backend_command_answers_health(offline_env: Path) -> None:
    with _serving("labelstudio", "ml-backend", ready="/health") as url:
        health = httpx.get(url + "/health").json()
        assert health["status"] == "UP" and health["backend"] == "offline"
        setup = httpx.post(url + "/setup", json={"project": "1.0", "schema": "<View/>"}).json()
        assert setup["model_version"] == health["model_version"]
        bad = httpx.post(url + "/predict", json={"tasks": "nope"})
        assert bad.status_code == 422 and bad.json()["type"] and "tasks" in bad.json()["error"]
