"""The TileSAM Processing provider (id ``tilesam``): the toolbox, the graphical modeller,
``qgis_process`` and PyQGIS's ``processing.run("tilesam:...")`` all reach it."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from tilesam_qgis import __version__
from tilesam_qgis.algorithms import algorithms
from tilesam_qgis.algorithms._common import ICON


class TileSAMProvider(QgsProcessingProvider):
    """The provider of ``tilesam:embed``, ``tilesam:segmentpoints`` and
    ``tilesam:segmenteverything``."""

    def id(self) -> str:  # noqa: D102 - QGIS's API
        return "tilesam"

    def name(self) -> str:  # noqa: D102
        return "TileSAM"

    def longName(self) -> str:  # noqa: N802, D102
        return f"TileSAM {__version__}"

    def icon(self) -> QIcon:  # noqa: D102
        return QIcon(str(ICON))

    def loadAlgorithms(self) -> None:  # noqa: N802, D102
        for algorithm in algorithms():
            self.addAlgorithm(algorithm)

    def supportedOutputRasterLayerExtensions(self) -> list[str]:  # noqa: N802, D102
        return ["tif"]

    def supportedOutputVectorLayerExtensions(self) -> list[str]:  # noqa: N802, D102
        return ["gpkg", "geojson", "shp"]
