"""GuidedDiffusionSampler against closed forms, brute force and its paper's claims."""

import warnings

import numpy as np
import pytest
from scipy.stats import multivariate_normal
from sklearn.datasets import load_iris
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.neighbors import KernelDensity, NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_diffsample._conditional import beyond_class_reach
from sklearn_diffsample.gaussian import grid_coefficients, plan_n_steps, sampler_covariance
from sklearn_diffsample.guided import GuidedDiffusionSampler

from sklearn_diffsample._likelihood import probability_flow_log_density

from ._reference import (
    brute_kde_log_density,
    matched_kde_log_density,
    standardized_kde_log_density,
    variance_matching_map,
    zscore_stats,
)


def _two_circles(n_per_class=200, seed=0):
    theta = np.random.default_rng(seed).uniform(0.0, 2.0 * np.pi, (2, n_per_class))
    X = np.vstack([np.c_[np.cos(theta[0]), np.sin(theta[0])],
                   2.0 * np.c_[np.cos(theta[1]), np.sin(theta[1])]])
    return X, np.repeat([0, 1], n_per_class)


@pytest.fixture(scope="module")
def circles():
    return _two_circles()


# --------------------------------------------------------- closed-form law
@pytest.mark.parametrize("match_variance", [False, True])
def test_closed_form_is_the_float64_kde(circles, match_variance):
    X, y = circles
    # Correlated features, so that the matched map is not a multiple of I;
    # internal coordinates must not show in the results.
    X = (X @ [[1.0, 0.0], [0.7, 1.0]]) * [1000.0, 300.0] + 50.0
    queries = np.vstack([X[::37] + 3.0, 1000.0 * np.random.default_rng(1).normal(size=(20, 2)),
                         [[1e5, -1e5]]])  # far tails included
    h, h0 = 0.4, 0.3  # in standard deviations of X
    est = GuidedDiffusionSampler(bandwidth=h, data_bandwidth=h0,
                                 match_variance=match_variance).fit(X, y)
    smooth = np.hypot(h, h0)
    # The matched law is the KDE mapped by A = C^(1/2) (C + s^2 I)^(-1/2) in
    # z-scores (C the correlation matrix): its density at q is the KDE's at
    # A^-1 q over |det A|, for the class laws too.
    C = np.corrcoef(X.T)
    A = variance_matching_map(C, smooth**2) if match_variance else np.eye(2)
    np.testing.assert_allclose(est.shrinkage_, A, rtol=0, atol=1e-12)
    if match_variance:  # the law keeps the data's covariance
        np.testing.assert_allclose(A @ (C + smooth**2 * np.eye(2)) @ A, C, rtol=0, atol=1e-12)
        assert abs(A[0, 1]) > 0.05
    law = matched_kde_log_density if match_variance else standardized_kde_log_density

    def kde(rows):
        return law(queries, rows, smooth, fitted_on=X)

    np.testing.assert_allclose(est.score_samples(queries), kde(X), rtol=1e-10)
    for c in (0, 1):
        np.testing.assert_allclose(est.score_samples(queries, y=c), kde(X[y == c]),
                                   rtol=1e-10)
    mixed = np.arange(len(queries)) % 2
    expected = np.where(mixed == 0, kde(X[y == 0]), kde(X[y == 1]))
    np.testing.assert_allclose(est.score_samples(queries, y=mixed), expected, rtol=1e-10)
    assert est.score(queries, y=mixed) == pytest.approx(expected.sum(), rel=1e-12)
    # Near the data, where KernelDensity is itself accurate, it agrees on the
    # z-scores, up to the log-Jacobian of standardising.
    mean, std = zscore_stats(X)
    near = X[::11] + 10.0
    theirs = KernelDensity(bandwidth=h).fit((X - mean) / std).score_samples((near - mean) / std)
    plain = GuidedDiffusionSampler(bandwidth=h, match_variance=False).fit(X)
    np.testing.assert_allclose(plain.score_samples(near), theirs - np.sum(np.log(std)),
                               rtol=1e-10)


def test_isotropic_coordinates_are_the_data_unit_kde(circles):
    # One common scale, the root mean variance: the law is KernelDensity's on
    # the raw data at bandwidth h times that scale.
    X, _ = circles
    X = [3.0, 0.5] * X + 7.0
    h, scale = 0.1, np.sqrt(np.mean(X.var(axis=0)))
    est = GuidedDiffusionSampler(bandwidth=h, coordinates="isotropic",
                                 match_variance=False).fit(X)
    np.testing.assert_allclose(est.scale_, scale, rtol=1e-12)
    near = X[::13] + 0.05
    np.testing.assert_allclose(est.score_samples(near),
                               brute_kde_log_density(near, X, h * scale), rtol=1e-10)


@pytest.mark.parametrize("match_variance", [False, True])
def test_gaussian_model_closed_form(circles, match_variance):
    X, y = circles
    X = X @ np.array([[2.0, 0.3], [-0.5, 1.0]]) + [3.0, -1.0]
    h, h0 = 0.2, 0.1
    est = GuidedDiffusionSampler(score_model="gaussian", bandwidth=h, data_bandwidth=h0,
                                 match_variance=match_variance).fit(X, y)
    queries = np.random.default_rng(2).normal(size=(30, 2)) * 3.0
    std = zscore_stats(X)[1]
    smooth = (h**2 + h0**2) * np.diag(std**2)  # h, h0 in X's std units
    # Matched: every law mapped about the overall mean by the one map that
    # takes the unconditional law back to the data's covariance (in data
    # units, the z-score map A conjugated by the scales).
    A = (variance_matching_map(np.corrcoef(X.T), h**2 + h0**2) if match_variance
         else np.eye(2))
    k = std[:, None] * A / std[None, :]
    centre = X.mean(axis=0)
    for c, rows in ((None, slice(None)), (0, y == 0), (1, y == 1)):
        part = X[rows]
        law = multivariate_normal(centre + k @ (part.mean(axis=0) - centre),
                                  k @ (np.cov(part.T, bias=True) + smooth) @ k.T)
        if c is None and match_variance:
            np.testing.assert_allclose(law.cov, np.cov(X.T, bias=True), rtol=1e-12)
        np.testing.assert_allclose(est.score_samples(queries, y=c), law.logpdf(queries),
                                   rtol=1e-10)


def test_grid_search_picks_the_kernel_density_bandwidth():
    rng = np.random.default_rng(3)
    X = np.vstack([rng.normal(0, 1, (120, 2)), rng.normal(4, 0.5, (80, 2))])
    grid = {"bandwidth": np.geomspace(0.05, 2.0, 9)}
    folds = KFold(5, shuffle=True, random_state=0)
    ours = GridSearchCV(GuidedDiffusionSampler(match_variance=False), grid, cv=folds).fit(X)
    # KernelDensity on each training fold's z-scores: the same law, without
    # the log-Jacobian, which is constant over the grid in each fold.
    theirs = GridSearchCV(make_pipeline(StandardScaler(), KernelDensity()),
                          {"kerneldensity__bandwidth": grid["bandwidth"]}, cv=folds).fit(X)
    assert ours.best_index_ == theirs.best_index_
    brute = [np.mean([standardized_kde_log_density(X[test], X[train], h).sum()
                      for train, test in folds.split(X)]) for h in grid["bandwidth"]]
    np.testing.assert_allclose(ours.cv_results_["mean_test_score"], brute, rtol=1e-10)
    # KernelDensity agrees where it is itself accurate (no far tails at h >= 0.3);
    # below, it loses nats in the underflowing tails and the brute force sides with us.
    jacobian = np.mean([len(test) * np.sum(np.log(zscore_stats(X[train])[1]))
                        for train, test in folds.split(X)])
    wide = grid["bandwidth"] >= 0.3
    np.testing.assert_allclose(ours.cv_results_["mean_test_score"][wide],
                               theirs.cv_results_["mean_test_score"][wide] - jacobian,
                               rtol=1e-9)


# ---------------------------------------------------------------- guidance
def _dyadic_classes():
    """Two classes whose own centre and scale equal the union's, bit for bit."""
    base = np.array([[0.5, 0.25], [-0.75, 0.5], [0.25, -1.0], [1.0, 0.75]])
    A = np.vstack([base, -base])  # centred, dyadic: every sum is exact
    B = A[:, ::-1] * [-1.0, 1.0]  # the same set rotated by 90 degrees
    return np.vstack([A, B]), np.repeat([0, 1], len(A)), A


# The two classes are rotations of one small set: w = 3 pushes samples past
# the class's own reach, which sample reports (tested elsewhere).
@pytest.mark.filterwarnings("ignore:guidance_scale=3.0 moved samples:UserWarning")
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_w0_and_w1_are_unconditional_and_conditional_bit_for_bit(eta):
    X, y, class0 = _dyadic_classes()
    # The plain laws: a class's law alone is contracted about its own mean.
    params = dict(bandwidth=0.1, n_steps=12, eta=eta, batch_size=7, match_variance=False)
    est = GuidedDiffusionSampler(**params).fit(X, y)
    uncond = est.sample(20, random_state=5)
    np.testing.assert_array_equal(est.sample(20, y=1, guidance_scale=0.0, random_state=5),
                                  uncond)
    alone = GuidedDiffusionSampler(**params).fit(class0)
    assert np.array_equal(alone.scale_, est.scale_)  # same internal coordinates
    np.testing.assert_array_equal(est.sample(20, y=0, guidance_scale=1.0, random_state=5),
                                  alone.sample(20, random_state=5))
    # Guidance is affine in w: w = 3 extrapolates the w = 0 -> 1 step of the denoiser.
    assert not np.array_equal(est.sample(20, y=0, guidance_scale=3.0, random_state=5),
                              alone.sample(20, random_state=5))


def test_match_variance_is_one_map_for_every_law_of_the_model():
    X, y, _ = _dyadic_classes()
    params = dict(bandwidth=0.3, n_steps=12, batch_size=7)
    plain = GuidedDiffusionSampler(match_variance=False, **params).fit(X, y)
    matched = GuidedDiffusionSampler(match_variance=True, **params).fit(X, y)
    k = matched.shrinkage_
    centre, std = zscore_stats(X)
    np.testing.assert_allclose(k, variance_matching_map(np.corrcoef(X.T), 0.3**2),
                               rtol=0, atol=1e-12)
    # Every draw is the plain one mapped about the training mean by k (in
    # z-scores), so w = 0 stays the unconditional law bit for bit.
    for kwargs in (dict(), dict(y=1, guidance_scale=1.0), dict(y=0, guidance_scale=3.0)):
        plain_draws = (plain.sample(20, random_state=5, **kwargs) - centre) / std
        np.testing.assert_allclose(matched.sample(20, random_state=5, **kwargs),
                                   centre + std * (plain_draws @ k), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(matched.sample(20, y=1, guidance_scale=0.0, random_state=5),
                                  matched.sample(20, random_state=5))
    # "auto": on without labels, off with them and with final denoising.
    identity = np.eye(X.shape[1])
    assert np.all(np.linalg.eigvalsh(GuidedDiffusionSampler(**params).fit(X).shrinkage_) < 1.0)
    assert np.array_equal(GuidedDiffusionSampler(**params).fit(X, y).shrinkage_, identity)
    assert np.array_equal(GuidedDiffusionSampler(final_denoise=True, match_variance=True,
                                                 **params).fit(X).shrinkage_, identity)
    assert np.array_equal(
        GuidedDiffusionSampler(match_variance=np.True_, **params).fit(X, y).shrinkage_, k)


# --------------------------------------------------- Gaussian closed forms
class _ConstantNormal:
    """Stand-in Generator whose normal draws are a constant (0: noise off)."""

    def __init__(self, value):
        self.value = value

    def standard_normal(self, size):
        return np.full(size, float(self.value))


def _affine_map(func, d):
    """(A, b) of an affine map x -> A x + b, from d + 1 basis points."""
    basis = np.vstack([np.zeros(d), np.eye(d)])
    out = func(basis)
    return (out[1:] - out[0]).T, out[0]


def _propagated_law(est, codes, w):
    """Mean and covariance of the output, by composing the sampler's own steps."""
    d, dyn = est.n_features_in_, est._dynamics()
    mean, cov = np.zeros(d), np.eye(d)
    labels = None if codes is None else np.full(d + 1, codes)
    for k in range(est.n_steps_):
        A, b = _affine_map(lambda x: dyn.step(k, x, labels, w, _ConstantNormal(0.0)), d)
        noise = dyn.step(k, np.zeros((d + 1, d)), labels, w, _ConstantNormal(1.0))[0] - b
        np.testing.assert_allclose(noise, noise[0])  # isotropic fresh noise
        mean, cov = A @ mean + b, A @ cov @ A.T + noise[0] ** 2 * np.eye(d)
    A, b = _affine_map(lambda x: dyn.output(x, labels, w), d)
    return A @ mean + b, A @ cov @ A.T


@pytest.mark.parametrize("n_steps, expected", [(10, 0.780546069781), (50, 0.951842078798)])
def test_ddim_matches_the_oracle_numbers(n_steps, expected):
    # Data N(0, I) exactly (unit scale, no centring), cosine grid uniform in t to t ~ 0.
    X = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    est = GuidedDiffusionSampler(score_model="gaussian", bandwidth=1e-13, n_steps=n_steps,
                                 timesteps="time_uniform").fit(X)
    assert est.alphas_[0] == 0.0
    mean, cov = _propagated_law(est, None, 1.0)
    np.testing.assert_allclose(np.diag(cov), expected, rtol=1e-11)
    assert abs(cov[0, 1]) < 1e-15 and np.abs(mean).max() < 1e-15


@pytest.mark.parametrize("eta", [0.0, 1.0, 0.5])
@pytest.mark.parametrize("final_denoise", [False, True])
def test_gaussian_model_equals_closed_forms(eta, final_denoise):
    # Rotated, non-diagonal class covariances with non-zero internal means.
    rng = np.random.default_rng(4)
    rot = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    X0 = rng.normal(size=(300, 3)) * [3.0, 1.0, 0.2] @ rot + [5.0, -2.0, 1.0]
    X1 = rng.normal(size=(200, 3)) @ rot.T * 0.7 - 4.0
    X, y = np.vstack([X0, X1]), np.repeat([0, 1], [300, 200])
    est = GuidedDiffusionSampler(score_model="gaussian", bandwidth=0.3, n_steps=10, eta=eta,
                                 final_denoise=final_denoise).fit(X, y)
    loc, scale = zscore_stats(X)
    for code, part in ((None, X), (0, X0), (1, X1)):
        mean_int = (part.mean(axis=0) - loc) / scale
        cov_int = np.cov(part.T, bias=True) / np.outer(scale, scale)
        law = sampler_covariance(mean_int, cov_int, est.alphas_, est.sigmas_, eta,
                                 final_denoise=final_denoise)
        mean, cov = _propagated_law(est, code, 1.0)
        # Internal units: the data scale is 1, so 1e-12 is relative to it.
        np.testing.assert_allclose(mean, law.mean, rtol=0, atol=1e-12)
        np.testing.assert_allclose(cov, law.covariance, rtol=0, atol=1e-12)


@pytest.mark.parametrize("match_variance", [False, True])
def test_gaussian_model_monte_carlo(match_variance):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(400, 2)) @ np.array([[1.5, 0.6], [0.0, 0.5]]) + [2.0, -3.0]
    h = 0.5
    est = GuidedDiffusionSampler(score_model="gaussian", bandwidth=h, n_steps=10, eta=1.0,
                                 batch_size=20000, match_variance=match_variance).fit(X)
    loc, scale = zscore_stats(X)
    law = sampler_covariance((X.mean(axis=0) - loc) / scale,
                             np.cov(X.T, bias=True) / np.outer(scale, scale),
                             est.alphas_, est.sigmas_, 1.0)
    # The matched map in z-scores, then in data units.
    A = variance_matching_map(np.corrcoef(X.T), h**2) if match_variance else np.eye(2)
    C = np.outer(scale, scale) * (A @ law.covariance @ A)
    m = loc + scale * (A @ law.mean)
    M = 100_000
    S = est.sample(M, random_state=0)
    se = np.sqrt((np.outer(np.diag(C), np.diag(C)) + C**2) / M)
    assert np.all(np.abs(np.cov(S.T) - C) <= 6.0 * se)
    assert np.all(np.abs(S.mean(axis=0) - m) <= 6.0 * np.sqrt(np.diag(C) / M))


# ------------------------------------------------------------ likelihood
@pytest.mark.parametrize("score_model", ["empirical", "gaussian"])
def test_ode_with_exact_prior_reproduces_the_closed_form(score_model):
    # The plain law: the contraction of match_variance is outside the flow.
    rng = np.random.default_rng(6)
    X = np.vstack([rng.normal(-1.0, 0.5, (4, 2)), rng.normal(1.5, 0.3, (3, 2))])
    y = np.repeat([0, 1], [4, 3])
    Q = X[[0, 5]] + 0.2
    params = dict(score_model=score_model, bandwidth=0.3, data_bandwidth=0.1, n_steps=10,
                  match_variance=False)
    # logSNR grid: the start alpha_0 > 0, where the exact p_T replaces N(0, I).
    est = GuidedDiffusionSampler(timesteps="logsnr", **params).fit(X, y)
    loc, scale = zscore_stats(X)
    Z, jacobian = (Q - loc) / scale, np.sum(np.log(scale))
    for label, w, law in ((None, 1.0, None), (1, 1.0, 1), (0, 0.0, None)):
        ode = probability_flow_log_density(
            est.score_model_, Z, label, w, est.alphas_[0], est.sigmas_[0],
            est.bandwidth_, start="marginal") - jacobian
        np.testing.assert_allclose(ode, est.score_samples(Q, y=law), rtol=0, atol=1e-6)
    # With N(0, I) itself the law differs only through alpha_0 ~ 5e-5.
    np.testing.assert_allclose(est.score_samples(Q, y=1, method="ode"),
                               est.score_samples(Q, y=1), rtol=0, atol=1e-3)
    # Default grid: it starts at alpha = 0, where N(0, I) is the exact p_T.
    est = GuidedDiffusionSampler(**params).fit(X, y)
    assert est.alphas_[0] == 0.0
    np.testing.assert_allclose(est.score_samples(Q, y=1, method="ode"),
                               est.score_samples(Q, y=1), rtol=0, atol=1e-6)
    # The matched law: both methods undo the same contraction (0.09-0.16 nats here).
    matched = GuidedDiffusionSampler(**{**params, "match_variance": True}).fit(X, y)
    assert abs(matched.score_samples(Q[:1]) - est.score_samples(Q[:1])) > 0.05
    np.testing.assert_allclose(matched.score_samples(Q, method="ode"),
                               matched.score_samples(Q), rtol=0, atol=1e-6)
    np.testing.assert_allclose(matched.score_samples(Q, y=1, method="ode"),
                               matched.score_samples(Q, y=1), rtol=0, atol=1e-6)


# ------------------------------------------------------ support robustness
def test_two_circles_support_under_guidance(circles):
    X, y = circles
    h = 0.05
    est = GuidedDiffusionSampler(bandwidth=h, n_steps=50).fit(X, y)
    labels = np.repeat([0, 1], 2000)
    own = [NearestNeighbors(n_neighbors=1).fit(X[y == c]) for c in (0, 1)]
    for w in (1, 3, 5, 7, 10):
        with warnings.catch_warnings():
            # Deterministic steps are inside the guarantee: no regime warning
            # (strong guidance may still move samples beyond the class's own
            # reach, which another warning reports).
            warnings.filterwarnings("error", message=".*outside the regime")
            warnings.filterwarnings("ignore", message=".*beyond their class's reach")
            S = est.sample(4000, y=labels, guidance_scale=w, random_state=w)
        d_own = np.empty(len(S))
        d_other = np.empty(len(S))
        for c in (0, 1):
            rows = labels == c
            d_own[rows] = own[c].kneighbors(S[rows])[0][:, 0]
            d_other[rows] = own[1 - c].kneighbors(S[rows])[0][:, 0]
        assert d_own.max() <= 10.0 * h, (w, d_own.max() / h)
        assert np.all(d_own < d_other), w  # no leakage to the other class


def test_class_reach_of_the_class_law_is_its_99_percent_quantile(circles):
    # Draws from a class's own kernel density (the w = 1 law): about 1% lie
    # beyond the reach (the 99% quantile, itself from 1000 reference draws);
    # more than 3% has a false-alarm rate below 1e-6 (binomial, n = 2000).
    X, y = circles
    rng = np.random.default_rng(3)
    own = X[y == 1]
    draws = own[rng.integers(0, len(own), 2000)] + 0.05 * rng.standard_normal((2000, 2))
    far = draws + np.array([10.0, 0.0])
    shares = beyond_class_reach(np.vstack([draws, far]), np.repeat([1, 0], 2000),
                                lambda code: X[y == 1], 0.05)
    count, total = shares[1]
    assert total == 2000 and count <= 0.03 * total
    assert shares[0] == (2000, 2000)  # the "class 0" rows, checked against class 1's rows
    # Distances to a subset of the class (large classes): the reference draws
    # come from every pattern, so the class law still leaves about 1%.
    count, _ = beyond_class_reach(draws, np.ones(2000, dtype=int), lambda code: own, 0.05,
                                  max_patterns=50)[1]
    assert count <= 0.03 * 2000


def test_guidance_that_leaves_the_class_warns():
    # Measured on iris (docs/design.rst): at w <= 5 at most 8% of any class's
    # samples lie beyond the class's 99% reach, at w = 7 a quarter of class 0's.
    X, y = load_iris(return_X_y=True)
    est = GuidedDiffusionSampler(random_state=0).fit(X, y)
    for w in (1.0, 3.0):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            est.sample(400, y=0, guidance_scale=w, random_state=1)
    with pytest.warns(UserWarning, match="of class 0's samples lie farther"):
        est.sample(400, y=0, guidance_scale=7.0, random_state=1)


def test_coarse_ddpm_with_large_guidance_warns_and_fails(circles):
    X, y = circles
    est = GuidedDiffusionSampler(bandwidth=0.05, n_steps=10, eta=1.0).fit(X, y)
    with pytest.warns(UserWarning, match="outside the regime"):
        S = est.sample(2000, y=1, guidance_scale=10.0, random_state=0)
    dist = NearestNeighbors(n_neighbors=1).fit(X[y == 1]).kneighbors(S)[0][:, 0]
    assert np.sum(dist > 0.5) > 0  # the documented failure region is real


def _mmd_permutation_pvalue(A, B, length, n_permutations, rng):
    """Permutation p-value of the Gaussian-kernel MMD of two samples."""
    Z = np.vstack([A, B])
    sq = np.sum(Z**2, 1)
    K = np.exp(-np.maximum(sq[:, None] + sq[None, :] - 2 * Z @ Z.T, 0.0) / (2 * length**2))

    def stat(mask):
        return (K[mask][:, mask].mean() + K[~mask][:, ~mask].mean()
                - 2 * K[mask][:, ~mask].mean())

    mask = np.arange(len(Z)) < len(A)
    observed = stat(mask)
    null = np.array([stat(rng.permutation(mask)) for _ in range(n_permutations)])
    return (1 + np.sum(null >= observed)) / (1 + n_permutations)


def test_w1_samples_pass_a_two_sample_test_against_the_class_kde(circles):
    # Kernel two-sample test (MMD, kernel width 2h, 199 permutations): false-alarm
    # rate 1% for a sampler whose law is the class KDE.
    X, y = circles
    h, n = 0.1, 700
    est = GuidedDiffusionSampler(bandwidth=h, n_steps=100).fit(X, y)
    S = est.sample(n, y=1, guidance_scale=1.0, random_state=0)
    rng = np.random.default_rng(7)
    Xc = X[y == 1]
    kde = Xc[rng.integers(0, len(Xc), n)] + h * rng.standard_normal((n, 2))
    assert _mmd_permutation_pvalue(S, kde, 2 * h, 199, rng) > 0.01
    # The same test sees a bandwidth twice too large.
    wide = Xc[rng.integers(0, len(Xc), n)] + 2.0 * h * rng.standard_normal((n, 2))
    assert _mmd_permutation_pvalue(wide, kde, 2 * h, 199, rng) <= 0.01


# ---------------------------------------------------------- mechanics
def test_certified_top_k_matches_exact_sums(circles):
    X, y = circles
    exact = GuidedDiffusionSampler(bandwidth=0.05, n_steps=30).fit(X, y)
    top_k = GuidedDiffusionSampler(bandwidth=0.05, n_steps=30, n_neighbors=16,
                                   algorithm="kd_tree").fit(X, y)
    a = exact.sample(300, y=0, guidance_scale=4.0, random_state=1)
    b = top_k.sample(300, y=0, guidance_scale=4.0, random_state=1)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("y, guidance_scale", [(None, 1.0), ("mixed", 1.0), ("mixed", 3.0)])
def test_large_draws_prefer_processes_by_the_pattern_terms_they_sum(circles, monkeypatch,
                                                                    y, guidance_scale):
    # The estimate that picks joblib's hint is the rows x patterns that the
    # denoiser calls of the draw sum, counted here call by call (classes of
    # 200 and 100 patterns; guidance adds the unconditional side).
    import sklearn_diffsample._parallel as parallel
    import sklearn_diffsample.guided as guided

    X, labels = circles[0][:300], circles[1][:300]
    est = GuidedDiffusionSampler(bandwidth=0.05, n_steps=7, final_denoise=True,
                                 n_jobs=2).fit(X, labels)
    model = est.score_model_
    counted, hints = [], []
    denoise, run_chunks = model.denoise, guided.run_chunks

    def counting_denoise(x, alpha, sigma, label):
        counted.append(x.shape[0] * model.engine(label).n_patterns)
        return denoise(x, alpha, sigma, label)

    def recording_run_chunks(*args, prefer, **kwargs):
        hints.append(prefer)
        return run_chunks(*args, prefer=prefer, **kwargs)

    monkeypatch.setattr(model, "denoise", counting_denoise)
    monkeypatch.setattr(guided, "run_chunks", recording_run_chunks)
    codes = None if y is None else np.arange(50) % 3 == 0
    draw = {} if y is None else dict(y=codes.astype(int), guidance_scale=guidance_scale)
    est.sample(50, random_state=0, **draw)
    terms = sum(counted)
    assert terms == est._dynamics().pattern_terms(
        None if y is None else codes.astype(int), guidance_scale, 50)
    for threshold, hint in ((terms, "processes"), (terms + 1, "threads")):
        monkeypatch.setattr(parallel, "PROCESS_MIN_TERMS", threshold)
        est.sample(50, random_state=0, **draw)
        assert hints[-1] == hint


def test_internal_coordinates_make_sampling_scale_equivariant(circles):
    X, y = circles
    est = GuidedDiffusionSampler(bandwidth=0.05, n_steps=20, eta=0.3)
    small = est.fit(X, y).sample(50, y=1, guidance_scale=2.0, random_state=3)
    big = est.fit(1e4 * X - 7.0, y).sample(
        50, y=1, guidance_scale=2.0, random_state=3)
    np.testing.assert_allclose(big, 1e4 * small - 7.0, rtol=1e-9, atol=1e-9 * 1e4)


def test_auto_steps_and_exposed_grid(circles):
    # The Gaussian score model plans with the Gaussian closed form.
    X, _ = circles
    est = GuidedDiffusionSampler(score_model="gaussian", bandwidth=0.05, n_steps="auto",
                                 n_steps_tol=0.03).fit(X)
    Z = (X - X.mean(axis=0)) / X.std(axis=0)
    lam = np.linalg.eigvalsh(np.cov(Z.T, bias=True))
    h = 0.05
    assert est.n_steps_ == plan_n_steps(lam, 0.03 * np.sqrt(2), noise_floor=h,
                                        timesteps="angle")
    alphas, sigmas = grid_coefficients(est.n_steps_, h, timesteps="angle")
    np.testing.assert_array_equal(est.alphas_, alphas)
    np.testing.assert_array_equal(est.sigmas_, sigmas)
    assert est.sigmas_[-1] / est.alphas_[-1] == pytest.approx(h, rel=1e-12)


def test_auto_steps_bound_the_error_of_the_fitted_measure():
    # The empirical planner's promise, against a fine-grid reference from the
    # same starts: the chosen K is within the tolerance (up to the spread
    # between its pilot and these starts), and K / 2 is not.
    from sklearn_diffsample.datasets import make_target

    X = make_target("two_spirals").sample(1000, random_state=0)
    tol = 0.02 * np.sqrt(2)
    est = GuidedDiffusionSampler(n_steps="auto").fit(X)
    K = est.n_steps_
    assert K in (16, 32, 64)
    fine = GuidedDiffusionSampler(n_steps=400).fit(X)
    reference = fine._to_internal(fine.sample(1000, 3))

    def rms(n_steps):
        S = GuidedDiffusionSampler(n_steps=n_steps).fit(X).sample(1000, 3)
        return np.sqrt(np.mean(np.sum((est._to_internal(S) - reference) ** 2, axis=1)))

    assert rms(K) <= tol, (K, rms(K))
    assert rms(K // 2) > tol, (K // 2, rms(K // 2))


def test_bad_input_messages(circles):
    X, y = circles
    est = GuidedDiffusionSampler(bandwidth=0.1, n_steps=5).fit(X, y)
    with pytest.raises(ValueError, match=r"Unknown class label\(s\) \[7\].*\[0, 1\]"):
        est.sample(3, y=7)
    with pytest.raises(ValueError, match=r"known classes are \[0, 1\]"):
        est.score_samples(X[:3], y=[0, 1, 5])
    with pytest.raises(ValueError, match="guidance_scale must be >= 0"):
        est.sample(3, y=0, guidance_scale=-1.0)
    with pytest.raises(ValueError, match="array of 3 labels"):
        est.sample(3, y=[0, 1])
    with pytest.raises(ValueError, match="method"):
        est.score_samples(X[:3], method="exact")
    unlabelled = GuidedDiffusionSampler(bandwidth=0.1, n_steps=5).fit(X)
    with pytest.raises(ValueError, match="fitted without class labels"):
        unlabelled.sample(3, y=0)
    assert est.sample(0, y=1).shape == (0, 2)
    string_labels = GuidedDiffusionSampler(bandwidth=0.1, n_steps=5).fit(
        X, np.where(y == 0, "inner", "outer"))
    with pytest.raises(ValueError, match=r"\['inner', 'outer'\]"):
        string_labels.sample(2, y="middle")
    assert string_labels.sample(2, y="outer", random_state=0).shape == (2, 2)




@pytest.mark.parametrize("n_steps", [10, 20])
def test_second_order_solver_is_closer_to_the_exact_flow(n_steps):
    # The exact flow ends at N(mean, cov + h^2 I) for the Gaussian score model
    # (the closed form of score_samples); DPM-Solver++(2M) must be at least
    # twice as close to it as the first-order DDIM steps, in every coordinate.
    # 1e5 samples: the relative standard error of a variance is 0.0045.
    X = np.random.default_rng(0).normal(size=(400, 2)) * [1.0, 0.3]
    errors = []
    for order in (1, 2):
        est = GuidedDiffusionSampler(score_model="gaussian", bandwidth=0.05, n_steps=n_steps,
                                     order=order).fit(X)
        exact = np.diag(est.covariance_) + est.bandwidth_**2
        errors.append(np.abs(est.sample(100_000, 0).var(axis=0) / exact - 1.0))
    assert np.all(errors[1] < 0.5 * errors[0]), errors
    stochastic = GuidedDiffusionSampler(eta=0.5, order=2).fit(X)
    assert stochastic.order_ == 1  # stochastic steps stay first order
