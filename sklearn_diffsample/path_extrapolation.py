"""Identical-noise backward paths and extrapolation in the number of patterns.

The path measure of the path-convergence paper (arXiv 2606.12161) lives in an
imaginary time tau in [0, beta]: the target (the patterns) at tau = 0, a
reference law at tau = beta, Brownian bridges in between.  Its endpoints are
independent, so a backward path started anywhere ends on the target.  Given
x_beta and the current point x_tau, the patterns carry the posterior weights

    pi_nu ∝ exp(-|x_nu - x_tau|^2 / (2 tau) + |x_nu - x_beta|^2 / (2 beta)),

which is the pattern posterior at q = s^2 (x_tau/tau - x_beta/beta) with
s^2 = tau beta / (beta - tau).  The "dt" step replaces x_0 by its posterior
mean m in the bridge from x_tau to x_0:

    x_{tau - dtau} = (1 - dtau/tau) x_tau + (dtau/tau) m + gamma,
    gamma ~ N(0, dtau (tau - dtau)/tau I).

It is the DDPM step of x_tau - (tau/beta) x_beta = alpha x_0 + sigma z
(alpha = 1 - tau/beta, sigma^2 = tau alpha), so the estimator's default
(``order=2``) feeds it DPM-Solver++(2M)'s multistep mean in place of m.

Paths driven by different pattern sets but the same (x_beta, gamma) converge
to the p = infinity path on a 1/sqrt(p) scale; :class:`PathExtrapolationDensity`
extrapolates from half-set paths toward it, and :func:`path_convergence`
measures the convergence for a Gaussian target whose p = infinity drift is
analytic.
"""

from functools import partial
from numbers import Integral, Real

import numpy as np
from sklearn.base import clone
from sklearn.utils import Bunch
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_memory

from ._base import (
    BaseDiffusionDensity,
    check_bandwidth_range,
    index_seed,
    resolve_bandwidth,
)
from ._clustered import (
    PatternClusters,
    default_n_clusters,
    denoiser_is_clustered,
    sampling_mean,
)
from ._coordinates import offset_to_data
from ._matching import VarianceMatchingMixin
from ._parallel import chunk_sizes, run_chunks, seed_sequence
from ._posterior import _FLAT_VARIANCE, PatternPosterior, posterior_per_row
from ._solvers import dpmpp_2m_denoised

__all__ = ["PathExtrapolationDensity", "path_convergence", "path_direction"]

# n_reference_samples="auto": score_samples is the KDE of the M endpoints, and
# with fewer endpoints than patterns it is coarser than the patterns' own KDE
# (swiss roll, N = 1050, seed-0 split: held-out log-likelihood -3.39 at
# M = 1000, -3.22 at 2000, -3.16 at 3000; KDE-CV -3.17).  About 4N endpoints
# are as sharp as many more on the small tables (wine, N = 125: -15.95 at
# M = 500 and at 1000, -15.91 at 2000; breast cancer, N = 398: -28.76 at 500,
# -27.64 at 1000, -27.49 at 2000; 3 seeds).  So M is 4N, kept within
# [500, 4000] for the fit's cost, and never above 20N.  The cap was 2000 until
# 4N was measured against it at N of about 1000 (3 seeds): 2000 / 3000 / 4000
# endpoints gave -3.209 / -3.161 / -3.148 on the swiss roll, -3.106 / -3.076 /
# -3.079 on the s-curve and -17.39 / -17.05 / -16.93 on digits-PCA16, the fit
# taking 1.7-2x as long at 4000.
_AUTO_REFERENCE_PER_PATTERN = 4
_AUTO_REFERENCE_MAX_PER_PATTERN = 20
_AUTO_REFERENCE_RANGE = (500, 4000)
_RICHARDSON_COEF = -1.0 / (np.sqrt(2.0) - 1.0)
# A dt step is 2K + 1 small engine calls whose Python glue holds the GIL:
# two threads sampled 0.69-1.41x faster than one, two processes 1.59-2.00x
# (N = 5000, d = 16, 1024 samples in 2 chunks, four measurements).
_JOBLIB_PREFER = "processes"


def auto_reference_count(n_patterns):
    """M of ``n_reference_samples="auto"``: 4N within [500, 4000], at most 20N.

    ``score_samples`` is the KDE of the M endpoints; below N endpoints it is
    coarser than the KDE of the patterns themselves (:ref:`design-path`).
    """
    low, high = _AUTO_REFERENCE_RANGE
    return int(min(_AUTO_REFERENCE_MAX_PER_PATTERN * n_patterns,
                   np.clip(_AUTO_REFERENCE_PER_PATTERN * n_patterns, low, high)))


# ---------------------------------------------------------------- the bridge
def bridge_times(beta, n_steps):
    """Grid tau_k = beta k / n_steps, k = 0..n_steps (tau_0 = 0, tau_n = beta exactly)."""
    return beta * (np.arange(n_steps + 1) / n_steps)


def bridge_log_snr(tau, beta):
    """lambda = -log s of the bridge posterior: -inf at tau = beta, +inf at 0.

    Given x_beta, x_tau - (tau/beta) x_beta = alpha x_0 + sigma z with
    alpha = 1 - tau/beta and sigma^2 = tau alpha, so alpha / sigma = 1 / s:
    the dt step is the DDPM step of this variance-preserving form.
    """
    with np.errstate(divide="ignore"):
        return 0.5 * (np.log(beta - tau) - np.log(beta * tau))


def bridge_query(x_tau, x_beta, tau, beta):
    """Engine query (q, s^2) of the posterior over x_0 given x_tau and x_beta."""
    if tau >= beta:
        # Uniform weights: q = 0 and an (effectively) infinite variance.
        return np.zeros(np.shape(x_tau)), _FLAT_VARIANCE
    s2 = tau * beta / (beta - tau)
    # Two passes over x_tau, which holds every path of a step (no temporaries
    # of its size): s2 x_tau / tau - s2 x_beta / beta.
    q = np.multiply(x_tau, s2 / tau)
    q -= np.multiply(x_beta, s2 / beta)
    return q, s2


def dt_step(x_tau, x0_mean, tau, tau_next):
    """Bridge mean from x_tau toward the posterior mean of x_0, at tau_next."""
    a = (tau - tau_next) / tau
    return (1.0 - a) * x_tau + a * x0_mean


def bridge_step_variance(tau, tau_next):
    """Per-coordinate variance of gamma; exactly 0 on the last step (tau_next = 0)."""
    return (tau - tau_next) * tau_next / tau


def _integrate_dt(x_start, denoise, normal, *, beta, n_steps, n_paths,
                  variance_correction, order=1, record=(), report=None, from_index=None,
                  to_index=0):
    """Run ``n_paths`` dt paths with one shared noise sequence.

    The paths start at ``x_start`` (m, d) on grid index ``from_index``
    (default ``n_steps``, tau = beta) and stop at ``to_index`` (default 0).
    ``denoise(x, tau)`` returns the posterior means (n_paths, m, d) of x_0, a
    fresh array that the step overwrites, and per-coordinate posterior
    variances (n_paths, m) (or None); ``normal(k)``
    returns the shared standard normals (m, d) of step k.  Snapshots of the
    paths at the grid indices in ``record`` are returned with the endpoints.
    ``order=2`` steps with the multistep data prediction of DPM-Solver++(2M)
    (Lu et al. 2022, arXiv:2211.01095) in place of m, the midpoint form of
    its stochastic variant: m + (m - m_prev) h / (2 h_prev), h the step in
    the bridge's log-SNR (:func:`bridge_log_snr`).  The first two steps (from
    lambda = -inf) and the last (to +inf) stay first order.
    """
    taus = bridge_times(beta, n_steps)
    from_index = n_steps if from_index is None else from_index
    x = np.repeat(np.asarray(x_start, dtype=np.float64)[None], n_paths, axis=0)
    snapshots = {from_index: x.copy()} if from_index in record else {}
    log_snr = bridge_log_snr(taus, beta) if order == 2 else None
    previous, h_previous = None, np.inf
    for k in range(from_index, to_index, -1):
        tau, tau_next = taus[k], taus[k - 1]
        mean, var = denoise(x, tau)
        if order == 2:
            h = log_snr[k - 1] - log_snr[k]
            # The step below works in place on mean: raw is kept for the
            # next step, and the corrected mean takes the dead previous buffer.
            raw, mean = mean, dpmpp_2m_denoised(mean, previous, h, h_previous, out=previous)
            mean = mean.copy() if mean is raw else mean
            previous, h_previous = raw, h
        noise_std = np.sqrt(bridge_step_variance(tau, tau_next))
        if variance_correction:
            # The dt step drops (dtau/tau)^2 Var(x_0 | x_tau, x_beta): put it back.
            noise_std = np.sqrt(bridge_step_variance(tau, tau_next)
                                + ((tau - tau_next) / tau) ** 2 * var)[..., None]
        # dt_step in place: x + a (mean - x), a = dtau / tau.
        mean -= x
        mean *= (tau - tau_next) / tau
        x += mean
        x += noise_std * normal(k)
        if k - 1 in record:
            snapshots[k - 1] = x.copy()
        if report is not None:
            report(1)
    return x, snapshots


def _engine_denoiser(posteriors, x_beta, beta, want_var, clusters=None):
    """Denoiser of path j through posterior j (one engine call per path set):
    exact means and variances where ``want_var``, the clustered means where
    ``clusters[j]`` is given, else the sampling-grade means (float32 sums)."""
    d = x_beta.shape[1]
    clusters = clusters or [None] * len(posteriors)

    def denoise(x, tau):
        mean = np.empty_like(x)
        var = np.empty(x.shape[:2]) if want_var else None
        # One query array for every path: x_beta is shared.
        queries, s2 = bridge_query(x, x_beta, tau, beta)
        for j, (post, parts) in enumerate(zip(posteriors, clusters)):
            q = queries[j]
            if parts is not None or not want_var:
                mean[j] = sampling_mean(post, q, s2, parts)
            else:
                stats = post.query(q, s2, mean=True, spread=True)
                mean[j], var[j] = stats.mean, stats.spread / d
        return mean, var

    return denoise


def gaussian_bridge_posterior(x_tau, x_beta, tau, beta, mean, variance):
    """Mean and per-coordinate variance of x_0 | x_tau, x_beta for x_0 ~ N(mean, variance I).

    This is the p = infinity drift of a Gaussian target:
    m_inf = (1/variance + 1/tau - 1/beta)^-1 (x_tau/tau - x_beta/beta + mean/variance).
    """
    post_var = 1.0 / (1.0 / variance + 1.0 / tau - 1.0 / beta)
    return post_var * (x_tau / tau - x_beta / beta + mean / variance), post_var


# ------------------------------------------------------------ the tower draw
def _integrate_tower(post, x_beta, rng, *, beta, n_steps, report=None):
    """Tower paths: each step draws x_0 from its posterior (the engine's
    :meth:`~sklearn_diffsample.PatternPosterior.draw`); returns the last draw."""
    taus = bridge_times(beta, n_steps)
    x = x_beta.copy()
    for k in range(n_steps, 0, -1):
        tau, tau_next = taus[k], taus[k - 1]
        q, s2 = bridge_query(x, x_beta, tau, beta)
        nu = post.draw(q, s2, rng)
        gamma = np.sqrt(bridge_step_variance(tau, tau_next)) * rng.standard_normal(x.shape)
        x = dt_step(x, post.take(nu), tau, tau_next) + gamma
        if report is not None:
            report(1)
    return nu


# --------------------------------------------------------------- estimator
class PathExtrapolationDensity(VarianceMatchingMixin, BaseDiffusionDensity):
    """Density estimation by identical-noise backward paths extrapolated in p.

    Backward (denoising) paths of a Brownian-bridge path measure whose target
    is the empirical law of the N training patterns, all of one sample driven
    by the same start x_beta and the same noise, converge to the p = infinity
    path (which samples the true law exactly) on a 1/sqrt(p) scale.  Each
    sample runs the full-set path and 2K half-set paths with identical noise
    and returns ``x_full + c (mean(half paths) - x_full)``, smoothed by
    ``bandwidth``.  Everything runs in the internal coordinates
    (``coordinates``) with an isotropic kernel.  By default
    (``match_variance=True``) the samples then leave through the map
    ``shrinkage_`` that gives the law the training data's covariance.

    Parameters
    ----------
    beta : float, default=0.4
        Bridge length (the reference's imaginary time), in internal units
        (the paper's sigma_T = 5, beta = 10 is 0.4).
    n_steps : int, default=100
        Steps of the backward path; dtau = beta / n_steps.
    order : {1, 2}, default=2
        2: the dt step takes the multistep data prediction of DPM-Solver++(2M)
        in place of the posterior mean (the midpoint form of its stochastic
        variant): in the paper's 1-D Gaussian setting the endpoint std is
        0.13% low after 100 such steps (0.4% after 50), against 2.0% after
        100 first-order ones.  1: the first-order dt step.  With
        ``variance_correction=True`` the steps are first order whatever
        ``order`` says (the correction completes the first-order step).
        Ignored by ``"exact"``.  :ref:`design-path` has the measured effect.
    bandwidth : float or {"auto", "scott", "silverman"}, default="auto"
        Std h of the Gaussian added to every endpoint, in internal units (a
        multiple of the training data's standard deviations, see
        ``coordinates``).  ``"auto"`` maximises the held-out log-likelihood of
        the Gaussian KDE of the patterns (about 3 exact engine passes; see
        ``GuidedDiffusionSampler``); "scott" and "silverman" are the rules of
        ``resolve_bandwidth``.
    coordinates : {"standardized", "whitened", "isotropic"}, default="standardized"
        The internal coordinates, where the kernel is isotropic and lengths
        (``bandwidth``, ``beta``, ``reference``) are measured: the training data's
        per-feature z-scores, its whitened coordinates (identity covariance),
        or one common scale, the root mean per-feature variance (features
        already in one unit, PCA scores say).  Samples and densities are in
        data units.
    extrapolation : {"halves", "richardson", "none", "exact"}, default="halves"
        ``"halves"``: x_full + c (mean of the 2K half paths - x_full), c =
        ``extrapolation_coef``, K = ``n_splits``.  ``"richardson"``: the naive
        1/sqrt(p) rule (sqrt(2) x_full - mean_half) / (sqrt(2) - 1).
        ``"none"``: the raw full-set dt path.  ``"exact"``: the tower sampler
        (one pattern drawn by its weight at every step); it ends exactly on a
        training pattern, so its endpoints are copies.
    n_splits : int, default=2
        Number K of random half-splits.  Each split adds two half-set paths
        to every sample's full-set path: (K + 1) N pattern terms per sample
        and step instead of N.  2 keeps the benchmark tables' quality of 8 at about a
        third of the cost (:ref:`design-path`); in the paper's 1-D setting
        more splits remove a little more of the finite-p error (7.7% with 8
        against 5.2% with 2 at p = 100).
    extrapolation_coef : float, default=0.4
        Coefficient c of ``"halves"``.
    variance_correction : bool, default=False
        Add the variance (dtau/tau)^2 Var(x_0 | x_tau, x_beta) that the dt step
        drops (the engine's spread / d per coordinate); makes the p = infinity
        Gaussian path exact.  Ignored by ``"exact"``.
    tau_ex : float, default=0.0
        Imaginary time (a multiple of beta / n_steps) at which the half paths
        are extrapolated; from there the extrapolated state follows the
        full-set path down to 0.  0 extrapolates the endpoints; in the
        paper's 1-D setting earlier extrapolation removed less of the error
        (:func:`path_direction`, :ref:`design-path`).
    reference : None or tuple (mean, scale), default=None
        Law N(mean, scale^2 I) of x_beta in internal units; None is N(0, I).
        ``mean`` is a float or an array of shape (n_features,), ``scale`` > 0.
    n_reference_samples : int or "auto", default="auto"
        Number M of endpoints drawn at fit for ``score_samples``; "auto" is
        4N within [500, 4000] and at most 20N (a KDE of fewer endpoints than
        patterns is coarser than the patterns' own); the fit costs
        M n_steps (K + 1) N pattern evaluations.
    algorithm : {"auto", "brute", "kd_tree", "ball_tree", "cells", "nndescent"}, default="auto"
        Neighbour index of the tower sampler (``extrapolation="exact"`` only).
        "auto": a KD-tree up to 10 features, brute force up to 200,000
        patterns, k-means "cells" beyond (approximate, nothing to compile);
        "nndescent" is pynndescent (numba compiles it in each new process).
    denoiser : {"auto", "exact", "clustered"}, default="auto"
        How the dt paths sum over the patterns, as in
        :class:`GuidedDiffusionSampler`: ``"clustered"`` partitions the
        patterns at fit into about 0.5 sqrt(N) k-means clusters (the half
        sets keep that partition) and sums exactly only over the clusters
        that can carry a query's posterior; ``"auto"``: clustered from
        10,000 training rows.  ``variance_correction`` and the tower sampler
        always sum exactly.
    match_variance : bool, default=True
        Map the samples about the training mean (internal coordinates) by
        ``shrinkage_``, the symmetric T with T S T = C: S the covariance of
        the law (the M endpoints' second moment plus h^2 I), C the
        training covariance there (eigenvalues floored at 1e-6 times their
        mean), so that the output law keeps C instead of adding the kernel's
        variance to the endpoints'.  ``score_samples`` is the mapped law's;
        ``sample_endpoints`` is not mapped.  The ``"auto"`` bandwidth stays
        the plain KDE's (:ref:`design-bandwidth` has the measurements).
    memory : None, str or joblib.Memory, default=None
        Where to cache the part of ``fit`` that does not depend on
        ``bandwidth`` (the engine and the M endpoints), keyed by the data and
        the other parameters, as in :class:`sklearn.pipeline.Pipeline`: fits
        that differ only in ``bandwidth`` (a GridSearchCV over it, say) draw
        the endpoints once per training set.  A string is a cache directory.
        With ``random_state=None`` a cached fit reuses the endpoints of the
        first one.
    batch_size : int, default=1024
        Samples per chunk: the unit of parallel work and of seeding.
    n_jobs : int, default=None
        joblib workers for sampling (processes unless a ``parallel_config``
        backend says otherwise: the paths' small engine calls hold the GIL)
        and scoring (threads).
    random_state : int, RandomState, Generator or None, default=None
        Seed of the M endpoints drawn at fit (and of the tower sampler's
        neighbour index).
    verbose : int, default=0
        >= 1 shows a progress bar over path steps.

    Attributes
    ----------
    bandwidth_ : float
        Resolved kernel std h (internal units); ``fit`` refuses an h
        outside 1e-100 to 1e6.
    location_ : ndarray of shape (n_features,)
        Training mean: ``z = ((x - location_) / scale_) @ whitening_``.
    scale_ : ndarray of shape (n_features,)
        Per-feature standard deviation of the training data (1 where a
        feature is constant); the root mean variance, repeated, for
        ``coordinates="isotropic"``.
    whitening_ : ndarray of shape (n_features, n_features)
        The symmetric inverse square root of the training correlation
        matrix for ``coordinates="whitened"``, else the identity.
    patterns_ : ndarray of shape (n_samples, n_features)
        The training rows (data units), which the tower sampler returns.
    denoiser_ : str
        The denoiser of the dt paths, "exact" or "clustered".
    order_ : int
        The order of the dt steps in use (1 with ``variance_correction=True``).
    clusters_ : PatternClusters or None
        The partition of the patterns behind the clustered denoiser.
    posterior_ : PatternPosterior
        The engine over the training rows in internal coordinates.
    endpoint_posterior_ : PatternPosterior
        The engine over the endpoints in internal coordinates, the kernel centres of
        ``score_samples``.
    reference_mean_ : ndarray of shape (n_features,)
        Mean of the reference law (internal units).
    reference_scale_ : float
        Std of the reference law (internal units).
    n_reference_samples_ : int
        Resolved M.
    endpoints_ : ndarray of shape (`n_reference_samples_`, n_features)
        The M endpoints (data units) behind ``score_samples``.
    shrinkage_ : ndarray of shape (n_features, n_features)
        The symmetric map applied to the samples about the training mean in
        internal coordinates (the identity with ``match_variance=False``).
    classes_ : ndarray of shape (n_classes,)
        Class labels seen by ``fit(X, y)``; absent after an unlabelled fit.
    class_models_ : list of PathExtrapolationDensity
        One estimator per class, fitted on that class's rows with these
        parameters (its own bandwidth, paths and endpoints):
        ``sample(n, y=label)`` and ``score_samples(X, y=label)`` use them.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit (string column names only).

    See Also
    --------
    path_convergence : The 1/sqrt(p) convergence diagnostic on a Gaussian target.
    sklearn.neighbors.KernelDensity : The plain KDE of the training patterns.

    Notes
    -----
    Half-splits are drawn once per chunk of ``batch_size`` samples (K fresh
    random splits per chunk, from the chunk's generator) rather than per
    sample: every sample still sees K uniformly random splits, so its law is
    the one of the per-sample construction, while each split costs two
    engine posteriors instead of a per-sample (samples x patterns) problem.
    Samples of one chunk share their splits and are therefore slightly
    dependent.

    What the extrapolation does: the finite-p deviation from the p = infinity
    path is a zero-mean fluctuation rather than an a/sqrt(p) bias, so the naive
    Richardson rule increases the error, averaging half-splits with c ~ 0.4
    moves slightly toward the p = infinity path for small N, and what reliably
    changes is memorisation: the tower sampler returns training rows, the
    raw dt path can copy isolated patterns, and extrapolated endpoints, which
    combine distinct paths, do not.  The measurements are in
    :ref:`design-path` and :doc:`/benchmarks`.

    The density is the law of the extrapolated endpoint convolved with
    N(0, h^2 I) (the paper proposes it without a formula; h^2 plays the role of
    a stopping time); ``score_samples`` is the KDE of the M endpoints drawn at
    fit, so it is exactly normalised and deterministic given ``random_state``.

    References
    ----------
    .. [1] Holtzman, Beauvallet, Krauth, "Path convergence in diffusion
       models", arXiv:2606.12161, 2026.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_diffsample.path_extrapolation import PathExtrapolationDensity
    >>> X = np.random.default_rng(0).normal(size=(30, 2))
    >>> est = PathExtrapolationDensity(n_steps=20, n_splits=2, random_state=0).fit(X)
    >>> est.sample(3, random_state=0).shape
    (3, 2)
    >>> est.score_samples(X[:2]).shape
    (2,)
    """

    _parameter_constraints: dict = {
        **BaseDiffusionDensity._parameter_constraints,
        "beta": [Interval(Real, 0, None, closed="neither")],
        "n_steps": [Interval(Integral, 1, None, closed="left")],
        "order": [Interval(Integral, 1, 2, closed="both")],
        "extrapolation": [StrOptions({"halves", "richardson", "none", "exact"})],
        "n_splits": [Interval(Integral, 1, None, closed="left")],
        "extrapolation_coef": [Interval(Real, None, None, closed="neither")],
        "variance_correction": ["boolean"],
        "reference": [None, tuple],
        "n_reference_samples": [Interval(Integral, 1, None, closed="left"),
                                StrOptions({"auto"})],
        "tau_ex": [Interval(Real, 0, None, closed="left")],
        "memory": [None, str, HasMethods(["cache"])],
        "denoiser": [StrOptions({"auto", "exact", "clustered"})],
        "match_variance": ["boolean"],
    }
    # The cache location does not shape the law.
    _call_time_params = (*BaseDiffusionDensity._call_time_params, "memory")
    _per_class_models = True

    def __init__(self, *, beta=0.4, n_steps=100, order=2, bandwidth="auto",
                 coordinates="standardized", extrapolation="halves",
                 n_splits=2, extrapolation_coef=0.4, variance_correction=False,
                 reference=None, n_reference_samples="auto", tau_ex=0.0, algorithm="auto",
                 denoiser="auto", match_variance=True, memory=None, batch_size=1024,
                 n_jobs=None, random_state=None, verbose=0):
        super().__init__(bandwidth=bandwidth, coordinates=coordinates, algorithm=algorithm,
                         batch_size=batch_size, n_jobs=n_jobs, random_state=random_state,
                         verbose=verbose)
        self.beta = beta
        self.n_steps = n_steps
        self.order = order
        self.extrapolation = extrapolation
        self.n_splits = n_splits
        self.extrapolation_coef = extrapolation_coef
        self.variance_correction = variance_correction
        self.reference = reference
        self.n_reference_samples = n_reference_samples
        self.tau_ex = tau_ex
        self.denoiser = denoiser
        self.match_variance = match_variance
        self.memory = memory

    # ------------------------------------------------------------------ fit
    def _fit(self, X, y=None):
        X = self._validate_fit_data(X)
        if self.memory is not None:
            return self._fit_from_memory(X)
        n, d = X.shape
        ref_mean, ref_scale = _check_reference(self.reference, d)
        _grid_index(self.tau_ex, float(self.beta), int(self.n_steps), "tau_ex")
        Z = self._fit_coordinates(X)
        self.reference_mean_, self.reference_scale_ = ref_mean, ref_scale
        self.bandwidth_ = check_bandwidth_range(resolve_bandwidth(self.bandwidth, Z))
        self.patterns_ = X
        seed = seed_sequence(self.random_state)
        fit_seed = index_seed(np.random.default_rng(seed.spawn(1)[0]))
        self.posterior_ = PatternPosterior(
            Z, algorithm=self.algorithm if self.extrapolation == "exact" else None,
            random_state=fit_seed,
        )
        # The correction completes the first-order step; the second-order
        # mean already accounts for most of what it adds (overshoots, measured).
        self.order_ = 1 if self.variance_correction else int(self.order)
        self.denoiser_, self.clusters_ = "exact", None
        if self._clustered(n):
            self.denoiser_ = "clustered"
            self.clusters_ = PatternClusters(self.posterior_, default_n_clusters(n), fit_seed)
        m = self.n_reference_samples
        self.n_reference_samples_ = auto_reference_count(n) if m == "auto" else int(m)
        self.endpoints_ = self._draw(self.n_reference_samples_, seed, smooth=False,
                                     desc="fit: reference paths")
        self.endpoint_posterior_ = PatternPosterior(self._to_internal(self.endpoints_))
        self._fit_endpoint_shrinkage(Z)
        return self

    def _fit_endpoint_shrinkage(self, Z):
        self._fit_shrinkage(Z, self.bandwidth_**2, bool(self.match_variance),
                            law_centres=self.endpoint_posterior_.patterns)

    def _clustered(self, n_patterns):
        if self.extrapolation == "exact" or self.variance_correction:
            return False
        return denoiser_is_clustered(self.denoiser, n_patterns)

    def _fit_from_memory(self, X):
        """Everything but the bandwidth from the cache (or a cached fit)."""
        template = clone(self).set_params(bandwidth=1.0, memory=None)
        fitted = check_memory(self.memory).cache(_fit_paths)(template, X)
        for name, value in vars(fitted).items():
            if name.endswith("_") and not name.startswith("_") and name != "bandwidth_":
                setattr(self, name, value)
        Z = self._to_internal(X)
        self.bandwidth_ = check_bandwidth_range(resolve_bandwidth(self.bandwidth, Z))
        self._fit_endpoint_shrinkage(Z)
        return self

    # ------------------------------------------------------------- density
    def _score_samples(self, X):
        return (self.endpoint_posterior_.log_density(self._law_coordinates(X),
                                                     self.bandwidth_**2)
                + self._law_log_jacobian())

    # -------------------------------------------------------------- sampling
    def _sample(self, n_samples, seed):
        X = self._draw(n_samples, seed, smooth=True)
        return self._output_to_data(self._to_internal(X)) if self.match_variance else X

    def sample_endpoints(self, n_samples=1, random_state=None):
        """Path endpoints without the bandwidth noise (data units).

        Parameters
        ----------
        n_samples : int, default=1
            Number of endpoints.
        random_state : int, RandomState, Generator or None, default=None
            As in :meth:`sample`.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
            ``sample`` minus its smoothing: with ``extrapolation="exact"``
            every row is a training row, bit for bit.
        """
        n_samples, seed = self._start_draw(n_samples, random_state)
        return self._run_draw(partial(self._draw, smooth=False), n_samples, seed)

    def _draw(self, n_samples, seed, *, smooth, desc="sampling paths"):
        parts = run_chunks(partial(self._draw_chunk, smooth=smooth),
                           chunk_sizes(n_samples, self.batch_size), seed,
                           n_jobs=self.n_jobs, verbose=self.verbose,
                           steps_per_chunk=int(self.n_steps), desc=desc, prefer=_JOBLIB_PREFER)
        return np.vstack(parts)

    def _draw_chunk(self, size, rng, report, smooth):
        """``size`` endpoints in data units, smoothed by the kernel when asked."""
        if self.extrapolation == "exact":
            x = self._tower_chunk(size, rng, report)
            if smooth:
                x = x + offset_to_data(self.bandwidth_ * rng.standard_normal(x.shape),
                                       self.scale_, self.whitening_)
            return x
        x = self._path_chunk(size, rng, report)
        if smooth:
            x = x + self.bandwidth_ * rng.standard_normal(x.shape)
        return self._to_data(x)

    def _start(self, size, rng):
        d = self.n_features_in_
        return self.reference_mean_ + self.reference_scale_ * rng.standard_normal((size, d))

    def _half_posteriors(self, rng):
        """2K half-set engines and their clusters (None for exact sums)."""
        n = self.posterior_.n_patterns
        halves, clusters = [], []
        for _ in range(int(self.n_splits)):
            perm = rng.permutation(n)
            for part in (np.sort(perm[: n // 2]), np.sort(perm[n // 2:])):
                halves.append(PatternPosterior(self.posterior_.take(part)))
                clusters.append(None if self.clusters_ is None
                                else self.clusters_.restrict(halves[-1], part))
        return halves, clusters

    def _path_chunk(self, size, rng, report):
        """Endpoints of ``size`` samples in internal coordinates (full and half paths)."""
        x_beta = self._start(size, rng)
        posteriors, clusters = [self.posterior_], [self.clusters_]
        if self.extrapolation in ("halves", "richardson"):
            halves, half_clusters = self._half_posteriors(rng)
            posteriors, clusters = posteriors + halves, clusters + half_clusters
        d = x_beta.shape[1]
        denoise = _engine_denoiser(posteriors, x_beta, self.beta,
                                   bool(self.variance_correction), clusters)
        k_ex = _grid_index(self.tau_ex, float(self.beta), int(self.n_steps), "tau_ex")
        steps = dict(beta=float(self.beta), n_steps=int(self.n_steps), order=self.order_,
                     variance_correction=bool(self.variance_correction), report=report)

        def normal(k):
            return rng.standard_normal((size, d))

        x, _ = _integrate_dt(x_beta, denoise, normal, n_paths=len(posteriors),
                             to_index=k_ex, **steps)
        if self.extrapolation != "none":
            coef = (_RICHARDSON_COEF if self.extrapolation == "richardson"
                    else float(self.extrapolation_coef))
            x = x[:1] + coef * (x[1:].mean(axis=0) - x[0])
        if k_ex > 0:
            # From tau_ex down, the extrapolated state follows the full-set path.
            full = _engine_denoiser(posteriors[:1], x_beta, self.beta,
                                    bool(self.variance_correction), clusters[:1])
            x, _ = _integrate_dt(x[0], full, normal, n_paths=1, from_index=k_ex, **steps)
        return x[0]

    def _tower_chunk(self, size, rng, report):
        """Training rows (data units) reached by ``size`` tower paths."""
        nu = _integrate_tower(self.posterior_, self._start(size, rng), rng,
                              beta=float(self.beta), n_steps=int(self.n_steps),
                              report=report)
        return self.patterns_[nu]


def _fit_paths(estimator, X):
    """``estimator.fit(X)``, at module level so that joblib.Memory can key it."""
    return estimator.fit(X)


def _check_reference(reference, d):
    """The reference law's (mean, scale), checked; None is N(0, I)."""
    if reference is None:
        return np.zeros(d), 1.0
    if len(reference) != 2:
        raise ValueError(
            "reference must be None or a (mean, scale) pair, got a tuple of "
            f"length {len(reference)}."
        )
    mean, scale = reference
    mean = np.asarray(mean, dtype=np.float64)
    if mean.shape not in ((), (1,), (d,)):
        raise ValueError(
            f"The reference mean must be a float or an array of shape ({d},) (one "
            f"value per feature), got shape {mean.shape}."
        )
    mean = np.broadcast_to(mean, (d,)).copy()
    if not np.all(np.isfinite(mean)):
        raise ValueError("The reference mean must be finite.")
    if not np.isscalar(scale) or not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"The reference scale must be a float > 0, got {scale!r}.")
    return mean, float(scale)


# -------------------------------------------------------------- diagnostic
def _grid_index(tau, beta, n_steps, name="tau"):
    """k with tau = k beta / n_steps, or a ValueError that names the grid."""
    grid = bridge_times(beta, n_steps)
    k = int(np.argmin(np.abs(grid - tau)))
    if abs(grid[k] - tau) > 1e-9 * beta:
        raise ValueError(
            f"{name}={tau} is not on the grid k * beta / n_steps "
            f"(dtau = {beta / n_steps}); pick multiples of dtau in [0, beta]."
        )
    return k


def _check_grid_taus(taus, beta, n_steps):
    return [_grid_index(tau, beta, n_steps)
            for tau in np.atleast_1d(np.asarray(taus, dtype=np.float64))]


def _per_row_denoiser(pattern_sets, start, beta, mean, std, want_var):
    """Paths 0..J-1 through the per-realisation pattern sets, path J the p = infinity one."""
    d = start.shape[1]

    def denoise(x, tau):
        out = np.empty_like(x)
        var = np.empty(x.shape[:2])
        for j, patterns in enumerate(pattern_sets):
            q, s2 = bridge_query(x[j], start, tau, beta)
            stats = posterior_per_row(q, patterns, s2, spread=want_var)
            out[j] = stats.mean
            if want_var:
                var[j] = stats.spread / d
        out[-1], var[-1] = gaussian_bridge_posterior(x[-1], start, tau, beta, mean, std**2)
        return out, var

    return denoise


def _check_gaussian_setting(n_realizations, n_steps, n_features, beta, target_std, x_beta):
    """The diagnostics' shared checks; x_beta broadcast to (n_features,)."""
    if int(n_realizations) < 1 or int(n_steps) < 1 or int(n_features) < 1:
        raise ValueError("n_realizations, n_steps and n_features must be >= 1.")
    if not (beta > 0 and target_std > 0):
        raise ValueError("beta and target_std must be > 0.")
    return np.broadcast_to(np.asarray(x_beta, dtype=np.float64), (int(n_features),))


def _convergence_chunk(size, rng, report, *, p_values, mean, std, x_beta, beta,
                       n_steps, record, variance_correction):
    """|x_p - x_inf| at the recorded grid points for ``size`` realisations."""
    p_max, d = max(p_values), x_beta.shape[0]
    # Realisation r owns patterns[:, r]; its first p form the nested p-set.
    patterns = mean + std * rng.standard_normal((d, size, p_max))
    start = np.broadcast_to(x_beta, (size, d))
    denoise = _per_row_denoiser([patterns[:, :, :p] for p in p_values], start, beta, mean,
                                std, variance_correction)
    noise = rng.standard_normal((n_steps + 1, size, d))
    _, snaps = _integrate_dt(start, denoise, lambda k: noise[k], beta=beta,
                             n_steps=n_steps, n_paths=len(p_values) + 1,
                             variance_correction=variance_correction,
                             record=set(record), report=report)
    dev = np.stack([np.linalg.norm(snaps[k][:-1] - snaps[k][-1], axis=2) for k in record],
                   axis=1)
    return dev  # (n_p, n_tau, size)


def path_convergence(p_values, n_realizations=1000, *, target_mean=0.0, target_std=5.0,
                     beta=10.0, n_steps=100, x_beta=1.0, taus=(0.0, 1.0, 5.0),
                     n_features=1, variance_correction=False, batch_size=250,
                     n_jobs=None, random_state=None):
    """Convergence of identical-noise dt paths to the p = infinity path.

    For a Gaussian target N(target_mean, target_std^2 I) the p = infinity
    drift is analytic,
    m_inf = (Sigma_T^-1 + (1/tau - 1/beta) I)^-1 (x/tau - x_beta/beta + Sigma_T^-1 mu_T).
    Each realisation draws max(p_values) patterns and one noise sequence; the
    paths of the nested sets of its first p patterns and the p = infinity path
    all start at ``x_beta`` and share that noise.

    Parameters
    ----------
    p_values : sequence of int
        Numbers of patterns p (nested sets).
    n_realizations : int, default=1000
        Independent (patterns, noise) realisations.
    target_mean : float, default=0.0
        Mean mu_T of the target (every coordinate).
    target_std : float, default=5.0
        Std sigma_T of the target (every coordinate).
    beta : float, default=10.0
        Bridge length.
    n_steps : int, default=100
        Steps; dtau = beta / n_steps.
    x_beta : float or array-like of shape (n_features,), default=1.0
        Common starting point of every path.
    taus : sequence of float, default=(0.0, 1.0, 5.0)
        Grid times at which the deviation is recorded (multiples of dtau).
    n_features : int, default=1
        Dimension d.
    variance_correction : bool, default=False
        As in :class:`PathExtrapolationDensity` (for every path, including
        p = infinity).
    batch_size : int, default=250
        Realisations per chunk (memory ~ batch_size * max(p_values) * d).
    n_jobs : int, default=None
        joblib workers.
    random_state : int, RandomState, Generator or None, default=None
        Seed; the result does not depend on ``n_jobs``.

    Returns
    -------
    result : Bunch
        ``p_values`` (n_p,), ``taus`` (n_tau,), ``median`` and ``msd`` (n_p,
        n_tau): median of ``|x_p - x_inf|`` and its mean square over realisations,
        ``scaled_median`` = sqrt(p) * median and ``scaled_msd`` = p * msd, and
        ``deviations`` (n_p, n_tau, n_realizations).

    Notes
    -----
    With the defaults (the paper's 1-D setting, arXiv:2606.12161) the scaled
    median at tau = 0 is flat while the scaled mean square keeps growing with
    p: the paths converge in probability on the 1/sqrt(p) scale, not in mean
    square.  The collapse holds roughly at d = 2 and fades by d = 5 for
    p <= 1000.  Reference values and this project's measurements:
    :ref:`design-path`.

    The p = infinity path is the dt path: without ``variance_correction`` its
    endpoint std is below the target's at finite dtau, exactly the target's
    with it.

    Examples
    --------
    >>> from sklearn_diffsample.path_extrapolation import path_convergence
    >>> res = path_convergence([10, 40], n_realizations=20, n_steps=20,
    ...                        taus=[0.0], random_state=0)
    >>> res.scaled_median.shape
    (2, 1)
    """
    p_values = np.asarray(p_values, dtype=np.int64).reshape(-1)
    if p_values.size == 0 or np.any(p_values < 1):
        raise ValueError(f"p_values must be positive integers, got {p_values.tolist()}.")
    x_beta = _check_gaussian_setting(n_realizations, n_steps, n_features, beta, target_std,
                                     x_beta)
    record = _check_grid_taus(taus, beta, n_steps)

    func = partial(
        _convergence_chunk, p_values=[int(p) for p in p_values], mean=float(target_mean),
        std=float(target_std), x_beta=x_beta, beta=float(beta), n_steps=int(n_steps),
        record=record, variance_correction=bool(variance_correction))
    parts = run_chunks(func, chunk_sizes(int(n_realizations), batch_size),
                       seed_sequence(random_state), n_jobs=n_jobs,
                       steps_per_chunk=int(n_steps), desc="paths", prefer=_JOBLIB_PREFER)
    dev = np.concatenate(parts, axis=2)
    median = np.median(dev, axis=2)
    msd = np.mean(dev**2, axis=2)
    scale = p_values[:, None].astype(np.float64)
    return Bunch(p_values=p_values, taus=bridge_times(beta, n_steps)[record],
                 median=median, msd=msd, scaled_median=np.sqrt(scale) * median,
                 scaled_msd=scale * msd, deviations=dev)


def _direction_chunk(size, rng, report, *, p, n_splits, mean, std, x_beta, beta, n_steps,
                     k_tau, coef, variance_correction):
    """(u, v, e0, ec) per realisation: at grid index k_tau u = mean(half paths) -
    x_full and v = x_inf - x_full; at tau = 0 the endpoint deviations from the
    p = infinity path of the full path (e0) and of the state extrapolated with
    ``coef`` at k_tau and continued on the full set (ec)."""
    d = x_beta.shape[0]
    patterns = mean + std * rng.standard_normal((d, size, p))
    halves = []
    for _ in range(n_splits):
        order = np.argsort(rng.random((size, p)), axis=1)  # a random split per realisation
        for part in (order[:, : p // 2], order[:, p // 2:]):
            halves.append(np.take_along_axis(patterns, part[None], axis=2))
    start = np.broadcast_to(x_beta, (size, d))
    denoise = _per_row_denoiser([patterns, *halves], start, beta, mean, std,
                                variance_correction)
    noise = rng.standard_normal((n_steps + 1, size, d))
    steps = dict(beta=beta, n_steps=n_steps, variance_correction=variance_correction,
                 report=report)
    x, _ = _integrate_dt(start, denoise, lambda k: noise[k], n_paths=len(halves) + 2,
                         to_index=k_tau, **steps)
    full, half_mean, infinite = x[0], x[1:-1].mean(axis=0), x[-1]
    u, v = half_mean - full, infinite - full
    if k_tau > 0:
        # Continue, with the same noise: the full path, the extrapolated state
        # on the full set, and the p = infinity path.
        rest = _per_row_denoiser([patterns, patterns], start, beta, mean, std,
                                 variance_correction)
        ends = np.stack([full, full + coef * u, infinite])
        for k in range(k_tau, 0, -1):
            tau, tau_next = bridge_times(beta, n_steps)[[k, k - 1]]
            means, var = rest(ends, tau)
            step_var = np.full(ends.shape[:2], bridge_step_variance(tau, tau_next))
            if variance_correction:
                step_var = step_var + ((tau - tau_next) / tau) ** 2 * var
            ends = dt_step(ends, means, tau, tau_next) + np.sqrt(step_var)[..., None] * noise[k]
            report(1)
        full, extrapolated, infinite = ends
    else:
        extrapolated = full + coef * u
    return np.stack([u, v, full - infinite, extrapolated - infinite])  # (4, size, d)


def path_direction(p, n_realizations=1000, *, n_splits=8, target_mean=0.0, target_std=5.0,
                   beta=10.0, n_steps=100, x_beta=1.0, tau=0.0, coef=0.4, n_features=1,
                   variance_correction=False, batch_size=250, n_jobs=None, random_state=None):
    """Do the half-pattern paths spread towards the p = infinity path?

    For a Gaussian target (where the p = infinity drift is analytic), each
    realisation draws p patterns, ``n_splits`` random half-splits of them and one
    noise sequence; the full-set path, the 2 ``n_splits`` half-set paths and the
    p = infinity path start at ``x_beta`` and share that noise.  At grid time
    ``tau`` let u = mean(half paths) - x_full and v = x_inf - x_full: the
    extrapolation x_full + c u can only help if u points towards v.

    Parameters
    ----------
    p : int
        Number of patterns (even, >= 2).
    n_realizations : int, default=1000
    n_splits : int, default=8
        K half-splits per realisation (the paper-setting reproduction's 8;
        ``PathExtrapolationDensity`` defaults to 2).
    target_mean, target_std, beta, n_steps, x_beta, n_features, variance_correction,
    batch_size, n_jobs, random_state
        As in :func:`path_convergence`.
    tau : float, default=0.0
        Grid time (a multiple of beta / n_steps) at which u and v are taken,
        and where the extrapolation x_full + coef u is made.
    coef : float, default=0.4
        The extrapolation coefficient c whose endpoint error is reported
        (``PathExtrapolationDensity``'s ``extrapolation_coef``).

    Returns
    -------
    result : Bunch
        ``cosine`` (n_realizations,): cos(u, v), 0 where u or v vanishes;
        ``median_cosine`` and ``positive_share`` (the share of realisations with
        cos > 0); ``best_coef``: the c minimising the sum of squared norms of
        x_full + c u - x_inf, that is sum(u . v) / sum(u . u); ``error_ratio``:
        that sum at ``best_coef`` over its value at c = 0 (below 1 where
        extrapolation helps); ``endpoint_error_ratio``: the mean squared
        distance to the p = infinity endpoint at tau = 0 of the state
        extrapolated with ``coef`` at ``tau`` and continued on the full set, over
        the same for the full path (``PathExtrapolationDensity(tau_ex=tau)``
        against ``extrapolation="none"``; below 1 where it helps).

    Examples
    --------
    >>> from sklearn_diffsample.path_extrapolation import path_direction
    >>> res = path_direction(20, n_realizations=50, n_splits=2, n_steps=20,
    ...                      random_state=0)
    >>> res.cosine.shape
    (50,)
    """
    p = int(p)
    if p < 2 or p % 2:
        raise ValueError(f"p must be an even number >= 2 (half-splits), got {p}.")
    if int(n_splits) < 1:
        raise ValueError(f"n_splits must be >= 1, got {n_splits}.")
    x_beta = _check_gaussian_setting(n_realizations, n_steps, n_features, beta, target_std,
                                     x_beta)
    k_tau = _grid_index(tau, beta, n_steps)
    func = partial(_direction_chunk, p=p, n_splits=int(n_splits), mean=float(target_mean),
                   std=float(target_std), x_beta=x_beta, beta=float(beta),
                   n_steps=int(n_steps), k_tau=k_tau, coef=float(coef),
                   variance_correction=bool(variance_correction))
    parts = run_chunks(func, chunk_sizes(int(n_realizations), batch_size),
                       seed_sequence(random_state), n_jobs=n_jobs,
                       steps_per_chunk=int(n_steps), desc="paths", prefer=_JOBLIB_PREFER)
    u, v, e_full, e_extrapolated = np.concatenate(parts, axis=1)
    dot = np.einsum("md,md->m", u, v)
    norms = np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1)
    cosine = np.divide(dot, norms, out=np.zeros_like(dot), where=norms > 0)
    uu, vv = float(np.sum(u * u)), float(np.sum(v * v))
    best = float(dot.sum() / uu) if uu > 0 else 0.0
    ratio = float(np.sum((best * u - v) ** 2) / vv) if vv > 0 else 1.0
    e0 = float(np.sum(e_full**2))
    return Bunch(cosine=cosine, median_cosine=float(np.median(cosine)),
                 positive_share=float(np.mean(cosine > 0)), best_coef=best,
                 error_ratio=ratio,
                 endpoint_error_ratio=float(np.sum(e_extrapolated**2) / e0) if e0 > 0 else 1.0)
