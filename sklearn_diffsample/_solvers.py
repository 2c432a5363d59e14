"""First-order exponential integrators of the reverse variance-preserving diffusion.

One function per step, one signature: the state x_s at (alpha_s, sigma_s), the
denoiser output D = E[x_0 | x_s], the next point (alpha_t, sigma_t), and for the
stochastic steps the fresh standard normal z.  With lambda = log(alpha/sigma) a
step has h = lambda_t - lambda_s > 0 and e^{-h} = alpha_s sigma_t / (sigma_s alpha_t)
(Song et al. 2020, Lu et al. 2022).  In x/alpha coordinates every step is a
convex combination of the current point and D (plus noise), which is what keeps
guided samples near the support (arXiv:2605.07220).  The closed forms of
:mod:`sklearn_diffsample.gaussian` use the same coefficients.
"""

import numpy as np

__all__ = ["ddim_step", "ddpm_step", "dpmpp_2m_denoised", "eta_coefficients", "eta_step"]


def _decay(alpha_s, sigma_s, alpha_t, sigma_t):
    """e^{-h} = alpha_s sigma_t / (sigma_s alpha_t); exactly 0 from alpha_s = 0."""
    return (alpha_s * sigma_t) / (sigma_s * alpha_t)


def eta_coefficients(alpha_s, sigma_s, alpha_t, sigma_t, eta):
    """(kept, noise) of the eta step x_t = alpha_t D + kept (x_s - alpha_s D)/sigma_s + noise z.

    noise = eta sigma_t sqrt(1 - e^{-2h}) and kept = sqrt(sigma_t^2 - noise^2),
    the latter written as a sum of positives, free of cancellation (exactly
    sigma_t e^{-h} for DDPM).  Works element-wise on arrays of grid points.
    """
    # A step too short to resolve can round e^{-h} above 1; h >= 0 always.
    decay2 = np.minimum(_decay(alpha_s, sigma_s, alpha_t, sigma_t) ** 2, 1.0)
    noise = eta * sigma_t * np.sqrt(1.0 - decay2)
    kept = sigma_t * np.sqrt((1.0 - eta**2) + eta**2 * decay2)
    return kept, noise


def ddim_step(x_s, denoised, alpha_s, sigma_s, alpha_t, sigma_t):
    """DDIM: x_t = alpha_t D + (sigma_t / sigma_s)(x_s - alpha_s D)."""
    return alpha_t * denoised + (sigma_t / sigma_s) * (x_s - alpha_s * denoised)


def ddpm_step(x_s, denoised, alpha_s, sigma_s, alpha_t, sigma_t, z):
    """DDPM step.

    x_t = (sigma_t/sigma_s) e^{-h} x_s + alpha_t (1 - e^{-2h}) D
    + sigma_t sqrt(1 - e^{-2h}) z.
    """
    decay = np.minimum(_decay(alpha_s, sigma_s, alpha_t, sigma_t), 1.0)
    keep = 1.0 - decay**2
    return ((sigma_t / sigma_s) * decay * x_s + (alpha_t * keep) * denoised
            + (sigma_t * np.sqrt(keep)) * z)


def eta_step(x_s, denoised, alpha_s, sigma_s, alpha_t, sigma_t, eta, z):
    """x_t = alpha_t D + sqrt(sigma_t^2 - c^2)(x_s - alpha_s D)/sigma_s + c z.

    c = eta sigma_t sqrt(1 - e^{-2h}); eta = 0 is DDIM, eta = 1 is DDPM.
    """
    kept, noise = eta_coefficients(alpha_s, sigma_s, alpha_t, sigma_t, eta)
    return alpha_t * denoised + (kept / sigma_s) * (x_s - alpha_s * denoised) + noise * z


def log_snr(alpha, sigma):
    """lambda = log(alpha / sigma); -inf at alpha = 0, +inf at sigma = 0."""
    with np.errstate(divide="ignore"):
        return np.log(alpha) - np.log(sigma)


def dpmpp_2m_denoised(denoised, denoised_prev, h, h_prev, out=None):
    """The second-order multistep denoiser of DPM-Solver++(2M) (Lu et al. 2022b).

    D = (1 + 1/(2r)) D_s - D_prev / (2r), r = h_prev / h, the two last log-SNR
    steps; a DDIM step with D in place of D_s is then second order in h.  With
    no previous step, or an infinite one (the first step from alpha = 0), it is
    D_s: the first-order step.  ``out`` (which may be ``denoised_prev``)
    receives D when it is not D_s.
    """
    if denoised_prev is None or not np.isfinite(h_prev) or not np.isfinite(h):
        return denoised
    half_inverse_ratio = 0.5 * h / h_prev
    if out is None:
        return (1.0 + half_inverse_ratio) * denoised - half_inverse_ratio * denoised_prev
    # D_s + (D_s - D_prev) / (2r) without temporaries.
    np.subtract(denoised_prev, denoised, out=out)
    out *= -half_inverse_ratio
    out += denoised
    return out
