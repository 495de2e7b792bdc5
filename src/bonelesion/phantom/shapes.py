"""Analytic solids in LPS millimetres and a painter that rasterises them on axis-aligned grids.

A *shape* knows its LPS bounding box and answers "is this point inside?" for broadcastable
coordinate arrays. A *raster* is a block of an axis-aligned grid (axial, sagittal or coronal:
each array axis runs along one LPS axis); it turns a bounding box into index slices, so a
shape is evaluated only inside its own box. Painting writes a label wherever a shape holds
(optionally only over some labels), in the order given: later paints win.

All arithmetic is float32 and vectorised over the box; nothing allocates a full-volume
float64 temporary.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "Frame",
    "Raster",
    "Shape",
    "Superellipsoid",
    "VertebralBodyShape",
    "NeuralArchShape",
    "CapsuleChain",
    "StarBlob",
    "AxialProfile",
    "AxialArc",
    "Clipped",
    "Paint",
    "paint",
    "frame_from_axis",
    "rotation_x",
]

F32 = NDArray[np.float32]
Bool = NDArray[np.bool_]
#: A vector or list of numbers (positions, knots, per-knot parameters).
Floats = Sequence[float] | NDArray[np.float64]


# ------------------------------------------------------------------------------ frames
@dataclass(frozen=True)
class Frame:
    """A local orthonormal frame: ``local = axes @ (p − origin)``.

    Parameters
    ----------
    origin : (3,) ndarray, LPS mm
    axes : (3, 3) ndarray
        Row *i* is the LPS unit vector of local axis *i*.
    """

    origin: NDArray[np.float64]
    axes: NDArray[np.float64]

    def to_local(self, x: F32, y: F32, z: F32) -> tuple[F32, F32, F32]:
        """Local coordinates of broadcastable LPS coordinate arrays."""
        dx = x - np.float32(self.origin[0])
        dy = y - np.float32(self.origin[1])
        dz = z - np.float32(self.origin[2])
        a = self.axes.astype(np.float32)
        return tuple(  # type: ignore[return-value]
            _lin(a[i, 0], dx, a[i, 1], dy, a[i, 2], dz) for i in range(3))

    def point(self, local: Floats) -> NDArray[np.float64]:
        """LPS position of a point given in local coordinates."""
        return np.asarray(self.origin, float) + np.asarray(local, float) @ self.axes

    def vector(self, local: Floats) -> NDArray[np.float64]:
        """LPS direction of a vector given in local coordinates."""
        return np.asarray(local, float) @ self.axes

    def sub(self, origin_local: Floats, axes_local: NDArray[np.float64]) -> Frame:
        """Return a frame given relative to this one (origin and axes in local coordinates)."""
        return Frame(origin=self.point(origin_local), axes=np.asarray(axes_local) @ self.axes)


def _lin(a0: np.float32, d0: F32, a1: np.float32, d1: F32, a2: np.float32, d2: F32) -> F32:
    """a0·d0 + a1·d1 + a2·d2, skipping zero coefficients (axis-aligned frames are common)."""
    out: F32 | None = None
    for a, d in ((a0, d0), (a1, d1), (a2, d2)):
        if a == 0.0:
            continue
        term = d if a == 1.0 else (-d if a == -1.0 else a * d)
        out = term if out is None else out + term
    if out is None:
        return np.zeros((1, 1, 1), np.float32)
    return out


def frame_from_axis(origin: Floats, axis: Floats,
                    hint: Floats = (1.0, 0.0, 0.0)) -> Frame:
    """Frame whose third axis is ``axis`` and whose first axis is ``hint`` made orthogonal.

    Parameters
    ----------
    origin : (3,) sequence of float, LPS mm
    axis : (3,) sequence of float
        Direction of local axis 2 (need not be unit length).
    hint : (3,) sequence of float
        Direction that local axis 0 should follow as closely as possible.
    """
    w = np.asarray(axis, float)
    w = w / np.linalg.norm(w)
    u = np.asarray(hint, float) - np.dot(hint, w) * w
    u = u / np.linalg.norm(u)
    v = np.cross(w, u)
    return Frame(origin=np.asarray(origin, float), axes=np.stack([u, v, w]))


def rotation_x(angle_deg: float) -> NDArray[np.float64]:
    """Rows of a frame rotated by ``angle_deg`` about the L axis (a sagittal tilt).

    Positive angles tip local axis 2 (superior) towards anterior (−P).
    """
    a = math.radians(angle_deg)
    return np.array([[1.0, 0.0, 0.0],
                     [0.0, math.cos(a), math.sin(a)],
                     [0.0, -math.sin(a), math.cos(a)]])


# ------------------------------------------------------------------------------ raster
@dataclass(frozen=True)
class Raster:
    """A block of an axis-aligned grid: per array axis, the LPS coordinate of each index.

    Parameters
    ----------
    coords : tuple of three (n_k,) float32 ndarrays
        Coordinate of every index along array axis *k*, in mm, strictly monotonic.
    lps_axis : (3,) tuple of int
        LPS component (0 = L, 1 = P, 2 = S) each array axis runs along.
    """

    coords: tuple[F32, F32, F32]
    lps_axis: tuple[int, int, int]
    _ascending: tuple[bool, bool, bool] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        asc = tuple(bool(len(c) < 2 or c[1] > c[0]) for c in self.coords)
        object.__setattr__(self, "_ascending", asc)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape of the block."""
        return tuple(len(c) for c in self.coords)  # type: ignore[return-value]

    def box(self, lo: NDArray[np.float64], hi: NDArray[np.float64]
            ) -> tuple[slice, slice, slice] | None:
        """Index slices of the points inside the LPS box [lo, hi]; None when empty."""
        out = []
        for k in range(3):
            c = self.coords[k]
            a = self.lps_axis[k]
            if self._ascending[k]:
                i0 = int(np.searchsorted(c, lo[a], side="left"))
                i1 = int(np.searchsorted(c, hi[a], side="right"))
            else:
                r = c[::-1]
                n = len(c)
                i0 = n - int(np.searchsorted(r, hi[a], side="right"))
                i1 = n - int(np.searchsorted(r, lo[a], side="left"))
            if i1 <= i0:
                return None
            out.append(slice(i0, i1))
        return out[0], out[1], out[2]

    def xyz(self, sl: tuple[slice, slice, slice]) -> tuple[F32, F32, F32]:
        """Broadcastable L, P, S coordinate arrays of a block of indices."""
        xyz: list[F32] = [np.zeros((1, 1, 1), np.float32)] * 3
        for k in range(3):
            shape = [1, 1, 1]
            vals = self.coords[k][sl[k]]
            shape[k] = len(vals)
            xyz[self.lps_axis[k]] = vals.reshape(shape)
        return xyz[0], xyz[1], xyz[2]


# ------------------------------------------------------------------------------ shapes
class Shape(ABC):
    """An analytic solid with an LPS bounding box."""

    lo: NDArray[np.float64]
    hi: NDArray[np.float64]

    @abstractmethod
    def inside(self, x: F32, y: F32, z: F32) -> Bool:
        """Boolean mask of the points inside (broadcast shape of the inputs)."""


def _box_of_frame(frame: Frame, semi: Floats) -> tuple[NDArray[np.float64],
                                                             NDArray[np.float64]]:
    """LPS box holding the local box ±semi of a frame."""
    half = np.abs(frame.axes.T) @ np.asarray(semi, float)
    return frame.origin - half, frame.origin + half


def _pow(t: F32, p: float) -> F32:
    t2 = t * t
    if p == 2.0:
        return t2
    if p == 4.0:
        return t2 * t2
    return np.abs(t) ** np.float32(p)  # type: ignore[no-any-return]


class Superellipsoid(Shape):
    """``Σ |local_i / semi_i|^p ≤ 1`` in a frame (p = 2: ellipsoid, p = 4: rounded box).

    Parameters
    ----------
    frame : Frame
    semi_mm : (3,) sequence of float
        Semi-axes along the local axes.
    exponent : float
    """

    def __init__(self, frame: Frame, semi_mm: Floats, exponent: float = 2.0) -> None:
        self.frame = frame
        self.semi = tuple(float(s) for s in semi_mm)
        self.p = float(exponent)
        self.lo, self.hi = _box_of_frame(frame, self.semi)

    def inside(self, x: F32, y: F32, z: F32) -> Bool:
        """See `Shape.inside`."""
        u, v, w = self.frame.to_local(x, y, z)
        s = [np.float32(1.0 / q) for q in self.semi]
        return _pow(u * s[0], self.p) + _pow(v * s[1], self.p) + _pow(w * s[2], self.p) <= 1.0  # type: ignore[no-any-return]


class VertebralBodyShape(Shape):
    """A vertebral body: superelliptic cross-section with concave endplates.

    In the vertebra frame (u lateral, v posterior, w superior): inside when
    ``|u/a|^p + |v/b|^p ≤ 1``, ``v ≤ flat · b`` (flat posterior wall) and
    ``|w| ≤ h(v) − c · (1 − ρ²)``, where ρ² is the normalised radius, c the endplate
    concavity and ``h(v) = half_height + wedge/2 · (−v/b)`` (taller in front when wedge > 0).
    """

    def __init__(self, frame: Frame, *, semi_lateral_mm: float, semi_ap_mm: float,
                 half_height_mm: float, concavity_mm: float, wedge_mm: float = 0.0,
                 exponent: float = 2.4, posterior_flat: float = 0.82) -> None:
        self.frame = frame
        self.a, self.b = semi_lateral_mm, semi_ap_mm
        self.h, self.c, self.wedge = half_height_mm, concavity_mm, wedge_mm
        self.p, self.flat = exponent, posterior_flat
        self.lo, self.hi = _box_of_frame(
            frame, (self.a, self.b, self.h + abs(self.wedge) / 2.0))

    def inside(self, x: F32, y: F32, z: F32) -> Bool:
        """See `Shape.inside`."""
        u, v, w = self.frame.to_local(x, y, z)
        ru = _pow(u * np.float32(1.0 / self.a), self.p)
        rv = _pow(v * np.float32(1.0 / self.b), self.p)
        rho = ru + rv
        half = np.float32(self.h) - np.float32(self.c) * (1.0 - np.minimum(rho, 1.0))
        if self.wedge:
            half = half - np.float32(self.wedge / 2.0 / self.b) * v
        return (rho <= 1.0) & (v <= np.float32(self.flat * self.b)) & (np.abs(w) <= half)  # type: ignore[no-any-return]


class NeuralArchShape(Shape):
    """Pedicles and laminae: an elliptic ring around the canal, behind the body.

    In the vertebra frame: outside the canal ellipse (semi-axes ``canal_a``, ``canal_b``,
    centre v = ``canal_v``; the lateral semi-axes shrink by the factor ``1 − taper · s``
    towards the back, s = 0 at the canal centre and 1 at the back of the ring, which makes
    the lumbar canal triangular), inside the same ellipse grown by ``thickness``, at
    v ≥ ``v_min``, and between two axial limits that move linearly from the pedicle band
    (lateral, at the canal centre) to the lamina band (at the back of the ring).
    """

    def __init__(self, frame: Frame, *, canal_a_mm: float, canal_b_mm: float,
                 canal_v_mm: float, thickness_mm: float, v_min_mm: float,
                 pedicle_band_mm: tuple[float, float], lamina_band_mm: tuple[float, float],
                 taper: float = 0.0) -> None:
        self.frame = frame
        self.taper = float(taper)
        self.ca, self.cb, self.cv = canal_a_mm, canal_b_mm, canal_v_mm
        self.t, self.vmin = thickness_mm, v_min_mm
        self.ped, self.lam = pedicle_band_mm, lamina_band_mm
        oa, ob = self.ca + self.t, self.cb + self.t
        lo_l = np.array([-oa, self.vmin, min(self.ped[0], self.lam[0])])
        hi_l = np.array([oa, self.cv + ob, max(self.ped[1], self.lam[1])])
        centre = (lo_l + hi_l) / 2.0
        f = Frame(origin=frame.point(centre), axes=frame.axes)
        self.lo, self.hi = _box_of_frame(f, (hi_l - lo_l) / 2.0)

    def inside(self, x: F32, y: F32, z: F32) -> Bool:
        """See `Shape.inside`."""
        u, v, w = self.frame.to_local(x, y, z)
        dv = v - np.float32(self.cv)
        s = np.clip(dv * np.float32(1.0 / (self.cb + self.t)), 0.0, 1.0)
        if self.taper:  # narrower towards the back: a triangular canal and a roof of laminae
            u = u / (1.0 - np.float32(self.taper) * s)
        inner = (u * np.float32(1.0 / self.ca)) ** 2 + (dv * np.float32(1.0 / self.cb)) ** 2
        outer = ((u * np.float32(1.0 / (self.ca + self.t))) ** 2
                 + (dv * np.float32(1.0 / (self.cb + self.t))) ** 2)
        lo = np.float32(self.ped[0]) + s * np.float32(self.lam[0] - self.ped[0])
        hi = np.float32(self.ped[1]) + s * np.float32(self.lam[1] - self.ped[1])
        return (inner > 1.0) & (outer <= 1.0) & (v >= np.float32(self.vmin)) & (w >= lo) & (w <= hi)  # type: ignore[no-any-return]


class CapsuleChain(Shape):
    """A tube of given radius around a polyline (union of capsules).

    Parameters
    ----------
    points_lps_mm : (N, 3) array
    radius_mm : float or (N,) array
        Radius at each vertex (linear along each segment).
    """

    def __init__(self, points_lps_mm: NDArray[np.float64], radius_mm: float | NDArray[np.float64]
                 ) -> None:
        self.points = np.asarray(points_lps_mm, float)
        self.radius = np.broadcast_to(np.asarray(radius_mm, float), (len(self.points),)).copy()
        rmax = float(self.radius.max())
        self.lo = self.points.min(axis=0) - rmax
        self.hi = self.points.max(axis=0) + rmax

    def segments(self) -> list[CapsuleChain]:
        """One capsule per segment (each with its own tight bounding box)."""
        return [CapsuleChain(self.points[i:i + 2], self.radius[i:i + 2])
                for i in range(len(self.points) - 1)]

    def inside(self, x: F32, y: F32, z: F32) -> Bool:
        """See `Shape.inside`."""
        out: Bool | None = None
        for i in range(len(self.points) - 1):
            p0, p1 = self.points[i], self.points[i + 1]
            d = p1 - p0
            ll = float(d @ d)
            dx, dy, dz = (x - np.float32(p0[0]), y - np.float32(p0[1]), z - np.float32(p0[2]))
            t = (dx * np.float32(d[0]) + dy * np.float32(d[1]) + dz * np.float32(d[2]))
            t = np.clip(t * np.float32(1.0 / ll), 0.0, 1.0)
            ex = dx - t * np.float32(d[0])
            ey = dy - t * np.float32(d[1])
            ez = dz - t * np.float32(d[2])
            r = np.float32(self.radius[i]) + t * np.float32(self.radius[i + 1] - self.radius[i])
            m = ex * ex + ey * ey + ez * ez <= r * r
            out = m if out is None else out | m
        assert out is not None
        return out


class StarBlob(Shape):
    """A star-shaped solid: ``|q| ≤ r0 · (1 + Σ_k a_k · bump_k(q̂))`` with q in a scaled frame.

    Each bump is ``max(0, (q̂·d_k − c_k) / (1 − c_k))²``: broad lobes (c ≈ 0) make an
    irregular nodule, narrow ones (c ≈ 0.97) spicules.

    Parameters
    ----------
    frame : Frame
    radius_mm : float
        Base radius r0.
    scale : (3,) sequence of float
        Stretch of the base sphere along the local axes (an ellipsoid base).
    directions : (K, 3) array
        Unit vectors d_k in local coordinates.
    amplitudes, cosines : (K,) arrays
        a_k (may be negative: dents) and c_k.
    """

    def __init__(self, frame: Frame, radius_mm: float, scale: Floats,
                 directions: NDArray[np.float64], amplitudes: NDArray[np.float64],
                 cosines: NDArray[np.float64]) -> None:
        self.frame = frame
        self.r0 = float(radius_mm)
        self.scale = np.asarray(scale, float)
        self.dirs = np.asarray(directions, float).reshape(-1, 3)
        self.amp = np.asarray(amplitudes, float).reshape(-1)
        self.cos = np.asarray(cosines, float).reshape(-1)
        # the largest radius factor: over a dense set of directions and the bump axes
        n = 4000
        k = np.arange(n) + 0.5
        theta = np.arccos(1.0 - 2.0 * k / n)
        phi = math.pi * (1.0 + 5.0**0.5) * k
        probe = np.concatenate([np.stack([np.sin(theta) * np.cos(phi),
                                          np.sin(theta) * np.sin(phi), np.cos(theta)], axis=1),
                                self.dirs])
        factor = float(self.radius_factor(probe).max())
        semi = self.r0 * factor * self.scale * 1.02 + 0.05
        self.lo, self.hi = _box_of_frame(frame, tuple(float(v) for v in semi))

    def radius_factor(self, unit: NDArray[np.float64]) -> NDArray[np.float64]:
        """``1 + Σ a_k bump_k`` for unit direction(s) in the scaled local frame."""
        c = np.asarray(unit, float) @ self.dirs.T
        bump = np.clip((c - self.cos) / (1.0 - self.cos), 0.0, None) ** 2
        return 1.0 + bump @ self.amp  # type: ignore[no-any-return]

    def inside(self, x: F32, y: F32, z: F32) -> Bool:
        """See `Shape.inside`."""
        u, v, w = self.frame.to_local(x, y, z)
        u = u * np.float32(1.0 / self.scale[0])
        v = v * np.float32(1.0 / self.scale[1])
        w = w * np.float32(1.0 / self.scale[2])
        r2 = u * u + v * v + w * w
        inv = 1.0 / np.sqrt(np.maximum(r2, np.float32(1e-12)))
        factor = np.ones(r2.shape, np.float32)
        for d, a, c in zip(self.dirs, self.amp, self.cos, strict=True):
            cosang = (u * np.float32(d[0]) + v * np.float32(d[1]) + w * np.float32(d[2])) * inv
            b = np.clip((cosang - np.float32(c)) * np.float32(1.0 / (1.0 - c)), 0.0, None)
            factor += np.float32(a) * b * b
        rr = np.float32(self.r0) * factor
        return r2 <= rr * rr  # type: ignore[no-any-return]


def _interp(z: F32, knots: NDArray[np.float64], values: NDArray[np.float64]) -> F32:
    flat = np.interp(z.ravel(), knots, values).astype(np.float32)
    return flat.reshape(z.shape)


class AxialProfile(Shape):
    """A solid whose axial cross-section is a superellipse with parameters varying along S.

    Parameters (each an (n,) array over ``knots_s_mm``, linearly interpolated; the solid
    exists between the first and last knot):
    centre_l_mm, centre_p_mm, semi_l_mm, semi_p_mm; ``exponent`` is fixed.
    ``inner_scale`` > 0 makes a shell: points inside the profile scaled by it are excluded.
    """

    def __init__(self, knots_s_mm: Floats, *, centre_l_mm: Floats,
                 centre_p_mm: Floats, semi_l_mm: Floats,
                 semi_p_mm: Floats, exponent: float = 2.0) -> None:
        self.k = np.asarray(knots_s_mm, float)
        self.cl, self.cp = np.asarray(centre_l_mm, float), np.asarray(centre_p_mm, float)
        self.al, self.ap = np.asarray(semi_l_mm, float), np.asarray(semi_p_mm, float)
        self.p = float(exponent)
        self.lo = np.array([float((self.cl - self.al).min()), float((self.cp - self.ap).min()),
                            float(self.k.min())])
        self.hi = np.array([float((self.cl + self.al).max()), float((self.cp + self.ap).max()),
                            float(self.k.max())])

    def inside(self, x: F32, y: F32, z: F32) -> Bool:
        """See `Shape.inside`."""
        cl, cp = _interp(z, self.k, self.cl), _interp(z, self.k, self.cp)
        al, ap = _interp(z, self.k, self.al), _interp(z, self.k, self.ap)
        return _pow((x - cl) / al, self.p) + _pow((y - cp) / ap, self.p) <= 1.0  # type: ignore[no-any-return]


class AxialArc(Shape):
    """A curved plate: in each axial section, a band of an ellipse arc (the iliac wing).

    Per knot along S: centre (L, P), semi-axes (L, P), arc angles ``angle_from/to_deg``
    (measured from +L towards +P; the arc runs between them) and thickness at the two ends
    and in the middle of the arc (a parabola through the three). A point is inside when its
    angle lies on the arc and its distance from the ellipse (along the ray from the centre)
    is at most half the local thickness minus ``shrink_mm``.
    """

    def __init__(self, knots_s_mm: Floats, *, centre_l_mm: Floats,
                 centre_p_mm: Floats, semi_l_mm: Floats,
                 semi_p_mm: Floats, angle_from_deg: Floats,
                 angle_to_deg: Floats, thickness_from_mm: Floats,
                 thickness_mid_mm: Floats, thickness_to_mm: Floats,
                 shrink_mm: float = 0.0) -> None:
        self.k = np.asarray(knots_s_mm, float)
        self.par = {n: np.asarray(v, float) for n, v in (
            ("cl", centre_l_mm), ("cp", centre_p_mm), ("al", semi_l_mm), ("ap", semi_p_mm),
            ("a0", np.radians(angle_from_deg)), ("a1", np.radians(angle_to_deg)),
            ("t0", thickness_from_mm), ("tm", thickness_mid_mm), ("t1", thickness_to_mm))}
        self.shrink = float(shrink_mm)
        # tight box: the arc sampled densely along S and along its angle, ± half thickness
        zs = np.linspace(float(self.k.min()), float(self.k.max()), 33)
        pr = {n: np.interp(zs, self.k, v)[:, None] for n, v in self.par.items()}
        t = np.linspace(0.0, 1.0, 129)[None, :]
        ang = pr["a0"] + t * (pr["a1"] - pr["a0"])
        px = pr["cl"] + pr["al"] * np.cos(ang)
        py = pr["cp"] + pr["ap"] * np.sin(ang)
        half = float(np.max(np.maximum(np.maximum(self.par["t0"], self.par["t1"]),
                                       self.par["tm"]))) / 2 + 1.0
        self._half_max = half
        self.lo = np.array([float(px.min()) - half, float(py.min()) - half, float(self.k.min())])
        self.hi = np.array([float(px.max()) + half, float(py.max()) + half, float(self.k.max())])

    def inside(self, x: F32, y: F32, z: F32) -> Bool:
        """See `Shape.inside`."""
        p = {n: _interp(z, self.k, v) for n, v in self.par.items()}
        dx, dy = x - p["cl"], y - p["cp"]
        rho2 = (dx / p["al"]) ** 2 + (dy / p["ap"]) ** 2
        # cheap pre-selection: the band lies within ±(max half thickness) of the ellipse
        reach = np.float32(self._half_max + 1.0) / np.minimum(p["al"], p["ap"])
        near = (rho2 >= (1.0 - reach) ** 2) & (rho2 <= (1.0 + reach) ** 2)
        out = np.zeros(near.shape, dtype=bool)
        if not near.any():
            return out
        shape = near.shape
        sel = {n: np.broadcast_to(v, shape)[near] for n, v in p.items()}
        ddx = np.broadcast_to(dx, shape)[near]
        ddy = np.broadcast_to(dy, shape)[near]
        ang = np.arctan2(ddy * sel["al"], ddx * sel["ap"])  # elliptic angle
        a0, a1 = sel["a0"], sel["a1"]
        rel = np.mod(ang - a0 + np.float32(math.pi), np.float32(2 * math.pi)) - np.float32(math.pi)
        t = rel / (a1 - a0)
        rho = np.sqrt(np.broadcast_to(rho2, shape)[near])
        dist = np.sqrt(ddx * ddx + ddy * ddy) * (1.0 - 1.0 / np.maximum(rho, np.float32(1e-6)))
        tc = np.clip(t, 0.0, 1.0)
        thick = (sel["t0"] * (1 - tc) * (1 - 2 * tc) + sel["tm"] * 4 * tc * (1 - tc)
                 + sel["t1"] * tc * (2 * tc - 1))
        half = thick * 0.5 - np.float32(self.shrink)
        out[near] = (t >= 0.0) & (t <= 1.0) & (np.abs(dist) <= half)
        return out


class Clipped(Shape):
    """A shape cut by half-spaces: inside the shape and ``n·(p − p0) ≤ offset`` for each plane.

    Parameters
    ----------
    shape : Shape
    planes : sequence of (normal, point, offset_mm)
    """

    def __init__(self, shape: Shape,
                 planes: Sequence[tuple[Floats, Floats, float]]) -> None:
        self.shape = shape
        self.planes = [(np.asarray(n, float) / np.linalg.norm(n), np.asarray(q, float), float(o))
                       for n, q, o in planes]
        self.lo, self.hi = shape.lo, shape.hi

    def inside(self, x: F32, y: F32, z: F32) -> Bool:
        """See `Shape.inside`."""
        m = self.shape.inside(x, y, z)
        for n, q, off in self.planes:
            d = (_lin(np.float32(n[0]), x - np.float32(q[0]), np.float32(n[1]),
                      y - np.float32(q[1]), np.float32(n[2]), z - np.float32(q[2])))
            m = m & (d <= np.float32(off))
        return m


# ------------------------------------------------------------------------------ paint
@dataclass(frozen=True)
class Paint:
    """One painting step: label ``label`` wherever ``shape`` holds.

    Parameters
    ----------
    shape : Shape
    label : int
    only_over : frozenset of int or None
        When given, only voxels currently holding one of these labels change.
    not_over : frozenset of int or None
        When given, voxels currently holding one of these labels keep them.
    fine : bool
        True for bone (rendered on the fine slice-profile grid), False for soft tissue
        (rendered once per output slice).
    """

    shape: Shape
    label: int
    only_over: frozenset[int] | None = None
    fine: bool = True
    not_over: frozenset[int] | None = None


def paint(labels: NDArray[np.uint16], raster: Raster, step: Paint,
          *, lut_size: int = 0) -> int:
    """Apply one `Paint` to ``labels`` (a block shaped like ``raster``); returns voxels changed."""
    sl = raster.box(step.shape.lo, step.shape.hi)
    if sl is None:
        return 0
    x, y, z = raster.xyz(sl)
    mask = step.shape.inside(x, y, z)
    if mask.shape != tuple(s.stop - s.start for s in sl):
        mask = np.broadcast_to(mask, tuple(s.stop - s.start for s in sl))
    block = labels[sl]
    if step.only_over is not None:
        allowed = np.zeros(max(lut_size, int(block.max()) + 1, max(step.only_over) + 1), bool)
        allowed[list(step.only_over)] = True
        mask = mask & allowed[block]
    if step.not_over is not None:
        kept = np.zeros(max(lut_size, int(block.max()) + 1, max(step.not_over) + 1), bool)
        kept[list(step.not_over)] = True
        mask = mask & ~kept[block]
    block[mask] = step.label
    return int(np.count_nonzero(mask))
