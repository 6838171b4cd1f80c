"""The README's Quick Start runs as written and prints what the README says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def quick_start_code() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1]
    match = re.search(r"^```python\n(.*?)^```$", section, flags=re.S | re.M)
    assert match, "README.md has no python block under ## Quick start"
    return match.group(1)


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
