"""Label Studio both ways, no server: config, export, a person's edits, import, idempotence, bad files."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from promptseg.datasets.labelstudio import encode_brush_rle
from promptseg.errors import FormatError, InputError
from promptseg.labeling import Project
from promptseg.labeling.labelstudio import export_tasks, import_reviews, labeling_config
from promptseg.ops.masks import from_rle
from tests.conftest import need

WHO = "labelstudio:7"


def _tags(xml: str) -> dict[str, ET.Element]:
    return {str(e.get("name")): e for e in ET.fromstring(xml).iter() if e.get("name")}


@pytest.mark.parametrize(
    ("masks", "mask_tag"),
    [
        ("brush", "BrushLabels"),  # exact RLE masks
        ("polygon", "PolygonLabels"),  # one polygon per connected part
        (None, None),  # boxes only
    ],
)
def test_labeling_config_parses_and_escapes(masks: Any, mask_tag: str | None) -> None:
    xml = labeling_config(["person", 'cup "big" & <small>', "person"], masks=masks)
    tags = _tags(xml)
    assert tags["image"].tag == "Image" and tags["image"].get("value") == "$image"
    assert tags["label"].tag == "RectangleLabels" and tags["label"].get("toName") == "image"
    assert [lab.get("value") for lab in tags["label"].iter("Label")] == ["person", 'cup "big" & <small>']
    if mask_tag is None:
        assert "mask" not in tags
    else:
        assert tags["mask"].tag == mask_tag and tags["mask"].get("toName") == "image"
        assert [lab.get("value") for lab in tags["mask"].iter("Label")] == ["person", 'cup "big" & <small>']


def test_labeling_config_needs_labels() -> None:
    with pytest.raises(InputError, match="at least one label"):
        labeling_config([" "])


@pytest.mark.parametrize("masks", ["brush", "polygon", None])
def test_export_tasks_matches_config_and_project(drafted: Project, tmp_path: Path, masks: Any) -> None:
    tasks_path, config_path = export_tasks(drafted, tmp_path / "ls", masks=masks, image_prefix="/img/")
    tasks = json.loads(tasks_path.read_text())
    tags = _tags(config_path.read_text())
    config_labels = {lab.get("value") for lab in tags["label"].iter("Label")}
    offered = [a for a in drafted.annotations() if a.review_state in ("accepted", "pending")]
    assert len(tasks) == 3
    seen = []
    for task in tasks:
        data = task["data"]
        assert data["image"] == "/img/" + data["promptseg_image"]
        ids = [a.id for a in offered if a.image == data["promptseg_image"]]
        assert data["promptseg_ids"] == ids
        if not ids:
            assert "predictions" not in task
            continue
        (prediction,) = task["predictions"]
        assert prediction["model_version"] and 0 <= prediction["score"] <= 1
        rects = [r for r in prediction["result"] if r["type"] == "rectanglelabels"]
        assert [r["id"] for r in rects] == [f"ps{i}" for i in ids]
        for r in prediction["result"]:
            assert r["to_name"] == "image" and tags[r["from_name"]].get("toName") == "image"
            assert r["value"][r["type"]][0] in config_labels
            expected = {"brush": "brushlabels", "polygon": "polygonlabels"}.get(
                masks or "", "rectanglelabels"
            )
            assert r["type"] in ("rectanglelabels", expected)
        seen += ids
    assert sorted(seen) == sorted(a.id for a in offered)


def _box_value(box: list[float], w: int, h: int) -> dict[str, Any]:
    x1, y1, x2, y2 = box
    return {"x": x1 / w * 100, "y": y1 / h * 100, "width": (x2 - x1) / w * 100, "height": (y2 - y1) / h * 100}


def person_reviews(
    drafted: Project, tasks: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Act as a person in Label Studio: start from the predictions, then edit; return the export and what
    was done (annotation ids per action)."""
    out = copy.deepcopy(tasks)
    done: dict[str, Any] = {"moved": None, "relabelled": None, "deleted": None, "kept": []}
    for n, task in enumerate(out):
        result = copy.deepcopy(task["predictions"][0]["result"]) if task.get("predictions") else []
        rects = [r for r in result if r["type"] == "rectanglelabels"]
        if n == 0:
            # the first task is left unreviewed: only its predictions travel
            task["annotations"] = []
            continue
        w, h = rects[0]["original_width"], rects[0]["original_height"]
        for r in rects:
            aid = int(r["id"][2:])
            if done["moved"] is None:
                done["moved"] = aid, [10.0, 20.0, 110.5, 150.25]
                r["value"].update(_box_value(done["moved"][1], w, h))
            elif done["relabelled"] is None:
                done["relabelled"] = aid
                for s in result:
                    if s["id"] in (f"ps{aid}", f"ps{aid}m"):
                        s["value"][s["type"]] = ["chair"]
            elif done["deleted"] is None:
                done["deleted"] = aid
                result = [s for s in result if s["id"] not in (f"ps{aid}", f"ps{aid}m")]
            else:
                done["kept"].append(aid)
        new_mask = np.zeros((h, w), bool)
        new_mask[40:60, 30:70] = True
        common = {"to_name": "image", "original_width": w, "original_height": h}
        result += [
            {"id": f"new{n}a", "type": "rectanglelabels", "from_name": "label", **common,
             "value": {**_box_value([5, 6, 25, 36], w, h), "rotation": 0, "rectanglelabels": ["cup"]}},
            {"id": f"new{n}b", "type": "brushlabels", "from_name": "mask", **common,
             "value": {"format": "rle", "rle": encode_brush_rle(new_mask), "brushlabels": ["person"]}},
        ]  # fmt: skip
        for r in result:
            r.pop("score", None)
        task["annotations"] = [
            {"id": 90 + n, "completed_by": 7, "was_cancelled": True, "result": [], "updated_at": "2099"},
            {
                "id": 100 + n,
                "completed_by": 7,
                "was_cancelled": False,
                "result": result,
                "updated_at": "2026",
            },
        ]
        done.setdefault("new_masks", []).append((task["data"]["promptseg_image"], new_mask))
    return out, done


def check_reviewed(
    drafted: Project, before: dict[int, Any], done: dict[str, Any], unreviewed: set[int], who: str
) -> dict[int, Any]:
    """Every correction :func:`person_reviews` made is in the project, decided by ``who``, and nothing
    else changed; returns the annotations by id."""
    after = {a.id: a for a in drafted.annotations()}
    moved_id, moved_box = done["moved"]
    assert after[moved_id].box_xyxy == pytest.approx(moved_box, abs=0.01)
    assert after[moved_id].mask_rle == before[moved_id].mask_rle  # a moved box keeps its mask
    assert after[done["relabelled"]].label == "chair"
    assert after[done["deleted"]].review_state == "rejected"
    for aid in [moved_id, done["relabelled"], *done["kept"]]:
        assert after[aid].review_state == "accepted" and after[aid].decided_by == who
    for aid in done["kept"]:
        assert (after[aid].label, after[aid].box_xyxy, after[aid].mask_rle) == (
            before[aid].label, before[aid].box_xyxy, before[aid].mask_rle,
        )  # fmt: skip
    for aid in unreviewed:  # the task without an annotation is left alone
        assert after[aid] == before[aid]
    new = [a for a in after.values() if a.id not in before]
    assert len(new) == 2 * len(done["new_masks"])
    for image, mask in done["new_masks"]:
        cup, person = sorted((a for a in new if a.image == image), key=lambda a: a.label)
        assert (cup.label, cup.source, cup.decided_by) == ("cup", "human", who)
        assert cup.box_xyxy == pytest.approx((5, 6, 25, 36), abs=0.01) and cup.mask_rle is None
        assert person.box_xyxy == (30.0, 40.0, 70.0, 60.0)
        np.testing.assert_array_equal(from_rle(person.mask_rle), mask)  # type: ignore[arg-type]
    return after


def test_round_trip_keeps_exactly_the_corrections(drafted: Project, tmp_path: Path) -> None:
    tasks_path, _ = export_tasks(drafted, tmp_path / "ls")
    tasks = json.loads(tasks_path.read_text())
    export, done = person_reviews(drafted, tasks)
    export_path = tmp_path / "export.json"
    export_path.write_text(json.dumps(export))
    before = {a.id: a for a in drafted.annotations()}
    unreviewed = set(export[0]["data"]["promptseg_ids"])

    summary = import_reviews(drafted, export_path, who_prefix="labelstudio")

    after = check_reviewed(drafted, before, done, unreviewed, WHO)
    new = [a for a in after.values() if a.id not in before]
    assert summary.tasks == 3 and summary.reviewed == 2
    assert summary.rejected == 1 and summary.added == len(new) and summary.corrected == 2
    log = drafted.decisions()
    assert {d["who"] for d in log[len(log) - summary.accepted - summary.rejected - summary.added :]} == {WHO}

    # the same export again changes nothing
    again = import_reviews(drafted, export_path)
    assert drafted.annotations() == list(after.values())
    assert drafted.decisions() == log
    assert (again.accepted, again.rejected, again.added) == (0, 0, 0)
    assert again.unchanged == summary.accepted + summary.rejected + summary.added

    # the reviewed dataset as YOLO: detect keeps the corrected boxes, segment the masks, both exactly
    from promptseg.datasets import export_yolo, import_yolo

    reviewed = drafted.to_dataset(("accepted",))
    for task in ("detect", "segment"):
        yolo = export_yolo(reviewed, tmp_path / task, task=task, image_root=drafted.root)
        items = {item.path: item.detections for item in import_yolo(yolo.parent).items}
        for item in reviewed.items:
            got, want = items[item.path], item.detections
            assert got.labels.tolist() == want.labels.tolist()
            if task == "detect":
                np.testing.assert_allclose(got.xyxy, want.xyxy, atol=1e-3)
            else:
                assert got.masks is not None and want.masks is not None
                np.testing.assert_array_equal(got.masks, want.masks)
    moved_id, moved_box = done["moved"]  # the person's moved box is in what was just compared
    moved = next(i for i in reviewed.items if i.path == drafted.annotation(moved_id).image).detections
    assert any(np.allclose(box, moved_box, atol=0.01) for box in moved.xyxy)


def test_a_later_export_corrects_or_rejects_what_the_person_drew(drafted: Project, tmp_path: Path) -> None:
    """The same Label Studio project exported again after more edits: the person's own regions are found
    again by their Label Studio ids, not added twice."""
    tasks_path, _ = export_tasks(drafted, tmp_path / "ls")
    export, _ = person_reviews(drafted, json.loads(tasks_path.read_text()))
    first = tmp_path / "first.json"
    first.write_text(json.dumps(export))
    import_reviews(drafted, first)
    drawn = {a.external_id: a for a in drafted.annotations() if a.source == "human"}
    assert set(drawn) == {f"labelstudio:new{n}{k}" for n in (1, 2) for k in "ab"}

    later = copy.deepcopy(export)  # the person comes back to task 1: moves the cup, deletes the mask
    review = later[1]["annotations"][1]
    w, h = review["result"][0]["original_width"], review["result"][0]["original_height"]
    review["result"] = [r for r in review["result"] if r["id"] != "new1b"]
    cup = next(r for r in review["result"] if r["id"] == "new1a")
    cup["value"].update(_box_value([50, 60, 90, 100], w, h))
    review["updated_at"] = "2027"
    second = tmp_path / "second.json"
    second.write_text(json.dumps(later))
    summary = import_reviews(drafted, second)

    after = {a.external_id: a for a in drafted.annotations() if a.source == "human"}
    assert set(after) == set(drawn)  # nothing added
    assert (summary.added, summary.corrected, summary.rejected) == (0, 1, 1)
    assert after["labelstudio:new1a"].box_xyxy == pytest.approx((50, 60, 90, 100), abs=0.01)
    assert after["labelstudio:new1b"].review_state == "rejected"
    assert after["labelstudio:new2a"] == drawn["labelstudio:new2a"]  # task 2 was not touched again


def test_a_version_1_project_is_migrated_on_open(drafted: Project) -> None:
    import sqlite3

    drafted.close()
    db = drafted.path / "project.db"
    with sqlite3.connect(db) as conn:  # what a project made before external ids looks like
        conn.execute("DROP INDEX annotations_external")
        conn.execute("ALTER TABLE annotations DROP COLUMN external_id")
        conn.execute("UPDATE schema_version SET version = 1")
    conn.close()
    with Project.open(drafted.path) as project:
        before = project.annotations()
        assert all(a.external_id is None for a in before) and len(before) == 20
        assert project.find_external(before[0].image, "labelstudio:") == {}
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchone() == (2,)
    conn.close()


def test_mask_only_region_gives_box_from_mask_and_keeps_email(drafted: Project, tmp_path: Path) -> None:
    tasks_path, _ = export_tasks(drafted, tmp_path / "ls")
    task = next(t for t in json.loads(tasks_path.read_text()) if t.get("predictions"))
    masks = [r for r in task["predictions"][0]["result"] if r["type"] == "brushlabels"]
    task["annotations"] = [{"id": 1, "completed_by": {"id": 3, "email": "ana@example.com"}, "result": masks}]
    path = tmp_path / "export.json"
    path.write_text(json.dumps([task]))
    import_reviews(drafted, path)
    for r in masks:
        ann = drafted.annotation(int(r["id"][2:-1]))
        assert ann.review_state == "accepted" and ann.decided_by == "labelstudio:ana@example.com"
        ys, xs = np.nonzero(from_rle(ann.mask_rle))  # type: ignore[arg-type]
        assert ann.box_xyxy == (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


@pytest.mark.parametrize(
    ("content", "error", "match"),
    [
        ("{not json", FormatError, "not valid JSON"),  # broken file
        ('{"tasks": []}', FormatError, "expected a JSON list of tasks"),  # an object, not a list
        ('[{"id": 4}]', FormatError, "task 0: expected an object with 'data'"),  # no data
        (
            '[{"id": 4, "data": {"image": "x.png"}}]',
            FormatError,
            "task 4: data.promptseg_image",
        ),  # foreign task
        (
            '[{"id": 5, "data": {"promptseg_image": "nope.png"}, "annotations": [{"result": []}]}]',
            InputError,
            "task 5: data.promptseg_image 'nope.png' is not in project",
        ),  # an image the project does not have
        (
            '[{"id": 6, "data": {"promptseg_image": "coffee.png"}, "annotations": [{"completed_by": 1, '
            '"result": [{"id": "a", "type": "brushlabels", '
            '"value": {"rle": [1, 2], "brushlabels": ["cup"]}}]}]}]',
            FormatError,
            r"task 6: annotation None result\[0\].value: brush rle",
        ),  # a truncated brush stroke
        (
            '[{"id": 7, "data": {"promptseg_image": "coffee.png"}, "annotations": [{"completed_by": 1, '
            '"result": [{"id": "a", "type": "rectanglelabels", '
            '"value": {"x": 1, "rectanglelabels": ["cup"]}}]}]}]',
            FormatError,
            r"task 7: annotation None result\[0\].value: KeyError",
        ),  # a rectangle without its size
        (
            '[{"id": 8, "data": {"promptseg_image": "coffee.png"}, "annotations": [{"result": []}]}]',
            FormatError,
            "task 8: annotation None has no completed_by",
        ),
    ],
)
def test_bad_files_name_file_task_and_field(
    drafted: Project, tmp_path: Path, content: str, error: type[Exception], match: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    before = drafted.decisions()
    with pytest.raises(error, match=match) as info:
        import_reviews(drafted, path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert drafted.decisions() == before


def test_ml_backend_app_answers_label_studio_requests(drafted: Project) -> None:
    need("fastapi", extra="server")
    from fastapi.testclient import TestClient

    from promptseg.labeling.labelstudio import create_ml_backend_app

    root = drafted.root
    assert root is not None
    client = TestClient(create_ml_backend_app(image_root=root))
    assert client.get("/health").json()["status"] == "UP"
    version = client.post("/setup", json={"project": "1.1", "schema": "<View/>"}).json()["model_version"]
    xml = (
        labeling_config(["person", "cup"], masks="brush")
        .replace('"label"', '"box"')
        .replace('"image"', '"img"')
    )
    xml = xml.replace("$image", "$photo")
    body = {
        "tasks": [
            {"id": 1, "data": {"photo": "/data/local-files/?d=astronaut.png"}},
            {"id": 2, "data": {"photo": str(root / "coffee.png")}},
        ],
        "label_config": xml,
        "project": "1.1",
        "params": {},
    }
    reply = client.post("/predict", json=body)
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    assert len(results) == 2 and all(r["model_version"] == version for r in results)
    for r, wanted in zip(results, ["person", "cup"], strict=True):
        assert r["result"] and {(s["from_name"], s["type"]) for s in r["result"]} == {
            ("box", "rectanglelabels"), ("mask", "brushlabels"),
        }  # fmt: skip
        assert all(s["to_name"] == "img" for s in r["result"])
        assert wanted in {s["value"][s["type"]][0] for s in r["result"]}
    outside = {**body, "tasks": [{"id": 3, "data": {"photo": "/data/local-files/?d=../proj/project.db"}}]}
    refused = client.post("/predict", json=outside)
    assert refused.status_code == 400 and "outside the image root" in refused.json()["error"]  # LS shows it
