"""Checks of what comes into the dispatcher: user ids, positions, times, accuracies, ping columns."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from .._fences import FenceHit
from .._policy import PushPolicy
from .._state import DispatchState
from .._time import to_epoch_s, zone
from .._types import FloatArray
from .._validate import as_point, check_id, check_metres, did_you_mean
from ..errors import InvalidParameterError
from ._stores import StoreFacts

__all__ = [
    "PING_COLUMNS",
    "Ping",
    "check_lifetimes",
    "checked_ping",
    "ping_accuracies",
    "ping_accuracy",
    "ping_columns",
    "same_stores",
]


class Ping(NamedTuple):
    """One checked ping, with the fences it is in."""

    user_id: Any
    lat: float
    lon: float
    t: float
    event_id: Any
    tz: str | None
    hits: list[FenceHit]


#: The columns of a ping log (the first four required).
PING_COLUMNS = ("user_id", "lat", "lon", "ts", "event_id", "accuracy_m", "tz")


def ping_accuracy(a: Any) -> float:
    if a is None:
        return 0.0
    return check_metres(a, "accuracy_m")


def ping_accuracies(values: Any) -> FloatArray:
    arr = np.asarray(values, dtype=object)
    out = np.array(
        [0.0 if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in arr.tolist()], dtype=object
    )
    try:
        res = out.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(f"accuracy_m must be numbers of metres: {exc}") from exc
    bad = ~np.isfinite(res) | (res < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidParameterError(f"accuracy_m of row {i} = {res[i]!r} must be a finite number >= 0")
    return res


def ping_columns(pings: Any, columns: Mapping[str, Any]) -> dict[str, Any]:
    src: Mapping[str, Any]
    if pings is None:
        src = columns
    elif hasattr(pings, "columns") and hasattr(pings, "to_dict"):
        src = {c: pings[c] for c in pings.columns}
    elif isinstance(pings, Mapping):
        src = pings
    else:
        raise InvalidParameterError("on_locations takes a DataFrame, a mapping of columns, or keyword arrays")
    if pings is not None and columns:  # a table and keyword columns: one set of columns, each given once
        both = sorted(set(src) & set(columns))
        if both:
            raise InvalidParameterError(f"on_locations got column(s) {both} both in the table and as keywords")
        for name in columns:
            if name not in PING_COLUMNS:
                hint = did_you_mean(name, [c for c in PING_COLUMNS if c not in src], cutoff=0.7)
                raise InvalidParameterError(
                    f"on_locations got an unknown column {name!r}{hint}; ping columns are {', '.join(PING_COLUMNS)}"
                )
        src = {**src, **columns}
    for name in src:
        if name in PING_COLUMNS:
            continue
        hint = did_you_mean(name, [c for c in PING_COLUMNS if c not in src], cutoff=0.7)
        if pings is None or hint:  # a keyword is a typo; a table's extra column only when it looks like one
            raise InvalidParameterError(
                f"on_locations got an unknown column {name!r}{hint}; ping columns are {', '.join(PING_COLUMNS)}"
            )
    missing = [c for c in ("user_id", "lat", "lon", "ts") if c not in src]
    if missing:
        raise InvalidParameterError(f"ping columns {missing} are missing (need user_id, lat, lon, ts)")
    out: dict[str, Any] = {}
    for name in PING_COLUMNS:
        if name not in src:
            continue
        v = src[name]
        if v is None or isinstance(v, (str, bytes, Mapping)) or not hasattr(v, "__len__"):
            raise InvalidParameterError(f"ping column {name!r} must be a sequence or an array; got {v!r:.80}")
        if getattr(v, "ndim", 1) != 1:
            raise InvalidParameterError(f"ping column {name!r} must be one-dimensional; got shape {v.shape}")
        if name in ("user_id", "event_id", "tz"):
            v = [
                x.item() if isinstance(x, np.generic) else x for x in (v.tolist() if hasattr(v, "tolist") else list(v))
            ]
            if name != "user_id":  # a missing event id or time zone (None or NaN from pandas) is none
                v = [None if isinstance(x, float) and math.isnan(x) else x for x in v]
        elif name == "ts":
            v = v if getattr(v, "dtype", None) is not None else list(v)
        out[name] = v
    return out


def checked_ping(
    user_id: Any, lat: Any, lon: Any, ts: Any, accuracy_m: Any, tz: Any
) -> tuple[Any, float, float, float, float]:
    """One ping's inputs checked (typed errors), as (user_id, lat, lon, epoch seconds, accuracy metres)."""
    user_id = check_id(user_id, "user_id")
    la, lo = as_point(lat, lon, "on_location", "on_locations")
    t = to_epoch_s(ts, "ts")
    acc = ping_accuracy(accuracy_m)
    if tz is not None:
        zone(tz)
    return user_id, la, lo, t, acc


def check_lifetimes(pol: PushPolicy, state: DispatchState) -> None:
    """Refuse a state that would forget what the policy's windows still need (retention never changes an answer)."""
    life = state.lifetimes
    windows = {
        "min_gap_s": pol.min_gap_s,
        "dismiss_cooldown_s": pol.dismiss_cooldown_s,
        "exit_after_s": pol.exit_after_s,
        "dwell_s": pol.dwell_s,
    }
    name, need = max(windows.items(), key=lambda kv: kv[1])
    if life.user_ttl_s < need:
        raise InvalidParameterError(
            f"the state forgets a user's fence state after user_ttl_s={life.user_ttl_s:g} s, but the policy's "
            f"{name}={need:g} s needs it that long; raise user_ttl_s"
        )
    if life.retention_s < pol.attribution_window_s:
        raise InvalidParameterError(
            f"the state keeps pushes retention_days={life.retention_days:g} days, shorter than the policy's "
            f"attribution_window_s={pol.attribution_window_s:g} s; outcomes could not find their push"
        )


def same_stores(facts: StoreFacts, hits: Sequence[FenceHit]) -> bool:
    """Whether the hits' positions name the same stores in ``facts`` (true unless the index just changed)."""
    ids, n = facts.ids, len(facts.ids)
    return all(h.position < n and ids[h.position] == h.store_id for h in hits)
