"""Command line entry point: ``python -m o2o_geo`` and the ``o2o-geo`` script (see :mod:`o2o_geo._cli`)."""

from __future__ import annotations

from ._cli import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
