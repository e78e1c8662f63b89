"""The plugin object: it registers the provider, and without `tilesam` in QGIS's Python
it loads and says once how to install it."""

from __future__ import annotations

import sys
from types import SimpleNamespace


def _iface():
    from qgis.gui import QgsMessageBar

    bar = QgsMessageBar()
    return SimpleNamespace(messageBar=lambda: bar, bar=bar)


def test_without_tilesam_the_plugin_loads_and_says_once_how_to_install_it(qgis_app, monkeypatch):
    import tilesam_qgis

    monkeypatch.setitem(sys.modules, "tilesam", None)  # `import tilesam` fails
    iface = _iface()
    plugin = tilesam_qgis.classFactory(iface)
    plugin.initProcessing()
    plugin.initGui()
    plugin.initGui()
    items = iface.bar.items()
    assert len(items) == 1
    text = items[0].text()
    assert "pip install" in text and "tilesam" in text and "Traceback" not in text
    assert plugin.provider is None
    plugin.unload()


def test_the_plugin_registers_and_removes_its_provider(qgis_app):
    from qgis.core import QgsApplication

    registry = QgsApplication.processingRegistry()
    plugin = qgis_app.tilesam_plugin  # the session's, as QGIS would have loaded it
    assert registry.providerById("tilesam") is plugin.provider
    plugin.unload()
    assert registry.providerById("tilesam") is None and plugin.provider is None
    plugin.initProcessing()
    assert registry.algorithmById("tilesam:embed") is not None
