"""The internal coordinates every estimator works in, and their log-Jacobian.

Each estimator maps the data to

    z = ((x - location_) / scale_) @ whitening_

before it stores the patterns, so that ``bandwidth`` (and every other length
parameter) means the same in all of them, in one of three systems
(``coordinates``):

* ``"standardized"``: per-feature z-scores (``scale_`` the per-feature
  standard deviations, ``whitening_`` the identity);
* ``"whitened"``: identity covariance (``whitening_`` the symmetric inverse
  square root of the correlation matrix of the z-scores);
* ``"isotropic"``: one scale for every feature, the root mean per-feature
  variance, so that the kernel stays isotropic in data units (features in
  one common unit, PCA scores say).

Densities are reported in data units: log p(x) = log p_Z(z) + log|det dz/dx|.
Means and spreads are computed without overflow at 1e300 or underflow at
1e-300 (:func:`data_location_scale`); the whitening is computed on the
standardised data, whose entries are of order one.
"""

import numpy as np

__all__ = ["COORDINATES", "covariance_to_data", "data_location_scale", "data_scale",
           "fit_coordinates", "log_jacobian", "offset_to_data", "to_data", "to_internal"]

COORDINATES = ("standardized", "whitened", "isotropic")
# Correlation eigenvalues below this fraction of the largest are directions
# without spread (constant or collinear features): they are left unstretched,
# as a constant feature keeps the scale 1.
_RANK_TOL = 1e-12


def _power_of_two_below(value):
    """2^(e-1) <= value < 2^e (1 for 0): dividing by it is exact, and finite
    even next to the largest float64."""
    return float(np.ldexp(1.0, int(np.frexp(value)[1]) - 1)) if value > 0 else 1.0


def data_location_scale(X, axis=None):
    """Mean and spread of X, free of overflow and underflow.

    The spread is sqrt(mean per-feature variance) (``axis=None``) or the
    per-feature standard deviation (``axis=0``).  Both are computed on X
    divided by powers of two that bring its magnitude and then its deviations
    near 1, so that data near 1e300 or 1e-300 get their true scale rather than
    an overflowed or underflowed variance, and data of ordinary size get
    exactly ``X.mean(0)`` and ``X.std(0)``.  A spread of zero is reported as 1.
    """
    X = np.asarray(X, dtype=np.float64)
    magnitude = _power_of_two_below(float(np.max(np.abs(X)))) if X.size else 1.0
    U = X / magnitude
    centre = U.mean(axis=0)
    spread = _power_of_two_below(float(np.max(np.abs(U - centre)))) if X.size else 1.0
    var = np.var(U / spread, axis=0)
    factor = magnitude * spread
    if axis == 0:
        scale = factor * np.sqrt(var)
        return magnitude * centre, np.where(scale > 0, scale, 1.0)
    scale = factor * float(np.sqrt(np.mean(var)))
    return magnitude * centre, scale if scale > 0 else 1.0


def data_scale(X):
    """sigma_bar = sqrt(mean per-feature variance); 1 for data without spread."""
    return data_location_scale(X)[1]


def fit_coordinates(X, kind):
    """``(location, scale, whitening)`` of the internal coordinates ``kind`` for X.

    Returns
    -------
    location : ndarray of shape (n_features,)
    scale : ndarray of shape (n_features,)
        Per-feature standard deviations, or the root mean variance repeated
        for ``"isotropic"``.
    whitening : ndarray of shape (n_features, n_features)
        The identity, or for ``"whitened"`` the symmetric W with W C W = I on
        the spread directions of the correlation matrix C.
    """
    d = X.shape[1]
    if kind == "isotropic":
        location, spread = data_location_scale(X)
        return location, np.full(d, spread), np.eye(d)
    location, scale = data_location_scale(X, axis=0)
    if kind == "standardized" or X.shape[0] < 2:
        return location, scale, np.eye(d)
    U = (X - location) / scale
    C = U.T @ U / U.shape[0]
    lam, V = np.linalg.eigh((C + C.T) / 2.0)
    spread = lam > _RANK_TOL * max(float(lam[-1]), 0.0)
    factor = np.where(spread, 1.0 / np.sqrt(np.where(spread, lam, 1.0)), 1.0)
    return location, scale, (V * factor) @ V.T


def to_internal(X, location, scale, whitening):
    """z = ((x - location) / scale) @ whitening."""
    return ((X - location) / scale) @ whitening


def offset_to_data(V, scale, whitening):
    """An internal displacement v in data units: (v @ whitening^-1) * scale."""
    return np.linalg.solve(whitening, np.asarray(V).T).T * scale


def covariance_to_data(cov, scale, whitening):
    """An internal covariance in data units: M^T cov M, x - location = z M.

    inf where the data's variance overflows float64 (data near 1e155).
    """
    M = offset_to_data(np.eye(len(scale)), scale, whitening)
    with np.errstate(over="ignore"):
        return M.T @ cov @ M


def to_data(Z, location, scale, whitening):
    """x = location + (z @ whitening^-1) * scale, the inverse of :func:`to_internal`."""
    return location + offset_to_data(Z, scale, whitening)


def log_jacobian(scale, whitening):
    """log|det dz/dx| = log|det whitening| - sum log scale."""
    return float(np.linalg.slogdet(whitening)[1] - np.sum(np.log(scale)))
