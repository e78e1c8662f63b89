"""The plugin object: registers the Processing provider and adds the map tool's dock.

Where the :mod:`tilesam` package cannot be imported by QGIS's Python, the plugin still
loads, registers nothing, and says once (in the message bar, and in the log for
``qgis_process``) which Python needs it and the command that installs it there.
"""

from __future__ import annotations

import sys
from typing import Any

from qgis.core import Qgis, QgsApplication, QgsMessageLog

TAG = "TileSAM"


def install_command(platform: str | None = None) -> str:
    """The command that installs :mod:`tilesam` into QGIS's own Python on `platform`
    (default: this one's).

    >>> install_command("win32")
    'python -m pip install tilesam   (in the OSGeo4W Shell, as administrator)'
    """
    platform = sys.platform if platform is None else platform
    if platform.startswith("win"):
        return "python -m pip install tilesam   (in the OSGeo4W Shell, as administrator)"
    if platform == "darwin":
        return "/Applications/QGIS.app/Contents/MacOS/bin/python3 -m pip install tilesam"
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    pins = '"numpy<2" "shapely>=2.0,<2.1" "attrs>=23.2"'  # with Debian's GDAL and GEOS
    return f"/usr/bin/{version} -m pip install --user --break-system-packages tilesam {pins}"


def missing_message(error: BaseException) -> str:
    """What the user reads when :mod:`tilesam` does not import: why, and the fix."""
    return (
        f"TileSAM needs the 'tilesam' Python package in QGIS's Python "
        f"(Python {sys.version.split()[0]}), which could not import it ({error}). Install "
        f"it with: {install_command()} ; then restart QGIS."
    )


class TileSAMPlugin:
    """What QGIS loads: the Processing provider and the map tool's dock."""

    def __init__(self, iface: Any) -> None:
        self.iface = iface
        self.provider: Any = None
        self.dock: Any = None
        self.problem: str | None = None
        self._told = False

    def initProcessing(self) -> None:  # noqa: N802 - QGIS's name
        """Register the provider (once), unless the core is missing."""
        if self.provider is not None or not self._core_ready():
            return
        from tilesam_qgis.provider import TileSAMProvider

        self.provider = TileSAMProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802
        """The provider and the map tool's dock."""
        self.initProcessing()
        if self.provider is None or self.iface is None:
            return
        from tilesam_qgis.dock import create_dock

        self.dock = create_dock(self.iface)  # docked on the right by create_dock

    def unload(self) -> None:
        """Remove what :meth:`initGui` added."""
        if self.dock is not None:
            self.dock.unload()  # its map tool, rubber bands and task first
            self.iface.removeDockWidget(self.dock)
            self.dock.deleteLater()
            self.dock = None
        registry = QgsApplication.processingRegistry()
        if self.provider is not None and registry.providerById("tilesam") is self.provider:
            registry.removeProvider(self.provider)  # the registry deletes it
        self.provider = None

    def _core_ready(self) -> bool:
        """Whether :mod:`tilesam` imports; if not, say so once."""
        if self.problem is None:
            try:
                import tilesam  # noqa: F401
            except ImportError as err:
                self.problem = missing_message(err)
            else:
                self.problem = ""
        if self.problem and not self._told:
            self._told = True
            QgsMessageLog.logMessage(self.problem, TAG, Qgis.Critical)
            if self.iface is not None:
                self.iface.messageBar().pushMessage(TAG, self.problem, Qgis.Critical, 0)
        return not self.problem
