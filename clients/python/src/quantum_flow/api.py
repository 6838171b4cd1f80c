"""One function per SQL function of the extension, on a psycopg 3 connection.

Every value is bound as a parameter. Each function runs one statement on the connection it
is given and leaves transaction control to the caller: on an ``autocommit=True`` connection
each call commits by itself; otherwise wrap calls in ``with conn.transaction():`` (or commit).
Errors of the extension are raised as :class:`~quantum_flow.QuantumFlowError`.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union
from uuid import UUID

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from .errors import translate_errors
from .types import (
    FailOutcome,
    FlowDefinition,
    FlowValidation,
    GraphFormat,
    Run,
    RunEvent,
    RunStatus,
    RunSummary,
    Step,
    StepType,
    Task,
    TaskAnswer,
    WhenUnmet,
    Workflow,
    WorkflowStats,
)

Connection = psycopg.Connection[Any]
#: A run id: a UUID, or its text form.
RunId = Union[UUID, str]
#: A flow document: JSON text (``str``, or UTF-8 ``bytes``), sent to the server as it is, or
#: a JSON value (normally a ``dict``), sent as ``jsonb``. ``None`` is SQL NULL.
FlowDocument = Any

_WORKFLOW_COLUMNS = (
    "workflow_slug, max_attempts, timeout, base_delay, created_at, description, "
    "run_timeout, concurrency_key, max_concurrency"
)
_STEP_COLUMNS = (
    "workflow_slug, step_slug, step_type, step_index, deps_count, "
    "initial_tasks, max_attempts, timeout, base_delay, description, "
    "if_matches, if_not_matches, when_unmet, start_delay, flow"
)


def _rows(conn: Connection, query: str, params: Sequence[Any] = ()) -> List[Dict[str, Any]]:
    with translate_errors(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)
        return cur.fetchall()


def _one(conn: Connection, query: str, params: Sequence[Any] = ()) -> Dict[str, Any]:
    rows = _rows(conn, query, params)
    if len(rows) != 1:  # pragma: no cover - every function used here returns one row
        raise RuntimeError(f"expected one row from {query!r}, got {len(rows)}")
    return rows[0]


def _scalar(conn: Connection, query: str, params: Sequence[Any] = ()) -> Any:
    return next(iter(_one(conn, query, params).values()))


def _named(args: List[str], params: List[Any], options: Sequence[Tuple[str, str, Any]]) -> None:
    """Appends ``name => %s::type`` for each option that is set (not None), so that the
    server's defaults apply to the rest."""
    for name, sql_type, value in options:
        if value is not None:
            args.append(f"{name} => %s::{sql_type}")
            params.append(value)


# ---------------------------------------------------------------------------------------------
# Definitions


def create_flow(
    conn: Connection,
    workflow_slug: str,
    *,
    max_attempts: Optional[int] = None,
    timeout: Optional[int] = None,
    base_delay: Optional[int] = None,
    run_timeout: Optional[int] = None,
    concurrency_key: Optional[str] = None,
    max_concurrency: Optional[int] = None,
) -> Workflow:
    """Creates a workflow and its queue.

    Options left ``None`` take the server's defaults (3 attempts, 30 s timeout, 1 s base
    delay, no run timeout, no concurrency limit). ``run_timeout`` (seconds): a run not
    finished in time fails with ``run_timeout``. ``concurrency_key`` (a top-level key of the
    flow input) with ``max_concurrency``: at most that many tasks of runs with the same value
    of the key are queued or claimed at once. Called again with the same options it returns
    the existing row; other options raise ``workflow_exists``.
    """
    args = ["%s::text"]
    params: List[Any] = [workflow_slug]
    # Only the options given are passed (by name), so the server's defaults apply to the rest.
    _named(
        args,
        params,
        (
            ("max_attempts", "int", max_attempts),
            ("timeout", "int", timeout),
            ("base_delay", "int", base_delay),
            ("run_timeout", "int", run_timeout),
            ("concurrency_key", "text", concurrency_key),
            ("max_concurrency", "int", max_concurrency),
        ),
    )
    row = _one(
        conn,
        f"SELECT {_WORKFLOW_COLUMNS} FROM quantum_flow.create_flow({', '.join(args)})",
        params,
    )
    return Workflow(**row)


def add_step(
    conn: Connection,
    workflow_slug: str,
    step_slug: str,
    depends_on: Sequence[str] = (),
    *,
    step_type: StepType = "single",
    initial_tasks: Optional[int] = None,
    max_attempts: Optional[int] = None,
    timeout: Optional[int] = None,
    base_delay: Optional[int] = None,
    if_matches: Any = None,
    if_not_matches: Any = None,
    when_unmet: Optional[WhenUnmet] = None,
    start_delay: Optional[int] = None,
    flow: Optional[str] = None,
) -> Step:
    """Adds a step; its dependencies must already be steps of the workflow.

    ``initial_tasks`` (map steps only) is the expected task count that progress shows before
    the real count is known. Retry options left ``None`` inherit the workflow's. An
    ``"event"`` step has no task: :func:`send_event` completes it.

    ``if_matches`` / ``if_not_matches``: JSON values the step's input must / must not
    contain (``@>``) when the step becomes ready; when it does not, ``when_unmet`` decides
    (``None``: the server's ``"skip"``, the step is skipped; ``"skip_cascade"``: its
    dependents too; ``"fail"``: the run fails with ``condition_unmet``). ``start_delay``
    (seconds): the step's tasks become visible that long after it becomes ready. ``flow``: a
    sub-flow step, each task of which is a run of that workflow (the child run's output is
    the task's output).

    Called again with an identical definition it returns the existing row; a different one
    raises ``step_exists``.
    """
    args = ["%s::text, %s::text, %s::text[], %s::text, %s::int, %s::int, %s::int, %s::int"]
    params: List[Any] = [
        workflow_slug,
        step_slug,
        list(depends_on),
        step_type,
        initial_tasks,
        max_attempts,
        timeout,
        base_delay,
    ]
    # The options added after the first version: passed by name, only when given.
    _named(
        args,
        params,
        (
            ("if_matches", "jsonb", None if if_matches is None else Jsonb(if_matches)),
            ("if_not_matches", "jsonb", None if if_not_matches is None else Jsonb(if_not_matches)),
            ("when_unmet", "text", when_unmet),
            ("start_delay", "int", start_delay),
            ("flow", "text", flow),
        ),
    )
    row = _one(
        conn,
        f"SELECT {_STEP_COLUMNS} FROM quantum_flow.add_step({', '.join(args)})",
        params,
    )
    return Step(**row)


def list_flows(conn: Connection) -> List[Workflow]:
    """Every workflow, ordered by slug."""
    return [
        Workflow(**row)
        for row in _rows(conn, f"SELECT {_WORKFLOW_COLUMNS} FROM quantum_flow.list_flows()")
    ]


def get_flow(conn: Connection, workflow_slug: str) -> FlowDefinition:
    """A workflow with its steps (``workflow_not_found`` if there is none)."""
    doc = _scalar(conn, "SELECT quantum_flow.get_flow(%s::text)", [workflow_slug])
    return FlowDefinition.from_json(doc)


def delete_flow(conn: Connection, workflow_slug: str) -> None:
    """Removes a workflow, its runs, tasks and queue (``workflow_has_active_runs`` while a run
    of it is started)."""
    _rows(conn, "SELECT quantum_flow.delete_flow(%s::text)", [workflow_slug])


def is_valid_slug(conn: Connection, slug: Optional[str]) -> bool:
    """Whether the server accepts ``slug`` as a workflow slug (no side effects)."""
    return bool(_scalar(conn, "SELECT quantum_flow.is_valid_slug(%s::text)", [slug]))


# ---------------------------------------------------------------------------------------------
# Workflows defined in one document


def validate_flow(conn: Connection, doc: FlowDocument) -> FlowValidation:
    """Every problem of a flow document, without writing anything.

    ``doc`` is JSON text or a JSON value (see :data:`FlowDocument`); the server reads it
    whatever it holds, and answers for any JSON value (a document that is not an object is one
    problem, ``invalid_document``) without raising. JSON text that does not parse raises
    psycopg's ``InvalidTextRepresentation`` (the server's JSON parser).
    """
    doc_json = _scalar(conn, "SELECT quantum_flow.validate_flow(%s::jsonb)", [_document_param(doc)])
    return FlowValidation.from_json(doc_json)


def define_flow(conn: Connection, doc: FlowDocument) -> FlowDefinition:
    """Creates the workflow a flow document describes, with all its steps, in one statement,
    and returns it as :func:`get_flow` does.

    A bad document raises :class:`~quantum_flow.InvalidFlowDocument` (a
    :class:`~quantum_flow.QuantumFlowError`) with the code of its first problem and every
    problem in ``problems``; nothing is written. The same document again returns the existing
    workflow unchanged; another document for a taken slug raises ``workflow_exists``.
    """
    doc_json = _scalar(conn, "SELECT quantum_flow.define_flow(%s::jsonb)", [_document_param(doc)])
    return FlowDefinition.from_json(doc_json)


def export_flow(conn: Connection, workflow_slug: str) -> Dict[str, Any]:
    """The flow document of an existing workflow: :func:`define_flow` of it returns the
    workflow unchanged, and :func:`validate_flow` finds it valid."""
    doc: Dict[str, Any] = _scalar(
        conn, "SELECT quantum_flow.export_flow(%s::text)", [workflow_slug]
    )
    return doc


def flow_graph(
    conn: Connection,
    workflow_slug: str,
    format: GraphFormat = "mermaid",
    run_id: Optional[RunId] = None,
) -> str:
    """The workflow's graph as a Mermaid ``flowchart`` (``format="dot"``: Graphviz DOT).

    With ``run_id``, each step shows that run's status and completed/total tasks.
    """
    graph: str = _scalar(
        conn,
        "SELECT quantum_flow.flow_graph(%s::text, %s::text, %s::uuid)",
        [workflow_slug, format, _uuid_param(run_id)],
    )
    return graph


def flow_schema(conn: Connection) -> Dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a flow document, to give an LLM as a structured
    output schema. What a schema cannot express (a dependency on a missing step, a cycle, a
    duplicate slug) :func:`validate_flow` reports."""
    schema: Dict[str, Any] = _scalar(conn, "SELECT quantum_flow.flow_schema()")
    return schema


def _document_param(doc: FlowDocument) -> Any:
    # Text goes to the server as it is (its JSON parser reads it); other values as jsonb.
    if doc is None or isinstance(doc, str):
        return doc
    if isinstance(doc, (bytes, bytearray, memoryview)):
        return bytes(doc).decode("utf-8")
    return Jsonb(doc)


# ---------------------------------------------------------------------------------------------
# Runs


def start_flow(
    conn: Connection,
    workflow_slug: str,
    input: Any = None,
    run_id: Optional[RunId] = None,
    *,
    start_at: Optional[datetime] = None,
) -> UUID:
    """Starts a run with ``input`` (``None``: ``{}``) and returns its id.

    ``run_id`` lets the caller choose the id (``run_exists`` if it is taken), which makes
    submission idempotent. ``start_at`` (a timezone-aware datetime; a naive one raises
    ``ValueError``) schedules the run: it is ``started`` at once, but its first tasks become
    visible only then.
    """
    if start_at is not None and (
        start_at.tzinfo is None or start_at.tzinfo.utcoffset(start_at) is None
    ):
        # A naive datetime would be read in the session's TimeZone: refused, not guessed.
        raise ValueError("start_at must be a timezone-aware datetime")
    args = ["%s::text, %s::jsonb, %s::uuid"]
    params: List[Any] = [workflow_slug, Jsonb({} if input is None else input), _uuid_param(run_id)]
    _named(args, params, (("start_at", "timestamptz", start_at),))
    value = _scalar(conn, f"SELECT quantum_flow.start_flow({', '.join(args)})", params)
    return _as_uuid(value)


def start_flows(
    conn: Connection,
    workflow_slug: str,
    inputs: Sequence[Any],
    run_ids: Optional[Sequence[Optional[RunId]]] = None,
) -> List[UUID]:
    """Starts one run per element of ``inputs`` (``None``: ``{}``) in one statement, in
    order, and returns their ids.

    ``run_ids`` chooses the ids: it must be as long as ``inputs`` (``invalid_option``
    otherwise); a ``None`` element gets a new id. Any error (``run_exists``,
    ``invalid_map_input``, ``workflow_not_found``, ...) starts none of them. At most
    ``quantum_flow.max_batch_size`` (1000) runs per call (``invalid_option`` beyond).
    """
    ids = _scalar(
        conn,
        "SELECT quantum_flow.start_flows(%s::text, %s::jsonb[], %s::uuid[])",
        [
            workflow_slug,
            [Jsonb({} if input is None else input) for input in inputs],
            None if run_ids is None else [_uuid_param(r) for r in run_ids],
        ],
    )
    return [_as_uuid(v) for v in ids]


def poll_tasks(
    conn: Connection,
    workflow_slug: str,
    *,
    batch_size: int = 10,
    max_wait_ms: int = 0,
    worker_id: Optional[str] = None,
) -> List[Task]:
    """Claims up to ``batch_size`` ready tasks of the workflow, with their input.

    With ``max_wait_ms > 0`` the call waits server-side for work, holding its transaction
    open: use an autocommit connection. Claimed tasks are hidden from other pollers for their
    step's timeout.
    """
    rows = _rows(
        conn,
        "SELECT run_id, step_slug, task_index, attempt, input "
        "FROM quantum_flow.poll_tasks(%s::text, %s::int, %s::int, %s::text)",
        [workflow_slug, batch_size, max_wait_ms, worker_id],
    )
    return [Task(**row) for row in rows]


def complete_task(
    conn: Connection,
    run_id: RunId,
    step_slug: str,
    task_index: int,
    output: Any,
    attempt: Optional[int] = None,
) -> bool:
    """Completes a claimed task with ``output`` (any JSON value).

    True when this call completed it; False for a late or duplicate call. Pass the
    ``attempt`` that :func:`poll_tasks` returned so that an answer for an attempt that timed
    out and was handed on does not count.
    """
    return bool(
        _scalar(
            conn,
            "SELECT quantum_flow.complete_task(%s::uuid, %s::text, %s::int, %s::jsonb, %s::int)",
            [_uuid_param(run_id), step_slug, task_index, Jsonb(output), attempt],
        )
    )


def complete_tasks(conn: Connection, answers: Sequence[TaskAnswer]) -> List[bool]:
    """Completes a batch of claimed tasks in one statement (so one commit on an autocommit
    connection).

    Element ``i`` of the result is what :func:`complete_task` would have returned for
    ``answers[i]`` (a repeat of an earlier element: False). An answer naming no run or no
    task raises (``run_not_found``, ``task_not_found``) and then none is completed; so does
    an output the server refuses (``output_too_large``, or a value ``jsonb`` cannot hold).
    At most ``quantum_flow.max_batch_size`` (1000) answers per call (``invalid_option``
    beyond). Build answers with :meth:`TaskAnswer.for_task` to pass each task's attempt back.
    """
    answers = list(answers)
    results = _scalar(
        conn,
        "SELECT quantum_flow.complete_tasks(%s::uuid[], %s::text[], %s::int[], %s::jsonb[], "
        "%s::int[])",
        [
            [_uuid_param(a.run_id) for a in answers],
            [a.step_slug for a in answers],
            [a.task_index for a in answers],
            [Jsonb(a.output) for a in answers],
            [a.attempt for a in answers],
        ],
    )
    return [bool(r) for r in results]


def fail_task(
    conn: Connection,
    run_id: RunId,
    step_slug: str,
    task_index: int,
    error_message: str,
    attempt: Optional[int] = None,
    *,
    retry: bool = True,
) -> FailOutcome:
    """Reports a failed attempt of a claimed task.

    Returns ``"queued"`` (it will be retried after backoff), ``"failed"`` (attempts
    exhausted: the step and the run fail with this message) or ``"ignored"`` (a late or
    duplicate call). ``retry=False`` is for an error another attempt cannot fix: the task
    fails at once, whatever attempts are left (the run's message then says it was not
    retried).
    """
    args = ["%s::uuid, %s::text, %s::int, %s::text, %s::int"]
    params: List[Any] = [_uuid_param(run_id), step_slug, task_index, error_message, attempt]
    # Passed only when it is not the server's default.
    _named(args, params, (("retry", "boolean", None if retry else False),))
    outcome: FailOutcome = _scalar(
        conn, f"SELECT quantum_flow.fail_task({', '.join(args)})", params
    )
    return outcome


def cancel_run(conn: Connection, run_id: RunId, reason: Optional[str] = None) -> bool:
    """Cancels a started run: it fails with the error message ``cancelled: <reason>`` (the
    server's default reason when ``reason`` is None) and its queued tasks are discarded.

    Returns True when this call cancelled it, False when the run had already ended.
    """
    if reason is None:
        cancelled: bool = _scalar(
            conn, "SELECT quantum_flow.cancel_run(%s::uuid)", [_uuid_param(run_id)]
        )
    else:
        cancelled = _scalar(
            conn,
            "SELECT quantum_flow.cancel_run(%s::uuid, %s::text)",
            [_uuid_param(run_id), reason],
        )
    return cancelled


def pause_run(conn: Connection, run_id: RunId) -> bool:
    """Pauses a started run: none of its tasks is handed out until :func:`resume_run` (tasks
    claimed before may still be answered; its timers keep running).

    True when this call paused it, False when it was not started.
    """
    return bool(_scalar(conn, "SELECT quantum_flow.pause_run(%s::uuid)", [_uuid_param(run_id)]))


def resume_run(conn: Connection, run_id: RunId) -> bool:
    """Resumes a paused run: its tasks are handed out again.

    True when this call resumed it, False when it was not paused.
    """
    return bool(_scalar(conn, "SELECT quantum_flow.resume_run(%s::uuid)", [_uuid_param(run_id)]))


def retry_run(conn: Connection, run_id: RunId) -> bool:
    """Starts a failed (or cancelled) run again, with the same run id, from its failed and
    unfinished steps; completed steps keep their outputs and each unfinished task gets its
    full ``max_attempts`` again.

    True when this call restarted it, False when it was not failed.
    """
    return bool(_scalar(conn, "SELECT quantum_flow.retry_run(%s::uuid)", [_uuid_param(run_id)]))


def send_event(conn: Connection, run_id: RunId, step_slug: str, payload: Any = None) -> bool:
    """Delivers an event to an event step of a run: the step completes with ``payload``
    (``None``: ``{}``) as its output, or, when it is not ready yet, the event is kept and
    completes it when it becomes ready.

    True when this call's event is the step's; False for a duplicate event or an ended run.
    ``step_not_found`` (with a "did you mean" in the message) for a step the run's workflow
    does not have, ``not_an_event_step`` for a step that is not an event step.
    """
    return bool(
        _scalar(
            conn,
            "SELECT quantum_flow.send_event(%s::uuid, %s::text, %s::jsonb)",
            [_uuid_param(run_id), step_slug, Jsonb({} if payload is None else payload)],
        )
    )


def get_run(conn: Connection, run_id: RunId, *, include_tasks: bool = False) -> Run:
    """A run's state (``run_not_found`` if there is none).

    With ``include_tasks=True`` each step's ``tasks`` lists its tasks (:class:`TaskState`:
    status, attempts, last error, worker, claim deadline, next retry time), in index order;
    without, ``tasks`` is None.
    """
    if include_tasks:
        doc = _scalar(
            conn,
            "SELECT quantum_flow.get_run(%s::uuid, include_tasks => true)",
            [_uuid_param(run_id)],
        )
    else:
        doc = _scalar(conn, "SELECT quantum_flow.get_run(%s::uuid)", [_uuid_param(run_id)])
    return Run.from_json(doc)


def wait_run(conn: Connection, run_id: RunId, max_wait_ms: int = 60000) -> Run:
    """Waits until the run has ended (``completed`` or ``failed``) and returns it as
    :func:`get_run` does: at once if it has ended, else as soon as the commit that ends it
    happens, or after ``max_wait_ms`` with the run as it is then (check ``status``: a
    ``started`` or ``paused`` run has not ended).

    The wait runs in the server and holds its transaction open: use an autocommit connection.
    ``max_wait_ms`` is from 0 to ``quantum_flow.max_wait_ms`` (60000 by default;
    ``invalid_option`` beyond); ``run_not_found`` for an unknown run.
    """
    doc = _scalar(
        conn,
        "SELECT quantum_flow.wait_run(%s::uuid, %s::int)",
        [_uuid_param(run_id), max_wait_ms],
    )
    return Run.from_json(doc)


#: The channel of ``NOTIFY`` status changes.
EVENTS_CHANNEL = "quantum_flow_events"


def events(
    conn: Connection,
    *,
    run_id: Optional[RunId] = None,
    timeout: Optional[float] = None,
) -> Iterator[RunEvent]:
    """Status changes of runs and their steps as they commit: runs ``LISTEN
    quantum_flow_events`` on ``conn`` (before it returns: changes committed from then on are
    seen) and returns an iterator of :class:`RunEvent`, one per notification, in commit order.

    ``conn`` must be in autocommit mode (notifications arrive between transactions) and is
    given over to listening while the iterator is used. Only ``run_id``'s events with
    ``run_id``; the iterator ends ``timeout`` seconds after this call (None: never; stop it
    with ``break``). Changes committed before the ``LISTEN`` are not replayed: read
    :func:`get_run` after this call to know where a run stands. Nothing is sent while the
    server's ``quantum_flow.notify_events`` is off.
    """
    if not conn.autocommit:
        raise ValueError("events() needs a connection in autocommit mode")
    want = None if run_id is None else UUID(str(run_id))
    with translate_errors():
        conn.execute("LISTEN " + EVENTS_CHANNEL)
    return _events(conn, want, None if timeout is None else time.monotonic() + timeout)


def _events(conn: Connection, want: Optional[UUID], deadline: Optional[float]) -> Iterator[RunEvent]:
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return
        # Drained into a list before yielding: psycopg's notifies() holds the connection's
        # lock while it is suspended, and the caller may use (or close) the connection after
        # leaving the loop. stop_after=1 returns what one read brought, however many.
        received = list(conn.notifies(timeout=remaining, stop_after=1))
        for notify in received:
            if notify.channel != EVENTS_CHANNEL:
                continue
            try:
                event = RunEvent.from_json(json.loads(notify.payload))
            except (ValueError, KeyError, TypeError, AttributeError):
                # Any role may NOTIFY on the channel: what is not an event is not ours.
                continue
            if want is None or event.run_id == want:
                yield event


# ---------------------------------------------------------------------------------------------
# Watching: the status views and metrics

_RUN_LIST_COLUMNS = (
    "run_id, workflow_slug, status, parent_run_id, started_at, start_at, deadline, "
    "completed_at, failed_at, duration, error_message, steps_total, steps_done, "
    "steps_started, tasks_total, tasks_completed"
)
_WORKFLOW_STATS_COLUMNS = (
    "workflow_slug, runs_started, runs_paused, runs_completed, runs_failed, tasks_queued, "
    "tasks_started, tasks_failed, oldest_queued_seconds, completed_last_minute"
)


def run_list(
    conn: Connection,
    workflow_slug: Optional[str] = None,
    *,
    status: Optional[RunStatus] = None,
    limit: Optional[int] = 100,
) -> List[RunSummary]:
    """Rows of the view ``quantum_flow.run_list`` (one per run: status, progress, times),
    newest first, of one workflow or of all (``workflow_slug=None``), of one status or of
    all, at most ``limit`` (None: every run)."""
    rows = _rows(
        conn,
        f"SELECT {_RUN_LIST_COLUMNS} FROM quantum_flow.run_list "
        "WHERE (%s::text IS NULL OR workflow_slug = %s::text) "
        "AND (%s::text IS NULL OR status = %s::text) "
        "ORDER BY started_at DESC, run_id LIMIT %s::bigint",
        [workflow_slug, workflow_slug, status, status, limit],
    )
    return [RunSummary(**row) for row in rows]


def workflow_stats(conn: Connection, workflow_slug: Optional[str] = None) -> List[WorkflowStats]:
    """Rows of the view ``quantum_flow.workflow_stats`` (per workflow: runs by status, tasks
    queued, claimed and failed, the oldest queued task's age, completions in the last minute),
    ordered by slug; one workflow's row only with ``workflow_slug`` (``[]`` if it does not
    exist)."""
    rows = _rows(
        conn,
        f"SELECT {_WORKFLOW_STATS_COLUMNS} FROM quantum_flow.workflow_stats "
        "WHERE %s::text IS NULL OR workflow_slug = %s::text ORDER BY workflow_slug",
        [workflow_slug, workflow_slug],
    )
    return [WorkflowStats(**row) for row in rows]


def metrics(conn: Connection) -> str:
    """The figures of ``workflow_stats`` in the Prometheus text exposition format (for an
    exporter or a scrape endpoint to serve as it is)."""
    text: str = _scalar(conn, "SELECT quantum_flow.metrics()")
    return text


def _uuid_param(run_id: Optional[RunId]) -> Optional[str]:
    # Sent as text and cast by the server, so a malformed id is the server's error.
    return None if run_id is None else str(run_id)


def _as_uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))
