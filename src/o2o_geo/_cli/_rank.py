"""``o2o-geo rank STORES OFFERS USERS``: the k best offers of every user."""

from __future__ import annotations

import argparse
import time

from .._scoring import OfferScorer
from .._validate import KnownIds
from ._common import about, counted, input_format, make_progress, need_pandas, output_format, say_summary
from ._read import Source, coords_of, ids_of, load_events, load_offers, load_stores, need_columns, read_frame
from ._write import Sink


# ---------------------------------------------------------------- rank
def cmd_rank(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    pd = need_pandas("rank")
    stores_src = Source(args.stores, input_format(args.stores, "STORES"))
    input_format(args.offers, "OFFERS")
    src = Source(args.users, input_format(args.users, "USERS"))
    out_fmt = output_format(args.output, "-o", geo=False)
    now = time.time() if args.now is None else args.now
    index = load_stores(pd, args, stores_src)
    offers = load_offers(pd, args.offers, index)
    users = read_frame(pd, src, lat=args.lat, lon=args.lon, id_column=args.user_id)
    need_columns(src, list(users.columns), {"--user-id": args.user_id, "--lat": args.lat, "--lon": args.lon})
    user_ids = ids_of(users, args.user_id, src, "the user id")
    la, lo = coords_of(users, args.lat, args.lon, src, 0)
    with about(args.stores):
        scorer = OfferScorer(index, offers)
    if args.events:
        for where, event in load_events(pd, args.events, offers, index, KnownIds(user_ids)):
            with about(where):
                scorer.record(event)
    n = len(user_ids)
    sink = Sink(args.output, out_fmt)
    bar = make_progress(args.progress, lambda: n, args.chunk_size, "users")
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
    say_summary("rank", f"{counted(n, 'user')} -> {counted(n_rows, 'row')}", n, "users", t0, sink.name)
    return 0
