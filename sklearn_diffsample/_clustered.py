"""Sampling-grade posterior means over clustered patterns.

The exact engine sums over all N patterns for every query.  A sampler only
needs the posterior mean (the denoiser) to an accuracy its samples cannot
show, and most patterns carry almost no posterior weight at small noise while
at large noise whole groups of patterns act as one.  So the patterns are
partitioned once into C clusters (k-means), and for a query q at kernel
variance s2 each cluster c (n_c members, centre mu_c, per-coordinate variance
v_c, radius R_c) gets a surrogate of its share of the posterior,

    log m_c(q) = log n_c - |q - mu_c|^2 / (2 (s2 + v_c)) - d/2 log(1 + v_c / s2),

the exact mass were the cluster the Gaussian N(mu_c, v_c I), capped by the
rigorous bound log n_c - (|q - mu_c| - R_c)_+^2 / (2 s2).  The clusters with
the largest surrogate shares are summed exactly, pattern by pattern, up to a
budget of patterns per query; every other cluster enters with its surrogate
share at its surrogate posterior mean mu_c + v_c / (v_c + s2) (q - mu_c),
scaled down by the factor by which the summed clusters' exact mass falls
short of their surrogate mass (a continuum overstates the mass of points
where the kernel is narrower than their spacing).  Where the noise is large
every cluster is close to its Gaussian surrogate; where it is small the
neglected clusters are far and their share is tiny.
The per-query cost is C + budget pattern terms instead of N.
"""

import numpy as np
from scipy.sparse import csc_matrix

__all__ = ["PatternClusters", "default_n_clusters", "denoiser_is_clustered",
           "patterns_per_query", "sampling_mean"]

# denoiser="auto" (guided sampler, path extrapolation) clusters from this
# many patterns on.
_AUTO_MIN_PATTERNS = 10_000
# Float32 weights are floored at exp(-50) ~ 2e-22: below exp(-87.3) exp returns
# subnormals at 13x the cost (measured), and a weight near the smallest normal
# float32 still makes subnormal products in the weighted sums of the patterns,
# which made sampling_mean at small kernel widths 3-8x slower than at wide ones
# (measured).  Next to the largest weight, 1, 65,536 floored weights add 1e-17
# relative: far below float32 rounding.
FLOAT32_MIN_EXPONENT = np.float32(-50.0)
# Shifted float64 logits are floored at -700: below about -708, where exp
# returns subnormals or zero, numpy's exp leaves its vector path and costs
# 15-100x more per element (measured), which made the exact engine at small
# bandwidths several times slower.  Next to the largest weight, 1, a weight
# of e^-700 ~ 1e-304 moves no sum, mean or spread by a representable amount.
FLOAT64_MIN_EXPONENT = -700.0
# Centres are fitted on a subsample of this many rows per cluster, then every
# pattern is assigned once.
_ROWS_PER_CENTRE = 40
_LLOYD_ITERATIONS = 6
# Queries per block: (block x clusters) arrays stay small.
_QUERY_BLOCK = 1024
# Selection, per query, among the _CANDIDATES clusters of largest surrogate
# share: whole clusters, largest first, until _BUDGET patterns are summed
# exactly; beyond, clusters whose Gaussian surrogate is not trusted (kernel
# narrower than the cluster) while the surrogate share not yet summed exceeds
# _SHARE, up to _CAP patterns.
_CANDIDATES = 64
_BUDGET = 512
_SHARE = 0.02
_CAP = 4096


def denoiser_is_clustered(denoiser, n_patterns):
    """Whether ``denoiser`` ("auto", "exact" or "clustered") means clustered
    sums over ``n_patterns``: "auto" clusters from 10,000 patterns on, below
    which exact sums are about as fast (benchmarks/bench_denoiser.py)."""
    if denoiser == "auto":
        return n_patterns >= _AUTO_MIN_PATTERNS
    return denoiser == "clustered"


def patterns_per_query(posterior, clusters=None):
    """About the patterns a mean sums per query: every one of ``posterior``'s,
    or the estimate of ``clusters`` (:meth:`PatternClusters.terms_per_query`)."""
    return posterior.n_patterns if clusters is None else clusters.terms_per_query()


def sampling_mean(posterior, queries, s2, clusters=None):
    """Sampling-grade posterior means: the engine's float32 sums over every
    pattern, or the clustered means of ``clusters`` (a partition of its patterns)."""
    if clusters is None:
        return posterior.sampling_mean(queries, s2)
    return clusters.mean(posterior, queries, s2)


def default_n_clusters(n_patterns):
    """About sqrt(N) / 2 clusters: the surrogate pass grows with C and the
    exact sums with N / C.  sqrt(N) / 4 sampled 1.2-1.4x faster with path
    extrapolation at N = 1e4, but on a 100-component mixture in d = 16 a
    classifier began to tell its samples from exact ones (C2ST AUC 0.536
    against 0.519 for exact samples and 0.510 at sqrt(N) / 2, measured)."""
    return int(np.clip(round(0.5 * np.sqrt(n_patterns)), 1, n_patterns))


def _nearest_centre(X, centres, block=8192):
    half = 0.5 * np.einsum("cd,cd->c", centres, centres)
    labels = np.empty(X.shape[0], dtype=np.int64)
    for start in range(0, X.shape[0], block):
        rows = X[start:start + block]
        labels[start:start + block] = np.argmax(rows @ centres.T - half[None, :], axis=1)
    return labels


def kmeans_labels(X, n_clusters, seed):
    """Cluster labels of the rows of X: Lloyd's iterations on a seeded subsample."""
    rng = np.random.default_rng(seed)
    n = X.shape[0]
    fit_rows = X[np.sort(rng.choice(n, min(n, _ROWS_PER_CENTRE * n_clusters), replace=False))]
    centres = fit_rows[rng.choice(fit_rows.shape[0], n_clusters, replace=False)]
    for _ in range(_LLOYD_ITERATIONS):
        labels = _nearest_centre(fit_rows, centres)
        counts = np.bincount(labels, minlength=n_clusters)
        sums = np.zeros_like(centres)
        np.add.at(sums, labels, fit_rows)
        filled = counts > 0  # an empty cluster keeps its centre
        centres[filled] = sums[filled] / counts[filled, None]
    return _nearest_centre(X, centres)


class PatternClusters:
    """A partition of a posterior's patterns, and the approximate mean over it.

    Parameters
    ----------
    posterior : PatternPosterior
        The engine whose (centred) patterns are partitioned.
    n_clusters : int
        C, at most the number of patterns.
    seed : int
        Seed of the k-means initialisation.
    labels : ndarray of shape (n_patterns,) or None, default=None
        A given cluster (in 0..n_clusters - 1) of each pattern instead of
        k-means (see :meth:`restrict`).
    """

    def __init__(self, posterior, n_clusters, seed, labels=None):
        X = posterior._x
        if labels is None:
            labels = kmeans_labels(X, int(n_clusters), seed)
        self.labels = labels
        self._n_labels = int(n_clusters)
        members = np.argsort(labels, kind="stable")
        counts = np.bincount(labels, minlength=int(n_clusters))
        keep = counts > 0
        self.members = members.astype(np.int32 if X.shape[0] < 2**31 else np.int64)
        self.counts = counts[keep]
        self.starts = np.concatenate([[0], np.cumsum(self.counts)])
        sums = np.zeros((keep.size, X.shape[1]))
        np.add.at(sums, labels, X)
        self.centres = sums[keep] / self.counts[:, None]
        dev = X[members] - np.repeat(self.centres, self.counts, axis=0)
        sq = np.einsum("nd,nd->n", dev, dev)
        self.variances = np.add.reduceat(sq, self.starts[:-1]) / (self.counts * X.shape[1])
        self.radii = np.sqrt(np.maximum.reduceat(sq, self.starts[:-1]))
        self._half_sq_centres = 0.5 * np.einsum("cd,cd->c", self.centres, self.centres)
        self._sorted = None

    def restrict(self, posterior, indices):
        """The same partition of a subset: ``posterior`` holds the patterns
        ``indices`` of the one these clusters were built on (no new k-means)."""
        return PatternClusters(posterior, self._n_labels, None, labels=self.labels[indices])

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_sorted"] = None  # the patterns in cluster order: rebuilt from the posterior
        return state

    @property
    def n_clusters(self):
        return self.counts.size

    def terms_per_query(self):
        """About the patterns a query's mean sums: C surrogates plus half the
        cap of exact sums (the guided sampler summed 1376 a query at N = 1e4
        and 3280 at N = 1e5, path extrapolation 895 at N = 1e4; measured)."""
        return min(int(self.counts.sum()), self.n_clusters + _CAP // 2)

    def _cluster_order(self, posterior):
        """The patterns in cluster order, about their cluster's centre, in float32,
        as one (n, d + 2) array ``[x, -|x|^2 / 2, 1]``.

        Float32 halves the cost of the exact sums; about the centre the logits
        are small numbers (radius x distance / s2), whose float32 rounding
        (1e-7 relative) stays far below what a sampler can show.  The extra
        columns let one product give the shifted logits (against the query
        row ``[q / s2, 1 / s2, 0]``) and another the totals with their mass.
        """
        if self._sorted is None:
            x = posterior._x[self.members] - np.repeat(self.centres, self.counts, axis=0)
            n, d = x.shape
            rows = np.ones((n, d + 2), dtype=np.float32)
            rows[:, :d] = x
            rows[:, d] = -0.5 * np.einsum("nd,nd->n", x, x)
            self._sorted = rows
        return self._sorted

    def mean(self, posterior, queries, s2):
        """Approximate posterior mean at each query (data coordinates of the posterior).

        Parameters
        ----------
        posterior : PatternPosterior
            The engine these clusters were built on.
        queries : ndarray of shape (m, d)
        s2 : float
            Kernel variance.

        Returns
        -------
        ndarray of shape (m, d)
        """
        q = np.asarray(queries, dtype=np.float64) - posterior.offset
        out = np.empty_like(q)
        for start in range(0, q.shape[0], _QUERY_BLOCK):
            sl = slice(start, start + _QUERY_BLOCK)
            out[sl] = self._mean_block(posterior, q[sl], float(s2))
        return out + posterior.offset

    def _select(self, q, s2):
        """Surrogate log shares (m, C), up to the per-row constant -|q|^2 / (2 s2),
        -inf where summed exactly; those (cluster, row) pairs, sorted by
        cluster, then row; the (m, C) gains q.c - |c|^2 / 2 (the exact logits'
        offsets); and per row the log surrogate mass of its summed clusters,
        on the scale of the shares."""
        m, d = q.shape
        C = self.n_clusters
        sq_q = np.einsum("md,md->m", q, q)
        gains = q @ self.centres.T - self._half_sq_centres[None, :]
        d2 = sq_q[:, None] - 2.0 * gains
        np.maximum(d2, 0.0, out=d2)
        wide = s2 + self.variances
        log_n = np.log(self.counts)
        log_m = (log_n - 0.5 * d * np.log(wide / s2)) - d2 * (0.5 / wide)
        gap = np.sqrt(d2)
        gap -= self.radii
        bound = np.maximum(gap, 0.0, out=gap)
        bound *= bound
        bound *= -0.5 / s2
        bound += log_n
        np.minimum(log_m, bound, out=log_m)
        # Ranked by surrogate share: the bound is log n_c for every cluster
        # whose radius reaches the query, and ranked by it the exact sums at
        # small kernels went to the largest of those, not the nearest (36-96%
        # of the means between the patterns off by more than s, measured).
        k = min(_CANDIDATES, C)
        if k < C:
            top = np.argpartition(-log_m, k - 1, axis=1)[:, :k]
            top = np.take_along_axis(top, np.argsort(-np.take_along_axis(log_m, top, 1), 1), 1)
        else:
            top = np.argsort(-log_m, axis=1)
        flat = top + (C * np.arange(m))[:, None]
        sizes = self.counts[top]
        before = np.cumsum(sizes, axis=1)
        before -= sizes
        sur_max = log_m.max(axis=1)
        share = np.exp(np.maximum(log_m - sur_max[:, None], FLOAT64_MIN_EXPONENT))
        total = share.sum(axis=1)
        share = share.ravel()[flat]
        summed = np.cumsum(share, axis=1)
        summed -= share
        # The Gaussian surrogate is trusted where the kernel is wider than the cluster.
        untrusted = (self.radii ** 2 > s2)[top]
        chosen = (before < _BUDGET) | (
            untrusted & (summed < (1.0 - _SHARE) * total[:, None]) & (before < _CAP))
        # Cluster-major nonzero: pairs sorted by cluster, then row, without a sort.
        picked = np.zeros(C * m, dtype=bool)
        picked[flat[chosen]] = True
        log_m.ravel()[picked] = -np.inf
        clusters, rows = np.nonzero(picked.reshape(m, C).T)
        with np.errstate(divide="ignore"):
            log_summed = np.log(np.sum(share, axis=1, where=chosen)) + sur_max
        # Back to the scale of the exact logits, which leave out -|q|^2 / (2 s2).
        log_m += sq_q[:, None] / (2.0 * s2)
        log_summed += sq_q / (2.0 * s2)
        return log_m, clusters, rows, gains, log_summed

    def _mean_block(self, posterior, q, s2):
        log_m, clusters, rows, gains, log_summed = self._select(q, s2)
        member_rows = self._cluster_order(posterior)
        m, d = q.shape
        inv_s2 = 1.0 / s2
        # Per summed (cluster, row) pair: its largest shifted logit and the
        # sums of its weights times [x - c, -|x - c|^2/2, 1] over the members.
        tops = np.empty(rows.size, dtype=np.float32)
        sums = np.empty((rows.size, d + 2), dtype=np.float32)
        # A cluster holds each row at most once, so these workspaces serve
        # every cluster: (pair x d) temporaries made a fresh process fault
        # in 10-20 MB of pages a call, half its time (measured).
        gathered = np.empty((m, d))
        scaled = np.empty((m, d + 2), dtype=np.float32)
        scaled[:, d], scaled[:, d + 1] = inv_s2, 0.0
        q_scaled, centres_scaled = q * inv_s2, self.centres * inv_s2
        bounds = np.searchsorted(clusters, np.arange(self.n_clusters + 1))
        for c in np.flatnonzero(np.diff(bounds)):
            pairs = slice(bounds[c], bounds[c + 1])
            members = member_rows[self.starts[c]:self.starts[c + 1]]
            n_pairs = pairs.stop - pairs.start
            # (q - c) / s2, formed in float64 and stored in float32: against
            # the member row [x - c, -|x - c|^2/2, 1] it gives the logit
            # shifted by q.c - |c|^2/2 (offsets below).
            np.subtract(np.take(q_scaled, rows[pairs], axis=0, out=gathered[:n_pairs]),
                        centres_scaled[c], out=scaled[:n_pairs, :d], casting="same_kind")
            # Pairs x members: laid out members x pairs, the products and
            # passes were level at 400 members and up to 2.4x slower on few
            # pairs of large clusters (measured), as at N = 1e6.
            logits = np.dot(scaled[:n_pairs], members.T)
            top = logits.max(axis=1)
            logits -= top[:, None]
            w = np.exp(np.maximum(logits, FLOAT32_MIN_EXPONENT, out=logits), out=logits)
            tops[pairs] = top
            np.dot(w, members, out=sums[pairs])
        # q.x - |x|^2/2 = (q - c).(x - c) - |x - c|^2/2 + q.c - |c|^2/2.
        offsets = gains[rows, clusters]
        offsets *= inv_s2
        offsets += tops
        # Every other cluster: its surrogate share at its surrogate mean.
        shrink = self.variances / (self.variances + s2)
        sur_top = log_m.max(axis=1)
        w = log_m - np.where(np.isfinite(sur_top), sur_top, 0.0)[:, None]
        # Summed clusters (-inf) stay at weight 0; the rest are floored.
        w = np.where(np.isneginf(w), 0.0, np.exp(np.maximum(w, FLOAT64_MIN_EXPONENT)))
        surrogate = (sur_top, w.sum(axis=1), (w * (1.0 - shrink)) @ self.centres
                     + (w @ shrink)[:, None] * q, log_summed)
        return _combine(self.centres, rows, bounds, offsets, sums, surrogate)


def _combine(centres, rows, bounds, pair_tops, sums, surrogate):
    """Posterior means from the summed pairs' partial sums (about their
    cluster's centre; cluster c's pairs are ``bounds[c]:bounds[c + 1]``) and
    each row's surrogate (top, mass, total, and the log surrogate mass of the
    summed clusters), log-sum-exp merged."""
    sur_top, sur_mass, sur_total, log_summed = surrogate
    d = centres.shape[1]
    exact_top = np.full(sur_top.shape, -np.inf)
    np.maximum.at(exact_top, rows, pair_tops)
    scale = np.exp(pair_tops - exact_top[rows]).astype(np.float32)
    # One sparse (rows x pairs) product: np.add.at over the (pairs, d) sums
    # was 3.6-10x slower (measured on 3000 to 25,000 terms).  Compressed by
    # column, one entry per pair, it needs no sort (2.2x faster to build);
    # in float32, the sums' own precision, it makes no float64 copy of them.
    merge = csc_matrix((scale, rows, np.arange(rows.size + 1)),
                       shape=(exact_top.size, rows.size))
    merged = merge @ sums
    masses = sums[:, d + 1] * scale
    # The pairs' sums about their centres, moved back: + mass x centre.
    by_cluster = csc_matrix((masses, rows, bounds), shape=(exact_top.size, centres.shape[0]))
    exact_total = merged[:, :d] + by_cluster @ centres
    exact_mass = merged[:, d + 1].astype(np.float64)
    # The surrogates overstate a cluster's mass where the kernel is narrower
    # than the spacing of its patterns (a continuum where there are points):
    # the unsummed clusters may claim no more, against the summed ones' exact
    # mass, than their surrogates claim against the summed ones' surrogates.
    with np.errstate(divide="ignore", invalid="ignore"):
        calibration = exact_top + np.log(exact_mass) - log_summed
    sur_top = sur_top + np.where(np.isfinite(calibration), np.minimum(calibration, 0.0), 0.0)
    row_top = np.maximum(sur_top, exact_top)
    exact_scale = np.where(np.isfinite(exact_top), np.exp(exact_top - row_top), 0.0)
    sur_scale = np.where(np.isfinite(sur_top), np.exp(sur_top - row_top), 0.0)
    total = exact_scale[:, None] * exact_total + sur_scale[:, None] * sur_total
    mass = exact_scale * exact_mass + sur_scale * sur_mass
    return total / mass[:, None]
