"""Prompt → COCO vocabulary matching: splitting, rules, and the calibrated embedding step.

Calibration of DEFAULT_THRESHOLD (all-MiniLM-L6-v2, class names embedded bare, measured):

- EMBEDDING_POSITIVES: 54 phrases that no exact/synonym rule handles (typos, kinds, descriptions)
  reach their class by embedding with similarity 0.667 ("refrigerater") to 0.974, median 0.748;
- NEGATIVES: 223 things the COCO detector cannot see; those that reach the embedding step stay at or
  below 0.642 ("sword" → knife), median 0.48 ("bike rack" 0.69 and "sink drain" 0.69 are stopped by
  DEFAULT_NOT_IN_VOCABULARY's "rack" and "drain");
- so any threshold in (0.642, 0.667] separates the tables; the default is 0.66.

The positive table lists what passes; it is not a recall figure. Of 53 such phrases gathered before
the threshold was chosen (typos, breeds, brand names), 20 passed at 0.66 and the rest map to nothing
("mallard", "siamese", "bottel", "elephnt": too far from any class name for MiniLM; common kinds such
as "poodle" went into the synonym table). Of 198 non-COCO words gathered the same way, 7 reached 0.60
and 2 reached 0.66: "sign" (stop sign 0.74) and "computer" (laptop 0.71), both arguable and left out
of both tables; the rule-made errors found there ("hair" → hair drier, "pot" → potted plant) are in
DEFAULT_NOT_IN_VOCABULARY.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from promptseg.errors import ConfigError, InputError, QueryError
from promptseg.text.minilm import MiniLMEncoder
from promptseg.text.vocabulary import (
    COCO80,
    DEFAULT_NOT_IN_VOCABULARY,
    DEFAULT_SYNONYMS,
    DEFAULT_THRESHOLD,
    VocabularyMatch,
    VocabularyMatcher,
    core_phrase,
    singularize,
    split_concepts,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def matcher(minilm_dir: Path) -> VocabularyMatcher:
    return VocabularyMatcher(MiniLMEncoder.load(minilm_dir))


@pytest.fixture(scope="module")
def rules_only() -> VocabularyMatcher:
    """Exact, synonym and listed rules only: needs no model."""
    return VocabularyMatcher(None)


def test_coco80_equals_coco_names() -> None:
    env = os.environ.get("PROMPTSEG_MODELS")
    path = (Path(env) if env else REPO.parent / "shared" / "models") / "coco.names"
    if not path.is_file():
        pytest.skip(f"{path} not found (set PROMPTSEG_MODELS)")
    assert path.read_text().split("\n")[:80] == list(COCO80)
    assert len(COCO80) == len(set(COCO80)) == 80


@pytest.mark.parametrize(
    ("prompt", "concepts"),
    [
        ("bags and luggage", ["bags", "luggage"]),
        ("bags and luggage only", ["bags", "luggage"]),  # trailing "only"
        ("cats, dogs & birds", ["cats", "dogs", "birds"]),
        ("the bottle", ["bottle"]),
        ("a helmet", ["helmet"]),
        ("People", ["people"]),  # lowercased
        ("Find all the red cups, please", ["red cups"]),  # request, quantifier, politeness
        ("show me two cups and 3 plates", ["cups", "plates"]),  # numbers
        ("please segment every person in the image", ["person"]),
        ("all of the cups; some of the plates/forks", ["cups", "plates", "forks"]),
        ("cars or trucks", ["cars", "trucks"]),
        ("knives + forks", ["knives", "forks"]),
        ("a cup as well as a bowl", ["cup", "bowl"]),
        ("  the   spill \t on the desk ", ["spill on the desk"]),  # whitespace collapsed, relation kept
        ("workers without a helmet", ["workers without a helmet"]),  # negation stays for the parser
        ("the third book from the left", ["third book from the left"]),  # ordinal stays
        ('"the bottle"!', ["bottle"]),  # quotes and punctuation
        ("t-shirt", ["t-shirt"]),  # inner hyphen kept
        ("the person's bag", ["person's bag"]),  # inner apostrophe kept
        ("cups and cups", ["cups"]),  # repeated concept once
        ("3d printer", ["3d printer"]),  # a digit inside a word is not a count
        ("Café crème", ["café crème"]),  # unicode letters kept
    ],
)
def test_split_concepts(prompt: str, concepts: list[str]) -> None:
    assert split_concepts(prompt) == concepts


@pytest.mark.parametrize(
    ("prompt", "match"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("the", "names no object"),
        ("please find all", "names no object"),
        ("and, or", "names no object"),
        ("!!!", "names no object"),
    ],
)
def test_prompt_without_a_concept_is_a_query_error(prompt: str, match: str) -> None:
    with pytest.raises(QueryError, match=match):
        split_concepts(prompt)


def test_non_string_prompt_is_an_input_error() -> None:
    with pytest.raises(InputError):
        split_concepts(["bottle"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("word", "singular"),
    [
        ("people", "person"),
        ("men", "man"),
        ("women", "woman"),
        ("children", "child"),
        ("mice", "mouse"),
        ("knives", "knife"),
        ("glasses", "glass"),
        ("buses", "bus"),
        ("benches", "bench"),
        ("boxes", "box"),
        ("puppies", "puppy"),
        ("cookies", "cookie"),  # -ie word
        ("ties", "tie"),
        ("horses", "horse"),
        ("vases", "vase"),
        ("skis", "ski"),
        ("cups", "cup"),
        ("tvs", "tv"),
        ("bus", "bus"),  # already singular
        ("glass", "glass"),
        ("tennis", "tennis"),
        ("sheep", "sheep"),
    ],
)
def test_singularize(word: str, singular: str) -> None:
    assert singularize(word) == singular


@pytest.mark.parametrize(
    ("phrase", "core"),
    [
        ("red cup", "red cup"),
        ("cup on the table", "cup"),
        ("workers without a helmet", "workers"),
        ("third book from the left", "third book"),
        ("person holding an umbrella", "person"),
        ("cup next to the laptop", "cup"),
        ("bottle of wine", "bottle"),
        ("piece of cake", "cake"),
        ("bunch of the bananas", "bananas"),
        ("pizza slice", "pizza"),
        ("on", "on"),  # a relation word first is not cut
    ],
)
def test_core_phrase(phrase: str, core: str) -> None:
    assert core_phrase(phrase) == core


# prompt -> (classes, via); decided by rules alone, so no model is needed
RULES = [
    ("the bottle", ("bottle",), "exact"),
    ("bottles", ("bottle",), "exact"),
    ("people", ("person",), "exact"),
    ("persons", ("person",), "exact"),
    ("knives", ("knife",), "exact"),
    ("mice", ("mouse",), "exact"),
    ("buses", ("bus",), "exact"),
    ("benches", ("bench",), "exact"),
    ("wine glasses", ("wine glass",), "exact"),
    ("hot dogs", ("hot dog",), "exact"),  # the longer class wins over "dog"
    ("hotdog", ("hot dog",), "exact"),  # class name without its space
    ("teddy bear", ("teddy bear",), "exact"),  # not "bear"
    ("TVs", ("tv",), "exact"),
    ("red cup", ("cup",), "exact"),  # a modifier in front
    ("dining chair", ("chair",), "exact"),
    ("the third book from the left", ("book",), "exact"),
    ("cup of coffee", ("cup",), "exact"),
    ("skis", ("skis",), "exact"),
    ("ski", ("skis",), "exact"),
    ("worker", ("person",), "synonym"),
    ("workers without a helmet", ("person",), "synonym"),
    ("children", ("person",), "synonym"),
    ("luggage", ("suitcase", "handbag", "backpack"), "synonym"),
    ("bags", ("suitcase", "handbag", "backpack"), "synonym"),
    ("school bag", ("backpack",), "synonym"),  # the longer synonym wins over "bag"
    ("sofa", ("couch",), "synonym"),
    ("television", ("tv",), "synonym"),
    ("bike", ("bicycle",), "synonym"),
    ("motor bike", ("motorcycle",), "synonym"),  # not bicycle
    ("motorbike", ("motorcycle",), "synonym"),
    ("microwave oven", ("microwave",), "synonym"),  # not oven
    ("hair dryer", ("hair drier",), "synonym"),  # COCO's spelling
    ("aeroplane", ("airplane",), "synonym"),  # PASCAL VOC names
    ("tvmonitor", ("tv",), "synonym"),
    ("pottedplant", ("potted plant",), "exact"),  # the class name without its space
    ("diningtable", ("dining table",), "exact"),
    ("smartphones", ("cell phone",), "synonym"),
    ("glasses", ("wine glass", "cup"), "synonym"),
    ("cutlery", ("fork", "knife", "spoon"), "synonym"),
    ("fruit", ("banana", "apple", "orange"), "synonym"),
    ("vehicles", ("car", "truck", "bus", "motorcycle", "bicycle"), "synonym"),
    ("glove", (), "none"),  # listed: not a baseball glove
    ("work gloves", (), "none"),
    ("sunglasses", (), "none"),  # not drinking glasses
    ("plastic bag", (), "none"),  # not luggage
    ("hair", (), "none"),  # not a hair drier
    ("coffee pot", (), "none"),  # not a potted plant
]


@pytest.mark.parametrize(("prompt", "classes", "via"), RULES)
def test_rules(rules_only: VocabularyMatcher, prompt: str, classes: tuple[str, ...], via: str) -> None:
    (concept,) = rules_only.match(prompt).concepts
    assert (concept.classes, concept.via) == (classes, via)
    if via != "none":
        assert concept.similarity == concept.nearest_similarity == 1.0
        assert concept.nearest == classes[0]


def test_required_cases(matcher: VocabularyMatcher) -> None:
    assert matcher.match("the bottle").matched_classes == ("bottle",)
    assert matcher.match("people").matched_classes == ("person",)
    assert matcher.match("worker").matched_classes == ("person",)
    assert set(matcher.match("luggage").matched_classes) == {"suitcase", "handbag", "backpack"}
    both = matcher.match("bags and luggage")
    assert [c.phrase for c in both.concepts] == ["bags", "luggage"]
    assert set(both.matched_classes) == {"suitcase", "handbag", "backpack"}
    assert both.unmatched == [] and both.message() == ""


def test_a_helmet_maps_to_nothing_and_says_why(matcher: VocabularyMatcher) -> None:
    m = matcher.match("a helmet")
    (concept,) = m.concepts
    assert concept.via == "none" and concept.classes == ()
    assert concept.nearest in COCO80 and concept.nearest_similarity < matcher.threshold
    assert m.matched_classes == () and m.unmatched == [concept]
    message = m.message()
    assert "'helmet'" in message and "80 COCO classes" in message
    assert f"'{concept.nearest}'" in message and f"{concept.nearest_similarity:.2f}" in message
    assert "open vocabulary" in message and "\n" not in message


def test_message_names_each_unmatched_concept(matcher: VocabularyMatcher) -> None:
    m = matcher.match("people, helmets and the spill")
    assert m.matched_classes == ("person",)
    assert [c.phrase for c in m.unmatched] == ["helmets", "spill"]
    message = m.message()
    assert "'helmets'" in message and "'spill'" in message and "'people'" not in message


def test_listed_word_says_it_is_not_the_class(matcher: VocabularyMatcher) -> None:
    m = matcher.match("glove")
    assert m.concepts[0].nearest == "baseball glove" and m.concepts[0].nearest_similarity > matcher.threshold
    assert "not a 'baseball glove'" in m.message()


def test_without_an_encoder_unknown_words_map_to_nothing(rules_only: VocabularyMatcher) -> None:
    m = rules_only.match("helmet and people")
    assert m.matched_classes == ("person",)
    assert m.unmatched[0].nearest == "" and "no text encoder" in m.message()
    with pytest.raises(ConfigError, match="no text encoder"):
        rules_only.class_embeddings()


def test_empty_prompt_is_a_query_error(rules_only: VocabularyMatcher) -> None:
    with pytest.raises(QueryError, match="empty"):
        rules_only.match("")


# Phrases that no rule handles and that the embedding step must map to this class.
EMBEDDING_POSITIVES = [
    # typos
    ("refrigerater", "refrigerator"),
    ("refridgerator", "refrigerator"),
    ("surfbord", "surfboard"),
    ("surfbboard", "surfboard"),
    ("broccloi", "broccoli"),
    ("boccoli", "broccoli"),
    ("brocolli", "broccoli"),
    ("broccolli", "broccoli"),
    ("skaateboard", "skateboard"),
    ("skatebaord", "skateboard"),
    ("skteboard", "skateboard"),
    ("skatebord", "skateboard"),
    ("tothbrush", "toothbrush"),
    ("toothhbrush", "toothbrush"),
    ("microwav", "microwave"),
    ("microwae", "microwave"),
    ("motorcyle", "motorcycle"),
    ("motorcylce", "motorcycle"),
    ("bicyclle", "bicycle"),
    ("toasteer", "toaster"),
    ("toastr", "toaster"),
    ("donnut", "donut"),
    ("donuut", "donut"),
    ("dout", "donut"),
    ("spoone", "spoon"),
    ("girafe", "giraffe"),
    ("girafef", "giraffe"),
    ("giraff", "giraffe"),
    ("frrisbee", "frisbee"),
    ("toilett", "toilet"),
    ("skiis", "skis"),
    ("tiee", "tie"),
    ("fire hydrat", "fire hydrant"),
    # kinds, pet names and brand names
    ("feline", "cat"),
    ("canine", "dog"),
    ("doggo", "dog"),
    ("equine", "horse"),
    ("horsey", "horse"),
    ("bovine", "cow"),
    ("avian", "bird"),
    ("birdie", "bird"),
    ("macbook", "laptop"),
    ("sofa-bed", "couch"),
    # descriptions, with modifiers that are not vocabulary words
    ("laptop computer", "laptop"),
    ("notebook computer", "laptop"),
    ("silver macbook", "laptop"),
    ("mobile telephone", "cell phone"),
    ("small canine", "dog"),
    ("fluffy feline", "cat"),
    ("red motorcyle", "motorcycle"),
    ("broken toastr", "toaster"),
    ("white refridgerator", "refrigerator"),
    ("kitchen microwav", "microwave"),
    ("wooden skatebord", "skateboard"),
]

# Things the COCO detector cannot see: each must map to nothing.
NEGATIVES = [
    *str.split(
        """helmet spill tree window building road sky hat shoe shirt door lamp pen box paper cloud mountain
    wall floor face flag grass water sand fence pole rock basket bucket barrel pallet ladder rope chain
    jacket vest jewelry necklace curtain blanket carpet mirror painting poster shelf cabinet drawer stairs
    bridge tower river ocean tent fire smoke shadow candle coin money wallet hammer screwdriver wrench nail
    brick crack stain rust scratch puddle dumpster lion tiger monkey tomato lemon egg cheese cookie camera
    printer speaker headphones pencil tape pillow towel plate pan jar can crate pipe hose shower bathtub
    tablet guitar piano drum microphone balloon toy doll soup rice meat fish grape strawberry watermelon
    pineapple rabbit squirrel snake turtle frog butterfly spider insect tractor helicopter drone stroller
    cart shovel axe gun sword arm leg foot head eye logo text graffiti garbage leaves flower bush ice sun
    moon star beach field forest street sidewalk house roof ceiling chimney gate fan heater fireplace
    socket switch kettle tray napkin straw envelope folder calculator battery charger ring bracelet
    earring watch belt scarf sock boot sandal dress skirt jeans coat sweater mask badge"""
    ),
    # a vocabulary word as modifier does not make the thing that class
    "bus stop",
    "tv stand",
    "toilet paper",
    "bottle cap",
    "chair leg",
    "car door",
    "train station",
    "dog house",
    "book shelf",
    "cup holder",
    "phone case",
    "phone charger",
    "fire extinguisher",
    "bike rack",
    "apple tree",
    "pizza box",
    "cake stand",
    "bird nest",
    "horse saddle",
    "sheep wool",
    "bed sheet",
    "oven mitt",
    "sink drain",
    "clock tower",
    "keyboard keys",
    "mouse pad",
    "laptop screen",
    "cat litter",
    "bird feeder",
    "orange juice",
    "wine cellar",
    "traffic cone",
    "hard hat",
    "safety vest",
    "license plate",
    "trash can",
    "light bulb",
    "ice cream",
]


def test_calibration_tables_are_big_enough() -> None:
    assert len(EMBEDDING_POSITIVES) >= 40 and len(NEGATIVES) >= 40
    assert len({p for p, _ in EMBEDDING_POSITIVES}) == len(EMBEDDING_POSITIVES)
    assert len(set(NEGATIVES)) == len(NEGATIVES)


def test_embedding_positives(matcher: VocabularyMatcher) -> None:
    wrong = []
    sims = []
    for phrase, expected in EMBEDDING_POSITIVES:
        (c,) = matcher.match(phrase).concepts
        sims.append(c.similarity)
        if (c.via, c.classes) != ("embedding", (expected,)):
            wrong.append((phrase, expected, c.via, c.classes, c.nearest, round(c.nearest_similarity, 3)))
    assert not wrong, f"{len(wrong)} positives not matched by embedding: {wrong}"
    assert min(sims) >= DEFAULT_THRESHOLD  # measured 0.667


def test_negatives_map_to_nothing(matcher: VocabularyMatcher) -> None:
    result = {n: matcher.match(n).concepts[0] for n in NEGATIVES}
    wrong = {n: (c.classes, c.via) for n, c in result.items() if c.via != "none"}
    assert not wrong, f"{len(wrong)} negatives matched a class: {wrong}"
    # the embedding step itself keeps a margin on those the rules do not list
    worst = max(
        (c.nearest_similarity, n) for n, c in result.items() if c.nearest_similarity < matcher.threshold
    )
    assert worst[0] < DEFAULT_THRESHOLD - 0.01, worst  # measured 0.642 ('sword' -> knife)


def test_listed_words_exist_in_tables() -> None:
    assert "glove" in DEFAULT_NOT_IN_VOCABULARY
    for word, targets in DEFAULT_SYNONYMS.items():
        assert word == word.lower().strip() and targets, word
        assert set(targets) <= set(COCO80), (word, targets)
        assert word not in DEFAULT_NOT_IN_VOCABULARY


def test_class_embeddings_are_computed_once(minilm_dir: Path) -> None:
    class CountingEncoder:
        def __init__(self, inner: MiniLMEncoder) -> None:
            self.inner = inner
            self.calls: list[int] = []

        def encode(self, texts: list[str]) -> np.ndarray:
            self.calls.append(len(texts))
            return self.inner.encode(texts)

    enc = CountingEncoder(MiniLMEncoder.load(minilm_dir))
    m = VocabularyMatcher(enc)
    m.match("the bottle")  # exact: no encoder call at all
    assert enc.calls == []
    m.match("helmet")
    m.match("spill and tree")
    assert enc.calls.count(80) == 1  # the class names, once
    emb = m.class_embeddings()
    assert emb.shape == (80, 384) and not emb.flags.writeable


def test_custom_vocabulary(minilm_dir: Path) -> None:
    classes = ["hard hat", "safety vest", "person"]
    m = VocabularyMatcher(None, classes, synonyms={"helmet": ["hard hat"], "worker": ["person"]})
    assert m.match("helmets and workers").matched_classes == ("hard hat", "person")
    assert m.vocabulary == "3 classes"
    # the default synonym table is filtered to the classes there are
    default = VocabularyMatcher(None, classes)
    assert default.match("luggage").matched_classes == ()
    assert default.match("people").matched_classes == ("person",)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"class_names": []},  # no classes
        {"class_names": ["cup", "cup"]},  # duplicates
        {"class_names": ["cup", ""]},  # blank name
        {"synonyms": {"mug": ["coffee cup"]}},  # a synonym for a class that does not exist
        {"threshold": 1.5},  # not a cosine
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        VocabularyMatcher(None, **kwargs)  # type: ignore[arg-type]


def test_vocabulary_match_helpers_are_ordered_and_unique(rules_only: VocabularyMatcher) -> None:
    m = rules_only.match("luggage, backpacks and people")
    assert isinstance(m, VocabularyMatch)
    assert m.matched_classes == ("suitcase", "handbag", "backpack", "person")
    assert m.prompt == "luggage, backpacks and people"
    assert m.threshold == DEFAULT_THRESHOLD
