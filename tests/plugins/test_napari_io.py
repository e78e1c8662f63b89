"""Readers and writers keep the geometry: spacing -> scale, origin -> translate, and back;
pyramids open as multiscale layers; the sample data loads."""

from __future__ import annotations

import numpy as np
from tilesam_napari import _io, _sample_data


def _labels(shape=(4, 40, 60)):
    labels = np.zeros(shape, np.uint32)
    labels[1:3, 10:20, 5:25] = 7
    return labels


def test_ome_zarr_round_trip_keeps_scale_and_translate(tmp_path):
    path = str(tmp_path / "labels.ome.zarr")
    meta = {"scale": (2.5, 0.5, 0.25), "translate": (-10.0, 3.0, 4.5)}
    assert _io.write_ome_zarr(path, _labels(), meta) == [path]
    reader = _io.get_reader(path)
    ((data, layer_meta, kind),) = reader(path)
    assert kind == "image" and layer_meta["scale"] == meta["scale"]
    assert layer_meta["translate"] == meta["translate"]
    np.testing.assert_array_equal(np.asarray(data), _labels())
    np.testing.assert_array_equal(data[2, 10:12, ::5], _labels()[2, 10:12, ::5])


def test_tiff_round_trip_keeps_spacing(tmp_path):
    path = str(tmp_path / "labels.tif")
    assert _io.write_labels_file(path, _labels(), {"scale": (2.0, 0.5, 0.25)}) == [path]
    ((data, meta, _),) = _io.read_image(path)
    assert meta["scale"] == (2.0, 0.5, 0.25)
    np.testing.assert_array_equal(np.asarray(data), _labels())


def test_pyramidal_tiff_opens_as_multiscale(tmp_path, make_napari_viewer):
    import tifffile

    path = str(tmp_path / "pyramid.ome.tif")
    image = (np.arange(512 * 512) % 251).astype(np.uint8).reshape(512, 512)
    with tifffile.TiffWriter(path) as tif:
        tif.write(image, subifds=2, tile=(128, 128), metadata={"axes": "YX"})
        tif.write(image[::2, ::2], subfiletype=1, tile=(128, 128))
        tif.write(image[::4, ::4], subfiletype=1, tile=(128, 128))
    ((levels, meta, _),) = _io.read_image(path)
    assert meta["multiscale"] and [lvl.shape for lvl in levels] == [
        (512, 512),
        (256, 256),
        (128, 128),
    ]
    viewer = make_napari_viewer()
    layer = viewer.add_image(levels, **meta)
    assert layer.multiscale and layer.data[0].shape == (512, 512)


def test_nifti_labels_keep_the_source_geometry(tmp_path, make_napari_viewer):
    """A CT-like volume read through the plugin, labels drawn over it, written as NIfTI:
    spacing, origin and direction of the source come back."""
    import SimpleITK as sitk

    source = tmp_path / "ct.nii.gz"
    volume = sitk.GetImageFromArray(
        (np.arange(4 * 40 * 60) % 977).reshape(4, 40, 60).astype(np.int16)
    )
    volume.SetSpacing((0.25, 0.5, 2.5))  # (x, y, z)
    volume.SetOrigin((4.5, 3.0, -10.0))
    volume.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))  # LPS flips, as from a RAS NIfTI
    sitk.WriteImage(volume, str(source))
    ((data, meta, _),) = _io.get_reader(str(source))(str(source))
    assert meta["scale"] == (2.5, 0.5, 0.25) and meta["translate"] == (-10.0, 3.0, 4.5)

    viewer = make_napari_viewer()
    image = viewer.add_image(data, **meta)
    from tilesam_napari._layers import add_labels

    labels = add_labels(viewer, image, "committed_objects", _labels())
    out = str(tmp_path / "labels.nii.gz")
    _io.write_labels_file(out, labels.data, {**labels._get_state(), "metadata": labels.metadata})
    back = sitk.ReadImage(out)
    np.testing.assert_allclose(back.GetSpacing(), volume.GetSpacing())
    np.testing.assert_allclose(back.GetOrigin(), volume.GetOrigin())
    np.testing.assert_allclose(back.GetDirection(), volume.GetDirection())
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), _labels())


def test_mosaic_sample_is_large_and_seamless():
    ((image, meta, kind),) = _sample_data.mosaic()
    assert kind == "image" and image.shape == _sample_data.MOSAIC_SHAPE
    np.testing.assert_array_equal(image[:512, :512], _sample_data.nuclei()[0][0])
    np.testing.assert_array_equal(image[:512, 512:1024], image[:512, :512][:, ::-1])


def test_volume_samples_keep_their_spacing():
    (image, meta, kind), (labels, label_meta, _) = _sample_data.ct_volume()
    assert kind == "image" and image.shape == labels.shape == (40, 160, 160)
    np.testing.assert_allclose(meta["scale"], (2.5, 0.8, 0.8))
    assert label_meta["scale"] == meta["scale"] and int(labels.max()) == 4
    (image, meta, _), _ = _sample_data.nuclei_volume()
    assert image.shape == (32, 128, 128)


def test_geotiff_is_placed_on_the_map_and_labels_save_back_as_geotiff(
    widget, wait_idle, settings, tmp_path
):
    """The aerial sample lands at (-northing, easting) with its pixel size; a click there
    reaches the core as image pixels; committed labels are written on the source's grid."""
    import rasterio
    from tilesam_napari._layers import COMMITTED, POINTS

    from tilesam.samples import sample_path

    source = sample_path("aerial")
    ((data, meta, _),) = _io.get_reader(str(source))(str(source))
    assert meta["metadata"]["tilesam_geometry"]["georeference"]["crs"]
    layer = widget.viewer.add_image(data, **meta)
    with rasterio.open(source) as dataset:
        crs, transform = dataset.crs, dataset.transform
    x, y = transform @ (400 + 0.5, 300 + 0.5)  # the centre of pixel (300, 400)
    np.testing.assert_allclose(layer.data_to_world((300, 400)), (-y, x))

    ann = widget.annotator
    ann.setup(layer, settings)
    points = widget.viewer.layers[POINTS]
    points.add([points.world_to_data((-y, x))])  # a click at that map position
    wait_idle(ann)
    np.testing.assert_allclose(ann.prompt().points, [[300, 400]])
    expected = ann.session.segment(points=[(300, 400)]).mask
    assert ann.commit() == 1
    committed = widget.viewer.layers[COMMITTED]
    np.testing.assert_array_equal(committed.data > 0, expected)
    committed.data[100:120, 200:230] = 2  # and one field drawn by hand
    out = str(tmp_path / "fields.tif")
    state = {**committed._get_state(), "metadata": committed.metadata}
    _io.write_labels_file(out, committed.data, state)
    with rasterio.open(out) as written:
        assert written.crs == crs and written.transform == transform
        np.testing.assert_array_equal(written.read(1), committed.data)


def test_georaster_sample_overlays_its_labels(make_napari_viewer):
    viewer = make_napari_viewer()
    (image, meta, _), (labels, label_meta, kind) = _sample_data.georaster()
    assert kind == "labels" and image.shape == (512, 512, 3) and int(labels.max()) == 19
    image_layer = viewer.add_image(image, **meta)
    labels_layer = viewer.add_labels(labels, **label_meta)
    np.testing.assert_allclose(labels_layer.extent.world, image_layer.extent.world[:, :2])
    assert image_layer.extent.world[0, 0] < -2e6  # -northing of the Albers grid


def test_a_rotated_geotiff_keeps_prompt_and_result_layers_on_its_grid(
    widget, wait_idle, settings, tmp_path, write_geotiff
):
    """A rotated map grid is shown through an affine; the layers TileSAM adds share it, and
    labels are written back with the rotated transform."""
    import rasterio
    from affine import Affine
    from tilesam_napari._layers import COMMITTED, POINTS

    transform = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4100000.0) @ Affine.rotation(20.0)
    image = (np.arange(200 * 300) % 251).astype(np.uint8).reshape(200, 300)
    path = write_geotiff(tmp_path / "rotated.tif", image, transform)
    ((data, meta, _),) = _io.read_image(path)
    assert "affine" in meta and "scale" not in meta
    layer = widget.viewer.add_image(data, **meta)
    x, y = transform @ (120.5, 50.5)
    np.testing.assert_allclose(layer.data_to_world((50, 120)), (-y, x))
    ann = widget.annotator
    ann.setup(layer, settings)
    points = widget.viewer.layers[POINTS]
    points.add([points.world_to_data((-y, x))])
    wait_idle(ann)
    np.testing.assert_allclose(ann.prompt().points, [[50, 120]], atol=1e-6)
    ann.commit()
    committed = widget.viewer.layers[COMMITTED]
    np.testing.assert_allclose(committed.data_to_world((50, 120)), (-y, x))
    out = str(tmp_path / "rotated_labels.tif")
    _io.write_labels_file(out, committed.data, {"metadata": committed.metadata})
    with rasterio.open(out) as written:
        assert written.transform.almost_equals(transform)


def _geotiff(write_geotiff, path, bands: int, **profile) -> str:
    """A small 10 m GeoTIFF of `bands` bands in UTM 33N."""
    data = (np.arange(bands * 32 * 48) % 200).astype(np.uint8).reshape(bands, 32, 48)
    return write_geotiff(path, data, (10.0, 0.0, 400000.0, 0.0, -10.0, 5000000.0), **profile)


def test_multiband_geotiffs_open_as_rgb_or_one_layer_per_band(
    tmp_path, make_napari_viewer, write_geotiff
):
    """Three bands are RGB, and so is RGBA (GDAL reads the alpha band as the mask); four
    bands of data (near-infrared, not opacity) or five make one layer per band, each placed
    on the map grid."""
    viewer = make_napari_viewer()
    ((_, meta, _),) = _io.read_image(_geotiff(write_geotiff, tmp_path / "rgb.tif", 3))
    assert meta["rgb"] and "channel_axis" not in meta
    ((_, meta, _),) = _io.read_image(_geotiff(write_geotiff, tmp_path / "rgba.tif", 4))
    assert meta["rgb"] and "channel_axis" not in meta  # GDAL's default for 4 bytes: RGBA
    for bands in (4, 5):
        path = _geotiff(write_geotiff, tmp_path / f"b{bands}.tif", bands, photometric="MINISBLACK")
        ((data, meta, _),) = _io.read_image(path)
        assert not meta["rgb"] and meta["channel_axis"] == 2
        layers = viewer.add_image(data, **meta)
        assert len(layers) == bands and layers[-1].data.shape == (32, 48)
        np.testing.assert_allclose(layers[-1].data_to_world((0, 0)), (-4999995.0, 400005.0))


def test_reader_declines_tiffs_tilesam_cannot_open(tmp_path, write_geotiff):
    """The plugin claims every .tif; for one it cannot read it answers None, so that napari
    asks another reader instead of failing."""
    import tifffile

    path = tmp_path / "hyperstack.tif"
    tifffile.imwrite(path, np.zeros((2, 3, 4, 16, 16), np.uint8), imagej=True,
                     metadata={"axes": "TZCYX"})  # fmt: skip
    assert _io.get_reader(str(path)) is None
    assert _io.get_reader(_geotiff(write_geotiff, tmp_path / "geo.tif", 1)) is _io.read_image


def test_labels_of_another_shape_are_not_written_on_a_geotiff_grid(tmp_path, write_geotiff):
    import pytest

    from tilesam import TileSAMError

    ((_, meta, _),) = _io.read_image(_geotiff(write_geotiff, tmp_path / "geo.tif", 1))
    with pytest.raises(TileSAMError, match="do not fit the GeoTIFF grid"):
        _io.write_labels_file(str(tmp_path / "l.tif"), np.zeros((30, 48), np.uint8), meta)


def test_ome_zarr_writer_replaces_only_an_ome_zarr_image(tmp_path):
    import pytest
    import zarr
    from tilesam_napari._labels_store import open_committed

    from tilesam import TileSAMError

    image = {"shape": [40, 60], "dtype": "|u1", "axes": "YX", "content": "sample-v1:x"}
    store, _ = open_committed(tmp_path / "img.labels.zarr", (40, 60), image)
    store[5:9, 5:9] = 3
    (tmp_path / "notes.zarr").write_text("not labels")
    for target in ("img.labels.zarr", "notes.zarr"):  # a labels store, a file
        with pytest.raises(TileSAMError, match="is not an OME-Zarr image.*left as it is"):
            _io.write_ome_zarr(str(tmp_path / target), store, {})
    assert zarr.open_array(str(tmp_path / "img.labels.zarr"), mode="r")[:].sum() == 48
    assert (tmp_path / "notes.zarr").read_text() == "not labels"
    path = str(tmp_path / "labels.ome.zarr")
    _io.write_ome_zarr(path, _labels(), {})
    assert _io.write_ome_zarr(path, store, {}) == [path]  # an OME-Zarr image is replaced
    np.testing.assert_array_equal(np.asarray(_io.get_reader(path)(path)[0][0]), store[:])
