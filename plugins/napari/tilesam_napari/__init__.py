"""TileSAM's napari plugin: thin glue over the :mod:`tilesam` core API.

The manifest (``napari.yaml``) declares the contributions; each is a small function here.
"""

__version__ = "0.1.0"
