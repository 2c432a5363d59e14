"""PatternIndex: one interface over exact and approximate neighbour search.

The engine asks one question of an index: the k nearest patterns of each query,
with float64 squared distances.  Exact search uses scikit-learn's trees or brute
force.  Approximate search uses k-means cells (numpy only: each query searches
the cells of its nearest centres) or pynndescent, imported lazily because numba
compiles it on first use, tens of seconds in every fresh process even with a
warm cache (``benchmarks/results/compile.md``).  Whatever the backend, distances
are recomputed in float64 from the returned indices and the neighbours re-sorted
by them, so the engine's certificate sees exact numbers for the neighbours it
was given.
"""

import threading

import numpy as np

from ._clustered import kmeans_labels

__all__ = ["PatternIndex", "ALGORITHMS"]

ALGORITHMS = ("auto", "brute", "kd_tree", "ball_tree", "cells", "nndescent")

# "auto" keeps exact search where trees or brute force are cheap enough, and
# beyond uses the k-means cells, which compile nothing: a fresh process spends
# 33-36 s loading pynndescent's compiled code even with a warm numba cache
# (benchmarks/results/compile.md).
_AUTO_EXACT_MAX_DIM = 10
_AUTO_EXACT_MAX_PATTERNS = 200_000
# k-means cells: about sqrt(N) of them; a query searches its _CELL_PROBES
# nearest centres.  On 300,000 iid Gaussian points in 16-d (no structure to
# exploit: the hard case) 64 probes return 97% of the 50 nearest neighbours in
# a fifth of brute force's time, 16 probes 73% (benchmarks/results/compile.md).
_CELL_PROBES = 64
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
    return "cells"


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
    algorithm : {"auto", "brute", "kd_tree", "ball_tree", "cells", "nndescent"}
        ``"cells"``: about sqrt(N) k-means cells, each query searching the 64
        cells of its nearest centres (approximate, numpy only).
        ``"nndescent"``: pynndescent's graph (approximate; numba compiles it
        in every fresh process).  ``"auto"`` uses a KD-tree for d <= 10, brute
        force for N <= 200000 and the cells beyond.
    random_state : int or None
        Seed of the k-means cells or the pynndescent graph; either is rebuilt
        from it after unpickling, so it must be an int (None means 0).

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
        return self.algorithm_ not in ("cells", "nndescent")

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
        elif self.algorithm_ == "cells":
            self._backend = _CellSearch(self.patterns_, self._seed)
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
        elif self.algorithm_ in ("brute", "cells"):
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

    # 8 MB blocks of distances stay in cache from the product through the
    # partial sort: 32 MB blocks took 1.2-1.3x longer at N = 1e5 and 1.4x at
    # 1e4 (500 queries, d = 16, measured).  At least 16 query rows keep the
    # product matrix-shaped (2 rows a block were 1.9x slower at N = 1e5).
    _BLOCK_ELEMENTS = 2**20
    _MIN_ROWS = 16

    def __init__(self, patterns):
        self.patterns = patterns
        self.sq_norms = np.einsum("nd,nd->n", patterns, patterns)

    def kneighbors(self, queries, k):
        n = self.patterns.shape[0]
        rows = max(self._MIN_ROWS, self._BLOCK_ELEMENTS // n)
        out = np.empty((queries.shape[0], k), dtype=np.int64)
        for start in range(0, queries.shape[0], rows):
            q = queries[start:start + rows]
            # |x|^2 - 2 q.x ranks each row (|q|^2 is constant along it).  The
            # factor -2, exact in floating point, scales the queries instead
            # of a (rows, N) temporary: one pass fewer over the distances.
            d2 = (-2.0 * q) @ self.patterns.T
            d2 += self.sq_norms
            if k < n:
                out[start:start + rows] = np.argpartition(d2, k - 1, axis=1)[:, :k]
            else:
                out[start:start + rows] = np.arange(n)
        return out


class _CellSearch:
    """Approximate k-nearest search over k-means cells (an inverted file).

    The patterns are split into about sqrt(N) seeded k-means cells; a query
    computes its distances to every centre and searches the members of the
    ``_CELL_PROBES`` cells of nearest centres (one BLAS product per cell for
    all the queries that probe it): about 65 sqrt(N) distances instead of N.
    Queries whose probed cells hold fewer than k patterns are searched by
    brute force.
    """

    def __init__(self, patterns, seed):
        n = patterns.shape[0]
        labels = kmeans_labels(patterns, int(np.clip(round(np.sqrt(n)), 1, n)), seed)
        self.order = np.argsort(labels, kind="stable")
        counts = np.bincount(labels)
        counts = counts[counts > 0]  # k-means may leave a cell empty
        self.starts = np.concatenate([[0], np.cumsum(counts)])
        # Members are gathered per query batch rather than stored in cell
        # order: a second copy of N x d patterns would double the index.
        self.sq_norms = np.einsum("nd,nd->n", patterns, patterns)
        self.centres = (np.add.reduceat(patterns[self.order], self.starts[:-1], axis=0)
                        / counts[:, None])
        self.patterns = patterns

    def kneighbors(self, queries, k):
        m, n_cells = queries.shape[0], self.centres.shape[0]
        probes = min(_CELL_PROBES, n_cells)
        d2c = (np.einsum("cd,cd->c", self.centres, self.centres)[None, :]
               - 2.0 * queries @ self.centres.T)
        probed = np.argpartition(d2c, probes - 1, axis=1)[:, :probes]
        best_d = np.full((m, k), np.inf)
        best_i = np.full((m, k), -1, dtype=np.int64)
        rows = np.repeat(np.arange(m), probes)
        by_cell = np.argsort(probed.ravel(), kind="stable")
        cell_of = probed.ravel()[by_cell]
        bounds = np.searchsorted(cell_of, np.arange(n_cells + 1))
        for cell in np.unique(cell_of):
            q_rows = rows[by_cell[bounds[cell]:bounds[cell + 1]]]
            members = self.order[self.starts[cell]:self.starts[cell + 1]]
            # |x|^2 - 2 q.x: the distance up to |q|^2, which a query's ranking ignores.
            d2 = self.sq_norms[members] - 2.0 * queries[q_rows] @ self.patterns[members].T
            merged_d = np.hstack([best_d[q_rows], d2])
            merged_i = np.hstack([best_i[q_rows], np.broadcast_to(members, d2.shape)])
            keep = np.argpartition(merged_d, k - 1, axis=1)[:, :k]
            best_d[q_rows] = np.take_along_axis(merged_d, keep, axis=1)
            best_i[q_rows] = np.take_along_axis(merged_i, keep, axis=1)
        short = np.any(best_i < 0, axis=1)
        if np.any(short):
            best_i[short] = _BruteSearch(self.patterns).kneighbors(queries[short], k)
        return best_i
