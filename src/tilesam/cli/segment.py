"""``tilesam segment``: one object from points and / or a box, written as a full-size mask.

On a complete cache that holds the decoder this runs without torch, as fast as the same
call from Python: the command line adds no import of its own (see `tilesam.cli`).
"""

from __future__ import annotations

import argparse

from tilesam.cli._options import (
    Command,
    add_model_options,
    add_session_options,
    make_session,
    parse_numbers,
)
from tilesam.errors import TileSAMError


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="image file or folder (TIFF, OME-TIFF, zarr)")
    p.add_argument(
        "--point",
        action="append",
        default=[],
        metavar="Y,X[,LABEL]",
        help="a prompt point; label 1 (default) positive, 0 negative; repeatable",
    )
    p.add_argument("--box", default=None, metavar="Y0,X0,Y1,X1", help="a box prompt")
    p.add_argument(
        "--out",
        required=True,
        help="output mask file (.tif or .png; .ome.zarr with the pixel spacing), full size",
    )
    p.add_argument("--cache", default=None, help="embedding cache folder (missing tiles are added)")
    p.add_argument("--z", type=int, default=0, help="slice of a volume")
    add_session_options(p)
    add_model_options(p)


def _run(args: argparse.Namespace) -> None:
    from tilesam.io.mask import check_mask_path

    points = [parse_numbers(p, (2, 3), "y,x[,label]") for p in args.point]
    box = parse_numbers(args.box, (4,), "y0,x0,y1,x1") if args.box else None
    out = check_mask_path(args.out)  # before the embedding, not after it
    labels = [point_label(p) for p in points]
    session = make_session(args, args.cache)
    result = session.segment([p[:2] for p in points] or None, labels or None, box, z=args.z)
    result.save(out, like=session.source)
    print(
        f"mask: {result.area} pixels, bbox {result.bbox}, predicted IoU {result.score:.3f}, "
        f"{len(result.tiles)} tile(s) -> {args.out}"
    )


def point_label(point: list[float]) -> int:
    """The label of a ``y,x[,label]`` point: 1 unless given, and only 0 or 1.

    >>> point_label([5.0, 6.0]), point_label([5.0, 6.0, 0.0])
    (1, 0)
    """
    if len(point) == 2:
        return 1
    if point[2] not in (0, 1):
        raise TileSAMError(
            f"A point's label is 1 (positive) or 0 (negative), got {point[2]:g} in "
            f"{','.join(f'{v:g}' for v in point)}."
        )
    return int(point[2])


COMMANDS = (Command("segment", "segment one object from points and/or a box", _options, _run),)
