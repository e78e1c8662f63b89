"""Annotated images on disk: pairs of an image and its instance label image.

Matching rule
-------------
Files are matched by *key*, derived from the file name without its extension
(``.tif``, ``.tiff``, ``.png``; ``.nii``/``.nii.gz`` too when SimpleITK is
installed; other files are ignored):

- a label file's key is its stem without a trailing ``_labels``, ``_label``,
  ``_masks`` or ``_mask`` (a stem that is only ``labels``/``label``/``masks``/
  ``mask`` has the empty key);
- an image file's key is its stem without a trailing ``_image`` or ``_img``
  (a stem that is only ``image``/``img`` has the empty key), and an image also
  matches a label file whose key is its full stem.

In a separate label folder, a label file also matches by its full stem. So
``cell1.tif`` pairs with ``cell1.tif`` in a separate label folder or with
``cell1_labels.png``/``cell1_label.tif``/``cell1_mask.png``; ``X_image.png``
pairs with ``X_labels.png`` (the layout of the Coelho 2009 nuclei set) and
``image.tif`` with ``labels.tif``. When ``images`` and ``labels`` are the same
folder, files with a label suffix are labels and all others are images. More
than one candidate label file for an image is an error. ``images`` and
``labels`` may also be two files, which makes a dataset of one pair.

Every image needs its labels; label files without an image are ignored.

Intensities
-----------
Each image is scaled to the encoder's range as a :class:`tilesam.Session` opened on its file
scales it (:func:`tilesam.cache.normalisation.image_normalisation`: a georeferenced
multi-band raster band by band over the scene, other images over one range), so a score is
what a user of that file gets; the choice travels with the item
(:attr:`LabelledImage.normalisation`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tilesam.cache.normalisation import image_normalisation, intensity_of
from tilesam.errors import TileSAMError
from tilesam.io import open_image
from tilesam.io.picture import PICTURE_SUFFIXES, picture_shape, read_picture

__all__ = ["LabelledImage", "LabelledImageFolder"]

_LABEL_SUFFIXES = ("_labels", "_label", "_masks", "_mask")
_IMAGE_SUFFIXES = ("_image", "_img")
_EXTENSIONS = (".tif", ".tiff", *PICTURE_SUFFIXES)
_NIFTI = (".nii.gz", ".nii")


@dataclass(frozen=True)
class LabelledImage:
    """One annotated image.

    Attributes
    ----------
    image : ndarray
        As read: ``(H, W)`` grayscale, ``(H, W, 3)`` RGB (an alpha channel is
        dropped), or ``(Z, Y, X)`` for a volume. A TIFF stored as ``(3, H, W)``
        (planar colour) is read as a volume of three slices.
    labels : ndarray of uint32
        Instance labels of the image's spatial shape, 0 = background.
    name : str
        The image file's stem, unique within its dataset.
    normalisation : dict, optional
        How a :class:`tilesam.Session` opened on the image's file maps it to the encoder's
        range (its cache signature's entry, e.g. ``{"method": "percentiles-per-band", ...}``).
        None (an image given as an array): the image's own range, as
        :meth:`tilesam.SamModel.embed` takes it.
    """

    image: np.ndarray
    labels: np.ndarray
    name: str
    normalisation: dict[str, Any] | None = None

    @property
    def intensity(self) -> tuple[Any, Any] | None:
        """The ``(low, high)`` sent to the encoder with the image (one per band for
        ``"percentiles-per-band"``); None: the image's own range."""
        return None if self.normalisation is None else intensity_of(self.normalisation)


@dataclass(frozen=True)
class _Pair:
    name: str
    image: Path
    labels: Path


def _extensions() -> tuple[str, ...]:
    if importlib.util.find_spec("SimpleITK") is None:
        return _EXTENSIONS
    return _EXTENSIONS + _NIFTI


def _split_name(path: Path) -> tuple[str, str] | None:
    """``(stem, extension)`` for a supported file, lower-cased extension; None otherwise."""
    name = path.name
    for ext in _extensions():
        if name.lower().endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)], ext
    return None


def _strip(stem: str, suffixes: tuple[str, ...]) -> str | None:
    """The key left after removing one of ``suffixes`` (or the bare word), else None."""
    for suffix in suffixes:
        if stem.lower() == suffix[1:]:
            return ""
        if stem.lower().endswith(suffix):
            return stem[: -len(suffix)]
    return None


def _list(folder: Path) -> list[tuple[str, Path]]:
    files = (p for p in sorted(folder.iterdir()) if p.is_file())
    return [(split[0], p) for p in files if (split := _split_name(p)) is not None]


def _find_pairs(images: Path, labels: Path) -> list[_Pair]:
    same = images.resolve() == labels.resolve()
    by_key: dict[str, list[Path]] = {}
    for stem, path in _list(labels):
        key = _strip(stem, _LABEL_SUFFIXES)
        keys = {stem if key is None else key}
        if not same:  # a separate label folder may also reuse the image's name as is
            keys.add(stem)
        for k in keys:
            by_key.setdefault(k, []).append(path)
    image_files = [
        (stem, p) for stem, p in _list(images) if not same or _strip(stem, _LABEL_SUFFIXES) is None
    ]
    if not image_files:
        raise TileSAMError(
            f"No images found in {images} (looked for {', '.join(_extensions())}); "
            "check the folder, or convert the images to TIFF or PNG."
        )
    _check_unique_stems(image_files, images)
    return [_pair_for(stem, path, by_key, labels, same) for stem, path in image_files]


def _check_unique_stems(files: list[tuple[str, Path]], folder: Path) -> None:
    seen: dict[str, Path] = {}
    for stem, path in files:
        if stem in seen:
            raise TileSAMError(
                f"Two images in {folder} have the same name {stem!r}: {seen[stem].name} and "
                f"{path.name}. Keep one of them, or rename one."
            )
        seen[stem] = path


def _pair_for(
    stem: str, path: Path, by_key: dict[str, list[Path]], labels: Path, same: bool
) -> _Pair:
    keys = {stem}
    stripped = _strip(stem, _IMAGE_SUFFIXES)
    if stripped is not None:
        keys.add(stripped)
    found = sorted({p for key in keys for p in by_key.get(key, []) if p != path})
    if not found:
        where = "beside it" if same else f"in {labels}"
        also = "" if same else f", or {stem} itself"
        raise TileSAMError(
            f"No label image for {path} {where}: expected {stem}_labels (or _label, _mask, "
            f"_masks){also}, as .tif or .png."
        )
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise TileSAMError(f"Several label images match {path.name}: {names}. Keep one.")
    return _Pair(stem, path, found[0])


def _read_array(path: Path, *, labels: bool = False) -> np.ndarray:
    ext = _split_name(path)[1]
    if ext in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(path)
    if ext in PICTURE_SUFFIXES:
        return read_picture(path, labels=labels)
    import SimpleITK as sitk  # only reached when installed, see _extensions

    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _header_shape(path: Path) -> tuple[int, ...]:
    """The shape :func:`_read_array` would return, read from the header where possible."""
    ext = _split_name(path)[1]
    if ext in (".tif", ".tiff"):
        import tifffile

        with tifffile.TiffFile(path) as tif:
            return tuple(tif.series[0].shape)
    if ext in PICTURE_SUFFIXES:
        return picture_shape(path)
    return _read_array(path).shape


def _is_colour(shape: tuple[int, ...], path: Path) -> bool:
    """Whether the last axis holds colour channels: RGB(A), or gray + alpha in a PNG."""
    channels = (2, 3, 4) if _split_name(path)[1] in PICTURE_SUFFIXES else (3, 4)
    return len(shape) >= 3 and shape[-1] in channels


def _spatial_shape(shape: tuple[int, ...], path: Path) -> tuple[int, ...]:
    return shape[:-1] if _is_colour(shape, path) else shape


def _drop_alpha(image: np.ndarray, path: Path) -> np.ndarray:
    if not _is_colour(image.shape, path):
        return image
    if image.shape[-1] == 2:
        return image[..., 0]
    return image[..., :3]


def _session_normalisation(path: Path, image: np.ndarray) -> dict[str, Any]:
    """The normalisation a session opened on `path` chooses for `image`, the file as read
    here: a raster of more bands than kept (a fourth taken for alpha) as opened with those
    bands (``bands=(1, 2, 3)``)."""
    channels = image.shape[-1] if _is_colour(image.shape, path) else 1
    with open_image(path) as source:
        if source.georeference is None or source.n_channels == channels:
            return image_normalisation(source)
    with open_image(path, bands=tuple(range(1, channels + 1))) as source:
        return image_normalisation(source)


def _as_labels(array: np.ndarray, path: Path) -> np.ndarray:
    """Instance labels as uint32, or a TileSAMError saying what is wrong with the file."""
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if _is_colour(array.shape, path) or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise TileSAMError(
            f"{path} is not an instance label image: expected one channel of integer ids "
            f"(0 = background), got shape {array.shape} and dtype {array.dtype}."
        )
    if array.size and (array.min() < 0 or array.max() > np.iinfo(np.uint32).max):
        raise TileSAMError(f"{path} has label ids outside 0..2**32-1; relabel it from 0 up.")
    if np.issubdtype(array.dtype, np.floating) and not np.array_equal(array, np.round(array)):
        raise TileSAMError(f"{path} holds fractional values; save integer label ids instead.")
    return array.astype(np.uint32)


def _file_pair(image: Path, labels: Path) -> _Pair:
    for path in (image, labels):
        if _split_name(path) is None:
            raise TileSAMError(f"{path} is not a supported file: use {', '.join(_extensions())}.")
    return _Pair(_split_name(image)[0], image, labels)


def _readable(read: Callable[..., Any], path: Path, **kwargs: Any) -> Any:
    """`read(path)`, with a file that cannot be read named as a `TileSAMError`."""
    try:
        return read(path, **kwargs)
    except Exception as exc:  # noqa: BLE001 - every reader raises its own types
        raise TileSAMError(
            f"Cannot read {path} ({exc}): check that it is a complete image file, or move it "
            "out of the folder."
        ) from exc


def _check_pair(pair: _Pair) -> int:
    """Check a pair against its files; returns the image's spatial dimensionality."""
    shape = _spatial_shape(_readable(_header_shape, pair.image), pair.image)
    labels = _as_labels(_readable(_read_array, pair.labels, labels=True), pair.labels)
    if labels.shape != shape:
        raise TileSAMError(
            f"Label image {pair.labels} has shape {labels.shape} but its image {pair.image} "
            f"has shape {shape}: they must cover the same pixels. Check that the right files "
            "are paired, or resample the labels."
        )
    if not labels.any():
        raise TileSAMError(
            f"Label image {pair.labels} has no objects (every pixel is 0). Annotate it, or "
            f"move {pair.image.name} and its label image out of the folder."
        )
    return len(shape)


def _common_ndim(pairs: Sequence[_Pair], ndims: Sequence[int]) -> int:
    if len(set(ndims)) > 1:
        examples = {n: p.image.name for p, n in zip(pairs, ndims, strict=True)}
        listed = ", ".join(f"{name} ({n}D)" for n, name in sorted(examples.items()))
        raise TileSAMError(
            f"The folder mixes images of different dimensionality, e.g. {listed}. "
            "Keep 2D images and 3D volumes in separate folders."
        )
    return ndims[0]


class LabelledImageFolder(Sequence[LabelledImage]):
    """Images and their instance label images, paired by file name.

    See the module documentation for the matching rule. All pairs are checked
    on construction (each label file is read once); items are read from disk
    on access, so memory holds one image at a time.

    Parameters
    ----------
    images : path
        Folder of images (TIFF, PNG), or one image file.
    labels : path, optional
        Folder (or file) of label images: 0 = background, 1..n objects. The
        images' folder when left out.

    Raises
    ------
    TileSAMError
        No images; an image without labels; a label image of another size than
        its image, with no objects, or not made of integer ids; 2D images and
        3D volumes in one folder.

    Examples
    --------
    >>> import tempfile
    >>> from tilesam.training.synthetic import write_synthetic_folder
    >>> folder = tempfile.mkdtemp()
    >>> paths = write_synthetic_folder(folder, ("nuclei",), count=4, side=96, max_zoom=1)
    >>> sorted(p.name for p in paths[0].parent.iterdir())[:4]  # images and labels, by name
    ['nuclei000.tif', 'nuclei000_labels.tif', 'nuclei001.tif', 'nuclei001_labels.tif']
    >>> data = LabelledImageFolder(folder)
    >>> data
    LabelledImageFolder(4 images, 2D)
    >>> item = data[1]
    >>> item.name, item.image.shape, item.labels.dtype, int(item.labels.max())  # 27 nuclei
    ('nuclei001', (96, 96), dtype('uint32'), 27)
    """

    def __init__(self, images: str | Path, labels: str | Path | None = None) -> None:
        images = Path(images)
        labels = images if labels is None else Path(labels)
        for path in (images, labels):
            if not path.exists():
                raise TileSAMError(f"{path} does not exist; give an existing folder or file.")
        if images.is_file() and labels.is_file():
            pairs = [_file_pair(images, labels)]
        elif images.is_dir() and labels.is_dir():
            pairs = _find_pairs(images, labels)
        else:
            raise TileSAMError(f"Give two folders or two files, not a mix: {images} and {labels}.")
        self._pairs = pairs
        self.ndim = _common_ndim(pairs, [_check_pair(p) for p in pairs])

    @classmethod
    def _subset(cls, pairs: list[_Pair], ndim: int) -> LabelledImageFolder:
        subset = cls.__new__(cls)
        subset._pairs, subset.ndim = pairs, ndim
        return subset

    def __len__(self) -> int:
        return len(self._pairs)

    def __getitem__(self, index: int | slice) -> LabelledImage:  # type: ignore[override]
        """The item at ``index`` (read from disk), or a subset for a slice."""
        if isinstance(index, slice):
            return self._subset(self._pairs[index], self.ndim)
        pair = self._pairs[index]
        image = _drop_alpha(_read_array(pair.image), pair.image)
        labels = _as_labels(_read_array(pair.labels, labels=True), pair.labels)
        normalisation = _session_normalisation(pair.image, image)
        return LabelledImage(image, labels, pair.name, normalisation)

    def __iter__(self) -> Iterator[LabelledImage]:
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        return f"LabelledImageFolder({len(self)} images, {self.ndim}D)"

    @property
    def names(self) -> list[str]:
        """The images' names (file stems), in dataset order."""
        return [p.name for p in self._pairs]

    @property
    def files(self) -> list[tuple[Path, Path]]:
        """``(image, labels)`` file paths, in dataset order."""
        return [(p.image, p.labels) for p in self._pairs]

    def split(
        self, fraction: float = 0.2, seed: int = 0
    ) -> tuple[LabelledImageFolder, LabelledImageFolder]:
        """Split by image into ``(train, validation)`` subsets.

        Parameters
        ----------
        fraction : float
            Share of the images that go to validation, rounded, at least one
            image on each side.
        seed : int
            The same seed and folder contents give the same split.

        Examples
        --------
        >>> import tempfile
        >>> from tilesam.training.synthetic import write_synthetic_folder
        >>> paths = write_synthetic_folder(tempfile.mkdtemp(), ("cells",), count=5, side=32)
        >>> data = LabelledImageFolder(paths[0].parent)
        >>> train, validation = data.split(0.2, seed=0)
        >>> len(train), len(validation), set(train.names).isdisjoint(validation.names)
        (4, 1, True)
        >>> data.split(0.2, seed=0)[1].names == validation.names  # same seed, same split
        True
        """
        if not 0 < fraction < 1 or len(self) < 2:
            raise TileSAMError(
                f"Cannot split {len(self)} image(s) with fraction {fraction}: need at least "
                "two images and 0 < fraction < 1."
            )
        n_val = min(max(round(fraction * len(self)), 1), len(self) - 1)
        order = np.random.default_rng(seed).permutation(len(self))
        val = set(order[:n_val].tolist())
        train = [p for i, p in enumerate(self._pairs) if i not in val]
        validation = [p for i, p in enumerate(self._pairs) if i in val]
        return self._subset(train, self.ndim), self._subset(validation, self.ndim)
