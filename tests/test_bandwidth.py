"""bandwidth="auto": the held-out-likelihood bandwidth, against brute force."""

import numpy as np
import pytest
from scipy.linalg import inv

from sklearn_diffsample import GuidedDiffusionSampler, MMSOLDSampler, PathExtrapolationDensity
from sklearn_diffsample import _bandwidth
from sklearn_diffsample._bandwidth import _spline_minimum, _splits, heldout_bandwidth

from ._reference import brute_kde_log_density, variance_matching_map


def _brute_heldout_loglik(Z, h):
    Z = np.unique(Z, axis=0)  # the rule merges duplicates, in np.unique's order
    return sum(brute_kde_log_density(Z[held], Z[rest], h).sum()
               for held, rest in _splits(len(Z))) / len(Z)


@pytest.mark.parametrize("n, d", [(300, 1), (240, 3), (150, 8)])
def test_the_rule_maximises_the_brute_force_heldout_likelihood(n, d):
    Z = np.random.default_rng(d).standard_t(5, size=(n, d))
    h = heldout_bandwidth(Z)
    # Undo the rescaling to the full pattern count, then compare with a
    # brute-force float64 likelihood on the same folds on a fine grid.
    m = np.mean([len(rest) for _, rest in _splits(n)])
    h_folds = h / (m / n) ** (1.0 / (d + 4))
    grid = h_folds * np.exp(np.linspace(-0.5, 0.5, 41))
    values = [_brute_heldout_loglik(Z, g) for g in grid]
    assert _brute_heldout_loglik(Z, h_folds) >= max(values) - 1e-9
    assert 0 < int(np.argmax(values)) < len(grid) - 1 or np.ptp(values) < 1e-9


def _brute_matched_loglik(Z, h):
    """Held-out likelihood of the variance-matched KDE: log KDE_h(A^-1 z) - log |det A|."""
    A = variance_matching_map(np.cov(Z.T, bias=True).reshape(Z.shape[1], -1), h * h)
    Z = np.unique(Z, axis=0)
    parts = _splits(len(Z))  # 10 folds, or one hold-out of 1000 rows beyond 2000
    return sum((brute_kde_log_density(Z[held] @ inv(A), Z[rest], h)
                - np.linalg.slogdet(A)[1]).sum()
               for held, rest in parts) / sum(len(held) for held, _ in parts)


@pytest.mark.parametrize("n, d", [(300, 1), (240, 3), (150, 8), (2500, 2)])
def test_the_matched_rule_maximises_the_matched_kdes_brute_force_likelihood(n, d):
    # Two clusters, standardised, their features correlated through the
    # clusters: the matched KDE's optimum is inside, and above the plain
    # KDE's (the map takes back the kernel's spread).
    rng = np.random.default_rng(d)
    Z = np.vstack([rng.normal(-2.0, 1.0, (n // 2, d)), rng.normal(2.0, 0.5, (n - n // 2, d))])
    Z = (Z - Z.mean(0)) / Z.std(0)
    h = heldout_bandwidth(Z, match_variance=True)
    m = np.mean([len(rest) for _, rest in _splits(n)])
    h_folds = h / (m / n) ** (1.0 / (d + 4))
    grid = h_folds * np.exp(np.linspace(-0.5, 0.5, 41))
    values = [_brute_matched_loglik(Z, g) for g in grid]
    assert _brute_matched_loglik(Z, h_folds) >= max(values) - 1e-9
    assert 0 < int(np.argmax(values)) < len(grid) - 1
    assert h > heldout_bandwidth(Z)


def test_the_matched_rule_scores_against_a_subset_of_many_patterns(monkeypatch):
    # Beyond the cap the held-out rows meet that many of the other patterns;
    # the optimum there is carried to N at the rate (m / N)^(1/(d+4)).
    monkeypatch.setattr(_bandwidth, "_MATCHED_MAX_PATTERNS", 600)
    rng = np.random.default_rng(4)
    n, d = 2400, 2
    Z = np.vstack([rng.normal(-2.0, 1.0, (n // 2, d)), rng.normal(2.0, 0.5, (n // 2, d))])
    Z = (Z - Z.mean(0)) / Z.std(0)
    h = heldout_bandwidth(Z, match_variance=True)
    Zu = np.unique(Z, axis=0)  # the rule's row order
    assert len(Zu) == n
    held, rest = _splits(n)[0]
    sub = rest[:600]

    def brute(g):
        A = variance_matching_map(np.cov(Z.T, bias=True), g * g)  # of all N rows
        return np.mean(brute_kde_log_density(Zu[held] @ inv(A), Zu[sub], g)
                       - np.linalg.slogdet(A)[1])

    h_sub = h / (600 / n) ** (1.0 / (d + 4))
    grid = h_sub * np.exp(np.linspace(-0.5, 0.5, 41))
    values = [brute(g) for g in grid]
    assert brute(h_sub) >= max(values) - 1e-9
    assert 0 < int(np.argmax(values)) < len(grid) - 1


def test_the_grid_refinement_finds_a_cubic_minimum_and_keeps_flat_grids():
    # Not-a-knot cubic splines reproduce a cubic exactly, so the refinement
    # must return its analytic minimum; on a flat or monotone grid it keeps
    # the best grid point.
    grid = np.log(1.3) - 0.5 * np.log(2.0) * np.arange(14)  # descending, as the rule's
    u0 = -1.234
    cubic = (grid - u0) ** 2 * (3.0 + 0.4 * (grid - u0))  # minimum at u0 (and a max far out)
    assert abs(_spline_minimum(grid, 50.0 * cubic - 7.0) - u0) < 1e-9
    assert _spline_minimum(grid, np.zeros(14)) == grid[0]
    assert _spline_minimum(grid, np.arange(14.0)) == grid[0]
    assert _spline_minimum(grid, -np.arange(14.0)) == grid[-1]


def test_the_rule_follows_the_data_scale_and_ignores_duplicates():
    Z = np.random.default_rng(0).normal(size=(200, 2))
    h = heldout_bandwidth(Z)
    np.testing.assert_allclose(heldout_bandwidth(Z * 1e-3), h * 1e-3, rtol=1e-6)
    np.testing.assert_allclose(heldout_bandwidth(np.vstack([Z, Z[:50]])), h, rtol=1e-12)


def test_auto_is_the_default_and_is_in_one_unit_for_every_estimator():
    X = np.random.default_rng(1).normal(size=(150, 2)) * [1.0, 10.0] + 5.0
    # Internal units: the rule on the per-feature z-scores, for all three
    # (for the variance-matched law where the samples are matched).
    Z = (X - X.mean(0)) / X.std(0)
    matched = heldout_bandwidth(Z, match_variance=True)
    for est in (GuidedDiffusionSampler(n_steps=3),
                MMSOLDSampler(smoothing=0.0, n_steps=2, batch_size=20)):
        np.testing.assert_allclose(est.fit(X).bandwidth_, matched, rtol=1e-9)
    expected = heldout_bandwidth(Z)
    for est in (GuidedDiffusionSampler(n_steps=3, match_variance=False),
                PathExtrapolationDensity(n_steps=3, n_splits=1, n_reference_samples=20),
                MMSOLDSampler(smoothing=0.0, n_steps=2, batch_size=20, match_variance=False)):
        np.testing.assert_allclose(est.fit(X).bandwidth_, expected, rtol=1e-9)
    # Whitened coordinates: the rule on the whitened data.
    C = np.cov(((X - X.mean(0)) / X.std(0)).T, bias=True)
    lam, V = np.linalg.eigh(C)
    W = (V / np.sqrt(lam)) @ V.T
    whitened = GuidedDiffusionSampler(n_steps=3, coordinates="whitened",
                                      match_variance=False).fit(X)
    np.testing.assert_allclose(whitened.bandwidth_,
                               heldout_bandwidth((X - X.mean(0)) / X.std(0) @ W), rtol=1e-9)
