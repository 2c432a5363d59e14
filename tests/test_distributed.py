"""Sampling on a dask.distributed cluster equals n_jobs=1, bit for bit.

A local two-process cluster stands in for a real one: the estimator is
shipped to worker processes, each chunk runs there with its own spawned seed.
"""

import distributed
import numpy as np
import pytest
from joblib import parallel_config

from ._estimators import FACTORIES


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_dask_backend_is_bitwise_equal_to_one_job(client, name):
    X = np.random.default_rng(0).normal(size=(150, 2))
    est = FACTORIES[name]().fit(X)
    reference = est.sample(300, random_state=11)
    with parallel_config(backend="dask", n_jobs=-1):
        distributed_run = est.sample(300, random_state=11)
    np.testing.assert_array_equal(distributed_run, reference)
