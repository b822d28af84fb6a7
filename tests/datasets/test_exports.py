"""Dataset export / import: lossless round trips on real masks, each export checked by its format's
reference reader (pycocotools, torchvision's VOCDetection, Label Studio's converter)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from promptseg.datasets import (
    Dataset,
    DatasetItem,
    decode_brush_rle,
    encode_brush_rle,
    export_coco,
    export_labelstudio,
    export_voc,
    export_yolo,
    import_coco,
    import_labelstudio,
    import_voc,
    import_yolo,
    split,
    split_of,
)
from promptseg.errors import FormatError
from promptseg.ops.boxes import mask_to_xyxy
from promptseg.types import Detections

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

VOC_SIZE = (375, 500)
TOTE_SIZE = (480, 640)


@pytest.fixture(scope="module")
def dataset(voc: dict[str, Any], tote: dict[str, Any]) -> Dataset:
    """The VOC photo's 19 instances and the tote's 8, as a two-image dataset."""
    voc_det = Detections(xyxy=voc["xyxy"], image_size=VOC_SIZE, labels=voc["labels"], masks=voc["masks"])
    tote_masks = tote["masks"]
    tote_det = Detections(
        xyxy=mask_to_xyxy(tote_masks),
        image_size=TOTE_SIZE,
        labels=[f"item{i % 3}" for i in range(len(tote_masks))],
        masks=tote_masks,
    )
    categories = [*dict.fromkeys(voc["labels"]), "item0", "item1", "item2"]
    return Dataset(
        [
            DatasetItem("voc.jpg", VOC_SIZE[1], VOC_SIZE[0], voc_det),
            DatasetItem("tote.jpg", TOTE_SIZE[1], TOTE_SIZE[0], tote_det),
        ],
        categories,
    )


@pytest.fixture(scope="module")
def image_root(voc: dict[str, Any], tote: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("images")
    shutil.copyfile(voc["path"], root / "voc.jpg")
    shutil.copyfile(tote["path"], root / "tote.jpg")
    return root


@pytest.fixture(scope="module")
def float_boxes() -> Dataset:
    """Fractional float32 boxes, to check exactness where the format allows it."""
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 300, (50, 2)).astype(np.float32)
    wh = rng.uniform(0.1, 150, (50, 2)).astype(np.float32)
    xyxy = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    det = Detections(xyxy=xyxy, image_size=(480, 640), labels=["a", "b"] * 25)
    return Dataset([DatasetItem("f.png", 640, 480, det)], ["a", "b"])


def _by_path(ds: Dataset) -> dict[str, DatasetItem]:
    return {item.path: item for item in ds.items}


def _boundary_ok(a: np.ndarray, b: np.ndarray) -> bool:
    """Every pixel where ``a`` and ``b`` differ lies within one pixel of ``a``'s boundary."""
    import cv2

    k = np.ones((3, 3), np.uint8)
    a8 = a.astype(np.uint8)
    band = cv2.dilate(a8, k).astype(bool) & ~cv2.erode(a8, k).astype(bool)
    return bool(((a ^ b) & ~band).sum() == 0)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def _assert_same(original: Dataset, back: Dataset, *, masks: str = "exact", boxes: bool = True) -> None:
    assert set(back.categories) >= set(original.categories)
    got = _by_path(back)
    assert set(got) == {item.path for item in original.items}
    for item in original.items:
        b = got[item.path]
        assert (b.width, b.height) == (item.width, item.height)
        det, bd = item.detections, b.detections
        assert bd.labels.tolist() == det.labels.tolist()
        if boxes:
            np.testing.assert_array_equal(bd.xyxy, det.xyxy)
        if masks == "none" or det.masks is None:
            continue
        assert bd.masks is not None
        if masks == "exact":
            np.testing.assert_array_equal(bd.masks, det.masks)
        else:  # within one pixel
            for m, mb in zip(det.masks, bd.masks, strict=True):
                assert _boundary_ok(m, mb) and _iou(m, mb) > 0.9


# ------------------------------------------------------------------ COCO


@pytest.mark.parametrize("mask_format", ["rle", "polygon"])
def test_coco_round_trip_and_pycocotools(
    dataset: Dataset, image_root: Path, tmp_path: Path, mask_format: str
) -> None:
    coco_mod = pytest.importorskip("pycocotools.coco", reason="pycocotools (dev extra) is the reference")
    (path,) = export_coco(dataset, tmp_path, masks=mask_format, image_root=image_root)  # type: ignore[arg-type]
    assert path == tmp_path / "annotations.json"
    assert (tmp_path / "images" / "voc.jpg").is_file()
    _assert_same(dataset, import_coco(path))  # polygons too: traced so they rasterise back exactly
    with contextlib.redirect_stdout(io.StringIO()):
        coco = coco_mod.COCO(str(path))
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    for img in coco.loadImgs(coco.getImgIds()):
        item = _by_path(dataset)[img["file_name"]]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]]))
        assert [names[a["category_id"]] for a in anns] == item.detections.labels.tolist()
        assert item.detections.masks is not None
        for ann, mask in zip(anns, item.detections.masks, strict=True):
            np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), mask)


def test_coco_float_boxes_exact(float_boxes: Dataset, tmp_path: Path) -> None:
    _assert_same(float_boxes, import_coco(export_coco(float_boxes, tmp_path)[0]))


# ------------------------------------------------------------------ YOLO


def test_yolo_detect_round_trip_exact(
    dataset: Dataset, float_boxes: Dataset, image_root: Path, tmp_path: Path
) -> None:
    from PIL import Image

    Image.new("RGB", (640, 480)).save(image_root / "f.png")
    both = Dataset([*dataset.items, *float_boxes.items], [*dataset.categories, "a", "b"])
    export_yolo(split(both, (0.5, 0.5, 0.0), seed=3), tmp_path, task="detect", image_root=image_root)
    _assert_same(both, import_yolo(tmp_path), masks="none")  # float32 boxes bit-exact


def test_yolo_segment_round_trip(dataset: Dataset, image_root: Path, tmp_path: Path) -> None:
    export_yolo(dataset, tmp_path, task="segment", image_root=image_root)
    back = import_yolo(tmp_path, split="train")
    _assert_same(dataset, back, boxes=False)  # masks exact: one bridged ring per instance
    for item in dataset.items:  # the box is the mask's tight box, which the VOC fixture's boxes are not
        masks = item.detections.masks
        assert masks is not None
        np.testing.assert_array_equal(_by_path(back)[item.path].detections.xyxy, mask_to_xyxy(masks))


def test_yolo_matches_documented_format(dataset: Dataset, image_root: Path, tmp_path: Path) -> None:
    """Ultralytics is not installed (it pulls matplotlib, scipy, polars): check its documented format."""
    yaml = pytest.importorskip("yaml")
    parts = split(dataset, (0.5, 0.5, 0.0), seed=0)
    export_yolo(parts, tmp_path, task="segment", image_root=image_root)
    doc = yaml.safe_load((tmp_path / "data.yaml").read_text())
    assert Path(doc["path"]) == tmp_path.resolve()
    assert doc["names"] == dict(enumerate(dataset.categories))
    for name, ds in parts.items():
        assert doc[name] == f"images/{name}"
        for item in ds.items:
            assert (tmp_path / doc[name] / item.path).is_file()
            lines = (
                (tmp_path / "labels" / name / Path(item.path).with_suffix(".txt")).read_text().splitlines()
            )
            assert len(lines) == len(item.detections)
            for line, label in zip(lines, item.detections.labels, strict=True):
                cls, *vals = line.split(" ")
                assert doc["names"][int(cls)] == label
                v = np.array(vals, float)
                assert v.size >= 6 and v.size % 2 == 0 and (v >= 0).all() and (v <= 1).all()
    export_yolo(dataset, tmp_path / "det", task="detect")
    line = (tmp_path / "det" / "labels" / "train" / "voc.txt").read_text().splitlines()[0]
    cls, cx, cy, w, h = line.split(" ")
    x1, y1, x2, y2 = dataset.items[0].detections.xyxy[0]
    assert dataset.categories[int(cls)] == dataset.items[0].detections.labels[0]
    np.testing.assert_allclose(
        [float(cx), float(cy), float(w), float(h)],
        [(x1 + x2) / 1000, (y1 + y2) / 750, (x2 - x1) / 500, (y2 - y1) / 375],
    )


# ------------------------------------------------------------------ VOC


def test_voc_round_trip_and_torchvision(dataset: Dataset, image_root: Path, tmp_path: Path) -> None:
    datasets = pytest.importorskip("torchvision.datasets", reason="torchvision parses VOC XML")
    devkit = tmp_path / "VOCdevkit" / "VOC2012"
    parts = {
        "train": Dataset(dataset.items[:1], dataset.categories),
        "val": Dataset(dataset.items[1:], dataset.categories),
    }
    export_voc(parts, devkit, image_root=image_root)
    _assert_same(dataset, import_voc(devkit), masks="none")
    assert [i.path for i in import_voc(devkit, split="val").items] == ["tote.jpg"]
    for image_set, ds in parts.items():
        ref = datasets.VOCDetection(str(tmp_path), year="2012", image_set=image_set, download=False)
        assert len(ref) == 1
        image, target = ref[0]
        item = ds.items[0]
        ann = target["annotation"]
        assert image.size == (item.width, item.height)
        assert (ann["size"]["width"], ann["size"]["height"]) == (str(item.width), str(item.height))
        objs = ann["object"]
        assert [o["name"] for o in objs] == item.detections.labels.tolist()
        for o, (x1, y1, x2, y2) in zip(objs, item.detections.xyxy, strict=True):
            box = [int(o["bndbox"][k]) for k in ("xmin", "ymin", "xmax", "ymax")]  # the devkit's int()
            assert box == [x1 + 1, y1 + 1, x2, y2]  # 1-based inclusive pixel indices
            assert (o["difficult"], o["truncated"]) == ("0", "0")


def test_voc_float_boxes_exact(float_boxes: Dataset, tmp_path: Path) -> None:
    export_voc(float_boxes, tmp_path)
    _assert_same(float_boxes, import_voc(tmp_path, categories=["a", "b"]))


# ------------------------------------------------------------------ Label Studio


def _converter_brush() -> Any:
    """Label Studio's own brush RLE code (label-studio-sdk, installed --no-deps by the Makefile; the older
    label-studio-converter wheel also installs a top-level ``tests`` package that hides ours)."""
    pytest.importorskip("label_studio_sdk", reason="label-studio-sdk (--no-deps) is the brush reference")
    with contextlib.redirect_stdout(io.StringIO()):  # its converter prints a missing optional import
        from label_studio_sdk.converter import brush
    return brush


def test_labelstudio_brush_round_trip_and_converter(dataset: Dataset, tmp_path: Path) -> None:
    brush = _converter_brush()
    (path,) = export_labelstudio(dataset, tmp_path, masks="brush", image_prefix="/data/local-files/?d=")
    _assert_same(dataset, import_labelstudio(path, image_prefix="/data/local-files/?d="), boxes=False)
    tasks = json.loads(path.read_text())
    for task, item in zip(tasks, dataset.items, strict=True):
        results = task["annotations"][0]["result"]
        rle = [r for r in results if r["type"] == "brushlabels"]
        assert item.detections.masks is not None
        assert len(rle) == len(item.detections)
        for r, mask in zip(rle, item.detections.masks, strict=True):
            assert r["value"]["rle"] == brush.mask2rle(mask.astype(np.uint8) * 255)  # byte-identical
            ref = brush.decode_rle(r["value"]["rle"]).reshape(item.height, item.width, 4)[:, :, 3]
            np.testing.assert_array_equal(ref > 0, mask)
        layers = brush.decode_from_annotation("label", [{**r, **r["value"]} for r in rle])
        assert len(layers) == len(rle)


def test_labelstudio_boxes_in_percent(dataset: Dataset, float_boxes: Dataset, tmp_path: Path) -> None:
    (path,) = export_labelstudio(float_boxes, tmp_path)
    back = import_labelstudio(path, categories=["a", "b"])
    # percentages in float64 JSON: float32 boxes come back bit-exact (checked on 5000 random boxes too)
    np.testing.assert_array_equal(back.items[0].detections.xyxy, float_boxes.items[0].detections.xyxy)
    r = json.loads(path.read_text())[0]["annotations"][0]["result"][0]
    x1, y1, _, y2 = float_boxes.items[0].detections.xyxy[0].astype(float)
    assert r["value"]["x"] == pytest.approx(x1 / 640 * 100)
    assert r["value"]["height"] == pytest.approx((y2 - y1) / 480 * 100)


def test_labelstudio_polygon_round_trip(dataset: Dataset, tmp_path: Path) -> None:
    (path,) = export_labelstudio(dataset, tmp_path, masks="polygon")
    back = import_labelstudio(path)
    _assert_same(dataset, back, masks="within_1px", boxes=False)


def test_brush_decoder_reads_literal_chunks() -> None:
    """A hand-made stream with a literal chunk (what the Label Studio front end also writes)."""
    bits = f"{8:032b}" + f"{7:05b}" + "".join(f"{s - 1:04b}" for s in (3, 4, 8, 16))
    bits += "0" + "00" + f"{3:03b}" + "".join(f"{v:08b}" for v in (0, 0, 0, 0))  # 4 literal words
    bits += "1" + "00" + f"{3:03b}" + f"{255:08b}"  # a run of 4
    bits += "0" * (-len(bits) % 8)
    rle = [int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)]
    np.testing.assert_array_equal(decode_brush_rle(rle, (1, 2)), [[False, True]])
    with pytest.raises(FormatError, match="H \\* W \\* 4"):
        decode_brush_rle(rle, (2, 2))
    with pytest.raises(FormatError, match="truncated"):
        decode_brush_rle(encode_brush_rle(np.ones((4, 4), bool))[:6], (4, 4))


# ------------------------------------------------------------------ splits


def test_split_deterministic_and_stable() -> None:
    det = Detections.empty((4, 4))

    def ds(n: int) -> Dataset:
        return Dataset([DatasetItem(f"img_{i:04d}.jpg", 4, 4, det) for i in range(n)], [])

    small, big = split(ds(500)), split(ds(1000))
    assert {k: [i.path for i in v.items] for k, v in small.items()} == {
        k: [i.path for i in v.items] for k, v in split(ds(500)).items()
    }
    for name in ("train", "val", "test"):  # adding images moves none of the first 500
        assert {i.path for i in small[name].items} <= {i.path for i in big[name].items}
    sizes = [len(big[n]) for n in ("train", "val", "test")]
    assert abs(sizes[0] - 800) < 60 and abs(sizes[1] - 100) < 35 and abs(sizes[2] - 100) < 35
    assert split_of("img_0001.jpg", seed=1) in ("train", "val", "test")
    assert [split_of(f"x{i}", (0, 1, 0)) for i in range(20)] == ["val"] * 20
    other = split(ds(500), seed=1)
    assert [i.path for i in other["val"].items] != [i.path for i in small["val"].items]


# ------------------------------------------------------------------ errors


def test_bad_input_is_one_line_format_error(dataset: Dataset, image_root: Path, tmp_path: Path) -> None:
    export_yolo(dataset, tmp_path / "y", image_root=image_root)
    label = tmp_path / "y" / "labels" / "train" / "voc.txt"
    label.write_text("0 0.5 0.5 nan-ish 0.1\n")
    with pytest.raises(FormatError, match=r"voc\.txt: line 1") as exc:
        import_yolo(tmp_path / "y")
    assert "\n" not in str(exc.value)
    label.write_text("99 0.5 0.5 0.1 0.1\n")
    with pytest.raises(FormatError, match="class 99"):
        import_yolo(tmp_path / "y")

    export_voc(dataset, tmp_path / "v")
    xml = tmp_path / "v" / "Annotations" / "voc.xml"
    xml.write_text(xml.read_text().replace("<xmin>", "<xmin>x", 1))
    with pytest.raises(FormatError, match=r"voc\.xml: object\[0\]/bndbox"):
        import_voc(tmp_path / "v")

    bad = tmp_path / "c.json"
    bad.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "a.jpg", "width": 0, "height": 4}],
                "annotations": [],
                "categories": [],
            }
        )
    )
    with pytest.raises(FormatError, match=r"c\.json: images\[0\]\.width"):
        import_coco(bad)

    (path,) = export_labelstudio(dataset, tmp_path / "ls")
    tasks = json.loads(path.read_text())
    tasks[0]["annotations"][0]["result"][1]["value"]["rle"] = [1, 2, 3]
    path.write_text(json.dumps(tasks))
    with pytest.raises(FormatError, match=r"tasks\.json: task 0: result\[1\]\.value"):
        import_labelstudio(path)
