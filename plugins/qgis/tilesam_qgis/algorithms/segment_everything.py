"""``tilesam:segmenteverything``: every object of a raster, with no prompt."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterNumber,
)

from tilesam_qgis.algorithms._common import (
    MODEL_HELP,
    CancelFlag,
    TileSAMAlgorithm,
    add_source_parameters,
    cache_folder,
    core_errors,
    open_session,
    progress,
    tr,
)
from tilesam_qgis.algorithms._outputs import add_outputs, output_paths, save


class SegmentEverythingAlgorithm(TileSAMAlgorithm):
    """Segment every object of the raster."""

    NAME = "segmenteverything"
    TITLE = "Segment everything"
    HELP = (
        "Finds every object of the raster with no prompt (TileSAM's segment-everything: the "
        "model's instance head where it has one, else a grid of clicks), stitched across "
        "tile borders. Missing embeddings are computed first (cancel keeps them in the "
        "cache). MIN_SIZE: the smallest object kept, in pixels (0: the default). OUTPUT: a "
        "label GeoTIFF on the raster's grid; OUTPUT_VECTOR: one polygon per object with id, "
        "area, area_m2 and score. " + MODEL_HELP
    )

    def initAlgorithm(self, config: dict | None = None) -> None:  # noqa: N802, D102
        add_source_parameters(self)
        self.addParameter(
            QgsProcessingParameterNumber(
                "MIN_SIZE", tr("Smallest object, pixels (0: the default)"),
                QgsProcessingParameterNumber.Integer, defaultValue=0, minValue=0,
            )
        )  # fmt: skip
        add_outputs(self)

    def processAlgorithm(  # noqa: N802, D102
        self, parameters: dict, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        min_size = self.parameterAsInt(parameters, "MIN_SIZE", context) or None
        with core_errors(feedback):
            labels, vector = output_paths(self, parameters, context)
            session = open_session(
                self, parameters, context, cache_folder(self, parameters, context)
            )
            feedback.pushInfo(f"{session}")
            cancel = CancelFlag(feedback)
            session.embed(progress=False, callback=progress(feedback, 0, 60), cancel=cancel)
            if feedback.isCanceled():
                raise QgsProcessingException(tr("Cancelled; the embedded tiles are kept."))
            result = session.segment_everything(
                min_size=min_size, callback=progress(feedback, 60, 95), cancel=cancel
            )
            if feedback.isCanceled():
                raise QgsProcessingException(tr("Cancelled; nothing was written."))
            outputs = save(result, session, labels, vector)
        feedback.pushInfo(f"{result.n_objects} object(s) ({result.mode} mode).")
        return outputs
