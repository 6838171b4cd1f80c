"""The README's examples run as written: the Quick Start prints what the README says, the
examples of flow control and of batch calls print what the README says, and the example of
workflows from JSON defines its workflow and prints its graph."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

import quantum_flow as qf

README = Path(__file__).resolve().parent.parent / "README.md"


def python_block(heading: str) -> str:
    """The first python block under ``heading`` in the README."""
    text = README.read_text(encoding="utf-8")
    section = text.split(heading, 1)[1]
    match = re.search(r"^```python\n(.*?)^```$", section, flags=re.S | re.M)
    assert match, f"README.md has no python block under {heading}"
    return match.group(1)


def quick_start_code() -> str:
    return python_block("## Quick start")


def test_quick_start_runs_twice(conninfo: str) -> None:
    env = dict(os.environ, QF_DATABASE_URL=conninfo)
    for _ in range(2):  # the second time, the definitions already exist
        done = subprocess.run(
            [sys.executable, "-c", quick_start_code()],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout == "{'save_results': {'saved': True}}\n"
    assert "It prints `{'save_results': {'saved': True}}`" in README.read_text(encoding="utf-8")


def test_workflows_from_json_runs(
    conn: psycopg.Connection[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    exec(python_block("## Workflows from JSON (LLM output)"), {"qf": qf, "conn": conn})
    printed = capsys.readouterr().out
    assert printed.startswith("---\ntitle: claude_etl\n---\nflowchart TD\n"), printed
    assert [s.step_slug for s in qf.get_flow(conn, "claude_etl").steps] == [
        "extract_csv",
        "validate_rows",
        "load_db",
    ]


def test_flow_control_runs(
    conn: psycopg.Connection[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    exec(python_block("## Flow control"), {"qf": qf, "conn": conn})
    assert capsys.readouterr().out == "{'by': 'ann'}\n"
    assert "It prints `{'by': 'ann'}`" in README.read_text(encoding="utf-8")
    [run_id] = [
        r
        for (r,) in conn.execute(
            "SELECT run_id FROM quantum_flow.runs WHERE workflow_slug = 'refunds'"
        )
    ]
    run = qf.get_run(conn, run_id)
    assert [(s.step_slug, s.status) for s in run.steps] == [
        ("assess", "completed"),
        ("approval", "completed"),
        ("pay", "started"),
    ]
    assert run.deadline is not None


def test_batch_calls_run(conn: psycopg.Connection[Any], capsys: pytest.CaptureFixture[str]) -> None:
    exec(python_block("## Batch calls"), {"qf": qf, "conn": conn})
    assert capsys.readouterr().out == (
        "['a.png', 'b.png', 'c.png']\n[True, True, True, False]\n{'resize': ['c.png.small']}\n"
    )
    text = " ".join(README.read_text(encoding="utf-8").split())
    assert (
        "It prints `['a.png', 'b.png', 'c.png']`, `[True, True, True, False]` and "
        "`{'resize': ['c.png.small']}`." in text
    )
