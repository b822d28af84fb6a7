"""The offline default backend on real photos with ground truth (PASCAL VOC cafeteria photo)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from promptseg import ConfigError, Detections, InputError, QueryError, WeightsNotFoundError
from promptseg.backends import check_backend, list_backends, load_backend
from promptseg.backends.onnx_detector import DETECTORS, OnnxDetector
from promptseg.ops.boxes import box_iou


@pytest.fixture(scope="module")
def backend(offline_backend: Any) -> Any:
    return offline_backend


def matched(det: Detections, gt_xyxy: np.ndarray, iou: float = 0.5) -> int:
    """How many ground-truth boxes some detection overlaps with IoU >= iou (each detection used once)."""
    if len(det) == 0 or len(gt_xyxy) == 0:
        return 0
    m = box_iou(gt_xyxy, det.xyxy)
    hits = 0
    used: set[int] = set()
    for g in np.argsort(-m.max(axis=1)):
        for d in np.argsort(-m[g]):
            if m[g, d] >= iou and d not in used:
                used.add(int(d))
                hits += 1
                break
    return hits


@pytest.mark.parametrize(
    ("name", "file", "min_recall"),
    [
        ("picodet-s", "picodet-s-coco/picodet_s_416_coco.onnx", 13),  # 13/19 measured at score >= 0.3
        ("yolox-nano", "yolox-nano-coco/yolox_nano.onnx", 12),  # 13/19 measured; README reports 12/19
    ],
)
def test_detector_decoding_matches_ground_truth(
    models_dir: Path, voc: dict[str, Any], name: str, file: str, min_recall: int
) -> None:
    detector = OnnxDetector(models_dir / file, DETECTORS[name], threads=2)
    raw = detector.detect(voc["rgb"], threshold=0.3)
    iou = box_iou(voc["xyxy"], raw.xyxy)
    assert (iou.max(axis=1) >= 0.5).sum() >= min_recall
    # Correct decoding puts matched boxes tightly on the objects, not half a stride off.
    assert iou.max(axis=1)[iou.max(axis=1) >= 0.5].mean() >= 0.75
    # ... and the matched detections carry the right class.
    names = {"person": "person", "bottle": "bottle", "chair": "chair", "diningtable": "dining table"}
    best = iou.argmax(axis=1)
    from promptseg.text.vocabulary import COCO80

    right = [
        COCO80[raw.class_ids[best[g]]] == names[voc["labels"][g]]
        for g in range(len(best))
        if iou[g, best[g]] >= 0.5
    ]
    assert np.mean(right) >= 0.9


def test_the_bottle(backend: Any, voc: dict[str, Any]) -> None:
    det = backend.detect(voc["rgb"], "the bottle")
    gt = voc["xyxy"][[i for i, lab in enumerate(voc["labels"]) if lab == "bottle"]]
    assert len(det) >= 1
    assert set(det.labels.tolist()) == {"bottle"}
    assert box_iou(gt, det.xyxy).max() >= 0.5
    assert det.masks is not None and det.masks.shape == (len(det), 375, 500)
    assert det.meta["backend"] == "offline" and det.meta["prompt"] == "the bottle"
    assert det.meta["notes"] == []


def test_people(backend: Any, voc: dict[str, Any]) -> None:
    det = backend.detect(voc["rgb"], "people")
    gt = voc["xyxy"][[i for i, lab in enumerate(voc["labels"]) if lab == "person"]]
    assert len(gt) == 7
    assert set(det.labels.tolist()) == {"person"}
    assert matched(det, gt) >= 5
    assert (det.attributes["concept"] == "people").all()


def test_a_helmet_returns_nothing_and_says_why(backend: Any, voc: dict[str, Any]) -> None:
    det = backend.detect(voc["rgb"], "a helmet")
    assert len(det) == 0
    assert det.masks is not None and det.masks.shape == (0, 375, 500)
    (note,) = det.meta["notes"]
    assert "helmet" in note and "COCO" in note


def test_conjunctions_union_and_partial_matches(backend: Any, voc: dict[str, Any]) -> None:
    det = backend.detect(voc["rgb"], "people and bottles and helmets")
    assert set(det.labels.tolist()) == {"person", "bottle"}
    assert any("helmet" in n for n in det.meta["notes"])


def test_set_image_reuses_the_detector_pass(backend: Any, voc: dict[str, Any]) -> None:
    flipped = np.ascontiguousarray(voc["rgb"][:, ::-1])
    fresh = backend.detect(voc["rgb"], "people")
    fresh_flipped = backend.detect(flipped, "people")
    assert fresh != fresh_flipped
    backend.set_image(voc["rgb"])
    assert backend.detect(voc["rgb"], "people") == fresh
    assert backend.detect(voc["rgb"], "the bottle") == backend.detect(voc["rgb"].copy(), "the bottle")
    # a different image is never answered from the cache
    assert backend.detect(flipped, "people") == fresh_flipped


def test_threshold_filters(backend: Any, voc: dict[str, Any]) -> None:
    low = backend.detect(voc["rgb"], "people", threshold=0.2)
    high = backend.detect(voc["rgb"], "people", threshold=0.8)
    assert len(high) < len(low)
    assert (high.scores >= 0.8).all()
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        backend.detect(voc["rgb"], "people", threshold=2)


@pytest.mark.parametrize(
    ("image", "prompt", "error"),
    [
        (np.zeros((10, 10), np.uint8), "cup", InputError),  # grayscale array
        (np.zeros((10, 10, 3), np.float32), "cup", InputError),  # float pixels
        (np.zeros((0, 10, 3), np.uint8), "cup", InputError),  # empty image
        (np.zeros((10, 10, 3), np.uint8), "", QueryError),  # empty prompt
        (np.zeros((10, 10, 3), np.uint8), [], InputError),  # no prompts
    ],
)
def test_bad_input(backend: Any, image: np.ndarray, prompt: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        backend.detect(image, prompt)


def test_missing_weights_say_where_and_how(
    tmp_path: Path, minilm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMPTSEG_MODELS", str(tmp_path))
    with pytest.raises(WeightsNotFoundError) as info:
        load_backend("offline")
    assert str(tmp_path / "picodet-s-coco") in str(info.value)
    status = check_backend("offline")
    assert not status.available and "PROMPTSEG_MODELS" in status.reason


@pytest.mark.parametrize("name", [n for n in list_backends() if n.startswith("offline")])
def test_every_offline_backend_keeps_the_contract(name: str, offline_env: Path, voc: dict[str, Any]) -> None:
    assert check_backend(name).available
    det = load_backend(name).detect(voc["rgb"], "people")
    assert isinstance(det, Detections)
    assert det.image_size == (375, 500)
    assert len(det) > 0
    assert det.scores is not None and ((det.scores >= 0) & (det.scores <= 1)).all()
    assert det.masks is None or det.masks.shape == (len(det), 375, 500)
    assert det.meta["backend"] == name
    assert (det.xyxy[:, 2:] <= [500, 375]).all() and (det.xyxy >= 0).all()


@pytest.mark.parametrize(
    ("photo", "prompt", "label", "centre"),
    [
        ("astronaut.png", "the astronaut", "person", (230, 300)),  # a portrait: person, not a rocket
        ("chelsea.png", "the cat", "cat", (220, 150)),  # a close-up of a cat's face
        ("coffee.png", "the coffee cup", "cup", (290, 120)),  # cup on a saucer, seen from above
        ("motorcycle_left.png", "motorbike", "motorcycle", (400, 300)),  # a motorbike in a garage
        ("camera.png", "the cameraman", "person", (160, 250)),  # grayscale photo of a cameraman
    ],
)
def test_the_subject_of_more_real_photos(
    backend: Any, skimage_data: Path, photo: str, prompt: str, label: str, centre: tuple[int, int]
) -> None:
    """The subject is the best match, with a box around it and a mask on it (centre: a subject pixel)."""
    from promptseg import load_image

    det = backend.detect(load_image(skimage_data / photo), prompt)
    assert len(det) >= 1
    best = det[int(np.argmax(det.scores))]
    assert best.labels[0] == label
    assert best.scores[0] >= 0.8
    x, y = centre
    x1, y1, x2, y2 = best.xyxy[0]
    assert x1 <= x <= x2 and y1 <= y <= y2
    assert best.masks[0].mean() > 0.1  # a real share of the image, not a sliver
