"""Segment everything: every object of an image or a volume, once, with no prompt.

The layer above :mod:`tilesam.segment` (see ``docs/architecture.md``), one module per step:

- :mod:`.settings`: the thresholds (:class:`AutoSettings`) and the modes;
- :mod:`.grid`: grid mode, a lattice of clicks per tile decoded from the cached embeddings;
- :mod:`.batch`: many clicks on one tile decoded at once (the masks a single click gets);
- :mod:`.borders`: pieces of an object cut by tile borders merged into one object;
- :mod:`.masks`: objects as windows (:class:`Instance`), non-maximum suppression,
  overlaps, holes and specks;
- :mod:`.link`: pieces of neighbouring slices linked into 3D objects, and the ids;
- :mod:`.table`: one row per object, CSV;
- :mod:`.write`: labels written block by block;
- :mod:`.result`: :class:`AutoResult`, what a call returns;
- :mod:`.api`: :func:`segment_everything`.

How the modes work, the thresholds, and what they measure: ``docs/automatic.md``.
"""

from tilesam.automatic.api import segment_everything
from tilesam.automatic.masks import Instance
from tilesam.automatic.result import AutoResult
from tilesam.automatic.settings import MODES, AutoSettings

__all__ = ["MODES", "AutoResult", "AutoSettings", "Instance", "segment_everything"]
