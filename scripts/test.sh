#!/usr/bin/env bash
# Set up a virtual environment and run the whole test suite (the README's second command):
# tests/ and the docstring examples of src/ (pyproject: testpaths, --doctest-modules), then
# the QGIS plugin's tests (scripts/test_qgis.sh).
# Arguments go to pytest, e.g. `bash scripts/test.sh tests/io -k medical`.
set -euo pipefail
cd "$(dirname "$0")/.."
# napari's tests drive a real viewer on a virtual X display (Qt's xcb platform).
X_PACKAGES="xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxkbcommon-x11-0 libxcb-cursor0 libgl1
    libegl1 libfontconfig1 libdbus-1-3"
# shellcheck disable=SC2086
if ! dpkg -s $X_PACKAGES > /dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null
then
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $X_PACKAGES > /dev/null
fi
python3 -m venv .venv
# The CPU build of torch first, so that no CUDA build is pulled in by a dependency.
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e '.[test,napari]'
.venv/bin/ruff check src tests benchmarks plugins
.venv/bin/python -m pytest -q "$@"
# The QGIS plugin's tests in their own venv and process (PyQt5 beside napari's PyQt6 is
# not possible); with arguments, only the pytest run above.
if [ "$#" = 0 ]; then
    bash scripts/test_qgis.sh
fi
