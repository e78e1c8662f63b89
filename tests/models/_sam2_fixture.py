"""The SAM 2.1 fixture's files and the official checkpoints' layouts, shared by
``test_sam2.py`` (image prompts) and ``test_sam2_memory.py`` (video memory); importable
through ``tests/models/conftest.py``."""

from __future__ import annotations

import json
from pathlib import Path

FIXTURES = Path(__file__).parents[1] / "data" / "fixtures"
CHECKPOINT = FIXTURES / "sam2_small_fp16.pt"
#: Every key and shape of the four official SAM 2.1 checkpoints, by their file stems.
SPECS: dict[str, dict[str, list[int]]] = json.loads(
    (FIXTURES / "official_sam2_state_dict_specs.json").read_text(encoding="utf-8")
)
#: The official checkpoints' stems and TileSAM's registry names for them.
REGISTRY_NAMES = {
    "sam2.1_hiera_t": "sam2.1_hiera_tiny",
    "sam2.1_hiera_s": "sam2.1_hiera_small",
    "sam2.1_hiera_b+": "sam2.1_hiera_base_plus",
    "sam2.1_hiera_l": "sam2.1_hiera_large",
}
