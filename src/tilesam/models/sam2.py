"""The assembled SAM 2.1 model: Hiera encoder, prompt encoder, SAM 2 mask decoder and the
video memory (memory encoder, memory attention, object pointers).

State-dict compatible with the official checkpoints key for key (``image_encoder.*``,
``sam_prompt_encoder.*``, ``sam_mask_decoder.*``, ``no_mem_embed`` and the memory's
:data:`MEMORY_MODULES`). Tracking with the memory is :mod:`tilesam.models.sam2_tracker`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import nn

from tilesam.models.mask_decoder import MLP
from tilesam.models.prompt_encoder import PromptEncoder
from tilesam.models.sam import PIXEL_MEAN, PIXEL_STD
from tilesam.models.sam2_decoder import Sam2MaskDecoder, sam2_transformer, sparse_prompt
from tilesam.models.sam2_hiera import Sam2ImageEncoder
from tilesam.models.sam2_memory import MemoryEncoder
from tilesam.models.sam2_memory_attention import MemoryAttention
from tilesam.models.transformer import ImageTokens

if TYPE_CHECKING:
    from tilesam.models.registry import Architecture

# Top-level names of the official checkpoint's video-memory parts.
MEMORY_MODULES = frozenset(
    {
        "memory_attention",
        "memory_encoder",
        "mask_downsample",
        "obj_ptr_proj",
        "obj_ptr_tpos_proj",
        "maskmem_tpos_enc",
        "no_mem_pos_enc",
        "no_obj_ptr",
        "no_obj_embed_spatial",
    }
)


# SAM 2.1's memory: 7 frames (the prompted ones and the 6 before), 64 channels; 4 layers of
# memory attention (a checkpoint may have another count: :func:`fit_memory`).
NUM_MASKMEM, MEM_DIM, MEMORY_LAYERS = 7, 64, 4
_LAYER = re.compile(r"memory_attention\.layers\.(\d+)\.")


def split_memory(
    state: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A SAM 2 state dict as ``(image-path weights, memory weights)``, for a consumer that
    needs only the image path (the loader keeps both)."""
    image, memory = {}, {}
    for key, value in state.items():
        (memory if key.split(".")[0] in MEMORY_MODULES else image)[key] = value
    return image, memory


class Sam2Features(NamedTuple):
    """One image's features for the decoder: the embedding ``(B, 256, h, w)`` (``no_mem_embed``
    added, as the official image predictor does) and the projected high-resolution maps,
    ``feat_s0`` ``(B, 32, 4h, 4w)`` and ``feat_s1`` ``(B, 64, 2h, 2w)``."""

    embedding: torch.Tensor
    feat_s0: torch.Tensor
    feat_s1: torch.Tensor


class Sam2(nn.Module):
    """Hiera image encoder + SAM prompt encoder + SAM 2 mask decoder, ImageNet normalisation.

    The official attribute names (``sam_prompt_encoder``, ``sam_mask_decoder``) give the
    official keys; ``prompt_encoder`` and ``mask_decoder`` name the same modules as in
    :class:`tilesam.models.sam.Sam`.
    """

    decoder_windows: tuple[int, ...] = ()  # SAM 2 decodes on the whole grid

    def __init__(
        self,
        *,
        image_encoder: Sam2ImageEncoder,
        prompt_encoder: PromptEncoder,
        mask_decoder: Sam2MaskDecoder,
        memory_layers: int = MEMORY_LAYERS,
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.sam_prompt_encoder = prompt_encoder
        self.sam_mask_decoder = mask_decoder
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, prompt_encoder.embed_dim))
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(-1, 1, 1), False)
        self._build_memory(prompt_encoder.embed_dim, memory_layers)

    def _build_memory(self, dim: int, layers: int) -> None:
        """The video memory's modules, under the official names (the checkpoint's keys)."""
        self.memory_attention = MemoryAttention(layers, dim, MEM_DIM)
        self.memory_encoder = MemoryEncoder(dim, MEM_DIM)
        # Turns a mask prompt into the decoder's mask input when a frame is annotated by mask.
        self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
        self.obj_ptr_proj = MLP(dim, dim, dim, num_layers=3)
        self.obj_ptr_tpos_proj = nn.Linear(dim, MEM_DIM)
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(NUM_MASKMEM, 1, 1, MEM_DIM))
        # Loaded for completeness: SAM 2.1 adds no_mem_embed directly and never reads it.
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, dim))
        self.no_obj_ptr = nn.Parameter(torch.zeros(1, dim))
        self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, MEM_DIM))

    @property
    def has_memory(self) -> bool:
        """Whether the video memory is there (a checkpoint without it loads the image path)."""
        return self.memory_encoder is not None

    @property
    def num_maskmem(self) -> int:
        """Spatial memories one frame attends to: the prompted frames' plus this many minus
        one recent frames' (7 in SAM 2.1)."""
        return self.maskmem_tpos_enc.shape[0]

    @property
    def prompt_encoder(self) -> PromptEncoder:
        return self.sam_prompt_encoder

    @property
    def mask_decoder(self) -> Sam2MaskDecoder:
        return self.sam_mask_decoder

    @property
    def image_size(self) -> int:
        """Side of the square model input in pixels."""
        return self.sam_prompt_encoder.input_image_size[0]

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``(B, 3, S, S)`` images on the 0..255 scale (already resized to the
        square input: SAM 2 does not pad)."""
        return (x - self.pixel_mean) / self.pixel_std

    def encode(self, x: torch.Tensor) -> Sam2Features:
        """Normalised ``(B, 3, S, S)`` input to the decoder's features."""
        feat_s0, feat_s1, embedding = self.image_encoder(x)
        decoder = self.sam_mask_decoder
        # The projections depend on the image alone: computed once here, not per prompt.
        return Sam2Features(
            embedding + self.no_mem_embed.view(1, -1, 1, 1),
            decoder.conv_s0(feat_s0),
            decoder.conv_s1(feat_s1),
        )

    def image_tokens(
        self, image_embeddings: torch.Tensor, image_pe: torch.Tensor | None = None
    ) -> ImageTokens:
        """Features prepared once for many prompts without mask input (see
        :meth:`tilesam.models.sam.Sam.image_tokens`)."""
        if image_pe is None:
            image_pe = self.sam_prompt_encoder.get_dense_pe()
        no_mask = self.sam_prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        return self.sam_mask_decoder.image_tokens(image_embeddings, image_pe, no_mask)

    def decode(
        self,
        image: torch.Tensor | ImageTokens,
        high_res: tuple[torch.Tensor, torch.Tensor],
        *,
        points: tuple[torch.Tensor, torch.Tensor] | None = None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        image_pe: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Prompts to low-res logits ``(B, M, 4h, 4w)``, IoU ``(B, M)``, object score ``(B, 1)``.

        Points ``(coords (B, N, 2), labels (B, N))`` and boxes ``(B, 4)`` are ``(x, y)`` in
        pixels of the square model input; ``mask_input`` is ``(B, 1, 4h, 4w)`` logits.
        ``image`` is the embedding, or :meth:`image_tokens` of it when there is no mask input.
        """
        encoder = self.sam_prompt_encoder
        if isinstance(image, ImageTokens) and mask_input is not None:
            raise ValueError("ImageTokens hold the no-mask dense prompt: pass the features")
        sparse = sparse_prompt(encoder, points, boxes)
        if mask_input is not None:
            dense = encoder.mask_downscaling(mask_input)
        else:
            dense = encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        if image_pe is None:
            image_pe = encoder.get_dense_pe()
        return self.sam_mask_decoder(image, image_pe, sparse, dense, high_res, multimask_output)


def build_sam2(arch: Architecture) -> Sam2:
    """Build an untrained :class:`Sam2` of architecture ``arch`` (encoder ``"hiera"``)."""
    size = arch.embedding_size
    encoder = Sam2ImageEncoder(trunk=dict(arch.encoder_kwargs), d_model=arch.prompt_dim)
    prompt_encoder = PromptEncoder(
        embed_dim=arch.prompt_dim,
        image_embedding_size=(size, size),
        input_image_size=(arch.image_size, arch.image_size),
        mask_in_chans=arch.mask_in_chans,
    )
    transformer = sam2_transformer(
        arch.decoder_depth, arch.prompt_dim, arch.decoder_heads, arch.decoder_mlp_dim
    )
    decoder = Sam2MaskDecoder(
        transformer_dim=arch.prompt_dim,
        transformer=transformer,
        iou_head_hidden_dim=arch.iou_head_hidden_dim,
    )
    return Sam2(image_encoder=encoder, prompt_encoder=prompt_encoder, mask_decoder=decoder)


def fit_memory(sam: Sam2, state: dict[str, torch.Tensor]) -> None:
    """Shape `sam`'s memory like the checkpoint `state`: as many memory-attention layers, or
    no memory at all when the checkpoint has none of its keys (an image-only fine-tune)."""
    _, memory = split_memory(state)
    if not memory:
        for name in MEMORY_MODULES:
            setattr(sam, name, None)
        return
    layers = len({m.group(1) for k in memory if (m := _LAYER.match(k))})
    if layers != len(sam.memory_attention.layers):
        dim = sam.sam_prompt_encoder.embed_dim
        sam.memory_attention = MemoryAttention(layers, dim, MEM_DIM)
