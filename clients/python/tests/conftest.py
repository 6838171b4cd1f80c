"""Fixtures: every test module gets a fresh database with the extension, on the cluster of
QF_TEST_DATABASE_URL (postgres://USER@127.0.0.1:PORT/postgres)."""

from __future__ import annotations

import os
import re
import time
from typing import Any, Callable, Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo


def server_url() -> str:
    url = os.environ.get("QF_TEST_DATABASE_URL")
    if not url:
        pytest.exit(
            "QF_TEST_DATABASE_URL is not set: point it at a PostgreSQL 15 cluster with "
            "quantum_flow installed (scripts/test-clients.sh does).",
            returncode=2,
        )
    return url


@pytest.fixture(scope="module")
def conninfo(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database for this test module, with quantum_flow created in it."""
    module = request.module.__name__.rsplit(".", 1)[-1]
    dbname = "qf_py_" + re.sub(r"[^a-z0-9_]", "_", module.lower())
    admin = server_url()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    info = make_conninfo(admin, dbname=dbname)
    with psycopg.connect(info, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION quantum_flow CASCADE")
    yield info
    # Left in place for inspection; the next run of the module drops it first.


@pytest.fixture
def conn(conninfo: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to the module's database."""
    with psycopg.connect(conninfo, autocommit=True) as c:
        yield c


@pytest.fixture
def slug(request: pytest.FixtureRequest) -> str:
    """A workflow slug of this test's own (slugs are at most 44 characters)."""
    name = re.sub(r"[^a-zA-Z0-9_]", "_", request.node.name)
    return ("t_" + name)[:40]


def wait_until(condition: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Polls `condition` until it returns something truthy; fails after `timeout` seconds.

    The timeout only bounds a hang: it is not an assertion about speed."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def wait_for_run_end(conn: psycopg.Connection[Any], run_id: Any, timeout: float = 60.0) -> Any:
    """The run once it is no longer `started` (bounded by `timeout` against hangs)."""
    import quantum_flow as qf

    def ended() -> Any:
        run = qf.get_run(conn, run_id)
        return run if run.status != "started" else None

    return wait_until(ended, timeout, what=f"run {run_id} to end")
