"""The one pandas layer: frame checks, id dtypes and result layouts, shared by the CLI and ``o2o_geo.dask``.

Both read points and pings from frames (a file's chunk, a Dask partition)
and write the library's answers back as frames; the rules for doing so live
here once:

* :func:`check_columns` / :func:`check_numeric`: the named columns exist and
  hold numbers; :func:`check_free`: the result columns do not overwrite the
  input's;
* :func:`coordinates`: checked float degrees, the first bad one named by its
  row (a file's line, a frame's index label) with what is wrong with it;
* :func:`id_dtype` / :func:`id_array`: ids keep their type (``int64`` for
  int ids, pandas' string dtype for str ids, ``object`` when mixed; the
  nullable ``Int64`` / ``string`` where a layout has holes);
* :func:`decisions_frame`: push decisions as a frame of fixed dtypes, also
  when there are none;
* :func:`wide_neighbours`: the k nearest stores of each row as columns
  ``store_id_1, distance_m_1, ...`` (the long layout, one row per
  (row, rank), is :meth:`Neighbors.to_dataframe`'s and ``join_nearest``'s);
* :func:`nearest_rows`, :func:`serving_rows`, :func:`ranked_rows`,
  :func:`replayed_rows`: what ``o2o_geo.dask`` computes on each partition
  (``dask.py`` itself only checks, partitions and ships).

pandas is imported by the callers (the CLI once it knows a command needs it,
``o2o_geo.dask`` at import); this module imports it when first called.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from ._dispatch import Dispatcher
from ._events import is_missing
from ._index import Matches, StoreIndex
from ._offers import OfferSet
from ._policy import PushPolicy
from ._scoring import OfferScorer
from ._state import MemoryState
from ._types import FloatArray, IntArray, Where
from .errors import InvalidCoordinateError, InvalidParameterError

__all__ = [
    "DECISION_COLUMNS",
    "OPTIONAL_PING_COLUMNS",
    "SEQ",
    "PingColumns",
    "frame_coordinates",
    "nearest_rows",
    "ranked_rows",
    "replayed_rows",
    "serving_rows",
    "with_results",
    "check_columns",
    "check_free",
    "check_numeric",
    "coordinates",
    "decisions_frame",
    "id_array",
    "id_dtype",
    "plain",
    "str_dtype",
    "wide_neighbours",
]

#: The columns of :func:`decisions_frame`, in order (then ``explanation`` when asked for).
DECISION_COLUMNS = ("push_id", "user_id", "offer_id", "store_id", "merchant_id", "score", "distance_m", "trigger",
                    "holdout", "ts")  # fmt: skip


def _pd() -> Any:
    import pandas as pd

    return pd


@lru_cache(maxsize=1)
def str_dtype() -> Any:
    """The dtype pandas gives a column of Python strings (``str`` in pandas 3, ``object`` before)."""
    return _pd().Series(np.array(["x"], dtype=object)).dtype


# ---------------------------------------------------------------- checks
def check_columns(columns: Sequence[Any], wanted: Mapping[str, Any], *, source: str, naming: str) -> None:
    """Every ``role -> column`` named is a str and one of ``columns``.

    ``source`` names the frame in the message ("the frame", a file's path);
    ``naming`` says how to name another column, with ``{role}`` filled in
    ("pass {role}='your_column'", "name it with {role}").

    Examples
    --------
    >>> check_columns(["lat", "lon"], {"lat": "latitude"}, source="the frame", naming="pass {role}='your_column'")
    Traceback (most recent call last):
    ...
    o2o_geo.errors.InvalidParameterError: the frame has no column 'latitude' (lat); its columns are ['lat', 'lon'] (pass lat='your_column' to name another)
    """  # noqa: E501
    for role, col in wanted.items():
        if not isinstance(col, str):
            raise InvalidParameterError(f"{role} must name a column (a str); got {col!r:.80}")
        if col not in columns:
            raise InvalidParameterError(
                f"{source} has no column {col!r} ({role}); its columns are {list(columns)} "
                f"({naming.format(role=role)} to name another)"
            )


def check_numeric(df: Any, numeric: Mapping[str, str]) -> None:
    """The ``role -> column`` columns hold numbers (not booleans): checked on the dtypes alone."""
    pd = _pd()
    for role, col in numeric.items():
        dtype = df.dtypes[col]
        if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
            raise InvalidParameterError(f"column {col!r} ({role}) has dtype {dtype}; it must hold numbers (degrees)")


def check_free(columns: Sequence[Any], added: Iterable[str]) -> None:
    """The result columns ``added`` must not overwrite input columns.

    Examples
    --------
    >>> check_free(["lat", "lon", "store_id"], ("store_id", "distance_m"))
    Traceback (most recent call last):
    ...
    o2o_geo.errors.InvalidParameterError: the frame already has column(s) ['store_id'], which the result adds; rename them first, e.g. df.rename(columns={'store_id': 'ping_store_id'})
    """  # noqa: E501
    clash = [c for c in added if c in columns]
    if clash:
        raise InvalidParameterError(
            f"the frame already has column(s) {clash}, which the result adds; rename them first, "
            f"e.g. df.rename(columns={{{clash[0]!r}: 'ping_{clash[0]}'}})"
        )


def plain(value: Any) -> Any:
    """A cell as a plain Python value; missing (None, NaN, NA, NaT) as None."""
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    return None if is_missing(value) else value


def coordinates(
    df: Any, lat: str, lon: str, *, row: Callable[[int], str], naming: str
) -> tuple[FloatArray, FloatArray]:
    """Checked float64 latitudes and longitudes of a frame's ``lat`` and ``lon`` columns.

    Text is read as numbers where it is one.  The first bad row raises
    :class:`InvalidCoordinateError`, named by ``row(i)`` (``i`` 0-based in the
    frame) with its raw values and what is wrong; ``naming`` says how to name
    other columns (for a hint when the two look swapped).

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"lat": [31.2, 121.5], "lon": [121.5, 31.2]}, index=["a", "b"])
    >>> coordinates(df, "lat", "lon", row=lambda i: f"row {df.index[i]!r}", naming="lat=/lon=")
    Traceback (most recent call last):
    ...
    o2o_geo.errors.InvalidCoordinateError: row 'b': latitude (lat) = 121.5 is outside [-90, 90]; are latitude and longitude swapped? name the columns with lat=/lon=
    """  # noqa: E501
    pd = _pd()
    out = []
    for name in (lat, lon):
        col = df[name]
        if pd.api.types.is_bool_dtype(col.dtype):
            raise InvalidCoordinateError(f"{row(0)}: column {name!r} holds true/false, not degrees")
        values = col if pd.api.types.is_numeric_dtype(col.dtype) else pd.to_numeric(col, errors="coerce")
        out.append(np.asarray(values.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64))
    la, lo = out
    bad = ~((np.abs(la) <= 90.0) & (np.abs(lo) <= 180.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raw_lat, raw_lon = plain(df[lat].iloc[i]), plain(df[lon].iloc[i])
        if not math.isfinite(la[i]):
            problem = f"latitude ({lat}) = {raw_lat!r} is missing or not a number"
        elif abs(la[i]) > 90.0:
            problem = f"latitude ({lat}) = {raw_lat!r} is outside [-90, 90]"
            if abs(la[i]) <= 180.0:
                problem += f"; are latitude and longitude swapped? name the columns with {naming}"
        elif not math.isfinite(lo[i]):
            problem = f"longitude ({lon}) = {raw_lon!r} is missing or not a number"
        else:
            problem = f"longitude ({lon}) = {raw_lon!r} is outside [-180, 180]; wrap it: ((lon + 180) % 360) - 180"
        raise InvalidCoordinateError(f"{row(i)}: {problem}")
    return la, lo


# ---------------------------------------------------------------- ids
def id_dtype(values: Any, *, nullable: bool = False) -> Any:
    """The column dtype of these ids: int ids ``int64``, str ids pandas' str dtype, else ``object``.

    ``nullable``: for a layout with holes (``Int64`` and ``string``, which hold NA).

    Examples
    --------
    >>> import numpy as np
    >>> id_dtype(np.array([3, 1])), id_dtype(np.array([3, "a"], dtype=object)), id_dtype([3, 1], nullable=True)
    (dtype('int64'), dtype('O'), 'Int64')
    """
    items = values.tolist() if hasattr(values, "tolist") else list(values)
    if items and all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        return "Int64" if nullable else np.dtype(np.int64)
    if items and all(isinstance(v, str) for v in items):
        return _pd().StringDtype() if nullable else str_dtype()
    return np.dtype(object)


def id_array(values: Any, dtype: Any) -> Any:
    """Ids (None for a hole where ``dtype`` is nullable) as a column of ``dtype``."""
    if isinstance(dtype, np.dtype):
        return np.asarray(values).astype(dtype)
    return _pd().array(np.asarray(values, dtype=object), dtype=dtype)


# ---------------------------------------------------------------- layouts
def decisions_frame(
    decisions: Sequence[Any],
    *,
    explanation: bool = False,
    push_prefix: str = "",
    dtypes: Mapping[str, Any] | None = None,
) -> Any:
    """Push decisions as a frame of :data:`DECISION_COLUMNS` (and ``explanation``, JSON text), fixed dtypes.

    Id columns take ``dtypes[name]`` when given, else :func:`id_dtype` of
    their values; ``score``, ``distance_m`` and ``ts`` are float64,
    ``holdout`` bool; ``push_prefix`` is put before every push id (a Dask
    partition's number keeps them unique).
    """
    recs = [d.to_dict() for d in decisions]

    def col(name: str) -> np.ndarray:
        out = np.empty(len(recs), dtype=object)
        out[:] = [r[name] for r in recs]
        return out

    given = dict(dtypes or {})
    frame: dict[str, Any] = {}
    for name in DECISION_COLUMNS:
        values = col(name)
        if name == "push_id" and push_prefix:
            values = np.array([push_prefix + p for p in values.tolist()], dtype=object)
        if name in ("score", "distance_m", "ts"):
            frame[name] = values.astype(np.float64)
        elif name == "holdout":
            frame[name] = values.astype(bool)
        else:
            dtype = given.get(name, str_dtype() if name in ("push_id", "trigger") else id_dtype(values))
            frame[name] = id_array(values, dtype)
    if explanation:
        text = np.array([json.dumps(d.explain()) for d in decisions], dtype=object)  # largest term first
        frame["explanation"] = id_array(text, str_dtype())
    return _pd().DataFrame(frame)


def wide_neighbours(
    store_ids: np.ndarray, position: IntArray, distance_m: FloatArray, *, distance_col: str = "distance_m"
) -> dict[str, Any]:
    """Columns ``store_id_j``, ``<distance_col>_j`` (j = 1..k) of the (n, k) results; holes are NA.

    Ids keep their type in a nullable column (``Int64``, ``string``); the
    distances are ``Float64`` (NA where no store was found).
    """
    pd = _pd()
    dtype = id_dtype(store_ids, nullable=True)
    cols: dict[str, Any] = {}
    for j in range(position.shape[1]):
        p = position[:, j]
        found = p >= 0
        sid = np.full(p.shape[0], None, dtype=object)
        sid[found] = store_ids[p[found]]
        cols[f"store_id_{j + 1}"] = id_array(sid, dtype)
        cols[f"{distance_col}_{j + 1}"] = pd.array(np.where(found, distance_m[:, j], np.nan), dtype="Float64")
    return cols


# ---------------------------------------------------------------- answers per frame (a Dask partition)
def frame_coordinates(df: Any, lat: str, lon: str) -> tuple[FloatArray, FloatArray]:
    """:func:`coordinates` of a frame whose rows are named by their index label."""

    def row(i: int) -> str:
        return f"the frame's row {plain(df.index[i])!r}"

    return coordinates(df, lat, lon, row=row, naming="lat=/lon=")


def with_results(df: Any, q: IntArray, columns: Mapping[str, Any]) -> Any:
    """The input rows ``q`` (index and columns) followed by the result columns."""
    out = df.take(q)
    for name, values in columns.items():
        out[name] = values
    return out


def nearest_rows(
    df: Any,
    index: StoreIndex,
    where: Where,
    *,
    k: int,
    lat: str,
    lon: str,
    max_distance_m: float | None,
    id_dtype: Any,
) -> Any:
    """One row per (input row, store found), nearest first: ``rank``, ``store_id``, ``position``, ``distance_m``."""
    la, lo = frame_coordinates(df, lat, lon)
    nb = index.nearest(la, lo, k=k, max_distance_m=max_distance_m, where=where)
    pos = nb.position.reshape(la.shape[0], k)
    q, r = np.nonzero(pos >= 0)
    p = pos[q, r]
    found = {
        "rank": r.astype(np.int64),
        "store_id": id_array(index.stores.store_id[p], id_dtype),
        "position": p,
        "distance_m": nb.distance_m.reshape(la.shape[0], k)[q, r],
    }
    return with_results(df, q, found)


def serving_rows(df: Any, index: StoreIndex, *, lat: str, lon: str, id_dtype: Any) -> Any:
    """One row per (input row, store serving it): ``store_id``, ``position``, ``distance_m``."""
    la, lo = frame_coordinates(df, lat, lon)
    m = index.serving(la, lo)
    assert isinstance(m, Matches)  # arrays in: a ragged result
    found = {
        "store_id": id_array(index.stores.store_id[m.position], id_dtype),
        "position": m.position,
        "distance_m": m.distance_m,
    }
    return with_results(df, m.query, found)


def ranked_rows(
    df: Any, scorer: OfferScorer, *, k: int, now: float, user: str, lat: str, lon: str, id_dtypes: tuple[Any, Any]
) -> Any:
    """One row per (input row, offer ranked): ``rank``, ``offer_id``, ``store_id``, ``score``, ``distance_m``."""
    la, lo = frame_coordinates(df, lat, lon)
    res = scorer.rank_many(df[user].to_numpy(dtype=object), la, lo, now=now, k=k)
    ranked = {
        "rank": np.asarray(res["rank"], dtype=np.int64),
        "offer_id": id_array(np.asarray(res["offer_id"], dtype=object), id_dtypes[0]),
        "store_id": id_array(np.asarray(res["store_id"], dtype=object), id_dtypes[1]),
        "score": np.asarray(res["score"], dtype=np.float64),
        "distance_m": np.asarray(res["distance_m"], dtype=np.float64),
    }
    return with_results(df, np.asarray(res["query"], dtype=np.int64), ranked)


#: Tie-break column of a replay: the input's order (partition, row).
SEQ = "__o2o_geo_seq__"
#: The ping columns a replay passes on when the frame has them.
OPTIONAL_PING_COLUMNS = ("event_id", "accuracy_m", "tz")


@dataclass(frozen=True)
class PingColumns:
    """Where a replay's ping fields are in the frame, and the dtypes of the decisions' ids."""

    user: str
    lat: str
    lon: str
    ts: str
    explanation: bool
    user_dtype: Any
    offer_dtype: Any
    store_dtype: Any
    merchant_dtype: Any

    def decisions(self, decisions: Sequence[Any], push_prefix: str = "") -> Any:
        """:func:`decisions_frame` with these dtypes (also for no decisions: a Dask meta)."""
        dtypes = {"user_id": self.user_dtype, "offer_id": self.offer_dtype, "store_id": self.store_dtype,
                  "merchant_id": self.merchant_dtype}  # fmt: skip
        return decisions_frame(decisions, explanation=self.explanation, push_prefix=push_prefix, dtypes=dtypes)


def replayed_rows(
    df: Any,
    index: StoreIndex,
    offers: OfferSet,
    policy: PushPolicy | None,
    scorer: OfferScorer | None,
    *,
    cols: PingColumns,
    push_prefix: str = "",
) -> Any:
    """Replay a frame's pings (users whole, in ts order, ties in :data:`SEQ` order) with a Dispatcher of its own.

    The scorer's history is copied (the dispatcher feeds it); index and offers are shared.
    """
    if cols.user not in df.columns:  # the frame is indexed by user
        df = df.reset_index()
    df = df.sort_values([cols.ts, SEQ])
    pings = {"user_id": df[cols.user], "lat": df[cols.lat], "lon": df[cols.lon], "ts": df[cols.ts]}
    pings.update({c: df[c] for c in OPTIONAL_PING_COLUMNS if c in df.columns})
    own = None
    if scorer is not None:
        own = copy.copy(scorer)
        own.history = copy.deepcopy(scorer.history)
    engine = Dispatcher(index, offers, scorer=own, policy=policy, state=MemoryState())
    try:
        decisions = engine.on_locations(pings) if len(df) else []
    finally:
        engine.close()
    return cols.decisions(decisions, push_prefix)
