"""Every modifier kind end to end on real photos, with the real offline default backend.

The offline backend (PicoDet-S, COCO's 80 classes, colour box-to-mask refinement) runs on the PASCAL VOC
cafeteria photo (7 people, 8 chairs, a bottle, 3 dining tables) and on the ARC2017 tote; every
expectation is computed from the photos' ground truth (the public evaluation set, whose instances are the
``voc`` and ``tote`` fixtures' masks in the same order), never from the detector's boxes. Each returned
instance is identified with the ground-truth object its mask overlaps most, and the answer is scored with
:func:`~promptseg.query.evaluate.score_prompt`.

What the detector cannot see shapes the prompts: most tote items are not COCO classes (only the book is
found), the VOC chairs are so occluded that the colour refinement draws poor masks for them (they are
identified by box), the far right VOC table (13) is not found at all, and two people at the back (10
and 11) are each found twice (a second, partial box); tests say where that matters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pytest

from promptseg import Session
from promptseg.errors import QueryError
from promptseg.image import load_image
from promptseg.ops.boxes import box_iou
from promptseg.ops.masks import mask_iou
from promptseg.query import Conversation, ask, color, parse
from promptseg.query.evaluate import EvalImage, EvalPrompt, PromptResult, load_public_set, score_prompt
from promptseg.types import Detections

MIN_IOU = 0.4
"""A returned mask "is" a ground-truth object at this mask IoU: the colour refinement draws people at
0.5-0.8 IoU with VOC's masks (one at 0.50), while a mask's second-best overlap stays below 0.15."""

Ask = Callable[[str], Detections]


# -- ground truth ---------------------------------------------------------------------------------


class Truth:
    """A photo's annotated objects with the geometry the resolver's rules read: ids are indices."""

    def __init__(self, photo: EvalImage, masks: np.ndarray) -> None:
        assert photo.masks is not None and np.array_equal(photo.masks, masks)
        assert [i.id for i in photo.instances] == list(range(len(masks)))
        self.photo = photo
        self.labels = [i.label for i in photo.instances]
        self.boxes = photo.xyxy.astype(np.float64)
        self.height, self.width = photo.image_size
        self.centroids = np.zeros((len(masks), 2))
        self.areas = masks.reshape(len(masks), -1).sum(axis=1).astype(np.float64)
        for k, mask in enumerate(masks):
            ys, xs = np.nonzero(mask)
            self.centroids[k] = (xs.mean() + 0.5, ys.mean() + 0.5)  # pixel centres, as the resolver

    def ids(self, label: str) -> list[int]:
        return [k for k, name in enumerate(self.labels) if name == label]

    def by(self, ids: Iterable[int], key: Callable[[int], float]) -> list[int]:
        """``ids`` sorted by ``key``, checked to have no tie at the top (the answer would be a coin toss)."""
        ranked = sorted(ids, key=key)
        if len(ranked) > 1:
            assert key(ranked[0]) != key(ranked[1])
        return ranked

    def colour(self, ids: Iterable[int], name: str, pixels: np.ndarray) -> list[int]:
        """The objects whose annotated pixels are ``name`` by the palette's rule."""
        ids = list(ids)
        profiles = color.color_profiles(pixels, self.photo.masks[ids], self.photo.xyxy[ids])  # type: ignore[index]
        return [
            i
            for i, p in zip(ids, profiles, strict=True)
            if color.color_match(p, name) >= color.MATCH_THRESHOLD
        ]

    def holds(self, kind: str, s: int, t: int) -> bool:
        """Relation ``kind`` from object ``s`` to object ``t`` by the box rules at the top of resolve.py."""
        a, b = self.boxes[s], self.boxes[t]
        (cxs, cys), (cxt, cyt) = self.centroids[s], self.centroids[t]
        x_overlap = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        inter = x_overlap * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        if kind == "on":  # bottom edge within the target's height +-10 %, half the width over it
            h = b[3] - b[1]
            return b[1] - 0.1 * h <= a[3] <= b[3] + 0.1 * h and x_overlap / (a[2] - a[0]) >= 0.5
        if kind == "holding":  # half the target's box inside the subject's
            return inter / ((b[2] - b[0]) * (b[3] - b[1])) >= 0.5
        if kind == "next to":  # a gap of at most half the smaller box's mean side
            gap = np.hypot(max(0.0, b[0] - a[2], a[0] - b[2]), max(0.0, b[1] - a[3], a[1] - b[3]))
            side = min((a[2] - a[0] + a[3] - a[1]) / 2, (b[2] - b[0] + b[3] - b[1]) / 2)
            return bool(gap <= 0.5 * side)
        if kind == "left of":
            return bool(cxs < cxt)
        if kind == "right of":
            return bool(cxs > cxt)
        if kind == "above":
            return bool(cys < cyt and x_overlap > 0)
        if kind == "behind":  # the bottom edge higher up, in overlapping columns
            return bool(a[3] < b[3] and x_overlap > 0)
        raise AssertionError(kind)

    def related(self, kind: str, subjects: Iterable[int], targets: Iterable[int]) -> list[int]:
        targets = list(targets)
        return [s for s in subjects if any(self.holds(kind, s, t) for t in targets if t != s)]


@pytest.fixture(scope="module")
def truth(voc: dict[str, Any], tote: dict[str, Any]) -> dict[str, Truth]:
    images = load_public_set().images
    return {"voc": Truth(images["voc"], voc["masks"]), "tote": Truth(images["tote"], tote["masks"])}


@pytest.fixture(scope="module")
def gt(truth: dict[str, Truth]) -> Truth:
    return truth["voc"]


@pytest.fixture(scope="module")
def people(gt: Truth) -> set[int]:
    return set(gt.ids("person"))


@pytest.fixture(scope="module")
def bottle(gt: Truth) -> int:
    (only,) = gt.ids("bottle")
    return only


# -- asking ---------------------------------------------------------------------------------------


def checked(det: Detections) -> Detections:
    """The answer contract: per-instance explanation/colour/size/position, and the collection's meta."""
    n = len(det)
    for key in ("explanation", "color", "size", "position"):
        assert det.attributes[key].shape == (n,), key
    assert all(str(e) for e in det.attributes["explanation"])
    assert {"explanation", "query", "notes", "timing"} <= set(det.meta)
    assert det.meta["explanation"].startswith("nothing matches" if n == 0 else f"{n} match")
    assert det.meta["timing"]["detect_s"] >= 0 and det.meta["timing"]["resolve_s"] >= 0
    return det


@pytest.fixture(scope="module")
def voc_conversation(voc: dict[str, Any], offline_backend: Any) -> Conversation:
    return Conversation(voc["rgb"], offline_backend)


@pytest.fixture
def ask_voc(voc_conversation: Conversation) -> Ask:
    """A fresh question about the VOC photo (no last answer), reusing the concepts detected so far."""

    def ask_fresh(prompt: str) -> Detections:
        voc_conversation.forget()
        return checked(voc_conversation.ask(prompt))

    return ask_fresh


@pytest.fixture
def ask_tote(tote: dict[str, Any], offline_backend: Any) -> Ask:
    return lambda prompt: checked(ask(tote["rgb"], prompt, backend=offline_backend))


def identify(det: Detections, truth: Truth, *, by: str = "mask") -> list[int]:
    """The ground-truth object each returned instance overlaps most (its mask, or its box)."""
    if not len(det):
        return []
    if by == "mask":
        assert det.masks is not None
        iou = mask_iou(det.masks, truth.photo.masks)
    else:
        iou = box_iou(det.xyxy, truth.photo.xyxy)
    return [int(k) for k in iou.argmax(axis=1)]


def score(
    det: Detections, truth: Truth, expected: Iterable[int], *, choose: int | None = None
) -> PromptResult:
    """:func:`score_prompt` of an answer: ``expected`` ground-truth ids, any ``choose`` of them."""
    prompt = EvalPrompt(
        "end-to-end", truth.photo.id, str(det.meta["prompt"]), ("plain",), tuple(sorted(expected)), choose
    )
    return score_prompt(prompt, truth.photo, det, iou_threshold=MIN_IOU)


def explanations(det: Detections) -> list[str]:
    return [str(e) for e in det.attributes["explanation"]]


def is_exactly(det: Detections, truth: Truth, expected: Iterable[int]) -> None:
    """One instance per expected object, each its object by mask, nothing else."""
    expected = sorted(expected)
    assert sorted(identify(det, truth)) == expected, explanations(det)
    result = score(det, truth, expected)
    assert result.exact, result


# -- colour ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "prompt", "label", "colour"),
    [
        ("voc", "the person in red", "person", "red"),  # the woman in the red jacket at the back
        ("voc", "the blue bottle", "bottle", "blue"),  # blue cap, bluish water
        ("tote", "the red book", "book", "red"),  # the only tote item the detector sees
    ],
)
def test_colour_selects_by_the_mask_pixels(
    image: str,
    prompt: str,
    label: str,
    colour: str,
    truth: dict[str, Truth],
    voc: dict[str, Any],
    tote: dict[str, Any],
    offline_backend: Any,
) -> None:
    pixels = {"voc": voc, "tote": tote}[image]["rgb"]
    expected = truth[image].colour(truth[image].ids(label), colour, pixels)
    assert len(expected) == 1
    det = checked(ask(pixels, prompt, backend=offline_backend))
    is_exactly(det, truth[image], expected)
    assert re.fullmatch(rf"{label} #\d+: {colour} \(\d+% of its pixels\)", explanations(det)[0])
    assert colour in str(det.attributes["color"][0])


@pytest.mark.parametrize(
    ("image", "prompt", "label", "colour"),
    [
        ("voc", "the green bottle", "bottle", "green"),  # clear plastic, blue cap
        ("tote", "the blue book", "book", "blue"),
    ],
)
def test_a_colour_nothing_has_returns_nothing_and_says_so(
    image: str,
    prompt: str,
    label: str,
    colour: str,
    truth: dict[str, Truth],
    voc: dict[str, Any],
    tote: dict[str, Any],
    offline_backend: Any,
) -> None:
    pixels = {"voc": voc, "tote": tote}[image]["rgb"]
    assert truth[image].colour(truth[image].ids(label), colour, pixels) == []
    det = checked(ask(pixels, prompt, backend=offline_backend))
    assert len(det) == 0
    assert colour in det.meta["explanation"] and label in det.meta["explanation"]


# -- size -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", ["the big table", "large tables"])
def test_a_size_adjective_compares_with_the_median(prompt: str, ask_voc: Ask, gt: Truth) -> None:
    tables = gt.ids("dining table")
    median = np.median(gt.areas[tables])
    expected = [t for t in tables if gt.areas[t] >= 1.5 * median]
    assert len(expected) == 1  # the big white table in front: 18x the median
    det = ask_voc(prompt)
    is_exactly(det, gt, expected)
    assert re.fullmatch(r"dining table #\d+: large: \d+\.\dx the median table", explanations(det)[0])


@pytest.mark.parametrize(
    ("prompt", "label", "word"),
    [
        ("the largest person", "person", "largest"),  # the man in the foreground, bottom left
        ("the biggest table", "dining table", "largest"),
    ],
)
def test_a_superlative_is_the_largest_mask(
    prompt: str, label: str, word: str, ask_voc: Ask, gt: Truth
) -> None:
    expected = gt.by(gt.ids(label), lambda i: -gt.areas[i])[0]
    det = ask_voc(prompt)
    is_exactly(det, gt, [expected])
    assert re.fullmatch(rf"{label} #\d+: {word} of \d+ \([\d,]+ px\)", explanations(det)[0])


# -- position -------------------------------------------------------------------------------------


def test_a_plural_region_keeps_the_half(ask_voc: Ask, gt: Truth, people: set[int]) -> None:
    # The man in the hat (16) sits on the middle line: his annotated centroid is at x = 251 of 500, the
    # detector's at 253, so both put him on the right.
    expected = {p for p in people if gt.centroids[p, 0] >= gt.width / 2}
    det = ask_voc("people on the right")
    is_exactly(det, gt, expected)
    assert all(re.search(r": in the right of the image \(centre at x=\d+", e) for e in explanations(det))


def test_a_plural_corner_keeps_the_quarter(ask_voc: Ask, gt: Truth, people: set[int]) -> None:
    expected = {p for p in people if gt.centroids[p, 0] < gt.width / 2 and gt.centroids[p, 1] < gt.height / 2}
    assert expected == {9, 10, 11}  # the three at the back left; the foreground man is bottom left
    det = ask_voc("people in the top left")
    # 10 and 11 are each found twice, so set equality: every one found, nobody else
    assert set(identify(det, gt)) == expected
    assert all("in the top left of the image" in e for e in explanations(det))


@pytest.mark.parametrize(
    ("prompt", "key", "why"),
    [
        # keys of the centroid as a fraction of the image's width and height
        ("the person on the left", lambda c: c[0], "leftmost of"),
        ("the person on the right", lambda c: -c[0], "rightmost of"),
        ("the leftmost person", lambda c: c[0], "first from the left of"),
        ("the person in the middle", lambda c: np.hypot(*(c - 0.5)), "closest to the centre of"),
    ],
)
def test_a_singular_region_is_the_most_extreme_one(
    prompt: str, key: Callable[[np.ndarray], float], why: str, ask_voc: Ask, gt: Truth, people: set[int]
) -> None:
    expected = gt.by(people, lambda p: key(gt.centroids[p] / (gt.width, gt.height)))[0]
    det = ask_voc(prompt)
    is_exactly(det, gt, [expected])
    assert re.fullmatch(rf"person #\d+: {why} \d+ people", explanations(det)[0])


# -- ordinals -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "rank", "sign", "words"),
    [
        ("the third person from the left", 3, 1, "third from the left"),
        ("the second person from the right", 2, -1, "second from the right"),
    ],
)
def test_an_ordinal_counts_by_centroid(
    prompt: str, rank: int, sign: int, words: str, ask_voc: Ask, gt: Truth, people: set[int]
) -> None:
    # The duplicate boxes of 10 and 11 come fourth and fifth from the left; these ranks are before them.
    expected = gt.by(people, lambda p: sign * gt.centroids[p, 0])[rank - 1]
    det = ask_voc(prompt)
    is_exactly(det, gt, [expected])
    assert re.fullmatch(rf"person #\d+: {words} of \d+ people", explanations(det)[0])


def test_an_impossible_ordinal_returns_nothing_and_says_why(ask_voc: Ask, gt: Truth) -> None:
    assert len(gt.ids("bottle")) == 1
    det = ask_voc("the fifth bottle")
    assert len(det) == 0
    assert det.meta["explanation"] == (
        "nothing matches 'the fifth bottle': asked for the fifth from the left, but there is only 1 bottle"
    )


# -- counts ---------------------------------------------------------------------------------------


def test_a_takes_one_and_two_take_two(ask_voc: Ask, gt: Truth, people: set[int]) -> None:
    one = ask_voc("a person")
    assert len(one) == 1 and identify(one, gt)[0] in people
    assert score(one, gt, people, choose=1).exact
    assert re.fullmatch(r"person #\d+: the highest-scoring of \d+ \(score 0\.\d\d\)", explanations(one)[0])

    two = ask_voc("two people")
    assert len(set(identify(two, gt))) == 2 and set(identify(two, gt)) <= people
    assert score(two, gt, people, choose=2).exact
    assert all("one of the 2 highest-scoring" in e for e in explanations(two))


def test_a_count_larger_than_found_returns_what_there_is_and_notes_it(
    ask_voc: Ask, gt: Truth, bottle: int
) -> None:
    det = ask_voc("two bottles")
    is_exactly(det, gt, [bottle])
    assert "asked for 2, found 1 bottle" in det.meta["notes"]


def test_a_count_met_exactly_explains_itself(ask_voc: Ask, gt: Truth, bottle: int) -> None:
    det = ask_voc("a bottle")
    is_exactly(det, gt, [bottle])
    assert "last answer" not in explanations(det)[0]


# -- relations ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "kind", "subject", "why"),
    [
        ("the bottle on the table", "on", "bottle", r"bottle #1: on dining table #\d+"),
        ("the table with the bottle", "holding", "dining table", r"dining table #\d+: with bottle #1"),
        ("people next to the bottle", "next to", "person", r"person #\d+: next to bottle #1"),
        ("people right of the bottle", "right of", "person", r"person #\d+: right of bottle #1"),
        ("people left of the bottle", "left of", "person", r"person #\d+: left of bottle #1"),
        ("people above the bottle", "above", "person", r"person #\d+: above bottle #1"),
        ("people behind the bottle", "behind", "person", r"person #\d+: behind bottle #1"),
    ],
)
def test_a_relation_holds_by_box_geometry(
    prompt: str, kind: str, subject: str, why: str, ask_voc: Ask, gt: Truth, bottle: int
) -> None:
    if subject == "bottle":  # the bottle on some table
        expected = set(gt.related(kind, [bottle], gt.ids("dining table")))
    else:
        expected = set(gt.related(kind, gt.ids(subject), [bottle]))
    assert expected
    det = ask_voc(prompt)
    # 10 and 11 (at the back, behind the bottle and left of it) are each found twice: set equality
    assert set(identify(det, gt)) == expected, explanations(det)
    assert all(re.fullmatch(why, e) for e in explanations(det)), explanations(det)


def test_on_and_with_name_the_same_table(ask_voc: Ask, gt: Truth, bottle: int) -> None:
    on = ask_voc("the bottle on the table")
    table = ask_voc("the table with the bottle")
    (big,) = gt.related("holding", gt.ids("dining table"), [bottle])
    is_exactly(table, gt, [big])
    name = explanations(table)[0].split(":")[0]  # "dining table #4": numbered from the left
    assert explanations(on)[0] == f"bottle #1: on {name}"


def test_nobody_holds_the_bottle(ask_voc: Ask, gt: Truth, people: set[int], bottle: int) -> None:
    assert gt.related("holding", people, [bottle]) == []  # it stands on the table
    det = ask_voc("people holding a bottle")
    assert len(det) == 0
    assert det.meta["explanation"].endswith("none of them is with a bottle")


def test_nearest_is_the_smallest_centroid_distance(
    ask_voc: Ask, gt: Truth, people: set[int], bottle: int
) -> None:
    expected = gt.by(people, lambda p: np.hypot(*(gt.centroids[p] - gt.centroids[bottle])))[0]
    det = ask_voc("the person nearest to the bottle")
    is_exactly(det, gt, [expected])
    assert re.fullmatch(r"person #\d+: nearest to bottle #1 \(\d+ px between centres\)", explanations(det)[0])


def test_in_is_containment(ask_tote: Ask, truth: dict[str, Truth]) -> None:
    # The detector sees the tote itself as a COCO "suitcase" (the bin is not annotated); the book lies in
    # it. The VOC photo has nothing inside anything the detector finds.
    tote = truth["tote"]
    (book,) = tote.ids("book")
    det = ask_tote("the book in the suitcase")
    is_exactly(det, tote, [book])
    assert explanations(det) == ["book #1: in suitcase #1"]


def test_between_two_groups(ask_voc: Ask, gt: Truth, people: set[int], bottle: int) -> None:
    # The bottle is between the leftmost and the rightmost person, along x (the axis that separates them).
    leftmost, rightmost = gt.by(people, lambda p: gt.centroids[p, 0])[:: len(people) - 1]
    span = np.abs(gt.centroids[rightmost] - gt.centroids[leftmost])
    assert (
        span[0] > span[1] and gt.centroids[leftmost, 0] < gt.centroids[bottle, 0] < gt.centroids[rightmost, 0]
    )
    det = ask_voc("the bottle between the people")
    is_exactly(det, gt, [bottle])
    assert explanations(det)[0].startswith("bottle #1: between person #")


def test_between_two_named_targets(ask_voc: Ask, gt: Truth, bottle: int) -> None:
    det = ask_voc("the bottle between the person on the left and the person on the right")
    is_exactly(det, gt, [bottle])
    assert explanations(det)[0].startswith("bottle #1: between person #")


def test_between_names_both_targets(ask_voc: Ask, gt: Truth, bottle: int) -> None:
    det = ask_voc("the bottle between the people")
    is_exactly(det, gt, [bottle])
    assert re.fullmatch(r"bottle #1: between person #\d+ and person #\d+", explanations(det)[0])


# -- negation, exceptions, conjunctions, only/all ----------------------------------------------------


def test_without_keeps_those_with_no_such_target(
    ask_voc: Ask, gt: Truth, people: set[int], bottle: int
) -> None:
    without = ask_voc("people without a bottle")
    assert set(identify(without, gt)) == people - set(gt.related("holding", people, [bottle]))
    assert all(e.endswith("not with any bottle (1 found)") for e in explanations(without))

    # Tables by box: the colour refinement cannot draw a table hidden behind people. The far right table
    # (13) is not found at all, so it cannot be in the answer.
    tables = gt.ids("dining table")
    seen = set(identify(ask_voc("tables"), gt, by="box"))
    assert seen == set(tables) - {13}
    det = ask_voc("tables without a bottle")
    expected = (set(tables) - set(gt.related("holding", tables, [bottle]))) & seen
    assert set(identify(det, gt, by="box")) == expected


def test_not_the_one_on_the_left(ask_voc: Ask, gt: Truth, people: set[int]) -> None:
    leftmost = gt.by(people, lambda p: gt.centroids[p, 0])[0]
    det = ask_voc("not the person on the left")
    assert set(identify(det, gt)) == people - {leftmost}
    assert det.meta["query"]["refer"] == "remove"


@pytest.mark.parametrize(
    ("prompt", "left_out", "why"),
    [
        (
            "all people except the red one",
            lambda gt, px: gt.colour(gt.ids("person"), "red", px),
            "not the red one",
        ),
        (
            "the people except the person in the middle",
            lambda gt, px: gt.by(
                gt.ids("person"), lambda p: np.hypot(*(gt.centroids[p] / (gt.width, gt.height) - 0.5))
            )[:1],
            "not the person in the middle",
        ),
    ],
)
def test_an_exception_leaves_out_the_one_named(
    prompt: str,
    left_out: Callable[[Truth, np.ndarray], list[int]],
    why: str,
    ask_voc: Ask,
    gt: Truth,
    people: set[int],
    voc: dict[str, Any],
) -> None:
    gone = set(left_out(gt, voc["rgb"]))
    assert len(gone) == 1
    det = ask_voc(prompt)
    assert set(identify(det, gt)) == people - gone
    assert all(": a person (score" in e and why in e for e in explanations(det))


def test_a_conjunction_is_the_union(ask_voc: Ask, gt: Truth, people: set[int], bottle: int) -> None:
    rightmost = gt.by(people, lambda p: -gt.centroids[p, 0])[0]
    det = ask_voc("the bottle and the person on the right")
    is_exactly(det, gt, [bottle, rightmost])
    assert re.fullmatch(r"bottle #1: a bottle \(score 0\.\d\d\)", explanations(det)[0])
    assert re.fullmatch(r"person #\d+: rightmost of \d+ people", explanations(det)[1])

    # Chairs by box: 4 of the 8 chairs are found, all others are hidden behind people or too small.
    mixed = ask_voc("the bottle and the chairs")
    found = identify(mixed, gt, by="box")
    chairs = found[1:]
    assert found[0] == bottle and len(chairs) == len(set(chairs)) >= 4
    assert {gt.labels[i] for i in chairs} == {"chair"}


def test_only_and_all_take_every_one(ask_voc: Ask, gt: Truth, people: set[int]) -> None:
    every = ask_voc("people")
    only = ask_voc("only the people")
    assert set(identify(every, gt)) == set(identify(only, gt)) == people
    assert np.array_equal(every.xyxy, only.xyxy)
    tables = ask_voc("all the tables")
    assert set(identify(tables, gt, by="box")) == set(gt.ids("dining table")) - {13}  # 13: not found


# -- absent concepts ------------------------------------------------------------------------------


def test_an_absent_concept_returns_nothing_and_says_why(ask_voc: Ask, gt: Truth, bottle: int) -> None:
    assert "giraffe" not in gt.labels
    giraffe = ask_voc("the giraffe")
    assert len(giraffe) == 0
    assert giraffe.meta["explanation"] == "nothing matches 'the giraffe': no giraffe found"

    helmet = ask_voc("the helmet")  # not a COCO class: the detector cannot look for it
    assert len(helmet) == 0
    assert "'helmet' is not one of the 80 COCO classes" in helmet.meta["explanation"]

    both = ask_voc("bottles and giraffes")
    is_exactly(both, gt, [bottle])
    assert "no giraffe found" in both.meta["notes"]


# -- conversations --------------------------------------------------------------------------------


@pytest.fixture
def session(voc: dict[str, Any], offline_backend: Any) -> Session:
    return Session(voc["rgb"], offline_backend)


def turn(session: Session, prompt: str) -> tuple[Detections, float]:
    det = checked(session.ask(prompt))
    return det, det.meta["timing"]["detect_s"]


def test_follow_ups_refer_to_the_last_answer_and_reuse_the_detections(
    session: Session, gt: Truth, people: set[int], bottle: int
) -> None:
    leftmost = gt.by(people, lambda p: gt.centroids[p, 0])[0]

    everyone, detect_s = turn(session, "people")
    assert set(identify(everyone, gt)) == people and detect_s > 0

    left, detect_s = turn(session, "only the left one")
    is_exactly(left, gt, [leftmost])
    assert detect_s == 0 and left.meta["query"]["refer"] == "narrow"
    assert re.fullmatch(r"person #1: leftmost of \d+ people", explanations(left)[0])

    plus, detect_s = turn(session, "and the bottle too")
    is_exactly(plus, gt, [leftmost, bottle])
    assert detect_s > 0  # the bottle is new
    assert plus.meta["query"]["refer"] == "add"

    other, detect_s = turn(session, "the other person")
    assert set(identify(other, gt)) == people - {leftmost}
    assert detect_s == 0 and other.meta["query"]["refer"] == "other"
    assert all(e.endswith("; not in the last answer") for e in explanations(other))

    again, detect_s = turn(session, "the bottle")
    is_exactly(again, gt, [bottle])
    assert detect_s == 0
    assert [t.request for t in session.history][-1] == "ask 'the bottle'" and len(session.history) == 5


def test_not_that_one_is_the_next_best(session: Session, gt: Truth, people: set[int]) -> None:
    first, second = gt.by(people, lambda p: -gt.centroids[p, 0])[:2]
    right, _ = turn(session, "the person on the right")
    is_exactly(right, gt, [first])

    other, detect_s = turn(session, "not that one")
    is_exactly(other, gt, [second])
    assert detect_s == 0
    assert re.fullmatch(
        r"person #\d+: rightmost of \d+ people; not in the last answer", explanations(other)[0]
    )

    back, detect_s = turn(session, "the other one")
    is_exactly(back, gt, [first])
    assert detect_s == 0


def test_not_the_one_on_the_left_as_a_follow_up(session: Session, gt: Truth, people: set[int]) -> None:
    leftmost = gt.by(people, lambda p: gt.centroids[p, 0])[0]
    turn(session, "people")
    det, detect_s = turn(session, "not the one on the left")
    assert set(identify(det, gt)) == people - {leftmost}
    assert detect_s == 0


def test_not_that_one_after_a_mixed_answer_is_ambiguous(session: Session) -> None:
    for prompt in ("people", "only the left one", "and the bottle too"):
        turn(session, prompt)
    with pytest.raises(QueryError, match="the last answer has 2 objects, so 'not that one' is ambiguous"):
        session.ask("not that one")


def test_not_the_person_after_a_mixed_answer_keeps_the_bottle(
    session: Session, gt: Truth, people: set[int], bottle: int
) -> None:
    rightmost = gt.by(people, lambda p: -gt.centroids[p, 0])[0]
    turn(session, "the bottle")
    both, _ = turn(session, "and the person on the right too")
    is_exactly(both, gt, [bottle, rightmost])
    det, detect_s = turn(session, "not the person")
    is_exactly(det, gt, [bottle])
    assert detect_s == 0


# -- wording --------------------------------------------------------------------------------------


def test_a_single_candidate_is_not_counted_as_plural(ask_voc: Ask) -> None:
    det = ask_voc("the green bottle")
    assert "the 1 bottles" not in det.meta["explanation"]


def test_the_article_agrees_with_the_noun(skimage_data: Any, offline_backend: Any) -> None:
    photo = load_public_set().images["astronaut"]  # boxes only
    (her,) = [k for k, i in enumerate(photo.instances) if "astronaut" in i.aliases]
    det = checked(ask(load_image(skimage_data / "astronaut.png"), "the astronaut", backend=offline_backend))
    best = int(np.argmax(det.scores))
    assert box_iou(det.xyxy[[best]], photo.xyxy[[her]])[0, 0] >= 0.9
    assert "a astronaut" not in explanations(det)[best]


def test_a_plural_only_noun_keeps_its_form(ask_voc: Ask) -> None:
    det = ask_voc("the scissors")  # none on the cafeteria photo
    assert len(det) == 0
    assert parse("the scissors").include[0].concept == "scissors"
    assert "no scissors found" in det.meta["explanation"]
