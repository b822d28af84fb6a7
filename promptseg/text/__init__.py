"""Text: a numpy sentence encoder (all-MiniLM-L6-v2) and prompt → detector-vocabulary matching.

Importing this package is cheap (numpy only); ``tokenizers`` is imported when an encoder is loaded.

Example:
    >>> from promptseg.text import MINILM_WEIGHTS, MiniLMEncoder, VocabularyMatcher
    >>> from promptseg.weights import resolve_weights
    >>> matcher = VocabularyMatcher(MiniLMEncoder.load(resolve_weights(MINILM_WEIGHTS)))
    >>> m = matcher.match("workers and luggage")
    >>> m.matched_classes
    ('person', 'suitcase', 'handbag', 'backpack')
"""

from __future__ import annotations

from promptseg.text.minilm import MINILM_WEIGHTS, MiniLMEncoder, read_safetensors
from promptseg.text.vocabulary import (
    COCO80,
    DEFAULT_NOT_IN_VOCABULARY,
    DEFAULT_SYNONYMS,
    DEFAULT_THRESHOLD,
    ConceptMatch,
    TextEncoder,
    VocabularyMatch,
    VocabularyMatcher,
    core_phrase,
    singularize,
    split_concepts,
)

__all__ = [
    "COCO80",
    "DEFAULT_NOT_IN_VOCABULARY",
    "DEFAULT_SYNONYMS",
    "DEFAULT_THRESHOLD",
    "MINILM_WEIGHTS",
    "ConceptMatch",
    "MiniLMEncoder",
    "TextEncoder",
    "VocabularyMatch",
    "VocabularyMatcher",
    "core_phrase",
    "read_safetensors",
    "singularize",
    "split_concepts",
]
