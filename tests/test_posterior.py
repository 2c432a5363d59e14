"""The pattern-posterior engine against brute force and calculus identities."""

import pickle
import tracemalloc

import numpy as np
import pytest
from scipy.stats import chisquare
from sklearn import config_context

from sklearn_diffsample import PatternPosterior
from sklearn_diffsample._posterior import _uniform_remainder

from ._reference import brute_posterior


def _close(actual, expected, tol):
    """|a - b| <= tol * (1 + |b|): absolute near 0, relative for large logits.

    A logit of size L is itself only known to L * 2e-16 in float64 (the
    reference's squared distances are rounded too), so an absolute bound below
    that resolution would test the reference's rounding, not the engine.
    """
    err = np.abs(actual - expected) / (1.0 + np.abs(expected))
    assert np.max(err) <= tol, f"max scaled error {np.max(err):.3e} > {tol:.1e}"


@pytest.fixture(scope="module")
def offset_data():
    rng = np.random.default_rng(0)
    # Far from the origin and anisotropic: the BLAS expansion must not care.
    return rng.normal(size=(700, 4)) * [1.0, 2.0, 0.5, 1.5] + [30.0, -12.0, 5.0, 0.0]


@pytest.mark.parametrize("rel_scale", [1e-4, 1e-2, 0.3, 1.0, 10.0, 1e4])
def test_exact_mode_matches_brute_force(offset_data, rel_scale):
    rng = np.random.default_rng(1)
    scale = np.sqrt(np.mean(np.var(offset_data, axis=0)))
    near = offset_data[rng.integers(0, 700, 40)] + rng.normal(size=(40, 4)) * scale * 0.3
    far = offset_data.mean(0) + rng.normal(size=(10, 4)) * scale * 60.0
    queries = np.vstack([near, far])
    s2 = (rel_scale * scale) ** 2
    stats = PatternPosterior(offset_data).query(queries, s2, mean=True, spread=True)
    log_norm, mean, spread = brute_posterior(queries, offset_data, s2)
    _close(stats.log_norm, log_norm, 1e-10)
    np.testing.assert_allclose(stats.mean, mean, rtol=0, atol=1e-10 * scale)
    np.testing.assert_allclose(stats.spread, spread, rtol=1e-10, atol=1e-14 * s2)
    assert np.all(np.isfinite(stats.log_norm))


def test_streaming_blocks_give_the_same_answer(offset_data):
    rng = np.random.default_rng(2)
    queries = offset_data[:30] + rng.normal(size=(30, 4))
    post = PatternPosterior(offset_data)
    whole = post.query(queries, 0.7, mean=True, spread=True)
    # 1 KiB of working memory forces blocks of a handful of patterns.
    with config_context(working_memory=0.001):
        tiny = post.query(queries, 0.7, mean=True, spread=True)
    np.testing.assert_allclose(tiny.log_norm, whole.log_norm, rtol=1e-13)
    np.testing.assert_allclose(tiny.mean, whole.mean, rtol=1e-13)
    np.testing.assert_allclose(tiny.spread, whole.spread, rtol=1e-10)


def test_log_weights_and_per_query_variance(offset_data):
    rng = np.random.default_rng(3)
    log_w = rng.normal(size=700) * 2.0
    queries = offset_data[:25] + rng.normal(size=(25, 4))
    s2 = rng.uniform(0.1, 5.0, size=25)
    stats = PatternPosterior(offset_data, log_weights=log_w).query(
        queries, s2, mean=True, spread=True
    )
    log_norm, mean, spread = brute_posterior(queries, offset_data, s2, log_w)
    _close(stats.log_norm, log_norm, 1e-10)
    np.testing.assert_allclose(stats.mean, mean, atol=1e-10)
    np.testing.assert_allclose(stats.spread, spread, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("s2", [1e-3, 0.7, 50.0, 1e300])
# 300 patterns take the pattern-major blocks, 700 the query-major ones.
@pytest.mark.parametrize("n_patterns", [300, 700])
def test_sampling_mean_matches_brute_force_to_float32_accuracy(offset_data, s2, n_patterns):
    # float32 weights: 1e-5 of the pattern spread is ~100 float32 epsilons,
    # and far below the per-step noise of any sampler that calls it.
    rng = np.random.default_rng(4)
    patterns = offset_data[:n_patterns]
    log_w = rng.normal(size=n_patterns)
    queries = patterns[:40] + 3.0 * rng.normal(size=(40, 4))
    post = PatternPosterior(patterns, log_weights=log_w)
    _, mean, _ = brute_posterior(queries, patterns, min(s2, 1e30), log_w)
    spread = patterns.std()
    np.testing.assert_allclose(post.sampling_mean(queries, s2), mean, rtol=0, atol=1e-5 * spread)
    # The first call builds the float32 copy; a pickle drops it and rebuilds it.
    again = pickle.loads(pickle.dumps(post)).sampling_mean(queries, s2)
    np.testing.assert_array_equal(again, post.sampling_mean(queries, s2))


@pytest.mark.parametrize("n_filler", [0, 600])  # pattern-major, query-major
def test_sampling_mean_keeps_float64_logits_where_float32_would_round_them(
        n_filler, monkeypatch):
    # Two patterns 0.01 from the query, one along each axis, 150 or more from
    # the offset, at a kernel width of 0.01: their logits are near 2e8, which
    # float32 rounds by ~16, so float32 logits would hand one of the two
    # most of the weight.  The mean is their midpoint (brute force: the
    # other patterns are 300 away).
    rng = np.random.default_rng(8)
    pair = np.array([[-149.99, 0.0], [-150.0, 0.01], [150.0, 0.0], [150.0, 0.01]])
    patterns = np.vstack([pair, [150.0, 0.0] + rng.normal(size=(n_filler, 2))])
    query, s2 = np.array([[-150.0, 0.0]]), 1e-4
    _, mean, _ = brute_posterior(query, patterns, s2)
    np.testing.assert_allclose(mean, [[-149.995, 0.005]], atol=1e-9)
    tolerance = 1e-5 * patterns.std()
    got = PatternPosterior(patterns).sampling_mean(query, s2)
    np.testing.assert_allclose(got, mean, rtol=0, atol=tolerance)
    # The bound is what keeps them float64: lifted, float32 misses the midpoint.
    monkeypatch.setattr("sklearn_diffsample._posterior._FLOAT32_LOGIT_BOUND", np.inf)
    rounded = PatternPosterior(patterns).sampling_mean(query, s2)
    assert np.abs(rounded - mean).max() > 2 * tolerance


@pytest.mark.parametrize("n_patterns", [300, 700])
def test_sampling_mean_over_many_query_blocks(offset_data, n_patterns):
    # 1000 queries span several blocks in either layout (436 queries a block
    # on 300 patterns, 187 on 700), the last one short.
    rng = np.random.default_rng(6)
    patterns = offset_data[:n_patterns]
    queries = patterns[rng.integers(0, n_patterns, 1000)] + rng.normal(size=(1000, 4))
    post = PatternPosterior(patterns)
    _, mean, _ = brute_posterior(queries, patterns, 0.5)
    np.testing.assert_allclose(post.sampling_mean(queries, 0.5), mean, rtol=0,
                               atol=1e-5 * patterns.std())


@pytest.mark.parametrize("s2", [1e-3, 0.7, 50.0])
def test_sampling_log_density_matches_brute_force_to_float32_accuracy(offset_data, s2):
    # Only the sum of the shifted weights is float32: 1e-7 relative, 1e-7 nats.
    rng = np.random.default_rng(5)
    log_w = rng.normal(size=700)
    queries = offset_data[:40] + 3.0 * rng.normal(size=(40, 4))
    post = PatternPosterior(offset_data, log_weights=log_w)
    log_norm, _, _ = brute_posterior(queries, offset_data, s2, log_w)
    expected = log_norm - np.logaddexp.reduce(log_w) - 2.0 * np.log(2.0 * np.pi * s2)
    np.testing.assert_allclose(post.sampling_log_density(queries, s2), expected,
                               rtol=0, atol=1e-6)
    unweighted = PatternPosterior(offset_data)
    np.testing.assert_allclose(unweighted.sampling_log_density(queries, s2),
                               unweighted.log_density(queries, s2), rtol=0, atol=1e-6)


@pytest.mark.parametrize("block", [None, 100])
@pytest.mark.parametrize("s2, spread", [(0.7, 1.0), (50.0, 1.0), (1e-3, 1.0), (1e-3, 30.0)])
def test_offset_log_density_matches_brute_force(offset_data, s2, spread, block, monkeypatch):
    # One matrix product for all offsets; the last case (offsets 30 kernel
    # widths long over a wide cloud) puts sums below the e^-300 shift, which
    # are summed again exactly.  block=100: the 700 patterns in 7 blocks,
    # their sums merged (as beyond 127,000 patterns with MM-SOLD's 33 offsets).
    if block is not None:
        monkeypatch.setattr("sklearn_diffsample._posterior._OFFSET_MAX_FACTOR", 12 * block)
    rng = np.random.default_rng(6)
    log_w = rng.normal(size=700)
    queries = offset_data[:40] + 3.0 * rng.normal(size=(40, 4))
    offsets = spread * np.sqrt(s2) * rng.normal(size=(12, 4))
    post = PatternPosterior(offset_data, log_weights=log_w)
    moved = (queries[:, None, :] + offsets[None, :, :]).reshape(-1, 4)
    log_norm, _, _ = brute_posterior(moved, offset_data, s2, log_w)
    expected = log_norm - np.logaddexp.reduce(log_w) - 2.0 * np.log(2.0 * np.pi * s2)
    got = post.offset_log_density(queries, s2, offsets)
    assert got.shape == (40, 12)
    np.testing.assert_allclose(got.ravel(), expected, rtol=1e-12, atol=1e-9)


def test_offset_log_density_beyond_its_factor_budget(monkeypatch):
    rng = np.random.default_rng(7)
    patterns = rng.normal(size=(300, 3))
    queries, offsets = rng.normal(size=(20, 3)), 0.3 * rng.normal(size=(5, 3))
    post = PatternPosterior(patterns)
    single = post.offset_log_density(queries, 0.2, offsets)
    monkeypatch.setattr("sklearn_diffsample._posterior._OFFSET_MAX_FACTOR", 1000)
    streamed = post.offset_log_density(queries, 0.2, offsets)
    moved = (queries[:, None, :] + offsets[None, :, :]).reshape(-1, 3)
    np.testing.assert_allclose(streamed.ravel(), post.log_density(moved, 0.2), rtol=1e-13)
    np.testing.assert_allclose(single, streamed, rtol=1e-12)
    assert post.offset_log_density(queries, 0.2, np.zeros((0, 3))).shape == (20, 0)


def test_halving_log_density_matches_brute_force(offset_data):
    # Weights squared from one exponential over 30 halvings (s2 from 50 down
    # to 1e-8): the squares reach the e^-354 floor, which must not matter.
    rng = np.random.default_rng(8)
    queries = offset_data[:30] + 2.0 * rng.normal(size=(30, 4))
    post = PatternPosterior(offset_data)
    got = post.halving_log_density(queries, 50.0, 30)
    for k in (0, 1, 7, 29):
        s2 = 50.0 / 2**k
        log_norm, _, _ = brute_posterior(queries, offset_data, s2)
        expected = log_norm - np.log(700) - 2.0 * np.log(2.0 * np.pi * s2)
        np.testing.assert_allclose(got[:, k], expected, rtol=1e-12)
    with pytest.raises(ValueError, match="unweighted"):
        PatternPosterior(offset_data, log_weights=np.zeros(700)).halving_log_density(
            queries, 1.0, 2)
    for s2, n in [(0.0, 2), (np.inf, 2), (1.0, 0)]:
        with pytest.raises(ValueError, match="finite s2 > 0"):
            post.halving_log_density(queries, s2, n)


def test_log_density_is_the_normalised_mixture():
    rng = np.random.default_rng(4)
    patterns = rng.normal(size=(50, 1))
    grid = np.linspace(-8, 8, 4001)[:, None]
    density = np.exp(PatternPosterior(patterns).log_density(grid, 0.3**2))
    assert abs(np.trapezoid(density[:, 0] if density.ndim > 1 else density, grid[:, 0]) - 1) < 1e-9


def test_mean_and_spread_are_derivatives_of_log_norm():
    """grad logZ = (mean - q)/s2 and trace Hess logZ = -d/s2 + spread/s2^2."""
    rng = np.random.default_rng(5)
    patterns = rng.normal(size=(200, 3))
    post = PatternPosterior(patterns)
    s2, eps = 0.4, 1e-4
    queries = rng.normal(size=(10, 3))
    stats = post.query(queries, s2, mean=True, spread=True)
    grad = np.empty_like(queries)
    laplacian = np.zeros(len(queries))
    centre = post.query(queries, s2).log_norm
    for j in range(3):
        step = np.zeros(3)
        step[j] = eps
        up = post.query(queries + step, s2).log_norm
        down = post.query(queries - step, s2).log_norm
        grad[:, j] = (up - down) / (2 * eps)
        laplacian += (up - 2 * centre + down) / eps**2
    np.testing.assert_allclose(grad, (stats.mean - queries) / s2, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(laplacian, -3 / s2 + stats.spread / s2**2, rtol=1e-5)


def test_batch_order_and_dtype_invariance(offset_data):
    rng = np.random.default_rng(6)
    queries = offset_data[:64] + rng.normal(size=(64, 4))
    post = PatternPosterior(offset_data)
    full = post.query(queries, 1.3, mean=True, spread=True)
    perm = rng.permutation(64)
    shuffled = post.query(queries[perm], 1.3, mean=True, spread=True)
    one_by_one = [post.query(queries[i:i + 1], 1.3).log_norm[0] for i in range(5)]
    np.testing.assert_allclose(shuffled.log_norm, full.log_norm[perm], rtol=1e-14)
    np.testing.assert_allclose(shuffled.mean, full.mean[perm], rtol=1e-14)
    np.testing.assert_allclose(shuffled.spread, full.spread[perm], rtol=1e-11)
    np.testing.assert_allclose(one_by_one, full.log_norm[:5], rtol=1e-14)

    low = offset_data.astype(np.float32)
    from_low = PatternPosterior(low).query(queries.astype(np.float32), 1.3, mean=True)
    from_cast = PatternPosterior(low.astype(np.float64)).query(
        queries.astype(np.float32).astype(np.float64), 1.3, mean=True
    )
    assert from_low.log_norm.dtype == np.float64
    np.testing.assert_array_equal(from_low.log_norm, from_cast.log_norm)
    np.testing.assert_array_equal(from_low.mean, from_cast.mean)


@pytest.mark.parametrize("s", [0.05, 0.2, 0.5, 2.0])
def test_certificate_bounds_the_true_top_k_error(s):
    rng = np.random.default_rng(7)
    patterns = rng.normal(size=(2000, 3))
    post = PatternPosterior(patterns, algorithm="kd_tree")
    queries = np.vstack([rng.normal(size=(80, 3)), rng.normal(size=(20, 3)) * 4])
    # tol=inf keeps every truncated answer, so the bound itself is on trial.
    trunc = post.query(queries, s * s, mean=True, n_neighbors=15, tol=np.inf)
    log_norm, mean, _ = brute_posterior(queries, patterns, s * s)
    delta = np.expm1(trunc.certificate)
    diameter = np.max(np.linalg.norm(patterns[:, None] - patterns[None], axis=2))
    roundoff = 1e-12 * (1 + np.abs(log_norm))
    assert np.all(np.abs(trunc.log_norm - log_norm) <= trunc.certificate + roundoff)
    mean_err = np.linalg.norm(trunc.mean - mean, axis=1)
    assert np.all(mean_err <= delta / (1 + delta) * diameter + 1e-12)


def test_certified_mode_falls_back_to_exact():
    rng = np.random.default_rng(8)
    patterns = rng.normal(size=(3000, 2))
    post = PatternPosterior(patterns, algorithm="kd_tree")
    queries = rng.normal(size=(200, 2))
    for s in [0.01, 0.05, 0.3, 3.0]:
        stats = post.query(queries, s * s, mean=True, spread=True, n_neighbors=30, tol=1e-8)
        log_norm, mean, spread = brute_posterior(queries, patterns, s * s)
        assert np.all(np.abs(stats.log_norm - log_norm) <= 1e-8 + 1e-12 * np.abs(log_norm))
        assert np.max(np.abs(stats.mean - mean)) <= 1e-7
    # At s = 0.01 the 30 nearest hold all the mass: the certificate must pass.
    small = post.query(queries, 1e-4, n_neighbors=30)
    assert np.mean(small.certificate <= 1e-8) > 0.95


def test_groups_restrict_to_one_class():
    rng = np.random.default_rng(9)
    patterns = rng.normal(size=(300, 2))
    labels = rng.integers(0, 3, 300)
    post = PatternPosterior(patterns, groups=labels)
    queries = rng.normal(size=(15, 2))
    for label in range(3):
        stats = post.group(label).query(queries, 0.5, mean=True)
        log_norm, mean, _ = brute_posterior(queries, patterns[labels == label], 0.5)
        _close(stats.log_norm, log_norm, 1e-12)
        np.testing.assert_allclose(stats.mean, mean, atol=1e-12)
    with pytest.raises(ValueError, match="No pattern has group label"):
        post.group(7)


def test_random_remainder_is_exact_with_every_pattern_and_unbiased():
    rng = np.random.default_rng(10)
    patterns = rng.normal(size=(400, 2))
    post = PatternPosterior(patterns, algorithm="kd_tree")
    particles = rng.normal(size=(6, 2))
    _, near = post.kneighbors(particles, 20)
    copies = particles[:, None, :] + 0.3 * rng.normal(size=(6, 5, 2))
    full = post.query_remainder(copies, 0.25, near, 380, np.random.default_rng(0), spread=True)
    log_norm, mean, spread = brute_posterior(copies.reshape(-1, 2), patterns, 0.25)
    _close(full.log_norm.ravel(), log_norm, 1e-12)
    np.testing.assert_allclose(full.mean.reshape(-1, 2), mean, atol=1e-12)
    np.testing.assert_allclose(full.spread.ravel(), spread, rtol=1e-9, atol=1e-13)

    # Z (not log Z) is unbiased: average 4000 independent remainders.
    draws = np.array([
        np.exp(post.query_remainder(copies[:1, :1], 1.0, near[:1], 10,
                                    np.random.default_rng(seed)).log_norm[0, 0])
        for seed in range(4000)
    ])
    truth = np.exp(brute_posterior(copies[0, :1], patterns, 1.0)[0][0])
    stderr = draws.std() / np.sqrt(len(draws))
    assert abs(draws.mean() - truth) < 4 * stderr  # false-alarm rate ~6e-5


def test_remainder_draws_are_distinct_uniform_and_avoid_neighbours():
    excluded = np.tile(np.array([3, 17, 40, 41, 59]), (20000, 1))
    drawn = _uniform_remainder(np.random.default_rng(1), excluded, 8, 60)
    assert np.all(np.diff(np.sort(drawn, axis=1), axis=1) > 0)
    assert not np.any(np.isin(drawn, excluded[0]))
    counts = np.bincount(drawn.ravel(), minlength=60)
    free = np.setdiff1d(np.arange(60), excluded[0])
    assert chisquare(counts[free]).pvalue > 1e-4  # false-alarm rate 1e-4


def test_engine_rejects_bad_variance_and_shapes():
    post = PatternPosterior(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="s2"):
        post.query(np.zeros((2, 2)), 0.0)
    with pytest.raises(ValueError, match="shape"):
        post.query(np.zeros((2, 3)), 1.0)
    with pytest.raises(ValueError, match="index"):
        post.query(np.zeros((2, 2)), 1.0, n_neighbors=2)


def test_million_patterns_stream_in_bounded_memory():
    rng = np.random.default_rng(11)
    patterns = rng.standard_normal(size=(1_000_000, 16))
    post = PatternPosterior(patterns)
    # 300 queries: two row blocks of the stream (256 rows each), and a
    # (300 x 1e6) float64 matrix alone would be 2.4 GB.
    queries = rng.standard_normal(size=(300, 16))
    tracemalloc.start()
    try:
        stats = post.query(queries, 0.5, mean=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 400 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    for i in (0, 299):
        log_norm, mean, _ = brute_posterior(queries[i:i + 1], patterns, 0.5)
        _close(stats.log_norm[i:i + 1], log_norm, 1e-10)
        np.testing.assert_allclose(stats.mean[i], mean[0], atol=1e-10)


def test_posterior_per_row_matches_brute_force_for_each_row():
    from sklearn_diffsample._posterior import posterior_per_row

    rng = np.random.default_rng(12)
    queries = rng.normal(size=(20, 3))
    own = rng.normal(size=(20, 15, 3)) * 2.0
    s2 = rng.uniform(0.1, 3.0, size=20)
    stats = posterior_per_row(queries, own.transpose(2, 0, 1), s2, spread=True)
    for i in range(20):
        log_norm, mean, spread = brute_posterior(queries[i:i + 1], own[i], s2[i])
        _close(stats.log_norm[i:i + 1], log_norm, 1e-12)
        np.testing.assert_allclose(stats.mean[i], mean[0], atol=1e-12)
        np.testing.assert_allclose(stats.spread[i], spread[0], rtol=1e-10)
