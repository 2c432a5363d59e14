"""TransformedDensity: exact Jacobians, sampling through inverse_transform."""

import numpy as np
import pytest
from scipy.special import logsumexp
from sklearn.decomposition import PCA
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KernelDensity
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    MinMaxScaler,
    PowerTransformer,
    QuantileTransformer,
    RobustScaler,
    StandardScaler,
)

from sklearn_diffsample.compose import TransformedDensity, log_abs_det_jacobian


def _numeric_log_jacobian(transformer, X, eps=1e-6):
    """log|det J| from a central-difference Jacobian, one row at a time."""
    out = []
    for x in X:
        cols = []
        for j in range(X.shape[1]):
            step = np.zeros(X.shape[1])
            step[j] = eps
            up = transformer.transform((x + step)[None])[0]
            down = transformer.transform((x - step)[None])[0]
            cols.append((up - down) / (2 * eps))
        out.append(np.linalg.slogdet(np.array(cols).T)[1])
    return np.array(out)


@pytest.fixture(scope="module")
def skewed():
    rng = np.random.default_rng(0)
    return np.column_stack([rng.gamma(2.0, 2.0, 400), rng.normal(3.0, 0.5, 400),
                            rng.lognormal(0.0, 0.6, 400)])


@pytest.mark.parametrize("transformer", [
    StandardScaler(), RobustScaler(), MinMaxScaler(), PCA(), PCA(whiten=True),
    PowerTransformer(), PowerTransformer(method="box-cox"),
    QuantileTransformer(n_quantiles=50, output_distribution="normal"),
    QuantileTransformer(n_quantiles=50), make_pipeline(StandardScaler(), PCA(whiten=True)),
], ids=lambda t: type(t).__name__)
def test_log_jacobian_matches_finite_differences(transformer, skewed):
    transformer.fit(skewed)
    # Interior points, away from the quantile knots' kinks.
    rows = np.quantile(skewed, [0.23, 0.41, 0.67], axis=0) + 1e-3
    np.testing.assert_allclose(log_abs_det_jacobian(transformer, rows),
                               _numeric_log_jacobian(transformer, rows), atol=1e-5)


def test_standard_scaler_kde_equals_an_anisotropic_kde_in_data_space(skewed):
    h = 0.3
    model = TransformedDensity(StandardScaler(), KernelDensity(bandwidth=h)).fit(skewed)
    rows = np.random.default_rng(1).normal(size=(30, 3)) * skewed.std(0) + skewed.mean(0)
    # Brute force: a Gaussian kernel of covariance diag((h * std_j)^2) per pattern.
    scale = h * skewed.std(axis=0)
    z = (rows[:, None, :] - skewed[None]) / scale
    ref = (logsumexp(-0.5 * np.sum(z * z, axis=2), axis=1) - np.log(len(skewed))
           - np.sum(np.log(scale)) - 1.5 * np.log(2 * np.pi))
    np.testing.assert_allclose(model.score_samples(rows), ref, rtol=1e-10)


def test_isotropic_scaling_matches_the_raw_model_with_scaled_bandwidth():
    X = np.random.default_rng(2).normal(size=(200, 2)) * 7.0 + 3.0
    h = 0.4
    std = X.std(axis=0)
    X = (X - X.mean(0)) / std * 7.0 + 3.0  # both features have std exactly 7
    model = TransformedDensity(StandardScaler(), KernelDensity(bandwidth=h)).fit(X)
    raw = KernelDensity(bandwidth=7.0 * h).fit(X)
    rows = X[:20] + 0.5
    np.testing.assert_allclose(model.score_samples(rows), raw.score_samples(rows), rtol=1e-10)


def test_samples_live_in_data_space(skewed):
    model = TransformedDensity(QuantileTransformer(n_quantiles=100, output_distribution="normal"),
                               KernelDensity(bandwidth=0.2)).fit(skewed)
    draws = model.sample(2000, random_state=0)
    assert draws.shape == (2000, 3)
    # The quantile map keeps samples inside the training range, marginals close.
    assert np.all(draws.min(0) >= skewed.min(0) - 1e-9)
    np.testing.assert_allclose(np.median(draws, 0), np.median(skewed, 0), rtol=0.1)
    assert model.sample(0).shape == (0, 3)


def test_non_invertible_transformers_are_refused_with_a_remedy(skewed):
    with pytest.raises(ValueError, match="Gaussian residual"):
        TransformedDensity(PCA(n_components=2), KernelDensity()).fit(skewed)
    with pytest.raises(ValueError, match="supported transformers"):
        TransformedDensity(FunctionTransformer(np.log1p, np.expm1), KernelDensity()).fit(skewed)


def test_grid_search_reaches_inner_parameters(skewed):
    search = GridSearchCV(TransformedDensity(StandardScaler(), KernelDensity()),
                          {"estimator__bandwidth": [0.05, 0.3, 3.0]}, cv=3)
    search.fit(skewed)
    assert search.best_params_["estimator__bandwidth"] == 0.3


def test_a_scaler_in_front_does_not_change_the_meaning_of_bandwidth():
    """The package's estimators standardise internally: the same h, the same law."""
    from sklearn_diffsample import GuidedDiffusionSampler

    X = np.random.default_rng(3).normal(size=(150, 3)) * [4.0, 1.0, 0.2] - 2.0
    h = 0.35
    wrapped = TransformedDensity(StandardScaler(), GuidedDiffusionSampler(bandwidth=h)).fit(X)
    raw = GuidedDiffusionSampler(bandwidth=h).fit(X)
    rows = np.vstack([X[:10] + 0.3, X[-5:] * 3.0])
    np.testing.assert_allclose(wrapped.score_samples(rows), raw.score_samples(rows), rtol=1e-10)
