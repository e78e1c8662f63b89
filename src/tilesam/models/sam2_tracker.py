"""Tracking an object through frames (time points or slices) with SAM 2.1's memory.

:class:`Sam2Tracker` computes what the official ``SAM2VideoPredictor`` computes for one
object, frame by frame, from image embeddings made by :meth:`Sam2Model.embed` (or read from
a cache): annotate a frame with points, a box or a mask, then :meth:`~Sam2Tracker.step` to
the next frame in either direction. Each object has its own :class:`Track`, whose
:class:`~tilesam.models.sam2_memory_bank.MemoryBank` is bounded (the prompted frames and the
last six), so memory stays flat along a long stack.

Prompts are in the frame's pixels, ``(y, x)``, as for :meth:`Sam2Model.predict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tilesam.decode.prompt import Prompt
from tilesam.decode.sam_prompt import to_sam_prompt
from tilesam.errors import TileSAMError
from tilesam.models.sam2_memory_bank import MAX_OBJ_PTRS, MemoryBank
from tilesam.models.sam2_model import Sam2Embedding, Sam2Model
from tilesam.models.sam2_tracker_heads import SamHeads

__all__ = ["FrameFeatures", "Sam2Tracker", "Track", "TrackStep"]


@dataclass(frozen=True)
class FrameFeatures:
    """One frame's features on the model's device: the embedding as the image predictor uses
    it (``no_mem_embed`` added), the backbone's own features (without it, what the memory
    reads), and the projected high-resolution maps."""

    embedding: Sam2Embedding
    prompted: torch.Tensor
    vision: torch.Tensor
    high_res: tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class TrackStep:
    """The tracked object on one frame.

    ``low_res_logits`` ``(4h, 4w)`` are the decoder's (``-1024`` everywhere when the object
    score says the object is absent); ``object_score`` is a logit (> 0: present).
    ``input_size`` is the part of the model input the frame covers, when not all of it (a
    cache's edge tile padded to its canvas, see :mod:`tilesam.cache.canvas`).
    """

    frame: int
    low_res_logits: np.ndarray
    object_score: float
    iou: float
    original_size: tuple[int, int]
    input_size: tuple[int, int] | None = None

    @property
    def present(self) -> bool:
        """Whether the model sees the object on this frame."""
        return self.object_score > 0

    def logits(self) -> np.ndarray:
        """Logits at the frame's size ``(H, W)``: one bilinear resize, as the official
        predictor returns them (a frame covering part of the input: upscaled to the input,
        cut out, resized, as SAM's padded inputs are)."""
        low = torch.from_numpy(np.ascontiguousarray(self.low_res_logits))[None, None]
        rows, cols = self.low_res_logits.shape
        if self.input_size is not None and tuple(self.input_size) != (4 * rows, 4 * cols):
            low = F.interpolate(low, (4 * rows, 4 * cols), mode="bilinear", align_corners=False)
            low = low[..., : self.input_size[0], : self.input_size[1]]
        full = F.interpolate(low, self.original_size, mode="bilinear", align_corners=False)
        return full[0, 0].numpy()

    def mask(self, threshold: float = 0.0) -> np.ndarray:
        """The object's mask at the frame's size, ``(H, W)`` bool."""
        return self.logits() > threshold


@dataclass
class Track:
    """One object's tracking state: its memory bank and its prompted frames' results."""

    bank: MemoryBank = field(default_factory=MemoryBank)
    prompted: dict[int, TrackStep] = field(default_factory=dict)


class Sam2Tracker:
    """SAM 2.1 tracking with a bounded memory, one :class:`Track` per object.

    Steps compute in the model's precision
    (:meth:`~tilesam.models.sam_model.SamModel.autocast`): under bfloat16 autocast where its
    encoder runs in bfloat16, as the official predictor tracks on a GPU. The memory attention
    is most of a step's work: about 3 times faster on an AMX CPU, the logits within 5e-3 of
    the official float32 ones on the fixture's video (``tests/models/test_sam2_memory.py``).

    Parameters
    ----------
    model
        A loaded SAM 2.1 model with its video memory.
    num_frames
        Length of the stack, if known: like the official predictor, it caps the object
        pointers read (``min(num_frames, 16)``) and scales their temporal encoding.
    max_recent
        Unprompted frames whose memory a track keeps (default: the 6 SAM 2.1 reads).

    Examples
    --------
    >>> tracker = Sam2Tracker(model, num_frames=len(frames))  # doctest: +SKIP
    >>> track = tracker.new_track()  # doctest: +SKIP
    >>> tracker.annotate(track, 3, embeddings[3], points=[(120, 160)], labels=[1])  # doctest: +SKIP
    >>> [tracker.step(track, t, embeddings[t]) for t in range(4, 8)]  # doctest: +SKIP
    """

    def __init__(
        self, model: Sam2Model, *, num_frames: int | None = None, max_recent: int | None = None
    ) -> None:
        sam = model.sam
        if not getattr(sam, "has_memory", False):
            raise TileSAMError(
                f"{model.name!r} has no video memory (its checkpoint holds the image path "
                "only): it can segment single images but not track. Load a full SAM 2.1 "
                "checkpoint."
            )
        if num_frames is not None and num_frames < 1:
            raise TileSAMError(f"num_frames must be at least 1, not {num_frames}.")
        self.model, self.sam = model, sam
        self.num_frames = num_frames
        self.max_recent = sam.num_maskmem - 1 if max_recent is None else max_recent
        if not 1 <= self.max_recent <= MAX_OBJ_PTRS - 1:
            raise TileSAMError(f"max_recent must be 1 to {MAX_OBJ_PTRS - 1}, not {max_recent}.")
        self.heads = SamHeads(sam, model.device)

    def new_track(self) -> Track:
        """An empty track for one object."""
        return Track(MemoryBank(self.max_recent, max(self.max_recent, MAX_OBJ_PTRS - 1)))

    @torch.inference_mode()
    def frame(self, embedding: Sam2Embedding | FrameFeatures) -> FrameFeatures:
        """A frame's :class:`FrameFeatures` (compute once, use for every object)."""
        if isinstance(embedding, FrameFeatures):
            return embedding
        high_res = getattr(embedding, "high_res_features", None)
        if high_res is None:
            self.model._high_res(embedding)  # raises the model's message
        device = self.model.device
        prompted = torch.as_tensor(embedding.features).to(device, torch.float32)
        high = tuple(torch.as_tensor(f).to(device, torch.float32) for f in high_res)
        vision = prompted - self.sam.no_mem_embed.view(1, -1, 1, 1)
        return FrameFeatures(embedding, prompted, vision, high)

    @torch.inference_mode()
    def annotate(
        self,
        track: Track,
        frame: int,
        embedding: Sam2Embedding | FrameFeatures,
        points: Any = None,
        labels: Any = None,
        box: Any = None,
        mask: np.ndarray | None = None,
    ) -> TrackStep:
        """Prompt the object on `frame` (points ``(y, x)`` with labels 1 / 0 and/or a box
        ``(y0, x0, y1, x1)``, or a ``(H, W)`` mask) and remember it as a conditioning frame.

        As the official predictor: one point gives the best of three masks, more points or
        a box one mask; a mask is taken as it is (the decoder only makes its pointer).
        """
        self._check_frame(frame)
        feats = self.frame(embedding)
        size = feats.embedding.original_size
        if mask is not None and (points is not None or box is not None):
            raise TileSAMError("Annotate a frame with a mask, or with points / a box.")
        with self.model.autocast():  # the model's precision (class docstring)
            if mask is not None:
                out = self.heads.from_mask(feats, _frame_mask(mask, size))
            else:
                prompt = Prompt.make(points, labels, box, size, needs_object=True)
                sam_prompt = to_sam_prompt(prompt, feats.embedding)
                multimask = box is None and len(prompt.points) <= 1
                out = self.heads.decode(feats.prompted, feats, sam_prompt, multimask)
            # The prompted frame's memory reads its own mask binarised (the official
            # predictor's setting: what the user saw is what is remembered).
            memory = self.heads.encode_memory(feats, out, binarize=True)
        track.bank.add(frame, memory, conditioning=True)
        result = out.result(frame, feats.embedding)
        track.prompted[frame] = result
        return result

    @torch.inference_mode()
    def step(
        self,
        track: Track,
        frame: int,
        embedding: Sam2Embedding | FrameFeatures,
        reverse: bool = False,
    ) -> TrackStep:
        """Track the object onto `frame`, the next one after those already tracked in the
        direction of travel (``reverse``: towards lower indices), and remember it."""
        self._check_frame(frame)
        if frame in track.prompted:  # a prompted frame keeps its prompted result
            return track.prompted[frame]
        if not track.bank.conditioning:
            raise TileSAMError(
                "This object has no annotated frame yet: annotate one (points, a box or a "
                "mask) before tracking it."
            )
        feats = self.frame(embedding)
        with self.model.autocast():  # the model's precision (class docstring)
            conditioned = self._conditioned(track, frame, feats, reverse)
            out = self.heads.decode(conditioned, feats, None, multimask=True)
            track.bank.add(frame, self.heads.encode_memory(feats, out), conditioning=False)
        return out.result(frame, feats.embedding)

    def _conditioned(
        self, track: Track, frame: int, feats: FrameFeatures, reverse: bool
    ) -> torch.Tensor:
        """The frame's features after attending to the object's memory."""
        sam = self.sam
        spatial = track.bank.spatial(frame, reverse, sam.num_maskmem)
        max_pointers = MAX_OBJ_PTRS if self.num_frames is None else min(self.num_frames, 16)
        pointers = track.bank.pointers(frame, reverse, max_pointers, self.num_frames)
        memory, memory_pos, n_ptr_tokens = self.heads.memory_tokens(
            spatial, pointers, max(max_pointers - 1, 1)
        )
        pos = self.heads.vision_pos(tuple(feats.vision.shape[-2:]))
        return sam.memory_attention(feats.vision, pos, memory, memory_pos, n_ptr_tokens)

    def _check_frame(self, frame: int) -> None:
        if frame < 0 or (self.num_frames is not None and frame >= self.num_frames):
            raise TileSAMError(
                f"Frame {frame} is outside the stack (0 to "
                f"{'...' if self.num_frames is None else self.num_frames - 1})."
            )


def _frame_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape != tuple(size):
        raise TileSAMError(
            f"The mask is {mask.shape[0]} x {mask.shape[1]} but the frame is "
            f"{size[0]} x {size[1]}: give a mask of the frame's size."
            if mask.ndim == 2
            else f"The mask must be 2-D (the frame's {size[0]} x {size[1]}), not {mask.shape}."
        )
    if not mask.any():
        raise TileSAMError("The mask is empty: annotate a frame where the object is.")
    return mask.astype(bool)
