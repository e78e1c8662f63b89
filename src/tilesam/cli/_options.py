"""What the commands share: the `Command` record, the model and session options, and
reading numbers from the command line.

Nothing here imports a model, torch or the session at module level: a command's options
are added only when that command runs (see `tilesam.cli.build_parser`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tilesam.cache.tiling import DEFAULT_HALO
from tilesam.errors import TileSAMError
from tilesam.models.precision import PRECISIONS

if TYPE_CHECKING:
    from tilesam.io import ImageSource
    from tilesam.segment.session import Session


@dataclass(frozen=True)
class Command:
    """A subcommand: its name and help line (always in the parser), the function that adds
    its options (called only for the command that runs, or for the full parser) and the one
    that runs it (returns the exit status, ``None`` for 0)."""

    name: str
    help: str
    options: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]
    description: str | None = None


def add_model_options(p: argparse.ArgumentParser) -> None:
    """``--model``, ``--checkpoint``, ``--device``, ``--trust-checkpoint``, ``--precision``
    and ``--threads``."""
    p.add_argument("--model", default=None, help="registry name (default: the bundled 'tiny')")
    p.add_argument("--checkpoint", default=None, help="a checkpoint file to load instead")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: fastest available)")
    p.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow checkpoints that need full unpickling (only for files you trust)",
    )
    add_precision_option(p)
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for the model (default: torch's, one per core); 1 is often faster "
        "on a machine busy with other work",
    )


def add_precision_option(p: argparse.ArgumentParser) -> None:
    """``--precision``: the image encoder's number format (:mod:`tilesam.models.precision`)."""
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="the image encoder's number format; auto: bfloat16 for transformer encoders on "
        "a GPU or a CPU with AMX (about 2.5x faster, masks >= 99.7%% equal), else float32",
    )


def add_session_options(p: argparse.ArgumentParser) -> None:
    """The tiling and intensity options of `embed`, `segment` and `propagate`."""
    from tilesam.cache.scale import DEFAULT_SLICE_SCALE

    p.add_argument(
        "--tile", type=int, default=None, help="tile size (default: the cache's, or model input)"
    )
    p.add_argument(
        "--halo",
        type=int,
        default=None,
        help=f"tile overlap context (default: the cache's, or {DEFAULT_HALO})",
    )
    p.add_argument("--axes", default=None, help="the image's axis order, e.g. ZYX, CYX")
    p.add_argument("--intensity", default=None, metavar="LOW,HIGH", help="fixed intensity range")
    p.add_argument(
        "--window", default=None, metavar="NAME|WIDTH,LEVEL", help="CT window, e.g. lung, 400,40"
    )
    p.add_argument("--series", default=None, help="DICOM series (number or UID) of a folder")
    add_raster_options(p)
    p.add_argument(
        "--slice-scale",
        default=None,
        metavar="SCALE|sam",
        help="enlarge tiles at most SCALE times into the model input; 'sam': until they fill "
        f"it (default: {DEFAULT_SLICE_SCALE:g} for volumes, sam for 2D images)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a cache made for other inputs")
    p.add_argument(
        "--cache-encoding",
        choices=("float16", "q8"),
        default="float16",
        help="how a new cache stores embeddings: float16, or q8 (8 bits, about half the size)",
    )


def add_raster_options(p: argparse.ArgumentParser) -> None:
    """``--bands``, ``--nodata``, ``--crs`` and ``--resolution`` of a raster GDAL reads."""
    group = p.add_argument_group("georeferenced rasters (read by GDAL)")
    group.add_argument(
        "--bands", default=None, metavar="B[,G,R]", help="bands to read, 1-based, e.g. 4,3,2"
    )
    group.add_argument(
        "--nodata", type=float, default=None, help="the nodata value (default: the file's)"
    )
    group.add_argument(
        "--crs", default=None, help="read the scene reprojected to this CRS, e.g. EPSG:32633"
    )
    group.add_argument(
        "--resolution", type=float, default=None, help="pixel size of the reprojection (CRS units)"
    )


def open_source(args: argparse.Namespace) -> ImageSource:
    """The image of `args` (``--axes``, ``--series`` and the raster options applied)."""
    from tilesam.io import open_image

    series = int(args.series) if args.series and args.series.isdigit() else args.series
    raster = {
        "bands": _band_numbers(args.bands),
        "nodata": args.nodata,
        "crs": args.crs,
        "resolution": args.resolution,
    }
    return open_image(args.image, axes=args.axes, series=series, **raster)


def make_session(
    args: argparse.Namespace, cache: str | None, source: ImageSource | None = None
) -> Session:
    """A session over `source` (default: the image of `args`) with the session options."""
    from tilesam.segment.session import Session

    use_threads(args.threads)
    intensity = parse_numbers(args.intensity, (2,), "low,high") if args.intensity else None
    window = args.window
    if window is not None and "," in window:
        window = tuple(parse_numbers(window, (2,), "width,level"))
    return Session(
        open_source(args) if source is None else source,
        args.model,
        cache,
        tile_size=args.tile,
        halo=args.halo,
        intensity=intensity,
        window=window,
        checkpoint=args.checkpoint,
        device=args.device,
        trust_checkpoint=args.trust_checkpoint,
        precision=args.precision,
        overwrite=args.overwrite,
        progress=True,
        slice_scale=_slice_scale(args.slice_scale),
        cache_encoding=args.cache_encoding,
    )


def use_threads(threads: int | None) -> None:
    """Give the model `threads` CPU threads (None: torch's default). Set in the environment
    when torch is not imported yet, so that a command that never needs it does not load it.
    """
    if threads is None:
        return
    if threads < 1:
        raise TileSAMError(f"--threads must be a whole number >= 1, got {threads}.")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


def _band_numbers(text: str | None) -> list[int] | None:
    """``--bands 4,3,2`` as ``[4, 3, 2]``.

    >>> _band_numbers("4,3,2"), _band_numbers(None)
    ([4, 3, 2], None)
    """
    if text is None:
        return None
    try:
        return [int(b) for b in text.split(",")]
    except ValueError:
        raise TileSAMError(
            f"Could not read --bands {text!r}: give band numbers, 1-based, e.g. 4,3,2."
        ) from None


def _slice_scale(text: str | None) -> float | str | None:
    if text is None:
        return "auto"  # the Session's default in every command, so that they share a cache
    if text == "sam":
        return None
    try:
        return float(text)
    except ValueError:
        raise TileSAMError(
            f"Could not read --slice-scale {text!r}: give a number (e.g. 3) or 'sam'."
        ) from None


def parse_numbers(text: str, count: tuple[int, ...], what: str) -> list[float]:
    """The comma-separated numbers of `text`, as many as one of `count`, else a clear error.

    >>> parse_numbers("3,4.5", (2,), "y,x")
    [3.0, 4.5]
    >>> parse_numbers("3", (2,), "y,x")
    Traceback (most recent call last):
    tilesam.errors.TileSAMError: Could not read y,x '3': expected Y,X numbers.
    """
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in count:
        raise TileSAMError(f"Could not read {what} {text!r}: expected {what.upper()} numbers.")
    return values
