"""The command line: ``o2o-geo`` (or ``python -m o2o_geo``) on files.

Commands
--------
``demo``
    The sample store chain in Shanghai (no files, no extra packages).
``nearest STORES PINGS``
    The k nearest stores of every ping (:meth:`StoreIndex.nearest`), streamed
    in chunks, one output row per ping.
``rank STORES OFFERS USERS``
    The k best offers of every user (:meth:`OfferScorer.rank_many`), with an
    optional event log as the users' history.
``replay STORES OFFERS PINGS``
    A ping log through :meth:`Dispatcher.on_locations` in time order, outcome
    events recorded between the pings, the decisions and the funnel report.

Files are read and written by extension: ``.csv``; ``.parquet``/``.pq``
(pyarrow); ``.geojson``/``.json`` (a GeoJSON FeatureCollection of Points,
whose geometry gives ``lat``/``lon``, or a JSON array of objects).

This module sits at the edge of the package: ``import o2o_geo`` never imports
it, and it imports pandas (the ``cli`` extra), pyarrow (Parquet) and tqdm
(the progress bar) only when a command needs them.  A missing one is a
one-line error, or for tqdm, no bar.

Errors
------
A user's mistake prints one line ``o2o-geo: error: ...`` on stderr, never a
traceback, and the exit status says whose it is:

* 2, the command line: an unknown option or bad option value, a missing input
  file, an unsupported extension, a missing optional package;
* 1, the data: a missing column, a bad coordinate, bad JSON, an invalid
  record, any :class:`~o2o_geo.errors.O2OGeoError`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence

from ..errors import O2OGeoError
from ._common import PROG, Fail, say_error
from ._parser import build_parser

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    r"""Run the command line; returns the exit status (0 done, 1 bad data, 2 bad command line).

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit status.

    Examples
    --------
    >>> import os, tempfile
    >>> from o2o_geo._cli import main
    >>> d = tempfile.mkdtemp()
    >>> with open(os.path.join(d, "stores.csv"), "w") as fh:
    ...     _ = fh.write("store_id,lat,lon\na,31.2304,121.4737\nb,31.2243,121.4768\n")
    >>> with open(os.path.join(d, "pings.csv"), "w") as fh:
    ...     _ = fh.write("ping,lat,lon\n1,31.229,121.475\n")
    >>> main(["nearest", os.path.join(d, "stores.csv"), os.path.join(d, "pings.csv"), "-k", "2"])  # doctest: +ELLIPSIS
    ping,lat,lon,store_id_1,distance_m_1,store_id_2,distance_m_2
    1,31.229,121.475,a,198.58...,b,548.60...
    0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return int(args.run(args))
    except Fail as exc:
        say_error(str(exc))
        return exc.status
    except O2OGeoError as exc:
        say_error(str(exc))
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `o2o-geo nearest ... | head`: stop quietly
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 1
    except OSError as exc:  # a file that cannot be read or written, a full disk
        say_error(f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc))
        unusable = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
        return 2 if isinstance(exc, unusable) else 1
