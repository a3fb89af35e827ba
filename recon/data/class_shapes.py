"""Random objects of the 13 ShapeNet classes of SoftRas's single-view benchmark.

Each object is a union of closed primitives (:mod:`recon.data.primitives`: boxes, cylinders,
cones, ellipsoids, extruded polygons), one recipe per class; parts may overlap (the union is not
computed), which is fine for rendering and for voxelisation by surface + flood fill.

Conventions:
  * Right-handed world, ``y`` up; objects stand on their base (lowest point = bottom).
  * Long objects (airplane, car, rifle, watercraft, bench, sofa) have their length along
    ``x`` (nose / front at ``+x``); objects with a front face (chair, sofa, bench, cabinet,
    display, loudspeaker, telephone) face ``-z``, i.e. towards the camera at azimuth 0 of
    :func:`softjax.get_points_from_angles`.
  * After building, :func:`~recon.data.primitives.normalize_unit_cube` centres the bounding box
    at the origin and scales uniformly so that its longest side is ``1 - 2 * margin``
    (ShapeNet-like).

Public API: :func:`make_parts`, :func:`make_object`, :func:`make_dataset_objects`; the class
ids and names are :data:`recon.data.classes.CLASSES`.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import softjax
from recon.data.classes import CLASS_IDS, CLASS_NAMES, CLASSES
from recon.data.primitives import (
    TriMesh,
    box,
    cone,
    cylinder,
    extrude,
    normalize_unit_cube,
    rotation_matrix,
    sphere,
)

# --------------------------------------------------------------------------- colours


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1))))


@dataclass
class Part:
    """One closed primitive of an object: vertices ``[V, 3]``, faces ``[F, 3]`` (local
    indices), RGB colour ``[3]`` in [0, 1]."""

    vertices: np.ndarray
    faces: np.ndarray
    color: np.ndarray


class _Builder:
    """Collects parts; parts added under the same colour key share one random colour."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.parts: list[Part] = []
        self.colors: dict[str, np.ndarray] = {}
        self.hue = rng.random()

    def color(self, key: str, dark: bool = False) -> np.ndarray:
        if key not in self.colors:
            r = self.rng
            if dark:
                c = _hsv(r.random(), r.uniform(0.0, 0.3), r.uniform(0.12, 0.3))
            else:
                h = self.hue + r.choice([0.0, 0.06, -0.06, 0.12, 0.5, 0.33]) + r.normal(0, 0.02)
                c = _hsv(h, r.uniform(0.3, 0.8), r.uniform(0.55, 0.95))
            self.colors[key] = c
        return self.colors[key]

    def add(self, mesh: TriMesh, key: str, dark: bool = False) -> None:
        v, f = mesh
        self.parts.append(Part(v, f, self.color(key, dark)))


# --------------------------------------------------------------------------- class recipes


def _airplane(b: _Builder) -> None:
    r = b.rng
    length = r.uniform(0.85, 1.0)
    rad = length * r.uniform(0.05, 0.075)
    b.add(sphere((0, 0, 0), (length / 2, rad, rad), 20), "body")
    # Main wings: swept trapezoids in the xz-plane, mirrored in z.
    span = length * r.uniform(0.8, 1.1) / 2
    root = length * r.uniform(0.18, 0.3)
    tip = root * r.uniform(0.3, 0.6)
    sweep = root * r.uniform(0.2, 1.2)
    x0 = length * r.uniform(-0.02, 0.12)  # leading edge at the root
    wy = r.choice([-0.6, 0.0, 0.6]) * rad
    thick = rad * 0.35
    for s in (-1, 1):
        poly = [[x0, 0], [x0 - root, 0], [x0 - sweep - tip, s * span], [x0 - sweep, s * span]]
        b.add(extrude(np.array(poly), wy - thick / 2, wy + thick / 2), "wing")
    # Engines under the wings.
    n_eng = r.choice([0, 1, 2])
    for k in range(n_eng):
        zz = span * (0.35 + 0.3 * k)
        xe = x0 - sweep * zz / span - root * 0.1
        for s in (-1, 1):
            b.add(cylinder((xe, wy - rad * 0.7, s * zz), rad * 0.4, root * 0.7, "x", 12), "engine")
    # Horizontal stabiliser and vertical fin at the tail (-x).
    xt = -length / 2 + length * 0.05
    hs = span * r.uniform(0.25, 0.4)
    hc = root * r.uniform(0.4, 0.6)
    for s in (-1, 1):
        poly = [[xt + hc, 0], [xt, 0], [xt - hc * 0.2, s * hs], [xt + hc * 0.3, s * hs]]
        b.add(extrude(np.array(poly), -thick / 2, thick / 2), "tail")
    fh = rad + length * r.uniform(0.12, 0.2)
    fc = root * r.uniform(0.5, 0.8)
    fin = np.array(
        [[xt + fc, 0.0], [xt - fc * 0.1, 0.0], [xt - fc * 0.25, fh], [xt + fc * 0.2, fh]]
    )
    b.add(extrude(fin, -thick / 2, thick / 2, rotation=rotation_matrix("x", -np.pi / 2)), "tail")


def _chair(b: _Builder) -> None:
    r = b.rng
    w, d = r.uniform(0.45, 0.6), r.uniform(0.42, 0.58)
    h, t = r.uniform(0.4, 0.5), r.uniform(0.04, 0.08)
    b.add(box((0, h + t / 2, 0), (w, t, d)), "seat")
    bh, bt = r.uniform(0.35, 0.6), r.uniform(0.03, 0.06)
    tilt = rotation_matrix("x", -r.uniform(0.0, 0.2))
    b.add(box((0, h + t + bh / 2, d / 2 - bt / 2), (w, bh, bt), tilt), "back")
    round_legs = r.random() < 0.5
    lw = r.uniform(0.03, 0.05)
    for sx in (-1, 1):
        for sz in (-1, 1):
            c = (sx * (w / 2 - lw), h / 2, sz * (d / 2 - lw))
            if round_legs:
                b.add(cylinder(c, lw / 2, h, "y", 10), "legs")
            else:
                b.add(box(c, (lw, h, lw)), "legs")
    if r.random() < 0.35:  # arm rests
        ah = r.uniform(0.18, 0.25)
        for sx in (-1, 1):
            b.add(box((sx * (w / 2 - 0.02), h + t + ah, 0), (0.04, 0.03, d * 0.9)), "arms")
            b.add(
                box((sx * (w / 2 - 0.02), h + t + ah / 2, -d / 2 + 0.04), (0.03, ah, 0.03)), "arms"
            )


def _table(b: _Builder) -> None:
    r = b.rng
    h, t = r.uniform(0.55, 0.8), r.uniform(0.03, 0.07)
    if r.random() < 0.3:  # round top on a pedestal
        rad = r.uniform(0.35, 0.6)
        b.add(cylinder((0, h - t / 2, 0), rad, t, "y", 24), "top")
        b.add(cylinder((0, (h - t) / 2, 0), r.uniform(0.03, 0.06), h - t, "y", 12), "legs")
        b.add(cylinder((0, 0.02, 0), rad * r.uniform(0.4, 0.6), 0.04, "y", 20), "legs")
        return
    w, d = r.uniform(0.8, 1.4), r.uniform(0.5, 0.9)
    b.add(box((0, h - t / 2, 0), (w, t, d)), "top")
    lw = r.uniform(0.04, 0.08)
    inset = r.uniform(0.0, 0.08)
    for sx in (-1, 1):
        for sz in (-1, 1):
            c = (sx * (w / 2 - lw / 2 - inset), (h - t) / 2, sz * (d / 2 - lw / 2 - inset))
            b.add(box(c, (lw, h - t, lw)), "legs")
    if r.random() < 0.4:  # apron / lower shelf
        y = r.uniform(0.1, 0.25)
        b.add(box((0, y, 0), (w - 2 * inset, 0.025, d - 2 * inset)), "shelf")


def _car(b: _Builder) -> None:
    r = b.rng
    length, width = 1.0, r.uniform(0.38, 0.48)
    wr = r.uniform(0.07, 0.1)
    bh = r.uniform(0.13, 0.2)
    y0 = wr * 0.8
    b.add(box((0, y0 + bh / 2, 0), (length, bh, width)), "body")
    cl = length * r.uniform(0.4, 0.6)
    ch = r.uniform(0.1, 0.17)
    cx = r.uniform(-0.15, 0.05)
    b.add(box((cx, y0 + bh + ch / 2, 0), (cl, ch, width * 0.92), top_scale=(0.7, 0.9)), "cabin")
    wx = length / 2 - wr * r.uniform(1.3, 1.8)
    for sx in (-1, 1):
        for sz in (-1, 1):
            b.add(
                cylinder((sx * wx, wr, sz * (width / 2 - 0.02)), wr, 0.07, "z", 16), "wheel", True
            )
    if r.random() < 0.3:  # spoiler
        b.add(box((-length / 2 + 0.05, y0 + bh + 0.04, 0), (0.06, 0.015, width)), "spoiler")


def _sofa(b: _Builder) -> None:
    r = b.rng
    length, d = r.uniform(1.0, 1.6), r.uniform(0.55, 0.75)
    feet = r.uniform(0.0, 0.08)
    bh = r.uniform(0.2, 0.3)
    b.add(box((0, feet + bh / 2, 0), (length, bh, d)), "base")
    if feet > 0.02:
        for sx in (-1, 1):
            for sz in (-1, 1):
                c = (sx * (length / 2 - 0.05), feet / 2, sz * (d / 2 - 0.05))
                b.add(box(c, (0.05, feet, 0.05)), "feet", True)
    bt = r.uniform(0.12, 0.2)
    top = feet + bh + r.uniform(0.3, 0.45)
    b.add(box((0, (feet + top) / 2, d / 2 - bt / 2), (length, top - feet, bt)), "back")
    n = r.integers(1, 4)
    cw = (length - 0.02) / n
    for k in range(n):  # seat cushions
        cx = -length / 2 + 0.01 + cw * (k + 0.5)
        b.add(box((cx, feet + bh + 0.04, -bt / 2), (cw * 0.96, 0.08, d - bt)), "cushion")
    aw = r.uniform(0.1, 0.18)
    ah = feet + bh + r.uniform(0.12, 0.25)
    for sx in (-1, 1):
        b.add(
            box((sx * (length / 2 + aw / 2 - 0.02), (feet + ah) / 2, 0), (aw, ah - feet, d)), "arm"
        )


def _bench(b: _Builder) -> None:
    r = b.rng
    length, d = r.uniform(1.0, 1.5), r.uniform(0.3, 0.45)
    h, t = r.uniform(0.38, 0.5), r.uniform(0.04, 0.07)
    b.add(box((0, h - t / 2, 0), (length, t, d)), "seat")
    if r.random() < 0.5:  # slab legs
        for sx in (-1, 1):
            b.add(box((sx * (length / 2 - 0.08), (h - t) / 2, 0), (0.05, h - t, d * 0.9)), "legs")
    else:
        nx = r.choice([2, 3])
        for x in np.linspace(-length / 2 + 0.06, length / 2 - 0.06, nx):
            for sz in (-1, 1):
                b.add(box((x, (h - t) / 2, sz * (d / 2 - 0.04)), (0.045, h - t, 0.045)), "legs")
    if r.random() < 0.7:  # back rest
        bh = r.uniform(0.25, 0.4)
        slats = r.integers(1, 4)
        for k in range(slats):
            y = h + 0.05 + (bh - 0.05) * (k + 0.5) / slats
            sh = (bh - 0.05) / slats * 0.7
            b.add(box((0, y, d / 2 - 0.02), (length, sh, 0.035)), "back")
        for sx in (-1, 1):
            b.add(
                box((sx * (length / 2 - 0.08), h + bh / 2, d / 2 - 0.02), (0.05, bh, 0.04)), "legs"
            )


def _cabinet(b: _Builder) -> None:
    r = b.rng
    w, h, d = r.uniform(0.5, 0.9), r.uniform(0.8, 1.5), r.uniform(0.4, 0.6)
    plinth = r.uniform(0.0, 0.07)
    b.add(box((0, plinth + (h - plinth) / 2, 0), (w, h - plinth, d)), "body")
    if plinth > 0.02:
        b.add(box((0, plinth / 2, 0), (w * 0.94, plinth, d * 0.94)), "plinth", True)
    zf = -d / 2 - 0.01
    gap = 0.02
    n_drawers = r.integers(0, 4)
    dh = (h - plinth) * r.uniform(0.12, 0.18)
    ytop = h - gap
    for _ in range(n_drawers):
        b.add(box((0, ytop - dh / 2, zf), (w - 2 * gap, dh - gap, 0.02)), "panel")
        b.add(box((0, ytop - dh / 2, zf - 0.02), (w * 0.2, 0.02, 0.02)), "knob", True)
        ytop -= dh
    rest = ytop - plinth - gap
    if rest > 0.1:
        doors = r.choice([1, 2])
        dw = (w - gap) / doors
        for k in range(doors):
            x = -w / 2 + gap / 2 + dw * (k + 0.5)
            b.add(box((x, plinth + gap + rest / 2, zf), (dw - gap, rest - gap, 0.02)), "panel")
            kx = x + (dw / 2 - 0.06) * (1 if (doors == 1 or k == 0) else -1)
            b.add(box((kx, plinth + gap + rest * 0.6, zf - 0.02), (0.025, 0.1, 0.02)), "knob", True)


def _display(b: _Builder) -> None:
    r = b.rng
    w = 1.0
    sh = w * r.uniform(0.55, 0.68)
    st = r.uniform(0.03, 0.06)
    neck = r.uniform(0.12, 0.25)
    foot_h = 0.03
    y0 = foot_h + neck
    b.add(box((0, y0 + sh / 2, 0), (w, sh, st)), "frame")
    bez = r.uniform(0.02, 0.05)
    b.add(box((0, y0 + sh / 2, -st / 2 - 0.005), (w - 2 * bez, sh - 2 * bez, 0.01)), "screen", True)
    if r.random() < 0.5:
        b.add(
            box((0, (foot_h + y0 + sh * 0.4) / 2, st / 2 + 0.02), (0.08, y0 + sh * 0.4, 0.03)),
            "stand",
        )
    else:
        b.add(
            cylinder((0, (foot_h + y0 + sh * 0.4) / 2, st / 2 + 0.02), 0.03, y0 + sh * 0.4), "stand"
        )
    if r.random() < 0.5:
        b.add(
            box((0, foot_h / 2, 0.03), (r.uniform(0.3, 0.5), foot_h, r.uniform(0.18, 0.28))),
            "stand",
        )
    else:
        b.add(cylinder((0, foot_h / 2, 0.03), r.uniform(0.12, 0.2), foot_h, "y", 24), "stand")


def _loudspeaker(b: _Builder) -> None:
    r = b.rng
    w, h, d = r.uniform(0.4, 0.6), r.uniform(0.6, 1.3), r.uniform(0.35, 0.55)
    b.add(box((0, h / 2, 0), (w, h, d)), "body")
    n = int(r.integers(1, 4)) if h > 0.8 else int(r.integers(1, 3))
    zf = -d / 2
    big = min(w * 0.38, h / (n + 1) * 0.7)
    ys = np.linspace(h * 0.25, h * 0.8, n) if n > 1 else [h * 0.45]
    for k, y in enumerate(ys):
        rad = big if k == 0 else big * r.uniform(0.45, 0.8)
        b.add(cylinder((0, y, zf - 0.01), rad, 0.02, "z", 20), "rim", True)
        b.add(cone((0, y, zf - 0.025), rad * 0.8, 0.03, "-z", 20), "cone")
        b.add(sphere((0, y, zf - 0.04), rad * 0.25, 10), "rim", True)
    if r.random() < 0.5:  # tweeter at the top
        b.add(sphere((0, h * 0.92, zf), min(w, h) * 0.06, 12), "cone")


def _lamp(b: _Builder) -> None:
    r = b.rng
    base_r = r.uniform(0.12, 0.22)
    base_h = r.uniform(0.03, 0.06)
    b.add(cylinder((0, base_h / 2, 0), base_r, base_h, "y", 24, radius_top=base_r * 0.8), "base")
    pole = r.uniform(0.5, 1.0)
    pr = r.uniform(0.012, 0.025)
    b.add(cylinder((0, base_h + pole / 2, 0), pr, pole, "y", 10), "pole")
    sr = r.uniform(0.15, 0.3)
    sh = r.uniform(0.15, 0.3)
    top_r = sr * r.uniform(0.3, 0.7)
    y = base_h + pole - sh * 0.3
    if r.random() < 0.75:  # conical shade
        b.add(cylinder((0, y, 0), sr, sh, "y", 24, radius_top=top_r), "shade")
    else:  # dome shade
        b.add(sphere((0, y, 0), (sr, sh * 0.7, sr), 20), "shade")
    b.add(sphere((0, y - sh * 0.35, 0), sr * 0.25, 12), "bulb")


def _rifle(b: _Builder) -> None:
    r = b.rng
    rl = r.uniform(0.28, 0.38)  # receiver length
    rh = r.uniform(0.07, 0.1)
    tz = r.uniform(0.035, 0.05)
    b.add(box((0, 0, 0), (rl, rh, tz)), "receiver")
    bl = r.uniform(0.35, 0.55)
    b.add(
        cylinder((rl / 2 + bl / 2, rh * 0.2, 0), r.uniform(0.01, 0.016), bl, "x", 10),
        "barrel",
        True,
    )
    fl = bl * r.uniform(0.3, 0.6)
    b.add(box((rl / 2 + fl / 2, 0, 0), (fl, rh * 0.7, tz * 0.9)), "stock")
    # Stock: polygon in the xy-plane extruded along z.
    sl = r.uniform(0.25, 0.35)
    drop = rh * r.uniform(0.3, 1.0)
    x0, x1 = -rl / 2 + 0.01, -rl / 2 - sl
    stock = np.array(
        [
            [x0, rh / 2],
            [x1, rh / 2 - drop * 0.6],
            [x1, -rh / 2 - drop],
            [-rl / 2 - sl * 0.7, -rh / 2 - drop],
            [x0, -rh / 2],
        ]
    )
    b.add(extrude(stock, -tz / 2, tz / 2, rotation=rotation_matrix("x", -np.pi / 2)), "stock")
    mh = r.uniform(0.08, 0.16)
    mag = rotation_matrix("z", r.uniform(-0.35, 0.0))
    b.add(box((rl * 0.15, -rh / 2 - mh / 2, 0), (0.045, mh, tz * 0.8), mag), "mag", True)
    grip = rotation_matrix("z", 0.3)
    b.add(box((-rl * 0.3, -rh / 2 - 0.04, 0), (0.035, 0.09, tz * 0.8), grip), "stock")
    if r.random() < 0.5:  # scope
        b.add(cylinder((0, rh / 2 + 0.035, 0), 0.022, rl * 0.8, "x", 12), "scope", True)


def _telephone(b: _Builder) -> None:
    r = b.rng
    w, h, t = r.uniform(0.45, 0.58), 1.0, r.uniform(0.05, 0.1)
    if r.random() < 0.7:  # smartphone
        b.add(box((0, h / 2, 0), (w, h, t)), "body")
        bez = r.uniform(0.02, 0.05)
        sh = h - r.uniform(0.1, 0.25)
        b.add(box((0, h / 2, -t / 2 - 0.004), (w - 2 * bez, sh, 0.01)), "screen", True)
        if r.random() < 0.5:
            b.add(cylinder((0, (h - sh) / 4, -t / 2), 0.04, 0.012, "z", 12), "button")
    else:  # keypad phone: screen on top, key grid below
        b.add(box((0, h / 2, 0), (w, h, t), top_scale=(0.9, 1.0)), "body")
        b.add(box((0, h * 0.72, -t / 2 - 0.004), (w * 0.75, h * 0.3, 0.01)), "screen", True)
        kw, kh = w * 0.2, h * 0.06
        for row in range(4):
            for col in range(3):
                c = ((col - 1) * kw * 1.3, h * 0.42 - row * kh * 1.5, -t / 2 - 0.006)
                b.add(box(c, (kw, kh, 0.014)), "keys")


def _watercraft(b: _Builder) -> None:
    r = b.rng
    width = r.uniform(0.2, 0.32)  # the length is 1 (x from -0.5 to 0.5)
    hh = r.uniform(0.1, 0.16)
    bow = r.uniform(0.2, 0.4)  # fraction of the length that tapers
    xs = np.linspace(-0.5, 0.5, 13)
    taper = np.clip((xs - (0.5 - bow)) / bow, 0, 1)
    half = width / 2 * np.sqrt(np.clip(1 - taper**2, 0, 1))
    side = np.stack([xs[:-1], half[:-1]], 1)
    deck = np.concatenate([side, [[0.5, 0.0]], side[::-1] * [1, -1]])
    v, f = extrude(deck, 0.0, hh, top_scale=1.0)
    # Narrow and shorten the keel: scale the bottom ring (first half of the ring vertices).
    n = len(deck)
    v[:n, 2] *= r.uniform(0.3, 0.6)
    v[:n, 0] = v[:n, 0] * 0.85 - 0.03
    v[2 * n, :] = v[:n].mean(0)
    b.add((v, f), "hull")
    if r.random() < 0.4:  # sailboat
        mh = r.uniform(0.5, 0.8)
        mx = r.uniform(0.0, 0.15)
        b.add(cylinder((mx, hh + mh / 2, 0), 0.01, mh, "y", 8), "mast")
        sail = np.array(
            [[mx - 0.01, hh + 0.06], [mx - mh * 0.55, hh + 0.06], [mx - 0.01, hh + mh * 0.95]]
        )
        b.add(extrude(sail, -0.004, 0.004, rotation=rotation_matrix("x", -np.pi / 2)), "sail")
        b.add(box((-0.15, hh + 0.03, 0), (0.2, 0.06, width * 0.5)), "cabin")
    else:  # motor boat / ship with a stack of cabins
        levels = r.integers(1, 4)
        cl, cw = r.uniform(0.3, 0.5), width * r.uniform(0.55, 0.8)
        cx = r.uniform(-0.2, 0.0)
        y = hh
        for _ in range(levels):
            ch = r.uniform(0.05, 0.09)
            b.add(box((cx, y + ch / 2, 0), (cl, ch, cw)), "cabin")
            y += ch
            cl *= r.uniform(0.5, 0.8)
            cx -= 0.03
        if r.random() < 0.5:  # funnel or radar mast
            b.add(cylinder((cx, y + 0.06, 0), 0.025, 0.12, "y", 10), "mast")


# The recipe of each class, by its name in :data:`recon.data.classes.CLASSES`.
_RECIPES: dict[str, Callable[[_Builder], None]] = {
    "Airplane": _airplane,
    "Bench": _bench,
    "Cabinet": _cabinet,
    "Car": _car,
    "Chair": _chair,
    "Display": _display,
    "Lamp": _lamp,
    "Loudspeaker": _loudspeaker,
    "Rifle": _rifle,
    "Sofa": _sofa,
    "Table": _table,
    "Telephone": _telephone,
    "Watercraft": _watercraft,
}


def _check_class(class_id: str) -> None:
    if class_id not in CLASS_NAMES:
        valid = ", ".join(f"{c} ({n})" for c, n in CLASSES)
        raise ValueError(f"unknown class id {class_id!r}; valid ids: {valid}")


def make_parts(class_id: str, rng: np.random.Generator) -> list[Part]:
    """The parts of one random object of ``class_id``, in unnormalised object units.

    Raises:
      ValueError: for an unknown class id (the message lists the valid ids).
    """
    _check_class(class_id)
    b = _Builder(rng)
    _RECIPES[CLASS_NAMES[class_id]](b)
    return b.parts


def make_object(class_id: str, rng: np.random.Generator, margin: float = 0.02) -> softjax.Mesh:
    """One random object of ``class_id`` as a :class:`softjax.Mesh` with batch 1.

    Returns a mesh with vertices ``[1, V, 3]`` float32 normalised by
    :func:`normalize_unit_cube` (``margin``), faces ``[1, F, 3]`` int32 (CCW from outside)
    and ``texture_type='surface'`` textures ``[1, F, 1, 3]`` float32 in [0, 1] (one colour
    per part).

    Raises:
      ValueError: for an unknown class id (the message lists the valid ids).
    """
    parts = make_parts(class_id, rng)
    verts, faces, cols = [], [], []
    offset = 0
    for p in parts:
        verts.append(p.vertices)
        faces.append(p.faces + offset)
        cols.append(np.broadcast_to(p.color, (len(p.faces), 3)))
        offset += len(p.vertices)
    v = normalize_unit_cube(np.concatenate(verts), margin).astype(np.float32)
    f = np.concatenate(faces).astype(np.int32)
    tex = np.clip(np.concatenate(cols), 0.0, 1.0).astype(np.float32)[None, :, None, :]
    return softjax.Mesh.create(v[None], f[None], tex, texture_type="surface")


def make_dataset_objects(
    class_id: str, count: int, seed: int = 0, margin: float = 0.02
) -> list[softjax.Mesh]:
    """``count`` objects of ``class_id``; object k uses
    ``np.random.default_rng([seed, class_index, k])``, so it does not depend on ``count``."""
    _check_class(class_id)
    ci = CLASS_IDS.index(class_id)
    return [
        make_object(class_id, np.random.default_rng([seed, ci, k]), margin) for k in range(count)
    ]
