"""Label Studio both ways against a real Label Studio server on loopback (SQLite, fresh data folder).

The server is started once per test session from ``$PROMPTSEG_LABEL_STUDIO`` (the ``label-studio``
executable), else ``<repo>/.venv-labelstudio/bin/label-studio``; without either the tests are skipped
(failed under ``PROMPTSEG_STRICT_TESTS=1``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from promptseg.labeling import Project
from promptseg.labeling.labelstudio import create_ml_backend_app, export_tasks, import_reviews
from tests.conftest import REPO, missing, need
from tests.labeling.test_labelstudio import check_reviewed, person_reviews

pytestmark = pytest.mark.slow

TOKEN = "promptseg-test-token-0123456789"
EMAIL = "test@example.com"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """An httpx client on a fresh Label Studio, authenticated with a legacy API token."""
    httpx = need("httpx", extra="llm")
    exe = os.environ.get("PROMPTSEG_LABEL_STUDIO") or str(REPO / ".venv-labelstudio" / "bin" / "label-studio")
    if not Path(exe).is_file():
        missing(
            f"Label Studio is not installed at {exe}: run 'make labelstudio' or set PROMPTSEG_LABEL_STUDIO"
        )
    data = tmp_path_factory.mktemp("label-studio")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("HOST", "LABEL_STUDIO_HOST")}
    env.update(
        LABEL_STUDIO_USERNAME=EMAIL,
        LABEL_STUDIO_PASSWORD="secret123",
        LABEL_STUDIO_USER_TOKEN=TOKEN,
        LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
        LABEL_STUDIO_BASE_DATA_DIR=str(data),
        # the ML backend under test listens on loopback, which Label Studio's SSRF guard refuses
        LABEL_STUDIO_ML_BLOCK_LOCAL_IP="false",
        LABEL_STUDIO_USE_DEFAULT_BANNED_SUBNETS="false",
        COLLECT_ANALYTICS="false",
    )
    log = (data / "server.log").open("wb")
    proc = subprocess.Popen(
        [exe, "start", "--no-browser", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data),
         "--internal-host", "127.0.0.1"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        url = None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(
                    f"Label Studio exited with {proc.returncode}: {(data / 'server.log').read_text()[-2000:]}"
                )
            # it moves to the next port when the asked one is taken, and says so
            found = re.search(
                r"Starting development server at (http://[\d.]+:\d+)/", (data / "server.log").read_text()
            )
            if found:
                try:
                    if httpx.get(found.group(1) + "/health", timeout=2).status_code == 200:
                        url = found.group(1)
                        break
                except httpx.HTTPError:
                    pass
            time.sleep(0.5)
        if url is None:
            pytest.fail(f"Label Studio did not answer in 180 s: {(data / 'server.log').read_text()[-2000:]}")
        with httpx.Client(base_url=url, headers={"Authorization": f"Token {TOKEN}"}, timeout=120) as client:
            yield client
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _ok(reply: Any, status: int = 200) -> Any:
    assert reply.status_code == status, f"{reply.request.method} {reply.request.url}: {reply.text[:500]}"
    return reply.json()


def _create_project(ls: Any, title: str, config: str, tasks: list[dict[str, Any]]) -> tuple[int, list[int]]:
    pid = _ok(ls.post("/api/projects", json={"title": title, "label_config": config}), 201)["id"]
    imported = _ok(ls.post(f"/api/projects/{pid}/import", json=tasks), 201)
    assert imported["task_count"] == len(tasks)
    listed = _ok(ls.get("/api/tasks", params={"project": pid, "page_size": 100}))["tasks"]
    return pid, sorted(t["id"] for t in listed)


def _predictions(ls: Any, task_id: int) -> list[dict[str, Any]]:
    return list(_ok(ls.get("/api/predictions/", params={"task": task_id})))


def test_review_round_trip_through_label_studio(label_studio: Any, drafted: Project, tmp_path: Path) -> None:
    ls = label_studio
    tasks_path, config_path = export_tasks(drafted, tmp_path / "ls")
    tasks = json.loads(tasks_path.read_text())
    pid, task_ids = _create_project(ls, "promptseg review", config_path.read_text(), tasks)

    # Label Studio stored our pre-annotations as they are
    stored = []
    for tid, ours in zip(task_ids, tasks, strict=True):
        task = _ok(ls.get(f"/api/tasks/{tid}/"))
        assert task["data"] == ours["data"]
        preds = _predictions(ls, tid)
        assert [p["result"] for p in preds] == [p["result"] for p in ours.get("predictions", [])]
        stored.append({"id": tid, "data": task["data"], "predictions": preds})

    # the person reviews through the API: accept, move, relabel, delete, add a rectangle and a brush mask
    reviewed, done = person_reviews(drafted, stored)
    for task in reviewed:
        for ann in task["annotations"]:
            if not ann["was_cancelled"]:
                _ok(ls.post(f"/api/tasks/{task['id']}/annotations/", json={"result": ann["result"]}), 201)
    user = _ok(ls.get("/api/current-user/whoami"))

    export = ls.get(
        f"/api/projects/{pid}/export", params={"exportType": "JSON", "download_all_tasks": "true"}
    )
    export_path = tmp_path / "export.json"
    export_path.write_bytes(export.content)
    assert len(_ok(export)) == 3

    before = {a.id: a for a in drafted.annotations()}
    unreviewed = set(tasks[0]["data"]["promptseg_ids"])
    summary = import_reviews(drafted, export_path)
    who = f"labelstudio:{user['id']}"
    after = check_reviewed(drafted, before, done, unreviewed, who)
    assert summary.reviewed == 2 and summary.rejected == 1 and summary.corrected == 2
    log = drafted.decisions()
    assert (
        import_reviews(drafted, export_path).unchanged == summary.accepted + summary.rejected + summary.added
    )
    assert drafted.decisions() == log

    # the reviewed dataset, as COCO, holds the corrections
    from promptseg.datasets import export_coco

    coco_mask = need("pycocotools.mask", extra="dev")
    coco_api = need("pycocotools.coco", extra="dev")
    (coco_path,) = export_coco(drafted.to_dataset(("accepted",)), tmp_path / "coco")
    coco = coco_api.COCO(str(coco_path))
    by_box = {tuple(np.round(a["bbox"], 2)): a for a in coco.loadAnns(coco.getAnnIds())}
    _, (x1, y1, x2, y2) = done["moved"]
    assert (x1, y1, x2 - x1, y2 - y1) in {tuple(np.round(b, 2)) for b in by_box}
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    relabelled = after[done["relabelled"]]
    x1, y1, x2, y2 = relabelled.box_xyxy
    assert names[by_box[tuple(np.round((x1, y1, x2 - x1, y2 - y1), 2))]["category_id"]] == "chair"
    assert not any(
        tuple(np.round(b, 2)) == tuple(np.round(after[done["deleted"]].box_xyxy, 2)) for b in by_box
    )
    images = {img["file_name"]: img["id"] for img in coco.loadImgs(coco.getImgIds())}
    for image, mask in done["new_masks"]:
        (ann,) = [
            a for a in coco.loadAnns(coco.getAnnIds(imgIds=[images[image]])) if a["bbox"] == [30, 40, 40, 20]
        ]
        assert names[ann["category_id"]] == "person"
        # the brush mask drawn in Label Studio, exactly (the box-only new cup beside it gets its box)
        np.testing.assert_array_equal(coco_mask.decode(ann["segmentation"]).astype(bool), mask)
    assert len(coco.getAnnIds()) == len([a for a in after.values() if a.review_state == "accepted"])


def test_label_studio_asks_our_ml_backend_for_predictions(
    label_studio: Any, drafted: Project, tmp_path: Path
) -> None:
    need("fastapi", extra="server")
    uvicorn = need("uvicorn", extra="server")
    ls = label_studio
    root = drafted.root
    assert root is not None
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_ml_backend_app(image_root=root), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server.started
        _, config_path = export_tasks(drafted, tmp_path / "ls")
        config = config_path.read_text()
        tasks = [
            {"data": {"image": "/data/local-files/?d=" + name}} for name in ("astronaut.png", "coffee.png")
        ]
        pid, task_ids = _create_project(ls, "promptseg ml backend", config, tasks)
        backend = _ok(
            ls.post(
                "/api/ml", json={"url": f"http://127.0.0.1:{port}", "project": pid, "title": "promptseg"}
            ),
            201,
        )
        assert backend["state"] == "CO", backend  # connected: /health and /setup answered
        action = ls.post(
            "/api/dm/actions",
            params={"id": "retrieve_tasks_predictions", "project": pid},
            json={"selectedItems": {"all": True, "excluded": []}},
        )
        _ok(action)
        labels = set(re.findall(r'<Label value="([^"]+)"', config))
        for tid in task_ids:
            (pred,) = _predictions(ls, tid)
            assert pred["model_version"] == backend["model_version"] and pred["model_version"].startswith(
                "promptseg"
            )
            result = pred["result"]
            assert {r["type"] for r in result} == {"rectanglelabels", "brushlabels"}
            assert all(r["from_name"] in ("label", "mask") and r["to_name"] == "image" for r in result)
            assert {r["value"][r["type"]][0] for r in result} <= labels
        first = _predictions(ls, task_ids[0])[0]["result"]
        person = [r for r in first if r["value"].get("rectanglelabels") == ["person"]]
        assert person, "the astronaut was not found"
        brush = next(r for r in first if r["type"] == "brushlabels" and r["id"] == person[0]["id"] + "m")
        from promptseg.datasets.labelstudio import decode_brush_rle

        mask = decode_brush_rle(brush["value"]["rle"], (brush["original_height"], brush["original_width"]))
        assert mask.any()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
