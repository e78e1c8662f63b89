"""Committed objects: polygons appended to an editable GeoPackage layer.

The layer is created on the first commit (beside the raster, or where the dock says),
added to the project, and put in edit mode; each object goes in through the layer's
edit buffer as one edit command, so QGIS's Undo (Ctrl+Z, the layer's undo stack) takes
it back and *Save Layer Edits* writes it.
"""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsProject,
    QgsVectorFileWriter,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from tilesam.errors import TileSAMError

#: The GeoPackage table the objects go to.
OBJECTS_TABLE = "objects"


def default_objects_path(raster: str | Path) -> Path:
    """The GeoPackage beside `raster` (``scene.tif`` → ``scene_objects.gpkg``).

    >>> default_objects_path("/data/scene.tif").as_posix()
    '/data/scene_objects.gpkg'
    """
    raster = Path(raster)
    return raster.with_name(f"{raster.stem}_objects.gpkg")


def objects_fields() -> QgsFields:
    """``id`` (the object's number), ``area`` (CRS units squared) and ``score`` (the
    model's predicted IoU), as the command line's polygons have them."""
    fields = QgsFields()
    fields.append(QgsField("id", QVariant.Int))
    fields.append(QgsField("area", QVariant.Double))
    fields.append(QgsField("score", QVariant.Double))
    return fields


def objects_layer(path: Path, crs: QgsCoordinateReferenceSystem) -> QgsVectorLayer:
    """The objects layer of the GeoPackage `path` in the project (the one already loaded,
    else opened, created first if missing, and added), in edit mode."""
    uri = f"{path}|layername={OBJECTS_TABLE}"
    project = QgsProject.instance()
    for layer in project.mapLayers().values():
        if isinstance(layer, QgsVectorLayer) and _same_source(layer.source(), uri):
            return _editing(layer)
    if not path.exists():
        _create(path, crs)
    layer = QgsVectorLayer(uri, f"TileSAM objects ({path.stem})", "ogr")
    if not layer.isValid() or layer.fields().indexOf("id") < 0:
        raise TileSAMError(
            f"'{path}' has no TileSAM objects table {OBJECTS_TABLE!r} that QGIS can edit: "
            "choose another objects file in the TileSAM dock."
        )
    project.addMapLayer(layer)
    return _editing(layer)


def append_object(layer: QgsVectorLayer, geometry: QgsGeometry, area: float, score: float) -> int:
    """Add one object to `layer` through its edit buffer, as one undoable edit command;
    returns its id (one more than the largest so far, unsaved edits included)."""
    index = layer.fields().indexOf("id")
    largest = layer.maximumValue(index)
    object_id = int(largest) + 1 if isinstance(largest, int | float) else 1
    feature = QgsFeature(layer.fields())
    feature.setGeometry(geometry)
    feature.setAttributes([None] * layer.fields().count())
    for name, value in (("id", object_id), ("area", area), ("score", score)):
        feature.setAttribute(name, value)
    layer.beginEditCommand(f"TileSAM object {object_id}")
    if not layer.addFeature(feature):
        layer.destroyEditCommand()
        raise TileSAMError(f"QGIS refused the object for layer {layer.name()!r}.")
    layer.endEditCommand()
    layer.triggerRepaint()
    return object_id


def _create(path: Path, crs: QgsCoordinateReferenceSystem) -> None:
    """An empty GeoPackage with the objects table, in `crs`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = OBJECTS_TABLE
    context = QgsProject.instance().transformContext()
    writer = QgsVectorFileWriter.create(
        str(path), objects_fields(), QgsWkbTypes.MultiPolygon, crs, context, options
    )
    error = writer.hasError()
    message = writer.errorMessage()
    del writer  # closes the file
    if error != QgsVectorFileWriter.NoError:
        raise TileSAMError(f"Could not create '{path}': {message}")


def _editing(layer: QgsVectorLayer) -> QgsVectorLayer:
    if not layer.isEditable() and not layer.startEditing():
        raise TileSAMError(f"Layer {layer.name()!r} cannot be edited (read-only file?).")
    return layer


def _same_source(source: str, uri: str) -> bool:
    def parts(text: str) -> tuple[str, str]:
        path, _, rest = text.partition("|")
        return str(Path(path).resolve()), rest.lower()

    return parts(source) == parts(uri)
