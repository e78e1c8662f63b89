"""Files opened as napari opens them, naming no plugin (issue #22, item 9): TileSAM's
reader is napari's preferred one for the formats it owns, so NIfTI, NRRD, MHA and
GeoTIFF keep their spacing or georeference when dropped on the viewer.

napari reads a dropped file (and *File > Open*, ``napari file`` and
``viewer.open(path, plugin=None)``) with the reader its preferences name for the file's
pattern, else with the only reader that claims it, else it asks. Its own reader claims
all of these formats (without geometry, and NIfTI not at all), so TileSAM writes itself
into the preferences on its first use, never over the user's choice.
"""

from __future__ import annotations

import numpy as np
import pytest
from tilesam_napari import _io

from tilesam.samples import sample_path

SPACING_XYZ = (0.5, 0.6, 2.0)


@pytest.fixture
def volumes(tmp_path):
    """One small int16 volume as NIfTI, NRRD and MHA, 2 x 0.6 x 0.5 mm, origin (z, y, x)
    = (-7, 3, 4)."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.arange(4 * 20 * 30, dtype=np.int16).reshape(4, 20, 30))
    image.SetSpacing(SPACING_XYZ)
    image.SetOrigin((4.0, 3.0, -7.0))
    paths = {ext: tmp_path / f"vol.{ext}" for ext in ("nii.gz", "nii", "nrrd", "mha")}
    for path in paths.values():
        sitk.WriteImage(image, str(path))
    return paths


def _drop(viewer, path) -> None:
    """Drop `path` on the viewer's canvas, as a user drags a file from their desktop."""
    from napari.plugins.utils import get_preferred_reader
    from qtpy.QtCore import QMimeData, QPointF, Qt, QUrl
    from qtpy.QtGui import QDropEvent

    # Without a preferred reader napari would open its reader dialog (and wait for a user).
    assert get_preferred_reader(path) == "tilesam", f"napari would ask how to read {path}"
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(
        QPointF(10, 10),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
    )
    viewer.window._qt_viewer.dropEvent(event)


def _preferred(pattern: str) -> str | None:
    from napari.settings import get_settings

    return get_settings().plugins.extension2reader.get(pattern)


def test_the_first_use_of_tilesam_makes_it_the_reader_of_a_dropped_nifti(
    make_napari_viewer, volumes
):
    """A new napari profile: no preference, so napari would ask (here: raise) between its
    own reader and TileSAM's. The first TileSAM contribution used (a sample) activates the
    plugin, which sets the preferences; a dropped NIfTI then opens with its spacing."""
    import npe2
    from napari.errors import MultipleReaderError

    viewer = make_napari_viewer()  # fresh settings: no reader preference
    assert _preferred("*.nii.gz") is None
    with pytest.raises(MultipleReaderError):
        viewer.open(str(volumes["nii.gz"]), plugin=None)
    npe2.PluginManager.instance().deactivate("tilesam")  # as in a new napari process
    viewer.open_sample("tilesam", "nuclei")  # napari activates TileSAM for it
    assert all(_preferred(p) == "tilesam" for p in _io.READER_PATTERNS)

    _drop(viewer, sample_path("ct_volume"))
    layer = viewer.layers["ct_volume"]
    assert layer.source.reader_plugin == "tilesam" and layer.data.shape == (40, 160, 160)
    np.testing.assert_allclose(layer.scale, (2.5, 0.8, 0.8), rtol=1e-6)


def test_volumes_open_with_their_spacing_naming_no_plugin(widget, volumes):
    """The dock widget made from the console sets the preferences too; NIfTI (both
    endings), NRRD and MHA then keep spacing and origin, dropped or opened from code the
    way napari's GUI does (``plugin=None``)."""
    viewer = widget.viewer
    for ext, path in volumes.items():
        layer = viewer.open(str(path), plugin=None)[0]
        assert layer.source.reader_plugin == "tilesam", ext
        np.testing.assert_allclose(layer.scale, SPACING_XYZ[::-1], rtol=1e-6, err_msg=ext)
        np.testing.assert_allclose(layer.translate, (-7.0, 3.0, 4.0), err_msg=ext)
    _drop(viewer, volumes["nrrd"])
    np.testing.assert_allclose(viewer.layers[-1].scale, SPACING_XYZ[::-1], rtol=1e-6)


def test_a_dropped_geotiff_is_placed_by_its_transform(widget):
    import rasterio

    path = sample_path("aerial")
    _drop(widget.viewer, path)
    layer = widget.viewer.layers["aerial"]
    assert layer.source.reader_plugin == "tilesam"
    assert layer.metadata["tilesam_geometry"]["georeference"]["crs"]
    with rasterio.open(path) as dataset:
        x, y = dataset.transform @ (400 + 0.5, 300 + 0.5)  # the centre of pixel (300, 400)
    np.testing.assert_allclose(layer.data_to_world((300, 400)), (-y, x))
    assert widget.viewer.open(str(path), plugin=None)[0].scale[0] == 30.0


def test_an_ome_zarr_folder_opens_with_its_scale(widget, tmp_path):
    path = str(tmp_path / "labels.ome.zarr")
    labels = np.zeros((4, 40, 60), np.uint8)
    labels[1:3, 10:20, 5:25] = 7
    _io.write_ome_zarr(path, labels, {"scale": (2.5, 0.5, 0.25), "translate": (-10, 3, 4.5)})
    layer = widget.viewer.open(path, plugin=None)[0]
    assert layer.source.reader_plugin == "tilesam"
    np.testing.assert_allclose(layer.scale, (2.5, 0.5, 0.25))


def test_a_tiff_tilesam_does_not_read_still_opens(widget, tmp_path):
    """Preferring TileSAM for every ``.tif`` costs no TIFF its opening: one TileSAM does
    not read (a 5D hyperstack) is read by napari's own reader, as without TileSAM."""
    import tifffile

    path = tmp_path / "hyperstack.tif"
    data = (np.arange(2 * 3 * 4 * 16 * 16) % 251).astype(np.uint8).reshape(2, 3, 4, 16, 16)
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TZCYX"})
    assert _io.get_reader(str(path)) is None  # TileSAM's own reader declines it
    (layer,) = widget.viewer.open(str(path), plugin=None)
    (napari_layer,) = widget.viewer.open(str(path), plugin="napari")
    np.testing.assert_array_equal(np.asarray(layer.data), np.asarray(napari_layer.data))


def test_the_user_s_own_reader_choice_is_kept(make_napari_viewer):
    """A preference set in napari's *Preferences > Plugins > File Readers* (or by ticking
    *remember* in its dialog) stays: TileSAM adds only patterns nobody chose a reader for."""
    from napari.settings import get_settings

    make_napari_viewer()
    plugins = get_settings().plugins
    plugins.extension2reader = {"*.tif": "napari", "*.gz": "someone-else"}
    added = _io.prefer_tilesam_reader()
    assert "*.tif" not in added and "*.nii.gz" not in added  # *.gz decides .nii.gz files
    assert plugins.extension2reader["*.tif"] == "napari"
    assert plugins.extension2reader["*.gz"] == "someone-else"
    assert plugins.extension2reader["*.nrrd"] == "tilesam"
    assert _io.prefer_tilesam_reader() == []  # nothing twice
