"""``tilesam evaluate``: mean IoU from a point, a box and corrective clicks, per model; with
``--auto``, segment-everything's instance F1, mSA and SA50 per model and mode, beside the
classical baseline (:mod:`tilesam.evaluate.instance_comparison`)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tilesam.cli._options import Command, add_precision_option
from tilesam.errors import TileSAMError

if TYPE_CHECKING:
    import numpy as np

    from tilesam.models.sam_model import SamModel


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
    add_precision_option(p)
    _auto_options(p)


def _auto_options(p: argparse.ArgumentParser) -> None:
    auto = p.add_argument_group("segment everything (--auto)")
    auto.add_argument(
        "--auto",
        action="store_true",
        help="score segment-everything instead: instance F1 at IoU 0.5, mSA and SA50 per "
        "model and mode, beside the classical watershed baseline",
    )
    auto.add_argument(
        "--modes",
        nargs="+",
        default=None,
        metavar="MODE",
        help="modes of segment-everything to compare, e.g. grid instance prompts (default: "
        "each model's own default mode, as tilesam auto takes it)",
    )
    auto.add_argument(
        "--instance-head",
        default=None,
        metavar="FILE",
        help="instance head for the instance and prompts modes (default: the model's own)",
    )
    auto.add_argument(
        "--points-per-side", type=int, default=None, help="grid points per model-input side"
    )
    auto.add_argument("--min-size", type=int, default=None, help="smallest object, pixels")
    auto.add_argument(
        "--set",
        action="append",
        default=None,
        metavar="NAME=VALUE",
        help="any other threshold of segment-everything, e.g. min_score=0.88 (repeatable)",
    )
    auto.add_argument("--tile", type=int, default=None, help="tile size (default: model input)")
    auto.add_argument("--halo", type=int, default=None, help="tile overlap context, pixels")
    auto.add_argument(
        "--no-baseline", action="store_true", help="leave out the classical watershed baseline"
    )


def _run(args: argparse.Namespace) -> None:
    from tilesam.evaluate.datasets import LabelledImageFolder
    from tilesam.evaluate.evaluation_report import compare
    from tilesam.evaluate.scoring import evaluate
    from tilesam.io import atomic_output

    if args.auto:
        return _run_auto(args)
    _check_no_auto_options(args)
    if args.clicks < 1 or (args.max_objects is not None and args.max_objects < 1):
        raise TileSAMError("--clicks and --max-objects must be at least 1.")
    specs = args.model or ["tiny"]
    names = model_names(specs)
    dataset = LabelledImageFolder(args.images, args.labels or args.images)
    out = _out_folder(args.out)
    results = {}
    for spec, label in zip(specs, names):
        results[label] = evaluate(
            _load(spec, args), dataset, n_clicks=args.clicks, max_objects_per_image=args.max_objects
        )
        results[label].to_json(out / f"{label.replace(':', '_').replace('/', '_')}.json")
    table = compare(results)
    with atomic_output(out / "table.txt") as partial:
        partial.write_text(table + "\n", encoding="utf-8")
    next(iter(results.values())).plot(out / "iou_vs_clicks.png", others=results)
    print(table)
    print(f"results: {out}/ (JSON per model, table.txt, iou_vs_clicks.png)")


def _run_auto(args: argparse.Namespace) -> None:
    from tilesam.automatic.settings import AutoSettings, check_mode
    from tilesam.evaluate.datasets import LabelledImageFolder
    from tilesam.evaluate.instance_comparison import compare_instances
    from tilesam.io import atomic_output

    # Every refusal before any model is loaded or image segmented.
    modes = [check_mode(m) for m in dict.fromkeys(_words(args.modes or []))]
    settings = AutoSettings.make(**_auto_settings(args)).to_dict()
    specs = args.model or ["tiny"]
    names = model_names(specs)
    dataset = LabelledImageFolder(args.images, args.labels or args.images)
    if dataset.ndim != 2:
        raise TileSAMError(
            f"tilesam evaluate --auto scores 2D images; {args.images} holds volumes."
        )
    out = _out_folder(args.out)
    tiling = {"tile_size": args.tile, "halo": args.halo}
    methods = {}
    for spec, name in zip(specs, names):
        model = _load(spec, args)
        for mode in modes or [_default_mode(model, dataset[0].image, settings)]:
            methods[f"{name} {mode}"] = _segmenter(model, mode, tiling | settings)
    info = {"models": dict(zip(names, specs)), "settings": settings} | tiling
    result = compare_instances(methods, dataset, baseline=not args.no_baseline, info=info)
    result.to_json(out / "auto.json")
    result.to_csv(out / "auto.csv")
    table = result.table()
    with atomic_output(out / "auto_table.txt") as partial:
        partial.write_text(table + "\n", encoding="utf-8")
    print(table)
    print(f"results: {out}/ (auto.json, auto.csv: one row per method and image; auto_table.txt)")


def _segmenter(model: SamModel, mode: str, options: dict) -> Callable[[np.ndarray], np.ndarray]:
    """Image to instance labels with `model` in `mode` (a session in memory per image)."""
    from tilesam.automatic.api import segment_everything

    def segment(image: np.ndarray) -> np.ndarray:
        return segment_everything(image, model, mode=mode, **options).labels

    return segment


def _default_mode(model: SamModel, image: np.ndarray, settings: dict) -> str:
    """The mode :func:`~tilesam.automatic.api.segment_everything` takes for `model` when
    given none (the core's choice: its instance head's where it has one)."""
    from tilesam.automatic.api import default_mode
    from tilesam.automatic.settings import AutoSettings
    from tilesam.segment.session import Session

    return default_mode(Session(image, model), AutoSettings.make(**settings))


def _auto_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given: each ``--set`` (a JSON value, else a word), then
    ``--points-per-side``, ``--min-size`` and ``--instance-head``; AutoSettings checks them.

    >>> args = argparse.Namespace(points_per_side=16, min_size=None, instance_head=None,
    ...                           set=["nms_iou=0.5", "borders=follow"])
    >>> _auto_settings(args)
    {'nms_iou': 0.5, 'borders': 'follow', 'points_per_side': 16}
    """
    settings = {}
    for item in args.set or []:
        name, sep, text = item.partition("=")
        if not (sep and name.strip()):
            raise TileSAMError(
                f"Could not read --set {item!r}: give NAME=VALUE, e.g. min_score=0.88."
            )
        settings[name.strip().replace("-", "_")] = _value(text.strip())
    given = {
        "points_per_side": args.points_per_side,
        "min_size": args.min_size,
        "instance_head": args.instance_head,
    }
    return settings | {k: v for k, v in given.items() if v is not None}


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # a word, e.g. borders=follow


def _check_no_auto_options(args: argparse.Namespace) -> None:
    given = [
        option
        for option, value in (
            ("--modes", args.modes), ("--points-per-side", args.points_per_side),
            ("--min-size", args.min_size), ("--instance-head", args.instance_head),
            ("--set", args.set), ("--tile", args.tile),
            ("--halo", args.halo), ("--no-baseline", args.no_baseline or None),
        )
        if value is not None
    ]  # fmt: skip
    if given:
        raise TileSAMError(f"{', '.join(given)} apply to segment-everything: add --auto.")


def _words(values: list[str]) -> list[str]:
    """``--modes grid instance`` or ``--modes grid,instance``: each word once."""
    return [word for value in values for word in value.split(",") if word]


def _load(spec: str, args: argparse.Namespace) -> SamModel:
    """The model of one ``--model``: a registry name or a checkpoint file."""
    from tilesam.models.loading import load_model

    is_file = Path(spec).is_file()
    return load_model(
        None if is_file else spec,
        spec if is_file else None,
        args.device,
        trust_checkpoint=args.trust_checkpoint,
        precision=args.precision,
    )


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
    Command(
        "evaluate",
        "mean IoU from a point, a box and corrective clicks; --auto: segment everything",
        _options,
        _run,
    ),
)
