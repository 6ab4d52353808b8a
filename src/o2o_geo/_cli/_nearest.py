"""``o2o-geo nearest STORES PINGS``: the k nearest stores of every ping, streamed in chunks."""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from .._frames import check_free, wide_neighbours
from .._index import StoreIndex
from ._common import counted, input_format, make_progress, need_pandas, output_format, say_summary
from ._read import Source, coords_of, load_stores, need_columns, read_chunks, where_mask
from ._write import Sink


def _neighbours(index: StoreIndex, nb: Any, n: int, k: int) -> dict[str, Any]:
    return wide_neighbours(index.stores.store_id, nb.position.reshape(n, k), nb.distance_m.reshape(n, k))


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
    check_free(list(head.columns), added)
    sink = Sink(args.output, out_fmt)
    bar = make_progress(args.progress, count, args.chunk_size, "rows")
    rows = 0
    try:
        for chunk in chunks:
            frame = chunk.reset_index(drop=True)
            la, lo = coords_of(frame, args.lat, args.lon, src, rows)
            nb = index.nearest(la, lo, k=args.k, max_distance_m=args.max_distance_m, where=where)
            out = frame.assign(**_neighbours(index, nb, len(frame), args.k))
            sink.write(out, (la, lo, args.lat, args.lon))
            rows += len(frame)
            bar.update(len(frame))
        if rows == 0:  # the header (and for Parquet the schema) of an empty result
            empty = head.assign(**_neighbours(index, index.nearest([], [], k=args.k), 0, args.k))
            sink.write(empty, (np.empty(0), np.empty(0), args.lat, args.lon))
        sink.commit()
    finally:
        bar.close(rows)
        sink.discard()
    say_summary("nearest", counted(rows, "row"), rows, "rows", t0, sink.name)
    return 0
