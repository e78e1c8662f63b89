"""What the TileSAM algorithms share: the base class, the raster / model / cache
parameters, and the glue from QGIS objects to the core's arguments (a raster layer to its
file, a feature source to a prompt file, Processing feedback to the core's progress
callback and cancel flag, the core's errors to `QgsProcessingException`).

Nothing here segments: every call ends in :mod:`tilesam`.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsFeature,
    QgsFeatureSource,
    QgsField,
    QgsFields,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterBand,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingUtils,
    QgsVectorFileWriter,
)
from qgis.PyQt.QtCore import QCoreApplication, QVariant
from qgis.PyQt.QtGui import QIcon

ICON = Path(__file__).resolve().parents[1] / "icon.png"
MODEL_HELP = (
    "MODEL: a registry name (tiny, the bundled CPU model; vit_b, vit_l, vit_h, vit_t, "
    "medsam, micro_sam:vit_b_lm, ...) or a checkpoint file. CACHE: the embedding cache "
    "folder (zarr), the same one the tilesam command line and napari use for this raster; "
    "left empty, embeddings are kept in memory for this run only."
)


class TileSAMAlgorithm(QgsProcessingAlgorithm):
    """Base of the TileSAM algorithms: the name, help and icon from class attributes."""

    NAME = ""
    TITLE = ""
    HELP = ""

    def name(self) -> str:  # noqa: D102 - QGIS's API
        return self.NAME

    def displayName(self) -> str:  # noqa: N802, D102
        return tr(self.TITLE)

    def shortHelpString(self) -> str:  # noqa: N802, D102
        return tr(self.HELP)

    def icon(self) -> QIcon:  # noqa: D102
        return QIcon(str(ICON))

    def createInstance(self) -> TileSAMAlgorithm:  # noqa: N802, D102
        return type(self)()


def tr(text: str) -> str:
    """`text` translated in the TileSAM context."""
    return QCoreApplication.translate("TileSAM", text)


def add_source_parameters(alg: QgsProcessingAlgorithm, cache_input: bool = True) -> None:
    """``INPUT`` raster, ``BANDS``, ``MODEL`` and (an input folder, optional) ``CACHE``."""
    alg.addParameter(QgsProcessingParameterRasterLayer("INPUT", tr("Raster (a file GDAL reads)")))
    alg.addParameter(
        QgsProcessingParameterBand(
            "BANDS", tr("Bands the encoder sees (one or three; default all)"), None, "INPUT",
            optional=True, allowMultiple=True,
        )
    )  # fmt: skip
    alg.addParameter(QgsProcessingParameterString("MODEL", tr("Model"), defaultValue="tiny"))
    if cache_input:
        alg.addParameter(
            QgsProcessingParameterFile(
                "CACHE", tr("Embedding cache folder (empty: in memory)"),
                behavior=QgsProcessingParameterFile.Folder, optional=True,
            )
        )  # fmt: skip


def add_tile_parameter(alg: QgsProcessingAlgorithm) -> None:
    """``TILE``: the tile size (0 or empty: the cache's, else the model's input)."""
    param = QgsProcessingParameterNumber(
        "TILE", tr("Tile size, pixels (empty: the cache's, else the model's input)"),
        QgsProcessingParameterNumber.Integer, optional=True, minValue=0,
    )  # fmt: skip
    alg.addParameter(param)


def raster_path(alg: QgsProcessingAlgorithm, parameters: dict, context: Any) -> str:
    """The file behind the ``INPUT`` raster layer; refused clearly when it is not a file
    GDAL reads (a WMS, a PostGIS raster, a memory layer...)."""
    layer = alg.parameterAsRasterLayer(parameters, "INPUT", context)
    if layer is None:
        raise QgsProcessingException(tr("INPUT is not a raster layer or raster file."))
    path = layer.source().split("|")[0]
    if layer.providerType() != "gdal" or not os.path.exists(path):
        raise QgsProcessingException(
            tr(
                f"TileSAM reads rasters from files, and the layer '{layer.name()}' is not a "
                f"file ({layer.providerType()}: {layer.source()[:120]}): save it as a "
                "GeoTIFF first (Export > Save As...)."
            )
        )
    return path


def open_session(alg: QgsProcessingAlgorithm, parameters: dict, context: Any, cache: str | None):
    """A :class:`tilesam.Session` over the ``INPUT`` raster with ``BANDS``, ``MODEL``,
    `cache` and (where the algorithm has it) ``TILE``."""
    from tilesam import Session
    from tilesam.io import open_image

    path = raster_path(alg, parameters, context)
    bands = alg.parameterAsInts(parameters, "BANDS", context) or None
    model = alg.parameterAsString(parameters, "MODEL", context).strip() or None
    tile = None
    if alg.parameterDefinition("TILE") is not None and parameters.get("TILE") not in (None, ""):
        tile = alg.parameterAsInt(parameters, "TILE", context) or None
    return Session(open_image(path, bands=bands), model, cache or None, tile_size=tile)


def cache_folder(alg: QgsProcessingAlgorithm, parameters: dict, context: Any) -> str | None:
    """The optional ``CACHE`` input folder (None: in memory)."""
    return alg.parameterAsFile(parameters, "CACHE", context).strip() or None


class CancelFlag:
    """The core's cancel flag (``is_set()``) over Processing feedback's *Cancel*."""

    def __init__(self, feedback: QgsProcessingFeedback | None) -> None:
        self.feedback = feedback

    def is_set(self) -> bool:
        """Whether the user asked to cancel."""
        return self.feedback is not None and self.feedback.isCanceled()


def progress(feedback: QgsProcessingFeedback, start: float, stop: float) -> Callable:
    """The core's ``callback(done, total)``, shown as `start`..`stop` percent."""

    def callback(done: int, total: int) -> None:
        feedback.setProgress(start + (stop - start) * done / max(total, 1))

    return callback


@contextlib.contextmanager
def core_errors(feedback: QgsProcessingFeedback | None) -> Iterator[None]:
    """The core's errors as `QgsProcessingException` (its message says what to do), its
    warnings in the Processing log."""
    from tilesam.errors import TileSAMError

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        except TileSAMError as err:
            raise QgsProcessingException(str(err)) from None
        finally:
            for warning in caught:
                if feedback is not None and not issubclass(warning.category, DeprecationWarning):
                    feedback.pushWarning(str(warning.message))


def prompt_file(source: QgsFeatureSource, name: str, context: QgsProcessingContext) -> str:
    """The features of `source` written to a temporary GeoPackage in their own CRS (the
    core reprojects them), keeping each feature's id as the file's ``fid`` and an optional
    ``label`` attribute; a source without CRS or features is refused by `name`."""
    if not source.sourceCrs().isValid():
        raise QgsProcessingException(
            tr(
                f"The {name} layer has no CRS, so its features cannot be placed on the raster: "
                "set it in the layer's Properties > Source > Assigned CRS."
            )
        )
    fields = QgsFields()
    fields.append(QgsField("fid", QVariant.LongLong))
    label = source.fields().lookupField("label")
    if label >= 0:
        fields.append(source.fields().at(label))
    path = QgsProcessingUtils.generateTempFilename(f"tilesam_{name.lower()}.gpkg")
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName, options.layerName = "GPKG", "prompts"
    writer = QgsVectorFileWriter.create(
        path, fields, source.wkbType(), source.sourceCrs(), context.transformContext(), options
    )
    count = 0
    for feature in source.getFeatures():
        out = QgsFeature(fields)
        out.setGeometry(feature.geometry())
        out.setAttributes([feature.id()] + ([feature.attribute(label)] if label >= 0 else []))
        writer.addFeature(out)
        count += 1
    error = writer.errorMessage() if writer.hasError() else ""
    del writer  # closes the file
    if error:
        raise QgsProcessingException(tr(f"Could not copy the {name} layer: {error}"))
    if not count:
        raise QgsProcessingException(
            tr(f"The {name} layer has no features: add prompts to it (or choose another layer).")
        )
    return path
