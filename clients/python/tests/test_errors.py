"""Every error code of the extension reaches Python as a QuantumFlowError with its code, its
SQLSTATE and the server's message; other database errors pass through unchanged."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Dict
from uuid import UUID

import psycopg
import pytest

import quantum_flow as qf
from quantum_flow.errors import error_code

RUN = UUID("00000000-0000-0000-0000-0000000000e1")
UNKNOWN_RUN = UUID("00000000-0000-0000-0000-0000000000ff")
# Values the type hints forbid, to see what the server says.
NOT_A_STEP_TYPE: Any = "parallel"
NULL: Any = None
MAIN_README = Path(__file__).resolve().parents[3] / "README.md"
# Codes no test can provoke on purpose: a bug report, and a library newer than the database's
# extension (the e2e and upgrade tiers provoke that one).
NOT_PROVOKED = {"internal_error", "extension_version_mismatch"}


@pytest.fixture(scope="module")
def setup(conninfo: str) -> None:
    """errs: a -> b; map step m over a; a started run RUN; an empty workflow."""
    with psycopg.connect(conninfo, autocommit=True) as c:
        qf.create_flow(c, "errs")
        qf.add_step(c, "errs", "a")
        qf.add_step(c, "errs", "b", ["a"])
        qf.add_step(c, "errs", "m", ["a"], step_type="map")
        qf.create_flow(c, "rootmap")
        qf.add_step(c, "rootmap", "each", step_type="map")
        qf.create_flow(c, "empty")
        qf.start_flow(c, "errs", {"x": 1}, run_id=RUN)


Call = Callable[[psycopg.Connection[Any]], Any]


def with_setting(name: str, value: str, call: Call) -> Call:
    """``call`` in a transaction where setting ``name`` is ``value``."""

    def run(c: psycopg.Connection[Any]) -> Any:
        with c.transaction():
            c.execute("SELECT set_config(%s, %s, true)", [name, value])
            return call(c)

    return run


CASES: list[tuple[str, str, str, Call]] = [
    # (case, code, message start, call)
    (
        "bad workflow slug",
        "invalid_workflow_slug",
        'invalid_workflow_slug: workflow slug "9lives" must match',
        lambda c: qf.create_flow(c, "9lives"),
    ),
    (
        "workflow slug too long",
        "invalid_workflow_slug",
        "invalid_workflow_slug: ",
        lambda c: qf.create_flow(c, "w" * 45),
    ),
    (
        "bad step slug",
        "invalid_step_slug",
        "invalid_step_slug: ",
        lambda c: qf.add_step(c, "empty", "has-dash"),
    ),
    (
        "reserved step slug",
        "invalid_step_slug",
        "invalid_step_slug: ",
        lambda c: qf.add_step(c, "empty", "run"),
    ),
    (
        "bad step type",
        "invalid_step_type",
        "invalid_step_type: ",
        lambda c: qf.add_step(c, "empty", "s", step_type=NOT_A_STEP_TYPE),
    ),
    (
        "max_attempts 0",
        "invalid_option",
        "invalid_option: ",
        lambda c: qf.create_flow(c, "opts", max_attempts=0),
    ),
    (
        "initial_tasks on a single step",
        "invalid_option",
        "invalid_option: ",
        lambda c: qf.add_step(c, "empty", "s", initial_tasks=3),
    ),
    (
        "root map over an object",
        "invalid_map_input",
        "invalid_map_input: ",
        lambda c: qf.start_flow(c, "rootmap", {"not": "an array"}),
    ),
    (
        "NULL slug",
        "null_argument",
        "null_argument: workflow_slug must not be NULL",
        lambda c: qf.get_flow(c, NULL),
    ),
    (
        "unknown workflow",
        "workflow_not_found",
        "workflow_not_found: ",
        lambda c: qf.get_flow(c, "nope"),
    ),
    (
        "start unknown workflow",
        "workflow_not_found",
        "workflow_not_found: ",
        lambda c: qf.start_flow(c, "nope"),
    ),
    ("unknown run", "run_not_found", "run_not_found: ", lambda c: qf.get_run(c, UNKNOWN_RUN)),
    (
        "complete in unknown run",
        "run_not_found",
        "run_not_found: ",
        lambda c: qf.complete_task(c, UNKNOWN_RUN, "a", 0, 1),
    ),
    (
        "unknown task",
        "task_not_found",
        "task_not_found: ",
        lambda c: qf.complete_task(c, RUN, "a", 7, 1),
    ),
    (
        "fail unknown task",
        "task_not_found",
        "task_not_found: ",
        lambda c: qf.fail_task(c, RUN, "nostep", 0, "x"),
    ),
    (
        "other options",
        "workflow_exists",
        "workflow_exists: ",
        lambda c: qf.create_flow(c, "errs", max_attempts=9),
    ),
    (
        "same slug other case",
        "workflow_exists",
        "workflow_exists: ",
        lambda c: qf.create_flow(c, "ERRS"),
    ),
    (
        "other step definition",
        "step_exists",
        "step_exists: ",
        lambda c: qf.add_step(c, "errs", "b"),
    ),
    (
        "run id taken",
        "run_exists",
        "run_exists: ",
        lambda c: qf.start_flow(c, "errs", {}, run_id=RUN),
    ),
    (
        "duplicate dependency",
        "duplicate_dependency",
        "duplicate_dependency: ",
        lambda c: qf.add_step(c, "empty", "s", ["x", "x"]),
    ),
    (
        "unknown dependency",
        "dependency_not_found",
        "dependency_not_found: ",
        lambda c: qf.add_step(c, "empty", "s", ["ghost"]),
    ),
    (
        "self dependency",
        "self_dependency",
        "self_dependency: ",
        lambda c: qf.add_step(c, "empty", "s", ["s"]),
    ),
    (
        "map with two deps",
        "map_step_too_many_dependencies",
        "map_step_too_many_dependencies: ",
        lambda c: qf.add_step(c, "errs", "m2", ["a", "b"], step_type="map"),
    ),
    (
        "add step during a run",
        "workflow_has_active_runs",
        "workflow_has_active_runs: ",
        lambda c: qf.add_step(c, "errs", "late", ["b"]),
    ),
    (
        "delete during a run",
        "workflow_has_active_runs",
        "workflow_has_active_runs: ",
        lambda c: qf.delete_flow(c, "errs"),
    ),
    (
        "start a workflow without steps",
        "workflow_has_no_steps",
        "workflow_has_no_steps: ",
        lambda c: qf.start_flow(c, "empty"),
    ),
    (
        "output over max_output_bytes",
        "output_too_large",
        "output_too_large: ",
        with_setting(
            "quantum_flow.max_output_bytes",
            "10",
            lambda c: qf.complete_task(c, RUN, "a", 0, {"too": "large for ten bytes"}),
        ),
    ),
    (
        "document not an object",
        "invalid_document",
        "invalid_document: $: ",
        lambda c: qf.define_flow(c, []),
    ),
    (
        "document with a misspelt key",
        "unknown_key",
        'unknown_key: $.steps[0].depend_on: a step has no key "depend_on"',
        lambda c: qf.define_flow(
            c, {"workflow_slug": "d", "steps": [{"slug": "a", "depend_on": []}]}
        ),
    ),
    (
        "document without steps",
        "missing_key",
        "missing_key: $: ",
        lambda c: qf.define_flow(c, {"workflow_slug": "d"}),
    ),
    (
        "document with a step twice",
        "duplicate_step",
        "duplicate_step: $.steps[1].slug: ",
        lambda c: qf.define_flow(
            c, {"workflow_slug": "d", "steps": [{"slug": "a"}, {"slug": "a"}]}
        ),
    ),
    (
        "document with a cycle",
        "cycle",
        "cycle: $.steps[0].depends_on: ",
        lambda c: qf.define_flow(
            c,
            {
                "workflow_slug": "d",
                "steps": [{"slug": "a", "depends_on": ["b"]}, {"slug": "b", "depends_on": ["a"]}],
            },
        ),
    ),
    (
        "event for a step the workflow does not have",
        "step_not_found",
        'step_not_found: workflow "errs" has no step "mm" (did you mean "m"?)',
        lambda c: qf.send_event(c, RUN, "mm"),
    ),
    (
        "event for a step that is not an event step",
        "not_an_event_step",
        'not_an_event_step: step "b" of workflow "errs" is a single step; only event steps',
        lambda c: qf.send_event(c, RUN, "b", {"x": 1}),
    ),
    (
        "event for an unknown run",
        "run_not_found",
        "run_not_found: ",
        lambda c: qf.send_event(c, UNKNOWN_RUN, "a"),
    ),
    (
        "more steps than max_steps",
        "limit_exceeded",
        "limit_exceeded: $.steps: ",
        with_setting(
            "quantum_flow.max_steps",
            "1",
            lambda c: qf.define_flow(
                c, {"workflow_slug": "d", "steps": [{"slug": "a"}, {"slug": "b"}]}
            ),
        ),
    ),
]


@pytest.mark.parametrize(
    "code,message_start,call", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_error_code_and_sqlstate(
    setup: None, conn: psycopg.Connection[Any], code: str, message_start: str, call: Call
) -> None:
    with pytest.raises(qf.QuantumFlowError) as info:
        call(conn)
    e = info.value
    assert e.code == code
    assert e.sqlstate == qf.ERROR_CODES[code]
    assert e.message.startswith(message_start), e.message
    assert isinstance(e.__cause__, psycopg.Error)
    assert e.__cause__.sqlstate == e.sqlstate
    assert str(e) == f"{e.message} (SQLSTATE {e.sqlstate})"


def test_every_server_code_is_covered() -> None:
    tested = {c[1] for c in CASES}
    assert tested == set(qf.ERROR_CODES) - NOT_PROVOKED


def readme_error_table() -> Dict[str, str]:
    """The main README's table of error codes (the unit tier checks it against the server's
    code)."""
    text = MAIN_README.read_text(encoding="utf-8")
    section = text.split("\n## Error codes\n", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^\| `([a-z_]+)` \| ([0-9A-Z]{5}) \|", section, flags=re.M))


def test_error_codes_are_the_servers() -> None:
    table = readme_error_table()
    assert len(table) >= 27
    assert qf.ERROR_CODES == table
    assert list(qf.ERROR_CODES) == list(table)  # in the README's order


def test_nothing_is_written_by_a_refused_call(setup: None, conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(qf.QuantumFlowError):
        qf.add_step(conn, "empty", "s", ["ghost"])
    assert qf.get_flow(conn, "empty").steps == []
    assert [w.workflow_slug for w in qf.list_flows(conn)] == ["empty", "errs", "rootmap"]
    assert qf.get_run(conn, RUN).step("a").status == "started"


def test_other_database_errors_pass_through(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        qf.get_run(conn, "not-a-uuid")
    with pytest.raises(psycopg.errors.UndefinedTable):
        conn.execute("SELECT * FROM no_such_table")


def test_the_connection_is_usable_after_an_error_in_a_transaction(conninfo: str) -> None:
    with psycopg.connect(conninfo) as c:  # not autocommit
        with pytest.raises(qf.QuantumFlowError):
            with c.transaction():
                qf.get_flow(c, "nope")
        assert qf.is_valid_slug(c, "fine") is True


@pytest.mark.parametrize(
    "message,code",
    [
        ('workflow_not_found: workflow "x" does not exist', "workflow_not_found"),
        ("null_argument: slug must not be NULL", "null_argument"),
        ('invalid input syntax for type uuid: "x"', None),
        ("some_other_word: not ours", None),
        ("workflow_not_found", None),
        ("", None),
    ],
)
def test_error_code_parsing(message: str, code: str) -> None:
    assert error_code(message) == code
