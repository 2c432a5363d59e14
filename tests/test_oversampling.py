"""DiffusionOverSampler: imbalanced-learn's resampler contract and what guidance buys.

imbalanced-learn is a test dependency (the ``test`` extra), never a run-time one.
"""

from collections import Counter

import numpy as np
import pytest
from imblearn.pipeline import make_pipeline
from imblearn.utils import estimator_checks as imblearn_checks
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import NearestNeighbors

from sklearn_diffsample import DiffusionOverSampler
from sklearn_diffsample._bandwidth import heldout_bandwidth
from sklearn_diffsample.oversampling import target_counts

FAST = dict(n_steps=10, random_state=0)


@pytest.fixture(scope="module")
def imbalanced():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (120, 2)), rng.normal([3, 3], 0.4, (12, 2)),
                   rng.normal([-3, 2], 0.3, (30, 2))])
    return X, np.repeat([0, 1, 2], [120, 12, 30])


@pytest.mark.parametrize("strategy, expected", [
    ("auto", {1: 108, 2: 90}), ("not majority", {1: 108, 2: 90}), ("minority", {1: 108}),
    ("not minority", {0: 0, 2: 90}), ("all", {0: 0, 1: 108, 2: 90}),
    ({1: 50, 2: 30}, {1: 38, 2: 0}),
])
def test_strategies_count_like_imbalanced_learn(imbalanced, strategy, expected):
    X, y = imbalanced
    sampler = DiffusionOverSampler(sampling_strategy=strategy, **FAST)
    X_res, y_res = sampler.fit_resample(X, y)
    assert sampler.sampling_strategy_ == expected
    counts = Counter(y_res.tolist())
    assert all(counts[c] == Counter(y.tolist())[c] + n for c, n in expected.items())
    # The original rows come first, unchanged.
    np.testing.assert_array_equal(X_res[:len(X)], X)
    np.testing.assert_array_equal(y_res[:len(y)], y)


def test_a_float_strategy_and_bad_strategies():
    assert target_counts(0.5, {"a": 100, "b": 10}) == {"b": 40}
    with pytest.raises(ValueError, match="fewer than"):
        target_counts(0.05, {"a": 100, "b": 10})
    with pytest.raises(ValueError, match="two classes"):
        target_counts(0.5, {0: 10, 1: 5, 2: 3})
    with pytest.raises(ValueError, match="unknown classes"):
        target_counts({7: 100}, {0: 10, 1: 5})
    with pytest.raises(ValueError, match="only adds rows"):
        target_counts({0: 5}, {0: 10, 1: 5})


def test_synthetic_rows_are_the_class_samplers_draws(imbalanced):
    # Class k's synthetic rows are its guided sampler's class-k draws, at the
    # bandwidth the automatic rule gives on class k's rows alone, in the
    # z-scores of all rows (the units of a sampler fitted on all of them).
    X, y = imbalanced
    sampler = DiffusionOverSampler(guidance_scale=2.0, **FAST)
    X_res, y_res = sampler.fit_resample(X, y)
    Z = (X - X.mean(axis=0)) / X.std(axis=0)
    assert sampler.bandwidths_[1] == pytest.approx(heldout_bandwidth(Z[y == 1]), rel=1e-9)
    assert sampler.samplers_[1].bandwidth_ == sampler.bandwidths_[1]
    seeds = np.random.SeedSequence(0).spawn(3)
    expected = sampler.samplers_[1].sample(108, seeds[1], y=1, guidance_scale=2.0)
    np.testing.assert_array_equal(X_res[len(X):len(X) + 108], expected)
    again, _ = DiffusionOverSampler(guidance_scale=2.0, **FAST).fit_resample(X, y)
    np.testing.assert_array_equal(again, X_res)


def test_guidance_keeps_synthetic_rows_off_the_other_classes():
    # Two interleaved half-moons-like clouds: with guidance the share of
    # synthetic minority rows whose nearest real row is of the majority class
    # must not grow, and stays small.
    rng = np.random.default_rng(3)
    t = rng.uniform(0, np.pi, 400)
    X = np.c_[np.cos(t), np.sin(t)] + 0.1 * rng.normal(size=(400, 2))
    s = rng.uniform(0, np.pi, 40)
    X = np.vstack([X, np.c_[1 - np.cos(s), 0.5 - np.sin(s)] + 0.1 * rng.normal(size=(40, 2))])
    y = np.repeat([0, 1], [400, 40])
    shares = []
    for w in (1.0, 3.0):
        X_res, y_res = DiffusionOverSampler(guidance_scale=w, **FAST).fit_resample(X, y)
        synthetic = X_res[len(X):]
        nearest = NearestNeighbors(n_neighbors=1).fit(X).kneighbors(synthetic)[1][:, 0]
        shares.append(np.mean(y[nearest] == 0))
    assert shares[1] <= shares[0] and shares[1] < 0.1, shares


def test_it_works_in_an_imbalanced_learn_pipeline(imbalanced):
    X, y = imbalanced
    model = make_pipeline(DiffusionOverSampler(**FAST),
                                   LogisticRegression(max_iter=500)).fit(X, y)
    assert model.score(X, y) > 0.9


# Imbalanced-learn's own checks that apply to a resampler not derived from its
# base classes (the others test its base classes' isinstance branches).
IMBLEARN_CHECKS = ["check_target_type", "check_samplers_one_label", "check_samplers_fit",
                   "check_samplers_multiclass_ova", "check_samplers_preserve_dtype",
                   "check_samplers_2d_target", "check_samplers_list", "check_param_validation"]


@pytest.mark.parametrize("check", IMBLEARN_CHECKS)
def test_imbalanced_learn_checks(check):
    getattr(imblearn_checks, check)("DiffusionOverSampler", DiffusionOverSampler(**FAST))


def test_the_package_never_imports_imbalanced_learn():
    import subprocess
    import sys

    code = "import sklearn_diffsample, sys; print('imblearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"
