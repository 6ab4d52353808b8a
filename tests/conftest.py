"""The fixtures every test area shares (the helpers and oracles they are built from are in ``_worlds.py``)."""

from __future__ import annotations

import numpy as np
import pytest
from _worlds import RedisServer, new_redis_state

import o2o_geo as og


@pytest.fixture
def rng():
    return np.random.default_rng(20261122)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def state_factory(request, tmp_path):
    """``make(name="state.db")``: a new state of the parameter's backend (SQLite: that file); ``make.kind`` names it."""
    made = []
    server = request.getfixturevalue("redis_server") if request.param == "redis" else None

    def make(name="state.db"):
        if request.param == "memory":
            st = og.MemoryState()
        elif request.param == "redis":
            st = new_redis_state(server)
        else:
            st = og.SQLiteState(tmp_path / name)
        made.append(st)
        return st

    make.kind = request.param
    yield make
    for st in made:
        st.close()


@pytest.fixture
def state(state_factory):
    """One new state of each backend (memory, SQLite, a real redis-server)."""
    return state_factory()
