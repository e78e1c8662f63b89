"""TileSAM's napari plugin: thin glue over the :mod:`tilesam` core API.

The manifest (``napari.yaml``) declares the contributions, each a small function or the
dock widget in one of the modules here.
From the napari console, `annotator` gives the dock widget's controller::

    >>> import tilesam_napari
    >>> ann = tilesam_napari.annotator(viewer)  # doctest: +SKIP
    >>> ann.setup("nuclei", tilesam_napari.Settings(cache="nuclei.zarr"))  # doctest: +SKIP
    >>> ann.segment(points=[(120, 80)]); ann.commit()  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tilesam_napari._session import Settings

if TYPE_CHECKING:
    import napari

    from tilesam_napari._controller import Annotator

__version__ = "0.1.0"

__all__ = ["Settings", "annotator", "show_map_coordinates"]


def annotator(viewer: napari.Viewer) -> Annotator:
    """The TileSAM controller (`Annotator`) of `viewer`, docking the widget if needed.

    Parameters
    ----------
    viewer : napari.Viewer

    Returns
    -------
    Annotator
        With ``segment(points=..., labels=..., box=...)``, ``commit()``, ``undo()``,
        ``clear()``, ``next_mask()``, ``embed()``, ``propagate()`` and ``setup(...)``.
    """
    from tilesam_napari._widget import TileSAMWidget, docked_widget

    widget = docked_widget(viewer)
    if widget is None:
        widget = TileSAMWidget(viewer)
        viewer.window.add_dock_widget(widget, name="TileSAM", area="right")
    return widget.annotator


def show_map_coordinates(viewer: napari.Viewer) -> None:
    """Show the cursor's map coordinates (in the layer's CRS) in `viewer`'s status bar
    while a georeferenced layer is selected.

    TileSAM's readers and its widget do this themselves; call it for georeferenced layers
    added from code (``metadata={"tilesam_geometry": {"georeference": ...}}``).
    """
    from tilesam_napari._geo import show_map_coordinates as show

    show(viewer)
