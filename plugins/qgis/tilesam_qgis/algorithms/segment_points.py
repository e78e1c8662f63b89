"""``tilesam:segmentpoints``: one object per point (or box) feature, in any CRS."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFeatureSource,
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
    prompt_file,
    tr,
)
from tilesam_qgis.algorithms._outputs import add_outputs, output_paths, save


class SegmentPointsAlgorithm(TileSAMAlgorithm):
    """Segment one object per feature of a point or polygon layer."""

    NAME = "segmentpoints"
    TITLE = "Segment from points or boxes"
    HELP = (
        "Segments one object per feature: a point of the POINTS layer (an optional 'label' "
        "field: 1 positive, 0 negative) or the bounding box of a polygon of the BOXES layer. "
        "The layers may be in any CRS (features are reprojected onto the raster); an object "
        "crossing tile borders comes back whole. OUTPUT: a label GeoTIFF on the raster's "
        "grid (object ids in feature order, 0 background); OUTPUT_VECTOR: one polygon per "
        "object in the raster's CRS with id, area, area_m2, score and prompt_id (the "
        "feature's id). ONE_OBJECT: all features prompt a single object. " + MODEL_HELP
    )

    def initAlgorithm(self, config: dict | None = None) -> None:  # noqa: N802, D102
        add_source_parameters(self)
        for name, title, kind in (
            ("POINTS", "Prompt points (optional 'label' field)", QgsProcessing.TypeVectorPoint),
            ("BOXES", "Prompt boxes (polygons' bounds)", QgsProcessing.TypeVectorPolygon),
        ):
            self.addParameter(
                QgsProcessingParameterFeatureSource(name, tr(title), [kind], optional=True)
            )
        self.addParameter(
            QgsProcessingParameterBoolean(
                "ONE_OBJECT", tr("All features prompt one object"), defaultValue=False
            )
        )
        add_outputs(self)

    def processAlgorithm(  # noqa: N802, D102
        self, parameters: dict, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        from tilesam.automatic.features import segment_features

        prompts = self._prompt_file(parameters, context)
        with core_errors(feedback):
            labels, vector = output_paths(self, parameters, context)
            session = open_session(
                self, parameters, context, cache_folder(self, parameters, context)
            )
            features = _read_features(session, prompts, self._raster_name(parameters, context))
            feedback.pushInfo(f"{len(features)} prompt feature(s) on {session}")
            _embed_for(session, features, feedback)
            one = self.parameterAsBoolean(parameters, "ONE_OBJECT", context)
            result = segment_features(session, features, one_object=one, progress=False)
            feedback.setProgress(90)
            outputs = save(result, session, labels, vector)
        feedback.pushInfo(f"{result.n_objects} object(s) from {len(features)} feature(s).")
        return outputs

    def _prompt_file(self, parameters: dict, context: QgsProcessingContext) -> str:
        """The POINTS or BOXES layer as a prompt file (exactly one of them)."""
        given = {
            name: self.parameterAsSource(parameters, name, context) for name in ("POINTS", "BOXES")
        }
        given = {name: source for name, source in given.items() if source is not None}
        if len(given) != 1:
            raise QgsProcessingException(
                tr("Give a POINTS layer or a BOXES layer (one layer of prompts per run).")
            )
        ((name, source),) = given.items()
        return prompt_file(source, name, context)

    def _raster_name(self, parameters: dict, context: QgsProcessingContext) -> str:
        return self.parameterAsRasterLayer(parameters, "INPUT", context).name()


def _read_features(session: Any, path: str, raster: str) -> list:
    """The prompt file's features on the raster's pixels (reprojected by the core)."""
    from tilesam.io.vectors import read_prompt_features

    geo = session.source.georeference
    if geo is None or not geo.crs:
        raise QgsProcessingException(
            tr(
                f"The raster '{raster}' has no CRS, so map features cannot be placed on it: "
                "assign one (Raster > Projections > Assign Projection, or gdal_edit.py "
                "-a_srs EPSG:<code>)."
            )
        )
    return read_prompt_features(path, geo, session.grid.slice_shape)


def _embed_for(session: Any, features: list, feedback: QgsProcessingFeedback) -> None:
    """Embed the tiles the prompts start in (the core says which), with progress and
    cancel; what is embedded stays in the cache."""
    from tilesam.decode.prompt import Prompt

    needed = set()
    for feature in features:
        prompt = Prompt.make(**feature.as_prompt(), needs_object=False)
        needed.update(session.prompt_tiles(prompt))
    tiles = [tile for tile in session.missing_tiles() if tile in needed]
    if tiles:
        callback = progress(feedback, 0, 80)
        session.compute_tiles(tiles, callback=callback, cancel=CancelFlag(feedback))
    if feedback.isCanceled():
        raise QgsProcessingException(tr("Cancelled; the embedded tiles are kept in the cache."))
