"""CT-like slices from anatomical templates: levels ``(organs, body)``."""

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
)
from tilesam.training.synthetic.labels import _clean
from tilesam.training.synthetic.shapes import _harmonics, _paint

# name, u, v, su, sv, angle (deg), kind; (u, v) in body-normalised coordinates (v: anterior -1 ->
# posterior +1), (su, sv) as fractions of the body semi-axes.
_CT_TEMPLATES = {
    "abdomen": [
        ("liver", -0.40, -0.12, 0.42, 0.55, 20, "liver"),
        ("spleen", 0.60, 0.22, 0.15, 0.30, -40, "spleen"),
        ("stomach", 0.32, -0.38, 0.24, 0.20, -20, "gas"),
        ("kidney_r", -0.32, 0.42, 0.11, 0.20, 20, "kidney"),
        ("kidney_l", 0.32, 0.42, 0.11, 0.20, -20, "kidney"),
        ("aorta", 0.05, 0.36, 0.055, 0.0, 0, "vessel"),
        ("ivc", -0.12, 0.34, 0.06, 0.045, 0, "vessel"),
        ("vertebra", 0.0, 0.62, 0.12, 0.0, 0, "vertebra"),
        ("muscle_r", -0.21, 0.74, 0.16, 0.12, 10, "muscle"),
        ("muscle_l", 0.21, 0.74, 0.16, 0.12, -10, "muscle"),
        ("gallbladder", -0.30, 0.05, 0.07, 0.06, 30, "fluid"),
    ],
    "thorax": [
        ("lung_r", -0.46, 0.0, 0.34, 0.70, 0, "lung"),
        ("lung_l", 0.46, 0.02, 0.32, 0.68, 0, "lung"),
        ("heart", 0.10, -0.22, 0.28, 0.38, 30, "heart"),
        ("aorta_d", 0.12, 0.44, 0.06, 0.0, 0, "vessel"),
        ("aorta_a", 0.02, -0.38, 0.065, 0.0, 0, "vessel"),
        ("vertebra", 0.0, 0.68, 0.11, 0.0, 0, "vertebra"),
        ("sternum", 0.0, -0.86, 0.07, 0.04, 0, "bone"),
        ("scapula_r", -0.62, 0.74, 0.20, 0.045, -30, "bone"),
        ("scapula_l", 0.62, 0.74, 0.20, 0.045, 30, "bone"),
        ("esophagus", 0.04, 0.30, 0.03, 0.0, 0, "gas"),
    ],
    "pelvis": [
        ("bladder", 0.0, -0.25, 0.24, 0.22, 0, "fluid"),
        ("rectum", 0.0, 0.42, 0.08, 0.0, 0, "bowel"),
        ("femur_r", -0.62, 0.05, 0.12, 0.0, 0, "bone"),
        ("femur_l", 0.62, 0.05, 0.12, 0.0, 0, "bone"),
        ("ilium_r", -0.45, 0.48, 0.26, 0.07, -40, "bone"),
        ("ilium_l", 0.45, 0.48, 0.26, 0.07, 40, "bone"),
        ("muscle_r", -0.35, -0.18, 0.20, 0.18, 20, "muscle"),
        ("muscle_l", 0.35, -0.18, 0.20, 0.18, -20, "muscle"),
    ],
}


def _ct_hu(rng: np.random.Generator, kind: str, contrast: bool) -> float:
    table = {
        "liver": (50, 70) if not contrast else (90, 120),
        "spleen": (40, 55) if not contrast else (100, 130),
        "kidney": (28, 40) if not contrast else (150, 230),
        "vessel": (35, 50) if not contrast else (150, 320),
        "heart": (35, 50) if not contrast else (120, 280),
        "muscle": (45, 60),
        "fluid": (0, 18),
        "lung": (-880, -780),
        "gas": (-950, -850),
        "bowel": (10, 40),
        "bone": (250, 450),
        "vertebra": (200, 350),
        "soft": (-20, 130),
    }
    lo, hi = table[kind]
    return float(rng.uniform(lo, hi))


def _make_ct(rng: Rng, shape: Shape) -> tuple[np.ndarray, Levels]:
    # One long recipe on purpose: its steps share the scene parameters drawn as it goes, and
    # the order of its draws from `rng` fixes the image a seed gives (the data the bundled
    # `tiny` was trained on), so it reads top to bottom as the scene is built.
    h, w = shape
    short = min(h, w)
    region = rng.choice(["abdomen", "thorax", "pelvis", "generic"], p=[0.4, 0.3, 0.15, 0.15])
    contrast = rng.random() < 0.5
    zoom = _loguniform(rng, 0.75, 1.35)
    bx = 0.45 * short * zoom * rng.uniform(0.9, 1.1) * (w / short) ** 0.5
    by = min(bx * rng.uniform(0.6, 0.85), 0.62 * h * zoom)
    cy = h * (0.47 + rng.normal(0, 0.03))
    cx = w * (0.5 + rng.normal(0, 0.03))
    phi = rng.normal(0, 0.08)
    flip = -1.0 if rng.random() < 0.2 else 1.0
    body_amp, body_ph = _harmonics(rng, 1, rng.uniform(0.01, 0.05))
    body_lab, s_body = _paint(shape, [cy], [cx], [bx], [by], [phi], amp=body_amp, phase=body_ph)
    body = body_lab > 0
    t_fat = rng.uniform(0.03, 0.14)
    t_musc = rng.uniform(0.02, 0.06)

    entries = list(_CT_TEMPLATES.get(region, []))
    for _ in range(rng.integers(0 if region != "generic" else 3, 4 if region != "generic" else 9)):
        kind = "bowel" if region in ("abdomen", "pelvis") and rng.random() < 0.6 else "soft"
        r = rng.uniform(0.05, 0.16)
        entries.append(
            (
                "extra",
                rng.uniform(-0.55, 0.55),
                rng.uniform(-0.6, 0.35),
                r,
                r * rng.uniform(0.6, 1.0),
                rng.uniform(0, 180),
                kind,
            )
        )
    if region == "thorax":  # ribs along the inner chest wall
        m = rng.integers(6, 14)
        ang = np.sort(rng.uniform(0, 2 * np.pi, m))
        for t in ang:
            if abs(np.sin(t)) > 0.97:
                continue
            rad = 1 - t_fat - t_musc - 0.05
            entries.append(
                (
                    "rib",
                    rad * np.cos(t),
                    rad * np.sin(t),
                    rng.uniform(0.035, 0.06),
                    rng.uniform(0.025, 0.04),
                    float(np.degrees(t)) + 90,
                    "bone",
                )
            )
    keep = [e for e in entries if e[6] in ("vertebra", "bone", "lung") or rng.random() < 0.9]
    if not keep:
        keep = entries[:1]
    m = len(keep)
    u = np.array([e[1] for e in keep]) * flip + rng.normal(0, 0.03, m)
    v = np.array([e[2] for e in keep]) + rng.normal(0, 0.03, m)
    su = np.array([e[3] for e in keep]) * rng.uniform(0.85, 1.15, m)
    sv = np.array([e[4] for e in keep]) * rng.uniform(0.85, 1.15, m)
    circ = sv == 0
    ang = np.radians(np.array([e[5] for e in keep]) * flip) + rng.normal(0, 0.12, m)
    kinds = [e[6] for e in keep]
    a_px = su * bx
    b_px = np.where(circ, su * bx, sv * by)
    oy = cy + u * bx * np.sin(phi) + v * by * np.cos(phi)
    ox = cx + u * bx * np.cos(phi) - v * by * np.sin(phi)
    bend = np.array([0.2 * flip * np.sign(e[1]) if e[6] == "lung" else 0.0 for e in keep])
    bend += np.array([0.25 if e[6] == "kidney" else 0.0 for e in keep]) * np.sign(u)
    amp, ph = _harmonics(rng, m, np.where(circ, 0.01, rng.uniform(0.02, 0.12, m)))
    bony = np.array([k in ("bone", "vertebra") for k in kinds])
    area = a_px * b_px
    prio = 1 - area / area.max() + 2.0 * bony + 1.0 * np.array([k == "vessel" for k in kinds])
    raw, depth = _paint(
        shape, oy, ox, a_px, b_px, phi + ang, bend=bend, amp=amp, phase=ph, priority=prio
    )
    inner = s_body > t_fat + t_musc
    allowed = np.where(bony[np.maximum(raw - 1, 0)], body, inner) & (raw > 0)
    raw[~allowed] = 0
    organs, src = _clean(raw, max(6.0, 2e-4 * h * w))
    idx = src - 1

    # ---- Hounsfield units
    hu = np.full(shape, -1000.0, _F32)
    soft = rng.uniform(25, 45)
    hu[body] = soft
    fat_hu = rng.uniform(-115, -85)
    sub = body & (s_body < t_fat)
    hu[sub] = fat_hu
    musc = body & (s_body >= t_fat) & (s_body < t_fat + t_musc)
    hu[musc] = rng.uniform(45, 60)
    if region != "thorax":
        fatfield = _noise(rng, shape, bx * rng.uniform(0.03, 0.08))
        visceral = inner & (fatfield > rng.uniform(0.3, 1.5))
        hu[visceral] = fat_hu + 15
    hu_obj = np.array([_ct_hu(rng, k, contrast) for k in kinds])
    extra = np.array([k == "soft" for k in kinds])  # generic lesions / masses, mostly visible
    hu_obj[extra] = soft + rng.choice([-1, 1], extra.sum()) * rng.uniform(12, 90, extra.sum())
    kind_id = {k: i for i, k in enumerate(sorted(set(kinds)))}
    kcode = np.concatenate([[-1], [kind_id[kinds[i]] for i in idx]])[organs]
    dep = depth.copy()
    fg = organs > 0
    hu = np.where(fg, np.concatenate([[0.0], hu_obj[idx]]).astype(_F32)[organs], hu)
    organ_tex = _noise(rng, shape, rng.uniform(1.5, 4))
    hu += fg * rng.uniform(2, 10) * organ_tex
    for name, code in kind_id.items():
        sel = kcode == code
        if not sel.any():
            continue
        if name in ("bone", "vertebra"):  # cortical rim, cancellous core
            rim = sel & (dep < rng.uniform(0.12, 0.3))
            hu[rim] = rng.uniform(700, 1300)
            hu[sel] += 60 * organ_tex[sel]
        elif name == "lung":  # vessels and bronchi as bright dots and branches
            vessels = _noise(rng, shape, rng.uniform(1.2, 2.5)) > rng.uniform(1.8, 2.4)
            hu[sel & vessels] = rng.uniform(-100, 40)
        elif name == "kidney":  # medulla darker than cortex, fatty hilum
            hu[sel & (dep > 0.45)] -= rng.uniform(20, 90) if contrast else 5
        elif name in ("gas", "bowel"):  # wall around gas / fluid / contrast content
            content = rng.choice([-950.0, 10.0, 250.0], p=[0.5, 0.3, 0.2])
            if name == "gas":
                content = -950.0
            core = sel & (dep > rng.uniform(0.15, 0.35))
            hu[core] = content + (25 * organ_tex[core] if content > -500 else 0)
    if rng.random() < 0.6:  # patient table below the body
        ty = int(cy + by + rng.uniform(4, 12))
        if ty < h - 2:
            th = int(rng.uniform(2, 5))
            hu[ty : ty + th, max(0, int(cx - 1.2 * bx)) : int(cx + 1.2 * bx)] = rng.uniform(
                -300, 300
            )
    # Partial volume blur, correlated noise, streaks from dense bone.
    hu = _blur(hu, rng.uniform(0.5, 1.2))
    noise = _noise(rng, shape, rng.uniform(0.8, 2.0))
    hu += rng.uniform(5, 35) * noise
    hu += _ct_streaks(rng, shape, oy[bony], ox[bony], body)
    # Window to uint8, or raw HU + 1024 in uint16.
    if rng.random() < 0.2:
        image = np.clip(np.round(hu + 1024), 0, 4095).astype(np.uint16)
    else:
        if rng.random() < 0.85:
            level, width = rng.uniform(20, 70), rng.uniform(250, 500)
        else:
            level, width = rng.uniform(-650, -400), rng.uniform(1200, 1800)
        lo = level - width / 2
        image = np.clip(np.round((hu - lo) / width * 255), 0, 255).astype(np.uint8)
    return image, (organs, body.astype(np.uint32))


def _ct_streaks(
    rng: Rng, shape: Shape, ys: np.ndarray, xs: np.ndarray, body: np.ndarray
) -> np.ndarray:
    """Radial streaks (photon starvation / beam hardening) from a few dense points."""
    h, w = shape
    out = np.zeros(shape, _F32)
    if rng.random() < 0.35 or len(ys) == 0:
        return out
    yy = np.arange(h, dtype=_F32)[:, None]
    xx = np.arange(w, dtype=_F32)[None, :]
    strength = _loguniform(rng, 10, 120)
    for i in rng.choice(len(ys), min(len(ys), 2), replace=False):
        ang = np.arctan2(yy - ys[i], xx - xs[i])
        bins = 720
        prof = np.zeros(bins, _F32)
        k = rng.integers(4, 16)
        pos = rng.integers(0, bins // 2, k)
        prof[pos] = rng.normal(0, 1, k).astype(_F32)
        prof[pos + bins // 2] = prof[pos]
        prof = ndi.gaussian_filter1d(prof, rng.uniform(0.6, 1.5), mode="wrap")
        prof /= max(float(np.abs(prof).max()), 1e-6)
        lut = ((ang + np.pi) / (2 * np.pi) * bins).astype(np.int64) % bins
        dist = np.hypot(yy - ys[i], xx - xs[i])
        out += strength * prof[lut] / (1 + dist / (0.3 * min(h, w)))
    return out * body
