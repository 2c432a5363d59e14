"""Bandwidth selection by held-out log-likelihood, for every estimator.

Each estimator is tuned over a grid holding a far too small, a reasonable and a
far too large bandwidth, on data from a smooth 2-D density: held-out
likelihood must reject both extremes, bare, inside a Pipeline and inside
TransformedDensity (where the grid is in the scaler's units).
"""

import warnings
from argparse import Namespace

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_diffsample import MMSOLDSampler, TransformedDensity

from ._estimators import FACTORIES, KDE_LIKE
from ._reference import matched_kde_log_density

# In the data's standard deviations, the unit of every estimator's bandwidth
# (the data below have per-feature scale about 1).
GRID = [0.005, 0.3, 5.0]


@pytest.fixture(scope="module")
def smooth_data():
    rng = np.random.default_rng(0)
    centres = np.array([[-1.0, 0.0], [1.0, 0.5]])
    return centres[rng.integers(0, 2, 150)] + 0.45 * rng.normal(size=(150, 2))


def _folds():
    return KFold(3, shuffle=True, random_state=0)


@pytest.mark.parametrize("name", KDE_LIKE)
def test_grid_search_picks_the_reasonable_bandwidth(name, smooth_data):
    search = GridSearchCV(FACTORIES[name](), {"bandwidth": GRID}, cv=_folds())
    search.fit(smooth_data)
    assert search.best_params_["bandwidth"] == 0.3
    scores = search.cv_results_["mean_test_score"]
    assert np.all(np.isfinite(scores))


@pytest.mark.parametrize("name", KDE_LIKE)
def test_grid_search_inside_pipeline_and_transformed_density(name, smooth_data):
    stretched = smooth_data * [3.0, 1.0] + [10.0, -5.0]
    pipe = Pipeline([("scale", StandardScaler()), ("density", FACTORIES[name]())])
    search = GridSearchCV(pipe, {"density__bandwidth": GRID}, cv=_folds()).fit(stretched)
    assert search.best_params_["density__bandwidth"] == 0.3

    wrapped = TransformedDensity(StandardScaler(), FACTORIES[name]())
    search = GridSearchCV(wrapped, {"estimator__bandwidth": GRID}, cv=_folds()).fit(stretched)
    assert search.best_params_["estimator__bandwidth"] == 0.3
    # TransformedDensity's scores are data-space log-likelihoods: the scaler's
    # log-Jacobian shifts every row by -log(3 * 0.45-ish scales), finite.
    assert np.isfinite(search.best_score_)


def test_cross_val_score_tunes_the_mmsold_smoothing(smooth_data):
    """At smoothing 0 MM-SOLD's density is the (variance-matched) KDE: same
    folds, same scores."""
    est = MMSOLDSampler(bandwidth=0.2, n_steps=10, batch_size=40, random_state=0)
    kde_scores = [matched_kde_log_density(smooth_data[test], smooth_data[train], 0.2).sum()
                  for train, test in _folds().split(smooth_data)]
    plain = cross_val_score(est.set_params(smoothing=0.0), smooth_data, cv=_folds())
    np.testing.assert_allclose(plain, kde_scores, rtol=1e-10)
    smoothed = cross_val_score(est.set_params(smoothing=0.2), smooth_data, cv=_folds())
    assert np.all(np.isfinite(smoothed)) and not np.allclose(smoothed, plain)


@pytest.mark.parametrize("method", ["guided", "mmsold", "path"])
def test_the_cli_grid_picks_the_same_index_at_any_data_scale(method, smooth_data):
    # Every estimator measures its bandwidth in the data's standard
    # deviations, so one grid serves all data units: GridSearchCV and the
    # CLI's --cv must pick the same grid index on data multiplied by 100.
    from sklearn_diffsample.__main__ import (
        METHODS,
        _estimator_class,
        _fit_and_sample,
        bandwidth_grid,
    )

    fast = {"guided": dict(n_steps=3), "mmsold": dict(n_steps=3, batch_size=20),
            "path": dict(n_steps=8, n_splits=1, n_reference_samples=100)}
    cls, grid = _estimator_class(method), bandwidth_grid()
    chosen, cli_chosen = [], []
    for factor in (1.0, 100.0):
        X = smooth_data * [1.0, 4.0] * factor
        search = GridSearchCV(cls(random_state=0, **fast[method]), {"bandwidth": grid},
                              cv=_folds()).fit(X)
        chosen.append(int(np.argmax(search.cv_results_["mean_test_score"])))
        params = dict(random_state=0, **fast[method])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # MM-SOLD's 3-step calibration
            _fit_and_sample(cls, params, X, Namespace(cv=3, n=2, random_state=0))
        cli_chosen.append(int(np.argmin(np.abs(grid - params["bandwidth"]))))
        assert params["bandwidth"] == grid[cli_chosen[-1]]
    assert set(METHODS) == {"guided", "mmsold", "path"}
    assert chosen[0] == chosen[1] and cli_chosen[0] == cli_chosen[1]
    # ...and the grid is not degenerate: the choice is inside it.
    assert 0 < chosen[0] < len(grid) - 1
