"""scikit-learn's estimator checks on every public estimator of the package.

Estimators are discovered from ``sklearn_diffsample.__all__``, so a new public
estimator is checked as soon as it is exported.  Each runs with its defaults
and with the non-default parameter sets listed for it in ``NON_DEFAULT``.
"""

import inspect

from sklearn.base import BaseEstimator
from sklearn.utils.estimator_checks import parametrize_with_checks

import sklearn_diffsample

# Parameter sets that take other code paths than the defaults.
NON_DEFAULT = {
    "MMSOLDSampler": [
        dict(n_steps=4, batch_size=30, integrator="em", smoothing=0.0),
        dict(n_steps=4, batch_size=30, score_estimator="knn", n_neighbors=5, n_remainder=5,
             algorithm="kd_tree", interaction="independent"),
    ],
    "PathExtrapolationDensity": [
        dict(n_steps=20, n_splits=2, n_reference_samples=200, batch_size=64,
             extrapolation="richardson", variance_correction=True),
        dict(n_steps=10, extrapolation="exact", algorithm="kd_tree", n_reference_samples=100),
    ],
}


def _public_estimators():
    classes = []
    for name in sklearn_diffsample.__all__:
        obj = getattr(sklearn_diffsample, name)
        if inspect.isclass(obj) and issubclass(obj, BaseEstimator):
            classes.append(obj)
    return classes


def _instances():
    out = []
    for cls in _public_estimators():
        out.append(cls())
        for params in NON_DEFAULT.get(cls.__name__, ()):
            out.append(cls(**params))
    return out


def test_every_public_estimator_is_checked():
    exported = {cls.__name__ for cls in _public_estimators()}
    checked = {type(est).__name__ for est in _instances()}
    assert exported == checked


@parametrize_with_checks(_instances())
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
