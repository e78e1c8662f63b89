"""Cytoplasm stain with nuclei: levels ``(nuclei, cells, clusters)``."""

from __future__ import annotations

import numpy as np

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
from tilesam.training.synthetic.fluorescence import (
    _debris,
    _finish_fluorescence,
    _nuclear_texture,
    _nucleus_shapes,
)
from tilesam.training.synthetic.labels import _boundaries, _clean, _groups
from tilesam.training.synthetic.shapes import _harmonics, _paint, _place


def _make_cells(rng: Rng, shape: Shape) -> tuple[np.ndarray, Levels]:
    # One long recipe on purpose: its steps share the scene parameters drawn as it goes, and
    # the order of its draws from `rng` fixes the image a seed gives (the data the bundled
    # `tiny` was trained on), so it reads top to bottom as the scene is built.
    h, w = shape
    short = min(h, w)
    d_nuc = float(_loguniform(rng, min(6.0, 0.1 * short), min(45.0, 0.2 * short)))
    ratio = rng.uniform(1.5, 3.0)  # cell radius / nucleus radius
    rc_mean = d_nuc / 2 * ratio
    coverage = rng.uniform(0.15, 0.9)
    sep = rng.uniform(0.55, 0.95)
    n_target = int(np.clip(coverage * h * w / (np.pi * rc_mean**2), 1, 2000))
    n_cand = int(n_target * rng.uniform(1.2, 2.5)) + 1
    rc = rc_mean * np.exp(rng.normal(0, rng.uniform(0.1, 0.3), n_cand))
    keep, pts = _place(
        rng,
        shape,
        rc,
        sep,
        cluster_frac=rng.uniform(0.2, 0.9),
        cluster_scale=rc_mean * rng.uniform(1, 3),
        margin=0.6,
    )
    keep, pts = keep[:n_target], pts[:n_target]
    rc = rc[keep]
    n = len(rc)
    # Cells: irregular, often elongated, with protrusions.
    qc = rng.uniform(rng.uniform(0.3, 0.8), 1.0, n)
    ac, bc = rc / np.sqrt(qc), rc * np.sqrt(qc)
    thc = rng.uniform(0, np.pi, n)
    amp_c, ph_c = _harmonics(rng, n, rng.uniform(0.1, 0.45) * rng.uniform(0.5, 1.5, n), k=6)
    bend_c = rng.normal(0, 0.12, n)
    raw_c, depth_c = _paint(
        shape, pts[:, 0], pts[:, 1], ac, bc, thc, bend=bend_c, amp=amp_c, phase=ph_c
    )
    # Nuclei: one per cell (a few binucleate), off-centre, roughly aligned with the cell.
    rn = np.minimum(rc / ratio * np.exp(rng.normal(0, 0.12, n)), 0.75 * np.minimum(ac, bc))
    geo = _nucleus_shapes(rng, n, rn)
    geo["theta"] = thc + rng.normal(0, 0.3, n)
    off = rng.uniform(0, 0.35, n) * np.minimum(ac, bc)
    off_ang = rng.uniform(0, 2 * np.pi, n)
    ny = pts[:, 0] + off * np.sin(off_ang)
    nx = pts[:, 1] + off * np.cos(off_ang)
    owner = np.arange(n)
    binuc = np.nonzero(rng.random(n) < rng.uniform(0, 0.06))[0]
    if len(binuc):
        shift = 0.75 * rn[binuc]
        dirx, diry = np.cos(thc[binuc]), np.sin(thc[binuc])
        ny = np.concatenate([ny, ny[binuc] + shift * diry])
        nx = np.concatenate([nx, nx[binuc] + shift * dirx])
        ny[binuc] -= shift * diry
        nx[binuc] -= shift * dirx
        for key in geo:
            extra = geo[key][binuc]
            if key in ("a", "b"):
                geo[key][binuc] *= 0.72
                extra = extra * 0.72
            geo[key] = np.concatenate([geo[key], extra])
        owner = np.concatenate([owner, binuc])
    raw_n, depth_n = _paint(shape, ny, nx, **geo)
    # Nesting: nucleus pixels belong to their own cell; each cell keeps the piece with its nucleus.
    nuc, nsrc = _clean(raw_n, max(4.0, 0.1 * np.pi * (d_nuc / 2) ** 2))
    in_nuc = nuc > 0
    cell_raw = raw_c.copy()
    cell_raw[in_nuc] = owner[nsrc[nuc[in_nuc].astype(np.int64) - 1] - 1] + 1
    cells, csrc = _clean(cell_raw, max(6.0, 0.05 * np.pi * rc_mean**2), prefer=in_nuc)
    nuc[cells == 0] = 0
    nuc, nsrc2 = _clean(nuc, 4.0)
    nsrc = nsrc[nsrc2 - 1] if len(nsrc2) else nsrc2
    clusters = _groups(cells)

    # ---- rendering
    cidx = csrc - 1
    nidx = nsrc - 1

    def per_cell(values: np.ndarray) -> np.ndarray:
        return np.concatenate([[0.0], values[cidx]]).astype(_F32)[cells]

    def per_nuc(values: np.ndarray) -> np.ndarray:
        return np.concatenate([[0.0], values[nidx]]).astype(_F32)[nuc]

    cfg = cells > 0
    # Cell depth: the painted depth where the cell won; inside its nucleus treat it as deep.
    dc = np.where(raw_c == np.concatenate([[0], csrc])[cells], depth_c, 0.6).astype(_F32)
    cyto_b = np.exp(rng.normal(0, rng.uniform(0.15, 0.45), n))
    edge = rng.uniform(0.8, 3.0)
    thick = rng.uniform(0.15, 0.7)
    prof_c = _smoothstep(dc * per_cell(rc) / edge) * (
        0.35 + 0.65 * np.clip(dc / thick, 0, 1) ** 0.7
    )
    gran = _noise(rng, shape, rng.uniform(1.0, 3.0))
    mid = _noise(rng, shape, rc_mean * rng.uniform(0.2, 0.6))
    cyto = per_cell(cyto_b) * prof_c * np.maximum(1 + rng.uniform(0.08, 0.3) * (gran + mid), 0.1)
    if rng.random() < 0.35:  # bright membranes / cortex outline cell borders
        memb = _blur(_boundaries(cells).astype(_F32), 0.7) * cfg
        cyto += rng.uniform(0.2, 0.8) * memb * per_cell(cyto_b)
    elif rng.random() < 0.5:  # or touching cells meet at a dim seam
        cyto *= 1 - rng.uniform(0.2, 0.6) * _boundaries(cells, inner_only=True)
    speckle, foci, nucleoli = _nuclear_texture(rng, shape, d_nuc, gran, mid)
    rn_eff = np.sqrt(geo["a"] * geo["b"])
    wn = _smoothstep(depth_n * per_nuc(rn_eff) / rng.uniform(0.6, 2.0)) * (nuc > 0)
    host = per_nuc(cyto_b[owner])
    if rng.random() < 0.5:  # nuclear + cytoplasmic stain in one channel: bright nuclei
        nb = host * rng.uniform(1.6, 4.0) * per_nuc(np.exp(rng.normal(0, 0.2, len(owner))))
        nterm = nb * np.maximum(1 + rng.uniform(0.1, 0.35) * speckle, 0.2) + nb * 0.4 * foci
    else:  # cytoplasmic stain only: nuclei are dark holes with faint nucleoli texture
        nb = host * rng.uniform(0.1, 0.55)
        nterm = nb * np.maximum(1 + 0.3 * speckle, 0.2) * (1 - 0.5 * nucleoli)
    sig = cyto * (1 - wn) + nterm * wn
    sig[~cfg] = 0
    sig += _debris(rng, shape, float(np.median(cyto_b)))
    sig /= max(float(np.percentile(sig[cfg], 99)) if cfg.any() else 1.0, 1e-3)
    image = _finish_fluorescence(rng, sig.astype(_F32), None, d_nuc)
    return image, (nuc, cells, clusters)
