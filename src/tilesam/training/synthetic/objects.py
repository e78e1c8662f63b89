"""Generic objects of every shape and contrast: levels ``(objects,)``.

The other generators draw one domain each (nuclei, cells, CT anatomy, aerial scenes), so the
decoder learns their shapes and contrasts and little else. This one draws what a click may
land on in any image, from generic principles rather than from one domain:

- shapes: smooth random blobs, lobed and concave ones (strong low harmonics, two or three
  overlapping lobes of one object, banana bends), elongated curved tubes and thin fibres of
  varying width, from a few pixels to half the image;
- contrast: bright on dark, dark on bright, mixed, faint objects barely above the
  background, objects inside a larger object and darker or brighter than it (each its own
  label: the host's label has a hole), textured or speckled interiors, bright rims;
- scene: touching and overlapping neighbours (labels still a partition), unlabelled clutter
  (blobs and lines), uneven illumination, background texture, blur, noise from none to
  strong, sometimes a body of tissue on a black surround, sometimes a black margin (a slice
  padded into the model input);
- range: ``uint8`` from low to saturating fill, ``uint16`` 12-bit with a camera offset, or
  ``uint16`` with a wide range.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from tilesam.training.synthetic.fields import (
    _F32,
    Levels,
    Rng,
    Shape,
    _blur,
    _loguniform,
    _noise,
    _smoothstep,
)
from tilesam.training.synthetic.labels import _clean
from tilesam.training.synthetic.shapes import _harmonics, _paint, _place


def _make_objects(rng: Rng, shape: Shape) -> tuple[np.ndarray, Levels]:
    """One scene of generic objects; the image and its single label level."""
    h, w = shape
    inner = shape
    if rng.random() < 0.2:  # a slice padded into the model input: content top-left, black rest
        inner = (max(16, int(h * rng.uniform(0.45, 0.9))), max(16, int(w * rng.uniform(0.45, 0.9))))
    lab, depth, parent = _layout(rng, inner)
    signal = _render(rng, lab, depth, parent)
    image_in = _finish(rng, signal)
    image = np.zeros(shape, image_in.dtype)
    labels = np.zeros(shape, np.uint32)
    image[: inner[0], : inner[1]] = image_in
    labels[: inner[0], : inner[1]] = lab
    return image, (labels,)


def _layout(rng: Rng, shape: Shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blobs (with lobes and inclusions) and tubes as one partition.

    Returns the labels ``1..N``, each pixel's normalised depth in its object (1 deep, 0 on the
    outline) and, per object, the index of the object it lies inside (``-1``: none).
    """
    short = min(shape)
    size = _loguniform(rng, 0.03, 0.28) * short  # this image's typical object radius
    n_target = int(np.clip(rng.uniform(0.1, 0.7) * shape[0] * shape[1] / (np.pi * size**2), 1, 300))
    radius = size * np.exp(rng.normal(0, rng.uniform(0.1, 0.5), int(n_target * 1.5) + 1))
    keep, pts = _place(
        rng,
        shape,
        radius,
        rng.uniform(0.5, 1.0),  # below 1: neighbours overlap and end up touching
        cluster_frac=rng.uniform(0, 0.7),
        cluster_scale=size * rng.uniform(1.5, 4),
        margin=0.3,
    )
    radius, pts = radius[keep][:n_target], pts[:n_target]
    geo, owner, parent = _blob_geometry(rng, radius, pts)
    raw, depth = _paint(shape, *geo["centre"], **geo["shape"])
    obj = np.concatenate([[0], owner + 1])[raw]  # lobes merge into their object
    n_blobs = len(parent)
    tubes, tube_depth = _tubes(rng, shape, size)
    over = tubes > 0
    if rng.random() < 0.5:  # tubes pass over the blobs, or the blobs lie on them
        over &= obj == 0
    obj[over] = tubes[over] + n_blobs
    depth = np.where(over, tube_depth, depth)
    parent = np.concatenate([parent, np.full(int(tubes.max()), -1)])
    lab, src = _clean(obj, max(6.0, 0.02 * short))
    remap = np.full(len(parent) + 1, -1)
    remap[src] = np.arange(len(src))  # old id -> new index
    new_parent = np.array([remap[parent[s - 1] + 1] if parent[s - 1] >= 0 else -1 for s in src])
    return lab, depth * (lab > 0), new_parent.astype(np.int64)


def _blob_geometry(
    rng: Rng, radius: np.ndarray, pts: np.ndarray
) -> tuple[dict, np.ndarray, np.ndarray]:
    """Ellipse pieces for ``_paint``: each blob, its extra lobes, and inclusions in big blobs.

    Returns the ``_paint`` arguments, the object each piece belongs to and each object's host
    (``-1``: none).
    """
    n = len(radius)
    aspect = rng.uniform(rng.uniform(0.2, 0.9), 1.0, n)
    a, b = radius / np.sqrt(aspect), radius * np.sqrt(aspect)
    theta = rng.uniform(0, np.pi, n)
    amp, phase = _harmonics(rng, n, rng.uniform(0.0, 0.5) * rng.uniform(0.3, 1.5, n), k=5)
    lobed = rng.random(n) < rng.uniform(0, 0.4)  # peanuts, hearts, kidney-like notches
    amp[lobed, int(rng.integers(0, 2))] += rng.uniform(0.2, 0.45, lobed.sum())
    bend = rng.normal(0, 0.1, n) + lobed * rng.normal(0, 0.25, n)
    cy, cx, owner = pts[:, 0], pts[:, 1], np.arange(n)
    parent = np.full(n, -1)
    two = np.nonzero(rng.random(n) < rng.uniform(0, 0.3))[0]  # objects of two overlapping lobes
    if len(two):
        ang = theta[two] + rng.normal(0, 0.6, len(two))
        off = a[two] * rng.uniform(0.6, 1.1, len(two))
        cy = np.concatenate([cy, cy[two] + off * np.sin(ang)])
        cx = np.concatenate([cx, cx[two] + off * np.cos(ang)])
        scale = rng.uniform(0.5, 0.9, len(two))
        a, b = np.concatenate([a, a[two] * scale]), np.concatenate([b, b[two] * scale])
        theta = np.concatenate([theta, theta[two] + rng.normal(0, 0.8, len(two))])
        amp, phase = np.concatenate([amp, amp[two] * 0.5]), np.concatenate([phase, phase[two]])
        bend, owner = np.concatenate([bend, bend[two]]), np.concatenate([owner, two])
    hosts = np.nonzero((radius > 0.6 * radius.max()) & (rng.random(n) < 0.5))[0][:3]
    if len(hosts) and rng.random() < 0.6:  # inclusions: smaller objects inside a host
        k = len(hosts)
        ang, off = rng.uniform(0, 2 * np.pi, k), rng.uniform(0, 0.45, k) * b[hosts]
        cy = np.concatenate([cy, cy[hosts] + off * np.sin(ang)])
        cx = np.concatenate([cx, cx[hosts] + off * np.cos(ang)])
        rk = radius[hosts] * rng.uniform(0.15, 0.4, k)
        a, b = np.concatenate([a, rk * 1.2]), np.concatenate([b, rk / 1.2])
        theta = np.concatenate([theta, rng.uniform(0, np.pi, k)])
        amp_k, phase_k = _harmonics(rng, k, 0.15, k=5)
        amp, phase = np.concatenate([amp, amp_k]), np.concatenate([phase, phase_k])
        bend = np.concatenate([bend, np.zeros(k)])
        owner = np.concatenate([owner, n + np.arange(k)])
        parent = np.concatenate([parent, hosts])
    prio = np.where(owner >= n, 3.0, 0.0)  # inclusions win over their host
    geo = {"a": a, "b": b, "theta": theta, "bend": bend, "amp": amp, "phase": phase}
    return {"centre": (cy, cx), "shape": {**geo, "priority": prio}}, owner, parent


def _tubes(rng: Rng, shape: Shape, size: float) -> tuple[np.ndarray, np.ndarray]:
    """A few curved tubes and thin fibres of varying width: labels ``1..k`` and depth."""
    h, w = shape
    lab = np.zeros(shape, np.int64)
    depth = np.zeros(shape, _F32)
    k = int(rng.choice([0, 1, 2, 3], p=[0.35, 0.3, 0.2, 0.15]))
    for i in range(k):
        length = int(rng.uniform(0.3, 1.3) * min(h, w))
        curvature = _loguniform(rng, 0.002, 0.03) * _noise(rng, (1, length), length / 3)[0]
        heading = rng.uniform(0, 2 * np.pi) + np.cumsum(curvature)
        y = rng.uniform(0, h) + np.cumsum(np.sin(heading))
        x = rng.uniform(0, w) + np.cumsum(np.cos(heading))
        width = max(0.8, size * (rng.uniform(0.05, 0.5) if rng.random() < 0.5 else 0.04))
        rad = width * np.exp(0.25 * _noise(rng, (1, length), length / 4)[0])
        inside = (y >= 0) & (y < h) & (x >= 0) & (x < w)
        if inside.sum() < 4:
            continue
        seeds = np.ones(shape, bool)
        iy, ix = y[inside].astype(np.intp), x[inside].astype(np.intp)
        seeds[iy, ix] = False
        dist, (ny, nx) = ndi.distance_transform_edt(seeds, return_indices=True)
        near = np.zeros(shape, _F32)
        near[iy, ix] = rad[inside]
        r_here = near[ny, nx]
        tube = dist < r_here + 0.5
        lab[tube] = i + 1
        depth[tube] = 1 - dist[tube] / (r_here[tube] + 0.5)
    return lab, depth


def _render(rng: Rng, lab: np.ndarray, depth: np.ndarray, parent: np.ndarray) -> np.ndarray:
    """Signal in about ``[0, 1]``: background, object contrasts, texture and clutter."""
    shape = lab.shape
    n, short = len(parent), min(shape)
    polarity = rng.choice([1.0, -1.0, 0.0], p=[0.5, 0.2, 0.3])  # bright, dark, mixed
    sign = np.full(n, polarity) if polarity else rng.choice([-1.0, 1.0], n)
    mag = _loguniform(rng, 0.15, 0.7, n)
    faint = rng.random(n) < rng.uniform(0, 0.4)
    mag[faint] = _loguniform(rng, 0.04, 0.12, int(faint.sum()))
    value = sign * mag * rng.uniform(0.7, 1.3)
    for i in np.nonzero(parent >= 0)[0]:  # inclusions: darker or brighter than their host
        host = value[parent[i]]
        value[i] = host + rng.choice([-1.0, 1.0], p=[0.7, 0.3]) * _loguniform(rng, 0.05, 0.4)
    base = rng.uniform(0.2, 0.5) if polarity >= 0 else rng.uniform(0.55, 0.85)
    bg = base + rng.uniform(0, 0.08) * _noise(rng, shape, _loguniform(rng, 1.5, short / 4))
    if rng.random() < 0.3:  # a body of tissue on a black surround, objects inside it
        body = _blob_mask(rng, shape)
        bg = np.where(body, bg, rng.uniform(0.0, 0.05))
    per = np.concatenate([[0.0], value]).astype(_F32)[lab]
    edge = _smoothstep(depth * _loguniform(rng, 1.5, 8))  # soft to sharp boundaries
    tex = 1 + rng.uniform(0, 0.5) * _noise(rng, shape, _loguniform(rng, 1.0, 6.0))
    if rng.random() < 0.2:  # speckled interiors
        tex += rng.uniform(0.3, 1.0) * (_noise(rng, shape, 1.2) > 1.5)
    if rng.random() < 0.15:  # bright rims
        tex += rng.uniform(0.5, 1.5) * ((depth > 0) & (depth < 0.15))
    signal = bg + per * edge * tex
    signal += _clutter(rng, shape, lab, float(np.median(np.abs(value))) if n else 0.3)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(_F32) / short
    ramp = rng.normal(0, 0.4) * yy + rng.normal(0, 0.4) * xx
    illum = np.exp(ramp - ramp.mean() + rng.uniform(0, 0.3) * _noise(rng, shape, short / 2))
    return (signal * illum).astype(_F32)


def _blob_mask(rng: Rng, shape: Shape) -> np.ndarray:
    """A large smooth region (a body, a tissue section) covering most of the image."""
    h, w = shape
    amp, phase = _harmonics(rng, 1, rng.uniform(0.02, 0.15))
    a, b = w * rng.uniform(0.4, 0.6), h * rng.uniform(0.35, 0.55)
    lab, _ = _paint(shape, [h / 2], [w / 2], [a], [b], [rng.normal(0, 0.2)], amp=amp, phase=phase)
    return lab > 0


def _clutter(rng: Rng, shape: Shape, lab: np.ndarray, contrast: float) -> np.ndarray:
    """Unlabelled structures in the background: small blobs and thin bright or dark lines."""
    out = np.zeros(shape, _F32)
    if rng.random() < 0.4:
        return out
    short = min(shape)
    m = int(rng.integers(1, 12))
    r = _loguniform(rng, 0.01, 0.08, m) * short
    cy, cx = rng.uniform(0, shape[0], m), rng.uniform(0, shape[1], m)
    q = rng.uniform(0.1, 1.0, m)  # 0.1: a line-like sliver (ribs, membranes, folds)
    clab, cdepth = _paint(shape, cy, cx, r / np.sqrt(q), r * np.sqrt(q), rng.uniform(0, np.pi, m))
    level = np.concatenate([[0.0], rng.choice([-1, 1], m) * contrast * rng.uniform(0.3, 1.2, m)])
    out += level.astype(_F32)[clab] * _smoothstep(cdepth * 4)
    return out * (lab == 0)


def _finish(rng: Rng, signal: np.ndarray) -> np.ndarray:
    """Optics and recording: blur, noise, then a ``uint8`` or ``uint16`` range."""
    img = _blur(signal, _loguniform(rng, 0.3, 2.5))
    spread = float(np.percentile(img, 99) - np.percentile(img, 1)) + 1e-3
    img = img + spread * _loguniform(rng, 0.005, 0.08) * _noise(
        rng, img.shape, rng.uniform(0.5, 1.5)
    )
    lo, hi = np.percentile(img, [0.5, 99.5])
    unit = (img - lo) / max(float(hi - lo), 1e-6)
    u = rng.random()
    if u < 0.55:  # uint8, from a low fill to slight saturation
        top = _loguniform(rng, 40, 255)
        offset = rng.uniform(0, min(30.0, 255 - top))
        out = np.clip(np.round(offset + unit * top), 0, 255).astype(np.uint8)
    elif u < 0.85:  # 12-bit camera in a 16-bit file, with an offset
        top = _loguniform(rng, 150, 3900)
        out = np.clip(np.round(rng.choice([0.0, 100.0]) + unit * top), 0, 4095)
        out = out.astype(np.uint16)
    else:  # wide 16-bit range
        top = _loguniform(rng, 2000, 60000)
        out = np.clip(np.round(rng.uniform(0, 2000) + unit * top), 0, 65535).astype(np.uint16)
    return out
