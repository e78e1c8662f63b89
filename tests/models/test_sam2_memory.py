"""SAM 2.1's video memory: our memory encoder, memory attention and tracker compute the
official video predictor's function, load every official memory key, and keep a bounded bank.

The proof is the fixture's video run (``tests/data/fixtures/README.md``): one positive click
(x=160, y=120) on frame 3 of 8, propagated forward to frame 7, then backward to frame 0, by
the official ``SAM2VideoPredictor.propagate_in_video``; its logits at frame size are
``video_logits_from_frame3_point``. Frames are prepared as the official loader prepared them.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from _sam2_fixture import CHECKPOINT, FIXTURES, REGISTRY_NAMES, SPECS
from PIL import Image

import tilesam
from tilesam.models.checkpoint import check_compatible
from tilesam.models.registry import ARCHITECTURES, build_sam
from tilesam.models.sam2 import MEMORY_MODULES, split_memory
from tilesam.models.sam2_memory_bank import FrameMemory, MemoryBank
from tilesam.models.sam2_model import Sam2Embedding, Sam2Model
from tilesam.models.sam2_tracker import Sam2Tracker, TrackStep

TOLERANCE = 1e-2  # the issue's bound on the propagated logits
# Ours agree to ~4e-7. The fixture's random model reacts weakly to some memory details
# (sigmoid instead of binarised prompted mask: 6e-3; a bank of one frame: 2e-3), so a
# tighter bound is what shows those details are right.
TIGHT = 1e-4
MIN_AGREEMENT = 0.99
CLICK = {"points": [(120, 160)], "labels": [1]}  # (y, x) of the fixture's (x=160, y=120)
Error = tilesam.TileSAMError


def _official_video_frame(frame: np.ndarray, size: int) -> torch.Tensor:
    """A frame as the official video loader prepares it: PIL's default (bicubic) resize to
    ``size x size``, aspect ratio not kept (the test follows it; the product does not)."""
    resized = np.asarray(Image.fromarray(frame).resize((size, size)))
    return torch.from_numpy(resized.copy()).permute(2, 0, 1)[None].float()


@functools.cache
def _fixture(
    precision: str = "float32",
) -> tuple[Sam2Model, dict[str, np.ndarray], tuple[Sam2Embedding, ...]]:
    # The official outputs are float32: so is the model here, unless a test asks otherwise.
    model = tilesam.load_model(checkpoint=CHECKPOINT, device="cpu", precision=precision)
    with np.load(FIXTURES / "sam2_small_reference.npz") as npz:
        ref = dict(npz)
    with torch.inference_mode():
        embeddings = tuple(
            model._embeddings(_official_video_frame(frame, model.image_size), [(240, 320)])[0]
            for frame in ref["frames_jpeg_decoded"]
        )
    return model, ref, embeddings


@functools.cache
def _official_run(
    precision: str = "float32",
) -> tuple[dict[int, TrackStep], Sam2Tracker, object]:
    """Forward from the clicked frame 3 to 7, then backward to 0, as propagate_in_video."""
    model, _, embeddings = _fixture(precision)
    tracker = Sam2Tracker(model, num_frames=len(embeddings))
    track = tracker.new_track()
    steps = {3: tracker.annotate(track, 3, embeddings[3], **CLICK)}
    for frame in range(3, 8):
        steps[frame] = tracker.step(track, frame, embeddings[frame])
    for frame in range(3, -1, -1):
        steps[frame] = tracker.step(track, frame, embeddings[frame], reverse=True)
    return steps, tracker, track


def test_propagation_matches_the_official_video_predictor() -> None:
    _, ref, _ = _fixture()
    steps, _, _ = _official_run()
    assert sorted(steps) == list(range(8))
    for frame, step in steps.items():
        logits = step.logits()
        assert logits.shape == (240, 320) and step.present
        diff = float(np.abs(logits - ref["video_logits_from_frame3_point"][frame]).max())
        assert diff < TOLERANCE and diff < TIGHT, f"frame {frame}: max abs diff {diff}"
        agreement = float((step.mask() == ref["video_masks_from_frame3_point"][frame]).mean())
        assert agreement >= MIN_AGREEMENT, f"frame {frame}: masks agree on {agreement:.4%}"


def test_propagation_in_bfloat16_stays_within_the_issue_s_bound() -> None:
    """``precision="bfloat16"`` (``"auto"`` on a GPU or an AMX CPU): encoder and tracking
    under bfloat16 autocast stay within 1e-2 of the official float32 logits."""
    _, ref, _ = _fixture()
    steps, tracker, _ = _official_run("bfloat16")
    assert tracker.model.encoder_dtype == torch.bfloat16
    diffs = []
    for frame, step in steps.items():
        logits = step.logits()
        assert logits.dtype == np.float32
        diffs.append(float(np.abs(logits - ref["video_logits_from_frame3_point"][frame]).max()))
        agreement = float((step.mask() == ref["video_masks_from_frame3_point"][frame]).mean())
        assert agreement >= MIN_AGREEMENT, f"frame {frame}: masks agree on {agreement:.4%}"
    assert TIGHT < max(diffs) < TOLERANCE  # bfloat16 was used, and stays within the bound


def test_the_memory_is_what_makes_the_difference() -> None:
    """Frame 4 decoded without memory (the image predictor's way) is far from the official
    result: the proof above rests on the memory, not on the image path alone."""
    model, ref, embeddings = _fixture()
    tracker = Sam2Tracker(model, num_frames=8)
    feats = tracker.frame(embeddings[4])
    with torch.inference_mode():
        out = tracker.heads.decode(feats.prompted, feats, None, multimask=True)
    logits = out.result(4, embeddings[4]).logits()
    assert np.abs(logits - ref["video_logits_from_frame3_point"][4]).max() > 0.1


def test_the_bank_stays_bounded_during_the_run() -> None:
    """Seven frames tracked: all seven pointers kept, spatial memory for the last six only
    (frame 4's, the oldest, let go after frame 0 read it), plus the prompted frame."""
    _, _, track = _official_run()
    bank = track.bank
    assert list(bank.conditioning) == [3]
    assert list(bank.recent) == [4, 5, 6, 7, 2, 1, 0]
    assert [f for f, m in bank.recent.items() if m.features is not None] == [5, 6, 7, 2, 1, 0]
    assert bank.recent[5].features.dtype == torch.bfloat16


def test_memory_bank_is_flat_along_a_long_stack() -> None:
    bank = MemoryBank(max_recent=6, max_pointers=15)
    sizes = {}
    for frame in range(300):
        memory = FrameMemory(torch.zeros(1, 64, 64, 64, dtype=torch.bfloat16), torch.zeros(1, 256))
        bank.add(frame, memory, conditioning=frame == 0)
        sizes[frame] = bank.nbytes
    assert sizes[50] == sizes[150] == sizes[299]
    assert len(bank) == 1 + 15
    # A frame reads the prompted frame and the six before it, pointers of the 15 before it.
    assert [t for t, _ in bank.spatial(300, False, 7)] == [0, 1, 2, 3, 4, 5, 6]
    distances = [d for d, _ in bank.pointers(300, False, 16, None)]
    assert distances == [300, *range(1, 16)]


def test_several_objects_each_with_its_own_track() -> None:
    model, _, embeddings = _fixture()
    steps, _, _ = _official_run()
    tracker = Sam2Tracker(model, num_frames=8)
    frames = {t: tracker.frame(embeddings[t]) for t in (3, 4)}  # shared by the objects
    first, second = tracker.new_track(), tracker.new_track()
    tracker.annotate(second, 3, frames[3], points=[(30, 40)], labels=[1])
    tracker.annotate(first, 3, frames[3], **CLICK)
    other = tracker.step(second, 4, frames[4])
    same = tracker.step(first, 4, frames[4])
    np.testing.assert_array_equal(same.low_res_logits, steps[4].low_res_logits)
    assert not np.array_equal(other.low_res_logits, same.low_res_logits)


def test_annotating_with_a_mask() -> None:
    """A mask prompt is taken as the prompted frame's result (as the official predictor
    does); tracking goes on from it."""
    model, _, embeddings = _fixture()
    yy, xx = np.mgrid[:240, :320]
    disc = (yy - 120) ** 2 + (xx - 160) ** 2 < 60**2
    tracker = Sam2Tracker(model, num_frames=8)
    track = tracker.new_track()
    prompted = tracker.annotate(track, 3, embeddings[3], mask=disc)
    assert prompted.object_score == 10.0 and prompted.iou == 1.0
    assert float((prompted.mask() == disc).mean()) >= 0.995
    step = tracker.step(track, 2, embeddings[2], reverse=True)
    assert step.low_res_logits.shape == (256, 256) and np.isfinite(step.object_score)


def test_bad_tracking_requests_are_refused() -> None:
    model, _, embeddings = _fixture()
    tracker = Sam2Tracker(model, num_frames=8)
    track = tracker.new_track()
    with pytest.raises(Error, match="no annotated frame"):
        tracker.step(track, 4, embeddings[4])
    with pytest.raises(Error, match="outside the stack"):
        tracker.annotate(track, 8, embeddings[3], **CLICK)
    with pytest.raises(Error, match="mask is 2 x 2 but the frame is 240 x 320"):
        tracker.annotate(track, 3, embeddings[3], mask=np.ones((2, 2), bool))
    with pytest.raises(Error, match="mask is empty"):
        tracker.annotate(track, 3, embeddings[3], mask=np.zeros((240, 320), bool))
    with pytest.raises(Error, match="max_recent"):
        Sam2Tracker(model, max_recent=0)


def test_a_checkpoint_without_memory_loads_the_image_path_only(tmp_path: Path) -> None:
    state = torch.load(CHECKPOINT, weights_only=True)["model"]
    image, _ = split_memory(state)
    path = tmp_path / "image_only.pt"
    torch.save({"model": image}, path)
    model = tilesam.load_model(checkpoint=path, device="cpu")
    assert not model.sam.has_memory
    with pytest.raises(Error, match="no video memory"):
        Sam2Tracker(model)


# --- checkpoints --------------------------------------------------------------------------


def test_fixture_checkpoint_loads_its_memory() -> None:
    model, _, _ = _fixture()
    state = torch.load(CHECKPOINT, weights_only=True)["model"]
    ours = model.sam.state_dict()
    assert set(ours) == set(state)  # nothing set aside
    assert len(model.sam.memory_attention.layers) == 1  # the fixture's override
    for key in ("maskmem_tpos_enc", "memory_attention.layers.0.cross_attn_image.k_proj.weight"):
        torch.testing.assert_close(ours[key], state[key].float())


@pytest.mark.parametrize("spec", sorted(SPECS))
def test_every_official_memory_key_loads(spec: str) -> None:
    state = {k: torch.empty(shape, device="meta") for k, shape in SPECS[spec].items()}
    assert {k.split(".")[0] for k in split_memory(state)[1]} == MEMORY_MODULES
    with torch.device("meta"):
        sam = build_sam(ARCHITECTURES[REGISTRY_NAMES[spec]])
    check_compatible(sam.state_dict(), state, spec)  # raises on any missing or extra key


def test_a_frame_covering_part_of_the_input_is_cut_out() -> None:
    """A cache's edge tile covers the top of the model input only: its logits come from there."""
    low = np.where(np.arange(256)[:, None] < 128, 5.0, -5.0) * np.ones((1, 256), np.float32)
    whole = TrackStep(0, low.astype(np.float32), 1.0, 1.0, (100, 200))
    part = TrackStep(0, low.astype(np.float32), 1.0, 1.0, (100, 200), input_size=(512, 1024))
    assert 0.45 < whole.mask().mean() < 0.55
    assert part.mask().all()
