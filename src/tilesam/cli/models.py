"""``tilesam models``: the model registry and which weights are at hand."""

from __future__ import annotations

import argparse

from tilesam.cli._options import Command


def _options(p: argparse.ArgumentParser) -> None:
    """No options."""


def _run(args: argparse.Namespace) -> None:
    from tilesam.models.registry import MODELS
    from tilesam.models.weights import bundled_path, cache_dir, cached_path

    print(f"model cache: {cache_dir()}  (set TILESAM_CACHE_DIR to move it)")
    print(f"{'name':32} {'architecture':12} {'available':10} description")
    for entry in MODELS.values():
        where = "bundled" if bundled_path(entry) else "cached" if cached_path(entry) else "-"
        print(f"{entry.name:32} {entry.architecture:12} {where:10} {entry.description}")


COMMANDS = (
    Command(
        "models",
        "list the model registry and what is cached",
        _options,
        _run,
        description="List the models TileSAM knows by name (architecture, source) and which "
        "weights are at hand: bundled with the package, or in the model cache folder, where "
        "downloaded or hand-placed checkpoints are found.",
    ),
)
