"""The shared estimator base and the sampling driver, through a toy estimator.

``_ToyKDE`` is the smallest estimator the base allows: a Gaussian KDE whose
``sample`` runs a toy Langevin-like dynamics through the real chunked driver.
"""

import io
import os
import pickle
import sys
from numbers import Real

import numpy as np
import pytest
from joblib import parallel_config
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import Interval
from sklearn.utils.estimator_checks import check_estimator

import sklearn_diffsample
from sklearn_diffsample import PatternPosterior
from sklearn_diffsample._base import (
    BaseDiffusionDensity,
    check_n_samples,
    data_scale,
    resolve_bandwidth,
)
from sklearn_diffsample._parallel import chunk_sizes, run_chunks, seed_sequence

from ._reference import brute_kde_log_density


class _ToyKDE(BaseDiffusionDensity):
    _parameter_constraints = {
        **BaseDiffusionDensity._parameter_constraints,
        "n_steps": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(self, *, bandwidth=1.0, algorithm="auto", n_steps=3, batch_size=64,
                 n_jobs=None, random_state=None, verbose=0):
        self.bandwidth = bandwidth
        self.algorithm = algorithm
        self.n_steps = n_steps
        self.batch_size = batch_size
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    def _fit(self, X, y=None):
        X = self._validate_fit_data(X)
        self.bandwidth_ = resolve_bandwidth(self.bandwidth, X)
        self.posterior_ = PatternPosterior(X)
        return self

    def _score_samples(self, X):
        return self.posterior_.log_density(X, self.bandwidth_**2)

    def _sample(self, n_samples, seed):
        post, h2, n_steps = self.posterior_, self.bandwidth_**2, int(self.n_steps)

        def dynamics(size, rng, report):
            x = post.take(rng.integers(0, post.n_patterns, size))
            x = x + np.sqrt(h2) * rng.standard_normal(x.shape)
            for _ in range(n_steps):
                m = post.query(x, h2, mean=True).mean
                x = x + 0.1 * (m - x) + 0.01 * rng.standard_normal(x.shape)
                report(1)
            return x

        parts = run_chunks(dynamics, chunk_sizes(n_samples, self.batch_size), seed,
                           n_jobs=self.n_jobs, verbose=self.verbose,
                           steps_per_chunk=n_steps)
        return np.vstack(parts)


def test_toy_estimator_passes_scikit_learn_checks():
    check_estimator(_ToyKDE())


@pytest.fixture(scope="module")
def fitted():
    X = np.random.default_rng(0).normal(size=(300, 2))
    return _ToyKDE(bandwidth=0.4, batch_size=50).fit(X), X


def test_score_is_the_sum_of_score_samples(fitted):
    est, X = fitted
    rows = np.random.default_rng(1).normal(size=(1500, 2))  # > one scoring chunk
    expected = brute_kde_log_density(rows, X, 0.4)
    np.testing.assert_allclose(est.score_samples(rows), expected, rtol=1e-12)
    assert est.score(rows) == pytest.approx(expected.sum(), rel=1e-12)


def test_random_state_kinds(fitted):
    est, _ = fitted
    a = est.sample(10, random_state=np.random.RandomState(3))
    b = est.sample(10, random_state=np.random.RandomState(3))
    c = est.sample(10, random_state=np.random.default_rng(3))
    d = est.sample(10, random_state=np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(c, d)
    assert not np.array_equal(est.sample(10), est.sample(10))  # fresh entropy


def test_sample_argument_checks(fitted):
    est, _ = fitted
    assert est.sample(0).shape == (0, 2)
    for bad in (-1, 2.5, "3", True):
        with pytest.raises(ValueError, match="n_samples"):
            est.sample(bad)
    with pytest.raises(NotFittedError):
        _ToyKDE().sample(3)
    with pytest.raises(ValueError, match="random_state"):
        est.sample(3, random_state="seed")


@pytest.mark.parametrize("name", ["GuidedDiffusionSampler", "MMSOLDSampler",
                                  "PathExtrapolationDensity"])
def test_a_single_point_is_refused_with_what_is_missing(name):
    # One point, however often repeated, has no spread for the coordinates
    # or the bandwidth: before, every sample was a copy of it.
    cls = getattr(sklearn_diffsample, name)
    row = np.array([[1.0, -2.0, 3.0]])
    with pytest.raises(ValueError, match="2 distinct rows.*n_samples = 1 with one row"):
        cls().fit(row)
    with pytest.raises(ValueError, match="n_samples = 4 with every row the same"):
        cls().fit(np.repeat(row, 4, axis=0))
    two = np.vstack([row, row + 1e-3])
    assert np.isfinite(cls(random_state=0).fit(two).score_samples(two)).all()
    if cls._per_class_models:
        # A class of one point is refused by name.
        X = np.vstack([np.random.default_rng(3).normal(size=(12, 3)), row])
        with pytest.raises(ValueError, match="Class 'b': .*n_samples = 1 with one row"):
            cls(n_steps=5, random_state=0).fit(X, np.repeat(["a", "b"], [12, 1]))


def test_failed_fit_leaves_the_fitted_estimator_unchanged(fitted):
    est, X = fitted
    before = pickle.dumps(est)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError):
        est.fit(bad)
    with pytest.raises(ValueError):
        est.fit(np.zeros((5, 3, 2)))
    assert pickle.dumps(est) == before
    assert est.n_features_in_ == 2


def test_progress_bar_reports_every_step(fitted, capsys):
    est, _ = fitted
    est.set_params(verbose=1)
    try:
        est.sample(120, random_state=0)
    finally:
        est.set_params(verbose=0)
    err = capsys.readouterr().err
    assert "9/9" in err  # 3 chunks x 3 steps


class _Stream(io.StringIO):
    def __init__(self, terminal):
        super().__init__()
        self.terminal = terminal

    def isatty(self):
        return self.terminal


@pytest.mark.parametrize("terminal", [True, False])
def test_progress_without_tqdm_redraws_a_terminal_and_writes_whole_lines_to_a_file(
        terminal, monkeypatch):
    from sklearn_diffsample._parallel import Progress

    monkeypatch.setitem(sys.modules, "tqdm", None)  # the plain fallback
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    stream = _Stream(terminal)
    monkeypatch.setattr(sys, "stderr", stream)
    bar = Progress(200, "steps", verbose=1)
    for chunk in range(4):
        for _ in range(45):
            bar.step(chunk)
        bar.chunk_done(chunk, 50)  # credits the 5 steps a worker did not report
    bar.close()
    out = stream.getvalue()
    if terminal:
        # About 50 redraws (a credit that jumps two fiftieths draws once).
        assert 45 <= out.count("\r") <= 50 and out.endswith("\rsteps: 200/200\n")
    else:
        # One line at each tenth, none lost where a credit jumps past one.
        assert "\r" not in out
        assert out.splitlines() == [f"steps: {k}/200" for k in range(20, 201, 20)]


def test_bandwidth_rules_follow_the_data_scale():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(400, 3))
    for rule in ("scott", "silverman"):
        small = resolve_bandwidth(rule, X)
        assert resolve_bandwidth(rule, 1000.0 * X) == pytest.approx(1000.0 * small)
    sigma_bar = np.sqrt(np.mean(X.var(axis=0)))
    assert resolve_bandwidth("scott", X) == pytest.approx(sigma_bar * 400 ** (-1 / 7))
    assert resolve_bandwidth("silverman", X) == pytest.approx(
        sigma_bar * (400 * 5 / 4) ** (-1 / 7)
    )
    assert data_scale(np.ones((5, 2))) == 1.0  # no spread: unit scale, not zero
    est = _ToyKDE(bandwidth="scott").fit(X.tolist())  # list input works
    assert est.bandwidth_ == pytest.approx(resolve_bandwidth("scott", X))


def test_check_n_samples_accepts_numpy_integers():
    assert check_n_samples(np.int64(4)) == 4


def test_chunks_depend_only_on_n_and_batch_size():
    assert chunk_sizes(10, 4) == [4, 4, 2]
    assert chunk_sizes(10, 4, min_size=3) == [4, 6]
    assert chunk_sizes(3, 4) == [3]
    assert chunk_sizes(0, 4) == []
    seeds = [seed_sequence(5).spawn(3)[i].generate_state(2) for i in range(3)]
    assert len({tuple(s) for s in seeds}) == 3


def test_run_chunks_returns_in_chunk_order():
    def func(size, rng, report):
        return np.full(size, size)

    with parallel_config(backend="threading", n_jobs=2):
        out = run_chunks(func, [3, 1, 2], seed_sequence(0))
    assert [o.tolist() for o in out] == [[3, 3, 3], [1], [2, 2]]


def _chunk_process(size, rng, report):
    return os.getpid(), rng.standard_normal(size)


def test_run_chunks_keeps_a_single_chunk_in_the_calling_process():
    # Two chunks go to loky's worker processes; one runs here, with the same
    # draws as when it is the first of several (its seed is the first child).
    with parallel_config(backend="loky", n_jobs=2):
        one = run_chunks(_chunk_process, [4], seed_sequence(0))
        two = run_chunks(_chunk_process, [4, 4], seed_sequence(0))
    assert one[0][0] == os.getpid()
    assert {pid for pid, _ in two} != {os.getpid()}
    np.testing.assert_array_equal(one[0][1], two[0][1])
