"""PatternIndex: one interface over exact search and pynndescent.

The engine asks one question of an index: the k nearest patterns of each query,
with float64 squared distances.  Exact search uses scikit-learn's trees or brute
force; approximate search uses pynndescent, imported lazily because numba
compiles it on first use.  Whatever the backend, distances are recomputed in
float64 from the returned indices and the neighbours re-sorted by them, so the
engine's certificate sees exact numbers for the neighbours it was given.
"""

import threading

import numpy as np

__all__ = ["PatternIndex", "ALGORITHMS"]

ALGORITHMS = ("auto", "brute", "kd_tree", "ball_tree", "nndescent")

# "auto" keeps exact search where trees or brute force are cheap enough.  A
# fresh process spends about 35 s loading pynndescent's compiled code even with
# a warm numba cache; below 200,000 patterns brute force answers ~25 batches of
# 1000 queries in that time (benchmarks/results/compile.md), more than an
# MM-SOLD calibration asks.
_AUTO_EXACT_MAX_DIM = 10
_AUTO_EXACT_MAX_PATTERNS = 200_000
_NNDESCENT_GRAPH_DEGREE = 30
_NNDESCENT_EPSILON = 0.2


def _resolve_algorithm(algorithm, n_patterns, n_features):
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}.")
    if algorithm != "auto":
        return algorithm
    if n_features <= _AUTO_EXACT_MAX_DIM:
        return "kd_tree"
    if n_patterns <= _AUTO_EXACT_MAX_PATTERNS:
        return "brute"
    return "nndescent"


def _seed_from(random_state):
    """An int seed for pynndescent, so that rebuilds after unpickling agree."""
    if random_state is None:
        return 0
    if isinstance(random_state, (int, np.integer)):
        return int(random_state)
    raise TypeError(
        "PatternIndex needs an int or None random_state so that the index can be "
        f"rebuilt identically after pickling, got {type(random_state).__name__}."
    )


class PatternIndex:
    """k-nearest-pattern search with exact float64 distances.

    Parameters
    ----------
    algorithm : {"auto", "brute", "kd_tree", "ball_tree", "nndescent"}
        ``"auto"`` uses a KD-tree for d <= 10, brute force for N <= 200000 and
        pynndescent beyond.
    random_state : int or None
        Seed of the pynndescent graph; the graph is rebuilt from it after
        unpickling, so it must be an int (None means 0).

    Attributes
    ----------
    algorithm_ : str
        The resolved backend.
    """

    def __init__(self, algorithm="auto", random_state=None):
        self.algorithm = algorithm
        self.random_state = random_state
        self._build_lock = threading.Lock()

    def fit(self, patterns):
        patterns = np.ascontiguousarray(patterns, dtype=np.float64)
        self.patterns_ = patterns
        self.algorithm_ = _resolve_algorithm(self.algorithm, *patterns.shape)
        self._seed = _seed_from(self.random_state)
        self._backend = None
        self._build()
        return self

    @property
    def is_exact(self):
        """Whether the returned neighbours are the true nearest ones."""
        return self.algorithm_ != "nndescent"

    def _build(self):
        if self.algorithm_ == "nndescent":
            from pynndescent import NNDescent  # lazy: numba compiles on import/use

            n = self.patterns_.shape[0]
            ann = NNDescent(
                self.patterns_,
                n_neighbors=min(_NNDESCENT_GRAPH_DEGREE, max(n - 1, 1)),
                random_state=self._seed,
                n_jobs=1,  # pynndescent is deterministic only single-threaded
            )
            ann.prepare()
            self._backend = ann
        elif self.algorithm_ == "brute":
            # Plain BLAS blocks: scikit-learn's brute backend costs tens of ms
            # of dispatch per call, which dominates small per-step queries.
            self._backend = _BruteSearch(self.patterns_)
        else:
            from sklearn.neighbors import NearestNeighbors

            self._backend = NearestNeighbors(algorithm=self.algorithm_).fit(
                self.patterns_
            )

    def kneighbors(self, queries, n_neighbors):
        """The ``n_neighbors`` nearest patterns of each query.

        Returns
        -------
        sq_dist : ndarray of shape (m, k), float64
            Squared Euclidean distances recomputed in float64, ascending.
        ind : ndarray of shape (m, k), int64
        """
        queries = np.asarray(queries, dtype=np.float64)
        n = self.patterns_.shape[0]
        k = int(min(n_neighbors, n))
        if self._backend is None:
            with self._build_lock:  # sampling threads may all ask at once
                if self._backend is None:
                    self._build()
        if self.algorithm_ == "nndescent":
            ind, _ = self._backend.query(queries, k=k, epsilon=_NNDESCENT_EPSILON)
        elif self.algorithm_ == "brute":
            ind = self._backend.kneighbors(queries, k)
        else:
            ind = self._backend.kneighbors(queries, n_neighbors=k, return_distance=False)
        ind = np.asarray(ind, dtype=np.int64)
        diff = queries[:, None, :] - self.patterns_[ind]
        sq_dist = np.einsum("mkd,mkd->mk", diff, diff)
        order = np.argsort(sq_dist, axis=1, kind="stable")
        return (
            np.take_along_axis(sq_dist, order, axis=1),
            np.take_along_axis(ind, order, axis=1),
        )

    def __getstate__(self):
        # The search structure is rebuilt deterministically from the patterns
        # and the seed on first use: a tree or a BLAS block would store the
        # patterns again, and pynndescent's pickles break across its versions.
        state = self.__dict__.copy()
        state["_backend"] = None
        state.pop("_build_lock", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._build_lock = threading.Lock()


class _BruteSearch:
    """Exact k-nearest search by blocked BLAS distance expansion."""

    _BLOCK_ELEMENTS = 2**22

    def __init__(self, patterns):
        self.patterns = patterns
        self.sq_norms = np.einsum("nd,nd->n", patterns, patterns)

    def kneighbors(self, queries, k):
        n = self.patterns.shape[0]
        rows = max(1, self._BLOCK_ELEMENTS // n)
        out = np.empty((queries.shape[0], k), dtype=np.int64)
        for start in range(0, queries.shape[0], rows):
            q = queries[start:start + rows]
            d2 = self.sq_norms[None, :] - 2.0 * q @ self.patterns.T
            if k < n:
                out[start:start + rows] = np.argpartition(d2, k - 1, axis=1)[:, :k]
            else:
                out[start:start + rows] = np.arange(n)
        return out
