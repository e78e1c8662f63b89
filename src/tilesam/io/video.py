"""`VideoSource`: a video file (.mp4, .avi, .mov, .mkv, .webm) read frame by frame, lazily.

Frames are decoded on demand by the ffmpeg binary that the ``imageio-ffmpeg`` wheel ships
(no system ffmpeg needed). A video presents its frames as the slice axis of a volume:
``ZYXC`` (RGB) or ``ZYX`` (grey), where **Z is time** (frame index), so everything that
walks slices (`tilesam.volumes.propagate.propagate_mask`, napari's ``Shift+S``) tracks
objects through time with the same call.

Random access seeks (ffmpeg's accurate input seeking, ``frame / fps`` seconds) and reads
forward from there; frames read in order reuse the running decoder. The last few decoded
frames are kept in a small LRU cache.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np

from tilesam.errors import TileSAMError
from tilesam.io.source import ImageSource, Region, ReopenedByPath

#: File extensions `open_image` reads as videos.
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")

# A forward jump of at most this many frames decodes through instead of seeking again.
_READ_THROUGH = 8


class VideoSource(ReopenedByPath, ImageSource):
    """A video file as a lazy ``ZYXC`` / ``ZYX`` volume whose Z axis is time (frames).

    Parameters
    ----------
    path : str or Path
        The video (anything the bundled ffmpeg decodes: H.264 / H.265 / VP9 / MJPEG /
        MPEG-4 in .mp4, .avi, .mov, .mkv, .webm).
    grey : bool, optional
        Decode to one grey channel (``ZYX``) instead of RGB (``ZYXC``). By default the
        stream decides: grey pixel formats give ``ZYX``, everything else RGB.
    cache_frames : int
        How many decoded frames to keep (LRU), at least 1.

    Attributes
    ----------
    fps : float
        Frames per second as the file states it.
    n_frames : int
        Number of frames (counted from the stream's packets, without decoding them).
    duration : float
        Length in seconds.
    n_decoded : int
        Frames decoded so far (for tests and diagnostics).

    Notes
    -----
    Spacing is 1.0 on every axis (one frame, one pixel); the frame rate is `fps`. Seeking
    assumes a constant frame rate, which is what cameras and encoders write; a
    variable-frame-rate file may land a frame off after a seek (reading in order is exact).

    Examples
    --------
    >>> import tempfile
    >>> import imageio_ffmpeg
    >>> path = tempfile.mkdtemp() + "/clip.mp4"
    >>> writer = imageio_ffmpeg.write_frames(path, (32, 16), fps=5, ffmpeg_log_level="error")
    >>> writer.send(None)
    >>> for t in range(4):
    ...     writer.send(np.full((16, 32, 3), 60 * t, np.uint8).tobytes())
    >>> writer.close()
    >>> src = VideoSource(path)
    >>> src.axes, src.shape, src.fps, src.is_time_series
    ('ZYXC', (4, 16, 32, 3), 5.0, True)
    >>> int(src.read_slice(2).mean()) in range(115, 125)
    True
    """

    is_time_series = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        grey: bool | None = None,
        cache_frames: int = 16,
    ) -> None:
        self.path = Path(path)
        self._kwargs = {"grey": grey, "cache_frames": cache_frames}
        if cache_frames < 1:
            raise TileSAMError(f"cache_frames must be at least 1, got {cache_frames}.")
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_frames = int(cache_frames)
        self._lock = threading.RLock()
        self._reader: Generator[Any, Any, None] | None = None
        self._next = 0  # index of the frame the running reader yields next
        self.n_decoded = 0
        if not self.path.is_file():
            raise TileSAMError(f"No such video file: '{self.path}'.")
        try:
            self._probe(grey)
        except TileSAMError:
            raise
        except Exception as exc:  # noqa: BLE001 - ffmpeg fails in many ways on bad files
            raise TileSAMError(_undecodable(self.path, exc)) from exc
        self._spacing = (1.0, 1.0, 1.0)
        self._origin = (0.0, 0.0, 0.0)

    def _probe(self, grey: bool | None) -> None:
        import imageio_ffmpeg

        self.n_frames, _ = imageio_ffmpeg.count_frames_and_secs(str(self.path))
        reader = imageio_ffmpeg.read_frames(str(self.path), pix_fmt="rgb24")
        try:
            meta = reader.__next__()
        finally:
            reader.close()
        self.metadata: dict[str, Any] = dict(meta)
        self.fps = float(meta.get("fps") or 0.0)
        width, height = (int(n) for n in meta["size"])
        if self.n_frames < 1 or width < 1 or height < 1 or self.fps <= 0:
            raise TileSAMError(
                f"'{self.path}' has no decodable video frames ({self.n_frames} frame(s), "
                f"{width}x{height} pixels, {self.fps} fps)."
            )
        self.duration = self.n_frames / self.fps
        self.metadata.update(n_frames=self.n_frames, duration=self.duration)
        if grey is None:
            grey = str(meta.get("pix_fmt", "")).startswith("gray")
        self._pix_fmt = "gray" if grey else "rgb24"
        self._axes = "ZYX" if grey else "ZYXC"
        self._shape = (self.n_frames, height, width) + (() if grey else (3,))
        self._dtype = np.dtype(np.uint8)
        self._frame(0)  # fail now, not mid-propagation, if the stream cannot be decoded

    # -- reading ----------------------------------------------------------------------------
    def _read(self, region: Region) -> np.ndarray:
        zs, ys, xs = region
        out = np.empty((zs.stop - zs.start, ys.stop - ys.start, xs.stop - xs.start)
                       + self._shape[3:], self._dtype)  # fmt: skip
        for i, z in enumerate(range(zs.start, zs.stop)):
            out[i] = self._frame(z)[ys, xs]
        return out

    def _frame(self, z: int) -> np.ndarray:
        """Decoded frame `z` (read-only), from the cache or the decoder."""
        with self._lock:
            frame = self._cache.get(z)
            if frame is not None:
                self._cache.move_to_end(z)
                return frame
            if self._reader is None or not self._next <= z <= self._next + _READ_THROUGH:
                self._seek(z)
            while True:
                frame = self._decode_next()
                if self._next - 1 == z:
                    return frame

    def _seek(self, z: int) -> None:
        import imageio_ffmpeg

        self._close_reader()
        params = ["-ss", f"{z / self.fps:.6f}"] if z > 0 else None
        self._reader = imageio_ffmpeg.read_frames(
            str(self.path), pix_fmt=self._pix_fmt, bpp=1 if self._pix_fmt == "gray" else 3,
            input_params=params,
        )  # fmt: skip
        self._reader.__next__()  # the metadata
        self._next = z

    def _decode_next(self) -> np.ndarray:
        assert self._reader is not None
        try:
            data = self._reader.__next__()
        except StopIteration:
            self._close_reader()
            raise TileSAMError(
                f"'{self.path}' ended before frame {self._next} of {self.n_frames}: the file "
                "is truncated or damaged. Copy or export it again, or re-encode it with "
                "ffmpeg (ffmpeg -i in.mp4 -c:v libx264 out.mp4)."
            ) from None
        h, w = self._shape[1:3]
        frame = np.frombuffer(data, np.uint8).reshape((h, w) + self._shape[3:])
        self.n_decoded += 1
        self._cache[self._next] = frame
        self._cache.move_to_end(self._next)
        while len(self._cache) > self._cache_frames:
            self._cache.popitem(last=False)
        self._next += 1
        return frame

    # -- housekeeping -----------------------------------------------------------------------
    def describe(self) -> str:
        return f"video '{self.path}' ({self._axes} {self._shape}, {self.fps:g} fps; Z is time)"

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()  # stops the ffmpeg process
            self._reader = None

    def close(self) -> None:
        with self._lock:
            self._close_reader()
            self._cache.clear()

    def __del__(self) -> None:
        try:
            self._close_reader()
        except Exception:  # noqa: BLE001, S110 - interpreter shutdown
            pass


def _undecodable(path: Path, exc: BaseException) -> str:
    # ffmpeg's message opens with its banner; what went wrong is in its last lines.
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = " ".join(lines[-2:])
    if len(detail) > 300:
        detail = detail[:300] + "..."
    return (
        f"Cannot decode '{path}' as a video: {detail or type(exc).__name__}. The file may be "
        "truncated, damaged or not a video; check that it plays, or re-encode it with ffmpeg "
        "(ffmpeg -i in.mp4 -c:v libx264 out.mp4)."
    )


# -- time series given as frames -----------------------------------------------------------
def is_frame_list(value: Any) -> bool:
    """Whether `value` is a list / tuple of arrays (frames), not a nested list of numbers."""
    return (
        isinstance(value, list | tuple)
        and len(value) > 0
        and all(hasattr(f, "shape") and hasattr(f, "dtype") for f in value)
    )


def frames_source(frames: Any, *, axes: str | None = None) -> ImageSource:
    """A time series from a list of equally sized frames (arrays): time is the slice axis.

    Parameters
    ----------
    frames : list of array-like
        ``(H, W)`` or ``(H, W, C)`` frames, all of one shape and dtype kind.
    axes : str, optional
        The axes of the stacked frames (default ``"T"`` + the guess for one frame).

    Examples
    --------
    >>> src = frames_source([np.zeros((8, 10), np.uint8)] * 3)
    >>> src.axes, src.shape, src.is_time_series
    ('ZYX', (3, 8, 10), True)
    """
    from tilesam.io.array_source import ArraySource
    from tilesam.io.axes import guess_axes

    shapes = [tuple(int(n) for n in f.shape) for f in frames]
    _check_same_size(shapes, [f"frame {i}" for i in range(len(shapes))])
    array = np.stack([np.asarray(f) for f in frames])
    return ArraySource(array, axes=axes or "T" + guess_axes(shapes[0]))


def picture_folder_source(folder: Path, *, axes: str | None = None) -> ImageSource | None:
    """A folder of PNG / JPEG / BMP frames as a lazy time series (None if it holds none).

    Frames are ordered by name, numbers compared as numbers (``frame_2`` before
    ``frame_10``); each is read when a region touches it.
    """
    import dask
    import dask.array as da

    from tilesam.io.array_source import ArraySource
    from tilesam.io.axes import guess_axes
    from tilesam.io.picture import PICTURE_SUFFIXES, picture_shape, read_picture

    files = sorted(
        (f for f in folder.iterdir() if f.suffix.lower() in PICTURE_SUFFIXES and f.is_file()),
        key=_natural_key,
    )
    if not files:
        return None
    try:
        shapes = [tuple(int(n) for n in picture_shape(f)) for f in files]
    except Exception as exc:  # noqa: BLE001 - a damaged header
        raise TileSAMError(f"Cannot read the frames in '{folder}': {exc}.") from exc
    _check_same_size(shapes, [f"'{f.name}'" for f in files])
    dtype = read_picture(files[0]).dtype
    read = dask.delayed(read_picture, pure=True)
    array = da.stack([da.from_delayed(read(f), shapes[0], dtype) for f in files])
    return ArraySource(array, axes=axes or "T" + guess_axes(shapes[0]))


def _check_same_size(shapes: list[tuple[int, ...]], names: list[str]) -> None:
    for shape, name in zip(shapes, names, strict=True):
        if shape != shapes[0]:
            raise TileSAMError(
                f"The frames of a time series must all have one size: {names[0]} is "
                f"{shapes[0]} but {name} is {shape}. Resize or crop them to one size first "
                "(e.g. with ffmpeg -vf scale=W:H), or segment them one by one."
            )


def _natural_key(path: Path) -> list[Any]:
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", path.name)]
