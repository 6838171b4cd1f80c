"""A worker: claims a workflow's tasks, runs the step's function for each, answers.

Connections: the worker opens its own connections from a connection string (autocommit).
One runs only ``poll_tasks``, so answers never wait behind a poll that is waiting for work.
With ``complete_in_batches`` (the default) one more belongs to the answering thread, which
sends completions with ``complete_tasks``: it takes the first completion waiting, and with it
every other one already waiting (up to 100), in one call and one commit. A completion is never
held back on a timer: those that finish while a batch is on its way go together in the next
call. A task's thread is free for the next task as soon as its completion is queued; the
worker claims no more while 100 completions wait for their answer. Each thread of the pool
answers failures (and completions, without batches) on a connection of its own, opened when
first needed; the answering thread completes those of a batch the server refused one by one.

Shutdown (:meth:`Worker.stop`): the worker stops claiming. A ``poll_tasks`` that is waiting
for work is cancelled; a cancelled poll rolls back, so it claimed nothing, and a poll that
returned first hands its tasks to the functions as usual. Every task the worker holds is
finished and answered before :meth:`Worker.run` returns.

Errors: an exception of a step function fails the attempt (retried while attempts remain);
a :class:`~quantum_flow.PermanentError`, an output that is not JSON, or an output the server
refuses (SQLSTATE class 22: ``output_too_large``, a ``\\u0000`` that ``jsonb`` cannot hold)
fails the task at once (``fail_task(..., retry=False)``). Each is logged with its traceback on
the logger ``quantum_flow.worker``, naming the workflow, step, task index, attempt and run.
When a batch of completions fails (one refused output fails the whole call), each of its
completions is sent again on its own, so that only the bad one gets the error.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, List, Mapping, Optional, Tuple, Union

import psycopg
from psycopg.conninfo import conninfo_to_dict

from . import api
from .errors import MissingStepFunctions, PermanentError, QuantumFlowError
from .types import FlowDefinition, Task, TaskAnswer, WorkerStats

log = logging.getLogger("quantum_flow.worker")

#: A step function: receives the task's input (see the SQL API's data flow rules) and
#: returns its output, any JSON-serialisable value. An exception fails the attempt with the
#: exception's message; a :class:`~quantum_flow.PermanentError` fails the task without retry.
StepFunction = Callable[[Any], Any]

#: How many completions one ``complete_tasks`` call of the worker carries at most.
MAX_COMPLETION_BATCH = 100


def missing_step_functions(
    flow: FlowDefinition, step_functions: Mapping[str, StepFunction]
) -> List[str]:
    """The steps of ``flow`` that have no function in ``step_functions``, in step order.

    Event steps (completed by ``send_event``) and sub-flow steps (whose tasks are runs of
    another workflow) have no tasks for a worker, so they need none."""
    return [
        s.step_slug
        for s in flow.steps
        if s.step_type != "event" and s.flow is None and s.step_slug not in step_functions
    ]


def stale_library(error: BaseException) -> bool:
    """Whether the server refused a call with ``extension_version_mismatch``: the session runs
    another version's library than the database's extension (a session that loaded the library
    before an upgrade keeps it). A new connection loads the installed library."""
    return isinstance(error, QuantumFlowError) and error.code == "extension_version_mismatch"


def error_message_of(error: BaseException) -> str:
    """The message a failed attempt is reported with: the exception's text, else its type."""
    text = str(error)
    return text if text else type(error).__name__


def output_refused(error: BaseException) -> bool:
    """Whether the server refused a completion's output itself: SQLSTATE class 22 (data
    exception), such as ``output_too_large`` (22001) or a ``\\u0000`` in a string, which
    ``jsonb`` cannot hold (22P05). The same output would be refused again."""
    sqlstate = getattr(error, "sqlstate", None)
    return isinstance(error, (QuantumFlowError, psycopg.Error)) and bool(
        sqlstate and sqlstate.startswith("22")
    )


def refusal_message(error: Union[QuantumFlowError, psycopg.Error]) -> str:
    """What the server said when it refused an output, on one line, with its SQLSTATE."""
    if isinstance(error, QuantumFlowError):
        return str(error)  # "<code>: <explanation> (SQLSTATE <sqlstate>)"
    text = error.diag.message_primary or type(error).__name__
    if error.diag.message_detail:
        text = f"{text}: {error.diag.message_detail}"
    return f"{text} (SQLSTATE {error.sqlstate})"


#: TCP keepalive for the worker's connections, unless the connection string sets its own:
#: a connection that died half-open (the server's host gone, a partition) is noticed after
#: about a minute instead of the system's default of two hours, so a waiting poll or an
#: answer does not hang on it and the worker reconnects.
KEEPALIVES = {
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
}


def _connect(conninfo: str) -> psycopg.Connection[Any]:
    """An autocommit connection with :data:`KEEPALIVES` for the settings ``conninfo`` leaves
    out."""
    given = conninfo_to_dict(conninfo)
    extra = {k: v for k, v in KEEPALIVES.items() if k not in given}
    return psycopg.connect(conninfo, autocommit=True, **extra)


class Worker:
    """Works the tasks of one workflow with a pool of threads.

    ``step_functions`` maps every step slug of the workflow to its function. ``concurrency``
    tasks are worked at once at most; a poll claims at most ``batch_size`` tasks and never
    more than the free slots, so no claimed task waits for a thread while its timeout runs.
    Each ``poll_tasks`` waits up to ``max_wait_ms`` for work server-side.

    ``complete_in_batches`` (default True): completions go through one answering thread that
    sends those waiting together with ``complete_tasks``, one call and one commit per batch
    (False: one ``complete_task`` each, from the task's thread).

    Use :meth:`run` (blocks until :meth:`stop`) or :meth:`start` (a background thread).
    """

    def __init__(
        self,
        conninfo: str,
        workflow_slug: str,
        step_functions: Mapping[str, StepFunction],
        *,
        batch_size: int = 10,
        max_wait_ms: int = 1000,
        concurrency: int = 4,
        worker_id: Optional[str] = None,
        retry_delay: float = 1.0,
        complete_in_batches: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if max_wait_ms < 0:
            raise ValueError("max_wait_ms must be >= 0")
        self.conninfo = conninfo
        self.workflow_slug = workflow_slug
        self.step_functions = dict(step_functions)
        self.batch_size = batch_size
        self.max_wait_ms = max_wait_ms
        self.concurrency = concurrency
        self.worker_id = worker_id or f"python-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        #: Seconds to wait before polling again after a database error.
        self.retry_delay = retry_delay
        self.complete_in_batches = complete_in_batches

        self._stopping = threading.Event()
        self._slots = threading.Condition()
        #: Tasks claimed whose step function has not returned (each has or gets a thread).
        self._running = 0
        #: Completions queued for the answering thread and not yet answered.
        self._unanswered = 0
        self._stats_lock = threading.Lock()
        self._completed = 0
        self._failed = 0
        self._ignored = 0
        self._poll_conn: Optional[psycopg.Connection[Any]] = None
        self._polling = False
        self._local = threading.local()
        self._answer_conns: List[psycopg.Connection[Any]] = []
        self._completer: Optional[_BatchCompleter] = None
        self._thread: Optional[threading.Thread] = None
        self._thread_error: Optional[BaseException] = None

    # -- public ----------------------------------------------------------------------------

    @property
    def stats(self) -> WorkerStats:
        with self._stats_lock:
            return WorkerStats(self._completed, self._failed, self._ignored)

    def run(self) -> WorkerStats:
        """Works tasks until :meth:`stop` is called, then finishes the tasks it holds.

        Raises :class:`MissingStepFunctions` before claiming anything when a step of the
        workflow has no function (and ``workflow_not_found`` for an unknown workflow), and
        ``invalid_option`` when the server refuses the worker's ``max_wait_ms`` or
        ``batch_size`` (above ``quantum_flow.max_wait_ms`` / ``max_batch_size``), once the
        tasks it holds are answered.
        """
        self._poll_conn = _connect(self.conninfo)
        completer: Optional[_BatchCompleter] = None
        try:
            missing = missing_step_functions(
                api.get_flow(self._poll_conn, self.workflow_slug), self.step_functions
            )
            if missing:
                raise MissingStepFunctions(self.workflow_slug, missing)
            if self.complete_in_batches:
                completer = _BatchCompleter(
                    self.conninfo, self.workflow_slug, self._batch_answered
                )
                self._completer = completer
            with ThreadPoolExecutor(
                max_workers=self.concurrency, thread_name_prefix="quantum_flow-task"
            ) as pool:
                self._claim_loop(pool)
            # Leaving the `with` waited for every task's function and for its answer, or for
            # its completion to be queued: close() below answers those.
        finally:
            if completer is not None:
                self._completer = None
                completer.close()
            with self._slots:
                conn, self._poll_conn = self._poll_conn, None
            conn.close()
            for c in self._answer_conns:
                c.close()
            self._answer_conns.clear()
        return self.stats

    def start(self) -> Worker:
        """Runs the worker in a background thread; :meth:`stop` ends it."""
        if self._thread is not None:
            raise RuntimeError("worker already started")

        def target() -> None:
            try:
                self.run()
            except BaseException as e:  # reported by stop()
                self._thread_error = e
                log.exception("quantum_flow worker for %r stopped", self.workflow_slug)

        self._thread = threading.Thread(
            target=target, name=f"quantum_flow-worker-{self.workflow_slug}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: Optional[float] = None) -> WorkerStats:
        """Stops claiming, lets held tasks finish, and returns the stats.

        When the worker runs in a background thread (:meth:`start`), waits up to ``timeout``
        seconds (None: as long as it takes) for it and re-raises an error it stopped with.
        Called from one of the worker's own step functions, it does not wait (the worker
        waits for that function): the worker stops once its tasks are answered.
        """
        self._stopping.set()
        with self._slots:
            self._slots.notify_all()
            waiting_poll = self._poll_conn if self._polling else None
        if waiting_poll is not None:
            _cancel(waiting_poll)
        if getattr(self._local, "in_step", False):
            return self.stats
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread_error is not None:
                raise self._thread_error
        return self.stats

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- claiming --------------------------------------------------------------------------

    def _claim_loop(self, pool: ThreadPoolExecutor) -> None:
        assert self._poll_conn is not None
        while True:
            with self._slots:
                while (
                    self._running >= self.concurrency
                    or self._unanswered >= MAX_COMPLETION_BATCH
                ) and not self._stopping.is_set():
                    self._slots.wait()
                if self._stopping.is_set():
                    return
                free = self.concurrency - self._running
                # Set under the lock stop() takes, so stop() cancels only a poll in progress.
                self._polling = True
            try:
                tasks = api.poll_tasks(
                    self._poll_conn,
                    self.workflow_slug,
                    batch_size=min(self.batch_size, free),
                    max_wait_ms=self.max_wait_ms,
                    worker_id=self.worker_id,
                )
            except (psycopg.OperationalError, QuantumFlowError) as e:
                # (a cancel stop() did not send, e.g. statement_timeout or
                # pg_cancel_backend, is a QueryCanceled: an OperationalError, retried too)
                if self._stopping.is_set():
                    return
                if isinstance(e, QuantumFlowError) and e.code == "invalid_option":
                    # The worker's own options are refused (max_wait_ms or batch_size above
                    # the server's quantum_flow.max_wait_ms / max_batch_size): no retry can
                    # succeed, so run() raises it.
                    raise
                log.warning("poll_tasks failed (%s); retrying in %.1f s", e, self.retry_delay)
                if stale_library(e):
                    with self._slots:
                        stale = self._poll_conn
                    stale.close()
                self._stopping.wait(self.retry_delay)
                self._reconnect_poll()
                continue
            finally:
                with self._slots:
                    self._polling = False
            # Tasks claimed are worked even when stop() came meanwhile: they are ours now.
            with self._slots:
                self._running += len(tasks)
            for task in tasks:
                pool.submit(self._work, task)

    def _reconnect_poll(self) -> None:
        """Opens a new poll connection if the old one is closed, trying again every
        ``retry_delay`` seconds while the server is unreachable (a restart), until stop()."""
        with self._slots:
            old = self._poll_conn
        if old is not None and not old.closed:
            return
        while not self._stopping.is_set():
            try:
                new = _connect(self.conninfo)
            except psycopg.OperationalError as e:
                log.warning("reconnecting failed (%s); retrying in %.1f s", e, self.retry_delay)
                self._stopping.wait(self.retry_delay)
                continue
            with self._slots:
                self._poll_conn = new
            return

    # -- working ---------------------------------------------------------------------------

    def _work(self, task: Task) -> None:
        try:
            function = self.step_functions.get(task.step_slug)
            try:
                if function is None:
                    raise LookupError(f"no function for step {task.step_slug!r}")
                self._local.in_step = True
                try:
                    output = function(task.input)
                finally:
                    self._local.in_step = False
            except BaseException as e:  # SystemExit or CancelledError too: a failed attempt
                permanent = isinstance(e, PermanentError)
                self._log_failure(task, "raised", permanent, e)
                self._answer(task, error=error_message_of(e), retry=not permanent)
                return
            try:
                # Checked here: the same function would return the same output again, so
                # output that is not JSON fails the task without retry.
                json.dumps(output, allow_nan=False)
            except (TypeError, ValueError) as e:
                self._log_failure(task, "returned output that is not JSON", True, e)
                self._answer(task, error=f"output is not JSON: {error_message_of(e)}", retry=False)
            except Exception as e:  # e.g. RecursionError: an ordinary failed attempt
                self._log_failure(task, "returned output that could not be serialised", False, e)
                self._answer(task, error=error_message_of(e))
            else:
                self._answer(task, output=output)
        finally:
            with self._slots:
                self._running -= 1
                self._slots.notify_all()

    def _log_failure(self, task: Task, what: str, permanent: bool, error: BaseException) -> None:
        log.error(
            "workflow %r, step %r, task %d, attempt %d (run %s): the step function %s%s",
            self.workflow_slug,
            task.step_slug,
            task.task_index,
            task.attempt,
            task.run_id,
            what,
            " (permanent: not retried)" if permanent else "",
            exc_info=error,
        )

    def _answer(
        self,
        task: Task,
        output: Any = None,
        error: Optional[str] = None,
        retry: bool = True,
        alone: bool = False,
        again: bool = False,
    ) -> None:
        """Answers the task: its completion goes to the answering thread's next batch (unless
        ``alone``, or without batches), anything else from this thread. An answer refused
        because this thread's session runs an older library than the database's extension
        (it loaded it before an upgrade), or lost with its connection (which may have died
        while idle: a server restart, ``idle_session_timeout``), is sent once more, on a new
        connection; answers carry their attempt, so a repeat of one that did arrive is
        harmless."""
        if error is None and not alone:
            completer = self._completer
            if completer is not None:
                with self._slots:
                    self._unanswered += 1
                if completer.submit(task, output):
                    return
                self._answered_in_batch()
        try:
            if error is None:
                try:
                    counted = api.complete_task(
                        self._answer_conn(),
                        task.run_id,
                        task.step_slug,
                        task.task_index,
                        output,
                        task.attempt,
                    )
                except (QuantumFlowError, psycopg.Error) as e:
                    if not output_refused(e):
                        raise
                    # The server refused the output (too large, or not storable as jsonb): it
                    # would refuse it again, so the task fails at once instead of timing out.
                    self._log_failure(task, "returned output the server refused", True, e)
                    error = f"output refused: {refusal_message(e)}"
                    retry = False
                else:
                    self._count(completed=counted, ignored=not counted)
            if error is not None:
                outcome = api.fail_task(
                    self._answer_conn(),
                    task.run_id,
                    task.step_slug,
                    task.task_index,
                    error,
                    task.attempt,
                    retry=retry,
                )
                self._count(failed=outcome != "ignored", ignored=outcome == "ignored")
        except Exception as e:
            self._drop_answer_conn()
            if (stale_library(e) or isinstance(e, psycopg.OperationalError)) and not again:
                self._answer(task, output, error, retry, alone=True, again=True)
                return
            # The task stays claimed; it becomes visible again after its step's timeout.
            log.exception(
                "could not answer task %s/%s/%d", task.run_id, task.step_slug, task.task_index
            )

    def _batch_answered(self, task: Task, output: Any, counted: Optional[bool]) -> None:
        """The answering thread's report on one completion of a batch: what
        ``complete_task`` would have said, or None when it must be completed alone (its
        batch failed), which is done here, in the answering thread."""
        try:
            if counted is None:
                self._answer(task, output, alone=True)
            else:
                self._count(completed=counted, ignored=not counted)
        finally:
            self._answered_in_batch()

    def _answered_in_batch(self) -> None:
        with self._slots:
            self._unanswered -= 1
            self._slots.notify_all()

    def _answer_conn(self) -> psycopg.Connection[Any]:
        conn: Optional[psycopg.Connection[Any]] = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = _connect(self.conninfo)
            self._local.conn = conn
            with self._slots:
                self._answer_conns.append(conn)
        return conn

    def _drop_answer_conn(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            conn.close()
            with self._slots:
                if conn in self._answer_conns:
                    self._answer_conns.remove(conn)

    def _count(self, completed: bool = False, failed: bool = False, ignored: bool = False) -> None:
        with self._stats_lock:
            self._completed += completed
            self._failed += failed
            self._ignored += ignored


#: A completion waiting for the answering thread: the task and its output.
_Pending = Tuple[Task, Any]

#: Where the answering thread reports each completion: the task, its output, and True /
#: False as ``complete_task`` says, or None: "complete it alone".
_Report = Callable[[Task, Any, Optional[bool]], None]


class _BatchCompleter:
    """The answering thread of a worker that completes in batches.

    :meth:`submit` queues a completion. The thread takes the first completion waiting
    (blocking), then every other one already waiting (not blocking, up to
    :data:`MAX_COMPLETION_BATCH`), sends them with one ``complete_tasks`` on its own
    connection, and reports each one's answer to ``report``: an idle worker's single
    completion goes at once, and under load completions batch up by themselves while the
    previous call is on its way.

    When the call fails (one output the server refuses fails the whole batch; a lost
    connection), each completion of the batch is reported None, and ``report`` completes it
    alone, so that only a bad one gets the error.
    """

    def __init__(self, conninfo: str, workflow_slug: str, report: _Report) -> None:
        self.conninfo = conninfo
        self._report = report
        self._queue: queue.Queue[Optional[_Pending]] = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False
        # Opened here, so that a worker that cannot connect fails at start.
        self._conn: Optional[psycopg.Connection[Any]] = _connect(conninfo)
        self._thread = threading.Thread(
            target=self._run, name=f"quantum_flow-answers-{workflow_slug}", daemon=True
        )
        self._thread.start()

    def submit(self, task: Task, output: Any) -> bool:
        """Queues the completion (its answer goes to ``report``); False when the thread is
        gone, and the caller must complete it alone."""
        with self._lock:
            if self._closed:
                return False
            self._queue.put((task, output))
        return True

    def close(self) -> None:
        """Ends the thread once it has answered every completion queued before."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                batch = [first]
                last = False
                while len(batch) < MAX_COMPLETION_BATCH:
                    try:
                        pending = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if pending is None:
                        last = True
                        break
                    batch.append(pending)
                self._send(batch)
                if last:
                    return
        finally:
            with self._lock:
                self._closed = True
            # Whatever is still queued (only if this thread died) is answered alone.
            while True:
                try:
                    pending = self._queue.get_nowait()
                except queue.Empty:
                    break
                if pending is not None:
                    self._report(pending[0], pending[1], None)
            if self._conn is not None:
                self._conn.close()

    def _send(self, batch: List[_Pending]) -> None:
        results: List[Optional[bool]] = [None] * len(batch)
        try:
            if self._conn is None or self._conn.closed:
                self._conn = _connect(self.conninfo)
            answered = api.complete_tasks(
                self._conn, [TaskAnswer.for_task(task, output) for task, output in batch]
            )
            if len(answered) == len(batch):
                results = list(answered)
        except Exception as e:
            # Each completion is sent again alone by its thread, which reports its own error.
            log.log(
                logging.DEBUG if output_refused(e) else logging.WARNING,
                "complete_tasks of %d completion(s) failed (%s); completing them one by one",
                len(batch),
                e,
            )
            if self._conn is not None and (
                self._conn.closed or isinstance(e, psycopg.OperationalError) or stale_library(e)
            ):
                self._conn.close()
                self._conn = None
        finally:
            for (task, output), result in zip(batch, results):
                self._report(task, output, result)


def _cancel(conn: psycopg.Connection[Any]) -> None:
    # cancel_safe (psycopg >= 3.2) does not block on a slow network; cancel is the 3.1 way.
    cancel = getattr(conn, "cancel_safe", None) or conn.cancel
    try:
        cancel()
    except Exception:  # best effort: at worst the poll runs to its max_wait_ms
        log.debug("could not cancel poll_tasks", exc_info=True)
