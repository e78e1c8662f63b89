"""``tilesam propagate``: objects through a volume, slice by slice, written as labels with
the volume's geometry."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from tilesam.cli._options import (
    Command,
    add_model_options,
    add_session_options,
    make_session,
    open_source,
    parse_numbers,
)

if TYPE_CHECKING:
    import numpy as np

    from tilesam.volumes.stop_rules import StopRules

_DESCRIPTION = (
    "Propagate an object (from --point / --box) or every object of a seed mask (--mask) "
    "slice by slice through a volume; the labels are written with the volume's geometry "
    "(spacing, origin, direction)."
)


def _options(p: argparse.ArgumentParser) -> None:
    from tilesam.volumes.walk import METHODS

    p.add_argument(
        "image", metavar="VOLUME", help="NIfTI, MHA/MHD, NRRD, DICOM folder, TIFF stack, zarr"
    )
    p.add_argument(
        "--point",
        action="append",
        default=[],
        metavar="Z,Y,X[,LABEL]",
        help="a click; label 1 (default) object, 0 background; repeatable, on one or more slices",
    )
    p.add_argument("--box", default=None, metavar="Z,Y0,X0,Y1,X1", help="a box on slice Z")
    p.add_argument("--mask", default=None, help="seed labels (same grid): every object propagates")
    p.add_argument(
        "--out",
        required=True,
        help="labels file: .nii.gz, .nii, .mha, .nrrd, .tif or .ome.zarr (OME-Zarr folder)",
    )
    p.add_argument("--cache", required=True, help="embedding cache folder (zarr), reused next time")
    p.add_argument("--axis", type=int, default=0, help="axis whose planes are segmented (0: z)")
    p.add_argument(
        "--method",
        default="prompt",
        choices=METHODS,
        help="what the next slice's prompt holds (default: the box and points of the mask)",
    )
    p.add_argument("--range", default=None, metavar="START,STOP", help="only these slices")
    p.add_argument(
        "--largest-component", action="store_true", help="keep each object's largest 3D piece"
    )
    p.add_argument(
        "--no-fade-rule",
        action="store_true",
        help="do not stop where a distinct object fades against its surroundings (on by "
        "default; see tilesam.volumes.stop_rules.StopRules.min_contrast)",
    )
    p.add_argument(
        "--min-score",
        type=float,
        default=None,
        help="stop where the decoder's predicted IoU falls below this (default 0.4)",
    )
    p.add_argument(
        "--min-score-ratio",
        type=float,
        default=None,
        help="stop where the predicted IoU falls below this fraction of the walk's highest "
        "(default 0.75; 0 turns the rule off)",
    )
    add_session_options(p)
    add_model_options(p)


def _run(args: argparse.Namespace) -> None:
    from tilesam.io import AxisView, write_labels
    from tilesam.io.write import check_labels_path
    from tilesam.volumes.propagate import propagate_mask
    from tilesam.volumes.stop_rules import StopRules

    check_labels_path(args.out)  # before the long work, not after it
    points = [parse_numbers(p, (3, 4), "z,y,x[,label]") for p in args.point]
    box = parse_numbers(args.box, (5,), "z,y0,x0,y1,x1") if args.box else None
    span = parse_numbers(args.range, (2,), "start,stop") if args.range else None
    source = open_source(args)
    view = source if args.axis == 0 else AxisView(source, args.axis)
    rules = _rules(args, StopRules())
    result = propagate_mask(
        source,
        points=[p[:3] for p in points] or None,
        labels=[int(p[3]) if len(p) == 4 else 1 for p in points] or None,
        box=box,
        mask=args.mask,
        axis=args.axis,
        method=args.method,
        slice_range=None if span is None else (int(span[0]), int(span[1])),
        largest_component=args.largest_component,
        rules=rules,
        progress=True,
        session=make_session(args, args.cache, view),
        details=True,
    )
    path = write_labels(args.out, result.labels, like=source)
    _report(result.labels, path)
    for stop in result.stops:  # why each walk ended, and what would take it further
        print(f"  {stop.describe()}")


def _rules(args: argparse.Namespace, default: StopRules) -> StopRules:
    """The stop rules: TileSAM's, with what the options change."""
    ratio = default.min_score_ratio if args.min_score_ratio is None else args.min_score_ratio
    return dataclasses.replace(
        default,
        min_score=default.min_score if args.min_score is None else args.min_score,
        min_score_ratio=ratio or None,  # 0: off
        min_contrast=None if args.no_fade_rule else default.min_contrast,
    )


def _report(labels: np.ndarray, path: Path) -> None:
    import numpy as np  # here, not above: `tilesam --help` imports this module

    ids = np.unique(labels[labels > 0])
    extent = np.flatnonzero(labels.reshape(len(labels), -1).any(axis=1))
    where = f"slices {extent[0]}..{extent[-1]}" if extent.size else "no slice"
    print(f"labels: {len(ids)} object(s) {ids.tolist()} on {where} -> {path}")


COMMANDS = (
    Command(
        "propagate",
        "segment objects through a volume from clicks, a box or a seed mask",
        _options,
        _run,
        description=_DESCRIPTION,
    ),
)
