from __future__ import annotations

from contextlib import nullcontext as does_not_raise

import numpy as np
import pytest

from promptseg import Detections, InputError


def make(n: int = 3, *, h: int = 20, w: int = 30, masks: bool = True) -> Detections:
    rng = np.random.default_rng(n)
    x1 = rng.uniform(0, w / 2, n)
    y1 = rng.uniform(0, h / 2, n)
    xyxy = np.stack([x1, y1, x1 + rng.uniform(1, w / 2, n), y1 + rng.uniform(1, h / 2, n)], axis=1)
    return Detections(
        xyxy=xyxy,
        image_size=(h, w),
        labels=[f"thing{i}" for i in range(n)],
        scores=rng.uniform(0, 1, n),
        masks=rng.uniform(size=(n, h, w)) > 0.5 if masks else None,
        track_ids=np.arange(n) + 10,
        attributes={"color": np.array(["red", "green", "blue", "gray"][:n] + ["x"] * max(0, n - 4))},
        meta={"prompt": "things"},
    )


@pytest.mark.parametrize(
    ("kwargs", "expectation"),
    [
        ({}, does_not_raise()),  # a well-formed set
        ({"xyxy": np.zeros((0, 4)), "labels": []}, does_not_raise()),  # nothing found
        ({"labels": ["a", "b"]}, pytest.raises(InputError, match="labels must have shape")),  # N mismatch
        (
            {"xyxy": [[5, 0, 1, 5]], "labels": ["a"]},
            pytest.raises(InputError, match="x1 <= x2"),
        ),  # reversed box
        ({"xyxy": [[0, 0, np.nan, 5]], "labels": ["a"]}, pytest.raises(InputError, match="finite")),  # NaN
        ({"xyxy": [0, 0, 5, 5], "labels": ["a"]}, pytest.raises(InputError, match=r"\(N, 4\)")),  # 1-D box
        ({"image_size": (0, 10)}, pytest.raises(InputError, match="image_size")),  # empty image
        ({"image_size": (10.5, 10)}, pytest.raises(InputError, match="image_size")),  # float size
        ({"scores": [1.5]}, pytest.raises(InputError, match=r"\[0, 1\]")),  # score out of range
        ({"scores": [0.1, 0.2]}, pytest.raises(InputError, match="scores must have shape")),  # wrong length
        ({"masks": np.zeros((1, 10, 11), bool)}, pytest.raises(InputError, match="masks must have shape")),
        (
            {"masks": np.zeros((1, 10, 10), np.float32)},
            pytest.raises(InputError, match="bool"),
        ),  # float masks
        ({"masks": np.ones((1, 10, 10), np.uint8)}, does_not_raise()),  # 0/1 ints become bool
        ({"labels": [3]}, pytest.raises(InputError, match="strings")),  # numeric labels
        ({"track_ids": [1.5]}, pytest.raises(InputError, match="track_ids")),  # float ids
        ({"attributes": {"color": ["a", "b"]}}, pytest.raises(InputError, match="attribute 'color'")),
    ],
)
def test_validation(kwargs: dict, expectation) -> None:
    base = {"xyxy": [[1, 2, 5, 6]], "image_size": (10, 10), "labels": ["cup"]}
    with expectation:
        det = Detections(**{**base, **kwargs})
        assert det.xyxy.dtype == np.float32
        assert det.labels.dtype.kind == "U"
        if det.masks is not None:
            assert det.masks.dtype == np.bool_


def test_indexing_always_returns_detections() -> None:
    det = make(4)
    assert isinstance(det[0], Detections)
    assert len(det[0]) == 1
    assert det[-1].labels.tolist() == ["thing3"]
    assert det[1:3].labels.tolist() == ["thing1", "thing2"]
    assert det[[3, 0]].track_ids.tolist() == [13, 10]
    picked = det[det.scores > 0.5]
    assert (picked.scores > 0.5).all()
    assert picked.attributes["color"].shape == (len(picked),)
    assert picked.masks.shape == (len(picked), 20, 30)
    assert len(det[np.zeros(4, bool)]) == 0
    assert len(det[[]]) == 0
    with pytest.raises(TypeError, match="attributes"):
        det["color"]
    with pytest.raises(IndexError):
        det[4]
    with pytest.raises(IndexError):
        det[np.ones(3, bool)]


def test_concat_and_replace() -> None:
    a, b = make(2), make(3)
    both = Detections.concat([a, b])
    assert len(both) == 5
    assert both.labels.tolist() == a.labels.tolist() + b.labels.tolist()
    assert np.array_equal(both.masks[2:], b.masks)
    assert both.attributes["color"].tolist() == ["red", "green", "red", "green", "blue"]
    # an empty part without masks does not strip the masks of the others
    assert Detections.concat([a, Detections.empty((20, 30)), b]).masks is not None
    # a part without masks does
    assert Detections.concat([a, make(2, masks=False)]).masks is None
    with pytest.raises(InputError, match="one image size"):
        Detections.concat([a, make(2, h=21)])
    with pytest.raises(InputError, match="at least one"):
        Detections.concat([])
    moved = a.replace(xyxy=a.xyxy + 1)
    assert np.allclose(moved.xyxy, a.xyxy + 1)
    with pytest.raises(InputError):
        a.replace(scores=[2.0, 0.0])
    assert a.with_meta(backend="x").meta == {"prompt": "things", "backend": "x"}


def test_equality_and_empty() -> None:
    a = make(3)
    assert a == a[[0, 1, 2]]
    assert a != a[[0, 1]]
    assert a != a.replace(masks=None)
    empty = Detections.empty((5, 6), with_masks=True, prompt="x")
    assert len(empty) == 0
    assert empty.masks.shape == (0, 5, 6)
    assert empty.meta["prompt"] == "x"
    assert empty.mask_area.shape == (0,)
    assert empty.box_area.shape == (0,)
    assert "n=0" in repr(empty)


def test_frozen_and_areas() -> None:
    det = Detections(xyxy=[[0, 0, 4, 5]], image_size=(10, 10), labels=["a"], masks=np.ones((1, 10, 10), bool))
    with pytest.raises(AttributeError):
        det.labels = np.array(["b"])  # type: ignore[misc]
    assert det.box_area.tolist() == [20.0]
    assert det.mask_area.tolist() == [100]
    with pytest.raises(InputError, match="no masks"):
        _ = det.replace(masks=None).mask_area
