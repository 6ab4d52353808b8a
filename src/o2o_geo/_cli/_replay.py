"""``o2o-geo replay STORES OFFERS PINGS``: a ping log through the dispatcher, the decisions and the report."""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from typing import Any

import numpy as np

from .._dispatch import Dispatcher, PushDecision
from .._events import Event
from .._frames import decisions_frame, plain
from .._index import StoreIndex
from .._offers import OfferSet
from .._policy import PushPolicy
from .._scoring import OfferScorer
from .._state import MemoryState, SQLiteState
from .._time import zone
from .._validate import KnownIds
from ._common import (
    about,
    counted,
    data_error,
    input_format,
    make_progress,
    need_pandas,
    output_format,
    say_summary,
    usage_error,
)
from ._read import (
    Source,
    coords_of,
    ids_of,
    load_events,
    load_offers,
    load_policy,
    load_stores,
    need_columns,
    read_frame,
    times_of,
)
from ._write import write_frame


# ---------------------------------------------------------------- replay
def cmd_replay(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    pd = need_pandas("replay")
    stores_src = Source(args.stores, input_format(args.stores, "STORES"))
    input_format(args.offers, "OFFERS")
    src = Source(args.pings, input_format(args.pings, "PINGS"))
    out_fmt = output_format(args.output, "-o", geo=False)
    report_fmt = output_format(args.report, "--report", geo=False) if args.report else None
    if args.state is not None:
        folder = os.path.dirname(os.path.abspath(args.state))
        if not os.path.isdir(folder) or os.path.isdir(args.state):
            raise usage_error(
                f"--state {args.state!r}: the folder {os.path.dirname(args.state) or '.'!r} does not exist"
            )
    index = load_stores(pd, args, stores_src)
    offers = load_offers(pd, args.offers, index)
    policy = load_policy(args.policy, offers, index) if args.policy else PushPolicy()
    pings = read_frame(pd, src, lat=args.lat, lon=args.lon, id_column=None)
    need_columns(
        src, list(pings.columns), {"--user-id": args.user_id, "--lat": args.lat, "--lon": args.lon, "--ts": args.ts}
    )
    users = ids_of(pings, args.user_id, src, "the user id")
    la, lo = coords_of(pings, args.lat, args.lon, src, 0)
    ts = times_of(pings, args.ts, src)
    user_col = np.empty(len(users), dtype=object)
    user_col[:] = users
    cols: dict[str, Any] = {"user_id": user_col, "lat": la, "lon": lo, "ts": ts}
    if "accuracy_m" in pings.columns:
        acc = pd.to_numeric(pings["accuracy_m"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad = pings["accuracy_m"].notna().to_numpy() & ~(np.isfinite(acc) & (acc >= 0))  # text, < 0, inf
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            value = plain(pings["accuracy_m"].iloc[i])
            raise data_error(f"{src.row(i)}: accuracy_m = {value!r} must be a number of metres >= 0")
        cols["accuracy_m"] = acc
    for name in ("event_id", "tz"):
        if name in pings.columns:
            values = np.empty(len(pings), dtype=object)
            values[:] = [plain(v) for v in pings[name].to_list()]
            cols[name] = values
    if "tz" in cols:
        for i, name in enumerate(cols["tz"].tolist()):
            if name is not None:
                with about(src.row(i)):
                    zone(name)
    order = np.argsort(ts, kind="stable")
    cols = {name: values[order] for name, values in cols.items()}
    events = load_events(pd, args.events, offers, index, KnownIds(users)) if args.events else []
    with about(args.stores):
        OfferScorer(index, offers)  # the stores fit the offers (a merchant_id column)
    # the run works on a copy of the --state file that replaces it only when the run and its outputs succeed
    work = state_copy(args.state) if args.state else None
    try:
        return run_replay(pd, args, index, offers, policy, cols, events, n_users=len(users), work=work,
                       out_fmt=out_fmt, report_fmt=report_fmt, t0=t0)  # fmt: skip
    finally:
        if work is not None:
            remove_sqlite(work)


def state_copy(path: str) -> str:
    """A private copy of a SQLite state file (SQLite's backup: consistent, WAL included), beside it."""
    import sqlite3

    work = os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.{os.getpid()}.replay")
    remove_sqlite(work)
    if os.path.exists(path):
        try:
            with contextlib.closing(sqlite3.connect(path)) as src, contextlib.closing(sqlite3.connect(work)) as dst:
                src.backup(dst)
        except sqlite3.Error as exc:
            remove_sqlite(work)
            raise data_error(f"--state {path}: not a readable SQLite state file ({exc})") from exc
        if os.path.exists(path + "-wal"):  # our connection was the last one unless another process has it open
            remove_sqlite(work)
            raise usage_error(f"--state {path}: the file is in use by another process; replay into a copy of it")
    return work


def remove_sqlite(path: str) -> None:
    for name in (path, path + "-wal", path + "-shm", path + "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(name)


def run_replay(
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
    bar = make_progress(args.progress, lambda: n, args.chunk_size, "pings")
    done = 0
    try:
        with about(f"--state {args.state}") if work is not None else contextlib.nullcontext():
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
                with about(where):
                    engine.record(event)
            pings_until(n)
            report = engine.report(by=args.by)
    finally:
        bar.close(done)
    write_frame(decisions_frame(decisions, explanation=args.explain), args.output, out_fmt)
    if args.report:
        assert report_fmt is not None
        write_frame(report, args.report, report_fmt)
    elif len(report):
        with pd.option_context("display.max_columns", None, "display.width", 200):
            print(report.to_string(index=False))
    else:
        print("no pushes: the report is empty")
    held = sum(d.holdout for d in decisions)
    what = (
        f"{counted(n, 'ping')}, {counted(len(events), 'event')} -> {counted(len(decisions), 'decision')} "
        f"({held:,} held out)"
    )
    if work is not None:  # the outputs are written: the state moves on
        os.replace(work, args.state)
    say_summary("replay", what, n, "pings", t0, args.output)
    return 0
