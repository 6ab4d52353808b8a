"""The argument parser: one sub-parser per command over shared parent parsers (stores, points, output, running)."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from ._common import DEFAULT_CHUNK_ROWS, PROG, metres_arg, positive_int, time_arg, where_item
from ._nearest import cmd_nearest
from ._rank import cmd_rank
from ._replay import cmd_replay


# ---------------------------------------------------------------- demo
def cmd_demo(args: argparse.Namespace) -> int:
    from .._demo import run_demo

    run_demo(seed=args.seed, out=sys.stdout)
    return 0


# ---------------------------------------------------------------- the parser
class Parser(argparse.ArgumentParser):
    """argparse with a one-line error message (and exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


FORMATS_HELP = """\
files, by extension: .csv; .parquet or .pq (needs pyarrow); .geojson or .json (a GeoJSON
FeatureCollection of Points, whose geometry gives lat/lon, or a JSON array of objects).
"""


EXIT_HELP = """\
exit status: 0 done; 1 the data is wrong (a missing column, a bad coordinate, bad JSON, an
invalid record); 2 the command line is wrong (a bad option, a missing file, an unknown
extension, a missing optional package). Errors are one line on stderr.
"""


NEAREST_HELP = f"""\
output: one row per ping, in input order: the ping's own columns, then
  store_id_1, distance_m_1, store_id_2, distance_m_2, ..., store_id_k, distance_m_k
nearest first, distances in WGS84 geodesic metres; empty (null) where fewer than k stores
qualify (none within --max-distance-m, or none passing --where). OUT by extension: .csv (CSV on
stdout when -o is omitted), .parquet/.pq, .geojson/.json (a FeatureCollection: each ping a Point,
its lat/lon in the geometry, the other columns as properties).

Pings are read and answered --chunk-size rows at a time, so a CSV or Parquet file larger than
memory streams through (a GeoJSON file is read whole). A progress bar (tqdm) shows on stderr
when stderr is a terminal and the file is longer than one chunk, or with --progress; a summary
line (rows, seconds, rows/s, output) ends the run.

{FORMATS_HELP}
{EXIT_HELP}
example:
  o2o-geo nearest stores.csv pings.parquet -k 3 --where category=coffee --max-distance-m 2000 \\
      -o nearest.parquet
"""


RANK_HELP = f"""\
OFFERS: rows with the fields of og.Offer (offer_id, merchant_id, category, discount_rate,
spend_amount, off_amount, valid_from, valid_until, store_ids, max_distance_m); times are epoch
seconds or ISO-8601 with an offset; store_ids is a list, JSON array text or ids separated by ';'.
The stores need a merchant_id column. USERS: user_id, lat, lon (rename with --user-id/--lat/--lon).
EVENTS (--events): rows with the fields of og.Event (kind, user_id, ts, offer_id, store_id,
merchant_id, category, push_id, amount, discount_depth, distance_m, event_id), ts in epoch seconds
(or ISO-8601 with an offset); they are the users' history.

output: OfferScorer.rank_many's table, one row per (user, offer), best first:
  query, user_id, rank, offer_id, store_id, score, distance_m
query is the user's row in USERS (0-based), rank 0 is the best offer, store_id is where to redeem
it, score the probability of redemption. A user with no offer in reach has no row. OUT: .csv (CSV
on stdout when -o is omitted), .parquet/.pq or .json (an array of objects).

{FORMATS_HELP}
{EXIT_HELP}
example:
  o2o-geo rank stores.csv offers.json users.csv -k 10 --events events.csv \\
      --now 2026-01-01T09:00:00+08:00 -o ranked.csv
"""


REPLAY_HELP = f"""\
PINGS: user_id, lat, lon, ts (epoch seconds or ISO-8601 with an offset), optional accuracy_m,
event_id and tz columns. The pings are sorted by ts (ties keep the file's order) and replayed with
Dispatcher.on_locations; each event of --events (og.Event fields, e.g. kind, user_id, ts, push_id,
offer_id, amount) is recorded after every ping at or before its ts, as it would be live, so
dismissals and redemptions shape later decisions. With --state the run continues the SQLite
state of earlier runs (caps, fences, pushes; give pings and events an event_id so a rerun counts
them once), and the report covers everything in it. The run works on a copy of that file, which
replaces it only when the run and its outputs succeed: a failed run leaves it as it was (so do not
point --state at a file a live engine is writing).

outputs: DECISIONS, one row per decision in replay order:
  push_id, user_id, offer_id, store_id, merchant_id, score, distance_m, trigger, holdout, ts
(PushDecision.to_dict(); with --explain also explanation, each feature's term of the logit as a
JSON object); REPORT (or stdout without --report): Dispatcher.report(by=...), per group pushed,
holdout, failed, delivered, opened, redeemed, visited, revenue, the rates, the users and
conversion of both groups, uplift and its 95% interval. Both .csv, .parquet/.pq or .json.

POLICY.json: an object of og.PushPolicy arguments, e.g.
  {{"max_per_day": 2, "quiet_hours": [22, 8], "holdout_fraction": 0.1,
   "offer_budgets": {{"latte": {{"max_pushes": 1000, "max_cost": 5000}}}}}}

{FORMATS_HELP}
{EXIT_HELP}
example:
  o2o-geo replay stores.csv offers.csv pings.parquet --policy policy.json --events outcomes.csv \\
      --by merchant -o decisions.csv --report funnel.csv
"""


def _points(noun: str, *, user_id: bool) -> Parser:
    """The parent parser of the columns of the rows a command reads: ``--lat``, ``--lon`` (and ``--user-id``)."""
    points = Parser(add_help=False)
    if user_id:
        points.add_argument("--user-id", default="user_id", metavar="COL", help="user id column (default user_id)")
    points.add_argument("--lat", default="lat", metavar="COL", help=f"{noun} latitude column (default lat)")
    points.add_argument("--lon", default="lon", metavar="COL", help=f"{noun} longitude column (default lon)")
    return points


def _output(metavar: str, *, required: bool = False) -> Parser:
    """The parent parser of ``-o/--output`` (CSV on stdout when it is optional and omitted)."""
    out = Parser(add_help=False)
    what = "the decisions file" if required else "output file (default: CSV on stdout)"
    out.add_argument("-o", "--output", metavar=metavar, required=required, help=what)
    return out


def build_parser() -> Parser:
    from .. import __version__

    fmt = argparse.RawDescriptionHelpFormatter
    parser = Parser(
        prog=PROG,
        description="o2o_geo command line: nearest stores, offer ranking and push replay on files.",
        epilog=f"{FORMATS_HELP}\n{EXIT_HELP}\nexample:\n  o2o-geo nearest stores.csv pings.csv -k 3 -o nearest.csv",
        formatter_class=fmt,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    stores = Parser(add_help=False)
    group = stores.add_argument_group(
        "store columns", "GeoJSON stores take lat/lon from the Point geometry and the id from the feature's id"
    )
    group.add_argument("--store-id", default="store_id", metavar="COL", help="store id column (default store_id)")
    group.add_argument("--store-lat", default="lat", metavar="COL", help="store latitude column (default lat)")
    group.add_argument("--store-lon", default="lon", metavar="COL", help="store longitude column (default lon)")

    def running(command: str) -> Parser:
        run = Parser(add_help=False)
        group = run.add_argument_group("running")
        group.add_argument(
            "--chunk-size",
            type=positive_int,
            default=DEFAULT_CHUNK_ROWS[command],
            metavar="N",
            help=f"rows handled per step (default {DEFAULT_CHUNK_ROWS[command]:,})",
        )
        group.add_argument(
            "--progress",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="show a progress bar on stderr (needs tqdm; default: when stderr is a terminal and the input is "
            "longer than one step)",
        )
        return run

    demo = sub.add_parser(
        "demo",
        help="build a sample store chain in Shanghai and query it",
        description="Build a sample store chain in Shanghai (generated, no download) and query it.",
        epilog="example:\n  o2o-geo demo --seed 7",
        formatter_class=fmt,
    )
    demo.add_argument("--seed", type=int, default=7, help="seed of the sample chain (default 7)")
    demo.set_defaults(run=cmd_demo)

    near = sub.add_parser(
        "nearest",
        parents=[stores, _points("ping", user_id=False), _output("OUT"), running("nearest")],
        help="the k nearest stores of every ping in a file",
        description="Find the k nearest stores of every ping (exact WGS84 geodesic distance).",
        epilog=NEAREST_HELP,
        formatter_class=fmt,
    )
    near.add_argument("stores", metavar="STORES", help="the stores: store_id, lat, lon and any attribute columns")
    near.add_argument("pings", metavar="PINGS", help="the pings: lat, lon and any other columns (kept in the output)")
    near.add_argument("-k", type=positive_int, default=1, help="stores per ping (default 1)")
    near.add_argument(
        "--max-distance-m", type=metres_arg, default=None, metavar="M", help="ignore stores farther than M metres"
    )
    near.add_argument(
        "--where",
        type=where_item,
        action="append",
        metavar="COL=VALUE",
        help="only stores whose column COL equals VALUE (a number for a numeric column); repeat to AND several "
        "columns; VALUE may list alternatives separated by commas (category=coffee,tea)",
    )
    near.set_defaults(run=cmd_nearest)

    rank = sub.add_parser(
        "rank",
        parents=[stores, _points("user", user_id=True), _output("OUT"), running("rank")],
        help="the k best offers for every user in a file",
        description="Rank the offers for every user at the user's position (OfferScorer.rank_many).",
        epilog=RANK_HELP,
        formatter_class=fmt,
    )
    rank.add_argument("stores", metavar="STORES", help="the stores, with a merchant_id column")
    rank.add_argument("offers", metavar="OFFERS", help="the offers (og.Offer fields)")
    rank.add_argument("users", metavar="USERS", help="the users: user_id, lat, lon")
    rank.add_argument("-k", type=positive_int, default=10, help="offers per user (default 10)")
    rank.add_argument("--events", metavar="EVENTS", help="past events (og.Event fields): the users' history")
    rank.add_argument(
        "--now",
        type=time_arg,
        metavar="TIME",
        help="time of the ranking: epoch seconds or ISO-8601 with an offset (default: now)",
    )
    rank.set_defaults(run=cmd_rank)

    replay = sub.add_parser(
        "replay",
        parents=[stores, _points("ping", user_id=True), _output("DECISIONS", required=True), running("replay")],
        help="replay a ping log through the push dispatcher",
        description="Replay a ping log through the push dispatcher: decisions, outcome events and the funnel report.",
        epilog=REPLAY_HELP,
        formatter_class=fmt,
    )
    replay.add_argument("stores", metavar="STORES", help="the stores, with a merchant_id column")
    replay.add_argument("offers", metavar="OFFERS", help="the offers (og.Offer fields)")
    replay.add_argument("pings", metavar="PINGS", help="the ping log: user_id, lat, lon, ts")
    replay.add_argument("--report", metavar="REPORT", help="the funnel report file (default: printed on stdout)")
    replay.add_argument(
        "--by", choices=("offer", "merchant", "store", "all"), default="offer", help="report groups (default offer)"
    )
    replay.add_argument("--policy", metavar="POLICY.json", help="PushPolicy arguments as a JSON object")
    replay.add_argument("--state", metavar="PATH", help="a SQLite state file (default: in memory, for this run)")
    replay.add_argument("--events", metavar="EVENTS", help="outcome events (og.Event fields) to record")
    replay.add_argument(
        "--explain", action="store_true", help="add the explanation column (a JSON object) to the decisions"
    )
    replay.add_argument("--ts", default="ts", metavar="COL", help="ping time column (default ts)")
    replay.set_defaults(run=cmd_replay)
    return parser
