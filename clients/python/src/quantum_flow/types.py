"""Result types of the SQL API, as frozen dataclasses."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, List, Literal, Mapping, Optional, Union
from uuid import UUID

#: ``event``: a step with no task, completed by ``send_event``.
StepType = Literal["single", "map", "event"]
RunStatus = Literal["started", "paused", "completed", "failed"]
StepStatus = Literal["created", "started", "completed", "failed", "cancelled", "skipped"]
TaskStatus = Literal["queued", "started", "completed", "failed"]
#: What a step does when its input does not meet its ``if_matches`` / ``if_not_matches``:
#: it is skipped, it and every step below it are skipped, or the run fails.
WhenUnmet = Literal["skip", "skip_cascade", "fail"]
#: What ``fail_task`` returns: the task's status after the call.
FailOutcome = Literal["queued", "failed", "ignored"]
#: The formats ``flow_graph`` draws: Mermaid ``flowchart`` or Graphviz DOT.
GraphFormat = Literal["mermaid", "dot"]


@dataclass(frozen=True)
class Workflow:
    """A row of ``quantum_flow.workflows``."""

    workflow_slug: str
    max_attempts: int
    timeout: int
    base_delay: int
    created_at: datetime
    description: Optional[str] = None
    #: Seconds a run may take before it fails with ``run_timeout`` (None: no limit).
    run_timeout: Optional[int] = None
    #: A top-level key of the flow input: at most ``max_concurrency`` tasks of runs with the
    #: same value of it are queued or claimed at once (None: no limit).
    concurrency_key: Optional[str] = None
    max_concurrency: Optional[int] = None


@dataclass(frozen=True)
class Step:
    """A row of ``quantum_flow.workflow_steps`` (NULL retry options inherit the workflow's)."""

    workflow_slug: str
    step_slug: str
    step_type: StepType
    step_index: int
    deps_count: int
    initial_tasks: Optional[int]
    max_attempts: Optional[int]
    timeout: Optional[int]
    base_delay: Optional[int]
    description: Optional[str] = None
    #: JSON the step's input must contain (``@>``) when it becomes ready (None: no condition).
    if_matches: Any = None
    #: JSON the step's input must not contain (None: no condition).
    if_not_matches: Any = None
    when_unmet: WhenUnmet = "skip"
    #: Seconds between the step becoming ready and its tasks becoming visible.
    start_delay: Optional[int] = None
    #: A sub-flow step: each of its tasks is a run of this workflow.
    flow: Optional[str] = None


@dataclass(frozen=True)
class FlowStep:
    """A step as ``get_flow`` describes it (``if_matches`` / ``if_not_matches`` are its ``if``
    and ``if_not``)."""

    step_slug: str
    step_type: StepType
    step_index: int
    depends_on: List[str]
    initial_tasks: Optional[int]
    max_attempts: Optional[int]
    timeout: Optional[int]
    base_delay: Optional[int]
    description: Optional[str] = None
    if_matches: Any = None
    if_not_matches: Any = None
    when_unmet: WhenUnmet = "skip"
    start_delay: Optional[int] = None
    flow: Optional[str] = None


@dataclass(frozen=True)
class FlowDefinition:
    """A workflow with its steps in order of addition (``get_flow``, ``define_flow``)."""

    workflow_slug: str
    max_attempts: int
    timeout: int
    base_delay: int
    created_at: datetime
    steps: List[FlowStep] = field(default_factory=list)
    description: Optional[str] = None
    run_timeout: Optional[int] = None
    concurrency_key: Optional[str] = None
    max_concurrency: Optional[int] = None

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> FlowDefinition:
        return cls(
            workflow_slug=doc["workflow_slug"],
            max_attempts=doc["max_attempts"],
            timeout=doc["timeout"],
            base_delay=doc["base_delay"],
            created_at=parse_timestamp(doc["created_at"]),
            steps=[
                FlowStep(
                    step_slug=s["step_slug"],
                    step_type=s["step_type"],
                    step_index=s["step_index"],
                    depends_on=list(s["depends_on"]),
                    initial_tasks=s.get("initial_tasks"),
                    max_attempts=s.get("max_attempts"),
                    timeout=s.get("timeout"),
                    base_delay=s.get("base_delay"),
                    description=s.get("description"),
                    if_matches=s.get("if"),
                    if_not_matches=s.get("if_not"),
                    when_unmet=s.get("when_unmet") or "skip",
                    start_delay=s.get("start_delay"),
                    flow=s.get("flow"),
                )
                for s in doc["steps"]
            ],
            description=doc.get("description"),
            run_timeout=doc.get("run_timeout"),
            concurrency_key=doc.get("concurrency_key"),
            max_concurrency=doc.get("max_concurrency"),
        )


@dataclass(frozen=True)
class FlowProblem:
    """One problem of a flow document, as ``validate_flow`` reports it (an error or a
    warning)."""

    #: Where it is, as a JSONPath: ``"$.steps[2].depends_on[0]"`` (``"$"``: the document).
    path: str
    #: A code of the error table (``"unknown_key"``, ``"cycle"``, ...).
    code: str
    #: What is wrong, naming the values.
    message: str
    #: How to fix it, where the server has an idea (``'did you mean "depends_on"?'``).
    hint: Optional[str] = None

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> FlowProblem:
        return cls(path=doc["path"], code=doc["code"], message=doc["message"], hint=doc.get("hint"))


@dataclass(frozen=True)
class FlowValidation:
    """What ``validate_flow`` says of a flow document.

    ``valid`` is True when ``errors`` is empty: ``define_flow`` would accept the document.
    ``errors`` lists every problem, in document order; ``warnings`` things worth knowing that
    do not stop ``define_flow`` (the workflow already exists exactly so, for instance).
    """

    valid: bool
    errors: List[FlowProblem] = field(default_factory=list)
    warnings: List[FlowProblem] = field(default_factory=list)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> FlowValidation:
        return cls(
            valid=bool(doc["valid"]),
            errors=[FlowProblem.from_json(p) for p in doc["errors"]],
            warnings=[FlowProblem.from_json(p) for p in doc.get("warnings") or []],
        )


@dataclass(frozen=True)
class Task:
    """A claimed task (a row of ``poll_tasks``)."""

    run_id: UUID
    step_slug: str
    task_index: int
    attempt: int
    input: Any


@dataclass(frozen=True)
class TaskAnswer:
    """One element of ``complete_tasks``: complete task ``task_index`` of step ``step_slug``
    of run ``run_id`` with ``output`` (any JSON value; ``None`` is JSON null)."""

    #: A UUID, or its text form.
    run_id: Union[UUID, str]
    step_slug: str
    task_index: int
    output: Any
    #: The attempt ``poll_tasks`` returned (None: no check, any attempt counts).
    attempt: Optional[int] = None

    @classmethod
    def for_task(cls, task: Task, output: Any) -> TaskAnswer:
        """The answer for ``task``'s attempt (``task.attempt`` is passed back)."""
        return cls(task.run_id, task.step_slug, task.task_index, output, task.attempt)


@dataclass(frozen=True)
class TaskState:
    """A task of a run's step, as ``get_run(..., include_tasks=True)`` reports it."""

    task_index: int
    status: TaskStatus
    #: Attempts made so far, the current one included once claimed (counted since the last
    #: ``retry_run``).
    attempts: int
    #: The last failed attempt's error (kept while the task is retried).
    error_message: Optional[str]
    #: The worker that holds or last held it (``poll_tasks(worker_id=...)``).
    worker_id: Optional[str]
    #: When a claimed (``started``) task's claim runs out and it is handed to another poller.
    claim_deadline: Optional[datetime]
    #: When a ``queued`` task waiting for its retry backoff becomes visible again.
    next_retry_at: Optional[datetime]

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> TaskState:
        return cls(
            task_index=doc["task_index"],
            status=doc["status"],
            attempts=doc["attempts"],
            error_message=doc.get("error_message"),
            worker_id=doc.get("worker_id"),
            claim_deadline=_optional_timestamp(doc.get("claim_deadline")),
            next_retry_at=_optional_timestamp(doc.get("next_retry_at")),
        )


@dataclass(frozen=True)
class StepState:
    """A step of a run, as ``get_run`` reports it."""

    step_slug: str
    status: StepStatus
    tasks_total: Optional[int]
    tasks_completed: int
    output: Any
    error_message: Optional[str]
    #: A sub-flow step's child runs, in task order (None for other steps).
    child_run_ids: Optional[List[UUID]] = None
    #: The step's tasks in index order, with ``get_run(..., include_tasks=True)`` (else None;
    #: ``[]`` for a step without tasks yet).
    tasks: Optional[List[TaskState]] = None
    #: The output was left out of the document (which would not fit in one ``jsonb``):
    #: ``output`` is None although the step has one.
    output_omitted: bool = False


@dataclass(frozen=True)
class Run:
    """A run's state (``get_run``)."""

    run_id: UUID
    workflow_slug: str
    status: RunStatus
    input: Any
    output: Any
    error_message: Optional[str]
    started_at: Optional[datetime]
    completed_at: Optional[datetime]
    failed_at: Optional[datetime]
    steps: List[StepState] = field(default_factory=list)
    #: The run whose sub-flow step started this run (None for a run started by ``start_flow``).
    parent_run_id: Optional[UUID] = None
    #: When its first tasks become visible, for a scheduled run (``start_flow(start_at=...)``).
    start_at: Optional[datetime] = None
    #: When it fails with ``run_timeout``, when its workflow has a ``run_timeout``.
    deadline: Optional[datetime] = None
    #: The run's output was left out of the document too (see ``StepState.output_omitted``).
    output_omitted: bool = False

    def step(self, step_slug: str) -> StepState:
        """The state of step ``step_slug`` (KeyError if the run has no such step)."""
        for s in self.steps:
            if s.step_slug == step_slug:
                return s
        raise KeyError(step_slug)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Run:
        return cls(
            run_id=UUID(doc["run_id"]),
            workflow_slug=doc["workflow_slug"],
            status=doc["status"],
            input=doc.get("input"),
            output=doc.get("output"),
            error_message=doc.get("error_message"),
            started_at=_optional_timestamp(doc.get("started_at")),
            completed_at=_optional_timestamp(doc.get("completed_at")),
            failed_at=_optional_timestamp(doc.get("failed_at")),
            steps=[
                StepState(
                    step_slug=s["step_slug"],
                    status=s["status"],
                    tasks_total=s.get("tasks_total"),
                    tasks_completed=s["tasks_completed"],
                    output=s.get("output"),
                    error_message=s.get("error_message"),
                    child_run_ids=_optional_uuids(s.get("child_run_ids")),
                    tasks=None
                    if s.get("tasks") is None
                    else [TaskState.from_json(t) for t in s["tasks"]],
                    output_omitted=s.get("output_omitted", False),
                )
                for s in doc["steps"]
            ],
            parent_run_id=_optional_uuid(doc.get("parent_run_id")),
            start_at=_optional_timestamp(doc.get("start_at")),
            deadline=_optional_timestamp(doc.get("deadline")),
            output_omitted=doc.get("output_omitted", False),
        )


@dataclass(frozen=True)
class RunEvent:
    """A status change, as ``NOTIFY quantum_flow_events`` sends it after its commit: of the
    run itself (``step_slug`` None) or of one of its steps."""

    run_id: UUID
    workflow_slug: str
    #: The step whose status changed; None for the run's own status.
    step_slug: Optional[str]
    #: The new status: a run's (``started``, ``paused``, ``completed``, ``failed``) or a
    #: step's (``started``, ``completed``, ``failed``, ``skipped``).
    status: str

    @property
    def ends_run(self) -> bool:
        """Whether this is the run's own ``completed`` or ``failed``."""
        return self.step_slug is None and self.status in ("completed", "failed")

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> RunEvent:
        return cls(
            run_id=UUID(doc["run_id"]),
            workflow_slug=doc["workflow_slug"],
            step_slug=doc.get("step_slug"),
            status=doc["status"],
        )


@dataclass(frozen=True)
class RunSummary:
    """A row of the view ``quantum_flow.run_list``: a run's status, progress and times."""

    run_id: UUID
    workflow_slug: str
    status: RunStatus
    parent_run_id: Optional[UUID]
    started_at: datetime
    start_at: Optional[datetime]
    deadline: Optional[datetime]
    completed_at: Optional[datetime]
    failed_at: Optional[datetime]
    #: From its start to its end, or to now for a run not ended.
    duration: timedelta
    error_message: Optional[str]
    steps_total: int
    #: Steps completed or skipped.
    steps_done: int
    steps_started: int
    tasks_total: int
    tasks_completed: int


@dataclass(frozen=True)
class WorkflowStats:
    """A row of the view ``quantum_flow.workflow_stats``: a workflow's runs and tasks."""

    workflow_slug: str
    runs_started: int
    runs_paused: int
    runs_completed: int
    runs_failed: int
    #: Tasks of live (started or paused) runs that are queued / claimed.
    tasks_queued: int
    tasks_started: int
    #: Tasks failed for good, in the failed runs kept.
    tasks_failed: int
    #: Seconds since the oldest queued task of a live run became ready (None: none queued).
    oldest_queued_seconds: Optional[float]
    #: Tasks completed in the last minute.
    completed_last_minute: int


@dataclass(frozen=True)
class WorkerStats:
    """What a :class:`~quantum_flow.Worker` did."""

    completed: int = 0
    failed: int = 0
    #: Answers the server did not count (a late answer for an attempt that was handed on).
    ignored: int = 0


# PostgreSQL writes timestamps in JSON as ISO 8601 with 0 to 6 fractional digits;
# datetime.fromisoformat before Python 3.11 accepts only 3 or 6.
_FRACTION = re.compile(r"\.(\d{1,6})")


def parse_timestamp(value: str) -> datetime:
    """A JSON timestamp of the server as an aware datetime."""
    value = _FRACTION.sub(lambda m: "." + m.group(1).ljust(6, "0"), value, count=1)
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    return datetime.fromisoformat(value)


def _optional_timestamp(value: Optional[str]) -> Optional[datetime]:
    return None if value is None else parse_timestamp(value)


def _optional_uuid(value: Optional[str]) -> Optional[UUID]:
    return None if value is None else UUID(value)


def _optional_uuids(values: Optional[List[str]]) -> Optional[List[UUID]]:
    return None if values is None else [UUID(v) for v in values]
