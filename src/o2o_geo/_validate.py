"""Validation declared once per parameter kind, used by every public function."""

from __future__ import annotations

import difflib
import importlib
import math
import os
import sys
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from ._types import FloatArray
from .errors import (
    FileAccessError,
    InvalidCoordinateError,
    InvalidParameterError,
    InvalidRecordError,
    MissingFileError,
    O2OGeoError,
    ShapeMismatchError,
)

__all__ = [
    "KnownIds",
    "as_items",
    "as_latlon",
    "check_choice",
    "check_count",
    "check_distance_m",
    "check_flag",
    "check_id",
    "check_k",
    "check_metres",
    "check_number",
    "check_path",
    "check_quantity",
    "file_errors",
    "import_optional",
    "warn_user",
]


@contextmanager
def file_errors(path: str, doing: str) -> Iterator[None]:
    """Typed errors for a file operation: MissingFileError, or FileAccessError for any other OSError.

    ``doing`` says what failed, e.g. ``"write the index"``.
    """
    try:
        yield
    except O2OGeoError:
        raise
    except FileNotFoundError:
        raise MissingFileError(f"cannot {doing}: {path!r} (or its folder) does not exist") from None
    except OSError as exc:
        raise FileAccessError(f"cannot {doing} at {path!r}: {exc.strerror or exc}") from exc


def check_path(path: Any, name: str = "path") -> str:
    """A file path as text: a non-empty str or os.PathLike without NUL bytes (never a bool or file number).

    ``open(1)`` would open the process's standard output, so an int is
    refused rather than taken as a file descriptor.

    Examples
    --------
    >>> check_path("stores.csv")
    'stores.csv'
    >>> check_path(1)
    Traceback (most recent call last):
    ...
    o2o_geo.errors.InvalidParameterError: path must be a file path (str or os.PathLike); got 1
    """
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str) or not path or "\x00" in path:
        raise InvalidParameterError(f"{name} must be a file path (str or os.PathLike); got {path!r:.80}")
    return path


def as_point(lat: Any, lon: Any, caller: str, batch: str) -> tuple[float, float]:
    """One checked position as plain floats (a fast path for floats in range), for a one-point call.

    ``caller`` and ``batch`` name the call and its many-point twin in the error for several points.
    """
    if type(lat) is float and type(lon) is float and -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0:
        return lat, lon
    lat_a, lon_a, _ = as_latlon(lat, lon)
    if lat_a.shape[0] != 1:
        raise InvalidParameterError(f"{caller} takes one point; got {lat_a.shape[0]} (use {batch})")
    return float(lat_a[0]), float(lon_a[0])


def _as_float_array(value: Any, name: str) -> FloatArray:
    if np.iscomplexobj(value):
        raise InvalidCoordinateError(f"{name} must be real numbers; got {value!r:.80}")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidCoordinateError(f"{name} must be numbers; got {value!r:.80}") from exc
    return arr


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask.ravel())[0])


def as_latlon(
    lat: Any, lon: Any, *, what: str = "", labels: np.ndarray | None = None
) -> tuple[FloatArray, FloatArray, bool]:
    """Return ``(lat, lon, is_scalar)`` as 1-D float64 arrays, checked.

    Latitudes must lie in [-90, 90] and longitudes in [-180, 180]: o2o_geo does
    not wrap longitudes silently, since an out-of-range value is far more often
    a swapped (lon, lat) pair than a deliberate 190 degrees.  ``labels``
    (e.g. store ids) are named in the message next to the bad row.
    """
    if type(lat) is float and type(lon) is float and -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0:
        return np.array([lat]), np.array([lon]), True  # the scalar hot path skips the generic checks
    prefix = f"{what}" if what else ""
    lat_a = _as_float_array(lat, f"{prefix}lat")
    lon_a = _as_float_array(lon, f"{prefix}lon")
    is_scalar = lat_a.ndim == 0 and lon_a.ndim == 0
    if lat_a.ndim > 1 or lon_a.ndim > 1:
        raise ShapeMismatchError(
            f"{prefix}lat and {prefix}lon must be scalars or 1-D arrays; got shapes {lat_a.shape} and {lon_a.shape}"
        )
    lat_a = np.atleast_1d(lat_a)
    lon_a = np.atleast_1d(lon_a)
    if lat_a.shape != lon_a.shape:
        raise ShapeMismatchError(
            f"{prefix}lat has {lat_a.shape[0]} values but {prefix}lon has {lon_a.shape[0]}; give one lon per lat"
        )
    for arr, name, bound in ((lat_a, "lat", 90.0), (lon_a, "lon", 180.0)):
        bad = ~(np.abs(arr) <= bound)  # also catches NaN
        if bad.any():
            i = _first_bad(bad)
            where = "" if is_scalar else f"[{i}]"
            if labels is not None and i < len(labels):
                where += f" (store_id {labels[i]!r})"
            val = float(arr[i])
            hint = ""
            if np.isfinite(val) and name == "lat" and abs(val) <= 180:
                hint = "; did you pass (lon, lat) instead of (lat, lon)?"
            elif np.isfinite(val) and name == "lon":
                hint = "; wrap it first, e.g. ((lon + 180) % 360) - 180"
            raise InvalidCoordinateError(
                f"{prefix}{name}{where} = {val!r} is outside [-{bound:g}, {bound:g}]{hint}"
                if np.isfinite(val)
                else f"{prefix}{name}{where} = {val!r} is not a finite number"
            )
    return lat_a, lon_a, is_scalar


_MAX_K = 2**31 - 1  # a result of k columns per query: beyond this no array could hold it


def check_k(k: Any) -> int:
    """Return ``k`` as a positive int or raise :class:`InvalidParameterError`."""
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidParameterError(f"k must be a positive integer; got {k!r}")
    if k > _MAX_K:
        raise InvalidParameterError(f"k must be at most {_MAX_K:,} (no result array could hold more); got {k!r}")
    return int(k)


def check_quantity(
    value: Any,
    name: str,
    *,
    unit: str = "",
    positive: bool = False,
    allow_inf: bool = False,
    allow_none: bool = False,
    error: type[O2OGeoError] = InvalidParameterError,
) -> Any:
    """A real number ``>= 0`` (``> 0`` with ``positive``), finite unless ``allow_inf``, as a float.

    The one check of every distance, duration, money amount and rate, of a
    parameter or (``error=InvalidRecordError``) of a record's field; ``unit``
    ("metres", "seconds") goes into the message.  Bools, NaN, strings and
    arrays are refused; numpy scalars are taken; ``None`` is returned as is
    with ``allow_none``.

    Examples
    --------
    >>> check_quantity(np.float32(2.5), "dwell_s", unit="seconds"), check_quantity(None, "cap", allow_none=True)
    (2.5, None)
    >>> check_quantity(float("inf"), "radius_m", unit="metres", positive=True)
    Traceback (most recent call last):
    ...
    o2o_geo.errors.InvalidParameterError: radius_m must be a finite number of metres > 0; got inf
    """
    try:
        return check_number(value, name, low=0.0, low_open=positive, allow_none=allow_none, finite=not allow_inf)
    except InvalidParameterError:
        kind = "a number" if allow_inf else "a finite number"
        bound = "> 0" if positive else ">= 0"
        or_none = " or None" if allow_none else ""
        of_unit = f" of {unit}" if unit else ""
        raise error(f"{name} must be {kind}{of_unit} {bound}{or_none}; got {value!r:.80}") from None


def check_metres(value: Any, name: str, *, positive: bool = False, allow_inf: bool = False,
                 allow_none: bool = False, error: type[O2OGeoError] = InvalidParameterError) -> Any:  # fmt: skip
    """A distance in metres: :func:`check_quantity` with ``unit="metres"``.

    >>> check_metres(100, "radius_m", positive=True), check_metres(float("inf"), "max_distance_m", allow_inf=True)
    (100.0, inf)
    """
    return check_quantity(
        value, name, unit="metres", positive=positive, allow_inf=allow_inf, allow_none=allow_none, error=error
    )


def check_distance_m(value: Any, name: str, *, allow_none: bool = False) -> float | None:
    """A search distance in metres: ``>= 0``, ``inf`` allowed (no limit)."""
    return check_metres(value, name, allow_inf=True, allow_none=allow_none)


def check_count(value: Any, name: str, *, low: int = 0, allow_none: bool = False) -> Any:
    """An int ``>= low`` (numpy's taken, bools refused), or ``None`` with ``allow_none``.

    The one check of every count, cap and size parameter.

    Examples
    --------
    >>> check_count(np.int64(3), "max_per_day"), check_count(None, "max_per_day", allow_none=True)
    (3, None)
    >>> check_count(0, "max_per_ping", low=1)
    Traceback (most recent call last):
    ...
    o2o_geo.errors.InvalidParameterError: max_per_ping must be an int >= 1; got 0
    """
    try:
        return check_number(value, name, low=low, allow_none=allow_none, integer=True)
    except InvalidParameterError:
        or_none = " or None" if allow_none else ""
        raise InvalidParameterError(f"{name} must be an int >= {low}{or_none}; got {value!r:.80}") from None


def import_optional(module: str, *, needed_by: str, extra: str) -> Any:
    """Import an optional dependency, or raise an ImportError that names the extra to install.

    Optional integrations (pandas, geopandas, ...) are imported here, inside
    the methods that need them, so ``import o2o_geo`` needs only the core
    dependencies.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f'{needed_by} needs {module} ({exc}); install it with: pip install "o2o_geo[{extra}]"'
        ) from exc


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def warn_user(message: str, category: type[Warning]) -> None:
    """Issue a warning attributed to the first caller outside o2o_geo (so filters and messages name the user's line)."""
    level = 1
    frame = sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR + os.sep):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    warnings.warn(message, category, stacklevel=level)


def did_you_mean(name: Any, known: Any, *, cutoff: float = 0.6) -> str:
    """`` (did you mean 'x'?)`` for the known name nearest to ``name``, or ``""`` when none is near.

    Examples
    --------
    >>> did_you_mean("accuracy", ("accuracy_m", "tz")), did_you_mean("zzz", ("tz",))
    (" (did you mean 'accuracy_m'?)", '')
    """
    near = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=cutoff)
    return f" (did you mean {near[0]!r}?)" if near else ""


def check_number(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    allow_none: bool = False,
    integer: bool = False,
    finite: bool = False,
) -> Any:
    """A real number in ``[low, high]`` (``(low, high]`` with ``low_open``) as a float, or an int with ``integer``.

    Bools, NaN (and infinities with ``finite``), strings, arrays and other
    objects are refused with :class:`InvalidParameterError`; numpy scalars
    are taken.  ``None`` is returned as is with ``allow_none``.  The one
    decision behind :func:`check_quantity`, :func:`check_metres` and
    :func:`check_count`, which phrase it per kind of value.

    Examples
    --------
    >>> check_number(np.float32(0.5), "rate", low=0, high=1), check_number(3, "n", low=1, integer=True)
    (0.5, 3)
    >>> check_number(True, "rate")
    Traceback (most recent call last):
    ...
    o2o_geo.errors.InvalidParameterError: rate must be a number; got True
    """
    if value is None and allow_none:
        return None
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, kinds):
        raise InvalidParameterError(f"{name} must be {'an integer' if integer else 'a number'}; got {value!r:.80}")
    out = int(value) if integer else float(value)
    too_low = low is not None and (out <= low if low_open else out < low)
    if out != out or too_low or (high is not None and out > high) or (finite and math.isinf(out)):
        lo = "" if low is None else (f"> {low:g}" if low_open else f">= {low:g}")
        hi = "" if high is None else f"<= {high:g}"
        bounds = " and ".join(x for x in (lo, hi) if x) or "a number"
        raise InvalidParameterError(f"{name} must be {bounds}; got {value!r}")
    return out


def check_choice(value: Any, name: str, choices: Any) -> Any:
    """``value`` if it is one of ``choices`` (compared only when it is a str or a bool), else InvalidParameterError.

    Examples
    --------
    >>> check_choice("power", "decay", ("power", "exp"))
    'power'
    >>> check_choice("pwr", "decay", ("power", "exp"))
    Traceback (most recent call last):
    ...
    o2o_geo.errors.InvalidParameterError: decay must be one of 'power', 'exp'; got 'pwr' (did you mean 'power'?)
    """
    if isinstance(value, (str, bool)) and value in choices:
        return value
    hint = did_you_mean(value, [c for c in choices if isinstance(c, str)]) if isinstance(value, str) else ""
    raise InvalidParameterError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r:.80}{hint}")


def as_items(value: Any, name: str) -> list[Any]:
    """The items of a list-like (list, tuple, array, generator...) as a list; a str, a mapping or a scalar is refused.

    Examples
    --------
    >>> as_items((1, 2), "store_ids"), as_items(np.array(["a"]), "store_ids")
    ([1, 2], ['a'])
    >>> as_items("ab", "store_ids")
    Traceback (most recent call last):
    ...
    o2o_geo.errors.InvalidParameterError: store_ids must be a list or an array of items; got 'ab'
    """
    if isinstance(value, np.ndarray):
        if value.ndim != 1:
            raise InvalidParameterError(f"{name} must be one-dimensional; got an array of shape {value.shape}")
        return value.tolist()
    if value is None or isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise InvalidParameterError(f"{name} must be a list or an array of items; got {value!r:.80}")
    return list(value)


def rows_of(ids: Any, lookup: Mapping[Any, int], name: str, unknown: Any) -> np.ndarray:
    """The rows ``lookup`` gives the ids (one id or a sequence; numpy ints as ints), as int64.

    ``unknown(id, item)`` is raised for an id ``lookup`` lacks (or that cannot be a key).

    Examples
    --------
    >>> rows_of(["b", "a"], {"a": 0, "b": 1}, "ids", KeyError).tolist(), rows_of(np.int64(3), {3: 5}, "ids", KeyError)
    ([1, 0], array([5]))
    """
    items = [ids] if isinstance(ids, (str, int, np.integer)) else as_items(ids, name)
    out = np.empty(len(items), dtype=np.int64)
    for i, v in enumerate(items):
        key = int(v) if isinstance(v, np.integer) else v
        try:
            row = lookup.get(key)
        except TypeError:  # unhashable
            row = None
        if row is None:
            raise unknown(v, i)
        out[i] = row
    return out


def check_flag(value: Any, name: str) -> bool:
    """A bool (numpy's taken), else InvalidParameterError."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise InvalidParameterError(f"{name} must be True or False; got {value!r:.80}")


def check_id(value: Any, name: str) -> Any:
    """An id as a plain ``str`` or ``int`` (numpy's are converted); anything else is InvalidRecordError.

    Examples
    --------
    >>> check_id(np.int64(7), "user_id"), check_id("u1", "user_id")
    (7, 'u1')
    """
    if type(value) is str or type(value) is int:
        return value
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.str_):
        return str(value)
    if value is None or isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidRecordError(f"{name} must be a str or an int; got {value!r}")
    return value


class KnownIds:
    """Known ids (of offers, stores, merchants or users), to read an id typed differently elsewhere.

    A CSV file reads ``17`` as an int where JSON has ``"17"`` (and a JSON
    object's keys are always text): an id that is not known as given but
    whose text is, is read as the known one.  Missing values (None, NaN) are
    not ids.

    Examples
    --------
    >>> known = KnownIds([17, "latte", np.int64(3), None])
    >>> known("17"), known(3.0), known("mocha"), "latte" in known, "mocha" in known
    (17, 3, 'mocha', True, False)
    """

    def __init__(self, values: Iterable[Any]) -> None:
        self._known: dict[str, Any] = {}
        for v in values:
            v = _plain(v)
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                self._known.setdefault(_loose_text(v), v)

    def __call__(self, value: Any) -> Any:
        value = _plain(value)
        return None if value is None else self._known.get(_loose_text(value), value)

    def __contains__(self, value: Any) -> bool:
        return _loose_text(_plain(value)) in self._known

    def __iter__(self) -> Iterator[Any]:
        return iter(self._known.values())


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _loose_text(value: Any) -> str:
    """An id's text, types merged: ``17``, ``"17"`` and ``17.0`` (an int column with gaps) all read ``"17"``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
