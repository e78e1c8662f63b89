"""``tilesam qgis-package`` and ``tilesam qgis-install``: the QGIS plugin folder as a zip
and linked into a profile (no QGIS needed: nothing here imports it)."""

from __future__ import annotations

import sys
import zipfile

from tilesam.cli import main


def test_qgis_package_writes_the_plugin_zip(tmp_path, capsys):
    out = tmp_path / "plugin.zip"
    assert main(["qgis-package", "--out", str(out)]) == 0
    names = set(zipfile.ZipFile(out).namelist())
    assert {"tilesam_qgis/metadata.txt", "tilesam_qgis/__init__.py"} <= names
    assert {"tilesam_qgis/provider.py", "tilesam_qgis/icon.png"} <= names
    assert "tilesam_qgis/algorithms/segment_points.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    metadata = zipfile.ZipFile(out).read("tilesam_qgis/metadata.txt").decode()
    assert "name=TileSAM" in metadata and "qgisMinimumVersion=3.22" in metadata
    assert "Install from ZIP" in capsys.readouterr().out
    assert "qgis" not in sys.modules  # the command never imports QGIS


def test_qgis_install_links_the_plugin_into_a_profile(tmp_path, capsys):
    config = tmp_path / "QGIS3"
    for _ in range(2):  # a second install replaces the first
        assert main(["qgis-install", "--profile", "work", "--config-path", str(config)]) == 0
    target = config / "profiles" / "work" / "python" / "plugins" / "tilesam_qgis"
    assert target.is_symlink() and (target / "metadata.txt").is_file()
    said = capsys.readouterr().out
    assert "pip install" in said or "already imports tilesam" in said


def test_qgis_install_refuses_to_replace_another_folder(tmp_path, capsys):
    other = tmp_path / "profiles" / "default" / "python" / "plugins" / "tilesam_qgis"
    other.mkdir(parents=True)
    assert main(["qgis-install", "--config-path", str(tmp_path)]) == 2
    assert "not a TileSAM plugin" in capsys.readouterr().err
