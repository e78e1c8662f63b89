"""The algorithms of the TileSAM Processing provider, one module each."""

from __future__ import annotations

from qgis.core import QgsProcessingAlgorithm


def algorithms() -> list[QgsProcessingAlgorithm]:
    """One new instance of each TileSAM algorithm."""
    from tilesam_qgis.algorithms.embed import EmbedAlgorithm
    from tilesam_qgis.algorithms.segment_everything import SegmentEverythingAlgorithm
    from tilesam_qgis.algorithms.segment_points import SegmentPointsAlgorithm

    return [EmbedAlgorithm(), SegmentPointsAlgorithm(), SegmentEverythingAlgorithm()]
