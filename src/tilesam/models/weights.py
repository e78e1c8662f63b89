"""Where model weights come from: an explicit path, the model cache folder, or a download."""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path

from tilesam.errors import TileSAMError
from tilesam.models.registry import ModelEntry, model_entry

CACHE_ENV = "TILESAM_CACHE_DIR"
DEFAULT_MODEL = "tiny"


def model_file(
    name: str | None, checkpoint: str | os.PathLike[str] | None
) -> tuple[Path, str, ModelEntry | None]:
    """The weights file that :func:`tilesam.load_model` reads for a registry `name` and / or
    a `checkpoint` file, the model's name, and its registry entry (None for a checkpoint
    without a name)."""
    if checkpoint is None:
        entry = model_entry(name or DEFAULT_MODEL)
        return resolve_weights(entry), entry.name, entry
    entry = model_entry(name) if name is not None else None
    return Path(checkpoint), name or Path(checkpoint).stem, entry


def cache_dir() -> Path:
    """The model cache folder: ``$TILESAM_CACHE_DIR``, else the user cache (``~/.cache/tilesam``
    on Linux), with a ``models`` subfolder."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser() / "models"
    import pooch

    return Path(pooch.os_cache("tilesam")) / "models"


def bundled_path(entry: ModelEntry) -> Path | None:
    """Weights shipped inside the package (the ``tiny`` model), if present."""
    path = resources.files("tilesam") / "weights" / entry.filename
    return Path(str(path)) if path.is_file() else None


def cached_path(entry: ModelEntry) -> Path | None:
    """Weights of ``entry`` in the cache folder, if present."""
    path = cache_dir() / entry.filename
    return path if path.is_file() else None


def resolve_weights(entry: ModelEntry, *, download: bool = True) -> Path:
    """Find (or download) the weights of a registry entry.

    Order: the package (bundled models), the cache folder, then a download with a progress
    bar. Offline, or for models without a download address, the error names the file and
    the folder to put it in.
    """
    bundled = bundled_path(entry)
    if bundled is not None:
        check_bundled(bundled, entry.known_hash, f"weights of {entry.name!r}")
        return bundled
    cached = cached_path(entry)
    if cached is not None:
        return cached
    target = cache_dir() / entry.filename
    if entry.url is None or not download:
        raise TileSAMError(_missing_message(entry, target))
    return _download(entry, target)


def check_bundled(path: Path, known_hash: str | None, what: str) -> None:
    """A file shipped in the package (`what`, e.g. "weights of 'tiny'") must be the
    registered one; they are small, and their hash is remembered once read."""
    if known_hash is None or not known_hash.startswith("sha256:"):
        return
    if file_sha256(path) != known_hash.split(":", 1)[1]:
        raise TileSAMError(
            f"The bundled {what} ({path}) do not match their registered hash: the "
            "installation is damaged. Reinstall TileSAM (pip install --force-reinstall)."
        )


def _missing_message(entry: ModelEntry, target: Path) -> str:
    where = f" from {entry.url}" if entry.url else ""
    return (
        f"Weights for model {entry.name!r} ({entry.description}) are not available. "
        f"Download the file{where} and save it as {target} (set {CACHE_ENV} to use "
        "another folder), or pass checkpoint=PATH."
    )


def _download(entry: ModelEntry, target: Path) -> Path:
    import pooch

    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        path = pooch.retrieve(
            entry.url,
            known_hash=entry.known_hash,
            fname=target.name,
            path=target.parent,
            progressbar=True,
        )
    except Exception as err:  # network errors come in many types
        raise TileSAMError(
            f"Downloading {entry.name!r} failed ({type(err).__name__}: {str(err)[:200]}). "
            + _missing_message(entry, target)
        ) from err
    return Path(path)


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, read in chunks.

    Remembered per file version (path, size, modification time): loading the bundled model
    checks its hash and then records it, and a big checkpoint loaded again is not re-read.
    """
    stat = Path(path).stat()
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime_ns: int, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
