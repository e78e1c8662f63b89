"""Memory propagation (SAM 2.1) time per slice, with the embeddings already cached.

- ``fixture``: ``propagate_mask(..., method="memory")`` through a 20-slice volume made of the
  fixture's frames (``tests/data/fixtures/sam2_small_fp16.pt``: full 1024 input, a small
  trunk, one memory-attention layer), the session's embeddings computed first.
- ``tiny``: one tracking step of a full-size ``sam2.1_hiera_tiny`` of random weights (timing
  does not depend on the values) on random embeddings, once the bank is full (after 7
  tracked frames), without the encoder (12 s a tile on one thread, cached in practice).

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_memory_propagation.py [fixture|tiny]``.

The same steps beside the official ``SAM2VideoPredictor`` (same random weights, same
threads, outputs compared), the bank's resident memory along 300 slices and the encoder
against the official one: ``benchmarks/bench_sam2_vs_official.py``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

FIXTURES = Path(__file__).parents[1] / "tests" / "data" / "fixtures"


def fixture() -> None:
    import tilesam
    from tilesam.segment.session import Session

    model = tilesam.load_model(checkpoint=FIXTURES / "sam2_small_fp16.pt", device="cpu")
    with np.load(FIXTURES / "sam2_small_reference.npz") as npz:
        frames = npz["frames_jpeg_decoded"].mean(-1).astype(np.uint8)
    volume = np.concatenate([frames, frames[::-1], frames[:4]])  # 20 slices, 240 x 320
    session = Session(volume, model)
    start = time.perf_counter()
    session.embed(progress=False)
    print(f"fixture: embedding {(time.perf_counter() - start) / len(volume):.2f} s / slice")
    rules = {"min_area": 0, "min_score_ratio": None, "min_overlap": 0.0, "max_growth": 1e9}
    for frames_kept in (6, 2):
        start = time.perf_counter()
        tilesam.propagate_mask(
            volume, session=session, points=[(0, 120, 160)], rules=rules,
            memory_frames=frames_kept,
        )  # fmt: skip
        per = (time.perf_counter() - start) / (len(volume) - 1)
        print(f"fixture: memory_frames={frames_kept}: {per * 1000:.0f} ms / slice (19 slices)")


def tiny(steps: int = 9) -> None:
    from tilesam.models.registry import ARCHITECTURES, build_sam
    from tilesam.models.sam2_model import Sam2Embedding, Sam2Model
    from tilesam.models.sam2_tracker import Sam2Tracker

    arch = ARCHITECTURES["sam2.1_hiera_tiny"]
    model = Sam2Model(build_sam(arch), name="sam2.1_hiera_tiny (random)", architecture=arch)
    gen = torch.Generator().manual_seed(0)

    def embedding() -> Sam2Embedding:
        def rand(*shape):
            return torch.randn(*shape, generator=gen)

        return Sam2Embedding(
            rand(1, 256, 64, 64), original_size=(512, 512), input_size=(1024, 1024),
            high_res_features=(rand(1, 32, 256, 256), rand(1, 64, 128, 128)),
        )  # fmt: skip

    tracker = Sam2Tracker(model, num_frames=300)
    track = tracker.new_track()
    tracker.annotate(track, 0, embedding(), points=[(256, 256)], labels=[1])
    for frame in range(1, steps + 1):
        feats = tracker.frame(embedding())
        start = time.perf_counter()
        tracker.step(track, frame, feats)
        took = time.perf_counter() - start
        print(f"tiny: step {frame} ({len(track.bank)} memories): {took:.1f} s", flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    {"fixture": fixture, "tiny": tiny}[sys.argv[1] if len(sys.argv) > 1 else "fixture"]()
