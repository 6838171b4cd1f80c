"""``execute_dynamic``: start a run of a workflow and work it to the end in this process."""

from __future__ import annotations

import logging
import time
from typing import Any, Mapping, Optional

import psycopg

from . import api
from .api import RunId
from .errors import MissingStepFunctions, RunFailed, RunTimeout
from .worker import StepFunction, Worker, missing_step_functions

log = logging.getLogger("quantum_flow.execute")

#: Longest single wait_run, in seconds: how soon a worker that stopped is noticed.
_WAIT_SLICE = 1.0


def execute_dynamic(
    conninfo: str,
    workflow_slug: str,
    input: Any,
    step_functions: Mapping[str, StepFunction],
    *,
    timeout: float = 300.0,
    poll_wait_ms: int = 200,
    concurrency: int = 4,
    run_id: Optional[RunId] = None,
    shutdown_grace: float = 10.0,
) -> Any:
    """Runs workflow ``workflow_slug`` with ``input`` to the end and returns the run's output
    (``{"<leaf step>": <output>, ...}``).

    Before starting anything it raises ``QuantumFlowError('workflow_not_found')`` when the
    workflow does not exist and :class:`MissingStepFunctions` naming every step that has no
    function. Then it starts the run, works it with a :class:`Worker` (``poll_wait_ms`` is
    the worker's ``poll_tasks`` wait) and waits for its end with ``wait_run``, which the
    commit that ends the run wakes (no polling of ``get_run``). Raises
    :class:`RunFailed` with the run's error message (which says where it failed: ``"step a,
    task 0, attempt 1: ..."``) when the run fails and :class:`RunTimeout` (a
    ``TimeoutError``) when it has not ended after ``timeout`` seconds; the run is then left
    ``started`` (or ``paused``) for other workers. A run paused meanwhile (``pause_run``) is
    still running: this waits for it to be resumed and end. The worker also works tasks of
    other runs of the workflow that it claims meanwhile.

    ``run_id`` chooses the run's id (``run_exists`` if taken). When the run has ended (or
    timed out), functions still running get ``shutdown_grace`` seconds before this returns;
    they keep running in the background after that and their answers still count.
    """
    with psycopg.connect(conninfo, autocommit=True) as control:
        flow = api.get_flow(control, workflow_slug)
        missing = missing_step_functions(flow, step_functions)
        if missing:
            raise MissingStepFunctions(workflow_slug, missing)

        worker = Worker(
            conninfo,
            workflow_slug,
            step_functions,
            batch_size=max(concurrency, 1),
            max_wait_ms=poll_wait_ms,
            concurrency=concurrency,
        )
        run_id = api.start_flow(control, workflow_slug, input, run_id)
        deadline = time.monotonic() + timeout
        worker.start()
        try:
            remaining = timeout
            while True:
                # wait_run returns as soon as the commit that ends the run happens; the wait
                # is cut into slices so that a worker that died is noticed within one.
                wait_ms = int(min(max(remaining, 0.0), _WAIT_SLICE) * 1000)
                run = api.wait_run(control, run_id, max_wait_ms=wait_ms)
                if run.status == "completed":
                    return run.output
                if run.status == "failed":
                    raise RunFailed(run_id, run.error_message or "")
                # "started" or "paused": not ended yet.
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RunTimeout(run_id, timeout)
                if not worker.running:
                    # The worker stopped on its own: stop() re-raises why.
                    worker.stop(timeout=shutdown_grace)
                    raise RuntimeError("the worker stopped unexpectedly")
        finally:
            try:
                worker.stop(timeout=shutdown_grace)
            except Exception:
                # The run's outcome is known; a worker error while draining does not change it.
                log.exception("quantum_flow worker for %r stopped with an error", workflow_slug)
