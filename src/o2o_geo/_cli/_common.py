"""The command line's shared pieces: its errors and exit statuses, option types, file formats, progress."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from .._time import to_epoch_s
from ..errors import O2OGeoError

PROG = "o2o-geo"


#: Rows handled per step by command: bounds the memory of a streamed file, sets the progress bar's pace.
DEFAULT_CHUNK_ROWS = {"nearest": 200_000, "rank": 20_000, "replay": 20_000}


INPUT_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".geojson": "json", ".json": "json"}


# ---------------------------------------------------------------- errors
class Fail(Exception):
    """A user's mistake: one line on stderr and an exit status (1 data, 2 command line)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def usage_error(message: str) -> Fail:
    return Fail(message, 2)


def data_error(message: str) -> Fail:
    return Fail(message, 1)


def say_error(message: str) -> None:
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)


@contextlib.contextmanager
def about(what: str) -> Iterator[None]:
    """Name the file (or option) in any library error raised while reading it."""
    try:
        yield
    except O2OGeoError as exc:
        raise data_error(f"{what}: {exc}") from exc


# ---------------------------------------------------------------- optional packages
def need_pandas(command: str) -> Any:
    try:
        import pandas as pd
    except ImportError as exc:
        raise usage_error(f"'{command}' needs pandas ({exc}); install it with: pip install 'o2o_geo[cli]'") from exc
    return pd


def need_pyarrow(path: str) -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise usage_error(
            f"{path}: Parquet files need pyarrow ({exc}); install it with: pip install pyarrow (or 'o2o_geo[cli]')"
        ) from exc
    return pa, pq


# ---------------------------------------------------------------- argument types
def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1; got {value}")
    return value


def metres_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of metres") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 metres; got {text}")
    return value


def where_item(text: str) -> tuple[str, list[str]]:
    column, sep, value = text.partition("=")
    if not sep or not column.strip():
        raise argparse.ArgumentTypeError(f"takes COLUMN=VALUE (e.g. category=coffee); got {text!r}")
    return column.strip(), value.split(",")


def parse_time(value: Any, name: str = "the time") -> float:
    """Epoch seconds from a number or numeric text, else as ``to_epoch_s`` reads it (ISO-8601 with a UTC offset).

    Raises InvalidParameterError (a ValueError) naming ``name``.
    """
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value.strip())
    return to_epoch_s(value, name)


def time_arg(text: str) -> float:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# ---------------------------------------------------------------- files
def input_format(path: str, role: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    fmt = INPUT_FORMATS.get(ext)
    if fmt is None:
        raise usage_error(
            f"{role} {path!r}: unknown file extension {ext or '(none)'!r}; use .csv, .parquet/.pq or .geojson/.json"
        )
    if not os.path.exists(path):
        raise usage_error(f"{role} {path!r}: no such file")
    if not os.path.isfile(path):
        raise usage_error(f"{role} {path!r}: not a file")
    if fmt == "parquet":
        need_pyarrow(path)
    return fmt


def output_format(path: str | None, role: str, *, geo: bool) -> str:
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
        raise usage_error(f"{role} {path!r}: this table has no coordinates for GeoJSON; write .csv, .parquet or .json")
    else:
        allowed = ".csv, .parquet/.pq or .geojson/.json" if geo else ".csv, .parquet/.pq or .json"
        raise usage_error(f"{role} {path!r}: unknown file extension {ext or '(none)'!r}; use {allowed}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise usage_error(f"{role} {path!r}: the folder {os.path.dirname(path) or '.'!r} does not exist")
    if os.path.isdir(path):
        raise usage_error(f"{role} {path!r} is a folder")
    if fmt == "parquet":
        need_pyarrow(path)
    return fmt


# ---------------------------------------------------------------- progress and summary
class Progress:
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


def make_progress(setting: bool | None, count: Callable[[], int], chunk_rows: int, unit: str) -> Progress:
    """A bar when asked (``--progress``), or by default when stderr is a terminal and the input is long."""
    if setting is False or (setting is None and not stderr_is_tty()):
        return Progress()
    try:
        from tqdm import tqdm
    except ImportError:
        if setting:
            print(f"{PROG}: note: no progress bar without tqdm (pip install tqdm)", file=sys.stderr)
        return Progress()
    total = count()
    if setting is None and total <= chunk_rows:
        return Progress()
    return Progress(
        tqdm(total=total, unit=f" {unit}", unit_scale=True, file=sys.stderr, mininterval=0.5, dynamic_ncols=True)
    )


def stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def counted(n: int, word: str) -> str:
    """``1 row``, ``1,000 rows``."""
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def say_summary(command: str, what: str, n: int, unit: str, t0: float, dest: str) -> None:
    seconds = max(time.perf_counter() - t0, 1e-9)
    print(
        f"{PROG} {command}: {what} in {seconds:,.2f} s ({n / seconds:,.0f} {unit}/s) -> {dest}",
        file=sys.stderr,
    )
