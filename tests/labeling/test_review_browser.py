"""The review page end to end: the real app under uvicorn, driven in headless Chromium with Playwright.

A person reviews from the keyboard and the mouse (accept, reject, relabel, move and resize a box,
refine, draw a missed object); the project's database must then hold exactly those corrections, and
screenshots must show the photo, the focused box's outline and the rejected colour where they belong.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from promptseg.image import load_image
from promptseg.labeling import Project
from promptseg.labeling.review import create_review_app
from promptseg.ops.masks import from_rle
from tests.conftest import missing, need

CHROMIUM = Path("/usr/bin/chromium")
USER = "ana"
FOCUSED = (0x00, 0xE5, 0xFF)  # COLORS in review.js
REJECTED = (0xEF, 0x44, 0x44)
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.slow


@pytest.fixture
def served(drafted: Project) -> Iterator[str]:
    """The review app for ``drafted`` under a real uvicorn on a free local port; yields its URL."""
    with _serve(drafted) as url:
        yield url


@contextmanager
def _serve(drafted: Project, token: str | None = None) -> Iterator[str]:
    need("fastapi", extra="server")
    uvicorn = need("uvicorn", extra="server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_review_app(drafted.path, user=USER, token=token)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the review server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def browser() -> Iterator[Any]:
    if not CHROMIUM.is_file():
        missing("Debian's chromium is not installed at /usr/bin/chromium: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing(
            "the playwright package is not installed: pip install playwright (no browser download needed)"
        )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any, served: str) -> Any:
    return _open(browser, served)


def _open(browser: Any, url: str) -> Any:
    """A new page on ``url``, loaded; its console errors collect in ``page.errors``."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']", timeout=15000)
    page.errors = errors
    return page


def _settled(page: Any, saved: int | None = None) -> None:
    """Wait until no user action runs (and, if given, ``saved`` writes are done)."""
    page.wait_for_function(
        "n => document.body.dataset.actions === '0' && document.body.dataset.busy === '0' "
        "&& Number(document.body.dataset.saved) >= n",
        arg=saved or 0,
        timeout=10000,
    )
    assert page.locator("#status").text_content() == "", page.locator("#status").text_content()


def _focused(page: Any) -> int:
    return int(page.locator("#canvas").get_attribute("data-focused"))


def _canvas_shot(page: Any, path: Path) -> tuple[np.ndarray, float]:
    """The canvas as shown (screen pixels) and its scale from image pixels (it is fit to the window)."""
    from PIL import Image

    page.locator("#canvas").screenshot(path=str(path))
    shown = np.asarray(Image.open(io.BytesIO(path.read_bytes())).convert("RGB"))
    return shown, shown.shape[1] / float(page.locator("#canvas").get_attribute("data-width"))


def _in_image_pixels(shot: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(shot).resize(size[::-1], Image.Resampling.BOX))


def _edge_share(
    shot: tuple[np.ndarray, float], x: float, y1: float, y2: float, colour: tuple[int, int, int]
) -> float:
    """Share of the rows of a vertical box edge at ``x`` (image pixels) with that colour within 2 px."""
    pixels, scale = shot
    rows = range(int((y1 + 20) * scale), int((y2 - 4) * scale))
    xs = slice(max(int(x * scale) - 3, 0), int(x * scale) + 4)
    near = np.abs(pixels[:, xs].astype(int) - np.array(colour)).max(axis=-1) < 40
    return float(np.mean([near[r].any() for r in rows]))


def _page_point(page: Any, x: float, y: float) -> tuple[float, float]:
    box = page.locator("#canvas").bounding_box()
    scale = box["width"] / float(page.locator("#canvas").get_attribute("data-width"))
    return box["x"] + x * scale, box["y"] + y * scale


def _drag(page: Any, start: tuple[float, float], delta: tuple[float, float]) -> None:
    """Drag from ``start`` by ``delta``, both in image pixels."""
    x, y = _page_point(page, *start)
    ex, ey = _page_point(page, start[0] + delta[0], start[1] + delta[1])
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move((x + ex) / 2, (y + ey) / 2, steps=3)
    page.mouse.move(ex, ey, steps=3)
    page.mouse.up()


def test_a_review_from_keyboard_and_mouse(page: Any, drafted: Project, tmp_path: Path) -> None:
    image = drafted.image(int(page.locator("#canvas").get_attribute("data-image")))
    assert image["path"] == drafted.queue()[0].image  # the least confident draft's image comes first
    photo = load_image(drafted.image_path(image["path"]))
    before = {a.id: a for a in drafted.annotations()}
    assert page.locator("#canvas").get_attribute("data-width") == str(photo.shape[1])

    # the photo itself, overlays hidden (H): the canvas shows its pixels (scaled to fit the window)
    page.keyboard.press("h")
    bare = _in_image_pixels(_canvas_shot(page, tmp_path / "bare.png")[0], photo.shape[:2])
    assert np.abs(bare.astype(int) - photo.astype(int)).mean() < 4
    page.keyboard.press("h")

    first = _focused(page)
    assert before[first].review_state == "pending" and before[first].image == image["path"]
    _, y1, x2, y2 = before[first].box_xyxy
    shot = _canvas_shot(page, tmp_path / "loaded.png")
    assert _edge_share(shot, x2, y1, y2, FOCUSED) > 0.8  # the focused box's right edge is cyan
    drawn = _in_image_pixels(shot[0], photo.shape[:2])
    assert np.abs(drawn.astype(int) - photo.astype(int)).mean() > 2  # masks and boxes are drawn

    page.keyboard.press("a")  # accept
    _settled(page, 1)
    second = _focused(page)
    assert second != first and before[second].review_state == "pending"
    page.keyboard.press("r")  # reject
    _settled(page, 2)
    third = _focused(page)
    assert third not in (first, second)
    shot = _canvas_shot(page, tmp_path / "rejected.png")
    sx1, sy1, _, sy2 = before[second].box_xyxy
    assert _edge_share(shot, sx1, sy1, sy2, REJECTED) > 0.6  # the rejected box is drawn red

    labels = page.evaluate("Array.from(document.querySelectorAll('#labels li'), li => li.textContent)")
    assert labels == drafted.labels()
    new_label = next(name for name in labels if name != before[third].label)
    page.keyboard.press(str(labels.index(new_label) + 1))  # relabel
    _settled(page, 3)

    page.keyboard.press("Shift+ArrowDown")  # 10 px down
    page.keyboard.press("Alt+Shift+ArrowRight")  # 10 px wider; the run of keys is saved after a pause
    _settled(page, 4)
    bx1, by1, bx2, by2 = before[third].box_xyxy
    moved = [bx1, by1 + 10, bx2 + 10, by2 + 10]
    _drag(page, ((moved[0] + moved[2]) / 2, (moved[1] + moved[3]) / 2), (20, 10))  # move the body
    _settled(page, 5)
    moved = [round(moved[0] + 20), round(moved[1] + 10), round(moved[2] + 20), round(moved[3] + 10)]
    _drag(page, (moved[2], moved[3]), (15, 12))  # resize by the bottom-right corner
    _settled(page, 6)
    moved = [moved[0], moved[1], moved[2] + 15, moved[3] + 12]
    page.keyboard.press("f")  # refine the mask for the new box
    _settled(page, 7)

    page.keyboard.press("d")  # draw a missed object
    _drag(page, (400, 20), (60, 50))
    _settled(page, 8)
    page.screenshot(path=str(tmp_path / "review.png"))
    assert page.errors == []

    after = {a.id: a for a in drafted.annotations()}
    added = [a for a in after.values() if a.id not in before]
    assert len(added) == 1
    new = added[0]
    assert (new.source, new.review_state, new.decided_by, new.label) == ("human", "accepted", USER, new_label)
    assert np.allclose(new.box_xyxy, [400, 20, 460, 70], atol=1)
    assert new.mask_rle is not None and from_rle(new.mask_rle).sum() > 0

    assert (after[first].review_state, after[first].decided_by) == ("accepted", USER)
    assert (after[second].review_state, after[second].decided_by) == ("rejected", USER)
    t = after[third]
    assert (t.review_state, t.label, t.decided_by) == ("accepted", new_label, USER)  # corrected: accepted
    assert np.allclose(t.box_xyxy, moved, atol=1), (t.box_xyxy, moved)
    assert t.mask_rle is not None and t.mask_rle != before[third].mask_rle
    mask = from_rle(t.mask_rle)
    inside = np.zeros_like(mask)
    inside[
        int(t.box_xyxy[1]) : int(np.ceil(t.box_xyxy[3])), int(t.box_xyxy[0]) : int(np.ceil(t.box_xyxy[2]))
    ] = True
    assert mask.any() and not (mask & ~inside).any()
    for ann_id, ann in before.items():  # nothing else was touched
        if ann_id not in (first, second, third):
            assert after[ann_id] == ann

    log = [(d["annotation_id"], d["field"]) for d in drafted.decisions() if d["who"] == USER]
    assert {d["who"] for d in drafted.decisions()} <= {USER, "auto:threshold"}
    assert log == [
        (first, "review_state"),
        (second, "review_state"),
        (third, "review_state"),
        (third, "label"),
        (third, "review_state"),
        (third, "box_xyxy"),
        (third, "review_state"),
        (third, "box_xyxy"),
        (third, "review_state"),
        (third, "box_xyxy"),
        (third, "review_state"),
        (third, "mask_rle"),
        (new.id, "created"),
    ]
    _exports_keep_the_corrections(drafted, tmp_path, kept=[first, third, new.id], dropped=second)


def _exports_keep_the_corrections(project: Project, tmp_path: Path, kept: list[int], dropped: int) -> None:
    """`promptseg export` (accepted annotations) as COCO (read back by pycocotools) and YOLO segment: the
    reviewed objects with the person's labels, boxes and masks; the rejected one absent."""
    import subprocess
    import sys

    coco_api = need("pycocotools.coco", extra="dev")
    coco_mask = need("pycocotools.mask", extra="dev")
    run = [sys.executable, "-m", "promptseg", "export", str(project.path)]
    for fmt in ("coco", "yolo"):
        done = subprocess.run([*run, "--format", fmt, "--out", str(tmp_path / fmt)],
                              capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
    coco = coco_api.COCO(str(tmp_path / "coco" / "annotations.json"))
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    exported = {
        tuple(round(v) for v in a["bbox"]): (names[a["category_id"]], a)
        for a in coco.loadAnns(coco.getAnnIds())
    }
    for ann in (project.annotation(i) for i in kept):
        x1, y1, x2, y2 = ann.box_xyxy
        label, coco_ann = exported[(round(x1), round(y1), round(x2 - x1), round(y2 - y1))]
        assert label == ann.label
        assert ann.mask_rle is not None
        assert (coco_mask.decode(coco_ann["segmentation"]).astype(bool) == from_rle(ann.mask_rle)).all()
    x1, y1, x2, y2 = project.annotation(dropped).box_xyxy
    assert (round(x1), round(y1), round(x2 - x1), round(y2 - y1)) not in exported
    data_yaml = (tmp_path / "yolo" / "data.yaml").read_text()
    reviewed = project.annotations(project.annotation(kept[-1]).image)
    lines = next((tmp_path / "yolo").rglob(Path(reviewed[0].image).stem + ".txt")).read_text().splitlines()
    assert len(lines) == sum(a.review_state == "accepted" for a in reviewed)  # one polygon line per object
    assert all(f"{a.label}" in data_yaml for a in reviewed if a.review_state == "accepted")


def test_undo_from_the_keyboard(page: Any, drafted: Project) -> None:
    first = _focused(page)
    page.keyboard.press("r")  # reject: the focus moves on
    _settled(page, 1)
    assert drafted.annotation(first).review_state == "rejected" and _focused(page) != first
    page.keyboard.press("Control+z")  # undo: pending again, focused again
    _settled(page, 2)
    assert drafted.annotation(first).review_state == "pending" and _focused(page) == first
    assert drafted.annotation(first).decided_by is None
    page.keyboard.press("u")  # nothing left to undo on this page
    page.wait_for_function("document.body.dataset.actions === '0'", timeout=10000)
    assert page.locator("#status").text_content() == "nothing to undo"
    assert [d["field"] for d in drafted.decisions(first) if d["who"] == USER] == ["review_state"] * 2
    assert page.errors == []


def test_the_queue_runs_out_with_a_message(page: Any, drafted: Project) -> None:
    assert page.locator("#empty").is_hidden()
    page.keyboard.press("?")
    assert page.locator("#help").is_visible() and "Alt/Ctrl + arrows" in page.locator("#help").text_content()
    page.keyboard.press("Escape")
    assert page.locator("#help").is_hidden()
    for n in range(1, len(drafted.queue()) + 1):
        page.keyboard.press("a")
        _settled(page, n)
    assert drafted.queue() == []
    assert page.locator("#empty").is_visible()
    assert "queue is empty" in page.locator("#empty").text_content()
    assert {a.decided_by for a in drafted.annotations() if a.decided_by not in (None, "auto:threshold")} == {
        USER
    }
    assert page.errors == []


def test_the_page_sends_the_token_from_the_url_fragment(browser: Any, drafted: Project) -> None:
    with _serve(drafted, token="s3cret") as url:
        page = _open(browser, url + "#token=s3cret")
        _settled(page)
        assert page.locator("#user").text_content() == f"reviewing as {USER}"
        page.keyboard.press("r")
        _settled(page, 1)
        assert page.errors == []
        denied = _open(browser, url + "#token=wrong")
        assert "wrong token" in denied.locator("#status").text_content()
    assert [d["who"] for d in drafted.decisions() if d["who"] == USER] == [USER]
