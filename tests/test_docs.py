"""Every Python snippet of the README and of docs/ runs, so that none can rot (issue #22,
item 8). The snippets of one page run in order in one namespace, as a reader would type
them, in a folder holding the files they name: copies of the sample data, and for a SAM
checkpoint file the small official-format checkpoints of the test fixtures (random weights:
the snippets show calls, not quality). napari console sessions (``>>>``) run in a real
viewer in tests/plugins/test_napari_docs.py."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CHECKPOINT = ROOT / "tests" / "data" / "fixtures" / "sam1_small_fp16.pth"
SAM2_CHECKPOINT = ROOT / "tests" / "data" / "fixtures" / "sam2_small_fp16.pt"
#: page -> (page, block index) whose snippet makes what the page reopens
FIRST = {"large_images.md": ("README.md", 1)}


def python_blocks(page: Path) -> list[str]:
    """The page's ```python blocks, console sessions left out."""
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)
    return [b for b in blocks if not b.lstrip().startswith(">>>")]


@pytest.fixture
def inputs(tmp_path, monkeypatch):
    """The files the snippets name, in the folder they run in."""
    from tilesam.samples import load_sample, sample_path

    nuclei = load_sample("nuclei")[0]
    slide = np.tile(nuclei, (8, 8))  # 2048 x 2048: tiles, and objects crossing them
    tifffile.imwrite(tmp_path / "slide.ome.tif", slide, tile=(256, 256), ome=True)
    shutil.copy(sample_path("ct_volume"), tmp_path / "ct.nii.gz")
    shutil.copy(CHECKPOINT, tmp_path / "sam_vit_b_01ec64.pth")
    shutil.copy(SAM2_CHECKPOINT, tmp_path / "sam2.1_hiera_tiny.pt")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=lambda p: p.name)
def test_the_snippets_of_a_page_run(page, inputs):
    namespace: dict = {}
    if page.name in FIRST:  # a page that reopens what another page's snippet made
        other, index = FIRST[page.name]
        exec(compile("import tilesam\n" + python_blocks(ROOT / other)[index], other, "exec"), {})
    for number, block in enumerate(python_blocks(page), 1):
        try:
            exec(compile(block, f"{page.name} block {number}", "exec"), namespace)
        except Exception as err:  # noqa: BLE001 - name the block that rotted
            pytest.fail(f"{page.name}, Python block {number} fails: {err!r}\n{block}")


# The README's large-image snippet: the cache that docs/large_images.md reopens.
_README_SLIDE = (
    python_blocks(ROOT / "README.md")[1] if len(python_blocks(ROOT / "README.md")) > 1 else ""
)
