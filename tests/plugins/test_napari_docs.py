"""The console session of docs/napari.md runs in a real napari viewer (issue #22, item 8)."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

PAGE = Path(__file__).resolve().parents[2] / "docs" / "napari.md"


def test_the_console_session_of_the_napari_page_runs(
    make_napari_viewer, nuclei, tmp_path, monkeypatch
):
    session = next(
        b for b in re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), flags=re.S)
        if b.lstrip().startswith(">>>")
    )  # fmt: skip
    monkeypatch.chdir(tmp_path)
    viewer = make_napari_viewer()
    viewer.add_image(nuclei, name="nuclei")
    namespace = {"viewer": viewer}
    for example in doctest.DocTestParser().get_examples(session):
        exec(compile(example.source, "docs/napari.md", "exec"), namespace)
    ann = namespace["ann"]
    assert ann.session is not None and ann.session.cache_path.name == "nuclei.zarr"
    assert (tmp_path / "nuclei.zarr").is_dir()  # the Settings' cache was made where it says
