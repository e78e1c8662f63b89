"""The plugin's modules import each other without loops (lazy and type-only imports
included): each has one place in the plugin's layers."""

from __future__ import annotations

import ast
from pathlib import Path

PLUGIN = Path(__file__).parents[2] / "plugins" / "napari" / "tilesam_napari"


def _imports(path: Path) -> set[str]:
    """The plugin modules `path` imports anywhere in it, by file stem."""
    modules = {p.stem for p in PLUGIN.glob("*.py")}
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "tilesam_napari":
            found |= {alias.name for alias in node.names if alias.name in modules}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tilesam_napari."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
            found |= {n.split(".")[1] for n in names if n.startswith("tilesam_napari.")}
    return found - {path.stem}


def test_no_import_loops():
    graph = {p.stem: _imports(p) for p in PLUGIN.glob("*.py")}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import loop: {' -> '.join((*path, module))}"
        if module not in done:
            for imported in graph[module]:
                visit(imported, (*path, module))
            done.add(module)

    for module in graph:
        visit(module, ())
