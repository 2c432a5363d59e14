"""Behaviour every density estimator of the package shares.

Validation up front, scale-aware bandwidth rules, ``score`` as the total
log-likelihood, argument checks of ``sample``, row-chunked parallel scoring and
a ``fit`` that leaves a previously fitted estimator untouched when it fails.
Subclasses implement ``_fit``, ``_score_samples`` and ``_sample``.
"""

import numbers
import os
from contextlib import contextmanager
from numbers import Integral, Real

import numpy as np
from joblib import hash as joblib_hash
from sklearn.base import BaseEstimator, DensityMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import check_is_fitted, validate_data

from ._bandwidth import heldout_bandwidth
from ._conditional import (
    encode_fit_labels,
    encode_labels,
    fit_class_models,
    sample_by_class,
    score_by_class,
)
from ._coordinates import (
    COORDINATES,
    covariance_to_data,
    data_location_scale,
    data_scale,
    fit_coordinates,
    log_jacobian,
    to_data,
    to_internal,
)
from ._neighbors import ALGORITHMS
from ._parallel import hot_loop_blas, seed_sequence

__all__ = [
    "BaseDiffusionDensity",
    "check_bandwidth_range",
    "check_n_samples",
    "check_output_memory",
    "data_location_scale",
    "data_scale",
    "index_seed",
    "resolve_bandwidth",
    "restored_on_failure",
]

BANDWIDTH_RULES = ("auto", "scott", "silverman")
_SCORE_ROWS = 1024
# Bandwidths, in internal units (the data's standard deviations), that the
# engine resolves: below the lower end the kernel variance underflows next to
# squared distances of order one, above the upper end every pattern weighs the
# same.
BANDWIDTH_RANGE = (1e-100, 1e6)


def check_bandwidth_range(value, name="bandwidth"):
    """Refuse a bandwidth (internal units) the engine cannot resolve."""
    low, high = BANDWIDTH_RANGE
    if not (np.isfinite(value) and low <= value <= high):
        raise ValueError(
            f"{name}={value:.3g} is outside {low:g} to {high:g}, the range this "
            f"estimator resolves; {name} is measured in standard deviations of the "
            "training data (the estimator's internal units), so values near 0.01 "
            "to 1 are the useful ones."
        )
    return value


def resolve_bandwidth(bandwidth, Z, match_variance=False, spectrum=None):
    """A float bandwidth in the units of Z (the internal coordinates) from a
    number or a rule.

    ``"auto"``: the isotropic bandwidth that maximises the held-out
    log-likelihood of the Gaussian KDE of Z (:func:`._bandwidth.heldout_bandwidth`,
    the cost of about 3 exact engine passes over at most 1000 held-out rows);
    ``"scott"``: sigma_bar n^(-1/(d+4)); ``"silverman"``:
    sigma_bar (n (d+2)/4)^(-1/(d+4)), sigma_bar from :func:`data_scale`
    (1 for standardised or whitened Z without constant features).
    ``match_variance`` makes ``"auto"`` maximise the likelihood of the KDE
    mapped about the origin to keep Z's covariance (the law of
    ``GuidedDiffusionSampler(match_variance=True)``), with Z's covariance
    ``spectrum`` where the caller has it.
    """
    if not isinstance(bandwidth, str):
        return float(bandwidth)
    n, d = Z.shape
    if bandwidth == "auto":
        return heldout_bandwidth(Z, match_variance, spectrum)
    if bandwidth == "scott":
        factor = n ** (-1.0 / (d + 4))
    elif bandwidth == "silverman":
        factor = (n * (d + 2) / 4.0) ** (-1.0 / (d + 4))
    else:
        raise ValueError(f"bandwidth rule must be one of {BANDWIDTH_RULES}, got {bandwidth!r}.")
    return data_scale(Z) * factor


def index_seed(random_state):
    """The int seed of a neighbour index, from an estimator's ``random_state``.

    An int is used as it is and None is 0, so that an index can be rebuilt
    identically after unpickling; a RandomState or Generator gives one draw.
    """
    if random_state is None:
        return 0
    if isinstance(random_state, (Integral, np.integer)):
        return int(random_state)
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(np.iinfo(np.int32).max))
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def check_output_memory(n_samples, n_features):
    """Refuse a draw whose float64 result cannot fit in this machine's memory.

    The result is held twice while the chunks are stacked; where the
    platform does not report its memory nothing is refused.
    """
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return
    need = 2 * 8 * int(n_samples) * int(n_features)
    if need > total:
        fits = max(total // (2 * 8 * max(int(n_features), 1)), 1)
        raise ValueError(
            f"sample({n_samples}) would need about {need / 2**30:.1f} GiB for its "
            f"{n_samples} x {n_features} float64 result, more than this machine's "
            f"{total / 2**30:.1f} GiB of memory. Draw in batches of at most "
            f"{fits // 2} samples, with a different random_state for each."
        )


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
    """Shared scikit-learn behaviour of the package's density estimators.

    Parameters fixed by ``fit`` stay fixed: ``sample`` and ``score_samples``
    validate the parameters again and refuse to run when one that shapes the
    fitted law was changed by ``set_params`` after the fit (or by a refit
    that was refused).  Those in ``_call_time_params`` are read at each call.
    """

    _parameter_constraints: dict = {
        "bandwidth": [Interval(Real, 0, None, closed="neither"), StrOptions(set(BANDWIDTH_RULES))],
        "coordinates": [StrOptions(set(COORDINATES))],
        "algorithm": [StrOptions(set(ALGORITHMS))],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "n_jobs": [Integral, None],
        "random_state": ["random_state", np.random.Generator],
        "verbose": ["verbose"],
    }
    # Read at each call, so free to change between fit and sample; the seed
    # of fit has done its work once the fit is stored.
    _call_time_params = ("batch_size", "n_jobs", "verbose", "random_state")
    # fit(X, y) adds one model per class (class_models_) to the model of all
    # rows, for estimators without a class mechanism of their own.
    _per_class_models = False

    def __init__(self, *, bandwidth, coordinates, algorithm, batch_size, n_jobs,
                 random_state, verbose):
        self.bandwidth = bandwidth
        self.coordinates = coordinates
        self.algorithm = algorithm
        self.batch_size = batch_size
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit the model on the patterns X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training patterns.
        y : array-like of shape (n_samples,), default=None
            Class labels, for class-conditional sampling and scoring.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        with restored_on_failure(self), hot_loop_blas():
            if not self._per_class_models:
                self._fit(X, y)
            else:
                self._fit(X, None)
                self._fit_class_models(X, y)
            self._fit_params_hash = self._law_params_hash()
        return self

    def _fit_class_models(self, X, y):
        for name in ("classes_", "class_models_"):
            self.__dict__.pop(name, None)
        X = self._validate_fit_data(X, reset=False)
        codes, classes = encode_fit_labels(X, y)
        if classes is not None:
            self.classes_ = classes
            self.class_models_ = fit_class_models(self, X, codes, classes)

    def _law_params_hash(self):
        params = self.get_params(deep=False)
        return {name: joblib_hash(value) for name, value in params.items()
                if name not in self._call_time_params}

    def _check_call(self):
        """Fitted, parameters valid, and none that shapes the law changed since fit."""
        check_is_fitted(self)
        self._validate_params()
        # An estimator unpickled from a version without the record is trusted.
        fitted = getattr(self, "_fit_params_hash", None) or {}
        changed = sorted(name for name, value in self._law_params_hash().items()
                         if fitted and fitted.get(name) != value)
        if changed:
            raise ValueError(
                f"{', '.join(changed)} changed since this {type(self).__name__} was "
                "fitted (set_params after fit, or a refit that failed); call fit "
                "again to use the new value, or set it back."
            )

    # ------------------------------------------------- internal coordinates
    def _fit_coordinates(self, X):
        """Set ``location_``, ``scale_`` and ``whitening_`` from X; return X in them."""
        self.location_, self.scale_, self.whitening_ = fit_coordinates(X, self.coordinates)
        return self._to_internal(X)

    def _to_internal(self, X):
        return to_internal(X, self.location_, self.scale_, self.whitening_)

    def _to_data(self, Z):
        return to_data(Z, self.location_, self.scale_, self.whitening_)

    def _covariance_to_data(self, cov):
        return covariance_to_data(cov, self.scale_, self.whitening_)

    def _log_jacobian(self):
        """log|det dz/dx|: add it to an internal log-density to get data units."""
        return log_jacobian(self.scale_, self.whitening_)

    def _validate_fit_data(self, X, **kwargs):
        X = validate_data(self, X, dtype=[np.float64, np.float32], **kwargs).astype(
            np.float64, copy=False
        )
        if not np.ptp(X, axis=0).any():
            # One point has no spread to set the coordinates or the bandwidth
            # from: variance matching would collapse every sample onto it.
            raise ValueError(
                f"{type(self).__name__} needs at least 2 distinct rows to learn a "
                f"density, got n_samples = {X.shape[0]} with "
                f"{'one row' if X.shape[0] == 1 else 'every row the same'}."
            )
        return X

    def _validate_query(self, X):
        self._check_call()
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return X.astype(np.float64, copy=False)

    def score_samples(self, X, y=None):
        """Normalised log-density of the model at each row of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : label or array-like of shape (n_samples,), default=None
            The class-conditional density of that class (each row's class),
            for an estimator fitted with labels.

        Returns
        -------
        log_density : ndarray of shape (n_samples,)
        """
        X = self._validate_query(X)
        if y is not None:
            models = self.class_models_
            return score_by_class(lambda rows, k: models[k].score_samples(rows), X,
                                  encode_labels(self, y, X.shape[0]))
        return self._score_rows(self._score_samples, X)

    def _score_rows(self, func, X, *args):
        """Apply ``func(rows, *args)`` on fixed row chunks, in parallel threads."""
        with hot_loop_blas():
            if X.shape[0] <= _SCORE_ROWS:
                return np.asarray(func(X, *args), dtype=np.float64)
            n_jobs = getattr(self, "n_jobs", None)
            starts = range(0, X.shape[0], _SCORE_ROWS)
            parts = Parallel(n_jobs=n_jobs, prefer="threads")(
                delayed(func)(X[start:start + _SCORE_ROWS], *args) for start in starts
            )
        return np.concatenate(parts).astype(np.float64, copy=False)

    def score(self, X, y=None):
        """Total log-likelihood of X under the model.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), default=None
            Class labels: the class-conditional likelihood when the estimator
            was fitted with labels; ignored otherwise.

        Returns
        -------
        logprob : float
            ``sum(score_samples(X, y))``, what model selection maximises.
        """
        conditional = y is not None and hasattr(self, "classes_")
        return float(np.sum(self.score_samples(X, y) if conditional else self.score_samples(X)))

    def sample(self, n_samples=1, random_state=None, *, y=None):
        """Draw samples from the model.

        Parameters
        ----------
        n_samples : int, default=1
            Number of samples; 0 returns an empty (0, n_features) array.
        random_state : int, RandomState, Generator, SeedSequence or None, default=None
            None draws fresh entropy; anything else makes the call
            reproducible for any ``n_jobs`` and joblib backend.
        y : label or array-like of shape (n_samples,), default=None
            Class-conditional samples of that class (each row's class), for
            an estimator fitted with labels.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        """
        n_samples, seed = self._start_draw(n_samples, random_state)
        if y is not None:
            codes = encode_labels(self, y, n_samples)
            return sample_by_class(self.class_models_, codes, seed, self.n_features_in_)
        return self._run_draw(self._sample, n_samples, seed)

    def _start_draw(self, n_samples, random_state):
        """Checked ``n_samples`` and the root seed, after every check that can fail up front."""
        n_samples = check_n_samples(n_samples)
        self._check_call()
        check_output_memory(n_samples, self.n_features_in_)
        return n_samples, seed_sequence(random_state)

    def _run_draw(self, draw, n_samples, seed):
        """``draw(n_samples, seed)`` as float64; an empty request draws nothing."""
        if n_samples == 0:
            return np.empty((0, self.n_features_in_))
        return np.asarray(draw(n_samples, seed), dtype=np.float64)
