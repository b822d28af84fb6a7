"""English text handling for prompts: concept splitting, core phrases, singular forms, match keys.

A deliberately small parser: :func:`split_concepts` cuts a prompt into concept phrases on conjunctions
and commas and strips determiners, quantities and politeness; :func:`core_phrase` drops relations ("cup
on the table" -> "cup") and keeps them for a later, fuller query parser.
"""

from __future__ import annotations

import re
import unicodedata

from promptseg.errors import InputError, QueryError

__all__ = ["core_phrase", "singularize", "split_concepts"]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_IRREGULAR = {
    "people": "person",
    "persons": "person",
    "men": "man",
    "women": "woman",
    "children": "child",
    "mice": "mouse",
    "feet": "foot",
    "teeth": "tooth",
    "geese": "goose",
    "oxen": "ox",
    "knives": "knife",
    "wives": "wife",
    "leaves": "leaf",
    "shelves": "shelf",
    "loaves": "loaf",
    "halves": "half",
    "wolves": "wolf",
    "calves": "calf",
    "buses": "bus",
    "busses": "bus",
    "potatoes": "potato",
    "tomatoes": "tomato",
    "heroes": "hero",
    "mangoes": "mango",
    "cacti": "cactus",
    "fungi": "fungus",
    "firemen": "fireman",
    "policemen": "policeman",
    "policewomen": "policewoman",
    "gentlemen": "gentleman",
    "businessmen": "businessman",
    "fishermen": "fisherman",
}
# Singular words that end like plurals.
_NOT_PLURAL = _words(
    """gas lens news series species canvas atlas chaos bias alias yes this his is was has does
    tennis iris axis basis crisis analysis thesis oasis pelvis chassis trellis mantis
    scissors pliers tongs tweezers trousers pants jeans shorts leggings pajamas pyjamas binoculars
    goggles clothes"""
)  # the last line: nouns with no singular ("the scissors" is one pair)
# Plurals of "-ie" words, which the "-ies" → "-y" rule would get wrong.
_IE_PLURALS = _words(
    "cookies movies brownies selfies zombies smoothies hoodies beanies pies ties lies goalies"
)


def singularize(word: str) -> str:
    """The singular of an English noun by simple rules: people → person, knives → knife, buses → bus,
    benches → bench, puppies → puppy, glasses → glass, cups → cup. Leaves singulars alone (bus, glass)."""
    w = word.lower()
    if w in _IRREGULAR:
        return _IRREGULAR[w]
    if len(w) < 3 or w in _NOT_PLURAL or not w.endswith("s") or w.endswith(("ss", "us")):
        return w
    if w.endswith("ies") and len(w) > 4 and w not in _IE_PLURALS:
        return w[:-3] + "y"
    if w.endswith(("sses", "ches", "shes", "xes")):
        return w[:-2]
    return w[:-1]


def _keys_of_words(phrase: str) -> list[str]:
    """Each word of a phrase, lowercase and singular, hyphens splitting words."""
    return [singularize(w) for w in phrase.lower().replace("-", " ").split()]


def _keys(phrase: str) -> tuple[str, ...]:
    """Lookup keys of a phrase: lowercase, hyphens as spaces, last word singular; also without spaces."""
    words = phrase.lower().replace("-", " ").split()
    if not words:
        return ()
    words[-1] = singularize(words[-1])
    spaced = " ".join(words)
    joined = "".join(words)
    return (spaced,) if joined == spaced else (spaced, joined)


_CONJUNCTIONS = re.compile(
    r"\s*(?:[,;&+|/]|\band\s*/\s*or\b|\band\b|\bor\b|\bplus\b|\bas well as\b|\balong with\b|"
    r"\btogether with\b)\s*"
)
_PUNCT = re.compile(r"[^\w\s'\-]|(?<!\w)['\-]|['\-](?!\w)")
_NUMBER_WORDS = _words(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty thirty forty fifty hundred dozen"
)
# Words and phrases that ask for something but name nothing; removed from the start of a concept.
_LEADING = sorted(
    [
        "please", "kindly", "can you", "could you", "would you", "will you", "i want to", "i want",
        "i'd like to", "i'd like", "i would like to", "i would like", "i need", "let's", "now",
        "show me", "show", "find me", "find", "detect", "segment", "locate", "highlight", "mark",
        "select", "identify", "label", "outline", "count", "get me", "get", "give me", "return",
        "extract", "where is", "where are", "look for", "search for", "point to", "point out",
        "annotate", "track", "how many", "is there", "are there", "there is", "there are",
        "the", "a", "an", "all of", "all", "every", "each of", "each", "any of", "any", "some of",
        "some", "both of", "both", "these", "those", "this", "that", "my", "your", "our", "their",
        "his", "her", "its", "several", "many", "few", "multiple", "various", "only", "just",
        "a couple of", "one of", "of", *_NUMBER_WORDS,
    ],
    key=len,
    reverse=True,
)  # fmt: skip
_LEADING_RE = re.compile(r"^(?:(?:" + "|".join(re.escape(w) for w in _LEADING) + r"|\d+)\b\s*)+")
_TRAILING_RE = re.compile(
    r"(?:\s+(?:only|please|here|in (?:the|this) (?:image|picture|photo|photograph|frame|scene|video|shot)))+$"
)
# A concept's core ends before the first of these (not counting its first word).
_RELATION_WORDS = _words(
    """on in at under underneath beneath near next beside behind with without from by above below over
    inside outside between against along across around into onto except but that which who whose where
    holding carrying wearing riding sitting standing using eating drinking lying walking playing
    looking running close far nearest closest than to of"""
)
# "a piece of cake" names cake: the core is what follows "of".
_QUANTITY_NOUNS = _words(
    """piece pieces slice slices bunch bunches pair pairs group groups pile piles stack stacks set sets
    couple lot lots kind kinds type types sort sorts number row rows line lines herd herds flock flocks
    pack packs crowd"""
)

_TRAILING_QUANTITY_NOUNS = _words("slice slices piece pieces bunch bunches chunk chunks")


def split_concepts(prompt: str) -> list[str]:
    """Split a prompt into concept phrases.

    Splits on commas, semicolons, "&", "+", "/", "and", "or", "plus", "as well as"; drops requests and
    politeness ("find", "show me", "please"), determiners and quantities ("the", "all", "two", "3") at
    the start of each phrase and "only" / "in the image" at its end; lowercases and collapses
    whitespace. Other words stay ("red cup on the left"): modifiers are for a query parser.

    Examples:
        >>> split_concepts("bags and luggage")
        ['bags', 'luggage']
        >>> split_concepts("Find all the red cups, please")
        ['red cups']

    Raises:
        QueryError: the prompt is empty or names no object.
        InputError: the prompt is not a string.
    """
    if not isinstance(prompt, str):
        raise InputError(f"a prompt is a string, got {type(prompt).__name__}")
    text = unicodedata.normalize("NFKC", prompt).lower()
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    if not text.strip():
        raise QueryError("prompt is empty: say what to look for, e.g. 'the bottle' or 'people'")
    phrases: list[str] = []
    for part in _CONJUNCTIONS.split(text):
        cleaned = " ".join(_PUNCT.sub(" ", part).split())
        previous = None
        while cleaned != previous:
            previous = cleaned
            cleaned = _LEADING_RE.sub("", cleaned)
            cleaned = _TRAILING_RE.sub("", cleaned).strip()
        if cleaned and cleaned not in phrases:
            phrases.append(cleaned)
    if not phrases:
        raise QueryError(f"prompt {prompt!r} names no object to look for: say what, e.g. 'the bottle'")
    return phrases


def core_phrase(phrase: str) -> str:
    """The part of a concept phrase that names the object: up to its first relation word.

    ``"cup on the table"`` → ``"cup"``; ``"workers without a helmet"`` → ``"workers"``;
    ``"piece of cake"`` and ``"cake slice"`` → ``"cake"``; ``"red cup"`` → ``"red cup"``.
    """
    words = phrase.split()
    if len(words) > 1 and words[-1] in _TRAILING_QUANTITY_NOUNS:  # "pizza slice" names pizza
        words = words[:-1]
    for i, word in enumerate(words):
        if i == 0 or word not in _RELATION_WORDS:
            continue
        head = words[:i]
        if word == "of" and head[-1] in _QUANTITY_NOUNS and i + 1 < len(words):
            rest = _LEADING_RE.sub("", " ".join(words[i + 1 :]))
            if rest:
                return core_phrase(rest)
        return " ".join(head)
    return " ".join(words)
