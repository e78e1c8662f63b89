"""``tilesam propagate``: objects through a volume, slice by slice, written as labels with
the volume's geometry."""

from __future__ import annotations

import argparse
import sys
import warnings
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
from tilesam.errors import TileSAMWarning

if TYPE_CHECKING:
    import numpy as np

    from tilesam.volumes.stop_rules import StopRules

_DESCRIPTION = (
    "Propagate an object (from --point / --box) or every object of a seed mask (--mask) "
    "slice by slice through a volume; the labels are written with the volume's geometry "
    "(spacing, origin, direction)."
)


def _options(p: argparse.ArgumentParser) -> None:
    from tilesam.volumes.interpolate import INTERPOLATE
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
        default=None,
        choices=("memory", *METHODS, INTERPOLATE),
        help="memory: SAM 2.1 tracks each object with its video memory (the default for "
        "SAM 2.1 models); interpolate: no model, the slices between each object's annotated "
        "slices are interpolated from its masks there; the others: what the next slice's "
        "prompt holds (prompt, the default for SAM: the box and points of the mask)",
    )
    p.add_argument(
        "--no-fill-gaps",
        action="store_true",
        help="leave empty the slices two walks towards each other did not reach (by default "
        "they are interpolated from the walks' last masks)",
    )
    p.add_argument(
        "--memory-frames",
        type=int,
        default=None,
        metavar="N",
        help="with --method memory: recent slices whose memory each object keeps, 1 to 15 "
        "(default 6, all SAM 2.1 reads)",
    )
    p.add_argument("--range", default=None, metavar="START,STOP", help="only these slices")
    p.add_argument(
        "--largest-component", action="store_true", help="keep each object's largest 3D piece"
    )
    _rule_options(p)
    add_session_options(p)
    add_model_options(p)


#: StopRules field -> (metavar, help); the defaults and why: StopRules' docstring.
_RULE_HELP = {
    "min_area": ("PIXELS", "stop where the mask has fewer pixels: the object vanished"),
    "min_score": (
        "IOU",
        "stop where the decoder's predicted IoU falls below this (its scale depends on the "
        "model and the prompt: check it on your data first)",
    ),
    "min_score_ratio": (
        "FRACTION",
        "stop where the predicted IoU falls below this fraction of the walk's highest: the "
        "decoder grew less sure as the object ends",
    ),
    "min_overlap": ("IOU", "stop where the mask's IoU with the previous slice's is lower: a jump"),
    "max_growth": ("FACTOR", "stop where the area grows by more than this factor: a leak"),
    "min_contrast": (
        "FRACTION",
        "stop where a distinct object's contrast falls below this fraction of its strongest: "
        "it faded",
    ),
}


def _rule_options(p: argparse.ArgumentParser) -> None:
    """One option per stop rule (tilesam.volumes.stop_rules.StopRules), with its default."""
    from tilesam.volumes.stop_rules import StopRules, may_be_off, option_of

    rules = p.add_argument_group(
        "stop rules", "when a walk stops (tilesam.volumes.stop_rules.StopRules)"
    )
    for name, (metavar, text) in _RULE_HELP.items():
        default = getattr(StopRules(), name)
        said = "off" if default is None else f"{default:g}"
        off = "; 0 turns it off" if may_be_off(name) else ""
        rules.add_argument(
            option_of(name), type=float, default=None, metavar=metavar,
            help=f"{text} (default {said}{off})",
        )  # fmt: skip
    rules.add_argument("--no-fade-rule", action="store_true", help="the same as --min-contrast 0")


def _run(args: argparse.Namespace) -> None:
    from tilesam.io import AxisView, write_labels
    from tilesam.io.write import check_labels_path
    from tilesam.volumes.propagate import propagate_mask

    check_labels_path(args.out)  # before the long work, not after it
    points = [parse_numbers(p, (3, 4), "z,y,x[,label]") for p in args.point]
    box = parse_numbers(args.box, (5,), "z,y0,x0,y1,x1") if args.box else None
    span = parse_numbers(args.range, (2,), "start,stop") if args.range else None
    source = open_source(args)
    view = source if args.axis == 0 else AxisView(source, args.axis)
    rules = _rules(args)  # thresholds out of range are refused before any work
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TileSAMWarning)
        result = propagate_mask(
            source,
            points=[p[:3] for p in points] or None,
            labels=[int(p[3]) if len(p) == 4 else 1 for p in points] or None,
            box=box,
            mask=args.mask,
            axis=args.axis,
            method=args.method,
            memory_frames=args.memory_frames,
            slice_range=None if span is None else (int(span[0]), int(span[1])),
            largest_component=args.largest_component,
            fill_gaps=not args.no_fill_gaps,
            rules=rules,
            progress=True,
            session=make_session(args, args.cache, view),
            details=True,
        )
    path = write_labels(args.out, result.labels, like=source)
    _report(result.labels, path)
    for stop in result.stops:  # why each walk ended, and what would take it further
        print(f"  {stop.describe()}")
    for caught_warning in caught:  # after the labels: they are written, with the warning
        if issubclass(caught_warning.category, TileSAMWarning):
            print(f"tilesam: warning: {caught_warning.message}", file=sys.stderr)
        else:
            warnings.showwarning(
                caught_warning.message, caught_warning.category,
                caught_warning.filename, caught_warning.lineno,
            )  # fmt: skip


def _rules(args: argparse.Namespace) -> StopRules:
    """The stop rules: TileSAM's, with what the options change."""
    from tilesam.volumes.stop_rules import StopRules, may_be_off

    given = {name: getattr(args, name) for name in _RULE_HELP if getattr(args, name) is not None}
    for name, value in given.items():
        if value == 0 and may_be_off(name):  # 0 would never stop a walk: it turns a rule off
            given[name] = None
    if args.no_fade_rule:
        given["min_contrast"] = None
    if "min_area" in given and float(given["min_area"]).is_integer():
        given["min_area"] = int(given["min_area"])
    return StopRules.of(given)


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
