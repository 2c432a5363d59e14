"""Behaviour every density estimator of the package shares.

Validation up front, scale-aware bandwidth rules, ``score`` as the total
log-likelihood, argument checks of ``sample``, row-chunked parallel scoring and
a ``fit`` that leaves a previously fitted estimator untouched when it fails.
Subclasses implement ``_fit``, ``_score_samples`` and ``_sample``.
"""

import numbers
from contextlib import contextmanager, nullcontext
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, DensityMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import threadpool_limits

from ._neighbors import ALGORITHMS
from ._parallel import blas_threads_per_worker, seed_sequence

__all__ = [
    "BaseDiffusionDensity",
    "check_n_samples",
    "data_scale",
    "resolve_bandwidth",
    "restored_on_failure",
]

BANDWIDTH_RULES = ("scott", "silverman")
_SCORE_ROWS = 1024


def data_scale(X):
    """sigma_bar = sqrt(mean per-feature variance); 1 for data without spread."""
    scale = float(np.sqrt(np.mean(np.var(X, axis=0))))
    return scale if scale > 0 and np.isfinite(scale) else 1.0


def resolve_bandwidth(bandwidth, X):
    """A float bandwidth from a number or a scale-aware rule.

    ``"scott"``: sigma_bar n^(-1/(d+4)); ``"silverman"``:
    sigma_bar (n (d+2)/4)^(-1/(d+4)), sigma_bar from :func:`data_scale`.
    Unlike ``KernelDensity``'s rules these follow the data's scale.
    """
    if not isinstance(bandwidth, str):
        return float(bandwidth)
    n, d = X.shape
    if bandwidth == "scott":
        factor = n ** (-1.0 / (d + 4))
    elif bandwidth == "silverman":
        factor = (n * (d + 2) / 4.0) ** (-1.0 / (d + 4))
    else:
        raise ValueError(f"bandwidth rule must be one of {BANDWIDTH_RULES}, got {bandwidth!r}.")
    return data_scale(X) * factor


def check_n_samples(n_samples):
    """``n_samples`` as a non-negative int, or a ValueError naming it."""
    if isinstance(n_samples, (bool, np.bool_)) or not isinstance(n_samples, numbers.Integral):
        raise ValueError(
            f"n_samples must be a non-negative integer, got {n_samples!r} "
            f"of type {type(n_samples).__name__}."
        )
    if n_samples < 0:
        raise ValueError(f"n_samples must be a non-negative integer, got {n_samples}.")
    return int(n_samples)


@contextmanager
def restored_on_failure(estimator):
    """Put ``estimator``'s attributes back as they were if the block raises.

    A failed ``fit`` must not leave a half-updated estimator behind:
    ``validate_data`` alone sets ``n_features_in_`` before it can fail.
    """
    snapshot = estimator.__dict__.copy()
    try:
        yield estimator
    except BaseException:
        estimator.__dict__.clear()
        estimator.__dict__.update(snapshot)
        raise


class BaseDiffusionDensity(DensityMixin, BaseEstimator):
    """Shared scikit-learn behaviour of the package's density estimators."""

    _parameter_constraints: dict = {
        "bandwidth": [Interval(Real, 0, None, closed="neither"), StrOptions(set(BANDWIDTH_RULES))],
        "algorithm": [StrOptions(set(ALGORITHMS))],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit the model on the patterns X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training patterns.
        y : None
            Ignored unless the estimator is class-conditional.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        with restored_on_failure(self):
            return self._fit(X, y)

    def _validate_fit_data(self, X, **kwargs):
        return validate_data(self, X, dtype=[np.float64, np.float32], **kwargs).astype(
            np.float64, copy=False
        )

    def _validate_query(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return X.astype(np.float64, copy=False)

    def score_samples(self, X):
        """Normalised log-density of the model at each row of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        log_density : ndarray of shape (n_samples,)
        """
        X = self._validate_query(X)
        return self._score_rows(self._score_samples, X)

    def _score_rows(self, func, X, *args):
        """Apply ``func(rows, *args)`` on fixed row chunks, in parallel threads."""
        if X.shape[0] <= _SCORE_ROWS:
            return np.asarray(func(X, *args), dtype=np.float64)
        n_jobs = getattr(self, "n_jobs", None)
        starts = range(0, X.shape[0], _SCORE_ROWS)
        inner = blas_threads_per_worker(n_jobs, len(starts))
        with threadpool_limits(limits=inner) if inner else nullcontext():
            parts = Parallel(n_jobs=n_jobs, prefer="threads")(
                delayed(func)(X[start:start + _SCORE_ROWS], *args) for start in starts
            )
        return np.concatenate(parts).astype(np.float64, copy=False)

    def score(self, X, y=None):
        """Total log-likelihood of X under the model.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : None
            Ignored.

        Returns
        -------
        logprob : float
            ``sum(score_samples(X))``, what model selection maximises.
        """
        return float(np.sum(self.score_samples(X)))

    def sample(self, n_samples=1, random_state=None):
        """Draw samples from the model.

        Parameters
        ----------
        n_samples : int, default=1
            Number of samples; 0 returns an empty (0, n_features) array.
        random_state : int, RandomState, Generator or None, default=None
            None draws fresh entropy; anything else makes the call
            reproducible for any ``n_jobs`` and joblib backend.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        """
        n_samples = check_n_samples(n_samples)
        check_is_fitted(self)
        seed = seed_sequence(random_state)
        if n_samples == 0:
            return np.empty((0, self.n_features_in_))
        return np.asarray(self._sample(n_samples, seed), dtype=np.float64)
