"""The saved-index file format (version 1).

A saved index is a zip archive in numpy's ``.npz`` layout, read with
``allow_pickle=False`` so that loading a file never runs code.  Members:

``header``
    UTF-8 JSON as a uint8 array: ``{"format": "o2o_geo.StoreIndex",
    "version": 1, "n_stores": n, "id_kind": "int" or "str",
    "service_area": true or false, "columns": [{"name": ..., "kind": ...}]}``
    (``service_area``: whether the store set had that column; assumed true
    when absent).
``store_id``, ``lat``, ``lon``
    Store ids (int64 when ``id_kind`` is ``"int"``, else a text column),
    latitudes and longitudes (float64).
``service_radius_m``
    float64, NaN where the store has no radius area.
``service_area``
    Text column (below) of polygon WKB in hex, empty where none.
``col.<name>``
    Every other column, by the header's ``kind``: ``float64``, ``int64`` and
    ``bool`` as such; ``str`` (every value a string) and ``json`` (anything
    JSON can hold, ``None`` included) as a text column.

A text column is two members, ``<member>.utf8`` (uint8, the values'
UTF-8 bytes back to back) and ``<member>.offsets`` (int64, n + 1 offsets).

Readers refuse a ``version`` newer than they know; writers bump it when the
layout changes.  The zip's CRC-32 guards each member against corruption, and
the loader re-validates every coordinate and polygon.
"""

from __future__ import annotations

import json
import os
import secrets
import zipfile
from typing import Any

import numpy as np
import shapely

from .._stores import StoreSet
from .._validate import check_path, file_errors
from ..errors import IndexFormatError, MissingFileError, O2OGeoError

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "load_stores", "save_stores"]

FORMAT_NAME = "o2o_geo.StoreIndex"
FORMAT_VERSION = 1


def _encode_text(values: list[str]) -> tuple[np.ndarray, np.ndarray]:
    blobs = [v.encode("utf-8") for v in values]
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in blobs], out=offsets[1:])
    return np.frombuffer(b"".join(blobs), dtype=np.uint8), offsets


def _decode_text(data: np.ndarray, offsets: np.ndarray, n: int, name: str) -> list[str]:
    if offsets.shape != (n + 1,) or offsets[0] != 0 or offsets[-1] != data.shape[0] or np.any(np.diff(offsets) < 0):
        raise IndexFormatError(f"text column {name!r} has inconsistent offsets")
    raw = data.tobytes()
    bounds = offsets.tolist()
    try:
        return [raw[bounds[i] : bounds[i + 1]].decode("utf-8") for i in range(n)]
    except UnicodeDecodeError as exc:
        raise IndexFormatError(f"text column {name!r} is not valid UTF-8") from exc


def _column_kind(values: np.ndarray) -> str:
    if values.dtype.kind == "f":
        return "float64"
    if values.dtype.kind in "iu":
        return "int64"
    if values.dtype.kind == "b":
        return "bool"
    items = values.tolist()
    if all(isinstance(v, str) for v in items):
        return "str"
    return "json"


def save_stores(stores: StoreSet, path: str | os.PathLike[str]) -> None:
    """Write ``stores`` to ``path`` (atomically: temp file, then rename)."""
    n = len(stores)
    arrays: dict[str, np.ndarray] = {}
    ids = stores.store_id.tolist()
    id_kind = "int" if all(isinstance(v, int) for v in ids) else "str"
    if id_kind == "int":
        try:
            arrays["store_id"] = np.asarray(ids, dtype=np.int64).reshape(n)
        except OverflowError as exc:
            raise IndexFormatError("store ids beyond the int64 range cannot be saved; use string ids") from exc
    else:
        arrays["store_id.utf8"], arrays["store_id.offsets"] = _encode_text([str(v) for v in ids])
    arrays["lat"] = stores.lat
    arrays["lon"] = stores.lon
    arrays["service_radius_m"] = stores.service_radius_m
    wkb = [shapely.to_wkb(g, hex=True) if g is not None else "" for g in stores.service_area_geometry.tolist()]
    arrays["service_area.utf8"], arrays["service_area.offsets"] = _encode_text(wkb)
    columns = []
    for name in stores.columns:
        if name in ("store_id", "lat", "lon", "service_area"):
            continue
        values = stores[name]
        kind = _column_kind(values)
        member = f"col.{name}"
        if kind == "int64" and values.dtype.kind == "u" and values.size and int(values.max()) > np.iinfo(np.int64).max:
            raise IndexFormatError(
                f"column {name!r} holds unsigned values >= 2**63, which format version 1 cannot store"
            )
        if kind in ("float64", "int64", "bool"):
            arrays[member] = values.astype(kind)
        else:
            items = values.tolist()
            try:
                text = items if kind == "str" else [json.dumps(_plain(v)) for v in items]
            except TypeError as exc:
                raise IndexFormatError(f"column {name!r} holds values that cannot be saved: {exc}") from exc
            arrays[member + ".utf8"], arrays[member + ".offsets"] = _encode_text(text)
        columns.append({"name": name, "kind": kind})
    header = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "n_stores": n,
        "id_kind": id_kind,
        "service_area": "service_area" in stores.columns,
        "columns": columns,
    }
    arrays["header"] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    target = check_path(path)
    folder = os.path.dirname(os.path.abspath(target))
    # Not mkstemp: its 0600 mode would outlive the rename; os.open applies the umask like open() does.
    tmp = os.path.join(folder, f".o2oidx-{secrets.token_hex(8)}")
    with file_errors(target, "write the index"):
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)  # type: ignore[arg-type]
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, float) and v != v:
        return None
    return v


def load_stores(path: str | os.PathLike[str]) -> StoreSet:
    """Read a file written by :func:`save_stores`; raise :class:`IndexFormatError` if it is not one."""
    where = check_path(path)
    try:
        with open(where, "rb") as fh:  # we close the file, even when numpy fails
            npz = np.load(fh, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise IndexFormatError(f"{where!r} is a single numpy array, not an o2o_geo index")
            with npz:
                arrays = {name: npz[name] for name in npz.files}
    except FileNotFoundError:
        raise MissingFileError(f"no o2o_geo index file at {where!r}") from None
    except (zipfile.BadZipFile, ValueError, OSError, KeyError, EOFError, NotImplementedError, RuntimeError) as exc:
        raise IndexFormatError(f"{where!r} is not a readable o2o_geo index file ({type(exc).__name__}: {exc})") from exc
    if "header" not in arrays:
        raise IndexFormatError(f"{where!r} is a numpy archive but not an o2o_geo index (no header)")
    try:
        header = json.loads(arrays["header"].tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexFormatError(f"{where!r} has an unreadable header") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise IndexFormatError(
            f"{where!r} is not an o2o_geo index (format {header.get('format') if isinstance(header, dict) else None!r})"
        )
    version = header.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise IndexFormatError(
            f"{where!r} has index format version {version!r}; "
            f"this o2o_geo reads versions 1 to {FORMAT_VERSION}: upgrade o2o_geo"
        )
    try:
        return _from_arrays(arrays, header, where)
    except IndexFormatError:
        raise
    except (KeyError, ValueError, TypeError) as exc:
        raise IndexFormatError(f"{where!r} is damaged: {type(exc).__name__}: {exc}") from exc


def _from_arrays(arrays: dict[str, np.ndarray], header: dict[str, Any], where: str) -> StoreSet:
    n = int(header["n_stores"])

    def text(member: str) -> list[str]:
        return _decode_text(arrays[member + ".utf8"], arrays[member + ".offsets"], n, member)

    id_kind = header.get("id_kind", "int" if "store_id" in arrays else "str")
    ids: Any = arrays["store_id"] if id_kind == "int" else text("store_id")
    lat, lon, radius = arrays["lat"], arrays["lon"], arrays["service_radius_m"]
    for name, arr in (("store_id", np.asarray(ids)), ("lat", lat), ("lon", lon), ("service_radius_m", radius)):
        if arr.shape != (n,):
            raise IndexFormatError(f"{where!r}: column {name!r} has shape {arr.shape}, expected ({n},)")
    areas = np.full(n, None, dtype=object)
    for i, hexwkb in enumerate(text("service_area")):
        if hexwkb:
            try:
                areas[i] = shapely.from_wkb(hexwkb)
            except shapely.errors.GEOSException as exc:
                raise IndexFormatError(f"{where!r}: service area of row {i} is not valid WKB") from exc
    has_r = ~np.isnan(radius)
    areas[has_r] = radius[has_r].tolist()
    cols: dict[str, Any] = {}
    for col in header["columns"]:
        name, kind = col["name"], col["kind"]
        member = f"col.{name}"
        if kind in ("float64", "int64", "bool"):
            arr = arrays[member]
            if arr.shape != (n,) or arr.dtype != np.dtype(kind):
                raise IndexFormatError(
                    f"{where!r}: column {name!r} has {arr.dtype} {arr.shape}, expected {kind} ({n},)"
                )
            cols[name] = arr
        elif kind == "str":
            cols[name] = np.asarray(text(member), dtype=object)
        elif kind == "json":
            try:
                values = [json.loads(t) for t in text(member)]
            except json.JSONDecodeError as exc:
                raise IndexFormatError(f"{where!r}: column {name!r} holds invalid JSON") from exc
            arr_obj = np.empty(n, dtype=object)
            arr_obj[:] = values
            cols[name] = arr_obj
        else:
            raise IndexFormatError(f"{where!r}: column {name!r} has unknown kind {kind!r}")
    try:
        if header.get("service_area", True):
            cols["service_area"] = areas
        return StoreSet.from_columns(ids, lat, lon, **cols)
    except O2OGeoError as exc:
        raise IndexFormatError(f"{where!r} holds invalid stores: {exc}") from exc
