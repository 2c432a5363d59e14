"""MM-SOLD: moment-matched score-smoothed overdamped Langevin particles.

Particles follow Langevin dynamics on the smoothed potential

    V(z) = E_eps[U(z + sigma eps)],   U = -log pi_delta,

with pi_delta the Gaussian KDE of bandwidth delta, while each swarm keeps the
data's mean and covariance exactly (Yao & Paulin, arXiv 2605.14276).  The
one-particle limit law is the tilted Gibbs density

    rho(z) = exp(-V(z) - lambda^T z - (z - mu)^T Lambda (z - mu) / 2) / Z,

which ``fit`` calibrates so that ``score_samples`` is a normalised density.
Every sum over patterns goes through :class:`PatternPosterior`.
"""

import warnings
from dataclasses import dataclass
from functools import partial
from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from ._base import (
    BaseDiffusionDensity,
    check_bandwidth_range,
    index_seed,
    resolve_bandwidth,
)
from ._calibration import (
    DefensiveProposal,
    importance_draws,
    importance_log_normalizer,
    solve_moment_tilt,
)
from ._clustered import (
    PatternClusters,
    default_n_clusters,
    denoiser_is_clustered,
    patterns_per_query,
    sampling_mean,
)
from ._manifold import from_particles, retract, symmetric_sqrt, tangent_project, to_swarm
from ._matching import VarianceMatchingMixin, covariance_spectrum
from ._parallel import chunk_sizes, fit_phase, preferred_backend, run_chunks, seed_sequence
from ._posterior import PatternPosterior

__all__ = ["MMSOLDSampler", "smoothed_gradient"]

# "auto" score estimator: exact engine sums while N * d stays below this and N
# below the clustered means' 10,000 patterns, the clustered means beyond (the
# two-spirals target in 2-D, N = 1e4, 2000 samples: 3.6 s against 13.6 s, the
# same sliced W2 and C2ST AUC to an exact run with another seed, same-seed
# samples a median 2e-4 apart).  On a 20-component mixture in d = 16 (N = 1e4, 1000
# samples) they sampled 5.9x faster than exact sums (8.1 s against 48.1 s),
# same-seed samples a median 0.006 from their exact twins, C2ST AUC 0.508
# against an exact run with another seed (exact: 0.497); the knn estimator took
# 9.3 s for 0.537, its samples on other trajectories.  At N = 1e5 a particle
# step cost 579 us against 1368 us with the knn estimator, whose gradient was
# further from the exact one (RMS 0.33 against 0.18; Monte Carlo error 0.40;
# measured).  In 2-D the knn estimator (an exact k-d tree there) sampled two
# spirals at N = 1e5 3.3x faster, but a classifier told its samples from exact
# ones (C2ST AUC 0.533 against 0.516 clustered and 0.512 between exact runs;
# measured), so it is not chosen by dimension.
_AUTO_EXACT_MAX_WORK = 100_000
# Fixed antithetic draws (pairs x 2) that define V in score_samples.
_SCORE_DRAWS = 32
# Defensive importance sampling of log Z: at most _IS_DRAWS draws, fewer where
# each energy costs many pattern sums (but at least _IS_MIN_DRAWS).
_IS_DRAWS = 20_000
_IS_MIN_DRAWS = 4_000
_IS_WORK = 2e7
# The moment tilt is fitted on max(_TILT_MIN_DRAWS, _TILT_DRAWS_PER_MULTIPLIER *
# number of multipliers) draws of the same proposal, at most _IS_DRAWS.
_TILT_MIN_DRAWS = 4_000
_TILT_DRAWS_PER_MULTIPLIER = 20
# The tilt's d + d (d + 1) / 2 multipliers need at least 4 of the _IS_DRAWS
# draws each: on a 10-component mixture (N = 500) at d = 96 (4.2 a multiplier)
# log Z's ESS was 4.6% and its standard error 0.072 nats, the tilted law still
# 0.4 nats a row above sigma = 0; at d = 128 (2.4) the ESS was 0.000, the error
# 0.72 nats, the law 5.9 nats below sigma = 0, after a 195-s fit in 4 GB;
# from d = 199 the draws are fewer than the multipliers (measured).  So d = 98
# is the largest with a tilt: "auto" smoothing is 0 beyond, a set one refused.
_TILT_MAX_MULTIPLIERS = _IS_DRAWS // 4
# Below this ESS fraction, or above this standard error (nats), the
# log-normaliser is flagged as unreliable.
_POOR_ESS = 0.1
_POOR_LOG_Z_SE = 0.05
# h * lambda_max(Sigma*) / delta^2 of step_size="auto", and the warning level.
_AUTO_STIFFNESS = 0.5
_MAX_STIFFNESS = 2.0


# --------------------------------------------------------------- the score
def smoothed_gradient(posterior, Z, s2, sigma, n_draws, rng, knn=None, clusters=None):
    """Monte Carlo grad V at each particle, with antithetic draws.

    grad V(z) = (z - E_eps[m_delta(z + sigma eps)]) / delta^2, m_delta the
    engine's posterior mean at variance s2 = delta^2; the -sigma eps/delta^2
    term of grad U has mean zero and is left out.

    Parameters
    ----------
    posterior : PatternPosterior
    Z : ndarray of shape (P, d)
    s2 : float
        delta^2.
    sigma : float
        Smoothing width; 0 gives the exact grad U.
    n_draws : int
        Even number M of perturbations per particle (M/2 antithetic pairs).
    rng : numpy.random.Generator
    knn : tuple (K, L) or None
        None: every pattern (the engine's ``sampling_mean``, float32
        weights).  (K, L): K nearest patterns of the unperturbed particle plus
        L uniform remainder patterns, shared by its perturbations (MM-SOLD
        Sec. 3.4).
    clusters : PatternClusters or None
        Where ``knn`` is None: the clustered means over this partition of
        the posterior's patterns instead of sums over every pattern.

    Returns
    -------
    ndarray of shape (P, d)
    """
    P, d = Z.shape
    if sigma > 0:
        half = rng.standard_normal((P, n_draws // 2, d))
        queries = Z[:, None, :] + sigma * np.concatenate([half, -half], axis=1)
    else:
        queries = Z[:, None, :]
    if knn is None:
        mean = sampling_mean(posterior, queries.reshape(-1, d), s2, clusters)
        mean = mean.reshape(queries.shape)
    else:
        _, neighbours = posterior.kneighbors(Z, knn[0])
        mean = posterior.query_remainder(queries, s2, neighbours, knn[1], rng).mean
    return (Z - mean.mean(axis=1)) / s2


def _smoothed_energy(posterior, Z, s2, eps):
    """V(z) ~ -mean_j log pi_delta(z + eps_j), eps fixed (common random
    numbers), and log pi_delta(z).

    Exact sums share one matrix product over the draws and z itself
    (``PatternPosterior.offset_log_density``: 12-23x faster than a sum per
    draw on 99 to 10,000 patterns, measured); the column of z is the
    importance proposal's KDE part.  It is computed in scoring too, so that
    V is the same floating-point function in the calibration and in
    ``score_samples``.  Exact whatever the score estimator: certified top-k
    sums per draw made the fit 10x slower at N = 1e5, d = 2 (kd-tree: 61 s
    against 6.3 s) and 1.6x at N = 3e5, d = 16 (cells), where a kernel of
    the likelihood-optimal width spans far more than k patterns and most
    certificates fail (measured).
    """
    d = Z.shape[1]
    log_pi = posterior.offset_log_density(Z, s2, np.vstack([eps, np.zeros((1, d))]))
    return -log_pi[:, :-1].mean(axis=1), log_pi[:, -1]


# ------------------------------------------------------------ integrators
def lm_step(Y, G_Y, h, xi_prev, xi_new):
    """Leimkuhler-Matthews step on the moment manifold (noise averaged over two steps)."""
    return retract(Y + tangent_project(Y, -h * G_Y + np.sqrt(h / 2.0) * (xi_prev + xi_new)))


def em_step(Y, G_Y, h, xi_new):
    """Euler-Maruyama step on the moment manifold."""
    return retract(Y + tangent_project(Y, -h * G_Y + np.sqrt(2.0 * h) * xi_new))


@dataclass
class _Dynamics:
    """Everything a chunk needs, in internal coordinates (picklable for process workers)."""

    posterior: PatternPosterior
    s2: float
    sigma: float
    n_draws: int
    knn: tuple
    mu: np.ndarray
    A: np.ndarray
    A_inv: np.ndarray
    h: float
    n_steps: int
    integrator: str
    tilt: tuple = None
    clusters: object = None

    def grad(self, Z, rng):
        return smoothed_gradient(self.posterior, Z, self.s2, self.sigma, self.n_draws,
                                 rng, self.knn, self.clusters)

    def pattern_terms(self, n_particles):
        """Pattern terms that ``n_particles`` particles sum over ``n_steps`` gradients."""
        draws = self.n_draws if self.sigma > 0 else 1
        per_draw = (sum(self.knn) if self.knn is not None
                    else patterns_per_query(self.posterior, self.clusters))
        return n_particles * self.n_steps * draws * per_draw

    def draw_kde(self, size, rng):
        """``size`` draws from pi_delta: a random pattern plus delta * noise."""
        post = self.posterior
        centres = post.take(rng.integers(0, post.n_patterns, size))
        return centres + np.sqrt(self.s2) * rng.standard_normal(centres.shape)

    def swarm(self, size, rng, report):
        """One moment-matched swarm of ``size`` particles."""
        mu, A, h = self.mu, self.A, self.h
        Y = from_particles(self.draw_kde(size, rng), mu, self.A_inv)
        lm = self.integrator == "lm"
        xi_prev = rng.standard_normal(Y.shape) if lm else None
        for _ in range(self.n_steps):
            Z = to_swarm(Y, mu, A)
            G_Z = self.grad(Z, rng)
            xi = rng.standard_normal(Y.shape)
            if lm:
                Y, xi_prev = lm_step(Y, G_Z @ A, h, xi_prev, xi), xi
            else:
                Y = em_step(Y, G_Z @ A, h, xi)
            report(1)
        return to_swarm(Y, mu, A)

    def independent(self, size, rng, report, tilted=True):
        """Uncoupled particles on the tilted energy (on V alone: plain SOLD),
        preconditioned by Sigma*."""
        mu, A, h = self.mu, self.A, self.h
        lam, Lam = self.tilt if tilted else (0.0, np.zeros((len(mu), len(mu))))
        Sigma = A @ A
        Z = self.draw_kde(size, rng)
        lm = self.integrator == "lm"
        xi_prev = rng.standard_normal(Z.shape) if lm else None
        for _ in range(self.n_steps):
            G = self.grad(Z, rng) + lam + (Z - mu) @ Lam
            xi = rng.standard_normal(Z.shape)
            noise = np.sqrt(h / 2.0) * (xi_prev + xi) if lm else np.sqrt(2.0 * h) * xi
            Z = Z - h * G @ Sigma + noise @ A
            xi_prev = xi
            report(1)
        return Z


# ------------------------------------------------------------ fit helpers
def _swarm_and_draws(d, batch_size, n_smoothing_draws):
    """Particles per swarm and smoothing draws per particle, checked."""
    swarm_size = max(5 * (d + 1), 500) if batch_size is None else batch_size
    if swarm_size < d + 1:
        raise ValueError(
            f"batch_size={swarm_size} is too small for a moment-matched swarm in "
            f"{d} dimensions: it needs at least n_features + 1 = {d + 1} particles."
        )
    n_draws = (8 if d <= 10 else 32) if n_smoothing_draws == "auto" else n_smoothing_draws
    if n_draws % 2:
        raise ValueError(f"n_smoothing_draws must be even (antithetic pairs), got {n_draws}.")
    return swarm_size, n_draws


def _n_multipliers(d):
    """The moment tilt's multipliers: d linear and d (d + 1) / 2 quadratic."""
    return d + d * (d + 1) // 2


def _tilt_fits(d):
    """Whether the moment tilt's draws can fix its multipliers in d dimensions."""
    return _n_multipliers(d) <= _TILT_MAX_MULTIPLIERS


def _check_tilt_size(d, smoothing):
    """Refuse, before any work, a set smoothing whose tilt its draws cannot fix."""
    if smoothing == "auto" or float(smoothing) == 0 or _tilt_fits(d):
        return
    d_max = max(k for k in range(1, d) if _tilt_fits(k))
    raise ValueError(
        f"smoothing={smoothing} needs a moment tilt of d + d (d + 1) / 2 = "
        f"{_n_multipliers(d):,} multipliers at d = {d}, more than its {_IS_DRAWS:,} "
        f"importance draws can fix (at most {_TILT_MAX_MULTIPLIERS:,}, d <= {d_max}). "
        "Reduce the dimension first (for example with PCA), or pass smoothing=0 or "
        "'auto' (0 from this dimension on: Langevin on the variance-matched KDE, "
        "whose density needs no tilt)."
    )


def _resolve_scales(Z, bandwidth, smoothing, spectrum):
    """delta from a number or a rule ("auto": held-out likelihood of pi_delta,
    mapped to the data's covariance when Z's covariance ``spectrum`` is
    given), and sigma from a number or "auto" (delta, or 0 where the tilt
    has too many multipliers), both checked."""
    matched = spectrum is not None
    delta = check_bandwidth_range(resolve_bandwidth(bandwidth, Z, matched, spectrum))
    if smoothing == "auto":
        sigma = delta if _tilt_fits(Z.shape[1]) else 0.0
    else:
        sigma = float(smoothing)
    if sigma > 0:
        check_bandwidth_range(sigma, name="smoothing")
    return float(delta), float(sigma)


def _step_size(step_size, Sigma, delta):
    """h, "auto" at stiffness h lambda_max(Sigma*) / delta^2 = 0.5; a warning above 2."""
    lam_max = float(np.linalg.eigvalsh(Sigma)[-1])
    auto = _AUTO_STIFFNESS * delta**2 / lam_max
    h = auto if step_size == "auto" else float(step_size)
    if h * lam_max / delta**2 > _MAX_STIFFNESS:
        warnings.warn(
            f"step_size={h:.3g} gives h * lambda_max(Sigma*) / delta^2 = "
            f"{h * lam_max / delta**2:.2f} > {_MAX_STIFFNESS}: the dynamics may be "
            f"unstable. Use step_size='auto' ({auto:.3g}).", UserWarning, stacklevel=5)
    return h


def _n_importance_draws(n_patterns):
    """Most draws for log Z: _IS_DRAWS, fewer where each energy costs many pattern sums."""
    n = int(np.clip(_IS_WORK / (_SCORE_DRAWS * n_patterns), _IS_MIN_DRAWS, _IS_DRAWS))
    return 10 * (n // 10)


def _calibrate(est, tilt_seed, draw_seed):
    """The limit law's fixed smoothing draws, multipliers and log Z, set on ``est``."""
    d = est.n_features_in_
    rng = np.random.default_rng(draw_seed)
    half = rng.standard_normal((_SCORE_DRAWS // 2, d))
    est.score_noise_ = np.concatenate([half, -half])
    if est.smoothing_ == 0:
        est.tilt_linear_, est.tilt_quadratic_ = np.zeros(d), np.zeros((d, d))
        est.log_normalizer_, est.calibration_ess_, est.log_normalizer_se_ = 0.0, 1.0, 0.0
        return
    mu, A = est.swarm_mean_, est.swarm_scale_
    proposal = DefensiveProposal(est.posterior_, est.bandwidth_, mu, A)
    n_max = _n_importance_draws(est.posterior_.n_patterns)
    # The tilt is fitted on its own draws: log Z estimated on the same ones
    # would be optimistic by about dim(theta) / (2 n ESS) nats.
    tilt_rng = np.random.default_rng(tilt_seed)
    n_multipliers = _n_multipliers(d)
    n_tilt = min(max(_TILT_MIN_DRAWS, _TILT_DRAWS_PER_MULTIPLIER * n_multipliers), _IS_DRAWS)
    with fit_phase(est, f"moment tilt ({n_multipliers} multipliers, {n_tilt} draws)"):
        Z, log_w = importance_draws(est._potential, proposal, n_tilt, tilt_rng,
                                    rows=est._score_rows)
        lam, Lam, converged = solve_moment_tilt(log_w, Z - mu, A @ A)
    est.tilt_linear_, est.tilt_quadratic_ = lam, Lam
    with fit_phase(est, f"log Z (at most {n_max} draws)"):
        log_z, ess, se = importance_log_normalizer(est._tilted_energy, proposal, n_max, rng,
                                                   rows=est._score_rows)
    # log Z of the form exp(-V - lambda^T z - ...) (docs/design.rst): lambda^T mu moves out.
    est.log_normalizer_ = log_z - float(lam @ mu)
    est.calibration_ess_, est.log_normalizer_se_ = ess, se
    if not converged or np.linalg.eigvalsh(Lam)[0] <= -1.0 / est.bandwidth_**2:
        warnings.warn(
            "The moment tilt of the limit law did not converge to a normalisable "
            "density: score_samples may be off. Lower smoothing, or reduce the "
            "dimension (e.g. PCA) before fitting.", UserWarning)
    elif ess < _POOR_ESS or se > _POOR_LOG_Z_SE:
        warnings.warn(
            f"The importance sampler of log Z has an effective sample size of "
            f"{100 * ess:.1f}% and an estimated standard error of {se:.3g} nats (an "
            "underestimate when the ESS is small): score_samples may be off by a "
            "constant. Lower smoothing, or reduce the dimension (e.g. PCA) before "
            "fitting.", UserWarning)


# -------------------------------------------------------------- estimator
class MMSOLDSampler(VarianceMatchingMixin, BaseDiffusionDensity):
    """Moment-matched score-smoothed Langevin sampler (MM-SOLD).

    Swarms of particles run overdamped Langevin dynamics on the smoothed
    potential V(z) = E[U(z + sigma eps)], U = -log pi_delta and pi_delta the
    Gaussian KDE of bandwidth delta, while the mean and covariance of every
    swarm equal those of pi_delta exactly (mu* = mean of the data,
    Sigma* = covariance of the data + delta^2 I).  Smoothing keeps particles
    off the training points; moment matching keeps the cloud from spreading.
    By default (``match_variance=True``) the particles then leave through the
    map ``shrinkage_`` that takes Sigma* back to the data's covariance, as
    the guided sampler's do.
    No training is involved: ``fit`` stores the patterns and calibrates the
    limit law for :meth:`score_samples`.

    Parameters
    ----------
    bandwidth : float, "auto", "scott" or "silverman", default="auto"
        delta, the KDE bandwidth of the potential, in internal units (a
        multiple of the training data's standard deviations, see
        ``coordinates``).  "auto" maximises the held-out log-likelihood of
        pi_delta (about 3 exact engine passes), mapped to the data's
        covariance with ``match_variance`` (4-16 passes more); "scott" and
        "silverman" are the rules of ``resolve_bandwidth``.
    smoothing : float >= 0 or "auto", default="auto"
        sigma, the width of the log-domain smoothing.  "auto" is delta (see
        Notes) up to d = 98, and 0 beyond, where the moment tilt that
        calibrates the density has more multipliers (d + d (d + 1) / 2)
        than its draws can fix; a positive value is refused there.  0 gives
        Langevin on pi_delta itself, whose density is then the KDE in
        closed form.
    n_smoothing_draws : int or "auto", default="auto"
        M, the even number of antithetic perturbations per particle and step
        for the Monte Carlo grad V.  "auto": 8 for d <= 10, else 32.
    score_estimator : {"exact", "knn", "clustered", "auto"}, default="auto"
        How the dynamics estimate the score.  "exact": full engine sums;
        "knn": the ``n_neighbors`` nearest patterns of each particle plus
        ``n_remainder`` uniformly drawn others with importance weights
        (sublinear in N with an approximate index); "clustered": the
        guided sampler's clustered means (exact sums over the clusters that
        can carry a draw's posterior, Gaussian surrogates for the others);
        "auto": exact while N * d <= 1e5 and N < 10,000, else clustered.
        The densities (the calibration's and ``score_samples``) are exact sums
        either way.
    n_neighbors : int, default=50
        K of the "knn" estimator.
    n_remainder : int, default=50
        L of the "knn" estimator.
    integrator : {"lm", "em"}, default="lm"
        Leimkuhler-Matthews (noise averaged over consecutive steps; second
        order for the invariant law) or Euler-Maruyama.  Read at each
        ``sample``.
    step_size : float or "auto", default="auto"
        h, in internal coordinates, where the drift -Sigma* grad V has
        stiffness lambda_max(Sigma*)/delta^2.  "auto" is
        h = 0.5 delta^2 / lambda_max(Sigma*); beyond a stiffness ratio of
        about 2 the dynamics degrade and a warning is issued.  Particles relax
        over a time n_steps * h (scaled by Sigma*).
    n_steps : int, default=50
        Langevin steps per swarm, read at each ``sample``.  With the "auto"
        step size a particle diffuses about delta per step, so 50 steps relax
        the swarm well past the kernel's width.
    interaction : {"swarm", "independent", "sold"}, default="swarm"
        Read at each ``sample``.  "swarm": moment-matched interacting swarms.
        "independent": uncoupled particles on the calibrated tilted energy
        V + lambda^T z + (z - mu*)^T Lambda (z - mu*)/2 (the swarm's
        one-particle limit law, without coupling).  "sold": plain
        score-smoothed Langevin particles on V alone, without moment matching
        (the paper's SOLD baseline; their law exp(-V) is not the one
        ``score_samples`` describes).
    match_variance : bool, default=True
        Map the samples about the training mean (internal coordinates) by
        ``shrinkage_`` = C^(1/2) Sigma*^(-1/2), C the training covariance
        there (eigenvalues floored at 1e-6 times their mean), so that the
        output law has the data's covariance C instead of Sigma* =
        C + delta^2 I; ``score_samples`` and the ``"auto"`` bandwidth are
        those of the mapped law.  :ref:`design-bandwidth` has its effect on
        the benchmark's real tables.
    coordinates : {"standardized", "whitened", "isotropic"}, default="standardized"
        The internal coordinates, where the kernel is isotropic and lengths
        (``bandwidth``, ``smoothing``, ``step_size``) are measured: the training data's
        per-feature z-scores, its whitened coordinates (identity covariance),
        or one common scale, the root mean per-feature variance (features
        already in one unit, PCA scores say).  Samples and densities are in
        data units.
    algorithm : {"auto", "brute", "kd_tree", "ball_tree", "cells", "nndescent"}, default="auto"
        Neighbour index of the "knn" estimator.
        "auto": a KD-tree up to 10 features, brute force up to 200,000
        patterns, k-means "cells" beyond (approximate, nothing to compile);
        "nndescent" is pynndescent (numba compiles it in each new process).
    batch_size : int or None, default=None
        Particles per swarm; every chunk is one swarm with exact moments.
        None: max(5 (d + 1), 500).  Must be >= d + 1.  A remainder smaller
        than it joins the last swarm; ``sample(n)`` with d + 1 <= n <
        batch_size runs one swarm of n particles, so every request of at
        least d + 1 rows has the target's moments exactly (fewer rows are part
        of a (d + 1)-swarm).
    n_jobs : int or None, default=None
        joblib workers over swarms and scoring rows, on threads; a
        ``sample`` call of at least 1e9 pattern terms (n_samples x n_steps x
        n_smoothing_draws x the patterns each draw sums) prefers processes,
        whose start it amortises and which share a swarm's steps better (a
        ``parallel_config`` backend overrides either).
    random_state : int, RandomState, Generator or None, default=None
        Fit-time randomness: bandwidth rule subsample, index, fixed smoothing
        draws of ``score_samples``, importance draws of the tilt and of log Z.
    verbose : int, default=0
        >= 1 shows progress bars over steps on stderr, and the seconds of
        each phase of ``fit`` (bandwidth, moment tilt, log Z).

    Attributes
    ----------
    bandwidth_ : float
        delta in use.
    smoothing_ : float
        sigma in use.
    n_smoothing_draws_ : int
        M in use.
    score_estimator_ : str
        "exact", "knn" or "clustered".
    clusters_ : PatternClusters or None
        The partition of the "clustered" estimator (about sqrt(N) / 2
        k-means clusters), else None.
    step_size_ : float
        h in use.
    swarm_size_ : int
        Particles per swarm (the resolved ``batch_size``).
    location_ : ndarray of shape (n_features,)
        Training mean: ``z = ((x - location_) / scale_) @ whitening_``.
    scale_ : ndarray of shape (n_features,)
        Per-feature standard deviation of the training data (1 where a
        feature is constant); the root mean variance, repeated, for
        ``coordinates="isotropic"``.
    whitening_ : ndarray of shape (n_features, n_features)
        The symmetric inverse square root of the training correlation
        matrix for ``coordinates="whitened"``, else the identity.
    target_mean_ : ndarray of shape (n_features,)
        mu*, in data units.
    target_covariance_ : ndarray of shape (n_features, n_features)
        Sigma* in data units (the data covariance plus delta^2 times the
        internal unit, mapped back); every full swarm has exactly these
        moments before ``shrinkage_``, and the data's covariance after it.
    shrinkage_ : ndarray of shape (n_features, n_features)
        The symmetric map applied to the particles about the training mean
        in internal coordinates (the identity with ``match_variance=False``).
    swarm_mean_ : ndarray of shape (n_features,)
        mu* in internal coordinates.
    swarm_scale_ : ndarray of shape (n_features, n_features)
        A = Sigma*^(1/2), symmetric, in internal coordinates: a swarm is
        mu* + Y A with Y on the centred scaled Stiefel set.
    posterior_ : PatternPosterior
        The engine over the patterns in internal coordinates.
    tilt_linear_ : ndarray of shape (n_features,)
        lambda of the limit law (internal coordinates); 0 when sigma = 0.
    tilt_quadratic_ : ndarray of shape (n_features, n_features)
        Lambda of the limit law; 0 when sigma = 0.
    log_normalizer_ : float
        log Z(lambda, Lambda) of rho (internal coordinates, with the fixed
        smoothing draws); log 1 = 0 when sigma = 0.
    log_normalizer_se_ : float
        Estimated standard error of ``log_normalizer_`` (delta method,
        sqrt((1/ESS - 1)/n)); 0 when sigma = 0.  With an ESS near 0 the
        estimate itself is unreliable and too small.  A UserWarning is raised
        above 0.05 nats.
    calibration_ess_ : float
        Effective sample size fraction (0..1] of the importance sampler of
        log Z; 1 when sigma = 0.  A UserWarning is raised below 0.1.
    score_noise_ : ndarray of shape (32, n_features)
        The fixed antithetic standard normal draws that define V in
        ``score_samples`` (common random numbers).
    classes_ : ndarray of shape (n_classes,)
        Class labels seen by ``fit(X, y)``; absent after an unlabelled fit.
    class_models_ : list of MMSOLDSampler
        One sampler per class, fitted on that class's rows with these
        parameters (its own bandwidth, swarm moments, tilt and log Z):
        ``sample(n, y=label)`` and ``score_samples(X, y=label)`` use them.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit (DataFrame input only).

    See Also
    --------
    sklearn.neighbors.KernelDensity : the sigma = 0 law, without the sampler.
    sklearn_diffsample.PatternPosterior : the engine every sum goes through.

    Notes
    -----
    ``score_samples`` (sigma > 0) is the tilted Gibbs density, the mean-field
    limit (P -> infinity) of one particle, with V from 32 fixed draws.  ``fit``
    draws from the defensive proposal 0.9 pi_delta + 0.1 N(mu*, Sigma*), solves
    the convex dual of the moment constraints on max(4000, 20 m) of those
    draws (at most 20000; m = d + d (d + 1) / 2 multipliers) for lambda and
    Lambda, and estimates log Z on fresh draws: a pilot of 1000 and more (up
    to 20000, fewer for large N but at least 4000) only until its standard
    error is below 0.02 nats.  No swarm runs at fit: the cost is that of
    about 32 (max(4000, 20 m) + a few thousand) kernel evaluations, for any
    ``n_steps``.  Measured effective sample sizes and standard errors up to
    d = 32: :ref:`design-mmsold`.

    Why delta is the held-out-likelihood bandwidth and sigma = delta, with
    the measurements behind it: :ref:`design-mmsold`.

    References
    ----------
    .. [1] Yao, Z. and Paulin, D. (2026). Training-free generative sampling via
       moment-matched score smoothing. arXiv:2605.14276.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_diffsample.mmsold import MMSOLDSampler
    >>> X = np.random.default_rng(0).normal(size=(100, 2))
    >>> est = MMSOLDSampler(n_steps=10, batch_size=100, random_state=0).fit(X)
    >>> Z = est.sample(100, random_state=0)
    >>> np.allclose(Z.mean(axis=0), X.mean(axis=0))
    True
    >>> est.score_samples(X[:3]).shape
    (3,)
    """

    _parameter_constraints: dict = {
        **BaseDiffusionDensity._parameter_constraints,
        "bandwidth": [Interval(Real, 0, None, closed="neither"),
                      StrOptions({"auto", "scott", "silverman"})],
        "smoothing": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"})],
        "n_smoothing_draws": [Interval(Integral, 2, None, closed="left"),
                              StrOptions({"auto"})],
        "score_estimator": [StrOptions({"exact", "knn", "clustered", "auto"})],
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "n_remainder": [Interval(Integral, 0, None, closed="left")],
        "integrator": [StrOptions({"lm", "em"})],
        "step_size": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "n_steps": [Interval(Integral, 1, None, closed="left")],
        "interaction": [StrOptions({"swarm", "independent", "sold"})],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "match_variance": ["boolean"],
    }
    # Other runs of the calibrated dynamics (longer, uncoupled, another
    # integrator) need no new fit; they are read at each sample.
    _call_time_params = (*BaseDiffusionDensity._call_time_params, "n_steps",
                         "interaction", "integrator")
    _per_class_models = True

    def __init__(self, *, bandwidth="auto", smoothing="auto", n_smoothing_draws="auto",
                 score_estimator="auto", n_neighbors=50, n_remainder=50, integrator="lm",
                 step_size="auto", n_steps=50, interaction="swarm", match_variance=True,
                 coordinates="standardized", algorithm="auto", batch_size=None, n_jobs=None,
                 random_state=None, verbose=0):
        super().__init__(bandwidth=bandwidth, coordinates=coordinates, algorithm=algorithm,
                         batch_size=batch_size, n_jobs=n_jobs, random_state=random_state,
                         verbose=verbose)
        self.smoothing = smoothing
        self.n_smoothing_draws = n_smoothing_draws
        self.score_estimator = score_estimator
        self.n_neighbors = n_neighbors
        self.n_remainder = n_remainder
        self.integrator = integrator
        self.step_size = step_size
        self.n_steps = n_steps
        self.interaction = interaction
        self.match_variance = match_variance

    # ----------------------------------------------------------------- fit
    def _fit(self, X, y=None):
        X = self._validate_fit_data(X)
        n, d = X.shape
        swarm_size, n_draws = _swarm_and_draws(d, self.batch_size, self.n_smoothing_draws)
        _check_tilt_size(d, self.smoothing)
        seeds = seed_sequence(self.random_state).spawn(4)
        Z = self._fit_coordinates(X)
        # One spectrum for the bandwidth search and the map.
        spectrum = covariance_spectrum(Z) if self.match_variance else None
        with fit_phase(self, "bandwidth"):
            delta, sigma = _resolve_scales(Z, self.bandwidth, self.smoothing, spectrum)
        estimator = self.score_estimator
        if estimator == "auto":
            small = n * d <= _AUTO_EXACT_MAX_WORK and not denoiser_is_clustered("auto", n)
            estimator = "exact" if small else "clustered"
        structure_seed = index_seed(np.random.default_rng(seeds[1]))
        posterior = PatternPosterior(
            Z, algorithm=self.algorithm if estimator == "knn" else None,
            random_state=structure_seed)
        self.clusters_ = (PatternClusters(posterior, default_n_clusters(n), structure_seed)
                          if estimator == "clustered" else None)
        mu = Z.mean(axis=0)
        Sigma = np.cov(Z, rowvar=False, bias=True).reshape(d, d) + delta**2 * np.eye(d)
        A, A_inv = symmetric_sqrt(Sigma)
        h = _step_size(self.step_size, Sigma, delta)
        self.bandwidth_, self.smoothing_, self.n_smoothing_draws_ = delta, sigma, n_draws
        self.score_estimator_, self.step_size_, self.swarm_size_ = estimator, h, swarm_size
        self.target_mean_ = self._to_data(mu[None, :])[0]
        self.target_covariance_ = self._covariance_to_data(Sigma)
        self.posterior_ = posterior
        self.swarm_mean_, self.swarm_scale_ = mu, A
        self._fit_shrinkage(Z, delta**2, bool(self.match_variance), spectrum=spectrum)
        _calibrate(self, seeds[2], seeds[3])
        return self

    def _knn(self):
        if self.score_estimator_ != "knn":
            return None
        return min(self.n_neighbors, self.posterior_.n_patterns), self.n_remainder

    def _dynamics(self):
        return _Dynamics(
            posterior=self.posterior_, s2=self.bandwidth_**2, sigma=self.smoothing_,
            n_draws=self.n_smoothing_draws_, knn=self._knn(), mu=self.swarm_mean_,
            A=self.swarm_scale_, A_inv=np.linalg.inv(self.swarm_scale_), h=self.step_size_,
            n_steps=self.n_steps,
            integrator=self.integrator,
            tilt=(getattr(self, "tilt_linear_", None), getattr(self, "tilt_quadratic_", None)),
            clusters=getattr(self, "clusters_", None),  # None in fits pickled before it
        )

    # -------------------------------------------------------- calibration
    def _potential(self, Z):
        """V(z) with the fixed smoothing draws, and log pi_delta(z) (internal
        coordinates; see :func:`_smoothed_energy`)."""
        return _smoothed_energy(self.posterior_, Z, self.bandwidth_**2,
                                self.smoothing_ * self.score_noise_)

    def _tilted_energy(self, Z):
        """V(z) + lambda^T (z - mu) + (z - mu)^T Lambda (z - mu) / 2, and
        log pi_delta(z) (internal coordinates)."""
        V, log_kde = self._potential(Z)
        R = Z - self.swarm_mean_
        return V + R @ self.tilt_linear_ + 0.5 * np.einsum(
            "nd,de,ne->n", R, self.tilt_quadratic_, R), log_kde

    # ------------------------------------------------------------ scoring
    def _score_samples(self, X):
        Z = self._law_coordinates(X)
        if self.smoothing_ == 0:
            log_rho = self.posterior_.log_density(Z, self.bandwidth_**2)
        else:
            log_rho = (-self._tilted_energy(Z)[0] - self.log_normalizer_
                       - float(self.tilt_linear_ @ self.swarm_mean_))
        return log_rho + self._law_log_jacobian()

    # ----------------------------------------------------------- sampling
    def _sample(self, n_samples, seed):
        dyn = self._dynamics()
        if self.interaction != "swarm":
            sizes = chunk_sizes(n_samples, self.swarm_size_)
            func = partial(dyn.independent, tilted=self.interaction == "independent")
        else:
            # Every chunk is a swarm with exact moments: full swarms, the
            # remainder folded in, or one swarm of the requested size (at least
            # d + 1 particles; a smaller request takes part of a (d + 1)-swarm).
            smallest = self.n_features_in_ + 1
            sizes = (chunk_sizes(n_samples, self.swarm_size_, min_size=self.swarm_size_)
                     if n_samples >= self.swarm_size_ else [max(n_samples, smallest)])
            func = dyn.swarm
        parts = run_chunks(func, sizes, seed, n_jobs=self.n_jobs, verbose=self.verbose,
                           steps_per_chunk=self.n_steps,
                           prefer=preferred_backend(dyn.pattern_terms(sum(sizes))))
        return self._output_to_data(np.vstack(parts)[:n_samples])
