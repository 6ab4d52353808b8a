"""Array kernels of the ranking: sums in a fixed order, the best row per key, CSR expansion, ranks in groups."""

from __future__ import annotations

import numpy as np

from .._types import FloatArray, IntArray

__all__ = ["argbest", "expand", "rank_within", "row_sums"]


def row_sums(terms: FloatArray) -> FloatArray:
    """Each row's sum, added column by column: the same bits whichever rows are summed together.

    numpy sums a column-major array's rows column by column, except a single
    row, which it sums pairwise (another order); so one row is summed as two.
    """
    if terms.shape[0] == 1:
        return np.add.reduce(np.asfortranarray(np.repeat(terms, 2, axis=0)), axis=1)[:1]
    return np.add.reduce(np.asfortranarray(terms), axis=1)


def argbest(key: IntArray, value: FloatArray, tie: IntArray, n_keys: int) -> IntArray:
    """Index of the row with the highest ``value`` (then lowest ``tie``) for each distinct ``key`` in [0, n_keys).

    Dense reductions instead of a sort: ``(key, tie)`` pairs must be unique.
    """
    if key.size == 0:
        return np.zeros(0, dtype=np.int64)
    best = np.full(n_keys, -np.inf)
    np.maximum.at(best, key, value)
    cand = np.flatnonzero(value == best[key])
    low = np.full(n_keys, np.iinfo(np.int64).max)
    np.minimum.at(low, key[cand], tie[cand])
    return cand[tie[cand] == low[key[cand]]]


def expand(
    q: IntArray, pos: IntArray, dist: FloatArray, offsets: IntArray, items: IntArray, key: IntArray | None = None
) -> tuple[IntArray, IntArray, IntArray, FloatArray]:
    """Repeat each row once per item of its CSR list (keyed by ``key``, or by ``pos``)."""
    k = pos if key is None else key
    counts = offsets[k + 1] - offsets[k]
    rows = np.repeat(np.arange(k.shape[0]), counts)
    within = np.arange(rows.shape[0]) - np.repeat(np.cumsum(counts) - counts, counts)
    return q[rows], items[np.repeat(offsets[k], counts) + within], pos[rows], dist[rows]


def rank_within(q: IntArray, group: IntArray, mask: np.ndarray) -> IntArray:
    """For rows sorted by query, the 0-based rank of each row among earlier masked rows of the same (query, group)."""
    n = q.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    key_order = np.lexsort((np.arange(n), group, q))
    qs, gs, ms = q[key_order], group[key_order], mask[key_order].astype(np.int64)
    new = np.ones(n, dtype=bool)
    new[1:] = (qs[1:] != qs[:-1]) | (gs[1:] != gs[:-1])
    csum = np.cumsum(ms) - ms  # masked rows before this one, overall
    start = np.maximum.accumulate(np.where(new, csum, 0))
    out = np.empty(n, dtype=np.int64)
    out[key_order] = csum - start
    return out
