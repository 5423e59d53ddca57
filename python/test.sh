#!/usr/bin/env bash
# Builds and installs the Python package into the active venv exactly as a user does
# (`pip install ./python`: maturin as the PEP 517 backend, a release build of the extension),
# then runs the tests, stubtest and mypy. Needs the venv active with
# python/requirements-dev.txt installed (scripts/setup does both).
set -euo pipefail
cd "$(dirname "$0")"
step() { printf '\n--> %s\n' "$*"; }

step "pip install ./python"
python -m pip install -q --force-reinstall --no-deps .
step "pytest"
python -m pytest tests -q
step "stubtest"
python -m mypy.stubtest outguard
step "mypy --strict (the pure-Python modules)"
python -m mypy python/outguard
