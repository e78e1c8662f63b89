#!/usr/bin/env bash
# The QGIS plugin's tests (tests/qgis), headless, in their own venv and pytest process:
# Debian's QGIS 3.22 with PyQt5 cannot share a process with napari's PyQt6.
# Arguments go to pytest, e.g. `bash scripts/test_qgis.sh -k segmentpoints`.
set -euo pipefail
cd "$(dirname "$0")/.."
QGIS_PACKAGES="python3-qgis qgis-providers qgis python3-venv"
# shellcheck disable=SC2086
if ! dpkg -s $QGIS_PACKAGES > /dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null
then
    apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $QGIS_PACKAGES \
        > /dev/null
fi
# QGIS's own Python (the one its plugins run in), seeing Debian's qgis and osgeo packages.
/usr/bin/python3 -m venv --system-site-packages .venv-qgis
# The CPU build of torch first, so that no CUDA build is pulled in by a dependency; then
# TileSAM within what Debian's QGIS, GDAL and GEOS were built with (see the constraints).
.venv-qgis/bin/pip install -q torch==2.13.0 -c scripts/qgis-constraints.txt
.venv-qgis/bin/pip install -q -e '.[test]' -c scripts/qgis-constraints.txt
.venv-qgis/bin/python -c "from osgeo import gdal_array; import qgis.core, tilesam_qgis"
OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" QT_QPA_PLATFORM=offscreen \
    .venv-qgis/bin/python -m pytest -q tests/qgis -p no:cacheprovider -p no:npe2 "$@"
