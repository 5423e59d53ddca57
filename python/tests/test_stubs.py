"""The .pyi stubs match the extension (mypy.stubtest), and the package type-checks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import HERE

pytest.importorskip("mypy")


def test_stubtest() -> None:
    p = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "outguard"],
        capture_output=True,
        text=True,
        cwd=HERE,
        timeout=600,
    )
    assert p.returncode == 0, p.stdout + p.stderr


def test_package_is_typed() -> None:
    import outguard

    pkg = __import__("pathlib").Path(outguard.__file__).parent
    assert (pkg / "py.typed").exists() and (pkg / "_outguard.pyi").exists()
