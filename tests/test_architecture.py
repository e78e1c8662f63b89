"""The layers of ``src/tilesam`` (docs/architecture.md): each imports only the layers below
it, and the core never imports Qt or napari."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "src" / "tilesam"
BASE = {"errors"}
ALLOWED = {
    "errors": set(),
    "io": BASE,
    "decode": BASE,
    "models": BASE | {"decode"},
    "cache": BASE | {"io", "decode", "models"},
    "segment": BASE | {"io", "decode", "models", "cache"},
    "volumes": BASE | {"io", "decode", "models", "cache", "segment"},
    "automatic": BASE | {"io", "decode", "models", "cache", "segment"},
    "evaluate": BASE | {"io", "decode", "models", "cache"},
    "training": BASE | {"io", "decode", "models", "evaluate"},
    "samples": BASE | {"io"},
}
GUI = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "superqt")


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _layer(path: Path) -> str:
    parts = path.relative_to(CORE).parts
    return parts[0] if len(parts) > 1 else path.stem


MODULES = sorted(p for p in CORE.rglob("*.py") if _layer(p) in ALLOWED)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(CORE)))
def test_a_layer_imports_only_the_layers_below_it(path: Path) -> None:
    layer = _layer(path)
    used = {m.split(".")[1] for m in _imports(path) if m.startswith("tilesam.")}
    assert used - {layer} <= ALLOWED[layer], f"{layer} may not import {used - ALLOWED[layer]}"


def test_the_core_never_imports_a_gui() -> None:
    for path in CORE.rglob("*.py"):
        gui = {m for m in _imports(path) if m.split(".")[0] in GUI}
        assert not gui, f"{path.relative_to(CORE)} imports {gui}"


def test_every_core_folder_is_a_layer_of_the_table() -> None:
    folders = {p.name for p in CORE.iterdir() if (p / "__init__.py").is_file()}
    assert folders - {"cli"} <= set(ALLOWED), "a new layer: add it to docs/architecture.md"
