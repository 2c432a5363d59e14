"""Tests of sklearn_diffsample.metrics against independent references."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn import config_context
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold
from sklearn.neighbors import KNeighborsClassifier
from threadpoolctl import threadpool_limits

from sklearn_diffsample.metrics import (
    MemorizationResult,
    c2st_auc,
    median_bandwidth,
    memorization,
    mmd,
    sliced_wasserstein,
    support_distance,
)


@pytest.fixture(autouse=True)
def _one_thread():
    # The test machine is small and shared: under oversubscription OpenMP
    # spin-waiting makes HistGradientBoosting (the C2ST default) ~7x slower.
    with threadpool_limits(limits=1):
        yield


def _directions(n_projections, n_features, random_state):
    """The directions documented in sliced_wasserstein's docstring."""
    theta = np.random.RandomState(random_state).standard_normal(
        (n_projections, n_features)
    )
    return theta / np.linalg.norm(theta, axis=1, keepdims=True)


def _w2_squared_by_replication(x, y):
    """Exact 1-D W2^2 between empirical measures: replicate both to lcm size."""
    n, m = len(x), len(y)
    lcm = np.lcm(n, m)
    xs = np.sort(np.repeat(x, lcm // n))
    ys = np.sort(np.repeat(y, lcm // m))
    return np.mean((xs - ys) ** 2)


# --------------------------------------------------------------- sliced W2
@pytest.mark.parametrize("shift", [-1.5, 0.3, 2.0])
def test_sw2_1d_shift_is_the_shift(shift):
    # In 1-D both directions are +-1 and sorted shifted copies differ by |m|.
    X = np.random.default_rng(0).normal(size=(300, 1))
    sw = sliced_wasserstein(X, X + shift, random_state=0)
    assert_allclose(sw, abs(shift), rtol=1e-12)


def test_sw2_of_a_sample_with_itself_is_zero():
    X = np.random.default_rng(1).normal(size=(200, 4))
    assert sliced_wasserstein(X, X, n_projections=50, random_state=0) == 0.0


def test_sw2_shift_matches_the_projections_used():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(250, 5))
    m = np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    sw = sliced_wasserstein(X, X + m, n_projections=64, random_state=7)
    theta = _directions(64, 5, 7)
    assert_allclose(sw**2, np.mean((theta @ m) ** 2), rtol=1e-12)


def test_sw2_shift_matches_the_sphere_average():
    # E[(theta . m)^2] = |m|^2 / d for theta uniform on the sphere.  With
    # theta_1^2 ~ Beta(1/2, (d-1)/2), the relative sd of the mean over P
    # directions is sqrt(2 (d-1) / (d+2) / P) = 0.024 for d = 5, P = 2000;
    # the tolerance is 5 of those.
    X = np.random.default_rng(3).normal(size=(50, 5))
    m = np.array([2.0, 0.0, -1.0, 0.0, 1.0])
    sw = sliced_wasserstein(X, X + m, n_projections=2000, random_state=0)
    assert_allclose(sw**2, m @ m / 5, rtol=5 * np.sqrt(2 * 4 / 7 / 2000))


@pytest.mark.parametrize("n, m", [(6, 4), (7, 5), (12, 12), (1, 9)])
def test_sw2_unequal_sizes_is_the_exact_empirical_w2(n, m):
    rng = np.random.default_rng(n * 100 + m)
    X, Y = rng.normal(size=(n, 3)), rng.normal(1.0, size=(m, 3))
    theta = _directions(30, 3, 5)
    expected = np.sqrt(
        np.mean([_w2_squared_by_replication(X @ t, Y @ t) for t in theta])
    )
    sw = sliced_wasserstein(X, Y, n_projections=30, random_state=5)
    assert_allclose(sw, expected, rtol=1e-12)


def test_sw2_duplicated_sample_is_the_same_law():
    X = np.random.default_rng(4).normal(size=(40, 2))
    assert sliced_wasserstein(X, np.vstack([X, X, X]), random_state=0) < 1e-14


def test_sw2_symmetric_reproducible_and_blocked():
    rng = np.random.default_rng(5)
    X, Y = rng.normal(size=(30, 3)), rng.normal(size=(45, 3))
    ref = sliced_wasserstein(X, Y, random_state=0)
    assert ref == sliced_wasserstein(X, Y, random_state=0)
    with_generator = [
        sliced_wasserstein(X, Y, random_state=np.random.default_rng(9))
        for _ in range(2)
    ]
    assert with_generator[0] == with_generator[1]
    assert_allclose(sliced_wasserstein(Y, X, random_state=0), ref, rtol=1e-13)
    with config_context(working_memory=0.001):  # one direction per block
        assert_allclose(sliced_wasserstein(X, Y, random_state=0), ref, rtol=1e-13)


# --------------------------------------------------------------------- MMD
def _mmd2_brute(X, Y, h):
    def k(a, b):
        return np.exp(-np.sum((a - b) ** 2) / (2 * h * h))

    n, m = len(X), len(Y)
    xx = sum(k(X[i], X[j]) for i in range(n) for j in range(n) if i != j)
    yy = sum(k(Y[i], Y[j]) for i in range(m) for j in range(m) if i != j)
    xy = sum(k(X[i], Y[j]) for i in range(n) for j in range(m))
    return xx / (n * (n - 1)) + yy / (m * (m - 1)) - 2 * xy / (n * m)


def test_mmd_matches_double_loop():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(7, 3)), rng.normal(0.5, 1.3, size=(5, 3))
    assert_allclose(mmd(X, Y, bandwidth=0.8), _mmd2_brute(X, Y, 0.8), atol=1e-12)
    pooled = np.vstack([X, Y])
    pair_dists = [
        np.linalg.norm(pooled[i] - pooled[j])
        for i in range(len(pooled))
        for j in range(i + 1, len(pooled))
    ]
    h = np.median(pair_dists)
    assert median_bandwidth(pooled) == pytest.approx(h, rel=1e-14)
    assert_allclose(mmd(X, Y), _mmd2_brute(X, Y, h), rtol=0, atol=1e-12)


def test_mmd_streaming_blocks_do_not_change_the_value():
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(60, 2)), rng.normal(size=(45, 2))
    full = mmd(X, Y, bandwidth=1.0)
    with config_context(working_memory=0.0005):  # a few rows per block
        blocked = mmd(X, Y, bandwidth=1.0)
    assert_allclose(blocked, full, rtol=0, atol=1e-14)


def test_mmd_is_unbiased_under_equal_laws():
    # Over repeats under equal laws, the U-statistic averages to 0 within 4
    # standard errors, while the V-statistic (diagonal kept) on the same draws
    # is visibly biased upwards: the check can tell the two apart.
    rng = np.random.default_rng(2)
    n, h = 20, 1.0
    u_stats, v_stats = [], []
    for _ in range(300):
        X, Y = rng.normal(size=(n, 2)), rng.normal(size=(n, 2))
        u_stats.append(mmd(X, Y, bandwidth=h))
        Z = np.vstack([X, Y])
        K = np.exp(-((Z[:, None] - Z[None]) ** 2).sum(-1) / (2 * h * h))
        v_stats.append(K[:n, :n].mean() + K[n:, n:].mean() - 2 * K[:n, n:].mean())
    for stats, biased in [(np.array(u_stats), False), (np.array(v_stats), True)]:
        stderr = stats.std(ddof=1) / np.sqrt(len(stats))
        assert (abs(stats.mean()) > 4 * stderr) == biased


def test_mmd_separates_different_laws():
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(200, 2)), rng.normal(size=(200, 2)) + [1.0, 0.0]
    same_law = mmd(X, rng.normal(size=(200, 2)), random_state=0)
    assert mmd(X, Y, random_state=0) > 10 * abs(same_law)


def test_median_bandwidth_subsample_is_deterministic():
    X = np.random.default_rng(4).normal(size=(1500, 2))
    assert median_bandwidth(X, random_state=0) == median_bandwidth(X, random_state=0)
    # Median distance of two independent N(0, I_2) points: sqrt(2) * Rayleigh median.
    expected = 2 * np.sqrt(np.log(2))
    assert median_bandwidth(X, random_state=0) == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"bandwidth": -1.0}, "bandwidth"),
        ({"bandwidth": "scott"}, "bandwidth"),
        ({"kernel": "laplacian"}, "kernel"),
    ],
)
def test_mmd_rejects_bad_parameters(kwargs, match):
    X = np.random.default_rng(5).normal(size=(10, 2))
    with pytest.raises(ValueError, match=match):
        mmd(X, X + 1, **kwargs)


def test_mmd_needs_two_rows_and_distinct_points():
    X = np.random.default_rng(6).normal(size=(10, 2))
    with pytest.raises(ValueError, match="at least 2 rows"):
        mmd(X[:1], X)
    with pytest.raises(ValueError, match="pass a float bandwidth"):
        mmd(np.zeros((10, 2)), np.zeros((10, 2)))


# -------------------------------------------------------------------- C2ST
def test_c2st_same_law_is_chance():
    # 500 rows per class, 5 folds: 100 held-out rows per class and fold, so a
    # fold's AUC has sd sqrt(201 / (12 * 100^2)) = 0.041 around 0.5, and the
    # mean of 5 folds about 0.018; 0.08 is 4.4 sd.
    rng = np.random.default_rng(0)
    auc = c2st_auc(rng.normal(size=(500, 2)), rng.normal(size=(500, 2)), random_state=0)
    assert abs(auc - 0.5) < 0.08


def test_c2st_separated_laws_is_one():
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(300, 2)), rng.normal(size=(300, 2)) + [6.0, 0.0]
    assert c2st_auc(real, fake, random_state=0) > 0.995


def test_c2st_balances_and_is_reproducible():
    rng = np.random.default_rng(2)
    real, fake = rng.normal(size=(1000, 3)), rng.normal(size=(120, 3)) + 3.0
    knn = KNeighborsClassifier(n_neighbors=15)
    first = c2st_auc(real, fake, classifier=knn, random_state=3)
    assert first == c2st_auc(real, fake, classifier=knn, random_state=3)
    assert first > 0.95
    # The classifier passed in is cloned, never fitted in place.
    assert not hasattr(knn, "classes_")


def test_c2st_accepts_a_splitter_and_any_classifier():
    rng = np.random.default_rng(4)
    real, fake = rng.normal(size=(200, 2)), rng.normal(size=(200, 2)) + [2.0, 2.0]
    auc = c2st_auc(
        real,
        fake,
        classifier=LogisticRegression(),
        cv=KFold(4),  # unshuffled: the function shuffles the pooled rows
        random_state=0,
    )
    # Linear boundary on a mean shift of 2 sqrt(2): AUC = Phi(2) = 0.977.
    assert auc == pytest.approx(0.977, abs=0.03)


def test_c2st_needs_enough_rows():
    X = np.zeros((3, 2))
    with pytest.raises(ValueError, match="at least cv=5 rows"):
        c2st_auc(X, X + 1.0)


# ------------------------------------------------------------ memorization
def test_memorization_of_copies():
    rng = np.random.default_rng(0)
    X_train, X_test = rng.normal(size=(400, 2)), rng.normal(size=(400, 2))
    # Copies through a rounding pipeline are still copies.
    samples = X_train[rng.integers(0, 400, size=150)] * 3.0 / 3.0 + 1e-13
    res = memorization(samples, X_train, X_test)
    assert isinstance(res, MemorizationResult)
    assert res.copy_rate == 1.0
    assert res.dcr_ratio < 1e-10


def test_memorization_finds_copies_in_high_dimension_far_from_origin():
    # Here the BLAS-expansion distances of exact copies reach ~1e-5, far above
    # the 1e-8 * scale threshold; the copies must still be found.
    rng = np.random.default_rng(1)
    X_train = rng.normal(100.0, 1.0, size=(300, 64))
    X_test = rng.normal(100.0, 1.0, size=(100, 64))
    res = memorization(X_train[:80], X_train, X_test)
    assert res.copy_rate == 1.0
    assert_array_equal(res.sample_distances, 0.0)


def test_memorization_of_fresh_draws():
    # Samples and test rows are both fresh draws, so the ratio of their median
    # DCRs is 1 up to sampling noise (sd 0.038 at 1000 rows, measured over 200
    # seeds); 0.2 is over 5 sd.
    rng = np.random.default_rng(2)
    X_train, X_test, samples = (rng.normal(size=(1000, 2)) for _ in range(3))
    res = memorization(samples, X_train, X_test)
    assert abs(res.dcr_ratio - 1.0) < 0.2
    assert res.copy_rate == 0.0


def test_memorization_distances_and_scale_against_brute_force():
    rng = np.random.default_rng(3)
    X_train = rng.normal(size=(50, 3)) * [1.0, 2.0, 3.0]
    X_test, samples = rng.normal(size=(20, 3)), rng.normal(size=(30, 3))
    samples[:10] = X_train[:10]
    res = memorization(samples, X_train, X_test)
    brute_s = np.sqrt(((samples[:, None] - X_train[None]) ** 2).sum(-1)).min(1)
    brute_t = np.sqrt(((X_test[:, None] - X_train[None]) ** 2).sum(-1)).min(1)
    assert_allclose(res.sample_distances, brute_s, rtol=1e-12, atol=1e-15)
    assert_allclose(res.test_distances, brute_t, rtol=1e-12)
    assert res.copy_rate == pytest.approx(1 / 3)
    assert res.dcr_ratio == pytest.approx(np.median(brute_s) / np.median(brute_t))
    assert res.data_scale == pytest.approx(np.sqrt(np.mean(X_train.var(axis=0))))


def test_memorization_rejects_test_rows_copied_from_train():
    X = np.random.default_rng(4).normal(size=(20, 2))
    with pytest.raises(ValueError, match="remove the duplicates"):
        memorization(X, X, X)


# -------------------------------------------------------- support distance
def test_support_distance_without_classes():
    rng = np.random.default_rng(0)
    X_train, samples = rng.normal(size=(80, 3)), rng.normal(size=(25, 3))
    brute = np.sqrt(((samples[:, None] - X_train[None]) ** 2).sum(-1)).min(1)
    assert_allclose(support_distance(samples, X_train), brute, rtol=1e-12)


def test_support_distance_with_classes():
    rng = np.random.default_rng(1)
    X_train, samples = rng.normal(size=(90, 2)), rng.normal(size=(30, 2))
    y_train = np.array(["a", "b", "c"])[rng.integers(0, 3, size=90)]
    y = np.array(["a", "b", "c"])[rng.integers(0, 3, size=30)]
    d2 = ((samples[:, None] - X_train[None]) ** 2).sum(-1)
    brute = np.sqrt(np.where(y[:, None] == y_train[None], d2, np.inf).min(1))
    assert_allclose(support_distance(samples, X_train, y_train, y), brute, rtol=1e-12)
    brute_b = np.sqrt(d2[:, y_train == "b"].min(1))
    by_scalar = support_distance(samples, X_train, y_train, "b")
    assert_allclose(by_scalar, brute_b, rtol=1e-12)
    # Class restriction can only move the nearest row farther away.
    assert np.all(brute >= support_distance(samples, X_train) - 1e-12)


def test_support_distance_label_errors():
    X = np.random.default_rng(2).normal(size=(10, 2))
    y_train = np.repeat([0, 1], 5)
    with pytest.raises(ValueError, match=r"known classes are \[0, 1\]"):
        support_distance(X, X, y_train, 7)
    with pytest.raises(ValueError, match="or neither"):
        support_distance(X, X, y_train=y_train)
    with pytest.raises(ValueError, match="one label per sample"):
        support_distance(X, X, y_train, [0, 1, 0])


# --------------------------------------------------------- input validation
@pytest.mark.parametrize(
    "func",
    [
        lambda A, B: sliced_wasserstein(A, B, random_state=0),
        lambda A, B: mmd(A, B, bandwidth=1.0),
        lambda A, B: c2st_auc(A, B, random_state=0),
        lambda A, B: memorization(A, B, B),
        support_distance,
    ],
)
def test_inputs_are_validated(func):
    rng = np.random.default_rng(0)
    good = rng.normal(size=(20, 2))
    with pytest.raises(ValueError, match="same space"):
        func(good, rng.normal(size=(20, 3)))
    with pytest.raises(ValueError, match="2D array"):
        func(good[:, 0], good)
    bad = good.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        func(bad, good)
