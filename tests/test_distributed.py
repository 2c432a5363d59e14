"""Sampling on a dask.distributed cluster equals n_jobs=1, bit for bit.

A local two-process cluster stands in for a real one: the estimator is
shipped to worker processes, each chunk runs there with its own spawned seed.
"""

import distributed
import numpy as np
import pytest
from joblib import parallel_config

from sklearn_diffsample.guided import GuidedDiffusionSampler
from sklearn_diffsample.mmsold import MMSOLDSampler
from sklearn_diffsample.path_extrapolation import PathExtrapolationDensity


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


FACTORIES = {
    "guided": lambda: GuidedDiffusionSampler(bandwidth=0.3, n_steps=10, batch_size=64),
    "mmsold": lambda: MMSOLDSampler(bandwidth=0.2, smoothing=0.0, n_steps=10, batch_size=64,
                                    score_estimator="exact"),
    "path": lambda: PathExtrapolationDensity(n_steps=10, n_splits=2, batch_size=64,
                                             n_reference_samples=200),
}


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_dask_backend_is_bitwise_equal_to_one_job(client, name):
    X = np.random.default_rng(0).normal(size=(150, 2))
    est = FACTORIES[name]().set_params(random_state=0).fit(X)
    reference = est.set_params(n_jobs=1).sample(300, random_state=11)
    with parallel_config(backend="dask"):
        distributed_run = est.set_params(n_jobs=-1).sample(300, random_state=11)
    np.testing.assert_array_equal(distributed_run, reference)
