"""define_from_json: an LLM-style JSON document becomes a workflow, in one transaction."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

import quantum_flow as qf
from quantum_flow import FlowStep

# As the seed guide's Pattern 1 asks Claude for it, with the steps not in dependency order.
ETL_DOC = json.dumps(
    {
        "workflow_slug": "claude_etl",
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


def test_defines_the_workflow_dependencies_first(conn: psycopg.Connection[Any]) -> None:
    flow = qf.define_from_json(conn, ETL_DOC)
    assert flow == qf.get_flow(conn, "claude_etl")
    assert (flow.workflow_slug, flow.max_attempts, flow.timeout, flow.base_delay) == (
        "claude_etl",
        3,
        30,
        1,
    )
    assert flow.steps == [
        FlowStep("extract_csv", "single", 0, [], None, None, None, None),
        FlowStep("validate_rows", "map", 1, ["extract_csv"], 50, None, None, None),
        FlowStep("load_db", "single", 2, ["validate_rows"], None, None, None, None),
    ]
    # The same document again changes nothing.
    assert qf.define_from_json(conn, ETL_DOC) == flow


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


def test_a_refused_step_leaves_nothing_behind(conn: psycopg.Connection[Any]) -> None:
    doc = {
        "workflow_slug": "half_made",
        "steps": [
            {"slug": "a", "depends_on": []},
            {"slug": "b", "depends_on": []},
            {"slug": "m", "depends_on": ["a", "b"], "type": "map"},
        ],
    }
    with pytest.raises(qf.QuantumFlowError) as e:
        qf.define_from_json(conn, doc)
    assert (e.value.code, e.value.sqlstate) == ("map_step_too_many_dependencies", "23514")
    assert "half_made" not in [w.workflow_slug for w in qf.list_flows(conn)]


def test_a_refused_slug_leaves_nothing_behind(conn: psycopg.Connection[Any]) -> None:
    doc = {"workflow_slug": "bad_step", "steps": [{"slug": "ok"}, {"slug": "not ok"}]}
    with pytest.raises(qf.QuantumFlowError) as e:
        qf.define_from_json(conn, doc)
    assert (e.value.code, e.value.sqlstate) == ("invalid_step_slug", "22023")
    assert "bad_step" not in [w.workflow_slug for w in qf.list_flows(conn)]


def test_inside_a_caller_transaction_it_is_a_savepoint(conninfo: str) -> None:
    with psycopg.connect(conninfo) as c:
        with c.transaction():
            qf.create_flow(c, "kept_by_caller")
            with pytest.raises(qf.QuantumFlowError):
                qf.define_from_json(c, {"workflow_slug": "x_sp", "steps": [{"slug": "run"}]})
            assert qf.get_flow(c, "kept_by_caller").workflow_slug == "kept_by_caller"
        assert "x_sp" not in [w.workflow_slug for w in qf.list_flows(c)]


@pytest.mark.parametrize(
    "doc,message",
    [
        ("{not json", "not JSON"),
        ("[]", "the document must be a JSON object"),
        ({"steps": [{"slug": "a"}]}, '"workflow_slug" must be a string'),
        ({"workflow_slug": "w", "steps": []}, '"steps" must be a non-empty array'),
        (
            {"workflow_slug": "w", "steps": [{"slug": "a", "depends": ["b"]}]},
            "steps[0]: unknown key(s) 'depends'",
        ),
        (
            {"workflow_slug": "w", "steps": [{"slug": "a", "depends_on": "b"}]},
            'steps[0] (a): "depends_on" must be an array of strings',
        ),
        (
            {"workflow_slug": "w", "steps": [{"slug": "a", "timeout": "30"}]},
            'steps[0]: "timeout" must be an integer',
        ),
        (
            {
                "workflow_slug": "w",
                "steps": [{"slug": "a", "depends_on": ["b"]}, {"slug": "b", "depends_on": ["a"]}],
            },
            "the steps' dependencies form a cycle among: a, b",
        ),
    ],
)
def test_bad_documents_are_refused_before_anything_is_sent(
    conn: psycopg.Connection[Any], doc: Any, message: str
) -> None:
    with pytest.raises(qf.InvalidFlowDocument) as e:
        qf.define_from_json(conn, doc)
    assert message in str(e.value)
    assert "w" not in [w.workflow_slug for w in qf.list_flows(conn)]
