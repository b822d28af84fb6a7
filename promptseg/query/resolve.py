"""The resolver: a :class:`~promptseg.query.model.Query` and a backend in, the matching instances out.

Each concept goes to the backend once per image (``detect(image, "cup")``) and its instances join a
:class:`Pool`; the modifiers are then resolved over the pool with geometry and pixels:

- **colour** from the mask's pixels in CIELAB against the named palette
  (:mod:`promptseg.query.color`);
- **size** from the mask's area (the box's without a mask): adjectives against the median of the
  concept ("large" is at least 1.5x it), superlatives by order;
- **position** from the mask's centroid: a region filters plural requests ("people on the left": the
  left half; "in the middle": the middle third both ways) and orders singular ones ("the person on the
  left": the leftmost);
- **ordinals** by sorted centroids ("third from the left");
- **relations** by box geometry: ``on`` (the subject's bottom edge within the target's height ±10 %,
  at least half the subject's width over the target), ``in`` (60 % of the subject's box inside the
  target's), ``holding`` / ``wearing`` (half the target's box inside the subject's), ``next to`` (a
  gap of at most half the smaller box's mean side), ``left of`` / ``right of`` (centroids),
  ``above`` / ``below`` (centroids, overlapping columns), ``behind`` / ``in front of`` (bottom
  edges, overlapping columns), ``between`` (centroid between two targets), ``nearest`` (centroid
  distance);
- **negation** as set difference, **counts** as the top k by score (or by the order asked for).

Every returned instance carries ``attributes["explanation"]``, one sentence of why it was chosen, and
``color`` / ``size`` (COCO's small / medium / large) / ``position`` attributes. A request that cannot
be met ("the third cup" when there are two) returns nothing, and ``meta["explanation"]`` says why.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from promptseg.errors import QueryError
from promptseg.query import color
from promptseg.query.model import THAT, Query, Relation, Term
from promptseg.types import Detections, FloatArray, UInt8Array

__all__ = ["Answer", "Pool", "Resolver"]

Detect = Callable[[str], Detections]
"""A backend bound to one image: concept -> its instances."""

_SIZE_FACTOR = 1.5  # "large": at least 1.5x the median area of the concept; "small": at most 1/1.5
_ON_TOLERANCE = 0.1  # "on": the bottom edge within the target's height, +-10 % of it
_ON_OVERLAP = 0.5  # "on": at least half the subject's width over the target
_IN_FRACTION = 0.6  # "in": at least 60 % of the subject's box inside the target's
_HOLD_FRACTION = 0.5  # "holding": at least half the target's box inside the subject's
_NEXT_TO_GAP = 0.5  # "next to": a gap of at most half the smaller box's mean side
_SAME_OBJECT_IOU = 0.9  # two concepts' instances this close are one object
_ORDINAL_WORDS = {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth", 6: "sixth", 7: "seventh"}
_ORDER_WORDS = {"left": "leftmost", "right": "rightmost", "top": "topmost", "bottom": "lowest"}
_RELATION_WORDS = {"holding": "with", "nearest": "nearest to"}


class Pool:
    """Every instance found for the concepts asked about one image, with their geometry.

    Instances are numbered in the order they were found; numbers never change, so an answer is a list
    of numbers that later turns of a conversation can refer to.
    """

    def __init__(self, image: UInt8Array, detect: Detect) -> None:
        self.image = image
        self.size = image.shape[:2]
        self._detect = detect
        self._concepts: dict[str, Detections] = {}
        self._ids: dict[str, list[int]] = {}
        self._where: list[tuple[str, int]] = []  # id -> (concept, index in its Detections)
        self._boxes = np.zeros((0, 4), np.float32)
        self.centroids = np.zeros((0, 2), np.float64)
        self.areas = np.zeros((0,), np.float64)
        self.scores = np.zeros((0,), np.float64)
        self._profiles: dict[int, NDArray[np.float32]] = {}
        self._numbers: dict[str, dict[int, int]] = {}
        self.detect_seconds = 0.0

    @property
    def boxes(self) -> FloatArray:
        """``(M, 4)`` xyxy of every instance."""
        return self._boxes

    def ids(self, concept: str) -> list[int]:
        """The instances of a concept, detecting it first if it is new."""
        if concept not in self._ids:
            start = time.perf_counter()
            det = self._detect(concept)
            self.detect_seconds += time.perf_counter() - start
            first = len(self._where)
            self._concepts[concept] = det
            self._ids[concept] = list(range(first, first + len(det)))
            self._where += [(concept, i) for i in range(len(det))]
            centroids, areas = _geometry(det)
            self._boxes = np.concatenate([self._boxes, det.xyxy])
            self.centroids = np.concatenate([self.centroids, centroids])
            self.areas = np.concatenate([self.areas, areas])
            scores = np.ones(len(det)) if det.scores is None else det.scores.astype(np.float64)
            self.scores = np.concatenate([self.scores, scores])
        return self._ids[concept]

    def detections(self, concept: str) -> Detections:
        """The backend's answer for a concept (detecting it first if it is new)."""
        self.ids(concept)
        return self._concepts[concept]

    def label(self, i: int) -> str:
        concept, j = self._where[i]
        return str(self._concepts[concept].labels[j])

    def concept(self, i: int) -> str:
        return self._where[i][0]

    def profile(self, i: int) -> NDArray[np.float32]:
        """The colour profile of instance ``i`` (fractions of the palette; computed once)."""
        if i not in self._profiles:
            self.profiles([i])
        return self._profiles[i]

    def profiles(self, ids: Sequence[int]) -> NDArray[np.float32]:
        """``(len(ids), len(COLORS))`` colour profiles, the missing ones computed in one pass per concept."""
        missing: dict[str, list[int]] = {}
        for i in ids:
            if i not in self._profiles:
                missing.setdefault(self._where[i][0], []).append(i)
        for concept, todo in missing.items():
            det = self._concepts[concept]
            local = [self._where[i][1] for i in todo]
            masks = None if det.masks is None else det.masks[local]
            for i, row in zip(todo, color.color_profiles(self.image, masks, det.xyxy[local]), strict=True):
                self._profiles[i] = row
        if not ids:
            return np.zeros((0, len(color.COLORS)), np.float32)
        return np.stack([self._profiles[i] for i in ids])

    def gather(self, ids: Sequence[int]) -> Detections:
        """The instances ``ids`` as one Detections, in that order."""
        if not ids:
            any_det = next(iter(self._concepts.values()), None)
            with_masks = any_det is not None and any_det.masks is not None
            return Detections.empty(self.size, with_masks=with_masks)
        groups: dict[str, list[int]] = {}
        for i in ids:
            groups.setdefault(self._where[i][0], []).append(i)
        parts = [self._concepts[c][[self._where[i][1] for i in members]] for c, members in groups.items()]
        joined = Detections.concat(parts)
        grouped = [i for members in groups.values() for i in members]
        if grouped == list(ids):
            return joined
        position = {i: k for k, i in enumerate(grouped)}
        return joined[[position[i] for i in ids]]

    def number(self, i: int) -> int:
        """Instance ``i``'s place, counting from the left, among its concept's instances (1-based)."""
        concept = self._where[i][0]
        if concept not in self._numbers:
            same = self._ids[concept]
            order = np.argsort(self.centroids[same, 0], kind="stable")
            self._numbers[concept] = {same[k]: n + 1 for n, k in enumerate(order)}
        return self._numbers[concept][i]

    def among(self, a: Sequence[int], b: Sequence[int]) -> list[bool]:
        """For each of ``a``: whether it is one of ``b`` (or the same object under another concept)."""
        if not a or not b:
            return [False] * len(a)
        hits = np.asarray(self.same_object(a, b).any(axis=1), dtype=bool)
        return [bool(x) for x in hits]

    def same_object(self, a: Sequence[int], b: Sequence[int]) -> NDArray[np.bool_]:
        """``(len(a), len(b))``: the same instance, or one object found under two concepts."""
        same: NDArray[np.bool_] = np.asarray(a)[:, None] == np.asarray(b)[None, :]
        if len(a) and len(b):
            same |= _iou(self._boxes[list(a)], self._boxes[list(b)]) >= _SAME_OBJECT_IOU
        return same


@dataclass
class Answer:
    """A resolved query: the instances chosen (pool numbers), why, and the detections themselves."""

    query: Query
    ids: list[int]
    reasons: dict[int, list[str]]
    detections: Detections
    explanation: str
    notes: list[str] = field(default_factory=list)
    terms: tuple[Term, ...] = ()
    base: list[int] | None = None  # what the terms' pronoun ("the left one") referred to


@dataclass
class _Selection:
    ids: list[int]
    reasons: dict[int, list[str]]
    notes: list[str]
    found: int  # how many instances of the concept there were to choose from


class Resolver:
    """Resolves queries over one image's :class:`Pool`, remembering the last answer for follow-ups."""

    def __init__(self, image: UInt8Array, detect: Detect) -> None:
        self.pool = Pool(image, detect)
        self.last: Answer | None = None

    def resolve(self, query: Query) -> Answer:
        """Answer ``query``; a follow-up (``query.refer`` other than ``new``) uses the last answer."""
        start = time.perf_counter()
        detect_before = self.pool.detect_seconds
        last = self.last
        if query.refer != "new" and last is None:
            if query.refer == "remove" and query.exclude and all(t.concept != THAT for t in query.exclude):
                pass  # "not the person on the left" as a first prompt: every person but that one
            else:
                raise QueryError(
                    f"{query.prompt!r} refers to an earlier answer, but there is none yet: "
                    "name the object, e.g. 'the cup on the left'"
                )
        notes = list(query.notes)
        reasons: dict[int, list[str]] = {}
        ids: list[int] = []
        terms = query.include

        def take(sel: _Selection) -> None:
            notes.extend(sel.notes)
            for i in sel.ids:
                if i not in reasons:
                    ids.append(i)
                    reasons[i] = sel.reasons[i]

        if query.refer == "other":
            assert last is not None
            take(self._other(query.include[0], last))
            terms = last.terms
        elif query.refer == "remove":
            if last is not None:
                base = _Selection(list(last.ids), {i: list(last.reasons[i]) for i in last.ids}, [], 0)
                terms = last.terms
            else:
                base = self._union(
                    [
                        replace(
                            t,
                            count=None,
                            region=None,
                            ordinal=None,
                            size=None,
                            colors=(),
                            relations=(),
                            exclude=(),
                        )
                        for t in query.exclude
                    ]
                )
                terms = ()
            take(base)
        else:
            if query.refer == "add":
                assert last is not None
                take(_Selection(list(last.ids), {i: list(last.reasons[i]) for i in last.ids}, [], 0))
            for term in query.include:
                base_ids = list(last.ids) if term.concept == THAT and last is not None else None
                take(self._term(term, base_ids))
            if query.refer == "add" and last is not None:
                terms = (*last.terms, *query.include)

        if query.exclude:
            scope = ids if (query.refer == "remove" and last is not None) else None
            removed: list[int] = []
            for term in query.exclude:
                within = scope
                if scope is not None and term.concept != THAT:  # "not the person": the answer's people
                    concept_ids = self.pool.ids(term.concept)
                    within = [
                        i for i, hit in zip(scope, self.pool.among(scope, concept_ids), strict=True) if hit
                    ]
                sel = self._term(term, within)
                notes.extend(sel.notes)
                removed += sel.ids
            if removed:
                dropped = self.pool.among(ids, removed)
                ids = [i for i, d in zip(ids, dropped, strict=True) if not d]
        ids = self._dedupe(ids)
        answer = self._answer(query, ids, reasons, notes, terms)
        if query.refer in ("other", "add", "remove") and last is not None:
            answer.base = last.base
        elif any(t.concept == THAT for t in query.include) and last is not None:
            answer.base = list(last.ids)
        answer.detections = answer.detections.with_meta(
            timing={
                "detect_s": round(self.pool.detect_seconds - detect_before, 6),
                "resolve_s": round(
                    time.perf_counter() - start - (self.pool.detect_seconds - detect_before), 6
                ),
            }
        )
        self.last = answer
        return answer

    # -- terms -------------------------------------------------------------------------------------

    def _union(self, terms: Sequence[Term]) -> _Selection:
        ids: list[int] = []
        reasons: dict[int, list[str]] = {}
        notes: list[str] = []
        for term in terms:
            sel = self._term(term)
            notes += sel.notes
            for i in sel.ids:
                if i not in reasons:
                    ids.append(i)
                    reasons[i] = sel.reasons[i]
        return _Selection(ids, reasons, notes, len(ids))

    def _term(self, term: Term, base: list[int] | None = None, without: Sequence[int] = ()) -> _Selection:
        """Select the instances of one term: filters, then order, then count, then exceptions."""
        pool = self.pool
        if term.concept == THAT:
            if base is None:
                raise QueryError(
                    f"{term.text or 'that'!r} refers to an earlier answer, but there is none yet"
                )
            ids = list(base)
        else:
            ids = list(pool.ids(term.concept) if base is None else base)
        if without:
            ids = [i for i in ids if i not in set(without)]
            if not ids:
                return _Selection([], {}, [f"there is no other {_noun(term)}"], 0)
        found = len(ids)
        name = "objects of the last answer" if term.concept == THAT else _plural(term.concept, found)
        reasons: dict[int, list[str]] = {i: [] for i in ids}
        notes: list[str] = []
        if term.concept != THAT and found == 0:
            notes.append(_nothing_found(term.concept, pool.detections(term.concept)))
            return _Selection([], {}, notes, 0)

        everyone = list(ids)
        if term.colors:  # several colours: any of them ("red and white cups")
            kept = []
            for i in ids:
                profile = pool.profile(i)
                fits = [(color.color_match(profile, c), c) for c in term.colors]
                best, which = max(fits)
                if best >= color.MATCH_THRESHOLD:
                    kept.append(i)
                    share = float(profile[color.COLORS.index(which)])
                    reasons[i].append(f"{which} ({share:.0%} of its pixels)")
            if not kept:
                notes.append(f"none of the {found} {name} is {' or '.join(term.colors)}")
            ids = kept

        if term.size in ("large", "small") and ids:
            median = float(np.median(pool.areas[everyone]))
            kept = []
            for i in ids:
                ratio = pool.areas[i] / median if median > 0 else 1.0
                if (term.size == "large" and ratio >= _SIZE_FACTOR) or (
                    term.size == "small" and ratio <= 1 / _SIZE_FACTOR
                ):
                    kept.append(i)
                    reasons[i].append(f"{term.size}: {ratio:.1f}x the median {_singular(term, pool, i)}")
            if not kept:
                notes.append(f"none of the {found} {name} is clearly {term.size}er than the others")
            ids = kept

        nearest: tuple[Relation, list[int]] | None = None
        for rel in term.relations:
            if rel.kind == "nearest":
                targets = self._term(replace(rel.target, count=None)).ids
                nearest = (rel, targets)
                continue
            ids = self._relate(ids, rel, reasons, notes)

        if term.region is not None and term.count is None and ids:
            ids = self._in_region(ids, term.region, reasons, notes, name)

        # order: what the words rank by, if anything
        order: list[int] | None = None
        if term.ordinal is not None and ids:
            ranked = self._ranked(ids, term.ordinal.direction)
            n = term.ordinal.n
            index = n - 1 if n > 0 else len(ranked) + n
            what = _ordinal_text(n, term.ordinal.direction)
            if not 0 <= index < len(ranked):
                notes.append(f"asked for the {what}, but there {_are(len(ranked), term, pool)}")
                return _Selection([], {}, notes, found)
            i = ranked[index]
            reasons[i].append(f"{what} of {len(ranked)} {_plural(_singular(term, pool, i), len(ranked))}")
            ids = [i]
        elif term.size in ("largest", "smallest") and ids:
            order = sorted(ids, key=lambda i: -pool.areas[i] if term.size == "largest" else pool.areas[i])
            for rank, i in enumerate(order):
                reasons[i].append(f"{_rank(rank)}{term.size} of {len(order)} ({pool.areas[i]:,.0f} px)")
        elif nearest is not None and ids:
            rel, targets = nearest
            if not targets:
                notes.append(f"no {rel.target.concept} found to measure distances to")
                return _Selection([], {}, notes, found)
            d = _distances(pool.centroids[ids], pool.centroids[targets])
            d[pool.same_object(ids, targets)] = np.inf
            closest = d.min(axis=1)
            ranking = [int(r) for r in np.argsort(closest, kind="stable")]
            order = [ids[r] for r in ranking]
            for rank, r in enumerate(ranking):
                t = targets[int(np.argmin(d[r]))]
                reasons[ids[r]].append(
                    f"{_rank(rank)}nearest to {self._name(t)} ({closest[r]:.0f} px between centres)"
                )
        elif term.region is not None and term.count is not None and ids:
            order = self._ranked(ids, term.region)
            for rank, i in enumerate(order):
                noun = _plural(_singular(term, pool, i), len(order))
                reasons[i].append(f"{_rank(rank)}{_region_order_word(term.region)} of {len(order)} {noun}")

        k: int | None = term.count
        if order is not None:
            k = k or 1
            ids = order[:k]
        elif k is not None and ids:
            by_score = sorted(ids, key=lambda i: (-pool.scores[i], pool.centroids[i][0]))
            if len(by_score) > k:
                top = "the highest-scoring" if k == 1 else f"one of the {k} highest-scoring"
                for i in by_score[:k]:
                    reasons[i].append(f"{top} of {len(by_score)} (score {pool.scores[i]:.2f})")
            ids = by_score[:k]
        if k is not None and len(ids) < k and term.ordinal is None:
            notes.append(f"asked for {k}, found {len(ids)} {_plural(term.concept, len(ids))}")

        for ex in term.exclude:
            ex_base = everyone if ex.concept in (THAT, term.concept) else None
            ex_sel = self._term(
                replace(ex, concept=term.concept if ex.concept == THAT else ex.concept), ex_base
            )
            if ex_sel.ids and ids:
                drop = self.pool.among(ids, ex_sel.ids)
                ids = [i for i, d in zip(ids, drop, strict=True) if not d]
            for i in ids:
                reasons[i].append(f"not {ex.text or ex.concept}")
        for i in ids:
            if not reasons[i] or all(r.startswith("not ") for r in reasons[i]):
                noun = _singular(term, pool, i)
                reasons[i].insert(0, f"{_article(noun)} {noun} (score {pool.scores[i]:.2f})")
        return _Selection(ids, {i: reasons[i] for i in ids}, notes, found)

    def _other(self, term: Term, last: Answer) -> _Selection:
        """ "The other bottle", "not that one": the last request again, without the last answer."""
        if term.concept == THAT and not term.plural and len(last.ids) > 1:
            raise QueryError(
                f"the last answer has {len(last.ids)} objects, so {query_text(term)!r} is ambiguous: "
                "say which, e.g. 'not the left one'"
            )
        if term.concept != THAT and not any(t.concept == term.concept for t in last.terms):
            sel = self._term(term, without=last.ids)
        elif len(last.terms) == 1 and not term.plural:
            previous = last.terms[0]
            sel = self._term(previous, last.base if previous.concept == THAT else None, without=last.ids)
        else:
            concepts = [t.concept for t in last.terms] if term.concept == THAT else [term.concept]
            sel = self._union([Term(c, plural=True) for c in dict.fromkeys(concepts) if c != THAT])
            if last.base is not None and THAT in concepts:
                sel.ids += [i for i in last.base if i not in sel.reasons]
                sel.reasons.update({i: [] for i in last.base if i not in sel.reasons})
            sel.ids = [i for i in sel.ids if i not in set(last.ids)]
        for i in sel.ids:
            sel.reasons[i] = [*sel.reasons[i], "not in the last answer"]
        if not sel.ids:
            sel.notes.append("there is no other one: the last answer already has every match")
        return sel

    # -- modifiers ---------------------------------------------------------------------------------

    def _in_region(
        self, ids: list[int], region: str, reasons: dict[int, list[str]], notes: list[str], name: str
    ) -> list[int]:
        h, w = self.pool.size
        cx = self.pool.centroids[ids, 0] / w
        cy = self.pool.centroids[ids, 1] / h
        inside = np.ones(len(ids), bool)
        for part in region.split():
            if part == "left":
                inside &= cx < 0.5
            elif part == "right":
                inside &= cx >= 0.5
            elif part == "top":
                inside &= cy < 0.5
            elif part == "bottom":
                inside &= cy >= 0.5
            else:  # center: the middle third both ways
                inside &= (np.abs(cx - 0.5) < 1 / 6) & (np.abs(cy - 0.5) < 1 / 6)
        kept = [i for i, k in zip(ids, inside, strict=True) if k]
        where = "the middle of the image" if region == "center" else f"the {region} of the image"
        for i in kept:
            x, y = self.pool.centroids[i]
            reasons[i].append(f"in {where} (centre at x={x:.0f}, y={y:.0f} of {w}x{h})")
        if not kept:
            notes.append(f"none of the {len(ids)} {name} is in {where}")
        return kept

    def _ranked(self, ids: list[int], direction: str) -> list[int]:
        """``ids`` ordered from a side ("left", "top right") or from the centre ("center")."""
        h, w = self.pool.size
        c = self.pool.centroids[ids] / np.array([w, h])
        if direction == "center":
            key = np.hypot(c[:, 0] - 0.5, c[:, 1] - 0.5)
        elif " " in direction:  # a corner: distance to it
            v, u = direction.split()
            corner = np.array([0.0 if u == "left" else 1.0, 0.0 if v == "top" else 1.0])
            key = np.hypot(*(c - corner).T)
        else:
            axis, sign = {"left": (0, 1), "right": (0, -1), "top": (1, 1), "bottom": (1, -1)}[direction]
            key = sign * c[:, axis]
        return [ids[k] for k in np.argsort(key, kind="stable")]

    def _relate(
        self, ids: list[int], rel: Relation, reasons: dict[int, list[str]], notes: list[str]
    ) -> list[int]:
        """Keep the subjects ``ids`` for which the relation holds (or, negated, holds with no target)."""
        pool = self.pool
        target = self._term(
            replace(rel.target, count=None)
            if rel.target.count == 1 and not (rel.target.region or rel.target.ordinal or rel.target.size)
            else rel.target
        )
        targets = target.ids
        word = _RELATION_WORDS.get(rel.kind, rel.kind)
        target_name = rel.target.text.strip() or rel.target.concept
        if not targets:
            found_note = target.notes[0] if target.notes else f"no {rel.target.concept} found"
            if rel.negated:
                for i in ids:
                    reasons[i].append(f"not {word} {target_name}: {found_note}")
                return ids
            notes.append(f"{found_note}, so nothing can be {word} it")
            return []
        if not ids:
            return ids
        holds = _relation_matrix(
            rel.kind, pool.boxes[ids], pool.boxes[targets], pool.centroids[ids], pool.centroids[targets]
        )
        seconds: list[int] = []
        if rel.kind == "between":
            assert rel.second is not None
            seconds = self._term(replace(rel.second, count=None)).ids
            holds = (
                _between(
                    pool.centroids[ids],
                    pool.centroids[targets],
                    pool.centroids[seconds],
                    pool.same_object(targets, seconds),
                )
                if seconds
                else np.zeros_like(holds)
            )
        holds &= ~pool.same_object(ids, targets)
        kept = []
        for row, i in enumerate(ids):
            hits = [targets[c] for c in np.flatnonzero(holds[row])]
            if rel.negated:
                if not hits:
                    kept.append(i)
                    reasons[i].append(f"not {word} any {rel.target.concept} ({len(targets)} found)")
            elif hits and rel.kind == "between":
                kept.append(i)
                a, b = self._between_pair(i, hits, seconds)
                reasons[i].append(f"between {self._name(a)} and {self._name(b)}")
            elif hits:
                kept.append(i)
                others = "" if len(hits) == 1 else f" and {len(hits) - 1} more"
                reasons[i].append(f"{word} {self._name(hits[0])}{others}")
        if not kept:
            neg = "not " if rel.negated else ""
            notes.append(f"none of them is {neg}{word} {target_name}")
        return kept

    def _between_pair(self, i: int, firsts: list[int], seconds: list[int]) -> tuple[int, int]:
        """A pair (a, b) of targets that instance ``i`` lies between (checked by :func:`_between`)."""
        c = self.pool.centroids
        for a in firsts:
            for b in seconds:
                if a != b and _between(c[[i]], c[[a]], c[[b]], self.pool.same_object([a], [b]))[0, 0]:
                    return a, b
        return firsts[0], seconds[0]

    # -- output ------------------------------------------------------------------------------------

    def _name(self, i: int) -> str:
        """``"table #2"``: the label and the left-to-right number among its concept's instances."""
        return f"{self.pool.label(i)} #{self.pool.number(i)}"

    def _dedupe(self, ids: list[int]) -> list[int]:
        """``ids`` without repeats of an object found under two concepts (the first one stays)."""
        if len(ids) < 2 or len({self.pool.concept(i) for i in ids}) < 2:
            return ids
        same = self.pool.same_object(ids, ids)
        keep: list[int] = []
        for k in range(len(ids)):
            if not any(same[k, j] for j in keep):
                keep.append(k)
        return [ids[k] for k in keep]

    def _answer(
        self,
        query: Query,
        ids: list[int],
        reasons: dict[int, list[str]],
        notes: list[str],
        terms: Sequence[Term],
    ) -> Answer:
        pool = self.pool
        det = pool.gather(ids)
        explanations = []
        for i in ids:
            why = "; ".join(dict.fromkeys(reasons.get(i) or ["in the last answer"]))
            explanations.append(f"{self._name(i)}: {why}")
        colours = [color.describe_color(row) for row in pool.profiles(ids)]
        h, w = pool.size
        attributes = dict(det.attributes)
        attributes["explanation"] = np.array(explanations, dtype=np.str_)
        attributes["color"] = np.array(colours, dtype=np.str_)
        attributes["size"] = np.array([_coco_size(pool.areas[i]) for i in ids], dtype=np.str_)
        attributes["position"] = np.array([_position(pool.centroids[i], w, h) for i in ids], dtype=np.str_)
        if not ids:
            attributes = {k: np.zeros(0, np.str_) for k in attributes}
        summary = _summary(query, len(ids), notes)
        meta = dict(next(iter(pool._concepts.values())).meta) if pool._concepts else {}
        backend_notes = [
            n
            for c in query.concepts()
            if c in pool._concepts
            for n in pool._concepts[c].meta.get("notes", [])
        ]
        backend_notes = [b for b in backend_notes if not any(b in n for n in notes)]  # already quoted
        meta.update(
            prompt=query.prompt,
            query=query.to_dict(),
            explanation=summary,
            notes=list(dict.fromkeys([*notes, *backend_notes])),
        )
        det = det.replace(attributes=attributes, meta=meta)
        return Answer(query, ids, {i: reasons.get(i, []) for i in ids}, det, summary, notes, tuple(terms))


# -- geometry -------------------------------------------------------------------------------------


def _geometry(det: Detections) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Centroids ``(N, 2)`` xy and areas ``(N,)``: of the masks, or of the boxes without masks."""
    boxes = det.xyxy.astype(np.float64)
    centres = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)
    areas = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
    if det.masks is None:
        return centres, areas
    h, w = det.image_size
    for k, (mask, box) in enumerate(zip(det.masks, boxes, strict=True)):
        x1, y1 = max(int(box[0]), 0), max(int(box[1]), 0)
        x2, y2 = min(int(np.ceil(box[2])) + 1, w), min(int(np.ceil(box[3])) + 1, h)
        crop = mask[y1:y2, x1:x2]
        ys, xs = np.nonzero(crop)
        if len(xs) != int(mask.sum()):  # a mask reaching outside its box: use all of it
            ys, xs = np.nonzero(mask)
            x1 = y1 = 0
        if len(xs):
            centres[k] = (xs.mean() + x1 + 0.5, ys.mean() + y1 + 0.5)
            areas[k] = len(xs)
    return centres, areas


def _iou(a: FloatArray, b: FloatArray) -> NDArray[np.float64]:
    inter = _intersection(a, b)
    area_a = _area(a)[:, None]
    area_b = _area(b)[None, :]
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


def _area(boxes: FloatArray) -> NDArray[np.float64]:
    b = boxes.astype(np.float64)
    area: NDArray[np.float64] = (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)
    return area


def _intersection(s: FloatArray, t: FloatArray) -> NDArray[np.float64]:
    a = s.astype(np.float64)[:, None, :]
    b = t.astype(np.float64)[None, :, :]
    w = (np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])).clip(0)
    h = (np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])).clip(0)
    inter: NDArray[np.float64] = w * h
    return inter


def _x_overlap(s: FloatArray, t: FloatArray) -> NDArray[np.float64]:
    a = s.astype(np.float64)[:, None, :]
    b = t.astype(np.float64)[None, :, :]
    overlap: NDArray[np.float64] = (np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])).clip(
        0
    )
    return overlap


def _distances(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.hypot(a[:, None, 0] - b[None, :, 0], a[:, None, 1] - b[None, :, 1])


def _relation_matrix(
    kind: str, s: FloatArray, t: FloatArray, cs: NDArray[np.float64], ct: NDArray[np.float64]
) -> NDArray[np.bool_]:
    """``(len(s), len(t))``: whether subject box i stands in relation ``kind`` to target box j."""
    s64 = s.astype(np.float64)
    t64 = t.astype(np.float64)
    if kind == "on":
        th = (t64[:, 3] - t64[:, 1])[None, :]
        bottom = s64[:, 3][:, None]
        within = (bottom >= t64[:, 1][None, :] - _ON_TOLERANCE * th) & (
            bottom <= t64[:, 3][None, :] + _ON_TOLERANCE * th
        )
        width = np.maximum(s64[:, 2] - s64[:, 0], 1e-9)[:, None]
        return within & (_x_overlap(s, t) / width >= _ON_OVERLAP)
    if kind == "in":
        inside: NDArray[np.bool_] = _intersection(s, t) / np.maximum(_area(s), 1e-9)[:, None] >= _IN_FRACTION
        return inside
    if kind in ("holding", "wearing"):
        held: NDArray[np.bool_] = _intersection(s, t) / np.maximum(_area(t), 1e-9)[None, :] >= _HOLD_FRACTION
        return held
    if kind == "next to":
        gx = np.maximum(t64[None, :, 0] - s64[:, None, 2], s64[:, None, 0] - t64[None, :, 2]).clip(0)
        gy = np.maximum(t64[None, :, 1] - s64[:, None, 3], s64[:, None, 1] - t64[None, :, 3]).clip(0)
        side_s = ((s64[:, 2] - s64[:, 0]) + (s64[:, 3] - s64[:, 1]))[:, None] / 2
        side_t = ((t64[:, 2] - t64[:, 0]) + (t64[:, 3] - t64[:, 1]))[None, :] / 2
        close: NDArray[np.bool_] = np.hypot(gx, gy) <= _NEXT_TO_GAP * np.minimum(side_s, side_t)
        return close
    if kind == "left of":
        return cs[:, None, 0] < ct[None, :, 0]
    if kind == "right of":
        return cs[:, None, 0] > ct[None, :, 0]
    columns = _x_overlap(s, t) > 0
    if kind == "above":
        return (cs[:, None, 1] < ct[None, :, 1]) & columns
    if kind == "below":
        return (cs[:, None, 1] > ct[None, :, 1]) & columns
    if kind == "behind":
        return (s64[:, None, 3] < t64[None, :, 3]) & columns
    if kind == "in front of":
        return (s64[:, None, 3] > t64[None, :, 3]) & columns
    if kind == "between":
        return np.ones((len(s), len(t)), bool)  # decided by _between with the second target
    raise QueryError(f"unknown relation {kind!r}")


def _between(
    cs: NDArray[np.float64], ca: NDArray[np.float64], cb: NDArray[np.float64], same: NDArray[np.bool_]
) -> NDArray[np.bool_]:
    """``(len(cs), len(ca))``: subject i lies between target a_j and some b (not the same object)."""
    out = np.zeros((len(cs), len(ca)), bool)
    for j in range(len(ca)):
        for k in range(len(cb)):
            if same[j, k]:
                continue
            lo = np.minimum(ca[j], cb[k])
            hi = np.maximum(ca[j], cb[k])
            span = hi - lo
            axis = int(np.argmax(span))  # between along the axis that separates the two most
            out[:, j] |= (cs[:, axis] > lo[axis]) & (cs[:, axis] < hi[axis])
    return out


def query_text(term: Term) -> str:
    return term.text or term.concept


# -- words ----------------------------------------------------------------------------------------


def _plural(noun: str, n: int) -> str:
    if n == 1 or noun == THAT:
        return noun
    if noun in ("person",):
        return "people"
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def _article(noun: str) -> str:
    return "an" if noun[:1] in "aeiou" else "a"


def _noun(term: Term) -> str:
    return "object" if term.concept == THAT else term.concept


def _singular(term: Term, pool: Pool, i: int) -> str:
    return pool.label(i) if term.concept == THAT else term.concept


def _are(n: int, term: Term, pool: Pool) -> str:
    noun = _plural(term.concept if term.concept != THAT else "object", n)
    return (
        f"is only 1 {term.concept if term.concept != THAT else 'object'}"
        if n == 1
        else (f"are only {n} {noun}" if n else f"are no {noun}")
    )


def _ordinal_text(n: int, direction: str) -> str:
    if n == -1:
        return {"left": "last from the left", "right": "last from the right"}.get(
            direction, f"last from the {direction}"
        )
    if n < 0:
        return f"{_ORDINAL_WORDS.get(-n, f'{-n}th')} to last from the {direction}"
    return f"{_ORDINAL_WORDS.get(n, f'{n}th')} from the {direction}"


def _rank(rank: int) -> str:
    return "" if rank == 0 else f"{_ORDINAL_WORDS.get(rank + 1, f'{rank + 1}th')} "


def _region_order_word(region: str) -> str:
    if region in _ORDER_WORDS:
        return _ORDER_WORDS[region]
    if region == "center":
        return "closest to the centre"
    return f"closest to the {region} corner"


def _coco_size(area: float) -> str:
    """COCO's size classes: small below 32x32 pixels, large from 96x96."""
    return "small" if area < 32**2 else "medium" if area < 96**2 else "large"


def _position(centroid: NDArray[np.float64], w: int, h: int) -> str:
    """The cell of a 3x3 grid the centroid falls in: "top left", "center", "bottom"."""
    col = min(int(3 * centroid[0] / w), 2)
    row = min(int(3 * centroid[1] / h), 2)
    vertical = ("top", "", "bottom")[row]
    horizontal = ("left", "", "right")[col]
    return " ".join(p for p in (vertical, horizontal) if p) or "center"


def _nothing_found(concept: str, det: Detections) -> str:
    backend_notes = det.meta.get("notes") or []
    why = f" ({backend_notes[0]})" if backend_notes else ""
    return f"no {concept} found{why}"


def _summary(query: Query, n: int, notes: list[str]) -> str:
    asked = query.prompt or "the query"
    if n:
        return f"{n} match{'es' if n != 1 else ''} for {asked!r}"
    reason = notes[-1] if notes else "nothing matched"
    return f"nothing matches {asked!r}: {reason}"
