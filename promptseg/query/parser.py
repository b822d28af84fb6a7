"""The rule-based prompt parser: English words in, a validated :class:`~promptseg.query.model.Query` out.

Deterministic, dependency-free and fast (tens of microseconds a prompt). It reads:

- concepts: noun phrases, singular or plural ("cups", "wine glasses", "people" → person), lists
  ("bags and luggage", "cups, bottles and glasses");
- before the noun: counts ("a", "two", "3", "both"), ordinals ("third", "2nd", "last", "second to
  last"), superlatives ("largest", "leftmost"), size ("big", "small"), colours ("red", "navy") and
  positions ("the left cup", "top-right");
- after the noun: regions ("on the left", "in the top right corner", "in the middle"), ordinal
  directions ("from the right"), relations ("on the table", "holding an umbrella", "next to a table",
  "left of the laptop", "between the cups and the plate"), negations ("without a helmet", "not on the
  table", "that is not red"), clauses ("that are red", "who is wearing a hat");
- exceptions ("all chairs except the red one", "people but not the ones on the left", "not the person
  on the left");
- follow-ups in a conversation ("only the left one", "and the chairs too", "not that one", "the other
  bottle"), marked with :attr:`Query.refer` and the pronoun concept :data:`~promptseg.query.model.THAT`.

Singular and plural decide how positions are read: "people on the left" keeps every person in the left
half of the image; "the person on the left" is the leftmost person (a count of one, ordered by position).
Words it cannot use are listed in :attr:`Query.notes`, never silently dropped.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import replace

from promptseg.errors import InputError, QueryError
from promptseg.query.color import color_word
from promptseg.query.model import THAT, Ordinal, Query, Refer, Relation, RelationKind, Term
from promptseg.text.words import singularize

__all__ = ["parse"]


def _set(text: str) -> frozenset[str]:
    return frozenset(text.split())


_NUMBERS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "both": 2, "a": 1, "an": 1, "single": 1,
}  # fmt: skip
_ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
    "eighth": 8, "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "last": -1,
}  # fmt: skip
_ORDINAL_DIGITS = re.compile(r"^(\d+)(?:st|nd|rd|th)$")
# Superlatives: the size ones, and the positional ones (an ordinal of one from a side).
_SIZE_SUPERLATIVES = {
    "largest": "largest", "biggest": "largest", "tallest": "largest", "widest": "largest",
    "smallest": "smallest", "tiniest": "smallest", "shortest": "smallest", "littlest": "smallest",
    # comparatives name the extreme of a pair ("the bigger one")
    "larger": "largest", "bigger": "largest", "taller": "largest",
    "smaller": "smallest", "shorter": "smallest",
}  # fmt: skip
_SIZE_ADJECTIVES = {
    "big": "large", "large": "large", "huge": "large", "giant": "large", "massive": "large",
    "small": "small", "little": "small", "tiny": "small", "mini": "small",
}  # fmt: skip
_EXTREMES = {
    "leftmost": "left", "left-most": "left", "rightmost": "right", "right-most": "right",
    "topmost": "top", "uppermost": "top", "highest": "top", "top-most": "top",
    "bottommost": "bottom", "lowest": "bottom", "lowermost": "bottom", "bottom-most": "bottom",
}  # fmt: skip
_SIDES = {
    "left": "left", "right": "right", "top": "top", "upper": "top", "bottom": "bottom",
    "lower": "bottom", "middle": "center", "center": "center", "centre": "center", "central": "center",
}  # fmt: skip
_CENTRE = _set("center centre middle")
_SHADES = _set("dark light bright pale deep")
_PICTURE = [[w] for w in ("image", "picture", "photo", "frame", "scene")]
_REGION_FILLER = _set("side hand corner edge part half area portion of the image picture photo frame")
_DETERMINERS = _set(
    """the all every each any some several many these those this that my your our their its his her
    of few various multiple only just also"""
)
_PRONOUNS = _set("one ones them those these it they that this others other")
_OBJECT_WORDS = _set("object objects thing things item items")  # "the red ones" and "red objects"
_CLAUSE = _set("that which who whom is are was were being")
_NEGATIONS = _set("not no n't without never")

# Relation phrases, longest first: words -> (kind, negated). "with no" and "without" negate.
_RELATION_PHRASES: list[tuple[tuple[str, ...], RelationKind, bool]] = sorted(
    [
        (tuple(words.split()), kind, negated)  # type: ignore[misc]
        for words, kind, negated in [
            ("on", "on", False), ("on top of", "on", False), ("onto", "on", False),
            ("upon", "on", False), ("sitting on", "on", False), ("standing on", "on", False),
            ("lying on", "on", False), ("resting on", "on", False), ("placed on", "on", False),
            ("riding", "on", False), ("riding on", "on", False), ("sitting at", "next to", False),
            ("in", "in", False), ("inside", "in", False), ("inside of", "in", False),
            ("within", "in", False), ("into", "in", False), ("sitting in", "in", False),
            ("holding", "holding", False), ("carrying", "holding", False), ("with", "holding", False),
            ("having", "holding", False), ("has", "holding", False), ("have", "holding", False),
            ("that has", "holding", False), ("using", "holding", False), ("touching", "holding", False),
            ("wearing", "wearing", False), ("dressed in", "wearing", False),
            ("without", "holding", True), ("with no", "holding", True), ("lacking", "holding", True),
            ("next to", "next to", False), ("beside", "next to", False), ("besides", "next to", False),
            ("by", "next to", False), ("near", "next to", False), ("close to", "next to", False),
            ("adjacent to", "next to", False), ("alongside", "next to", False), ("at", "next to", False),
            ("nearest", "nearest", False), ("nearest to", "nearest", False),
            ("closest", "nearest", False), ("closest to", "nearest", False),
            ("left of", "left of", False), ("to the left of", "left of", False),
            ("on the left of", "left of", False), ("on the left side of", "left of", False),
            ("right of", "right of", False), ("to the right of", "right of", False),
            ("on the right of", "right of", False), ("on the right side of", "right of", False),
            ("above", "above", False), ("over", "above", False),
            ("below", "below", False), ("under", "below", False), ("underneath", "below", False),
            ("beneath", "below", False), ("behind", "behind", False),
            ("in front of", "in front of", False), ("before", "in front of", False),
            ("between", "between", False), ("in between", "between", False),
        ]
    ],
    key=lambda item: -len(item[0]),
)  # fmt: skip
_RELATION_STARTS = frozenset(words[0] for words, _, _ in _RELATION_PHRASES)

_REQUESTS = sorted(
    [
        "please", "kindly", "can you", "could you", "would you", "will you", "i want to", "i want",
        "i'd like to", "i'd like", "i would like to", "i would like", "i need", "let's", "now",
        "show me", "show", "find me", "find", "detect", "segment", "locate", "highlight", "mark",
        "select", "identify", "outline", "get me", "get", "give me", "return", "extract", "where is",
        "where are", "look for", "search for", "point to", "point out", "annotate", "track",
        "how many", "is there", "are there", "keep", "pick", "choose", "what about", "how about",
        "ok", "okay", "then", "so",
    ],
    key=len,
    reverse=True,
)  # fmt: skip
_REQUEST_RE = re.compile(r"^(?:(?:" + "|".join(re.escape(w) for w in _REQUESTS) + r")\b\s*)+")
_TRAILING_RE = re.compile(
    r"(?:\s+(?:please|here|in (?:the|this) (?:image|picture|photo|photograph|frame|scene|video|shot)))+$"
)
_EXCEPT_RE = re.compile(r"\s+(?:except(?: for)?|excluding|but not|apart from|other than|save for|but)\s+")
_SPLIT_RE = re.compile(r"\s*(?:,|;|&|\+|\band\b|\bor\b|\bplus\b|\bas well as\b|\balong with\b)\s*")
_ADD_START = re.compile(r"^(?:and|also|plus|add|include|along with|as well as)\b\s*")
_ADD_END = re.compile(r"\s+(?:too|as well|also)$")
_REMOVE_START = re.compile(
    r"^(?:not|remove|drop|exclude|excluding|without|minus|except(?: for)?|but not|leave out|no)\b\s*"
)
_NARROW_START = re.compile(r"^(?:only|just|of (?:those|these|them)|among (?:those|these|them))\b\s*")
_OTHER = re.compile(
    r"^(?:(?:not|no) (?:that|this|it)(?: one)?|(?:the )?other(?: one| ones)?|the others|another(?: one)?|"
    r"a different one|the next one|someone else|something else)$"
)


def parse(prompt: str) -> Query:
    """Parse a prompt into a :class:`~promptseg.query.model.Query`.

    Args:
        prompt: plain English ("the third book from the left", "people without a helmet").

    Raises:
        QueryError: the prompt is empty or names nothing to look for.
        InputError: the prompt is not a string.

    Example:
        >>> q = parse("all chairs except the red one")
        >>> q.include[0].concept, q.include[0].exclude[0].colors
        ('chair', ('red',))
    """
    if not isinstance(prompt, str):
        raise InputError(f"a prompt is a string, got {type(prompt).__name__}")
    text = _normalise(prompt)
    if not text:
        raise QueryError("prompt is empty: say what to look for, e.g. 'the bottle' or 'people'")
    notes: list[str] = []

    refer: Refer = "new"
    if _OTHER.match(text):
        plural = text.endswith(("others", "ones"))
        return Query(include=(Term(THAT, plural=plural, text=text),), refer="other", prompt=prompt)
    if _ADD_START.match(text) or _ADD_END.search(text):
        refer = "add"
        text = _ADD_END.sub("", _ADD_START.sub("", text))
    elif m := _REMOVE_START.match(text):
        rest = text[m.end() :]
        if _OTHER.match("not " + rest):
            return Query(include=(Term(THAT, text=text),), refer="other", prompt=prompt)
        excluded = _terms(rest, notes)
        return Query(include=(), exclude=tuple(excluded), refer="remove", prompt=prompt, notes=tuple(notes))
    elif m := _NARROW_START.match(text):
        text = text[m.end() :]
    if text.startswith(("the other ", "other ")):
        term = _term(text.split(" ", 2)[-1] if text.startswith("the ") else text[6:], notes)
        return Query(include=(term,), refer="other", prompt=prompt, notes=tuple(notes))

    head, _, excepted = _EXCEPT_RE.split(text, maxsplit=1)[0], None, None
    parts = _EXCEPT_RE.split(text, maxsplit=1)
    head = parts[0]
    excepted = parts[1] if len(parts) > 1 else None
    include = _terms(head, notes) if head else []
    if not include:
        raise QueryError(f"prompt {prompt!r} names no object to look for: say what, e.g. 'the red cup'")
    exclude: list[Term] = []
    if excepted:
        excepted = re.sub(r"^(?:not|for)\s+", "", excepted)
        exclude = _terms(excepted, notes, default_concept=include[-1].concept)
    if exclude and len(include) == 1:  # "all chairs except the red one": exceptions belong to the term
        include = [replace(include[0], exclude=tuple(exclude))]
        exclude = []
    if refer == "new" and any(t.concept == THAT for t in include):
        refer = "narrow"
        if len(include) == 1 and include[0] == Term(THAT, text=include[0].text):
            raise QueryError(f"prompt {prompt!r} names no object to look for: say what, e.g. 'the red cup'")
    return Query(
        include=tuple(include), exclude=tuple(exclude), refer=refer, prompt=prompt, notes=tuple(notes)
    )


def _normalise(prompt: str) -> str:
    text = unicodedata.normalize("NFKC", prompt).lower()
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("n't", " not")
    text = re.sub(r"[^\w\s,;&+'\-]", " ", text)
    text = re.sub(r"(?<!\w)['\-]|['\-](?!\w)", " ", text)
    text = " ".join(text.split())
    text = re.sub(r"\b(one|two|three|four|five|\d+) of (?:the|these|those)\b", r"\1", text)
    previous = None
    while text != previous:
        previous = text
        text = _REQUEST_RE.sub("", text).strip()
        text = _TRAILING_RE.sub("", text).strip(" ,;")
    return text


def _terms(text: str, notes: list[str], default_concept: str | None = None) -> list[Term]:
    """Terms of a list ("cups, bottles and the red glass"); colour-only items join the next one."""
    text = re.sub(r"\bbetween (.+?) and\b", r"between \1 _and_", text)
    pieces = [p.replace("_and_", "and") for p in _SPLIT_RE.split(text) if p and p.strip()]
    terms: list[Term] = []
    pending_colors: list[str] = []
    for piece in pieces:
        words = piece.split()
        colors = [color_word(w) for w in words if w not in _DETERMINERS]
        if colors and all(colors):  # "red and white cups": "red" alone names no object
            pending_colors += [c for c in colors if c]
            continue
        term = _term(piece, notes, default_concept=default_concept)
        if pending_colors:
            term = replace(term, colors=tuple(dict.fromkeys([*pending_colors, *term.colors])))
            pending_colors = []
        if term.concept == THAT and default_concept is not None:
            term = replace(term, concept=default_concept)
        terms.append(term)
    if pending_colors and terms:
        last = terms[-1]
        terms[-1] = replace(last, colors=tuple(dict.fromkeys([*last.colors, *pending_colors])))
    elif pending_colors:  # only colours: "the red ones" was consumed above only if it had no noun
        terms.append(Term(default_concept or THAT, plural=True, colors=tuple(pending_colors), text=text))
    return terms


def _term(text: str, notes: list[str], default_concept: str | None = None) -> Term:
    """One noun phrase with its modifiers."""
    words = text.split()
    split = _post_start(words)
    pre, post = words[:split], words[split:]
    term = _noun_phrase(pre, notes, text)
    term = _post_modifiers(term, post, notes)
    if term.concept == THAT and default_concept is not None:
        term = replace(term, concept=default_concept)
    # Singular with a position and no count: the single most extreme object ("the cup on the left").
    if term.region is not None and term.count is None and not term.plural:
        term = replace(term, count=1)
    return replace(term, text=text)


def _post_start(words: list[str]) -> int:
    """Index of the first word after the noun: a relation, a clause, a region or an ordinal direction."""
    for i, word in enumerate(words):
        if i == 0:
            continue
        if word in _CLAUSE or word in _NEGATIONS or word in ("from", "of"):
            return i
        if _relation_phrase(words, i) is not None and not (word == "last" or words[i - 1] == "second"):
            return i
    return len(words)


def _noun_phrase(words: list[str], notes: list[str], text: str) -> Term:
    count: int | None = None
    plural = False
    colors: list[str] = []
    size: str | None = None
    region_parts: list[str] = []
    ordinal: Ordinal | None = None
    rest: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        nxt = words[i + 1] if i + 1 < len(words) else ""
        if word in ("all", "every", "each", "many", "several", "some", "these", "those", "various"):
            plural = True
        elif word.isdigit() and not rest:
            count = int(word)
        elif word in _NUMBERS and not rest and not (word == "one" and not nxt):
            count = _NUMBERS[word] if count is None else count
            if word == "one" and nxt == "of":  # "one of the cups"
                i += 1
        elif word in _DETERMINERS and not rest:
            pass
        elif (word in _ORDINALS or _ORDINAL_DIGITS.match(word)) and not rest:
            n = _ORDINALS[word] if word in _ORDINALS else int(_ORDINAL_DIGITS.match(word).group(1))  # type: ignore[union-attr]
            if nxt in ("to", "from") and i + 2 < len(words) and words[i + 2] == "last":  # second to last
                n, i = -n, i + 2
            elif nxt == "last":  # "second last"
                n, i = -n, i + 1
            ordinal = Ordinal(n, "left")
        elif word.endswith("-last") and word.split("-")[0] in _ORDINALS:
            ordinal = Ordinal(-_ORDINALS[word.split("-")[0]], "left")
        elif word in _SIZE_SUPERLATIVES and not rest:
            size = _SIZE_SUPERLATIVES[word]
        elif word in _SIZE_ADJECTIVES and not rest:
            size = size or _SIZE_ADJECTIVES[word]
        elif word in _EXTREMES and not rest:
            ordinal = Ordinal(1, _EXTREMES[word])  # type: ignore[arg-type]
        elif (side := _side(word)) is not None and not rest:
            region_parts += side
        elif word in ("most",) and nxt in ("left", "right", "top", "bottom") and not rest:
            ordinal = Ordinal(1, _SIDES[nxt])  # type: ignore[arg-type]
            i += 1
        elif (color := color_word(word)) is not None and not (rest and word in ("orange",)):
            colors.append(color)
        elif (word in _SHADES and color_word(nxt)) or word in ("and", "or"):
            pass
        else:
            rest.append(word)
        i += 1

    concept, was_plural = _concept(rest)
    plural = plural or was_plural or (count is not None and count > 1)
    if concept is None:
        concept = THAT
        plural = plural or (rest[-1:] in (["ones"], ["them"], ["those"], ["these"], ["others"]))
    region = _region(region_parts)
    return Term(
        concept=concept,
        plural=plural,
        colors=tuple(dict.fromkeys(colors)),
        size=size,  # type: ignore[arg-type]
        region=region,  # type: ignore[arg-type]
        ordinal=ordinal,
        count=count,
        text=text,
    )


def _side(word: str) -> list[str] | None:
    """Position words before a noun: "left", "top-left", "middle"."""
    parts = word.replace("hand", "").strip("-").split("-")
    if parts and all(p in _SIDES for p in parts):
        return [_SIDES[p] for p in parts]
    return None


def _region(parts: list[str]) -> str | None:
    if not parts:
        return None
    vertical = [p for p in parts if p in ("top", "bottom")]
    horizontal = [p for p in parts if p in ("left", "right")]
    if vertical and horizontal:
        return f"{vertical[0]} {horizontal[0]}"
    if vertical or horizontal:
        return (vertical or horizontal)[0]
    return "center"


def _concept(words: list[str]) -> tuple[str | None, bool]:
    """The concept named by the remaining words, and whether they were plural."""
    words = [w for w in words if w not in _DETERMINERS or w in _PRONOUNS]
    if not words or words[-1] in _PRONOUNS or (len(words) == 1 and words[0] in _OBJECT_WORDS):
        return None, bool(words) and words[-1] in ("ones", "them", "those", "these", "others", "objects")
    if words[-1] in _OBJECT_WORDS and len(words) > 1:
        words = words[:-1]
    last = words[-1]
    single = singularize(last)
    return " ".join([*words[:-1], single]), single != last or last in ("people", "men", "women")


def _post_modifiers(term: Term, words: list[str], notes: list[str]) -> Term:
    """Apply what follows the noun: regions, ordinal directions, relations, negations, clauses."""
    relations: list[Relation] = []
    colors = list(term.colors)
    region = term.region
    ordinal = term.ordinal
    size = term.size
    negate = False
    i = 0
    while i < len(words):
        word = words[i]
        if word in _CLAUSE or word in ("and",):
            i += 1
            continue
        if word in ("not", "no", "never") and not (word == "no" and i > 0 and words[i - 1] == "with"):
            negate = not negate
            i += 1
            continue
        # "from the left" (ordinal direction) or "from left to right"
        if word == "from" and i + 1 < len(words):
            j = i + 1 + (words[i + 1] == "the")
            side = _SIDES.get(words[j]) if j < len(words) else None
            if side in ("left", "right", "top", "bottom"):
                ordinal = Ordinal(ordinal.n if ordinal else 1, side)  # type: ignore[arg-type]
                i = j + 1
                if i + 1 < len(words) and words[i] == "to" and words[i + 1] in _SIDES:
                    i += 2
                continue
        # a region: "on the left", "in the top right corner", "at the bottom", "in the middle"
        found = _region_phrase(words, i)
        if found is not None:
            parts, i = found
            region = _region(parts)  # type: ignore[assignment]
            continue
        # colour after the noun: "that is red", "in red"
        if (color := color_word(word)) is not None:
            colors.append(color)
            i += 1
            continue
        if word in ("in",) and i + 1 < len(words) and color_word(words[i + 1]):
            colors.append(color_word(words[i + 1]))  # type: ignore[arg-type]
            i += 2
            continue
        if word in _SIZE_SUPERLATIVES or word in _SIZE_ADJECTIVES:  # "the cup that is largest"
            size = _SIZE_SUPERLATIVES.get(word) or _SIZE_ADJECTIVES[word]  # type: ignore[assignment]
            i += 1
            continue
        relation = _relation_phrase(words, i)
        if relation is not None:
            kind, negated, start = relation
            end = _target_end(words, start, kind)
            target_words = words[start:end]
            if kind == "between":
                rel = _between(target_words, notes)
            else:
                target = _term(" ".join(target_words), notes) if target_words else None
                if kind in ("nearest", "next to") and target is not None and target.region == "center":
                    region, i = "center", max(end, i + 1)  # "the tree nearest to the centre"
                    continue
                if target is not None and target.count == 1 and target_words[0] in ("a", "an"):
                    target = replace(target, count=None)  # "holding an umbrella": any umbrella
                if target is None or target.concept == THAT:
                    notes.append(f"'{' '.join(words[i:end])}' names no object; ignored")
                    i = max(end, i + 1)
                    continue
                rel = Relation(kind, target)
            relations.append(replace(rel, negated=negated != negate))
            negate = False
            i = max(end, i + 1)
            continue
        notes.append(f"ignored the word {word!r}")
        i += 1
    return replace(
        term,
        colors=tuple(dict.fromkeys(colors)),
        region=region,
        ordinal=ordinal,
        size=size,
        relations=(*term.relations, *relations),
    )


def _region_phrase(words: list[str], i: int) -> tuple[list[str], int] | None:
    """``on the left``, ``in the top-right corner``, ``at the bottom``; not ``on the left of X``."""
    if words[i] not in ("on", "in", "at", "to", "towards", "toward", "near"):
        return None
    j = i + 1
    while j < len(words) and words[j] in ("the", "far", "very", "extreme"):
        j += 1
    parts: list[str] = []
    while j < len(words) and (side := _side(words[j])) is not None:
        parts += side
        j += 1
    if not parts:
        return None
    while j < len(words) and words[j] in _REGION_FILLER and words[j] != "of":
        j += 1
    if j < len(words) and words[j] == "of":
        if words[j + 1 : j + 2] in (["the"], ["this"]) and words[j + 2 : j + 3] in _PICTURE:
            return parts, j + 3
        return None  # "on the left of the laptop" is a relation
    return parts, j


def _relation_phrase(words: list[str], i: int) -> tuple[RelationKind, bool, int] | None:
    for phrase, kind, negated in _RELATION_PHRASES:
        if tuple(words[i : i + len(phrase)]) == phrase:
            return kind, negated, i + len(phrase)
    return None


def _target_end(words: list[str], start: int, kind: RelationKind) -> int:
    """Where a relation's target noun phrase ends: before the next relation, clause or negation."""
    if kind == "between":  # "between the person on the left and the bottle": to the end
        return len(words)
    j = start
    seen_noun = False
    while j < len(words):
        word = words[j]
        ends = word in _CLAUSE or word in ("not", "without") or _relation_phrase(words, j) is not None
        if seen_noun and ends:
            break
        if word not in _DETERMINERS and word not in _NUMBERS and word not in ("to",):
            seen_noun = True
        j += 1
    return j


def _between(words: list[str], notes: list[str]) -> Relation:
    text = " ".join(words)
    first, _, second = text.partition(" and ")
    if not second:
        parts = _terms(text, notes)
        if len(parts) == 1 and parts[0].plural:  # "between the chairs": between two of them
            return Relation("between", parts[0], second=parts[0])
        raise QueryError(f"'between {text}' needs two things, e.g. 'between the cup and the laptop'")
    return Relation("between", _term(first, notes), second=_term(second, notes))
