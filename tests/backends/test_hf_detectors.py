"""OWLv2, Grounding DINO and Florence-2 over transformers, on tiny random checkpoints and the VOC photo.

The tiny models' answers are noise (except Florence-2's, wired to spell one answer), so these tests
check frames, shapes, scores, labels, masks, batching and errors, never what a model finds.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from promptseg import BackendUnavailable, ConfigError, InputError, QueryError, load_backend
from promptseg.backends.registry import get_spec
from promptseg.types import Detections
from tests.conftest import need

DETECTORS = ["owlv2", "grounding-dino", "florence-2"]

# What the wired tiny Florence-2 answers to every prompt, and where that box lies in the VOC photo
# (W 500, H 375): each bin's centre, (bin + 0.5) / 1000 of the side.
FLORENCE_ANSWER = "cup<loc_100><loc_200><loc_300><loc_400>"
FLORENCE_BOX = [100.5 * 0.5, 200.5 * 0.375, 300.5 * 0.5, 400.5 * 0.375]
# An answer with a box of three location tokens, a good box, and one with reversed corners.
MALFORMED_ANSWER = (
    "red cup<loc_1><loc_2><loc_3>people<loc_5><loc_6><loc_7><loc_8>bag<loc_900><loc_20><loc_100><loc_30>"
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    need("torch")
    need("transformers")
    from tests.tiny.detectors import build_tiny_florence2, build_tiny_grounding_dino, build_tiny_owlv2

    root = tmp_path_factory.mktemp("tiny-detectors")
    return {
        "owlv2": build_tiny_owlv2(root / "owlv2"),
        "grounding-dino": build_tiny_grounding_dino(root / "grounding-dino"),
        "florence-2": build_tiny_florence2(root / "florence-2", answer=FLORENCE_ANSWER),
        "florence-2-malformed": build_tiny_florence2(root / "florence-2-malformed", answer=MALFORMED_ANSWER),
    }


@pytest.fixture(scope="module")
def load(tiny: dict[str, Path]) -> Callable[..., Any]:
    """``load(name, **options)``: the backend on its tiny checkpoint, built once per set of options."""
    cache: dict[tuple[str, tuple[tuple[str, Any], ...]], Any] = {}

    def build(name: str, *, folder: str | None = None, **options: Any) -> Any:
        key = (folder or name, tuple(sorted(options.items())))
        if key not in cache:
            cache[key] = load_backend(name, weights=f"file:{tiny[folder or name]}", **options)
        return cache[key]

    return build


@pytest.fixture(scope="module")
def rgb(voc: dict[str, Any]) -> np.ndarray:
    image: np.ndarray = voc["rgb"]
    assert image.shape == (375, 500, 3)
    return image


def _check_invariants(det: Detections, concepts: list[str], threshold: float, display: str) -> None:
    h, w = det.image_size
    assert det.image_size == (375, 500)
    assert det.scores is not None
    assert ((det.scores > threshold) & (det.scores <= 1)).all()
    assert (det.xyxy[:, :2] >= 0).all() and (det.xyxy[:, 2] <= w).all() and (det.xyxy[:, 3] <= h).all()
    assert (det.xyxy[:, 2] > det.xyxy[:, 0]).all() and (det.xyxy[:, 3] > det.xyxy[:, 1]).all()
    assert set(det.labels.tolist()) <= set(concepts)
    assert det.attributes["concept"].tolist() == det.labels.tolist()
    assert all(
        r.startswith(f"{display} ") and r.endswith(tuple("0123456789)")) for r in det.attributes["reason"]
    )
    # grouped by concept in prompt order, best first within each
    order = [concepts.index(label) for label in det.labels]
    assert order == sorted(order)
    for c in set(order):
        scores = det.scores[np.asarray(order) == c]
        assert (np.diff(scores) <= 0).all()
    assert det.meta["concepts"] == concepts
    assert det.meta["threshold"] == threshold
    assert det.meta["backend"] in DETECTORS and det.meta["weights"].startswith("file:")
    assert det.meta["device"] == "cpu" and det.meta["dtype"] == "float32"
    assert isinstance(det.meta["notes"], list)


@pytest.mark.parametrize(
    ("name", "display", "threshold"),
    [
        ("owlv2", "OWLv2", 0.3),  # random weights: scores spread over (0, 1)
        ("grounding-dino", "Grounding DINO", 0.5),
        ("florence-2", "Florence-2", 0.0),  # its default: every box
    ],
)
def test_detections_are_well_formed(
    load: Callable[..., Any], rgb: np.ndarray, name: str, display: str, threshold: float
) -> None:
    backend = load(name)
    assert backend.capabilities == frozenset({"text", "boxes", "masks"})
    assert backend.capabilities <= get_spec(name).capabilities
    assert get_spec(name).weights["model"] == backend.DEFAULT_WEIGHTS
    det = backend.detect(rgb, "Find the cups and the people, please", threshold=threshold)
    assert len(det) > 0
    _check_invariants(det, ["cups", "people"], threshold, display)
    assert det.meta["prompt"] == "Find the cups and the people, please"
    assert det.meta["mask_method"] == "color"
    assert det.masks is not None and det.masks.shape == (len(det), 375, 500)
    for mask, (x1, y1, x2, y2) in zip(det.masks, det.xyxy, strict=True):
        outside = mask.copy()
        outside[int(np.floor(y1)) : int(np.ceil(y2)), int(np.floor(x1)) : int(np.ceil(x2))] = False
        assert not outside.any()  # a refiner's mask lies inside its box


@pytest.mark.parametrize("name", DETECTORS)
def test_threshold_one_finds_nothing(load: Callable[..., Any], rgb: np.ndarray, name: str) -> None:
    det = load(name).detect(rgb, "people", threshold=1.0)
    assert len(det) == 0
    assert det.masks is not None and det.masks.shape == (0, 375, 500)
    assert det.attributes["concept"].shape == (0,)


def test_default_thresholds(load: Callable[..., Any]) -> None:
    assert load("owlv2").threshold == 0.1
    assert load("grounding-dino").threshold == 0.35
    assert load("florence-2").threshold == 0.0


def test_every_concept_is_asked_for_and_labelled(load: Callable[..., Any], rgb: np.ndarray) -> None:
    # Florence-2 answers each concept separately; the wired model gives the same box to both, and
    # class-aware NMS keeps one per concept.
    det = load("florence-2").detect(rgb, ["red cups", "people and dogs"])
    assert det.labels.tolist() == ["red cups", "people", "dogs"]
    assert det.attributes["concept"].tolist() == ["red cups", "people", "dogs"]
    assert det.meta["prompt"] == ["red cups", "people and dogs"]
    np.testing.assert_allclose(det.xyxy, [FLORENCE_BOX] * 3, atol=1e-4)
    assert "(its answer: 'cup')" in det.attributes["reason"][0]


def test_grounding_dino_gives_each_box_one_concept_of_the_caption(
    load: Callable[..., Any], rgb: np.ndarray
) -> None:
    from promptseg.backends.hf_detectors import _caption_tokens

    backend = load("grounding-dino")
    tokens, notes = _caption_tokens(
        backend._processor.tokenizer, "red cups. people.", ["red cups", "people"], 32
    )
    # [CLS] red cups . people . [SEP]
    assert tokens.tolist() == [-1, 0, 0, -1, 1, -1, -1] and notes == []
    det = backend.detect(rgb, "red cups and people", threshold=0.0)
    assert set(det.labels.tolist()) == {"red cups", "people"}
    _check_invariants(det, ["red cups", "people"], 0.0, "Grounding DINO")


def test_no_masks(load: Callable[..., Any], rgb: np.ndarray) -> None:
    backend = load("owlv2", masks="none")
    assert backend.capabilities == frozenset({"text", "boxes"})
    det = backend.detect(rgb, "people", threshold=0.0)
    assert len(det) > 0 and det.masks is None
    assert det.meta["mask_method"] == "none"
    with pytest.raises(ConfigError, match="masks='none'"):
        backend.predict(rgb, boxes=[[0, 0, 10, 10]])


@pytest.mark.parametrize(
    ("name", "note"),
    [
        ("owlv2", "OWLv2 reads 16 tokens of a concept; read only in part: 'big red"),
        (
            "grounding-dino",
            "longer than the model's 32 tokens; not looked for: 'dog'; read only in part: 'big red",
        ),
    ],
)
def test_concepts_longer_than_the_model_reads_are_noted(
    load: Callable[..., Any], rgb: np.ndarray, name: str, note: str
) -> None:
    long = "big red ceramic coffee cup with a chipped handle on the old wooden table by the kitchen window"
    det = load(name).detect(rgb, [long, "dog"], threshold=0.0)
    assert any(n.startswith(note) or note in n for n in det.meta["notes"]), det.meta["notes"]


def test_u2net_masks_default_to_the_shared_weights(
    tiny: dict[str, Path], offline_env: Path, rgb: np.ndarray
) -> None:
    backend = load_backend("owlv2", weights=f"file:{tiny['owlv2']}", masks="u2net")
    det = backend.detect(rgb, "cup", threshold=1.0)  # no boxes: U²-Net itself does not run
    assert det.meta["mask_method"] == "u2net" and det.meta["mask_weights"] == "u2net/u2net.onnx"


def test_box_masks_are_the_boxes(load: Callable[..., Any], rgb: np.ndarray) -> None:
    det = load("florence-2", masks="box").detect(rgb, "cup")
    assert len(det) == 1 and det.masks is not None
    x1, y1, x2, y2 = FLORENCE_BOX
    expected = np.zeros((375, 500), bool)
    expected[int(np.floor(y1)) : int(np.ceil(y2)), int(np.floor(x1)) : int(np.ceil(x2))] = True
    np.testing.assert_array_equal(det.masks[0], expected)
    assert re.fullmatch(
        r"Florence-2 located 'cup' with location-token probability 0\.\d\d", det.attributes["reason"][0]
    )


def test_box_prompts_go_to_the_mask_method(load: Callable[..., Any], rgb: np.ndarray) -> None:
    backend = load("florence-2", masks="box")
    det = backend.predict(rgb, boxes=[[10, 20, 30.5, 40]], labels="cup")
    assert det.masks is not None and det.masks[0].sum() == 21 * 20
    assert det.labels.tolist() == ["cup"]
    with pytest.raises(ConfigError, match="takes box prompts only"):
        backend.predict(rgb, points=[[5, 5]])


def test_masks_from_a_sam_model(tiny: dict[str, Path], rgb: np.ndarray, tmp_path: Path) -> None:
    from tests.tiny.sam import build_tiny_sam

    sam = build_tiny_sam(tmp_path / "sam")
    backend = load_backend(
        "florence-2", weights=f"file:{tiny['florence-2']}", masks="sam", mask_weights=f"file:{sam}"
    )
    det = backend.detect(rgb, "cups and people")
    assert len(det) == 2 and det.masks is not None and det.masks.shape == (2, 375, 500)
    np.testing.assert_allclose(det.xyxy, [FLORENCE_BOX] * 2, atol=1e-4)  # the detector's boxes stay
    assert det.attributes["mask_score"].shape == (2,) and det.attributes["mask_score"].dtype == np.float32
    assert det.meta["mask_method"] == "sam" and det.meta["mask_weights"] == f"file:{sam}"
    refined = backend.predict(rgb, points=[[[200, 150]]], labels="cup")  # SAM takes points too
    assert refined.masks is not None and refined.masks.shape == (1, 375, 500)


@pytest.mark.parametrize("name", DETECTORS)
def test_detect_batch_equals_detect_per_image(load: Callable[..., Any], rgb: np.ndarray, name: str) -> None:
    backend = load(name)
    images = [rgb, np.ascontiguousarray(rgb[:, ::-1])]
    threshold = 0.0 if name == "florence-2" else 0.3
    batch = backend.detect_batch(images, "cups and people", threshold=threshold)
    assert len(batch) == 2
    for image, got in zip(images, batch, strict=True):
        one = backend.detect(image, "cups and people", threshold=threshold)
        assert got.labels.tolist() == one.labels.tolist()
        np.testing.assert_allclose(got.xyxy, one.xyxy, atol=1e-3)
        np.testing.assert_allclose(got.scores, one.scores, atol=1e-5)
        assert got.masks is not None and one.masks is not None
        assert (got.masks != one.masks).mean() < 1e-4


def test_florence2_answer_becomes_boxes_in_the_image_frame(load: Callable[..., Any], rgb: np.ndarray) -> None:
    backend = load("florence-2", task="<OPEN_VOCABULARY_DETECTION>")
    det = backend.detect(rgb, "cup")
    np.testing.assert_allclose(det.xyxy, [FLORENCE_BOX], atol=1e-4)
    assert det.scores is not None and 0.5 < det.scores[0] < 0.95  # the wired tokens' probability, ~0.85
    assert det.meta["task"] == "<OPEN_VOCABULARY_DETECTION>"
    assert "location tokens" in det.meta["score"]
    assert len(backend.detect(rgb, "cup", threshold=0.95)) == 0
    half = backend.detect(rgb[::2, ::2].copy(), "cup")  # the same bins on a smaller image
    np.testing.assert_allclose(half.xyxy * 2, [FLORENCE_BOX], atol=1.01)


def test_florence2_malformed_answers_are_read_as_far_as_they_go(
    load: Callable[..., Any], rgb: np.ndarray
) -> None:
    # what cannot be read is left out, and said in the notes, for each concept asked
    backend = load("florence-2", folder="florence-2-malformed")
    det = backend.detect(rgb, "cups and people")
    _check_invariants(det, ["cups", "people"], 0.0, "Florence-2")
    np.testing.assert_allclose(det.xyxy, [[2.75, 2.4375, 3.75, 3.1875]] * 2, atol=1e-4)  # bins 5, 6, 7, 8
    assert det.attributes["reason"][0].startswith("Florence-2 located 'cups' (its answer: 'people')")
    assert det.meta["answers"] == {
        "cups": f"<s>{MALFORMED_ANSWER}</s>",
        "people": f"<s>{MALFORMED_ANSWER}</s>",
    }
    assert det.meta["notes"] == [
        f"'{concept}': {note}"
        for concept in ("cups", "people")
        for note in (
            "3 location token(s) did not make a whole box of four and were ignored",
            "1 box(es) had reversed corners (x2 < x1 or y2 < y1) and were ignored",
        )
    ]


def test_florence2_answers_cut_short_are_noted(load: Callable[..., Any], rgb: np.ndarray) -> None:
    # <s> cup <loc_100> </s>: BART's generation config forces </s> at the last step
    det = load("florence-2", max_new_tokens=4).detect(rgb, "cup")
    assert len(det) == 0
    assert det.meta["notes"] == [
        "'cup': 1 location token(s) did not make a whole box of four and were ignored",
        "'cup': the answer reached max_new_tokens=4 before it ended; boxes after that were not written",
    ]


FLORENCE_ANSWERS = [
    # (answer, boxes as bins, phrases, a fragment of each note)
    ("</s><s>cup<loc_0><loc_0><loc_999><loc_999></s>", [[0, 0, 999, 999]], ["cup"], []),
    # several boxes for one phrase, then another phrase
    (
        "red car<loc_53><loc_334><loc_933><loc_775><loc_711><loc_203><loc_906><loc_546>"
        "sky<loc_0><loc_0><loc_9><loc_3>",
        [[53, 334, 933, 775], [711, 203, 906, 546], [0, 0, 9, 3]],
        ["red car", "red car", "sky"],
        [],
    ),
    # open-vocabulary detection repeats the phrase; a box may have no phrase
    (
        "wheels<loc_1><loc_2><loc_3><loc_4><loc_5><loc_6><loc_7><loc_8>",
        [[1, 2, 3, 4], [5, 6, 7, 8]],
        ["wheels"] * 2,
        [],
    ),
    ("<loc_1><loc_2><loc_3><loc_4></s><pad><pad>", [[1, 2, 3, 4]], [""], []),
    ("", [], [], []),  # nothing found
    ("</s><s></s>", [], [], []),
    # malformed: left out, with a note
    ("cup<loc_1><loc_2><loc_3>", [], [], ["3 location token(s) did not make a whole box"]),
    ("cup<loc_1><loc_2><loc_3><loc_4><loc_5>", [[1, 2, 3, 4]], ["cup"], ["1 location token(s)"]),
    ("cup<loc_1><loc_2><loc_1000><loc_4>", [], [], ["above 999"]),
    ("cup<loc_9><loc_2><loc_3><loc_4>", [], [], ["reversed corners"]),
    ("cup<poly><loc_1><loc_2><loc_3><loc_4><loc_5><loc_6></poly>", [], [], ["1 polygon(s) were not read"]),
    (
        "I cannot see a cup here.",
        [],
        [],
        ["text with no box after it was ignored: 'I cannot see a cup here.'"],
    ),
    ("cup</s>dog<loc_1><loc_2><loc_3><loc_4>", [[1, 2, 3, 4]], ["dog"], ["'cup'"]),
    ("<<loc_1>><loc_x><loc_-1>< loc_2>\x00\u2603", [], [], ["1 location token(s)", "text with no box"]),
]


@pytest.mark.parametrize(("answer", "bins", "phrases", "notes"), FLORENCE_ANSWERS)
def test_florence2_answers_parse(
    answer: str, bins: list[list[int]], phrases: list[str], notes: list[str]
) -> None:
    need("torch")
    from promptseg.backends.hf_detectors import parse_florence2_answer

    parsed = parse_florence2_answer(answer, (375, 500))
    expected = (np.asarray(bins, np.float64).reshape(-1, 4) + 0.5) / 1000 * [500, 375, 500, 375]
    np.testing.assert_allclose(parsed.xyxy, expected, rtol=1e-6)
    assert parsed.phrases == phrases
    assert len(parsed.notes) == len(notes)
    for note, fragment in zip(parsed.notes, notes, strict=True):
        assert fragment in note


def test_florence2_parser_agrees_with_the_processor(load: Callable[..., Any]) -> None:
    from promptseg.backends.hf_detectors import parse_florence2_answer

    processor = load("florence-2")._processor
    for answer, bins, phrases, notes in FLORENCE_ANSWERS:
        if notes or not bins or "" in phrases:  # its parser drops boxes without a phrase
            continue
        ours = parse_florence2_answer(answer, (375, 500))
        theirs = processor.post_process_generation(answer, task="<OD>", image_size=(500, 375))["<OD>"]
        np.testing.assert_allclose(
            ours.xyxy, np.asarray(theirs["bboxes"]).reshape(-1, 4), atol=1.0
        )  # they truncate
        assert ours.phrases == theirs["labels"]


def test_florence2_parser_refuses_what_is_not_text() -> None:
    need("torch")
    from promptseg.backends.hf_detectors import parse_florence2_answer

    with pytest.raises(InputError, match="string or a sequence of token strings"):
        parse_florence2_answer(42, (10, 10))  # type: ignore[arg-type]
    tokens = parse_florence2_answer(["<s>", "cup", "<loc_0>", "<loc_0>", "<loc_9>", "<loc_9>"], (1000, 1000))
    assert tokens.pieces == [(2, 3, 4, 5)] and tokens.phrases == ["cup"]


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"threshold": 1.5}, ConfigError, r"threshold must be a number in \[0, 1\]"),
        ({"nms_iou": -0.1}, ConfigError, "nms_iou"),
        ({"masks": "colour"}, ConfigError, "did you mean 'color'"),
        ({"masks": "offline"}, ConfigError, "not a box-and-point mask model"),
        ({"masks": "color", "mask_weights": "file:/nowhere"}, ConfigError, "mask_weights is only used"),
        ({"device": "tpu"}, ConfigError, "unknown device"),
    ],
)
def test_bad_options(
    tiny: dict[str, Path], options: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        load_backend("owlv2", weights=f"file:{tiny['owlv2']}", **options)


def test_florence2_options(tiny: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="unknown Florence-2 task"):
        load_backend("florence-2", weights=f"file:{tiny['florence-2']}", task="<OD>")
    with pytest.raises(ConfigError, match="max_new_tokens"):
        load_backend("florence-2", weights=f"file:{tiny['florence-2']}", max_new_tokens=0)


def test_no_gpu_here(tiny: dict[str, Path]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("platform: this machine has a CUDA GPU")
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        load_backend("grounding-dino", weights=f"file:{tiny['grounding-dino']}", device="cuda")


@pytest.mark.parametrize("name", DETECTORS)
def test_weights_that_are_not_a_checkpoint(tiny: dict[str, Path], tmp_path: Path, name: str) -> None:
    with pytest.raises(BackendUnavailable, match=r"no config\.json"):
        load_backend(name, weights=f"file:{tmp_path}")
    other = "owlv2" if name != "owlv2" else "grounding-dino"
    with pytest.raises(BackendUnavailable, match="checkpoint"):
        load_backend(name, weights=f"file:{tiny[other]}")


def test_bad_prompts_and_images(load: Callable[..., Any], rgb: np.ndarray) -> None:
    backend = load("owlv2")
    with pytest.raises(QueryError):
        backend.detect(rgb, "please")
    with pytest.raises(InputError, match="no prompt"):
        backend.detect(rgb, [])
    with pytest.raises(InputError, match="prompts must be strings"):
        backend.detect(rgb, ["cup", 3])
    with pytest.raises(InputError):
        backend.detect(rgb[..., 0], "cup")
    with pytest.raises(InputError, match="at least one image"):
        backend.detect_batch([], "cup")
    with pytest.raises(ConfigError, match="threshold"):
        backend.detect(rgb, "cup", threshold=2)
