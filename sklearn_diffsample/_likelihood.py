"""The probability-flow likelihood of a guided score model, apart from the solvers.

In y = x/alpha and u = log(sigma/alpha) the probability-flow ODE of the
variance-preserving diffusion is dy/du = -e^{2u} s_w(y), with s_w the guided
score of the data law smoothed by N(0, e^{2u} I), and the log-density changes by
d log p/du = e^{2u} div s_w (the instantaneous change of variables; Song et al.
2021, "Score-based generative modeling through SDEs").  The score model gives
the score and its exact divergence; one tight ``solve_ivp`` runs per row.
"""

import numpy as np
from scipy.integrate import solve_ivp

from ._schedules import LOG_SNR_FLOOR
from ._score_models import guided_combination

__all__ = ["probability_flow_log_density"]

_ODE_RTOL = 1e-11
_ODE_ATOL = 1e-12


def probability_flow_log_density(model, Z, label, w, alpha_start, sigma_start, noise_floor,
                                 *, start="sampler"):
    """log-density of the flow's output law at each row of Z (internal units).

    Parameters
    ----------
    model : EmpiricalScore or GaussianScore
    Z : ndarray of shape (m, d)
    label : int or None
        Class code of every row (None: unconditional).
    w : float
        Guidance scale of s_w = (1 - w) s_u + w s_c.
    alpha_start, sigma_start : float
        First grid point of the sampler.
    noise_floor : float
        sigma/alpha at the end of the flow.
    start : {"sampler", "marginal"}
        The law at the start: ``"sampler"`` is the sampler's N(0, I) in x at
        (alpha_start, sigma_start), or, when alpha_start = 0 (where y is
        undefined), the flow's own law at the logSNR floor, the marginal
        (1 - w) log p_u + w log p_c there (exact for w in {0, 1}, to first
        order in alpha ~ 5e-5 otherwise).  ``"marginal"`` uses that marginal at
        any start: then the integration must reproduce the closed form.

    Returns
    -------
    ndarray of shape (m,)
    """
    d = Z.shape[1]
    codes = None if label is None else np.array([label])
    lam_start = LOG_SNR_FLOOR
    if alpha_start > 0:
        lam_start = max(float(np.log(alpha_start) - np.log(sigma_start)), lam_start)
    u_span = (float(np.log(noise_floor)), -lam_start)
    var_start = np.exp(2.0 * u_span[1])

    def flow(u, state):
        tau2 = np.exp(2.0 * u)
        score, div = guided_combination(model.score_and_divergence, state[None, :d],
                                        codes, w, tau2)
        return np.concatenate([-tau2 * score[0], tau2 * div])

    def marginal(y_end):
        return guided_combination(model.log_density, y_end[None], codes, w, var_start)[0]

    out = np.empty(Z.shape[0])
    for i, z in enumerate(Z):
        sol = solve_ivp(flow, u_span, np.append(z, 0.0), method="DOP853",
                        rtol=_ODE_RTOL, atol=_ODE_ATOL)
        y_end, change = sol.y[:d, -1], sol.y[d, -1]
        if start == "marginal" or alpha_start == 0:
            log_start = marginal(y_end)
        else:
            # x at the start = alpha_start y ~ N(0, I), the sampler's start.
            log_start = (-0.5 * d * np.log(2.0 * np.pi)
                         - 0.5 * alpha_start**2 * float(y_end @ y_end)
                         + d * np.log(alpha_start))
        out[i] = log_start - change
    return out
