"""The pattern posterior: the one engine that sums over stored patterns.

For queries q and a variance s², pattern i gets the logit

    l_i(q) = -|q - x_i|² / (2 s²) + log w_i

and the engine returns, per query, logZ = logsumexp_i l_i, the posterior mean
sum_i p_i x_i and the posterior spread sum_i p_i |x_i - mean|², p = softmax(l).
Every estimator in the package is a dynamics on top of these three numbers.

Three ways to get them:

* exact: pattern blocks are streamed with a running (max, sum-exp, moments)
  merge, so no (queries x patterns) matrix exists; the dominant pattern's
  logit is recomputed directly, which keeps logZ accurate far from the data;
* certified top-k: the k nearest patterns plus a bound on the neglected mass;
  queries whose bound exceeds ``tol`` are recomputed exactly;
* random remainder: k nearest plus L uniformly drawn patterns with importance
  weight (N - k) / L, shared by several perturbed copies of one query.

Samplers that need only the mean, to sampling accuracy, can use the clustered
approximation of :mod:`._clustered` over the same patterns.
"""

import copy
import math
import threading
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp
from sklearn import get_config

from ._clustered import (
    FLOAT32_MIN_EXPONENT as _FLOAT32_MIN_EXPONENT,
    FLOAT64_MIN_EXPONENT as _FLOAT64_MIN_EXPONENT,
)
from ._neighbors import PatternIndex

__all__ = ["PatternPosterior", "PosteriorStats", "complement_index", "posterior_per_row"]

# Each streamed block holds a few (queries x patterns) float64 temporaries;
# a sixteenth of scikit-learn's working memory each keeps the peak near it.
_TEMPORARIES_SHARE = 16
# A kernel variance this large stands for flat weights (1/s2 = 0): see draw.
_FLAT_VARIANCE = 1e300
# Blocks of ~8 MB stay in cache across the elementwise passes over the logits.
_MAX_QUERY_ROWS = 256
_CACHE_BLOCK_ELEMENTS = 2**20
# sampling_mean holds all patterns in one block up to this many; beyond, the
# float64 engine streams them.
_SINGLE_MAX_PATTERNS = 2**16
# Few patterns: more query rows per block, so that numpy's per-call overhead
# is paid on ~1 MB blocks, not on 256 x N (measured: 1.3-1.6x on 10-50
# patterns, no change from 99 on).
_SMALL_BLOCK_ELEMENTS = 2**17
# Up to this many patterns sampling_mean lays its blocks out pattern-major,
# (patterns x queries): each query's maximum and sums then run down columns,
# one vectorised pass per pattern, where query-major rows are short.
# Measured with one BLAS thread on 1024 queries: 1.2-1.75x faster at 50 to
# 400 patterns in 2 to 30 dimensions, level at 800, 0.9x from 1600 on.
_PATTERN_MAJOR_MAX_PATTERNS = 512
# Sampling-grade means form their logits in float32 while every one of a
# call's is below 2^14 in magnitude, where float32 rounds them by at most
# 2^-10: weights off by 0.1% at worst, and only between patterns that compete
# for a query.
_FLOAT32_LOGIT_BOUND = 2.0**14
# Weights that are multiplied by one another (offset_log_density's two factors,
# halving_log_density's squares) are floored at e^-354, so that every product
# stays a normal float64; offset_log_density sums again exactly a sum below
# e^-300 of its shifts (the floors then add < N e^-54 of it).
_PRODUCT_MIN_EXPONENT = -354.0
_PRODUCT_MIN_WEIGHT = np.exp(_PRODUCT_MIN_EXPONENT)
# ... and takes the patterns in blocks whose (patterns, J) factor stays within
# 32 MB (J = 33 for MM-SOLD: 127,000 patterns a block).  Summing every offset
# query on its own beyond that made MM-SOLD's fit at N = 3e5, d = 16 cost
# 193 s (measured); blocks keep one exponential per pattern and query.
_OFFSET_MAX_FACTOR = 2**22
_OFFSET_POOR_LOG_SUM = -300.0


@dataclass
class PosteriorStats:
    """Per-query answers of the engine.

    Attributes
    ----------
    log_norm : ndarray of shape (m,)
        logZ(q) = logsumexp_i l_i(q).
    mean : ndarray of shape (m, d) or None
        Posterior mean of the patterns, in data coordinates.
    spread : ndarray of shape (m,) or None
        Posterior spread ``sum_i p_i |x_i - mean|^2``.
    certificate : ndarray of shape (m,) or None
        Top-k mode only: log(1 + delta), the bound on ``|logZ - logZ_k|`` before
        fallback; exactly computed rows carry 0.
    """

    log_norm: np.ndarray
    mean: np.ndarray = None
    spread: np.ndarray = None
    certificate: np.ndarray = None


def _new_stats(n_queries, n_features, want_mean, want_spread, certificate=False):
    return PosteriorStats(np.empty(n_queries),
                          np.empty((n_queries, n_features)) if want_mean else None,
                          np.empty(n_queries) if want_spread else None,
                          np.zeros(n_queries) if certificate else None)


def _fill_rows(out, rows, part):
    """Copy ``part``'s answers into rows ``rows`` of ``out``."""
    out.log_norm[rows] = part.log_norm
    if out.mean is not None:
        out.mean[rows] = part.mean
    if out.spread is not None:
        out.spread[rows] = part.spread


def _as_variance(s2, n_queries):
    s2 = np.asarray(s2, dtype=np.float64)
    if s2.ndim == 0:
        s2 = np.full(n_queries, float(s2))
    if s2.shape != (n_queries,):
        raise ValueError(
            f"s2 must be a scalar or have shape ({n_queries},), got {s2.shape}."
        )
    if not np.all(np.isfinite(s2)) or np.any(s2 <= 0):
        raise ValueError("The kernel variance s2 must be finite and > 0.")
    return s2


def _block_shape(n_queries, n_patterns):
    budget = int(get_config()["working_memory"] * 2**20 // (8 * _TEMPORARIES_SHARE))
    rows = max(_MAX_QUERY_ROWS, _SMALL_BLOCK_ELEMENTS // max(n_patterns, 1))
    rows = max(min(n_queries, rows, budget), 1)
    cols = int(min(n_patterns, _CACHE_BLOCK_ELEMENTS // rows, max(1, budget // rows)))
    return max(rows, 1), cols


class _StreamState:
    """Running log-sum-exp merge over pattern blocks for a batch of queries.

    ``total`` is sum_i e^{l_i - top} x_i; ``second`` is sum_i e^{l_i - top}
    |x_i - anchor|^2 about the current argmax pattern ``anchor``, which keeps the
    spread free of cancellation when the posterior is concentrated.
    """

    def __init__(self, n_queries, n_features, want_mean, want_spread):
        self.top = np.full(n_queries, -np.inf)
        self.argmax = np.zeros(n_queries, dtype=np.int64)
        self.mass = np.zeros(n_queries)
        self.want_first = want_mean or want_spread
        self.want_spread = want_spread
        if self.want_first:
            self.total = np.zeros((n_queries, n_features))
        if want_spread:
            self.anchor = np.zeros((n_queries, n_features))
            self.second = np.zeros(n_queries)

    def merge(self, top, argmax, mass, total=None, anchor=None, second=None):
        new_top = np.maximum(self.top, top)
        keep = np.exp(self.top - new_top)
        take = np.exp(top - new_top)
        if self.want_spread:
            moved = top > self.top
            # Re-express the smaller side's second moment about the winning anchor:
            # sum e |x - b|^2 = sum e |x - a|^2 + 2 (a - b).(S1 - S0 a) + S0 |a - b|^2.
            old = _shift_second(self.second, self.total, self.mass, self.anchor, anchor)
            blk = _shift_second(second, total, mass, anchor, self.anchor)
            self.second = np.where(moved, old * keep + second * take,
                                   self.second * keep + blk * take)
            self.anchor = np.where(moved[:, None], anchor, self.anchor)
        if self.want_first:
            self.total = self.total * keep[:, None] + total * take[:, None]
        self.argmax = np.where(top > self.top, argmax, self.argmax)
        self.mass = self.mass * keep + mass * take
        self.top = new_top


def _shift_second(second, total, mass, old_anchor, new_anchor):
    delta = old_anchor - new_anchor
    first = total - mass[:, None] * old_anchor
    return (second + 2.0 * np.einsum("md,md->m", delta, first)
            + mass * np.einsum("md,md->m", delta, delta))


def _anchor_sq_dist(anchor, arg, patterns, half_sq_norms):
    """|a_m - x_i|^2 where anchor a_m is pattern ``arg[m]``, clamped at 0."""
    d2 = (np.einsum("md,md->m", anchor, anchor)[:, None]
          - 2.0 * anchor @ patterns.T + 2.0 * half_sq_norms[None, :])
    np.maximum(d2, 0.0, out=d2)
    # The expansion leaves rounding residue on the anchor's own entry.
    d2[np.arange(len(arg)), arg] = 0.0
    return d2


# ------------------------------------------------------ random remainder
# A method of PatternPosterior (bound in the class below), kept here so that the
# class reads as the coordinator of its kernels.
def query_remainder(self, queries, s2, neighbors, n_remainder, rng, *, spread=False):
    """Nearest-plus-uniform-remainder estimate for perturbed query copies.

    Parameters
    ----------
    queries : ndarray of shape (m, r, d)
        r perturbed copies of each of m particles.
    s2 : float
        Kernel variance.
    neighbors : ndarray of shape (m, K)
        Indices of the K nearest patterns of each unperturbed particle
        (from :meth:`kneighbors`); shared by its r copies.
    n_remainder : int
        L: patterns drawn uniformly without replacement from the other
        N - K, each with log-weight log((N - K) / L) (unbiased for Z).
    rng : numpy.random.Generator
    spread : bool, default=False

    Returns
    -------
    PosteriorStats
        ``log_norm`` of shape (m, r), ``mean`` of shape (m, r, d),
        ``spread`` of shape (m, r) or None.
    """
    queries = np.asarray(queries, dtype=np.float64)
    neighbors = np.asarray(neighbors, dtype=np.int64)
    n_near = neighbors.shape[1]
    n_rest = min(int(n_remainder), self.n_patterns - n_near)
    rest = _uniform_remainder(rng, neighbors, n_rest, self.n_patterns)
    candidates = np.concatenate([neighbors, rest], axis=1)
    log_w = self.log_weights(candidates)
    if n_rest:
        log_w[:, n_near:] += np.log((self.n_patterns - n_near) / n_rest)
    vecs = self._x[candidates]
    # Logits about each particle's nearest pattern: accurate and local.
    anchor = vecs[:, :1, :]
    rel_q = queries - self.offset - anchor
    rel_x = vecs - anchor
    m, c, d = rel_x.shape
    inv_s2 = 1.0 / float(s2)
    # One batched product gives the logits but for their term -|q|^2 / (2 s2),
    # which no softmax sees: rows [q, 1] against columns
    # [x / s2; log w - |x|^2 / (2 s2)]; log Z gets the term back below.
    # The distances assembled in three passes and clamped cost 1.45x (measured).
    cols = np.empty((m, d + 1, c))
    np.multiply(rel_x.transpose(0, 2, 1), inv_s2, out=cols[:, :d])
    cols[:, d] = log_w - 0.5 * inv_s2 * np.einsum("mcd,mcd->mc", rel_x, rel_x)
    rows = np.ones(rel_q.shape[:2] + (d + 1,))
    rows[..., :d] = rel_q
    out = _softmax_moments(rows @ cols, vecs, True, spread)
    out.log_norm -= 0.5 * inv_s2 * np.einsum("mrd,mrd->mr", rel_q, rel_q)
    out.mean += self.offset
    return out


def _uniform_remainder(rng, excluded, n_rest, n_patterns):
    """n_rest distinct indices per row, uniform among those not in its row of ``excluded``."""
    m, n_near = excluded.shape
    n_free = n_patterns - n_near
    if n_rest == 0:
        return np.empty((m, 0), dtype=np.int64)
    if n_rest == n_free:
        pos = np.broadcast_to(np.arange(n_free), (m, n_free)).copy()
    else:
        # With-replacement draws conditioned on being distinct are uniform
        # subsets; the few rows with a repeat are redrawn without replacement.
        pos = np.sort(rng.integers(0, n_free, size=(m, n_rest)), axis=1)
        for i in np.flatnonzero(np.any(pos[:, 1:] == pos[:, :-1], axis=1)):
            pos[i] = np.sort(rng.choice(n_free, n_rest, replace=False))
    return complement_index(excluded, pos)


class PatternPosterior:
    """Gaussian-kernel posterior over stored patterns.

    Parameters
    ----------
    patterns : array-like of shape (N, d)
        Stored patterns; kept in float64, centred internally.
    log_weights : array-like of shape (N,), default=None
        Pattern log-weights log w_i (0 when None).
    groups : array-like of shape (N,), default=None
        Group label of each pattern; :meth:`group` restricts queries to one.
    algorithm : str or None, default=None
        Neighbour index for top-k and random-remainder queries (see
        :class:`PatternIndex`); None builds no index (exact mode only).
    random_state : int or None, default=None
        Seed of an approximate index.
    """

    def __init__(self, patterns, *, log_weights=None, groups=None, algorithm=None,
                 random_state=None):
        patterns = np.asarray(patterns, dtype=np.float64)
        if patterns.ndim != 2 or patterns.shape[0] == 0:
            raise ValueError("patterns must be a non-empty 2-D array.")
        self.n_patterns, self.n_features = patterns.shape
        # Centring keeps the BLAS distance expansion accurate for offset data.
        self.offset = patterns.mean(axis=0)
        self._x = np.ascontiguousarray(patterns - self.offset)
        self._half_sq_norms = 0.5 * np.einsum("nd,nd->n", self._x, self._x)
        # sampling_mean's logit rows [x; -|x|^2/2; log w] (float64 and float32)
        # and float32 [x, 1], built on first use.
        self._single = None
        self._radius = float(np.sqrt(2.0 * self._half_sq_norms.max()))
        if log_weights is None:
            self._log_w = None
            self._max_log_w = 0.0
            self.log_total_weight = float(np.log(self.n_patterns))
        else:
            log_w = np.asarray(log_weights, dtype=np.float64).reshape(-1)
            if log_w.shape != (self.n_patterns,) or np.any(np.isnan(log_w)):
                raise ValueError("log_weights must have one finite value per pattern.")
            self._log_w = log_w
            self._max_log_w = float(log_w.max())
            self.log_total_weight = float(np.logaddexp.reduce(log_w))
        self.groups = None if groups is None else np.asarray(groups)
        self.algorithm = algorithm
        self.random_state = random_state
        self._children = {}
        self._group_lock = threading.Lock()
        self.index = None
        if algorithm is not None:
            self.index = PatternIndex(algorithm, random_state).fit(self._x)

    def __getstate__(self):
        # Pickles hold the patterns once: the index shares them, and the group
        # children are subsets of them, rebuilt when first asked for (a process
        # worker that samples one class builds that class's index only).
        state = self.__dict__.copy()
        state["_children"] = {}
        state["_single"] = None
        del state["_group_lock"]
        if self.index is not None:
            index = copy.copy(self.index)
            index.patterns_ = None
            state["index"] = index
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._group_lock = threading.Lock()
        if self.index is not None:
            self.index.patterns_ = self._x

    @property
    def patterns(self):
        """All stored patterns, in data coordinates (a new array)."""
        return self._x + self.offset

    def take(self, ind):
        """The patterns ``ind`` in data coordinates, without copying the rest."""
        return self._x[ind] + self.offset

    def log_weights(self, ind=slice(None)):
        """Log-weights of the patterns ``ind`` (an index array or a slice)."""
        if self._log_w is not None:
            return self._log_w[ind]
        if isinstance(ind, slice):
            return np.zeros(len(range(*ind.indices(self.n_patterns))))
        return np.zeros(np.shape(ind))

    # ------------------------------------------------------------------ groups
    def group(self, label):
        """The posterior restricted to the patterns of group ``label`` (cached)."""
        if self.groups is None:
            raise ValueError("This posterior was built without groups.")
        with self._group_lock:  # sampling threads may ask for a group at once
            if label not in self._children:
                mask = self.groups == label
                if not np.any(mask):
                    raise ValueError(f"No pattern has group label {label!r}.")
                self._children[label] = PatternPosterior(
                    self.take(mask),
                    log_weights=None if self._log_w is None else self._log_w[mask],
                    algorithm=self.algorithm,
                    random_state=self.random_state,
                )
        return self._children[label]

    def _sampling_arrays(self):
        if self._single is None:
            self._single = _sampling_arrays(self)
        return self._single

    def sampling_mean(self, queries, s2):
        """Posterior means to the accuracy a sampler needs, summed in float32.

        Every pattern is summed, as in ``query(queries, s2, mean=True)``, but
        the weights and their sums are float32, and so are the logits where
        a bound on their size keeps float32's rounding below 1e-3 (else they
        stay float64 until their maximum is taken off): the means agree to
        about 1e-5 of the pattern spread, far less than one Monte Carlo step
        moves a particle (docs/design.rst has the timings).  Beyond 65,536
        patterns it is ``query``.

        Parameters
        ----------
        queries : array-like of shape (m, d)
        s2 : float
            Kernel variance (one for all queries).

        Returns
        -------
        mean : ndarray of shape (m, d), float64
        """
        if self.n_patterns > _SINGLE_MAX_PATTERNS:
            return self.query(queries, s2, mean=True).mean
        centred = np.asarray(queries, dtype=np.float64) - self.offset
        inv_s2 = 1.0 / float(s2)
        logit_rows, totals, logit_rows32 = self._sampling_arrays()
        if self._float32_logits_hold(centred, inv_s2):
            logit_rows = logit_rows32
        kernel = (_sampling_means_by_pattern if self.n_patterns <= _PATTERN_MAJOR_MAX_PATTERNS
                  else _sampling_means)
        return kernel(logit_rows, totals, centred, inv_s2) + self.offset

    def _float32_logits_hold(self, centred, inv_s2):
        """Whether :data:`_FLOAT32_LOGIT_BOUND` holds for every logit of a call.

        The bound is |L| <= (|q| |x| + |x|^2 / 2) / s2 + |log w| about the
        offset.  Over few patterns the products cost as much as the passes
        over their output, over many the products dominate: float32 halves
        both.  At the bridge's smallest variances, where |L| is largest, one
        pattern carries a query, and the calls beyond the bound stay float64.
        """
        q_norm = math.sqrt(float(np.einsum("md,md->m", centred, centred).max(initial=0.0)))
        log_w_spread = 0.0 if self._log_w is None else self._max_log_w - float(self._log_w.min())
        largest = inv_s2 * self._radius * (q_norm + 0.5 * self._radius) + log_w_spread
        return largest < _FLOAT32_LOGIT_BOUND

    def sampling_log_density(self, queries, s2):
        """``log_density`` with float32 weights, as ``sampling_mean`` sums them.

        The largest logit of each query is recomputed in float64 from its
        pattern, so only the sum of the shifted weights carries float32
        rounding: about 1e-7 relative, 1e-7 nats.  As fast as
        ``log_density`` up to about a thousand patterns and 1.3-1.6x faster
        at 10,000 (measured); beyond 65,536 patterns it is ``log_density``.
        ``queries`` (m, d) and one kernel variance ``s2`` as in
        :meth:`sampling_mean`; returns the (m,) float64 log-densities.
        """
        queries = np.asarray(queries, dtype=np.float64)
        if self.n_patterns > _SINGLE_MAX_PATTERNS:
            return self.log_density(queries, s2)
        s2 = float(s2)
        logit_rows, totals, _ = self._sampling_arrays()
        log_norm = _sampling_log_norms(logit_rows, totals, queries - self.offset, 1.0 / s2)
        return (log_norm + self._max_log_w - self.log_total_weight
                - 0.5 * self.n_features * np.log(2.0 * np.pi * s2))

    def offset_log_density(self, queries, s2, offsets):
        """``log_density`` at every query moved by every offset, in one pass.

        With ``q_j = q + e_j``, the logits split as ``a_i(q) + e_j . x_i / s2
        - |q_j|^2 / (2 s2)``, so the J sums over the patterns of one query are
        one matrix product of exp(a(q)) (N values) with the fixed (N, J)
        factor exp(e_j . x_i / s2): N exponentials per query instead of J N
        (see :ref:`the smoothed energy <design-smoothed-energy>`).  Both
        factors are shifted by their maxima; a sum that lands below e^-300 of
        the shifts, where factors floored at e^-354 could matter, is summed
        again exactly.  Float64 throughout, so it agrees with ``log_density``
        to rounding.  The patterns are taken in blocks whose (patterns, J)
        factor holds at most 2^22 values (32 MB), the blocks' sums merged.

        Parameters
        ----------
        queries : array-like of shape (m, d)
        s2 : float
            Kernel variance (one for all queries).
        offsets : array-like of shape (J, d)

        Returns
        -------
        log_density : ndarray of shape (m, J), float64
            ``log_density(queries + offsets[j], s2)`` in column j.
        """
        queries = np.asarray(queries, dtype=np.float64)
        offsets = np.asarray(offsets, dtype=np.float64)
        s2 = float(s2)
        # Cached only where sampling_mean caches them: beyond, the float64
        # rows are as large as the patterns.
        logit_rows = (self._sampling_arrays()[0] if self.n_patterns <= _SINGLE_MAX_PATTERNS
                      else _logit_rows(self))
        centred = queries - self.offset
        block = max(_OFFSET_MAX_FACTOR // max(offsets.shape[0], 1), 1)
        # logaddexp(-inf, x) is x bit for bit: one block gives its own sums.
        log_norm = np.full((queries.shape[0], offsets.shape[0]), -np.inf)
        poor = np.zeros(log_norm.shape, dtype=bool)
        for start in range(0, self.n_patterns, block):
            part, part_poor = _offset_log_norms(logit_rows[:, start:start + block], centred,
                                                offsets, 1.0 / s2)
            np.logaddexp(log_norm, part, out=log_norm)
            poor |= part_poor
        rows, cols = np.nonzero(poor)
        if rows.size:
            log_norm[rows, cols] = (self.query(queries[rows] + offsets[cols], s2).log_norm
                                    - self._max_log_w)
        return (log_norm + self._max_log_w - self.log_total_weight
                - 0.5 * self.n_features * np.log(2.0 * np.pi * s2))

    def halving_log_density(self, queries, s2, n_variances):
        """``log_density`` at the kernel variances s2, s2 / 2, ..., s2 / 2^(n-1).

        Halving the variance doubles every shifted logit, so each weight is
        the square of the one before: one exponential per pattern and query
        serves the whole ladder, and each further variance costs a multiply
        and a sum (a floor at e^-354 keeps the squares normal floats; next to
        the largest weight, 1, the floored ones add less than N e^-354).
        Unweighted patterns only (log-weights do not scale with 1 / s2).
        Float64 throughout: it agrees with ``log_density`` to rounding.

        Parameters
        ----------
        queries : array-like of shape (m, d)
        s2 : float
            The largest kernel variance.
        n_variances : int
            Length of the ladder.

        Returns
        -------
        log_density : ndarray of shape (m, n_variances), float64
            ``log_density(queries, s2 / 2**k)`` in column k.
        """
        if self._log_w is not None:
            raise ValueError("halving_log_density needs unweighted patterns.")
        s2, n_variances = float(s2), int(n_variances)
        if not (np.isfinite(s2) and s2 > 0) or n_variances < 1:
            raise ValueError(f"halving_log_density needs a finite s2 > 0 and at least one "
                             f"variance, got s2={s2!r}, n_variances={n_variances!r}.")
        queries = np.asarray(queries, dtype=np.float64)
        # Not cached: the float64 rows are as large as the patterns.
        logit_rows = _logit_rows(self) if self._single is None else self._single[0]
        log_norm = _halving_log_norms(logit_rows, queries - self.offset, 1.0 / s2, n_variances)
        doubling = 2.0 ** np.arange(n_variances)
        return (log_norm - self.log_total_weight
                - 0.5 * self.n_features * np.log(2.0 * np.pi * s2 / doubling))

    def log_density(self, queries, s2, **kwargs):
        """Normalised log-density of the mixture sum_i w_i N(x_i, s2 I) / sum_i w_i."""
        queries = np.asarray(queries, dtype=np.float64)
        s2 = _as_variance(s2, queries.shape[0])
        log_norm = self.query(queries, s2, **kwargs).log_norm
        return (log_norm - self.log_total_weight
                - 0.5 * self.n_features * np.log(2.0 * np.pi * s2))

    # ------------------------------------------------------------------- exact
    def query(self, queries, s2, *, mean=False, spread=False, n_neighbors=None,
              tol=1e-8):
        """logZ (and optionally mean and spread) at each query.

        Parameters
        ----------
        queries : array-like of shape (m, d)
        s2 : float or array-like of shape (m,)
            Kernel variance, per call or per query.
        mean, spread : bool, default=False
            Also return the posterior mean / spread.
        n_neighbors : int or None, default=None
            None: exact sums.  An int k: certified top-k with exact fallback
            for queries whose certificate log(1 + delta) exceeds ``tol``.
        tol : float, default=1e-8
            Certificate tolerance of the top-k mode.

        Returns
        -------
        PosteriorStats
        """
        queries = np.asarray(queries, dtype=np.float64)
        if queries.ndim != 2 or queries.shape[1] != self.n_features:
            raise ValueError(
                f"queries must have shape (m, {self.n_features}), got {queries.shape}."
            )
        s2 = _as_variance(s2, queries.shape[0])
        centred = queries - self.offset
        if n_neighbors is None or n_neighbors >= self.n_patterns:
            stats = self._exact(centred, s2, mean, spread)
        else:
            stats = self._top_k(centred, s2, int(n_neighbors), tol, mean, spread)
        if stats.mean is not None:
            stats.mean += self.offset
        return stats

    def _exact(self, centred, s2, want_mean, want_spread):
        m = centred.shape[0]
        out = _new_stats(m, self.n_features, want_mean, want_spread)
        rows, cols = _block_shape(m, self.n_patterns)
        for start in range(0, m, rows):
            sl = slice(start, min(start + rows, m))
            _fill_rows(out, sl, self._exact_rows(centred[sl], s2[sl], cols, want_mean,
                                                 want_spread))
        return out

    def _exact_rows(self, q, s2, cols, want_mean, want_spread):
        state = _StreamState(q.shape[0], self.n_features, want_mean, want_spread)
        rows = np.arange(q.shape[0])
        # Logits up to the per-query constant -|q|^2/(2 s2), which cancels: one
        # GEMM of [q/s2, -1/s2, 1] against [x, |x|^2/2, log w] per block.
        q_aug = self._augment_queries(q, s2)
        for start in range(0, self.n_patterns, cols):
            sl = slice(start, min(start + cols, self.n_patterns))
            x = self._x[sl]
            logits = q_aug @ self._augment_patterns(sl).T
            arg = np.argmax(logits, axis=1)
            top = logits[rows, arg]
            logits -= top[:, None]
            np.maximum(logits, _FLOAT64_MIN_EXPONENT, out=logits)
            weights = np.exp(logits, out=logits)
            mass = weights.sum(axis=1)
            total = weights @ x if state.want_first else None
            anchor = second = None
            if want_spread:
                anchor = x[arg]
                d2 = _anchor_sq_dist(anchor, arg, x, self._half_sq_norms[sl])
                second = np.einsum("mn,mn->m", weights, d2)
            state.merge(top, arg + start, mass, total, anchor, second)
        return self._finish(q, s2, state, want_mean, want_spread)

    def _augment_queries(self, q, s2):
        inv_s2 = 1.0 / s2
        cols = [q * inv_s2[:, None], -inv_s2[:, None]]
        if self._log_w is not None:
            cols.append(np.ones((q.shape[0], 1)))
        return np.hstack(cols)

    def _augment_patterns(self, sl):
        cols = [self._x[sl], self._half_sq_norms[sl, None]]
        if self._log_w is not None:
            cols.append(self._log_w[sl, None])
        return np.hstack(cols)

    def _finish(self, q, s2, state, want_mean, want_spread):
        # The winning logit, recomputed directly: exact even where |q|^2/s2 is huge.
        diff = q - self._x[state.argmax]
        top = -np.einsum("md,md->m", diff, diff) / (2.0 * s2)
        if self._log_w is not None:
            top += self._log_w[state.argmax]
        out = PosteriorStats(top + np.log(state.mass))
        if state.want_first:
            mean = state.total / state.mass[:, None]
            if want_mean:
                out.mean = mean
            if want_spread:
                rel = mean - state.anchor
                spread = state.second / state.mass - np.einsum("md,md->m", rel, rel)
                out.spread = np.maximum(spread, 0.0)
        return out

    # ------------------------------------------------------------- certified
    def kneighbors(self, queries, n_neighbors):
        """The ``n_neighbors`` nearest patterns of each query (float64 sq. distances)."""
        if self.index is None:
            raise ValueError(
                "Neighbour queries need an index: build the PatternPosterior with an "
                "algorithm (e.g. algorithm='auto')."
            )
        centred = np.asarray(queries, dtype=np.float64) - self.offset
        return self.index.kneighbors(centred, n_neighbors)

    def _certificate_cannot_pass(self, centred, s2, k, tol):
        # d_{k+1}^2 - d_1^2 <= diam (2 d_1 + diam) with d_1 <= |q| + R, so
        # log delta >= log((N - k)/k) - that gap / (2 s2); where this lower bound
        # already exceeds the tolerance, truncation cannot pay: go exact at once.
        diam = 2.0 * self._radius
        gap = diam * (2.0 * (np.linalg.norm(centred, axis=1) + self._radius) + diam)
        lower = np.log((self.n_patterns - k) / k) - gap / (2.0 * s2)
        return lower > np.log(np.expm1(tol))

    def _top_k(self, centred, s2, k, tol, want_mean, want_spread):
        if self.index is None:
            raise ValueError(
                "Top-k queries need an index: build the PatternPosterior with an "
                "algorithm, or pass n_neighbors=None for exact sums."
            )
        out = _new_stats(centred.shape[0], self.n_features, want_mean, want_spread,
                         certificate=True)
        exact = self._certificate_cannot_pass(centred, s2, k, tol)
        tried = np.flatnonzero(~exact)
        if tried.size:
            sq_dist, ind = self.index.kneighbors(centred[tried], k + 1)
            logits = -sq_dist[:, :k] / (2.0 * s2[tried, None]) + self.log_weights(ind[:, :k])
            part = _softmax_moments(logits[:, None, :], self._x[ind[:, :k]],
                                    want_mean, want_spread)
            log_norm = part.log_norm[:, 0]
            log_delta = (np.log(self.n_patterns - k) + self._max_log_w
                         - sq_dist[:, k] / (2.0 * s2[tried]) - log_norm)
            certificate = np.logaddexp(0.0, log_delta)
            ok = certificate <= tol
            rows = tried[ok]
            out.log_norm[rows] = log_norm[ok]
            out.certificate[tried] = certificate
            if want_mean:
                out.mean[rows] = part.mean[ok, 0]
            if want_spread:
                out.spread[rows] = part.spread[ok, 0]
            exact[tried[~ok]] = True
        if np.any(exact):
            redo = np.flatnonzero(exact)
            _fill_rows(out, redo, self._exact(centred[redo], s2[redo], want_mean, want_spread))
        return out

    # ------------------------------------------------------ random remainder
    query_remainder = query_remainder

    def draw(self, queries, s2, rng, n_near=32):
        """Draw one pattern index per query from its posterior.

        The posterior of query q weighs pattern i by ``exp(-|q - x_i|^2 / (2 s2))``;
        ``s2`` of at least 1e300 means uniform weights.  See
        :func:`_draw_by_rejection` for the method; it is exact as far as the
        index returns the true nearest patterns.
        """
        if self._log_w is not None:
            raise ValueError("draw samples unweighted posteriors only.")
        queries = np.asarray(queries, dtype=np.float64)
        if s2 >= _FLAT_VARIANCE:
            return rng.integers(0, self.n_patterns, size=queries.shape[0])
        return _draw_by_rejection(self, queries, s2, rng, n_near)


# ------------------------------------------------------------ sampling grade
def _logit_rows(post):
    """float64 logit rows [x; -|x|^2/2; log w] (d+2, n), log w less its maximum."""
    log_w = (np.zeros(post.n_patterns) if post._log_w is None
             else post._log_w - post._max_log_w)
    return np.vstack([post._x.T, -post._half_sq_norms, log_w])


def _sampling_arrays(post):
    """:func:`_logit_rows`, float32 [x, 1] (n, d+1), and the logit rows in float32."""
    totals = np.hstack([post._x, np.ones((post.n_patterns, 1))]).astype(np.float32)
    logit_rows = _logit_rows(post)
    return logit_rows, totals, logit_rows.astype(np.float32)


def _shifted_logits(logit_rows, centred, inv_s2):
    """Per block of query rows: (slice, queries q, float64 logits less each
    row's largest, that largest (rows, 1), and the index of its pattern)."""
    # At least 8 rows: one-row blocks leave the products matrix-vector (3.5x
    # slower on 100,000 patterns, measured).
    rows = max(_SMALL_BLOCK_ELEMENTS // logit_rows.shape[1], 8)
    for start in range(0, centred.shape[0], rows):
        sl = slice(start, start + rows)
        q = centred[sl]
        ones = np.ones((q.shape[0], 1))
        factors = np.hstack([q * inv_s2, ones * inv_s2, ones])
        logits = factors.astype(logit_rows.dtype, copy=False) @ logit_rows
        # argmax and a gather: max along short rows is 3x slower.
        arg = logits.argmax(axis=1)
        top = np.take_along_axis(logits, arg[:, None], axis=1)
        logits -= top
        yield sl, q, logits, top, arg


def _sampling_blocks(logit_rows, centred, inv_s2):
    """Per block of query rows: (slice, queries q, float32 weights shifted so
    that each row's largest is 1, and the index of that largest pattern)."""
    for sl, q, logits, _, arg in _shifted_logits(logit_rows, centred, inv_s2):
        yield sl, q, _float32_weights(logits), arg


def _float32_weights(shifted_logits):
    """exp of logits shifted to a largest of 0, floored, in float32 (in place
    for float32 logits)."""
    if shifted_logits.dtype == np.float32:
        weights = shifted_logits
    else:
        # Shifted in float64 before the float32 cast, where weights below
        # e^-3e38 become -inf and then the floor.
        with np.errstate(over="ignore"):
            weights = shifted_logits.astype(np.float32)
    np.maximum(weights, _FLOAT32_MIN_EXPONENT, out=weights)
    # In place: a fresh array for exp's output costs page faults (3x, measured).
    return np.exp(weights, out=weights)


def _sampling_means(logit_rows, totals, centred, inv_s2):
    """Posterior means at the rows of ``centred`` (about the engine's offset)."""
    out = np.empty_like(centred)
    for sl, _, weights, _ in _sampling_blocks(logit_rows, centred, inv_s2):
        # np.dot, not matmul, for (few rows x many patterns) products here and
        # below: matmul holds the GIL on that shape (26 x 5000 times 5000 x 17:
        # 0.96x on two threads against one, np.dot 1.99x; two threads'
        # sampling_mean over 5000 patterns 1.35x before, 1.66x after; measured
        # with one BLAS thread).
        weighted = np.dot(weights, totals)
        out[sl] = weighted[:, :-1] / weighted[:, -1:]
    return out


def _sampling_means_by_pattern(logit_rows, totals, centred, inv_s2):
    """:func:`_sampling_means` on (patterns x queries) blocks, for few patterns."""
    # The transposes are views: BLAS reads them as they are stored.
    patterns_logit_rows, totals_by_pattern = logit_rows.T, totals.T
    cols = max(_SMALL_BLOCK_ELEMENTS // logit_rows.shape[1], 8)
    out = np.empty_like(centred)
    factors = np.empty((logit_rows.shape[0], min(cols, centred.shape[0])),
                       dtype=logit_rows.dtype)
    for start in range(0, centred.shape[0], cols):
        q = centred[start:start + cols]
        f = factors[:, :q.shape[0]]
        np.multiply(q.T, inv_s2, out=f[:-2], casting="same_kind")
        f[-2], f[-1] = inv_s2, 1.0
        logits = patterns_logit_rows @ f
        logits -= logits.max(axis=0)
        sums = np.dot(totals_by_pattern, _float32_weights(logits))
        out[start:start + cols] = (sums[:-1] / sums[-1]).T
    return out


def _sampling_log_norms(logit_rows, totals, centred, inv_s2):
    """log sum_i w_i exp(-|q - x_i|^2 / (2 s2)) at the rows q of ``centred``,
    for the shifted weights of ``logit_rows`` (see :func:`_sampling_arrays`)."""
    out = np.empty(centred.shape[0])
    ones32 = np.ascontiguousarray(totals[:, -1])
    for sl, q, weights, arg in _sampling_blocks(logit_rows, centred, inv_s2):
        mass = np.dot(weights, ones32)
        out[sl] = _winning_logit(logit_rows, q, arg, inv_s2) + np.log(mass.astype(np.float64))
    return out


def _winning_logit(logit_rows, q, arg, inv_s2):
    """log w - |q - x|^2 / (2 s2) of each row's winning pattern ``arg``, in
    float64 from the pattern: exact where |q|^2 / s2 dwarfs the logits'
    differences, which the expanded logits would round away."""
    diff = q - logit_rows[:-2, arg].T
    return logit_rows[-1, arg] - 0.5 * inv_s2 * np.einsum("md,md->m", diff, diff)


def _halving_log_norms(logit_rows, centred, inv_s2, n_variances):
    """log sum_i exp(-|q - x_i|^2 / (2 s2 / 2^k)) at the rows q of ``centred``
    for k < ``n_variances`` (unweighted ``logit_rows``): each variance's
    weights are the squares of the one before."""
    out = np.empty((centred.shape[0], n_variances))
    doubling = 2.0 ** np.arange(n_variances)
    for sl, q, logits, _, arg in _shifted_logits(logit_rows, centred, inv_s2):
        top = _winning_logit(logit_rows, q, arg, inv_s2)
        np.maximum(logits, _PRODUCT_MIN_EXPONENT, out=logits)
        weights = np.exp(logits, out=logits)
        for k in range(n_variances):
            if k:
                np.maximum(weights, _PRODUCT_MIN_WEIGHT, out=weights)
                np.multiply(weights, weights, out=weights)
            out[sl, k] = top * doubling[k] + np.log(weights.sum(axis=1))
    return out


def _offset_log_norms(logit_rows, centred, offsets, inv_s2):
    """log sum_i w_i exp(-|q + e_j - x_i|^2 / (2 s2)) for the rows q of
    ``centred`` and e_j of ``offsets`` (shifted weights of ``logit_rows``, see
    :func:`_logit_rows`), and where a sum fell below e^-300 of its shifts."""
    x_rows = logit_rows[:-2]
    cross = (offsets @ x_rows) * inv_s2
    cross_top = cross.max(axis=1)
    # Factors floored at e^-354 keep every product of two at least e^-708, a
    # normal float64: subnormal products slow a matrix product several-fold
    # (as they did the float32 weighted sums, see FLOAT32_MIN_EXPONENT).
    factor = np.exp(np.maximum(cross - cross_top[:, None], _PRODUCT_MIN_EXPONENT)).T.copy()
    offset_sq = np.einsum("jd,jd->j", offsets, offsets)
    out = np.empty((centred.shape[0], offsets.shape[0]))
    poor = np.empty(out.shape, dtype=bool)
    for sl, q, logits, top, _ in _shifted_logits(logit_rows, centred, inv_s2):
        np.maximum(logits, _PRODUCT_MIN_EXPONENT, out=logits)
        log_sums = np.log(np.dot(np.exp(logits, out=logits), factor))
        poor[sl] = log_sums < _OFFSET_POOR_LOG_SUM
        moved_sq = (np.einsum("rd,rd->r", q, q)[:, None] + 2.0 * (q @ offsets.T)
                    + offset_sq)
        out[sl] = top + cross_top + log_sums - 0.5 * inv_s2 * moved_sq
    return out, poor


def _categorical(rng, logits):
    """One column per row of ``logits`` (m, k), drawn by inverse CDF."""
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    cdf = np.cumsum(prob, axis=1)
    u = rng.random(logits.shape[0]) * cdf[:, -1]
    return np.minimum(np.sum(cdf <= u[:, None], axis=1), logits.shape[1] - 1)


def _draw_by_rejection(post, queries, s2, rng, n_near):
    """Posterior draws: the k nearest exactly, the rest by rejection.

    The k nearest patterns (from the index) keep their exact weights; the
    others are proposed uniformly under the weight of the (k+1)-th neighbour,
    which bounds them, and accepted with their weight ratio.  This is exact
    rejection sampling with acceptance >= 1 / (1 + delta), delta the top-k
    certificate; with an approximate index it is exact only as far as the
    returned neighbours are the true ones.
    """
    m, n_total = queries.shape[0], post.n_patterns
    k = min(n_near, n_total)
    sq, ind = post.kneighbors(queries, min(k + 1, n_total))
    logits = -sq / (2.0 * s2)
    if k == n_total:
        return ind[np.arange(m), _categorical(rng, logits)]
    near, bound = logits[:, :k], logits[:, k]
    log_near = logsumexp(near, axis=1)
    p_near = np.exp(log_near - np.logaddexp(log_near, np.log(n_total - k) + bound))
    out = np.empty(m, dtype=np.int64)
    todo = np.arange(m)
    while todo.size:
        pick_near = rng.random(todo.size) < p_near[todo]
        rows = todo[pick_near]
        out[rows] = ind[rows, _categorical(rng, near[rows])]
        rows = todo[~pick_near]
        pos = rng.integers(0, n_total - k, size=(rows.size, 1))
        cand = complement_index(ind[rows, :k], pos)[:, 0]
        diff = queries[rows] - post.take(cand)
        log_ratio = -np.einsum("md,md->m", diff, diff) / (2.0 * s2) - bound[rows]
        accept = np.log(rng.random(rows.size)) < log_ratio
        out[rows[accept]] = cand[accept]
        todo = rows[~accept]
    return out


def _softmax_moments(logits, vecs, want_mean, want_spread):
    """logZ, mean and spread of softmax(logits) over candidate vectors.

    ``logits`` has shape (m, r, c) and ``vecs`` (m, c, d): r queries per row
    share c candidates.  Moments are taken about the first candidate.
    ``logits`` is overwritten by the unnormalised weights.
    """
    top = logits.max(axis=2)
    # In place, and normalised after the products (d values a query, not c):
    # 1.3x faster than fresh arrays on MM-SOLD's 32 x 100 problems (measured).
    weights = np.subtract(logits, top[:, :, None], out=logits)
    np.maximum(weights, _FLOAT64_MIN_EXPONENT, out=weights)
    np.exp(weights, out=weights)
    mass = weights.sum(axis=2)
    out = PosteriorStats(top + np.log(mass))
    if want_mean or want_spread:
        rel = vecs - vecs[:, :1, :]
        first = weights @ rel
        first /= mass[:, :, None]
        if want_mean:
            out.mean = vecs[:, :1, :] + first
        if want_spread:
            second = (weights @ np.einsum("mcd,mcd->mc", rel, rel)[:, :, None])[:, :, 0]
            spread = second / mass - np.einsum("mrd,mrd->mr", first, first)
            out.spread = np.maximum(spread, 0.0)
    return out


def complement_index(excluded, positions):
    """Pattern index of each position among the patterns a row does not exclude.

    Parameters
    ----------
    excluded : ndarray of shape (m, K)
        Distinct excluded pattern indices per row.
    positions : ndarray of shape (m, L)
        Positions in [0, N - K) among the remaining patterns, in index order.

    Returns
    -------
    ndarray of shape (m, L)
    """
    # Position r is pattern r + #{j : e_j - j <= r} for the sorted excluded e.
    shifted = np.sort(excluded, axis=1) - np.arange(excluded.shape[1])
    return positions + np.sum(shifted[:, None, :] <= positions[:, :, None], axis=2)


def posterior_per_row(queries, patterns, s2, *, spread=False):
    """The engine for many tiny problems: each query row owns its patterns.

    Parameters
    ----------
    queries : ndarray of shape (m, d)
    patterns : ndarray of shape (d, m, p)
        Feature-major: ``patterns[:, i, :]`` are the p patterns of row i.  This
        layout keeps every pass over the (m, p) logits contiguous.
    s2 : float or ndarray of shape (m,)
    spread : bool, default=False

    Returns
    -------
    PosteriorStats
        ``log_norm`` (m,), ``mean`` (m, d), and ``spread`` (m,) if asked.
    """
    q = np.asarray(queries, dtype=np.float64)
    s2 = _as_variance(s2, q.shape[0])
    sq_dist = np.square(patterns[0] - q[:, :1])
    for j in range(1, q.shape[1]):
        sq_dist += np.square(patterns[j] - q[:, j:j + 1])
    nearest = sq_dist.min(axis=1)
    sq_dist -= nearest[:, None]
    sq_dist *= -0.5 / s2[:, None]
    np.maximum(sq_dist, _FLOAT64_MIN_EXPONENT, out=sq_dist)
    weights = np.exp(sq_dist, out=sq_dist)
    mass = weights.sum(axis=1)
    weights /= mass[:, None]
    out = PosteriorStats(np.log(mass) - nearest / (2.0 * s2))
    out.mean = np.stack([np.einsum("mp,mp->m", weights, x) for x in patterns], axis=1)
    if spread:
        out.spread = sum(np.einsum("mp,mp->m", weights, np.square(x - mu[:, None]))
                         for x, mu in zip(patterns, out.mean.T))
    return out
