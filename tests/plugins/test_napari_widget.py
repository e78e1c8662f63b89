"""The dock widget's settings are magicgui forms, and what is set in them is what the
session opens with; "auto" tiling leaves the choice to an existing cache, else the core."""

from __future__ import annotations

import dataclasses
from pathlib import Path


def test_forms_are_magicgui_widgets_named_after_the_settings(widget):
    from magicgui.widgets import Container
    from magicgui.widgets.bases import Widget
    from tilesam_napari._session import Settings

    form = widget.form
    assert isinstance(form.main, Container) and isinstance(form.advanced, Container)
    fields = [*form.main, *form.advanced]
    assert all(isinstance(field, Widget) and hasattr(field, "value") for field in fields)
    names = {field.name for field in fields}
    assert names == {f.name for f in dataclasses.fields(Settings)} | {"image"}


def test_a_setting_changed_in_the_form_reaches_the_session(widget, nuclei, tmp_path, settings):
    form = widget.form
    image = widget.viewer.add_image(nuclei, name="nuclei")
    assert form.image.value is image  # the viewer's image layers are the choices
    cache = tmp_path / "nuclei.zarr"
    form.cache.value, form.device.value = cache, "cpu"
    form.tile_size.value, form.halo.value = 192, 16
    assert widget.setup()
    checkpoint = str(Path(settings.checkpoint).absolute())
    expected = dataclasses.replace(
        settings, checkpoint=checkpoint, device="cpu", cache=str(cache), tile_size=192, halo=16
    )
    assert widget.annotator.settings == expected
    grid = widget.annotator.session.grid
    assert (grid.tile_size, grid.halo) == (192, 16)


def test_auto_tiling_keeps_the_cache_s_else_takes_the_core_default(widget, nuclei, tmp_path):
    from tilesam.cache.tiling import DEFAULT_HALO

    form = widget.form
    widget.viewer.add_image(nuclei, name="nuclei")
    form.cache.value = tmp_path / "nuclei.zarr"
    form.tile_size.value, form.halo.value = 192, 16
    assert widget.setup()
    form.tile_size.value, form.halo.value = None, None  # "auto" ticked
    assert form.halo.auto.value and not form.halo.number.enabled
    assert widget.setup()
    settings, grid = widget.annotator.settings, widget.annotator.session.grid
    assert settings.tile_size is None and settings.halo is None
    assert (grid.tile_size, grid.halo) == (192, 16)  # the cache's, not the defaults
    form.cache.value = None
    assert widget.setup()
    assert widget.annotator.session.grid.halo == DEFAULT_HALO


def test_set_settings_fills_the_form(widget, settings, tmp_path):
    for filled in (settings, dataclasses.replace(settings, cache=str(tmp_path / "c.zarr"))):
        widget.form.set_settings(filled)
        assert widget.form.settings() == filled
