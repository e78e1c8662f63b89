"""`Prompt`: what a user says about one object on one 2D image or slice, in image pixels.

Every face of TileSAM builds its prompts here and nowhere else: the Python API
(:meth:`tilesam.SamModel.predict`, :meth:`tilesam.Session.segment`), the command line,
the napari plugin, slice-to-slice propagation and the evaluation's simulated clicks. One
validator (:meth:`Prompt.make`) checks them, with one set of messages.

Coordinates are array-index order, like numpy and napari: points ``(y, x)``, boxes
``(y0, x0, y1, x1)`` end-exclusive. Only SAM's decoders speak ``(x, y)`` in the model
input's frame: :mod:`tilesam.decode.sam_prompt` converts, and is the only place that does.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from tilesam.errors import TileSAMError, TileSAMWarning

Box = tuple[float, float, float, float]


def _no_points() -> np.ndarray:
    return np.zeros((0, 2), dtype=np.float64)


@dataclass(frozen=True, eq=False)
class Prompt:
    """One object's prompt: positive / negative points, a box and a mask prompt.

    Attributes
    ----------
    points : numpy.ndarray, float64, shape (N, 2)
        ``(y, x)`` pixel positions.
    labels : numpy.ndarray, int64, shape (N,)
        1 for a positive point (on the object), 0 for a negative one.
    box : (y0, x0, y1, x1) or None
        End-exclusive, around the object.
    mask : optional
        The decoder's mask prompt: the low-resolution logits of an earlier prediction (one
        embedding), or ``{(ty, tx): logits}`` for a tiled session (see
        :meth:`tilesam.Session.segment_with_logits`).

    Examples
    --------
    >>> p = Prompt.make([(5, 6), (20, 30)], [1, 0], shape=(100, 100))
    >>> p.points.tolist(), p.labels.tolist(), p.box
    ([[5.0, 6.0], [20.0, 30.0]], [1, 0], None)
    >>> p.positive.tolist(), p.anchor
    ([[5.0, 6.0]], (5.0, 6.0))
    >>> Prompt.make(box=(10, 10, 50, 70)).shifted(10, 10).box
    (0.0, 0.0, 40.0, 60.0)
    """

    points: np.ndarray = field(default_factory=_no_points)
    labels: np.ndarray | None = None
    box: Box | None = None
    mask: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # Built directly (by TileSAM's own code, already checked): labels default to positive.
        points = np.asarray(self.points, dtype=np.float64).reshape(-1, 2)
        labels = np.ones(len(points), np.int64) if self.labels is None else self.labels
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "labels", np.asarray(labels, dtype=np.int64).reshape(-1))

    @classmethod
    def make(
        cls,
        points: Any = None,
        labels: Any = None,
        box: Any = None,
        shape: tuple[int, int] | None = None,
        *,
        mask: Any = None,
        needs_object: bool = True,
    ) -> Prompt:
        """Check a user's prompt; anything wrong raises one :class:`TileSAMError` that says
        what to give instead.

        Parameters
        ----------
        points, labels, box
            As the attributes; `labels` default to all positive.
        shape : (H, W), optional
            The image or slice the prompt is on: points and the box must lie inside it.
        mask : optional
            A mask prompt (see the attributes); checked by the decoder that takes it.
        needs_object : bool
            Ask for a positive point or a box (negative points alone do not say which object
            to segment); False accepts any non-empty prompt, as SAM's decoder does.
        """
        yx = check_points(points, shape)
        if labels is not None and np.size(labels) and len(yx) == 0:
            raise TileSAMError("labels were given without points: pass points=[(y, x), ...].")
        lab = check_labels(labels, len(yx))
        bx = None if box is None else check_box(box, shape)
        prompt = cls(yx, lab, bx, mask)
        if needs_object and not prompt.has_object:
            raise TileSAMError(
                "The prompt needs a positive point or a box: negative points alone do not "
                "say which object to segment."
            )
        if prompt.empty and mask is None:
            raise TileSAMError("Empty prompt: give at least one point, a box or a mask input.")
        return prompt

    @property
    def empty(self) -> bool:
        """No point and no box (a mask prompt alone says nothing of where the object is)."""
        return len(self.points) == 0 and self.box is None

    @property
    def has_object(self) -> bool:
        """A positive point or a box: the prompt says where its object is."""
        return self.box is not None or bool((self.labels == 1).any())

    @property
    def positive(self) -> np.ndarray:
        """The positive points ``(K, 2)``: where the prompt says the object is."""
        return self.points[self.labels == 1]

    @property
    def anchor(self) -> tuple[float, float]:
        """The pixel that stands for the prompt: the box's centre, else the first positive
        point, else the first point."""
        if self.box is not None:
            y0, x0, y1, x1 = self.box
            return ((y0 + y1) / 2, (x0 + x1) / 2)
        if len(self.points) == 0:
            raise TileSAMError("An empty prompt has no position: give a point or a box.")
        y, x = self.points[int(np.argmax(self.labels == 1))]
        return (float(y), float(x))

    def shifted(self, dy: float, dx: float) -> Prompt:
        """The same prompt in a window whose origin is ``(dy, dx)`` in the image."""
        box = None
        if self.box is not None:
            y0, x0, y1, x1 = self.box
            box = (float(y0 - dy), float(x0 - dx), float(y1 - dy), float(x1 - dx))
        return replace(self, points=self.points - np.array([dy, dx], dtype=float), box=box)

    def scaled(self, factor_y: float, factor_x: float) -> Prompt:
        """The same prompt in an image ``factor`` times the size along each axis."""
        scale = np.array([factor_y, factor_x])
        box = None
        if self.box is not None:
            box = tuple(float(v) for v in np.asarray(self.box) * np.tile(scale, 2))
        return replace(self, points=self.points * scale, box=box)

    def within(self, rows: slice, cols: slice) -> Prompt:
        """The part of the prompt inside the region ``(rows, cols)``: its points there and
        its box clipped to it (None where the box misses it), still in image pixels.

        >>> p = Prompt.make([(5, 5), (50, 50)], box=(0, 0, 60, 60))
        >>> part = p.within(slice(0, 20), slice(0, 40))
        >>> part.points.tolist(), part.box
        ([[5.0, 5.0]], (0.0, 0.0, 20.0, 40.0))
        """
        y, x = self.points[:, 0], self.points[:, 1]
        inside = (y >= rows.start) & (y < rows.stop) & (x >= cols.start) & (x < cols.stop)
        return replace(
            self, points=self.points[inside], labels=self.labels[inside], box=self._clip(rows, cols)
        )

    def _clip(self, rows: slice, cols: slice) -> Box | None:
        if self.box is None:
            return None
        y0, x0 = max(self.box[0], rows.start), max(self.box[1], cols.start)
        y1, x1 = min(self.box[2], rows.stop), min(self.box[3], cols.stop)
        if y1 <= y0 or x1 <= x0:
            return None
        return (float(y0), float(x0), float(y1), float(x1))


def check_points(points: Any, shape: tuple[int, int] | None = None) -> np.ndarray:
    """`points` as a float64 ``(N, 2)`` array of ``(y, x)``, inside `shape` when given."""
    if points is None or np.size(points) == 0:
        return _no_points()
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise TileSAMError(f"points must be (y, x) pairs of numbers, got {points!r}.") from None
    if arr.ndim == 0 or arr.shape[-1] != 2:
        raise TileSAMError(f"points must be (y, x) pairs, got an array of shape {arr.shape}.")
    yx = arr.reshape(-1, 2)
    inside = np.isfinite(yx).all(1)
    if shape is not None:
        inside &= ((yx >= 0) & (yx < np.array(shape))).all(1)
    if not inside.all():
        bad = tuple(yx[np.argmin(inside)].tolist())
        raise TileSAMError(
            f"Point {bad} lies outside the image of shape {tuple(shape or ())}: points are "
            "(y, x) pixel positions with 0 <= y < H and 0 <= x < W."
        )
    return yx


def check_labels(labels: Any, n: int) -> np.ndarray:
    """`labels` as int64 ``(n,)`` of 1 / 0; all positive when None."""
    if labels is None:
        return np.ones(n, dtype=np.int64)
    lab = np.asarray(labels).reshape(-1)
    if lab.shape != (n,) or not np.isin(lab, (0, 1)).all():
        raise TileSAMError(
            f"labels must hold one 1 (positive) or 0 (negative) per point: got {lab.tolist()} "
            f"for {n} points."
        )
    return lab.astype(np.int64)


def check_box(box: Any, shape: tuple[int, int] | None = None) -> Box:
    """`box` as four floats ``(y0, x0, y1, x1)``, non-empty; clipped to `shape` when given
    (with a :class:`~tilesam.errors.TileSAMWarning`), refused only when wholly outside.

    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as said:
    ...     warnings.simplefilter("always")
    ...     check_box((80, 150, 170, 260), shape=(256, 256))
    (80.0, 150.0, 170.0, 256.0)
    >>> print(said[0].message)  # doctest: +NORMALIZE_WHITESPACE
    box [80.0, 150.0, 170.0, 260.0] reaches past the image of shape (256, 256):
    clipped to [80.0, 150.0, 170.0, 256.0].
    """
    try:
        values = np.asarray(box, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        values = np.zeros(0)
    if values.shape != (4,) or not np.isfinite(values).all():
        raise TileSAMError(f"box must be (y0, x0, y1, x1): four finite numbers, got {box!r}.")
    y0, x0, y1, x1 = (float(v) for v in values)
    if not (y1 > y0 and x1 > x0):
        raise TileSAMError(
            f"box {values.tolist()} is empty: it must be (y0, x0, y1, x1) with y1 > y0 and x1 > x0."
        )
    if shape is None or (y0 >= 0 and x0 >= 0 and y1 <= shape[0] and x1 <= shape[1]):
        return (y0, x0, y1, x1)
    # A box dragged past the image's edge means the object up to the edge: clip it, say so.
    clipped = (max(y0, 0.0), max(x0, 0.0), min(y1, float(shape[0])), min(x1, float(shape[1])))
    if not (clipped[2] > clipped[0] and clipped[3] > clipped[1]):
        raise TileSAMError(
            f"box {values.tolist()} lies outside the image of shape {tuple(shape)}; boxes "
            "are (y0, x0, y1, x1) with 0 <= y0 < y1 <= H and 0 <= x0 < x1 <= W."
        )
    warnings.warn(
        f"box {values.tolist()} reaches past the image of shape {tuple(shape)}: clipped to "
        f"{list(clipped)}.",
        TileSAMWarning,
        stacklevel=4,
    )
    return clipped
