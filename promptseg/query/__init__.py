"""Conversational queries: a prompt parsed into concepts and modifiers, resolved over any backend.

:func:`parse` reads a prompt into a :class:`Query` (or a language model does: :func:`load_parser`);
:func:`ask` and :class:`Conversation` run its concepts through a backend and select among the
instances by colour, size, position, order, count, relations and negation, with one sentence per
instance saying why it was chosen. Follow-ups in a :class:`Conversation` ("only the left one", "and the
chairs too", "not that one", "the other bottle") refer to the last answer.
"""

from promptseg.query.engine import Conversation, Parser, ask, load_parser
from promptseg.query.model import THAT, Ordinal, Query, Relation, Term
from promptseg.query.parser import parse
from promptseg.query.resolve import Answer

__all__ = [
    "THAT",
    "Answer",
    "Conversation",
    "Ordinal",
    "Parser",
    "Query",
    "Relation",
    "Term",
    "ask",
    "load_parser",
    "parse",
]
