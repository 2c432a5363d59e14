"""Calibration of MM-SOLD's limit law: Stein multipliers and the log-normaliser.

The one-particle limit law of the moment-matched swarm is the tilted density
rho(z) ∝ exp(-V(z) - lambda^T (z - mu) - (z - mu)^T Lambda (z - mu) / 2)
(docs/design.rst, MMSOLDSampler).  The multipliers come from Stein identities
averaged over the particles of a calibration swarm (:class:`SteinSums`); log Z
from defensive importance sampling (:func:`importance_log_normalizer`).
"""

import numpy as np
from scipy.linalg import solve_sylvester
from scipy.special import logsumexp

from ._manifold import sym
from ._posterior import PatternPosterior
from ._score_models import gaussian_log_density

__all__ = ["DefensiveProposal", "SteinSums", "importance_log_normalizer"]

# A pilot of _PILOT_DRAWS importance draws, and more only until the estimated
# standard error of log Z falls below _LOG_Z_TOL (up to the caller's cap).
_PILOT_DRAWS = 2_000
_LOG_Z_TOL = 5e-3
_KDE_SHARE = 0.9


class SteinSums:
    """Running sums for the Stein identities over calibration particles."""

    def __init__(self, d):
        self.count = 0
        self.grad = np.zeros(d)
        self.cross = np.zeros((d, d))

    def add(self, Z, mu, G):
        self.count += Z.shape[0]
        self.grad += G.sum(axis=0)
        self.cross += (Z - mu).T @ G

    def multipliers(self, Sigma):
        """lambda = -E[grad V]; Sigma Lambda + Lambda Sigma = 2 (I - sym E[(z - mu) grad V^T])."""
        lam = -self.grad / self.count
        rhs = 2.0 * (np.eye(len(lam)) - sym(self.cross / self.count))
        return lam, sym(solve_sylvester(Sigma, Sigma, rhs))


class DefensiveProposal:
    """0.9 q_b + 0.1 N(mu, Sigma), q_b the Gaussian KDE of ``particles`` at bandwidth b.

    Parameters
    ----------
    particles : ndarray of shape (P, d)
    bandwidth : float
        b.
    mu : ndarray of shape (d,)
    A : ndarray of shape (d, d)
        Symmetric square root of Sigma.
    """

    def __init__(self, particles, bandwidth, mu, A):
        self.kde = PatternPosterior(particles)
        self.b2 = float(bandwidth) ** 2
        self.mu, self.A = mu, A
        lam, vecs = np.linalg.eigh(A @ A)
        self._eig = (lam, vecs)

    def draw(self, n_draws, rng):
        n_kde = int(round(_KDE_SHARE * n_draws))
        # Systematic picks of the centres: each one's expected count is exact,
        # so the estimate stays unbiased, with less variance than iid picks.
        picks = np.floor((np.arange(n_kde) + rng.random()) * self.kde.n_patterns / n_kde)
        Z_kde = self.kde.take(picks.astype(np.int64))
        Z_kde = Z_kde + np.sqrt(self.b2) * rng.standard_normal(Z_kde.shape)
        Z_gauss = self.mu + rng.standard_normal((n_draws - n_kde, self.mu.shape[0])) @ self.A
        return np.vstack([Z_kde, Z_gauss])

    def kde_log_density(self, Z):
        return self.kde.log_density(Z, self.b2)

    def log_density(self, Z, kde_log_density):
        """log q(Z), given the KDE part (computed by the caller, in parallel rows)."""
        return np.logaddexp(np.log(_KDE_SHARE) + kde_log_density,
                            np.log1p(-_KDE_SHARE)
                            + gaussian_log_density(Z, self.mu, *self._eig))


def ess_fraction(log_w):
    """Kish effective sample size of importance weights, as a fraction of their number."""
    return float(np.exp(2.0 * logsumexp(log_w) - logsumexp(2.0 * log_w)) / len(log_w))


def importance_log_normalizer(energy, proposal, n_max, rng, rows=None):
    """log of int exp(-energy) by importance sampling, its ESS fraction and standard error.

    A pilot of ``min(2000, n_max)`` draws estimates the ESS; more draws follow
    until the standard error sqrt((1/ESS - 1)/n) of log Z is below 5e-3, up to
    ``n_max``.  ``rows(func, Z)`` evaluates a row-wise function (in parallel
    chunks, say); by default it calls ``func(Z)``.
    """
    rows = rows or (lambda func, Z: func(Z))

    def log_weights(n_draws):
        Z = proposal.draw(n_draws, rng)
        log_q = proposal.log_density(Z, rows(proposal.kde_log_density, Z))
        return -rows(energy, Z) - log_q

    log_w = log_weights(min(_PILOT_DRAWS, n_max))
    ess = ess_fraction(log_w)
    wanted = (1.0 / ess - 1.0) / _LOG_Z_TOL**2
    extra = 10 * (int(min(wanted, n_max) - len(log_w)) // 10)
    if extra > 0:
        log_w = np.concatenate([log_w, log_weights(extra)])
        ess = ess_fraction(log_w)
    # The delta method: Var(log Z_hat) ~ Var(w) / (n mean(w)^2) = (1/ESS - 1) / n.
    se = float(np.sqrt(max(1.0 / ess - 1.0, 0.0) / len(log_w))) if ess > 0 else np.inf
    return float(logsumexp(log_w) - np.log(len(log_w))), ess, se
