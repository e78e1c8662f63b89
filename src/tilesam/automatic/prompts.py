"""Prompts mode: the instance head's seeds, each refined by the mask decoder as a click.

Instance mode (:mod:`.instance`) finds one seed per object, deep inside it near its centre;
prompts mode clicks each seed's centre instead of a grid point and lets the mask decoder
draw the object, as a user's click would be answered. Everything after the clicks is grid
mode's (:mod:`.grid`): the filters on predicted IoU and stability, non-maximum suppression
within and across tiles, objects cut by tile borders made one (``borders``), overlaps,
holes and specks. Far fewer clicks than a grid (one per object), each where an object is.
"""

from __future__ import annotations

import numpy as np

from tilesam.automatic.grid import GridSlice, Tile
from tilesam.automatic.instance import InstanceSlice
from tilesam.automatic.settings import AutoSettings
from tilesam.segment.session import Session


class PromptsSlice(GridSlice):
    """Prompts mode over one slice of a session (see the module docstring).

    Examples
    --------
    >>> from tilesam.samples import load_sample
    >>> image, truth = load_sample("nuclei")
    >>> found = PromptsSlice(Session(image), AutoSettings()).run(0)
    >>> len(found) > 30
    True
    """

    def __init__(self, session: Session, settings: AutoSettings) -> None:
        super().__init__(session, settings)
        self.seeds = InstanceSlice(session, settings)

    def points(self, z: int, tile: Tile) -> np.ndarray:
        """The centres of the seeds `tile` owns (image pixels), one click per object."""
        found = self.seeds.tile_objects(z, tile)
        self.stats["seeds"] += len(found)
        return np.array([obj.point for obj in found], dtype=float).reshape(-1, 2)
