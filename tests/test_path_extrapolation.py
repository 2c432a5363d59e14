"""PathExtrapolationDensity and the path-convergence diagnostic.

References: the paper's 1-D oracle numbers (arXiv 2606.12161, as restated in
docs/design.rst), a closed-form propagation of the Gaussian p = infinity path,
brute-force posteriors, chi-square / KS tests with stated false-alarm rates,
and quadrature of the density.
"""


import numpy as np
import pytest
from scipy import stats
from scipy.integrate import quad
import joblib
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KernelDensity

from sklearn_diffsample import PatternPosterior
from sklearn_diffsample.path_extrapolation import (
    PathExtrapolationDensity,
    _fit_paths,
    _integrate_dt,
    bridge_query,
    gaussian_bridge_posterior,
    path_convergence,
    path_direction,
)

from ._reference import brute_posterior, transport_map

FAST = dict(n_steps=20, n_splits=2, n_reference_samples=200, batch_size=64)


# ----------------------------------------------------------- the dt dynamics
def test_bridge_query_gives_the_path_weights():
    rng = np.random.default_rng(0)
    patterns = rng.normal(size=(40, 3))
    x_tau, x_beta = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    tau, beta = 0.3, 1.7
    q, s2 = bridge_query(x_tau, x_beta, tau, beta)
    # pi_nu ∝ exp(-|x_nu - x_tau|^2/(2 tau) + |x_nu - x_beta|^2/(2 beta)), directly.
    logits = (-np.sum((patterns[None] - x_tau[:, None]) ** 2, axis=2) / (2 * tau)
              + np.sum((patterns[None] - x_beta[:, None]) ** 2, axis=2) / (2 * beta))
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    got = PatternPosterior(patterns).query(q, s2, mean=True).mean
    np.testing.assert_allclose(got, prob @ patterns, rtol=1e-11, atol=1e-12)
    # At tau = beta the weights are uniform.
    q, s2 = bridge_query(x_beta, x_beta, beta, beta)
    flat = PatternPosterior(patterns).query(q, s2, mean=True).mean
    np.testing.assert_allclose(flat, np.broadcast_to(patterns.mean(0), flat.shape),
                               rtol=1e-13, atol=1e-13)


def _gaussian_endpoint_law(variance_correction, beta=10.0, n_steps=100, sigma=5.0, order=1):
    """Exact mean and std of the p = infinity dt endpoint, through the code's steps.

    The step is affine in (x, noise) with a deterministic variance for a
    Gaussian target, so row 0 (no noise) gives the mean and row j (a unit
    impulse at step j only) the j-th column of the noise-to-endpoint map.
    """
    impulses = np.zeros((n_steps + 1, n_steps + 1, 1))
    impulses[np.arange(1, n_steps + 1), np.arange(1, n_steps + 1)] = 1.0
    x_beta = np.ones((n_steps + 1, 1))

    def denoise(x, tau):
        m, v = gaussian_bridge_posterior(x, x_beta, tau, beta, 0.0, sigma**2)
        return m, np.full(x.shape[:2], v)

    x0, _ = _integrate_dt(x_beta, denoise, lambda k: impulses[k], beta=beta,
                          n_steps=n_steps, n_paths=1,
                          variance_correction=variance_correction, order=order)
    x0 = x0[0, :, 0]
    return x0[0], np.sqrt(np.sum((x0[1:] - x0[0]) ** 2))


def test_gaussian_p_infinity_path_endpoint_law():
    mean, std = _gaussian_endpoint_law(False)
    assert abs(mean) < 1e-12
    assert std == pytest.approx(4.8978, abs=5e-5)
    mean, std = _gaussian_endpoint_law(True)
    assert abs(mean) < 1e-12
    assert std == pytest.approx(5.0, rel=1e-12)


def test_second_order_steps_converge_faster_on_the_gaussian_path():
    # The exact endpoint law of the p = infinity path is the target, N(0, 5^2).
    error = {(order, n): abs(_gaussian_endpoint_law(False, n_steps=n, order=order)[1] - 5.0)
             for order in (1, 2) for n in (50, 100, 200)}
    assert abs(_gaussian_endpoint_law(False, n_steps=50, order=2)[0]) < 1e-12
    # First order halves its error as the steps double; second order divides
    # it by almost three (measured 2.97 and 2.88).
    for n in (50, 100):
        assert 1.7 < error[1, n] / error[1, 2 * n] < 2.1
        assert error[2, n] / error[2, 2 * n] > 2.5
    # The default's 100 steps: a fifteenth of the first-order error (0.0067
    # against 0.102); 50 steps still under a quarter of it.
    assert error[2, 100] < 0.1 * error[1, 100]
    assert error[2, 50] < 0.25 * error[1, 100]


def test_variance_correction_keeps_first_order_steps():
    X = np.random.default_rng(0).normal(size=(30, 2))

    def fit(**params):
        return PathExtrapolationDensity(random_state=0, **FAST, **params).fit(X)

    corrected = fit(variance_correction=True)
    assert corrected.order_ == 1
    np.testing.assert_array_equal(corrected.endpoints_,
                                  fit(variance_correction=True, order=1).endpoints_)
    plain = fit()
    assert plain.order_ == 2
    # Same noise, other means: the second-order endpoints move, most of them
    # slightly (measured: median 0.024, a few switch patterns near the end).
    moved = np.linalg.norm(plain.endpoints_ - fit(order=1).endpoints_, axis=1)
    assert moved.max() > 0
    assert np.median(moved) < 0.1 * X.std()


# ------------------------------------------------------------ the 1-D oracle
@pytest.fixture(scope="module")
def small_p():
    # Bootstrap relative std of the scaled medians at 30000 realisations:
    # 0.7%; of the 50/100 median ratio: 0.011; of the p*MSD differences: 1.4.
    return path_convergence([10, 50, 100], 30000, random_state=11, n_jobs=2)


def test_oracle_scaled_median_is_flat_at_small_p(small_p):
    # Tolerances of 4% are >= 4.5 bootstrap standard errors (false alarm < 1e-5).
    med = small_p.scaled_median
    np.testing.assert_allclose(med[[0, 2], 0], 5.6, rtol=0.04)
    np.testing.assert_allclose(med[:, 1], 4.5, rtol=0.04)
    np.testing.assert_allclose(med[:, 2], 2.1, rtol=0.04)
    ratio = small_p.median[1, 0] / small_p.median[2, 0]
    assert ratio == pytest.approx(1.41, abs=0.03)  # 2.8 standard errors


def test_oracle_mean_square_keeps_growing(small_p):
    msd = small_p.scaled_msd[:, 0]
    # Differences 13 and 6.4 at 1.2 and 1.4 bootstrap std: > 4.5 sigma each.
    assert msd[0] < msd[1] < msd[2]
    assert 70 < msd[0] < 90 and msd[2] < 115


def test_oracle_scaled_median_at_p_1000():
    # 6000 realisations: bootstrap relative std 1.3%, truth ~5.6-5.63, so the
    # +-4% band holds at >= 2.8 standard errors.
    res = path_convergence([1000], 6000, taus=[0.0], random_state=12, n_jobs=2)
    assert res.scaled_median[0, 0] == pytest.approx(5.6, rel=0.04)


def test_path_convergence_arguments():
    with pytest.raises(ValueError, match="not on the grid"):
        path_convergence([10], 5, taus=[0.05])
    with pytest.raises(ValueError, match="p_values"):
        path_convergence([0, 10], 5)
    a = path_convergence([5, 20], 40, n_features=2, taus=[0.0, 10.0], random_state=3)
    b = path_convergence([5, 20], 40, n_features=2, taus=[0.0, 10.0], random_state=3,
                         batch_size=7, n_jobs=2)
    assert a.scaled_median.shape == (2, 2)
    np.testing.assert_array_equal(a.deviations[:, 1], 0.0)  # every path starts at x_beta
    # Chunking changes which realisations are drawn together, not their law;
    # the same chunking gives the same bits for any n_jobs.
    c = path_convergence([5, 20], 40, n_features=2, taus=[0.0, 10.0], random_state=3,
                         batch_size=7, n_jobs=1)
    np.testing.assert_array_equal(b.deviations, c.deviations)


# ------------------------------------------------------------------ exact
def test_tower_draw_samples_the_posterior():
    rng = np.random.default_rng(4)
    patterns = rng.normal(size=(25, 2))
    post = PatternPosterior(patterns, algorithm="brute")
    q = np.repeat(rng.normal(size=(1, 2)), 20000, axis=0)
    logits = -np.sum((patterns - q[0]) ** 2, axis=1) / (2 * 0.8)
    prob = np.exp(logits - logits.max())
    prob /= prob.sum()
    # n_near = 3 sends most of the mass through the rejection branch.
    nu = post.draw(q, 0.8, np.random.default_rng(5), n_near=3)
    counts = np.bincount(nu, minlength=25)
    # Rare patterns pooled so that every expected count is >= 5.
    keep = prob * len(nu) >= 5
    observed = np.append(counts[keep], counts[~keep].sum())
    expected = np.append(prob[keep], prob[~keep].sum()) * len(nu)
    observed, expected = observed[expected > 0], expected[expected > 0]
    assert stats.chisquare(observed, expected).pvalue > 1e-4  # false alarm 1e-4


def test_exact_endpoints_are_training_rows_with_uniform_frequencies():
    X = np.random.default_rng(6).normal(size=(20, 2)) * [3.0, 0.1] + [5.0, -2.0]
    est = PathExtrapolationDensity(extrapolation="exact", n_steps=20, batch_size=500,
                                   random_state=0).fit(X)
    ends = est.sample_endpoints(4000, random_state=1)
    rows = {tuple(r) for r in X}
    assert all(tuple(r) in rows for r in ends)  # bit-equal
    index = {tuple(r): i for i, r in enumerate(X)}
    counts = np.bincount([index[tuple(r)] for r in ends], minlength=20)
    assert stats.chisquare(counts).pvalue > 1e-4  # uniform; false alarm 1e-4


@pytest.mark.parametrize("extrapolation", ["none", "halves"])
def test_dt_and_halves_do_not_copy(extrapolation):
    # The paper's 1-D setting: N(0, 25), 100 patterns, default beta and steps.
    # (The raw dt path can copy isolated patterns when they are sparse
    # relative to sqrt(dtau): see the class Notes.)
    X = np.random.default_rng(0).normal(size=(100, 1)) * 5.0
    est = PathExtrapolationDensity(extrapolation=extrapolation, n_splits=4,
                                   n_reference_samples=10, random_state=0).fit(X)
    ends = est.sample_endpoints(1000, random_state=2)
    nearest = np.min(np.abs(ends - X.T), axis=1)
    assert np.mean(nearest < 1e-9) < 0.01


def test_extrapolation_rules_are_the_stated_combinations():
    X = np.random.default_rng(8).normal(size=(30, 1))
    kw = dict(FAST, random_state=0)
    a = PathExtrapolationDensity(extrapolation_coef=0.4, **kw).fit(X)
    b = PathExtrapolationDensity(extrapolation_coef=1.0, **kw).fit(X)
    c = PathExtrapolationDensity(extrapolation_coef=0.0, **kw).fit(X)
    r = PathExtrapolationDensity(extrapolation="richardson", **kw).fit(X)
    xa, xb, xc, xr = (e.sample_endpoints(50, random_state=3) for e in (a, b, c, r))
    # Same seed: same full and half paths, so x(c) = x_full + c (half - x_full).
    np.testing.assert_allclose(xa, xc + 0.4 * (xb - xc), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(xr, xc - (xb - xc) / (np.sqrt(2) - 1), rtol=1e-10,
                               atol=1e-10)


# --------------------------------------------------------------- density
def test_density_integrates_to_one_in_1d():
    X = np.random.default_rng(9).gamma(2.0, size=(40, 1)) * 10 + 100
    est = PathExtrapolationDensity(bandwidth=0.3, random_state=0, **FAST).fit(X)

    def density(t):
        return np.exp(est.score_samples([[t]]))[0]

    lo, hi = est.endpoints_.min() - 20, est.endpoints_.max() + 20
    total, _ = quad(density, lo, hi, limit=400, points=np.linspace(lo, hi, 40))
    assert total == pytest.approx(1.0, abs=1e-6)


def test_density_integrates_to_one_in_2d():
    X = np.random.default_rng(10).normal(size=(40, 2)) * [2.0, 0.5]
    est = PathExtrapolationDensity(bandwidth=0.4, random_state=0, **FAST).fit(X)
    lo, hi = est.endpoints_.min(0) - 3 * est.scale_, est.endpoints_.max(0) + 3 * est.scale_
    gx, gy = np.linspace(lo[0], hi[0], 301), np.linspace(lo[1], hi[1], 301)
    grid = np.column_stack([a.ravel() for a in np.meshgrid(gx, gy)])
    dens = np.exp(est.score_samples(grid)).reshape(301, 301)
    total = np.trapezoid(np.trapezoid(dens, gx, axis=1), gy)
    assert total == pytest.approx(1.0, abs=1e-4)


def _law_map(est, X):
    """The variance-matching map of a fitted estimator, from its endpoints and
    X in z-scores: T S T = C, S the endpoints' second moment plus h^2 I."""
    z_end = (est.endpoints_ - est.location_) / est.scale_
    Z = (X - est.location_) / est.scale_
    S = z_end.T @ z_end / len(z_end) + est.bandwidth_**2 * np.eye(X.shape[1])
    return transport_map(S, Z.T @ Z / len(Z))


@pytest.mark.parametrize("match_variance", [True, False])
def test_score_is_the_kde_of_the_fit_endpoints(match_variance):
    X = np.random.default_rng(11).normal(size=(50, 2)) @ [[1.0, 1.5], [0.0, 4.0]]
    est = PathExtrapolationDensity(bandwidth=0.5, random_state=0,
                                   match_variance=match_variance, **FAST).fit(X)
    Y = np.random.default_rng(12).normal(size=(7, 2)) * 3
    # The law: the endpoints' KDE, mapped by T about the mean (z-scores).
    T = _law_map(est, X) if match_variance else np.eye(2)
    np.testing.assert_allclose(est.shrinkage_, T, rtol=0, atol=1e-12)
    z_end = (est.endpoints_ - est.location_) / est.scale_
    unmapped = ((Y - est.location_) / est.scale_) @ np.linalg.inv(T)
    log_norm, _, _ = brute_posterior(unmapped, z_end, 0.25)
    expected = (log_norm - np.log(len(z_end)) - np.log(2 * np.pi * 0.25)
                - np.sum(np.log(est.scale_)) - np.linalg.slogdet(T)[1])
    np.testing.assert_allclose(est.score_samples(Y), expected, rtol=1e-11)
    again = PathExtrapolationDensity(bandwidth=0.5, random_state=0,
                                     match_variance=match_variance, **FAST).fit(X)
    np.testing.assert_array_equal(again.endpoints_, est.endpoints_)  # deterministic
    assert np.all(np.isfinite(est.score_samples([[1e6, -1e6]])))


def test_sample_law_matches_the_scored_density():
    X = np.random.default_rng(13).normal(size=(40, 1))
    est = PathExtrapolationDensity(bandwidth=0.3, random_state=0,
                                   **dict(FAST, n_reference_samples=2000)).fit(X)
    drawn = est.sample(1500, random_state=4)[:, 0]
    rng = np.random.default_rng(5)
    kde = (est.endpoints_[rng.integers(0, 2000, 1500), 0]
           + 0.3 * est.scale_[0] * rng.standard_normal(1500))
    # Mapped about the mean by the variance-matching factor.
    kde = est.location_[0] + _law_map(est, X)[0, 0] * (kde - est.location_[0])
    assert stats.ks_2samp(drawn, kde).pvalue > 1e-3  # false alarm 1e-3


def test_labels_give_one_model_per_class():
    # Conditioning on a class is the estimator fitted on that class's rows
    # alone: the same endpoints, draws and scores.
    rng = np.random.default_rng(21)
    X = np.vstack([rng.normal(-3.0, 0.5, (40, 2)), rng.normal(3.0, 0.8, (30, 2))])
    y = np.repeat(["a", "b"], [40, 30])
    est = PathExtrapolationDensity(random_state=0, **FAST).fit(X, y)
    assert est.classes_.tolist() == ["a", "b"]
    for k, label in enumerate(("a", "b")):
        alone = PathExtrapolationDensity(random_state=0, **FAST).fit(X[y == label])
        np.testing.assert_array_equal(est.class_models_[k].endpoints_, alone.endpoints_)
        Q = rng.normal(size=(5, 2)) * 3
        np.testing.assert_allclose(est.score_samples(Q, y=label), alone.score_samples(Q),
                                   rtol=1e-12)
    labels = np.arange(20) % 2
    S = est.sample(20, 7, y=est.classes_[labels])
    for k in range(2):
        child = np.random.SeedSequence(7).spawn(k + 1)[k]
        np.testing.assert_array_equal(S[labels == k], est.class_models_[k].sample(10, child))
    # Every class-"b" draw lies on b's side, far from a's cluster.
    assert np.all(S[labels == 1].sum(axis=1) > 0)
    assert np.all(S[labels == 0].sum(axis=1) < 0)


def test_grid_search_over_bandwidth_and_coefficient():
    X = np.random.default_rng(14).normal(size=(45, 2))
    grid = [0.02, 0.6, 3.0]
    # Without variance matching, whose law tends to the fitted Gaussian as h
    # grows (on these Gaussian rows the largest h wins).
    search = GridSearchCV(
        PathExtrapolationDensity(random_state=0, match_variance=False,
                                 **dict(FAST, n_steps=10)),
        {"bandwidth": grid, "extrapolation_coef": [0.0, 0.4]}, cv=3,
    ).fit(X)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    # The reference: KernelDensity on the standardised data, same folds.
    Z = (X - X.mean(0)) / X.std(0)
    kde = GridSearchCV(KernelDensity(), {"bandwidth": grid}, cv=3).fit(Z)
    assert kde.best_params_["bandwidth"] == 0.6
    assert search.best_params_["bandwidth"] == kde.best_params_["bandwidth"]


def test_memory_draws_the_endpoints_once_per_training_set(tmp_path):
    X = np.random.default_rng(15).normal(size=(40, 2))
    memory = joblib.Memory(tmp_path, verbose=0)
    grid = [0.2, 0.5]
    plain = [PathExtrapolationDensity(bandwidth=h, random_state=0, **FAST).fit(X)
             for h in grid]
    cached = []
    for h in grid:
        est = PathExtrapolationDensity(bandwidth=h, memory=memory, random_state=0, **FAST)
        key = clone(est).set_params(bandwidth=1.0, memory=None)
        # The first bandwidth draws the endpoints; the second finds them stored.
        assert memory.cache(_fit_paths).check_call_in_cache(key, X) == (h != grid[0])
        cached.append(est.fit(X))
    for est, ref in zip(cached, plain):
        assert est.bandwidth_ == ref.bandwidth_
        np.testing.assert_array_equal(est.endpoints_, ref.endpoints_)
        np.testing.assert_allclose(est.score_samples(X), ref.score_samples(X), rtol=1e-12)
        np.testing.assert_array_equal(est.sample(5, random_state=1),
                                      ref.sample(5, random_state=1))
    # Other data are another key; a directory name works as the memory too,
    # and the cache location may change after fit.
    other = PathExtrapolationDensity(memory=str(tmp_path), random_state=0, **FAST).fit(X[:30])
    assert other.endpoints_.shape == plain[0].endpoints_.shape
    other.set_params(memory=None).score_samples(X)
    search = GridSearchCV(PathExtrapolationDensity(memory=memory, random_state=0, **FAST),
                          {"bandwidth": grid}, cv=3).fit(X)
    reference = GridSearchCV(PathExtrapolationDensity(random_state=0, **FAST),
                             {"bandwidth": grid}, cv=3).fit(X)
    np.testing.assert_allclose(search.cv_results_["mean_test_score"],
                               reference.cv_results_["mean_test_score"], rtol=1e-12)


# ------------------------------------------------------- scikit-learn contract


def test_bad_input_gets_clear_errors():
    X = np.random.default_rng(17).normal(size=(10, 2))
    with pytest.raises(ValueError, match="reference scale"):
        PathExtrapolationDensity(reference=(0.0, -1.0), **FAST).fit(X)
    with pytest.raises(ValueError, match="pair"):
        PathExtrapolationDensity(reference=(0.0, 1.0, 2.0), **FAST).fit(X)
    est = PathExtrapolationDensity(**FAST).fit(X)
    assert est.sample(0).shape == (0, 2)
    assert est.sample_endpoints(0).shape == (0, 2)
    with pytest.raises(ValueError, match="n_samples"):
        est.sample_endpoints(-1)


# ------------------------------------------------------ the direction test
@pytest.fixture(scope="module")
def direction_p10():
    # The paper's 1-D setting (N(0, 25), beta = 10, dtau = 0.1, x_beta = 1).
    return path_direction(10, 1000, n_steps=100, random_state=0)


def test_half_paths_point_towards_the_infinite_path(direction_p10):
    # Measured 0.606 over 2000 realisations; the standard error of a share at
    # 1000 is 0.016, so 0.55 is a false alarm at more than 3 standard errors.
    assert direction_p10.positive_share > 0.55
    assert 0.0 < direction_p10.best_coef < 1.0
    assert direction_p10.error_ratio < 1.0


def test_two_splits_keep_the_extrapolation_gain():
    # The estimator's default n_splits = 2 in the paper's 1-D setting: the
    # extrapolated endpoint (c = 0.4) against the plain full-set path.  Over
    # six seeds at 1000 realisations the ratio was 0.919 +- 0.022 (0.876 to
    # 0.940), so 1 is a false alarm at 3.7 standard deviations.
    defaults = PathExtrapolationDensity()
    res = path_direction(10, 1000, n_splits=defaults.n_splits, n_steps=100,
                         coef=defaults.extrapolation_coef, random_state=0)
    assert res.endpoint_error_ratio < 1.0


def test_direction_test_identities(direction_p10):
    # At tau = 0 the endpoint is the extrapolated state itself: with the best
    # coefficient the endpoint error ratio is the error ratio; with c = 0 it is 1.
    same = path_direction(10, 1000, n_steps=100, coef=direction_p10.best_coef,
                          random_state=0)
    assert same.endpoint_error_ratio == pytest.approx(direction_p10.error_ratio, rel=1e-12)
    none = path_direction(10, 200, n_steps=20, tau=1.0, coef=0.0, random_state=1)
    assert none.endpoint_error_ratio == pytest.approx(1.0, rel=1e-12)
    with pytest.raises(ValueError, match="even"):
        path_direction(7)


def test_extrapolation_from_an_intermediate_time():
    X = np.random.default_rng(18).normal(size=(40, 2))
    kw = dict(n_steps=20, n_splits=2, n_reference_samples=100, random_state=0)
    at_end = PathExtrapolationDensity(**kw).fit(X).sample(50, 3)
    np.testing.assert_array_equal(PathExtrapolationDensity(tau_ex=0.0, **kw).fit(X).sample(50, 3),
                                  at_end)
    midway = PathExtrapolationDensity(tau_ex=0.2, **kw).fit(X).sample(50, 3)
    assert np.all(np.isfinite(midway)) and not np.allclose(midway, at_end)
    with pytest.raises(ValueError, match="tau_ex=0.013 is not on the grid"):
        PathExtrapolationDensity(tau_ex=0.013, **kw).fit(X)


def test_auto_reference_count_follows_the_training_size():
    # "auto" draws 4N endpoints within [500, 4000], never more than 20N.
    rng = np.random.default_rng(0)
    for n, expected in ((20, 400), (30, 500), (300, 1200), (600, 2400), (1100, 4000)):
        est = PathExtrapolationDensity(n_steps=2, n_splits=1, random_state=0)
        est.fit(rng.normal(size=(n, 2)))
        assert est.n_reference_samples_ == expected
        assert est.endpoints_.shape == (expected, 2)
