"""Bandwidth selection by held-out likelihood, computed with the engine.

``bandwidth="auto"`` is the isotropic Gaussian bandwidth h that maximises the
held-out log-likelihood of the kernel density estimate of the patterns:

    L(h) = mean over held-out rows z of log (1/M) sum_j N(z; x_j, h^2 I),

the sum over the M patterns that do not hold z out.  Up to 2000 patterns this
is 10-fold (every row is scored once, against the other nine folds); beyond,
1000 rows are held out once and scored against the rest, so each evaluation
costs one exact engine pass over 1000 queries.  L is maximised over log h on a
grid around Scott's rule, all of it in one pass (the cost of about 3
evaluations, see PatternPosterior.halving_log_density), refined at no further
cost to the maximum of a cubic spline through the grid values around the best
(within 0.0025 in log h and 1e-4 nats of a converged search on 13 tables, see
docs/design.rst), and h is rescaled by
((M / N)^(1/(d + 4))) to the full pattern count, the rate at which a
likelihood-optimal bandwidth shrinks with N.
Exact duplicate rows are merged first: they would reward h -> 0.
"""

import numpy as np
from scipy.interpolate import CubicSpline

from ._posterior import PatternPosterior

__all__ = ["heldout_bandwidth"]

_FOLDS = 10
_FOLD_MAX_PATTERNS = 2000
_HELD_OUT = 1000
# Grid in units of Scott's rule n^(-1/(d+4)) sigma_bar: from 3 down to 1/30 in
# steps of sqrt(2) (each kernel variance half the one before, so that one
# exponential per pair serves the grid: PatternPosterior.halving_log_density),
# extended by 4 steps while the best value sits on an edge.
_STEP = 0.5 * np.log(2.0)
_GRID_TOP = 3.0
_GRID_SIZE = 14
_EXTENSION = 4
_MAX_EXTENSIONS = 3
# The spline sees the best grid value and 3 on each side: far from the optimum
# L falls like -1/h^2, and such values would bend the spline near it.
_SPLINE_HALF_WIDTH = 3


def _splits(n):
    """(held-out rows, pattern rows) pairs: 10 folds, or one 1000-row hold-out."""
    order = np.random.default_rng(0).permutation(n)  # fixed: the rule is deterministic
    if n <= _FOLD_MAX_PATTERNS:
        folds = np.array_split(order, min(_FOLDS, n))
        return [(f, np.setdiff1d(order, f)) for f in folds]
    return [(order[:_HELD_OUT], order[_HELD_OUT:])]


def heldout_bandwidth(Z):
    """The isotropic bandwidth maximising the held-out KDE log-likelihood of Z.

    Parameters
    ----------
    Z : ndarray of shape (n_samples, n_features)
        Patterns, in the coordinates where the kernel is isotropic.

    Returns
    -------
    h : float
        In the units of Z; Scott's rule where fewer than 3 distinct rows exist.
    """
    Z = np.unique(np.asarray(Z, dtype=np.float64), axis=0)
    n, d = Z.shape
    scale = float(np.sqrt(np.mean(np.var(Z, axis=0)))) if n > 1 else 0.0
    scott = (scale if scale > 0 else 1.0) * max(n, 1) ** (-1.0 / (d + 4))
    if n < 3:
        return scott
    parts = [(Z[held], PatternPosterior(Z[rest])) for held, rest in _splits(n)]
    n_patterns = np.mean([post.n_patterns for _, post in parts])

    def ladder(top, size):
        """(log h, -L) at top, top - _STEP, ... (size values), in one pass."""
        s2 = np.exp(2.0 * top)
        total = sum(post.halving_log_density(q, s2, size).sum(axis=0) for q, post in parts)
        return list(top - _STEP * np.arange(size)), list(-total / n)

    grid, values = ladder(np.log(scott * _GRID_TOP), _GRID_SIZE)
    for _ in range(_MAX_EXTENSIONS):
        best = int(np.argmin(values))
        if 0 < best < len(grid) - 1:
            break
        if best == 0:
            more, new = ladder(grid[0] + _STEP * _EXTENSION, _EXTENSION)
            grid, values = more + grid, new + values
        else:
            more, new = ladder(grid[-1] - _STEP, _EXTENSION)
            grid, values = grid + more, values + new
    log_h = _spline_minimum(np.array(grid), np.array(values))
    return float(np.exp(log_h) * (n_patterns / n) ** (1.0 / (d + 4)))


def _spline_minimum(grid, values):
    """The log h minimising a cubic spline through -L around the best grid value.

    The grid descends in log h; the best value's neighbours bracket the
    minimum, which is the best grid point itself or a root of the spline's
    derivative between them.
    """
    best = int(np.argmin(values))
    window = slice(max(best - _SPLINE_HALF_WIDTH, 0), best + _SPLINE_HALF_WIDTH + 1)
    spline = CubicSpline(grid[window][::-1], values[window][::-1])
    lo, hi = grid[min(best + 1, len(grid) - 1)], grid[max(best - 1, 0)]
    roots = spline.derivative().roots(extrapolate=False)
    candidates = [grid[best]] + [r for r in roots if np.isfinite(r) and lo <= r <= hi]
    return float(min(candidates, key=spline))
