"""execute_dynamic: the Quick Start, failures (located messages, permanent errors), retries,
paused runs, checks before starting."""

from __future__ import annotations

import threading
from typing import Any, Dict, List
from uuid import UUID

import psycopg
import pytest
from conftest import wait_for_run_end

import quantum_flow as qf


def define_quick_start(conn: psycopg.Connection[Any], slug: str) -> None:
    # The Quick Start's steps 1 and 2, as the README writes them.
    qf.create_flow(conn, slug, max_attempts=5, timeout=60)
    qf.add_step(conn, slug, "fetch_data", [])
    qf.add_step(conn, slug, "process_batch", ["fetch_data"], step_type="map", initial_tasks=100)
    qf.add_step(conn, slug, "save_results", ["process_batch"])


def test_readme_quick_start(conninfo: str, conn: psycopg.Connection[Any]) -> None:
    define_quick_start(conn, "ai_data_pipeline")
    seen: Dict[str, Any] = {}

    def fetch_data(input: Any) -> Any:
        seen["fetch_data"] = input
        return list(range(1, 101))  # an array for the map step

    def process_batch(input: Any) -> Any:
        return {"processed": input["item"] * 2}

    def save_results(input: Any) -> Any:
        seen["save_results"] = input
        return {"saved": True}

    run_id = UUID("00000000-0000-0000-0000-00000000e001")
    result = qf.execute_dynamic(
        conninfo,
        "ai_data_pipeline",
        {"initial": "data"},
        {"fetch_data": fetch_data, "process_batch": process_batch, "save_results": save_results},
        run_id=run_id,
    )
    assert result == {"save_results": {"saved": True}}
    assert seen["fetch_data"] == {"run": {"initial": "data"}}
    assert seen["save_results"] == {
        "run": {"initial": "data"},
        "process_batch": [{"processed": 2 * i} for i in range(1, 101)],
    }
    run = qf.get_run(conn, run_id)
    assert (run.status, run.output, run.error_message) == (
        "completed",
        {"save_results": {"saved": True}},
        None,
    )
    assert [(s.step_slug, s.status, s.tasks_total, s.tasks_completed) for s in run.steps] == [
        ("fetch_data", "completed", 1, 1),
        ("process_batch", "completed", 100, 100),
        ("save_results", "completed", 1, 1),
    ]


def test_workflow_not_found(conninfo: str) -> None:
    with pytest.raises(qf.QuantumFlowError) as e:
        qf.execute_dynamic(conninfo, "no_such_flow", {}, {"a": lambda i: i})
    assert (e.value.code, e.value.sqlstate) == ("workflow_not_found", "P0002")


def test_missing_functions_are_all_named_and_nothing_starts(
    conninfo: str, conn: psycopg.Connection[Any], slug: str
) -> None:
    define_quick_start(conn, slug)
    run_id = UUID("00000000-0000-0000-0000-00000000e002")
    with pytest.raises(qf.MissingStepFunctions) as e:
        qf.execute_dynamic(conninfo, slug, {}, {"process_batch": lambda i: i}, run_id=run_id)
    assert e.value.steps == ["fetch_data", "save_results"]
    assert str(e.value) == (
        f"workflow {slug!r} has no function for step(s): fetch_data, save_results"
    )
    with pytest.raises(qf.QuantumFlowError) as not_started:
        qf.get_run(conn, run_id)
    assert not_started.value.code == "run_not_found"


def test_every_missing_function_is_named_before_anything_starts(
    conninfo: str, conn: psycopg.Connection[Any], slug: str
) -> None:
    # Defined from a document listing the steps out of order: the error names the steps as
    # get_flow orders them (each after its dependencies).
    qf.define_flow(
        conn,
        {
            "workflow_slug": slug,
            "steps": [
                {"slug": "report", "depends_on": ["score", "fetch"]},
                {"slug": "score", "depends_on": ["fetch"], "type": "map"},
                {"slug": "fetch"},
                {"slug": "audit", "depends_on": ["fetch"]},
            ],
        },
    )
    in_order = [s.step_slug for s in qf.get_flow(conn, slug).steps]
    called: List[Any] = []
    with pytest.raises(qf.MissingStepFunctions) as none_given:
        qf.execute_dynamic(conninfo, slug, {}, {})
    assert none_given.value.steps == in_order
    assert none_given.value.workflow_slug == slug
    # Functions for steps the workflow does not have do not stand in for missing ones.
    with pytest.raises(qf.MissingStepFunctions) as some_given:
        qf.execute_dynamic(
            conninfo,
            slug,
            {},
            {"score": called.append, "fetch": called.append, "fecth": called.append},
        )
    assert some_given.value.steps == [s for s in in_order if s in ("report", "audit")]
    assert str(some_given.value) == (
        f"workflow {slug!r} has no function for step(s): "
        + ", ".join(s for s in in_order if s in ("report", "audit"))
    )
    # No run was started and nothing was called.
    runs = conn.execute(
        "SELECT count(*) FROM quantum_flow.runs WHERE workflow_slug = %s", [slug]
    ).fetchone()
    assert runs == (0,)
    assert called == []


def test_retries_then_success(conninfo: str, conn: psycopg.Connection[Any], slug: str) -> None:
    qf.create_flow(conn, slug, max_attempts=3, base_delay=0)
    qf.add_step(conn, slug, "each", step_type="map")
    attempts: Dict[int, int] = {}
    lock = threading.Lock()

    def each(input: Any) -> Any:
        with lock:
            attempts[input["index"]] = attempts.get(input["index"], 0) + 1
            n = attempts[input["index"]]
        if input["item"] == "flaky" and n < 3:
            raise RuntimeError(f"attempt {n} failed")
        return f"{input['item']}:{n}"

    result = qf.execute_dynamic(conninfo, slug, ["ok", "flaky", "ok"], {"each": each})
    assert result == {"each": ["ok:1", "flaky:3", "ok:1"]}
    assert attempts == {0: 1, 1: 3, 2: 1}


def test_run_failed(conninfo: str, conn: psycopg.Connection[Any], slug: str) -> None:
    qf.create_flow(conn, slug, max_attempts=2, base_delay=0)
    qf.add_step(conn, slug, "a")
    qf.add_step(conn, slug, "b", ["a"])

    def a(input: Any) -> Any:
        raise ValueError("no data for " + input["run"]["who"])

    with pytest.raises(qf.RunFailed) as e:
        qf.execute_dynamic(conninfo, slug, {"who": "me"}, {"a": a, "b": lambda i: 1})
    assert e.value.message == "step a, task 0, attempt 2: no data for me"
    run = qf.get_run(conn, e.value.run_id)
    assert (run.status, run.error_message) == (
        "failed",
        "step a, task 0, attempt 2: no data for me",
    )
    assert [(s.step_slug, s.status) for s in run.steps] == [("a", "failed"), ("b", "cancelled")]


def test_output_that_is_not_json_fails_the_task_without_retry(
    conninfo: str, conn: psycopg.Connection[Any], slug: str
) -> None:
    qf.create_flow(conn, slug, max_attempts=3, base_delay=0)
    qf.add_step(conn, slug, "a")
    calls: List[Any] = []

    def a(input: Any) -> Any:
        calls.append(input)
        return {1, 2}

    with pytest.raises(qf.RunFailed) as e:
        qf.execute_dynamic(conninfo, slug, {}, {"a": a})
    assert e.value.message == (
        "step a, task 0, attempt 1: output is not JSON: Object of type set is not JSON "
        "serializable (not retried: the worker said the error is permanent)"
    )
    assert len(calls) == 1


def test_a_permanent_error_fails_the_run_at_its_first_attempt(
    conninfo: str, conn: psycopg.Connection[Any], slug: str
) -> None:
    qf.create_flow(conn, slug, max_attempts=5, base_delay=0)
    qf.add_step(conn, slug, "load")
    qf.add_step(conn, slug, "check", ["load"], step_type="map")
    qf.add_step(conn, slug, "report", ["check"])

    def check(input: Any) -> Any:
        if input["item"] < 0:
            raise qf.PermanentError(f"negative value {input['item']}")
        return input["item"]

    run_id = UUID("00000000-0000-0000-0000-00000000e003")
    with pytest.raises(qf.RunFailed) as e:
        qf.execute_dynamic(
            conninfo,
            slug,
            {},
            {"load": lambda i: [3, -1, 4], "check": check, "report": lambda i: 1},
            run_id=run_id,
        )
    message = (
        "step check, task 1, attempt 1: negative value -1 "
        "(not retried: the worker said the error is permanent)"
    )
    assert (e.value.run_id, e.value.message) == (run_id, message)
    assert str(e.value) == f"run {run_id} failed: {message}"
    run = qf.get_run(conn, run_id)
    assert (run.status, run.error_message) == ("failed", message)
    assert [(s.step_slug, s.status) for s in run.steps] == [
        ("load", "completed"),
        ("check", "failed"),
        ("report", "cancelled"),
    ]


def test_a_paused_run_is_still_running(
    conninfo: str, conn: psycopg.Connection[Any], slug: str
) -> None:
    qf.create_flow(conn, slug)
    qf.add_step(conn, slug, "a")
    qf.add_step(conn, slug, "b", ["a"])
    run_id = UUID("00000000-0000-0000-0000-00000000e004")
    seen: List[str] = []
    resumer: List[threading.Timer] = []
    resumed: List[bool] = []

    def a(input: Any) -> Any:
        # Paused while its first task is held: execute_dynamic waits (b is not handed out)
        # until the run is resumed, then returns its output.
        with psycopg.connect(conninfo, autocommit=True) as c:
            seen.append(f"paused: {qf.pause_run(c, run_id)}")
        timer = threading.Timer(1.0, resume)
        resumer.append(timer)
        timer.start()
        return "A"

    def resume() -> None:
        with psycopg.connect(conninfo, autocommit=True) as c:
            seen.append(qf.get_run(c, run_id).status)
            resumed.append(qf.resume_run(c, run_id))

    def b(input: Any) -> Any:
        seen.append("b")
        return input["a"] + "B"

    result = qf.execute_dynamic(conninfo, slug, {}, {"a": a, "b": b}, run_id=run_id, timeout=60)
    resumer[0].join()
    assert result == {"b": "AB"}
    # a's answer was taken while the run was paused; b was handed out only after the resume.
    assert seen == ["paused: True", "paused", "b"]
    assert resumed == [True]


def test_map_over_a_non_array_fails_the_run(
    conninfo: str, conn: psycopg.Connection[Any], slug: str
) -> None:
    qf.create_flow(conn, slug)
    qf.add_step(conn, slug, "a")
    qf.add_step(conn, slug, "m", ["a"], step_type="map")
    with pytest.raises(qf.RunFailed) as e:
        qf.execute_dynamic(conninfo, slug, {}, {"a": lambda i: {"k": 1}, "m": lambda i: i})
    assert e.value.message == (
        'step m: invalid_map_input: map step "m" maps over the output of step "a", '
        "which must be a JSON array but is object"
    )


def test_timeout_leaves_the_run_started(
    conninfo: str, conn: psycopg.Connection[Any], slug: str
) -> None:
    qf.create_flow(conn, slug)
    qf.add_step(conn, slug, "slow")
    release = threading.Event()

    def slow(input: Any) -> Any:
        release.wait(60)
        return "late"

    try:
        with pytest.raises(qf.RunTimeout) as e:
            qf.execute_dynamic(conninfo, slug, {}, {"slow": slow}, timeout=0.5, shutdown_grace=0.1)
        assert isinstance(e.value, TimeoutError)
        assert qf.get_run(conn, e.value.run_id).status == "started"
    finally:
        release.set()
    # The worker, shut down, still finishes the task it held: the run completes.
    run = wait_for_run_end(conn, e.value.run_id)
    assert run.status == "completed"
    assert run.output == {"slow": "late"}
