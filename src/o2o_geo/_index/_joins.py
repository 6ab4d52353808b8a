"""Tables in, tables out: the index's queries as joins on a pandas (or geopandas) frame of points.

Modelled on ``geopandas.sjoin_nearest(left, right, how="left", max_distance=..., distance_col=...)``:
the input's rows, index and columns come out as they went in, with the stores found
joined on; a row with no store keeps one output row, with NaN/None.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .._types import FloatArray, Where
from .._validate import as_items, as_latlon, import_optional
from ..errors import InvalidParameterError
from ._results import Matches, Neighbors, neighbors_like

if TYPE_CHECKING:
    from ._store_index import StoreIndex

__all__ = ["join_nearest", "join_serving", "join_within"]

#: Suffix of a store column whose name the input frame already has.
STORE_SUFFIX = "_store"


def _frame_points(df: Any, lat: str, lon: str, needed_by: str, distance_col: str) -> tuple[FloatArray, FloatArray]:
    """The frame's points: its ``lat``/``lon`` columns, else a GeoDataFrame's Point geometry (in EPSG:4326)."""
    for name, v in (("lat", lat), ("lon", lon), ("distance_col", distance_col)):
        if not isinstance(v, str) or not v:
            raise InvalidParameterError(f"{needed_by}: {name} must be a column name (a str); got {v!r:.80}")
    pd = import_optional("pandas", needed_by=needed_by, extra="geo")
    if not isinstance(df, pd.DataFrame):
        raise InvalidParameterError(f"{needed_by} takes a pandas DataFrame; got {type(df).__name__}")
    labels = np.asarray(df.index)
    if lat in df.columns and lon in df.columns:
        lat_a, lon_a, _ = as_latlon(df[lat].to_numpy(), df[lon].to_numpy(), labels=labels)
        return lat_a, lon_a
    geometry = getattr(df, "geometry", None) if hasattr(df, "crs") else None
    if geometry is None:
        raise InvalidParameterError(
            f"{needed_by}: the frame has no columns {lat!r} and {lon!r} (columns: {list(df.columns)}); "
            "name them with lat= and lon=, or pass a GeoDataFrame of Points"
        )
    from .._io import points_to_latlon

    return points_to_latlon(geometry, lambda i: f"row {labels[i]!r}", "row")


def _store_columns(index: StoreIndex, columns: Sequence[str] | None) -> list[str]:
    if columns is None:
        return []
    names = [columns] if isinstance(columns, str) else as_items(columns, "columns")
    have = index.stores.columns
    for name in names:
        if not isinstance(name, str) or name not in have:
            raise InvalidParameterError(f"columns= names {name!r}; the stores have {have}")
    return names


def _joined(df: Any, rows: np.ndarray, added: dict[str, np.ndarray]) -> Any:
    """``df``'s rows ``rows`` (index kept) with the ``added`` columns; store names that clash get a suffix."""
    out = df.iloc[rows].copy()
    for name, values in added.items():
        col = name if name not in df.columns else name + STORE_SUFFIX
        if col in out.columns:
            raise InvalidParameterError(f"the frame already has columns {name!r} and {col!r}; rename one")
        out[col] = values
    return out


def _distances(d: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(d), d, np.nan)


def join_nearest(
    index: StoreIndex,
    df: Any,
    k: int = 1,
    *,
    lat: str = "lat",
    lon: str = "lon",
    max_distance_m: float | None = None,
    where: Where = None,
    columns: Sequence[str] | None = None,
    distance_col: str = "distance_m",
    layout: Literal["long", "wide"] = "long",
) -> Any:
    """The input frame with its k nearest stores joined on, as ``geopandas.sjoin_nearest`` does.

    Every input row comes out with its index and columns; ``store_id``, the
    distance and the store ``columns`` asked for are added.  With k > 1 the
    long layout has one row per (input row, rank) and a ``rank`` column (0
    nearest); ``layout="wide"`` keeps one row per input row with columns
    ``store_id_1, distance_m_1, <column>_1, ...``.  A row with no store
    (none within ``max_distance_m``, none passing ``where``) keeps one row
    with None and NaN.  A store column whose name the frame already has
    gets the suffix ``_store``.

    Parameters
    ----------
    df : pandas.DataFrame or geopandas.GeoDataFrame
        The points: columns ``lat`` and ``lon`` (degrees), or else a
        GeoDataFrame's Point geometry (reprojected to EPSG:4326 if needed).
    k : int, default 1
        Stores per row.
    lat, lon : str
        Column names of the points.
    max_distance_m : float, optional
        Ignore stores farther than this.
    where : mapping, boolean mask or callable, optional
        Store filter, as in :meth:`nearest`.
    columns : sequence of str, optional
        Store columns to add (their values at query time).
    distance_col : str, default "distance_m"
        Name of the distance column (metres, WGS84 geodesic; NaN where no store).
    layout : {"long", "wide"}
        One row per (row, rank), or one row per input row.

    Returns
    -------
    pandas.DataFrame (a GeoDataFrame stays one)

    Raises
    ------
    InvalidParameterError
        Not a DataFrame, no point columns or geometry, an unknown store column, a bad layout.
    InvalidCoordinateError, InvalidRecordError
        A bad coordinate (named by its index label) or a geometry that is not a Point.

    Examples
    --------
    >>> import pandas as pd, o2o_geo as og
    >>> index = og.StoreIndex(og.sample_stores())
    >>> users = pd.DataFrame({"lat": [31.2304, 31.2243], "lon": [121.4737, 121.4768]}, index=["ada", "bo"])
    >>> out = index.join_nearest(users, columns=["category"])
    >>> out.index.tolist(), out[["store_id", "category"]].values.tolist()
    (['ada', 'bo'], [['lucky-09', 'coffee'], ['teagarden-01', 'tea']])
    >>> index.join_nearest(users, k=2, max_distance_m=700)[["rank", "store_id"]].values.tolist()
    [[0, 'lucky-09'], [0, 'teagarden-01'], [1, 'lucky-07']]
    """
    if layout not in ("long", "wide"):
        raise InvalidParameterError(f"layout must be 'long' or 'wide'; got {layout!r}")
    lat_a, lon_a = _frame_points(df, lat, lon, "join_nearest", distance_col)
    cols = _store_columns(index, columns)
    nb = index.nearest(lat_a, lon_a, k=k, max_distance_m=max_distance_m, where=where)
    n = lat_a.shape[0]
    k = nb.position.shape[1] if n else k
    if layout == "wide":
        added: dict[str, np.ndarray] = {}
        ids, dist = nb.store_id.reshape(n, k), nb.distance_m.reshape(n, k)
        values = {c: nb.store(c).reshape(n, k) for c in cols}
        for j in range(k):
            added[f"store_id_{j + 1}"] = ids[:, j]
            added[f"{distance_col}_{j + 1}"] = _distances(dist[:, j])
            for c in cols:
                added[f"{c}_{j + 1}"] = values[c][:, j]
        return _joined(df, np.arange(n), added)
    pos = nb.position.reshape(n, k)
    keep = pos >= 0
    keep[:, 0] = True  # a row with no store keeps one output row
    rows, ranks = np.nonzero(keep)
    flat = _sub(nb, rows, ranks)
    added = {}
    if k > 1:
        added["rank"] = ranks
    added["store_id"] = flat.store_id
    added[distance_col] = _distances(flat.distance_m)
    for c in cols:
        added[c] = flat.store(c)
    return _joined(df, rows, added)


def _sub(nb: Neighbors, rows: np.ndarray, ranks: np.ndarray) -> Neighbors:
    """The (row, rank) entries of a batch result as one flat result."""
    n = nb.position.shape[0]
    pos = nb.position.reshape(n, -1)[rows, ranks]
    dist = nb.distance_m.reshape(n, -1)[rows, ranks]
    return neighbors_like(nb, dist, pos)


def _left_join_matches(df: Any, m: Matches, cols: list[str], distance_col: str) -> Any:
    """One row per (input row, match), nearest first; rows with no match once, with NaN/None."""
    counts = m.counts
    lonely = np.flatnonzero(counts == 0)
    rows = np.concatenate([m.query, lonely])
    order = np.argsort(rows, kind="stable")  # matches keep their order; a lonely row slots in at its place
    rows = rows[order]
    pos = np.concatenate([m.position, np.full(lonely.shape[0], -1, dtype=np.int64)])[order]
    dist = np.concatenate([m.distance_m, np.full(lonely.shape[0], np.inf)])[order]
    flat = neighbors_like(m, dist, pos)
    added: dict[str, np.ndarray] = {"store_id": flat.store_id, distance_col: _distances(dist)}
    for c in cols:
        added[c] = flat.store(c)
    return _joined(df, rows, added)


def join_within(
    index: StoreIndex,
    df: Any,
    radius_m: float,
    *,
    lat: str = "lat",
    lon: str = "lon",
    where: Where = None,
    columns: Sequence[str] | None = None,
    distance_col: str = "distance_m",
) -> Any:
    """The input frame with every store within ``radius_m`` joined on, one row per (row, store).

    Rows keep their index and columns and their order, each row's stores
    nearest first; a row with no store keeps one row with None/NaN.  The
    parameters are those of :meth:`join_nearest`.

    Examples
    --------
    >>> import pandas as pd, o2o_geo as og
    >>> index = og.StoreIndex(og.sample_stores())
    >>> users = pd.DataFrame({"lat": [31.2304, 31.30], "lon": [121.4737, 121.60]}, index=["ada", "bo"])
    >>> out = index.join_within(users, radius_m=900)
    >>> out.index.tolist(), out["store_id"].isna().tolist()
    (['ada', 'ada', 'bo'], [False, False, True])
    >>> out["store_id"].iloc[:2].tolist()
    ['lucky-09', 'teagarden-07']
    """
    lat_a, lon_a = _frame_points(df, lat, lon, "join_within", distance_col)
    cols = _store_columns(index, columns)
    m = index.within(lat_a, lon_a, radius_m=radius_m, where=where)
    assert isinstance(m, Matches)  # arrays in: always a batch result
    return _left_join_matches(df, m, cols, distance_col)


def join_serving(
    index: StoreIndex,
    df: Any,
    *,
    lat: str = "lat",
    lon: str = "lon",
    columns: Sequence[str] | None = None,
    distance_col: str = "distance_m",
) -> Any:
    """The input frame with the stores whose service area contains each point, one row per (row, store).

    As :meth:`join_within`, for :meth:`serving`.

    Examples
    --------
    >>> import pandas as pd, o2o_geo as og
    >>> index = og.StoreIndex(og.sample_stores())
    >>> users = pd.DataFrame({"lat": [31.2304], "lon": [121.4737]}, index=["ada"])
    >>> out = index.join_serving(users, columns=["merchant_id"])
    >>> bool(len(out) > 1 and (out.index == "ada").all() and out["distance_m"].is_monotonic_increasing)
    True
    """
    lat_a, lon_a = _frame_points(df, lat, lon, "join_serving", distance_col)
    cols = _store_columns(index, columns)
    m = index.serving(lat_a, lon_a)
    assert isinstance(m, Matches)
    return _left_join_matches(df, m, cols, distance_col)
