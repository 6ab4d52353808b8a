"""Stores to and from pandas DataFrames and geopandas GeoDataFrames (any CRS in, EPSG:4326 out)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import shapely

from .._stores import StoreSet, export_columns
from .._types import FloatArray
from .._validate import import_optional
from ..errors import InvalidCoordinateError, InvalidParameterError, InvalidRecordError

__all__ = [
    "dataframe_to_stores",
    "geodataframe_to_stores",
    "points_to_latlon",
    "stores_to_dataframe",
    "stores_to_geodataframe",
]


def dataframe_to_stores(
    df: Any,
    *,
    store_id: str = "store_id",
    lat: str = "lat",
    lon: str = "lon",
    repair_service_areas: bool = False,
) -> StoreSet:
    """What :meth:`StoreSet.from_dataframe` does (documented there)."""
    if not (isinstance(df, Mapping) or (hasattr(df, "columns") and hasattr(df, "keys"))):
        raise InvalidParameterError(f"from_dataframe takes a pandas DataFrame; got {type(df).__name__}")
    names = list(df.keys())
    for req in (store_id, lat, lon):
        if not isinstance(req, str):
            raise InvalidParameterError(f"column names must be str; got {req!r:.80}")
        if req not in names:
            raise InvalidRecordError(f"no column {req!r}; columns are {names}")
    cols = {}
    for name in names:
        if name in (store_id, lat, lon):
            continue
        values = df[name]
        cols[str(name)] = values.to_numpy() if hasattr(values, "to_numpy") else np.asarray(values)
    ids = df[store_id].to_numpy() if hasattr(df[store_id], "to_numpy") else df[store_id]
    return StoreSet.from_columns(
        ids,
        _degrees_column(df[lat], lat),
        _degrees_column(df[lon], lon),
        repair_service_areas=repair_service_areas,
        **cols,
    )


def geodataframe_to_stores(
    gdf: Any,
    *,
    store_id: str = "store_id",
    repair_service_areas: bool = False,
) -> StoreSet:
    """What :meth:`StoreSet.from_geodataframe` does (documented there)."""
    gpd = import_optional("geopandas", needed_by="StoreSet.from_geodataframe", extra="geo")
    if not isinstance(gdf, gpd.GeoDataFrame):
        raise InvalidParameterError(
            f"from_geodataframe takes a geopandas GeoDataFrame; got {type(gdf).__name__} "
            "(use StoreSet.from_dataframe for a table with lat and lon columns)"
        )
    names = list(gdf.columns)
    if store_id not in names:
        raise InvalidRecordError(f"no column {store_id!r}; columns are {names}")
    try:
        points = gdf.geometry
    except AttributeError:
        raise InvalidRecordError(
            f"the GeoDataFrame has no active geometry column; columns are {names} (call set_geometry first)"
        ) from None
    ids = gdf[store_id]
    lat, lon = points_to_latlon(points, lambda i: f"store {ids.iloc[i : i + 1].tolist()[0]!r} (row {i})", "store")
    cols: dict[str, Any] = {}
    for name in names:
        if name == points.name or name in ("lat", "lon"):
            continue
        col = gdf[name]
        if name == "service_area" and isinstance(col, gpd.GeoSeries) and not _is_wgs84(col.crs):
            col = col.to_crs("EPSG:4326")
        cols[name] = col
    cols["lat"], cols["lon"] = lat, lon
    return dataframe_to_stores(cols, store_id=store_id, repair_service_areas=repair_service_areas)


def stores_to_dataframe(stores: StoreSet) -> Any:
    """What :meth:`StoreSet.to_dataframe` does (documented there)."""
    pd = import_optional("pandas", needed_by="StoreSet.to_dataframe", extra="geo")
    cols = export_columns(stores)
    # pd.Series keeps the dtype: pandas >= 3 would turn object columns of str into its str dtype (None -> NaN)
    return pd.DataFrame({name: pd.Series(values, dtype=values.dtype, copy=True) for name, values in cols.items()})


def stores_to_geodataframe(stores: StoreSet) -> Any:
    """What :meth:`StoreSet.to_geodataframe` does (documented there)."""
    gpd = import_optional("geopandas", needed_by="StoreSet.to_geodataframe", extra="geo")
    if "geometry" in stores.columns:
        raise InvalidRecordError(
            "the store set has a column named 'geometry', which would clash with the Points; rename it first"
        )
    df = stores_to_dataframe(stores)
    return gpd.GeoDataFrame(df, geometry=gpd.points_from_xy(stores.lon, stores.lat), crs="EPSG:4326")


def _degrees_column(values: Any, name: str) -> FloatArray:
    """A latitude or longitude column as float64; missing values (None, NaN, pandas NA) become NaN.

    A value that is not a number raises InvalidCoordinateError naming the
    column and the first offending row (NaN is left to the coordinate checks).
    """
    dtype = getattr(values, "dtype", None)
    if dtype is not None and getattr(dtype, "kind", "O") in "iuf":  # numpy or pandas nullable numbers
        if hasattr(values, "to_numpy"):
            return np.asarray(values.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
        return np.asarray(values, dtype=np.float64)
    items = values.tolist() if hasattr(values, "tolist") else list(values)
    out = np.empty(len(items), dtype=np.float64)
    for i, v in enumerate(items):
        if v is None or type(v).__name__ == "NAType":
            out[i] = np.nan
            continue
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise InvalidCoordinateError(f"column {name!r} row {i}: {v!r} is not a number of degrees")
        out[i] = float(v)
    return out


def points_to_latlon(points: Any, label: Callable[[int], str], noun: str) -> tuple[FloatArray, FloatArray]:
    """Latitudes and longitudes of a GeoSeries of Points, reprojected to EPSG:4326 from any other CRS.

    A missing, empty or non-Point geometry raises :class:`InvalidRecordError`
    naming ``label(row)``; ``noun`` says what each row is (``"store"``, ``"row"``).
    """
    if not _is_wgs84(points.crs):
        points = points.to_crs("EPSG:4326")
    geoms = np.asarray(points.array, dtype=object)
    kind = shapely.get_type_id(geoms)  # 0 is Point, -1 is missing
    bad = (kind != 0) | shapely.is_empty(geoms)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        what = "missing" if kind[i] == -1 else f"{'an empty' if kind[i] == 0 else 'a'} {geoms[i].geom_type}"
        raise InvalidRecordError(
            f"geometry of {label(i)} is {what}; every {noun} must be a Point "
            "(for shapes, take gdf.representative_point() first)"
        )
    return np.asarray(shapely.get_y(geoms), dtype=np.float64), np.asarray(shapely.get_x(geoms), dtype=np.float64)


def _is_wgs84(crs: Any) -> bool:
    """Whether a GeoSeries' CRS needs no reprojection: none (taken as lon/lat degrees) or WGS84 lon/lat."""
    return crs is None or bool(crs.equals("EPSG:4326", ignore_axis_order=True))
