"""Errors raised by the client.

Every error the extension raises has a message ``"<code>: <explanation>"`` and a stable
SQLSTATE. :func:`translate_errors` turns such psycopg errors into :class:`QuantumFlowError`;
every other database error passes through unchanged.
"""

from __future__ import annotations

import contextlib
import json
from typing import Iterator, List, Optional, Sequence
from uuid import UUID

import psycopg

from .types import FlowProblem

#: Every code word the extension raises, with its documented SQLSTATE (the main README's
#: error table, in its order).
ERROR_CODES: dict[str, str] = {
    "invalid_workflow_slug": "22023",
    "invalid_step_slug": "22023",
    "workflow_not_found": "P0002",
    "workflow_exists": "23505",
    "step_exists": "23505",
    "invalid_step_type": "22023",
    "dependency_not_found": "23503",
    "self_dependency": "23514",
    "duplicate_dependency": "23505",
    "map_step_too_many_dependencies": "23514",
    "invalid_option": "22023",
    "workflow_has_active_runs": "55006",
    "run_exists": "23505",
    "run_not_found": "P0002",
    "task_not_found": "P0002",
    "invalid_map_input": "22023",
    "null_argument": "22004",
    "workflow_has_no_steps": "55000",
    "output_too_large": "22001",
    "invalid_document": "22023",
    "unknown_key": "22023",
    "missing_key": "22023",
    "duplicate_step": "23505",
    "cycle": "23514",
    "limit_exceeded": "54000",
    "extension_version_mismatch": "55000",
    "step_not_found": "P0002",
    "not_an_event_step": "42809",
    "internal_error": "XX000",
}

#: How the DETAIL of an error about a flow document (``define_flow``) starts; the JSON array
#: of every problem of the document follows.
DOCUMENT_PROBLEMS_PREFIX = "every problem of the document: "


class QuantumFlowError(Exception):
    """The extension refused a call.

    ``code`` is the code word (``"workflow_not_found"``), ``sqlstate`` the five-character
    SQLSTATE (``"P0002"``) and ``message`` the server's whole message
    (``"workflow_not_found: ..."``).
    """

    def __init__(self, code: str, sqlstate: Optional[str], message: str) -> None:
        super().__init__(code, sqlstate, message)
        self.code = code
        self.sqlstate = sqlstate
        self.message = message

    def __str__(self) -> str:
        return f"{self.message} (SQLSTATE {self.sqlstate})"


class MissingStepFunctions(ValueError):
    """Steps of a workflow that have no function, named in step order."""

    def __init__(self, workflow_slug: str, steps: Sequence[str]) -> None:
        self.workflow_slug = workflow_slug
        self.steps = list(steps)
        super().__init__(
            f"workflow {workflow_slug!r} has no function for step(s): {', '.join(self.steps)}"
        )


class InvalidFlowDocument(QuantumFlowError, ValueError):
    """The server refused a flow document (``define_flow``, ``define_from_json``).

    ``code``, ``sqlstate`` and ``message`` are those of the document's first problem (the
    message is ``"<code>: <path>: <explanation> (<hint>)"``); ``problems`` lists every problem
    of the document, as :func:`~quantum_flow.validate_flow` reports them, from the error's
    DETAIL.
    """

    def __init__(
        self,
        code: str,
        sqlstate: Optional[str],
        message: str,
        problems: Sequence[FlowProblem] = (),
    ) -> None:
        super().__init__(code, sqlstate, message)
        self.problems: List[FlowProblem] = list(problems)
        self.args = (code, sqlstate, message, self.problems)


class PermanentError(Exception):
    """Raised by a step function (directly, or as a subclass) for an error that another
    attempt cannot fix (invalid input, a bug): the :class:`~quantum_flow.Worker` fails the
    task at once with ``fail_task(..., retry=False)``, whatever attempts are left, and the
    run fails with the exception's text as the error message."""


class RunFailed(Exception):
    """:func:`execute_dynamic`: the run failed; ``message`` is the run's error message, which
    says where it failed (``"step a, task 0, attempt 1: ..."``)."""

    def __init__(self, run_id: UUID, message: str) -> None:
        super().__init__(run_id, message)
        self.run_id = run_id
        self.message = message

    def __str__(self) -> str:
        return f"run {self.run_id} failed: {self.message}"


class RunTimeout(TimeoutError):
    """:func:`execute_dynamic`: the run did not end in time (it is left ``started``, or
    ``paused``)."""

    def __init__(self, run_id: UUID, timeout: float) -> None:
        super().__init__(run_id, timeout)
        self.run_id = run_id
        self.timeout = timeout

    def __str__(self) -> str:
        return f"run {self.run_id} did not end within {self.timeout:g} s"


def error_code(message: str) -> Optional[str]:
    """The known code word a message starts with (``"<code>: ..."``), else None."""
    word, colon, _ = message.partition(":")
    if colon and word in ERROR_CODES:
        return word
    return None


def document_problems(detail: Optional[str]) -> Optional[List[FlowProblem]]:
    """The problems an error's DETAIL lists (``"every problem of the document: [...]"``), or
    None when the DETAIL is not such a list."""
    if not detail or not detail.startswith(DOCUMENT_PROBLEMS_PREFIX):
        return None
    try:
        problems = json.loads(detail[len(DOCUMENT_PROBLEMS_PREFIX) :])
        return [FlowProblem.from_json(p) for p in problems]
    except (ValueError, TypeError, KeyError):
        return None


def from_psycopg(error: psycopg.Error) -> Optional[QuantumFlowError]:
    """The :class:`QuantumFlowError` a psycopg error stands for, if it is one of ours (an
    :class:`InvalidFlowDocument` when it lists the problems of a flow document)."""
    message = error.diag.message_primary
    if not message:
        return None
    code = error_code(message)
    if code is None:
        return None
    problems = document_problems(error.diag.message_detail)
    if problems is not None:
        return InvalidFlowDocument(code, error.sqlstate, message, problems)
    return QuantumFlowError(code, error.sqlstate, message)


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    """Re-raises the extension's errors as :class:`QuantumFlowError` (chained)."""
    try:
        yield
    except psycopg.Error as e:
        qf = from_psycopg(e)
        if qf is None:
            raise
        raise qf from e
