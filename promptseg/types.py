"""The central data type, :class:`Detections`: pure numpy, no I/O, no models.

Coordinates are absolute pixels in the frame of the image the detections belong to, with the origin
at the top-left corner; ``xyxy`` boxes are ``(x1, y1, x2, y2)`` with ``x1 <= x2`` and ``y1 <= y2``.
``image_size`` is always ``(H, W)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeAlias

import numpy as np
from numpy.typing import NDArray

from promptseg.errors import InputError

__all__ = ["BoolArray", "Detections", "FloatArray", "ImageSize", "IntArray", "StrArray", "UInt8Array"]

ImageSize: TypeAlias = tuple[int, int]
"""``(H, W)`` in pixels."""

FloatArray: TypeAlias = NDArray[np.float32]
BoolArray: TypeAlias = NDArray[np.bool_]
IntArray: TypeAlias = NDArray[np.int64]
StrArray: TypeAlias = NDArray[np.str_]
UInt8Array: TypeAlias = NDArray[np.uint8]

_Index: TypeAlias = int | slice | Sequence[int] | Sequence[bool] | NDArray[Any]


@dataclass(frozen=True, eq=False)
class Detections:
    """A set of N detected instances in one image, as a struct of arrays.

    Every per-instance array has length N along its first axis. Values are validated and normalised
    (dtype, shape) on construction, so any ``Detections`` that exists is well formed.

    Attributes:
        xyxy: ``(N, 4)`` float32 boxes, absolute pixels ``(x1, y1, x2, y2)``.
        image_size: ``(H, W)`` of the image the detections belong to.
        labels: ``(N,)`` str, free text ("person", "red cup").
        scores: ``(N,)`` float32 in [0, 1], or None.
        masks: ``(N, H, W)`` bool, or None.
        track_ids: ``(N,)`` int64, or None (set by trackers only).
        attributes: per-instance extras, each an array of length N (``det.attributes["color"]``).
        meta: per-collection facts: prompt, backend, weights, notes.

    Example:
        >>> det = Detections(xyxy=[[10, 20, 50, 80]], image_size=(100, 100), labels=["cup"], scores=[0.9])
        >>> len(det[det.scores > 0.5])
        1
    """

    xyxy: FloatArray
    image_size: ImageSize
    labels: StrArray
    scores: FloatArray | None = None
    masks: BoolArray | None = None
    track_ids: IntArray | None = None
    attributes: Mapping[str, NDArray[Any]] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _validate_and_normalise(self)

    @classmethod
    def empty(cls, image_size: ImageSize, *, with_masks: bool = False, **meta: Any) -> Detections:
        """No instances: the answer when nothing matched.

        Args:
            image_size: ``(H, W)``.
            with_masks: give ``masks`` the shape ``(0, H, W)`` instead of None.
            **meta: stored in ``meta``.
        """
        h, w = image_size
        return cls(
            xyxy=np.zeros((0, 4), np.float32),
            image_size=image_size,
            labels=np.zeros((0,), np.str_),
            scores=np.zeros((0,), np.float32),
            masks=np.zeros((0, h, w), bool) if with_masks else None,
            meta=meta,
        )

    @classmethod
    def concat(cls, items: Iterable[Detections]) -> Detections:
        """Join detections of the same image, in order.

        Optional fields are kept when every part has them (an empty part never forces one away), and
        attributes when every non-empty part has them. ``meta`` is the first part's, updated by later ones.

        Raises:
            InputError: when the parts are of different images or nothing was given.
        """
        parts = list(items)
        if not parts:
            raise InputError("Detections.concat needs at least one Detections (got none)")
        sizes = {p.image_size for p in parts}
        if len(sizes) > 1:
            raise InputError(f"Detections.concat needs parts of one image size, got {sorted(sizes)}")
        if len(parts) == 1:
            return parts[0]
        non_empty = [p for p in parts if len(p)] or parts[:1]
        meta: dict[str, Any] = {}
        for p in parts:
            meta.update(p.meta)

        def join(name: str) -> NDArray[Any] | None:
            values = [getattr(p, name) for p in non_empty]
            if any(v is None for v in values):
                return None
            return np.concatenate(values)

        attr_keys = set.intersection(*(set(p.attributes) for p in non_empty))
        return cls(
            xyxy=np.concatenate([p.xyxy for p in parts]),
            image_size=parts[0].image_size,
            labels=np.concatenate([p.labels for p in parts]),
            scores=join("scores"),
            masks=join("masks"),
            track_ids=join("track_ids"),
            attributes={k: np.concatenate([p.attributes[k] for p in non_empty]) for k in sorted(attr_keys)},
            meta=meta,
        )

    def replace(self, **changes: Any) -> Detections:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def with_meta(self, **meta: Any) -> Detections:
        """A copy whose ``meta`` is updated with ``meta``."""
        return replace(self, meta={**self.meta, **meta})

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    def __getitem__(self, index: _Index) -> Detections:
        """Select instances; always returns ``Detections`` (an int selects one instance)."""
        if isinstance(index, str):
            raise TypeError(f"Detections cannot be indexed by str ({index!r}); use det.attributes[{index!r}]")
        if isinstance(index, (int, np.integer)):
            n = len(self)
            if not -n <= int(index) < n:
                raise IndexError(f"index {index} out of range for {n} detections")
            index = [int(index)]
        if not isinstance(index, slice):
            index = np.asarray(index)
            if index.dtype == bool and index.shape != (len(self),):
                raise IndexError(f"boolean index of shape {index.shape} for {len(self)} detections")
            if index.size == 0:
                index = index.astype(np.int64)

        def pick(a: NDArray[Any] | None) -> NDArray[Any] | None:
            return None if a is None else a[index]

        return Detections(
            xyxy=self.xyxy[index],
            image_size=self.image_size,
            labels=self.labels[index],
            scores=pick(self.scores),
            masks=pick(self.masks),
            track_ids=pick(self.track_ids),
            attributes={k: v[index] for k, v in self.attributes.items()},
            meta=self.meta,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Detections):
            return NotImplemented
        if self.image_size != other.image_size or dict(self.meta) != dict(other.meta):
            return False
        for f in ("xyxy", "labels", "scores", "masks", "track_ids"):
            a, b = getattr(self, f), getattr(other, f)
            if (a is None) != (b is None) or (a is not None and not np.array_equal(a, b)):
                return False
        if set(self.attributes) != set(other.attributes):
            return False
        return all(np.array_equal(v, other.attributes[k]) for k, v in self.attributes.items())

    __hash__ = None  # type: ignore[assignment]  # mutable arrays inside

    def __repr__(self) -> str:
        parts = [f"n={len(self)}", f"image_size={self.image_size}"]
        if len(self):
            parts.append(f"labels={sorted(set(self.labels.tolist()))}")
        extras = [f.name for f in fields(self) if f.name in ("scores", "masks", "track_ids")]
        present = [name for name in extras if getattr(self, name) is not None]
        if present:
            parts.append("with " + ", ".join(present))
        if self.attributes:
            parts.append(f"attributes={sorted(self.attributes)}")
        return f"Detections({', '.join(parts)})"

    @property
    def box_area(self) -> FloatArray:
        """``(N,)`` float32 box areas in pixels."""
        wh = self.xyxy[:, 2:] - self.xyxy[:, :2]
        return (wh[:, 0] * wh[:, 1]).astype(np.float32)

    @property
    def mask_area(self) -> IntArray:
        """``(N,)`` int64 mask areas in pixels.

        Raises:
            InputError: when there are no masks.
        """
        if self.masks is None:
            raise InputError("these detections have no masks (masks is None)")
        h, w = self.image_size
        area: IntArray = self.masks.reshape(len(self), h * w).sum(axis=1, dtype=np.int64)
        return area


def _validate_and_normalise(det: Detections) -> None:
    # frozen dataclass: normalised values are written with object.__setattr__, once, here.
    def put(name: str, value: Any) -> None:
        object.__setattr__(det, name, value)

    size = det.image_size
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(v, (int, np.integer)) and v > 0 for v in size)
    ):
        raise InputError(f"image_size must be (H, W) with two positive ints, got {size!r}")
    h, w = int(size[0]), int(size[1])
    put("image_size", (h, w))

    xyxy = np.asarray(det.xyxy, dtype=np.float32)
    if xyxy.size == 0:
        xyxy = xyxy.reshape(0, 4)
    if xyxy.ndim != 2 or xyxy.shape[1] != 4:
        raise InputError(f"xyxy must have shape (N, 4), got {xyxy.shape}")
    if not np.isfinite(xyxy).all():
        raise InputError("xyxy must be finite (found NaN or inf)")
    if (xyxy[:, 2] < xyxy[:, 0]).any() or (xyxy[:, 3] < xyxy[:, 1]).any():
        bad = int(np.flatnonzero((xyxy[:, 2] < xyxy[:, 0]) | (xyxy[:, 3] < xyxy[:, 1]))[0])
        raise InputError(f"xyxy must have x1 <= x2 and y1 <= y2; row {bad} is {xyxy[bad].tolist()}")
    n = xyxy.shape[0]
    put("xyxy", xyxy)

    labels = np.asarray(det.labels)
    if labels.size == 0:
        labels = np.zeros((0,), np.str_)
    elif labels.dtype.kind not in "US":
        raise InputError(f"labels must be strings, got dtype {labels.dtype}")
    labels = labels.astype(np.str_)
    if labels.shape != (n,):
        raise InputError(f"labels must have shape ({n},) to match xyxy, got {labels.shape}")
    put("labels", labels)

    if det.scores is not None:
        scores = (
            np.asarray(det.scores, dtype=np.float32).reshape(-1)
            if np.size(det.scores)
            else np.zeros(0, np.float32)
        )
        if scores.shape != (n,):
            raise InputError(f"scores must have shape ({n},), got {np.shape(det.scores)}")
        if not np.isfinite(scores).all() or (scores < 0).any() or (scores > 1).any():
            raise InputError("scores must lie in [0, 1]")
        put("scores", scores)

    if det.masks is not None:
        masks = np.asarray(det.masks)
        if masks.size == 0 and masks.ndim != 3:
            masks = np.zeros((n, h, w), bool)
        if masks.shape != (n, h, w):
            raise InputError(f"masks must have shape (N, H, W) = ({n}, {h}, {w}), got {masks.shape}")
        if masks.dtype != np.bool_:
            if masks.dtype.kind not in "biu":
                raise InputError(f"masks must be bool (or 0/1 integers), got dtype {masks.dtype}")
            masks = masks.astype(bool)
        put("masks", masks)

    if det.track_ids is not None:
        track_ids = np.asarray(det.track_ids)
        if track_ids.size == 0:
            track_ids = np.zeros((0,), np.int64)
        if track_ids.shape != (n,) or track_ids.dtype.kind not in "iu":
            raise InputError(f"track_ids must be ({n},) integers, got {track_ids.shape} {track_ids.dtype}")
        put("track_ids", track_ids.astype(np.int64))

    attributes: dict[str, NDArray[Any]] = {}
    for key, value in dict(det.attributes).items():
        if not isinstance(key, str):
            raise InputError(f"attribute names must be str, got {key!r}")
        arr = np.asarray(value)
        if arr.ndim == 0 or arr.shape[0] != n:
            raise InputError(f"attribute {key!r} must have length {n}, got shape {arr.shape}")
        attributes[key] = arr
    put("attributes", attributes)
    put("meta", dict(det.meta))
