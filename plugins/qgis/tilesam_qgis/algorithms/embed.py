"""``tilesam:embed``: fill a raster's embedding cache, tile by tile, resumable."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
)

from tilesam_qgis.algorithms._common import (
    MODEL_HELP,
    CancelFlag,
    TileSAMAlgorithm,
    add_source_parameters,
    add_tile_parameter,
    core_errors,
    open_session,
    progress,
    tr,
)


class EmbedAlgorithm(TileSAMAlgorithm):
    """Compute the embeddings a raster's cache still misses."""

    NAME = "embed"
    TITLE = "Compute embeddings"
    HELP = (
        "Computes the image embeddings of every tile of the raster into the CACHE folder "
        "(zarr), once: after that every prompt costs only the mask decoder. Tiles already in "
        "the cache are skipped, so a cancelled run resumes where it stopped. BANDS: one band "
        "or three, in the order the encoder sees them. TILE: tile size in pixels. BATCH "
        "(advanced): tiles per encoder batch (0: the model's default). " + MODEL_HELP
    )

    def initAlgorithm(self, config: dict | None = None) -> None:  # noqa: N802, D102
        add_source_parameters(self, cache_input=False)
        self.addParameter(
            QgsProcessingParameterFolderDestination("CACHE", tr("Embedding cache folder"))
        )
        add_tile_parameter(self)
        batch = QgsProcessingParameterNumber(
            "BATCH",
            tr("Tiles per encoder batch (cancel and progress between batches; 0: 4 for "
               "small encoders, 1 for ViT-B and larger)"),
            QgsProcessingParameterNumber.Integer, defaultValue=0, minValue=0,
        )  # fmt: skip
        batch.setFlags(batch.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(batch)
        self.addOutput(QgsProcessingOutputNumber("TILES", tr("Tiles in the cache")))
        self.addOutput(QgsProcessingOutputNumber("COMPUTED", tr("Tiles computed by this run")))

    def processAlgorithm(  # noqa: N802, D102
        self, parameters: dict, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        cache = self.parameterAsFileOutput(parameters, "CACHE", context)
        with core_errors(feedback):
            session = open_session(self, parameters, context, cache)
            feedback.pushInfo(f"{session}")
            computed = session.embed(
                progress=False,
                batch_size=self.parameterAsInt(parameters, "BATCH", context) or None,
                callback=progress(feedback, 0, 100),
                cancel=CancelFlag(feedback),
            )
        left = len(session.missing_tiles())
        if feedback.isCanceled() and left:
            raise QgsProcessingException(
                tr(
                    f"Cancelled with {left} of {session.n_tiles} tiles still to embed; the "
                    f"{session.n_done} done are kept in '{cache}': run again to resume."
                )
            )
        feedback.pushInfo(f"{session.n_done}/{session.n_tiles} tiles in '{cache}'.")
        return {"CACHE": cache, "TILES": session.n_done, "COMPUTED": computed}
