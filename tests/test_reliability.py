"""Bad input and faults, tried as a new user would: each case failed once."""

import io
import json
import os
import subprocess
import sys

import joblib
import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler

from sklearn_diffsample import (
    GuidedDiffusionSampler,
    MMSOLDSampler,
    PathExtrapolationDensity,
    TransformedDensity,
)
from sklearn_diffsample.datasets import Rings

FAST_PATH = dict(n_steps=8, n_splits=2, n_reference_samples=60, batch_size=32)


@pytest.fixture(scope="module")
def X():
    return np.random.default_rng(0).normal(size=(80, 3)) * [1.0, 2.0, 0.5] + [3.0, -1.0, 0.0]


# ------------------------------------------------------- far from unit scale
@pytest.mark.parametrize("factor", [1e155, 1e-300])
@pytest.mark.parametrize("make", [
    lambda: GuidedDiffusionSampler(n_steps=10, eta=0.5),
    lambda: PathExtrapolationDensity(random_state=0, **FAST_PATH),
    lambda: MMSOLDSampler(n_steps=3, batch_size=20, random_state=0),
    lambda: MMSOLDSampler(n_steps=3, batch_size=20, coordinates="whitened", random_state=0),
    lambda: GuidedDiffusionSampler(n_steps=10, coordinates="isotropic"),
], ids=["guided", "path", "mmsold", "mmsold-whitened", "guided-isotropic"])
def test_far_scales_are_scale_equivariant(X, make, factor):
    # Multiplying the data by c multiplies the samples by c and shifts every
    # log-density by -d log c: the reference is the same model on X itself.
    base, scaled = make().fit(X), make().fit(X * factor)
    np.testing.assert_allclose(scaled.sample(20, 3) / factor, base.sample(20, 3), rtol=1e-9)
    expected = base.score_samples(X[:5]) - X.shape[1] * np.log(factor)
    np.testing.assert_allclose(scaled.score_samples(X[:5] * factor), expected, rtol=1e-9)


@pytest.mark.parametrize("factor", [1e155, 1e-300])
def test_a_scaler_that_overflows_gets_its_own_message(X, factor):
    # scikit-learn's scaler over- or underflows there (the estimators do not).
    with pytest.raises(ValueError, match="StandardScaler.*Divide X by a constant"):
        TransformedDensity(StandardScaler(), MMSOLDSampler(n_steps=2)).fit(X * factor)


# ------------------------------------------------------------- bandwidths
@pytest.mark.parametrize("est", [
    GuidedDiffusionSampler(bandwidth=1e-300),
    PathExtrapolationDensity(bandwidth=1e-300, **FAST_PATH),
    MMSOLDSampler(bandwidth=1e-300, n_steps=2),
    MMSOLDSampler(smoothing=1e-300, n_steps=2),
    GuidedDiffusionSampler(bandwidth=1e9),
], ids=["guided", "path", "mmsold", "mmsold-smoothing", "guided-huge"])
def test_unusable_bandwidths_are_refused_at_fit_with_the_working_range(X, est):
    with pytest.raises(ValueError, match="is outside 1e-100 to 1e.06, the range"):
        est.fit(X)
    assert not hasattr(est, "n_features_in_")  # nothing half-fitted


def test_the_ends_of_the_bandwidth_range_work(X):
    for h in (1.01e-100, 0.99e6):
        est = GuidedDiffusionSampler(bandwidth=h, n_steps=5, eta=0.5).fit(X)
        assert np.all(np.isfinite(est.sample(50, 0)))
        assert np.all(np.isfinite(est.score_samples(X[:3])))


# -------------------------------------------------------------- MM-SOLD
@pytest.mark.parametrize("interaction", ["swarm", "independent"])
def test_mmsold_calibrates_with_a_single_step(X, interaction):
    est = MMSOLDSampler(n_steps=1, batch_size=40, interaction=interaction,
                        random_state=0).fit(X)
    assert np.all(np.isfinite(est.tilt_linear_)) and np.isfinite(est.log_normalizer_)
    assert np.all(np.isfinite(est.score_samples(X[:4])))
    if interaction == "swarm":
        Z = est.sample(40, 0)
        np.testing.assert_allclose(Z.mean(axis=0), est.target_mean_, atol=1e-9)


# ------------------------------------------------------------ huge requests
@pytest.mark.parametrize("est", [
    GuidedDiffusionSampler(n_steps=2),
    MMSOLDSampler(n_steps=2, batch_size=20),
    PathExtrapolationDensity(**FAST_PATH),
    TransformedDensity(),
], ids=["guided", "mmsold", "path", "transformed"])
def test_a_request_beyond_any_memory_is_refused_before_work(X, est):
    est.fit(X)
    # 1e13 rows x 3 features is 240 TB: no machine holds it.
    with pytest.raises(ValueError, match="GiB .* Draw in batches"):
        est.sample(10**13)


# ------------------------------------------------------------ BLAS threads
_CONCURRENT_CALLS = """
import json, threading
import numpy as np
from threadpoolctl import threadpool_info
from sklearn_diffsample import GuidedDiffusionSampler

def counts():
    return sorted((d["internal_api"], d["num_threads"]) for d in threadpool_info())

X = np.random.default_rng(1).normal(size=(200, 3))
rows = np.random.default_rng(2).normal(size=(20000, 3))
est = GuidedDiffusionSampler(n_steps=3, batch_size=100, n_jobs=2).fit(X)
before = counts()

def work():
    for _ in range(3):
        est.score_samples(rows)
        est.sample(400, 0)

threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
after_concurrent = counts()

# The first caller in is still alive when another thread, the last out, leaves.
from sklearn_diffsample._parallel import blas_thread_limit
a_in, b_in, a_out, b_out, finish = (threading.Event() for _ in range(5))

def first():
    with blas_thread_limit(1):
        a_in.set()
        b_in.wait()
    a_out.set()
    finish.wait()

def last():
    a_in.wait()
    with blas_thread_limit(1):
        b_in.set()
        a_out.wait()
    b_out.set()

pair = [threading.Thread(target=first), threading.Thread(target=last)]
for t in pair:
    t.start()
b_out.wait()
after_handover = counts()
finish.set()
for t in pair:
    t.join()
print(json.dumps([before, after_concurrent, after_handover]))
"""


def test_concurrent_calls_leave_the_blas_thread_counts_as_they_were():
    # A fresh process: the lost restore shows on the first limits a process
    # sets.  Two BLAS threads to start from, so that it shows on any machine.
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2",
           "MKL_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", _CONCURRENT_CALLS], env=env,
                         capture_output=True, text=True, check=True).stdout
    before, after_concurrent, after_handover = json.loads(out.splitlines()[-1])
    assert any(n > 1 for _, n in before)
    assert after_concurrent == before
    assert after_handover == before


# --------------------------------------------------- fitted state is the law
def test_sampling_refuses_parameters_changed_after_fit(X):
    est = GuidedDiffusionSampler(n_steps=4).fit(X)
    expected = est.sample(5, 0)
    with pytest.raises(ValueError, match="eta"):
        est.set_params(eta=2.0).sample(5, 0)
    with pytest.raises(ValueError, match="score_model changed since"):
        est.set_params(eta=0.0, score_model="gaussian").sample(5, 0)
    with pytest.raises(ValueError, match="score_model changed since"):
        est.score_samples(X)
    est.set_params(score_model="empirical")
    with pytest.raises(ValueError, match="batch_size"):
        est.set_params(batch_size=0).sample(5, 0)
    # Set back, the fitted law samples as before.
    np.testing.assert_array_equal(est.set_params(batch_size=1024).sample(5, 0), expected)


def test_a_refused_refit_leaves_a_model_that_says_so(X):
    est = MMSOLDSampler(n_steps=2, batch_size=20, random_state=0).fit(X)
    expected = est.sample(20, 1)
    with pytest.raises(ValueError):
        est.set_params(bandwidth=1e-300).fit(X)
    with pytest.raises(ValueError, match="bandwidth changed since"):
        est.sample(20, 1)
    np.testing.assert_array_equal(est.set_params(bandwidth="auto").sample(20, 1), expected)


# ------------------------------------------------------------ smaller ones
def test_a_continuous_target_is_refused_as_class_labels(X):
    with pytest.raises(ValueError, match="'continuous' target"):
        GuidedDiffusionSampler().fit(X, np.linspace(0.0, 1.0, X.shape[0]))


def test_a_generator_seeds_the_fit_of_every_estimator(X):
    for cls, params in ((PathExtrapolationDensity, FAST_PATH),
                        (MMSOLDSampler, dict(n_steps=2, batch_size=20)),
                        (GuidedDiffusionSampler, dict(n_steps=2))):
        a = cls(random_state=np.random.default_rng(4), **params).fit(X)
        b = cls(random_state=np.random.default_rng(4), **params).fit(X)
        np.testing.assert_array_equal(a.score_samples(X), b.score_samples(X))


def test_a_reference_of_the_wrong_shape_says_what_fits(X):
    with pytest.raises(ValueError, match=r"shape \(3,\) \(one value per feature\)"):
        PathExtrapolationDensity(reference=(np.zeros(5), 1.0), **FAST_PATH).fit(X)


@pytest.mark.parametrize("est", [
    GuidedDiffusionSampler(n_neighbors=5, algorithm="kd_tree"),
    GuidedDiffusionSampler(n_neighbors=5, algorithm="brute"),
    PathExtrapolationDensity(extrapolation="exact", algorithm="kd_tree", **FAST_PATH),
], ids=["guided-kd", "guided-brute", "path-exact"])
def test_a_dump_stores_the_patterns_once(est):
    X = np.random.default_rng(3).normal(size=(5000, 4))
    est.fit(X)
    buffer = io.BytesIO()
    joblib.dump(est, buffer)
    # The engine stores the patterns (plus their half squared norms, 1/d of
    # them); path extrapolation also keeps the training rows for its copies.
    copies = 2 if isinstance(est, PathExtrapolationDensity) else 1
    assert len(buffer.getvalue()) < (copies + 0.5) * X.nbytes + 200_000
    # The index left out of the dump is rebuilt: the same draws.
    restored = joblib.load(io.BytesIO(buffer.getvalue()))
    draw = "sample_endpoints" if copies == 2 else "sample"
    np.testing.assert_array_equal(getattr(restored, draw)(30, 1), getattr(est, draw)(30, 1))


def test_a_seed_sequence_is_a_seed_value(X):
    est = GuidedDiffusionSampler(n_steps=3).fit(X)
    seed = np.random.SeedSequence(7)
    first = est.sample(6, seed)
    np.testing.assert_array_equal(est.sample(6, seed), first)
    assert seed.n_children_spawned == 0


def test_datasets_refuse_booleans_as_sample_counts():
    with pytest.raises(ValueError, match="non-negative integer"):
        Rings().sample(True)
