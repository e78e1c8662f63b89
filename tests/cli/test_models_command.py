"""``tilesam models``: the registry as a table, and what ``--precision auto`` gives here."""

from __future__ import annotations

import pytest

from tilesam.cli import main
from tilesam.models import precision
from tilesam.models.registry import MODELS


@pytest.mark.parametrize(("native", "fast"), [(True, "bfloat16"), (False, "float32")])
def test_models_lists_the_registry_and_the_encoders_precision(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, native: bool, fast: str
) -> None:
    monkeypatch.setattr(precision, "native_bfloat16", lambda device: native)
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    table = lines[1:-1]
    assert [line.split()[0] for line in table[1:]] == list(MODELS)
    # Columns line up however long a name or an architecture is.
    described = ["description", *(entry.description for entry in MODELS.values())]
    assert len({line.index(text) for line, text in zip(table, described)}) == 1
    assert "tiny " in table[1] and "bundled" in table[1]
    assert lines[-1].startswith("encoders on ") and "(--precision auto): " in lines[-1]
    assert f"{fast} for SAM, MobileSAM and SAM 2.1, float32 for tiny" in lines[-1]
