"""`AxisView`: a volume seen along another axis, so that its slices are that axis's planes.

Sessions, caches and propagation work on z slices of a ``ZYX`` source. To work on coronal
(``axis=1``) or sagittal (``axis=2``) planes, the volume is viewed with that axis first and
the other two in their order: view ``(a, b, c)`` is source index ``(b, a, c)`` for axis 1
and ``(b, c, a)`` for axis 2. A view's slice is read from the source as one plane.
"""

from __future__ import annotations

import numpy as np

from tilesam.errors import TileSAMError
from tilesam.io.source import ImageSource, Region


def view_order(axis: int) -> tuple[int, int, int]:
    """Source axes in view order: the chosen axis first, the others as they were.

    >>> view_order(0), view_order(1), view_order(2)
    ((0, 1, 2), (1, 0, 2), (2, 0, 1))
    """
    if axis not in (0, 1, 2):
        raise TileSAMError(
            f"axis must be 0, 1 or 2 (the volume axis whose planes are segmented), got {axis!r}."
        )
    return (axis, *(a for a in range(3) if a != axis))


class AxisView(ImageSource):
    """A ``ZYX`` / ``ZYXC`` source with its axis `axis` moved first (see the module).

    Examples
    --------
    >>> from tilesam.io import ArraySource
    >>> vol = np.arange(30).reshape(2, 3, 5)
    >>> view = AxisView(ArraySource(vol), axis=2)
    >>> view.shape, bool((view.read_slice(1) == vol[:, :, 1]).all())
    ((5, 2, 3), True)
    """

    def __init__(self, source: ImageSource, axis: int) -> None:
        if source.spatial_ndim != 3:
            raise TileSAMError(f"{source.describe()} is not a volume; it has no axis {axis}.")
        self.base = source
        self.axis = axis
        self.order = view_order(axis)
        channels = source.shape[3:]
        self._shape = (*(source.shape[a] for a in self.order), *channels)
        self._dtype = source.dtype
        self._axes = source.axes
        self._spacing = tuple(source.spacing[a] for a in self.order)
        self._origin = tuple(source.origin[a] for a in self.order)

    def _read(self, region: Region) -> np.ndarray:
        native: list[slice] = [slice(None)] * 3
        for view_axis, source_axis in enumerate(self.order):
            native[source_axis] = region[view_axis]
        block = self.base.read(tuple(native))
        # Source order back to view order; channels stay last.
        return np.ascontiguousarray(np.moveaxis(block, self.order, (0, 1, 2)))

    def describe(self) -> str:
        return f"{self.base.describe()} seen along axis {self.axis}"

    def close(self) -> None:
        self.base.close()
