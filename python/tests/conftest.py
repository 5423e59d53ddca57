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

SCENARIO = """\
[rules.tenant_threshold]
min_messages = 10
min_suspicious = 5
max_ratio = 0.5
warn_ratio = 0.25

[rules.unregistered_domain]
limit = 3

[rules.low_reputation_ip]
ranges = ["198.51.100.0/24"]

[[tenants]]
id = "contoso"
domains = [
  { name = "contoso.com", subdomains = true },
  "fabrikam.com",
  { name = "contoso.net", validated = false },
]
connectors = [
  { name = "onprem", certificate = "mail.contoso.com" },
  { name = "hq", ranges = ["203.0.113.0/24"] },
]
ip_exceptions = [ { range = "198.51.100.7/32", expires = "2026-12-31T00:00:00Z" } ]

[[tenants]]
id = "trial"
licensed = false
domains = ["trial.example"]

[[tenants]]
id = "lapsed"
lapsed = true
domains = ["lapsed.example"]
"""


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
