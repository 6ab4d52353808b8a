"""A push service to copy: an ASGI app (Starlette) that embeds one Dispatcher.

Run it (from the project root, after ``pip install -e ".[service]"``)::

    python examples/service/app.py --make-demo-data demo/      # a saved index and offers to start from
    O2O_INDEX=demo/stores.o2oidx O2O_OFFERS=demo/offers.json \\
        uvicorn --app-dir examples/service app:app --port 8000

Configuration, read once at start-up from the environment:

* ``O2O_INDEX``: a saved :class:`~o2o_geo.StoreIndex` (``index.save(path)``), loaded at start-up;
* ``O2O_OFFERS``: a JSON list of offer records (:meth:`~o2o_geo.OfferSet.from_records`);
* ``O2O_POLICY``: optional JSON object of :class:`~o2o_geo.PushPolicy` settings (plain values);
* ``O2O_STATE``: the SQLite state file (default ``o2o_state.db``), or
  ``O2O_REDIS_URL``: a Redis URL, for a RedisState shared by every replica.

Endpoints (JSON in, JSON out):

* ``POST /pings``: one ping ``{"user_id", "lat", "lon", "ts", "event_id"?, "accuracy_m"?, "tz"?}``
  or ``{"pings": [...]}`` (a batch, in order, every row checked before any is processed, as
  :meth:`~o2o_geo.Dispatcher.on_locations` does); returns ``{"decisions": [...]}``, each a
  :meth:`~o2o_geo.PushDecision.to_dict`; a holdout decision is marked and must not be sent;
* ``POST /events``: one event ``{"kind", "user_id", "ts", "push_id"?, "offer_id"?, "store_id"?,
  "amount"?, "event_id"?}`` or ``{"events": [...]}``; returns the attributed ``push_ids``;
* ``GET /report?by=offer&metric=redeem&since=&until=``: the funnel, uplift and retention rows
  (a share of nobody, NaN in the library, is ``null``);
* ``GET /explain?user_id=&lat=&lon=&ts=``: why that ping would or would not push (a dry run);
* ``GET /health``.

Bad input answers 400 with the library's typed error (``{"error": "InvalidCoordinateError",
"message": ...}``) and changes nothing; an unknown push, offer or store, 404.  The dispatcher's
calls block (SQLite, Redis), so each request runs in Starlette's thread pool; the state makes
every ping and event one transaction, so concurrent requests never exceed a cap.  Shutdown
(SIGTERM, Ctrl-C) lets running requests finish, then closes the dispatcher: pending feedback is
flushed and the state's connections closed.

Why Starlette and not FastAPI: the app is five routes whose inputs the library already checks
with typed errors; FastAPI's request models would repeat those checks (and bring pydantic).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import o2o_geo as og
from o2o_geo import errors

NOT_FOUND = (errors.UnknownPushError, errors.UnknownOfferError, errors.UnknownStoreError)
PING_FIELDS = ("user_id", "lat", "lon", "ts", "event_id", "accuracy_m", "tz")
Handler = Callable[[Request], Awaitable[JSONResponse]]


def build_dispatcher(env: dict[str, str] | None = None) -> og.Dispatcher:
    """The service's dispatcher from its environment (see the module docstring)."""
    env = dict(os.environ if env is None else env)
    index = og.StoreIndex.load(env["O2O_INDEX"])
    with open(env["O2O_OFFERS"], encoding="utf-8") as f:
        offers = og.OfferSet.from_records(json.load(f))
    policy = og.PushPolicy()
    if env.get("O2O_POLICY"):
        with open(env["O2O_POLICY"], encoding="utf-8") as f:
            policy = og.PushPolicy(**json.load(f))
    if env.get("O2O_REDIS_URL"):
        state: og.DispatchState = og.RedisState(env["O2O_REDIS_URL"], namespace=env.get("O2O_REDIS_NS", "o2o"))
    else:
        state = og.SQLiteState(env.get("O2O_STATE", "o2o_state.db"))
    return og.Dispatcher(index, offers, policy=policy, state=state)


def _answers(*client_errors: type[Exception]) -> Callable[[Handler], Handler]:
    """A handler whose library errors (and ``client_errors``) answer 400 or 404 with the error, not 500."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def answer(request: Request) -> JSONResponse:
            try:
                return await handler(request)
            except (errors.O2OGeoError, *client_errors) as exc:
                return _error(exc)

        return answer

    return wrap


def _error(exc: Exception) -> JSONResponse:
    status = 404 if isinstance(exc, NOT_FOUND) else 400
    return JSONResponse({"error": type(exc).__name__, "message": str(exc)}, status_code=status)


async def _body(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError as exc:
        raise errors.InvalidRecordError(f"the body is not JSON: {exc}") from None


def _items(body: Any, key: str) -> list[dict[str, Any]]:
    items = body.get(key) if isinstance(body, dict) and key in body else [body]
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise errors.InvalidRecordError(f"send one JSON object, or {{{key!r}: [objects]}}")
    return items


def create_app(dispatcher: og.Dispatcher | None = None) -> Starlette:
    """The ASGI app; ``dispatcher`` for tests, else built from the environment at start-up."""
    engine: dict[str, og.Dispatcher] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        engine["d"] = dispatcher if dispatcher is not None else build_dispatcher()
        try:
            yield
        finally:
            engine.pop("d").close()  # after the server stopped taking requests and finished the running ones
            print("o2o service: dispatcher closed", file=sys.stderr, flush=True)

    @_answers(TypeError)  # (a missing or unknown field is a TypeError of the call)
    async def pings(request: Request) -> JSONResponse:
        body = await _body(request)
        items = _items(body, "pings")
        for p in items:
            unknown = set(p) - set(PING_FIELDS)
            if unknown:
                raise errors.InvalidRecordError(f"unknown ping fields {sorted(unknown)}; fields are {PING_FIELDS}")
        d = engine["d"]
        if isinstance(body, dict) and "pings" in body:  # a batch: every row checked before any is processed
            cols = {f: [p.get(f) for p in items] for f in PING_FIELDS if any(f in p for p in items)}
            decided = await run_in_threadpool(d.on_locations, cols)
        else:
            decided = await run_in_threadpool(lambda: d.on_location(**items[0]))
        return JSONResponse({"decisions": [x.to_dict() for x in decided]})

    @_answers(TypeError)
    async def events(request: Request) -> JSONResponse:
        evs = [og.Event(**e) for e in _items(await _body(request), "events")]
        ids = await run_in_threadpool(lambda: [engine["d"].record(e) for e in evs])
        return JSONResponse({"push_ids": ids})

    @_answers(ValueError)  # (a number that is not one)
    async def report(request: Request) -> JSONResponse:
        q = request.query_params
        window = {k: float(q[k]) for k in ("since", "until") if k in q}
        by, metric = q.get("by", "offer"), q.get("metric", "redeem")
        rows = await run_in_threadpool(lambda: engine["d"].report(by=by, metric=metric, as_frame=False, **window))
        # a share of nobody (no holdout users, no visitor with a complete window yet) is NaN: JSON null
        clean = [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()} for r in rows]
        return JSONResponse({"rows": clean})

    @_answers(ValueError)
    async def explain(request: Request) -> JSONResponse:
        q = request.query_params
        missing = [k for k in ("user_id", "lat", "lon", "ts") if k not in q]
        if missing:
            raise errors.InvalidParameterError(f"explain needs user_id, lat, lon and ts; missing {missing}")
        acc = float(q["accuracy_m"]) if "accuracy_m" in q else None
        args = (q["user_id"], float(q["lat"]), float(q["lon"]), float(q["ts"]))
        why = await run_in_threadpool(lambda: engine["d"].explain_ping(*args, accuracy_m=acc, tz=q.get("tz")))
        return JSONResponse({"gate": why.gate, "reason": why.reason, "triggers": why.triggers,
                             "candidates": why.to_records() if why.candidates else [],
                             "decisions": [d.to_dict() for d in why.decisions]})  # fmt: skip

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": "d" in engine})

    routes = [
        Route("/pings", pings, methods=["POST"]),
        Route("/events", events, methods=["POST"]),
        Route("/report", report),
        Route("/explain", explain),
        Route("/health", health),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def make_demo_data(folder: str) -> None:
    """The sample stores saved as an index, and two offers, in ``folder`` (what the docstring's commands use)."""
    os.makedirs(folder, exist_ok=True)
    og.StoreIndex(og.sample_stores()).save(os.path.join(folder, "stores.o2oidx"))
    offers = [
        {"offer_id": "latte", "merchant_id": "m-lucky", "category": "coffee", "discount_rate": 0.8},
        {"offer_id": "oolong", "merchant_id": "m-teagarden", "category": "tea", "discount_rate": 0.7},
    ]
    with open(os.path.join(folder, "offers.json"), "w", encoding="utf-8") as f:
        json.dump(offers, f)


# what uvicorn serves (``uvicorn app:app``): the dispatcher is built at start-up, from the environment
app = create_app() if os.environ.get("O2O_INDEX") else None

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="the example push service (see the module docstring)")
    ap.add_argument("--make-demo-data", metavar="FOLDER", help="write a saved index and offers to start from")
    args = ap.parse_args()
    if args.make_demo_data:
        make_demo_data(args.make_demo_data)
        print(f"wrote {args.make_demo_data}/stores.o2oidx and offers.json")
    else:
        ap.print_help()
