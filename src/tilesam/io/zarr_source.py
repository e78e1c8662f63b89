"""Zarr arrays and OME-Zarr (OME-NGFF 0.4 on zarr v2, 0.5 on zarr v3) multiscale images."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import zarr

from tilesam.errors import TileSAMError
from tilesam.io.array_source import LayoutSource
from tilesam.io.axes import guess_axes


class ZarrSource(LayoutSource):
    """A zarr array, or one level of an OME-Zarr multiscale group.

    Parameters
    ----------
    store : str, Path, zarr.Array or zarr.Group
        A folder holding a zarr array or group (v2 or v3), or an opened node.
    axes : str, optional
        Stored axis order (``Z``, ``Y``, ``X``, ``C``, one letter per dimension), to
        override the OME-NGFF axes or the guess for plain arrays (see `guess_axes`).
    level : int
        Multiscale level (index into ``datasets``), 0 = full resolution.

    Notes
    -----
    For OME-Zarr, axes come from ``multiscales[0].axes`` (``space`` axes named z/y/x,
    ``channel`` axes become channels, a ``time`` axis must have length 1), spacing and
    origin from the dataset's ``scale``/``translation`` transformations composed with the
    multiscale-level ones. A group without ``multiscales`` that holds exactly one array
    is read as that array.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "stack.zarr"
    >>> z = zarr.create_array(path, shape=(2, 64, 64), chunks=(1, 32, 32), dtype="uint16")
    >>> z[1] = 7
    >>> src = ZarrSource(path)
    >>> src.axes, src.n_slices, src.slice_shape, int(src.read_slice(1).max())
    ('ZYX', 2, (64, 64), 7)
    """

    def __init__(
        self,
        store: str | os.PathLike[str] | zarr.Array | zarr.Group,
        *,
        axes: str | None = None,
        level: int = 0,
    ) -> None:
        self.path = None if isinstance(store, zarr.Array | zarr.Group) else Path(store)
        self._kwargs = {"axes": axes, "level": level}
        node = self._open_node(store)
        what = f"zarr '{self.path}'" if self.path is not None else "zarr node"
        spacing = origin = native = None
        if isinstance(node, zarr.Group):
            node, native, spacing, origin = self._from_group(node, level, what)
        else:
            _check_level(level, 1, what)
        if axes is not None:
            native = axes.upper()
        elif native is None:
            native = guess_axes(tuple(node.shape))
        self._init_layout(node, native, what, spacing=spacing, origin=origin)

    def _open_node(self, store: Any) -> zarr.Array | zarr.Group:
        if self.path is None:
            return store
        try:
            return zarr.open(self.path, mode="r")
        except Exception as exc:  # noqa: BLE001 - zarr raises many types for bad stores
            raise TileSAMError(
                f"Cannot open '{self.path}' as zarr: {exc}. Check that the folder is a "
                "complete zarr array or OME-Zarr image (zarr.json, or .zarray/.zgroup)."
            ) from exc

    def _from_group(
        self, group: zarr.Group, level: int, what: str
    ) -> tuple[zarr.Array, str | None, list[float] | None, list[float] | None]:
        attrs = dict(group.attrs)
        if "bioformats2raw.layout" in attrs or "bioformats2raw.layout" in attrs.get("ome", {}):
            # bioformats2raw output: the images are the groups "0", "1", ...; read the first.
            return self._from_group(group["0"], level, what)
        ms_list = attrs.get("ome", {}).get("multiscales") or attrs.get("multiscales")
        if not ms_list:
            arrays = sorted(group.array_keys())
            if len(arrays) != 1:
                members = sorted(group.keys())
                raise TileSAMError(
                    f"{what} is a zarr group without OME-Zarr 'multiscales' metadata and holds "
                    f"{len(arrays)} arrays (members: {members}); open one of them as "
                    "'<group>/<name>'."
                )
            _check_level(level, 1, what)
            return group[arrays[0]], None, None, None
        ms = ms_list[0]
        datasets = ms.get("datasets", [])
        self.n_levels = len(datasets)
        _check_level(level, self.n_levels, what)
        self.level = level
        ds = datasets[level]
        try:
            array = group[ds["path"]]
        except KeyError as exc:
            raise TileSAMError(
                f"{what}: multiscale level {level} names the array '{ds['path']}', which does "
                "not exist. The OME-Zarr image is incomplete; write or copy it again."
            ) from exc
        nd = len(array.shape)
        native, spatial_idx = _ngff_axes(ms.get("axes"), tuple(array.shape), what)
        scale, trans = _compose(ds.get("coordinateTransformations"),
                                ms.get("coordinateTransformations"), nd)  # fmt: skip
        spacing = [scale[i] for i in spatial_idx]
        origin = [trans[i] for i in spatial_idx]
        return array, native, spacing, origin

    def describe(self) -> str:
        where = f"'{self.path}'" if self.path is not None else "node"
        return f"zarr {where} ({self._axes} {self._shape} {self._dtype}, level {self.level})"

    def __getstate__(self) -> dict[str, Any]:
        # Sent to dask workers by path: each reopens the store itself.
        if self.path is None:
            return self.__dict__
        return {"_reopen": (Path(self.path).absolute(), self._kwargs)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "_reopen" in state:
            path, kwargs = state["_reopen"]
            self.__init__(path, **kwargs)  # type: ignore[misc]
        else:
            self.__dict__.update(state)


def _check_level(level: int, n: int, what: str) -> None:
    if not 0 <= level < n:
        raise TileSAMError(
            f"{what} has {n} resolution level(s); level={level} does not exist (valid: 0..{n - 1})."
        )


def _ngff_axes(axes: Any, shape: tuple[int, ...], what: str) -> tuple[str, list[int]]:
    """OME-NGFF axes -> our native letters and the indices of the spatial axes."""
    nd = len(shape)
    if axes is None:  # NGFF <= 0.3 had no axes: by convention the last ones are (t, c, z,) y, x
        names = ["t", "c", "z", "y", "x"][5 - nd :]
        axes = [{"name": n} for n in names]
    if len(axes) != nd:
        raise TileSAMError(f"{what}: {len(axes)} axes in metadata but the array is {nd}D.")
    native, spatial = [], []
    for i, ax in enumerate(axes):
        name = (ax if isinstance(ax, str) else ax.get("name", "")).lower()
        kind = "" if isinstance(ax, str) else ax.get("type", "")
        if name in ("z", "y", "x"):
            native.append(name.upper())
            spatial.append(i)
        elif kind == "channel" or name == "c":
            native.append("C" if shape[i] > 1 else "-")
        elif shape[i] == 1:
            native.append("-")
        else:
            raise TileSAMError(
                f"{what}: axis '{name}' has length {shape[i]}; TileSAM reads one time point "
                "of (z,) y, x (plus channels). Export a single time point, or pass axes=."
            )
    return "".join(native), spatial


def _compose(ds_tf: Any, ms_tf: Any, nd: int) -> tuple[list[float], list[float]]:
    """Scale and translation from dataset- then multiscale-level transformations."""
    scale, trans = [1.0] * nd, [0.0] * nd
    for tfs in (ds_tf, ms_tf):
        for tf in tfs or []:
            if tf.get("type") == "scale" and "scale" in tf:
                scale = [s * f for s, f in zip(scale, tf["scale"], strict=True)]
                trans = [t * f for t, f in zip(trans, tf["scale"], strict=True)]
            elif tf.get("type") == "translation" and "translation" in tf:
                trans = [t + d for t, d in zip(trans, tf["translation"], strict=True)]
    return scale, trans
