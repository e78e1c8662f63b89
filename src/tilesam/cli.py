"""The ``tilesam`` command line (also ``python -m tilesam``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from tilesam.errors import TileSAMError


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for a user error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except TileSAMError as err:
        print(f"tilesam: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tilesam: interrupted; finished work was kept.", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tilesam", description="Promptable segmentation of large scientific images."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _models_parser(sub)
    _embed_parser(sub)
    _info_parser(sub)
    _segment_parser(sub)
    _propagate_parser(sub)
    _train_parser(sub)
    _synthesize_parser(sub)
    _evaluate_parser(sub)
    return parser


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="registry name (default: the bundled 'tiny')")
    p.add_argument("--checkpoint", default=None, help="a checkpoint file to load instead")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: fastest available)")
    p.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow checkpoints that need full unpickling (only for files you trust)",
    )


def _load(args: argparse.Namespace):
    from tilesam.models.loading import load_model

    return load_model(
        args.model, args.checkpoint, args.device, trust_checkpoint=args.trust_checkpoint
    )


# -- models ---------------------------------------------------------------------------------


def _models_parser(sub) -> None:
    p = sub.add_parser("models", help="list the model registry and what is cached")
    p.set_defaults(run=_run_models)


def _run_models(args: argparse.Namespace) -> None:
    from tilesam.models.registry import MODELS
    from tilesam.models.weights import bundled_path, cache_dir, cached_path

    print(f"model cache: {cache_dir()}  (set TILESAM_CACHE_DIR to move it)")
    print(f"{'name':32} {'architecture':12} {'available':10} description")
    for entry in MODELS.values():
        where = "bundled" if bundled_path(entry) else "cached" if cached_path(entry) else "-"
        print(f"{entry.name:32} {entry.architecture:12} {where:10} {entry.description}")


# -- sessions: embed, info, segment ---------------------------------------------------------


def _add_session_options(p: argparse.ArgumentParser) -> None:
    from tilesam.segment.session import DEFAULT_SLICE_SCALE

    p.add_argument(
        "--tile", type=int, default=None, help="tile size (default: the cache's, or model input)"
    )
    p.add_argument(
        "--halo", type=int, default=None, help="tile overlap context (default: the cache's, or 64)"
    )
    p.add_argument("--axes", default=None, help="the image's axis order, e.g. ZYX, CYX")
    p.add_argument("--intensity", default=None, metavar="LOW,HIGH", help="fixed intensity range")
    p.add_argument(
        "--window", default=None, metavar="NAME|WIDTH,LEVEL", help="CT window, e.g. lung, 400,40"
    )
    p.add_argument("--series", default=None, help="DICOM series (number or UID) of a folder")
    p.add_argument(
        "--slice-scale",
        default=None,
        metavar="SCALE|sam",
        help="enlarge tiles at most SCALE times into the model input; 'sam': until they fill "
        f"it (default: {DEFAULT_SLICE_SCALE:g} for volumes, sam for 2D images)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a cache made for other inputs")


def _open(args: argparse.Namespace):
    """The image of `args` (``--axes``, ``--series`` applied)."""
    from tilesam.io import open_image

    series = int(args.series) if args.series and args.series.isdigit() else args.series
    return open_image(args.image, axes=args.axes, series=series)


def _session(args: argparse.Namespace, cache: str | None, source=None):
    """A session over `source` (default: the image of `args`) with the session options."""
    from tilesam.segment.session import Session

    intensity = _parse_numbers(args.intensity, (2,), "low,high") if args.intensity else None
    window = args.window
    if window is not None and "," in window:
        window = tuple(_parse_numbers(window, (2,), "width,level"))
    source = _open(args) if source is None else source
    # The Session's default in every command, so that they share a volume's cache.
    slice_scale = "auto" if args.slice_scale is None else None
    if args.slice_scale not in (None, "sam"):
        try:
            slice_scale = float(args.slice_scale)
        except ValueError:
            raise TileSAMError(
                f"Could not read --slice-scale {args.slice_scale!r}: give a number (e.g. 3) "
                "or 'sam'."
            ) from None
    return Session(
        source,
        args.model,
        cache,
        tile_size=args.tile,
        halo=args.halo,
        intensity=intensity,
        window=window,
        checkpoint=args.checkpoint,
        device=args.device,
        trust_checkpoint=args.trust_checkpoint,
        overwrite=args.overwrite,
        progress=True,
        slice_scale=slice_scale,
    )


def _embed_parser(sub) -> None:
    p = sub.add_parser("embed", help="precompute an image's tile embeddings into a cache")
    p.add_argument("image", help="image file or folder (TIFF, OME-TIFF, zarr)")
    p.add_argument("--cache", required=True, help="embedding cache folder (zarr), resumable")
    p.add_argument("--batch", type=int, default=4, help="tiles per encoder batch")
    p.add_argument("--workers", type=int, default=None, help="local dask worker processes")
    p.add_argument("--dask", default=None, metavar="ADDRESS", help="dask scheduler address")
    _add_session_options(p)
    _add_model_options(p)
    p.set_defaults(run=_run_embed)


def _run_embed(args: argparse.Namespace) -> None:
    import time

    session = _session(args, args.cache)
    start = time.perf_counter()
    n = session.embed(
        progress=True, batch_size=args.batch, workers=args.workers, scheduler=args.dask
    )
    seconds = time.perf_counter() - start
    rate = f", {n / seconds:.2f} tiles/s" if n else ""
    print(
        f"cache: {session.cache_path}  tiles: {session.n_done}/{session.n_tiles} done "
        f"(computed {n} in {seconds:.1f} s{rate})"
    )


def _info_parser(sub) -> None:
    p = sub.add_parser("info", help="show what an embedding cache holds")
    p.add_argument("cache", help="embedding cache folder")
    p.set_defaults(run=_run_info)


def _run_info(args: argparse.Namespace) -> None:
    from tilesam.cache.store import EmbeddingStore

    info = EmbeddingStore.open(args.cache, mode="r").info()
    print(f"cache: {info['path']}")
    print(f"format: {info['format_version']}  created: {info['created']}")
    for key, value in _flat(info["signature"]):
        print(f"  {key}: {value}")
    n_done, n_tiles = info["n_done"], info["n_tiles"]
    state = "complete" if info["complete"] else f"{n_tiles - n_done} missing"
    print(f"tiles: {n_done}/{n_tiles} done ({state}); grid (z, y, x) {info['grid_shape']}")
    size, decoder = info["bytes_on_disk"], info["decoder_bytes"]
    per_tile = f", {(size - decoder) / n_done / 2**20:.2f} MiB per tile" if n_done else ""
    kept = f", the decoder's weights {decoder / 2**20:.1f} MiB" if decoder else ""
    print(f"size on disk: {size / 2**20:.1f} MiB{per_tile}{kept}")


def _flat(d, prefix: str = ""):
    for key, value in d.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _segment_parser(sub) -> None:
    p = sub.add_parser("segment", help="segment one object from points and/or a box")
    p.add_argument("image", help="image file or folder (TIFF, OME-TIFF, zarr)")
    p.add_argument(
        "--point",
        action="append",
        default=[],
        metavar="Y,X[,LABEL]",
        help="a prompt point; label 1 (default) positive, 0 negative; repeatable",
    )
    p.add_argument("--box", default=None, metavar="Y0,X0,Y1,X1", help="a box prompt")
    p.add_argument("--out", required=True, help="output mask file (.tif or .png), full size")
    p.add_argument("--cache", default=None, help="embedding cache folder (missing tiles are added)")
    p.add_argument("--z", type=int, default=0, help="slice of a volume")
    _add_session_options(p)
    _add_model_options(p)
    p.set_defaults(run=_run_segment)


def _parse_numbers(text: str, count: tuple[int, ...], what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in count:
        raise TileSAMError(f"Could not read {what} {text!r}: expected {what.upper()} numbers.")
    return values


def _point_label(point: list[float]) -> int:
    if len(point) == 2:
        return 1
    if point[2] not in (0, 1):
        raise TileSAMError(
            f"A point's label is 1 (positive) or 0 (negative), got {point[2]:g} in "
            f"{','.join(f'{v:g}' for v in point)}."
        )
    return int(point[2])


def _run_segment(args: argparse.Namespace) -> None:
    points = [_parse_numbers(p, (2, 3), "y,x[,label]") for p in args.point]
    box = _parse_numbers(args.box, (4,), "y0,x0,y1,x1") if args.box else None
    out = Path(args.out).expanduser()
    if out.suffix.lower() not in (".tif", ".tiff", ".png"):
        raise TileSAMError(f"Unsupported output {out.suffix!r}: use .tif or .png.")
    if not out.parent.is_dir():  # checked before the embedding, not after it
        raise TileSAMError(f"The folder '{out.parent}' does not exist; create it first.")
    labels = [_point_label(p) for p in points]
    session = _session(args, args.cache)
    result = session.segment([p[:2] for p in points] or None, labels or None, box, z=args.z)
    result.save(args.out, georeference=session.source.georeference)
    print(
        f"mask: {result.area} pixels, bbox {result.bbox}, predicted IoU {result.score:.3f}, "
        f"{len(result.tiles)} tile(s) -> {args.out}"
    )


def _propagate_parser(sub) -> None:
    from tilesam.volumes.walk import METHODS

    p = sub.add_parser(
        "propagate",
        help="segment objects through a volume from clicks, a box or a seed mask",
        description="Propagate an object (from --point / --box) or every object of a seed "
        "mask (--mask) slice by slice through a volume; the labels are written with the "
        "volume's geometry (spacing, origin, direction).",
    )
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
    p.add_argument("--out", required=True, help="labels file: .nii.gz, .nii, .mha, .nrrd or .tif")
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
        "default; see tilesam.volumes.walk.StopRules.min_contrast)",
    )
    _add_session_options(p)
    _add_model_options(p)
    p.set_defaults(run=_run_propagate)


def _run_propagate(args: argparse.Namespace) -> None:
    import numpy as np

    from tilesam.io import AxisView, write_labels
    from tilesam.io.write import check_labels_path
    from tilesam.volumes.propagate import propagate_mask
    from tilesam.volumes.walk import StopRules

    check_labels_path(args.out)  # before the long work, not after it
    points = [_parse_numbers(p, (3, 4), "z,y,x[,label]") for p in args.point]
    box = _parse_numbers(args.box, (5,), "z,y0,x0,y1,x1") if args.box else None
    span = _parse_numbers(args.range, (2,), "start,stop") if args.range else None
    source = _open(args)
    view = source if args.axis == 0 else AxisView(source, args.axis)
    labels = propagate_mask(
        source,
        points=[p[:3] for p in points] or None,
        labels=[int(p[3]) if len(p) == 4 else 1 for p in points] or None,
        box=box,
        mask=args.mask,
        axis=args.axis,
        method=args.method,
        slice_range=None if span is None else (int(span[0]), int(span[1])),
        largest_component=args.largest_component,
        rules=StopRules(min_contrast=None) if args.no_fade_rule else None,
        progress=True,
        session=_session(args, args.cache, view),
    )
    path = write_labels(args.out, labels, like=source)
    ids = np.unique(labels[labels > 0])
    extent = np.flatnonzero(labels.reshape(len(labels), -1).any(axis=1))
    where = f"slices {extent[0]}..{extent[-1]}" if extent.size else "no slice"
    print(f"labels: {len(ids)} object(s) {ids.tolist()} on {where} -> {path}")


# -- train ----------------------------------------------------------------------------------


def _train_parser(sub) -> None:
    from tilesam.training.trainer import TrainConfig

    d = TrainConfig(out_dir="")
    p = sub.add_parser("train", help="train or fine-tune a model (resumes from --out)")
    p.add_argument("--out", required=True, help="run folder: checkpoints, history, model.pt")
    p.add_argument(
        "--base", default=d.base, help="'scratch' (untrained tiny), a model name or a checkpoint"
    )
    p.add_argument("--images", help="folder of training images")
    p.add_argument("--labels", help="folder of instance label images (default: --images)")
    p.add_argument("--val-images", help="folder of validation images")
    p.add_argument("--val-labels", help="folder of validation labels (default: --val-images)")
    p.add_argument(
        "--synthetic",
        default=",".join(d.synthetic),
        help="synthetic kinds to mix in, comma-separated, or 'none'",
    )
    p.add_argument("--real-fraction", type=float, default=d.real_fraction)
    for name in (
        "crop",
        "batch_size",
        "objects_per_image",
        "iterations",
        "epochs",
        "steps_per_epoch",
        "seed",
        "save_every",
    ):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name))
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument(
        "--mosaic",
        type=float,
        default=d.mosaic,
        help="share of steps whose crops form one field (teaches the decoder to leave out "
        "look-alike objects far from the prompt)",
    )
    p.add_argument(
        "--loss", choices=("focal", "bce"), default=d.loss, help="focal+dice (SAM) or bce+dice"
    )
    p.add_argument(
        "--loss-margin",
        type=float,
        default=d.loss_margin,
        help="penalise masks only within the target's box grown by this fraction of its size "
        "(default: everywhere)",
    )
    p.add_argument(
        "--max-minutes", type=float, default=None, help="stop (resumably) after this long"
    )
    p.add_argument(
        "--freeze-encoder",
        action="store_true",
        help="train prompt encoder and decoder only; real images are then embedded once, "
        "whole, and the decoder trains on them as it runs at inference",
    )
    p.add_argument(
        "--box-points",
        type=float,
        default=d.box_points,
        help="with --freeze-encoder: share of box prompts that also get a click inside the "
        "object and a looser box (the prompt slice-to-slice propagation sends)",
    )
    p.add_argument("--device", default=None)
    p.add_argument("--trust-checkpoint", action="store_true")
    p.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> None:
    from tilesam.training.trainer import TrainConfig, train

    synthetic = () if args.synthetic in ("", "none") else tuple(args.synthetic.split(","))
    config = TrainConfig(
        out_dir=args.out,
        base=args.base,
        synthetic=synthetic,
        images=args.images,
        labels=args.labels,
        real_fraction=args.real_fraction,
        val_images=args.val_images,
        val_labels=args.val_labels,
        crop=args.crop,
        batch_size=args.batch_size,
        objects_per_image=args.objects_per_image,
        iterations=args.iterations,
        mosaic=args.mosaic,
        lr=args.lr,
        loss=args.loss,
        loss_margin=args.loss_margin,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        max_minutes=args.max_minutes,
        freeze_encoder=args.freeze_encoder,
        box_points=args.box_points,
        seed=args.seed,
        device=args.device,
        save_every=args.save_every,
        trust_checkpoint=args.trust_checkpoint,
    )
    path = train(config)
    print(f"weights: {path}  (use with --checkpoint {path})")


# -- synthesize -----------------------------------------------------------------------------


def _synthesize_parser(sub) -> None:
    p = sub.add_parser(
        "synthesize",
        help="write whole synthetic images with labels (for train --freeze-encoder)",
    )
    p.add_argument("--out", required=True, help="folder to write name.tif / name_labels.tif into")
    p.add_argument(
        "--kinds",
        default="nuclei,nuclei,cells,ct,aerial",
        help="kinds drawn in turn, comma-separated (repeat one to weight it)",
    )
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-zoom", type=float, default=6.0, help="largest magnification")
    p.set_defaults(run=_run_synthesize)


def _run_synthesize(args: argparse.Namespace) -> None:
    from tilesam.training.synthetic.folder import write_synthetic_folder

    paths = write_synthetic_folder(
        args.out, args.kinds.split(","), args.count, args.seed, max_zoom=args.max_zoom
    )
    print(f"wrote {len(paths)} images with their labels to {args.out}")


# -- evaluate -------------------------------------------------------------------------------


def _evaluate_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="mean IoU from a point, a box and corrective clicks")
    p.add_argument("--images", required=True, help="folder of images")
    p.add_argument("--labels", help="folder of instance label images (default: --images)")
    p.add_argument(
        "--model",
        action="append",
        default=[],
        help="registry name or checkpoint file; repeat to compare models (default: tiny)",
    )
    p.add_argument("--clicks", type=int, default=8)
    p.add_argument("--max-objects", type=int, default=None, help="objects per image at most")
    p.add_argument("--out", default="evaluation", help="folder for the JSON, table and plot")
    p.add_argument("--device", default=None)
    p.add_argument("--trust-checkpoint", action="store_true")
    p.set_defaults(run=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> None:
    from tilesam.evaluate.datasets import LabelledImageFolder
    from tilesam.evaluate.scoring import compare, evaluate
    from tilesam.models.loading import load_model

    if args.clicks < 1 or (args.max_objects is not None and args.max_objects < 1):
        raise TileSAMError("--clicks and --max-objects must be at least 1.")
    specs = args.model or ["tiny"]
    names = _model_names(specs)
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
    (out / "table.txt").write_text(table + "\n")
    next(iter(results.values())).plot(out / "iou_vs_clicks.png", others=results)
    print(table)
    print(f"results: {out}/ (JSON per model, table.txt, iou_vs_clicks.png)")


def _model_names(specs: list[str]) -> list[str]:
    """A column name per ``--model``: the registry name, or the checkpoint's file stem; the
    stem with its folder where two stems agree (every training run exports ``model.pt``)."""
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
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise TileSAMError(f"--out {out} is a file, not a folder: choose another --out.")
    out.mkdir(parents=True, exist_ok=True)
    return out
