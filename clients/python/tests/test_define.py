"""Workflows from one JSON document: validate_flow, define_flow (and define_from_json),
export_flow, flow_graph and flow_schema, thin calls of the server's functions.

The shared suite of documents (tests/documents) is test_documents.py; this module checks the
client's side: documents as text, bytes or values, the typed results, the errors, the
savepoint of define_from_json and that a defined workflow runs."""

from __future__ import annotations

import json
import pickle
from typing import Any
from uuid import UUID

import psycopg
import pytest

import quantum_flow as qf
from quantum_flow import FlowProblem, FlowStep, FlowValidation

# An ETL workflow as an LLM writes it, with the steps not in dependency order.
ETL_DOC = json.dumps(
    {
        "workflow_slug": "claude_etl",
        "description": "the reference ETL",
        "steps": [
            {"slug": "load_db", "depends_on": ["validate_rows"], "type": "single"},
            {"slug": "extract_csv", "depends_on": [], "type": "single"},
            {
                "slug": "validate_rows",
                "depends_on": ["extract_csv"],
                "type": "map",
                "initial_tasks": 50,
                "description": "one task per row",
            },
        ],
    }
)


def slugs(conn: psycopg.Connection[Any]) -> list[str]:
    return [w.workflow_slug for w in qf.list_flows(conn)]


def test_defines_the_workflow_dependencies_first(conn: psycopg.Connection[Any]) -> None:
    flow = qf.define_from_json(conn, ETL_DOC)
    assert flow == qf.get_flow(conn, "claude_etl")
    assert (flow.workflow_slug, flow.max_attempts, flow.timeout, flow.base_delay) == (
        "claude_etl",
        3,
        30,
        1,
    )
    assert flow.description == "the reference ETL"
    assert flow.steps == [
        FlowStep("extract_csv", "single", 0, [], None, None, None, None),
        FlowStep(
            "validate_rows", "map", 1, ["extract_csv"], 50, None, None, None, "one task per row"
        ),
        FlowStep("load_db", "single", 2, ["validate_rows"], None, None, None, None),
    ]
    # The same document again changes nothing, in any of its forms.
    assert qf.define_from_json(conn, ETL_DOC) == flow
    assert qf.define_flow(conn, json.loads(ETL_DOC)) == flow
    assert qf.define_flow(conn, ETL_DOC.encode("utf-8")) == flow
    # list_flows shows the description too.
    (row,) = [w for w in qf.list_flows(conn) if w.workflow_slug == "claude_etl"]
    assert row.description == "the reference ETL"


def test_the_defined_workflow_runs(conninfo: str, conn: psycopg.Connection[Any]) -> None:
    doc = {
        "workflow_slug": "summarize_prompt",
        "max_attempts": 2,
        "base_delay": 0,
        "steps": [
            {"slug": "split_words", "depends_on": []},
            {"slug": "shout", "depends_on": ["split_words"], "type": "map"},
            {"slug": "join", "depends_on": ["shout", "split_words"], "type": "single"},
        ],
    }
    flow = qf.define_from_json(conn, doc)
    assert (flow.max_attempts, flow.base_delay) == (2, 0)
    output = qf.execute_dynamic(
        conninfo,
        "summarize_prompt",
        {"prompt": "process these files"},
        {
            "split_words": lambda i: i["run"]["prompt"].split(),
            "shout": lambda i: i["item"].upper(),
            "join": lambda i: {"words": len(i["split_words"]), "text": " ".join(i["shout"])},
        },
    )
    assert output == {"join": {"words": 3, "text": "PROCESS THESE FILES"}}


def test_validate_flow_reports_every_problem_typed(conn: psycopg.Connection[Any]) -> None:
    # The main README's example.
    doc = """{"workflow_slug": "etl", "steps": [
      {"slug": "extract"}, {"slug": "load", "depend_on": ["extract"]},
      {"slug": "report", "depends_on": ["lod"]}]}"""
    assert qf.validate_flow(conn, doc) == FlowValidation(
        valid=False,
        errors=[
            FlowProblem(
                "$.steps[1].depend_on",
                "unknown_key",
                'a step has no key "depend_on"',
                'did you mean "depends_on"?',
            ),
            FlowProblem(
                "$.steps[2].depends_on[0]",
                "dependency_not_found",
                'step "report" depends on "lod", which is not a step of this workflow',
                'did you mean "load"?',
            ),
        ],
        warnings=[],
    )
    assert "etl" not in slugs(conn)


@pytest.mark.parametrize(
    "doc,path,code",
    [
        ("[]", "$", "invalid_document"),
        ('"a JSON string"', "$", "invalid_document"),
        ("null", "$", "invalid_document"),
        (None, "$", "invalid_document"),  # SQL NULL
        (42, "$", "invalid_document"),
        ({"steps": [{"slug": "a"}]}, "$", "missing_key"),
        ({"workflow_slug": "w", "steps": []}, "$.steps", "invalid_document"),
        (
            {"workflow_slug": "w", "steps": [{"slug": "a", "depends": ["b"]}]},
            "$.steps[0].depends",
            "unknown_key",
        ),
        (
            {"workflow_slug": "w", "steps": [{"slug": "a", "timeout": "30"}]},
            "$.steps[0].timeout",
            "invalid_document",
        ),
    ],
)
def test_validate_flow_never_raises_for_a_bad_document(
    conn: psycopg.Connection[Any], doc: Any, path: str, code: str
) -> None:
    validation = qf.validate_flow(conn, doc)
    assert not validation.valid
    assert [(e.path, e.code) for e in validation.errors] == [(path, code)]


def test_validate_flow_warns_of_an_existing_identical_workflow(
    conn: psycopg.Connection[Any],
) -> None:
    doc = {"workflow_slug": "warned", "steps": [{"slug": "a"}]}
    assert qf.validate_flow(conn, doc) == FlowValidation(True, [], [])
    qf.define_flow(conn, doc)
    validation = qf.validate_flow(conn, doc)
    assert (validation.valid, validation.errors) == (True, [])
    assert [(w.path, w.code) for w in validation.warnings] == [
        ("$.workflow_slug", "workflow_exists")
    ]
    # Another definition for the slug is an error, naming the first difference.
    other = qf.validate_flow(
        conn, {"workflow_slug": "warned", "timeout": 5, "steps": [{"slug": "a"}]}
    )
    assert [(e.path, e.code) for e in other.errors] == [("$.timeout", "workflow_exists")]


def test_text_that_is_not_json_is_the_servers_error(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        qf.validate_flow(conn, "{not json")
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        qf.define_from_json(conn, "{not json")


def test_a_refused_document_raises_every_problem(conn: psycopg.Connection[Any]) -> None:
    doc = {
        "workflow_slug": "half_made",
        "steps": [
            {"slug": "a", "depends_on": []},
            {"slug": "b", "dependson": []},
            {"slug": "m", "depends_on": ["a", "b"], "type": "map"},
            {"slug": "not ok"},
        ],
    }
    with pytest.raises(qf.InvalidFlowDocument) as info:
        qf.define_from_json(conn, doc)
    e = info.value
    assert isinstance(e, qf.QuantumFlowError) and isinstance(e, ValueError)
    assert (e.code, e.sqlstate) == ("unknown_key", "22023")
    assert e.message == (
        'unknown_key: $.steps[1].dependson: a step has no key "dependson" '
        '(did you mean "depends_on"?)'
    )
    assert str(e) == f"{e.message} (SQLSTATE 22023)"
    assert [(p.path, p.code) for p in e.problems] == [
        ("$.steps[1].dependson", "unknown_key"),
        ("$.steps[2].depends_on", "map_step_too_many_dependencies"),
        ("$.steps[3].slug", "invalid_step_slug"),
    ]
    assert e.problems == qf.validate_flow(conn, doc).errors
    assert isinstance(e.__cause__, psycopg.Error)
    assert "half_made" not in slugs(conn)
    # It survives pickling (for process pools).
    again = pickle.loads(pickle.dumps(e))
    assert (again.code, again.sqlstate, again.message, again.problems) == (
        e.code,
        e.sqlstate,
        e.message,
        e.problems,
    )


def test_other_definition_errors_are_quantum_flow_errors(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(qf.QuantumFlowError) as info:
        qf.define_flow(conn, None)
    assert (info.value.code, info.value.sqlstate) == ("null_argument", "22004")
    assert not isinstance(info.value, qf.InvalidFlowDocument)


def test_inside_a_caller_transaction_it_is_a_savepoint(conninfo: str) -> None:
    with psycopg.connect(conninfo) as c:
        with c.transaction():
            qf.create_flow(c, "kept_by_caller")
            with pytest.raises(qf.InvalidFlowDocument):
                qf.define_from_json(c, {"workflow_slug": "x_sp", "steps": [{"slug": "run"}]})
            assert qf.get_flow(c, "kept_by_caller").workflow_slug == "kept_by_caller"
            # define_flow is one statement and leaves transactions to the caller.
            flow = qf.define_flow(c, {"workflow_slug": "x_tx", "steps": [{"slug": "a"}]})
            assert flow.workflow_slug == "x_tx"
        assert "x_sp" not in slugs(c)
        assert {"kept_by_caller", "x_tx"} <= set(slugs(c))


def test_export_flow_round_trips(conn: psycopg.Connection[Any], slug: str) -> None:
    # Made with create_flow / add_step: its export defines it again unchanged.
    qf.create_flow(conn, slug, max_attempts=4, base_delay=0)
    qf.add_step(conn, slug, "a")
    qf.add_step(conn, slug, "m", ["a"], step_type="map", initial_tasks=7, timeout=9)
    qf.add_step(conn, slug, "z", ["m", "a"])
    flow = qf.get_flow(conn, slug)
    exported = qf.export_flow(conn, slug)
    assert exported == {
        "workflow_slug": slug,
        "max_attempts": 4,
        "timeout": 30,
        "base_delay": 0,
        "steps": [
            {"slug": "a", "type": "single", "depends_on": []},
            {"slug": "m", "type": "map", "depends_on": ["a"], "initial_tasks": 7, "timeout": 9},
            {"slug": "z", "type": "single", "depends_on": ["m", "a"]},
        ],
    }
    assert qf.validate_flow(conn, exported).valid
    assert qf.define_flow(conn, exported) == flow
    with pytest.raises(qf.QuantumFlowError) as e:
        qf.export_flow(conn, slug.upper())
    assert e.value.code == "workflow_not_found"
    assert f'did you mean "{slug}"?' in e.value.message


def test_flow_graph(conn: psycopg.Connection[Any], slug: str) -> None:
    qf.define_flow(
        conn,
        {
            "workflow_slug": slug,
            "steps": [{"slug": "fetch"}, {"slug": "each", "type": "map", "depends_on": ["fetch"]}],
        },
    )
    mermaid = qf.flow_graph(conn, slug)
    assert mermaid == qf.flow_graph(conn, slug, "mermaid")
    assert mermaid.startswith(f"---\ntitle: {slug}\n---\nflowchart TD\n")
    assert '    s0["fetch"]\n' in mermaid
    assert '    s1[["each<br/><i>map</i>"]]\n' in mermaid
    assert "    s0 --> s1\n" in mermaid
    dot = qf.flow_graph(conn, slug, format="dot")
    assert dot.startswith(f'digraph "{slug}" {{')
    assert "    s0 -> s1;\n" in dot
    # With a run: each step's status and completed/total tasks.
    run_id = qf.start_flow(conn, slug, {}, UUID("00000000-0000-0000-0000-00000000a001"))
    live = qf.flow_graph(conn, slug, run_id=run_id)
    assert '    s0["fetch<br/>started 0/1"]\n' in live
    assert "class s0 started" in live
    assert "fetch\\nstarted 0/1" in qf.flow_graph(conn, slug, "dot", str(run_id))
    qf.cancel_run(conn, run_id)
    bad_format: Any = "svg"
    with pytest.raises(qf.QuantumFlowError) as e:
        qf.flow_graph(conn, slug, bad_format)
    assert e.value.code == "invalid_option"
    with pytest.raises(qf.QuantumFlowError) as e:
        qf.flow_graph(conn, "no_such_flow")
    assert e.value.code == "workflow_not_found"


def test_flow_schema(conn: psycopg.Connection[Any]) -> None:
    schema = qf.flow_schema(conn)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["required"] == ["workflow_slug", "steps"]
    assert schema["additionalProperties"] is False
