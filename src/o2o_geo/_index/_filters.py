"""``where=`` filters: which slots a query may return, and the trees to search for them.

A filter is a mapping of column values (``{"category": ["coffee", "tea"]}``),
a boolean mask over the live stores, or a callable taking the store table and
returning such a mask.  A mapping filter is cached until the index changes; one
that keeps less than half the stores gets a kd-tree of its own, so a query for
a rare category searches only those stores.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .._types import Where
from .._validate import warn_user
from ..errors import EmptyResultWarning, InvalidParameterError
from ._slots import Segment, Slots, segment

__all__ = ["missing_values_message", "segments_for"]

_LISTS = (list, tuple, set, frozenset, np.ndarray)


def segments_for(sl: Slots, where: Where) -> tuple[list[Segment], np.ndarray | None]:
    """Trees to search and the slots to skip in them (``None``: skip nothing)."""
    if where is None:
        return sl.segments(), (None if sl.n_dead == 0 else ~sl.alive)
    key = where_key(where)
    if key is not None:
        return sl.cached(("where", key), lambda: _filtered(sl, _eligible(sl, where)))
    return _filtered(sl, _eligible(sl, where))


def _filtered(sl: Slots, eligible: np.ndarray) -> tuple[list[Segment], np.ndarray | None]:
    if int(eligible.sum()) >= 0.5 * len(sl):
        return sl.segments(), ~eligible
    seg = segment(sl.pts.xyz, np.flatnonzero(eligible).astype(np.int64))
    return ([seg] if seg is not None else []), None


def _eligible(sl: Slots, where: Where) -> np.ndarray:
    """Boolean mask over slots: alive and passing the filter."""
    if callable(where):
        try:
            mask = np.asarray(where(sl.stores().table()))
        except Exception as exc:  # noqa: BLE001 - the caller's function: named, and chained
            raise InvalidParameterError(f"where(stores) raised {type(exc).__name__}: {exc}") from exc
        return _live_mask_to_slots(sl, mask, "where(...) returned")
    if isinstance(where, Mapping):
        return _mapping_mask(sl, where)
    return _live_mask_to_slots(sl, np.asarray(where), "where mask has")


def _mapping_mask(sl: Slots, where: Mapping[str, Any]) -> np.ndarray:
    table = sl.physical()
    mask = np.ones(sl.n_slots, dtype=bool)
    for col, want in where.items():
        if col not in table.columns:
            raise InvalidParameterError(f"where= names column {col!r}; the stores have {table.columns}")
        values = table[col]
        if isinstance(want, _LISTS):
            hit = np.isin(values, np.asarray(list(want), dtype=values.dtype if values.dtype != object else object))
        else:
            hit = np.asarray(values == want, dtype=bool)
            if hit.shape != mask.shape:  # e.g. comparing numbers with a string
                hit = np.zeros(mask.shape, dtype=bool)
        mask &= hit
        wanted = list(want) if isinstance(want, _LISTS) else [want]
        message = missing_values_message(f"where={dict(where)!r}", col, wanted, values[sl.alive], hit[sl.alive])
        if message is not None:
            warn_user(message, EmptyResultWarning)
    out = mask & sl.alive
    if len(where) > 1 and not out.any():
        warn_user(
            f"where={dict(where)!r} matches no store: each value exists, but no store has them all",
            EmptyResultWarning,
        )
    return out


def _live_mask_to_slots(sl: Slots, mask: np.ndarray, what: str) -> np.ndarray:
    n_live = len(sl)
    if mask.dtype != bool or mask.shape != (n_live,):
        raise InvalidParameterError(
            f"{what} dtype {mask.dtype} shape {mask.shape}; expected a boolean mask of shape ({n_live},) "
            "over index.stores"
        )
    out = np.zeros(sl.n_slots, dtype=bool)
    out[sl.alive] = mask
    return out


def missing_values_message(label: str, col: str, wanted: list[Any], values: np.ndarray, hit: np.ndarray) -> str | None:
    """The message for filter values of ``col`` that no store has (``None`` when every value exists).

    ``values`` is the column over the stores and ``hit`` the stores the filter kept;
    the message names the missing values, a near match (by case) and some values that exist.
    """
    if hit.any():
        present = set(values[hit].tolist())
        missing = [w for w in wanted if w not in present]
    else:
        missing = wanted
    if not missing:
        return None
    have = sorted({repr(v) for v in values.tolist()})
    shown = ", ".join(have[:5]) + (f", ... ({len(have)} values)" if len(have) > 5 else "")
    lower = {str(v).casefold(): v for v in values.tolist()}
    hints = [f"did you mean {lower[str(w).casefold()]!r}?" for w in missing if str(w).casefold() in lower]
    which = ", ".join(repr(w) for w in missing)
    hint = f" ({' '.join(hints)})" if hints else ""
    what = "matches no store" if not hit.any() else "has values no store has"
    return (
        f"{label} {what}: no store has {col} {which}{hint}; "
        f"{col} holds {shown if shown else 'no values (the index is empty)'}"
    )


def where_key(where: Where) -> Any:
    """A hashable cache key for mapping filters; ``None`` for masks and callables."""
    if not isinstance(where, Mapping):
        return None
    items = []
    for col, want in sorted(where.items(), key=lambda kv: str(kv[0])):
        if isinstance(want, _LISTS):
            want = ("in", tuple(sorted(map(repr, want))))
        else:
            want = ("eq", repr(want))
        items.append((col, want))
    return tuple(items)
