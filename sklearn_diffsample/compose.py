"""TransformedDensity: a density estimator fitted in a transformer's space.

For an invertible transformer T, the model density in data space is

    log p_X(x) = log p_Z(T(x)) + log |det dT/dx (x)|,

and samples are T^{-1} of the inner estimator's samples.  The log-Jacobian is
known exactly for the transformers listed in :func:`log_abs_det_jacobian`;
any other transformer is refused with an error rather than scored wrongly.
"""

import numpy as np
from sklearn.base import BaseEstimator, DensityMixin, _fit_context, clone
from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    MaxAbsScaler,
    MinMaxScaler,
    PowerTransformer,
    QuantileTransformer,
    RobustScaler,
    StandardScaler,
)
from sklearn.utils._param_validation import HasMethods
from sklearn.utils.validation import check_is_fitted, validate_data

from ._base import check_n_samples, data_scale, restored_on_failure

__all__ = ["TransformedDensity", "log_abs_det_jacobian"]

# The spread of transformed data that a working scaler can leave behind.
_SPREAD_RANGE = (1e-50, 1e50)
_SUPPORTED = (
    "StandardScaler, RobustScaler, MinMaxScaler, MaxAbsScaler, full-rank PCA "
    "(whitened or not), QuantileTransformer, PowerTransformer, or a Pipeline of these"
)


def _scale_log_jacobian(scale, X):
    """z = (x - c) / scale, element-wise: log|det| = -sum log scale."""
    scale = np.ones(X.shape[1]) if scale is None else np.asarray(scale, dtype=np.float64)
    return np.full(X.shape[0], -np.sum(np.log(scale)))


def _pca_log_jacobian(pca, X):
    if pca.n_components_ != pca.n_features_in_:
        cause = (f" (fitted with n_samples={pca.n_samples_} < n_features, it cannot keep them all)"
                 if pca.n_samples_ < pca.n_features_in_ else "")
        raise ValueError(
            f"PCA keeps {pca.n_components_} of {pca.n_features_in_} components{cause}, so it "
            "is not invertible and the data-space density is undefined. Use "
            "n_components=None, or model the discarded subspace explicitly (a "
            "Gaussian residual, as probabilistic PCA does)."
        )
    _, log_det = np.linalg.slogdet(pca.components_)
    if pca.whiten:
        log_det -= 0.5 * np.sum(np.log(pca.explained_variance_))
    return np.full(X.shape[0], log_det)


def _quantile_log_jacobian(qt, X):
    # Forward map per feature: u = interp(x, quantiles, references), then
    # z = Phi^{-1}(u) for normal output.  Outside the training range u is
    # constant, so the model has no mass there: the log-density is -inf.
    out = np.zeros(X.shape[0])
    refs = qt.references_
    Z = qt.transform(X) if qt.output_distribution == "normal" else None
    for j in range(X.shape[1]):
        q = qt.quantiles_[:, j]
        seg = np.clip(np.searchsorted(q, X[:, j], side="right") - 1, 0, len(q) - 2)
        width = q[seg + 1] - q[seg]
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = np.where(width > 0, (refs[seg + 1] - refs[seg]) / width, 0.0)
            inside = (X[:, j] >= q[0]) & (X[:, j] <= q[-1])
            log_slope = np.where(inside & (slope > 0), np.log(slope), -np.inf)
        if Z is not None:
            # dz/du = 1 / phi(z)
            log_slope = log_slope + 0.5 * Z[:, j] ** 2 + 0.5 * np.log(2.0 * np.pi)
        out += log_slope
    return out


def _power_log_jacobian(pt, X):
    lam = pt.lambdas_
    if pt.method == "box-cox":
        terms = (lam - 1.0) * np.log(X)
    else:
        pos = X >= 0
        terms = np.where(pos, (lam - 1.0) * np.log1p(np.abs(X)),
                         (1.0 - lam) * np.log1p(np.abs(X)))
    out = terms.sum(axis=1)
    if pt.standardize:
        out -= np.sum(np.log(pt._scaler.scale_))
    return out


def log_abs_det_jacobian(transformer, X):
    """log |det dT/dx| of a fitted transformer at each row of X.

    Parameters
    ----------
    transformer : fitted transformer
        One of StandardScaler, RobustScaler, MinMaxScaler, MaxAbsScaler,
        full-rank PCA, QuantileTransformer, PowerTransformer, or a Pipeline of
        these (the log-Jacobians of the steps add up along the chain).
    X : ndarray of shape (n_samples, n_features)
        Points in the transformer's input space.

    Returns
    -------
    log_det : ndarray of shape (n_samples,)
    """
    X = np.asarray(X, dtype=np.float64)
    if isinstance(transformer, Pipeline):
        total = np.zeros(X.shape[0])
        for _, step in transformer.steps:
            if step is None or step == "passthrough":
                continue
            total += log_abs_det_jacobian(step, X)
            X = step.transform(X)
        return total
    if isinstance(transformer, (StandardScaler, RobustScaler, MaxAbsScaler)):
        return _scale_log_jacobian(transformer.scale_, X)
    if isinstance(transformer, MinMaxScaler):
        return -_scale_log_jacobian(transformer.scale_, X)
    if isinstance(transformer, PCA):
        return _pca_log_jacobian(transformer, X)
    if isinstance(transformer, QuantileTransformer):
        return _quantile_log_jacobian(transformer, X)
    if isinstance(transformer, PowerTransformer):
        return _power_log_jacobian(transformer, X)
    raise ValueError(
        f"TransformedDensity cannot compute the Jacobian of {type(transformer).__name__}; "
        f"supported transformers: {_SUPPORTED}."
    )


class TransformedDensity(DensityMixin, BaseEstimator):
    """Fit a density estimator in the space of an invertible transformer.

    ``fit`` fits the transformer, then the density estimator on the
    transformed data; ``sample`` maps the inner samples back with
    ``inverse_transform``; ``score_samples`` adds the exact log-Jacobian of the
    transformer to the inner log-density, so the result is a normalised
    log-density in data space and ``GridSearchCV`` can tune inner parameters
    as ``estimator__bandwidth``.  The package's estimators standardise
    internally, so their ``bandwidth`` means the same with or without a
    ``StandardScaler`` in front; a non-linear transformer (``PowerTransformer``,
    ``QuantileTransformer``) is where this wrapper changes the law.

    Parameters
    ----------
    transformer : transformer, default=None
        An invertible transformer (see :func:`log_abs_det_jacobian` for the
        supported ones); None means ``StandardScaler()``.  Cloned at fit.
    estimator : density estimator, default=None
        Anything with ``fit``, ``score_samples`` and ``sample``; None means
        :class:`~sklearn_diffsample.GuidedDiffusionSampler` with its defaults.
        Cloned at fit.

    Attributes
    ----------
    transformer_ : transformer
        The fitted transformer.
    estimator_ : estimator
        The density estimator fitted on the transformed data.
    n_features_in_ : int
        Number of features seen during fit.

    Notes
    -----
    A PCA that drops components is not invertible: the data-space density of
    a model on its scores is undefined, and fit raises.  The usual remedy is a
    Gaussian residual in the discarded subspace, as probabilistic PCA does:
    keep all components and let the inner model be smooth in the trailing
    ones, or score the residual with its own Gaussian.

    A ``QuantileTransformer`` maps every point beyond the training range to the
    same output, so the model has no mass there and ``score_samples`` returns
    ``-inf`` for such points.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.neighbors import KernelDensity
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklearn_diffsample import TransformedDensity
    >>> X = np.random.default_rng(0).normal(size=(100, 2)) * [1.0, 50.0]
    >>> model = TransformedDensity(StandardScaler(), KernelDensity(bandwidth=0.5)).fit(X)
    >>> model.sample(3, random_state=0).shape
    (3, 2)
    >>> bool(np.isfinite(model.score(X)))
    True
    """

    _parameter_constraints: dict = {
        "transformer": [HasMethods(["fit", "transform", "inverse_transform"]), None],
        "estimator": [HasMethods(["fit", "score_samples", "sample"]), None],
    }

    def __init__(self, transformer=None, estimator=None):
        self.transformer = transformer
        self.estimator = estimator

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Fit the transformer, then the density estimator in its space.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : None
            Ignored.

        Returns
        -------
        self : TransformedDensity
        """
        with restored_on_failure(self):
            X = validate_data(self, X, dtype=[np.float64, np.float32])
            transformer = clone(self.transformer if self.transformer is not None
                                else StandardScaler())
            Z = transformer.fit_transform(X)
            log_abs_det_jacobian(transformer, X[:1])  # refuses unsupported ones early
            _check_transformed(transformer, X, Z)
            estimator = clone(self.estimator if self.estimator is not None
                              else _default_estimator())
            estimator.fit(Z)
        self.transformer_, self.estimator_ = transformer, estimator
        return self

    def score_samples(self, X):
        """Normalised log-density in data space at each row of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        log_density : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        X = X.astype(np.float64, copy=False)
        inner = self.estimator_.score_samples(self.transformer_.transform(X))
        return np.asarray(inner, dtype=np.float64) + log_abs_det_jacobian(self.transformer_, X)

    def score(self, X, y=None):
        """Total log-likelihood of X, ``sum(score_samples(X))``."""
        return float(np.sum(self.score_samples(X)))

    def sample(self, n_samples=1, random_state=None):
        """Samples of the inner estimator, mapped back to data space.

        Parameters
        ----------
        n_samples : int, default=1
        random_state : int, RandomState, Generator or None, default=None
            Passed to the inner estimator's ``sample``.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        """
        n_samples = check_n_samples(n_samples)
        check_is_fitted(self)
        if n_samples == 0:
            return np.empty((0, self.n_features_in_))
        Z = self.estimator_.sample(n_samples, random_state=random_state)
        return np.asarray(self.transformer_.inverse_transform(Z), dtype=np.float64)


def _check_transformed(transformer, X, Z):
    """Refuse a transformer whose fitted statistics over- or underflowed on X.

    scikit-learn's scalers compute variances in plain float64: on data near
    1e155 the variance overflows, near 1e-300 it underflows (and ranges below
    about 1e-15 count as zero), and then the scaler silently keeps a unit
    scale and leaves X as it was.
    """
    if not np.all(np.isfinite(Z)):
        raise ValueError(
            f"{transformer!r} gives non-finite values on X; its fitted statistics "
            "overflowed or X is outside its domain."
        )
    spread = data_scale(Z)
    if data_scale(X) > 0 and not _SPREAD_RANGE[0] <= spread <= _SPREAD_RANGE[1]:
        raise ValueError(
            f"{transformer!r} left X with a spread of {spread:.3g}, far from 1: on "
            f"values near {np.max(np.abs(X)):.3g} its statistics over- or underflowed "
            "in float64, or it took their range for zero. Divide X by a constant "
            "first (that changes "
            "every log-density by -n_features log(constant)), or fit "
            "this package's estimator directly: each standardises internally "
            "without overflow."
        )


def _default_estimator():
    from .guided import GuidedDiffusionSampler

    return GuidedDiffusionSampler()
