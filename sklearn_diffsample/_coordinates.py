"""The internal coordinates every estimator works in, and their log-Jacobian.

Each estimator maps the data to

    z = ((x - location_) / scale_) @ whitening_

before it stores the patterns, so that ``bandwidth`` (and every other length
parameter) means the same in all of them: a multiple of the training data's
per-feature standard deviations (``coordinates="standardized"``,
``whitening_`` the identity), or of its principal standard deviations
(``coordinates="whitened"``, ``whitening_`` the symmetric inverse square root
of the correlation matrix, so that z has identity covariance).  Densities are
reported in data units: log p(x) = log p_Z(z) + log|det dz/dx|.

Location and scale come from :func:`._base.data_location_scale`, exact for
ordinary data and free of overflow at 1e300 or 1e-300; the whitening is
computed on the standardised data, whose entries are of order one.
"""

import numpy as np

__all__ = ["COORDINATES", "fit_coordinates", "log_jacobian", "offset_to_data", "to_data",
           "to_internal"]

COORDINATES = ("standardized", "whitened")
# Correlation eigenvalues below this fraction of the largest are directions
# without spread (constant or collinear features): they are left unstretched,
# as a constant feature keeps the scale 1.
_RANK_TOL = 1e-12


def fit_coordinates(X, kind, location, scale):
    """``whitening_`` of ``kind`` for X with its per-feature ``location`` and ``scale``.

    Returns
    -------
    whitening : ndarray of shape (n_features, n_features)
        The identity for "standardized"; for "whitened" the symmetric W with
        W C W = I on the spread directions of the correlation matrix C.
    """
    d = X.shape[1]
    if kind == "standardized" or X.shape[0] < 2:
        return np.eye(d)
    U = (X - location) / scale
    C = U.T @ U / U.shape[0]
    lam, V = np.linalg.eigh((C + C.T) / 2.0)
    spread = lam > _RANK_TOL * max(float(lam[-1]), 0.0)
    factor = np.where(spread, 1.0 / np.sqrt(np.where(spread, lam, 1.0)), 1.0)
    return (V * factor) @ V.T


def to_internal(X, location, scale, whitening):
    """z = ((x - location) / scale) @ whitening."""
    return ((X - location) / scale) @ whitening


def offset_to_data(V, scale, whitening):
    """An internal displacement v in data units: (v @ whitening^-1) * scale."""
    return np.linalg.solve(whitening, np.asarray(V).T).T * scale


def to_data(Z, location, scale, whitening):
    """x = location + (z @ whitening^-1) * scale, the inverse of :func:`to_internal`."""
    return location + offset_to_data(Z, scale, whitening)


def log_jacobian(scale, whitening):
    """log|det dz/dx| = log|det whitening| - sum log scale."""
    return float(np.linalg.slogdet(whitening)[1] - np.sum(np.log(scale)))
