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

With ``match_variance`` the likelihood is that of the variance-matched law,
the KDE mapped about the origin (the data mean) by the A of
:mod:`._matching` that gives it Z's covariance:

    log p(z) = log KDE_h(A^(-1) z) - log |det A|.

Its queries move with h, so the halving ladder cannot serve it: the plain
optimum is found first, then the matched likelihood is evaluated on a finer
grid above it (one exact engine pass per value and split, against at most
20,000 patterns) and refined by the same spline.
"""

import numpy as np
from scipy.interpolate import CubicSpline

from ._matching import covariance_spectrum, matching_map
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
# The variance-matched search: steps of 2^(1/4) in h, from one step below the
# plain optimum to two above (the grid descends in log h, as the ladder's
# does), extended by 2 steps at a time while the best is on an edge, up to 14
# steps (11 times) above it.  Every value costs a full pass: a short first grid
# keeps the fit cheap where the optimum is near the plain one.
_FINE_STEP = 0.25 * np.log(2.0)
_MATCHED_SIZE = 4
_MATCHED_EXTENSION = 2
_MATCHED_MAX_EXTENSIONS = 6
# Patterns the held-out rows are scored against in the matched search
# (1000 x 20,000 pairs a value: 0.3 s in all at N = 1e5, d = 16).
_MATCHED_MAX_PATTERNS = 20_000


def _splits(n):
    """(held-out rows, pattern rows) pairs: 10 folds, or one 1000-row hold-out."""
    order = np.random.default_rng(0).permutation(n)  # fixed: the rule is deterministic
    if n <= _FOLD_MAX_PATTERNS:
        folds = np.array_split(order, min(_FOLDS, n))
        return [(f, np.setdiff1d(order, f)) for f in folds]
    return [(order[:_HELD_OUT], order[_HELD_OUT:])]


def heldout_bandwidth(Z, match_variance=False, spectrum=None):
    """The isotropic bandwidth maximising the held-out KDE log-likelihood of Z.

    Parameters
    ----------
    Z : ndarray of shape (n_samples, n_features)
        Patterns, in the coordinates where the kernel is isotropic (unit
        variance per feature, mean at the origin, for ``match_variance``).
    match_variance : bool, default=False
        Maximise the likelihood of the KDE mapped to Z's covariance about the
        origin (:func:`._matching.matching_map`) instead of the KDE's.
    spectrum : tuple or None, default=None
        Z's :func:`._matching.covariance_spectrum`, where the caller has it
        (a fit maps with the same one); computed here otherwise.

    Returns
    -------
    h : float
        In the units of Z; Scott's rule where fewer than 3 distinct rows exist.
    """
    Z = np.asarray(Z, dtype=np.float64)
    if match_variance and spectrum is None:
        spectrum = covariance_spectrum(Z)  # of every row, as fit's
    Z = np.unique(Z, axis=0)
    n, d = Z.shape
    scale = float(np.sqrt(np.mean(np.var(Z, axis=0)))) if n > 1 else 0.0
    scott = (scale if scale > 0 else 1.0) * max(n, 1) ** (-1.0 / (d + 4))
    if n < 3:
        return scott
    splits = _splits(n)
    parts = [(Z[held], PatternPosterior(Z[rest])) for held, rest in splits]
    n_patterns = np.mean([post.n_patterns for _, post in parts])

    def ladder(top, size):
        """-L at top, top - _STEP, ... (size values of log h), in one pass."""
        s2 = np.exp(2.0 * top)
        total = sum(post.halving_log_density(q, s2, size).sum(axis=0) for q, post in parts)
        return list(-total / n)

    log_h = _interior_minimum(ladder, np.log(scott * _GRID_TOP), _STEP, _GRID_SIZE)
    if match_variance:
        # The map moves mass inwards, so the matched optimum lies at or above
        # the plain one (1.0-2.6 times it on the benchmark's tables).
        parts, m = _matched_parts(Z, splits, parts, n_patterns)
        log_h += np.log(n_patterns / m) / (d + 4)
        n_patterns = m

        def matched(top, size):
            return [_matched_log_likelihood(parts, top - _FINE_STEP * k, spectrum)
                    for k in range(size)]

        log_h = _interior_minimum(matched, log_h + 2 * _FINE_STEP, _FINE_STEP, _MATCHED_SIZE,
                                  _MATCHED_EXTENSION, _MATCHED_MAX_EXTENSIONS)
    return float(np.exp(log_h) * (n_patterns / n) ** (1.0 / (d + 4)))


def _interior_minimum(evaluate, top, step, size, extension=_EXTENSION,
                      max_extensions=_MAX_EXTENSIONS):
    """log h minimising -L on a descending grid, extended while the best
    value sits on an edge, then refined by :func:`_spline_minimum`.

    ``evaluate(top, size)`` returns -L at top, top - step, ... (size values).
    """
    grid, values = list(top - step * np.arange(size)), evaluate(top, size)
    for _ in range(max_extensions):
        best = int(np.argmin(values))
        if 0 < best < len(grid) - 1:
            break
        top = grid[0] + step * extension if best == 0 else grid[-1] - step
        more, new = list(top - step * np.arange(extension)), evaluate(top, extension)
        grid, values = (more + grid, new + values) if best == 0 else (grid + more, values + new)
    return _spline_minimum(np.array(grid), np.array(values))


def _matched_parts(Z, splits, parts, n_patterns):
    """The splits of the matched search, and their mean pattern count.

    Beyond _MATCHED_MAX_PATTERNS patterns the held-out rows are scored
    against that many of the others (a random subset): every value of the
    matched search costs a full pass, and the rescaling to N that the plain
    rule relies on carries the optimum from there.
    """
    if n_patterns <= _MATCHED_MAX_PATTERNS:
        return parts, n_patterns
    held, rest = splits[0]  # the one 1000-row hold-out
    subset = rest[:_MATCHED_MAX_PATTERNS]
    return [(Z[held], PatternPosterior(Z[subset]))], len(subset)


def _matched_log_likelihood(parts, log_h, spectrum):
    """-L of the variance-matched KDE at one log h (mean over the held-out rows)."""
    h2 = float(np.exp(2.0 * log_h))
    unmap, log_det_unmap = matching_map(spectrum, h2, power=-1)
    total = sum(post.log_density(q @ unmap, h2).sum() for q, post in parts)
    return -(total / sum(len(q) for q, _ in parts) + log_det_unmap)


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
