"""The history as the feature extractor reads it: each user's as arrays over a catalog's codes, and code maps.

A :class:`UserView` is rebuilt only when the user's history changes (the
extractor caches them on the user's version); a :class:`CodeMap` maps a
catalog's ids to the history's first-seen codes, extended as codes are added.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._history import UserHistory
from .._types import FloatArray, IntArray
from ._catalog import Catalog

__all__ = ["CodeMap", "UserView", "decayed", "empty_view", "user_view"]


def decayed(value: FloatArray, t0: FloatArray, t: float, half_life_s: float) -> FloatArray:
    """Recency-weighted sums ``value`` (as of ``t0``) read at ``t`` (as ``_Decayed.at``, vectorised)."""
    return value * np.exp2(-np.maximum(t - t0, 0.0) / half_life_s)


@dataclass(frozen=True)
class UserView:
    """One user's history as arrays over one catalog's codes (rebuilt when the user changes)."""

    cat_code: IntArray
    cat_val: FloatArray
    cat_t0: FloatArray
    mer_code: IntArray
    mer_val: FloatArray
    mer_t0: FloatArray
    place_pos: IntArray
    place_zone: IntArray
    rec_val: FloatArray
    rec_t0: FloatArray
    last_ts: FloatArray
    next_count: FloatArray  # moves from the previous place to each place
    nah_row: IntArray  # next_at_hour entries: place row, hour bin of the visit before, count
    nah_bin: IntArray
    nah_count: FloatArray
    hour_code: IntArray  # category-by-hour entries: category code (-1: not in the catalog), bin, count
    hour_bin: IntArray
    hour_count: FloatArray
    prev_ts: float | None
    prev_store: Any
    prev_cat: int
    cat_next_code: IntArray
    cat_next_count: FloatArray
    cat_next_total: float


def user_view(cat: Catalog, st: Any) -> UserView:
    def decayed_parts(items: Any, index: Mapping[Any, int]) -> tuple[IntArray, FloatArray, FloatArray]:
        rows = [(index[k], d.value, d.t0) for k, d in items if k in index]
        if not rows:
            return np.empty(0, dtype=np.int64), np.empty(0), np.empty(0)
        code, val, t0 = zip(*rows, strict=True)
        return np.array(code, dtype=np.int64), np.array(val), np.array(t0)

    cat_code, cat_val, cat_t0 = decayed_parts(st.category.items(), cat.cat_index)
    mer_code, mer_val, mer_t0 = decayed_parts(st.merchant.items(), cat.mer_index)
    prev = st.prev
    prev_next = st.places[prev[1]].next if prev is not None and prev[1] is not None else {}
    row_of: dict[Any, int] = {}
    pos: list[int] = []
    rec_val: list[float] = []
    rec_t0: list[float] = []
    last: list[float] = []
    nxt: list[float] = []
    for sid, place in st.places.items():
        p = cat.store_pos.get(sid)
        if p is None:
            continue
        row_of[sid] = len(pos)
        pos.append(p)
        rec_val.append(place.recency.value)
        rec_t0.append(place.recency.t0)
        last.append(place.last_ts)
        nxt.append(prev_next.get(sid, 0))
    nah = [(row_of[sid], b, n) for (b, sid), n in st.next_at_hour.items() if sid in row_of]
    hours = [(cat.cat_index.get(c, -1), b, n) for (c, b), n in st.cat_hours.items()]
    prev_cat, moves, total = -1, [], 0.0
    if prev is not None and prev[2] is not None and prev[2] in cat.cat_index:
        prev_cat = cat.cat_index[prev[2]]
        for (a, c), n in st.cat_next.items():
            if a == prev[2]:
                total += n
                if c in cat.cat_index:
                    moves.append((cat.cat_index[c], n))
    place_pos = np.array(pos, dtype=np.int64)
    return UserView(
        cat_code, cat_val, cat_t0, mer_code, mer_val, mer_t0,
        place_pos, cat.store_zone[place_pos], np.array(rec_val), np.array(rec_t0), np.array(last),
        np.array(nxt, dtype=np.float64),
        np.array([x[0] for x in nah], dtype=np.int64), np.array([x[1] for x in nah], dtype=np.int64),
        np.array([x[2] for x in nah], dtype=np.float64),
        np.array([x[0] for x in hours], dtype=np.int64), np.array([x[1] for x in hours], dtype=np.int64),
        np.array([x[2] for x in hours], dtype=np.float64),
        None if prev is None else prev[0], None if prev is None else prev[1], prev_cat,
        np.array([m[0] for m in moves], dtype=np.int64), np.array([m[1] for m in moves], dtype=np.float64), total,
    )  # fmt: skip


_EMPTY: list[UserView] = []


def empty_view() -> UserView:
    if not _EMPTY:
        i, f = np.empty(0, dtype=np.int64), np.empty(0)
        _EMPTY.append(UserView(i, f, f, i, f, f, i, i, f, f, f, f, i, i, f, i, i, f, None, None, -1, i, f, 0.0))
    return _EMPTY[0]


class CodeMap:
    """A catalog's codes -> the history's codes of the same ids (-1: not in the history yet).

    The history hands out codes in first-seen order and never takes one back, so
    the map is extended with the new ids only.
    """

    def __init__(self) -> None:
        self._key: tuple[int, int] | None = None
        self._codes = np.empty(0, dtype=np.int64)
        self._n = 0

    def codes(self, cat: Catalog, h: UserHistory, size: int, ids: Sequence[Any], index: Mapping[Any, int]) -> IntArray:
        if self._key != (id(cat), id(h)):
            self._key, self._codes, self._n = (id(cat), id(h)), np.full(size, -1, dtype=np.int64), 0
        for code in range(self._n, len(ids)):
            c = index.get(ids[code])
            if c is not None:
                self._codes[c] = code
        self._n = len(ids)
        return self._codes
