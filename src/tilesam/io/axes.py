"""Axis orders: the canonical layouts a source reports, and how an array's own ("native")
axis order maps onto them: channels last, time as the slice axis, singleton axes dropped.

>>> layout = AxisLayout("CYX", (3, 50, 60), "array")
>>> layout.axes, layout.shape
('YXC', (50, 60, 3))
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tilesam.errors import TileSAMError

#: The canonical layouts a source can report.
AXES = ("YX", "YXC", "ZYX", "ZYXC")


class AxisLayout:
    """Maps a stored ("native") axis order onto the canonical one, lazily.

    `native` uses ``Z``, ``Y``, ``X``, ``C``, ``T`` (time) and ``-`` for a singleton axis to
    drop. Time has no canonical axis of its own: it becomes the slice axis ``Z`` (see
    `map_time`), and ``time`` then says that the slices are time points.
    """

    def __init__(self, native: str, native_shape: tuple[int, ...], what: str) -> None:
        if len(native) != len(native_shape):
            raise TileSAMError(
                f"{what}: axes {native!r} do not match the data's {len(native_shape)} "
                f"dimensions {native_shape}; pass axes= with one letter per dimension."
            )
        mapped = map_time(native, native_shape, what)
        self.time = "T" in native and mapped[native.index("T")] == "Z"
        native = mapped
        for letter in "ZYXC":
            if native.count(letter) > 1:
                raise TileSAMError(f"{what}: axis {letter!r} appears twice in {native!r}.")
        if "Y" not in native or "X" not in native:
            raise TileSAMError(f"{what}: axes {native!r} need both 'Y' and 'X'.")
        bad = set(native) - set("ZYXC-")
        if bad:
            raise TileSAMError(
                f"{what}: unknown axis letter(s) {sorted(bad)} in {native!r}; "
                "use Z, Y, X, C (channels) and T (time)."
            )
        for letter, n in zip(native, native_shape, strict=True):
            if letter == "-" and n != 1:
                raise TileSAMError(f"{what}: cannot drop axis of size {n} in {native_shape}.")
        self.native = native
        kept = [a for a in native if a != "-"]
        self.axes = "".join(a for a in "ZYXC" if a in kept)
        self.shape = tuple(native_shape[native.index(a)] for a in self.axes)
        # Permutation from the kept native order to the canonical order.
        self._perm = tuple(kept.index(a) for a in self.axes)

    def index(self, region: tuple[slice, ...], axes: str) -> tuple[Any, ...]:
        """Native index tuple for a canonical spatial region."""
        by_axis = dict(zip(axes.replace("C", ""), region, strict=True))
        return tuple(0 if a == "-" else by_axis.get(a, slice(None)) for a in self.native)

    def to_canonical(self, block: np.ndarray) -> np.ndarray:
        if self._perm != tuple(range(len(self._perm))):
            block = np.transpose(block, self._perm)
        return np.ascontiguousarray(block)


def map_time(native: str, shape: tuple[int, ...], what: str) -> str:
    """Map a time axis ``T`` onto the slice axis, so that walking slices walks time.

    A single time point is dropped; otherwise ``T`` becomes ``Z`` when there is no z
    axis, or only a singleton one (dropped). A series of volumes (``T`` and ``Z`` both longer than
    1) is refused: TileSAM walks one slice axis, so choose a z plane or a time point.

    >>> map_time("TYX", (12, 64, 80), "clip"), map_time("TYXC", (12, 64, 80, 3), "clip")
    ('ZYX', 'ZYXC')
    >>> map_time("TZYX", (12, 1, 64, 80), "clip"), map_time("TZYX", (1, 9, 64, 80), "stack")
    ('Z-YX', '-ZYX')
    """
    if "T" not in native:
        return native
    if native.count("T") > 1:
        raise TileSAMError(f"{what}: axis 'T' appears twice in {native!r}.")
    t, z = native.index("T"), native.find("Z")
    if shape[t] == 1:
        return native.replace("T", "-")
    if z < 0:
        return native.replace("T", "Z")
    if shape[z] == 1:
        return native.replace("Z", "-").replace("T", "Z")
    raise TileSAMError(
        f"{what}: axes {native!r} (shape {tuple(shape)}) hold {shape[t]} time points of "
        f"{shape[z]}-slice volumes; TileSAM walks one slice axis, time or z. Track one z "
        f"plane through time: pass array[:, z] with axes={native.replace('Z', '')!r}; or "
        f"segment one time point as a volume: pass array[t] with "
        f"axes={native.replace('T', '')!r}."
    )


def guess_axes(shape: tuple[int, ...]) -> str:
    """Guess the axes of an array from its shape: a last axis of 2 to 4 is taken for
    channels (no slice is 2 pixels wide), a last axis of 1 for a single channel (``-``:
    dropped).

    >>> guess_axes((512, 512, 3)), guess_axes((40, 512, 512)), guess_axes((9, 64, 64, 4))
    ('YXC', 'ZYX', 'ZYXC')
    >>> guess_axes((512, 512, 2))  # two fluorescence channels
    'YXC'
    >>> guess_axes((512, 640, 1)), guess_axes((9, 64, 64, 1))
    ('YX-', 'ZYX-')
    """
    nd = len(shape)
    if nd == 2:
        return "YX"
    if nd == 3 and shape[-1] == 1:
        return "YX-"
    if nd == 3:
        return "YXC" if shape[-1] in (2, 3, 4) else "ZYX"
    if nd == 4:
        return "ZYX-" if shape[-1] == 1 else "ZYXC"
    raise TileSAMError(
        f"Cannot guess the axes of a {nd}D array of shape {shape}: TileSAM reads YX, YXC, "
        "ZYX or ZYXC images. Select a time point or channel first, or pass axes= "
        "(e.g. axes='CZYX', or axes='TYXC' for a time series: time becomes the slice axis)."
    )
