"""Bytes per tile and read time per tile of the embedding cache: float16 (format 2, the
default) against 8-bit codes (format 4, ``encoding="q8"``), beside micro-sam's encoding.

micro-sam's tiled precompute (``micro_sam/util.py``, ``_precompute_tiled_2d``) stores each
tile's float32 embedding as one zarr v2 chunk with ``compression="gzip"``, that is numcodecs
``GZip(level=1)``; that is compressed here from the same embedding as the reference. Our
sizes are the embedding chunk files of a real store (the 16-byte checksum chunk, the 16 bytes
of metadata and, for q8, the scale chunk of ``C x 8`` bytes included).

Embeddings: the official fixtures' (random small models, real outputs), the bundled
trained ``tiny`` on ``sample_data/nuclei_heldout.tif`` and on one 1024² tile of a 2048²
mosaic of it, and random full-size ``vit_t`` and ``vit_b`` on that tile (random weights
compress differently from trained ones; trained full-size weights are not available here)::

    OMP_NUM_THREADS=1 python benchmarks/bench_cache_size.py --json bench_cache_size.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from numcodecs import GZip

ROOT = Path(__file__).parents[1]
FIXTURES = ROOT / "tests" / "data" / "fixtures"
META = {"tile_shape": (1024, 1024), "input_shape": (1024, 1024)}
REPEATS = 20


def embeddings(skip_vit_b: bool) -> dict[str, np.ndarray]:
    """The embeddings measured, by name."""
    import tifffile
    import torch

    import tilesam
    from tilesam.models.registry import ARCHITECTURES, build_sam

    out = {}
    for name in ("sam1_small", "vit_t_small"):
        with np.load(FIXTURES / f"{name}_reference.npz") as npz:
            out[f"fixture {name}"] = npz["embedding"]
    image = tifffile.imread(ROOT / "sample_data" / "nuclei_heldout.tif")
    tiny = tilesam.load_model("tiny", device="cpu")
    out["tiny (trained), nuclei_heldout"] = tiny.embed(image).features[0].numpy()
    tile = np.tile(image, (4, 4))[512:1536, 512:1536]  # a 1024² tile of the 2048² mosaic
    out["tiny (trained), mosaic tile"] = tiny.embed(tile).features[0].numpy()
    pixels = torch.from_numpy(np.repeat(tile[..., None], 3, 2)).permute(2, 0, 1)[None].float()
    for arch in ("vit_t",) if skip_vit_b else ("vit_t", "vit_b"):
        torch.manual_seed(0)
        sam = build_sam(ARCHITECTURES[arch]).eval()
        with torch.inference_mode():
            out[f"{arch} (random)"] = sam.image_encoder(sam.preprocess(pixels))[0].numpy()
    return out


def measure(x: np.ndarray, workdir: Path, encoding: str) -> tuple[int, float, float]:
    """Bytes of one tile in a store of `encoding`, median ms to read it (checked and as
    float32), and the largest absolute error."""
    from tilesam.cache.store import EmbeddingStore

    path = workdir / f"{encoding}-{time.perf_counter_ns()}.zarr"
    store = EmbeddingStore.create(
        path, signature={"bench": 1}, grid_shape=(1, 1, 1), embedding_shape=x.shape,
        encoding=encoding,
    )  # fmt: skip
    store.write_tile(0, 0, 0, x, META)
    size = sum(
        f.stat().st_size
        for name in ("embeddings", "embedding_scale", "checksum", *META)
        for f in (path / name / "c").rglob("*")
        if f.is_file()
    )
    times = []
    for _ in range(REPEATS):
        t = time.perf_counter()
        got = store.read_tile(0, 0, 0).astype(np.float32, copy=False)
        times.append(time.perf_counter() - t)
    return size, float(np.median(times) * 1e3), float(np.abs(got - x).max())


def micro_sam(x: np.ndarray) -> tuple[int, float]:
    """micro-sam's bytes for the tile and its median ms to decompress it."""
    codec = GZip(level=1)
    data = codec.encode(np.ascontiguousarray(x, dtype=np.float32))
    times = []
    for _ in range(5):
        t = time.perf_counter()
        np.frombuffer(codec.decode(data), dtype=np.float32)
        times.append(time.perf_counter() - t)
    return len(data), float(np.median(times) * 1e3)


def main() -> None:
    """Measure every embedding, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--skip-vit-b", action="store_true", help="leave out vit_b (12 s)")
    args = parser.parse_args()
    import numcodecs

    numcodecs.blosc.set_nthreads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, x in embeddings(args.skip_vit_b).items():
            ref, ref_ms = micro_sam(x)
            row = {"embedding": name, "shape": list(x.shape), "micro_sam_bytes": ref}
            row["micro_sam_read_ms"] = ref_ms
            for enc in ("float16", "q8"):
                size, ms, err = measure(x, Path(tmp), enc)
                row[enc] = {"bytes": size, "ratio": size / ref, "read_ms": ms, "max_abs_err": err}
            rows.append(row)
    print("| embedding | micro-sam (f32 gzip-1) | float16, format 2 (old) | q8, format 4 (new) |")
    print("| --- | --- | --- | --- |")
    for r in rows:
        cells = [f"{r['micro_sam_bytes'] / 2**20:.2f} MiB, {r['micro_sam_read_ms']:.1f} ms"]
        for enc in ("float16", "q8"):
            e = r[enc]
            cells.append(
                f"{e['bytes'] / 2**20:.2f} MiB = {e['ratio']:.2f}x, {e['read_ms']:.1f} ms, "
                f"err {e['max_abs_err']:.1e}"
            )
        print(f"| {r['embedding']} {tuple(r['shape'])} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
