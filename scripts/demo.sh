#!/usr/bin/env bash
# Set up a virtual environment and run the main job (the README's first command) with the
# bundled default model `tiny` on the sample data.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e .
# One click on a nucleus of a fluorescence field the bundled model never saw in training:
# its mask, full size.
.venv/bin/tilesam segment sample_data/nuclei_heldout.tif --point 256,252 --out nuclei_mask.tif
