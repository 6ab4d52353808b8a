"""``o2o-geo nearest STORES PINGS``: the k nearest stores of every ping, streamed in chunks."""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from .._index import StoreIndex
from ._common import counted, data_error, input_format, make_progress, need_pandas, output_format, say_summary
from ._read import Source, coords_of, load_stores, need_columns, read_chunks, where_mask
from ._write import Sink


def neighbour_columns(pd: Any, index: StoreIndex, nb: Any, n: int, k: int) -> dict[str, Any]:
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


def cmd_nearest(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    pd = need_pandas("nearest")
    stores_src = Source(args.stores, input_format(args.stores, "STORES"))
    src = Source(args.pings, input_format(args.pings, "PINGS"))
    out_fmt = output_format(args.output, "-o", geo=True)
    index = load_stores(pd, args, stores_src)
    where = where_mask(args.where, index.stores)
    head, count, chunks = read_chunks(pd, src, args.chunk_size, lat=args.lat, lon=args.lon, id_column="id")
    need_columns(src, list(head.columns), {"--lat": args.lat, "--lon": args.lon})
    added = [f"{name}_{j}" for j in range(1, args.k + 1) for name in ("store_id", "distance_m")]
    clash = [c for c in added if c in head.columns]
    if clash:
        raise data_error(f"{src.path} already has column {clash[0]!r}, which the output adds; rename it")
    sink = Sink(args.output, out_fmt)
    bar = make_progress(args.progress, count, args.chunk_size, "rows")
    rows = 0
    try:
        for chunk in chunks:
            frame = chunk.reset_index(drop=True)
            la, lo = coords_of(frame, args.lat, args.lon, src, rows)
            nb = index.nearest(la, lo, k=args.k, max_distance_m=args.max_distance_m, where=where)
            out = frame.assign(**neighbour_columns(pd, index, nb, len(frame), args.k))
            sink.write(out, (la, lo, args.lat, args.lon))
            rows += len(frame)
            bar.update(len(frame))
        if rows == 0:  # the header (and for Parquet the schema) of an empty result
            empty = head.assign(**neighbour_columns(pd, index, index.nearest([], [], k=args.k), 0, args.k))
            sink.write(empty, (np.empty(0), np.empty(0), args.lat, args.lon))
        sink.commit()
    finally:
        bar.close(rows)
        sink.discard()
    say_summary("nearest", counted(rows, "row"), rows, "rows", t0, sink.name)
    return 0
