"""The command line: ``o2o-geo`` (or ``python -m o2o_geo``) on files.

Commands
--------
``demo``
    The sample store chain in Shanghai (no files, no extra packages).
``nearest STORES PINGS``
    The k nearest stores of every ping (:meth:`StoreIndex.nearest`), streamed
    in chunks, one output row per ping.
``rank STORES OFFERS USERS``
    The k best offers of every user (:meth:`OfferScorer.rank_many`), with an
    optional event log as the users' history.
``replay STORES OFFERS PINGS``
    A ping log through :meth:`Dispatcher.on_locations` in time order, outcome
    events recorded between the pings, the decisions and the funnel report.

Files are read and written by extension: ``.csv``; ``.parquet``/``.pq``
(pyarrow); ``.geojson``/``.json`` (a GeoJSON FeatureCollection of Points,
whose geometry gives ``lat``/``lon``, or a JSON array of objects).

This module sits at the edge of the package: ``import o2o_geo`` never imports
it, and it imports pandas (the ``cli`` extra), pyarrow (Parquet) and tqdm
(the progress bar) only when a command needs them.  A missing one is a
one-line error, or for tqdm, no bar.

Errors
------
A user's mistake prints one line ``o2o-geo: error: ...`` on stderr, never a
traceback, and the exit status says whose it is:

* 2, the command line: an unknown option or bad option value, a missing input
  file, an unsupported extension, a missing optional package;
* 1, the data: a missing column, a bad coordinate, bad JSON, an invalid
  record, any :class:`~o2o_geo.errors.O2OGeoError`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, NoReturn

import numpy as np

from ._dispatch import Dispatcher, PushDecision
from ._history import Event
from ._index import StoreIndex, missing_values_message
from ._offers import OfferSet
from ._policy import Budget, PushPolicy, zone
from ._scoring import OfferScorer
from ._state import MemoryState, SQLiteState
from ._stores import StoreSet
from .errors import O2OGeoError

__all__ = ["main"]

PROG = "o2o-geo"
#: Rows handled per step by command: bounds the memory of a streamed file, sets the progress bar's pace.
DEFAULT_CHUNK_ROWS = {"nearest": 200_000, "rank": 20_000, "replay": 20_000}
_INPUT_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".geojson": "json", ".json": "json"}
#: The decision columns written by ``replay``: every field of PushDecision but its explanation (``--explain``).
_DECISION_COLUMNS = tuple(f.name for f in dataclasses.fields(PushDecision) if f.name != "explanation")
_EVENT_FIELDS = tuple(f.name for f in dataclasses.fields(Event))
_POLICY_FIELDS = tuple(f.name for f in dataclasses.fields(PushPolicy))


# ---------------------------------------------------------------- errors
class _Fail(Exception):
    """A user's mistake: one line on stderr and an exit status (1 data, 2 command line)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def _usage(message: str) -> _Fail:
    return _Fail(message, 2)


def _data(message: str) -> _Fail:
    return _Fail(message, 1)


def _say_error(message: str) -> None:
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)


@contextlib.contextmanager
def _about(what: str) -> Iterator[None]:
    """Name the file (or option) in any library error raised while reading it."""
    try:
        yield
    except O2OGeoError as exc:
        raise _data(f"{what}: {exc}") from exc


# ---------------------------------------------------------------- optional packages
def _need_pandas(command: str) -> Any:
    try:
        import pandas as pd
    except ImportError as exc:
        raise _usage(f"'{command}' needs pandas ({exc}); install it with: pip install 'o2o_geo[cli]'") from exc
    return pd


def _need_pyarrow(path: str) -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise _usage(
            f"{path}: Parquet files need pyarrow ({exc}); install it with: pip install pyarrow (or 'o2o_geo[cli]')"
        ) from exc
    return pa, pq


# ---------------------------------------------------------------- argument types
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1; got {value}")
    return value


def _metres(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of metres") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 metres; got {text}")
    return value


def _where_item(text: str) -> tuple[str, list[str]]:
    column, sep, value = text.partition("=")
    if not sep or not column.strip():
        raise argparse.ArgumentTypeError(f"takes COLUMN=VALUE (e.g. category=coffee); got {text!r}")
    return column.strip(), value.split(",")


def _parse_time(value: Any) -> float:
    """Epoch seconds from a number or from ISO-8601 text with a UTC offset; ValueError with the reason."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a time")
    if isinstance(value, (int, float)):
        out = float(value)
    elif isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{value.isoformat()!r} has no UTC offset")
        out = value.timestamp()
    elif isinstance(value, str):
        text = value.strip()
        try:
            out = float(text)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(text)
            except ValueError:
                raise ValueError(
                    f"{value!r} is neither epoch seconds nor an ISO-8601 time (e.g. 2026-01-01T09:00:00+08:00)"
                ) from None
            if parsed.tzinfo is None or parsed.utcoffset() is None:
                raise ValueError(f"{value!r} has no UTC offset; add one, e.g. {text}+08:00 or {text}Z") from None
            out = parsed.timestamp()
    else:
        raise ValueError(f"{value!r} is not a time")
    if not math.isfinite(out):
        raise ValueError(f"{value!r} is not a finite time")
    return out


def _time_arg(text: str) -> float:
    try:
        return _parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# ---------------------------------------------------------------- files
def _input_format(path: str, role: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    fmt = _INPUT_FORMATS.get(ext)
    if fmt is None:
        raise _usage(
            f"{role} {path!r}: unknown file extension {ext or '(none)'!r}; use .csv, .parquet/.pq or .geojson/.json"
        )
    if not os.path.exists(path):
        raise _usage(f"{role} {path!r}: no such file")
    if not os.path.isfile(path):
        raise _usage(f"{role} {path!r}: not a file")
    if fmt == "parquet":
        _need_pyarrow(path)
    return fmt


def _output_format(path: str | None, role: str, *, geo: bool) -> str:
    """``csv``, ``parquet``, ``geojson`` (tables with points) or ``json`` (an array of records)."""
    if path is None:
        return "csv"
    ext = os.path.splitext(path)[1].lower()
    if ext == ".csv":
        fmt = "csv"
    elif ext in (".parquet", ".pq"):
        fmt = "parquet"
    elif ext in (".geojson", ".json") and geo:
        fmt = "geojson"
    elif ext == ".json":
        fmt = "json"
    elif ext == ".geojson":
        raise _usage(f"{role} {path!r}: this table has no coordinates for GeoJSON; write .csv, .parquet or .json")
    else:
        allowed = ".csv, .parquet/.pq or .geojson/.json" if geo else ".csv, .parquet/.pq or .json"
        raise _usage(f"{role} {path!r}: unknown file extension {ext or '(none)'!r}; use {allowed}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise _usage(f"{role} {path!r}: the folder {os.path.dirname(path) or '.'!r} does not exist")
    if os.path.isdir(path):
        raise _usage(f"{role} {path!r} is a folder")
    if fmt == "parquet":
        _need_pyarrow(path)
    return fmt


@dataclasses.dataclass(frozen=True)
class _Source:
    """An input file: its name as given and its format, to name rows in messages."""

    path: str
    fmt: str

    def row(self, i: int) -> str:
        """Where data row ``i`` (0-based) is: a CSV's file line (the header is line 1), else the 0-based row.

        The one convention of every message: a text file's place is its 1-based line, a table's
        (Parquet, a DataFrame, columns) its 0-based row, as ``df.iloc`` counts.
        """
        return f"{self.path} line {i + 2}" if self.fmt == "csv" else f"{self.path} row {i}"


@contextlib.contextmanager
def _reading(path: str) -> Iterator[None]:
    """Turn the parsers' errors into one-line data errors naming the file."""
    try:
        yield
    except _Fail:
        raise
    except O2OGeoError:
        raise
    except UnicodeDecodeError as exc:
        raise _data(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise _data(f"{path}: not valid JSON: {exc}") from exc
    except Exception as exc:
        pd = sys.modules.get("pandas")
        if pd is not None and isinstance(exc, pd.errors.EmptyDataError):
            raise _data(f"{path} is empty: no header row") from exc
        if _is_parse_error(exc):
            raise _data(f"{path}: cannot read it: {exc}") from exc
        raise


def _is_parse_error(exc: Exception) -> bool:
    """The read errors of pandas, pyarrow and csv (not bugs of ours)."""
    import csv

    if isinstance(exc, csv.Error):
        return True
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(exc, (pd.errors.ParserError, pd.errors.EmptyDataError)):
        return True
    pa = sys.modules.get("pyarrow")
    if pa is not None and isinstance(exc, pa.ArrowException):
        return True
    return False


def _count_csv_rows(path: str) -> int:
    """Data rows of a CSV file (lines after the header; a quoted line break counts as a row)."""
    n, last = 0, b"\n"
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            n += block.count(b"\n")
            last = block[-1:]
    return max(n + (last != b"\n") - 1, 0)


def _json_rows(path: str, *, lat: str, lon: str, id_column: str | None) -> list[dict[str, Any]]:
    """Rows of a GeoJSON FeatureCollection of Points (properties, lat/lon, the id) or of a JSON array of objects."""
    with _reading(path), open(path, encoding="utf-8") as fh:
        obj = json.load(fh)
    if isinstance(obj, list):
        for i, rec in enumerate(obj):
            if not isinstance(rec, dict):
                raise _data(f"{path}: item {i} of the JSON array is a {type(rec).__name__}, not an object")
        return [dict(rec) for rec in obj]
    if not isinstance(obj, dict) or obj.get("type") != "FeatureCollection" or not isinstance(obj.get("features"), list):
        raise _data(f"{path}: expected a GeoJSON FeatureCollection of Points or a JSON array of objects")
    rows = []
    for i, feat in enumerate(obj["features"]):
        geom = feat.get("geometry") if isinstance(feat, dict) else None
        if not isinstance(geom, dict) or geom.get("type") != "Point":
            kind = geom.get("type") if isinstance(geom, dict) else None
            raise _data(f"{path}: feature {i} has geometry {kind!r}; only Points have a lat/lon")
        coords = geom.get("coordinates")
        if not isinstance(coords, list) or len(coords) < 2:
            raise _data(f"{path}: feature {i} has point coordinates {coords!r}; expected [lon, lat]")
        props = feat.get("properties") or {}
        if not isinstance(props, dict):
            raise _data(f"{path}: feature {i} has properties {props!r}; expected an object")
        row = dict(props)
        if id_column is not None and id_column not in row and feat.get("id") is not None:
            row[id_column] = feat["id"]
        row[lat], row[lon] = coords[1], coords[0]
        rows.append(row)
    return rows


def _column_array(pd: Any, values: list[Any]) -> Any:
    """A pandas array for JSON values: nullable ints, floats, strings or booleans when uniform, else objects."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pd.array(values, dtype="boolean")
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pd.array(values, dtype="Int64")
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return pd.array([None if v is None else float(v) for v in values], dtype="Float64")
    if present and all(isinstance(v, str) for v in present):
        return pd.array(values, dtype=pd.StringDtype())
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _frame_from_rows(pd: Any, rows: list[dict[str, Any]]) -> Any:
    names: dict[str, None] = {}
    for rec in rows:
        names.update(dict.fromkeys(rec))
    data = {name: _column_array(pd, [rec.get(name) for rec in rows]) for name in names}
    return pd.DataFrame(data, index=pd.RangeIndex(len(rows)))


def _nullable_types(pa: Any, pd: Any) -> Callable[[Any], Any]:
    """Map pyarrow types to pandas dtypes that keep ints as ints when a value is missing."""
    mapping = {
        pa.int8(): pd.Int8Dtype(),
        pa.int16(): pd.Int16Dtype(),
        pa.int32(): pd.Int32Dtype(),
        pa.int64(): pd.Int64Dtype(),
        pa.uint8(): pd.UInt8Dtype(),
        pa.uint16(): pd.UInt16Dtype(),
        pa.uint32(): pd.UInt32Dtype(),
        pa.uint64(): pd.UInt64Dtype(),
        pa.bool_(): pd.BooleanDtype(),
        pa.float32(): pd.Float32Dtype(),
        pa.float64(): pd.Float64Dtype(),
        pa.string(): pd.StringDtype(),
        pa.large_string(): pd.StringDtype(),
    }
    return mapping.get


def _csv_options(pd: Any) -> dict[str, Any]:
    """Nullable dtypes (ints stay ints next to missing values) and exact floats (pandas 3's default)."""
    options: dict[str, Any] = {"dtype_backend": "numpy_nullable"}
    if int(pd.__version__.split(".")[0]) < 3:
        options["float_precision"] = "round_trip"
    return options


def _read_frame(pd: Any, src: _Source, *, lat: str, lon: str, id_column: str | None = None) -> Any:
    """A whole table file as a DataFrame (nullable dtypes: ints stay ints next to missing values)."""
    with _reading(src.path):
        if src.fmt == "csv":
            return pd.read_csv(src.path, **_csv_options(pd))
        if src.fmt == "parquet":
            pa, pq = _need_pyarrow(src.path)
            return pq.read_table(src.path).to_pandas(types_mapper=_nullable_types(pa, pd))
    return _frame_from_rows(pd, _json_rows(src.path, lat=lat, lon=lon, id_column=id_column))


def _chunks(
    pd: Any, src: _Source, size: int, *, lat: str, lon: str, id_column: str | None
) -> tuple[Any, Callable[[], int], Iterator[Any]]:
    """A file read ``size`` rows at a time: (its columns as an empty frame, a row counter, the chunks)."""
    if src.fmt == "csv":
        with _reading(src.path):
            head = pd.read_csv(src.path, nrows=0, **_csv_options(pd))

        def csv_chunks() -> Iterator[Any]:
            with _reading(src.path):
                yield from pd.read_csv(src.path, chunksize=size, **_csv_options(pd))

        return head, lambda: _count_csv_rows(src.path), csv_chunks()
    if src.fmt == "parquet":
        pa, pq = _need_pyarrow(src.path)
        types = _nullable_types(pa, pd)
        with _reading(src.path):
            pf = pq.ParquetFile(src.path)
            head = pf.schema_arrow.empty_table().to_pandas(types_mapper=types)

        def parquet_chunks() -> Iterator[Any]:
            with _reading(src.path):
                for batch in pf.iter_batches(batch_size=size):
                    yield pa.Table.from_batches([batch]).to_pandas(types_mapper=types)

        return head, lambda: int(pf.metadata.num_rows), parquet_chunks()
    frame = _frame_from_rows(pd, _json_rows(src.path, lat=lat, lon=lon, id_column=id_column))
    return frame.iloc[:0], lambda: len(frame), (frame.iloc[i : i + size] for i in range(0, len(frame), size))


def _need_columns(src: _Source, columns: Sequence[str], wanted: Mapping[str, str]) -> None:
    """Every ``option -> column`` named is in the file."""
    for option, column in wanted.items():
        if column not in columns:
            raise _data(f"{src.path} has no column {column!r} (name it with {option}); its columns are {list(columns)}")


# ---------------------------------------------------------------- values
def _py(value: Any) -> Any:
    """A cell as a plain Python value; missing (None, NaN, NA, NaT) as None."""
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        return [_py(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_py(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    return value


def _records(df: Any) -> list[dict[str, Any]]:
    names = [str(c) for c in df.columns]
    columns = [[_py(v) for v in df[c].to_list()] for c in df.columns]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)] if names else []


def _coords(df: Any, lat: str, lon: str, src: _Source, first_row: int) -> tuple[np.ndarray, np.ndarray]:
    """Checked float latitudes and longitudes of a chunk whose first row is data row ``first_row``."""
    pd = sys.modules["pandas"]
    out = []
    for name in (lat, lon):
        col = df[name]
        if pd.api.types.is_bool_dtype(col.dtype):
            raise _data(f"{src.path} column {name!r} holds true/false, not degrees")
        values = pd.to_numeric(col, errors="coerce") if not pd.api.types.is_numeric_dtype(col.dtype) else col
        out.append(np.asarray(values.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64))
    la, lo = out
    bad = ~((np.abs(la) <= 90.0) & (np.abs(lo) <= 180.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raw_lat, raw_lon = _py(df[lat].iloc[i]), _py(df[lon].iloc[i])
        where = src.row(first_row + i)
        if not math.isfinite(la[i]):
            problem = f"latitude ({lat}) = {raw_lat!r} is missing or not a number"
        elif abs(la[i]) > 90.0:
            problem = f"latitude ({lat}) = {raw_lat!r} is outside [-90, 90]"
            if abs(la[i]) <= 180.0:
                problem += "; are latitude and longitude swapped? name the columns with --lat/--lon"
        elif not math.isfinite(lo[i]):
            problem = f"longitude ({lon}) = {raw_lon!r} is missing or not a number"
        else:
            problem = f"longitude ({lon}) = {raw_lon!r} is outside [-180, 180]; wrap it: ((lon + 180) % 360) - 180"
        raise _data(f"{where}: {problem}")
    return la, lo


def _ids(df: Any, column: str, src: _Source, what: str) -> list[Any]:
    """An id column (user ids) as Python str or int, none missing."""
    out = [_py(v) for v in df[column].to_list()]
    for i, v in enumerate(out):
        if isinstance(v, float) and v.is_integer():
            out[i] = v = int(v)
        if v is None or isinstance(v, bool) or not isinstance(v, (str, int)):
            problem = "is missing" if v is None else f"= {v!r} is not a str or an int"
            raise _data(f"{src.row(i)}: {what} ({column}) {problem}")
    return out


def _times(df: Any, column: str, src: _Source) -> np.ndarray:
    """Epoch seconds from numbers, ISO-8601 text with offsets, or a timezone-aware timestamp column."""
    pd = sys.modules["pandas"]
    col = df[column]
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        if getattr(col.dtype, "tz", None) is None:
            raise _data(f"{src.path} column {column!r} holds timestamps without a time zone; store them in UTC")
        seconds = (col - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
        out = np.asarray(seconds.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
    elif pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        out = np.asarray(col.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
    else:
        out = np.empty(len(col))
        for i, v in enumerate(col.to_list()):
            v = _py(v)
            if v is None:
                out[i] = math.nan
                continue
            try:
                out[i] = _parse_time(v)
            except ValueError as exc:
                raise _data(f"{src.row(i)}: {column} {exc}") from None
    bad = ~np.isfinite(out)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _data(f"{src.row(i)}: {column} is missing or not a finite time")
    return out


class _Ids:
    """Known ids (of offers, stores, merchants or users), to read an id typed differently in another file.

    A CSV file reads ``17`` as an int where a JSON file has ``"17"``; an id
    that is not known as given but whose text is, is read as the known one.
    """

    def __init__(self, values: Any) -> None:
        self._known: dict[str, Any] = {}
        for v in values:
            v = _py(v)
            if v is not None:
                self._known.setdefault(_id_text(v), v)

    def __call__(self, value: Any) -> Any:
        value = _py(value)
        if value is None:
            return None
        return self._known.get(_id_text(value), value)

    def __contains__(self, value: Any) -> bool:
        return _id_text(_py(value)) in self._known


def _id_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# ---------------------------------------------------------------- output
class _Sink:
    """Where a table goes: stdout, or a file written under a temporary name and renamed when complete.

    ``write`` may be called once per chunk; ``commit`` finishes the file (a
    failed run leaves no partial file behind).
    """

    def __init__(self, path: str | None, fmt: str) -> None:
        self.path, self.fmt = path, fmt
        self._first = True
        self._wrote_json = False
        self._parquet: Any = None
        if path is None:
            self._tmp: str | None = None
            self._fh: Any = sys.stdout
        else:
            folder, name = os.path.split(os.path.abspath(path))
            self._tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
            self._fh = None
            if fmt != "parquet":
                try:
                    self._fh = open(self._tmp, "w", encoding="utf-8", newline="")
                except OSError as exc:
                    self._tmp = None
                    raise _usage(f"{path}: cannot write there ({exc.strerror})") from exc

    @property
    def name(self) -> str:
        return "<stdout>" if self.path is None else self.path

    def write(self, df: Any, points: tuple[np.ndarray, np.ndarray, str, str] | None = None) -> None:
        """Append rows; ``points`` = (lat, lon, lat column, lon column) for GeoJSON."""
        if self.fmt == "csv":
            df.to_csv(self._fh, index=False, header=self._first, na_rep="", lineterminator="\n")
        elif self.fmt == "parquet":
            self._write_parquet(df)
        else:
            if self._first:
                self._fh.write('{"type": "FeatureCollection", "features": [\n' if self.fmt == "geojson" else "[\n")
            if self.fmt == "geojson":
                assert points is not None
                la, lo, lat, lon = points
                lines = _json_lines(df.drop(columns=[lat, lon]), len(df))
                lines = [
                    f'{{"type": "Feature", "geometry": {{"type": "Point", "coordinates": [{x!r}, {y!r}]}}, '
                    f'"properties": {p}}}'
                    for x, y, p in zip(lo.tolist(), la.tolist(), lines, strict=True)
                ]
            else:
                lines = _json_lines(df, len(df))
            if lines:
                if self._wrote_json:
                    self._fh.write(",\n")
                self._fh.write(",\n".join(lines))
                self._wrote_json = True
        self._first = False

    def _write_parquet(self, df: Any) -> None:
        pa, pq = _need_pyarrow(self.name)
        if self._parquet is None and len(df):
            # a column empty in the first chunk cannot tell its type: text holds any later value
            empty = [c for c in df.columns if df[c].isna().all()]
            if empty:
                df = df.astype({c: sys.modules["pandas"].StringDtype() for c in empty})
        table = pa.Table.from_pandas(df, preserve_index=False)
        if self._parquet is None:
            try:
                self._parquet = pq.ParquetWriter(self._tmp, table.schema)
            except OSError as exc:
                raise _usage(f"{self.name}: cannot write there ({exc})") from exc
        elif not table.schema.equals(self._parquet.schema, check_metadata=False):
            try:
                table = table.cast(self._parquet.schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                raise _data(
                    f"{self.name}: a column changes type between chunks ({exc}); Parquet needs one type per "
                    "column: raise --chunk-size above the row count, or write CSV"
                ) from None
        self._parquet.write_table(table)

    def commit(self) -> None:
        if self.fmt in ("geojson", "json") and self._fh is not None:
            self._fh.write("\n]}\n" if self.fmt == "geojson" else "\n]\n")
        if self.path is None:
            self._fh.flush()
            return
        if self._parquet is not None:
            self._parquet.close()
        if self._fh is not None:
            self._fh.close()
        assert self._tmp is not None
        os.replace(self._tmp, self.path)
        self._tmp = None

    def discard(self) -> None:
        """Remove the partial file of a failed run (stdout: nothing to undo)."""
        if self._tmp is None:
            return
        with contextlib.suppress(Exception):
            if self._parquet is not None:
                self._parquet.close()
            if self._fh is not None:
                self._fh.close()
        with contextlib.suppress(OSError):
            os.remove(self._tmp)
        self._tmp = None


def _json_lines(df: Any, n: int) -> list[str]:
    """One JSON object per row, values exact (missing and non-finite numbers as null)."""
    if df.shape[1] == 0:
        return ["{}"] * n
    names = [str(c) for c in df.columns]
    columns = [[_json_value(v) for v in df[c].to_list()] for c in df.columns]
    return [
        json.dumps(dict(zip(names, values, strict=True)), ensure_ascii=False, default=str)
        for values in zip(*columns, strict=True)
    ]


def _json_value(value: Any) -> Any:
    value = _py(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write_table(df: Any, path: str | None, fmt: str) -> None:
    sink = _Sink(path, fmt)
    try:
        sink.write(df)
        sink.commit()
    finally:
        sink.discard()


# ---------------------------------------------------------------- progress and summary
class _Progress:
    """A tqdm bar on stderr, or nothing."""

    def __init__(self, bar: Any = None) -> None:
        self._bar = bar

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self, done: int) -> None:
        if self._bar is not None:
            self._bar.total = done  # a CSV row count is an estimate (quoted line breaks)
            self._bar.refresh()
            self._bar.close()
            self._bar = None


def _progress(setting: bool | None, count: Callable[[], int], chunk_rows: int, unit: str) -> _Progress:
    """A bar when asked (``--progress``), or by default when stderr is a terminal and the input is long."""
    if setting is False or (setting is None and not _stderr_is_tty()):
        return _Progress()
    try:
        from tqdm import tqdm
    except ImportError:
        if setting:
            print(f"{PROG}: note: no progress bar without tqdm (pip install tqdm)", file=sys.stderr)
        return _Progress()
    total = count()
    if setting is None and total <= chunk_rows:
        return _Progress()
    return _Progress(
        tqdm(total=total, unit=f" {unit}", unit_scale=True, file=sys.stderr, mininterval=0.5, dynamic_ncols=True)
    )


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _count(n: int, word: str) -> str:
    """``1 row``, ``1,000 rows``."""
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def _summary(command: str, what: str, n: int, unit: str, t0: float, dest: str) -> None:
    seconds = max(time.perf_counter() - t0, 1e-9)
    print(
        f"{PROG} {command}: {what} in {seconds:,.2f} s ({n / seconds:,.0f} {unit}/s) -> {dest}",
        file=sys.stderr,
    )


# ---------------------------------------------------------------- stores, offers, events, policy
def _load_stores(pd: Any, args: argparse.Namespace, src: _Source) -> StoreIndex:
    sid, lat, lon = args.store_id, args.store_lat, args.store_lon
    with _about(src.path), _reading(src.path):
        if src.fmt == "csv":
            stores = StoreSet.from_csv(src.path, store_id=sid, lat=lat, lon=lon)
        elif src.fmt == "parquet":
            df = pd.read_parquet(src.path)
            _need_columns(src, list(df.columns), {"--store-id": sid, "--store-lat": lat, "--store-lon": lon})
            for option, name in (("--store-lat", lat), ("--store-lon", lon)):
                if not pd.api.types.is_numeric_dtype(df[name].dtype) or pd.api.types.is_bool_dtype(df[name].dtype):
                    raise _data(f"{src.path} column {name!r} ({option}) has dtype {df[name].dtype}, not degrees")
            stores = StoreSet.from_dataframe(df, store_id=sid, lat=lat, lon=lon)
        else:
            rows = _json_rows(src.path, lat="lat", lon="lon", id_column=sid)
            rows = [{_rename(k, sid, lat, lon): _py(v) for k, v in r.items()} for r in rows]
            for i, row in enumerate(rows):
                if row.get("store_id") is None:
                    raise _data(
                        f"{src.path}: store {i} has no id: no {sid!r} field and no feature id (name the id field "
                        f"with --store-id); its fields are {sorted(k for k in row if k not in ('lat', 'lon'))}"
                    )
            stores = StoreSet.from_records(rows)
        return StoreIndex(stores)


def _rename(key: str, sid: str, lat: str, lon: str) -> str:
    return {sid: "store_id", lat: "lat", lon: "lon"}.get(key, key)


def _read_records(pd: Any, path: str, role: str) -> tuple[_Source, list[dict[str, Any]]]:
    src = _Source(path, _input_format(path, role))
    if src.fmt == "json":
        rows = _json_rows(path, lat="lat", lon="lon", id_column=None)
        return src, [{k: _py(v) for k, v in r.items()} for r in rows]
    return src, _records(_read_frame(pd, src, lat="lat", lon="lon"))


def _load_offers(pd: Any, path: str, index: StoreIndex) -> OfferSet:
    src, rows = _read_records(pd, path, "OFFERS")
    stores = index.stores
    store_ids = _Ids(stores.store_id.tolist())
    merchants = _Ids(stores["merchant_id"].tolist() if "merchant_id" in stores.columns else [])
    records = []
    for i, rec in enumerate(rows):
        rec = {k: v for k, v in rec.items() if v is not None}
        if "merchant_id" in rec:
            rec["merchant_id"] = merchants(rec["merchant_id"])
        if "store_ids" in rec:
            rec["store_ids"] = [store_ids(s) for s in _id_list(rec["store_ids"], src, i)]
        for name in ("valid_from", "valid_until"):
            if isinstance(rec.get(name), str):
                try:
                    rec[name] = _parse_time(rec[name])
                except ValueError as exc:
                    raise _data(f"{src.row(i)}: {name} {exc}") from None
        records.append(rec)
    with _about(src.path):
        return OfferSet.from_records(records)


def _id_list(value: Any, src: _Source, i: int) -> list[Any]:
    """``store_ids`` of an offer: a list, JSON array text, or ids separated by ``;``."""
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError as exc:
                raise _data(f"{src.row(i)}: store_ids {value!r} is not a JSON array: {exc}") from None
            if isinstance(parsed, list):
                return parsed
        return [part.strip() for part in text.split(";") if part.strip()]
    return [value]


def _load_events(
    pd: Any, path: str, offers: OfferSet, index: StoreIndex, users: _Ids | None
) -> list[tuple[str, Event]]:
    """Events of a file, in time order (ties in file order), each with where it was."""
    src, rows = _read_records(pd, path, "EVENTS")
    unknown = sorted({key for rec in rows for key in rec} - set(_EVENT_FIELDS))
    if unknown:
        raise _data(f"{src.path}: unknown event fields {unknown}; known: {list(_EVENT_FIELDS)}")
    offer_ids = _Ids(offers.offer_id.tolist())
    store_ids = _Ids(index.stores.store_id.tolist())
    merchants = _Ids(offers.merchant_id.tolist())
    out = []
    for i, rec in enumerate(rows):
        rec = {k: v for k, v in rec.items() if v is not None}
        for name in ("kind", "user_id", "ts"):
            if name not in rec:
                raise _data(f"{src.row(i)}: the event has no {name!r}; events need kind, user_id and ts")
        try:
            rec["ts"] = _parse_time(rec["ts"])
        except ValueError as exc:
            raise _data(f"{src.row(i)}: ts {exc}") from None
        if users is not None:
            rec["user_id"] = users(rec["user_id"])
        for name, known in (("offer_id", offer_ids), ("store_id", store_ids), ("merchant_id", merchants)):
            if name in rec:
                rec[name] = known(rec[name])
        with _about(src.row(i)):
            out.append((src.row(i), Event(**rec)))
    out.sort(key=lambda item: item[1].ts)
    return out


def _load_policy(path: str, offers: OfferSet, index: StoreIndex) -> PushPolicy:
    if os.path.splitext(path)[1].lower() != ".json":
        raise _usage(f"--policy {path!r}: expected a .json file")
    if not os.path.isfile(path):
        raise _usage(f"--policy {path!r}: no such file")
    with _reading(path), open(path, encoding="utf-8") as fh:
        obj = json.load(fh)
    if not isinstance(obj, dict):
        raise _data(f"{path}: expected a JSON object of PushPolicy arguments; got a {type(obj).__name__}")
    unknown = sorted(set(obj) - set(_POLICY_FIELDS))
    if unknown:
        raise _data(f"{path}: unknown PushPolicy arguments {unknown}; known: {list(_POLICY_FIELDS)}")
    kw = dict(obj)
    offer_ids = _Ids(offers.offer_id.tolist())
    merchants = _Ids(
        offers.merchant_id.tolist()
        + (index.stores["merchant_id"].tolist() if "merchant_id" in index.stores.columns else [])
    )
    stores = _Ids(index.stores.store_id.tolist())
    for name in ("triggers", "quiet_hours"):
        if isinstance(kw.get(name), list):
            kw[name] = tuple(kw[name])
    for name, known, what in (
        ("offer_budgets", offer_ids, "offer"),
        ("merchant_budgets", merchants, "merchant"),
        ("offer_cost", offer_ids, "offer"),
        ("store_daily_capacity", stores, "store"),
    ):
        value = kw.get(name)
        if not isinstance(value, dict):
            if name != "store_daily_capacity" and value is not None:
                raise _data(f"{path}: {name} must be an object keyed by {what} id; got {value!r}")
            continue
        mapped = {}
        for key, item in value.items():
            if key not in known:
                raise _data(f"{path}: {name} names {what} {key!r}, which is not among the {what}s")
            if name.endswith("budgets"):
                if not isinstance(item, dict) or set(item) - {"max_pushes", "max_cost"}:
                    raise _data(f"{path}: {name}[{key!r}] must be an object with max_pushes and/or max_cost")
                with _about(path):
                    item = Budget(**item)
            mapped[known(key)] = item
        kw[name] = mapped
    with _about(path):
        try:
            return PushPolicy(**kw)
        except TypeError as exc:  # e.g. a list where a number belongs
            raise _data(f"{path}: {exc}") from None


# ---------------------------------------------------------------- nearest
def _where_mask(items: list[tuple[str, list[str]]] | None, stores: StoreSet) -> np.ndarray | None:
    """``--where`` as a boolean mask over the stores: columns ANDed, comma-separated values ORed."""
    if not items:
        return None
    mask = np.ones(len(stores), dtype=bool)
    for column, texts in items:
        if column not in stores.columns:
            raise _data(f"--where names column {column!r}; the stores have columns {stores.columns}")
        values = stores[column]
        wanted: set[Any] = set()
        for text in texts:
            wanted.update(_typed_values(text, values, column))
        hit = np.fromiter((_py(v) in wanted for v in values.tolist()), dtype=bool, count=len(values))
        message = missing_values_message(
            f"--where {column}={','.join(texts)}", column, sorted(wanted, key=repr), values, hit
        )
        if message is not None:
            print(f"o2o-geo: warning: {message}", file=sys.stderr)
        mask &= hit
    return mask


def _typed_values(text: str, values: np.ndarray, column: str) -> list[Any]:
    """The ``--where`` value as the store column holds it: a number, a bool, or text."""
    kind = values.dtype.kind
    if kind == "b":
        low = text.strip().lower()
        if low in ("true", "1", "yes"):
            return [True]
        if low in ("false", "0", "no"):
            return [False]
        raise _data(f"--where {column}={text}: the column holds true/false")
    if kind in "iuf":
        try:
            number = float(text)
        except ValueError:
            raise _data(f"--where {column}={text}: the column holds numbers") from None
        return [int(number) if kind in "iu" and number.is_integer() else number]
    out: list[Any] = [text]
    try:
        number = float(text)
    except ValueError:
        return out
    present = {type(v) for v in values.tolist()}
    if int in present and number.is_integer():
        out.append(int(number))
    if float in present:
        out.append(number)
    return out


def _neighbour_columns(pd: Any, index: StoreIndex, nb: Any, n: int, k: int) -> dict[str, Any]:
    ids = index.stores.store_id
    items = ids.tolist()
    if items and all(isinstance(v, int) for v in items):
        id_dtype: Any = "Int64"
    elif items and all(isinstance(v, str) for v in items):
        id_dtype = pd.StringDtype()
    else:
        id_dtype = object
    pos = nb.position.reshape(n, k)
    dist = nb.distance_m.reshape(n, k)
    cols: dict[str, Any] = {}
    for j in range(k):
        p = pos[:, j]
        found = p >= 0
        sid = np.full(n, None, dtype=object)
        sid[found] = ids[p[found]]
        cols[f"store_id_{j + 1}"] = pd.array(sid, dtype=id_dtype)
        cols[f"distance_m_{j + 1}"] = pd.array(np.where(found, dist[:, j], np.nan), dtype="Float64")
    return cols


def _cmd_nearest(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    pd = _need_pandas("nearest")
    stores_src = _Source(args.stores, _input_format(args.stores, "STORES"))
    src = _Source(args.pings, _input_format(args.pings, "PINGS"))
    out_fmt = _output_format(args.output, "-o", geo=True)
    index = _load_stores(pd, args, stores_src)
    where = _where_mask(args.where, index.stores)
    head, count, chunks = _chunks(pd, src, args.chunk_size, lat=args.lat, lon=args.lon, id_column="id")
    _need_columns(src, list(head.columns), {"--lat": args.lat, "--lon": args.lon})
    added = [f"{name}_{j}" for j in range(1, args.k + 1) for name in ("store_id", "distance_m")]
    clash = [c for c in added if c in head.columns]
    if clash:
        raise _data(f"{src.path} already has column {clash[0]!r}, which the output adds; rename it")
    sink = _Sink(args.output, out_fmt)
    bar = _progress(args.progress, count, args.chunk_size, "rows")
    rows = 0
    try:
        for chunk in chunks:
            frame = chunk.reset_index(drop=True)
            la, lo = _coords(frame, args.lat, args.lon, src, rows)
            nb = index.nearest(la, lo, k=args.k, max_distance_m=args.max_distance_m, where=where)
            out = frame.assign(**_neighbour_columns(pd, index, nb, len(frame), args.k))
            sink.write(out, (la, lo, args.lat, args.lon))
            rows += len(frame)
            bar.update(len(frame))
        if rows == 0:  # the header (and for Parquet the schema) of an empty result
            empty = head.assign(**_neighbour_columns(pd, index, index.nearest([], [], k=args.k), 0, args.k))
            sink.write(empty, (np.empty(0), np.empty(0), args.lat, args.lon))
        sink.commit()
    finally:
        bar.close(rows)
        sink.discard()
    _summary("nearest", _count(rows, "row"), rows, "rows", t0, sink.name)
    return 0


# ---------------------------------------------------------------- rank
def _cmd_rank(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    pd = _need_pandas("rank")
    stores_src = _Source(args.stores, _input_format(args.stores, "STORES"))
    _input_format(args.offers, "OFFERS")
    src = _Source(args.users, _input_format(args.users, "USERS"))
    out_fmt = _output_format(args.output, "-o", geo=False)
    now = time.time() if args.now is None else args.now
    index = _load_stores(pd, args, stores_src)
    offers = _load_offers(pd, args.offers, index)
    users = _read_frame(pd, src, lat=args.lat, lon=args.lon, id_column=args.user_id)
    _need_columns(src, list(users.columns), {"--user-id": args.user_id, "--lat": args.lat, "--lon": args.lon})
    user_ids = _ids(users, args.user_id, src, "the user id")
    la, lo = _coords(users, args.lat, args.lon, src, 0)
    with _about(args.stores):
        scorer = OfferScorer(index, offers)
    if args.events:
        for where, event in _load_events(pd, args.events, offers, index, _Ids(user_ids)):
            with _about(where):
                scorer.record(event)
    n = len(user_ids)
    sink = _Sink(args.output, out_fmt)
    bar = _progress(args.progress, lambda: n, args.chunk_size, "users")
    n_rows = 0
    try:
        for start in range(0, max(n, 1), args.chunk_size):
            sl = slice(start, start + args.chunk_size)
            res = scorer.rank_many(user_ids[sl], la[sl], lo[sl], now=now, k=args.k)
            res["query"] = res["query"] + start
            sink.write(res)
            n_rows += len(res)
            bar.update(len(user_ids[sl]))
        sink.commit()
    finally:
        bar.close(n)
        sink.discard()
    _summary("rank", f"{_count(n, 'user')} -> {_count(n_rows, 'row')}", n, "users", t0, sink.name)
    return 0


# ---------------------------------------------------------------- replay
def _decisions_frame(pd: Any, decisions: list[PushDecision], explain: bool) -> Any:
    names = list(_DECISION_COLUMNS) + (["explanation"] if explain else [])
    rows = []
    for d in decisions:
        rec = d.to_dict()
        rec["explanation"] = json.dumps(d.explain()) if explain else None
        rows.append([rec[c] for c in names])
    frame = pd.DataFrame(rows, columns=names)
    return frame.astype({"score": "float64", "distance_m": "float64", "holdout": "bool", "ts": "float64"})


def _cmd_replay(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    pd = _need_pandas("replay")
    stores_src = _Source(args.stores, _input_format(args.stores, "STORES"))
    _input_format(args.offers, "OFFERS")
    src = _Source(args.pings, _input_format(args.pings, "PINGS"))
    out_fmt = _output_format(args.output, "-o", geo=False)
    report_fmt = _output_format(args.report, "--report", geo=False) if args.report else None
    if args.state is not None:
        folder = os.path.dirname(os.path.abspath(args.state))
        if not os.path.isdir(folder) or os.path.isdir(args.state):
            raise _usage(f"--state {args.state!r}: the folder {os.path.dirname(args.state) or '.'!r} does not exist")
    index = _load_stores(pd, args, stores_src)
    offers = _load_offers(pd, args.offers, index)
    policy = _load_policy(args.policy, offers, index) if args.policy else PushPolicy()
    pings = _read_frame(pd, src, lat=args.lat, lon=args.lon, id_column=None)
    _need_columns(
        src, list(pings.columns), {"--user-id": args.user_id, "--lat": args.lat, "--lon": args.lon, "--ts": args.ts}
    )
    users = _ids(pings, args.user_id, src, "the user id")
    la, lo = _coords(pings, args.lat, args.lon, src, 0)
    ts = _times(pings, args.ts, src)
    user_col = np.empty(len(users), dtype=object)
    user_col[:] = users
    cols: dict[str, Any] = {"user_id": user_col, "lat": la, "lon": lo, "ts": ts}
    if "accuracy_m" in pings.columns:
        acc = pd.to_numeric(pings["accuracy_m"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad = pings["accuracy_m"].notna().to_numpy() & ~(np.isfinite(acc) & (acc >= 0))  # text, < 0, inf
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            value = _py(pings["accuracy_m"].iloc[i])
            raise _data(f"{src.row(i)}: accuracy_m = {value!r} must be a number of metres >= 0")
        cols["accuracy_m"] = acc
    for name in ("event_id", "tz"):
        if name in pings.columns:
            values = np.empty(len(pings), dtype=object)
            values[:] = [_py(v) for v in pings[name].to_list()]
            cols[name] = values
    if "tz" in cols:
        for i, name in enumerate(cols["tz"].tolist()):
            if name is not None:
                with _about(src.row(i)):
                    zone(name)
    order = np.argsort(ts, kind="stable")
    cols = {name: values[order] for name, values in cols.items()}
    events = _load_events(pd, args.events, offers, index, _Ids(users)) if args.events else []
    with _about(args.stores):
        OfferScorer(index, offers)  # the stores fit the offers (a merchant_id column)
    # the run works on a copy of the --state file that replaces it only when the run and its outputs succeed
    work = _state_copy(args.state) if args.state else None
    try:
        return _replay(pd, args, index, offers, policy, cols, events, n_users=len(users), work=work,
                       out_fmt=out_fmt, report_fmt=report_fmt, t0=t0)  # fmt: skip
    finally:
        if work is not None:
            _remove_sqlite(work)


def _state_copy(path: str) -> str:
    """A private copy of a SQLite state file (SQLite's backup: consistent, WAL included), beside it."""
    import sqlite3

    work = os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.{os.getpid()}.replay")
    _remove_sqlite(work)
    if os.path.exists(path):
        try:
            with contextlib.closing(sqlite3.connect(path)) as src, contextlib.closing(sqlite3.connect(work)) as dst:
                src.backup(dst)
        except sqlite3.Error as exc:
            _remove_sqlite(work)
            raise _data(f"--state {path}: not a readable SQLite state file ({exc})") from exc
        if os.path.exists(path + "-wal"):  # our connection was the last one unless another process has it open
            _remove_sqlite(work)
            raise _usage(f"--state {path}: the file is in use by another process; replay into a copy of it")
    return work


def _remove_sqlite(path: str) -> None:
    for name in (path, path + "-wal", path + "-shm", path + "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(name)


def _replay(
    pd: Any,
    args: argparse.Namespace,
    index: StoreIndex,
    offers: OfferSet,
    policy: PushPolicy,
    cols: dict[str, Any],
    events: list[tuple[str, Event]],
    *,
    n_users: int,
    work: str | None,
    out_fmt: str,
    report_fmt: str | None,
    t0: float,
) -> int:
    ts_sorted = cols["ts"]
    state = SQLiteState(work) if work is not None else MemoryState()
    n = n_users
    decisions: list[PushDecision] = []
    bar = _progress(args.progress, lambda: n, args.chunk_size, "pings")
    done = 0
    try:
        with _about(f"--state {args.state}") if work is not None else contextlib.nullcontext():
            engine = Dispatcher(index, offers, policy=policy, state=state)  # rebuilds the history from the state
        with engine:

            def pings_until(stop: int) -> None:
                nonlocal done
                while done < stop:
                    end = min(stop, done + args.chunk_size)
                    batch = {name: values[done:end] for name, values in cols.items()}
                    batch["user_id"] = batch["user_id"].tolist()
                    decisions.extend(engine.on_locations(batch))
                    bar.update(end - done)
                    done = end

            for where, event in events:  # each event after every ping at or before it
                pings_until(int(np.searchsorted(ts_sorted, event.ts, side="right")))
                with _about(where):
                    engine.record(event)
            pings_until(n)
            report = engine.report(by=args.by)
    finally:
        bar.close(done)
    _write_table(_decisions_frame(pd, decisions, args.explain), args.output, out_fmt)
    if args.report:
        assert report_fmt is not None
        _write_table(report, args.report, report_fmt)
    elif len(report):
        with pd.option_context("display.max_columns", None, "display.width", 200):
            print(report.to_string(index=False))
    else:
        print("no pushes: the report is empty")
    held = sum(d.holdout for d in decisions)
    what = (
        f"{_count(n, 'ping')}, {_count(len(events), 'event')} -> {_count(len(decisions), 'decision')} "
        f"({held:,} held out)"
    )
    if work is not None:  # the outputs are written: the state moves on
        os.replace(work, args.state)
    _summary("replay", what, n, "pings", t0, args.output)
    return 0


# ---------------------------------------------------------------- demo
def _cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    run_demo(seed=args.seed, out=sys.stdout)
    return 0


# ---------------------------------------------------------------- the parser
class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error message (and exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


_FORMATS_HELP = """\
files, by extension: .csv; .parquet or .pq (needs pyarrow); .geojson or .json (a GeoJSON
FeatureCollection of Points, whose geometry gives lat/lon, or a JSON array of objects).
"""

_EXIT_HELP = """\
exit status: 0 done; 1 the data is wrong (a missing column, a bad coordinate, bad JSON, an
invalid record); 2 the command line is wrong (a bad option, a missing file, an unknown
extension, a missing optional package). Errors are one line on stderr.
"""

_NEAREST_HELP = f"""\
output: one row per ping, in input order: the ping's own columns, then
  store_id_1, distance_m_1, store_id_2, distance_m_2, ..., store_id_k, distance_m_k
nearest first, distances in WGS84 geodesic metres; empty (null) where fewer than k stores
qualify (none within --max-distance-m, or none passing --where). OUT by extension: .csv (CSV on
stdout when -o is omitted), .parquet/.pq, .geojson/.json (a FeatureCollection: each ping a Point,
its lat/lon in the geometry, the other columns as properties).

Pings are read and answered --chunk-size rows at a time, so a CSV or Parquet file larger than
memory streams through (a GeoJSON file is read whole). A progress bar (tqdm) shows on stderr
when stderr is a terminal and the file is longer than one chunk, or with --progress; a summary
line (rows, seconds, rows/s, output) ends the run.

{_FORMATS_HELP}
{_EXIT_HELP}
example:
  o2o-geo nearest stores.csv pings.parquet -k 3 --where category=coffee --max-distance-m 2000 \\
      -o nearest.parquet
"""

_RANK_HELP = f"""\
OFFERS: rows with the fields of og.Offer (offer_id, merchant_id, category, discount_rate,
spend_amount, off_amount, valid_from, valid_until, store_ids, max_distance_m); times are epoch
seconds or ISO-8601 with an offset; store_ids is a list, JSON array text or ids separated by ';'.
The stores need a merchant_id column. USERS: user_id, lat, lon (rename with --user-id/--lat/--lon).
EVENTS (--events): rows with the fields of og.Event (kind, user_id, ts, offer_id, store_id,
merchant_id, category, push_id, amount, discount_depth, distance_m, event_id), ts in epoch seconds
(or ISO-8601 with an offset); they are the users' history.

output: OfferScorer.rank_many's table, one row per (user, offer), best first:
  query, user_id, rank, offer_id, store_id, score, distance_m
query is the user's row in USERS (0-based), rank 0 is the best offer, store_id is where to redeem
it, score the probability of redemption. A user with no offer in reach has no row. OUT: .csv (CSV
on stdout when -o is omitted), .parquet/.pq or .json (an array of objects).

{_FORMATS_HELP}
{_EXIT_HELP}
example:
  o2o-geo rank stores.csv offers.json users.csv -k 10 --events events.csv \\
      --now 2026-01-01T09:00:00+08:00 -o ranked.csv
"""

_REPLAY_HELP = f"""\
PINGS: user_id, lat, lon, ts (epoch seconds or ISO-8601 with an offset), optional accuracy_m,
event_id and tz columns. The pings are sorted by ts (ties keep the file's order) and replayed with
Dispatcher.on_locations; each event of --events (og.Event fields, e.g. kind, user_id, ts, push_id,
offer_id, amount) is recorded after every ping at or before its ts, as it would be live, so
dismissals and redemptions shape later decisions. With --state the run continues the SQLite
state of earlier runs (caps, fences, pushes; give pings and events an event_id so a rerun counts
them once), and the report covers everything in it. The run works on a copy of that file, which
replaces it only when the run and its outputs succeed: a failed run leaves it as it was (so do not
point --state at a file a live engine is writing).

outputs: DECISIONS, one row per decision in replay order:
  push_id, user_id, offer_id, store_id, merchant_id, score, distance_m, trigger, holdout, ts
(PushDecision.to_dict(); with --explain also explanation, each feature's term of the logit as a
JSON object); REPORT (or stdout without --report): Dispatcher.report(by=...), per group pushed,
holdout, failed, delivered, opened, redeemed, visited, revenue, the rates, the users and
conversion of both groups, uplift and its 95% interval. Both .csv, .parquet/.pq or .json.

POLICY.json: an object of og.PushPolicy arguments, e.g.
  {{"max_per_day": 2, "quiet_hours": [22, 8], "holdout_fraction": 0.1,
   "offer_budgets": {{"latte": {{"max_pushes": 1000, "max_cost": 5000}}}}}}

{_FORMATS_HELP}
{_EXIT_HELP}
example:
  o2o-geo replay stores.csv offers.csv pings.parquet --policy policy.json --events outcomes.csv \\
      --by merchant -o decisions.csv --report funnel.csv
"""


def _build_parser() -> _Parser:
    from . import __version__

    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(
        prog=PROG,
        description="o2o_geo command line: nearest stores, offer ranking and push replay on files.",
        epilog=f"{_FORMATS_HELP}\n{_EXIT_HELP}\nexample:\n  o2o-geo nearest stores.csv pings.csv -k 3 -o nearest.csv",
        formatter_class=fmt,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    stores = _Parser(add_help=False)
    group = stores.add_argument_group(
        "store columns", "GeoJSON stores take lat/lon from the Point geometry and the id from the feature's id"
    )
    group.add_argument("--store-id", default="store_id", metavar="COL", help="store id column (default store_id)")
    group.add_argument("--store-lat", default="lat", metavar="COL", help="store latitude column (default lat)")
    group.add_argument("--store-lon", default="lon", metavar="COL", help="store longitude column (default lon)")

    def running(command: str) -> _Parser:
        run = _Parser(add_help=False)
        group = run.add_argument_group("running")
        group.add_argument(
            "--chunk-size",
            type=_positive_int,
            default=DEFAULT_CHUNK_ROWS[command],
            metavar="N",
            help=f"rows handled per step (default {DEFAULT_CHUNK_ROWS[command]:,})",
        )
        group.add_argument(
            "--progress",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="show a progress bar on stderr (needs tqdm; default: when stderr is a terminal and the input is "
            "longer than one step)",
        )
        return run

    demo = sub.add_parser(
        "demo",
        help="build a sample store chain in Shanghai and query it",
        description="Build a sample store chain in Shanghai (generated, no download) and query it.",
        epilog="example:\n  o2o-geo demo --seed 7",
        formatter_class=fmt,
    )
    demo.add_argument("--seed", type=int, default=7, help="seed of the sample chain (default 7)")
    demo.set_defaults(run=_cmd_demo)

    near = sub.add_parser(
        "nearest",
        parents=[stores, running("nearest")],
        help="the k nearest stores of every ping in a file",
        description="Find the k nearest stores of every ping (exact WGS84 geodesic distance).",
        epilog=_NEAREST_HELP,
        formatter_class=fmt,
    )
    near.add_argument("stores", metavar="STORES", help="the stores: store_id, lat, lon and any attribute columns")
    near.add_argument("pings", metavar="PINGS", help="the pings: lat, lon and any other columns (kept in the output)")
    near.add_argument("-k", type=_positive_int, default=1, help="stores per ping (default 1)")
    near.add_argument("-o", "--output", metavar="OUT", help="output file (default: CSV on stdout)")
    near.add_argument("--lat", default="lat", metavar="COL", help="ping latitude column (default lat)")
    near.add_argument("--lon", default="lon", metavar="COL", help="ping longitude column (default lon)")
    near.add_argument(
        "--max-distance-m", type=_metres, default=None, metavar="M", help="ignore stores farther than M metres"
    )
    near.add_argument(
        "--where",
        type=_where_item,
        action="append",
        metavar="COL=VALUE",
        help="only stores whose column COL equals VALUE (a number for a numeric column); repeat to AND several "
        "columns; VALUE may list alternatives separated by commas (category=coffee,tea)",
    )
    near.set_defaults(run=_cmd_nearest)

    rank = sub.add_parser(
        "rank",
        parents=[stores, running("rank")],
        help="the k best offers for every user in a file",
        description="Rank the offers for every user at the user's position (OfferScorer.rank_many).",
        epilog=_RANK_HELP,
        formatter_class=fmt,
    )
    rank.add_argument("stores", metavar="STORES", help="the stores, with a merchant_id column")
    rank.add_argument("offers", metavar="OFFERS", help="the offers (og.Offer fields)")
    rank.add_argument("users", metavar="USERS", help="the users: user_id, lat, lon")
    rank.add_argument("-k", type=_positive_int, default=10, help="offers per user (default 10)")
    rank.add_argument("-o", "--output", metavar="OUT", help="output file (default: CSV on stdout)")
    rank.add_argument("--user-id", default="user_id", metavar="COL", help="user id column (default user_id)")
    rank.add_argument("--lat", default="lat", metavar="COL", help="user latitude column (default lat)")
    rank.add_argument("--lon", default="lon", metavar="COL", help="user longitude column (default lon)")
    rank.add_argument("--events", metavar="EVENTS", help="past events (og.Event fields): the users' history")
    rank.add_argument(
        "--now",
        type=_time_arg,
        metavar="TIME",
        help="time of the ranking: epoch seconds or ISO-8601 with an offset (default: now)",
    )
    rank.set_defaults(run=_cmd_rank)

    replay = sub.add_parser(
        "replay",
        parents=[stores, running("replay")],
        help="replay a ping log through the push dispatcher",
        description="Replay a ping log through the push dispatcher: decisions, outcome events and the funnel report.",
        epilog=_REPLAY_HELP,
        formatter_class=fmt,
    )
    replay.add_argument("stores", metavar="STORES", help="the stores, with a merchant_id column")
    replay.add_argument("offers", metavar="OFFERS", help="the offers (og.Offer fields)")
    replay.add_argument("pings", metavar="PINGS", help="the ping log: user_id, lat, lon, ts")
    replay.add_argument("-o", "--output", metavar="DECISIONS", required=True, help="the decisions file")
    replay.add_argument("--report", metavar="REPORT", help="the funnel report file (default: printed on stdout)")
    replay.add_argument(
        "--by", choices=("offer", "merchant", "store", "all"), default="offer", help="report groups (default offer)"
    )
    replay.add_argument("--policy", metavar="POLICY.json", help="PushPolicy arguments as a JSON object")
    replay.add_argument("--state", metavar="PATH", help="a SQLite state file (default: in memory, for this run)")
    replay.add_argument("--events", metavar="EVENTS", help="outcome events (og.Event fields) to record")
    replay.add_argument(
        "--explain", action="store_true", help="add the explanation column (a JSON object) to the decisions"
    )
    replay.add_argument("--user-id", default="user_id", metavar="COL", help="user id column (default user_id)")
    replay.add_argument("--lat", default="lat", metavar="COL", help="ping latitude column (default lat)")
    replay.add_argument("--lon", default="lon", metavar="COL", help="ping longitude column (default lon)")
    replay.add_argument("--ts", default="ts", metavar="COL", help="ping time column (default ts)")
    replay.set_defaults(run=_cmd_replay)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    r"""Run the command line; returns the exit status (0 done, 1 bad data, 2 bad command line).

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit status.

    Examples
    --------
    >>> import os, tempfile
    >>> from o2o_geo._cli import main
    >>> d = tempfile.mkdtemp()
    >>> with open(os.path.join(d, "stores.csv"), "w") as fh:
    ...     _ = fh.write("store_id,lat,lon\na,31.2304,121.4737\nb,31.2243,121.4768\n")
    >>> with open(os.path.join(d, "pings.csv"), "w") as fh:
    ...     _ = fh.write("ping,lat,lon\n1,31.229,121.475\n")
    >>> main(["nearest", os.path.join(d, "stores.csv"), os.path.join(d, "pings.csv"), "-k", "2"])  # doctest: +ELLIPSIS
    ping,lat,lon,store_id_1,distance_m_1,store_id_2,distance_m_2
    1,31.229,121.475,a,198.58...,b,548.60...
    0
    """
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return int(args.run(args))
    except _Fail as exc:
        _say_error(str(exc))
        return exc.status
    except O2OGeoError as exc:
        _say_error(str(exc))
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `o2o-geo nearest ... | head`: stop quietly
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 1
    except OSError as exc:  # a file that cannot be read or written, a full disk
        _say_error(f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc))
        unusable = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
        return 2 if isinstance(exc, unusable) else 1
