"""The shared suite of flow documents (tests/documents): every case reaches, through this
client, the verdict recorded in tests/documents/verdicts.json, as it does through SQL and the
Rust client; and every case is checked against the JSON Schema docs/flow.schema.json.

* validate_flow: ``valid``, and each error's path and code, in order, exactly as recorded
  (for the case as JSON text and as a parsed value);
* define_from_json: an invalid case raises its first error's code (with every error in
  ``problems``) and writes nothing; a valid case defines its workflow, whose export is valid
  and defines it again unchanged;
* the schema (jsonschema's Draft202012Validator): every valid case validates; every invalid
  case with a mistake a schema can express does not, and one whose mistakes a schema cannot
  express does; the schema is valid draft 2020-12 and equals flow_schema().
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import psycopg
import pytest
from jsonschema import Draft202012Validator

import quantum_flow as qf

REPO = Path(__file__).resolve().parents[3]
DOCUMENTS = REPO / "tests" / "documents"
CASES = sorted(p.stem for p in (DOCUMENTS / "cases").glob("*.json"))
VERDICTS: Dict[str, Any] = json.loads((DOCUMENTS / "verdicts.json").read_text(encoding="utf-8"))
SCHEMA: Dict[str, Any] = json.loads((REPO / "docs" / "flow.schema.json").read_text("utf-8"))
VALIDATOR = Draft202012Validator(SCHEMA)

#: Codes of mistakes that need the whole document, or the database, to be seen: a JSON Schema
#: cannot express them.
SCHEMA_CANNOT_EXPRESS = {
    "cycle",
    "dependency_not_found",
    "duplicate_step",
    "self_dependency",
    "workflow_exists",
}
#: create_flow's defaults, which export_flow writes out.
FLOW_DEFAULTS = {"max_attempts": 3, "timeout": 30, "base_delay": 1}
STEP_OPTIONS = ("initial_tasks", "max_attempts", "timeout", "base_delay", "description")


def case_text(case: str) -> str:
    return (DOCUMENTS / "cases" / f"{case}.json").read_text(encoding="utf-8")


def recorded(case: str) -> Tuple[bool, List[Tuple[str, str]]]:
    verdict = VERDICTS[case]
    return verdict["valid"], [(e["path"], e["code"]) for e in verdict["errors"]]


def found(validation: qf.FlowValidation) -> Tuple[bool, List[Tuple[str, str]]]:
    return validation.valid, [(e.path, e.code) for e in validation.errors]


def nothing_written_state(conn: psycopg.Connection[Any]) -> Any:
    """Everything a definition writes: workflows, steps, dependencies, queues."""
    return conn.execute(
        "SELECT (SELECT count(*) FROM quantum_flow.workflows),"
        " (SELECT count(*) FROM quantum_flow.workflow_steps),"
        " (SELECT count(*) FROM quantum_flow.workflow_step_dependencies_def),"
        " (SELECT array_agg(queue_name ORDER BY queue_name) FROM pgmq.list_queues())"
    ).fetchone()


def given(obj: Dict[str, Any], key: str, default: Any) -> Any:
    """A document's value for ``key``; left out and ``null`` both mean not given."""
    value = obj.get(key)
    return default if value is None else value


def expected_export(doc: Dict[str, Any]) -> Dict[str, Any]:
    """export_flow of a valid document, per the contract: the workflow's options written out,
    ``type`` and ``depends_on`` on every step, keys not given (or null) left out."""
    out: Dict[str, Any] = {"workflow_slug": doc["workflow_slug"]}
    out.update({k: given(doc, k, v) for k, v in FLOW_DEFAULTS.items()})
    if doc.get("description") is not None:
        out["description"] = doc["description"]
    steps = []
    for s in doc["steps"]:
        step = {
            "slug": s["slug"],
            "type": given(s, "type", "single"),
            "depends_on": given(s, "depends_on", []),
        }
        step.update({k: s[k] for k in STEP_OPTIONS if s.get(k) is not None})
        steps.append(step)
    out["steps"] = steps
    return out


def test_every_case_has_a_verdict() -> None:
    assert CASES, "tests/documents/cases is empty"
    assert CASES == sorted(VERDICTS)
    assert all(c.startswith(("valid_", "invalid_")) for c in CASES)
    for case in CASES:
        assert VERDICTS[case]["valid"] is case.startswith("valid_"), case
        assert (VERDICTS[case]["errors"] == []) is VERDICTS[case]["valid"], case


@pytest.mark.parametrize("case", CASES)
def test_validate_flow_gives_the_recorded_verdict(conn: psycopg.Connection[Any], case: str) -> None:
    before = nothing_written_state(conn)
    text = case_text(case)
    validation = qf.validate_flow(conn, text)
    assert found(validation) == recorded(case)
    for problem in validation.errors:
        assert problem.message, problem
        assert problem.hint is None or problem.hint, problem
    # The same document as a parsed value, and as UTF-8 bytes: the same answer.
    assert qf.validate_flow(conn, json.loads(text)) == validation
    assert qf.validate_flow(conn, text.encode("utf-8")) == validation
    assert nothing_written_state(conn) == before


@pytest.mark.parametrize("case", [c for c in CASES if c.startswith("invalid_")])
def test_define_from_json_refuses_an_invalid_case(conn: psycopg.Connection[Any], case: str) -> None:
    before = nothing_written_state(conn)
    _, errors = recorded(case)
    first_path, first_code = errors[0]
    with pytest.raises(qf.InvalidFlowDocument) as info:
        qf.define_from_json(conn, case_text(case))
    e = info.value
    assert isinstance(e, qf.QuantumFlowError)
    assert (e.code, e.sqlstate) == (first_code, qf.ERROR_CODES[first_code])
    assert e.message.startswith(f"{first_code}: {first_path}: "), e.message
    assert [(p.path, p.code) for p in e.problems] == errors
    # The problems are validate_flow's errors, messages and hints included.
    assert e.problems == qf.validate_flow(conn, case_text(case)).errors
    assert nothing_written_state(conn) == before


@pytest.mark.parametrize("case", [c for c in CASES if c.startswith("valid_")])
def test_define_from_json_defines_a_valid_case(conn: psycopg.Connection[Any], case: str) -> None:
    text = case_text(case)
    doc = json.loads(text)
    slug = doc["workflow_slug"]
    flow = qf.define_from_json(conn, text)
    assert flow == qf.get_flow(conn, slug)
    assert flow.workflow_slug == slug
    assert flow.description == doc.get("description")
    # Each step after the steps it depends on.
    order = [s.step_slug for s in flow.steps]
    assert sorted(order) == sorted(s["slug"] for s in doc["steps"])
    for step in flow.steps:
        assert all(order.index(d) < step.step_index for d in step.depends_on), step

    exported = qf.export_flow(conn, slug)
    assert [s["slug"] for s in exported["steps"]] == order
    want = expected_export(doc)
    assert {**exported, "steps": None} == {**want, "steps": None}
    by_slug = {s["slug"]: s for s in want["steps"]}
    assert exported["steps"] == [by_slug[s] for s in order]

    validation = qf.validate_flow(conn, exported)
    assert (validation.valid, validation.errors) == (True, [])
    # Defined already, exactly so: a warning says define_flow returns it unchanged.
    assert [w.code for w in validation.warnings] == ["workflow_exists"]
    assert qf.define_flow(conn, exported) == flow
    assert qf.define_from_json(conn, text) == flow
    assert qf.get_flow(conn, slug) == flow


def test_the_schema_is_valid_draft_2020_12() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(SCHEMA)


def test_flow_schema_is_the_repository_file(conn: psycopg.Connection[Any]) -> None:
    assert qf.flow_schema(conn) == SCHEMA


def schema_errors(case: str) -> List[str]:
    doc = json.loads(case_text(case))
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(doc)
    ]


def expressible(case: str) -> Optional[bool]:
    """None for a valid case; for an invalid one, whether a schema can see a mistake of it."""
    _, errors = recorded(case)
    if not errors:
        return None
    return any(code not in SCHEMA_CANNOT_EXPRESS for _, code in errors)


@pytest.mark.parametrize("case", CASES)
def test_the_schema_agrees_with_the_verdict(case: str) -> None:
    errors = schema_errors(case)
    if expressible(case) is False:
        # Only mistakes a schema cannot see: the schema must not refuse the document either.
        assert errors == [], errors
    elif expressible(case):
        assert errors, f"{case} validates against docs/flow.schema.json"
    else:
        assert errors == [], errors


def test_the_suite_has_cases_of_each_kind() -> None:
    kinds = [expressible(c) for c in CASES]
    assert None in kinds and True in kinds and False in kinds
