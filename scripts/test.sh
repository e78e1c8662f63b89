#!/usr/bin/env bash
# Set up a virtual environment and run the whole test suite (the README's second command).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
# The CPU build of torch first, so that no CUDA build is pulled in by a dependency.
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e '.[test]'
.venv/bin/ruff check src tests benchmarks
.venv/bin/python -m pytest -q "$@"
