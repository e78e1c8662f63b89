"""One tracked object's memory bank, bounded: the prompted frames and a few recent ones.

The official video predictor keeps every frame's memory for the whole video and, for each
new frame, reads those of the prompted ("conditioning") frames, of the ``num_maskmem - 1``
frames just before it in the direction of travel, and the object pointers of up to 15
frames before it. :class:`MemoryBank` answers the same questions with the same frame
arithmetic, but forgets: it keeps the spatial memory of the last ``max_recent`` frames it
was given and the pointers of the last ``max_pointers``, so its size does not grow with the
stack. Over a stack short enough that nothing it would read has been forgotten (the
official predictor reads nothing older either), it gives exactly the official memory.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass

import torch

# The official cap on object pointers read per frame (max_obj_ptrs_in_encoder).
MAX_OBJ_PTRS = 16


@dataclass(frozen=True)
class FrameMemory:
    """What a tracked frame leaves behind: its spatial memory ``(1, 64, h, w)`` (bfloat16,
    as the official predictor stores it; None once the bank has let it go) and its object
    pointer ``(1, C)``."""

    features: torch.Tensor | None
    obj_ptr: torch.Tensor

    @property
    def nbytes(self) -> int:
        """Bytes held by the tensors."""
        tensors = [self.obj_ptr] if self.features is None else [self.obj_ptr, self.features]
        return sum(t.numel() * t.element_size() for t in tensors)


class MemoryBank:
    """The memories of one object: every prompted frame's, and the most recent others'.

    Parameters
    ----------
    max_recent
        Unprompted frames whose spatial memory is kept (SAM 2.1: ``num_maskmem - 1`` = 6,
        all a frame ever reads).
    max_pointers
        Unprompted frames whose object pointer is kept (SAM 2.1 reads up to 15).
    """

    def __init__(self, max_recent: int = 6, max_pointers: int = MAX_OBJ_PTRS - 1) -> None:
        if max_recent < 1 or max_pointers < max_recent:
            raise ValueError("need 1 <= max_recent <= max_pointers")
        self.max_recent, self.max_pointers = max_recent, max_pointers
        self.conditioning: dict[int, FrameMemory] = {}
        # In the order the frames were written: the oldest are forgotten first.
        self.recent: OrderedDict[int, FrameMemory] = OrderedDict()

    def __len__(self) -> int:
        return len(self.conditioning) + len(self.recent)

    @property
    def nbytes(self) -> int:
        """Bytes held by all the memories (flat along a stack once ``max_pointers`` frames
        have been tracked)."""
        memories = [*self.conditioning.values(), *self.recent.values()]
        return sum(m.nbytes for m in memories)

    def add(self, frame: int, memory: FrameMemory, *, conditioning: bool) -> None:
        """Remember `frame`; a prompted frame replaces any unprompted memory of it."""
        if conditioning:
            self.recent.pop(frame, None)
            self.conditioning[frame] = memory
            return
        self.recent.pop(frame, None)  # a frame tracked again becomes the newest
        self.recent[frame] = memory
        while len(self.recent) > self.max_pointers:
            self.recent.popitem(last=False)
        for old in list(self.recent)[: -self.max_recent]:
            kept = self.recent[old]
            if kept.features is not None:
                self.recent[old] = dataclasses.replace(kept, features=None)

    def spatial(
        self, frame: int, reverse: bool, num_maskmem: int
    ) -> list[tuple[int, torch.Tensor]]:
        """The spatial memories `frame` attends to, as ``(t_pos, features)``, in the official
        order: prompted frames (``t_pos`` 0) first, then the frames ``num_maskmem - 1`` ...
        1 steps back along the direction of travel (``t_pos`` 1 ... ``num_maskmem - 1``)."""
        out = [(0, m.features) for m in self.conditioning.values()]
        step = -1 if reverse else 1
        for t_pos in range(1, num_maskmem):
            previous = self.recent.get(frame - step * (num_maskmem - t_pos))
            if previous is not None and previous.features is not None:
                out.append((t_pos, previous.features))
        return out

    def pointers(
        self, frame: int, reverse: bool, max_pointers: int, num_frames: int | None
    ) -> list[tuple[int, torch.Tensor]]:
        """The object pointers `frame` attends to, as ``(temporal distance, pointer)``: the
        prompted frames behind it (or at it), then up to ``max_pointers - 1`` frames back."""
        step = -1 if reverse else 1
        out = [
            ((frame - t) * step, m.obj_ptr)
            for t, m in self.conditioning.items()
            if (t >= frame if reverse else t <= frame)
        ]
        for distance in range(1, max_pointers):
            t = frame - step * distance
            if t < 0 or (num_frames is not None and t >= num_frames):
                break
            previous = self.recent.get(t)
            if previous is not None:
                out.append((distance, previous.obj_ptr))
        return out
