"""SAM, SAM 2 and EdgeTAM backends on tiny random checkpoints, loaded through the real loading path.

The tiny models' masks are noise, but noise with structure (they change with the prompt), so the
tests check frames, shapes, plumbing, caching and agreement with the transformers recipe, never what
the masks cover.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from promptseg import BackendUnavailable, ConfigError, InputError, WeightsNotFoundError
from promptseg.backends import load_backend
from promptseg.backends.base import CachesImage, Promptable
from promptseg.backends.registry import get_spec
from promptseg.ops.boxes import mask_to_xyxy
from tests.conftest import need
from tests.tiny.sam import TINY_BUILDERS, build_tiny_edgetam, build_tiny_sam, build_tiny_sam2

NAMES = ["sam", "sam2", "edgetam"]
# Hub checkpoint kinds: the Hub ships SAM 2.1 and EdgeTAM as video checkpoints
VIDEO_BUILDERS: dict[str, Callable[..., Path]] = {"sam2": build_tiny_sam2, "edgetam": build_tiny_edgetam}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Run the tiny models on one thread, restored afterwards: they gain nothing from more, and on a
    busy two-core machine two threads made each pass up to a hundred times slower (measured)."""
    torch = need("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("torch")
    need("transformers")
    return tmp_path_factory.mktemp("tiny-sam")


@pytest.fixture(scope="session")
def tiny(tiny_dir: Path) -> Callable[[str], Path]:
    """name -> the folder of its tiny checkpoint (seed 0), built on first use."""
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name == "edgetam":
            need("timm")
        if name not in built:
            built[name] = TINY_BUILDERS[name](tiny_dir / name)
        return built[name]

    return get


def load(tiny: Callable[[str], Path], name: str, **options: Any) -> Any:
    return load_backend(name, weights=f"file:{tiny(name)}", device="cpu", **options)


@pytest.fixture(params=NAMES)
def backend(request: pytest.FixtureRequest, tiny: Callable[[str], Path]) -> Any:
    return load(tiny, request.param)


@pytest.fixture(scope="session")
def photo(voc: dict[str, Any]) -> np.ndarray:
    """The VOC cafeteria photo, (375, 500, 3): not square, so a frame mix-up shows."""
    return np.ascontiguousarray(voc["rgb"])


@contextmanager
def encoder_calls(backend: Any) -> Iterator[list[int]]:
    """Count the image encoder's forward passes (a real forward hook), with the batch size of each."""
    calls: list[int] = []
    handle = backend.model.vision_encoder.register_forward_hook(
        lambda _module, args, _out: calls.append(int(args[0].shape[0]))
    )
    try:
        yield calls
    finally:
        handle.remove()


def test_registry_facts(backend: Any) -> None:
    spec = get_spec(backend.name)
    assert backend.capabilities == spec.capabilities
    assert spec.weights["model"] == type(backend).DEFAULT_WEIGHTS
    assert isinstance(backend, Promptable)
    assert isinstance(backend, CachesImage)


def test_boxes_give_masks_in_the_photo_frame(backend: Any, photo: np.ndarray, voc: dict[str, Any]) -> None:
    boxes = voc["xyxy"][:3]
    det = backend.predict(photo, boxes=boxes, labels=voc["labels"][:3])
    assert len(det) == 3
    assert det.image_size == (375, 500)
    assert det.masks is not None and det.masks.shape == (3, 375, 500)
    assert det.scores is not None and ((det.scores >= 0) & (det.scores <= 1)).all()
    assert det.labels.tolist() == voc["labels"][:3]
    filled = det.masks.any(axis=(1, 2))
    np.testing.assert_array_equal(det.xyxy[filled], mask_to_xyxy(det.masks[filled]))
    np.testing.assert_array_equal(det.xyxy[~filled], boxes[~filled])
    assert det.meta["backend"] == backend.name
    assert det.meta["prompt"] == "3 objects, each with a box"
    np.testing.assert_array_equal(det.meta["visual_prompts"]["boxes"], boxes)
    reason = det.attributes["reason"][0]
    x1, y1, x2, y2 = (int(v) for v in boxes[0])
    assert reason.startswith(
        f"{backend._DISPLAY} mask for box prompt [{x1}, {y1}, {x2}, {y2}]; predicted IoU "
    )


def test_positive_and_negative_points(backend: Any, photo: np.ndarray) -> None:
    det = backend.predict(photo, points=[[120, 200], [140, 220], [400, 50]], point_labels=[1, 1, 0])
    assert len(det) == 1 and det.masks is not None and det.masks.shape == (1, 375, 500)
    assert "2 positive and 1 negative point;" in det.attributes["reason"][0]
    assert det.meta["visual_prompts"]["point_labels"] == [[1, 1, 0]]
    assert det.labels.tolist() == ["object"]


def test_boxes_and_points_together(backend: Any, photo: np.ndarray) -> None:
    det = backend.predict(
        photo,
        boxes=[[100, 150, 220, 300], [300, 40, 480, 200]],
        points=[[[160, 220]], [[390, 120]]],
        labels=["person", "bottle"],
    )
    assert det.labels.tolist() == ["person", "bottle"]
    assert det.masks is not None and det.masks.shape == (2, 375, 500)
    assert det.attributes["reason"][1].startswith(
        f"{backend._DISPLAY} mask for box prompt [300, 40, 480, 200], 1 positive point;"
    )
    # the points change what the decoder sees, so the masks differ from the boxes' alone
    boxes_only = backend.predict(photo, boxes=[[100, 150, 220, 300], [300, 40, 480, 200]])
    assert not np.array_equal(det.masks, boxes_only.masks)


def test_many_objects_match_one_at_a_time(tiny: Callable[[str], Path], photo: np.ndarray) -> None:
    # 40 objects: more than one chunk of masks is upscaled to the photo's size
    backend = load(tiny, "sam2")
    rng = np.random.default_rng(0)
    corners = rng.uniform([0, 0], [400, 300], size=(40, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(10, 100, size=(40, 2))], axis=1)
    det = backend.predict(photo, boxes=boxes)
    assert det.masks is not None and det.masks.shape == (40, 375, 500)
    for i in (0, 15, 16, 39):
        alone = backend.predict(photo, boxes=boxes[i])
        np.testing.assert_array_equal(det.masks[i], alone.masks[0])
        assert det.scores[i] == pytest.approx(alone.scores[0], abs=1e-5)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("multimask", [True, False])
def test_matches_the_transformers_recipe(
    tiny: Callable[[str], Path], photo: np.ndarray, name: str, multimask: bool
) -> None:
    # The documented recipe (processor with prompts, a full forward pass, post_process_masks), with
    # the best candidate by predicted IoU: an independent path for the coordinate scaling, the mask
    # choice and the frame of the masks.
    torch = need("torch")
    backend = load(tiny, name, multimask=multimask)
    box, points, point_labels = [60.0, 90.0, 260.0, 330.0], [[150.0, 200.0], [420.0, 60.0]], [1, 0]
    det = backend.predict(photo, boxes=[box], points=[points], point_labels=[point_labels])

    processor = backend._processor
    inputs = processor(
        images=photo,
        input_boxes=[[box]],
        input_points=[[points]],
        input_labels=[[point_labels]],
        return_tensors="pt",
    )
    sizes = [inputs.pop("original_sizes")]
    if "reshaped_input_sizes" in inputs:
        sizes.append(inputs.pop("reshaped_input_sizes"))
    with torch.inference_mode():
        out = backend.model(**inputs, multimask_output=multimask)
    masks = processor.post_process_masks(out.pred_masks, *sizes)[0][0]  # (M, H, W) for the one object
    iou = out.iou_scores[0, 0]
    best = int(iou.argmax())
    assert out.pred_masks.shape[2] == (3 if multimask else 1)
    assert det.scores is not None and det.masks is not None
    assert det.scores[0] == pytest.approx(float(iou[best].clamp(0, 1)), abs=1e-5)
    assert (det.masks[0] == masks[best].numpy()).mean() > 0.999
    if multimask:
        assert "best of 3 candidate masks" in det.attributes["reason"][0]


def test_set_image_runs_the_encoder_once(backend: Any, photo: np.ndarray) -> None:
    with encoder_calls(backend) as calls:
        backend.set_image(photo)
        first = backend.predict(photo, boxes=[[10, 20, 200, 300]])
        second = backend.predict(photo, points=[[100, 100]])
        backend.set_image(photo.copy())  # same pixels: nothing to do
    assert calls == [1]
    assert first.meta["image_features"] == second.meta["image_features"] == "cached by set_image"
    fresh = load_backend(backend.name, weights=first.meta["weights"], device="cpu")
    uncached = fresh.predict(photo, boxes=[[10, 20, 200, 300]])
    assert uncached.meta["image_features"] == "computed for this call"
    assert first.masks is not None and uncached.masks is not None
    np.testing.assert_array_equal(first.masks, uncached.masks)
    np.testing.assert_allclose(first.scores, uncached.scores, atol=1e-6)


def test_another_image_is_not_served_from_the_cache(backend: Any, photo: np.ndarray) -> None:
    backend.set_image(photo)
    other = photo.copy()
    other[0, 0, 0] ^= 1  # one value off: a different image
    with encoder_calls(backend) as calls:
        det_other = backend.predict(other, boxes=[[10, 20, 200, 300]])
        det_photo = backend.predict(photo, boxes=[[10, 20, 200, 300]])
    assert calls == [1]  # the other image was encoded; the cached photo was kept
    assert det_other.meta["image_features"] == "computed for this call"
    assert det_photo.meta["image_features"] == "cached by set_image"
    cropped = photo[:300, :400]
    with encoder_calls(backend) as calls:
        det = backend.predict(cropped, boxes=[[10, 20, 200, 250]])
    assert calls == [1] and det.image_size == (300, 400)
    assert det.masks is not None and det.masks.shape == (1, 300, 400)


def test_predict_batch_encodes_images_together(backend: Any, photo: np.ndarray) -> None:
    images = [photo, photo[:200, 100:], photo[50:, :120], np.ascontiguousarray(photo[::-1])]
    prompts: list[dict[str, Any]] = [
        {"boxes": [[10, 20, 200, 300], [300, 40, 480, 200]], "labels": ["a", "b"]},
        {"points": [[50, 60], [200, 150]], "point_labels": [1, 0]},
        {"boxes": [[0, 0, 100, 200]], "points": [[50, 100]], "labels": "cup"},
        {"points": [[[30, 30]], [[300, 200]], [[450, 350]]]},
    ]
    with encoder_calls(backend) as calls:
        dets = backend.predict_batch(images, prompts, batch_size=3)
    assert calls == [3, 1]
    for image, prompt, det in zip(images, prompts, dets, strict=True):
        single = backend.predict(image, **prompt)
        assert det.image_size == image.shape[:2]
        assert det.labels.tolist() == single.labels.tolist()
        assert det.masks is not None and single.masks is not None
        assert det.masks.shape == single.masks.shape
        assert (det.masks == single.masks).mean() > 0.999  # batched convolutions may round differently
        np.testing.assert_allclose(det.scores, single.scores, atol=1e-4)


def test_predict_batch_reuses_the_cached_image(backend: Any, photo: np.ndarray) -> None:
    backend.set_image(photo)
    with encoder_calls(backend) as calls:
        dets = backend.predict_batch([photo, photo[:100], photo], [{"boxes": [[1, 1, 50, 50]]}] * 3)
    assert calls == [1]  # only the crop
    assert [d.meta["image_features"] for d in dets] == [
        "cached by set_image",
        "computed for this call",
        "cached by set_image",
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "no visual prompt"),  # nothing to segment
        ({"boxes": [[50, 50, 10, 10]]}, "x1 <= x2"),  # corners reversed
        ({"points": [[600, 10]]}, "outside"),  # beyond the 500 px width
        ({"points": [[10, 10]], "point_labels": [2]}, "must be 1"),  # not a label
        ({"points": [[10, 10], [20, 20]], "point_labels": [0, 0]}, "only with negative"),  # nothing positive
        ({"boxes": [[1, 1, 9, 9], [2, 2, 8, 8]], "labels": ["a"]}, "1 labels for 2 objects"),  # count
        ({"boxes": [[1, 1, 9, 9]], "points": [[[1, 1]], [[2, 2]]]}, "give one set of points per box"),
        ({"boxes": [[1, 1, float("nan"), 9]]}, "finite"),
    ],
)
def test_bad_prompts_are_input_errors(
    tiny: Callable[[str], Path], photo: np.ndarray, kwargs: dict[str, Any], message: str
) -> None:
    backend = load(tiny, "sam")
    with pytest.raises(InputError, match=message):
        backend.predict(photo, **kwargs)


def test_bad_images_and_batches_are_input_errors(tiny: Callable[[str], Path], photo: np.ndarray) -> None:
    backend = load(tiny, "sam2")
    with pytest.raises(InputError, match="uint8"):
        backend.predict(photo.astype(np.float32), boxes=[[1, 1, 9, 9]])
    with pytest.raises(InputError, match="uint8"):
        backend.set_image(photo[..., 0])
    with pytest.raises(InputError, match="2 images but 1 prompt"):
        backend.predict_batch([photo, photo], [{"boxes": [[1, 1, 9, 9]]}])
    with pytest.raises(InputError, match="unknown keys \\['box'\\]"):
        backend.predict_batch([photo], [{"box": [[1, 1, 9, 9]]}])
    with pytest.raises(InputError, match="outside"):  # the second image's prompt is checked before any work
        backend.predict_batch([photo, photo[:10, :10]], [{"points": [[5, 5]]}, {"points": [[50, 50]]}])
    with pytest.raises(ConfigError, match="batch_size"):
        backend.predict_batch([photo], [{"points": [[5, 5]]}], batch_size=0)


def test_detect_says_to_use_predict_or_a_text_backend(backend: Any, photo: np.ndarray) -> None:
    with pytest.raises(ConfigError, match=r"predict\(image, boxes=\.\.\., points=\.\.\.\).*owlv2") as info:
        backend.detect(photo, "people")
    assert "\n" not in str(info.value)


def test_mask_threshold(tiny: Callable[[str], Path], photo: np.ndarray) -> None:
    loose = load(tiny, "sam2", mask_threshold=-0.05).predict(photo, boxes=[[60, 90, 260, 330]])
    strict = load(tiny, "sam2", mask_threshold=0.05).predict(photo, boxes=[[60, 90, 260, 330]])
    assert loose.masks is not None and strict.masks is not None
    assert not (strict.masks & ~loose.masks).any()  # a higher threshold keeps a subset
    assert strict.masks.sum() < loose.masks.sum()
    assert strict.meta["mask_threshold"] == 0.05
    with pytest.raises(ConfigError, match="mask_threshold"):
        load(tiny, "sam2", mask_threshold=float("inf"))


@pytest.mark.parametrize("name", NAMES)
def test_empty_masks_report_the_prompt_box(tiny: Callable[[str], Path], photo: np.ndarray, name: str) -> None:
    backend = load(tiny, name, mask_threshold=1e6)  # no logit is that high: every mask is empty
    det = backend.predict(photo, boxes=[[10, 20, 200, 300]])
    assert det.masks is not None and not det.masks.any()
    np.testing.assert_array_equal(det.xyxy, [[10, 20, 200, 300]])
    assert det.attributes["reason"][0].endswith("the mask is empty, so the box is the prompt's")
    det = backend.predict(photo, points=[[[50, 60], [90, 30], [400, 300]]], point_labels=[[1, 1, 0]])
    np.testing.assert_array_equal(det.xyxy, [[50, 30, 90, 60]])  # the positive points' box


def test_cuda_without_a_gpu_is_a_config_error(tiny: Callable[[str], Path]) -> None:
    torch = need("torch")
    if torch.cuda.is_available():
        pytest.skip("platform: this machine has a CUDA GPU")
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        load_backend("sam", weights=f"file:{tiny('sam')}", device="cuda")
    with pytest.raises(ConfigError, match="float16 is not supported on the CPU"):
        load_backend("sam", weights=f"file:{tiny('sam')}", device="cpu", dtype="float16")


def test_a_folder_without_config_is_unavailable(tiny_dir: Path) -> None:
    empty = tiny_dir / "empty"
    empty.mkdir(exist_ok=True)
    with pytest.raises(BackendUnavailable, match=r"no config\.json"):
        load_backend("sam", weights=f"file:{empty}")


@pytest.mark.parametrize(
    ("name", "other"),
    [
        ("sam2", "sam"),  # a SAM checkpoint for SAM 2
        ("sam", "sam2"),  # and the other way round
        ("edgetam", "sam2"),  # a SAM 2 checkpoint for EdgeTAM
    ],
)
def test_a_checkpoint_of_another_model_is_unavailable(
    tiny: Callable[[str], Path], name: str, other: str
) -> None:
    if name == "edgetam":
        need("timm")
    with pytest.raises(BackendUnavailable, match=f"hold a '{other}' checkpoint"):
        load_backend(name, weights=f"file:{tiny(other)}")


def test_a_missing_hub_checkpoint_offline_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    need("torch")
    need("huggingface_hub")
    monkeypatch.setenv("PROMPTSEG_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match="offline mode forbids downloading") as info:
        load_backend("sam", weights="hf:promptseg-tests/no-such-sam")
    assert "weights='file:" in str(info.value)


def test_masks_are_deterministic_for_a_seed(tiny_dir: Path, photo: np.ndarray) -> None:
    need("torch")
    prompt = {"boxes": [[60, 90, 260, 330]], "points": [[[150, 200]]]}
    results = []
    for folder, seed in [("seed0-a", 0), ("seed0-b", 0), ("seed1", 1)]:
        path = build_tiny_sam(tiny_dir / folder, seed=seed)
        results.append(load_backend("sam", weights=f"file:{path}").predict(photo, **prompt))
    a, b, c = (r.masks for r in results)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(results[0].scores, results[1].scores)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("name", sorted(VIDEO_BUILDERS))
def test_video_checkpoints_load_as_image_models(
    tiny: Callable[[str], Path], tiny_dir: Path, photo: np.ndarray, name: str
) -> None:
    # The Hub's SAM 2.1 and EdgeTAM checkpoints are video checkpoints; their image part must load.
    path = VIDEO_BUILDERS[name](tiny_dir / f"{name}-video", video=True)
    video = load_backend(name, weights=f"file:{path}")
    image = load(tiny, name)
    assert type(video.model) is type(image.model)  # the image model, built from the video config
    a = video.predict(photo, boxes=[[60, 90, 260, 330]])
    b = image.predict(photo, boxes=[[60, 90, 260, 330]])
    assert a.meta["model_type"] == f"{name}_video"
    assert a.masks is not None and b.masks is not None
    np.testing.assert_array_equal(a.masks, b.masks)
