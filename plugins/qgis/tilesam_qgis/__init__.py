"""TileSAM's QGIS plugin: a Processing provider and a map tool, thin glue over the
:mod:`tilesam` core (no segmentation code lives here).

QGIS loads this folder as a plugin and calls :func:`classFactory`. Nothing here imports
QGIS at module level, so that ``tilesam qgis-package`` can find the folder in any Python.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def classFactory(iface: Any) -> Any:  # noqa: N802 - the name QGIS calls
    """The plugin object QGIS asks for (`iface` is None in ``qgis_process``)."""
    from tilesam_qgis.plugin import TileSAMPlugin

    return TileSAMPlugin(iface)
