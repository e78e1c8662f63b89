"""Nothing a user made is lost, and bad output paths end in one clear error: commands killed
while saving, full disks, read-only folders (issue #23). Real processes, real file systems."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tifffile

from tilesam.cli import main
from tilesam.errors import TileSAMError
from tilesam.samples import load_sample, sample_path

NUCLEI = str(sample_path("nuclei"))
CT = str(sample_path("ct_volume"))


def _click(index: int) -> str:
    y, x = np.argwhere(load_sample("nuclei")[1] == index).mean(axis=0)
    return f"{y:.0f},{x:.0f}"


def _fill(disk: Path) -> None:
    """Fill a file system to its last byte."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        for size in (65536, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                continue
    finally:
        os.close(fd)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name)


# The child segments for real; only the TIFF encoder is held once it has begun the new file,
# so that the kill lands mid-write every time.
_SEGMENT_HELD_WHILE_SAVING = textwrap.dedent(
    """
    import sys, time
    import tifffile
    from tilesam.cli import main

    def held(path, *args, **kwargs):
        with open(path, "wb") as half:
            half.write(b"II*\\0 half a TIFF")
        print("writing", flush=True)
        time.sleep(60)

    tifffile.imwrite = held
    main(sys.argv[1:])
    """
)


def test_segment_killed_while_saving_keeps_the_previous_mask(tmp_path):
    out = tmp_path / "prev.tif"
    assert main(["segment", NUCLEI, "--point", _click(1), "--out", str(out)]) == 0
    before = tifffile.imread(out)
    args = ["segment", NUCLEI, "--point", _click(2), "--out", str(out)]
    child = subprocess.Popen(
        [sys.executable, "-c", _SEGMENT_HELD_WHILE_SAVING, *args], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "writing"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    np.testing.assert_array_equal(tifffile.imread(out), before)  # whole, and the old one


def test_segment_on_a_full_disk_keeps_the_previous_mask(small_disk, capsys):
    disk = small_disk(256)
    out = disk / "prev.tif"
    assert main(["segment", NUCLEI, "--point", _click(1), "--out", str(out)]) == 0
    before = tifffile.imread(out)
    _fill(disk)
    assert main(["segment", NUCLEI, "--point", _click(2), "--out", str(out)]) == 2
    assert "No space left on device. Free space on that disk" in capsys.readouterr().err
    np.testing.assert_array_equal(tifffile.imread(out), before)
    assert _leftovers(disk) == []


def test_labels_into_a_folder_or_onto_a_read_only_disk_are_refused(
    tmp_path, read_only_folder, capsys
):
    args = ["propagate", CT, "--cache", str(tmp_path / "ct.zarr"), "--point", "21,61,50"]
    assert main([*args, "--out", str(tmp_path)]) == 2  # a folder, not a file
    assert "Cannot write labels to" in capsys.readouterr().err
    assert main([*args, "--out", str(read_only_folder / "liver.nii.gz")]) == 2
    err = capsys.readouterr().err
    assert "Read-only file system. Choose a folder you can write to" in err
    assert "Traceback" not in err


def test_evaluate_train_and_synthesize_on_a_read_only_disk_say_so(
    tmp_path, read_only_folder, capsys
):
    images = load_sample("nuclei")
    tifffile.imwrite(tmp_path / "nuclei.tif", images[0])
    tifffile.imwrite(tmp_path / "nuclei_labels.tif", images[1])
    folder = read_only_folder / "run"
    commands = [
        ["evaluate", "--images", str(tmp_path), "--out", str(folder), "--max-objects", "1"],
        ["train", "--out", str(folder), "--synthetic", "nuclei", "--steps-per-epoch", "1"],
        ["synthesize", "--out", str(folder), "--kinds", "nuclei", "--count", "1"],
    ]
    for command in commands:
        assert main(command) == 2, command
        assert "Read-only file system" in capsys.readouterr().err


def test_training_on_a_full_disk_leaves_its_last_checkpoint_and_no_partial_file(small_disk):
    from tilesam.training.trainer import TrainConfig, Trainer

    disk = small_disk(2048)  # room for the folder, not for a 7 MB checkpoint
    config = TrainConfig(
        out_dir=str(disk / "run"), synthetic=("nuclei",), crop=64, batch_size=1,
        iterations=1, epochs=1, steps_per_epoch=1, loss="bce",
    )  # fmt: skip
    with pytest.raises(TileSAMError, match="No space left on device"):
        Trainer(config).run(progress=False)
    assert _leftovers(disk / "run") == [] and not list((disk / "run").glob("*.tmp"))


def test_nonsense_tile_counts_and_coordinates_are_refused(tmp_path):
    import tilesam

    image = load_sample("nuclei")[0]
    with pytest.raises(TileSAMError, match="tile_size must be a positive whole number"):
        tilesam.Session(image, tile_size=0)
    session = tilesam.Session(image)
    with pytest.raises(TileSAMError, match="max_tiles must be a positive whole number"):
        session.segment(points=[(120, 200)], max_tiles=0)
    with pytest.raises(TileSAMError, match="max_tiles"):
        session.segment(points=[(120, 200)], max_tiles=-1)
    with pytest.raises(TileSAMError, match=r"points must be \(z, y, x\) numbers"):
        tilesam.propagate_mask(CT, points=[("a", "b", "c")])
    with pytest.raises(TileSAMError, match=r"box must be \(z, y0, x0, y1, x1\)"):
        tilesam.propagate_mask(CT, box=("1", "x", 2, 3, 4))
    assert main(["segment", NUCLEI, "--point", "120,200", "--tile", "0", "--out",
                 str(tmp_path / "m.tif")]) == 2  # fmt: skip


def test_propagate_onto_a_full_disk_keeps_the_previous_labels(tmp_path, small_disk, capsys):
    disk = small_disk(512)
    out = disk / "liver.nii.gz"
    args = ["propagate", CT, "--cache", str(tmp_path / "ct.zarr"), "--point", "21,61,50"]
    assert main([*args, "--out", str(out)]) == 0
    before = out.read_bytes()
    _fill(disk)
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err
    assert out.read_bytes() == before and _leftovers(disk) == []
