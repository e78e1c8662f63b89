"""`DecoderConfig`: the facts of a SAM-family mask decoder that its weights do not carry.

The torch model states them (:meth:`tilesam.SamModel.decoder_weights`), a cache keeps them
beside the decoder's weights, and the NumPy decoder runs by them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class DecoderConfig:
    """What the weights alone do not say: the model input side, the embedding grid, the
    attention heads and the windows the decoder was trained on (see ``Sam.decoder_windows``)."""

    image_size: int
    grid: tuple[int, int]
    num_heads: int
    decoder_windows: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, object]:
        """JSON values, as a cache keeps them beside the decoder's weights.

        >>> DecoderConfig(256, (16, 16), 8, (8, 12)).to_dict()["decoder_windows"]
        [8, 12]
        """
        return {
            "image_size": self.image_size,
            "grid": list(self.grid),
            "num_heads": self.num_heads,
            "decoder_windows": list(self.decoder_windows),
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, object]) -> DecoderConfig:
        """The config `to_dict` wrote.

        >>> c = DecoderConfig(256, (16, 16), 8, (8, 12))
        >>> DecoderConfig.from_dict(c.to_dict()) == c
        True
        """
        return cls(
            image_size=int(values["image_size"]),
            grid=tuple(int(v) for v in values["grid"]),
            num_heads=int(values["num_heads"]),
            decoder_windows=tuple(int(v) for v in values.get("decoder_windows", ())),
        )
