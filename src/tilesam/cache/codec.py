"""Quantised tile embeddings (store format 4): 8 bits per value, a scale per channel.

A store created with ``encoding="q8"`` keeps each tile's embedding as uint8 codes, one
offset and one step per channel of that tile beside them::

    embeddings/        uint8 (n_slices, n_ty, n_tx, C, h, w), one chunk per tile, zstd
    embedding_scale/   float32 (n_slices, n_ty, n_tx, C, 2): (offset, step) per channel, raw

Channel ``c`` of a tile is stored as ``q = rint((x - lo_c) / s_c)`` with ``lo_c`` its
minimum, ``s_c = (hi_c - lo_c) / 255`` and read back as ``q * s_c + lo_c``. Error bound,
for every value: ``|x - x'| <= s_c / 2`` (rounding to the nearest code) plus float32
rounding of ``q * s_c + lo_c`` (a few ulp of ``max(|lo_c|, |hi_c|)``), i.e. at most
``(hi_c - lo_c) / 510`` and a relative 1e-6; :func:`error_bound` gives it per channel.

The chunk of codes is compressed with zstd level 3 (blosc, no shuffle) and sealed with a
CRC32C; the tile's embedding digest (format 2's, :mod:`tilesam.cache.tile_digest`) covers
what is stored: the codes and the (offset, step) pairs. Measured (``benchmarks/
bench_cache_size.py``): 0.18-0.27x micro-sam's bytes per tile, read in 1-3 ms; masks
>= 99.88 % pixels equal to those of today's float16 on the fixtures' prompts, >= 99.997 %
on `tiny`'s 125 nuclei (click and box). SAM 2 stores (format 3) keep float16 throughout.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xxhash
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

from tilesam.cache.store_layout import CHUNK_KEYS, chunk_file
from tilesam.cache.tile_digest import Damaged, read_raw
from tilesam.cache.tiling import TileIndex

#: The encodings a store's embeddings may have; "float16" is formats 1-3's.
ENCODINGS = ("float16", "q8")
#: The format of stores whose embeddings are quantised to 8 bits.
Q8_FORMAT = 4
SCALE = "embedding_scale"
LEVELS = 255


def q8_codecs() -> list:
    """The codecs of a format-4 store's chunks of codes: zstd 3 on unshuffled bytes (the
    smallest of the chains measured, decoded in about 1 ms), then a CRC32C."""
    return [BloscCodec(cname="zstd", clevel=3, shuffle="noshuffle"), Crc32cCodec()]


def quantise(embedding: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes and per-channel ``(offset, step)`` of a ``(C, h, w)`` embedding.

    Parameters
    ----------
    embedding : numpy.ndarray, shape (C, h, w)
        Finite values.

    Returns
    -------
    codes : numpy.ndarray, uint8, shape (C, h, w)
    scale : numpy.ndarray, float32, shape (C, 2)
        Each channel's minimum and step (``(max - min) / 255``; 1 for a constant channel).
    """
    x = np.asarray(embedding, dtype=np.float32)
    flat = x.reshape(x.shape[0], -1)
    lo = flat.min(axis=1)
    step = (flat.max(axis=1) - lo) / LEVELS
    step = np.where(step > 0, step, np.float32(1.0)).astype(np.float32)
    q = np.rint((flat - lo[:, None]) / step[:, None])
    codes = np.clip(q, 0, LEVELS).astype(np.uint8).reshape(x.shape)
    return codes, np.stack([lo, step], axis=1).astype(np.float32)


def dequantise(codes: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The float32 embedding that `codes` and `scale` (from :func:`quantise`) stand for."""
    c = codes.shape[0]
    out = codes.reshape(c, -1).astype(np.float32)
    out *= scale[:, 1:2]
    out += scale[:, 0:1]
    return out.reshape(codes.shape)


def error_bound(scale: np.ndarray) -> np.ndarray:
    """The largest absolute error per channel of a dequantised embedding: half a step
    plus float32 rounding of the largest value of the channel."""
    lo, step = scale[:, 0].astype(np.float64), scale[:, 1].astype(np.float64)
    top = np.maximum(np.abs(lo), np.abs(lo + LEVELS * step))
    return step / 2 + 4 * np.finfo(np.float32).eps * top


def q8_digest(store_id: str, tile: TileIndex, codes: np.ndarray, scale: np.ndarray) -> int:
    """The digest of a format-4 tile's embedding as stored: its codes and scales."""
    z, ty, tx = tile
    h = xxhash.xxh3_64(f"tilesam:{store_id}:{int(z)}:{int(ty)}:{int(tx)}:embedding-q8:".encode())
    h.update(np.ascontiguousarray(codes, dtype=np.uint8))
    h.update(np.ascontiguousarray(scale, dtype="<f4"))
    return h.intdigest()


def create_scale_array(group: zarr.Group, grid: tuple[int, ...], channels: int) -> None:
    """Add the per-tile ``(offset, step)`` array to a new format-4 store's group."""
    group.create_array(
        SCALE, shape=(*grid, channels, 2), chunks=(1, 1, 1, channels, 2), dtype="<f4",
        fill_value=0.0, compressors=None, chunk_key_encoding=CHUNK_KEYS,
    )  # fmt: skip


class QuantisedTiles:
    """A format-4 store's codes and scales: writes a tile, reads it back checked.

    Parameters
    ----------
    path : Path
        The store's folder (scales are read as files: 2 KiB, tens of microseconds).
    group : zarr.Group
        Its group, holding ``embeddings`` (uint8) and ``embedding_scale``.
    store_id : str
        The store's id, part of every digest.
    """

    def __init__(self, path: Path, group: zarr.Group, store_id: str) -> None:
        self.path, self.store_id = path, store_id
        self.codes, self.scale = group["embeddings"], group[SCALE]
        self.channels = int(self.codes.shape[3])
        if self.codes.dtype != np.uint8 or tuple(self.scale.shape[3:]) != (self.channels, 2):
            raise ValueError(
                f"embeddings {self.codes.dtype} {self.codes.shape} and {SCALE} "
                f"{self.scale.shape} are not a format-4 pair"
            )

    def write(self, tile: TileIndex, embedding: np.ndarray) -> int:
        """Store the tile's codes and scales; return the digest to keep."""
        codes, scale = quantise(embedding)
        self.codes[tile] = codes
        self.scale[tile] = scale
        return q8_digest(self.store_id, tile, codes, scale)

    def read(self, tile: TileIndex, digest: int) -> np.ndarray:
        """The tile's float32 embedding; `Damaged` if a chunk is missing, unreadable or
        does not match `digest`."""
        file = chunk_file(self.path, SCALE, tile, 0, 0)
        scale = read_raw(file, "<f4", 2 * self.channels, "embedding scale").reshape(-1, 2)
        try:
            codes = self.codes[tile]
        except Exception as exc:  # noqa: BLE001 - codec errors mean a damaged chunk
            raise Damaged(f"its embedding chunk cannot be decoded ({exc})") from None
        if q8_digest(self.store_id, tile, codes, scale) != digest:
            if not chunk_file(self.path, "embeddings", tile, 0, 0, 0).is_file():
                raise Damaged("its embedding chunk is missing")
            raise Damaged(
                "its embedding does not match its checksum (changed, or copied from another "
                "tile or cache)"
            )
        return dequantise(codes, scale)
