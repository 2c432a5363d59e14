"""Guided diffusion sampling with the exact score of the smoothed training data.

No network is trained: the denoiser of the Gaussian-smoothed empirical
distribution is a posterior mean over the stored patterns, which the engine
(:class:`~sklearn_diffsample.PatternPosterior`) returns exactly.  The score
model (:mod:`._score_models`) answers for the data law, the integrators
(:mod:`._solvers`) step the reverse variance-preserving diffusion, the
probability-flow likelihood (:mod:`._likelihood`) stands apart, and
classifier-free guidance combines D_w = D_u + w (D_c - D_u).

Notation (docs, design): x_t = alpha_t x_0 + sigma_t eps, lambda_t =
log(alpha_t / sigma_t).  Everything runs in the internal coordinates of
:mod:`._coordinates` (standardised, whitened or isotropic), where N(0, I) is the right
start whatever the data's units; results are reported in data units.
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
from ._clustered import denoiser_is_clustered
from ._conditional import beyond_class_reach, encode_fit_labels, encode_labels, score_by_class
from ._likelihood import probability_flow_log_density
from ._matching import VarianceMatchingMixin, covariance_spectrum
from ._parallel import chunk_slices, preferred_backend, run_chunks
from ._schedules import SCHEDULES, TIMESTEPS, make_schedule, time_grid
from ._score_models import SCORE_MODELS, EmpiricalScore, GaussianScore, guided_combination
from ._solvers import ddim_step, ddpm_step, dpmpp_2m_denoised, eta_step, log_snr
from .gaussian import plan_n_steps

__all__ = ["GuidedDiffusionSampler", "ddim_step", "ddpm_step", "eta_step"]

SCORE_METHODS = ("closed_form", "ode")
_AUTO_MAX_STEPS = 1000
# The empirical planner of n_steps="auto": pilot starts and the step counts tried.
_PLAN_PILOT = 256
_PLAN_STEPS = (8, 16, 32, 64, 128, 256, 512)
# Support-guarantee check for stochastic guided steps (see _guarantee_margin).
_GUARANTEE_LIMIT = 2.5
# Share of guided samples beyond their class's 99% reach that draws a warning.
_BEYOND_REACH_SHARE = 0.1


def _guarantee_margin(alphas, sigmas, eta, guidance_scale):
    """(w - 1) eta^2 times the mean log-SNR step in the data regime.

    A stochastic step of size h puts weight 1 - e^{-2h} (DDPM) on the guided
    denoiser D_c + (w - 1)(D_c - D_u), which points up to (w - 1) class gaps
    away from the class; the fresh noise then stops the trajectory from
    correcting itself, as DDIM's does.  This matters once the noise is below
    the data scale (lambda > 0 in internal units), where D_c and D_u part.
    The project's two-circles runs (docs, design) leave the support where this
    margin exceeds ``_GUARANTEE_LIMIT`` (e.g. 10 DDPM steps with w >= 7, 25
    with w >= 7 on the logSNR grid) and stay within 5 h below it.
    """
    with np.errstate(divide="ignore"):
        log_snr = np.log(np.asarray(alphas)) - np.log(np.asarray(sigmas))
    steps = np.diff(log_snr)[log_snr[1:] > 0.0]
    if steps.size == 0 or guidance_scale <= 1.0:
        return 0.0
    return (guidance_scale - 1.0) * eta**2 * float(np.mean(steps))


@dataclass
class ReverseDiffusion:
    """The reverse process on the fitted grid, internal coordinates: what a chunk needs.

    ``step`` takes grid step k (t_k -> t_{k+1}) with the integrator that
    ``eta`` names; ``output`` is x/alpha at the last time, or the denoiser's
    output there with ``final_denoise``.  Picklable, for process workers.
    """

    score_model: object
    alphas: np.ndarray
    sigmas: np.ndarray
    eta: float
    final_denoise: bool
    n_features: int
    order: int = 1

    def denoised(self, x, codes, w, alpha, sigma):
        return guided_combination(self.score_model.denoise, x, codes, w, alpha, sigma)

    def pattern_terms(self, codes, w, n_samples):
        """About the pattern terms that a draw of ``n_samples`` rows sums."""
        terms = self.score_model.terms_per_query
        unconditional = n_samples * terms(None)
        if codes is None or w == 0:
            per_call = unconditional
        else:
            labels, counts = np.unique(codes, return_counts=True)
            per_call = sum(int(n) * terms(int(label)) for label, n in zip(labels, counts))
            if w != 1:
                per_call += unconditional
        return per_call * (len(self.alphas) - 1 + bool(self.final_denoise))

    def step(self, k, x, codes, w, rng):
        a_s, s_s, a_t, s_t = self.alphas[k], self.sigmas[k], self.alphas[k + 1], self.sigmas[k + 1]
        denoised = self.denoised(x, codes, w, a_s, s_s)
        if self.eta == 0.0:
            return ddim_step(x, denoised, a_s, s_s, a_t, s_t)
        z = rng.standard_normal(x.shape)
        if self.eta == 1.0:
            return ddpm_step(x, denoised, a_s, s_s, a_t, s_t, z)
        return eta_step(x, denoised, a_s, s_s, a_t, s_t, self.eta, z)

    def output(self, x, codes, w):
        if self.final_denoise:
            return self.denoised(x, codes, w, self.alphas[-1], self.sigmas[-1])
        return x / self.alphas[-1]

    def step_2m(self, k, x, codes, w, previous):
        """Step k of DPM-Solver++(2M); ``previous`` is (D, h) of step k - 1 or None."""
        a_s, s_s, a_t, s_t = self.alphas[k], self.sigmas[k], self.alphas[k + 1], self.sigmas[k + 1]
        denoised = self.denoised(x, codes, w, a_s, s_s)
        h = float(log_snr(a_t, s_t) - log_snr(a_s, s_s))
        prev_denoised, h_prev = previous if previous is not None else (None, np.nan)
        x = ddim_step(x, dpmpp_2m_denoised(denoised, prev_denoised, h, h_prev),
                      a_s, s_s, a_t, s_t)
        return x, (denoised, h)

    def chunk(self, rows, rng, report, codes, w):
        """The samples of one chunk; ``rows`` is its slice of the request, so
        that per-row labels follow the chunk."""
        codes = None if codes is None else codes[rows]
        x = rng.standard_normal((rows.stop - rows.start, self.n_features))
        previous = None
        for k in range(len(self.alphas) - 1):
            if self.order == 2:
                x, previous = self.step_2m(k, x, codes, w, previous)
            else:
                x = self.step(k, x, codes, w, rng)
            report(1)
        return self.output(x, codes, w)


class GuidedDiffusionSampler(VarianceMatchingMixin, BaseDiffusionDensity):
    """Diffusion sampler with the exact score of the data, and class guidance.

    The data law is the training set smoothed by N(0, ``data_bandwidth``**2 I)
    (``score_model="empirical"``) or a Gaussian fitted to it
    (``score_model="gaussian"``).  Its noisy marginals have an exact denoiser,
    computed by the pattern-posterior engine, and the sampler integrates the
    reverse variance-preserving diffusion with first-order exponential
    integrators from N(0, I) down to the noise floor sigma/alpha = ``bandwidth``,
    in the internal coordinates (``coordinates``).  With exact scores and
    ``data_bandwidth=0`` the exact flow ends at the Gaussian KDE of bandwidth
    ``bandwidth`` in those coordinates (on standardised data, the law of
    :class:`~sklearn.neighbors.KernelDensity` with that bandwidth).  By
    default, after a fit without labels (``match_variance="auto"``), the
    samples are then mapped about the training mean by
    A = C^(1/2) (C + h**2 I)^(-1/2), C the training covariance in internal
    coordinates, so that the output law keeps the training data's covariance
    instead of adding h**2 I to it (Silverman's shrunk smoothed bootstrap
    [4]_, with one factor per principal axis).  ``score_samples`` is the
    output law's closed form, and model selection over ``bandwidth`` works as
    for a KDE.

    Parameters
    ----------
    bandwidth : float or {"auto", "scott", "silverman"}, default="auto"
        Noise floor h in internal units (a multiple of the training data's
        standard deviations, see ``coordinates``): sampling stops where
        sigma_t/alpha_t = h, at the KDE of bandwidth h.
        ``"auto"`` maximises the held-out log-likelihood of the output law
        (10-fold up to 2000 rows, one 1000-row hold-out beyond: the cost of
        about 3 exact engine passes over the held-out rows, and 4-16 more
        with ``match_variance``, whose optimum lies 1.0-2.6 times higher on
        the benchmark's tables and at the search's top, 11 times the plain one,
        for Gaussian data, where the output law tends to the fitted Gaussian
        as h grows); ``"scott"`` and
        ``"silverman"`` are the rules of ``resolve_bandwidth``.  ``fit``
        refuses an h outside 1e-100 to 1e6.
    coordinates : {"standardized", "whitened", "isotropic"}, default="standardized"
        The internal coordinates, where the kernel is isotropic and lengths
        (``bandwidth``, ``data_bandwidth``) are measured: the training data's
        per-feature z-scores, its whitened coordinates (identity covariance),
        or one common scale, the root mean per-feature variance (features
        already in one unit, PCA scores say).  Samples and densities are in
        data units.
    schedule : {"cosine", "linear"}, default="cosine"
        Variance-preserving noise schedule.
    n_steps : int or "auto", default=50
        Number of integrator steps.  ``"auto"``, for the deterministic sampler
        of the empirical score (``eta=0``): the smallest of 8, 16, 32, ...
        steps whose endpoints, from a fixed pilot of 256 starts, are within
        ``n_steps_tol * sqrt(n_features)`` (RMS, internal units) of the fitted
        measure's exact flow, estimated by doubling the steps (Richardson, at
        the solver's order; the unguided flow, w = 1).  Stochastic steps
        (``eta > 0``) and the Gaussian score model: the smallest number whose
        predicted error for a Gaussian with the data's covariance
        (:func:`~sklearn_diffsample.gaussian.plan_n_steps`) is within the same
        tolerance.  :ref:`design-guided` has the measured choices.
    n_steps_tol : float, default=0.02
        Tolerance of ``n_steps="auto"``, a fraction of the data's
        root-mean-square radius sqrt(n_features) in internal units.
    timesteps : {"logsnr", "time_uniform", "angle"}, default="angle"
        Time grid: uniform in lambda = log(alpha/sigma), in t, or in the angle
        atan(sigma/alpha).  ``"angle"`` is the best grid for a Gaussian and
        needs fewer steps than ``"logsnr"`` for the same predicted error
        (:ref:`design-guided` in the docs says why and how much).  With the
        cosine schedule it equals ``"time_uniform"``.
    eta : float in [0, 1], default=0.0
        Stochasticity: 0 is DDIM (deterministic), 1 is DDPM.
    guidance_scale : float >= 0, default=1.0
        Default w of D_w = D_u + w (D_c - D_u): 0 unconditional, 1 the class
        conditional, > 1 classifier-free extrapolation.
    final_denoise : bool, default=False
        Return the denoiser's output at the last time instead of
        x_{t_min}/alpha_{t_min}.  The denoised samples are convex combinations
        of training points (copies, as the noise floor shrinks).
    score_model : {"empirical", "gaussian"}, default="empirical"
        The exact score of the smoothed training set, or of N(mean, cov) fitted
        by maximum likelihood (to all data for the unconditional score, per
        class for the conditional ones).
    data_bandwidth : float >= 0, default=0.0
        h0, in internal units: the data law is the training set (or
        Gaussian) convolved with N(0, h0**2 I) in the internal coordinates;
        the output law is then smoothed by sqrt(h**2 + h0**2).
    match_variance : bool or "auto", default="auto"
        True: map the samples about the training mean (internal coordinates)
        by ``shrinkage_`` = C^(1/2) (C + (h**2 + h0**2) I)^(-1/2), C the
        training covariance there (eigenvalues floored at 1e-6 times their
        mean), so that the output law keeps the training data's covariance
        instead of adding the kernel's: principal axes along which the data
        spread widely keep their spread, thin ones (correlated features) lose
        the kernel's.  In whitened coordinates this is one factor,
        1/sqrt(1 + h**2 + h0**2).  The density, ``"auto"`` bandwidth and model
        selection are those of the mapped law.  The map is one for every law
        of the model, so after ``fit(X, y)`` it also pulls each class's draws
        towards the overall mean.  ``"auto"``: True for a fit without labels,
        False for ``fit(X, y)``.  Ignored with ``final_denoise=True``, whose
        output is not smoothed.  :ref:`design-bandwidth` has its effect on the
        benchmark's real tables.
    denoiser : {"auto", "exact", "clustered"}, default="auto"
        How sampling sums over the patterns.  ``"exact"``: every pattern at
        every step.  ``"clustered"``: the patterns are partitioned at fit into
        about 0.5 sqrt(N) k-means clusters; each step sums exactly over the
        clusters that can carry a query's posterior and replaces the others
        by Gaussian surrogates (:ref:`clustered means <design-clustered>`),
        at a cost that grows like sqrt(N).  ``"auto"``: clustered from 10,000
        training rows, exact below.  ``score_samples`` is exact either way;
        the Gaussian score model is always exact.
    n_neighbors : int or None, default=None
        Certified top-k: each query sums over its k nearest patterns only where
        the neglected mass is certified below ``tol`` (small noise); the engine
        falls back to exact sums elsewhere.  None sums exactly.  Used by the
        exact denoiser (``denoiser="auto"`` then stays exact).
    tol : float, default=1e-8
        Certificate tolerance on log(1 + neglected mass / kept mass).
    order : {1, 2}, default=2
        2: DPM-Solver++(2M), the second-order multistep data-prediction solver,
        for the deterministic sampler (``eta=0``); guidance enters through the
        guided denoiser as in the first-order steps.  Stochastic steps
        (``eta > 0``) are first order whatever ``order`` says.  1: the
        first-order exponential integrators (DDIM at ``eta=0``).
        :ref:`design-guided` has the measured effect.
    algorithm : {"auto", "brute", "kd_tree", "ball_tree", "cells", "nndescent"}, default="auto"
        Neighbour index of the top-k mode (unused when ``n_neighbors=None``).
        "auto": a KD-tree up to 10 features, brute force up to 200,000
        patterns, k-means "cells" beyond (approximate, nothing to compile);
        "nndescent" is pynndescent (numba compiles it in each new process).
    batch_size : int, default=1024
        Samples per chunk: the unit of parallel work and of seeding.
    n_jobs : int or None, default=None
        joblib workers for sampling and scoring, on threads; a ``sample``
        call of at least 1e9 pattern terms (n_samples x n_steps x the
        patterns each denoiser call sums, twice with guidance) prefers
        processes, whose start it amortises and which share the clustered
        denoiser's steps better (a ``parallel_config`` backend overrides
        either).
    random_state : int, RandomState, Generator or None, default=None
        Seed of an approximate neighbour index (fit-time randomness only; the
        randomness of ``sample`` comes from its own ``random_state``).
    verbose : int, default=0
        >= 1 shows a progress bar over steps on stderr.

    Attributes
    ----------
    bandwidth_ : float
        Resolved noise floor h in internal units.
    shrinkage_ : ndarray of shape (n_features, n_features)
        The symmetric map applied to the samples about the training mean in
        internal coordinates (the identity when ``match_variance`` is off, as
        ``"auto"`` is after ``fit(X, y)``, or ``final_denoise`` is on).
    location_ : ndarray of shape (n_features,)
        Training mean: ``z = ((x - location_) / scale_) @ whitening_``.
    scale_ : ndarray of shape (n_features,)
        Per-feature standard deviation of the training data (1 where a
        feature is constant); the root mean variance, repeated, for
        ``coordinates="isotropic"``.
    whitening_ : ndarray of shape (n_features, n_features)
        The symmetric inverse square root of the training correlation
        matrix for ``coordinates="whitened"``, else the identity.
    n_steps_ : int
        Number of steps actually taken.
    order_ : int
        The solver order in use (1 whenever ``eta > 0``).
    denoiser_ : str
        The denoiser in use, "exact" or "clustered".
    time_grid_ : ndarray of shape (`n_steps_` + 1,)
        Decreasing times t_0 > ... > t_K the sampler walks.
    alphas_, sigmas_ : ndarray of shape (`n_steps_` + 1,)
        alpha_t and sigma_t on that grid, so that the closed forms of
        :mod:`sklearn_diffsample.gaussian` can be evaluated on what runs.
    classes_ : ndarray of shape (n_classes,)
        Class labels seen by ``fit(X, y)``; absent after an unlabelled fit.
    score_model_ : EmpiricalScore or GaussianScore
        The data law's exact denoiser, score and density (internal units).
    posterior_ : PatternPosterior
        The engine over the internal patterns (``score_model="empirical"``).
    mean_, covariance_ : ndarray of shape (n_features,), (n_features, n_features)
        The fitted Gaussian in data units (``score_model="gaussian"``).
    class_means_, class_covariances_ : ndarray
        Per-class Gaussians in data units (``score_model="gaussian"``, labelled).
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when X has string column names.

    See Also
    --------
    sklearn.neighbors.KernelDensity : The same law as a closed-form KDE, with
        ``match_variance=False``.
    sklearn_diffsample.gaussian.sampler_covariance : Closed-form output law of
        this sampler for Gaussian data.

    Notes
    -----
    Without labels ``sample(y=...)`` and ``score_samples(X, y=...)`` raise.
    The support guarantee of guided sampling (arXiv:2605.07220) needs the exact
    score, which this estimator has, and an exponential integrator; coarse
    stochastic steps with large guidance fall outside what the project
    observed to hold, and ``sample`` warns there.  Strong guidance also moves
    samples to the far edge of their class, away from the others: after a
    guided draw (w > 1, empirical score) ``sample`` warns for each class with
    more than 10% of its samples farther from every training row of the class
    than 99% of draws from the class's own law (measured on iris from w = 7;
    :ref:`design-guided`).

    References
    ----------
    .. [1] N. Chandramoorthy, R. Cao, Y. Wu, "On the robustness of distribution
       support under diffusion guidance", arXiv:2605.07220, 2026.
    .. [2] J. Song, C. Meng, S. Ermon, "Denoising diffusion implicit models",
       arXiv:2010.02502, 2020.
    .. [3] J. Ho, T. Salimans, "Classifier-free diffusion guidance",
       arXiv:2207.12598, 2022.
    .. [4] B. W. Silverman, "Density Estimation for Statistics and Data
       Analysis", Chapman & Hall, 1986, section 6.4.1.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_diffsample.guided import GuidedDiffusionSampler
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(-2, 0.3, (20, 2)), rng.normal(2, 0.3, (20, 2))])
    >>> y = np.repeat([0, 1], 20)
    >>> est = GuidedDiffusionSampler(bandwidth=0.1, n_steps=20).fit(X, y)
    >>> samples = est.sample(5, 0, y=1, guidance_scale=3.0)
    >>> samples.shape, bool(np.all(samples > 0))
    ((5, 2), True)
    >>> est.score_samples(X[:2], y=0).shape
    (2,)
    """

    _parameter_constraints: dict = {
        **BaseDiffusionDensity._parameter_constraints,
        "schedule": [StrOptions(set(SCHEDULES))],
        "n_steps": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "n_steps_tol": [Interval(Real, 0, None, closed="neither")],
        "timesteps": [StrOptions(set(TIMESTEPS))],
        "eta": [Interval(Real, 0, 1, closed="both")],
        "guidance_scale": [Interval(Real, 0, None, closed="left")],
        "final_denoise": ["boolean"],
        "score_model": [StrOptions(set(SCORE_MODELS))],
        "data_bandwidth": [Interval(Real, 0, None, closed="left")],
        "match_variance": ["boolean", StrOptions({"auto"})],
        "n_neighbors": [Interval(Integral, 1, None, closed="left"), None],
        "tol": [Interval(Real, 0, None, closed="neither")],
        "order": [Interval(Integral, 1, 2, closed="both")],
        "denoiser": [StrOptions({"auto", "exact", "clustered"})],
    }
    _call_time_params = (*BaseDiffusionDensity._call_time_params, "guidance_scale")

    def __init__(self, *, bandwidth="auto", coordinates="standardized", schedule="cosine",
                 n_steps=50, n_steps_tol=0.02, timesteps="angle", eta=0.0, guidance_scale=1.0,
                 final_denoise=False, score_model="empirical", data_bandwidth=0.0,
                 match_variance="auto", denoiser="auto", n_neighbors=None, tol=1e-8, order=2,
                 algorithm="auto", batch_size=1024, n_jobs=None, random_state=None, verbose=0):
        super().__init__(bandwidth=bandwidth, coordinates=coordinates, algorithm=algorithm,
                         batch_size=batch_size, n_jobs=n_jobs, random_state=random_state,
                         verbose=verbose)
        self.schedule = schedule
        self.n_steps = n_steps
        self.n_steps_tol = n_steps_tol
        self.timesteps = timesteps
        self.eta = eta
        self.guidance_scale = guidance_scale
        self.final_denoise = final_denoise
        self.score_model = score_model
        self.data_bandwidth = data_bandwidth
        self.match_variance = match_variance
        self.denoiser = denoiser
        self.n_neighbors = n_neighbors
        self.tol = tol
        self.order = order

    # ------------------------------------------------------------------ fit
    def _fit(self, X, y):
        X = self._validate_fit_data(X)
        # The second-order multistep solver is deterministic: stochastic steps
        # (eta > 0) stay first order.
        self.order_ = 2 if self.order == 2 and self.eta == 0 else 1
        codes, classes = encode_fit_labels(X, y)
        Z = self._fit_coordinates(X)
        matched = (classes is None if isinstance(self.match_variance, str)
                   else bool(self.match_variance)) and not self.final_denoise
        # One spectrum for the bandwidth search and the map.
        spectrum = covariance_spectrum(Z) if matched else None
        self.bandwidth_ = check_bandwidth_range(
            resolve_bandwidth(self.bandwidth, Z, matched, spectrum))
        h0_sq = float(self.data_bandwidth) ** 2
        self._fit_shrinkage(Z, self.bandwidth_**2 + h0_sq, matched, spectrum=spectrum)
        for name in ("classes_", "posterior_", "mean_", "covariance_",
                     "class_means_", "class_covariances_"):
            self.__dict__.pop(name, None)
        if classes is not None:
            self.classes_ = classes
        if self.score_model == "empirical":
            self.score_model_ = EmpiricalScore(
                Z, codes, h0_sq, n_neighbors=self.n_neighbors, tol=self.tol,
                algorithm=self.algorithm, random_state=index_seed(self.random_state),
                clustered=self._clustered(Z.shape[0]))
            self.denoiser_ = "exact" if self.score_model_.clusters is None else "clustered"
            self.posterior_ = self.score_model_.posterior
        else:
            self.score_model_ = GaussianScore(Z, codes, h0_sq)
            self.denoiser_ = "exact"
            self.__dict__.update(_gaussians_in_data_units(self, classes))
        self.n_steps_ = (int(self.n_steps) if self.n_steps != "auto"
                         else _plan_n_steps(self, Z, h0_sq))
        schedule = make_schedule(self.schedule)
        self.time_grid_ = time_grid(schedule, self.n_steps_, self.bandwidth_,
                                    kind=self.timesteps)
        self.alphas_ = schedule.alpha(self.time_grid_)
        self.sigmas_ = schedule.sigma(self.time_grid_)
        return self

    def _clustered(self, n_patterns):
        # Certified top-k (n_neighbors) keeps "auto" exact.
        if self.denoiser == "auto" and self.n_neighbors is not None:
            return False
        return denoiser_is_clustered(self.denoiser, n_patterns)

    # --------------------------------------------------------------- sampling
    def _dynamics(self):
        return ReverseDiffusion(self.score_model_, self.alphas_, self.sigmas_, float(self.eta),
                                bool(self.final_denoise), self.n_features_in_, self.order_)

    def sample(self, n_samples=1, random_state=None, *, y=None, guidance_scale=None):
        """Draw samples, optionally class-conditional with guidance.

        Parameters
        ----------
        n_samples : int, default=1
            Number of samples; 0 returns an empty (0, n_features) array.
        random_state : int, RandomState, Generator, SeedSequence or None, default=None
            None draws fresh entropy; anything else makes the call reproducible
            for any ``n_jobs`` and joblib backend.
        y : label or array-like of shape (n_samples,), default=None
            None samples the unconditional model; a label samples that class;
            an array gives each sample its class.
        guidance_scale : float >= 0, default=None
            w of D_u + w (D_c - D_u); None uses the ``guidance_scale``
            parameter.  Ignored when ``y`` is None.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        """
        n_samples, seed = self._start_draw(n_samples, random_state)
        w = _check_guidance(self.guidance_scale if guidance_scale is None
                            else guidance_scale)
        codes = None if y is None else encode_labels(self, y, n_samples)
        if codes is not None and n_samples:
            _warn_outside_guarantee(self, w)
        X = self._run_draw(partial(self._draw, codes=codes, w=w), n_samples, seed)
        if codes is not None and n_samples and w > 1 and self.score_model == "empirical":
            _warn_beyond_class_reach(self, X, codes, w)
        return X

    def _draw(self, n_samples, seed, codes, w):
        chunks = chunk_slices(n_samples, self.batch_size)
        dynamics = self._dynamics()
        parts = run_chunks(partial(dynamics.chunk, codes=codes, w=w), chunks, seed,
                           n_jobs=self.n_jobs, verbose=self.verbose,
                           steps_per_chunk=self.n_steps_, desc="guided sampling",
                           prefer=preferred_backend(dynamics.pattern_terms(codes, w, n_samples)))
        return self._output_to_data(np.vstack(parts))

    # ---------------------------------------------------------------- scoring
    def score_samples(self, X, y=None, method="closed_form"):
        """Normalised log-density of the sampler's output law at each row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : label or array-like of shape (n_samples,), default=None
            Class-conditional density of that class (each row's class).
        method : {"closed_form", "ode"}, default="closed_form"
            ``"closed_form"``: the exact-flow law, a Gaussian KDE (internal
            coordinates) of bandwidth sqrt(h**2 + h0**2) (class-conditional
            with ``y``: the w = 1 law), or N(mean, cov + (h**2 + h0**2) I) for
            the Gaussian model, mapped by ``shrinkage_``.  ``"ode"``:
            the likelihood of the probability-flow ODE of the guided score with
            ``guidance_scale`` (exact divergence, scipy ``solve_ivp`` at rtol
            1e-11) started from N(0, I); one solve per row, so slow.

        Returns
        -------
        log_density : ndarray of shape (n_samples,)
        """
        if method not in SCORE_METHODS:
            raise ValueError(f"method must be one of {SCORE_METHODS}, got {method!r}.")
        X = self._validate_query(X)
        codes = None if y is None else encode_labels(self, y, X.shape[0])
        func = self._log_density if method == "closed_form" else self._ode_log_density
        if codes is None:
            return self._score_rows(func, X, None)
        return score_by_class(lambda rows, k: self._score_rows(func, rows, k), X, codes)

    def _log_density(self, X, label):
        return (self.score_model_.log_density(self._law_coordinates(X),
                                              self.bandwidth_**2, label)
                + self._law_log_jacobian())

    def _ode_log_density(self, X, label):
        log_p = probability_flow_log_density(
            self.score_model_, self._law_coordinates(X), label,
            float(self.guidance_scale), self.alphas_[0], self.sigmas_[0], self.bandwidth_)
        return log_p + self._law_log_jacobian()


def _gaussians_in_data_units(est, classes):
    """The fitted Gaussian(s) of a GaussianScore as public attributes, data units."""
    def to_data(label):
        mean, cov = est.score_model_.mean_covariance(label)
        return est._to_data(mean[None, :])[0], est._covariance_to_data(cov)

    out = dict(zip(("mean_", "covariance_"), to_data(None)))
    if classes is not None:
        pairs = [to_data(code) for code in range(len(classes))]
        out["class_means_"] = np.array([p[0] for p in pairs])
        out["class_covariances_"] = np.array([p[1] for p in pairs])
    return out


def _plan_n_steps(est, Z, h0_sq):
    """n_steps="auto": the empirical planner for the deterministic sampler of the
    empirical score, the Gaussian planner on the data's spectrum otherwise."""
    if est.score_model == "empirical" and est.eta == 0:
        return _plan_deterministic_steps(est)
    dev = Z - Z.mean(axis=0)
    lam = np.clip(np.linalg.eigvalsh(dev.T @ dev / Z.shape[0]), 0.0, None) + h0_sq
    tol = est.n_steps_tol * np.sqrt(Z.shape[1])
    try:
        return plan_n_steps(lam, tol, noise_floor=est.bandwidth_, schedule=est.schedule,
                            timesteps=est.timesteps, eta=est.eta,
                            final_denoise=est.final_denoise, max_steps=_AUTO_MAX_STEPS)
    except ValueError:
        warnings.warn(
            f"n_steps='auto' found no step count <= {_AUTO_MAX_STEPS} within "
            f"n_steps_tol={est.n_steps_tol}; using {_AUTO_MAX_STEPS}. Increase "
            "n_steps_tol or use timesteps='angle'.", UserWarning, stacklevel=5)
        return _AUTO_MAX_STEPS


def _plan_deterministic_steps(est):
    """The smallest of 8, 16, 32, ... steps whose pilot endpoints are within the
    tolerance of the fitted measure's exact flow.

    A fixed pilot of N(0, I) starts runs the fitted sampler (its order, final
    denoising, the unguided flow) on K and 2K steps; |x_K - x_2K| / (1 - 2^-p)
    estimates the error of the K-step endpoints for a solver of order p
    (Richardson), and K is accepted when its RMS is at most
    ``n_steps_tol * sqrt(n_features)`` in internal units.
    """
    schedule, d = make_schedule(est.schedule), est.n_features_in_
    tol = est.n_steps_tol * np.sqrt(d)

    def endpoints(n_steps):
        grid = time_grid(schedule, n_steps, est.bandwidth_, kind=est.timesteps)
        flow = ReverseDiffusion(est.score_model_, schedule.alpha(grid), schedule.sigma(grid),
                                0.0, bool(est.final_denoise), d, est.order_)
        return flow.chunk(slice(0, _PLAN_PILOT), np.random.default_rng(0), lambda n: None,
                          None, 1.0)

    coarse = endpoints(_PLAN_STEPS[0])
    for n_steps in _PLAN_STEPS[:-1]:
        fine = endpoints(2 * n_steps)
        error = np.sqrt(np.mean(np.sum((coarse - fine) ** 2, axis=1))) / (1.0 - 2.0**-est.order_)
        if error <= tol:
            return n_steps
        coarse = fine
    warnings.warn(
        f"n_steps='auto' found no step count below {_PLAN_STEPS[-1]} within "
        f"n_steps_tol={est.n_steps_tol}; using {_PLAN_STEPS[-1]}. Increase n_steps_tol.",
        UserWarning, stacklevel=5)
    return _PLAN_STEPS[-1]


def _warn_outside_guarantee(est, w):
    margin = _guarantee_margin(est.alphas_, est.sigmas_, float(est.eta), w)
    if margin > _GUARANTEE_LIMIT:
        warnings.warn(
            f"guidance_scale={w} with eta={est.eta} and {est.n_steps_} steps is "
            "outside the regime where guided samples are known to stay near the "
            "class support (coarse stochastic steps put most of their weight on "
            "the extrapolated denoiser). Use eta=0 (DDIM), more steps or a "
            "smaller guidance_scale.", UserWarning, stacklevel=4)


def _warn_beyond_class_reach(est, X, codes, w):
    """Warn where guidance put many samples beyond their class's own reach."""
    kernel_std = np.sqrt(est.bandwidth_**2 + float(est.data_bandwidth) ** 2)
    shares = beyond_class_reach(est._to_internal(X), codes,
                                lambda code: est.score_model_.engine(code).patterns,
                                kernel_std)
    # The class's own law leaves about 1% beyond; 10% (and more than 3 rows)
    # is far outside the binomial spread of that.
    left = {est.classes_[code]: count / total for code, (count, total) in shares.items()
            if count > max(3, _BEYOND_REACH_SHARE * total)}
    if left:
        listed = ", ".join(f"{100 * share:.0f}% of class {label}'s" for label, share in left.items())
        warnings.warn(
            f"guidance_scale={w} moved samples beyond their class's reach: {listed} "
            "samples lie farther from every training row of their class than 99% of "
            "draws from the class's own law (guidance_scale=1) do. Use a smaller "
            "guidance_scale to keep them within it.", UserWarning, stacklevel=3)


def _check_guidance(w):
    if isinstance(w, (bool, np.bool_)) or not isinstance(w, Real) or not np.isfinite(w):
        raise ValueError(f"guidance_scale must be a finite number >= 0, got {w!r}.")
    if w < 0:
        raise ValueError(
            f"guidance_scale must be >= 0 (0 unconditional, 1 conditional, > 1 "
            f"extrapolated guidance), got {w!r}."
        )
    return float(w)
