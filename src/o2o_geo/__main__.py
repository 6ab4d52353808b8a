"""Command line: ``python -m o2o_geo demo``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="o2o-geo", description="o2o_geo command line")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="build a sample store chain in Shanghai and query it")
    demo.add_argument("--seed", type=int, default=7, help="seed of the sample chain (default 7)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from ._demo import run_demo

        run_demo(seed=args.seed, out=sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
