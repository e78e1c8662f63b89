"""The napari plugin's manifest is valid and its contributions run (no Qt needed)."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

npe2 = pytest.importorskip("npe2")


def test_manifest_is_found_through_the_entry_point_and_valid():
    manifest = npe2.PluginManifest.from_distribution("tilesam")
    assert manifest.name == "tilesam"
    keys = [s.key for s in manifest.contributions.sample_data]
    assert {"nuclei", "mosaic", "ct_volume", "nuclei_volume", "georaster"} <= set(keys)


def test_sample_data_command_returns_image_and_labels():
    manifest = npe2.PluginManifest.from_distribution("tilesam")
    command = next(c for c in manifest.contributions.commands if c.id == "tilesam.sample_nuclei")
    module, function = command.python_name.split(":")
    layers = getattr(importlib.import_module(module), function)()
    (image, image_meta, image_kind), (labels, _, labels_kind) = layers
    assert (image_kind, labels_kind) == ("image", "labels")
    assert image.shape == labels.shape == (512, 512)
    assert image_meta["name"] == "nuclei"
    assert len(np.unique(labels)) - 1 == 125
