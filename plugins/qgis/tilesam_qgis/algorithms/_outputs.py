"""The outputs the segmenting algorithms share: ``OUTPUT`` (a label GeoTIFF on the source
grid) and ``OUTPUT_VECTOR`` (polygons with id, area, score and prompt id), checked
before any work and written by the core (each file moved into place only when complete).
"""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingOutputNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterVectorDestination,
)

from tilesam_qgis.algorithms._common import tr


def add_outputs(alg: QgsProcessingAlgorithm) -> None:
    """``OUTPUT``, ``OUTPUT_VECTOR`` and the ``OBJECTS`` count."""
    alg.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", tr("Labels")))
    alg.addParameter(
        QgsProcessingParameterVectorDestination(
            "OUTPUT_VECTOR", tr("Polygons"), QgsProcessing.TypeVectorPolygon, optional=True,
            createByDefault=True,
        )
    )  # fmt: skip
    alg.addOutput(QgsProcessingOutputNumber("OBJECTS", tr("Objects found")))


def output_paths(alg: QgsProcessingAlgorithm, parameters: dict, context: Any) -> tuple:
    """``(labels, polygons or None)``, checked by the core before any work (known
    endings, folders that exist)."""
    from tilesam.io.polygons import check_vector_path
    from tilesam.io.write import check_labels_path

    labels = alg.parameterAsOutputLayer(parameters, "OUTPUT", context)
    vector = alg.parameterAsOutputLayer(parameters, "OUTPUT_VECTOR", context) or None
    check_labels_path(labels)
    if vector is not None:
        check_vector_path(vector, overwrite=True)
    return labels, vector


def save(result: Any, session: Any, labels: str, vector: str | None) -> dict[str, Any]:
    """Write `result` (an :class:`tilesam.automatic.AutoResult`) and the outputs' dict."""
    result.save(labels, like=session.source)
    if vector is not None:
        result.save_polygons(vector, overwrite=True)
    return {"OUTPUT": labels, "OUTPUT_VECTOR": vector, "OBJECTS": result.n_objects}
