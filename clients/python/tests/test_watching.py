"""Watching runs through the client: wait_run, get_run(include_tasks=True), the event stream
(LISTEN quantum_flow_events), the run_list and workflow_stats views and metrics()."""

from __future__ import annotations

import threading
import time
from typing import Any, List, Optional, Tuple
from uuid import UUID

import psycopg
import pytest

import quantum_flow as qf
from quantum_flow import QuantumFlowError, RunEvent, TaskState


def two_steps(conn: psycopg.Connection[Any], slug: str) -> None:
    """``fetch`` -> ``rows`` (a map over fetch's output), two attempts each."""
    qf.create_flow(conn, slug, max_attempts=2, timeout=30, base_delay=60)
    qf.add_step(conn, slug, "fetch")
    qf.add_step(conn, slug, "rows", ["fetch"], step_type="map")


def test_wait_run_returns_when_the_run_ends(conninfo: str, conn: Any, slug: str) -> None:
    two_steps(conn, slug)
    run_id = qf.start_flow(conn, slug, {"n": 2})

    def finish() -> None:
        with psycopg.connect(conninfo, autocommit=True) as worker:
            time.sleep(0.3)
            (fetch,) = qf.poll_tasks(worker, slug)
            assert qf.complete_task(worker, run_id, "fetch", 0, [10, 20], fetch.attempt)
            for task in qf.poll_tasks(worker, slug):
                assert qf.complete_task(worker, run_id, "rows", task.task_index, task.input["item"] + 1)

    thread = threading.Thread(target=finish)
    thread.start()
    try:
        run = qf.wait_run(conn, run_id, max_wait_ms=30000)
    finally:
        thread.join()
    assert run.status == "completed"
    assert run.output == {"rows": [11, 21]}
    assert [(s.step_slug, s.status, s.tasks_completed) for s in run.steps] == [
        ("fetch", "completed", 1),
        ("rows", "completed", 2),
    ]
    # An ended run: at once, the same document.
    assert qf.wait_run(conn, run_id, max_wait_ms=0) == run


def test_wait_run_gives_the_run_as_it_is_when_the_time_is_up(conn: Any, slug: str) -> None:
    two_steps(conn, slug)
    run_id = qf.start_flow(conn, slug, {})
    run = qf.wait_run(conn, run_id, max_wait_ms=200)
    assert (run.status, run.output, run.error_message) == ("started", None, None)
    assert [(s.step_slug, s.status) for s in run.steps] == [("fetch", "started"), ("rows", "created")]
    qf.cancel_run(conn, run_id)


def test_wait_run_errors(conn: Any, slug: str) -> None:
    with pytest.raises(QuantumFlowError) as unknown:
        qf.wait_run(conn, UUID(int=12345), max_wait_ms=0)
    assert (unknown.value.code, unknown.value.sqlstate) == ("run_not_found", "P0002")
    two_steps(conn, slug)
    run_id = qf.start_flow(conn, slug, {})
    with pytest.raises(QuantumFlowError) as negative:
        qf.wait_run(conn, run_id, max_wait_ms=-1)
    assert (negative.value.code, negative.value.sqlstate) == ("invalid_option", "22023")
    with pytest.raises(QuantumFlowError) as too_long:
        qf.wait_run(conn, run_id, max_wait_ms=60001)
    assert too_long.value.code == "invalid_option"
    qf.cancel_run(conn, run_id)


def test_get_run_with_tasks(conn: Any, slug: str) -> None:
    two_steps(conn, slug)
    run_id = qf.start_flow(conn, slug, {})
    assert qf.get_run(conn, run_id).steps[0].tasks is None
    (fetch,) = qf.poll_tasks(conn, slug, worker_id="w-1")
    assert qf.complete_task(conn, run_id, "fetch", 0, ["a", "b"], fetch.attempt)
    tasks = qf.poll_tasks(conn, slug, worker_id="w-2")
    assert [t.task_index for t in tasks] == [0, 1]
    assert qf.fail_task(conn, run_id, "rows", 1, "bad row", tasks[1].attempt) == "queued"

    run = qf.get_run(conn, run_id, include_tasks=True)
    fetch_state, rows_state = run.steps
    assert fetch_state.tasks == [TaskState(0, "completed", 1, None, "w-1", None, None)]
    assert rows_state.tasks is not None
    claimed, retrying = rows_state.tasks
    assert (claimed.task_index, claimed.status, claimed.attempts, claimed.worker_id) == (
        0,
        "started",
        1,
        "w-2",
    )
    assert claimed.error_message is None and claimed.next_retry_at is None
    assert claimed.claim_deadline is not None and claimed.claim_deadline.tzinfo is not None
    assert (retrying.task_index, retrying.status, retrying.attempts) == (1, "queued", 1)
    assert retrying.error_message == "bad row"
    assert retrying.claim_deadline is None
    assert retrying.next_retry_at is not None
    # Claimed and failed within moments of each other: the claim runs out after the step's
    # 30 s timeout, the retry is due after base_delay (60 s), so about 30 s apart.
    assert 25 < (retrying.next_retry_at - claimed.claim_deadline).total_seconds() < 35
    # The step being retried shows its task's last error while it retries.
    assert (rows_state.status, rows_state.error_message) == ("started", "bad row")
    qf.cancel_run(conn, run_id)


def test_events_stream_a_runs_status_changes_in_commit_order(
    conninfo: str, conn: Any, slug: str
) -> None:
    two_steps(conn, slug)
    run_id = UUID(int=0x5EED)
    got: List[RunEvent] = []
    with psycopg.connect(conninfo, autocommit=True) as listener:
        stream = qf.events(listener, run_id=run_id, timeout=30)  # listening from here on

        def drive() -> None:
            with psycopg.connect(conninfo, autocommit=True) as other:
                # Anybody may NOTIFY on the channel: what is not an event is skipped.
                other.execute("NOTIFY quantum_flow_events, 'not json'")
                other.execute("""NOTIFY quantum_flow_events, '{"run_id": 1}'""")
                assert qf.start_flow(other, slug, {}, run_id) == run_id
                (fetch,) = qf.poll_tasks(other, slug)
                qf.complete_task(other, run_id, "fetch", 0, [1], fetch.attempt)
                (row,) = qf.poll_tasks(other, slug)
                qf.complete_task(other, run_id, "rows", 0, "one", row.attempt)

        thread = threading.Thread(target=drive)
        thread.start()
        try:
            for event in stream:
                got.append(event)
                if event.ends_run:
                    break
        finally:
            thread.join()
    changes: List[Tuple[Optional[str], str]] = [(e.step_slug, e.status) for e in got]
    assert changes == [
        (None, "started"),
        ("fetch", "started"),
        ("fetch", "completed"),
        ("rows", "started"),
        ("rows", "completed"),
        (None, "completed"),
    ]
    assert {(e.run_id, e.workflow_slug) for e in got} == {(run_id, slug)}
    assert got[-1].ends_run and not got[0].ends_run


def test_events_need_autocommit_and_end_after_their_timeout(conninfo: str) -> None:
    with psycopg.connect(conninfo) as in_transaction:
        with pytest.raises(ValueError):
            qf.events(in_transaction, timeout=0.1)
    with psycopg.connect(conninfo, autocommit=True) as listener:
        assert list(qf.events(listener, run_id=UUID(int=1), timeout=0.3)) == []


def test_views_and_metrics(conn: Any, slug: str) -> None:
    two_steps(conn, slug)
    done = qf.start_flow(conn, slug, {"k": 1})
    (fetch,) = qf.poll_tasks(conn, slug)
    assert qf.complete_task(conn, done, "fetch", 0, [], fetch.attempt)  # an empty map: done
    live = qf.start_flow(conn, slug, {"k": 2})

    rows = qf.run_list(conn, slug)
    assert [(r.run_id, r.status) for r in rows] == [(live, "started"), (done, "completed")]
    ended = rows[1]
    assert (ended.steps_total, ended.steps_done, ended.steps_started) == (2, 2, 0)
    assert (ended.tasks_total, ended.tasks_completed) == (1, 1)
    assert ended.completed_at is not None and ended.error_message is None
    assert [r.run_id for r in qf.run_list(conn, slug, status="completed")] == [done]
    assert qf.run_list(conn, slug, status="failed") == []
    assert len(qf.run_list(conn, slug, limit=1)) == 1

    (stats,) = qf.workflow_stats(conn, slug)
    assert (stats.runs_started, stats.runs_paused, stats.runs_completed, stats.runs_failed) == (
        1,
        0,
        1,
        0,
    )
    assert (stats.tasks_queued, stats.tasks_started, stats.tasks_failed) == (1, 0, 0)
    assert stats.completed_last_minute == 1
    assert stats.oldest_queued_seconds is not None and stats.oldest_queued_seconds >= 0
    assert qf.workflow_stats(conn, slug + "_none") == []

    text = qf.metrics(conn)
    assert f'quantum_flow_runs{{workflow="{slug}",status="completed"}} 1\n' in text
    assert f'quantum_flow_runs{{workflow="{slug}",status="started"}} 1\n' in text
    assert f'quantum_flow_tasks{{workflow="{slug}",status="queued"}} 1\n' in text
    assert f'quantum_flow_tasks_completed_last_minute{{workflow="{slug}"}} 1\n' in text
    assert "# TYPE quantum_flow_runs gauge\n" in text
    qf.cancel_run(conn, live)
