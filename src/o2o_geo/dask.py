"""The batch API over Dask DataFrames: nearest and serving stores, offer ranking, dispatch replay.

An optional integration: ``import o2o_geo.dask`` needs ``dask[dataframe]``
(``pip install 'o2o_geo[dask]'``, which also brings ``distributed`` for a
cluster); ``import o2o_geo`` never imports dask.

Every function takes a pandas or a Dask DataFrame and returns the same kind
with the same columns: a pandas frame is answered in-process by the batch API
(:meth:`StoreIndex.nearest`, :meth:`StoreIndex.serving`,
:meth:`OfferScorer.rank_many`, :meth:`Dispatcher.on_locations`), and a Dask
frame partition by partition with exactly that pandas code.  So the pandas
call is the reference a distributed run must equal row for row, and the
function a Spark ``mapInPandas`` can call on each batch.

Layout
------
:func:`nearest`, :func:`serving` and :func:`rank_offers` return one row per
(input row, result): the input row's columns and index label, repeated for
each result, followed by the result columns (``rank``, ``store_id``,
``position``, ``distance_m`` for :func:`nearest`; see each function).  An
input row with no result has no output row (as in ``to_dataframe()``); join
on the index to find it.  Store, offer and merchant ids are ``int64`` when
they are ints, pandas' string dtype when they are strings.  A result column
the input already has is an :class:`~o2o_geo.errors.InvalidParameterError`:
rename the input column first.

Shipped to the workers once
---------------------------
The index (and the ``where`` filter, the scorer with its history, or the
dispatcher's inputs) is shared, never embedded in every partition's task:

* with a ``distributed.Client`` active when the function is called, the
  inputs are sent to every worker with ``client.scatter(...,
  broadcast=True)`` and every partition task depends on that one key: each
  worker unpickles one copy, whatever the number of partitions (about 60 MiB
  per worker for the 144,563 geonames places).  Compute the result with the
  same Client.
* otherwise they are one ``dask.delayed`` task that every partition task
  depends on (one copy in the process for the threaded and synchronous
  schedulers; the multiprocessing scheduler would send it with every task).

To see it, look at ``result.__dask_graph__()``: every partition task lists
the same key among its ``dependencies``, and no task holds the index (with a
Client) or exactly one does (without).  The tests also count, on each worker
of a cluster, the index copies it unpickles: one per worker for 16 partitions.

The index answers each partition on :attr:`StoreIndex.workers` threads (-1:
all cores) and serves one query at a time per process, so run Dask workers
as processes; with one single-threaded worker per core, build the index
with ``workers=1`` to avoid oversubscribing the cores.

Examples
--------
>>> import pandas as pd, dask.dataframe as dd
>>> import o2o_geo as og
>>> import o2o_geo.dask as ogd
>>> index = og.StoreIndex(og.sample_stores())
>>> pings = pd.DataFrame({"ping": [1, 2, 3], "lat": [31.2304, 31.2325, 31.2400],
...                       "lon": [121.4737, 121.4801, 121.4900]})
>>> out = ogd.nearest(dd.from_pandas(pings, npartitions=2), index, k=1)
>>> out.compute()[["ping", "store_id"]].values.tolist()
[[1, 'lucky-09'], [2, 'lucky-09'], [3, 'lucky-06']]
>>> ogd.nearest(pings, index, k=1)[["ping", "store_id"]].values.tolist()   # in-process: the same
[[1, 'lucky-09'], [2, 'lucky-09'], [3, 'lucky-06']]
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

try:
    import dask
    import dask.dataframe as dd
    import pandas as pd
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        f"o2o_geo.dask needs dask[dataframe] ({exc}); install it with: pip install 'o2o_geo[dask]'"
    ) from exc

from ._dispatch import Dispatcher
from ._frames import (
    OPTIONAL_PING_COLUMNS,
    SEQ,
    PingColumns,
    check_columns,
    check_free,
    check_numeric,
    id_dtype,
    nearest_rows,
    ranked_rows,
    replayed_rows,
    serving_rows,
    str_dtype,
)
from ._index import StoreIndex
from ._offers import OfferSet
from ._policy import PushPolicy
from ._scoring import OfferScorer
from ._time import to_epoch_s
from ._types import Where
from ._validate import check_choice, check_count
from .errors import InvalidParameterError

__all__ = ["nearest", "rank_offers", "replay", "serving"]

Explanation = Literal["drop", "json"]


# ---------------------------------------------------------------- checks
def _check_columns(df: Any, numeric: Mapping[str, str], other: Mapping[str, str] | None = None) -> None:
    """Every named column exists (``role -> column``); the ``numeric`` ones hold numbers."""
    check_columns(
        list(df.columns), {**numeric, **(other or {})}, source="the frame", naming="pass {role}='your_column'"
    )
    check_numeric(df, numeric)


def _is_dask(df: Any) -> bool:
    if isinstance(df, dd.DataFrame):
        return True
    if isinstance(df, pd.DataFrame):
        return False
    raise InvalidParameterError(f"df must be a pandas or a Dask DataFrame; got {type(df).__name__}")


# ---------------------------------------------------------------- shipping
@dataclass(frozen=True)
class _Shared:
    """The inputs every partition needs, shipped as one object.

    One pickle for all of them (distributed would serialise a tuple item by
    item), so objects they share, like a scorer's index, stay one object.
    """

    items: tuple[Any, ...]


def _active_client() -> Any:
    """The distributed Client that is the default now, or None."""
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        client = default_client()
    except ValueError:
        return None
    return None if client.asynchronous else client


def _share(shared: _Shared) -> Any:
    """A reference to ``shared`` that the partition tasks depend on: one copy per worker, not per task."""
    client = _active_client()
    if client is not None:
        return client.scatter(shared, broadcast=True, hash=False)
    return dask.delayed(shared, name=f"o2o-geo-shared-{uuid.uuid4().hex}", traverse=False)


def _run(
    df: Any,
    shared: _Shared,
    func: Callable[..., Any],
    partition_info: Mapping[str, Any] | None = None,
    *,
    numbered: bool = False,
    **kwargs: Any,
) -> Any:
    """``func(df, *shared.items, **kwargs)`` on one partition (``numbered``: push ids prefixed by its number)."""
    if numbered and partition_info is not None:
        kwargs["push_prefix"] = f"{partition_info['number']}:"
    return func(df, *shared.items, **kwargs)


def _map(ddf: Any, func: Callable[..., Any], shared: _Shared, meta: Any | None = None, **kwargs: Any) -> Any:
    """``func`` over the partitions, the shared inputs one dependency (``meta``: default, ``func`` on no rows)."""
    if meta is None:
        meta = _run(ddf._meta, shared, func, **kwargs)
    return ddf.map_partitions(_run, _share(shared), func, meta=meta, token=func.__name__, **kwargs)


# ---------------------------------------------------------------- index queries
def nearest(
    df: Any,
    index: StoreIndex,
    k: int = 1,
    *,
    lat: str = "lat",
    lon: str = "lon",
    max_distance_m: float | None = None,
    where: Where = None,
) -> Any:
    """The k nearest stores of every row, as :meth:`StoreIndex.nearest`, over a pandas or Dask DataFrame.

    Parameters
    ----------
    df : pandas.DataFrame or dask.dataframe.DataFrame
        Points (pings, users), with latitude and longitude columns in degrees.
    index : StoreIndex
        The stores; shipped to each Dask worker once.
    k : int, default 1
        Stores per row.
    lat, lon : str, default "lat", "lon"
        The coordinate columns.
    max_distance_m : float, optional
        Ignore stores farther than this many metres.
    where : mapping, boolean mask or callable, optional
        Store filter, as in :meth:`StoreIndex.nearest` (a callable must pickle for a cluster).

    Returns
    -------
    pandas.DataFrame or dask.dataframe.DataFrame
        The same kind as ``df``: one row per (input row, store found), nearest
        first; the input's columns and index label, then ``rank`` (0 for the
        nearest), ``store_id``, ``position`` (row in ``index.stores``) and
        ``distance_m``.  Rows with no store (fewer than k, or none within
        ``max_distance_m``) are left out.

    Raises
    ------
    InvalidParameterError
        ``df`` is not a DataFrame, a column is missing or not numeric, the
        frame already has a result column, or ``k``, ``max_distance_m`` or
        ``where`` is bad.
    InvalidCoordinateError
        A coordinate is out of range or missing (at compute time for Dask),
        naming the row label.

    Examples
    --------
    >>> import pandas as pd, dask.dataframe as dd
    >>> import o2o_geo as og
    >>> import o2o_geo.dask as ogd
    >>> index = og.StoreIndex(og.sample_stores())
    >>> pings = pd.DataFrame({"lat": [31.2304, 31.2325], "lon": [121.4737, 121.4801]}, index=["a", "b"])
    >>> out = ogd.nearest(dd.from_pandas(pings, npartitions=2), index, k=2, where={"merchant_id": "m-lucky"})
    >>> res = out.compute()
    >>> list(res.columns)
    ['lat', 'lon', 'rank', 'store_id', 'position', 'distance_m']
    >>> res.index.tolist(), res.store_id.tolist(), res.distance_m.round(1).tolist()
    (['a', 'a', 'b', 'b'], ['lucky-09', 'lucky-07', 'lucky-09', 'lucky-14'], [652.3, 1136.4, 1.6, 1389.1])
    """
    is_dask = _is_dask(df)
    if not isinstance(index, StoreIndex):
        raise InvalidParameterError(f"index must be a StoreIndex; got {type(index).__name__}")
    _check_columns(df, {"lat": lat, "lon": lon})
    check_free(df.columns, ("rank", "store_id", "position", "distance_m"))
    index.nearest(
        np.empty(0), np.empty(0), k=k, max_distance_m=max_distance_m, where=where
    )  # checks k, distance, where
    args: dict[str, Any] = {
        "k": int(k),
        "lat": lat,
        "lon": lon,
        "max_distance_m": max_distance_m,
        "id_dtype": id_dtype(index.stores.store_id),
    }
    shared = _Shared((index, where))
    if not is_dask:
        return _run(df, shared, nearest_rows, **args)
    return _map(df, nearest_rows, shared, **args)


def serving(df: Any, index: StoreIndex, *, lat: str = "lat", lon: str = "lon") -> Any:
    """The stores whose service area covers each row, as :meth:`StoreIndex.serving`, over a pandas or Dask DataFrame.

    Parameters
    ----------
    df : pandas.DataFrame or dask.dataframe.DataFrame
        Points, with latitude and longitude columns in degrees.
    index : StoreIndex
        The stores with their ``service_area``; shipped to each Dask worker once.
    lat, lon : str, default "lat", "lon"
        The coordinate columns.

    Returns
    -------
    pandas.DataFrame or dask.dataframe.DataFrame
        The same kind as ``df``: one row per (input row, serving store),
        nearest store first; the input's columns and index label, then
        ``store_id``, ``position`` and ``distance_m``.  Rows served by no
        store are left out.

    Raises
    ------
    InvalidParameterError
        ``df`` is not a DataFrame, a column is missing or not numeric, or the
        frame already has a result column.
    InvalidCoordinateError
        A coordinate is out of range or missing (at compute time for Dask).

    Examples
    --------
    >>> import pandas as pd, dask.dataframe as dd
    >>> import o2o_geo as og
    >>> import o2o_geo.dask as ogd
    >>> index = og.StoreIndex.from_records([
    ...     {"store_id": "ring", "lat": 0.0, "lon": 0.0, "service_area": 1500.0},
    ...     {"store_id": "wide", "lat": 0.0, "lon": 0.01, "service_area": 3000.0}])
    >>> pings = pd.DataFrame({"user": ["u1", "u2", "u3"], "lat": [0.0, 0.0, 0.0], "lon": [0.001, 0.05, 0.02]})
    >>> res = ogd.serving(dd.from_pandas(pings, npartitions=2), index).compute()
    >>> res[["user", "store_id"]].values.tolist()
    [['u1', 'ring'], ['u1', 'wide'], ['u3', 'wide']]
    """
    is_dask = _is_dask(df)
    if not isinstance(index, StoreIndex):
        raise InvalidParameterError(f"index must be a StoreIndex; got {type(index).__name__}")
    _check_columns(df, {"lat": lat, "lon": lon})
    check_free(df.columns, ("store_id", "position", "distance_m"))
    args: dict[str, Any] = {"lat": lat, "lon": lon, "id_dtype": id_dtype(index.stores.store_id)}
    shared = _Shared((index,))
    if not is_dask:
        return _run(df, shared, serving_rows, **args)
    return _map(df, serving_rows, shared, **args)


# ---------------------------------------------------------------- scoring
def rank_offers(
    df: Any,
    scorer: OfferScorer,
    k: int = 10,
    *,
    now: Any = None,
    user: str = "user_id",
    lat: str = "lat",
    lon: str = "lon",
) -> Any:
    """The k best offers for every row, as :meth:`OfferScorer.rank_many`, over a pandas or Dask DataFrame.

    Parameters
    ----------
    df : pandas.DataFrame or dask.dataframe.DataFrame
        One row per (user, position): a user id column and coordinates in degrees.
    scorer : OfferScorer
        Its index, offers, weights and user history; shipped to each Dask worker once.
    k : int, default 10
        Offers per row.
    now : float or datetime, optional
        Time of the ranking (epoch seconds or an aware datetime); default: the
        current time, read once when this function is called, so every
        partition ranks at the same instant.
    user, lat, lon : str, default "user_id", "lat", "lon"
        The columns.

    Returns
    -------
    pandas.DataFrame or dask.dataframe.DataFrame
        The same kind as ``df``: one row per (input row, offer), best first;
        the input's columns and index label, then ``rank``, ``offer_id``,
        ``store_id`` (where to redeem it), ``score`` and ``distance_m``.

    Raises
    ------
    InvalidParameterError
        ``df`` is not a DataFrame, a column is missing or not numeric, the
        frame already has a result column, or ``k`` or ``now`` is bad.
    InvalidCoordinateError
        A coordinate is out of range or missing (at compute time for Dask).

    Examples
    --------
    >>> import pandas as pd, dask.dataframe as dd
    >>> import o2o_geo as og
    >>> import o2o_geo.dask as ogd
    >>> index = og.StoreIndex(og.sample_stores())
    >>> offers = og.OfferSet([og.Offer("latte", "m-lucky", category="coffee", discount_rate=0.8),
    ...                       og.Offer("milk-tea", "m-teagarden", category="tea", discount_rate=0.9)])
    >>> scorer = og.OfferScorer(index, offers)
    >>> users = pd.DataFrame({"user_id": ["u1", "u2"], "lat": [31.2304, 31.2325], "lon": [121.4737, 121.4801]})
    >>> res = ogd.rank_offers(dd.from_pandas(users, npartitions=2), scorer, k=1, now=1767225600).compute()
    >>> res[["user_id", "offer_id", "store_id"]].values.tolist()
    [['u1', 'latte', 'lucky-09'], ['u2', 'latte', 'lucky-09']]
    """
    is_dask = _is_dask(df)
    if not isinstance(scorer, OfferScorer):
        raise InvalidParameterError(f"scorer must be an OfferScorer; got {type(scorer).__name__}")
    _check_columns(df, {"lat": lat, "lon": lon}, {"user": user})
    check_free(df.columns, ("rank", "offer_id", "store_id", "score", "distance_m"))
    t = time.time() if now is None else to_epoch_s(now, "now")
    scorer.rank_many([], np.empty(0), np.empty(0), now=t, k=k)  # checks k
    ids = (id_dtype(scorer.offers.offer_id), id_dtype(scorer.index.stores.store_id))
    args: dict[str, Any] = {"k": int(k), "now": t, "user": user, "lat": lat, "lon": lon, "id_dtypes": ids}
    shared = _Shared((scorer,))
    if not is_dask:
        return _run(df, shared, ranked_rows, **args)
    return _map(df, ranked_rows, shared, **args)


# ---------------------------------------------------------------- dispatch replay
def _with_seq(df: Any, partition_info: Mapping[str, Any] | None = None) -> Any:
    number = 0 if partition_info is None else int(partition_info["number"])
    return df.assign(**{SEQ: (number << 40) + np.arange(len(df), dtype=np.int64)})


def _user_dtype(dtype: Any, user: str) -> Any:
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_float_dtype(dtype):
        raise InvalidParameterError(f"column {user!r} (user) has dtype {dtype}; user ids are str or int")
    if pd.api.types.is_integer_dtype(dtype):
        return np.dtype(np.int64)
    if pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype):
        return str_dtype()
    return np.dtype(object)


def replay(
    df: Any,
    index: StoreIndex,
    offers: OfferSet,
    policy: PushPolicy | None = None,
    *,
    scorer: OfferScorer | None = None,
    user: str = "user_id",
    lat: str = "lat",
    lon: str = "lon",
    ts: str = "ts",
    npartitions: int | None = None,
    explanation: Explanation = "drop",
) -> Any:
    """Replay a ping log through the dispatcher, partitioned by user: the push decisions as a frame.

    A Dask frame is shuffled on the user column (skipped when it is already
    indexed by user with known divisions, e.g. after ``set_index("user_id")``),
    so that each user's pings are in one partition; each partition is then
    replayed by its own :class:`Dispatcher` on a fresh :class:`MemoryState`,
    in ``ts`` order (ties in the input's row order), exactly as
    :meth:`Dispatcher.on_locations`.  A pandas frame is one partition.

    What is exact and what is per partition:

    * A user's own state is exact, since a user lives in one partition:
      fence state, dwell, per-user caps (day, week, offer, merchant, never
      exceeded), gaps, cooldowns, quiet hours, the holdout, and redelivered
      pings (same ``event_id``), which are processed once.
    * Global limits are **per partition**: offer and merchant budgets and
      store capacity are counted by each partition's dispatcher separately,
      so across the result they can be exceeded up to ``npartitions`` times.
      Replay with ``npartitions=1`` (or a pandas frame) for exact global budgets.
    * The dispatcher feeds its pushes back into its scorer's history, whose
      cross-user features (``OfferScorer.CROSS_USER_FEATURES``: merchant
      rates, store popularity, the crowd's moves and hours) are shared by all
      users: they are learnt per partition, so scores can differ from a
      replay of all users by one dispatcher.  With no global limits and those
      weights at 0, each user's decisions equal those of a dispatcher
      replaying that user's pings alone.
    * ``push_id`` is the partition's dispatcher's id prefixed with the
      partition number (``"3:p17"``), unique in the result.

    Each partition builds its dispatcher (geofences, store time zones: give
    the stores a ``tz`` column to skip the look-ups), so prefer partitions of
    many pings.

    Parameters
    ----------
    df : pandas.DataFrame or dask.dataframe.DataFrame
        The pings: user id, ``lat``, ``lon`` (degrees) and ``ts`` (epoch
        seconds or a timezone-aware datetime64 column); optional
        ``event_id``, ``accuracy_m`` and ``tz`` columns are used when present.
    index : StoreIndex
        The stores (with ``merchant_id``); shipped to each Dask worker once.
    offers : OfferSet
        The offers.
    policy : PushPolicy, optional
        Default ``PushPolicy()``.
    scorer : OfferScorer, optional
        Over the same index and offers; each partition gets its own copy of
        its history (yours is not changed).  Default: a fresh scorer per
        partition, as :class:`Dispatcher` makes.
    user, lat, lon, ts : str
        The columns (``user`` may also be the name of the frame's index).
    npartitions : int, optional
        Partitions after the shuffle (default: those of ``df``).
    explanation : {"drop", "json"}, default "drop"
        Leave the per-feature explanation out, or add it as a JSON text column.

    Returns
    -------
    pandas.DataFrame or dask.dataframe.DataFrame
        One row per decision with the columns of :meth:`PushDecision.to_dict`
        (``push_id``, ``user_id``, ``offer_id``, ``store_id``, ``merchant_id``,
        ``score``, ``distance_m``, ``trigger``, ``holdout``, ``ts`` in epoch
        seconds, and ``explanation`` when asked for), each partition's
        decisions in replay order.

    Raises
    ------
    InvalidParameterError
        ``df`` is not a DataFrame, a column is missing or of the wrong type,
        or the dispatcher's inputs do not fit together.
    InvalidCoordinateError, InvalidRecordError
        A bad ping (at compute time for Dask), as :meth:`Dispatcher.on_locations`.

    Examples
    --------
    >>> import pandas as pd, dask.dataframe as dd
    >>> import o2o_geo as og
    >>> import o2o_geo.dask as ogd
    >>> index = og.StoreIndex(og.sample_stores())
    >>> offers = og.OfferSet([og.Offer("latte", "m-lucky", category="coffee", discount_rate=0.8)])
    >>> policy = og.PushPolicy(holdout_fraction=0.0, quiet_hours=None)
    >>> pings = pd.DataFrame({"user_id": ["u1", "u2", "u1"], "lat": [31.2325, 31.2325, 31.2326],
    ...                       "lon": [121.4801, 121.4801, 121.4801], "ts": [1767258000, 1767258060, 1767258600]})
    >>> res = ogd.replay(dd.from_pandas(pings, npartitions=2), index, offers, policy).compute()
    >>> res.sort_values("user_id")[["user_id", "offer_id", "store_id", "trigger"]].values.tolist()
    [['u1', 'latte', 'lucky-09', 'enter'], ['u2', 'latte', 'lucky-09', 'enter']]
    """
    is_dask = _is_dask(df)
    check_choice(explanation, "explanation", ("drop", "json"))
    check_count(npartitions, "npartitions", low=1, allow_none=True)
    policy = policy if policy is not None else PushPolicy()
    with Dispatcher(index, offers, scorer=scorer, policy=policy):  # checks that the inputs fit together
        pass
    by_index = isinstance(user, str) and user not in df.columns and df.index.name == user
    if by_index:
        _check_columns(df, {"lat": lat, "lon": lon}, {"ts": ts})
        user_dtype = df.index.dtype
    else:
        _check_columns(df, {"lat": lat, "lon": lon}, {"user": user, "ts": ts})
        user_dtype = df.dtypes[user]
    if SEQ in df.columns:
        raise InvalidParameterError(f"the frame must not have a column named {SEQ!r}")
    cols = PingColumns(
        user,
        lat,
        lon,
        ts,
        explanation == "json",
        user_dtype=_user_dtype(user_dtype, user),
        offer_dtype=id_dtype(offers.offer_id),
        store_dtype=id_dtype(index.stores.store_id),
        merchant_dtype=id_dtype(offers.merchant_id),
    )
    shared = _Shared((index, offers, policy, scorer))
    keep = [c for c in (user, lat, lon, ts, *OPTIONAL_PING_COLUMNS) if c in df.columns]
    if not is_dask:
        return _run(_with_seq(df[keep]), shared, replayed_rows, cols=cols)
    pings = df[keep].map_partitions(_with_seq, meta=_with_seq(df._meta[keep]))
    if not (by_index and df.known_divisions and npartitions in (None, df.npartitions)):
        if by_index:
            pings = pings.reset_index()
        pings = pings.shuffle(on=user, npartitions=npartitions or df.npartitions)
    return _map(pings, replayed_rows, shared, cols.decisions([]), cols=cols, numbered=True, clear_divisions=True)
