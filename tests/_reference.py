"""Independent brute-force references: direct float64 differences, no tricks."""

import numpy as np
from scipy.linalg import inv, sqrtm
from scipy.special import logsumexp


def brute_posterior(queries, patterns, s2, log_weights=None):
    """logZ, mean and spread by materialising every difference q - x_i."""
    queries = np.asarray(queries, dtype=np.float64)
    patterns = np.asarray(patterns, dtype=np.float64)
    s2 = np.broadcast_to(np.asarray(s2, dtype=np.float64), (len(queries),))
    diff = queries[:, None, :] - patterns[None, :, :]
    logits = -np.sum(diff * diff, axis=2) / (2.0 * s2[:, None])
    if log_weights is not None:
        logits = logits + log_weights[None, :]
    log_norm = logsumexp(logits, axis=1)
    prob = np.exp(logits - log_norm[:, None])
    mean = prob @ patterns
    dev = patterns[None, :, :] - mean[:, None, :]
    spread = np.sum(prob * np.sum(dev * dev, axis=2), axis=1)
    return log_norm, mean, spread


def brute_kde_log_density(queries, patterns, bandwidth):
    """log (1/N) sum_i N(q; x_i, h^2 I), by direct differences."""
    log_norm, _, _ = brute_posterior(queries, patterns, bandwidth**2)
    n, d = np.shape(patterns)
    return log_norm - np.log(n) - 0.5 * d * np.log(2.0 * np.pi * bandwidth**2)


def variance_matching_map(C, kernel_variance):
    """A = C^(1/2) (C + v I)^(-1/2) from scipy's matrix square roots: the map
    that takes a KDE of patterns with covariance C back to C."""
    C = np.asarray(C, dtype=np.float64)
    return np.real(sqrtm(C) @ inv(sqrtm(C + kernel_variance * np.eye(len(C)))))


def transport_map(S, C):
    """The symmetric T with T S T = C, C^(1/2) (C^(1/2) S C^(1/2))^(-1/2) C^(1/2),
    from scipy's matrix square roots."""
    root = np.real(sqrtm(np.asarray(C, dtype=np.float64)))
    return root @ inv(np.real(sqrtm(root @ S @ root))) @ root


def matched_kde_log_density(queries, patterns, bandwidth, fitted_on=None):
    """:func:`standardized_kde_log_density` mapped about the mean by the
    variance-matching map of the z-scores' correlation matrix (all of
    ``fitted_on``, default the patterns), as a density in data units."""
    fitted_on = np.asarray(patterns if fitted_on is None else fitted_on, dtype=np.float64)
    mean, std = zscore_stats(fitted_on)
    A = variance_matching_map(np.corrcoef(fitted_on.T).reshape(len(mean), -1), bandwidth**2)
    unmapped = mean + std * (((np.asarray(queries) - mean) / std) @ np.linalg.inv(A))
    return (standardized_kde_log_density(unmapped, patterns, bandwidth, fitted_on=fitted_on)
            - np.linalg.slogdet(A)[1])


def zscore_stats(X):
    """Per-feature mean and standard deviation (1 for a constant feature)."""
    X = np.asarray(X, dtype=np.float64)
    std = X.std(axis=0)
    return X.mean(axis=0), np.where(std > 0, std, 1.0)


def standardized_kde_log_density(queries, patterns, bandwidth, fitted_on=None):
    """The KDE of bandwidth h in per-feature z-scores, as a density in data
    units: each feature's kernel width is h times its standard deviation.
    The z-scores are those of ``fitted_on`` (default: the patterns)."""
    patterns = np.asarray(patterns, dtype=np.float64)
    mean, std = zscore_stats(patterns if fitted_on is None else fitted_on)
    return (brute_kde_log_density((np.asarray(queries) - mean) / std, (patterns - mean) / std,
                                  bandwidth) - np.sum(np.log(std)))
