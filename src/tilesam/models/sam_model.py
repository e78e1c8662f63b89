"""The user-facing model: embed an image once, then turn prompts into masks quickly.

Coordinates are array-index order: points ``(y, x)``, boxes ``(y0, x0, y1, x1)`` end-exclusive,
in pixels of the original image. Only :mod:`tilesam.models` speaks SAM's ``(x, y)``; the
prompt handling shared with the NumPy decoder is :mod:`tilesam.decode.predictor`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from tilesam.decode.decoder_config import DecoderConfig
from tilesam.decode.embedding import ImageEmbedding
from tilesam.decode.logits import MaskLogits
from tilesam.decode.predictor import MaskPredictor
from tilesam.decode.reuse import PrepareOnReuse
from tilesam.decode.sam_prompt import SamPrompt
from tilesam.errors import TileSAMError
from tilesam.models.card import ModelCard
from tilesam.models.decoder_graphs import DecoderGraphs
from tilesam.models.precision import encoder_dtype
from tilesam.models.preprocess import prepare_image
from tilesam.models.registry import Architecture
from tilesam.models.sam import Sam
from tilesam.models.transformer import ImageTokens

__all__ = ["SamModel", "available_devices", "checked_device"]

#: The decode of the same features at which their image side is prepared: preparing a 64 x 64
#: grid costs about 6 ms and saves 1.1-1.3 ms a decode against the traced graph that decodes
#: features as they are (this project's CPU, one thread), so only features prompted often gain.
PREPARE_AT_USE = 5


def available_devices() -> list[str]:
    """The devices this machine can run a model on: ``cpu``, each CUDA GPU, ``mps``."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        found.append("mps")
    return found


def checked_device(device: str | torch.device) -> torch.device:
    """`device` as a ``torch.device``, refused with a :class:`TileSAMError` where this machine
    cannot run on it (torch itself fails later with a bare ``AssertionError``).

    >>> checked_device("cpu")
    device(type='cpu')
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise TileSAMError(
            f"Unknown device {device!r}: use 'cpu', 'cuda', 'cuda:<index>' or 'mps' "
            f"(available here: {', '.join(available_devices())})."
        ) from err
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            why = (
                "this PyTorch is built without CUDA"
                if torch.version.cuda is None
                else "no CUDA GPU is visible (check the driver and CUDA_VISIBLE_DEVICES)"
            )
        elif dev.index is not None and dev.index >= count:
            why = f"this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}"
        else:
            return dev
    elif dev.type == "mps":
        if torch.backends.mps.is_available():
            return dev
        why = "MPS is the GPU of Apple silicon Macs, and this PyTorch " + (
            "has no MPS support" if not torch.backends.mps.is_built() else "finds none here"
        )
    elif dev.type != "cpu":
        backend = getattr(torch, dev.type, None)
        if backend is not None and getattr(backend, "is_available", lambda: False)():
            return dev
        why = f"this PyTorch has no {dev.type!r} devices here"
    else:
        return dev
    raise TileSAMError(
        f"Device {str(device)!r} is not available: {why}. Available here: "
        f"{', '.join(available_devices())}. Pass one of those (command line: --device cpu), "
        "or leave the device out to use the fastest available."
    )


class SamModel(MaskPredictor):
    """A SAM-family network ready for use: ``embed`` images, ``predict`` masks from prompts.

    Build one with :func:`tilesam.load_model`. Prompts decoded on features as they are (windows
    of the token grid, or a whole grid decoded once, as a slice in propagation) run through
    traced graphs of the decoder once they are ready (``decoder_graphs``, see
    :mod:`tilesam.models.decoder_graphs`: the same outputs, faster); pass ``decoder_graphs=False``
    for weights that still change.

    Examples
    --------
    >>> import tilesam
    >>> from tilesam.samples import load_sample
    >>> image, truth = load_sample("nuclei")
    >>> model = tilesam.load_model("tiny")
    >>> emb = model.embed(image)
    >>> y, x = np.argwhere(truth == 1).mean(axis=0)  # a click inside nucleus 1
    >>> result = model.predict(emb, points=[(y, x)], labels=[1])
    >>> mask = result.mask()
    >>> mask.shape, bool(truth[mask].mean() > 0.5)
    ((256, 256), True)
    """

    #: Whether many clicks on one embedding can go through the decoder in one call
    #: (:func:`tilesam.automatic.batch.decode_clicks`).
    batches_clicks = True

    def __init__(
        self,
        sam: Sam,
        *,
        name: str,
        architecture: Architecture,
        weights_hash: str | None = None,
        device: str | torch.device = "cpu",
        decoder_graphs: bool = True,
        mask_threshold: float = 0.0,
        box_mask_threshold: float | None = None,
        precision: str = "auto",
    ) -> None:
        self.device = checked_device(device)
        # The model's own, from its card (tilesam.models.registry.mask_thresholds).
        self.mask_threshold = float(mask_threshold)
        self.box_mask_threshold = box_mask_threshold
        self.sam = sam.to(self.device).eval()
        self.name = name
        self.architecture = architecture
        self.weights_hash = weights_hash
        #: The precision asked for, and the encoder's number format it gives here (see
        #: :mod:`tilesam.models.precision`).
        self.precision = precision
        self.encoder_dtype = encoder_dtype(precision, self.device, architecture.encoder)
        self._image_pe: torch.Tensor | None = None
        # Features (windows of the grid, whole grids decoded once) decode through traced graphs
        # (see tilesam.models.decoder_graphs); they freeze the weights, so a model whose weights
        # still change (training) decodes eagerly.
        self._feature_decoder = DecoderGraphs(self.sam) if decoder_graphs else self.sam
        # Against eager decoding, prepared image tokens save 7-11 ms a prompt: worth it from
        # the second; against the graphs, see PREPARE_AT_USE.
        self._reuse: PrepareOnReuse[ImageTokens | torch.Tensor] = PrepareOnReuse(
            at_use=PREPARE_AT_USE if decoder_graphs else 2, keep_made=False
        )

    @property
    def image_pe(self) -> torch.Tensor:
        """The decoder's positional encoding of the embedding grid, computed once."""
        if self._image_pe is None:
            with torch.inference_mode():
                # Channels-last memory: the decoder reads it token-major, which is then a
                # view rather than a transposed copy at every prompt (1 ms of a 25 ms decode).
                pe = self.sam.prompt_encoder.get_dense_pe()
                self._image_pe = pe.contiguous(memory_format=torch.channels_last)
        return self._image_pe

    def __repr__(self) -> str:
        encoder = self.architecture.encoder
        kind = type(self).__name__
        dtype = str(self.encoder_dtype).removeprefix("torch.")
        return f"{kind}(name={self.name!r}, encoder={encoder!r}, device={self.device}, {dtype})"

    @property
    def image_size(self) -> int:
        """Side of the square model input (the natural tile size)."""
        return self.sam.image_size

    def embed(
        self, image: np.ndarray, *, intensity: tuple[float, float] | None = None
    ) -> ImageEmbedding:
        """Embed a 2D image, ``(H, W)`` grayscale or ``(H, W, 3)`` RGB, of any dtype.

        ``intensity`` fixes the normalisation range (see
        :func:`tilesam.models.preprocess.normalize_intensity`); by default it is the image's own.
        A constant image raises :class:`TileSAMError` (a blank *tile* of a larger image is
        fine: :meth:`embed_batch` takes it).
        """
        pixels = np.asarray(image)
        if intensity is None and pixels.size and pixels.min() == pixels.max():
            raise TileSAMError(
                f"The image is constant (every pixel is {pixels.flat[0]}): nothing to segment."
            )
        return self.embed_batch([image], intensity=intensity)[0]

    def embed_batch(
        self,
        tiles: Sequence[np.ndarray] | np.ndarray,
        *,
        intensity: tuple[float, float] | None = None,
        batch_size: int = 4,
    ) -> list[ImageEmbedding]:
        """Embed many images of equal size at once (e.g. the tiles of a large image)."""
        if len(tiles) == 0:
            return []
        shapes = {np.shape(t) for t in tiles}
        if len(shapes) > 1:
            raise TileSAMError(f"embed_batch needs tiles of one size, got {sorted(shapes)}.")
        out = []
        for start in range(0, len(tiles), batch_size):
            prepared = [self._prepare(t, intensity) for t in tiles[start : start + batch_size]]
            pixels = torch.cat([p for p, _ in prepared]).to(self.device)
            out += self._embeddings(pixels, [size for _, size in prepared])
        return out

    def _prepare(
        self, image: np.ndarray, intensity: tuple[float, float] | None
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        """One image as the encoder's input ``(1, 3, h, w)`` and its original ``(H, W)``."""
        return prepare_image(image, self.image_size, intensity)

    def _embeddings(
        self, pixels: torch.Tensor, sizes: Sequence[tuple[int, int]]
    ) -> list[ImageEmbedding]:
        """Embeddings of a batch of prepared images, of these original sizes."""
        features = self._encode(pixels)
        input_size = tuple(pixels.shape[-2:])
        return [
            ImageEmbedding(f[None], original_size=size, input_size=input_size)
            for f, size in zip(features, sizes)
        ]

    def autocast(self) -> torch.autocast:
        """The context the encoder (and SAM 2.1's tracking) computes in: bfloat16 autocast
        where :attr:`encoder_dtype` is bfloat16 (see :mod:`tilesam.models.precision`)."""
        dtype = self.encoder_dtype
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype != torch.float32)

    @torch.inference_mode()
    def _encode(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.sam.preprocess(pixels)
        with self.autocast():
            features = self.sam.image_encoder(x)
        return features.float()

    def decoder_weights(self) -> tuple[dict[str, np.ndarray], DecoderConfig]:
        """The prompt encoder's and mask decoder's weights as NumPy arrays, and what else
        :class:`tilesam.decode.numpy_decoder.NumpyDecoder` needs to run them."""
        weights = {
            name: value.detach().float().cpu().numpy()
            for name, value in self.sam.state_dict().items()
            if name.startswith(("prompt_encoder.", "mask_decoder."))
        }
        config = DecoderConfig(
            image_size=self.image_size,
            grid=self.grid,
            num_heads=self.sam.mask_decoder.transformer.layers[0].self_attn.num_heads,
            decoder_windows=self.decoder_windows,
        )
        return weights, config

    @property
    def grid(self) -> tuple[int, int]:
        """The embedding's ``(h, w)`` tokens."""
        return tuple(self.sam.prompt_encoder.image_embedding_size)

    @property
    def decoder_windows(self) -> tuple[int, ...]:
        return self.sam.decoder_windows

    @property
    def card(self) -> ModelCard:
        """What a session needs to know of this model besides running it."""
        return ModelCard(
            name=self.name,
            weights_hash=self.weights_hash,
            encoder=self.architecture.encoder,
            image_size=self.image_size,
            embedding_shape=(self.sam.prompt_encoder.embed_dim, *self.grid),
            mask_threshold=self.mask_threshold,
            box_mask_threshold=self.box_mask_threshold,
        )

    @torch.inference_mode()
    def _decode(
        self, embedding: ImageEmbedding, prompt: SamPrompt, window: tuple[int, int, int, int] | None
    ) -> tuple[np.ndarray, MaskLogits]:
        """Decode on ``window`` of the token grid, or on the whole grid: on a window its
        features and positional encoding, prompts at their place in the whole input (as in
        training, see :mod:`tilesam.training.interactive`)."""
        args = self._torch_prompt(prompt)
        features = embedding.features
        if window is None:
            mask = args["mask_input"]
            image = self._image_tokens(features) if mask is None else self._on_device(features)
            # Prepared tokens decode eagerly; features decoded as they are (a slice in
            # propagation, a prompt with a mask input) through the graphs, as windows do.
            decoder = self.sam if isinstance(image, ImageTokens) else self._feature_decoder
            tokens, hyper_in, iou = decoder.decode_tokens(image, image_pe=self.image_pe, **args)
            decoded, extent = None, None
        else:
            y0, y1, x0, x1 = window
            crop = (..., slice(y0, y1), slice(x0, x1))
            if args["mask_input"] is not None:
                args["mask_input"] = args["mask_input"][..., 4 * y0 : 4 * y1, 4 * x0 : 4 * x1]
            tokens, hyper_in, iou = self._feature_decoder.decode_tokens(
                self._on_device(features)[crop], image_pe=self.image_pe[crop], **args
            )
            decoded, extent = window, self._extent(embedding)
        logits = MaskLogits(
            self._upscaler(hyper_in),
            tokens[0],
            hyper_in.shape[1],
            self.grid,
            decoded=decoded,
            extent=extent,
        )
        return iou[0].float().cpu().numpy(), logits

    def _upscaler(self, hyper_in: torch.Tensor):
        """``MaskLogits``' upscaling: token rows ``(n, C)`` to NumPy logits ``(M, 4h, 4w)``."""
        decoder = self.sam.mask_decoder

        @torch.inference_mode()
        def upscale(tokens: torch.Tensor, hw: tuple[int, int]) -> np.ndarray:
            return decoder.upscale_masks(tokens[None], hyper_in, hw)[0].float().cpu().numpy()

        return upscale

    def _torch_prompt(self, prompt: SamPrompt) -> dict[str, Any]:
        """``Sam.decode_tokens``' prompt arguments on this model's device."""

        def tensor(values: np.ndarray | None) -> torch.Tensor | None:
            return None if values is None else torch.from_numpy(values).to(self.device)[None]

        points = None
        if prompt.coords is not None:
            points = (tensor(np.ascontiguousarray(prompt.coords)), tensor(prompt.labels))
        mask = tensor(prompt.mask)
        return {
            "points": points,
            "boxes": tensor(prompt.box),
            "mask_input": None if mask is None else mask[None],
            "multimask_output": prompt.multimask,
        }

    def _on_device(self, features: Any) -> torch.Tensor:
        return torch.as_tensor(features).to(self.device)

    def _image_tokens(self, features: Any) -> ImageTokens | torch.Tensor:
        """The decoder's image side for ``features``: as they are, or prepared once they
        have come often (see :mod:`tilesam.decode.reuse`)."""
        return self._reuse.get(
            features,
            lambda: self._on_device(features),
            lambda on_device: self.sam.image_tokens(on_device, self.image_pe),
        )
