"""``tilesam segment``: one object from points and / or a box, written as a full-size mask;
on a georeferenced raster the prompts may be map coordinates or the features of a vector
file (one object each), and the objects polygons.

On a complete cache that holds the decoder this runs without torch, as fast as the same
call from Python: the command line adds no import of its own (see `tilesam.cli`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from tilesam.cli._options import (
    Command,
    add_model_options,
    add_session_options,
    make_session,
    parse_numbers,
)
from tilesam.errors import TileSAMError

if TYPE_CHECKING:
    from tilesam.io import ImageSource
    from tilesam.segment.result import SegmentResult


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="image file or folder (TIFF, OME-TIFF, zarr, NIfTI, DICOM...)")
    p.add_argument(
        "--point",
        action="append",
        default=[],
        metavar="[Z,]Y,X[,LABEL]",
        help="a prompt point (on a volume z,y,x); label 1 (default) positive, 0 negative; "
        "repeatable",
    )
    p.add_argument(
        "--box", default=None, metavar="[Z,]Y0,X0,Y1,X1", help="a box prompt (on a volume z first)"
    )
    p.add_argument(
        "--out",
        required=True,
        help="output mask: .tif or .png (.ome.zarr with the pixel spacing), full size; of a "
        "volume also .nii.gz, .nii, .mha, .nrrd with its geometry",
    )
    p.add_argument("--cache", default=None, help="embedding cache folder (missing tiles are added)")
    p.add_argument("--z", type=int, default=None, help="slice of a volume (or give z,y,x points)")
    _map_options(p.add_argument_group("prompts on the map (georeferenced rasters)"))
    add_session_options(p)
    add_model_options(p)


def _map_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--point-xy", action="append", default=[], metavar="X,Y[,LABEL]",
        help="a prompt point in map coordinates (the raster's CRS or --prompt-crs); repeatable",
    )  # fmt: skip
    g.add_argument("--box-xy", default=None, metavar="XMIN,YMIN,XMAX,YMAX", help="a map box")
    g.add_argument(
        "--prompt-crs", default=None, help="CRS of --point-xy / --box-xy, e.g. EPSG:4326"
    )
    g.add_argument(
        "--points-file", default=None, metavar="VECTOR",
        help="point features (GeoJSON, GeoPackage, Shapefile; optional 'label' attribute): "
        "one object each, --out is then a label raster",
    )  # fmt: skip
    g.add_argument(
        "--boxes-file", default=None, metavar="VECTOR",
        help="polygon features, each segmented from the box of its bounds",
    )  # fmt: skip
    g.add_argument("--layer", default=None, help="the layer of a vector file with several")
    g.add_argument(
        "--one-object", action="store_true", help="all features of the file prompt one object"
    )
    g.add_argument("--vector", default=None, metavar="OUT", help="polygons: .gpkg, .geojson, .shp")
    g.add_argument(
        "--simplify", type=float, default=None, help="polygon tolerance, CRS units (topology kept)"
    )


def _run(args: argparse.Namespace) -> None:
    vector = _check_vector(args)
    session = make_session(args, args.cache)
    if args.points_file or args.boxes_file:
        return _run_features(args, session, vector)
    if args.point_xy or args.box_xy:
        return _run_map(args, session, vector)
    if args.vector:
        raise TileSAMError(
            "--vector writes polygons of objects prompted on the map: give --point-xy, "
            "--box-xy, --points-file or --boxes-file."
        )
    volume = session.source.n_slices > 1
    out = _check_out(args.out, volume)  # before the embedding, not after it
    z = 1 if volume and args.z is None else 0  # a volume's points and box start with z
    first = "z," if z else ""  # what a point or box of this image holds
    points = [parse_numbers(p, (2 + z, 3 + z), f"{first}y,x[,label]") for p in args.point]
    box = parse_numbers(args.box, (4 + z,), f"{first}y0,x0,y1,x1") if args.box else None
    labels = [point_label(p[z:]) for p in points]
    prompt = [p[: 2 + z] for p in points] or None
    result = session.segment(prompt, labels or None, box, z=args.z)
    if volume and not _is_mask_file(out.name):
        _save_in_volume(result, session.source, out)
    else:
        result.save(out, like=session.source)
    where = f" on slice {result.z}" if volume else ""
    print(
        f"mask: {result.area} pixels{where}, bbox {result.bbox}, predicted IoU "
        f"{result.score:.3f}, {len(result.tiles)} tile(s) -> {args.out}"
    )


def _check_vector(args: argparse.Namespace) -> Path | None:
    """The polygons' path, checked before any work (a segment output is replaced)."""
    from tilesam.io.polygons import check_vector_path

    if args.point and (args.point_xy or args.box_xy or args.points_file or args.boxes_file):
        raise TileSAMError("Give the prompt in pixels (--point, --box) or on the map, not both.")
    if args.points_file and args.boxes_file:
        raise TileSAMError("Give --points-file or --boxes-file: one file of prompts per run.")
    return None if args.vector is None else check_vector_path(args.vector, overwrite=True)


def _run_map(args: argparse.Namespace, session, vector: Path | None) -> None:
    """One object from map points and / or a map box."""
    points = [parse_numbers(p, (2, 3), "x,y[,label]") for p in args.point_xy]
    box = parse_numbers(args.box_xy, (4,), "xmin,ymin,xmax,ymax") if args.box_xy else None
    out = _check_out(args.out, False)
    result = session.segment(points_xy=points or None, box_xy=box, crs=args.prompt_crs)
    result.save(out, like=session.source)
    if vector is not None:
        from tilesam.automatic.features import result_objects

        objects = result_objects(session, [result], mode="prompt")
        objects.save_polygons(vector, simplify=args.simplify, overwrite=True)
    also = f", polygon -> {vector}" if vector else ""
    print(f"mask: {result.area} pixels, predicted IoU {result.score:.3f} -> {out}{also}")


def _run_features(args: argparse.Namespace, session, vector: Path | None) -> None:
    """One object per feature of a vector file (or one from all): labels and polygons."""
    from tilesam.automatic.features import segment_features
    from tilesam.io.vectors import read_prompt_features
    from tilesam.io.write import check_labels_path

    out = check_labels_path(args.out)
    path = args.points_file or args.boxes_file
    features = read_prompt_features(
        path, session.source.georeference, session.grid.slice_shape, layer=args.layer,
        crs=args.prompt_crs,
    )  # fmt: skip
    result = segment_features(session, features, one_object=args.one_object)
    result.save(out, like=session.source)
    if vector is not None:
        result.save_polygons(vector, simplify=args.simplify, overwrite=True)
    also = f", polygons -> {vector}" if vector else ""
    print(f"{result.n_objects} object(s) from {len(features)} feature(s) -> {out}{also}")


def _check_out(path: str, volume: bool) -> Path:
    """The output path, checked before any work: a mask file, or for a volume a labels
    volume file too."""
    from tilesam.io.mask import check_mask_path
    from tilesam.io.write import check_labels_path

    mask = _is_mask_file(path) or not volume
    return check_mask_path(path) if mask else check_labels_path(path)


def _is_mask_file(name: str) -> bool:
    """Whether `name` ends as a mask file does (else, for a volume, a labels volume file)."""
    from tilesam.io.mask import MASK_SUFFIXES

    return name.lower().endswith(MASK_SUFFIXES)


def _save_in_volume(result: SegmentResult, source: ImageSource, out: Path) -> None:
    """The slice's mask as a labels volume (1 on the mask) with the volume's geometry."""
    import numpy as np

    from tilesam.io import write_labels

    labels = np.zeros(source.spatial_shape, np.uint8)
    labels[result.z] = result.mask
    write_labels(out, labels, like=source)


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
