"""Deterministic train / val / test splits that stay put when images are added.

Each item is placed by its own path alone: ``sha256(f"{seed}:{path}")`` gives a number ``u`` in
``[0, 1)`` and the item goes to the first split whose cumulative ratio exceeds ``u``. So the same
paths and seed always give the same split on any machine and Python version (no ``hash()``
randomisation, no RNG state), and adding or removing images never moves the others. The price:
split sizes follow the ratios only on average (binomially), not exactly, on small datasets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from promptseg.datasets.exports import Dataset, DatasetItem
from promptseg.errors import InputError

__all__ = ["SPLIT_NAMES", "split", "split_of"]

SPLIT_NAMES = ("train", "val", "test")


def _check_ratios(ratios: Sequence[float]) -> list[float]:
    r = [float(x) for x in ratios]
    if len(r) != 3 or any(not x >= 0 for x in r) or not abs(sum(r) - 1.0) < 1e-6:
        raise InputError(
            f"ratios must be three numbers >= 0 for (train, val, test) summing to 1, got {ratios!r}"
        )
    return r


def split_of(path: str, ratios: Sequence[float] = (0.8, 0.1, 0.1), *, seed: int = 0) -> str:
    """The split (``"train"``, ``"val"`` or ``"test"``) an image path falls in; see the module docs."""
    r = _check_ratios(ratios)
    digest = hashlib.sha256(f"{seed}:{path}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    edge = 0.0
    for name, ratio in zip(SPLIT_NAMES, r, strict=True):
        edge += ratio
        if u < edge and ratio > 0:
            return name
    return next(n for n, x in zip(reversed(SPLIT_NAMES), reversed(r), strict=True) if x > 0)


def split(
    dataset: Dataset, ratios: Sequence[float] = (0.8, 0.1, 0.1), *, seed: int = 0
) -> dict[str, Dataset]:
    """Split a dataset into ``{"train", "val", "test"}`` by a stable hash of each item's path.

    Args:
        dataset: the dataset.
        ratios: expected fractions for train, val and test (>= 0, summing to 1).
        seed: another seed gives another, equally stable, assignment.

    Returns:
        All three splits (possibly empty), keeping item order and every category.

    Example:
        >>> parts = split(Dataset([], ["cup"]))
        >>> sorted(parts)
        ['test', 'train', 'val']
    """
    _check_ratios(ratios)
    groups: dict[str, list[DatasetItem]] = {name: [] for name in SPLIT_NAMES}
    for item in dataset.items:
        groups[split_of(item.path, ratios, seed=seed)].append(item)
    return {name: Dataset(items, dataset.categories) for name, items in groups.items()}
