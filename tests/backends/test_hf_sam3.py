"""The SAM 3 backend on a tiny random SAM 3 checkpoint (tests/tiny/sam3.py) and the PASCAL VOC photo.

The tiny model's answers are noise, so these tests check what does not depend on its skill: frames and
shapes, scores against the threshold, that the backend's numbers equal transformers' own documented
pipeline, how concepts and exemplars reach the model, and that the image cache saves the vision pass.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from promptseg import BackendUnavailable, ConfigError, Detections, InputError, QueryError, load_backend
from promptseg.backends.base import Backend, CachesImage
from promptseg.backends.registry import get_spec
from tests.conftest import need

H, W = 375, 500  # the VOC photo


@pytest.fixture(scope="module")
def tiny_sam3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("torch")
    need("transformers")
    from tests.tiny.sam3 import build_tiny_sam3

    return build_tiny_sam3(tmp_path_factory.mktemp("tiny-sam3"))


@pytest.fixture(scope="module")
def backend(tiny_sam3: Path) -> Any:
    return load_backend("sam3", weights=f"file:{tiny_sam3}", device="cpu")


@pytest.fixture
def fresh(tiny_sam3: Path) -> Any:
    """A backend of its own, for tests that set an image."""
    return load_backend("sam3", weights=f"file:{tiny_sam3}", device="cpu")


def reference(
    folder: Path, image: np.ndarray, text: str, boxes: Any = None, box_labels: Any = None
) -> dict[str, np.ndarray]:
    """Every query's answer the way transformers documents SAM 3 use: processor, model, post-processing."""
    torch = need("torch")
    from transformers import Sam3Model, Sam3Processor

    model = Sam3Model.from_pretrained(folder).eval()
    processor = Sam3Processor.from_pretrained(folder)
    extra = {} if boxes is None else {"input_boxes": [boxes], "input_boxes_labels": [box_labels]}
    inputs = processor(images=image, text=text, return_tensors="pt", **extra)
    sizes = inputs.pop("original_sizes").tolist()
    with torch.inference_mode():
        out = model(**inputs)
    result = processor.post_process_instance_segmentation(out, threshold=0.0, target_sizes=sizes)[0]
    order = np.argsort(-result["scores"].numpy(), kind="stable")
    return {
        "scores": result["scores"].numpy()[order],
        "xyxy": result["boxes"].numpy()[order].clip(0, [W, H, W, H]),
        "masks": result["masks"].numpy()[order].astype(bool),
    }


def assert_same(det: Detections, ref: dict[str, np.ndarray]) -> None:
    assert det.scores is not None and det.masks is not None
    np.testing.assert_allclose(det.scores, ref["scores"], atol=1e-6)
    np.testing.assert_allclose(det.xyxy, ref["xyxy"], atol=1e-3)
    assert np.array_equal(det.masks, ref["masks"])


def assert_close(a: Detections, b: Detections) -> None:
    """Equal up to float noise: batched and single passes may round differently in the last bits."""
    assert a.image_size == b.image_size
    assert a.labels.tolist() == b.labels.tolist()
    assert a.scores is not None and b.scores is not None and a.masks is not None and b.masks is not None
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
    np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-2)
    assert (a.masks == b.masks).mean() >= 0.999


def test_registry_facts(backend: Any) -> None:
    spec = get_spec("sam3")
    assert type(backend).DEFAULT_WEIGHTS == spec.weights["model"] == "hf:facebook/sam3"
    assert backend.capabilities == spec.capabilities
    assert backend.name == "sam3"
    assert isinstance(backend, Backend) and isinstance(backend, CachesImage)


def test_detections_in_the_photo_frame(backend: Any, tiny_sam3: Path, voc: dict[str, Any]) -> None:
    det = backend.detect(voc["rgb"], "the cups", threshold=0.0)
    assert det.image_size == (H, W)
    assert len(det) == 8  # every query of the tiny model scores above 0
    assert det.masks is not None and det.masks.shape == (8, H, W) and det.masks.dtype == bool
    assert (det.xyxy >= 0).all() and (det.xyxy[:, [0, 2]] <= W).all() and (det.xyxy[:, [1, 3]] <= H).all()
    assert det.labels.tolist() == ["cups"] * 8
    assert det.attributes["concept"].tolist() == ["cups"] * 8
    assert all(r.startswith("SAM 3 found 'cups' here with score 0.") for r in det.attributes["reason"])
    assert det.scores is not None and (np.diff(det.scores) <= 0).all()  # best first
    # The same numbers, masks and frame as transformers' documented pipeline on the (375, 500) photo.
    assert_same(det, reference(tiny_sam3, voc["rgb"], "cups"))
    meta = det.meta
    assert meta["backend"] == "sam3" and meta["model"] == "Sam3Model" and meta["model_type"] == "sam3"
    assert meta["weights"] == f"file:{tiny_sam3}" and meta["license"] == get_spec("sam3").license
    assert meta["prompt"] == "the cups" and meta["threshold"] == 0.0 and meta["concepts"] == ["cups"]
    assert meta["notes"] == [] and meta["exemplars"] == 0
    assert meta["image_features"] == "computed for this call"


def test_scores_respect_the_threshold(backend: Any, voc: dict[str, Any]) -> None:
    everything = backend.detect(voc["rgb"], "cup", threshold=0.0)
    assert everything.scores is not None
    assert ((everything.scores >= 0) & (everything.scores <= 1)).all()
    cut = float(np.median(everything.scores))
    det = backend.detect(voc["rgb"], "cup", threshold=cut)
    assert det.scores is not None and len(det) == int((everything.scores > cut).sum()) > 0
    assert (det.scores >= cut).all()
    # the backend's default threshold (0.5) is a fixed point the tiny model's ~0.25 scores never reach
    assert len(backend.detect(voc["rgb"], "cup")) == 0


def test_nothing_above_threshold_is_an_empty_answer_with_masks(backend: Any, voc: dict[str, Any]) -> None:
    det = backend.detect(voc["rgb"], "cup", threshold=1.0)
    assert len(det) == 0
    assert det.masks is not None and det.masks.shape == (0, H, W)
    assert det.scores is not None and det.scores.shape == (0,)
    assert det.attributes["concept"].shape == (0,) and det.attributes["reason"].shape == (0,)
    assert det.meta["notes"] == ["nothing found for 'cup' with a score of at least 1.00"]


def test_several_concepts_are_joined(backend: Any, voc: dict[str, Any]) -> None:
    det = backend.detect(voc["rgb"], ["bags and luggage", "bottles"], threshold=0.0)
    assert det.meta["concepts"] == ["bags", "luggage", "bottles"]
    assert det.meta["prompt"] == ["bags and luggage", "bottles"]
    assert det.labels.tolist() == det.attributes["concept"].tolist()
    singles = {c: backend.detect(voc["rgb"], c, threshold=0.0) for c in det.meta["concepts"]}
    # Grouped by concept in prompt order; each instance is its concept's own answer, found in the one
    # shared decoder pass; an instance missing from the joint answer was reported under another concept.
    rank = [det.meta["concepts"].index(c) for c in det.labels.tolist()]
    assert rank == sorted(rank)
    for concept, single in singles.items():
        mine = det[det.labels == concept]
        assert single.scores is not None and mine.scores is not None
        for score, box in zip(mine.scores, mine.xyxy, strict=True):
            k = int(np.argmin(np.abs(single.scores - score) + np.abs(single.xyxy - box).sum(axis=1)))
            assert abs(single.scores[k] - score) < 1e-5 and np.abs(single.xyxy[k] - box).max() < 1e-2
        merged = len(single) - len(mine)
        mentions = sum(f"also matches '{concept}'" in r for r in det.attributes["reason"])
        assert merged == mentions


def test_phrases_differing_in_number_are_one_concept(backend: Any, voc: dict[str, Any]) -> None:
    det = backend.detect(voc["rgb"], "cups and a cup", threshold=0.0)
    assert det.meta["concepts"] == ["cups"]
    assert len(det) == 8
    assert det.meta["notes"] == ["'cup' and 'cups' name one concept; looked for once as 'cups'"]


def test_one_object_found_for_two_concepts_is_reported_once() -> None:
    from promptseg.backends.hf_sam3 import _merge_same_objects

    masks = np.zeros((4, 20, 20), bool)
    masks[0, 2:10, 2:10] = True  # a bag
    masks[1, 2:10, 3:10] = True  # the same bag, as luggage (IoU 0.875 with the first)
    masks[2, 2:10, 12:18] = True  # another bag, next to it
    masks[3] = masks[1]  # a duplicate "bags" answer, a closer match to the luggage than the first
    det = Detections(
        xyxy=[[2, 2, 10, 10], [3, 2, 10, 10], [12, 2, 18, 10], [3, 2, 10, 10]],
        image_size=(20, 20),
        labels=["bags", "luggage", "bags", "bags"],
        scores=[0.6, 0.9, 0.7, 0.5],
        masks=masks,
        attributes={
            "concept": np.array(["bags", "luggage", "bags", "bags"]),
            "reason": np.array(["a", "b", "c", "d"]),
        },
    )
    notes: list[str] = []
    out = _merge_same_objects(det, notes)
    # the luggage takes one bag, the closest; each concept's answer holds an object at most once
    assert out.labels.tolist() == ["bags", "luggage", "bags"]
    assert out.attributes["reason"].tolist() == ["a", "b; it also matches 'bags' (score 0.50)", "c"]
    assert notes == ["one object matched both 'luggage' and 'bags'; reported once, as 'luggage'"]
    assert _merge_same_objects(det[[0, 2]], []) == det[[0, 2]]  # one concept: SAM 3's answer stands


def test_exemplar_boxes_positive_and_negative(backend: Any, tiny_sam3: Path, voc: dict[str, Any]) -> None:
    boxes = [[10.0, 20.0, 120.0, 200.0], [250.0, 100.0, 400.0, 300.0]]
    det = backend.detect(voc["rgb"], "cup", exemplars=boxes, exemplar_labels=[1, 0], threshold=0.0)
    # the boxes reach the model in the photo's frame, as transformers' processor puts them
    assert_same(det, reference(tiny_sam3, voc["rgb"], "cup", boxes, [1, 0]))
    assert det.meta["exemplars"] == 2 and det.labels.tolist() == ["cup"] * len(det)
    assert det.attributes["reason"][0].endswith("guided by 2 exemplar boxes (1 positive, 1 negative)")
    # the labels matter: both boxes positive is another prompt, and so is no box at all
    both = backend.detect(voc["rgb"], "cup", exemplars=boxes, exemplar_labels=[1, 1], threshold=0.0)
    plain = backend.detect(voc["rgb"], "cup", threshold=0.0)
    assert det.scores is not None and both.scores is not None and plain.scores is not None
    assert not np.allclose(det.scores, both.scores) and not np.allclose(det.scores, plain.scores)
    # default labels are positive
    assert backend.detect(voc["rgb"], "cup", exemplars=boxes, threshold=0.0) == both


@pytest.mark.parametrize(
    "words",
    [
        "",  # no words at all
        "visual",  # the text SAM 3 itself reads for box-only prompts
        [""],  # a list of blank prompts
    ],
)
def test_exemplars_without_words(backend: Any, tiny_sam3: Path, voc: dict[str, Any], words: Any) -> None:
    box = [60.0, 40.0, 160.0, 220.0]
    det = backend.detect(voc["rgb"], words, exemplars=box, threshold=0.0)
    assert det.labels.tolist() == ["object"] * 8 and det.meta["concepts"] == ["object"]
    assert det.attributes["reason"][0].startswith(
        "SAM 3 found an object like the 1 exemplar box (1 positive)"
    )
    assert_same(det, reference(tiny_sam3, voc["rgb"], "visual", [box], [1]))


def _raises(message: str) -> AbstractContextManager[Any]:
    return pytest.raises(InputError, match=message)


@pytest.mark.parametrize(
    ("prompt", "exemplars", "labels", "expectation"),
    [
        ("cup", [10, 20, 50, 60], None, nullcontext()),  # one box as (4,)
        ("cup", [[10, 20, 50, 60]], [True], nullcontext()),  # bool labels
        ("cup", [[-30, -30, 50, 60]], None, nullcontext()),  # partly outside: clipped
        ("cup", [[10, 20, 50, 60]], [0], nullcontext()),  # only a counter-example, with words
        ("cup", [10, 20, 50], None, _raises(r"\(M, 4\)")),  # three numbers
        ("cup", [[10, 20, 50, 60, 70]], None, _raises(r"\(M, 4\)")),  # five numbers
        ("cup", np.zeros((0, 4)), None, _raises("empty")),  # no box
        ("cup", [[50, 20, 10, 60]], None, _raises("x1 < x2")),  # corners reversed
        ("cup", [[10, 20, 10, 60]], None, _raises("x1 < x2")),  # no width
        ("cup", [[10, np.nan, 50, 60]], None, _raises("finite")),  # NaN
        ("cup", [["a", "b", "c", "d"]], None, _raises("pixel numbers")),  # not numbers
        ("cup", [[600, 20, 700, 60]], None, _raises("outside the 500x375 image")),  # right of the photo
        (
            "cup",
            [[10, 20, 50, 60]],
            [1, 0],
            _raises(r"1 exemplar boxes but exemplar_labels has shape \(2,\)"),
        ),
        ("cup", [[10, 20, 50, 60]], [2], _raises(r"1 \(an example\) or 0")),  # not a 0/1 label
        ("cup", None, [1], _raises("exemplar_labels given without exemplars")),
        ("", [[10, 20, 50, 60]], [0], _raises("at least one positive box")),  # nothing left to find
        ("cups and plates", [[10, 20, 50, 60]], None, _raises("examples of one concept")),
    ],
)
def test_exemplar_validation(
    backend: Any,
    voc: dict[str, Any],
    prompt: str,
    exemplars: Any,
    labels: Any,
    expectation: AbstractContextManager[Any],
) -> None:
    with expectation:
        det = backend.detect(voc["rgb"], prompt, exemplars=exemplars, exemplar_labels=labels, threshold=0.0)
        assert det.image_size == (H, W)


def test_bad_calls(backend: Any, voc: dict[str, Any]) -> None:
    with pytest.raises(InputError, match=r"\(H, W, 3\) uint8"):
        backend.detect(voc["rgb"].astype(np.float32), "cup")
    with pytest.raises(InputError, match="no prompt"):
        backend.detect(voc["rgb"], [])
    with pytest.raises(QueryError, match="empty"):
        backend.detect(voc["rgb"], "  ")
    with pytest.raises(ConfigError, match="threshold"):
        backend.detect(voc["rgb"], "cup", threshold=1.5)
    with pytest.raises(InputError, match="at least one image"):
        backend.detect_batch([], "cup")


@pytest.mark.parametrize(
    "shape",
    [
        (3, 40, 3),  # three rows: must not be read as channels-first
        (1, 1, 3),  # one pixel
        (40, 3, 3),  # three columns
    ],
)
def test_odd_image_shapes(backend: Any, shape: tuple[int, int, int]) -> None:
    det = backend.detect(np.full(shape, 128, np.uint8), "cup", threshold=0.0)
    assert det.image_size == shape[:2] and det.masks is not None and det.masks.shape == (8, *shape[:2])


def test_set_image_runs_the_vision_encoder_once(fresh: Any, voc: dict[str, Any]) -> None:
    image = voc["rgb"]
    other = np.ascontiguousarray(image[:, ::-1])
    nudged = image.copy()
    nudged[0, 0, 0] ^= 1
    before = {
        "cup": fresh.detect(image, "cup", threshold=0.0),
        "other": fresh.detect(other, "cup", threshold=0.0),
    }
    calls: list[int] = []
    handle = fresh._model.vision_encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        fresh.set_image(image)
        assert len(calls) == 1
        again = fresh.detect(image, "cup", threshold=0.0)
        assert again.meta["image_features"] == "cached by set_image"
        assert again == before["cup"].with_meta(image_features="cached by set_image")
        fresh.detect(image, "plates and bottles", threshold=0.0)
        fresh.detect(image.copy(), "a bottle", threshold=0.0)  # the same pixels in another array
        assert len(calls) == 1
        # any other pixels are encoded afresh, and do not replace the cached image
        assert fresh.detect(other, "cup", threshold=0.0) == before["other"]
        assert len(calls) == 2
        fresh.detect(nudged, "cup", threshold=0.0)
        assert len(calls) == 3
        fresh.detect(image, "cup", threshold=0.0)
        assert len(calls) == 3
    finally:
        handle.remove()


def test_detect_batch_equals_detect_per_image(backend: Any, voc: dict[str, Any]) -> None:
    images = [
        voc["rgb"],
        np.ascontiguousarray(voc["rgb"][:, ::-1]),
        np.ascontiguousarray(voc["rgb"][50:250, 100:400]),
    ]
    batch = backend.detect_batch(images, "cups and plates", threshold=0.0)
    assert len(batch) == 3
    for image, det in zip(images, batch, strict=True):
        single = backend.detect(image, "cups and plates", threshold=0.0)
        assert det.image_size == image.shape[:2]
        assert_close(det, single)
        assert det.meta == single.meta


def test_device_this_machine_lacks(tiny_sam3: Path) -> None:
    torch = need("torch")
    if torch.cuda.is_available():
        pytest.skip("platform: this machine has a CUDA GPU")
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        load_backend("sam3", weights=f"file:{tiny_sam3}", device="cuda")


def test_folder_without_config(tiny_sam3: Path, tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(BackendUnavailable, match=r"no config\.json"):
        load_backend("sam3", weights=f"file:{tmp_path}")


def test_bad_threshold_at_construction(tiny_sam3: Path) -> None:
    with pytest.raises(ConfigError, match="mask_threshold"):
        load_backend("sam3", weights=f"file:{tiny_sam3}", mask_threshold=-0.1)
