"""Reading the command line's inputs: files in chunks, checked columns and cells, stores, offers, events, policy."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from .._events import Event
from .._frames import check_columns, coordinates, plain
from .._index import StoreIndex, missing_values_message
from .._offers import OfferSet
from .._policy import PushPolicy
from .._stores import StoreSet
from .._validate import KnownIds
from ..errors import O2OGeoError
from ._common import Fail, about, data_error, input_format, need_pyarrow, parse_time, usage_error


@dataclasses.dataclass(frozen=True)
class Source:
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
def reading_errors(path: str) -> Iterator[None]:
    """Turn the parsers' errors into one-line data errors naming the file."""
    try:
        yield
    except Fail:
        raise
    except O2OGeoError:
        raise
    except UnicodeDecodeError as exc:
        raise data_error(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise data_error(f"{path}: not valid JSON: {exc}") from exc
    except Exception as exc:
        pd = sys.modules.get("pandas")
        if pd is not None and isinstance(exc, pd.errors.EmptyDataError):
            raise data_error(f"{path} is empty: no header row") from exc
        if is_parse_error(exc):
            raise data_error(f"{path}: cannot read it: {exc}") from exc
        raise


def is_parse_error(exc: Exception) -> bool:
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


def count_csv_rows(path: str) -> int:
    """Data rows of a CSV file (lines after the header; a quoted line break counts as a row)."""
    n, last = 0, b"\n"
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            n += block.count(b"\n")
            last = block[-1:]
    return max(n + (last != b"\n") - 1, 0)


def json_rows(path: str, *, lat: str, lon: str, id_column: str | None) -> list[dict[str, Any]]:
    """Rows of a GeoJSON FeatureCollection of Points (properties, lat/lon, the id) or of a JSON array of objects."""
    with reading_errors(path), open(path, encoding="utf-8") as fh:
        obj = json.load(fh)
    if isinstance(obj, list):
        for i, rec in enumerate(obj):
            if not isinstance(rec, dict):
                raise data_error(f"{path}: item {i} of the JSON array is a {type(rec).__name__}, not an object")
        return [dict(rec) for rec in obj]
    if not isinstance(obj, dict) or obj.get("type") != "FeatureCollection" or not isinstance(obj.get("features"), list):
        raise data_error(f"{path}: expected a GeoJSON FeatureCollection of Points or a JSON array of objects")
    rows = []
    for i, feat in enumerate(obj["features"]):
        geom = feat.get("geometry") if isinstance(feat, dict) else None
        if not isinstance(geom, dict) or geom.get("type") != "Point":
            kind = geom.get("type") if isinstance(geom, dict) else None
            raise data_error(f"{path}: feature {i} has geometry {kind!r}; only Points have a lat/lon")
        coords = geom.get("coordinates")
        if not isinstance(coords, list) or len(coords) < 2:
            raise data_error(f"{path}: feature {i} has point coordinates {coords!r}; expected [lon, lat]")
        props = feat.get("properties") or {}
        if not isinstance(props, dict):
            raise data_error(f"{path}: feature {i} has properties {props!r}; expected an object")
        row = dict(props)
        if id_column is not None and id_column not in row and feat.get("id") is not None:
            row[id_column] = feat["id"]
        row[lat], row[lon] = coords[1], coords[0]
        rows.append(row)
    return rows


def column_array(pd: Any, values: list[Any]) -> Any:
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


def frame_from_rows(pd: Any, rows: list[dict[str, Any]]) -> Any:
    names: dict[str, None] = {}
    for rec in rows:
        names.update(dict.fromkeys(rec))
    data = {name: column_array(pd, [rec.get(name) for rec in rows]) for name in names}
    return pd.DataFrame(data, index=pd.RangeIndex(len(rows)))


def nullable_types(pa: Any, pd: Any) -> Callable[[Any], Any]:
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


def csv_options(pd: Any) -> dict[str, Any]:
    """Nullable dtypes (ints stay ints next to missing values) and exact floats (pandas 3's default)."""
    options: dict[str, Any] = {"dtype_backend": "numpy_nullable"}
    if int(pd.__version__.split(".")[0]) < 3:
        options["float_precision"] = "round_trip"
    return options


def read_frame(pd: Any, src: Source, *, lat: str, lon: str, id_column: str | None = None) -> Any:
    """A whole table file as a DataFrame (nullable dtypes: ints stay ints next to missing values)."""
    with reading_errors(src.path):
        if src.fmt == "csv":
            return pd.read_csv(src.path, **csv_options(pd))
        if src.fmt == "parquet":
            pa, pq = need_pyarrow(src.path)
            return pq.read_table(src.path).to_pandas(types_mapper=nullable_types(pa, pd))
    return frame_from_rows(pd, json_rows(src.path, lat=lat, lon=lon, id_column=id_column))


def read_chunks(
    pd: Any, src: Source, size: int, *, lat: str, lon: str, id_column: str | None
) -> tuple[Any, Callable[[], int], Iterator[Any]]:
    """A file read ``size`` rows at a time: (its columns as an empty frame, a row counter, the chunks)."""
    if src.fmt == "csv":
        with reading_errors(src.path):
            head = pd.read_csv(src.path, nrows=0, **csv_options(pd))

        def csv_chunks() -> Iterator[Any]:
            with reading_errors(src.path):
                yield from pd.read_csv(src.path, chunksize=size, **csv_options(pd))

        return head, lambda: count_csv_rows(src.path), csv_chunks()
    if src.fmt == "parquet":
        pa, pq = need_pyarrow(src.path)
        types = nullable_types(pa, pd)
        with reading_errors(src.path):
            pf = pq.ParquetFile(src.path)
            head = pf.schema_arrow.empty_table().to_pandas(types_mapper=types)

        def parquet_chunks() -> Iterator[Any]:
            with reading_errors(src.path):
                for batch in pf.iter_batches(batch_size=size):
                    yield pa.Table.from_batches([batch]).to_pandas(types_mapper=types)

        return head, lambda: int(pf.metadata.num_rows), parquet_chunks()
    frame = frame_from_rows(pd, json_rows(src.path, lat=lat, lon=lon, id_column=id_column))
    return frame.iloc[:0], lambda: len(frame), (frame.iloc[i : i + size] for i in range(0, len(frame), size))


def need_columns(src: Source, columns: Sequence[str], wanted: Mapping[str, str]) -> None:
    """Every ``option -> column`` named is in the file."""
    check_columns(columns, wanted, source=src.path, naming="use {role}")


# ---------------------------------------------------------------- values
def frame_records(df: Any) -> list[dict[str, Any]]:
    names = [str(c) for c in df.columns]
    columns = [[plain(v) for v in df[c].to_list()] for c in df.columns]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)] if names else []


def coords_of(df: Any, lat: str, lon: str, src: Source, first_row: int) -> tuple[np.ndarray, np.ndarray]:
    """Checked float degrees of a chunk whose first row is data row ``first_row`` (a bad one named by its line)."""
    return coordinates(df, lat, lon, row=lambda i: src.row(first_row + i), naming="--lat/--lon")


def ids_of(df: Any, column: str, src: Source, what: str) -> list[Any]:
    """An id column (user ids) as Python str or int, none missing."""
    out = [plain(v) for v in df[column].to_list()]
    for i, v in enumerate(out):
        if isinstance(v, float) and v.is_integer():
            out[i] = v = int(v)
        if v is None or isinstance(v, bool) or not isinstance(v, (str, int)):
            problem = "is missing" if v is None else f"= {v!r} is not a str or an int"
            raise data_error(f"{src.row(i)}: {what} ({column}) {problem}")
    return out


def times_of(df: Any, column: str, src: Source) -> np.ndarray:
    """Epoch seconds from numbers, ISO-8601 text with offsets, or a timezone-aware timestamp column."""
    pd = sys.modules["pandas"]
    col = df[column]
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        if getattr(col.dtype, "tz", None) is None:
            raise data_error(f"{src.path} column {column!r} holds timestamps without a time zone; store them in UTC")
        seconds = (col - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
        out = np.asarray(seconds.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
    elif pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        out = np.asarray(col.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
    else:
        out = np.empty(len(col))
        for i, v in enumerate(col.to_list()):
            v = plain(v)
            if v is None:
                out[i] = math.nan
                continue
            try:
                out[i] = parse_time(v, column)
            except ValueError as exc:
                raise data_error(f"{src.row(i)}: {exc}") from None
    bad = ~np.isfinite(out)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise data_error(f"{src.row(i)}: {column} is missing or not a finite time")
    return out


# ---------------------------------------------------------------- stores, offers, events, policy
def load_stores(pd: Any, args: argparse.Namespace, src: Source) -> StoreIndex:
    sid, lat, lon = args.store_id, args.store_lat, args.store_lon
    with about(src.path), reading_errors(src.path):
        if src.fmt == "csv":
            stores = StoreSet.from_csv(src.path, store_id=sid, lat=lat, lon=lon)
        elif src.fmt == "parquet":
            df = pd.read_parquet(src.path)
            need_columns(src, list(df.columns), {"--store-id": sid, "--store-lat": lat, "--store-lon": lon})
            for option, name in (("--store-lat", lat), ("--store-lon", lon)):
                if not pd.api.types.is_numeric_dtype(df[name].dtype) or pd.api.types.is_bool_dtype(df[name].dtype):
                    raise data_error(f"{src.path} column {name!r} ({option}) has dtype {df[name].dtype}, not degrees")
            stores = StoreSet.from_dataframe(df, store_id=sid, lat=lat, lon=lon)
        else:
            rows = json_rows(src.path, lat="lat", lon="lon", id_column=sid)
            rows = [{renamed_column(k, sid, lat, lon): plain(v) for k, v in r.items()} for r in rows]
            for i, row in enumerate(rows):
                if row.get("store_id") is None:
                    raise data_error(
                        f"{src.path}: store {i} has no id: no {sid!r} field and no feature id (name the id field "
                        f"with --store-id); its fields are {sorted(k for k in row if k not in ('lat', 'lon'))}"
                    )
            stores = StoreSet.from_records(rows)
        return StoreIndex(stores)


def renamed_column(key: str, sid: str, lat: str, lon: str) -> str:
    return {sid: "store_id", lat: "lat", lon: "lon"}.get(key, key)


def read_records(pd: Any, path: str, role: str) -> tuple[Source, list[dict[str, Any]]]:
    src = Source(path, input_format(path, role))
    if src.fmt == "json":
        rows = json_rows(path, lat="lat", lon="lon", id_column=None)
        return src, [{k: plain(v) for k, v in r.items()} for r in rows]
    return src, frame_records(read_frame(pd, src, lat="lat", lon="lon"))


def load_offers(pd: Any, path: str, index: StoreIndex) -> OfferSet:
    src, rows = read_records(pd, path, "OFFERS")
    stores = index.stores
    store_ids = KnownIds(stores.store_id.tolist())
    merchants = KnownIds(stores["merchant_id"].tolist() if "merchant_id" in stores.columns else [])
    records = []
    for i, rec in enumerate(rows):
        rec = {k: v for k, v in rec.items() if v is not None}
        if "merchant_id" in rec:
            rec["merchant_id"] = merchants(rec["merchant_id"])
        if "store_ids" in rec:
            rec["store_ids"] = [store_ids(s) for s in id_list(rec["store_ids"], src, i)]
        for name in ("valid_from", "valid_until"):
            if isinstance(rec.get(name), str):
                try:
                    rec[name] = parse_time(rec[name], name)
                except ValueError as exc:
                    raise data_error(f"{src.row(i)}: {exc}") from None
        records.append(rec)
    with about(src.path):
        return OfferSet.from_records(records)


def id_list(value: Any, src: Source, i: int) -> list[Any]:
    """``store_ids`` of an offer: a list, JSON array text, or ids separated by ``;``."""
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError as exc:
                raise data_error(f"{src.row(i)}: store_ids {value!r} is not a JSON array: {exc}") from None
            if isinstance(parsed, list):
                return parsed
        return [part.strip() for part in text.split(";") if part.strip()]
    return [value]


def load_events(
    pd: Any, path: str, offers: OfferSet, index: StoreIndex, users: KnownIds | None
) -> list[tuple[str, Event]]:
    """Events of a file, in time order (ties in file order), each with where it was.

    Cells are read as :meth:`Event.from_record` reads a record, after two
    steps only a file needs: numeric text of ``ts`` is epoch seconds, and ids
    typed differently than in the other files (``17`` in a CSV, ``"17"`` in
    JSON) are read as the known ones.
    """
    src, rows = read_records(pd, path, "EVENTS")
    offer_ids = KnownIds(offers.offer_id.tolist())
    store_ids = KnownIds(index.stores.store_id.tolist())
    merchants = KnownIds(offers.merchant_id.tolist())
    out = []
    for i, rec in enumerate(rows):
        if isinstance(rec.get("ts"), str):
            try:
                rec["ts"] = parse_time(rec["ts"], "ts")
            except ValueError as exc:
                raise data_error(f"{src.row(i)}: {exc}") from None
        if users is not None and "user_id" in rec:
            rec["user_id"] = users(rec["user_id"])
        for name, known in (("offer_id", offer_ids), ("store_id", store_ids), ("merchant_id", merchants)):
            if name in rec:
                rec[name] = known(rec[name])
        try:
            out.append((src.row(i), Event.from_record(rec, where=src.row(i))))
        except O2OGeoError as exc:
            raise data_error(str(exc)) from exc
    out.sort(key=lambda item: item[1].ts)
    return out


def load_policy(path: str, offers: OfferSet, index: StoreIndex) -> PushPolicy:
    """``--policy FILE``: a JSON object of :class:`PushPolicy` arguments, read by :meth:`PushPolicy.from_dict`."""
    if os.path.splitext(path)[1].lower() != ".json":
        raise usage_error(f"--policy {path!r}: expected a .json file")
    if not os.path.isfile(path):
        raise usage_error(f"--policy {path!r}: no such file")
    with reading_errors(path), open(path, encoding="utf-8") as fh:
        obj = json.load(fh)
    if not isinstance(obj, dict):
        raise data_error(f"{path}: expected a JSON object of PushPolicy arguments; got a {type(obj).__name__}")
    stores = index.stores
    store_merchants = stores["merchant_id"].tolist() if "merchant_id" in stores.columns else []
    with about(path):
        return PushPolicy.from_dict(
            obj,
            offer_ids=offers.offer_id.tolist(),
            merchant_ids=offers.merchant_id.tolist() + store_merchants,
            store_ids=stores.store_id.tolist(),
        )


# ---------------------------------------------------------------- nearest
def where_mask(items: list[tuple[str, list[str]]] | None, stores: StoreSet) -> np.ndarray | None:
    """``--where`` as a boolean mask over the stores: columns ANDed, comma-separated values ORed."""
    if not items:
        return None
    mask = np.ones(len(stores), dtype=bool)
    for column, texts in items:
        if column not in stores.columns:
            raise data_error(f"--where names column {column!r}; the stores have columns {stores.columns}")
        values = stores[column]
        wanted: set[Any] = set()
        for text in texts:
            wanted.update(typed_values(text, values, column))
        hit = np.fromiter((plain(v) in wanted for v in values.tolist()), dtype=bool, count=len(values))
        message = missing_values_message(
            f"--where {column}={','.join(texts)}", column, sorted(wanted, key=repr), values, hit
        )
        if message is not None:
            print(f"o2o-geo: warning: {message}", file=sys.stderr)
        mask &= hit
    return mask


def typed_values(text: str, values: np.ndarray, column: str) -> list[Any]:
    """The ``--where`` value as the store column holds it: a number, a bool, or text."""
    kind = values.dtype.kind
    if kind == "b":
        low = text.strip().lower()
        if low in ("true", "1", "yes"):
            return [True]
        if low in ("false", "0", "no"):
            return [False]
        raise data_error(f"--where {column}={text}: the column holds true/false")
    if kind in "iuf":
        try:
            number = float(text)
        except ValueError:
            raise data_error(f"--where {column}={text}: the column holds numbers") from None
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
