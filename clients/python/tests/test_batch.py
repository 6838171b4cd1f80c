"""Batch calls: complete_tasks and start_flows, the input of a map over the flow input (no
"run"), and a Worker that completes in batches or one by one, and fails an output the server
refuses without retries."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Dict, List
from uuid import UUID, uuid4

import psycopg
import pytest
from conftest import wait_for_run_end, wait_until
from psycopg.conninfo import make_conninfo

import quantum_flow as qf
from quantum_flow.errors import translate_errors

NOT_RETRIED = " (not retried: the worker said the error is permanent)"
# A value the type hints forbid, to see what the server says.
NULL: Any = None


def run_count(conn: psycopg.Connection[Any], slug: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM quantum_flow.runs WHERE workflow_slug = %s", [slug]
    ).fetchone()
    assert row is not None
    return int(row[0])


def root_map(conn: psycopg.Connection[Any], slug: str) -> None:
    qf.create_flow(conn, slug)
    qf.add_step(conn, slug, "m", step_type="map")


# ---------------------------------------------------------------------------------------------
# complete_tasks


def test_complete_tasks_answers_each_element_as_complete_task_would(
    conn: psycopg.Connection[Any], slug: str
) -> None:
    root_map(conn, slug)
    run_id = qf.start_flow(conn, slug, [1, 2, 3])
    tasks = sorted(qf.poll_tasks(conn, slug), key=lambda t: t.task_index)
    # A map over the flow input: the flow input is the array mapped over, so no "run".
    assert [t.input for t in tasks] == [{"item": i + 1, "index": i} for i in range(3)]
    answers = [qf.TaskAnswer.for_task(t, t.input["item"] * 10) for t in tasks]
    assert answers[0] == qf.TaskAnswer(run_id, "m", 0, 10, 1)
    # A repeat of an earlier element is False, as a second complete_task would be.
    assert qf.complete_tasks(conn, answers + [answers[0]]) == [True, True, True, False]
    run = qf.get_run(conn, run_id)
    assert (run.status, run.output) == ("completed", {"m": [10, 20, 30]})
    # After the end: False, as complete_task says.
    assert qf.complete_tasks(conn, answers[:1]) == [False]


def test_complete_tasks_checks_attempts_and_stores_none_as_json_null(
    conn: psycopg.Connection[Any], slug: str
) -> None:
    root_map(conn, slug)
    run_id = qf.start_flow(conn, slug, ["a", "b", "c"])
    assert len(qf.poll_tasks(conn, slug)) == 3
    answers = [
        qf.TaskAnswer(run_id, "m", 0, None, attempt=1),
        qf.TaskAnswer(str(run_id), "m", 1, "b", attempt=7),  # not the task's attempt
        qf.TaskAnswer(run_id, "m", 2, {"c": [3]}),  # no attempt: no check
    ]
    assert qf.complete_tasks(conn, answers) == [True, False, True]
    assert qf.get_run(conn, run_id).step("m").tasks_completed == 2
    assert qf.complete_tasks(conn, [qf.TaskAnswer(run_id, "m", 1, "b", attempt=1)]) == [True]
    assert qf.get_run(conn, run_id).output == {"m": [None, "b", {"c": [3]}]}


def test_complete_tasks_across_runs_and_workflows(conn: psycopg.Connection[Any], slug: str) -> None:
    other = slug + "_o"
    root_map(conn, slug)
    qf.create_flow(conn, other)
    qf.add_step(conn, other, "a")
    first = qf.start_flow(conn, slug, [1])
    second = qf.start_flow(conn, other, {"k": 1})
    [t1] = qf.poll_tasks(conn, slug)
    [t2] = qf.poll_tasks(conn, other)
    answers = [qf.TaskAnswer.for_task(t1, "one"), qf.TaskAnswer.for_task(t2, "two")]
    assert qf.complete_tasks(conn, answers) == [True, True]
    assert qf.get_run(conn, first).output == {"m": ["one"]}
    assert qf.get_run(conn, second).output == {"a": "two"}


def test_an_answer_for_no_task_completes_none(conn: psycopg.Connection[Any], slug: str) -> None:
    root_map(conn, slug)
    run_id = qf.start_flow(conn, slug, [1, 2])
    tasks = sorted(qf.poll_tasks(conn, slug), key=lambda t: t.task_index)
    good = [qf.TaskAnswer.for_task(t, t.task_index) for t in tasks]
    with pytest.raises(qf.QuantumFlowError) as info:
        qf.complete_tasks(conn, [good[0], qf.TaskAnswer(run_id, "m", 7, 0)])
    e = info.value
    assert (e.code, e.sqlstate) == ("task_not_found", "P0002")
    assert e.message.startswith(f'task_not_found: run {run_id} has no task 7 of step "m"')
    assert isinstance(e.__cause__, psycopg.errors.NoDataFound)
    with pytest.raises(qf.QuantumFlowError) as info:
        qf.complete_tasks(conn, [good[0], qf.TaskAnswer(uuid4(), "m", 0, 0)])
    assert (info.value.code, info.value.sqlstate) == ("run_not_found", "P0002")
    # Nothing was completed: both tasks are still there to complete.
    run = qf.get_run(conn, run_id)
    assert (run.status, run.step("m").tasks_completed) == ("started", 0)
    assert qf.complete_tasks(conn, good) == [True, True]
    assert qf.get_run(conn, run_id).output == {"m": [0, 1]}


def test_an_empty_batch_completes_nothing(conn: psycopg.Connection[Any]) -> None:
    assert qf.complete_tasks(conn, []) == []


def test_arrays_of_different_lengths_are_refused(conn: psycopg.Connection[Any]) -> None:
    # complete_tasks builds its arrays from the answers: only SQL can send other lengths.
    with pytest.raises(qf.QuantumFlowError) as info, translate_errors():
        conn.execute(
            "SELECT quantum_flow.complete_tasks(%s::uuid[], %s::text[], %s::int[], %s::jsonb[])",
            [[str(uuid4())], ["m", "m"], [0], ["1"]],
        )
    e = info.value
    assert (e.code, e.sqlstate) == ("invalid_option", "22023")
    assert e.message == (
        "invalid_option: run_ids has 1 elements but step_slugs has 2; the arrays must be as "
        "long as each other"
    )


def test_a_null_element_and_a_batch_too_large_are_refused(
    conn: psycopg.Connection[Any],
) -> None:
    with pytest.raises(qf.QuantumFlowError) as info:
        qf.complete_tasks(conn, [qf.TaskAnswer(NULL, "m", 0, 1)])
    assert (info.value.code, info.value.sqlstate) == ("null_argument", "22004")
    assert info.value.message == "null_argument: run_ids[1] must not be NULL"
    # quantum_flow.max_batch_size (1000) answers at most.
    too_many = [qf.TaskAnswer(uuid4(), "m", i, i) for i in range(1001)]
    with pytest.raises(qf.QuantumFlowError) as info:
        qf.complete_tasks(conn, too_many)
    assert (info.value.code, info.value.sqlstate) == ("invalid_option", "22023")
    assert "quantum_flow.max_batch_size (1000)" in info.value.message


# ---------------------------------------------------------------------------------------------
# start_flows


def chain(conn: psycopg.Connection[Any], slug: str) -> None:
    qf.create_flow(conn, slug)
    qf.add_step(conn, slug, "a")
    qf.add_step(conn, slug, "b", ["a"])


def test_start_flows_starts_every_run_in_order(conn: psycopg.Connection[Any], slug: str) -> None:
    chain(conn, slug)
    chosen = [uuid4(), uuid4()]
    ids = qf.start_flows(conn, slug, [{"n": 1}, {"n": 2}, None], [chosen[0], None, str(chosen[1])])
    assert len(ids) == 3 and all(isinstance(i, UUID) for i in ids)
    assert (ids[0], ids[2]) == (chosen[0], chosen[1])
    assert ids[1] not in chosen  # a None id gets a new one
    # In order, each with its input (None: {}, as start_flow).
    assert [qf.get_run(conn, i).input for i in ids] == [{"n": 1}, {"n": 2}, {}]
    tasks = qf.poll_tasks(conn, slug)
    assert sorted((t.run_id, t.step_slug, t.input["run"]) for t in tasks) == sorted(
        (i, "a", input) for i, input in zip(ids, [{"n": 1}, {"n": 2}, {}])
    )
    generated = qf.start_flows(conn, slug, [[1], "x"])
    assert len(set(generated)) == 2 and not set(generated) & set(ids)
    assert [qf.get_run(conn, i).input for i in generated] == [[1], "x"]
    assert qf.start_flows(conn, slug, []) == []
    assert run_count(conn, slug) == 5


def test_start_flows_starts_none_when_one_cannot_start(
    conn: psycopg.Connection[Any], slug: str
) -> None:
    chain(conn, slug)
    taken = qf.start_flow(conn, slug)
    mapped = slug + "_m"
    root_map(conn, mapped)
    before = run_count(conn, slug)
    with pytest.raises(qf.QuantumFlowError) as info:
        qf.start_flows(conn, slug, [{}, {}], [uuid4(), taken])
    assert (info.value.code, info.value.sqlstate) == ("run_exists", "23505")
    assert run_count(conn, slug) == before
    with pytest.raises(qf.QuantumFlowError) as info:
        qf.start_flows(conn, mapped, [[1], {"not": "an array"}])
    assert (info.value.code, info.value.sqlstate) == ("invalid_map_input", "22023")
    assert run_count(conn, mapped) == 0
    with pytest.raises(qf.QuantumFlowError) as info:
        qf.start_flows(conn, slug, [{}], [])
    assert (info.value.code, info.value.sqlstate) == ("invalid_option", "22023")
    with pytest.raises(qf.QuantumFlowError) as info:
        qf.start_flows(conn, "no_such_flow", [{}])
    assert (info.value.code, info.value.sqlstate) == ("workflow_not_found", "P0002")
    assert run_count(conn, slug) == before


# ---------------------------------------------------------------------------------------------
# The input of map tasks


def test_a_map_over_the_flow_input_has_no_run_and_a_map_over_a_step_has(
    conn: psycopg.Connection[Any], slug: str
) -> None:
    root = slug + "_r"
    root_map(conn, root)
    qf.add_step(conn, root, "after", ["m"])
    run_id = qf.start_flow(conn, root, ["x", "y"])
    tasks = sorted(qf.poll_tasks(conn, root), key=lambda t: t.task_index)
    assert [t.input for t in tasks] == [{"item": "x", "index": 0}, {"item": "y", "index": 1}]
    qf.complete_tasks(conn, [qf.TaskAnswer.for_task(t, t.input["item"].upper()) for t in tasks])
    # A step after the map still gets the flow input under "run".
    [after] = qf.poll_tasks(conn, root)
    assert after.input == {"run": ["x", "y"], "m": ["X", "Y"]}
    qf.complete_task(conn, run_id, "after", 0, None, after.attempt)

    qf.create_flow(conn, slug)
    qf.add_step(conn, slug, "list")
    qf.add_step(conn, slug, "m", ["list"], step_type="map")
    run_id = qf.start_flow(conn, slug, {"k": 1})
    [t] = qf.poll_tasks(conn, slug)
    qf.complete_task(conn, run_id, "list", 0, ["a", "b"], t.attempt)
    tasks = sorted(qf.poll_tasks(conn, slug), key=lambda t: t.task_index)
    assert [t.input for t in tasks] == [
        {"item": "a", "index": 0, "run": {"k": 1}},
        {"item": "b", "index": 1, "run": {"k": 1}},
    ]


# ---------------------------------------------------------------------------------------------
# The Worker


class Calls:
    """Counts the calls of the client's complete_task and complete_tasks (with the size of
    each batch), and of the step functions, across threads."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.lock = threading.Lock()
        self.single = 0
        self.batches: List[int] = []
        self.failed_batches: List[int] = []
        self.functions: Dict[str, int] = {}
        complete_task, complete_tasks = qf.api.complete_task, qf.api.complete_tasks

        def counted_task(*args: Any, **kwargs: Any) -> Any:
            with self.lock:
                self.single += 1
            return complete_task(*args, **kwargs)

        def counted_tasks(conn: Any, answers: Any) -> Any:
            with self.lock:
                self.batches.append(len(answers))
                first = len(self.batches) == 1
            if first:
                time.sleep(self.first_batch_delay)
            try:
                return complete_tasks(conn, answers)
            except Exception:
                with self.lock:
                    self.failed_batches.append(len(answers))
                raise

        self.first_batch_delay = 0.0
        # The worker calls them as api.complete_task / api.complete_tasks.
        monkeypatch.setattr(qf.api, "complete_task", counted_task)
        monkeypatch.setattr(qf.api, "complete_tasks", counted_tasks)

    def step(self, name: str) -> None:
        with self.lock:
            self.functions[name] = self.functions.get(name, 0) + 1


@pytest.mark.parametrize("batched", [True, False], ids=["in_batches", "one_by_one"])
def test_the_worker_completes_a_big_map_exactly(
    conninfo: str,
    conn: psycopg.Connection[Any],
    slug: str,
    batched: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    qf.create_flow(conn, slug)
    qf.add_step(conn, slug, "list")
    qf.add_step(conn, slug, "m", ["list"], step_type="map")
    calls = Calls(monkeypatch)

    def list_(input: Any) -> Any:
        calls.step("list")
        return list(range(300))

    def m(input: Any) -> Any:
        calls.step("m")
        return input["item"] + 1

    worker = qf.Worker(
        conninfo,
        slug,
        {"list": list_, "m": m},
        concurrency=32,
        batch_size=32,
        max_wait_ms=50,
        complete_in_batches=batched,
    )
    worker.start()
    try:
        run_id = qf.start_flow(conn, slug)
        run = wait_for_run_end(conn, run_id)
    finally:
        stats = worker.stop()
    assert (run.status, run.output) == ("completed", {"m": list(range(1, 301))})
    # Every task claimed was worked once and completed once: 1 + 300.
    assert calls.functions == {"list": 1, "m": 300}
    assert stats == qf.WorkerStats(completed=301, failed=0, ignored=0)
    if batched:
        assert (calls.single, sum(calls.batches), calls.failed_batches) == (0, 301, [])
        assert all(1 <= n <= qf.worker.MAX_COMPLETION_BATCH for n in calls.batches)
    else:
        assert (calls.single, calls.batches) == (301, [])


@pytest.mark.parametrize("batched", [True, False], ids=["in_batches", "one_by_one"])
@pytest.mark.parametrize(
    "output,sqlstate",
    [("a\u0000b", "22P05"), ({"too": "large " * 20}, "22001")],
    ids=["nul_character", "output_too_large"],
)
def test_an_output_the_server_refuses_fails_the_task_at_once(
    conninfo: str,
    conn: psycopg.Connection[Any],
    slug: str,
    output: Any,
    sqlstate: str,
    batched: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    qf.create_flow(conn, slug, max_attempts=3, base_delay=0)
    qf.add_step(conn, slug, "a")
    # The worker's sessions allow 64 bytes of output (quantum_flow.max_output_bytes).
    limited = make_conninfo(conninfo, options="-c quantum_flow.max_output_bytes=64")
    caplog.set_level(logging.ERROR, logger="quantum_flow.worker")
    worker = qf.Worker(
        limited, slug, {"a": lambda i: output}, max_wait_ms=200, complete_in_batches=batched
    )
    worker.start()
    try:
        run_id = qf.start_flow(conn, slug)
        run = wait_for_run_end(conn, run_id)
    finally:
        stats = worker.stop()
    assert run.status == "failed"
    message = run.error_message or ""
    assert message.startswith("step a, task 0, attempt 1: output refused: "), message
    assert message.endswith(f" (SQLSTATE {sqlstate})" + NOT_RETRIED), message
    if sqlstate == "22001":
        assert "output refused: output_too_large: " in message
    assert stats == qf.WorkerStats(completed=0, failed=1, ignored=0)
    [record] = [r for r in caplog.records if r.name == "quantum_flow.worker"]
    assert record.getMessage() == (
        f"workflow {slug!r}, step 'a', task 0, attempt 1 (run {run_id}): the step function "
        "returned output the server refused (permanent: not retried)"
    )
    assert record.exc_info is not None
    error = record.exc_info[1]
    assert getattr(error, "sqlstate", None) == sqlstate


def test_a_refused_output_in_a_batch_fails_only_its_own_task(
    conninfo: str,
    conn: psycopg.Connection[Any],
    slug: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    qf.create_flow(conn, slug, max_attempts=3, base_delay=0)
    qf.add_step(conn, slug, "a")
    calls = Calls(monkeypatch)
    # The first batch takes a while: the completions that finish meanwhile (the bad one
    # among them) wait for the next call, together.
    calls.first_batch_delay = 0.5

    def a(input: Any) -> Any:
        if input["run"]["bad"]:
            time.sleep(0.1)  # never the first completion
            return "a\u0000b"
        return input["run"]["n"]

    inputs = [{"n": n, "bad": n == 7} for n in range(16)]
    run_ids = qf.start_flows(conn, slug, inputs)
    worker = qf.Worker(conninfo, slug, {"a": a}, concurrency=16, batch_size=16, max_wait_ms=200)
    worker.start()
    try:
        runs = [wait_for_run_end(conn, r) for r in run_ids]
    finally:
        stats = worker.stop()
    for n, run in enumerate(runs):
        if n == 7:
            assert run.status == "failed"
            assert (run.error_message or "").startswith(
                "step a, task 0, attempt 1: output refused: unsupported Unicode escape sequence"
            ), run.error_message
        else:
            assert (run.status, run.output) == ("completed", {"a": n})
    assert stats == qf.WorkerStats(completed=15, failed=1, ignored=0)
    # Each completion went in one batch; the batch with the bad output failed as a whole,
    # and its completions were sent again one by one.
    assert sum(calls.batches) == 16
    assert calls.single == sum(calls.failed_batches)
    assert max(calls.failed_batches) > 1, calls.batches


def test_a_queued_completion_frees_its_thread_for_the_next_task(
    conninfo: str,
    conn: psycopg.Connection[Any],
    slug: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root_map(conn, slug)
    complete_tasks = qf.api.complete_tasks
    release = threading.Event()
    batches: List[int] = []

    def held_first(c: Any, answers: Any) -> Any:
        batches.append(len(answers))
        if len(batches) == 1:
            release.wait(30)
        return complete_tasks(c, answers)

    monkeypatch.setattr(qf.api, "complete_tasks", held_first)
    worked: List[int] = []
    lock = threading.Lock()

    def m(input: Any) -> Any:
        with lock:
            worked.append(input["item"])
        return input["item"] * 2

    worker = qf.Worker(conninfo, slug, {"m": m}, concurrency=2, batch_size=2, max_wait_ms=50)
    worker.start()
    try:
        run_id = qf.start_flow(conn, slug, list(range(10)))
        # The first batch is held: with two threads, all ten tasks are still worked meanwhile,
        # their completions waiting for the answering thread.
        wait_until(lambda: len(worked) == 10, timeout=30, what="all ten tasks worked")
        assert len(batches) == 1
        assert qf.get_run(conn, run_id).status == "started"
        release.set()
        run = wait_for_run_end(conn, run_id)
    finally:
        release.set()
        stats = worker.stop()
    assert (run.status, run.output) == ("completed", {"m": [n * 2 for n in range(10)]})
    assert sorted(worked) == list(range(10))
    assert stats == qf.WorkerStats(completed=10, failed=0, ignored=0)
    # The completions queued behind the held call went in the calls after it.
    assert sum(batches) == 10 and len(batches) >= 2, batches
