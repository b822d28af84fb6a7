"""Minimum-cost assignment (the Hungarian method) in numpy: matching detections to tracks, and
ground truth to predictions in the tracking metrics, without scipy at run time."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from promptseg.errors import InputError

__all__ = ["linear_sum_assignment"]


def linear_sum_assignment(cost: ArrayLike) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Minimum-cost assignment of rows to columns (the Hungarian / Kuhn–Munkres method), in numpy.

    The shortest-augmenting-path form with row and column potentials, O(n² m) for an ``(n, m)`` matrix
    with ``n <= m`` (a tall matrix is solved transposed). Same contract as
    ``scipy.optimize.linear_sum_assignment``: ``min(n, m)`` pairs, rows in increasing order.

    Args:
        cost: ``(n, m)`` finite float costs (use a large finite number for "never pair").

    Returns:
        ``(rows, cols)``: int64 arrays of equal length ``min(n, m)``; ``cost[rows, cols].sum()`` is minimal.

    Raises:
        InputError: for a cost that is not 2-D or not finite.

    Example:
        >>> rows, cols = linear_sum_assignment([[4, 1, 3], [2, 0, 5], [3, 2, 2]])
        >>> cols.tolist()
        [1, 0, 2]
    """
    c = np.asarray(cost, dtype=np.float64)
    if c.ndim != 2:
        raise InputError(f"cost must be a 2-D matrix, got shape {c.shape}")
    if not np.isfinite(c).all():
        raise InputError("cost must be finite; use a large finite value for pairs that must not be chosen")
    n, m = c.shape
    if n == 0 or m == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty.copy()
    transposed = n > m
    if transposed:
        c = c.T
        n, m = m, n
    # 1-based potentials and matching as in the classic formulation; column 0 is a virtual start.
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    row_of = np.zeros(m + 1, np.int64)  # row_of[j]: the row (1-based) assigned to column j, 0 for none
    way = np.zeros(m + 1, np.int64)
    for i in range(1, n + 1):
        row_of[0] = i
        j0 = 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, bool)
        while True:
            used[j0] = True
            i0 = row_of[j0]
            free = ~used[1:]
            reduced = c[i0 - 1] - u[i0] - v[1:]
            better = free & (reduced < minv[1:])
            minv[1:][better] = reduced[better]
            way[1:][better] = j0
            candidates = np.where(free, minv[1:], np.inf)
            j1 = int(np.argmin(candidates)) + 1
            delta = candidates[j1 - 1]
            u[row_of[used]] += delta
            v[used] -= delta
            minv[1:][free] -= delta
            j0 = j1
            if row_of[j0] == 0:
                break
        while j0:
            j1 = int(way[j0])
            row_of[j0] = row_of[j1]
            j0 = j1
    cols = np.flatnonzero(row_of[1:]).astype(np.int64)
    rows = row_of[1:][cols] - 1
    if transposed:
        rows, cols = cols, rows
    order = np.argsort(rows, kind="stable")
    return rows[order].astype(np.int64), cols[order].astype(np.int64)
