"""The SQL API through the client's functions: definitions, a run worked by hand, retries,
late answers, deletion."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
import pytest

import quantum_flow as qf
from quantum_flow import FlowStep, StepState, Task


def test_create_flow_defaults_and_options(conn: psycopg.Connection[Any], slug: str) -> None:
    w = qf.create_flow(conn, slug)
    assert (w.workflow_slug, w.max_attempts, w.timeout, w.base_delay) == (slug, 3, 30, 1)
    assert isinstance(w.created_at, datetime) and w.created_at.tzinfo is not None
    # Again with the same options: the same row.
    assert qf.create_flow(conn, slug) == w
    other = qf.create_flow(conn, slug + "_o", max_attempts=5, timeout=60, base_delay=0)
    assert (other.max_attempts, other.timeout, other.base_delay) == (5, 60, 0)


def test_add_step_returns_the_row(conn: psycopg.Connection[Any], slug: str) -> None:
    qf.create_flow(conn, slug)
    a = qf.add_step(conn, slug, "a")
    m = qf.add_step(conn, slug, "m", ["a"], step_type="map", initial_tasks=4, max_attempts=2)
    assert a == qf.Step(slug, "a", "single", 0, 0, None, None, None, None)
    assert m == qf.Step(slug, "m", "map", 1, 1, 4, 2, None, None)
    # Identical definition again: the existing row.
    assert (
        qf.add_step(conn, slug, "m", ["a"], step_type="map", initial_tasks=4, max_attempts=2) == m
    )


def test_get_flow_and_list_flows(conn: psycopg.Connection[Any]) -> None:
    qf.create_flow(conn, "zeta_list", max_attempts=5, timeout=60)
    qf.add_step(conn, "zeta_list", "fetch_data")
    qf.add_step(conn, "zeta_list", "join", [])
    qf.add_step(conn, "zeta_list", "save", ["join", "fetch_data"], timeout=5, base_delay=0)
    flow = qf.get_flow(conn, "zeta_list")
    assert (flow.workflow_slug, flow.max_attempts, flow.timeout, flow.base_delay) == (
        "zeta_list",
        5,
        60,
        1,
    )
    assert flow.steps == [
        FlowStep("fetch_data", "single", 0, [], None, None, None, None),
        FlowStep("join", "single", 1, [], None, None, None, None),
        FlowStep("save", "single", 2, ["join", "fetch_data"], None, None, 5, 0),
    ]
    qf.create_flow(conn, "alpha_list")
    slugs = [w.workflow_slug for w in qf.list_flows(conn)]
    assert slugs == sorted(slugs)
    assert {"alpha_list", "zeta_list"} <= set(slugs)


@pytest.mark.parametrize(
    "candidate,valid",
    [
        ("ai_data_pipeline", True),
        ("_x", True),
        ("A1", True),
        ("9lives", False),
        ("has-dash", False),
        ("", False),
        (None, False),
        ("w" * 44, True),
        ("w" * 45, False),
    ],
)
def test_is_valid_slug(conn: psycopg.Connection[Any], candidate: Any, valid: bool) -> None:
    assert qf.is_valid_slug(conn, candidate) is valid


def test_a_run_worked_by_hand(conn: psycopg.Connection[Any], slug: str) -> None:
    qf.create_flow(conn, slug, base_delay=0)
    qf.add_step(conn, slug, "split")
    qf.add_step(conn, slug, "square", ["split"], step_type="map", initial_tasks=5)
    qf.add_step(conn, slug, "total", ["square"])
    qf.add_step(conn, slug, "echo")  # a second root and leaf
    run_id = UUID("00000000-0000-0000-0000-00000000a001")
    assert qf.start_flow(conn, slug, {"numbers": [1, 2, 3]}, run_id=run_id) == run_id

    run = qf.get_run(conn, run_id)
    assert (run.status, run.input, run.output, run.error_message) == (
        "started",
        {"numbers": [1, 2, 3]},
        None,
        None,
    )
    assert isinstance(run.started_at, datetime)
    assert run.completed_at is None and run.failed_at is None
    assert run.steps == [
        StepState("split", "started", 1, 0, None, None),
        StepState("square", "created", 5, 0, None, None),  # initial_tasks before fan-out
        StepState("total", "created", 1, 0, None, None),
        StepState("echo", "started", 1, 0, None, None),
    ]

    tasks = sorted(qf.poll_tasks(conn, slug, worker_id="by-hand"), key=lambda t: t.step_slug)
    assert tasks == [
        Task(run_id, "echo", 0, 1, {"run": {"numbers": [1, 2, 3]}}),
        Task(run_id, "split", 0, 1, {"run": {"numbers": [1, 2, 3]}}),
    ]
    assert qf.poll_tasks(conn, slug) == []  # claimed tasks are hidden
    assert qf.complete_task(conn, run_id, "echo", 0, None, attempt=1) is True
    assert qf.complete_task(conn, run_id, "split", 0, [1, 2, 3]) is True
    assert qf.complete_task(conn, run_id, "split", 0, [9]) is False  # duplicate

    squares = sorted(qf.poll_tasks(conn, slug), key=lambda t: t.task_index)
    assert squares == [
        Task(run_id, "square", i, 1, {"item": i + 1, "index": i, "run": {"numbers": [1, 2, 3]}})
        for i in range(3)
    ]
    assert qf.get_run(conn, run_id).step("square") == StepState(
        "square", "started", 3, 0, None, None
    )
    # Task 1 fails once and is retried at once (base_delay 0) as attempt 2.
    assert qf.fail_task(conn, run_id, "square", 1, "flaky", attempt=1) == "queued"
    assert qf.fail_task(conn, run_id, "square", 1, "flaky again", attempt=1) == "ignored"
    for t in squares:
        if t.task_index != 1:
            assert qf.complete_task(conn, run_id, "square", t.task_index, t.input["item"] ** 2)
    retry = qf.poll_tasks(conn, slug)
    assert retry == [
        Task(run_id, "square", 1, 2, {"item": 2, "index": 1, "run": {"numbers": [1, 2, 3]}})
    ]
    # An answer for the old attempt does not count.
    assert qf.complete_task(conn, run_id, "square", 1, 999, attempt=1) is False
    assert qf.complete_task(conn, run_id, "square", 1, 4, attempt=2) is True

    [total] = qf.poll_tasks(conn, slug)
    assert total == Task(
        run_id, "total", 0, 1, {"run": {"numbers": [1, 2, 3]}, "square": [1, 4, 9]}
    )
    assert qf.complete_task(conn, run_id, "total", 0, {"sum": 14}) is True

    run = qf.get_run(conn, run_id)
    assert run.status == "completed"
    assert run.output == {"echo": None, "total": {"sum": 14}}
    assert isinstance(run.completed_at, datetime) and run.failed_at is None
    assert run.steps == [
        StepState("split", "completed", 1, 1, [1, 2, 3], None),
        StepState("square", "completed", 3, 3, [1, 4, 9], None),
        StepState("total", "completed", 1, 1, {"sum": 14}, None),
        StepState("echo", "completed", 1, 1, None, None),
    ]
    # Late answers after the end are harmless.
    assert qf.complete_task(conn, run_id, "total", 0, {"sum": 0}) is False
    assert qf.fail_task(conn, run_id, "total", 0, "late") == "ignored"


def test_run_from_json_reads_output_omitted() -> None:
    # get_run's shape when the step outputs would not fit in one jsonb (the server side is
    # tested in tests/pg_regress/sql/jsonb_limits.sql): outputs null, marked as left out.
    doc = {
        "run_id": "00000000-0000-0000-0000-00000000a002",
        "workflow_slug": "big",
        "status": "completed",
        "input": {},
        "output": None,
        "output_omitted": True,
        "error_message": None,
        "started_at": "2026-12-08T01:00:00+00:00",
        "completed_at": "2026-12-08T01:00:01+00:00",
        "failed_at": None,
        "steps": [
            {"step_slug": "a", "status": "completed", "tasks_total": 1, "tasks_completed": 1,
             "output": None, "output_omitted": True, "error_message": None},
            {"step_slug": "b", "status": "completed", "tasks_total": 1, "tasks_completed": 1,
             "output": 1, "error_message": None},
        ],
    }
    run = qf.Run.from_json(doc)
    assert run.output_omitted is True and run.output is None
    assert run.steps == [
        StepState("a", "completed", 1, 1, None, None, output_omitted=True),
        StepState("b", "completed", 1, 1, 1, None),
    ]
    assert run.step("b").output_omitted is False


def test_attempts_exhausted_fail_the_run(conn: psycopg.Connection[Any], slug: str) -> None:
    qf.create_flow(conn, slug, max_attempts=2, base_delay=0)
    qf.add_step(conn, slug, "a")
    qf.add_step(conn, slug, "b", ["a"])
    run_id = qf.start_flow(conn, slug)
    [t1] = qf.poll_tasks(conn, slug)
    assert (t1.attempt, t1.input) == (1, {"run": {}})
    assert qf.fail_task(conn, run_id, "a", 0, "boom 1", attempt=t1.attempt) == "queued"
    [t2] = qf.poll_tasks(conn, slug)
    assert t2.attempt == 2
    assert qf.fail_task(conn, run_id, "a", 0, "boom 2", attempt=t2.attempt) == "failed"
    run = qf.get_run(conn, run_id)
    # the run's message says which step, task and attempt failed
    assert (run.status, run.error_message, run.output) == (
        "failed",
        "step a, task 0, attempt 2: boom 2",
        None,
    )
    assert isinstance(run.failed_at, datetime) and run.completed_at is None
    assert run.steps == [
        StepState("a", "failed", 1, 0, None, "step a, task 0, attempt 2: boom 2"),
        StepState("b", "cancelled", 1, 0, None, None),
    ]
    assert qf.poll_tasks(conn, slug) == []


def test_cancel_run(conn: psycopg.Connection[Any], slug: str) -> None:
    qf.create_flow(conn, slug)
    qf.add_step(conn, slug, "a")
    run_id = qf.start_flow(conn, slug)
    assert qf.cancel_run(conn, run_id, "no workers") is True
    run = qf.get_run(conn, run_id)
    assert (run.status, run.error_message) == ("failed", "cancelled: no workers")
    assert qf.poll_tasks(conn, slug) == []
    assert qf.cancel_run(conn, run_id) is False
    with pytest.raises(qf.QuantumFlowError) as info:
        qf.cancel_run(conn, "00000000-0000-0000-0000-000000000000")
    assert (info.value.code, info.value.sqlstate) == ("run_not_found", "P0002")


def test_generated_run_ids_and_string_run_ids(conn: psycopg.Connection[Any], slug: str) -> None:
    qf.create_flow(conn, slug)
    qf.add_step(conn, slug, "only")
    run_id = qf.start_flow(conn, slug, [1, 2])
    assert isinstance(run_id, UUID)
    [task] = qf.poll_tasks(conn, slug)
    assert task.run_id == run_id and task.input == {"run": [1, 2]}
    assert qf.complete_task(conn, str(run_id), "only", 0, "done") is True
    assert qf.get_run(conn, str(run_id)).output == {"only": "done"}


def test_empty_map_completes_at_once(conn: psycopg.Connection[Any], slug: str) -> None:
    qf.create_flow(conn, slug)
    qf.add_step(conn, slug, "each", step_type="map")
    qf.add_step(conn, slug, "after", ["each"])
    run_id = qf.start_flow(conn, slug, [])
    [t] = qf.poll_tasks(conn, slug)
    assert (t.step_slug, t.input) == ("after", {"run": [], "each": []})
    qf.complete_task(conn, run_id, "after", 0, 0)
    assert qf.get_run(conn, run_id).output == {"after": 0}


def test_delete_flow(conn: psycopg.Connection[Any], slug: str) -> None:
    qf.create_flow(conn, slug)
    qf.add_step(conn, slug, "a")
    run_id = qf.start_flow(conn, slug)
    [t] = qf.poll_tasks(conn, slug)
    qf.complete_task(conn, run_id, "a", 0, 1, attempt=t.attempt)
    qf.delete_flow(conn, slug)
    assert slug not in [w.workflow_slug for w in qf.list_flows(conn)]
    with pytest.raises(qf.QuantumFlowError) as e:
        qf.get_run(conn, run_id)
    assert e.value.code == "run_not_found"
    queues = conn.execute(
        "SELECT count(*) FROM pgmq.list_queues() WHERE queue_name = %s", ["qf_" + slug.lower()]
    ).fetchone()
    assert queues == (0,)


def test_definitions_in_one_transaction_roll_back_together(conninfo: str, slug: str) -> None:
    with psycopg.connect(conninfo) as c:
        with pytest.raises(qf.QuantumFlowError):
            with c.transaction():
                qf.create_flow(c, slug)
                qf.add_step(c, slug, "a")
                qf.add_step(c, slug, "b", ["missing"])
        with pytest.raises(qf.QuantumFlowError) as e:
            qf.get_flow(c, slug)
        assert e.value.code == "workflow_not_found"
