"""Contracts every estimator keeps, run over one set of factories.

Same ``random_state``, same bits, for any ``n_jobs`` and joblib backend; a pickle
round trip changes nothing; the second positional argument of ``sample`` is the
seed; an empty request gives an empty array of the right width.
"""

import pickle
import warnings

import numpy as np
import pytest
from joblib import parallel_config

from ._estimators import FACTORIES, LABELLED

LABELS = np.arange(95) % 2


@pytest.fixture(scope="module")
def data():
    X = np.random.default_rng(9).normal(size=(60, 2)) * [1.0, 2.0]
    # More query rows than one scoring chunk, so that scoring runs in parallel.
    queries = np.random.default_rng(10).normal(size=(1500, 2)) * [1.0, 2.0]
    return X, queries


@pytest.fixture(scope="module", params=sorted(FACTORIES))
def fitted(request, data):
    X, _ = data
    y = np.arange(len(X)) % 2 if request.param in LABELLED else None
    with warnings.catch_warnings():
        # Five calibration steps give a rough log Z; not what is tested here.
        warnings.simplefilter("ignore", UserWarning)
        return request.param, FACTORIES[request.param]().fit(X, y)


def _draw_and_score(name, est, queries):
    """Samples and log-densities; per class and guided for a labelled fit."""
    if name in LABELLED:
        guidance = {"guidance_scale": 2.0} if name.startswith("guided") else {}
        return (est.sample(95, 0, y=LABELS, **guidance),
                est.score_samples(queries, y=np.arange(len(queries)) % 2))
    return est.sample(95, random_state=0), est.score_samples(queries)


def test_pickle_round_trip_changes_nothing(fitted, data):
    name, est = fitted
    again = pickle.loads(pickle.dumps(est))
    for a, b in zip(_draw_and_score(name, again, data[1]), _draw_and_score(name, est, data[1])):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("backend", ["threading", "loky", "multiprocessing"])
def test_same_seed_same_bits_for_any_n_jobs_and_backend(fitted, data, backend):
    name, est = fitted
    reference = _draw_and_score(name, est, data[1])
    for n_jobs in (1, 2):
        with parallel_config(backend=backend, n_jobs=n_jobs):
            again = _draw_and_score(name, est, data[1])
        np.testing.assert_array_equal(again[0], reference[0])
        np.testing.assert_array_equal(again[1], reference[1])


def test_the_second_positional_argument_is_the_seed(fitted):
    _, est = fitted
    np.testing.assert_array_equal(est.sample(10, 3), est.sample(10, random_state=3))
    assert not np.array_equal(est.sample(10, 3), est.sample(10, 4))


def test_an_empty_request_is_an_empty_array(fitted, data):
    _, est = fitted
    out = est.sample(0, 0)
    assert out.shape == (0, data[0].shape[1]) and out.dtype == np.float64
