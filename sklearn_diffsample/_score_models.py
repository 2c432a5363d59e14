"""Score models: the exact denoiser, score and density of the data law.

:class:`~sklearn_diffsample.GuidedDiffusionSampler` picks one at fit.  The
sampler, the closed-form density and the probability-flow likelihood ask it the
same three questions, in internal coordinates, for one class (``label``, a class
code) or the whole data (``label=None``).  The data law is either the patterns
or a Gaussian fitted to them, smoothed by N(0, h0^2 I); ``variance`` arguments
are the noise added on top of that law.
"""

import numpy as np

from ._clustered import PatternClusters, default_n_clusters, patterns_per_query
from ._posterior import PatternPosterior

__all__ = ["EmpiricalScore", "GaussianScore", "SCORE_MODELS", "guided_combination"]


class EmpiricalScore:
    """The training patterns smoothed by N(0, h0^2 I); every sum by the engine.

    Parameters
    ----------
    Z : ndarray of shape (N, d)
        Patterns in internal coordinates.
    codes : ndarray of shape (N,) or None
        Class code of each pattern.
    data_variance : float
        h0^2 in internal units.
    n_neighbors, tol, algorithm, random_state
        The engine's certified top-k mode and its index (None: exact sums).
    clustered : bool, default=False
        Denoise with :class:`._clustered.PatternClusters` (one partition per
        engine, seeded by ``random_state``) instead of exact sums.
    """

    def __init__(self, Z, codes, data_variance, *, n_neighbors=None, tol=1e-8,
                 algorithm=None, random_state=None, clustered=False):
        self.posterior = PatternPosterior(
            Z, groups=codes, algorithm=None if n_neighbors is None else algorithm,
            random_state=random_state)
        self.data_variance = float(data_variance)
        self.n_neighbors = n_neighbors
        self.tol = tol
        # Each class's engine (and index) is built at fit, not on the first sample.
        labels = [None] + ([] if codes is None else [int(c) for c in np.unique(codes)])
        for code in labels[1:]:
            self.posterior.group(code)
        self.clusters = None
        if clustered:
            seed = 0 if random_state is None else int(random_state)
            self.clusters = {label: PatternClusters(
                self.engine(label), default_n_clusters(self.engine(label).n_patterns), seed)
                for label in labels}

    def engine(self, label):
        return self.posterior if label is None else self.posterior.group(label)

    def terms_per_query(self, label):
        """About the patterns one denoiser call sums per query."""
        return patterns_per_query(self.engine(label),
                                  None if self.clusters is None else self.clusters[label])

    def denoise(self, x, alpha, sigma, label):
        """E[x_0 | x_t = x] with x_t = alpha x_0 + sigma eps."""
        if alpha == 0.0:
            # Pure noise carries no information: the denoiser is the prior mean.
            return np.broadcast_to(self.engine(label).offset, x.shape).copy()
        h0_sq = self.data_variance
        s2 = (sigma / alpha) ** 2 + h0_sq
        if self.clusters is not None:
            mean = self.clusters[label].mean(self.engine(label), x / alpha, s2)
        else:
            mean = self.engine(label).query(x / alpha, s2, mean=True,
                                            n_neighbors=self.n_neighbors, tol=self.tol).mean
        if h0_sq == 0.0:
            return mean
        shrink = alpha * h0_sq / (sigma**2 + alpha**2 * h0_sq)
        return mean + shrink * (x - alpha * mean)

    def log_density(self, Z, variance, label):
        """log p of the data law smoothed by N(0, variance I)."""
        return self.engine(label).log_density(Z, variance + self.data_variance)

    def score_and_divergence(self, y, variance, label):
        """grad log p and its Laplacian for the data law smoothed by ``variance``."""
        s2 = variance + self.data_variance
        stats = self.engine(label).query(y, s2, mean=True, spread=True)
        return (stats.mean - y) / s2, -y.shape[1] / s2 + stats.spread / s2**2


class GaussianScore:
    """N(mean, cov + h0^2 I) fitted by maximum likelihood (per class when labelled).

    Parameters
    ----------
    Z : ndarray of shape (N, d)
        Patterns in internal coordinates.
    codes : ndarray of shape (N,) or None
        Class code of each pattern.
    data_variance : float
        h0^2 in internal units.
    """

    def __init__(self, Z, codes, data_variance):
        self.data_variance = float(data_variance)
        labels = [None] if codes is None else [None, *range(int(codes.max()) + 1)]
        self.moments = {}
        for label in labels:
            rows = Z if label is None else Z[codes == label]
            mean = rows.mean(axis=0)
            dev = rows - mean
            cov = dev.T @ dev / rows.shape[0]
            lam, vecs = np.linalg.eigh(0.5 * (cov + cov.T))
            self.moments[label] = (mean, np.clip(lam, 0.0, None), vecs)

    def terms_per_query(self, label):
        """No sums over patterns: the denoiser is affine."""
        return 0

    def mean_covariance(self, label):
        """Mean and covariance of the fitted Gaussian, without h0."""
        mean, lam, vecs = self.moments[label]
        return mean, (vecs * lam) @ vecs.T

    def _smoothed(self, label, variance):
        mean, lam, vecs = self.moments[label]
        return mean, lam + self.data_variance + variance, vecs

    def denoise(self, x, alpha, sigma, label):
        """E[x_0 | x_t = x]: an affine map along the eigenvectors."""
        mean, lam, vecs = self._smoothed(label, 0.0)
        gain = alpha * lam / (alpha**2 * lam + sigma**2)
        return mean + ((x - alpha * mean) @ vecs * gain) @ vecs.T

    def log_density(self, Z, variance, label):
        mean, var, vecs = self._smoothed(label, variance)
        return gaussian_log_density(Z, mean, var, vecs)

    def score_and_divergence(self, y, variance, label):
        mean, var, vecs = self._smoothed(label, variance)
        return -((y - mean) @ vecs / var) @ vecs.T, np.full(len(y), -np.sum(1.0 / var))


def gaussian_log_density(Z, mean, eigenvalues, eigenvectors):
    """log N(Z; mean, V diag(eigenvalues) V^T) at each row of Z."""
    proj = (Z - mean) @ eigenvectors
    return -0.5 * (np.sum(np.log(2.0 * np.pi * eigenvalues))
                   + np.sum(proj**2 / eigenvalues, axis=1))


SCORE_MODELS = {"empirical": EmpiricalScore, "gaussian": GaussianScore}


def guided_combination(func, x, codes, w, *args):
    """(1 - w) func(., None) + w func(., class), skipping the side whose weight is 0.

    ``func(rows, *args, label)`` returns an array or a tuple of arrays; ``codes``
    gives each row of ``x`` its class (None: unconditional).
    """
    if codes is None or w == 0:
        return func(x, *args, None)
    cond = _by_class(func, x, codes, *args)
    if w == 1:
        return cond
    uncond = func(x, *args, None)
    if isinstance(uncond, tuple):
        return tuple(u + w * (c - u) for u, c in zip(uncond, cond))
    return uncond + w * (cond - uncond)


def _by_class(func, x, codes, *args):
    """func(rows, *args, class) on the rows of each class, reassembled."""
    out, is_tuple = None, False
    for code in np.unique(codes):
        rows = codes == code
        part = func(x[rows], *args, int(code))
        is_tuple = isinstance(part, tuple)
        parts = part if is_tuple else (part,)
        if out is None:
            out = tuple(np.empty((x.shape[0],) + p.shape[1:]) for p in parts)
        for o, p in zip(out, parts):
            o[rows] = p
    return out if is_tuple else out[0]
