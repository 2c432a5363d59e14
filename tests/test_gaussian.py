"""Tests of the closed-form Gaussian theory against independent references."""

import numpy as np
import pytest
from scipy.linalg import solve_discrete_lyapunov, sqrtm
from scipy.stats import special_ortho_group

from sklearn_diffsample._schedules import make_schedule
from sklearn_diffsample.gaussian import (
    bures_wasserstein,
    bures_wasserstein_commuting,
    exact_flow_variance,
    expected_w2_error,
    grid_coefficients,
    noise_floor_variance,
    plan_n_steps,
    sampler_covariance,
    sampler_variance,
    ula_stationary_variance,
)

SPECTRUM_4 = np.array([4.0, 1.0, 0.25, 0.04])
SPECTRUM_6 = np.array([4.0, 2.0, 1.0, 0.5, 0.1, 0.01])

# Grids covering both endpoint limits (alpha_0 = 0, sigma_K = 0) and interior ends.
GRIDS = {
    "cosine-uniform-to-0": dict(n_steps=10, noise_floor=0.0, timesteps="time_uniform"),
    "cosine-logsnr": dict(n_steps=12, noise_floor=0.05, timesteps="logsnr"),
    "linear-uniform-to-0": dict(
        n_steps=9, noise_floor=0.0, schedule="linear", timesteps="time_uniform"
    ),
    "linear-angle": dict(
        n_steps=7, noise_floor=0.2, schedule="linear", timesteps="angle"
    ),
}


def _grid(name):
    spec = dict(GRIDS[name])
    return grid_coefficients(spec.pop("n_steps"), spec.pop("noise_floor"), **spec)


def _oracle_grid(n_steps):
    """Cosine schedule, u_k = 1 - k/K, built here without the module's helpers."""
    u = 1.0 - np.arange(n_steps + 1) / n_steps
    alphas = np.cos(0.5 * np.pi * u)
    alphas[0] = 0.0  # cos(pi/2) is 6e-17 in floating point
    return alphas, np.sin(0.5 * np.pi * u)


def _rotated_gaussian(d, seed):
    rng = np.random.default_rng(seed)
    rotation = special_ortho_group.rvs(d, random_state=seed)
    spectrum = np.geomspace(3.0, 0.05, d)
    return rng.normal(size=d), (rotation * spectrum) @ rotation.T


# --- independent reference: the sampler's steps as affine maps in R^d -------------


def _denoiser_affine(mean, cov, alpha, sigma):
    """D(x) = P x + q, the exact Gaussian denoiser at (alpha, sigma)."""
    d = mean.size
    proj = alpha * np.linalg.solve(alpha**2 * cov + sigma**2 * np.eye(d), cov).T
    return proj, mean - alpha * proj @ mean


def _step_constants(a_s, s_s, a_t, s_t, eta):
    """Coefficient on (x_s - alpha_s D) and noise scale c, from e^{-h} directly."""
    decay = a_s * s_t / (s_s * a_t)
    c = eta * s_t * np.sqrt(1.0 - decay**2)
    return np.sqrt(s_t**2 - c**2) / s_s, c


def _propagate_affine(mean, cov, alphas, sigmas, eta, c0, m0, final_denoise, output):
    d = mean.size
    m, C = m0.copy(), c0 * np.eye(d)
    for a_s, s_s, a_t, s_t in zip(alphas[:-1], sigmas[:-1], alphas[1:], sigmas[1:]):
        proj, shift = _denoiser_affine(mean, cov, a_s, s_s)
        keep, c = _step_constants(a_s, s_s, a_t, s_t, eta)
        A = a_t * proj + keep * (np.eye(d) - a_s * proj)
        b = (a_t - keep * a_s) * shift
        m, C = A @ m + b, A @ C @ A.T + c**2 * np.eye(d)
    if output == "state":
        return m, C
    if final_denoise:
        proj, shift = _denoiser_affine(mean, cov, alphas[-1], sigmas[-1])
        return proj @ m + shift, proj @ C @ proj.T
    return m / alphas[-1], C / alphas[-1] ** 2


# --- oracles (docs/design.rst, Gaussian theory) ------------------------------------

# The closed forms' values tabled in docs/design.rst; tolerance is half a unit in the
# last given digit.
ORACLE_C = {
    (0.0, 10): [2.931448667657, 0.780546069781, 0.183215541729, 0.020521287705],
    (1.0, 10): [2.695935600061, 0.679120751303, 0.151037846491, 0.017060374482],
}
ORACLE_W2 = {(0.0, 10): 0.3237804830, (1.0, 10): 0.4199703434,
             (0.0, 50): 0.0683508336, (1.0, 50): 0.1016510953}


@pytest.mark.parametrize(
    "n_steps, expected", [(10, 0.780546069781), (50, 0.951842078798)]
)
def test_ddim_unit_eigenvalue_oracle(n_steps, expected):
    alphas, sigmas = _oracle_grid(n_steps)
    variance = sampler_variance(1.0, alphas, sigmas).variance
    assert variance == pytest.approx(expected, rel=1e-10, abs=5.1e-13)
    cos_power = np.cos(np.pi / (2 * n_steps)) ** (2 * n_steps)
    assert variance == pytest.approx(cos_power, rel=1e-13)


def test_oracle_grid_is_time_grid():
    alphas, sigmas = _oracle_grid(10)
    ours = grid_coefficients(10, 0.0, timesteps="time_uniform")
    np.testing.assert_allclose(ours, (alphas, sigmas), rtol=0, atol=1e-15)
    assert ours[0][0] == 0.0 and ours[1][-1] == 0.0


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("method", ["closed_form", "recursion"])
def test_spectrum_oracles(eta, method):
    for n_steps in (10, 50):
        alphas, sigmas = _oracle_grid(n_steps)
        c = sampler_variance(SPECTRUM_4, alphas, sigmas, eta, method=method).variance
        if (eta, n_steps) in ORACLE_C:
            expected = ORACLE_C[eta, n_steps]
            np.testing.assert_allclose(c, expected, rtol=1e-10, atol=5.1e-13)
        w2 = bures_wasserstein_commuting(0.0, c, 0.0, SPECTRUM_4)
        assert w2 == pytest.approx(ORACLE_W2[eta, n_steps], rel=2e-10, abs=5.1e-11)
        zero = np.zeros(4)
        general = bures_wasserstein(zero, np.diag(c), zero, np.diag(SPECTRUM_4))
        assert general == pytest.approx(w2, rel=1e-9)


# --- closed forms == recursion == affine propagation ------------------------------


@pytest.mark.parametrize("grid", sorted(GRIDS))
@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("output", ["data", "state", "denoised"])
def test_closed_forms_match_recursion(grid, eta, output):
    alphas, sigmas = _grid(grid)
    spectrum = np.array([9.0, 1.0, 0.3, 1e-3, 0.0])
    options = dict(
        c0=1.7,
        final_denoise=output == "denoised",
        output="state" if output == "state" else "data",
    )
    args = (spectrum, alphas, sigmas, eta)
    closed = sampler_variance(*args, method="closed_form", **options)
    recursion = sampler_variance(*args, method="recursion", **options)
    for got, expected in zip(closed, recursion):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    assert np.all(np.isfinite(closed.variance)) and np.all(closed.variance >= 0)


@pytest.mark.parametrize("grid", sorted(GRIDS))
@pytest.mark.parametrize("eta", [0.0, 0.4, 1.0])
@pytest.mark.parametrize("output", ["data", "state", "denoised"])
def test_covariance_matches_affine_propagation(grid, eta, output):
    mean, cov = _rotated_gaussian(4, seed=3)
    alphas, sigmas = _grid(grid)
    m0 = np.array([0.3, -0.2, 0.5, 0.1])
    final_denoise = output == "denoised"
    out = "state" if output == "state" else "data"
    law = sampler_covariance(
        mean, cov, alphas, sigmas, eta,
        final_denoise=final_denoise, c0=0.8, m0=m0, output=out,
    )
    ref_mean, ref_cov = _propagate_affine(
        mean, cov, alphas, sigmas, eta, 0.8, m0, final_denoise, out
    )
    np.testing.assert_allclose(law.mean, ref_mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(law.covariance, ref_cov, rtol=1e-12, atol=1e-12)


def test_endpoint_limits_raise_no_floating_point_errors():
    alphas, sigmas = _oracle_grid(6)
    spectrum = np.array([2.0, 0.0])
    with np.errstate(all="raise"):
        for eta in (0.0, 0.5, 1.0):
            for final_denoise in (False, True):
                args = (spectrum, alphas, sigmas, eta)
                got = sampler_variance(*args, final_denoise=final_denoise)
                assert got.variance[1] == 0.0 and got.gain[1] == 0.0
                flow = exact_flow_variance(*args, final_denoise=final_denoise)
                assert np.all(np.isfinite(flow.variance))
        single = sampler_variance(spectrum, alphas[[0, -1]], sigmas[[0, -1]], 1.0)
    # One DDPM step from pure noise to t = 0 returns the denoiser of pure noise: mu.
    np.testing.assert_array_equal(single.variance, [0.0, 0.0])


# --- Monte Carlo: the sampler's steps simulated on samples -------------------------


def _simulate(mean, cov, alphas, sigmas, ddpm, n_particles, rng):
    """DDIM or DDPM steps written out as in docs/design.rst (DDPM in its e^{-h} form)."""
    x = rng.standard_normal((n_particles, mean.size))
    for a_s, s_s, a_t, s_t in zip(alphas[:-1], sigmas[:-1], alphas[1:], sigmas[1:]):
        proj, shift = _denoiser_affine(mean, cov, a_s, s_s)
        denoised = x @ proj.T + shift
        if ddpm:
            decay = a_s * s_t / (s_s * a_t)
            x = (
                (s_t / s_s) * decay * x
                + a_t * (1 - decay**2) * denoised
                + s_t * np.sqrt(1 - decay**2) * rng.standard_normal(x.shape)
            )
        else:
            x = a_t * denoised + (s_t / s_s) * (x - a_s * denoised)
    return x / alphas[-1]


@pytest.mark.parametrize(
    "eta, grid", [(0.0, "cosine-uniform-to-0"), (1.0, "cosine-logsnr")]
)
def test_monte_carlo_covariance(eta, grid):
    mean, cov = _rotated_gaussian(3, seed=11)
    alphas, sigmas = _grid(grid)
    rng = np.random.default_rng(2024)
    n_particles = 100_000
    x = _simulate(mean, cov, alphas, sigmas, eta == 1.0, n_particles, rng)
    law = sampler_covariance(mean, cov, alphas, sigmas, eta)
    C = law.covariance
    d = np.sqrt(np.diag(C))
    se_cov = np.sqrt((np.outer(d**2, d**2) + C**2) / n_particles)
    assert np.all(np.abs(np.cov(x.T) - C) <= 6 * se_cov)
    assert np.all(np.abs(x.mean(axis=0) - law.mean) <= 6 * d / np.sqrt(n_particles))
    fit_w2 = bures_wasserstein(x.mean(axis=0), np.cov(x.T), mean, cov)
    predicted_w2 = bures_wasserstein(law.mean, C, mean, cov)
    assert abs(fit_w2 - predicted_w2) < 0.02
    assert predicted_w2 > 0.05  # the grids are coarse enough for a visible error


# --- expected error of the pipeline ------------------------------------------------


def _gaussian_md_grid():
    """Linear schedule, 20 time-uniform steps from t = 1 to t = 1e-3."""
    schedule = make_schedule("linear")
    t = np.linspace(1.0, 1e-3, 21)
    return schedule.alpha(t), schedule.sigma(t)


def test_expected_error_quoted_prediction():
    alphas, sigmas = _gaussian_md_grid()
    err = expected_w2_error(SPECTRUM_6, 1000, alphas, sigmas, final_denoise=True)
    assert round(err.total, 4) == 0.0672
    assert err.total == pytest.approx(err.discretisation + err.estimation + err.mean)
    assert err.mean == pytest.approx(SPECTRUM_6.sum() / 1000)


@pytest.mark.parametrize("n_samples", [100, 1000])
def test_expected_error_monte_carlo(n_samples):
    alphas, sigmas = _gaussian_md_grid()
    d = SPECTRUM_6.size
    rng = np.random.default_rng(n_samples)
    measured = []
    for _ in range(1000):
        X = rng.standard_normal((n_samples, d)) * np.sqrt(SPECTRUM_6)
        law = sampler_covariance(
            X.mean(axis=0), np.cov(X.T), alphas, sigmas, final_denoise=True
        )
        measured.append(
            bures_wasserstein(
                law.mean, law.covariance, np.zeros(d), np.diag(SPECTRUM_6), squared=True
            )
        )
    measured = np.asarray(measured)
    predicted = expected_w2_error(
        SPECTRUM_6, n_samples, alphas, sigmas, final_denoise=True
    ).total
    assert measured.std() / np.sqrt(measured.size) < 0.02 * predicted
    assert abs(measured.mean() / predicted - 1) < 0.05


def test_expected_error_parts():
    alphas, sigmas = grid_coefficients(30, 0.1, timesteps="angle")
    err = expected_w2_error(SPECTRUM_4, np.inf, alphas, sigmas)
    assert err.estimation == 0.0 and err.mean == 0.0
    assert err.total == err.discretisation
    flow = noise_floor_variance(SPECTRUM_4, 0.1)
    floor_w2sq = np.sum((np.sqrt(flow) - np.sqrt(SPECTRUM_4)) ** 2)
    assert err.noise_floor == pytest.approx(floor_w2sq, rel=1e-12)
    triangle = np.sqrt(err.noise_floor) + np.sqrt(err.steps)
    assert np.sqrt(err.discretisation) <= triangle + 1e-15
    l1, l2 = SPECTRUM_4[:, None], SPECTRUM_4[None, :]
    kernel = 0.5 * np.sum(l1 * l2 / (l1 + l2)) + 0.25 * SPECTRUM_4.sum()
    estimation = expected_w2_error(SPECTRUM_4, 50, alphas, sigmas).estimation
    assert estimation == pytest.approx(kernel / 50, rel=1e-12)


# --- limits -----------------------------------------------------------------------


@pytest.mark.parametrize("final_denoise", [False, True])
@pytest.mark.parametrize("eta", [0.0, 0.6, 1.0])
def test_noise_floor_is_exact_flow_from_exact_start(final_denoise, eta):
    alphas, sigmas = grid_coefficients(5, 0.3, schedule="linear")
    v0 = alphas[0] ** 2 * SPECTRUM_4 + sigmas[0] ** 2
    for lam, start in zip(SPECTRUM_4, v0):
        flow = exact_flow_variance(
            lam, alphas, sigmas, eta, final_denoise=final_denoise, c0=start
        )
        expected = noise_floor_variance(lam, 0.3, final_denoise=final_denoise)
        assert flow.variance == pytest.approx(expected, rel=1e-12)
    assert noise_floor_variance(0.0, 0.0, final_denoise=True) == 0.0
    np.testing.assert_allclose(noise_floor_variance([1.0, 3.0], 1.0), [2.0, 4.0])


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("timesteps", ["logsnr", "time_uniform"])
def test_sampler_converges_to_exact_flow(eta, timesteps):
    # A start variance off the marginal (c0 != v_0) tests the deviation's gain;
    # a cosine grid from t = 1 has v_0 = 1, so its start is exact with c0 = 1.
    c0 = 1.5 if timesteps == "logsnr" else 1.0
    alphas, sigmas = grid_coefficients(20_000, 0.05, timesteps=timesteps)
    fine = sampler_variance(SPECTRUM_4, alphas, sigmas, eta, c0=c0)
    flow = exact_flow_variance(SPECTRUM_4, alphas, sigmas, eta, c0=c0)
    np.testing.assert_allclose(fine.variance, flow.variance, rtol=2e-3)
    if timesteps == "logsnr":
        np.testing.assert_allclose(fine.gain, flow.gain, rtol=2e-3)


# --- Wasserstein distances --------------------------------------------------------


def test_bures_against_sqrtm_reference():
    rng = np.random.default_rng(5)
    for _ in range(5):
        F1, F2 = rng.normal(size=(2, 4, 4))
        S1, S2 = F1 @ F1.T, F2 @ F2.T + 0.1 * np.eye(4)
        m1, m2 = rng.normal(size=(2, 4))
        root = sqrtm(S1).real
        cross = sqrtm(root @ S2 @ root).real
        ref = np.sum((m1 - m2) ** 2) + np.trace(S1 + S2 - 2 * cross)
        w2sq = bures_wasserstein(m1, S1, m2, S2, squared=True)
        assert w2sq == pytest.approx(ref, rel=1e-9)
        assert bures_wasserstein(m1, S1, m2, S2) == pytest.approx(
            bures_wasserstein(m2, S2, m1, S1), rel=1e-9)


def test_bures_commuting_and_singular():
    rotation = special_ortho_group.rvs(3, random_state=1)
    var1, var2 = np.array([2.0, 0.5, 0.0]), np.array([1.0, 0.5, 0.3])
    S1, S2 = (rotation * var1) @ rotation.T, (rotation * var2) @ rotation.T
    m1, m2 = np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 2.0])
    commuting = bures_wasserstein_commuting(m1, var1, m2, var2)
    expected = np.sqrt(5 + (np.sqrt(2) - 1) ** 2 + 0.3)
    assert commuting == pytest.approx(expected, rel=1e-14)
    assert bures_wasserstein(m1, S1, m2, S2) == pytest.approx(expected, rel=1e-7)
    assert bures_wasserstein(m1, S1, m1, S1) < 1e-7


# --- ULA --------------------------------------------------------------------------


def test_ula_stationary_variance_matches_lyapunov():
    _, cov = _rotated_gaussian(4, seed=7)
    noise, step = 0.3, 0.05
    smoothed = cov + noise**2 * np.eye(4)
    transition = np.eye(4) - step * np.linalg.inv(smoothed)
    stationary = solve_discrete_lyapunov(transition, 2 * step * np.eye(4))
    lam, vecs = np.linalg.eigh(cov)
    predicted = (vecs * ula_stationary_variance(lam, noise, step)) @ vecs.T
    np.testing.assert_allclose(predicted, stationary, rtol=1e-10, atol=1e-12)
    # Scalar AR(1) x <- (1 - g/s) x + sqrt(2 g) z, iterated to its fixed point.
    variance = 0.0
    for _ in range(5000):
        variance = (1 - 0.5 / 1.25) ** 2 * variance + 2 * 0.5
    assert ula_stationary_variance(1.0, 0.5, 0.5) == pytest.approx(variance, rel=1e-12)


# --- planning ---------------------------------------------------------------------


def _step_error(spectrum, n_steps, **grid_and_sampler):
    eta = grid_and_sampler.pop("eta", 0.0)
    floor = grid_and_sampler.pop("noise_floor")
    alphas, sigmas = grid_coefficients(n_steps, floor, **grid_and_sampler)
    f = sampler_variance(spectrum, alphas, sigmas, eta).variance
    target = exact_flow_variance(spectrum, alphas, sigmas, eta).variance
    return np.sqrt(np.sum((np.sqrt(f) - np.sqrt(target)) ** 2))


@pytest.mark.parametrize("options", [
    dict(noise_floor=0.05),
    dict(noise_floor=0.1, timesteps="angle", eta=1.0),
    dict(noise_floor=0.02, schedule="linear", timesteps="time_uniform", eta=0.3),
])
def test_plan_n_steps_is_threshold(options):
    tol = 0.05
    n_steps = plan_n_steps(SPECTRUM_6, tol, **options)
    assert n_steps > 1
    assert _step_error(SPECTRUM_6, n_steps, **options) <= tol
    assert _step_error(SPECTRUM_6, n_steps - 1, **options) > tol


def test_plan_n_steps_finds_smallest_when_error_is_not_monotone():
    # For this setting the step error changes sign near K = 10 and then grows back:
    # a bisection over [1, 40] would miss the early dip.
    options = dict(noise_floor=1.0, schedule="linear", timesteps="angle", eta=0.3)
    errors = [_step_error([1e-4], k, **options) for k in range(1, 41)]
    tol = 1e-7
    assert [k for k, e in enumerate(errors, start=1) if e <= tol] == [10]
    assert plan_n_steps([1e-4], tol, **options) == 10


def test_plan_n_steps_gives_up():
    with pytest.raises(ValueError, match="No n_steps <= 3"):
        plan_n_steps(SPECTRUM_6, 1e-6, noise_floor=0.05, max_steps=3)


# --- bad input --------------------------------------------------------------------


def test_bad_input():
    alphas, sigmas = _oracle_grid(5)
    with pytest.raises(ValueError, match=">= 0"):
        sampler_variance([1.0, -0.1], alphas, sigmas)
    with pytest.raises(ValueError, match="same length"):
        sampler_variance(1.0, alphas, sigmas[:-1])
    with pytest.raises(ValueError, match="noise to data"):
        sampler_variance(1.0, alphas[::-1], sigmas[::-1])
    with pytest.raises(ValueError, match="eta"):
        sampler_variance(1.0, alphas, sigmas, eta=1.5)
    with pytest.raises(ValueError, match="closed forms"):
        sampler_variance(1.0, alphas, sigmas, eta=0.5, method="closed_form")
    with pytest.raises(ValueError, match="final_denoise"):
        sampler_variance(1.0, alphas, sigmas, final_denoise=True, output="state")
    with pytest.raises(ValueError, match="semi-definite"):
        sampler_covariance(np.zeros(2), [[1.0, 2.0], [2.0, 1.0]], alphas, sigmas)
    with pytest.raises(ValueError, match="symmetric"):
        bures_wasserstein(np.zeros(2), [[1.0, 0.5], [0.0, 1.0]], np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="diverges"):
        ula_stationary_variance([1.0, 0.1], 0.0, 0.3)
    with pytest.raises(ValueError, match="n_samples"):
        expected_w2_error([1.0], 0, alphas, sigmas)
    with pytest.raises(ValueError, match="tol"):
        plan_n_steps([1.0], 0.0, noise_floor=0.1)
