"""The rule-based parser: every modifier kind of the query language, follow-ups, and bad input."""

from __future__ import annotations

import json

import pytest

from promptseg.errors import InputError, QueryError
from promptseg.query.model import THAT, Ordinal, Query, Relation, Term, json_schema
from promptseg.query.parser import parse


def only(prompt: str) -> Term:
    q = parse(prompt)
    assert len(q.include) == 1, q
    assert q.refer == "new"
    return q.include[0]


@pytest.mark.parametrize(
    ("prompt", "concept", "plural"),
    [
        ("the bottle", "bottle", False),
        ("people", "person", True),
        ("all the chairs", "chair", True),
        ("wine glasses", "wine glass", True),
        ("Find all the dining tables, please", "dining table", True),
        ("show me the knives in the image", "knife", True),
        ("buses", "bus", True),
    ],
)
def test_concepts_singular_and_plural(prompt: str, concept: str, plural: bool) -> None:
    term = only(prompt)
    assert (term.concept, term.plural) == (concept, plural)
    assert term.count is None and term.colors == () and term.relations == ()


@pytest.mark.parametrize(
    ("prompt", "colors"),
    [
        ("the red car", ("red",)),
        ("grey cats", ("gray",)),
        ("the person in red", ("red",)),
        ("cups that are blue", ("blue",)),
        ("red and white cups", ("red", "white")),
    ],
)
def test_colours(prompt: str, colors: tuple[str, ...]) -> None:
    assert set(only(prompt).colors) == set(colors)


@pytest.mark.parametrize(
    ("prompt", "size", "count"),
    [
        ("the largest table", "largest", None),
        ("the biggest coin", "largest", None),
        ("the smallest cup", "smallest", None),
        ("small bottles", "small", None),
        ("big trees", "large", None),
        ("the two largest coins", "largest", 2),
    ],
)
def test_size(prompt: str, size: str, count: int | None) -> None:
    term = only(prompt)
    assert (term.size, term.count) == (size, count)


@pytest.mark.parametrize(
    ("prompt", "region", "count"),
    [
        ("people on the left", "left", None),  # plural: a filter
        ("the person on the left", "left", 1),  # singular: the leftmost
        ("chairs in the top right corner", "top right", None),
        ("the chair in the middle", "center", 1),
        ("trees in the bottom-left", "bottom left", None),
        ("the left cup", "left", 1),
        ("cups on the right side of the image", "right", None),
        ("the tree nearest to the center", "center", 1),
    ],
)
def test_positions(prompt: str, region: str, count: int | None) -> None:
    term = only(prompt)
    assert (term.region, term.count) == (region, count)


@pytest.mark.parametrize(
    ("prompt", "ordinal"),
    [
        ("the third book from the left", Ordinal(3, "left")),
        ("second person from the right", Ordinal(2, "right")),
        ("the 4th coin from the top", Ordinal(4, "top")),
        ("the last person", Ordinal(-1, "left")),
        ("the second to last chair", Ordinal(-2, "left")),
        ("the leftmost coin", Ordinal(1, "left")),
        ("the lowest tree", Ordinal(1, "bottom")),
    ],
)
def test_ordinals(prompt: str, ordinal: Ordinal) -> None:
    assert only(prompt).ordinal == ordinal


@pytest.mark.parametrize(
    ("prompt", "count"),
    [("two cups", 2), ("a chair", 1), ("3 people", 3), ("one of the cups", 1), ("both cats", 2)],
)
def test_counts(prompt: str, count: int) -> None:
    assert only(prompt).count == count


@pytest.mark.parametrize(
    ("prompt", "kind", "target", "negated"),
    [
        ("the cup on the table", "on", "table", False),
        ("the bottle that is on the table", "on", "table", False),
        ("the person holding an umbrella", "holding", "umbrella", False),
        ("people with a bottle", "holding", "bottle", False),
        ("a man wearing a hat", "wearing", "hat", False),
        ("chairs next to a table", "next to", "table", False),
        ("the bottle left of the laptop", "left of", "laptop", False),
        ("the cup to the right of the laptop", "right of", "laptop", False),
        ("the person on the left of the table", "left of", "table", False),
        ("the lamp above the table", "above", "table", False),
        ("the cat under the table", "below", "table", False),
        ("the apple in the bowl", "in", "bowl", False),
        ("the chair behind the table", "behind", "table", False),
        ("the person nearest to the bottle", "nearest", "bottle", False),
        ("people without a helmet", "holding", "helmet", True),
        ("workers who are not wearing a helmet", "wearing", "helmet", True),
        ("cups not on the table", "on", "table", True),
    ],
)
def test_relations(prompt: str, kind: str, target: str, negated: bool) -> None:
    (rel,) = only(prompt).relations
    assert (rel.kind, rel.target.concept, rel.negated) == (kind, target, negated)
    assert rel.target.count is None  # "an umbrella" is any umbrella, not the best-scoring one


def test_between_has_two_targets() -> None:
    (rel,) = only("the cup between the laptop and the phone").relations
    assert rel.kind == "between"
    assert (rel.target.concept, rel.second and rel.second.concept) == ("laptop", "phone")


def test_exception_belongs_to_its_term_and_one_means_the_concept() -> None:
    term = only("all chairs except the red one")
    assert term.concept == "chair" and term.plural
    assert term.exclude == (Term("chair", colors=("red",), text="the red one"),)
    term = only("people but not the ones on the left")
    assert term.exclude[0].concept == "person" and term.exclude[0].region == "left"


def test_conjunctions_make_a_union() -> None:
    q = parse("cups, bottles and glasses")
    assert [t.concept for t in q.include] == ["cup", "bottle", "glass"]
    q = parse("bags and luggage")
    assert [t.concept for t in q.include] == ["bag", "luggage"]
    assert q.concepts() == ["bag", "luggage"]


def test_leading_negation_removes() -> None:
    q = parse("not the person on the left")
    assert q.refer == "remove" and q.include == ()
    assert q.exclude[0].concept == "person" and q.exclude[0].count == 1


@pytest.mark.parametrize(
    ("prompt", "refer", "concept"),
    [
        ("only the left one", "narrow", THAT),
        ("the red ones", "narrow", THAT),
        ("the bigger one", "narrow", THAT),
        ("and the chairs too", "add", "chair"),
        ("also the bottle", "add", "bottle"),
        ("not that one", "other", THAT),
        ("the other one", "other", THAT),
        ("the other bottle", "other", "bottle"),
        ("only the cups", "new", "cup"),
    ],
)
def test_follow_ups(prompt: str, refer: str, concept: str) -> None:
    q = parse(prompt)
    assert q.refer == refer
    assert q.include[0].concept == concept


def test_unused_words_are_noted_not_dropped_silently() -> None:
    q = parse("the cup of coffee")
    assert q.include[0].concept == "cup"
    assert any("coffee" in note for note in q.notes)


@pytest.mark.parametrize("prompt", ["", "   ", "the", "please", "?!"])
def test_prompts_naming_nothing_get_a_clear_error(prompt: str) -> None:
    with pytest.raises(QueryError, match=r"empty|names no object"):
        parse(prompt)


def test_not_a_string() -> None:
    with pytest.raises(InputError, match="string"):
        parse(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "prompt",
    [
        "the third book from the left",
        "people without a helmet",
        "all chairs except the red one",
        "the cup between the laptop and the phone",
        "not the person on the left",
        "and the chairs too",
        "two largest red cups on the table next to a laptop",
    ],
)
def test_round_trip_through_json(prompt: str) -> None:
    q = parse(prompt)
    again = Query.from_dict(json.loads(json.dumps(q.to_dict())))
    assert again == q


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"include": [{"concept": "cup", "region": "upper"}]}, r"include\[0\]\.region"),
        ({"include": [{"concept": "cup", "ordinal": {"n": 0}}]}, r"ordinal\.n"),
        ({"include": [{"concept": "cup", "count": -1}]}, r"count"),
        ({"include": [{"concept": ""}]}, r"concept"),
        ({"include": [{"concept": "cup", "shiny": True}]}, r"unknown field 'shiny'"),
        (
            {"include": [{"concept": "cup", "relations": [{"kind": "between", "target": {"concept": "a"}}]}]},
            r"two targets",
        ),
        ({"include": []}, r"names nothing"),
        ([], r"expected an object"),
    ],
)
def test_from_dict_names_the_bad_field(data: object, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        Query.from_dict(data)


def test_schema_lists_every_relation_and_region() -> None:
    schema = json_schema()
    relation = schema["$defs"]["relation"]["properties"]["kind"]["enum"]
    assert "between" in relation and "holding" in relation
    assert "top left" in schema["$defs"]["term"]["properties"]["region"]["enum"]


def test_relation_targets_are_terms_with_their_own_modifiers() -> None:
    (rel,) = only("the cup left of the largest laptop").relations
    assert rel == Relation("left of", Term("laptop", size="largest", text="the largest laptop"))
