"""WGS84 geodesy: earth-centred coordinates, exact geodesic distances and the bounds that prune searches.

The index finds candidates with Euclidean (chord) distances between
earth-centred, earth-fixed (ECEF) points on the WGS84 ellipsoid, then turns each
chord into the geodesic distance.

Short spans, exact in closed form
---------------------------------
Over short spans a geodesic is close to an arc of the ellipsoid's normal
curvature in the chord's direction, ``kappa``, so
``s = c + c**3 kappa**2 / 24 + 3 c**5 kappa**4 / 640`` (the arc length of a
circle of radius ``1/kappa`` with chord ``c``).  Against GeographicLib this is
within 2e-8 m up to 20 km and within 1e-4 m up to 100 km
(:func:`chord_error_bound_m`); longer spans are handed to GeographicLib itself
(through pyproj's ``Geod``), so every distance this module returns is within a
fraction of a millimetre of GeographicLib.

Which stores can be within a geodesic distance ``D``: a bound at any distance
------------------------------------------------------------------------------
A search must prove that the stores it did not look at are farther than the
ones it returns.  Two lower bounds on the geodesic ``s`` between ellipsoid
points ``P`` and ``Q`` (ECEF vectors, ``theta`` the angle between them) hold
everywhere, poles, antimeridian and antipodes included:

1. ``s >= |P - Q|``: a straight segment is the shortest path in space.
2. ``s >= b * theta``, with ``b`` the semi-minor axis.  Proof: every ellipsoid
   point ``X`` has ``|X| >= b``, because ``(x**2 + y**2) / a**2 + z**2 / b**2 = 1``
   and ``a >= b`` give ``|X|**2 / b**2 >= 1``.  The nearest-point map onto the
   closed ball of radius ``b`` is 1-Lipschitz (true of the projection onto any
   closed convex set) and sends ``X`` to ``b X / |X|``.  So it maps the geodesic
   from ``P`` to ``Q`` onto a curve on the sphere of radius ``b`` joining
   ``b P / |P|`` and ``b Q / |Q|``, no longer than the geodesic, and no curve
   on that sphere is shorter than the great-circle arc ``b * theta``.

Bound 1 is the tight one up to a few hundred kilometres but gives way with
distance (a geodesic of 5,000 km is about 130 km longer than its chord; an
antipodal one 7,400 km).  Bound 2 is never looser than ``(a - b) * theta``
(21.4 km per radian of arc, at most 67 km), whatever the distance.

Together they say which chords a store within ``D`` can have: ``s <= D`` gives
``|P - Q| <= D`` and ``theta <= D / b``.  With ``|P| = r_p`` and
``|Q| = r`` in ``[b, a]``, ``|P - Q|**2 = r_p**2 + r**2 - 2 r_p r cos(theta)``
grows with ``theta`` (up to ``pi``) and is convex in ``r``, so it is largest
at ``theta = min(D / b, pi)`` and ``r = a`` or ``r = b``.
:func:`chord_reach_m` returns that chord: every store within geodesic ``D`` of
``P`` lies within this chord of it, so a kd-tree over ECEF points can fetch
them all, and a store beyond it is proven farther than ``D``.

Ranking far candidates without GeographicLib
--------------------------------------------
Candidates farther than 100 km are ranked by the first-order (Andoyer-Lambert)
formula on the parametric sphere, :func:`andoyer_lambert_m`, a few dozen flops
per pair.  Its error is second order in the flattening.  Measured against
GeographicLib on twelve million pairs (uniform on the globe, near-antipodal,
along the equator and meridians, pole to pole and around the poles), it never
exceeded ``9.4e-7 * s * (1 + 1 / (1 + cos(sigma)))`` (``sigma`` the arc on the
parametric sphere); :func:`andoyer_error_bound_m` allows ``2e-6`` times that.
Only candidates whose bounds overlap the k-th place are measured with
GeographicLib, and every distance returned is GeographicLib's.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from pyproj import Geod

from ._types import FloatArray, IntArray
from ._validate import as_latlon

__all__ = [
    "WGS84_A_M",
    "WGS84_B_M",
    "WGS84_F",
    "geodesic_distance_m",
    "latlon_to_ecef_m",
]

#: Semi-major axis of the WGS84 ellipsoid, metres.
WGS84_A_M = 6378137.0
#: Flattening of the WGS84 ellipsoid.
WGS84_F = 1.0 / 298.257223563
#: Semi-minor axis of the WGS84 ellipsoid, metres.
WGS84_B_M = WGS84_A_M * (1.0 - WGS84_F)
_E2 = WGS84_F * (2.0 - WGS84_F)
_INV_A2 = 1.0 / WGS84_A_M**2
_INV_A4 = _INV_A2**2
_INV_B2 = 1.0 / WGS84_B_M**2
_INV_B4 = _INV_B2**2
_D_INV2 = _INV_B2 - _INV_A2

#: A chord may exceed its geodesic by floating-point rounding (seen: 4.2e-9 m);
#: pruning with chords as lower bounds subtracts this slack first.
CHORD_SLACK_M = 1e-8
#: Chords up to this length are converted in closed form; longer ones by GeographicLib.
CHORD_SERIES_MAX_M = 100_000.0
_GEOD = Geod(ellps="WGS84")


def latlon_to_ecef_m(lat: Any, lon: Any) -> FloatArray:
    """Convert WGS84 latitude/longitude (degrees) to earth-centred x, y, z in metres.

    Parameters
    ----------
    lat, lon : float or array_like of shape (n,)
        Geodetic latitude in [-90, 90] and longitude in [-180, 180], degrees.

    Returns
    -------
    ndarray of shape (3,) for scalars, (n, 3) for arrays
        Points on the ellipsoid surface (height 0), metres.

    Raises
    ------
    InvalidCoordinateError
        A coordinate is out of range, NaN or infinite.

    Examples
    --------
    >>> import o2o_geo as og
    >>> print(og.latlon_to_ecef_m(0.0, 0.0).round(1))
    [6378137.       0.       0.]
    >>> print(og.latlon_to_ecef_m(90.0, 0.0).round(1)[2])
    6356752.3
    """
    lat_a, lon_a, is_scalar = as_latlon(lat, lon)
    out = ecef_m(lat_a, lon_a)
    return out[0] if is_scalar else out


def ecef_m(lat: FloatArray, lon: FloatArray) -> FloatArray:
    """Unchecked ECEF conversion of 1-D arrays; returns (n, 3)."""
    phi = np.radians(lat)
    lam = np.radians(lon)
    sphi = np.sin(phi)
    cphi = np.cos(phi)
    n_m = WGS84_A_M / np.sqrt(1.0 - _E2 * sphi * sphi)
    out = np.empty((lat.shape[0], 3), dtype=np.float64)
    out[:, 0] = n_m * cphi * np.cos(lam)
    out[:, 1] = n_m * cphi * np.sin(lam)
    out[:, 2] = n_m * (1.0 - _E2) * sphi
    return out


def normal_norm(xyz: FloatArray) -> FloatArray:
    """``|grad F| / 2`` of the ellipsoid equation at each point (one per row)."""
    return np.sqrt((xyz[:, 0] ** 2 + xyz[:, 1] ** 2) * _INV_A4 + xyz[:, 2] ** 2 * _INV_B4)


def ecef_scalar_m(lat: float, lon: float) -> tuple[float, float, float, float]:
    """ECEF x, y, z and the normal norm of one point, in plain floats."""
    phi = math.radians(lat)
    lam = math.radians(lon)
    sphi = math.sin(phi)
    cphi = math.cos(phi)
    n_m = WGS84_A_M / math.sqrt(1.0 - _E2 * sphi * sphi)
    x = n_m * cphi * math.cos(lam)
    y = n_m * cphi * math.sin(lam)
    z = n_m * (1.0 - _E2) * sphi
    return x, y, z, math.sqrt((x * x + y * y) * _INV_A4 + z * z * _INV_B4)


class GeoPoints:
    """Points on the ellipsoid and what the distance kernels need of them, computed once.

    ``lat``, ``lon``, ``z`` (ECEF z), ``gn`` (:func:`normal_norm`) and ``r``
    (distance from the centre) have shape (n,); ``xyz`` (ECEF) and ``u``
    (:func:`parametric_unit`, computed on first use: only far pairs need it)
    shape (n, 3).  Query batches and an index's stores are both held this way,
    so every kernel below reads the two sides alike.
    """

    __slots__ = ("lat", "lon", "xyz", "z", "gn", "r", "_u")

    def __init__(self, lat: FloatArray, lon: FloatArray) -> None:
        self.lat, self.lon = lat, lon
        self.xyz = ecef_m(lat, lon)
        self.z = self.xyz[:, 2].copy()
        self.gn = normal_norm(self.xyz)
        self.r = np.sqrt(np.einsum("ij,ij->i", self.xyz, self.xyz))
        self._u: FloatArray | None = None

    def __len__(self) -> int:
        return int(self.lat.shape[0])

    @property
    def u(self) -> FloatArray:
        if self._u is None:
            self._u = parametric_unit(self.lat, self.lon)
        return self._u

    def concat(self, other: GeoPoints) -> GeoPoints:
        """These points followed by ``other``'s (nothing recomputed)."""
        out = GeoPoints.__new__(GeoPoints)
        for name in ("lat", "lon", "xyz", "z", "gn", "r"):
            setattr(out, name, np.concatenate([getattr(self, name), getattr(other, name)]))
        out._u = None if self._u is None or other._u is None else np.concatenate([self._u, other._u])
        return out


class RoughEntries(NamedTuple):
    """The entries of a candidate block estimated by Andoyer-Lambert (chord over :data:`CHORD_SERIES_MAX_M`)."""

    row: IntArray
    col: IntArray
    err_m: FloatArray


class BlockDistances(NamedTuple):
    """Distance estimates of an (r, m) candidate block: :func:`block_distance_m`."""

    dist_m: FloatArray
    #: One bound per row for its closed-form entries (the bound at the row's longest such chord).
    err_m: FloatArray
    rough: RoughEntries | None


def norm3(d: FloatArray) -> FloatArray:
    """Row norms of an (m, 3) array, summed in the order cKDTree sums them (so chords agree to the bit)."""
    x, y, z = d[:, 0], d[:, 1], d[:, 2]
    return np.sqrt((x * x + y * y) + z * z)


def series_m(
    q: GeoPoints, qi: IntArray, p: GeoPoints, pi: IntArray, chord_m: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Closed-form geodesic lengths of (``q[qi]``, ``p[pi]``) chords up to :data:`CHORD_SERIES_MAX_M`, and bounds."""
    dist = chord_to_geodesic_m(chord_m, p.z[pi] - q.z[qi], 0.5 * (q.gn[qi] + p.gn[pi]))
    return dist, np.asarray(chord_error_bound_m(chord_m), dtype=np.float64)


def pair_distance_m(
    q: GeoPoints, qi: IntArray, p: GeoPoints, pi: IntArray, chord_m: FloatArray
) -> tuple[FloatArray, FloatArray, np.ndarray]:
    """Distance estimates of (``q[qi]``, ``p[pi]``) pairs given as flat arrays.

    Returns the distance, its error bound and a mask of the rough pairs:
    chords up to :data:`CHORD_SERIES_MAX_M` are converted in closed form
    (error below 1e-6 m), longer ones are Andoyer-Lambert estimates whose
    bound is metres; the caller measures those with GeographicLib
    (:func:`measure_m`) where the bound matters.
    """
    rough = chord_m > CHORD_SERIES_MAX_M
    n_rough = int(np.count_nonzero(rough))
    if n_rough == rough.shape[0]:
        dist, err = andoyer_lambert_m(q.u[qi], p.u[pi])
        return dist, err, rough
    if n_rough:
        short = ~rough
        dist = np.empty(chord_m.shape[0])
        err = np.empty(chord_m.shape[0])
        dist[short], err[short] = series_m(q, qi[short], p, pi[short], chord_m[short])
        dist[rough], err[rough] = andoyer_lambert_m(q.u[qi[rough]], p.u[pi[rough]])
        return dist, err, rough
    dist, err = series_m(q, qi, p, pi, chord_m)
    return dist, err, rough


def block_distance_m(c: FloatArray, s: IntArray, rows: IntArray, q: GeoPoints, p: GeoPoints) -> BlockDistances:
    """Distance estimates of an (r, m) block: query ``q[rows[i]]`` to point ``p[s[i, j]]`` at chord ``c[i, j]``.

    ``inf`` where ``s < 0``.  Entries with a chord over
    :data:`CHORD_SERIES_MAX_M` are Andoyer-Lambert estimates, returned as
    :class:`RoughEntries` with their own bounds (``None`` when there are none).
    """
    valid_all = bool((s >= 0).all())
    sv = s if valid_all else np.maximum(s, 0)
    cv = c if valid_all else np.where(s >= 0, c, 0.0)
    dz = p.z[sv]
    dz -= q.z[rows][:, None]
    gnm = p.gn[sv]
    gnm += q.gn[rows][:, None]
    gnm *= 0.5
    dist = chord_to_geodesic_m(cv, dz, gnm)
    c_max = cv.max(axis=1) if cv.shape[1] else np.zeros(cv.shape[0])
    rough = None
    long_rows = np.flatnonzero(c_max > CHORD_SERIES_MAX_M)
    if long_rows.size:
        c_max[long_rows] = CHORD_SERIES_MAX_M  # their closed-form entries are shorter
        fr, fc = np.nonzero(cv[long_rows] > CHORD_SERIES_MAX_M)
        rr = long_rows[fr]
        est, e = andoyer_lambert_m(q.u[rows[rr]], p.u[sv[rr, fc]])
        dist[rr, fc] = est
        rough = RoughEntries(rr, fc, e)
    err = np.asarray(chord_error_bound_m(c_max), dtype=np.float64)
    if not valid_all:
        dist[s < 0] = np.inf
    return BlockDistances(dist, err, rough)


def measure_m(
    q: GeoPoints, qi: IntArray, p: GeoPoints, pi: IntArray, dist: FloatArray, err: FloatArray, which: np.ndarray
) -> None:
    """Replace the distances of the pairs in ``which`` by GeographicLib's (error bound 0), in place."""
    if which.any():
        dist[which] = geodesic_inverse_m(q.lat[qi[which]], q.lon[qi[which]], p.lat[pi[which]], p.lon[pi[which]])
        err[which] = 0.0


def chord_to_geodesic_m(chord_m: FloatArray, dz_m: FloatArray, gnorm_mean: FloatArray) -> FloatArray:
    """Geodesic length of short chords (valid up to :data:`CHORD_SERIES_MAX_M`).

    ``dz_m`` is the chord's z component and ``gnorm_mean`` the mean of the
    ellipsoid normal norms (:func:`normal_norm`) at the chord's two ends (the
    mean of the ends is more accurate than the norm at the chord's middle,
    which lies below the surface).  Zero chords give zero.  Arrays broadcast;
    ``dz_m`` and ``gnorm_mean`` must be fresh temporaries of the result's
    shape: they are overwritten (this is the index's hot path).
    """
    with np.errstate(over="ignore", invalid="ignore"):  # masked-out entries may overflow
        c2 = chord_m * chord_m
        kappa = np.multiply(dz_m, dz_m, out=dz_m)
        kappa /= c2 + 1e-300  # tz^2: squared z share of the chord direction
        kappa *= _D_INV2
        kappa += _INV_A2
        kappa /= gnorm_mean  # normal curvature along the chord, 1/m
        x = np.multiply(kappa, kappa, out=kappa)
        x *= c2  # (c kappa)^2
        poly = np.multiply(x, 3.0 / 640.0, out=gnorm_mean)
        poly += 1.0 / 24.0
        poly *= x
        poly += 1.0
        poly *= chord_m
    return poly


def chord_to_geodesic_scalar_m(chord_m: float, dz_m: float, gnorm_mean: float) -> float:
    """:func:`chord_to_geodesic_m` for one chord, in plain floats (the single-ping fast paths)."""
    tz2 = dz_m * dz_m / (chord_m * chord_m) if chord_m > 0.0 else 0.0
    kap = (_INV_A2 + tz2 * _D_INV2) / gnorm_mean
    t = chord_m * chord_m * kap * kap
    return chord_m * (1.0 + t * (1.0 / 24.0 + t * (3.0 / 640.0)))


def chord_error_bound_m(chord_m: FloatArray | float) -> FloatArray | float:
    """Upper bound of ``|chord_to_geodesic_m - GeographicLib|`` for a chord length.

    Measured against GeographicLib over two million random pairs at every
    latitude (poles included) the error stays under 5e-9 m up to 20 km and
    under 2e-7 m up to 100 km; the bound keeps a factor of at least 4 over
    that, with a floor of 2e-8 m for floating-point rounding.
    """
    return 2e-8 + 1e-31 * chord_m**5


def chord_reach_m(distance_m: FloatArray, radius_m: FloatArray) -> FloatArray:
    """Longest chord from a point at ``radius_m`` from the centre to any ellipsoid point within ``distance_m``.

    Every store within geodesic ``distance_m`` of a query point ``P`` (with
    ``|P| = radius_m``) lies within this chord of ``P`` (see the module
    docstring for the proof); a store farther by chord is farther than
    ``distance_m``.  Rounding is absorbed: the chord is widened by 1e-9 of
    itself and :data:`CHORD_SLACK_M`.  ``inf`` stays ``inf``.  Arrays broadcast.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        theta = np.minimum(np.asarray(distance_m, dtype=np.float64) / WGS84_B_M, math.pi)
        two_cos = 2.0 * np.cos(theta) * radius_m
        r2 = radius_m * radius_m
        reach2 = np.maximum(
            r2 + WGS84_A_M * (WGS84_A_M - two_cos),
            r2 + WGS84_B_M * (WGS84_B_M - two_cos),
        )
        reach = np.sqrt(np.maximum(reach2, 0.0))
        out = np.minimum(reach, distance_m) * (1.0 + 1e-9) + CHORD_SLACK_M
    return np.where(np.isinf(distance_m), np.inf, out)


def chord_reach_scalar_m(distance_m: float, radius_m: float) -> float:
    """:func:`chord_reach_m` for one point, in plain floats."""
    if distance_m == math.inf:
        return math.inf
    theta = min(distance_m / WGS84_B_M, math.pi)
    two_cos = 2.0 * math.cos(theta) * radius_m
    r2 = radius_m * radius_m
    reach2 = max(r2 + WGS84_A_M * (WGS84_A_M - two_cos), r2 + WGS84_B_M * (WGS84_B_M - two_cos), 0.0)
    return min(math.sqrt(reach2), distance_m) * (1.0 + 1e-9) + CHORD_SLACK_M


def parametric_unit(lat: FloatArray, lon: FloatArray) -> FloatArray:
    """Unit vectors of the points on the parametric (reduced-latitude) sphere, shape (n, 3)."""
    phi = np.radians(lat)
    beta = np.arctan2((1.0 - WGS84_F) * np.sin(phi), np.cos(phi))
    lam = np.radians(lon)
    cb = np.cos(beta)
    out = np.empty((lat.shape[0], 3), dtype=np.float64)
    out[:, 0] = cb * np.cos(lam)
    out[:, 1] = cb * np.sin(lam)
    out[:, 2] = np.sin(beta)
    return out


def andoyer_lambert_m(u1: FloatArray, u2: FloatArray) -> tuple[FloatArray, FloatArray]:
    """First-order geodesic distances and their error bounds for pairs of parametric unit vectors.

    ``u1`` and ``u2`` are (n, 3) rows of :func:`parametric_unit`.  Returns
    the Andoyer-Lambert distance (metres) and :func:`andoyer_error_bound_m`
    of each pair.  Meant for ranking candidates that are farther than 100 km;
    the distances it returns are not the ones the index reports.
    """
    d = u1 - u2
    c2 = np.einsum("ij,ij->i", d, d)
    sigma = 2.0 * np.arcsin(np.minimum(0.5 * np.sqrt(c2), 1.0))
    one_plus_cos = 2.0 - 0.5 * c2
    one_minus_cos = 0.5 * c2
    sin_s = np.sin(sigma)
    zs = u1[:, 2] + u2[:, 2]
    zd = u2[:, 2] - u1[:, 2]
    # at sigma = 0 (or pi) the numerators vanish with the denominators: a floor keeps 0 / 0 out
    one_plus_cos = np.maximum(one_plus_cos, 1e-300)
    x = (sigma - sin_s) * zs * zs / (2.0 * one_plus_cos)
    y = (sigma + sin_s) * zd * zd / (2.0 * np.maximum(one_minus_cos, 1e-300))
    est = WGS84_A_M * (sigma - 0.5 * WGS84_F * (x + y))
    return est, andoyer_error_bound_m(est, one_plus_cos)


def andoyer_error_bound_m(estimate_m: FloatArray, one_plus_cos_sigma: FloatArray) -> FloatArray:
    """Upper bound of ``|andoyer_lambert_m - GeographicLib|`` (see the module docstring for its measurement).

    ``one_plus_cos_sigma`` must be positive (:func:`andoyer_lambert_m` floors it).
    """
    return 2e-6 * np.abs(estimate_m) * (1.0 + 1.0 / one_plus_cos_sigma) + 1e-6


def geodesic_inverse_m(lat1: FloatArray, lon1: FloatArray, lat2: FloatArray, lon2: FloatArray) -> FloatArray:
    """GeographicLib's geodesic distance (metres) for unchecked 1-D arrays."""
    _, _, dist = _GEOD.inv(lon1, lat1, lon2, lat2)
    return np.asarray(dist, dtype=np.float64)


def geodesic_inverse_scalar_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """GeographicLib's geodesic distance (metres) between two unchecked points, in plain floats."""
    return float(_GEOD.inv(lon1, lat1, lon2, lat2)[2])


def geodesic_forward(lat: Any, lon: Any, azimuth_deg: Any, distance_m: Any) -> tuple[Any, Any]:
    """GeographicLib's direct problem: the points ``distance_m`` from (lat, lon) along ``azimuth_deg``.

    Unchecked 1-D arrays (or floats); returns (lat, lon) in degrees.
    """
    lon2, lat2, _ = _GEOD.fwd(lon, lat, azimuth_deg, distance_m)
    return lat2, lon2


def geodesic_inverse_az_m(
    lat1: FloatArray, lon1: FloatArray, lat2: FloatArray, lon2: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """GeographicLib's azimuth at point 1 (degrees clockwise from north) and distance (metres), unchecked 1-D arrays."""
    az, _, dist = _GEOD.inv(lon1, lat1, lon2, lat2)
    return np.asarray(az, dtype=np.float64), np.asarray(dist, dtype=np.float64)


def geodesic_distance_m(lat1: Any, lon1: Any, lat2: Any, lon2: Any) -> FloatArray | float:
    """Geodesic distance on the WGS84 ellipsoid, in metres.

    Within 1 mm of GeographicLib for every pair (in practice within 1e-4 m),
    at every latitude, across the antimeridian and at the poles.  Broadcasts
    like numpy: one point against many, or pairwise.

    Parameters
    ----------
    lat1, lon1 : float or array_like of shape (n,)
        First points, degrees.
    lat2, lon2 : float or array_like of shape (n,)
        Second points, degrees.

    Returns
    -------
    float or ndarray of shape (n,)
        Distances in metres; a float when every input is a scalar.

    Raises
    ------
    InvalidCoordinateError
        A coordinate is out of range, NaN or infinite.
    ShapeMismatchError
        The arrays cannot be paired.

    Examples
    --------
    >>> import o2o_geo as og
    >>> print(f"{og.geodesic_distance_m(0.0, 0.0, 0.0, 1.0):.3f}")
    111319.491
    >>> print(og.geodesic_distance_m(0.0, 179.9, 0.0, -179.9, ).__round__(3))
    22263.898
    """
    la1, lo1, s1 = as_latlon(lat1, lon1, what="first point's ")
    la2, lo2, s2 = as_latlon(lat2, lon2, what="second point's ")
    try:
        la1, lo1, la2, lo2 = np.broadcast_arrays(la1, lo1, la2, lo2)
    except ValueError as exc:
        from .errors import ShapeMismatchError

        raise ShapeMismatchError(f"cannot pair {la1.shape[0]} first points with {la2.shape[0]} second points") from exc
    out = _distance_m(la1, lo1, la2, lo2)
    return float(out[0]) if (s1 and s2) else out


def _distance_m(la1: FloatArray, lo1: FloatArray, la2: FloatArray, lo2: FloatArray) -> FloatArray:
    p = ecef_m(la1, lo1)
    q = ecef_m(la2, lo2)
    d = q - p
    chord = np.sqrt(np.einsum("ij,ij->i", d, d))
    out = chord_to_geodesic_m(chord, d[:, 2].copy(), 0.5 * (normal_norm(p) + normal_norm(q)))
    far = chord > CHORD_SERIES_MAX_M
    if far.any():
        out[far] = geodesic_inverse_m(la1[far], lo1[far], la2[far], lo2[far])
    return out
