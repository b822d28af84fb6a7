"""The structure a prompt is parsed into: terms (a concept plus modifiers), unions and exclusions.

A :class:`Query` is plain data, the same whichever parser made it (the rule-based one or a language
model), and it round-trips through JSON (:meth:`Query.to_dict` / :meth:`Query.from_dict`, which validates
and raises :class:`~promptseg.errors.QueryError` naming the bad field).

```
"all chairs except the red one"   include=[Term("chair", plural, exclude=[Term("chair", colors=["red"])])]
"the third book from the left"    include=[Term("book", ordinal=Ordinal(3, "left"))]
"people without a helmet"         include=[Term("person", plural,
                                               relations=[Relation("holding", Term("helmet"), negated)])]
"bags and luggage"                include=[Term("bag", plural), Term("luggage")]
"not the person on the left"      include=[], exclude=[Term("person", region="left", count=1)], refer="remove"
"only the left one" (follow-up)   include=[Term(THAT, count=1, region="left")], refer="narrow"
```
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from promptseg.errors import QueryError

__all__ = [
    "COLORS",
    "DIRECTIONS",
    "REFERS",
    "REGIONS",
    "RELATIONS",
    "SIZES",
    "THAT",
    "Direction",
    "Ordinal",
    "Query",
    "Refer",
    "Region",
    "Relation",
    "RelationKind",
    "SizeKind",
    "Term",
]

Direction = Literal["left", "right", "top", "bottom"]
Region = Literal[
    "left", "right", "top", "bottom", "center", "top left", "top right", "bottom left", "bottom right"
]
SizeKind = Literal["largest", "smallest", "large", "small"]
RelationKind = Literal[
    "on",  # support: "the cup on the table"
    "in",  # containment: "the apple in the bowl"
    "holding",  # overlap, the target mostly inside the subject: also carrying, with, has
    "wearing",  # like holding: "a person wearing a hat"
    "next to",  # close, side by side: also beside, by, near
    "nearest",  # superlative distance: "the cup nearest to the laptop"
    "left of",
    "right of",
    "above",
    "below",  # also under, beneath
    "behind",  # further from the camera: the bottom edge higher in the image, overlapping
    "in front of",
    "between",  # between two targets: Relation("between", a, second=b)
]
Refer = Literal["new", "narrow", "add", "remove", "other"]

DIRECTIONS: tuple[str, ...] = get_args(Direction)
REGIONS: tuple[str, ...] = get_args(Region)
SIZES: tuple[str, ...] = get_args(SizeKind)
RELATIONS: tuple[str, ...] = get_args(RelationKind)
REFERS: tuple[str, ...] = get_args(Refer)
COLORS: tuple[str, ...] = (
    "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown",
    "black", "white", "gray",
)  # fmt: skip
"""The named palette: the basic colour terms shared by most languages (Berlin and Kay), gray spelt
the American way. Parsers map other words onto these ("grey", "navy", "crimson")."""

THAT = "@that"
"""The concept of a follow-up's pronoun ("the left one", "those", "that one"): the last answer's objects."""


@dataclass(frozen=True)
class Ordinal:
    """The n-th object counted from one side: ``Ordinal(3, "left")`` is "third from the left";
    ``n=-1`` is the last ("the last cup" = ``Ordinal(-1, "left")``)."""

    n: int
    direction: Direction = "left"


@dataclass(frozen=True)
class Relation:
    """A geometric relation from the term's objects to objects of another term.

    Attributes:
        kind: one of :data:`RELATIONS`.
        target: the other objects ("the table" in "the cup on the table").
        negated: keep objects that have *no* such target ("without a helmet", "not on the table").
        second: the second target of "between".
    """

    kind: RelationKind
    target: Term
    negated: bool = False
    second: Term | None = None


@dataclass(frozen=True)
class Term:
    """One concept and what narrows it: the unit the resolver selects objects for.

    Filters first (colours, size adjectives, relations, and the region when no count is asked), then
    ordering (superlatives, ordinals, and the region when a count is asked: "the person on the left" is
    the leftmost person), then the count, then the exclusions.

    Attributes:
        concept: the noun phrase sent to the backend, singular ("cup", "wine glass"); :data:`THAT` for
            a follow-up's pronoun.
        plural: the words asked for several ("cups", "all the cups").
        colors: any of these palette colours (:data:`COLORS`).
        size: a superlative (``largest``, ``smallest``: one object, or ``count``) or an adjective
            (``large``, ``small``: relative to the other objects of the concept).
        region: where in the image (:data:`REGIONS`).
        ordinal: "third from the left".
        relations: every one must hold.
        count: how many to return (None: all that match). "a cup" is 1, "two cups" is 2.
        exclude: objects to leave out ("except the red one").
        text: the words this term was read from (for explanations).
    """

    concept: str
    plural: bool = False
    colors: tuple[str, ...] = ()
    size: SizeKind | None = None
    region: Region | None = None
    ordinal: Ordinal | None = None
    relations: tuple[Relation, ...] = ()
    count: int | None = None
    exclude: tuple[Term, ...] = ()
    text: str = ""

    def concepts(self) -> list[str]:
        """Every concept this term needs detected, its own first, without duplicates."""
        found = [self.concept]
        for rel in self.relations:
            found += rel.target.concepts()
            if rel.second is not None:
                found += rel.second.concepts()
        for ex in self.exclude:
            found += ex.concepts()
        return list(dict.fromkeys(found))


@dataclass(frozen=True)
class Query:
    """A parsed prompt: the union of ``include`` minus the union of ``exclude``.

    Attributes:
        include: the terms to find (one per concept named: "bags and luggage" has two).
        exclude: terms to leave out of the answer ("not the person on the left").
        refer: how the query relates to the previous answer in a conversation: ``new`` (it does
            not), ``narrow`` ("only the left one": select among the last answer), ``add`` ("and the
            chairs too"), ``remove`` ("not the red one": the last answer minus these), ``other``
            ("the other bottle", "not that one": the same request, without the last answer's objects).
        prompt: the text parsed.
        notes: what the parser noticed and could not use ("ignored the word 'shiny'").
    """

    include: tuple[Term, ...]
    exclude: tuple[Term, ...] = ()
    refer: Refer = "new"
    prompt: str = ""
    notes: tuple[str, ...] = field(default=(), compare=False)

    def concepts(self) -> list[str]:
        """Every concept to detect, in order of first mention, without :data:`THAT`."""
        found: list[str] = []
        for term in (*self.include, *self.exclude):
            found += term.concepts()
        return [c for c in dict.fromkeys(found) if c != THAT]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data; defaults are left out."""
        out: dict[str, Any] = {"include": [_term_to_dict(t) for t in self.include]}
        if self.exclude:
            out["exclude"] = [_term_to_dict(t) for t in self.exclude]
        if self.refer != "new":
            out["refer"] = self.refer
        if self.prompt:
            out["prompt"] = self.prompt
        if self.notes:
            out["notes"] = list(self.notes)
        return out

    @classmethod
    def from_dict(cls, data: Any, *, prompt: str | None = None) -> Query:
        """Validate data (e.g. a language model's JSON) into a query.

        Raises:
            QueryError: naming the first bad field, e.g. ``include[0].ordinal.n: expected a non-zero
                integer, got 'third'``.
        """
        obj = _object(data, "query", {"include", "exclude", "refer", "prompt", "notes"})
        include = tuple(_term(t, f"include[{i}]") for i, t in enumerate(_list(obj.get("include"), "include")))
        exclude = tuple(
            _term(t, f"exclude[{i}]") for i, t in enumerate(_list(obj.get("exclude", []), "exclude"))
        )
        refer = _choice(obj.get("refer", "new"), REFERS, "refer")
        if not include and refer not in ("remove", "narrow") and not exclude:
            raise QueryError("query.include: names nothing to look for")
        text = obj.get("prompt", "") if prompt is None else prompt
        notes = tuple(str(n) for n in _list(obj.get("notes", []), "notes"))
        return cls(
            include=include,
            exclude=exclude,
            refer=refer,  # type: ignore[arg-type]
            prompt=str(text),
            notes=notes,
        )


def _term_to_dict(term: Term) -> dict[str, Any]:
    out: dict[str, Any] = {"concept": term.concept}
    if term.plural:
        out["plural"] = True
    if term.colors:
        out["colors"] = list(term.colors)
    for name in ("size", "region", "count"):
        if getattr(term, name) is not None:
            out[name] = getattr(term, name)
    if term.ordinal is not None:
        out["ordinal"] = {"n": term.ordinal.n, "direction": term.ordinal.direction}
    if term.relations:
        out["relations"] = [_relation_to_dict(r) for r in term.relations]
    if term.exclude:
        out["exclude"] = [_term_to_dict(t) for t in term.exclude]
    if term.text:
        out["text"] = term.text
    return out


def _relation_to_dict(rel: Relation) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": rel.kind, "target": _term_to_dict(rel.target)}
    if rel.negated:
        out["negated"] = True
    if rel.second is not None:
        out["second"] = _term_to_dict(rel.second)
    return out


_TERM_KEYS = {
    "concept", "plural", "colors", "size", "region", "ordinal", "relations", "count", "exclude", "text",
}  # fmt: skip


def _term(data: Any, where: str) -> Term:
    obj = _object(data, where, _TERM_KEYS)
    concept = obj.get("concept")
    if not isinstance(concept, str) or not concept.strip():
        raise QueryError(f"{where}.concept: expected a noun phrase such as 'cup', got {concept!r}")
    plural = obj.get("plural", False)
    if not isinstance(plural, bool):
        raise QueryError(f"{where}.plural: expected true or false, got {plural!r}")
    colors = tuple(
        _choice(c, COLORS, f"{where}.colors[{i}]") for i, c in enumerate(_list(obj.get("colors", []), where))
    )
    size = None if obj.get("size") is None else _choice(obj["size"], SIZES, f"{where}.size")
    region = None if obj.get("region") is None else _choice(obj["region"], REGIONS, f"{where}.region")
    ordinal = None
    if obj.get("ordinal") is not None:
        o = _object(obj["ordinal"], f"{where}.ordinal", {"n", "direction"})
        n = o.get("n")
        if isinstance(n, bool) or not isinstance(n, int) or n == 0:
            raise QueryError(f"{where}.ordinal.n: expected a non-zero integer (-1 for the last), got {n!r}")
        direction = _choice(o.get("direction", "left"), DIRECTIONS, f"{where}.ordinal.direction")
        ordinal = Ordinal(n, direction)  # type: ignore[arg-type]
    count = obj.get("count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise QueryError(f"{where}.count: expected a positive integer, got {count!r}")
    relations = tuple(
        _relation(r, f"{where}.relations[{i}]") for i, r in enumerate(_list(obj.get("relations", []), where))
    )
    exclude = tuple(
        _term(t, f"{where}.exclude[{i}]") for i, t in enumerate(_list(obj.get("exclude", []), where))
    )
    return Term(
        concept=" ".join(concept.lower().split()),
        plural=plural,
        colors=colors,
        size=size,  # type: ignore[arg-type]
        region=region,  # type: ignore[arg-type]
        ordinal=ordinal,
        relations=relations,
        count=count,
        exclude=exclude,
        text=str(obj.get("text", "")),
    )


def _relation(data: Any, where: str) -> Relation:
    obj = _object(data, where, {"kind", "target", "negated", "second"})
    kind = _choice(obj.get("kind"), RELATIONS, f"{where}.kind")
    negated = obj.get("negated", False)
    if not isinstance(negated, bool):
        raise QueryError(f"{where}.negated: expected true or false, got {negated!r}")
    second = None if obj.get("second") is None else _term(obj["second"], f"{where}.second")
    if kind == "between" and second is None:
        raise QueryError(f"{where}.second: 'between' needs two targets")
    return Relation(kind, _term(obj.get("target"), f"{where}.target"), negated, second)  # type: ignore[arg-type]


def _object(data: Any, where: str, keys: set[str]) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise QueryError(f"{where}: expected an object, got {type(data).__name__}")
    unknown = sorted(set(data) - keys)
    if unknown:
        raise QueryError(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(sorted(keys))})")
    return data


def _list(data: Any, where: str) -> list[Any]:
    if not isinstance(data, list):
        raise QueryError(f"{where}: expected a list, got {type(data).__name__}")
    return data


def _choice(value: Any, allowed: tuple[str, ...], where: str) -> str:
    if value not in allowed:
        raise QueryError(f"{where}: expected one of {', '.join(allowed)}; got {value!r}")
    return str(value)


def json_schema() -> dict[str, Any]:
    """A JSON Schema of :meth:`Query.to_dict`'s output, for language models' structured output."""
    term: dict[str, Any] = {
        "type": "object",
        "properties": {
            "concept": {"type": "string", "description": "singular noun phrase, e.g. 'cup', 'wine glass'"},
            "plural": {"type": "boolean"},
            "colors": {"type": "array", "items": {"type": "string", "enum": list(COLORS)}},
            "size": {"type": "string", "enum": list(SIZES)},
            "region": {"type": "string", "enum": list(REGIONS)},
            "ordinal": {
                "type": "object",
                "properties": {
                    "n": {"type": "integer", "description": "1 = first, 2 = second, -1 = last"},
                    "direction": {"type": "string", "enum": list(DIRECTIONS)},
                },
                "required": ["n", "direction"],
            },
            "count": {"type": "integer", "minimum": 1},
            "relations": {"type": "array", "items": {"$ref": "#/$defs/relation"}},
            "exclude": {"type": "array", "items": {"$ref": "#/$defs/term"}},
        },
        "required": ["concept"],
    }
    relation = {
        "type": "object",
        "properties": {
            "kind": {"type": "string", "enum": list(RELATIONS)},
            "target": {"$ref": "#/$defs/term"},
            "negated": {"type": "boolean"},
            "second": {"$ref": "#/$defs/term"},
        },
        "required": ["kind", "target"],
    }
    return {
        "type": "object",
        "$defs": {"term": term, "relation": relation},
        "properties": {
            "include": {"type": "array", "items": {"$ref": "#/$defs/term"}},
            "exclude": {"type": "array", "items": {"$ref": "#/$defs/term"}},
            "refer": {"type": "string", "enum": list(REFERS)},
        },
        "required": ["include"],
    }
