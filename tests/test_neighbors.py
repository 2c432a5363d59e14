"""PatternIndex: exact backends, k-means cells, the pynndescent backend, and pickling."""

import pickle

import numpy as np
import pytest

from sklearn_diffsample import PatternPosterior
from sklearn_diffsample._neighbors import PatternIndex, _BruteSearch, _resolve_algorithm

from ._reference import brute_posterior


def _brute_knn(queries, patterns, k):
    d2 = np.sum((queries[:, None, :] - patterns[None]) ** 2, axis=2)
    ind = np.argsort(d2, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d2, ind, axis=1), ind


@pytest.mark.parametrize("algorithm", ["brute", "kd_tree", "ball_tree"])
def test_exact_backends_match_brute_force(algorithm):
    rng = np.random.default_rng(0)
    patterns = rng.normal(size=(500, 4))
    queries = rng.normal(size=(40, 4)) * 2
    sq_dist, ind = PatternIndex(algorithm).fit(patterns).kneighbors(queries, 7)
    ref_d2, ref_ind = _brute_knn(queries, patterns, 7)
    np.testing.assert_array_equal(ind, ref_ind)
    np.testing.assert_allclose(sq_dist, ref_d2, rtol=1e-13)
    assert sq_dist.dtype == np.float64


def test_brute_search_in_many_blocks_matches_brute_force(monkeypatch):
    # Blocks of 3 query rows (the last one ragged) instead of one block.
    monkeypatch.setattr(_BruteSearch, "_BLOCK_ELEMENTS", 1000)
    monkeypatch.setattr(_BruteSearch, "_MIN_ROWS", 3)
    rng = np.random.default_rng(1)
    patterns = rng.normal(size=(500, 4)) + 5.0  # off-centre: |x|^2 dominates
    queries = rng.normal(size=(40, 4)) + 5.0
    sq_dist, ind = PatternIndex("brute").fit(patterns).kneighbors(queries, 7)
    ref_d2, ref_ind = _brute_knn(queries, patterns, 7)
    np.testing.assert_array_equal(ind, ref_ind)
    np.testing.assert_allclose(sq_dist, ref_d2, rtol=1e-12)


def test_auto_picks_exact_search_where_it_is_cheap():
    assert _resolve_algorithm("auto", 10**6, 8) == "kd_tree"
    assert _resolve_algorithm("auto", 200_000, 64) == "brute"
    # Beyond, the k-means cells: approximate, and nothing to compile.
    assert _resolve_algorithm("auto", 10**6, 64) == "cells"
    with pytest.raises(ValueError, match="algorithm must be one of"):
        _resolve_algorithm("annoy", 10, 2)


def test_cells_probing_every_cell_are_exact():
    # 250 patterns make 16 cells, fewer than a query probes: the search is
    # then exhaustive and must give the brute-force answer.
    rng = np.random.default_rng(5)
    patterns = rng.normal(size=(250, 5))
    queries = rng.normal(size=(30, 5)) * 2
    index = PatternIndex("cells", random_state=1).fit(patterns)
    sq_dist, ind = index.kneighbors(queries, 9)
    ref_d2, ref_ind = _brute_knn(queries, patterns, 9)
    np.testing.assert_array_equal(ind, ref_ind)
    np.testing.assert_allclose(sq_dist, ref_d2, rtol=1e-12)
    assert not index.is_exact


def test_cells_recall_and_rebuild_after_pickling():
    # 20,000 iid Gaussian points in 16-d (no structure for the cells to use),
    # 141 cells of which each query probes 64: recall of the 50 nearest
    # against brute force, measured 0.993 (0.77 with 16 probes).
    rng = np.random.default_rng(6)
    patterns = rng.normal(size=(20_000, 16))
    queries = patterns[rng.integers(0, 20_000, 300)] + 0.1 * rng.normal(size=(300, 16))
    index = PatternIndex("cells", random_state=2).fit(patterns)
    sq_dist, ind = index.kneighbors(queries, 50)
    direct = np.sum((queries[:, None, :] - patterns[ind]) ** 2, axis=2)
    np.testing.assert_allclose(sq_dist, direct, rtol=1e-12)
    assert np.all(np.diff(sq_dist, axis=1) >= 0)
    d2 = (np.sum(queries**2, axis=1)[:, None] - 2.0 * queries @ patterns.T
          + np.sum(patterns**2, axis=1)[None, :])
    true_ind = np.argsort(d2, axis=1)[:, :50]
    recall = np.mean([len(set(a) & set(b)) / 50 for a, b in zip(ind, true_ind)])
    assert recall > 0.95
    restored = pickle.loads(pickle.dumps(index))
    assert restored._backend is None
    np.testing.assert_array_equal(restored.kneighbors(queries, 50)[1], ind)


@pytest.mark.ann
def test_nndescent_returns_exact_float64_distances(ann_index, ann_data):
    rng = np.random.default_rng(1)
    queries = ann_data[rng.integers(0, len(ann_data), 200)] + 0.3 * rng.normal(size=(200, 12))
    sq_dist, ind = ann_index.kneighbors(queries, 10)
    direct = np.sum((queries[:, None, :] - ann_data[ind]) ** 2, axis=2)
    np.testing.assert_allclose(sq_dist, direct, rtol=1e-14)
    assert np.all(np.diff(sq_dist, axis=1) >= 0)
    _, true_ind = _brute_knn(queries, ann_data, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ind, true_ind)])
    assert recall > 0.9
    assert not ann_index.is_exact


@pytest.mark.ann
def test_nndescent_index_is_dropped_from_pickles_and_rebuilt_identically(ann_index, ann_data):
    queries = np.random.default_rng(2).normal(size=(50, 12))
    before = ann_index.kneighbors(queries, 5)
    blob = pickle.dumps(ann_index)
    # The pynndescent graph is many times larger than these 3000 x 12 patterns.
    assert len(blob) < 2 * ann_data.nbytes
    restored = pickle.loads(blob)
    assert restored._backend is None
    after = restored.kneighbors(queries, 5)
    np.testing.assert_array_equal(after[1], before[1])
    np.testing.assert_array_equal(after[0], before[0])


@pytest.mark.ann
def test_posterior_over_nndescent_pickles_and_answers_identically(ann_data):
    post = PatternPosterior(ann_data, algorithm="nndescent", random_state=3)
    queries = ann_data[:40] + 0.05
    s2 = 0.05
    first = post.query(queries, s2, mean=True, n_neighbors=20)
    restored = pickle.loads(pickle.dumps(post))
    again = restored.query(queries, s2, mean=True, n_neighbors=20)
    np.testing.assert_array_equal(again.log_norm, first.log_norm)
    np.testing.assert_array_equal(again.mean, first.mean)
    # With true neighbours the certified answer is within tolerance of exact.
    log_norm, _, _ = brute_posterior(queries, ann_data, s2)
    assert np.max(np.abs(first.log_norm - log_norm)) < 1e-8


def test_index_needs_an_int_seed():
    with pytest.raises(TypeError, match="int or None random_state"):
        PatternIndex("brute", random_state=np.random.RandomState(0)).fit(np.zeros((3, 2)))
