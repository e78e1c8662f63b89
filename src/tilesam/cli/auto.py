"""``tilesam auto``: every object of an image, with no prompt, as labels and a table.

Missing embeddings are computed first (with a progress bar), then segment-everything runs
with its own bar; the labels are written block by block with the image's geometry, the
table of objects as CSV. Bad thresholds and an existing output are refused before any
work; an image with no object gets empty labels and a note (exit 0).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tilesam.cli._options import Command, add_model_options, add_session_options, make_session
from tilesam.errors import TileSAMError


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="image file or folder (TIFF, OME-TIFF, zarr, NIfTI, ...)")
    p.add_argument("--cache", default=None, help="embedding cache folder (missing tiles added)")
    p.add_argument(
        "--mode",
        default=None,
        help="grid: clicks on a grid (any model); instance: the instance head and a watershed; "
        "prompts: the head's seeds clicked (default: instance for a model with an instance "
        "head, else grid)",
    )
    p.add_argument(
        "--instance-head",
        default=None,
        metavar="FILE",
        help="instance head for the instance and prompts modes (default: the model's own; "
        "tilesam train --instance-head writes one)",
    )
    p.add_argument("--z", type=int, default=None, help="one slice of a volume (default: all)")
    p.add_argument("--points-per-side", type=int, default=None, help="grid points per input side")
    p.add_argument("--min-score", type=float, default=None, help="least predicted IoU, 0..1")
    p.add_argument("--min-stability", type=float, default=None, help="least stability, 0..1")
    p.add_argument("--nms-iou", type=float, default=None, help="duplicates above this IoU go")
    p.add_argument("--min-size", type=int, default=None, help="smallest object, pixels")
    p.add_argument("--max-hole", type=int, default=None, help="largest hole filled, pixels")
    p.add_argument(
        "--foreground", type=float, default=None, help="instance head: least foreground, 0..1"
    )
    add_session_options(p)
    add_model_options(p)
    # `--overwrite` here is the output's (an existing file is refused without it); the
    # session options' own, for a cache made for other inputs, becomes `--overwrite-cache`.
    p.conflict_handler = "resolve"
    out = p.add_argument_group("output")
    out.add_argument(
        "--out", required=True, help="labels: .tif, .ome.zarr (block by block), .nii.gz, ..."
    )
    out.add_argument("--table", default=None, metavar="CSV", help="write the table of objects")
    out.add_argument(
        "--vector", default=None, metavar="OUT", help="polygons (2D): .gpkg, .geojson, .shp"
    )
    out.add_argument(
        "--simplify", type=float, default=None, help="polygon tolerance, CRS units (topology kept)"
    )
    out.add_argument("--overwrite", action="store_true", help="replace existing output files")
    out.add_argument(
        "--overwrite-cache", action="store_true", help="replace a cache made for other inputs"
    )


def _run(args: argparse.Namespace) -> None:
    from tilesam.automatic.api import run
    from tilesam.automatic.settings import AutoSettings, check_mode

    if args.mode is not None:
        check_mode(args.mode)
    settings = AutoSettings.make(**_settings(args)).to_dict()  # refused before any work
    out, table = _outputs(args)
    vector = _vector_output(args)
    session = make_session(
        argparse.Namespace(**{**vars(args), "overwrite": args.overwrite_cache}), args.cache
    )
    result = run(session, args.mode, z=args.z, progress=True, **settings)
    result.save(out, like=session.source)
    if table is not None:
        result.save_table(table)
    if vector is not None:
        result.save_polygons(vector, simplify=args.simplify, overwrite=args.overwrite)
    extra = f", table -> {table}" if table is not None else ""
    extra += f", polygons -> {vector}" if vector is not None else ""
    if result.n_objects == 0:
        print(f"No object found: wrote empty labels to {out}{extra}.")
        return
    stats = result.stats
    print(
        f"{result.n_objects} objects ({result.mode} mode; {stats.get('border_objects', 0)} "
        f"found across tile borders) -> {out}{extra}"
    )


def _settings(args: argparse.Namespace) -> dict:
    names = (
        "points_per_side",
        "min_score",
        "min_stability",
        "nms_iou",
        "min_size",
        "max_hole",
        "foreground",
        "instance_head",
    )
    return {name: getattr(args, name) for name in names}


def _outputs(args: argparse.Namespace) -> tuple[Path, Path | None]:
    """The labels and table paths, checked before the work: known endings, folders that
    exist, and no existing file unless ``--overwrite``."""
    from tilesam.io.write import check_labels_path

    out = check_labels_path(args.out)
    table = None if args.table is None else Path(args.table).expanduser()
    if table is not None and table.suffix.lower() != ".csv":
        raise TileSAMError(f"--table {args.table}: the table is written as CSV, name it *.csv.")
    if table is not None and not table.parent.is_dir():
        raise TileSAMError(f"The folder '{table.parent}' does not exist; create it first.")
    for path in (out, table):
        if path is not None and path.exists() and not args.overwrite:
            raise TileSAMError(
                f"'{path}' exists: pass --overwrite to replace it, or choose another name."
            )
    if table is not None and table.resolve() == out.resolve():
        raise TileSAMError("--out and --table name the same file: give each its own.")
    return out, table


def _vector_output(args: argparse.Namespace) -> Path | None:
    """The polygons' path, checked before the work."""
    from tilesam.io.polygons import check_vector_path

    if args.vector is None:
        if args.simplify is not None:
            raise TileSAMError("--simplify shapes the polygons of --vector: give --vector too.")
        return None
    return check_vector_path(args.vector, overwrite=args.overwrite)


COMMANDS = (
    Command(
        "auto",
        "segment every object of an image (no prompt): labels and a table",
        _options,
        _run,
    ),
)
