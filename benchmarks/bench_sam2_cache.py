"""What a SAM 2.1 tile costs in the embedding cache, beside a SAM 1 tile.

A SAM 2 cache keeps each tile's embedding ``(256, 64, 64)`` and the decoder's two
high-resolution feature maps ``(32, 256, 256)`` and ``(64, 128, 128)``, all float16,
LZ4-compressed on bit-shuffled values (:mod:`tilesam.cache.high_res`). This script embeds
the same 1024-pixel tiles (crops of the ``aerial`` sample, enlarged) with a full-size
``sam2.1_hiera_tiny`` of random weights (timing does not depend on the values; sizes do a
little: trained features may compress otherwise) and with the bundled ``tiny`` (SAM 1,
trained), and reports per tile: bytes on disk per array, the time to write a tile into the
store, to read it back checked (what a click on a new tile pays), and the encoder. It also
compresses the maps with zstd, the codec stores used before LZ4, for comparison.

Examples
--------
    OMP_NUM_THREADS=1 python benchmarks/bench_sam2_cache.py --tiles 3 --json sam2_cache.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from numcodecs import Blosc

from tilesam.cache.embeddings import TileEmbeddings
from tilesam.cache.store import EmbeddingStore
from tilesam.models.loading import load_model
from tilesam.models.registry import ARCHITECTURES, build_sam
from tilesam.models.sam2_model import Sam2Model
from tilesam.samples import load_sample


def tiles(n: int) -> list[np.ndarray]:
    """`n` 1024 x 1024 RGB tiles: crops of the aerial sample, enlarged 4 times."""
    image = load_sample("aerial")[0]
    side = 256
    out = []
    for i in range(n):
        y, x = (i * 97) % (image.shape[0] - side), (i * 131) % (image.shape[1] - side)
        crop = image[y : y + side, x : x + side]
        out.append(np.repeat(np.repeat(crop, 4, axis=0), 4, axis=1))
    return out


def random_hiera_tiny() -> Sam2Model:
    torch.manual_seed(0)
    arch = ARCHITECTURES["sam2.1_hiera_tiny"]
    return Sam2Model(build_sam(arch), name="sam2.1_hiera_tiny (random)", architecture=arch)


def measure(model, images: list[np.ndarray], folder: Path) -> dict:
    card = model.card
    store = EmbeddingStore.create(
        folder / f"{card.encoder}.zarr", signature={"model": card.name},
        grid_shape=(1, 1, len(images)), embedding_shape=card.embedding_shape,
        high_res_shapes=card.high_res_shapes,
    )  # fmt: skip
    encode, write = [], []
    for i, image in enumerate(images):
        start = time.perf_counter()
        emb = model.embed(image, intensity=(0.0, 255.0))
        encode.append(time.perf_counter() - start)
        maps = getattr(emb, "high_res_features", None)
        maps = None if maps is None else [m[0].numpy() for m in maps]
        meta = {"tile_shape": emb.original_size, "input_shape": emb.input_size}
        start = time.perf_counter()
        store.write_tile(0, 0, i, emb.features[0].numpy(), meta, maps)
        write.append(time.perf_counter() - start)
    read = []
    for i, image in enumerate(images):
        start = time.perf_counter()
        TileEmbeddings(store).read((0, 0, i), image.shape[:2])
        read.append(time.perf_counter() - start)
    arrays = ["embeddings", *(f"high_res_{i}" for i in range(len(card.high_res_shapes)))]
    sizes = {a: _bytes(store.path / a) / len(images) for a in arrays}
    raw = {"embeddings": 2 * np.prod(card.embedding_shape)}
    raw |= {f"high_res_{i}": 2 * np.prod(s) for i, s in enumerate(card.high_res_shapes)}
    return {
        "model": card.name,
        "bytes_per_tile": sizes,
        "raw_bytes_per_tile": {k: int(v) for k, v in raw.items()},
        "total_MiB_per_tile": _bytes(store.path) / len(images) / 2**20,
        "encode_s": float(np.median(encode)),
        "write_ms": 1e3 * float(np.median(write)),
        "read_ms": 1e3 * float(np.median(read)),
        "zstd_MiB_high_res": _zstd(store, len(images), len(card.high_res_shapes)),
    }


def _bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _zstd(store: EmbeddingStore, n: int, k: int) -> float | None:
    if not k:
        return None
    codec = Blosc(cname="zstd", clevel=5, shuffle=Blosc.BITSHUFFLE)
    total = sum(len(codec.encode(m)) for i in range(n) for m in store.read_high_res(0, 0, i))
    return total / n / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    images = tiles(args.tiles)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for model in (load_model("tiny", device="cpu"), random_hiera_tiny()):
            rows.append(measure(model, images, Path(folder)))
    for row in rows:
        print(json.dumps(row, indent=1, default=float))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=float))


if __name__ == "__main__":
    main()
