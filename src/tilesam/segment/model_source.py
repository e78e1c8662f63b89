"""Which model answers a session: the loaded model, or the decoder its cache keeps.

A cache made for a model's weights file keeps that model's decoder weights
(:meth:`tilesam.cache.store.EmbeddingStore.write_decoder`). A session given the same model
by name or file then answers prompts with those weights in NumPy and loads the model (and
torch) only when a tile must be embedded: a reopened slide gives its first mask in well
under a second.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tilesam.cache.store import EmbeddingStore
from tilesam.decode.decoder_config import DecoderConfig
from tilesam.decode.numpy_decoder import NumpyDecoder
from tilesam.decode.numpy_predictor import NumpyPredictor
from tilesam.errors import TileSAMError
from tilesam.models.card import ModelCard
from tilesam.models.registry import MODELS, mask_thresholds
from tilesam.models.weights import file_sha256, model_file

if TYPE_CHECKING:
    from tilesam.cache.distributed import ModelRecipe
    from tilesam.cache.memory import MemoryStore
    from tilesam.decode.predictor import MaskPredictor
    from tilesam.models.sam_model import SamModel

logger = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors")


def cached_decoder(
    model: Any, checkpoint: Any, stored: EmbeddingStore | None
) -> tuple[ModelCard, NumpyDecoder] | None:
    """The card and the cache's decoder of a model given by name or file that the cache
    `stored` was made for (same name, same weights file hash); None where the model must
    be loaded (it then reports any problem with itself)."""
    if stored is None or not (model is None or isinstance(model, str | os.PathLike)):
        return None
    decoder = stored.read_decoder()
    if decoder is None:
        return None
    name, checkpoint = name_and_checkpoint(model, checkpoint)
    try:
        path, label, entry = model_file(name, checkpoint)
    except TileSAMError:
        return None
    made_for = stored.signature.get("model", {})
    if not path.is_file() or made_for.get("name") != label:
        return None
    if made_for.get("weights_sha256") != file_sha256(path):
        return None
    weights, config = decoder
    try:
        numpy_decoder = NumpyDecoder(weights, DecoderConfig.from_dict(config))
    except (KeyError, TypeError, ValueError, IndexError):
        return None  # weights this version cannot run: the model decodes instead
    mask_threshold, box_mask_threshold = mask_thresholds(entry, made_for["encoder"])
    card = ModelCard(
        name=label,
        weights_hash=made_for["weights_sha256"],
        encoder=made_for["encoder"],
        image_size=int(made_for["input_size"]),
        embedding_shape=stored.embedding_shape,
        mask_threshold=mask_threshold,
        box_mask_threshold=box_mask_threshold,
    )
    return card, numpy_decoder


def cache_model_name(model: Any, checkpoint: Any, stored: EmbeddingStore | None) -> Any:
    """`model`, or for a session given none, the registry model an existing cache was made
    for: a cache opens with its own model from every face, without naming it again."""
    if model is not None or checkpoint is not None or stored is None:
        return model
    name = stored.signature.get("model", {}).get("name")
    return name if name in MODELS else None


def name_and_checkpoint(model: Any, checkpoint: Any) -> tuple[str | None, Any]:
    """`load_model`'s name and checkpoint for a session's `model` (a registry name or a
    checkpoint file) and `checkpoint` arguments.

    >>> name_and_checkpoint("vit_b", None), name_and_checkpoint("ft/model.pt", None)
    (('vit_b', None), (None, PosixPath('ft/model.pt')))
    """
    if model is None:
        return None, checkpoint
    if not isinstance(model, str | os.PathLike):
        raise TileSAMError(
            f"model must be a registry name, a checkpoint path or a SamModel, got "
            f"{type(model).__name__}."
        )
    path = Path(model).expanduser()
    if checkpoint is None and (path.is_file() or path.suffix.lower() in CHECKPOINT_SUFFIXES):
        return None, path
    return os.fspath(model), checkpoint


def resolve_model(
    model: Any, checkpoint: Any, device: Any, trust: bool, precision: str = "auto"
) -> tuple[SamModel, ModelRecipe | None]:
    """The model (loaded once per process), and how dask workers rebuild it (None: from
    the driver's weights)."""
    if is_loaded_model(model):
        return model, None
    from tilesam.cache.distributed import ModelRecipe
    from tilesam.models.loading import shared_model

    name, checkpoint = name_and_checkpoint(model, checkpoint)
    loaded = shared_model(name, checkpoint, device, trust_checkpoint=trust, precision=precision)
    ckpt = None if checkpoint is None else os.fspath(Path(checkpoint).expanduser().absolute())
    recipe = ModelRecipe(
        name=name,
        checkpoint=ckpt,
        device=str(loaded.device),
        trust_checkpoint=trust,
        precision=precision,
    )
    return loaded, recipe


def is_loaded_model(model: Any) -> bool:
    """Whether `model` is a :class:`tilesam.SamModel`, without importing torch to ask."""
    # A SamModel exists only once its module (and torch) is imported.
    module = sys.modules.get("tilesam.models.sam_model")
    return module is not None and isinstance(model, module.SamModel)


def check_same_model(model: SamModel, card: ModelCard) -> None:
    """Refuse a model loaded later than the session opened (to embed a missing tile)
    that is not the one the cache and its decoder were checked against (`card`): its
    weights file changed in between."""
    loaded = model.card
    fields = ("weights_hash", "encoder", "image_size", "embedding_shape")
    changed = [f for f in fields if getattr(loaded, f) != getattr(card, f)]
    if changed:
        raise TileSAMError(
            f"The weights of model {card.name!r} changed on disk since this session "
            f"opened its cache ({', '.join(changed)} differ): the cache's embeddings "
            "belong to the old weights. Open a new session (with overwrite=True to "
            "recompute the cache for the new weights)."
        )


def session_predictor(
    model: SamModel | None,
    card: ModelCard,
    decoder: NumpyDecoder | None,
    store: MemoryStore | EmbeddingStore,
) -> MaskPredictor:
    """What turns prompts into masks: the loaded `model`, else the cache's `decoder`
    weights in NumPy. A new on-disk cache is given the loaded model's decoder."""
    if model is None:
        thresholds = {"mask_threshold": card.mask_threshold}
        thresholds["box_mask_threshold"] = card.box_mask_threshold
        return NumpyPredictor(decoder, **thresholds)
    sam2 = bool(card.high_res_shapes)
    # SAM 2's decoder (with high-resolution features) is not one NumPy runs: not stored.
    if not sam2 and isinstance(store, EmbeddingStore) and store.read_decoder() is None:
        weights, config = model.decoder_weights()
        try:
            store.write_decoder(weights, config.to_dict())
        except TileSAMError as err:  # the cache serves as it is; sessions load the model
            logger.warning("%s", err)
    return model
