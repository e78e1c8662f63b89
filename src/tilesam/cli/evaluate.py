"""``tilesam evaluate``: mean IoU from a point, a box and corrective clicks, per model."""

from __future__ import annotations

import argparse
from pathlib import Path

from tilesam.cli._options import Command
from tilesam.errors import TileSAMError


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", required=True, help="folder of images")
    p.add_argument("--labels", help="folder of instance label images (default: --images)")
    p.add_argument(
        "--model",
        action="append",
        default=[],
        help="registry name or checkpoint file; repeat to compare models (default: tiny)",
    )
    p.add_argument(
        "--clicks",
        type=int,
        default=8,
        help="corrective clicks per object, IoU recorded after each (default: 8)",
    )
    p.add_argument("--max-objects", type=int, default=None, help="objects per image at most")
    p.add_argument("--out", default="evaluation", help="folder for the JSON, table and plot")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: the fastest)")
    p.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow checkpoints that need full unpickling (only for files you trust)",
    )


def _run(args: argparse.Namespace) -> None:
    from tilesam.evaluate.datasets import LabelledImageFolder
    from tilesam.evaluate.scoring import compare, evaluate
    from tilesam.io import atomic_output
    from tilesam.models.loading import load_model

    if args.clicks < 1 or (args.max_objects is not None and args.max_objects < 1):
        raise TileSAMError("--clicks and --max-objects must be at least 1.")
    specs = args.model or ["tiny"]
    names = model_names(specs)
    dataset = LabelledImageFolder(args.images, args.labels or args.images)
    out = _out_folder(args.out)
    results = {}
    for spec, label in zip(specs, names):
        is_file = Path(spec).is_file()
        model = load_model(
            None if is_file else spec,
            spec if is_file else None,
            args.device,
            trust_checkpoint=args.trust_checkpoint,
        )
        results[label] = evaluate(
            model, dataset, n_clicks=args.clicks, max_objects_per_image=args.max_objects
        )
        results[label].to_json(out / f"{label.replace(':', '_').replace('/', '_')}.json")
    table = compare(results)
    with atomic_output(out / "table.txt") as partial:
        partial.write_text(table + "\n")
    next(iter(results.values())).plot(out / "iou_vs_clicks.png", others=results)
    print(table)
    print(f"results: {out}/ (JSON per model, table.txt, iou_vs_clicks.png)")


def model_names(specs: list[str]) -> list[str]:
    """A column name per ``--model``: the registry name, or the checkpoint's file stem; the
    stem with its folder where two stems agree (every training run exports ``model.pt``).

    >>> model_names(["tiny", "vit_b"])
    ['tiny', 'vit_b']
    """
    stems = [Path(s).stem if Path(s).is_file() else s for s in specs]
    names = [
        f"{Path(s).parent.name}/{stem}" if Path(s).is_file() and stems.count(stem) > 1 else stem
        for s, stem in zip(specs, stems)
    ]
    for name in names:
        if names.count(name) > 1:
            raise TileSAMError(
                f"Two --model arguments are both named {name!r}: give each model once (a "
                "checkpoint by a path that tells it apart)."
            )
    return names


def _out_folder(path: str) -> Path:
    from tilesam.io.atomic import make_folder

    if Path(path).exists() and not Path(path).is_dir():
        raise TileSAMError(f"--out {path} is a file, not a folder: choose another --out.")
    return make_folder(path)


COMMANDS = (
    Command("evaluate", "mean IoU from a point, a box and corrective clicks", _options, _run),
)
