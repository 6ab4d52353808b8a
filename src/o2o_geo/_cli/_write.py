"""Writing the command line's outputs atomically: CSV, Parquet, JSON and GeoJSON."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from typing import Any

import numpy as np

from .._frames import plain
from ._common import data_error, need_pyarrow, usage_error


# ---------------------------------------------------------------- output
class Sink:
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
                    raise usage_error(f"{path}: cannot write there ({exc.strerror})") from exc

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
                lines = json_lines(df.drop(columns=[lat, lon]), len(df))
                lines = [
                    f'{{"type": "Feature", "geometry": {{"type": "Point", "coordinates": [{x!r}, {y!r}]}}, '
                    f'"properties": {p}}}'
                    for x, y, p in zip(lo.tolist(), la.tolist(), lines, strict=True)
                ]
            else:
                lines = json_lines(df, len(df))
            if lines:
                if self._wrote_json:
                    self._fh.write(",\n")
                self._fh.write(",\n".join(lines))
                self._wrote_json = True
        self._first = False

    def _write_parquet(self, df: Any) -> None:
        pa, pq = need_pyarrow(self.name)
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
                raise usage_error(f"{self.name}: cannot write there ({exc})") from exc
        elif not table.schema.equals(self._parquet.schema, check_metadata=False):
            try:
                table = table.cast(self._parquet.schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                raise data_error(
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


def json_lines(df: Any, n: int) -> list[str]:
    """One JSON object per row, values exact (missing and non-finite numbers as null)."""
    if df.shape[1] == 0:
        return ["{}"] * n
    names = [str(c) for c in df.columns]
    columns = [[json_value(v) for v in df[c].to_list()] for c in df.columns]
    return [
        json.dumps(dict(zip(names, values, strict=True)), ensure_ascii=False, default=str)
        for values in zip(*columns, strict=True)
    ]


def json_value(value: Any) -> Any:
    value = plain(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_frame(df: Any, path: str | None, fmt: str) -> None:
    sink = Sink(path, fmt)
    try:
        sink.write(df)
        sink.commit()
    finally:
        sink.discard()
