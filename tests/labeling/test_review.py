"""The review page's API on a real drafted project: every action changes the project as it should."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest

from promptseg.labeling import Project
from promptseg.labeling.review import create_review_app
from promptseg.ops.masks import from_rle
from tests.conftest import need

need("fastapi", extra="server")
from fastapi.testclient import TestClient  # noqa: E402

USER = "ana"


@pytest.fixture
def client(drafted: Project) -> TestClient:
    return TestClient(create_review_app(drafted.path, user=USER))


def _first_pending(drafted: Project) -> Any:
    return drafted.queue()[0]


def test_page_and_assets_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "review.js" in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # nothing fetched from outside
    for name, kind in [("review.js", "javascript"), ("review.css", "css")]:
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"]
        assert "http://" not in r.text and "https://" not in r.text
    assert client.get("/static/../review.py").status_code == 404


def test_summary_and_queue(client: TestClient, drafted: Project) -> None:
    summary = client.get("/api/summary").json()
    assert summary["user"] == USER
    assert summary["counts"] == drafted.counts()
    assert summary["labels"] == drafted.labels()
    assert summary["thresholds"] == {"accept": 0.8, "reject": 0.3}
    queue = client.get("/api/queue").json()
    pending_images = {a.image for a in drafted.queue()}
    assert queue["images"][0]["path"] == drafted.queue()[0].image  # least confident first
    assert {r["path"] for r in queue["images"]} == pending_images
    assert sum(r["pending"] for r in queue["images"]) == len(drafted.queue())
    assert sorted(r["path"] for r in queue["all"]) == ["astronaut.png", "cafeteria.jpg", "coffee.png"]


def test_image_row_file_and_masks(client: TestClient, drafted: Project) -> None:
    from PIL import Image

    from promptseg.image import load_image

    ann = _first_pending(drafted)
    row = drafted.image(ann.image)
    doc = client.get(f"/api/images/{row['id']}").json()
    assert doc["image"]["path"] == ann.image
    assert [a["id"] for a in doc["annotations"]] == [a.id for a in drafted.annotations(ann.image)]
    served = np.asarray(Image.open(io.BytesIO(client.get(f"/api/images/{row['id']}/file").content)))
    real = load_image(drafted.image_path(ann.image))
    assert served.shape == real.shape
    assert np.abs(served.astype(int) - real.astype(int)).mean() < 2  # JPEG re-encoded at quality 95
    with_mask = next(a for a in drafted.annotations() if a.mask_rle is not None)
    png = Image.open(io.BytesIO(client.get(f"/api/annotations/{with_mask.id}/mask.png").content))
    assert png.mode == "LA"
    np.testing.assert_array_equal(np.asarray(png)[..., 1] > 0, from_rle(with_mask.mask_rle))


def test_accept_reject_relabel_and_move(client: TestClient, drafted: Project) -> None:
    first, second = drafted.queue()[:2]
    r = client.post(f"/api/annotations/{first.id}/decision", json={"state": "accepted", "who": "mallory"})
    assert r.status_code == 200 and r.json()["review_state"] == "accepted"
    r = client.post(
        f"/api/annotations/{second.id}/decision",
        json={"state": "rejected", "label": "stool", "box": [10, 20, 110, 220]},
    )
    assert r.json()["label"] == "stool"
    a, b = drafted.annotation(first.id), drafted.annotation(second.id)
    assert (a.review_state, a.decided_by) == ("accepted", USER)
    assert (b.review_state, b.label, b.box_xyxy, b.decided_by) == (
        "rejected",
        "stool",
        (10, 20, 110, 220),
        USER,
    )
    assert b.mask_rle == second.mask_rle  # a moved box keeps its mask until refined
    logged = [(d["annotation_id"], d["field"], d["who"]) for d in drafted.decisions() if d["who"] == USER]
    assert logged == [
        (first.id, "review_state", USER),
        (second.id, "review_state", USER),
        (second.id, "label", USER),
        (second.id, "box_xyxy", USER),
    ]
    assert "stool" in client.get("/api/summary").json()["labels"]


def test_refine_makes_a_mask_inside_the_box_and_accepts_it(client: TestClient, drafted: Project) -> None:
    ann = _first_pending(drafted)
    row = drafted.image(ann.image)
    x1, y1, x2, y2 = (round(v) for v in ann.box_xyxy)
    box = [x1 + 5, y1 + 5, min(x2 + 15, row["width"]), min(y2 + 10, row["height"])]
    r = client.post(f"/api/annotations/{ann.id}/refine", json={"box": box})
    assert r.status_code == 200, r.text
    after = drafted.annotation(ann.id)
    assert after.review_state == "accepted" and after.decided_by == USER  # a correction confirms it
    assert list(after.box_xyxy) == box
    assert after.mask_rle is not None and after.mask_rle != ann.mask_rle
    mask = from_rle(after.mask_rle)
    assert mask.shape == (row["height"], row["width"]) and mask.sum() > 0
    outside = mask.copy()
    outside[box[1] : box[3], box[0] : box[2]] = False
    assert not outside.any()
    assert {d["field"] for d in drafted.decisions(ann.id)} >= {"mask_rle", "box_xyxy"}


def test_undo_puts_back_each_decision_newest_first(client: TestClient, drafted: Project) -> None:
    ann = _first_pending(drafted)
    row = drafted.image(ann.image)
    x1, y1, x2, y2 = (round(v) for v in ann.box_xyxy)
    made = [
        client.post(f"/api/annotations/{ann.id}/decision", json={"state": "rejected"}).json(),
        client.post(f"/api/annotations/{ann.id}/decision", json={"state": "accepted", "label": "cup"}).json(),
        client.post(
            f"/api/annotations/{ann.id}/refine", json={"box": [x1, y1, min(x2 + 9, row["width"]), y2]}
        ).json(),
    ]
    refined = drafted.annotation(ann.id)
    assert refined.mask_rle != ann.mask_rle and refined.label == "cup"
    states = []
    for decision in reversed(made):
        r = client.post(f"/api/annotations/{ann.id}/undo", json={"at": decision["decided_at"]})
        assert r.status_code == 200, r.text
        now = drafted.annotation(ann.id)
        states.append(
            (now.review_state, now.label, now.box_xyxy == ann.box_xyxy, now.mask_rle == ann.mask_rle)
        )
    assert states == [
        ("accepted", "cup", True, True),  # the refinement undone: box and mask as drafted
        ("rejected", ann.label, True, True),  # the relabel-and-accept undone
        ("pending", ann.label, True, True),  # the reject undone: a pending draft again, undecided
    ]
    assert drafted.annotation(ann.id).decided_by is None
    assert [d["who"] for d in drafted.decisions(ann.id)][-3:] == [USER] * 3  # undos are logged too

    added = client.post(f"/api/images/{row['id']}/annotations", json={"label": "cup", "box": [5, 5, 40, 40]})
    undone = client.post(
        f"/api/annotations/{added.json()['id']}/undo", json={"at": added.json()["decided_at"]}
    )
    assert undone.json()["review_state"] == "rejected"  # a drawn object undone is rejected, the log kept
    missing = client.post(f"/api/annotations/{ann.id}/undo", json={"at": "2000-01-01T00:00:00+00:00"})
    assert missing.status_code == 422 and "no decision at" in missing.json()["error"]


def test_new_box_is_a_human_annotation_with_a_refined_mask(client: TestClient, drafted: Project) -> None:
    row = drafted.image("coffee.png")
    r = client.post(
        f"/api/images/{row['id']}/annotations",
        json={"label": "saucer", "box": [20, 200, 380, 420], "refine": True},
    )
    assert r.status_code == 201, r.text
    ann = drafted.annotation(r.json()["id"])
    assert (ann.source, ann.label, ann.review_state, ann.decided_by) == ("human", "saucer", "accepted", USER)
    assert ann.score is None and ann.box_xyxy == (20, 200, 380, 420)
    mask = from_rle(ann.mask_rle)  # type: ignore[arg-type]
    assert mask[200:420, 20:380].sum() == mask.sum() > 0
    plain = client.post(f"/api/images/{row['id']}/annotations", json={"label": "cup", "box": [1, 2, 30, 40]})
    assert drafted.annotation(plain.json()["id"]).mask_rle is None
    assert [d["field"] for d in drafted.decisions(ann.id)] == ["created"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("post", "/api/annotations/999999/decision", {"state": "accepted"}, 404),  # unknown annotation
        ("get", "/api/annotations/999999/mask.png", None, 404),
        ("get", "/api/images/999999", None, 404),  # unknown image
        ("get", "/api/images/999999/file", None, 404),
        ("post", "/api/images/999999/annotations", {"label": "cup", "box": [0, 0, 5, 5]}, 404),
        ("get", "/api/nothing", None, 404),  # unknown route
        ("post", "/api/annotations/{id}/decision", {"state": "maybe"}, 422),  # not a review state
        (
            "post",
            "/api/annotations/{id}/decision",
            {"state": "accepted", "box": [5, 5, 1, 1]},
            422,
        ),  # x1 > x2
        ("post", "/api/annotations/{id}/decision", {"state": "accepted", "label": "  "}, 422),  # empty label
        ("post", "/api/annotations/{id}/refine", {"box": [1, 2, 3]}, 422),  # three numbers
        ("post", "/api/images/{image}/annotations", {"label": "cup"}, 422),  # no box
        ("post", "/api/annotations/{id}/decision", None, 422),  # no body
    ],
)
def test_errors_are_one_line_json(
    client: TestClient, drafted: Project, method: str, path: str, body: Any, status: int
) -> None:
    ann = _first_pending(drafted)
    url = path.format(id=ann.id, image=drafted.image(ann.image)["id"])
    before = drafted.decisions()
    r = client.request(method.upper(), url, json=body)
    assert r.status_code == status, r.text
    doc = r.json()
    assert set(doc) == {"error", "type"} and "\n" not in doc["error"] and doc["error"]
    assert drafted.decisions() == before


def test_token_is_enforced_on_the_api(drafted: Project) -> None:
    client = TestClient(create_review_app(drafted.path, user=USER, token="s3cret"))
    assert client.get("/").status_code == 200  # the page holds no data; it reads the token from #token=
    for headers in [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic s3cret"}]:
        r = client.get("/api/summary", headers=headers)
        assert r.status_code == 401 and r.json()["type"] == "Unauthorized"
    ann = _first_pending(drafted)
    r = client.post(f"/api/annotations/{ann.id}/decision", json={"state": "accepted"})
    assert r.status_code == 401 and drafted.annotation(ann.id).review_state == "pending"
    ok = client.get("/api/summary", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200


def test_refuses_a_folder_that_is_not_a_project(tmp_path: Any) -> None:
    from promptseg.errors import ConfigError

    with pytest.raises(ConfigError, match="not a promptseg project"):
        create_review_app(tmp_path, user=USER)
