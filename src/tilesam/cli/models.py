"""``tilesam models``: the model registry, which weights are at hand, and the number format
the encoders run in on this machine."""

from __future__ import annotations

import argparse

from tilesam.cli._options import Command


def _options(p: argparse.ArgumentParser) -> None:
    """No options."""


def _run(args: argparse.Namespace) -> None:
    from tilesam.models.registry import MODELS
    from tilesam.models.weights import bundled_path, cache_dir, cached_path

    print(f"model cache: {cache_dir()}  (set TILESAM_CACHE_DIR to move it)")
    rows = [("name", "architecture", "available", "description")]
    for entry in MODELS.values():
        where = "bundled" if bundled_path(entry) else "cached" if cached_path(entry) else "-"
        rows.append((entry.name, entry.architecture, where, entry.description))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)), row[-1])
    print(_precision_line())


def _precision_line() -> str:
    """What ``precision="auto"`` gives on the default device (see tilesam.models.precision)."""
    from tilesam.models.loading import pick_device
    from tilesam.models.precision import encoder_dtype

    device = pick_device()
    fast, tiny = (
        str(encoder_dtype("auto", device, encoder)).removeprefix("torch.")
        for encoder in ("vit", "tiny_cnn")
    )
    return (
        f"encoders on {device} (--precision auto): {fast} for SAM, MobileSAM and SAM 2.1, "
        f"{tiny} for tiny; --precision float32 or bfloat16 to choose"
    )


COMMANDS = (
    Command(
        "models",
        "list the model registry and what is cached",
        _options,
        _run,
        description="List the models TileSAM knows by name (architecture, source), which "
        "weights are at hand (bundled with the package, or in the model cache folder, where "
        "downloaded or hand-placed checkpoints are found) and the number format the encoders "
        "run in on this machine.",
    ),
)
