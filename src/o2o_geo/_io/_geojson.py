"""Stores to and from GeoJSON FeatureCollections of Points, and plain JSON values of any column."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import shapely
from shapely.geometry import mapping as geometry_to_mapping

from .._stores import CORE_COLUMNS, StoreSet, export_columns
from .._validate import check_path, file_errors
from ..errors import InvalidRecordError

__all__ = ["geojson_to_stores", "json_value", "stores_to_geojson"]


def geojson_to_stores(obj: Any, *, repair_service_areas: bool = False) -> StoreSet:
    """What :meth:`StoreSet.from_geojson` does (documented there)."""
    if isinstance(obj, (str, os.PathLike)):
        text = str(obj)
        if isinstance(obj, os.PathLike) or not text.lstrip().startswith("{"):
            where = check_path(obj)
            with file_errors(where, "read the GeoJSON file"), open(where, encoding="utf-8") as fh:
                try:
                    text = fh.read()
                except UnicodeDecodeError as exc:
                    raise InvalidRecordError(f"{where!r} is not UTF-8 text: {exc}") from None
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidRecordError(f"not valid GeoJSON text: {exc}") from exc
    if not isinstance(obj, Mapping) or obj.get("type") != "FeatureCollection":
        raise InvalidRecordError("expected a GeoJSON FeatureCollection of Point features")
    records = []
    for row, feat in enumerate(obj.get("features", [])):
        geom = feat.get("geometry") or {}
        if geom.get("type") != "Point":
            raise InvalidRecordError(f"feature {row} has geometry {geom.get('type')!r}; stores must be Points")
        coords = geom.get("coordinates") or []
        if len(coords) < 2:
            raise InvalidRecordError(f"feature {row} has point coordinates {coords!r}; expected [lon, lat]")
        props = dict(feat.get("properties") or {})
        if "store_id" not in props:
            if feat.get("id") is None:
                raise InvalidRecordError(f"feature {row} has neither an 'id' nor a 'store_id' property")
            props["store_id"] = feat["id"]
        props["lon"], props["lat"] = coords[0], coords[1]
        records.append(props)
    return StoreSet.from_records(records, repair_service_areas=repair_service_areas)


def stores_to_geojson(stores: StoreSet) -> dict[str, Any]:
    """What :meth:`StoreSet.to_geojson` does (documented there)."""
    cols = export_columns(stores)
    ids = stores.store_id.tolist()
    lon = stores.lon.tolist()
    lat = stores.lat.tolist()
    props = {name: _json_column(values, name, ids) for name, values in cols.items() if name not in CORE_COLUMNS[:3]}
    features = [
        {
            "type": "Feature",
            "id": sid,
            "geometry": {"type": "Point", "coordinates": [lon[i], lat[i]]},
            "properties": {name: values[i] for name, values in props.items()},
        }
        for i, sid in enumerate(ids)
    ]
    return {"type": "FeatureCollection", "features": features}


def _json_column(values: np.ndarray, name: str, ids: list[Any]) -> list[Any]:
    """A column as plain JSON values (see :meth:`StoreSet.to_geojson`)."""
    if values.dtype.kind in "iub":
        return list(values.tolist())
    if values.dtype.kind == "f":
        return [v if math.isfinite(v) else None for v in values.tolist()]
    return [json_value(v, name, sid) for v, sid in zip(values.tolist(), ids, strict=True)]


def json_value(v: Any, name: str, sid: Any) -> Any:
    if isinstance(v, np.generic):  # first: np.float64 and np.str_ are also float and str
        if isinstance(v, np.datetime64):
            return None if np.isnat(v) else json_value(v.astype("datetime64[us]").item(), name, sid)
        return json_value(v.item(), name, sid)
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if type(v).__name__ in ("NAType", "NaTType"):  # pandas' missing values
        return None
    if isinstance(v, (dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, shapely.Geometry):
        return json_value(geometry_to_mapping(v), name, sid)
    if isinstance(v, Mapping):
        return {str(k): json_value(x, name, sid) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [json_value(x, name, sid) for x in (v.tolist() if isinstance(v, np.ndarray) else v)]
    raise InvalidRecordError(
        f"column {name!r} of store {sid!r} holds a {type(v).__name__} ({v!r:.60}), which has no JSON form; "
        "convert the column to numbers or text first"
    )
