"""Closed-form Gaussian theory of the diffusion samplers.

For Gaussian data N(mu, Sigma) the exact denoiser is affine,

    D(x, t) = mu + alpha_t Sigma (alpha_t**2 Sigma + sigma_t**2 I)^{-1} (x - alpha_t mu)

so every first-order exponential-integrator step of ``GuidedDiffusionSampler``
(DDIM, DDPM and the eta family between them) maps a Gaussian to a Gaussian, and
the whole sampler diagonalises in the eigenbasis of Sigma.  Per eigenvalue
``lam`` the sampler is a scalar affine recursion with a mean gain and an added
noise variance; this module gives its closed forms (DDIM, DDPM), the exact
O(K d) recursion for any eta, the exact-flow (infinitely many steps) limit, the
noise-floor limit, Wasserstein-2 distances between Gaussians, and a step-count
planner.

Conventions
-----------
* A grid is given as ``alphas`` and ``sigmas`` ordered from the start t_0
  (noisiest) to the end t_K (``time_grid`` order).  ``alphas[0]`` may be 0
  (cosine schedule at t = 1) and ``sigmas[-1]`` may be 0 (a grid ending at
  t = 0); both limits are taken analytically.
* The sampler starts from x_{t_0} ~ N(m0, c0 I).  Its *state* output is
  x_{t_K}; its *data* output is x_{t_K} / alpha_{t_K}, or the denoiser
  D(x_{t_K}, t_K) with ``final_denoise=True``.
* Eigenvalues, means and noise floors are in the sampler's own coordinates (the
  ones in which N(0, I) is the right start); rescale data-unit results by the
  same scalar.
* In the eigenbasis the output mean is ``base + gain * (m0 - alpha_{t_0} mu)``
  with ``base = mu`` (data) or ``alpha_{t_K} mu`` (state).

Error decomposition
-------------------
The split of the expected squared Wasserstein-2 error of the whole pipeline
(fit N(mu_hat, Sigma_hat) on n samples, then sample with its exact score) into
a sampler bias term and a kernel-type norm of the power spectrum for the
estimation error follows "From score matching to diffusion: a fine-grained
error analysis in the Gaussian setting", arXiv:2503.11615.  See
:func:`expected_w2_error` for the exact terms used here.
"""

from typing import NamedTuple

import numpy as np

from ._schedules import VPSchedule, make_schedule, time_grid
from ._solvers import eta_coefficients

__all__ = [
    "SamplerMoments",
    "GaussianLaw",
    "ExpectedW2Error",
    "grid_coefficients",
    "sampler_variance",
    "exact_flow_variance",
    "noise_floor_variance",
    "sampler_covariance",
    "bures_wasserstein",
    "bures_wasserstein_commuting",
    "expected_w2_error",
    "ula_stationary_variance",
    "plan_n_steps",
]

_OUTPUTS = ("data", "state")
_METHODS = ("auto", "closed_form", "recursion")


class SamplerMoments(NamedTuple):
    """Per-eigenvalue moments of a sampler's output.

    Attributes
    ----------
    gain : ndarray
        Factor applied to the initial mean offset ``m0 - alpha_{t_0} mu``
        (eigenbasis coordinates).
    variance : ndarray
        Output variance along each eigenvector.
    """

    gain: np.ndarray
    variance: np.ndarray


class GaussianLaw(NamedTuple):
    """Mean and covariance of a Gaussian."""

    mean: np.ndarray
    covariance: np.ndarray


class ExpectedW2Error(NamedTuple):
    """Terms of the expected squared W2 error (all squared distances).

    Attributes
    ----------
    discretisation : float
        Squared W2 between the sampler's output for the true spectrum and the
        truth: sum_k (sqrt(f(lam_k)) - sqrt(lam_k))**2 with ``f`` the sampler's
        variance map.  Includes the noise floor.
    noise_floor : float
        Same with the exact-flow limit in place of ``f``: the part that more
        steps cannot remove.
    steps : float
        Squared W2 between the K-step sampler and its exact-flow limit: the
        part that more steps remove.  ``sqrt(discretisation)`` is at most
        ``sqrt(noise_floor) + sqrt(steps)`` (triangle inequality); the three
        are distances, not additive pieces.
    estimation : float
        Covariance-estimation term, (1/n) [(1/2) sum_{k,l} lam_k lam_l /
        (lam_k + lam_l) + (1/4) sum_k lam_k].
    mean : float
        Mean-estimation term, (1/n) sum_k lam_k.
    total : float
        ``discretisation + estimation + mean``.
    """

    discretisation: float
    noise_floor: float
    steps: float
    estimation: float
    mean: float
    total: float


def _check_eigenvalues(eigenvalues, name="eigenvalues"):
    lam = np.asarray(eigenvalues, dtype=np.float64)
    if lam.ndim > 1:
        raise ValueError(
            f"{name} must be a scalar or a 1-D array, got shape {lam.shape}."
        )
    if not np.all(np.isfinite(lam)):
        raise ValueError(f"{name} must be finite.")
    if np.any(lam < 0):
        raise ValueError(
            f"{name} must be >= 0 (a covariance spectrum), got minimum {lam.min()!r}."
        )
    return lam


def _check_grid(alphas, sigmas):
    a = np.asarray(alphas, dtype=np.float64)
    s = np.asarray(sigmas, dtype=np.float64)
    if a.ndim != 1 or s.shape != a.shape:
        raise ValueError(
            "alphas and sigmas must be 1-D arrays of the same length, got shapes "
            f"{a.shape} and {s.shape}."
        )
    if a.size < 2:
        raise ValueError("The grid needs at least two times (one step).")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(s))):
        raise ValueError("alphas and sigmas must be finite.")
    if np.any(a < 0) or np.any(s < 0):
        raise ValueError("alphas and sigmas must be >= 0.")
    # Cross-multiplied so that alpha_0 = 0 and sigma_K = 0 are allowed, while a
    # step starting at sigma = 0 or ending at alpha = 0 is rejected.
    if not np.all(a[1:] * s[:-1] > a[:-1] * s[1:]):
        raise ValueError(
            "The grid must run from noise to data: alpha/sigma must increase "
            "strictly from alphas[0]/sigmas[0] to alphas[-1]/sigmas[-1]."
        )
    return a, s


def _check_options(eta, c0, output, final_denoise):
    eta = float(eta)
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1], got {eta!r}.")
    c0 = float(c0)
    if not (np.isfinite(c0) and c0 >= 0):
        raise ValueError(f"c0 must be a finite variance >= 0, got {c0!r}.")
    if output not in _OUTPUTS:
        raise ValueError(f"output must be one of {_OUTPUTS}, got {output!r}.")
    if final_denoise and output == "state":
        raise ValueError("final_denoise applies to the data output; use output='data'.")
    return eta, c0


def grid_coefficients(n_steps, noise_floor, *, schedule="cosine", timesteps="logsnr"):
    """Alphas and sigmas of the grid the sampler walks.

    Parameters
    ----------
    n_steps : int
        Number of steps K.
    noise_floor : float
        sigma/alpha at the last time (0 ends at t = 0; ``"logsnr"`` needs > 0).
    schedule : {"cosine", "linear"} or VPSchedule, default="cosine"
    timesteps : {"logsnr", "time_uniform", "angle"}, default="logsnr"

    Returns
    -------
    alphas, sigmas : ndarray of shape (n_steps + 1,)
        Ordered from t_0 (noise) to t_K (data).

    Examples
    --------
    >>> from sklearn_diffsample.gaussian import grid_coefficients
    >>> alphas, sigmas = grid_coefficients(4, 0.0, timesteps="time_uniform")
    >>> alphas[0], sigmas[-1]
    (np.float64(0.0), np.float64(0.0))
    """
    if not isinstance(schedule, VPSchedule):
        schedule = make_schedule(schedule)
    t = time_grid(schedule, n_steps, noise_floor, kind=timesteps)
    return schedule.alpha(t), schedule.sigma(t)


def _step_coefficients(lam, a, s, eta):
    """Per-step gain on the centred state (K, d) and fresh-noise variance (K, 1).

    With the Gaussian denoiser D = alpha_s lam x_s / v_s the sampler's own step
    (:func:`~sklearn_diffsample._solvers.eta_coefficients`) is linear in x_s.
    """
    a, s = a[:, None], s[:, None]
    kept, noise = eta_coefficients(a[:-1], s[:-1], a[1:], s[1:], eta)
    v = a**2 * lam + s**2
    gains = (a[1:] * a[:-1] * lam + kept * s[:-1]) / v[:-1]
    return gains, noise**2


def _recursion(lam, a, s, eta, c0):
    gains, noise_var = _step_coefficients(lam, a, s, eta)
    gain = np.prod(gains, axis=0)
    if eta == 0.0:
        return gain, gain**2 * c0
    # tail[j]: product of the gains after step j, the factor its noise is carried by.
    tail = np.ones_like(gains)
    tail[:-1] = np.cumprod(gains[:0:-1], axis=0)[::-1]
    return gain, gain**2 * c0 + np.sum(tail**2 * noise_var, axis=0)


def _ddim_closed_form(lam, a, s, c0):
    v = a[:, None] ** 2 * lam + s[:, None] ** 2
    phi = np.arctan2(s[:, None], a[:, None] * np.sqrt(lam))
    gain = np.sqrt(v[-1] / v[0]) * np.prod(np.cos(np.diff(phi, axis=0)), axis=0)
    return gain, c0 * gain**2


def _ddpm_closed_form(lam, a, s, c0):
    v = a[:, None] ** 2 * lam + s[:, None] ** 2
    gain = (a[0] / a[-1]) * v[-1] / v[0]
    a_s, s_s, a_t, s_t = a[:-1, None], s[:-1, None], a[1:, None], s[1:, None]
    v_t = v[1:]
    # (rho_t - rho_s) sigma_t^4 written so that it stays finite (= 0) at sigma_t = 0.
    numer = s_t**2 * (a_t**2 - (a_s / s_s) ** 2 * s_t**2)
    riemann = np.sum(numer / np.where(v_t > 0, v_t, 1.0) ** 2, axis=0)
    return gain, gain**2 * c0 + v[-1] ** 2 / a[-1] ** 2 * riemann


def _to_output(gain, var, lam, a_end, s_end, output, final_denoise):
    if output == "state":
        return gain, var
    if final_denoise:
        v_end = a_end**2 * lam + s_end**2
        # A zero eigenvalue with no noise left is a null direction of the denoiser.
        factor = np.divide(
            a_end * lam, v_end, out=np.zeros_like(lam), where=v_end > 0
        )
    else:
        factor = 1.0 / a_end
    return factor * gain, factor**2 * var


def sampler_variance(
    eigenvalues,
    alphas,
    sigmas,
    eta=0.0,
    *,
    final_denoise=False,
    c0=1.0,
    output="data",
    method="auto",
):
    """Per-eigenvalue output gain and variance of the sampler on Gaussian data.

    Data N(mu, diag(eigenvalues)) in its eigenbasis, exact Gaussian score,
    start x_{t_0} ~ N(m0, c0 I), first-order steps
    ``x_t = alpha_t D + sqrt(sigma_t**2 - c**2) (x_s - alpha_s D) / sigma_s + c z``
    with ``c = eta sigma_t sqrt(1 - exp(-2 h))`` and h the log-SNR increment.

    Parameters
    ----------
    eigenvalues : float or array-like of shape (d,)
        Spectrum lam of the data covariance, >= 0.
    alphas, sigmas : array-like of shape (K + 1,)
        The grid, from t_0 (noise) to t_K (data).
    eta : float in [0, 1], default=0.0
        0 is DDIM, 1 is DDPM.
    final_denoise : bool, default=False
        Output D(x_{t_K}, t_K) instead of x_{t_K} / alpha_{t_K}.
    c0 : float, default=1.0
        Variance of the isotropic start.
    output : {"data", "state"}, default="data"
        What the sampler returns, or the state x_{t_K} itself.
    method : {"auto", "closed_form", "recursion"}, default="auto"
        ``"closed_form"`` (DDIM: product of cos(phi_j - phi_{j+1}); DDPM:
        SNR Riemann sum) needs eta in {0, 1}; ``"recursion"`` unrolls the
        exact scalar affine recursion, O(K d), any eta.  ``"auto"`` uses the
        closed form where one exists.

    Returns
    -------
    SamplerMoments
        ``gain`` (factor on the start offset m0 - alpha_{t_0} mu) and
        ``variance``, each of the shape of ``eigenvalues``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_diffsample.gaussian import grid_coefficients, sampler_variance
    >>> alphas, sigmas = grid_coefficients(10, 0.0, timesteps="time_uniform")
    >>> moments = sampler_variance(1.0, alphas, sigmas)
    >>> bool(np.isclose(moments.variance, np.cos(np.pi / 20) ** 20))
    True
    """
    lam = _check_eigenvalues(eigenvalues)
    a, s = _check_grid(alphas, sigmas)
    eta, c0 = _check_options(eta, c0, output, final_denoise)
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}.")
    if method == "closed_form" and eta not in (0.0, 1.0):
        raise ValueError(
            f"The closed forms cover eta = 0 and eta = 1, got eta={eta!r}."
        )
    lam1 = np.atleast_1d(lam)
    if method == "recursion" or eta not in (0.0, 1.0):
        gain, var = _recursion(lam1, a, s, eta, c0)
    elif eta == 0.0:
        gain, var = _ddim_closed_form(lam1, a, s, c0)
    else:
        gain, var = _ddpm_closed_form(lam1, a, s, c0)
    gain, var = _to_output(gain, var, lam1, a[-1], s[-1], output, final_denoise)
    return SamplerMoments(gain.reshape(lam.shape), var.reshape(lam.shape))


def exact_flow_variance(
    eigenvalues, alphas, sigmas, eta=0.0, *, final_denoise=False, c0=1.0, output="data"
):
    """Limit of :func:`sampler_variance` as the steps between the grid's ends shrink.

    Only ``alphas[0], sigmas[0]`` and ``alphas[-1], sigmas[-1]`` matter.  The
    continuous dynamics carry the exact marginal variance
    v_t = alpha_t**2 lam + sigma_t**2 and shrink a deviation from it by
    ``G = sqrt(v_K / v_0) * (alpha_0 / alpha_K * sqrt(v_K / v_0)) ** eta**2``, so
    the state variance is ``v_K + G**2 (c0 - v_0)``.  A first step from
    alpha_0 = 0 stays infinitely long on any grid; the formula is its limit too.

    Parameters
    ----------
    eigenvalues, alphas, sigmas, eta, final_denoise, c0, output
        As in :func:`sampler_variance`.

    Returns
    -------
    SamplerMoments

    Examples
    --------
    >>> from sklearn_diffsample.gaussian import exact_flow_variance
    >>> alphas, sigmas = [0.6, 0.8], [0.8, 0.6]
    >>> float(exact_flow_variance(2.0, alphas, sigmas, c0=0.6**2 * 2 + 0.8**2).variance)
    2.5625
    """
    lam = _check_eigenvalues(eigenvalues)
    a, s = _check_grid(alphas, sigmas)
    eta, c0 = _check_options(eta, c0, output, final_denoise)
    lam1 = np.atleast_1d(lam)
    v_0 = a[0] ** 2 * lam1 + s[0] ** 2
    v_k = a[-1] ** 2 * lam1 + s[-1] ** 2
    ratio = np.sqrt(v_k / v_0)
    gain = ratio * (a[0] / a[-1] * ratio) ** (eta**2)
    var = v_k + gain**2 * (c0 - v_0)
    gain, var = _to_output(gain, var, lam1, a[-1], s[-1], output, final_denoise)
    return SamplerMoments(gain.reshape(lam.shape), var.reshape(lam.shape))


def noise_floor_variance(eigenvalues, noise_floor, final_denoise=False):
    """Output variance of the exact flow started from the exact marginal.

    The data output of a perfect sampler stopped where sigma/alpha = h is the
    data convolved with N(0, h**2 I): variance lam + h**2; its final denoised
    output has variance lam**2 / (lam + h**2).

    Parameters
    ----------
    eigenvalues : float or array-like of shape (d,)
    noise_floor : float
        h = sigma/alpha at the last time, >= 0.
    final_denoise : bool, default=False

    Returns
    -------
    ndarray of the shape of ``eigenvalues``

    Examples
    --------
    >>> from sklearn_diffsample.gaussian import noise_floor_variance
    >>> noise_floor_variance([1.0, 3.0], 1.0, final_denoise=True)
    array([0.5 , 2.25])
    """
    lam = _check_eigenvalues(eigenvalues)
    h = float(noise_floor)
    if not (np.isfinite(h) and h >= 0):
        raise ValueError(f"noise_floor must be finite and >= 0, got {noise_floor!r}.")
    h2 = h**2
    if not final_denoise:
        return lam + h2
    denom = lam + h2
    return np.divide(lam**2, denom, out=np.zeros_like(lam), where=denom > 0)


def _check_gaussian(mean, cov):
    mean = np.asarray(mean, dtype=np.float64)
    cov = np.asarray(cov, dtype=np.float64)
    if mean.ndim != 1 or cov.shape != (mean.size, mean.size):
        raise ValueError(
            f"Expected a mean of shape (d,) and a covariance of shape (d, d), got "
            f"{mean.shape} and {cov.shape}."
        )
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))):
        raise ValueError("mean and covariance must be finite.")
    scale = max(np.abs(cov).max(initial=0.0), np.finfo(np.float64).tiny)
    if not np.allclose(cov, cov.T, rtol=0.0, atol=1e-12 * scale):
        raise ValueError("The covariance must be symmetric.")
    return mean, 0.5 * (cov + cov.T), scale


def _psd_eigh(cov, scale):
    lam, vecs = np.linalg.eigh(cov)
    # Rounding leaves eigenvalues of a singular PSD matrix slightly negative.
    if lam.size and lam[0] < -1e-10 * scale:
        raise ValueError(
            f"The covariance must be positive semi-definite, got eigenvalue {lam[0]!r}."
        )
    return np.clip(lam, 0.0, None), vecs


def sampler_covariance(
    mean,
    cov,
    alphas,
    sigmas,
    eta=0.0,
    *,
    final_denoise=False,
    c0=1.0,
    m0=None,
    output="data",
):
    """Output law of the sampler for data N(mean, cov), any covariance.

    Parameters
    ----------
    mean : array-like of shape (d,)
    cov : array-like of shape (d, d)
        Symmetric positive semi-definite.
    alphas, sigmas, eta, final_denoise, c0, output
        As in :func:`sampler_variance`.
    m0 : array-like of shape (d,), default=None
        Mean of the start N(m0, c0 I); None is the origin.

    Returns
    -------
    GaussianLaw
        ``(mean, covariance)`` of the data output (``output="data"``) or of
        the state x_{t_K} (``output="state"``).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_diffsample.gaussian import grid_coefficients, sampler_covariance
    >>> alphas, sigmas = grid_coefficients(50, 0.05, timesteps="angle")
    >>> law = sampler_covariance([1.0, -1.0], [[2.0, 0.5], [0.5, 1.0]], alphas, sigmas)
    >>> law.mean
    array([ 1., -1.])
    >>> np.round(law.covariance, 3)  # DDIM under-disperses
    array([[1.904, 0.474],
           [0.474, 0.956]])
    """
    mean, cov, scale = _check_gaussian(mean, cov)
    a, s = _check_grid(alphas, sigmas)
    m0 = np.zeros_like(mean) if m0 is None else np.asarray(m0, dtype=np.float64)
    if m0.shape != mean.shape:
        raise ValueError(f"m0 must have shape {mean.shape}, got {m0.shape}.")
    lam, vecs = _psd_eigh(cov, scale)
    gain, var = sampler_variance(
        lam, a, s, eta, final_denoise=final_denoise, c0=c0, output=output
    )
    base = mean if output == "data" else a[-1] * mean
    out_mean = base + vecs @ (gain * (vecs.T @ (m0 - a[0] * mean)))
    out_cov = (vecs * var) @ vecs.T
    return GaussianLaw(out_mean, 0.5 * (out_cov + out_cov.T))


def _psd_sqrt(cov, scale):
    lam, vecs = _psd_eigh(cov, scale)
    return (vecs * np.sqrt(lam)) @ vecs.T


def bures_wasserstein(m1, S1, m2, S2, *, squared=False):
    """Wasserstein-2 distance between two Gaussians (Bures formula).

    ``W2**2 = |m1 - m2|**2 + tr(S1 + S2 - 2 (S1^{1/2} S2 S1^{1/2})^{1/2})``, with
    symmetric square roots from ``eigh`` (negative rounding eigenvalues clipped).

    Parameters
    ----------
    m1, m2 : array-like of shape (d,)
    S1, S2 : array-like of shape (d, d)
        Symmetric positive semi-definite covariances.
    squared : bool, default=False
        Return W2**2 instead of W2.

    Returns
    -------
    float
        W2 (default) or W2**2.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_diffsample.gaussian import bures_wasserstein
    >>> bures_wasserstein(np.zeros(2), np.eye(2), np.ones(2), 4 * np.eye(2))
    2.0
    """
    m1, S1, scale1 = _check_gaussian(m1, S1)
    m2, S2, scale2 = _check_gaussian(m2, S2)
    if m1.shape != m2.shape:
        raise ValueError(f"Dimensions differ: {m1.size} and {m2.size}.")
    root1 = _psd_sqrt(S1, scale1)
    cross = root1 @ S2 @ root1
    cross_eigs = np.linalg.eigvalsh(0.5 * (cross + cross.T))
    trace_root = np.sum(np.sqrt(np.clip(cross_eigs, 0.0, None)))
    w2sq = np.sum((m1 - m2) ** 2) + np.trace(S1) + np.trace(S2) - 2.0 * trace_root
    w2sq = max(float(w2sq), 0.0)
    return w2sq if squared else float(np.sqrt(w2sq))


def bures_wasserstein_commuting(m1, var1, m2, var2, *, squared=False):
    """Wasserstein-2 distance between Gaussians with a common eigenbasis.

    W2**2 = |m1 - m2|**2 + sum_k (sqrt(var1_k) - sqrt(var2_k))**2.

    Parameters
    ----------
    m1, m2 : array-like
        Means (any orthonormal basis; only their difference's norm enters).
    var1, var2 : array-like of shape (d,)
        Eigenvalues of the two covariances, paired along the shared eigenbasis.
    squared : bool, default=False
        Return W2**2 instead of W2.

    Returns
    -------
    float

    Examples
    --------
    >>> from sklearn_diffsample.gaussian import bures_wasserstein_commuting
    >>> bures_wasserstein_commuting(0.0, [4.0, 1.0], 0.0, [1.0, 1.0])
    1.0
    """
    var1 = _check_eigenvalues(var1, "var1")
    var2 = _check_eigenvalues(var2, "var2")
    if var1.shape != var2.shape:
        raise ValueError(
            f"var1 and var2 must have the same shape, got {var1.shape}, {var2.shape}."
        )
    diff = np.asarray(m1, dtype=np.float64) - np.asarray(m2, dtype=np.float64)
    w2sq = float(np.sum(diff**2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2))
    return w2sq if squared else float(np.sqrt(w2sq))


def expected_w2_error(
    eigenvalues, n_samples, alphas, sigmas, eta=0.0, *, final_denoise=False, c0=1.0
):
    """Predicted E W2**2 between the sampler's output and the true Gaussian.

    Pipeline: n samples from N(mu, Sigma), fit the sample mean and covariance,
    sample with the exact score of the fit on the given grid.  To second order
    in the estimation error (arXiv:2503.11615 for the decomposition)

        E W2**2 ~ sum_k (sqrt(f(lam_k)) - sqrt(lam_k))**2                 discretisation
                + (1/n) [(1/2) sum_{k,l} lam_k lam_l / (lam_k + lam_l)
                         + (1/4) sum_k lam_k]                              estimation
                + (1/n) sum_k lam_k                                        mean

    with f the sampler's data-output variance map (:func:`sampler_variance`).
    The discretisation term contains the noise floor; ``noise_floor`` and
    ``steps`` split it by the exact-flow limit (see :class:`ExpectedW2Error`).
    The terms are treated as additive, which neglects their interaction (of
    order the discretisation bias times the estimation error) and the start's
    mean offset alpha_{t_0} mu (zero when alpha_{t_0} = 0).

    Parameters
    ----------
    eigenvalues : array-like of shape (d,)
        Spectrum of the true covariance.
    n_samples : float
        Training-set size n, > 0 (``np.inf`` removes the estimation terms).
    alphas, sigmas, eta, final_denoise, c0
        As in :func:`sampler_variance`.

    Returns
    -------
    ExpectedW2Error
        Squared distances.

    Examples
    --------
    >>> from sklearn_diffsample.gaussian import expected_w2_error, grid_coefficients
    >>> alphas, sigmas = grid_coefficients(
    ...     20, 0.01, schedule="linear", timesteps="time_uniform")
    >>> err = expected_w2_error(
    ...     [4, 2, 1, 0.5, 0.1, 0.01], 1000, alphas, sigmas, final_denoise=True)
    >>> round(err.total, 4), round(err.steps, 4), round(err.estimation, 4)
    (0.0673, 0.0513, 0.0082)
    """
    lam = np.atleast_1d(_check_eigenvalues(eigenvalues))
    n = float(n_samples)
    if not n > 0:
        raise ValueError(f"n_samples must be > 0, got {n_samples!r}.")
    options = dict(final_denoise=final_denoise, c0=c0)
    f = sampler_variance(lam, alphas, sigmas, eta, **options).variance
    f_exact = exact_flow_variance(lam, alphas, sigmas, eta, **options).variance
    root, root_f, root_exact = np.sqrt(lam), np.sqrt(f), np.sqrt(f_exact)
    pair_sum = lam[:, None] + lam[None, :]
    kernel = np.divide(
        np.outer(lam, lam), pair_sum, out=np.zeros_like(pair_sum), where=pair_sum > 0
    )
    discretisation = float(np.sum((root_f - root) ** 2))
    estimation = float(0.5 * kernel.sum() + 0.25 * lam.sum()) / n
    mean = float(lam.sum()) / n
    return ExpectedW2Error(
        discretisation=discretisation,
        noise_floor=float(np.sum((root_exact - root) ** 2)),
        steps=float(np.sum((root_f - root_exact) ** 2)),
        estimation=estimation,
        mean=mean,
        total=discretisation + estimation + mean,
    )


def ula_stationary_variance(eigenvalues, noise, step_size):
    """Stationary variance of unadjusted Langevin with a smoothed Gaussian score.

    ULA x <- x + gamma grad log N(x; mu, Sigma + sigma**2 I) + sqrt(2 gamma) z is
    an AR(1) per eigenvalue with coefficient 1 - gamma / s, s = lam + sigma**2;
    its stationary variance is s / (1 - gamma / (2 s)), an excess over s of
    order gamma.  Stable for gamma < 2 (lam_min + sigma**2).

    Parameters
    ----------
    eigenvalues : float or array-like of shape (d,)
    noise : float
        Smoothing standard deviation sigma, >= 0.
    step_size : float
        gamma > 0.

    Returns
    -------
    ndarray of the shape of ``eigenvalues``

    Examples
    --------
    >>> from sklearn_diffsample.gaussian import ula_stationary_variance
    >>> float(ula_stationary_variance(1.0, 0.0, 0.5))
    1.3333333333333333
    """
    lam = _check_eigenvalues(eigenvalues)
    noise, step_size = float(noise), float(step_size)
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be finite and >= 0, got {noise!r}.")
    smoothed = lam + noise**2
    if not (np.isfinite(step_size) and step_size > 0):
        raise ValueError(f"step_size must be finite and > 0, got {step_size!r}.")
    if np.any(step_size >= 2.0 * smoothed):
        raise ValueError(
            f"ULA diverges for step_size >= 2 (min eigenvalue + noise**2) = "
            f"{2.0 * np.min(smoothed)!r}, got {step_size!r}."
        )
    return smoothed / (1.0 - step_size / (2.0 * smoothed))


def plan_n_steps(
    eigenvalues,
    tol,
    *,
    noise_floor,
    schedule="cosine",
    timesteps="logsnr",
    eta=0.0,
    final_denoise=False,
    max_steps=1000,
):
    """Smallest number of steps whose predicted step error is at most ``tol``.

    The step error is the W2 distance between the K-step sampler's output and
    its own exact-flow limit at the same noise floor
    (:func:`exact_flow_variance`), for data with the given spectrum and the
    sampler's start N(0, I): the noise floor itself is excluded.  K is found by
    a linear scan K = 1, 2, ...: grids for K and K + 1 are not nested, so the
    error is not guaranteed to decrease with K and a bisection could stop at a
    K larger than the smallest one.  Each K costs O(K d).

    Parameters
    ----------
    eigenvalues : array-like of shape (d,)
        Spectrum in the sampler's internal coordinates.
    tol : float
        Tolerance on W2 (not squared), > 0, same units.
    noise_floor : float
        sigma/alpha at the last time (the bandwidth in internal units).
    schedule, timesteps
        As in :func:`grid_coefficients`.
    eta : float in [0, 1], default=0.0
    final_denoise : bool, default=False
    max_steps : int, default=1000
        Give up (ValueError) beyond this many steps.

    Returns
    -------
    int

    Examples
    --------
    >>> from sklearn_diffsample.gaussian import plan_n_steps
    >>> plan_n_steps([4.0, 1.0, 0.25], 0.05, noise_floor=0.1)
    140
    >>> plan_n_steps([4.0, 1.0, 0.25], 0.05, noise_floor=0.1, timesteps="angle")
    62
    """
    lam = np.atleast_1d(_check_eigenvalues(eigenvalues))
    tol = float(tol)
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol!r}.")
    if int(max_steps) < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps!r}.")
    grid = dict(schedule=schedule, timesteps=timesteps)
    options = dict(final_denoise=final_denoise)
    # Every grid shares its two ends, so one exact-flow target serves all K.
    alphas, sigmas = grid_coefficients(1, noise_floor, **grid)
    target = exact_flow_variance(lam, alphas, sigmas, eta, **options).variance
    for n_steps in range(1, int(max_steps) + 1):
        alphas, sigmas = grid_coefficients(n_steps, noise_floor, **grid)
        # The recursion is exact for every eta and the cheapest per K.
        f = sampler_variance(lam, alphas, sigmas, eta, method="recursion", **options)
        error = bures_wasserstein_commuting(0.0, f.variance, 0.0, target)
        if error <= tol:
            return n_steps
    raise ValueError(
        f"No n_steps <= {max_steps} reaches a step error of {tol!r}; "
        f"{max_steps} steps give {error!r}."
    )
