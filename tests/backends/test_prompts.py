"""Visual prompts: every backend validates boxes and points through one function."""

from __future__ import annotations

import numpy as np
import pytest

from promptseg import InputError
from promptseg.backends.prompts import visual_prompts

SIZE = (100, 200)  # (H, W)


def test_one_box_becomes_one_object() -> None:
    p = visual_prompts(SIZE, boxes=[10, 20, 50, 60])
    assert p.boxes is not None and p.boxes.shape == (1, 4) and p.boxes.dtype == np.float32
    assert p.points is None and p.point_labels is None
    assert list(p.labels) == ["object"] and len(p) == 1


def test_boxes_are_clipped_to_the_image() -> None:
    p = visual_prompts(SIZE, boxes=[[-5, -5, 250, 120]])
    assert p.boxes is not None
    np.testing.assert_array_equal(p.boxes[0], [0, 0, 200, 100])


@pytest.mark.parametrize(
    ("points", "shape"),
    [([5, 6], (1, 1, 2)), ([[5, 6], [7, 8]], (1, 2, 2)), ([[[5, 6]], [[7, 8]]], (2, 1, 2))],
)
def test_point_shapes(points: list, shape: tuple[int, ...]) -> None:
    p = visual_prompts(SIZE, points=points)
    assert p.points is not None and p.points.shape == shape
    assert p.point_labels is not None and p.point_labels.shape == shape[:2] and (p.point_labels == 1).all()


def test_boxes_with_points_and_labels() -> None:
    p = visual_prompts(
        SIZE,
        boxes=[[0, 0, 50, 50], [60, 0, 120, 50]],
        points=[[[10, 10], [40, 40]], [[70, 10], [100, 40]]],
        point_labels=[[1, 0], [True, False]],
        labels=["cup", "bowl"],
    )
    assert p.point_labels is not None
    np.testing.assert_array_equal(p.point_labels, [[1, 0], [1, 0]])
    assert list(p.labels) == ["cup", "bowl"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "no visual prompt"),
        ({"boxes": [[1, 2, 3]]}, "(N, 4)"),
        ({"boxes": [[50, 0, 10, 10]]}, "x1 <= x2"),
        ({"boxes": [[0, 0, float("nan"), 10]]}, "finite"),
        ({"boxes": "a box"}, "numbers"),
        ({"points": [[250, 10]]}, "outside"),
        ({"points": [[10, 10]], "point_labels": [2]}, "1 (on the object) or 0"),
        ({"points": [[10, 10], [20, 20]], "point_labels": [1]}, "point_labels has shape"),
        ({"points": [[10, 10]], "point_labels": [0]}, "only with negative points"),
        ({"boxes": [[0, 0, 5, 5]] * 2, "points": [[[1, 1]]] * 3}, "2 boxes but points for 3"),
        ({"boxes": [[0, 0, 5, 5]] * 2, "labels": ["a", "b", "c"]}, "3 labels for 2"),
    ],
)
def test_bad_prompts_are_refused_in_one_line(kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        visual_prompts(SIZE, **kwargs)
    assert "\n" not in str(info.value)


def test_a_negative_point_with_a_box_is_fine() -> None:
    p = visual_prompts(SIZE, boxes=[[0, 0, 50, 50]], points=[[10, 10]], point_labels=[0])
    assert p.point_labels is not None and p.point_labels.tolist() == [[0]]
