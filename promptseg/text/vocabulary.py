"""Map the words of a prompt onto a closed detector vocabulary (the 80 COCO classes by default).

A closed-vocabulary detector (PicoDet, YOLOX) only knows its class names. A prompt is split into
concept phrases (:func:`split_concepts`) and each phrase is matched (:class:`VocabularyMatcher`):

1. **exact**: a class name, after lowercasing and simple English singular/plural rules
   ("people" → person, "knives" → knife, "wine glasses" → wine glass, "hotdog" → hot dog);
2. **synonym**: a reviewed table (:data:`DEFAULT_SYNONYMS`): "luggage" → suitcase, handbag,
   backpack; "worker" → person; "sofa" → couch; PASCAL VOC names ("tvmonitor") → COCO names;
3. **none** (listed): words that look like a class but name something the detector does not see
   (:data:`DEFAULT_NOT_IN_VOCABULARY`: "glove" is not a baseball glove, "traffic cone" not a traffic light);
4. **embedding**: cosine similarity between the phrase's head word (its last word) and each class
   name, both embedded by the text encoder (all-MiniLM-L6-v2); the best class is taken when it
   reaches ``threshold``. When no other word of the phrase is a vocabulary word, the whole phrase is
   compared too ("fluffy feline" → cat); when one is, the phrase names a thing of that class, not
   the class ("bus stop", "chair leg", "mouse pad" map to nothing);
5. otherwise **none**: the concept maps to nothing, and :meth:`VocabularyMatch.message` says so,
   naming the vocabulary and the nearest class with its similarity.

Steps 1-3 try the whole core phrase first, then its shorter endings, so a modifier in front does not
defeat them ("dining chair" → chair, "red cups" → cup) while a longer name wins ("hot dog", not dog;
"microwave oven", not oven). The core phrase is the concept without its relations ("cup on the table"
→ "cup", "workers without a helmet" → "workers"); the relations stay in the phrase for a later parser.

Calibration of the embedding step (all-MiniLM-L6-v2; tables and figures in
``tests/text/test_vocabulary.py``): MiniLM is a weak judge of "is a kind of" for single words (a
"goat" is 0.63 from sheep, "mallard" 0.37 from bird), so the common words live in the synonym table
and the embedding step is a careful fallback for typos, kinds and descriptions ("refridgerator",
"canine", "laptop computer"). Class names are embedded bare: on 86 such positives and 224 non-COCO
words, bare names accepted 55 positives with no error from a threshold of 0.645 up, "a {}" 44 (from
0.75), "a photo of a {}" 28 (from 0.85), "there is a {} in the picture" 19; bare names also cost
the least (the positives were gathered with bare names, which favours them somewhat).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from promptseg.errors import ConfigError
from promptseg.text.words import _keys, _keys_of_words, core_phrase, singularize, split_concepts

__all__ = [
    "COCO80",
    "DEFAULT_NOT_IN_VOCABULARY",
    "DEFAULT_SYNONYMS",
    "DEFAULT_THRESHOLD",
    "ConceptMatch",
    "TextEncoder",
    "VocabularyMatch",
    "VocabularyMatcher",
    "core_phrase",
    "singularize",
    "split_concepts",
]

#: The 80 COCO detection classes in the order detectors output them, with COCO's own spelling
#: ("hair drier", "tv", "couch", "dining table"). Equal to ``shared/models/coco.names``.
COCO80: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed",
    "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

#: Similarity (cosine, all-MiniLM-L6-v2, bare class names) at or above which the embedding step
#: accepts its best class. On the calibration tables of tests/text/test_vocabulary.py (phrases no
#: rule handles) the positives reach 0.667 to 0.974 and the 223 negatives at most 0.642 ("sword" →
#: knife): 0.66 sits between them.
DEFAULT_THRESHOLD = 0.66

_ANIMALS = ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe")
_FOOD = ("banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake")
_LUGGAGE = ("suitcase", "handbag", "backpack")
_ROAD_VEHICLES = ("car", "truck", "bus", "motorcycle", "bicycle")
_CUTLERY = ("fork", "knife", "spoon")


def _table(groups: Mapping[tuple[str, ...], Sequence[str]]) -> Mapping[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for targets, words in groups.items():
        for word in words:
            if word in out:
                raise ValueError(f"synonym {word!r} listed twice")
            out[word] = targets
    return MappingProxyType(out)


#: Words that mean one or more COCO classes. Keys are matched after the same normalisation as class
#: names (lowercase, singular of the last word, with or without spaces), so "bags" finds "bag".
#: Chosen by hand, one reviewable line per meaning: COCO's ``person`` is every human whatever their
#: role; a "vehicle" is a road vehicle; "luggage" and "bag" are the three bag classes; "glass" is a
#: drinking glass (wine glass or cup, not spectacles); "food", "fruit" and "animal" are the COCO
#: classes of that kind; PASCAL VOC names map to their COCO names.
DEFAULT_SYNONYMS: Mapping[str, tuple[str, ...]] = _table(
    {
        ("person",): (
            "human", "human being", "man", "woman", "child", "kid", "boy", "girl", "baby", "toddler",
            "adult", "teenager", "lady", "gentleman", "guy", "someone", "somebody", "pedestrian",
            "worker", "employee", "staff", "customer", "passenger", "tourist", "crowd", "player",
            "athlete", "rider", "cyclist", "driver", "skier", "snowboarder", "surfer", "skateboarder",
            "officer", "policeman", "policewoman", "firefighter", "fireman", "soldier", "nurse", "doctor",
            "chef", "cook", "student", "teacher", "farmer",
            # roles and occupations: MiniLM does not see that an astronaut (0.48) or a cameraman
            # (0.38) is a person, so the common ones are listed
            "astronaut", "cameraman", "camerawoman", "photographer", "pilot", "sailor", "fisherman",
            "spectator", "audience", "visitor", "guest", "shopper", "diner", "commuter",
            "traveler", "traveller", "hiker", "runner", "jogger", "swimmer", "climber", "dancer",
            "musician", "singer", "guitarist", "waiter", "waitress", "bartender", "cashier", "mechanic",
            "builder", "engineer", "scientist", "surgeon", "patient", "businessman", "businesswoman",
            "cop", "police", "guard", "lifeguard", "referee", "umpire", "goalkeeper",
            "mother", "father", "mom", "dad", "parent", "grandmother", "grandfather", "son", "daughter",
            "brother", "sister", "husband", "wife", "friend", "family", "couple", "elderly",
        ),
        _ROAD_VEHICLES: ("vehicle",),
        ("car",): (
            "automobile", "sedan", "taxi", "cab", "suv", "jeep", "hatchback", "minivan", "limousine",
            "limo", "coupe",
        ),
        ("car", "truck"): ("van",),
        ("truck",): ("lorry", "pickup", "fire engine", "firetruck", "semi truck"),
        ("bus",): ("minibus", "double decker", "trolleybus", "coach bus"),
        ("train",): ("locomotive", "tram", "streetcar", "railcar"),
        ("motorcycle",): ("motorbike", "motor bike", "motor cycle", "scooter", "moped", "dirt bike"),
        ("bicycle",): ("bike", "push bike", "bmx"),
        ("airplane",): ("plane", "aeroplane", "aircraft", "airliner", "jet", "jetliner"),
        ("boat",): (
            "ship", "yacht", "canoe", "kayak", "sailboat", "ferry", "rowboat", "speedboat", "dinghy",
            "vessel", "jet ski",
        ),
        ("traffic light",): ("stoplight", "traffic signal"),
        ("fire hydrant",): ("hydrant",),
        ("bird",): (
            "pigeon", "seagull", "gull", "duck", "goose", "chicken", "hen", "rooster", "parrot",
            "sparrow", "crow", "eagle", "owl", "swan",
        ),
        ("cat",): ("kitten", "kitty", "tabby"),
        ("dog",): (
            "puppy", "pup", "doggy", "hound", "labrador", "retriever", "poodle", "terrier", "beagle",
            "dalmatian", "bulldog", "chihuahua", "husky", "german shepherd",
        ),
        ("horse",): ("pony", "foal", "stallion", "mare"),
        ("sheep",): ("lamb", "ewe"),
        ("cow",): ("cattle", "bull", "calf", "ox"),
        ("bear",): ("grizzly",),
        _ANIMALS: ("animal",),
        ("cat", "dog"): ("pet",),
        ("horse", "sheep", "cow"): ("livestock", "farm animal"),
        _LUGGAGE: ("luggage", "baggage", "bag"),
        ("backpack",): ("rucksack", "knapsack", "schoolbag", "school bag"),
        ("handbag",): ("purse",),
        ("umbrella",): ("parasol",),
        ("tie",): ("necktie",),
        ("frisbee",): ("flying disc",),
        ("sports ball",): ("ball", "football", "soccer ball", "basketball", "volleyball"),
        ("skateboard",): ("longboard",),
        ("surfboard",): ("bodyboard",),
        ("tennis racket",): ("racket", "racquet"),
        ("wine glass",): ("goblet", "champagne glass", "champagne flute"),
        ("wine glass", "cup"): ("glass",),
        ("cup",): ("mug", "teacup"),
        _CUTLERY: ("cutlery", "utensil", "silverware", "flatware"),
        ("spoon",): ("teaspoon", "tablespoon"),
        ("banana", "apple", "orange"): ("fruit",),
        ("orange",): ("tangerine", "mandarin", "clementine"),
        ("broccoli", "carrot"): ("vegetable", "veggie"),
        _FOOD: ("food",),
        ("sandwich",): ("burger", "hamburger", "cheeseburger", "panini"),
        ("hot dog",): ("frankfurter",),
        ("donut",): ("doughnut",),
        ("cake",): ("cupcake", "cheesecake"),
        ("chair",): ("armchair", "recliner"),
        ("couch",): ("sofa", "settee", "loveseat"),
        ("potted plant",): ("plant", "houseplant", "pottedplant", "pot plant", "flowerpot"),
        ("dining table",): ("table", "diningtable", "dinner table"),
        ("toilet",): ("loo", "lavatory", "wc"),
        ("tv",): (
            "television", "tvmonitor", "tv monitor", "monitor", "telly", "tv set", "tv screen",
            "television screen", "computer screen", "flat screen", "flatscreen",
        ),
        ("remote",): ("remote control", "clicker"),
        ("cell phone",): ("phone", "mobile phone", "mobile", "smartphone", "iphone"),
        ("microwave",): ("microwave oven",),
        ("oven",): ("stove",),
        ("sink",): ("washbasin",),
        ("refrigerator",): ("fridge",),
        ("book",): ("novel", "textbook", "paperback"),
        ("scissors",): ("shears",),
        ("teddy bear",): (
            "teddy", "stuffed bear", "stuffed animal", "stuffed toy", "plush toy", "soft toy", "plushie",
        ),
        ("hair drier",): ("hair dryer", "hairdryer", "blow dryer", "blowdryer"),
    }
)  # fmt: skip

#: Words that map to nothing although they resemble a class name: a rule or the embedding step
#: would otherwise pick the class given after each group (with its similarity, all-MiniLM-L6-v2).
#: Longer names still win ("hair dryer" is a synonym, "flower pot" too), as matching tries the
#: longest ending of a phrase first.
DEFAULT_NOT_IN_VOCABULARY: frozenset[str] = frozenset(
    {
        "glove", "mitten", "work glove",  # baseball glove 0.81
        "cone", "traffic cone",  # traffic light 0.66
        "bread", "loaf", "toast",  # sandwich 0.67
        "hair",  # hair drier 0.72
        "pot", "cooking pot",  # potted plant 0.71
        "wheelchair",  # chair 0.68
        "snow",  # snowboard 0.65
        "faucet", "tap",  # sink 0.65
        "key",  # keyboard 0.58
        "hand",  # handbag 0.62
        "wheel", "tire", "tyre",  # bicycle 0.62
        "cable", "wire",  # tv 0.63
        "goat", "deer", "pig", "donkey",  # sheep 0.63, cow 0.59
        "sunglasses", "eyeglasses", "spectacles", "goggles", "safety glasses", "reading glasses",  # glass
        "plastic bag", "paper bag", "trash bag", "garbage bag", "bin bag", "tea bag", "sleeping bag",  # bag
        "rack",  # tennis racket 0.69 ("bike rack")
        "drain",  # sink 0.69 ("sink drain")
        "desk",  # COCO labels some desks 'dining table', many not
    }
)  # fmt: skip

ConceptVia = Literal["exact", "synonym", "embedding", "none"]


class TextEncoder(Protocol):
    """What the matcher needs from a text encoder, e.g. :class:`promptseg.text.minilm.MiniLMEncoder`."""

    def encode(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """(N, D) float32 embeddings with unit L2 norm."""
        ...


@dataclass(frozen=True)
class ConceptMatch:
    """How one concept phrase of a prompt maps onto the vocabulary.

    Attributes:
        phrase: the cleaned concept phrase ("red cup on the table").
        classes: the vocabulary classes it means (a synonym's in its table's order, most literal
            first: luggage → suitcase, handbag, backpack); empty when ``via == "none"``.
        similarity: 1.0 for ``exact`` and ``synonym``; the cosine similarity of the best class for
            ``embedding``; for ``none``, the nearest class's similarity (0.0 without an encoder).
        via: which step decided: ``"exact"``, ``"synonym"``, ``"embedding"`` or ``"none"``.
        nearest: the closest class by embedding ("" when unknown: no encoder); for ``exact`` and
            ``synonym``, the first class.
        nearest_similarity: its cosine similarity (1.0 for ``exact`` and ``synonym``).
    """

    phrase: str
    classes: tuple[str, ...]
    similarity: float
    via: ConceptVia
    nearest: str
    nearest_similarity: float


@dataclass(frozen=True)
class VocabularyMatch:
    """The result of :meth:`VocabularyMatcher.match`: one :class:`ConceptMatch` per concept phrase.

    Attributes:
        prompt: the prompt as given.
        concepts: one entry per concept phrase, in prompt order.
        threshold: the embedding threshold that was used.
        vocabulary: how to name the vocabulary in messages ("80 COCO classes").
    """

    prompt: str
    concepts: list[ConceptMatch]
    threshold: float
    vocabulary: str

    @property
    def matched_classes(self) -> tuple[str, ...]:
        """Every class that some concept means, unique, in order of first mention."""
        return tuple(dict.fromkeys(c for m in self.concepts for c in m.classes))

    @property
    def unmatched(self) -> list[ConceptMatch]:
        """The concepts that map to no class."""
        return [m for m in self.concepts if m.via == "none"]

    def message(self) -> str:
        """One line explaining the concepts that map to nothing ("" when every concept matched).

        Example:
            ``'helmet' is not one of the 80 COCO classes this detector can see (nearest:
            'motorcycle', similarity 0.48 < threshold 0.66); try another word, or a backend with an
            open vocabulary``
        """
        missing = self.unmatched
        if not missing:
            return ""
        details = []
        for m in missing:
            if not m.nearest:
                detail = "no text encoder is installed to compare it with the class names"
            elif m.nearest_similarity >= self.threshold:
                detail = f"it is not a {m.nearest!r}"  # listed in not_in_vocabulary
            else:
                detail = (
                    f"nearest: {m.nearest!r}, similarity {m.nearest_similarity:.2f} "
                    f"< threshold {self.threshold:.2f}"
                )
            details.append((m.phrase, detail))
        if len(details) == 1:
            ((phrase, detail),) = details
            return (
                f"{phrase!r} is not one of the {self.vocabulary} this detector can see ({detail}); "
                "try another word, or a backend with an open vocabulary"
            )
        listed = [f"{phrase!r} ({detail})" for phrase, detail in details]
        return (
            f"{', '.join(listed[:-1])} and {listed[-1]} are not among the {self.vocabulary} this detector "
            "can see; try other words, or a backend with an open vocabulary"
        )


class VocabularyMatcher:
    """Maps prompts onto a detector's class names.

    Args:
        encoder: a text encoder for the embedding step (:class:`~promptseg.text.minilm.MiniLMEncoder`),
            or None to use only the exact and synonym steps.
        class_names: the detector's classes, in its output order (default :data:`COCO80`).
        synonyms: word → classes. The default table is filtered to ``class_names``; a table given
            here must name only classes in ``class_names`` (ConfigError otherwise).
        not_in_vocabulary: words that map to nothing even when they resemble a class.
        threshold: cosine similarity the embedding step needs (see :data:`DEFAULT_THRESHOLD`).
        vocabulary: how messages name the vocabulary; default "80 COCO classes" for COCO80, else
            "N classes".

    The class embeddings are computed once, on the first prompt that needs the embedding step.

    Example:
        >>> matcher = VocabularyMatcher(MiniLMEncoder.load(resolve_weights(MINILM_WEIGHTS)))
        >>> m = matcher.match("bags and luggage")
        >>> m.matched_classes
        ('suitcase', 'handbag', 'backpack')
    """

    def __init__(
        self,
        encoder: TextEncoder | None,
        class_names: Sequence[str] = COCO80,
        *,
        synonyms: Mapping[str, Sequence[str]] = DEFAULT_SYNONYMS,
        not_in_vocabulary: Iterable[str] = DEFAULT_NOT_IN_VOCABULARY,
        threshold: float = DEFAULT_THRESHOLD,
        vocabulary: str | None = None,
    ) -> None:
        names = tuple(class_names)
        if not names or any(not isinstance(n, str) or not n.strip() for n in names):
            raise ConfigError(f"class_names must be non-empty strings, got {list(names)[:5]!r}")
        if len(set(names)) != len(names):
            raise ConfigError("class_names has duplicates")
        if not -1.0 <= threshold <= 1.0:
            raise ConfigError(f"threshold is a cosine similarity in [-1, 1], got {threshold}")
        self.encoder = encoder
        self.class_names = names
        self.threshold = float(threshold)
        if vocabulary is None:
            vocabulary = f"{len(names)} COCO classes" if names == COCO80 else f"{len(names)} classes"
        self.vocabulary = vocabulary
        order = {n: i for i, n in enumerate(names)}

        self._exact: dict[str, str] = {}
        for name in names:
            for k in _keys(name):
                self._exact.setdefault(k, name)
        self._synonyms: dict[str, tuple[str, ...]] = {}
        strict = synonyms is not DEFAULT_SYNONYMS
        for word, targets in synonyms.items():
            unknown = [t for t in targets if t not in order]
            if unknown and strict:
                raise ConfigError(
                    f"synonym {word!r} maps to {unknown!r}, which are not among the class names "
                    f"({', '.join(names[:8])}{', ...' if len(names) > 8 else ''})"
                )
            kept = tuple(dict.fromkeys(t for t in targets if t in order))
            if kept:
                for k in _keys(word):
                    self._synonyms.setdefault(k, kept)
        self._blocked = {k for word in not_in_vocabulary for k in _keys(word)}
        # Single words that name a class on their own or are part of a class name ("dining").
        self._vocabulary_words = {k for k in [*self._exact, *self._synonyms] if " " not in k} | {
            singularize(w) for name in names for w in name.replace("-", " ").split()
        }
        self._class_emb: NDArray[np.float32] | None = None
        self._lock = threading.Lock()

    def match(self, prompt: str) -> VocabularyMatch:
        """Split ``prompt`` into concepts and map each onto the class names.

        Raises:
            QueryError: the prompt is empty or names no object.
        """
        phrases = split_concepts(prompt)
        concepts: list[ConceptMatch | None] = [None] * len(phrases)
        pending: list[tuple[int, str, bool]] = []  # (index, core phrase, listed as not in vocabulary)
        for i, phrase in enumerate(phrases):
            core = core_phrase(phrase)
            rule = self._match_rules(core)
            if rule is None:
                pending.append((i, core, False))
            elif rule[0] == "none":
                pending.append((i, core, True))  # embedded all the same, for the message
            else:
                via, classes = rule
                concepts[i] = ConceptMatch(phrase, classes, 1.0, via, classes[0], 1.0)
        if pending:
            rows = self.embedding_scores([core for _, core, _ in pending])
            for (i, _, listed), row in zip(pending, rows, strict=True):
                if row is None:
                    concepts[i] = ConceptMatch(phrases[i], (), 0.0, "none", "", 0.0)
                    continue
                j = int(np.argmax(row))
                best, name = float(row[j]), self.class_names[j]
                if best >= self.threshold and not listed:
                    concepts[i] = ConceptMatch(phrases[i], (name,), best, "embedding", name, best)
                else:
                    concepts[i] = ConceptMatch(phrases[i], (), best, "none", name, best)
        return VocabularyMatch(
            prompt, [m for m in concepts if m is not None], self.threshold, self.vocabulary
        )

    def embedding_scores(self, cores: Sequence[str]) -> list[NDArray[np.float32] | None]:
        """The embedding step's score of each core phrase against each class: a (C,) row, or None.

        The head word (the last word) is compared with the class names. When the other words are not
        vocabulary words, the whole phrase is compared too and the better similarity counts
        ("fluffy feline" → cat). When they are, the phrase names a thing *of* that class, not the
        class ("bus stop", "chair leg", "mouse pad"), and only the head counts.
        """
        if self.encoder is None:
            return [None] * len(cores)
        heads = [c.split()[-1] if c.split() else c for c in cores]
        whole = [
            c
            for c in cores
            if len(c.split()) > 1 and not any(w in self._vocabulary_words for w in _keys_of_words(c)[:-1])
        ]
        texts = list(dict.fromkeys([*heads, *whole]))
        sims = dict(zip(texts, self.similarities(texts), strict=True))
        rows: list[NDArray[np.float32] | None] = []
        for core, head in zip(cores, heads, strict=True):
            row = sims[head]
            if core in sims and core != head:
                row = np.maximum(row, sims[core])
            rows.append(row)
        return rows

    def similarities(self, phrases: Sequence[str]) -> list[NDArray[np.float32]]:
        """Cosine similarity of each phrase, embedded as given, to each class name: (C,) rows.

        Raises:
            ConfigError: the matcher has no encoder.
        """
        encoder = self._require_encoder()
        class_emb = self.class_embeddings()
        if not phrases:
            return []
        emb = np.asarray(encoder.encode(list(phrases)), dtype=np.float32)
        return list(emb @ class_emb.T)

    def _require_encoder(self) -> TextEncoder:
        if self.encoder is None:
            raise ConfigError("this VocabularyMatcher has no text encoder (it was built with encoder=None)")
        return self.encoder

    def class_embeddings(self) -> NDArray[np.float32]:
        """(C, D) float32 embeddings of the class names, computed once (thread-safe).

        Raises:
            ConfigError: the matcher has no encoder.
        """
        encoder = self._require_encoder()
        with self._lock:
            if self._class_emb is None:
                emb = np.asarray(encoder.encode(list(self.class_names)), dtype=np.float32)
                emb.setflags(write=False)
                self._class_emb = emb
            return self._class_emb

    def _match_rules(self, core: str) -> tuple[ConceptVia, tuple[str, ...]] | None:
        """The exact / synonym / listed-none decision for a core phrase, longest ending first."""
        words = core.split()
        for start in range(len(words)):
            for k in _keys(" ".join(words[start:])):
                if k in self._exact:
                    return "exact", (self._exact[k],)
                if k in self._synonyms:
                    return "synonym", self._synonyms[k]
                if k in self._blocked:
                    return "none", ()
        return None
