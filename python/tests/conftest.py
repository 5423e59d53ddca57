"""Shared fixtures: a small scenario policy, the bundled example, the command runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import outguard

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
EXAMPLES = REPO / "examples"
DATA = HERE / "data"

#: 2026-09-21T14:13:20Z
NOW = 1_790_000_000

#: The shared scenario table's policy (core/tests/fixtures/scenario-table/): the same file
#: the core's tests load.
TABLE = REPO / "core" / "tests" / "fixtures" / "scenario-table"
SCENARIO = (TABLE / "policy.toml").read_text(encoding="utf-8")


@pytest.fixture
def policy() -> outguard.Policy:
    return outguard.Policy.from_toml(SCENARIO, "scenario.toml")


@pytest.fixture
def engine(policy: outguard.Policy) -> outguard.Engine:
    return outguard.Engine(policy)


def run_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """Runs the installed command as a user would (`python -m outguard` is the same code)."""
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "outguard", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
