"""Tests of sklearn_diffsample.datasets against independent references."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy import integrate
from scipy.special import j0
from sklearn.datasets import load_digits, make_moons
from sklearn.decomposition import PCA

from sklearn_diffsample.datasets import (
    TARGETS,
    Checkerboard,
    Moons,
    Rings,
    Target2D,
    TwoSpirals,
    load_digits_pca,
    make_target,
)

# Bounding boxes of the noiseless laws at default parameters (documented in
# each class), widened by 8 noise stds: the mass outside is below 1e-14.
_SUPPORT = {
    "checkerboard": ((-2.0, 2.0), (-2.0, 2.0)),
    "two_spirals": ((-3.0, 3.0), (-3.0, 3.0)),
    "rings": ((-3.0, 3.0), (-3.0, 3.0)),
    "moons": ((-1.0, 2.0), (-0.5, 1.0)),
}

# Frequencies for characteristic-function checks, within the band the grids
# resolve (grid spacing 0.8 noise stds: aliases sit at |omega| > 78).
_OMEGAS = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, -2.0], [2.5, 0.5]])


def _moons_arms():
    """(t_lo, t_hi, curve(t) -> (2, m), pdf of t) for each moon, from the docs."""

    def pdf(t):
        return 1 / np.pi

    return [
        (0.0, np.pi, lambda t: np.array([np.cos(t), np.sin(t)]), pdf),
        (0.0, np.pi, lambda t: np.array([1 - np.cos(t), 0.5 - np.sin(t)]), pdf),
    ]


def _spiral_arms(n_turns=1.5, radius=3.0):
    """(t_lo, t_hi, curve(t) -> (2, m), pdf of t) for each arm, from the docs."""
    T = 2 * np.pi * n_turns
    a = radius / T

    def pdf(t):
        return 2 * t / T**2

    def arm(sign):
        return lambda t: sign * a * t * np.array([-np.cos(t), np.sin(t)])

    return [(0.0, T, arm(1.0), pdf), (0.0, T, arm(-1.0), pdf)]


def _curve_log_density_quad(arms, noise, x):
    """log p(x) of an equal-weight mixture of blurred curves by adaptive quad.

    Each integrand is scaled by exp(d_min^2 / (2 noise^2)) so it peaks near 1,
    and quad is told where the local minima of the distance lie.
    """
    var = noise**2
    logs = []
    for lo, hi, curve, pdf in arms:
        t_fine = np.linspace(lo, hi, 20001)
        sq = ((curve(t_fine).T - x) ** 2).sum(1)
        inner = (sq[1:-1] <= sq[:-2]) & (sq[1:-1] <= sq[2:])
        sq_min = sq.min()

        def f(t):
            return pdf(t) * np.exp(-(((curve(t) - x) ** 2).sum() - sq_min) / (2 * var))

        val = integrate.quad(
            f, lo, hi, points=t_fine[1:-1][inner], limit=2000, epsabs=0, epsrel=1e-13
        )[0]
        logs.append(np.log(val) - sq_min / (2 * var))
    return np.logaddexp.reduce(logs) - np.log(len(arms)) - np.log(2 * np.pi * var)


def _checkerboard_log_density_quad(x, noise=0.05):
    """Uniform on the dark cells convolved with N(0, noise^2), by quad per axis.

    Each axis factor is int_a^{a+1} N(x_i - u; 0, noise^2) du, with the
    exponent shifted by its minimum over the cell so far queries do not
    underflow.
    """
    def log_axis(xi, a):
        gap = max(a - xi, xi - a - 1.0, 0.0)
        val = integrate.quad(
            lambda u: np.exp(-((xi - u) ** 2 - gap**2) / (2 * noise**2)),
            a, a + 1.0, points=[xi] if a < xi < a + 1 else None, epsabs=0, epsrel=1e-13,
        )[0]
        log_norm = 0.5 * np.log(2 * np.pi * noise**2)
        return np.log(val) - gap**2 / (2 * noise**2) - log_norm

    corners = np.arange(4) - 2.0
    terms = [
        log_axis(x[0], corners[i]) + log_axis(x[1], corners[j])
        for i in range(4) for j in range(4) if (i + j) % 2 == 0
    ]
    return np.logaddexp.reduce(terms) - np.log(8)


def _rings_log_density_quad(x, radii=(1.0, 2.0, 3.0), noise=0.1):
    """Average over the angle of N(x; r (cos phi, sin phi), noise^2 I), by quad.

    |x - r e(phi)|^2 = (rho - r)^2 + 2 rho r (1 - cos(phi - phi_x)); the first
    term is taken out of the integral so far queries do not underflow.
    """
    rho, var = np.linalg.norm(x), noise**2
    logs = []
    for r in radii:
        val = integrate.quad(
            lambda psi: np.exp(-rho * r * (1 - np.cos(psi)) / var) / (2 * np.pi),
            -np.pi, np.pi, points=[0.0], epsabs=0, epsrel=1e-13, limit=500,
        )[0]
        logs.append(np.log(val) - (rho - r) ** 2 / (2 * var))
    return np.logaddexp.reduce(logs) - np.log(len(radii)) - np.log(2 * np.pi * var)


@pytest.fixture(scope="module")
def lattices():
    """Per-module cache of the lattice evaluations, filled on first use."""
    return {}


def _lattice(cache, name):
    """Target, lattice spacing h = 0.8 noise std over its box, points, log p."""
    if name not in cache:
        target = make_target(name)
        h = 0.8 * target.noise
        pad = 8 * target.noise
        (x0, x1), (y0, y1) = _SUPPORT[name]
        xs = np.arange(x0 - pad, x1 + pad + h, h)
        ys = np.arange(y0 - pad, y1 + pad + h, h)
        points = np.stack(np.meshgrid(xs, ys, indexing="ij"), -1).reshape(-1, 2)
        cache[name] = (target, h, points, target.log_density(points))
    return cache[name]


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_density_integrates_to_one(lattices, name):
    # The lattice sum of a density smooth on the noise scale is the trapezoid
    # rule with aliasing error ~exp(-2 pi^2 (noise / h)^2) = 4e-14; the mass
    # outside the box is below 1e-14.  1e-9 leaves room for rounding.
    _, h, _, log_p = _lattice(lattices, name)
    assert abs(h * h * np.exp(log_p).sum() - 1.0) < 1e-9


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_sampler_matches_density_in_fourier(lattices, name):
    # Empirical characteristic function vs the lattice integral of the density,
    # at 5 frequencies (10 real features), each within 5 standard errors:
    # false-alarm rate ~6e-6 for the whole check.
    target, h, points, log_p = _lattice(lattices, name)
    X = target.sample(20000, random_state=0)
    phase_s, phase_g = X @ _OMEGAS.T, points @ _OMEGAS.T
    feats_s = np.hstack([np.cos(phase_s), np.sin(phase_s)])
    feats_g = np.hstack([np.cos(phase_g), np.sin(phase_g)])
    expected = h * h * np.exp(log_p) @ feats_g
    stderr = feats_s.std(axis=0, ddof=1) / np.sqrt(len(X))
    assert np.all(np.abs(feats_s.mean(axis=0) - expected) < 5 * stderr + 1e-9)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_sampler_matches_density_in_mean_log_density(lattices, name):
    # E_{x ~ sampler}[log p(x)] vs the lattice integral of p log p (the negative
    # entropy), within 5 standard errors of the sample mean.
    target, h, _, log_p = _lattice(lattices, name)
    sample_log_p = target.log_density(target.sample(4000, random_state=1))
    expected = h * h * np.sum(np.exp(log_p) * log_p)
    stderr = sample_log_p.std(ddof=1) / np.sqrt(len(sample_log_p))
    assert abs(sample_log_p.mean() - expected) < 5 * stderr


def _rings_cf(omegas, radii, noise):
    gauss = np.exp(-0.5 * noise**2 * (omegas**2).sum(1))
    freq = np.linalg.norm(omegas, axis=1)[:, None]
    return gauss * j0(freq * np.asarray(radii)).mean(1)


def _checkerboard_cf(omegas, noise):
    gauss = np.exp(-0.5 * noise**2 * (omegas**2).sum(1))
    corners = np.arange(4) - 2.0
    centres = np.array(
        [[corners[i] + 0.5, corners[j] + 0.5]
         for i in range(4) for j in range(4) if (i + j) % 2 == 0]
    )
    # Uniform on a unit interval centred at c: exp(i w c) sin(w / 2) / (w / 2).
    sinc = np.prod(np.sinc(omegas / (2 * np.pi)), axis=1)
    return gauss * sinc * np.exp(1j * omegas @ centres.T).mean(1)


@pytest.mark.parametrize("name", ["checkerboard", "rings"])
def test_closed_form_characteristic_functions(lattices, name):
    # Rings and checkerboard have closed-form characteristic functions: an
    # independent check of the density (to lattice accuracy) and of the
    # sampler (within 5 standard errors).
    target, h, points, log_p = _lattice(lattices, name)
    if name == "rings":
        cf = _rings_cf(_OMEGAS, target.radii, target.noise)
    else:
        cf = _checkerboard_cf(_OMEGAS, target.noise)
    lattice = h * h * np.exp(log_p) @ np.exp(1j * points @ _OMEGAS.T)
    assert_allclose(lattice, cf, rtol=0, atol=1e-9)
    X = target.sample(20000, random_state=2)
    ecf = np.exp(1j * X @ _OMEGAS.T)
    stderr = np.hypot(ecf.real.std(0), ecf.imag.std(0)) / np.sqrt(len(X))
    assert np.all(np.abs(ecf.mean(0) - cf) < 5 * stderr)


# Query points: on the mass, between structures, 2 to 4 units away (where
# the integrand along a curve is sharply peaked), and beyond 3.2 units, where
# the curve targets refine their panels at noise 0.1; the last two lie off an
# end of the moons / of a spiral arm, where unrefined panels are off by 1e-7
# and 1e-9 relative.
_QUERIES = np.array(
    [
        [0.5, 0.5], [0.02, -1.37], [1.0, 0.1], [-2.3, 1.9],
        [2.2, 3.7], [-1.2, -3.2], [3.75, -1.85], [2.8, -4.0], [-5.0, 6.0],
        [-3.4, -11.3], [9.1, -6.5],
    ]
)


@pytest.mark.parametrize(
    "target, reference",
    [
        (Moons(), lambda x: _curve_log_density_quad(_moons_arms(), 0.1, x)),
        (TwoSpirals(), lambda x: _curve_log_density_quad(_spiral_arms(), 0.1, x)),
        (Rings(), _rings_log_density_quad),
        (Checkerboard(), _checkerboard_log_density_quad),
    ],
    ids=["moons", "two_spirals", "rings", "checkerboard"],
)
def test_log_density_matches_adaptive_quadrature(target, reference):
    expected = np.array([reference(x) for x in _QUERIES])
    assert_allclose(target.log_density(_QUERIES), expected, rtol=1e-11, atol=1e-10)


def _distance_to_support(name, X):
    """Distance from each row of X to the noiseless support (default targets)."""
    if name == "rings":
        return np.abs(np.linalg.norm(X, axis=1)[:, None] - [1.0, 2.0, 3.0]).min(1)
    if name == "checkerboard":
        lo = np.array(
            [[i - 2.0, j - 2.0] for i in range(4) for j in range(4) if (i + j) % 2 == 0]
        )
        gap = np.maximum(np.maximum(lo - X[:, None], X[:, None] - lo - 1.0), 0.0)
        return np.sqrt((gap**2).sum(-1)).min(1)
    arms = _moons_arms() if name == "moons" else _spiral_arms()
    dist = np.inf
    for lo, hi, curve, _ in arms:
        start = curve(np.linspace(lo, hi, 20001)).T
        seg = np.diff(start, axis=0)
        start = start[:-1]
        # Exact distance to the polyline's segments; a chord strays from the
        # curve by at most step^2 * curvature / 8 < step^2 here.
        frac = ((X[:, None] - start) * seg).sum(-1) / (seg * seg).sum(-1)
        foot = start + np.clip(frac, 0.0, 1.0)[..., None] * seg
        step = np.linalg.norm(seg, axis=1).max()
        arm_dist = np.linalg.norm(X[:, None] - foot, axis=-1).min(1) - step**2
        dist = np.minimum(dist, arm_dist)
    return dist


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_log_density_finite_and_gaussian_tailed_far_away(name):
    # p(x) <= C exp(-d^2 / (2 noise^2)), d the distance to the noiseless
    # support, C = 1 / cell area (checkerboard) or 1 / (2 pi noise^2) (the
    # others); the prefactor of the tail keeps p within ~40 nats of that.
    X = np.array([[50.0, 50.0], [-300.0, 20.0], [1e3, -1e3]])
    target = make_target(name)
    log_p = target.log_density(X)
    assert np.all(np.isfinite(log_p))
    log_c = 0.0 if name == "checkerboard" else -np.log(2 * np.pi * target.noise**2)
    bound = log_c - _distance_to_support(name, X) ** 2 / (2 * target.noise**2)
    assert np.all(log_p <= bound + 1e-9 * np.abs(bound))
    assert np.all(log_p >= bound - 40.0 - 1e-9 * np.abs(bound))


# ------------------------------------------------------------------- moons
def test_moons_law_matches_make_moons():
    # Exact moments of the law: mean (1/2, 1/4); covariance
    # [[3/4, 1/8 - 1/pi], [1/8 - 1/pi, 9/16 - 1/pi]] + noise^2 I.  Both
    # samplers must match them; at n = 1e5 the standard errors are <= 0.003,
    # so 0.015 is 5 of them.
    noise, n = 0.1, 100_000
    mean = np.array([0.5, 0.25])
    cov = np.array([[0.75, 0.125 - 1 / np.pi], [0.125 - 1 / np.pi, 0.5625 - 1 / np.pi]])
    cov += noise**2 * np.eye(2)
    ours = Moons(noise=noise).sample(n, random_state=0)
    theirs, _ = make_moons(n, noise=noise, random_state=0)
    for X in (ours, theirs):
        assert_allclose(X.mean(0), mean, atol=0.015)
        assert_allclose(np.cov(X.T), cov, atol=0.015)


def test_moons_density_fits_make_moons_data():
    # make_moons' points score the same mean log-density as our own draws,
    # within 5 standard errors of the difference.
    target = Moons(noise=0.1)
    theirs = target.log_density(make_moons(4000, noise=0.1, random_state=1)[0])
    ours = target.log_density(target.sample(4000, random_state=1))
    stderr = np.hypot(theirs.std(), ours.std()) / np.sqrt(4000)
    assert abs(theirs.mean() - ours.mean()) < 5 * stderr


# ------------------------------------------------------- API and behaviour
def test_registry_and_make_target():
    assert set(TARGETS) == {"checkerboard", "two_spirals", "rings", "moons"}
    for name, cls in TARGETS.items():
        target = make_target(name, noise=0.2)
        assert isinstance(target, cls) and isinstance(target, Target2D)
        assert target.noise == 0.2
    rings = make_target("rings", radii=[1, 2])
    assert repr(rings) == "Rings(radii=(1.0, 2.0), noise=0.1)"
    with pytest.raises(ValueError, match="choose one of"):
        make_target("swiss_roll")


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_sampling_is_reproducible(name):
    target = make_target(name)
    a = target.sample(50, random_state=0)
    assert a.shape == (50, 2) and a.dtype == np.float64
    assert_array_equal(a, target.sample(50, random_state=0))
    assert_array_equal(a, target.sample(50, random_state=np.random.RandomState(0)))
    assert not np.array_equal(a, target.sample(50, random_state=1))
    assert_array_equal(
        target.sample(7, random_state=np.random.default_rng(3)),
        target.sample(7, random_state=np.random.default_rng(3)),
    )
    assert target.sample(0, random_state=0).shape == (0, 2)


def test_parameters_change_the_law():
    # The parameters mean what the docstrings say, checked on the samples.
    X = Checkerboard(n_cells=2, cell_size=3.0, noise=1e-3).sample(2000, random_state=0)
    assert np.all(np.abs(X) < 3.01)
    dark = (np.floor(X[:, 0] / 3.0) + np.floor(X[:, 1] / 3.0)) % 2 == 0
    assert dark.mean() > 0.99
    X = TwoSpirals(n_turns=2.0, radius=1.5, noise=1e-3).sample(2000, random_state=0)
    assert np.linalg.norm(X, axis=1).max() == pytest.approx(1.5, abs=0.01)
    X = Rings(radii=(0.5, 4.0), noise=1e-3).sample(2000, random_state=0)
    r = np.linalg.norm(X, axis=1)
    assert np.all((np.abs(r - 0.5) < 0.01) | (np.abs(r - 4.0) < 0.01))


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (Moons, {"noise": 0.0}),
        (Rings, {"radii": (1.0, -1.0)}),
        (Checkerboard, {"n_cells": 0}),
        (TwoSpirals, {"n_turns": -1.0}),
    ],
)
def test_bad_parameters_are_rejected(cls, kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        cls(**kwargs)


def test_bad_inputs_are_rejected():
    target = Moons()
    with pytest.raises(ValueError, match="n_samples"):
        target.sample(-1)
    with pytest.raises(ValueError, match="n_samples"):
        target.sample(2.5)
    with pytest.raises(ValueError, match=r"shape \(n_queries, 2\)"):
        target.log_density(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        target.log_density([[0.0, np.nan]])
    with pytest.raises(ValueError, match="2D array"):
        target.log_density([0.0, 1.0])


# ------------------------------------------------------------------ digits
@pytest.mark.parametrize("whiten", [False, True])
def test_load_digits_pca(whiten):
    Z, pca, y = load_digits_pca(n_components=10, whiten=whiten)
    digits = load_digits()
    assert Z.shape == (1797, 10) and Z.dtype == np.float64
    assert_array_equal(y, digits.target)
    reference = PCA(n_components=10, whiten=whiten).fit(digits.data)
    # Principal axes are defined up to sign: compare |cosines|.
    cosines = (pca.components_ * reference.components_).sum(1)
    assert_allclose(np.abs(cosines), 1.0, atol=1e-10)
    assert_allclose(Z.mean(0), 0.0, atol=1e-10)
    expected_var = 1.0 if whiten else reference.explained_variance_
    assert_allclose(Z.var(0, ddof=1), expected_var, rtol=1e-10)
    # The latent maps back to pixel space through the fitted PCA.
    residual = digits.data - pca.inverse_transform(Z)
    assert_allclose(
        (residual**2).sum() / ((digits.data - digits.data.mean(0)) ** 2).sum(),
        1.0 - reference.explained_variance_ratio_.sum(),
        rtol=1e-8,
    )
