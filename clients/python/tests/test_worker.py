"""Worker: concurrency over many runs, retries with attempts, permanent errors, output that is
not JSON, logging of failures, late answers, stop()."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, List, Tuple
from uuid import UUID

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from conftest import wait_for_run_end, wait_until

import quantum_flow as qf


def test_works_many_runs_concurrently(
    conninfo: str, conn: psycopg.Connection[Any], slug: str
) -> None:
    qf.create_flow(conn, slug)
    qf.add_step(conn, slug, "split")
    qf.add_step(conn, slug, "double", ["split"], step_type="map")
    qf.add_step(conn, slug, "sum", ["double"])
    functions = {
        "split": lambda i: list(range(i["run"]["n"])),
        "double": lambda i: i["item"] * 2,
        "sum": lambda i: sum(i["double"]),
    }
    worker = qf.Worker(conninfo, slug, functions, concurrency=4, batch_size=3, max_wait_ms=200)
    worker.start()
    try:
        runs = {n: qf.start_flow(conn, slug, {"n": n}) for n in range(8)}
        for n, run_id in runs.items():
            run = wait_for_run_end(conn, run_id)
            assert (run.status, run.output) == ("completed", {"sum": n * (n - 1)})
    finally:
        stats = worker.stop()
    # split + n doubles + sum, per run
    assert stats == qf.WorkerStats(completed=sum(n + 2 for n in range(8)), failed=0, ignored=0)
    assert not worker.running


def test_exceptions_fail_the_attempt_and_retries_carry_the_attempt(
    conninfo: str, conn: psycopg.Connection[Any], slug: str
) -> None:
    qf.create_flow(conn, slug, max_attempts=3, base_delay=0)
    qf.add_step(conn, slug, "flaky")
    calls: List[Any] = []

    def flaky(input: Any) -> Any:
        calls.append(input)
        if len(calls) < 3:
            raise ConnectionError(f"upstream down ({len(calls)})")
        return {"calls": len(calls)}

    worker = qf.Worker(conninfo, slug, {"flaky": flaky}, max_wait_ms=200).start()
    try:
        run_id = qf.start_flow(conn, slug, {"x": 1})
        run = wait_for_run_end(conn, run_id)
    finally:
        stats = worker.stop()
    assert (run.status, run.output) == ("completed", {"flaky": {"calls": 3}})
    assert calls == [{"run": {"x": 1}}] * 3
    assert stats == qf.WorkerStats(completed=1, failed=2, ignored=0)


def one_run_worked(
    conninfo: str, conn: psycopg.Connection[Any], slug: str, a: Any
) -> Tuple[Any, qf.WorkerStats]:
    """Starts a run of ``slug`` and works it to its end with a worker whose step ``a`` is
    ``a``; the run and the worker's stats."""
    worker = qf.Worker(conninfo, slug, {"a": a}, max_wait_ms=200).start()
    try:
        run = wait_for_run_end(conn, qf.start_flow(conn, slug))
    finally:
        stats = worker.stop()
    return run, stats


def test_an_exception_without_text_is_reported_by_its_type(
    conninfo: str, conn: psycopg.Connection[Any], slug: str
) -> None:
    qf.create_flow(conn, slug, max_attempts=1)
    qf.add_step(conn, slug, "a")

    def a(input: Any) -> Any:
        raise KeyError

    run, _ = one_run_worked(conninfo, conn, slug, a)
    assert (run.status, run.error_message) == ("failed", "step a, task 0, attempt 1: KeyError")


def test_a_base_exception_from_a_step_function_fails_the_attempt(
    conninfo: str, conn: psycopg.Connection[Any], slug: str
) -> None:
    """SystemExit (or an asyncio CancelledError) is no Exception, but it still ends the
    attempt: the task fails with its message instead of staying claimed until its timeout."""
    qf.create_flow(conn, slug, max_attempts=1)
    qf.add_step(conn, slug, "a")

    def a(input: Any) -> Any:
        raise SystemExit("leaving")

    run, stats = one_run_worked(conninfo, conn, slug, a)
    assert (run.status, run.error_message) == ("failed", "step a, task 0, attempt 1: leaving")
    assert stats == qf.WorkerStats(failed=1)


NOT_RETRIED = " (not retried: the worker said the error is permanent)"


class BadInput(qf.PermanentError):
    pass


@pytest.mark.parametrize("error", [qf.PermanentError("bad input"), BadInput("bad input")])
def test_a_permanent_error_fails_the_task_at_its_first_attempt(
    conninfo: str, conn: psycopg.Connection[Any], slug: str, error: Exception
) -> None:
    qf.create_flow(conn, slug, max_attempts=3, base_delay=0)
    qf.add_step(conn, slug, "a")
    qf.add_step(conn, slug, "b", ["a"])
    calls: List[Any] = []

    def a(input: Any) -> Any:
        calls.append(input)
        raise error

    worker = qf.Worker(conninfo, slug, {"a": a, "b": lambda i: 1}, max_wait_ms=200).start()
    try:
        run_id = qf.start_flow(conn, slug, {"x": 1})
        run = wait_for_run_end(conn, run_id)
    finally:
        stats = worker.stop()
    message = "step a, task 0, attempt 1: bad input" + NOT_RETRIED
    assert (run.status, run.error_message) == ("failed", message)
    assert run.step("a") == qf.StepState("a", "failed", 1, 0, None, message)
    assert calls == [{"run": {"x": 1}}]  # one attempt only, with two left
    assert stats == qf.WorkerStats(completed=0, failed=1, ignored=0)


@pytest.mark.parametrize(
    "output",
    [{"when": object()}, float("nan"), {1, 2}],
    ids=["object", "nan", "set"],
)
def test_output_that_is_not_json_fails_the_task_at_its_first_attempt(
    conninfo: str, conn: psycopg.Connection[Any], slug: str, output: Any
) -> None:
    qf.create_flow(conn, slug, max_attempts=3, base_delay=0)
    qf.add_step(conn, slug, "a")
    calls: List[Any] = []

    def a(input: Any) -> Any:
        calls.append(input)
        return output

    worker = qf.Worker(conninfo, slug, {"a": a}, max_wait_ms=200).start()
    try:
        run_id = qf.start_flow(conn, slug)
        run = wait_for_run_end(conn, run_id)
    finally:
        stats = worker.stop()
    with pytest.raises((TypeError, ValueError)) as why:
        json.dumps(output, allow_nan=False)
    assert (run.status, run.error_message) == (
        "failed",
        f"step a, task 0, attempt 1: output is not JSON: {why.value}" + NOT_RETRIED,
    )
    assert len(calls) == 1
    assert stats == qf.WorkerStats(completed=0, failed=1, ignored=0)


def test_failures_are_logged_with_their_traceback(
    conninfo: str, conn: psycopg.Connection[Any], slug: str, caplog: pytest.LogCaptureFixture
) -> None:
    qf.create_flow(conn, slug, max_attempts=2, base_delay=0)
    qf.add_step(conn, slug, "fetch")
    qf.add_step(conn, slug, "store", ["fetch"])

    def fetch(input: Any) -> Any:
        raise ConnectionError("upstream down")

    def store(input: Any) -> Any:
        raise AssertionError("unreachable")

    caplog.set_level(logging.ERROR, logger="quantum_flow.worker")
    worker = qf.Worker(conninfo, slug, {"fetch": fetch, "store": store}, max_wait_ms=200)
    worker.start()
    try:
        run_id = qf.start_flow(conn, slug)
        run = wait_for_run_end(conn, run_id)
    finally:
        worker.stop()
    assert run.error_message == "step fetch, task 0, attempt 2: upstream down"
    records = [r for r in caplog.records if r.name == "quantum_flow.worker"]
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (
            logging.ERROR,
            f"workflow {slug!r}, step 'fetch', task 0, attempt {n} (run {run_id}): "
            "the step function raised",
        )
        for n in (1, 2)
    ]
    for r in records:
        assert r.exc_info is not None
        exc_type, exc, tb = r.exc_info
        assert exc_type is ConnectionError and str(exc) == "upstream down"
        assert tb is not None
    assert "Traceback (most recent call last)" in caplog.text
    assert 'raise ConnectionError("upstream down")' in caplog.text


def test_a_permanent_failure_is_logged_as_such(
    conninfo: str, conn: psycopg.Connection[Any], slug: str, caplog: pytest.LogCaptureFixture
) -> None:
    qf.create_flow(conn, slug)
    qf.add_step(conn, slug, "a")
    qf.add_step(conn, slug, "b")

    def a(input: Any) -> Any:
        raise qf.PermanentError("no such customer")

    caplog.set_level(logging.ERROR, logger="quantum_flow.worker")
    worker = qf.Worker(conninfo, slug, {"a": a, "b": lambda i: {"at": object()}}, max_wait_ms=200)
    worker.start()
    try:
        run_id = qf.start_flow(conn, slug)
        wait_for_run_end(conn, run_id)
        wait_until(lambda: len(caplog.records) >= 2 or None, what="two log records")
    finally:
        worker.stop()
    records = sorted(
        (r for r in caplog.records if r.name == "quantum_flow.worker"), key=lambda r: r.getMessage()
    )
    assert [r.getMessage() for r in records] == [
        f"workflow {slug!r}, step 'a', task 0, attempt 1 (run {run_id}): the step function "
        "raised (permanent: not retried)",
        f"workflow {slug!r}, step 'b', task 0, attempt 1 (run {run_id}): the step function "
        "returned output that is not JSON (permanent: not retried)",
    ]
    assert records[0].exc_info is not None and records[0].exc_info[0] is qf.PermanentError
    assert records[1].exc_info is not None and records[1].exc_info[0] is TypeError


def test_a_late_answer_for_a_timed_out_attempt_is_ignored(
    conninfo: str, conn: psycopg.Connection[Any], slug: str
) -> None:
    qf.create_flow(conn, slug, timeout=1, max_attempts=3)
    qf.add_step(conn, slug, "slow")
    started = threading.Event()
    release = threading.Event()

    def slow(input: Any) -> Any:
        started.set()
        release.wait(60)
        return "from the worker"

    worker = qf.Worker(conninfo, slug, {"slow": slow}, concurrency=1, max_wait_ms=200).start()
    try:
        run_id = qf.start_flow(conn, slug)
        assert started.wait(30)
        # The worker holds attempt 1 past its 1 s timeout: another poller gets attempt 2.
        # (The worker cannot claim it: its only slot is busy.)
        tasks = qf.poll_tasks(conn, slug, max_wait_ms=10_000)
        assert [(t.step_slug, t.attempt) for t in tasks] == [("slow", 2)]
        assert qf.complete_task(conn, run_id, "slow", 0, "from attempt 2", attempt=2) is True
        release.set()
        wait_until(lambda: worker.stats.ignored == 1, what="the worker's late answer")
    finally:
        release.set()
        stats = worker.stop()
    assert stats == qf.WorkerStats(completed=0, failed=0, ignored=1)
    run = qf.get_run(conn, run_id)
    assert (run.status, run.output) == ("completed", {"slow": "from attempt 2"})


def test_stop_finishes_held_tasks_and_claims_no_more(
    conninfo: str, conn: psycopg.Connection[Any], slug: str
) -> None:
    qf.create_flow(conn, slug)
    qf.add_step(conn, slug, "each", step_type="map")
    held = threading.Event()
    release = threading.Event()
    seen: List[int] = []

    def each(input: Any) -> Any:
        seen.append(input["index"])
        held.set()
        release.wait(60)
        return input["item"].upper()

    worker = qf.Worker(conninfo, slug, {"each": each}, concurrency=1, batch_size=1, max_wait_ms=200)
    worker.start()
    run_id = qf.start_flow(conn, slug, ["a", "b", "c"])
    assert held.wait(30)
    stopper = threading.Thread(target=worker.stop)
    stopper.start()
    # stop() waits for the held task ...
    stopper.join(0.5)
    assert stopper.is_alive()
    release.set()
    stopper.join(30)
    assert not stopper.is_alive() and not worker.running
    assert worker.stats == qf.WorkerStats(completed=1)
    [done] = seen
    # ... which was answered; the other two were never claimed: they are ready right now,
    # as first attempts.
    run = qf.get_run(conn, run_id)
    assert run.step("each").tasks_completed == 1
    rest = qf.poll_tasks(conn, slug)
    assert sorted((t.task_index, t.attempt) for t in rest) == sorted(
        (i, 1) for i in {0, 1, 2} - {done}
    )
    for t in rest:
        qf.complete_task(conn, run_id, "each", t.task_index, t.input["item"].upper())
    assert qf.get_run(conn, run_id).output == {"each": ["A", "B", "C"]}


def test_connections_get_tcp_keepalive_unless_the_conninfo_sets_its_own(conninfo: str) -> None:
    from quantum_flow.worker import _connect

    def keepalive(c: psycopg.Connection[Any]) -> tuple:
        p = c.info.get_parameters()
        keys = ("keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count")
        return tuple(p.get(k) for k in keys)

    with _connect(conninfo) as c:
        assert keepalive(c) == ("1", "30", "10", "3")
        assert c.autocommit is True
    with _connect(make_conninfo(conninfo, keepalives_idle="5", keepalives_count="9")) as c:
        assert keepalive(c) == ("1", "5", "10", "9")


def poll_backends(conn: psycopg.Connection[Any], waiting: bool = False) -> List[int]:
    """The pids of this database's other backends whose last query is a poll_tasks (a
    worker's poll connection); with ``waiting``, only those inside one right now."""
    rows = conn.execute(
        # This database only: other tests of the cluster poll too.
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND query LIKE '%%quantum_flow.poll_tasks%%' "
        "AND (state = 'active' OR NOT %s) ORDER BY pid",
        [waiting],
    ).fetchall()
    return [pid for (pid,) in rows]


def test_stop_cancels_a_waiting_poll_which_claims_nothing(
    conninfo: str, conn: psycopg.Connection[Any], slug: str
) -> None:
    qf.create_flow(conn, slug)
    qf.add_step(conn, slug, "a")
    # The longest wait the server allows (quantum_flow.max_wait_ms): a longer one is refused
    # with invalid_option (see test_options_the_server_refuses_end_run).
    worker = qf.Worker(conninfo, slug, {"a": lambda i: 1}, max_wait_ms=60_000)
    worker.start()
    # Wait until the worker's poll is waiting in the server.
    wait_until(
        lambda: len(poll_backends(conn, waiting=True)) == 1,
        what="the worker's poll to wait",
    )
    stopper = threading.Thread(target=worker.stop)
    stopper.start()
    # Bounds a hang only: without the cancel, stop() would wait out the 60 s poll.
    stopper.join(50)
    assert not stopper.is_alive()
    assert worker.stats == qf.WorkerStats()
    run_id = qf.start_flow(conn, slug)
    [task] = qf.poll_tasks(conn, slug)
    assert (task.run_id, task.attempt) == (run_id, 1)


def test_a_poll_cancelled_by_someone_else_is_retried(
    conninfo: str, conn: psycopg.Connection[Any], slug: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A cancel that stop() did not send (pg_cancel_backend, a statement_timeout) ends that
    poll only: the worker logs it, polls again and goes on working."""
    qf.create_flow(conn, slug)
    qf.add_step(conn, slug, "a")
    worker = qf.Worker(
        conninfo, slug, {"a": lambda i: i["run"]["n"] * 3}, max_wait_ms=60_000, retry_delay=0.05
    )
    caplog.set_level(logging.WARNING, logger="quantum_flow.worker")
    worker.start()
    try:
        [poll] = wait_until(
            lambda: poll_backends(conn, waiting=True), what="the worker's poll to wait"
        )
        [(cancelled,)] = conn.execute("SELECT pg_cancel_backend(%s)", [poll]).fetchall()
        assert cancelled is True
        wait_until(
            lambda: any(
                r.getMessage().startswith("poll_tasks failed (canceling statement")
                for r in caplog.records
            ),
            what="the cancelled poll's WARNING",
        )
        run_id = qf.start_flow(conn, slug, {"n": 14})
        run = wait_for_run_end(conn, run_id)
        assert (run.status, run.output) == ("completed", {"a": 42})
        assert worker.running
    finally:
        stats = worker.stop(30)
    assert stats == qf.WorkerStats(completed=1)


def test_an_answer_whose_connection_died_while_idle_is_sent_again(
    conninfo: str, conn: psycopg.Connection[Any], slug: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The connection a task thread answers on is terminated between two tasks (as a server
    restart or idle_session_timeout would): the next answer fails on it and is sent once
    more on a new connection, so its attempt counts and the task is not claimed again."""
    qf.create_flow(conn, slug)
    qf.add_step(conn, slug, "a")
    worker = qf.Worker(
        conninfo,
        slug,
        {"a": lambda i: i["run"]["n"] + 1},
        max_wait_ms=200,
        concurrency=1,
        complete_in_batches=False,
    )
    caplog.set_level(logging.WARNING, logger="quantum_flow.worker")
    worker.start()
    try:
        first = wait_for_run_end(conn, qf.start_flow(conn, slug, {"n": 1}))
        assert first.status == "completed"
        # the task thread's answering connection, idle since it completed the first task
        [(answer,)] = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND state = 'idle' "
            "AND query LIKE '%%quantum_flow.complete_task%%'"
        ).fetchall()
        conn.execute("SELECT pg_terminate_backend(%s)", [answer])
        run_id = qf.start_flow(conn, slug, {"n": 2})
        run = wait_for_run_end(conn, run_id)
        assert (run.status, run.output) == ("completed", {"a": 3})
        [task] = qf.get_run(conn, run_id, include_tasks=True).step("a").tasks or []
        assert (task.status, task.attempts) == ("completed", 1)
        lost = [r.getMessage() for r in caplog.records if "could not answer" in r.getMessage()]
        assert lost == []
    finally:
        stats = worker.stop(30)
    assert stats == qf.WorkerStats(completed=2)


def test_options_the_server_refuses_end_run(
    conninfo: str, conn: psycopg.Connection[Any], slug: str
) -> None:
    """A max_wait_ms above the server's quantum_flow.max_wait_ms (60000) is refused by every
    poll: run() raises invalid_option instead of retrying for ever."""
    qf.create_flow(conn, slug)
    qf.add_step(conn, slug, "a")
    worker = qf.Worker(conninfo, slug, {"a": lambda i: 1}, max_wait_ms=120_000, retry_delay=0.05)
    with pytest.raises(qf.QuantumFlowError) as refused:
        worker.run()
    assert refused.value.code == "invalid_option"
    assert refused.value.sqlstate == "22023"
    assert "max_wait_ms" in refused.value.message
    assert worker.stats == qf.WorkerStats()


def test_a_worker_keeps_reconnecting_while_the_server_refuses_it(
    conninfo: str, conn: psycopg.Connection[Any], slug: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Its poll connection is lost while the server refuses new connections (as during a
    restart): the worker tries again every retry_delay, then polls again once it gets in."""
    role = "qf_py_reconnecting_worker"
    ident = sql.Identifier(role)
    conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(ident))
    conn.execute(
        sql.SQL("CREATE ROLE {} LOGIN IN ROLE quantum_flow_worker, quantum_flow_client").format(
            ident
        )
    )
    qf.create_flow(conn, slug)
    qf.add_step(conn, slug, "a")
    worker = qf.Worker(
        make_conninfo(conninfo, user=role),
        slug,
        {"a": lambda i: i["run"]["n"] * 2},
        max_wait_ms=200,
        retry_delay=0.05,
    )
    caplog.set_level(logging.WARNING, logger="quantum_flow.worker")
    worker.start()
    try:
        [poll] = wait_until(lambda: poll_backends(conn), what="the worker's poll")
        conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(ident))
        conn.execute("SELECT pg_terminate_backend(%s)", [poll])
        refused = lambda: [  # noqa: E731
            r for r in caplog.records if r.getMessage().startswith("reconnecting failed")
        ]
        wait_until(lambda: len(refused()) >= 3, what="three refused reconnections")
        assert "is not permitted to log in" in refused()[0].getMessage()
        conn.execute(sql.SQL("ALTER ROLE {} LOGIN").format(ident))
        run_id = qf.start_flow(conn, slug, {"n": 21})
        run = wait_for_run_end(conn, run_id)
        assert (run.status, run.output) == ("completed", {"a": 42})
        assert worker.running
    finally:
        conn.execute(sql.SQL("ALTER ROLE {} LOGIN").format(ident))
        stats = worker.stop(30)
    assert stats == qf.WorkerStats(completed=1)


def test_a_worker_refused_for_its_library_version_opens_a_new_poll_connection(
    conninfo: str, conn: psycopg.Connection[Any], slug: str, caplog: pytest.LogCaptureFixture
) -> None:
    """After an upgrade, a session that loaded the older library is refused with
    extension_version_mismatch; a new session loads the installed library. Here every session
    is refused for a while (the database's extension claims a newer version): the worker
    replaces its poll connection, and polls on the new one once the versions match again."""
    qf.create_flow(conn, slug)
    qf.add_step(conn, slug, "a")
    [(version,)] = conn.execute(
        "SELECT extversion FROM pg_extension WHERE extname = 'quantum_flow'"
    ).fetchall()
    worker = qf.Worker(
        conninfo, slug, {"a": lambda i: i["run"]["n"] + 1}, max_wait_ms=100, retry_delay=0.05
    )
    caplog.set_level(logging.WARNING, logger="quantum_flow.worker")
    worker.start()
    try:
        [before] = wait_until(lambda: poll_backends(conn), what="the worker's poll connection")
        conn.execute(
            "UPDATE pg_extension SET extversion = '9.9.9' WHERE extname = 'quantum_flow'"
        )
        wait_until(
            lambda: any("extension_version_mismatch" in r.getMessage() for r in caplog.records),
            what="a poll refused for its library version",
        )
        conn.execute(
            "UPDATE pg_extension SET extversion = %s WHERE extname = 'quantum_flow'", [version]
        )
        run_id = qf.start_flow(conn, slug, {"n": 41})
        run = wait_for_run_end(conn, run_id)
        assert (run.status, run.output) == ("completed", {"a": 42})
        [after] = poll_backends(conn)
        assert after != before
    finally:
        conn.execute(
            "UPDATE pg_extension SET extversion = %s WHERE extname = 'quantum_flow'", [version]
        )
        stats = worker.stop(30)
    assert stats == qf.WorkerStats(completed=1)


def test_stop_from_a_step_function_returns_and_the_worker_stops(
    conninfo: str, conn: psycopg.Connection[Any], slug: str
) -> None:
    """A step function may stop its own worker: stop() does not wait for the worker (which
    waits for that very function), and the worker stops once the task is answered."""
    qf.create_flow(conn, slug)
    qf.add_step(conn, slug, "a")
    returned = threading.Event()
    worker: qf.Worker

    def a(input: Any) -> Any:
        worker.stop()
        returned.set()
        return "done"

    worker = qf.Worker(conninfo, slug, {"a": a}, max_wait_ms=100)
    worker.start()
    run_id = qf.start_flow(conn, slug)
    # Bounds a hang only: before, stop() waited for the worker, which waited for a().
    assert returned.wait(30), "stop() called from a step function did not return"
    stats = worker.stop(30)
    assert not worker.running
    assert stats == qf.WorkerStats(completed=1)
    run = qf.get_run(conn, run_id)
    assert (run.status, run.output) == ("completed", {"a": "done"})


def test_a_worker_needs_a_function_for_every_step(
    conninfo: str, conn: psycopg.Connection[Any], slug: str
) -> None:
    qf.create_flow(conn, slug)
    qf.add_step(conn, slug, "a")
    qf.add_step(conn, slug, "b", ["a"])
    qf.add_step(conn, slug, "c", ["a"])
    worker = qf.Worker(conninfo, slug, {"b": lambda i: 1})
    with pytest.raises(qf.MissingStepFunctions) as e:
        worker.run()
    assert e.value.steps == ["a", "c"]


def test_event_and_sub_flow_steps_need_no_function(
    conninfo: str, conn: psycopg.Connection[Any], slug: str
) -> None:
    child = slug + "_c"
    qf.create_flow(conn, child)
    qf.add_step(conn, child, "inner")
    qf.create_flow(conn, slug)
    qf.add_step(conn, slug, "a")
    qf.add_step(conn, slug, "wait", ["a"], step_type="event")
    qf.add_step(conn, slug, "sub", ["a"], flow=child)
    qf.add_step(conn, slug, "z", ["wait", "sub"])
    with pytest.raises(qf.MissingStepFunctions) as e:
        qf.Worker(conninfo, slug, {"a": lambda i: 1}).run()
    assert e.value.steps == ["z"]
    worker = qf.Worker(conninfo, slug, {"a": lambda i: 1, "z": lambda i: i}, max_wait_ms=200)
    inner = qf.Worker(conninfo, child, {"inner": lambda i: "in"}, max_wait_ms=200)
    worker.start()
    inner.start()
    try:
        run_id = qf.start_flow(conn, slug)
        wait_until(
            lambda: qf.get_run(conn, run_id).step("sub").status == "completed",
            what="the sub-flow step",
        )
        assert qf.send_event(conn, run_id, "wait", "go") is True
        run = wait_for_run_end(conn, run_id)
    finally:
        worker.stop()
        inner.stop()
    assert run.status == "completed"
    assert run.output == {"z": {"run": {}, "wait": "go", "sub": {"inner": "in"}}}


@pytest.mark.parametrize("option", [{"batch_size": 0}, {"concurrency": 0}, {"max_wait_ms": -1}])
def test_worker_options_are_checked(option: Any) -> None:
    with pytest.raises(ValueError):
        qf.Worker("", "x", {}, **option)


def test_run_id_is_a_uuid(conn: psycopg.Connection[Any], slug: str) -> None:
    qf.create_flow(conn, slug)
    qf.add_step(conn, slug, "a")
    run_id = qf.start_flow(conn, slug)
    [task] = qf.poll_tasks(conn, slug)
    assert isinstance(task.run_id, UUID) and task.run_id == run_id
