"""The command line starts without the heavy imports: ``tilesam --help`` and building the
parser import no torch, trainer or napari (checked in a fresh interpreter), and every
command's own parser (built alone, as ``main`` does) takes ``--help``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tilesam.cli import COMMANDS, build_parser, main

HEAVY = ("torch", "napari", "tilesam.training.trainer")


def _imported_after(code: str) -> list[str]:
    """The modules of `HEAVY` that a fresh Python has imported after running `code`."""
    found = f"[m for m in {HEAVY!r} if m in sys.modules]"
    probe = f"{code}\nimport json, sys\nprint(json.dumps({found}))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_help_imports_no_torch() -> None:
    code = "from tilesam.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    assert _imported_after(code) == []


def test_building_the_whole_parser_imports_no_torch() -> None:
    assert _imported_after("from tilesam.cli import build_parser\nbuild_parser()") == []


@pytest.mark.parametrize("name", [c.name for c in COMMANDS])
def test_each_command_parses_alone_as_in_full(name, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([name, "--help"])
    alone = capsys.readouterr().out
    assert exit_.value.code == 0 and alone.startswith(f"usage: tilesam {name}")
    with pytest.raises(SystemExit):
        build_parser().parse_args([name, "--help"])
    assert capsys.readouterr().out == alone  # the same options as in the full parser
