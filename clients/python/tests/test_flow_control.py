"""Flow control through the client's functions: conditions, event steps and send_event,
pause_run / resume_run, retry_run after fail_task(retry=False), scheduled runs (start_at),
start_delay, sub-flows, run_timeout and concurrency keys."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import psycopg
import pytest
from conftest import wait_until

import quantum_flow as qf
from quantum_flow import FlowStep, StepState, Task

NOT_RETRIED = " (not retried: the worker said the error is permanent)"


# ---------------------------------------------------------------------------------------------
# Definitions


def test_create_flow_run_timeout_and_concurrency(conn: psycopg.Connection[Any], slug: str) -> None:
    w = qf.create_flow(conn, slug, run_timeout=600, concurrency_key="tenant", max_concurrency=2)
    assert (w.workflow_slug, w.max_attempts, w.timeout, w.base_delay) == (slug, 3, 30, 1)
    assert (w.run_timeout, w.concurrency_key, w.max_concurrency) == (600, "tenant", 2)
    # list_flows and get_flow show them; the same options again return the same row.
    assert [x for x in qf.list_flows(conn) if x.workflow_slug == slug] == [w]
    flow = qf.get_flow(conn, slug)
    assert (flow.run_timeout, flow.concurrency_key, flow.max_concurrency) == (600, "tenant", 2)
    assert (
        qf.create_flow(conn, slug, run_timeout=600, concurrency_key="tenant", max_concurrency=2)
        == w
    )
    # Left out: no limits.
    plain = qf.create_flow(conn, slug + "_p")
    assert (plain.run_timeout, plain.concurrency_key, plain.max_concurrency) == (None, None, None)
    assert qf.get_flow(conn, slug + "_p").run_timeout is None
    # Other options for an existing workflow are refused.
    with pytest.raises(qf.QuantumFlowError) as e:
        qf.create_flow(conn, slug, run_timeout=60, concurrency_key="tenant", max_concurrency=2)
    assert e.value.code == "workflow_exists"


def test_add_step_flow_control_options(conn: psycopg.Connection[Any], slug: str) -> None:
    child = slug + "_c"
    qf.create_flow(conn, child)
    qf.add_step(conn, child, "work")
    qf.create_flow(conn, slug)
    a = qf.add_step(conn, slug, "a")
    assert a == qf.Step(slug, "a", "single", 0, 0, None, None, None, None)
    assert (a.if_matches, a.if_not_matches, a.when_unmet, a.start_delay, a.flow) == (
        None,
        None,
        "skip",
        None,
        None,
    )
    c = qf.add_step(
        conn,
        slug,
        "c",
        ["a"],
        if_matches={"a": {"go": True}},
        if_not_matches={"a": {"stop": True}},
        when_unmet="skip_cascade",
        start_delay=5,
    )
    assert c == qf.Step(
        slug,
        "c",
        "single",
        1,
        1,
        None,
        None,
        None,
        None,
        None,
        {"a": {"go": True}},
        {"a": {"stop": True}},
        "skip_cascade",
        5,
        None,
    )
    e = qf.add_step(conn, slug, "e", ["a"], step_type="event", timeout=60)
    assert (e.step_type, e.timeout, e.when_unmet) == ("event", 60, "skip")
    s = qf.add_step(conn, slug, "s", ["a"], flow=child, max_attempts=2)
    assert (s.step_type, s.flow, s.max_attempts) == ("single", child, 2)
    # The same definition again: the existing row; another one: step_exists.
    assert (
        qf.add_step(
            conn,
            slug,
            "c",
            ["a"],
            if_matches={"a": {"go": True}},
            if_not_matches={"a": {"stop": True}},
            when_unmet="skip_cascade",
            start_delay=5,
        )
        == c
    )
    with pytest.raises(qf.QuantumFlowError) as exists:
        qf.add_step(conn, slug, "c", ["a"], if_matches={"a": {"go": False}})
    assert exists.value.code == "step_exists"
    assert qf.get_flow(conn, slug).steps == [
        FlowStep("a", "single", 0, [], None, None, None, None),
        FlowStep(
            "c",
            "single",
            1,
            ["a"],
            None,
            None,
            None,
            None,
            if_matches={"a": {"go": True}},
            if_not_matches={"a": {"stop": True}},
            when_unmet="skip_cascade",
            start_delay=5,
        ),
        FlowStep("e", "event", 2, ["a"], None, None, 60, None),
        FlowStep("s", "single", 3, ["a"], None, 2, None, None, flow=child),
    ]


def test_bad_flow_control_options_are_refused(conn: psycopg.Connection[Any], slug: str) -> None:
    qf.create_flow(conn, slug)
    bad: Any = "sometimes"
    with pytest.raises(qf.QuantumFlowError) as e:
        qf.add_step(conn, slug, "a", when_unmet=bad)
    assert (e.value.code, e.value.sqlstate) == ("invalid_option", "22023")
    with pytest.raises(qf.QuantumFlowError) as e:
        qf.create_flow(conn, slug + "_k", concurrency_key="tenant")  # without max_concurrency
    assert (e.value.code, e.value.sqlstate) == ("invalid_option", "22023")
    assert qf.get_flow(conn, slug).steps == []


# ---------------------------------------------------------------------------------------------
# Conditions


def test_a_step_whose_condition_is_unmet_is_skipped(
    conn: psycopg.Connection[Any], slug: str
) -> None:
    qf.create_flow(conn, slug)
    qf.add_step(conn, slug, "check")
    qf.add_step(conn, slug, "publish", ["check"], if_matches={"check": {"ok": True}})
    qf.add_step(conn, slug, "alert", ["check"], if_matches={"check": {"ok": False}})
    qf.add_step(conn, slug, "retract", ["check"], if_not_matches={"check": {"ok": True}})
    # skip_cascade: the steps below a skipped step are skipped too.
    qf.add_step(
        conn,
        slug,
        "page",
        ["check"],
        if_matches={"check": {"ok": False}},
        when_unmet="skip_cascade",
    )
    qf.add_step(conn, slug, "after_page", ["page"])
    run_id = qf.start_flow(conn, slug, {"doc": 7})
    [check] = qf.poll_tasks(conn, slug)
    assert qf.complete_task(conn, run_id, "check", 0, {"ok": True}, attempt=check.attempt)
    # Only the step whose condition holds has a task.
    assert qf.poll_tasks(conn, slug) == [
        Task(run_id, "publish", 0, 1, {"run": {"doc": 7}, "check": {"ok": True}})
    ]
    run = qf.get_run(conn, run_id)
    assert run.status == "started"
    assert [(s.step_slug, s.status, s.tasks_total, s.tasks_completed) for s in run.steps] == [
        ("check", "completed", 1, 1),
        ("publish", "started", 1, 0),
        ("alert", "skipped", 0, 0),
        ("retract", "skipped", 0, 0),
        ("page", "skipped", 0, 0),
        ("after_page", "skipped", 0, 0),
    ]
    assert qf.complete_task(conn, run_id, "publish", 0, "published", attempt=1) is True
    run = qf.get_run(conn, run_id)
    assert run.status == "completed"
    assert run.step("alert") == StepState("alert", "skipped", 0, 0, None, None)
    assert run.output == {"publish": "published"}  # skipped leaves have no output


def test_an_unmet_condition_can_fail_the_run(conn: psycopg.Connection[Any], slug: str) -> None:
    qf.create_flow(conn, slug)
    qf.add_step(conn, slug, "a", if_matches={"run": {"tier": "gold"}}, when_unmet="fail")
    run_id = qf.start_flow(conn, slug, {"tier": "bronze"})
    run = qf.get_run(conn, run_id)
    message = "step a: condition_unmet: the step's input does not meet its condition (if / if_not)"
    assert (run.status, run.error_message) == ("failed", message)
    assert run.step("a").status == "failed"
    assert qf.poll_tasks(conn, slug) == []
    # A run whose input meets it runs the step.
    other = qf.start_flow(conn, slug, {"tier": "gold", "id": 1})
    assert qf.poll_tasks(conn, slug) == [Task(other, "a", 0, 1, {"run": {"tier": "gold", "id": 1}})]


# ---------------------------------------------------------------------------------------------
# Event steps


def test_an_event_step_is_completed_by_send_event(conn: psycopg.Connection[Any], slug: str) -> None:
    qf.create_flow(conn, slug)
    qf.add_step(conn, slug, "order")
    qf.add_step(conn, slug, "approval", ["order"], step_type="event")
    qf.add_step(conn, slug, "ship", ["approval"])
    run_id = qf.start_flow(conn, slug, {"order": 42})
    [order] = qf.poll_tasks(conn, slug)
    assert order.step_slug == "order"
    assert qf.complete_task(conn, run_id, "order", 0, "placed", attempt=order.attempt) is True
    # The event step has no task for workers: it waits for its event.
    assert qf.poll_tasks(conn, slug) == []
    assert qf.get_run(conn, run_id).step("approval") == StepState(
        "approval", "started", 1, 0, None, None
    )
    assert qf.send_event(conn, run_id, "approval", {"by": "ann"}) is True
    assert qf.send_event(conn, str(run_id), "approval", {"by": "bob"}) is False  # duplicate
    assert qf.get_run(conn, run_id).step("approval") == StepState(
        "approval", "completed", 1, 1, {"by": "ann"}, None
    )
    assert qf.poll_tasks(conn, slug) == [
        Task(run_id, "ship", 0, 1, {"run": {"order": 42}, "approval": {"by": "ann"}})
    ]
    assert qf.complete_task(conn, run_id, "ship", 0, "shipped") is True
    run = qf.get_run(conn, run_id)
    assert (run.status, run.output) == ("completed", {"ship": "shipped"})
    # An ended run takes no event.
    assert qf.send_event(conn, run_id, "approval") is False


def test_an_event_sent_early_is_kept_until_the_step_is_ready(
    conn: psycopg.Connection[Any], slug: str
) -> None:
    qf.create_flow(conn, slug)
    qf.add_step(conn, slug, "first")
    qf.add_step(conn, slug, "signal", ["first"], step_type="event")
    run_id = qf.start_flow(conn, slug)
    # payload None: {}
    assert qf.send_event(conn, run_id, "signal") is True
    assert qf.send_event(conn, run_id, "signal", {"again": True}) is False  # already has one
    assert qf.get_run(conn, run_id).step("signal").status == "created"
    [first] = qf.poll_tasks(conn, slug)
    assert qf.complete_task(conn, run_id, "first", 0, 1, attempt=first.attempt) is True
    run = qf.get_run(conn, run_id)
    assert (run.status, run.output) == ("completed", {"signal": {}})


def test_an_event_step_times_out_without_its_event(
    conn: psycopg.Connection[Any], slug: str
) -> None:
    qf.create_flow(conn, slug, timeout=1)  # the step inherits the workflow's timeout
    qf.add_step(conn, slug, "signal", step_type="event")
    run_id = qf.start_flow(conn, slug)

    def ended() -> Any:
        qf.poll_tasks(conn, slug)  # pollers notice due timers
        run = qf.get_run(conn, run_id)
        return run if run.status != "started" else None

    run = wait_until(ended, what="the event timeout")
    assert (run.status, run.error_message) == (
        "failed",
        "step signal: event_timeout: no event arrived within the step's 1s timeout",
    )
    assert qf.send_event(conn, run_id, "signal") is False  # the run has ended


def test_send_event_errors(conn: psycopg.Connection[Any], slug: str) -> None:
    qf.create_flow(conn, slug)
    qf.add_step(conn, slug, "order")
    qf.add_step(conn, slug, "approval", ["order"], step_type="event")
    run_id = qf.start_flow(conn, slug)
    with pytest.raises(qf.QuantumFlowError) as not_event:
        qf.send_event(conn, run_id, "order", {"x": 1})
    assert (not_event.value.code, not_event.value.sqlstate) == ("not_an_event_step", "42809")
    assert not_event.value.message == (
        f'not_an_event_step: step "order" of workflow "{slug}" is a single step; only event '
        "steps take events"
    )
    assert isinstance(not_event.value.__cause__, psycopg.Error)
    with pytest.raises(qf.QuantumFlowError) as missing:
        qf.send_event(conn, run_id, "aproval")
    assert (missing.value.code, missing.value.sqlstate) == ("step_not_found", "P0002")
    assert missing.value.message == (
        f'step_not_found: workflow "{slug}" has no step "aproval" (did you mean "approval"?)'
    )
    with pytest.raises(qf.QuantumFlowError) as no_run:
        qf.send_event(conn, UUID("00000000-0000-0000-0000-00000000c0de"), "approval")
    assert no_run.value.code == "run_not_found"
    # Nothing changed.
    assert [s.status for s in qf.get_run(conn, run_id).steps] == ["started", "created"]


# ---------------------------------------------------------------------------------------------
# Pause, resume, retry


def test_pause_and_resume(conn: psycopg.Connection[Any], slug: str) -> None:
    qf.create_flow(conn, slug)
    qf.add_step(conn, slug, "a")
    qf.add_step(conn, slug, "b", ["a"])
    run_id = qf.start_flow(conn, slug, {"n": 1})
    [a] = qf.poll_tasks(conn, slug)
    assert qf.resume_run(conn, run_id) is False  # not paused
    assert qf.pause_run(conn, run_id) is True
    assert qf.pause_run(conn, run_id) is False  # already paused
    assert qf.get_run(conn, run_id).status == "paused"
    # A task claimed before the pause may still be answered; the next step's task waits.
    assert qf.complete_task(conn, run_id, "a", 0, "A", attempt=a.attempt) is True
    run = qf.get_run(conn, run_id)
    assert (run.status, run.step("a").status, run.step("b").status) == (
        "paused",
        "completed",
        "started",
    )
    assert qf.poll_tasks(conn, slug) == []
    assert qf.poll_tasks(conn, slug, max_wait_ms=300) == []
    assert qf.resume_run(conn, str(run_id)) is True
    assert qf.resume_run(conn, run_id) is False
    assert qf.get_run(conn, run_id).status == "started"
    assert qf.poll_tasks(conn, slug) == [Task(run_id, "b", 0, 1, {"run": {"n": 1}, "a": "A"})]
    assert qf.complete_task(conn, run_id, "b", 0, "B", attempt=1) is True
    run = qf.get_run(conn, run_id)
    assert (run.status, run.output) == ("completed", {"b": "B"})
    assert qf.pause_run(conn, run_id) is False  # ended
    with pytest.raises(qf.QuantumFlowError) as e:
        qf.pause_run(conn, "00000000-0000-0000-0000-00000000c0de")
    assert (e.value.code, e.value.sqlstate) == ("run_not_found", "P0002")


def test_a_paused_run_can_be_cancelled(conn: psycopg.Connection[Any], slug: str) -> None:
    qf.create_flow(conn, slug)
    qf.add_step(conn, slug, "a")
    run_id = qf.start_flow(conn, slug)
    assert qf.pause_run(conn, run_id) is True
    assert qf.cancel_run(conn, run_id, "not needed") is True
    run = qf.get_run(conn, run_id)
    assert (run.status, run.error_message) == ("failed", "cancelled: not needed")
    assert qf.resume_run(conn, run_id) is False


def test_retry_run_after_a_permanent_failure(conn: psycopg.Connection[Any], slug: str) -> None:
    qf.create_flow(conn, slug, max_attempts=3, base_delay=0)
    qf.add_step(conn, slug, "a")
    qf.add_step(conn, slug, "b", ["a"])
    qf.add_step(conn, slug, "c", ["b"])
    run_id = qf.start_flow(conn, slug, {"k": "v"})
    [a] = qf.poll_tasks(conn, slug)
    assert qf.complete_task(conn, run_id, "a", 0, {"a": 1}, attempt=a.attempt) is True
    [b] = qf.poll_tasks(conn, slug)
    assert (b.step_slug, b.attempt) == ("b", 1)
    # retry=False: failed at once, two attempts left or not.
    assert qf.fail_task(conn, run_id, "b", 0, "bad data", attempt=1, retry=False) == "failed"
    message = "step b, task 0, attempt 1: bad data" + NOT_RETRIED
    run = qf.get_run(conn, run_id)
    assert (run.status, run.error_message) == ("failed", message)
    assert run.steps == [
        StepState("a", "completed", 1, 1, {"a": 1}, None),
        StepState("b", "failed", 1, 0, None, message),
        StepState("c", "cancelled", 1, 0, None, None),
    ]
    assert qf.poll_tasks(conn, slug) == []

    assert qf.retry_run(conn, run_id) is True
    assert qf.retry_run(conn, run_id) is False  # started again: not failed
    run = qf.get_run(conn, run_id)
    assert (run.status, run.error_message, run.failed_at) == ("started", None, None)
    assert [(s.step_slug, s.status) for s in run.steps] == [
        ("a", "completed"),
        ("b", "started"),
        ("c", "created"),
    ]
    # The failed task again (its attempts count on); the completed step is not run again.
    [b2] = qf.poll_tasks(conn, slug)
    assert b2 == Task(run_id, "b", 0, 2, {"run": {"k": "v"}, "a": {"a": 1}})
    assert qf.complete_task(conn, run_id, "b", 0, "fixed", attempt=b2.attempt) is True
    [c] = qf.poll_tasks(conn, slug)
    assert c == Task(run_id, "c", 0, 1, {"run": {"k": "v"}, "b": "fixed"})
    assert qf.complete_task(conn, run_id, "c", 0, "done", attempt=1) is True
    run = qf.get_run(conn, run_id)
    assert (run.status, run.output, run.error_message) == ("completed", {"c": "done"}, None)
    assert run.step("a") == StepState("a", "completed", 1, 1, {"a": 1}, None)
    assert qf.retry_run(conn, run_id) is False  # completed
    with pytest.raises(qf.QuantumFlowError) as e:
        qf.retry_run(conn, "00000000-0000-0000-0000-00000000c0de")
    assert e.value.code == "run_not_found"


def test_fail_task_with_retry_true_is_the_default(conn: psycopg.Connection[Any], slug: str) -> None:
    qf.create_flow(conn, slug, max_attempts=2, base_delay=0)
    qf.add_step(conn, slug, "a")
    run_id = qf.start_flow(conn, slug)
    [t] = qf.poll_tasks(conn, slug)
    assert qf.fail_task(conn, run_id, "a", 0, "flaky", attempt=t.attempt, retry=True) == "queued"
    [t2] = qf.poll_tasks(conn, slug)
    assert t2.attempt == 2
    assert qf.fail_task(conn, run_id, "a", 0, "flaky", attempt=2) == "failed"
    assert qf.get_run(conn, run_id).error_message == "step a, task 0, attempt 2: flaky"


def test_retry_run_of_a_cancelled_run(conn: psycopg.Connection[Any], slug: str) -> None:
    qf.create_flow(conn, slug)
    qf.add_step(conn, slug, "a")
    run_id = qf.start_flow(conn, slug, [1])
    assert qf.cancel_run(conn, run_id) is True
    assert qf.retry_run(conn, run_id) is True
    [t] = qf.poll_tasks(conn, slug)
    assert (t.run_id, t.step_slug, t.input) == (run_id, "a", {"run": [1]})
    assert qf.complete_task(conn, run_id, "a", 0, "ok", attempt=t.attempt) is True
    assert qf.get_run(conn, run_id).output == {"a": "ok"}


# ---------------------------------------------------------------------------------------------
# Scheduled runs and delays


def test_start_flow_start_at_schedules_the_run(conn: psycopg.Connection[Any], slug: str) -> None:
    qf.create_flow(conn, slug)
    qf.add_step(conn, slug, "a")
    start_at = (datetime.now(timezone.utc) + timedelta(seconds=2)).replace(microsecond=0)
    run_id = qf.start_flow(conn, slug, {"at": "later"}, start_at=start_at)
    run = qf.get_run(conn, run_id)
    assert (run.status, run.start_at, run.deadline, run.parent_run_id) == (
        "started",
        start_at,
        None,
        None,
    )
    # Not claimable before start_at ...
    assert qf.poll_tasks(conn, slug) == []
    # ... and claimable from then on.
    tasks = wait_until(lambda: qf.poll_tasks(conn, slug), what="the scheduled run's task")
    assert datetime.now(timezone.utc) >= start_at
    assert tasks == [Task(run_id, "a", 0, 1, {"run": {"at": "later"}})]
    # A run started without start_at has none.
    other = qf.start_flow(conn, slug)
    assert qf.get_run(conn, other).start_at is None


def test_start_at_must_be_timezone_aware(conn: psycopg.Connection[Any], slug: str) -> None:
    qf.create_flow(conn, slug)
    qf.add_step(conn, slug, "a")
    with pytest.raises(ValueError):
        qf.start_flow(conn, slug, start_at=datetime(2030, 1, 1, 12, 0))
    runs = conn.execute(
        "SELECT count(*) FROM quantum_flow.runs WHERE workflow_slug = %s", [slug]
    ).fetchone()
    assert runs == (0,)


def test_start_delay_hides_the_steps_tasks(conn: psycopg.Connection[Any], slug: str) -> None:
    qf.create_flow(conn, slug)
    qf.add_step(conn, slug, "a")
    qf.add_step(conn, slug, "later", ["a"], start_delay=1)
    run_id = qf.start_flow(conn, slug)
    [a] = qf.poll_tasks(conn, slug)
    before_ready = datetime.now(timezone.utc)
    assert qf.complete_task(conn, run_id, "a", 0, 1, attempt=a.attempt) is True
    assert qf.poll_tasks(conn, slug) == []
    tasks = wait_until(lambda: qf.poll_tasks(conn, slug), what="the delayed step's task")
    assert datetime.now(timezone.utc) - before_ready >= timedelta(seconds=1)
    assert tasks == [Task(run_id, "later", 0, 1, {"run": {}, "a": 1})]


# ---------------------------------------------------------------------------------------------
# Sub-flows


def test_a_sub_flow_steps_output_is_its_child_runs_output(
    conn: psycopg.Connection[Any], slug: str
) -> None:
    child = slug + "_c"
    qf.create_flow(conn, child)
    qf.add_step(conn, child, "double")
    qf.create_flow(conn, slug)
    qf.add_step(conn, slug, "prep")
    qf.add_step(conn, slug, "sub", ["prep"], flow=child)
    run_id = qf.start_flow(conn, slug, {"n": 2})
    [prep] = qf.poll_tasks(conn, slug)
    assert qf.complete_task(conn, run_id, "prep", 0, 21, attempt=prep.attempt) is True
    # The sub-flow step has no task of its own: its task is a run of the child workflow,
    # whose input is the step's input.
    assert qf.poll_tasks(conn, slug) == []
    [double] = qf.poll_tasks(conn, child)
    child_run_id = double.run_id
    assert double == Task(child_run_id, "double", 0, 1, {"run": {"run": {"n": 2}, "prep": 21}})
    run = qf.get_run(conn, run_id)
    assert run.step("sub") == StepState("sub", "started", 1, 0, None, None, [child_run_id])
    assert run.step("prep").child_run_ids is None
    child_run = qf.get_run(conn, child_run_id)
    assert (child_run.workflow_slug, child_run.parent_run_id, child_run.input) == (
        child,
        run_id,
        {"run": {"n": 2}, "prep": 21},
    )
    assert qf.complete_task(conn, child_run_id, "double", 0, 42, attempt=1) is True
    assert qf.get_run(conn, child_run_id).output == {"double": 42}
    run = qf.get_run(conn, run_id)
    assert run.status == "completed"
    assert run.step("sub") == StepState(
        "sub", "completed", 1, 1, {"double": 42}, None, [child_run_id]
    )
    assert run.output == {"sub": {"double": 42}}
    assert run.parent_run_id is None


def test_a_map_sub_flow_runs_one_child_per_element(
    conn: psycopg.Connection[Any], slug: str
) -> None:
    child = slug + "_c"
    qf.create_flow(conn, child)
    qf.add_step(conn, child, "square")
    qf.create_flow(conn, slug)
    qf.add_step(conn, slug, "each", step_type="map", flow=child)
    run_id = qf.start_flow(conn, slug, [1, 2, 3])
    tasks = qf.poll_tasks(conn, child)
    # Each child run's input is its element.
    by_item = {t.input["run"]: t for t in tasks}
    assert sorted(by_item) == [1, 2, 3]
    children = qf.get_run(conn, run_id).step("each").child_run_ids
    # In task (element) order.
    assert children == [by_item[i].run_id for i in (1, 2, 3)]
    for t in tasks:
        item = t.input["run"]
        assert qf.complete_task(conn, t.run_id, "square", 0, item * item, attempt=1) is True
    run = qf.get_run(conn, run_id)
    assert (run.status, run.output) == (
        "completed",
        {"each": [{"square": 1}, {"square": 4}, {"square": 9}]},
    )


def test_a_failed_child_run_fails_the_sub_flow_task(
    conn: psycopg.Connection[Any], slug: str
) -> None:
    child = slug + "_c"
    qf.create_flow(conn, child, max_attempts=1)
    qf.add_step(conn, child, "work")
    qf.create_flow(conn, slug, max_attempts=1)
    qf.add_step(conn, slug, "sub", flow=child)
    run_id = qf.start_flow(conn, slug)
    [t] = qf.poll_tasks(conn, child)
    assert qf.fail_task(conn, t.run_id, "work", 0, "broken", attempt=1) == "failed"
    run = qf.get_run(conn, run_id)
    assert run.status == "failed"
    assert run.error_message == (
        f"step sub, task 0, attempt 1: child run {t.run_id} failed: "
        "step work, task 0, attempt 1: broken"
    )


# ---------------------------------------------------------------------------------------------
# Run timeout and concurrency keys


def test_run_timeout_fails_a_run_not_finished_in_time(
    conn: psycopg.Connection[Any], slug: str
) -> None:
    qf.create_flow(conn, slug, run_timeout=1)
    qf.add_step(conn, slug, "slow")
    run_id = qf.start_flow(conn, slug)
    run = qf.get_run(conn, run_id)
    assert run.deadline is not None and run.started_at is not None
    assert abs(run.deadline - (run.started_at + timedelta(seconds=1))) < timedelta(seconds=1)
    [t] = qf.poll_tasks(conn, slug)

    def ended() -> Any:
        qf.poll_tasks(conn, slug)  # pollers notice due timers (so do maintain() and the
        run = qf.get_run(conn, run_id)  # background worker)
        return run if run.status != "started" else None

    run = wait_until(ended, what="the run timeout")
    assert (run.status, run.error_message) == (
        "failed",
        "run_timeout: the run did not finish within its 1s run_timeout",
    )
    # The late answer changes nothing.
    assert qf.complete_task(conn, run_id, "slow", 0, "late", attempt=t.attempt) is False


def test_concurrency_key_limits_tasks_per_key(conn: psycopg.Connection[Any], slug: str) -> None:
    qf.create_flow(conn, slug, concurrency_key="tenant", max_concurrency=2)
    qf.add_step(conn, slug, "a")
    t1 = [qf.start_flow(conn, slug, {"tenant": "t1", "n": n}) for n in range(3)]
    t2 = qf.start_flow(conn, slug, {"tenant": "t2", "n": 0})
    # At most two tasks of tenant t1 at once: the third run's task waits for a slot.
    first = qf.poll_tasks(conn, slug)
    assert sorted((t.input["run"]["tenant"], t.input["run"]["n"]) for t in first) == [
        ("t1", 0),
        ("t1", 1),
        ("t2", 0),
    ]
    assert {t.run_id for t in first} == {t1[0], t1[1], t2}
    assert qf.poll_tasks(conn, slug) == []
    # A slot is freed when a task of the key completes.
    assert qf.complete_task(conn, t1[0], "a", 0, "done", attempt=1) is True
    assert qf.poll_tasks(conn, slug) == [Task(t1[2], "a", 0, 1, {"run": {"tenant": "t1", "n": 2}})]
