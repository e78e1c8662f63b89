"""The per-frame torch steps of SAM 2.1 tracking (the official ``SAM2Base`` heads).

:class:`SamHeads` decodes a frame (prompted, or conditioned on memory), turns a mask prompt
into an output, encodes a frame's memory and lays the bank's memories out as the memory
attention's tokens. :class:`~tilesam.models.sam2_tracker.Sam2Tracker` decides which frames
and memories take part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from tilesam.decode.sam_prompt import SamPrompt
from tilesam.models.sam2_decoder import sparse_prompt
from tilesam.models.sam2_memory import sine_1d, sine_position_encoding
from tilesam.models.sam2_memory_bank import FrameMemory

if TYPE_CHECKING:
    from tilesam.decode.embedding import ImageEmbedding
    from tilesam.models.sam2 import Sam2
    from tilesam.models.sam2_tracker import FrameFeatures, TrackStep

# Logits where the object score says "absent" (the official NO_OBJ_SCORE).
NO_OBJECT = -1024.0
# A mask (0 / 1) as logits, and probabilities as the memory encoder takes them: x * 20 - 10.
MASK_SCALE, MASK_BIAS = 20.0, -10.0


@dataclass(frozen=True)
class HeadOutput:
    """One frame's decoded object: best low-res logits ``(1, 1, 4h, 4w)``, its IoU, the
    object-score logit ``(1, 1)`` and the object pointer ``(1, C)``."""

    low_res: torch.Tensor
    iou: float
    object_score: torch.Tensor
    obj_ptr: torch.Tensor

    def result(self, frame: int, embedding: ImageEmbedding) -> TrackStep:
        """The frame's :class:`TrackStep` (NumPy, on the CPU)."""
        from tilesam.models.sam2_tracker import TrackStep

        logits = self.low_res[0, 0].float().cpu().numpy()
        size, input_size = tuple(embedding.original_size), tuple(embedding.input_size)
        return TrackStep(frame, logits, float(self.object_score), self.iou, size, input_size)


class SamHeads:
    """SAM 2.1's decoder, memory encoder and token layout around one :class:`Sam2`."""

    def __init__(self, sam: Sam2, device: torch.device) -> None:
        self.sam, self.device = sam, device
        self._pos: dict[tuple[int, int, int], torch.Tensor] = {}

    def vision_pos(self, size: tuple[int, int]) -> torch.Tensor:
        """The image features' sine encoding ``(1, C, h, w)`` (the FPN neck's)."""
        return self._sine(self.sam.sam_prompt_encoder.embed_dim, size)

    def _sine(self, dim: int, size: tuple[int, int]) -> torch.Tensor:
        key = (dim, *size)
        if key not in self._pos:
            self._pos[key] = sine_position_encoding(dim, size).to(self.device)
        return self._pos[key]

    def decode(
        self,
        image: torch.Tensor,
        feats: FrameFeatures,
        prompt: SamPrompt | None,
        multimask: bool,
        mask_input: torch.Tensor | None = None,
    ) -> HeadOutput:
        """Decode `image` features ``(1, C, h, w)`` with `prompt` (None: no clicks, as on a
        tracked frame) and keep the best mask, its token's pointer and the object score."""
        sam = self.sam
        encoder = sam.sam_prompt_encoder
        points = boxes = None
        if prompt is not None and prompt.coords is not None:
            points = (self._tensor(prompt.coords), self._tensor(prompt.labels))
        if prompt is not None and prompt.box is not None:
            boxes = self._tensor(prompt.box)
        if points is None and boxes is None:
            # No prompt: one padding point, as the official heads feed.
            coords = torch.zeros(1, 1, 2, device=self.device)
            points = (coords, torch.full((1, 1), -1, device=self.device))
        sparse = sparse_prompt(encoder, points, boxes)
        dense = (
            encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
            if mask_input is None
            else encoder.mask_downscaling(mask_input)
        )
        logits, iou, score, tokens = sam.sam_mask_decoder.decode_with_tokens(
            image, encoder.get_dense_pe(), sparse, dense, feats.high_res, multimask
        )
        present = score > 0
        logits = torch.where(present[..., None, None], logits, NO_OBJECT)
        # The pointer comes from the chosen multimask token, or the single-mask token.
        best = int(iou[0].argmax()) if multimask else 0
        token = tokens[:, 1 + best] if multimask else tokens[:, 0]
        obj_ptr = self._pointer(sam.obj_ptr_proj(token), present.float())
        return HeadOutput(logits[:, best : best + 1], float(iou[0, best]), score, obj_ptr)

    def from_mask(self, feats: FrameFeatures, mask: np.ndarray) -> HeadOutput:
        """A mask prompt taken as the output (the official predictor does not decode it):
        its logits, and a pointer decoded from the mask and the plain image features."""
        sam = self.sam
        side = sam.image_size
        # The mask goes where its frame lies in the model input: all of it for a frame
        # stretched to the input, its top-left part for a padded one (a slice or an edge
        # tile placed at a fixed magnification).
        covered = tuple(int(v) for v in feats.embedding.input_size)
        full = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))
        full = full.to(self.device)[None, None]
        full = F.interpolate(full, covered, mode="bilinear", antialias=True)
        full = F.pad((full >= 0.5).float(), (0, side - covered[1], 0, side - covered[0]))
        logits = full * MASK_SCALE + MASK_BIAS
        low = F.interpolate(logits, (side // 4, side // 4), mode="bilinear", antialias=True)
        decoded = self.decode(feats.vision, feats, None, False, sam.mask_downsample(full))
        present = full.flatten(1).any(dim=1, keepdim=True).float()
        score = present * MASK_SCALE + MASK_BIAS
        return HeadOutput(low, 1.0, score, self._pointer(decoded.obj_ptr, present))

    def _pointer(self, obj_ptr: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        # An absent object's pointer is the learnt "no object" pointer.
        return present * obj_ptr + (1 - present) * self.sam.no_obj_ptr

    def encode_memory(
        self, feats: FrameFeatures, out: HeadOutput, binarize: bool = False
    ) -> FrameMemory:
        """The frame's memory from its features and its mask (upscaled to the input size;
        probabilities, or 0 / 1 with `binarize`, mapped by ``x * 20 - 10``)."""
        sam = self.sam
        side = sam.image_size
        high = F.interpolate(out.low_res, (side, side), mode="bilinear", align_corners=False)
        mask = (high > 0).float() if binarize else torch.sigmoid(high)
        memory = sam.memory_encoder(feats.vision, mask * MASK_SCALE + MASK_BIAS)
        absent = (out.object_score <= 0).float()
        memory = memory + absent[..., None, None] * sam.no_obj_embed_spatial[..., None, None]
        # Stored in bfloat16 as the official predictor stores it (half the bytes).
        return FrameMemory(memory.to(torch.bfloat16), out.obj_ptr)

    def memory_tokens(
        self,
        spatial: list[tuple[int, torch.Tensor]],
        pointers: list[tuple[int, torch.Tensor]],
        max_distance: int,
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """The memory ``(1, M, mem_dim)``, its encoding and the number of pointer tokens:
        spatial memories (each with its time slot's encoding), then each pointer split
        into ``C / mem_dim`` tokens with its projected temporal encoding."""
        sam = self.sam
        tokens, pos = [], []
        for t_pos, features in spatial:
            tokens.append(features.float().flatten(2).transpose(1, 2))
            grid = self._sine(features.shape[1], tuple(features.shape[-2:]))
            slot = sam.maskmem_tpos_enc[sam.num_maskmem - t_pos - 1].view(1, 1, -1)
            pos.append(grid.flatten(2).transpose(1, 2) + slot)
        n_ptr_tokens = 0
        if pointers:
            distances = torch.tensor([d for d, _ in pointers], device=self.device)
            ptrs = torch.cat([p for _, p in pointers])  # (P, C)
            dim = ptrs.shape[-1]
            ptr_pos = sam.obj_ptr_tpos_proj(sine_1d(distances / max_distance, dim))
            mem_dim = ptr_pos.shape[-1]
            split = dim // mem_dim
            tokens.append(ptrs.reshape(1, -1, mem_dim))  # each pointer's parts in a row
            pos.append(ptr_pos.repeat_interleave(split, dim=0)[None])
            n_ptr_tokens = ptrs.shape[0] * split
        return torch.cat(tokens, dim=1), torch.cat(pos, dim=1), n_ptr_tokens

    def _tensor(self, values: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(values)).to(self.device)[None]
