"""napari readers and writers over the core's lazy readers, keeping physical geometry.

Reading: any file `tilesam.open_image` opens becomes an image layer whose ``scale`` is
the source's spacing and ``translate`` its origin; a pyramid becomes a multiscale layer
(napari shows the level that fits the screen; TileSAM still segments level 0). Pixels
are read lazily, region by region, through `SourceArray`. A GeoTIFF is placed by its
transform (world y = -northing, so that north is up; an ``affine`` for a rotated one) and
keeps its CRS and transform in the layer's metadata.

Which reader napari uses: napari's own reader claims every format TileSAM reads, but keeps
no geometry (and cannot read NIfTI or NRRD at all), so napari finds two readers and, unless
a preference names one, asks the user. `prefer_tilesam_reader` writes TileSAM into napari's
reader preferences (``settings.plugins.extension2reader``, *Preferences > Plugins > File
Readers*) for `READER_PATTERNS`, never over a choice the user made; it runs when napari
activates the plugin (the manifest's ``on_activate``: the first use of any TileSAM
contribution) and when the dock widget is made.

Writing: a labels layer goes to OME-Zarr (spacing and origin), or through the core's
`tilesam.write_labels` to OME-TIFF (spacing), NIfTI / NRRD / MHA with the geometry of
the source image, direction included, and GeoTIFF with the source's CRS and transform.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tilesam.io.source import ImageSource


# -- reading ---------------------------------------------------------------------------------
class SourceArray:
    """A numpy-indexable view of an `ImageSource` (canonical axes), read on demand.

    napari slices layers with tuples of ints and slices; only the region a key selects
    is read from the file.
    """

    def __init__(self, source: ImageSource) -> None:
        self.source = source
        self.shape = tuple(source.shape)
        self.dtype = source.dtype
        self.ndim = len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        data = self.source.read()
        return data if dtype is None else data.astype(dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        n = self.source.spatial_ndim
        region, after = [], []
        for k, size in zip(key[:n], self.shape[:n]):
            if isinstance(k, int | np.integer):
                k = int(k) + size if k < 0 else int(k)
                region.append(slice(k, k + 1))
                after.append(0)
            else:
                start, stop, step = k.indices(size)
                region.append(slice(start, max(start, stop)))
                after.append(slice(None, None, step))
        block = self.source.read(tuple(region))
        return block[(*after, *key[n:])]


#: napari's plugin name of TileSAM (the manifest's ``name``).
PLUGIN = "tilesam"
#: Video files, opened as lazy frames (napari's own reader decodes a whole video at once).
VIDEO_PATTERNS = ("*.mp4", "*.avi", "*.mov", "*.mkv", "*.webm", "*.m4v")
#: The files TileSAM is napari's preferred reader for: the medical volumes (spacing, origin),
#: TIFF (GeoTIFF and OME-TIFF geometry, pyramids), OME-Zarr folders (napari matches a
#: folder's preference with a trailing separator) and videos.
READER_PATTERNS = (
    "*.nii",
    "*.nii.gz",
    "*.nrrd",
    "*.nhdr",
    "*.mha",
    "*.mhd",
    "*.tif",
    "*.tiff",
    f"*.ome.zarr{os.sep}",
    *VIDEO_PATTERNS,
)


def activate(context: Any = None) -> None:
    """The manifest's ``on_activate``: npe2 calls it on the first use of any TileSAM
    contribution (widget, sample, reader, writer)."""
    prefer_tilesam_reader()


def prefer_tilesam_reader() -> list[str]:
    """Make TileSAM napari's reader for `READER_PATTERNS` where no reader preference of the
    user's matches yet; returns the patterns added.

    napari (``viewer.open(path, plugin=None)``: drag-and-drop, *File > Open*, ``napari
    file``) takes the preferred reader of a file; without one, with two readers able to
    read it (napari's own claims these formats too), it asks. A preference the user set in
    *Preferences > Plugins > File Readers*, e.g. ``*.tif`` to ``napari``, is kept. Never
    raises: a settings file that cannot be written costs only the preference.
    """
    from fnmatch import fnmatch

    try:
        from napari.settings import get_settings

        plugins = get_settings().plugins
        chosen = dict(plugins.extension2reader)
        added = [
            pattern
            for pattern in READER_PATTERNS
            # A file of this pattern that a preference of the user's already decides.
            if not any(fnmatch(f"{os.sep}probe{os.sep}x{pattern[1:]}", p) for p in chosen)
        ]
        if added:
            plugins.extension2reader = {**chosen, **dict.fromkeys(added, PLUGIN)}
        return added
    except Exception as exc:  # noqa: BLE001 - a preference is never worth a failure
        import warnings

        warnings.warn(f"TileSAM could not set napari's reader preferences: {exc}", stacklevel=2)
        return []


def napari_get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[tuple]] | None:
    """The manifest's reader: `get_reader`, and for a TIFF that TileSAM does not read (e.g.
    a 5D hyperstack) napari's own reader, so that preferring TileSAM for ``*.tif`` costs no
    TIFF its opening."""
    reader = get_reader(path)
    one = path[0] if isinstance(path, list) and len(path) == 1 else path
    if reader is None and isinstance(one, str) and Path(one).suffix.lower() in (".tif", ".tiff"):
        return _napari_read
    return reader


def _napari_read(path: str | list[str]) -> list[tuple]:
    """The file read by napari's built-in reader (through npe2, as napari would)."""
    import npe2

    paths = path if isinstance(path, list) else [path]
    return list(npe2.read(paths, plugin_name="napari", stack=False))


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[tuple]] | None:
    """The reader for `path` if the core can open it, else None (npe2 ``get_reader`` contract).

    TIFFs are opened to check (cheap: lazy, metadata only), since this plugin claims every
    ``.tif`` for GeoTIFFs' sake and some TIFFs (5D hyperstacks) are not for TileSAM; other
    formats are matched by their ending alone (opening a medical volume reads it whole).
    """
    if isinstance(path, list):
        return None if len(path) != 1 else get_reader(path[0])
    if Path(path).suffix.lower() in (".tif", ".tiff"):
        from tilesam import TileSAMError, open_image

        try:
            open_image(path).close()
        except TileSAMError:
            return None
    return read_image


def read_image(path: str | list[str]) -> list[tuple]:
    """An image layer with scale = spacing, translate = origin (multiscale for pyramids)."""
    from tilesam import open_image

    path = path[0] if isinstance(path, list) else path
    source = open_image(path)
    levels = [SourceArray(source)]
    levels += [SourceArray(open_image(path, level=i)) for i in range(1, source.n_levels)]
    geometry = {
        "spacing": list(source.spacing),
        "origin": list(source.origin),
        "shape": list(source.spatial_shape),
        "source": os.fspath(path),
    }
    placement = {"scale": tuple(source.spacing), "translate": tuple(source.origin)}
    geo = source.georeference is not None
    if geo:
        geometry["georeference"] = source.georeference.to_metadata()
        placement = source.georeference.layer_geometry()
        _show_map_coordinates()
    # Three channels are RGB, four RGBA, except in a GeoTIFF, where a fourth band is
    # usually near-infrared, not opacity; other channel counts become one layer per band.
    channels = source.n_channels if source.axes.endswith("C") else 0
    rgb = channels == 3 or (channels == 4 and not geo)
    meta = {
        "name": _stem(path),
        **placement,
        "rgb": rgb,
        "multiscale": len(levels) > 1,
        "metadata": {"tilesam_geometry": geometry},
        **({"channel_axis": source.spatial_ndim} if channels and not rgb else {}),
    }
    data = levels if len(levels) > 1 else levels[0]
    return [(data, meta, "image")]


def _show_map_coordinates() -> None:
    """Map coordinates in the status bar of the viewer opening a georeferenced image (a
    reader gets no viewer: napari's current one; none outside napari)."""
    from napari import current_viewer

    from tilesam_napari._geo import show_map_coordinates

    show_map_coordinates(current_viewer())


def _stem(path: str | os.PathLike[str]) -> str:
    name = Path(path).name
    for suffix in (".ome.tiff", ".ome.tif", ".ome.zarr", ".nii.gz"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


# -- writing ---------------------------------------------------------------------------------
def write_labels_file(path: str, data: Any, meta: dict) -> list[str]:
    """Labels as OME-TIFF (spacing), GeoTIFF or NIfTI / NRRD / MHA with the source's geometry.

    When the labels layer was made over a medical file opened by TileSAM, the file's full
    geometry (spacing, origin and direction) is written; over a GeoTIFF, a ``.tif`` is a
    GeoTIFF with its CRS and transform; otherwise the layer's scale and translate are.
    """
    from tilesam import TileSAMError
    from tilesam.io import write_labels
    from tilesam.io.geo import GeoReference

    ndim = len(data.shape)
    like = _medical_source(meta, data.shape)
    drawn_over = meta.get("metadata", {}).get("tilesam_geometry", {})
    geo = drawn_over.get("georeference")
    if geo is not None and list(data.shape) != drawn_over["shape"]:
        raise TileSAMError(
            f"These labels ({'x'.join(map(str, data.shape))}) do not fit the GeoTIFF grid they "
            f"carry ({'x'.join(map(str, drawn_over['shape']))} pixels, from "
            f"'{drawn_over['source']}'): save labels drawn over that image, or remove "
            "'tilesam_geometry' from the layer's metadata to save them without a georeference."
        )
    if like is not None:
        written = write_labels(path, np.asarray(data), like=like)
    elif geo is not None:
        written = write_labels(path, np.asarray(data), georeference=GeoReference.from_metadata(geo))
    else:
        written = write_labels(
            path, np.asarray(data), spacing=_scale(meta, ndim), origin=_translate(meta, ndim)
        )
    return [str(written)]


def write_ome_zarr(path: str, data: Any, meta: dict) -> list[str]:
    """Labels as an OME-Zarr 0.5 image with scale and origin: the core's writer, chunk by
    chunk (lazy labels on disk never load whole) and atomically.

    Only an OME-Zarr image is replaced: any other folder or file at `path` (an embedding
    cache, the store of the committed objects themselves) is refused and left as it is.
    """
    from tilesam import TileSAMError
    from tilesam.io.atomic import atomic_output
    from tilesam.io.ome_zarr import holds_ome_image
    from tilesam.io.ome_zarr import write_ome_zarr as write

    target = Path(path)
    if os.path.lexists(target) and not (target.is_dir() and holds_ome_image(target)):
        raise TileSAMError(
            f"'{target}' exists and is not an OME-Zarr image (it may be an embedding cache "
            "or TileSAM's store of committed objects): it is left as it is. Save the labels "
            "under another name."
        )
    ndim = len(data.shape)
    with atomic_output(path) as partial:
        write(partial, data, spacing=_scale(meta, ndim), origin=_translate(meta, ndim))
    return [path]


def _medical_source(meta: dict, shape: tuple[int, ...]):
    """The medical file the labels were drawn over (same shape), to copy its geometry."""
    from tilesam.io import MedicalSource, open_image

    source = meta.get("metadata", {}).get("tilesam_geometry", {}).get("source")
    if not source or not Path(source).exists():
        return None
    like = open_image(source)
    if not isinstance(like, MedicalSource) or like.spatial_shape != tuple(shape):
        return None
    return like


def _scale(meta: dict, ndim: int) -> tuple[float, ...]:
    return tuple(float(v) for v in meta.get("scale", (1.0,) * ndim))[-ndim:]


def _translate(meta: dict, ndim: int) -> tuple[float, ...]:
    return tuple(float(v) for v in meta.get("translate", (0.0,) * ndim))[-ndim:]
