"""Every command reads what every other reads: PNG, JPEG and BMP, grey and RGB, through one
reader (issue #22, item 5)."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from tilesam.cli import main
from tilesam.io import open_image
from tilesam.samples import load_sample


@pytest.mark.parametrize("name", ["nuclei.png", "nuclei.jpg", "nuclei.bmp", "rgb.png", "rgb.jpg"])
def test_segment_reads_pictures(tmp_path, name, capsys):
    image, truth = load_sample("nuclei")
    pixels = np.stack([image] * 3, axis=-1) if name.startswith("rgb") else image
    iio.imwrite(tmp_path / name, pixels, quality=95) if name.endswith(".jpg") else iio.imwrite(
        tmp_path / name, pixels
    )
    with open_image(tmp_path / name) as source:
        assert source.slice_shape == (256, 256)
        assert source.n_channels == (3 if name.startswith("rgb") else 1)
    y, x = np.argwhere(truth == 1).mean(axis=0)
    out = tmp_path / "mask.tif"
    assert main(["segment", str(tmp_path / name), "--point", f"{y:.0f},{x:.0f}", "--out",
                 str(out)]) == 0  # fmt: skip
    mask = tifffile.imread(out) > 0
    assert (truth[mask] == 1).mean() > 0.5  # the clicked nucleus, from a picture too


def test_evaluate_and_segment_read_the_same_png_folder(tmp_path, capsys):
    image, truth = load_sample("nuclei")
    iio.imwrite(tmp_path / "a.png", image)
    iio.imwrite(tmp_path / "a_labels.png", truth.astype(np.uint16))
    out = tmp_path / "eval"
    assert main(["evaluate", "--images", str(tmp_path), "--clicks", "1", "--max-objects", "3",
                 "--out", str(out)]) == 0  # fmt: skip
    assert (out / "table.txt").is_file()
    assert main(["segment", str(tmp_path / "a.png"), "--point", "120,200", "--out",
                 str(tmp_path / "m.png")]) == 0  # fmt: skip
