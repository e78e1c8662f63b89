#!/usr/bin/env bash
# Set up a virtual environment and run the main job (the README's first command):
# segment a nucleus of the bundled sample image from one click.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e .
.venv/bin/tilesam segment sample_data/nuclei.tif --point 143,3 \
    --checkpoint tests/data/fixtures/sam1_small_fp16.pth --out nuclei_mask.tif
