"""Validation declared once per parameter kind, used by every public function."""

from __future__ import annotations

import difflib
import importlib
import os
import sys
import warnings
from typing import Any

import numpy as np

from ._types import FloatArray
from .errors import InvalidCoordinateError, InvalidParameterError, InvalidRecordError, ShapeMismatchError

__all__ = ["as_latlon", "check_k", "check_distance_m", "import_optional", "warn_user"]


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


def check_distance_m(value: Any, name: str, *, allow_none: bool = False) -> float | None:
    """Return a non-negative, non-NaN distance in metres (``inf`` allowed)."""
    if value is None and allow_none:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(f"{name} must be a number of metres; got {value!r}") from exc
    if not out >= 0.0:
        raise InvalidParameterError(f"{name} must be >= 0 metres; got {value!r}")
    return out


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
