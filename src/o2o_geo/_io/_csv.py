"""Stores to and from CSV text: numbers when a column is all numbers, service areas as WKT or radii."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import shapely

from .._stores import StoreSet, area_from_text
from .._validate import check_path, file_errors
from ..errors import DuplicateStoreError, InvalidCoordinateError, InvalidParameterError, InvalidRecordError

__all__ = ["csv_to_stores", "stores_to_csv"]


def csv_to_stores(
    path: str | os.PathLike[str],
    *,
    store_id: str = "store_id",
    lat: str = "lat",
    lon: str = "lon",
    repair_service_areas: bool = False,
) -> StoreSet:
    """What :meth:`StoreSet.from_csv` does (documented there)."""
    path = check_path(path)
    for name in (store_id, lat, lon):
        if not isinstance(name, str):
            raise InvalidParameterError(f"column names must be str; got {name!r}")
    with file_errors(path, "read the store CSV"), open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        try:
            if reader.fieldnames is None:
                raise InvalidRecordError(f"{path!r} is empty: no header row")
            rows, lines = [], []
            for row in reader:
                rows.append(row)
                lines.append(reader.line_num)  # the file line a record ends on (quoted cells may span lines)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise InvalidRecordError(f"{path!r} line {reader.line_num + 1} is not UTF-8 CSV text: {exc}") from None
        fields = list(reader.fieldnames)
    for req in (store_id, lat, lon):
        if req not in fields:
            raise InvalidRecordError(f"{os.fspath(path)!r} has no column {req!r}; columns are {fields}")

    def at(i: int) -> str:  # a data row's place: the file line its record ends on (the header is line 1)
        return f"{os.fspath(path)!r} line {lines[i]}"

    cols: dict[str, Any] = {}
    for name in fields:
        raw = [r[name] for r in rows]
        if name == "service_area":
            cols[name] = [area_from_text(v, at(i)) for i, v in enumerate(raw)]
        elif name == store_id:
            cols[name] = [int(v) for v in raw] if raw and all(_is_int_literal(v) for v in raw) else raw
        else:
            cols[name] = _parse_cells(raw, name, name in (lat, lon), at)
    ids = cols.pop(store_id)
    la = cols.pop(lat)
    lo = cols.pop(lon)
    # what from_columns would name by row, named here by file line
    for name, values, bound in ((lat, la, 90.0), (lon, lo, 180.0)):
        bad = np.flatnonzero(~(np.abs(values) <= bound))
        if bad.size:
            i = int(bad[0])
            what = f"outside [-{bound:g}, {bound:g}]" if math.isfinite(values[i]) else "not a finite number"
            raise InvalidCoordinateError(f"{at(i)} (store_id {ids[i]!r}): {name} = {float(values[i])!r} is {what}")
    first: dict[Any, int] = {}
    for i, sid in enumerate(ids):
        if sid in first:
            raise DuplicateStoreError(
                f"store_id {sid!r} appears twice ({os.fspath(path)!r} lines {lines[first[sid]]} and {lines[i]})"
            )
        first[sid] = i
    return StoreSet.from_columns(ids, la, lo, repair_service_areas=repair_service_areas, **cols)


def stores_to_csv(stores: StoreSet, path: str | os.PathLike[str]) -> None:
    """What :meth:`StoreSet.to_csv` does (documented there)."""
    names = stores.columns
    path = check_path(path)
    with file_errors(path, "write the store CSV"), open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(names)
        columns = [_csv_cells(stores, name) for name in names]
        writer.writerows(zip(*columns, strict=True))


def _is_int_literal(text: str) -> bool:
    t = text.strip()
    return t.lstrip("-").isdigit()


def _parse_cells(raw: list[str], name: str, required_float: bool, at: Callable[[int], str]) -> Any:
    """A CSV column: numbers when every non-empty cell is one (empty cells NaN), else text.

    ``at(i)`` names data row ``i``'s place in the file (for the error of a required number).
    """
    try:
        if required_float or not any(v.strip() for v in raw):
            return np.asarray([float(v) for v in raw], dtype=np.float64)
        return np.asarray([float(v) if v.strip() else np.nan for v in raw], dtype=np.float64)
    except ValueError:
        if required_float:
            bad = next(i for i, v in enumerate(raw) if not _is_float(v))
            raise InvalidRecordError(f"{at(bad)}: column {name!r} = {raw[bad]!r} is not a number") from None
        return np.asarray(raw, dtype=object)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv_cells(stores: StoreSet, name: str) -> list[str]:
    """Column ``name`` as CSV text cells (see :func:`stores_to_csv`)."""
    if name == "service_area":
        cells = []
        for geom, radius in zip(stores.service_area_geometry.tolist(), stores.service_radius_m.tolist(), strict=True):
            if geom is not None:
                cells.append(shapely.to_wkt(geom, rounding_precision=-1))
            else:
                cells.append(repr(radius) if radius >= 0.0 else "")  # NaN: no service area
        return cells
    values = stores[name]
    if values.dtype.kind == "f":
        return [repr(v) for v in values.tolist()]  # repr(nan) is 'nan', which float() reads back
    return ["" if v is None else (repr(v) if isinstance(v, float) else str(v)) for v in values.tolist()]
