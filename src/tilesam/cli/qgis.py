"""``tilesam qgis-package`` (the QGIS plugin as a zip for *Install from ZIP*) and
``tilesam qgis-install`` (the plugin linked into a QGIS profile, and which Python must
have ``tilesam``).

The plugin folder is the installed ``tilesam_qgis`` package (``plugins/qgis`` in the
source tree), found without importing it: nothing here imports QGIS.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tilesam.cli._options import Command
from tilesam.errors import TileSAMError

PLUGIN = "tilesam_qgis"
SKIP = ("__pycache__", ".pyc", ".pyo")


def plugin_folder() -> Path:
    """The ``tilesam_qgis`` plugin folder of this installation."""
    spec = importlib.util.find_spec(PLUGIN)
    locations = list(spec.submodule_search_locations or []) if spec else []
    folder = Path(locations[0]) if locations else None
    if folder is None or not (folder / "metadata.txt").is_file():
        raise TileSAMError(
            "The QGIS plugin (package 'tilesam_qgis', with its metadata.txt) is not installed "
            "with this tilesam: reinstall tilesam (pip install tilesam, or pip install -e . "
            "in a checkout)."
        )
    return folder


def plugin_version(folder: Path) -> str:
    """The ``version=`` of the plugin's metadata.txt."""
    for line in (folder / "metadata.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith("version="):
            return line.split("=", 1)[1].strip()
    return "0"


def write_package(out: Path) -> Path:
    """Zip the plugin folder as ``tilesam_qgis/...`` into `out` (replaced only when
    complete); returns `out`."""
    folder = plugin_folder()
    if not out.parent.is_dir():
        raise TileSAMError(f"The folder of --out {out} does not exist: create it first.")
    partial = out.with_name(f".{out.name}.partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not any(part.endswith(SKIP) for part in path.parts):
                archive.write(path, Path(PLUGIN, path.relative_to(folder)))
    os.replace(partial, out)
    return out


def config_path(given: str | None) -> Path:
    """QGIS's settings folder (holding ``profiles/``): `given`, else
    ``$QGIS_CUSTOM_CONFIG_PATH``, else the platform's default."""
    if given or os.environ.get("QGIS_CUSTOM_CONFIG_PATH"):
        return Path(given or os.environ["QGIS_CUSTOM_CONFIG_PATH"]).expanduser()
    if sys.platform.startswith("win"):
        return Path(os.environ.get("APPDATA", "~"), "QGIS", "QGIS3").expanduser()
    if sys.platform == "darwin":
        return Path("~/Library/Application Support/QGIS/QGIS3").expanduser()
    return Path("~/.local/share/QGIS/QGIS3").expanduser()


def install(profile: str, where: Path, copy: bool) -> Path:
    """Link (or copy) the plugin folder into `profile`'s ``python/plugins``; an earlier
    link or copy of it is replaced."""
    folder = plugin_folder()
    plugins = where / "profiles" / profile / "python" / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    target = plugins / PLUGIN
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.is_dir():
        if not (target / "metadata.txt").is_file():
            raise TileSAMError(f"{target} exists and is not a TileSAM plugin: remove it first.")
        shutil.rmtree(target)
    if copy:
        shutil.copytree(folder, target, ignore=shutil.ignore_patterns(*(f"*{s}" for s in SKIP)))
    else:
        target.symlink_to(folder, target_is_directory=True)
    return target


def python_note() -> str:
    """Which Python QGIS runs its plugins in, whether it has tilesam, and how to add it."""
    if sys.platform.startswith("win"):
        return (
            "QGIS runs plugins in its own Python: open the OSGeo4W Shell (Start menu, as "
            "administrator) and run: python -m pip install tilesam"
        )
    if sys.platform == "darwin":
        python = "/Applications/QGIS.app/Contents/MacOS/bin/python3"
        return f"QGIS runs plugins in its bundled Python: {python} -m pip install tilesam"
    python = "/usr/bin/python3"
    has = _imports_tilesam(python)
    state = "already imports tilesam" if has else "cannot import tilesam yet"
    fix = "" if has else (
        f"; install it there with: {python} -m pip install --user --break-system-packages "
        'tilesam "numpy<2" "shapely>=2.0,<2.1" "attrs>=23.2" (what Debian\'s GDAL and GEOS, which '
        "QGIS loads, work with; docs/qgis.md)"
    )  # fmt: skip
    return f"QGIS (distribution packages) runs plugins in {python}, which {state}{fix}."


def _imports_tilesam(python: str) -> bool:
    """Whether `python` (another interpreter) can import tilesam."""
    if not Path(python).is_file():
        return False
    done = subprocess.run([python, "-c", "import tilesam"], capture_output=True, timeout=60)
    return done.returncode == 0


def _package_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=None, help="the zip (default: tilesam_qgis-VERSION.zip here)")


def _run_package(args: argparse.Namespace) -> None:
    name = args.out or f"{PLUGIN}-{plugin_version(plugin_folder())}.zip"
    out = write_package(Path(name).expanduser().absolute())
    print(f"QGIS plugin -> {out} (QGIS: Plugins > Manage and Install Plugins > Install from ZIP)")
    print(python_note())


def _install_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="default", help="QGIS user profile (default: default)")
    p.add_argument(
        "--config-path", default=None, metavar="DIR",
        help="QGIS's settings folder holding profiles/ (default: $QGIS_CUSTOM_CONFIG_PATH, "
        "else the platform's)",
    )  # fmt: skip
    p.add_argument("--copy", action="store_true", help="copy the folder instead of a link")


def _run_install(args: argparse.Namespace) -> None:
    copy = args.copy or sys.platform.startswith("win")  # links need privileges there
    target = install(args.profile, config_path(args.config_path), copy)
    how = "copied" if copy else f"linked to {plugin_folder()}"
    print(f"QGIS plugin -> {target} ({how}).")
    print("Restart QGIS and enable TileSAM in Plugins > Manage and Install Plugins.")
    print(python_note())


COMMANDS = (
    Command("qgis-package", "write the QGIS plugin as a zip", _package_options, _run_package),
    Command("qgis-install", "link the QGIS plugin into a profile", _install_options, _run_install),
)
