"""Synthetic training images with nested instance ground truth.

The default ``tiny`` model is trained on CPU, mostly from images made here, and must then work on
real fluorescence microscopy, CT slices and aerial photographs. Every generator therefore tries to
reproduce what real data looks like rather than what is easy to draw: a wide range of object sizes
with one size regime per image, touching objects whose labels still partition the image, internal
texture, dim and bright objects side by side, uneven illumination, background offsets, blur and
realistic noise, and the dtypes real instruments write (low-filled ``uint16`` for fluorescence).

Each sample carries one or more instance label images, finest first, in which every object of
level ``k`` lies inside exactly one object of level ``k + 1`` (a nucleus inside its cell inside its
cluster of cells). A click therefore has up to ``len(levels)`` valid nested answers, which is what
SAM's multimask output is trained on.

Everything is vectorised numpy/scipy: a 256 x 256 sample takes a few milliseconds to a few tens of
milliseconds on one core, so the training loop can draw samples online.

The generators live one per module (:mod:`.nuclei`, :mod:`.cells`, :mod:`.ct`, :mod:`.aerial`,
:mod:`.objects`: generic objects of every shape and contrast) on
shared helpers (:mod:`.fields`: random fields and filters; :mod:`.labels`: label images;
:mod:`.shapes`: placing and rasterising objects; :mod:`.fluorescence`: nuclei and the microscope);
:mod:`.api` holds the public entry points re-exported here; :mod:`.folder` writes folders of whole
images for training on whole embedded fields.
"""

from __future__ import annotations

from tilesam.training.synthetic.api import KINDS, SyntheticSample, make_sample, sample_stream
from tilesam.training.synthetic.folder import write_synthetic_folder

__all__ = ["KINDS", "SyntheticSample", "make_sample", "sample_stream", "write_synthetic_folder"]
