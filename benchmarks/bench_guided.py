"""Sampling speed of GuidedDiffusionSampler and the engine's share of it.

One row per denoiser: 1e4 samples, 50 steps of the default solver
(DPM-Solver++(2M)), N = 1e4 clustered patterns in d = 16; exact sums,
certified top-k and the clustered means (the default from 10,000
patterns).  The engine share is the wall time spent
inside the engine's sums (``PatternPosterior.query``, ``sampling_mean``
and ``PatternClusters.mean``, outermost calls only) divided by the total
sampling time, measured single-threaded (n_jobs=1, BLAS on one thread) so
that the two clocks see the same work; the target is >= 80%, i.e. the
dynamics around the engine cost little.

Usage::

    python benchmarks/bench_guided.py            # full sizes
    python benchmarks/bench_guided.py --quick    # smoke run, small sizes

Writes ``benchmarks/results/guided_bench{,_quick}.md`` and ``.json``.
"""

import threading
import time

import _common
import numpy as np

from sklearn_diffsample import PatternPosterior
from sklearn_diffsample._clustered import PatternClusters
from sklearn_diffsample.guided import GuidedDiffusionSampler
from sklearn_diffsample.metrics import sliced_wasserstein

# The engine's entry points that sum over patterns: (class, method name).
ENGINE_CALLS = ((PatternPosterior, "query"), (PatternPosterior, "sampling_mean"),
                (PatternClusters, "mean"))


def clustered_data(n, d, n_clusters=50, spread=0.3, seed=0):
    """Patterns around well-separated centres, so that top-k can pay off."""
    rng = np.random.default_rng(seed)
    centres = 2.0 * rng.standard_normal((n_clusters, d))
    labels = rng.integers(0, n_clusters, n)
    return centres[labels] + spread * rng.standard_normal((n, d))


class EngineClock:
    """Accumulates the wall time spent inside the engine's sums (ENGINE_CALLS).

    Only outermost calls count: the clustered means call the exact engine
    for their near clusters, and that time is already theirs.
    """

    def __init__(self):
        self.seconds = 0.0
        self._originals = [(cls, name, getattr(cls, name)) for cls, name in ENGINE_CALLS]
        self._lock = threading.Lock()
        self._depth = threading.local()

    def _timed(self, original):
        def timed_call(*args, **kwargs):
            depth = getattr(self._depth, "value", 0)
            self._depth.value = depth + 1
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self._depth.value = depth
                if depth == 0:
                    with self._lock:
                        self.seconds += time.perf_counter() - start
        return timed_call

    def __enter__(self):
        for cls, name, original in self._originals:
            setattr(cls, name, self._timed(original))
        return self

    def __exit__(self, *exc):
        for cls, name, original in self._originals:
            setattr(cls, name, original)


def run_row(name, X, n_samples, n_steps, bandwidth, parallel=False, **params):
    est = GuidedDiffusionSampler(bandwidth=bandwidth, n_steps=n_steps, batch_size=1024,
                                 random_state=0, **params)
    start = time.perf_counter()
    est.fit(X)
    fit_s = time.perf_counter() - start
    est.sample(8, random_state=0)  # warm-up (index, caches)
    with EngineClock() as clock:
        start = time.perf_counter()
        single = est.set_params(n_jobs=1).sample(n_samples, random_state=1)
        total_1 = time.perf_counter() - start
    total_all = None
    if parallel:
        start = time.perf_counter()
        again = est.set_params(n_jobs=-1).sample(n_samples, random_state=1)
        total_all = time.perf_counter() - start
        assert np.array_equal(single, again)  # n_jobs does not change a bit
    return {
        "config": name,
        "fit_s": fit_s,
        "sample_s_n_jobs_1": total_1,
        "sample_s_n_jobs_all": total_all,
        "engine_s": clock.seconds,
        "engine_share": clock.seconds / total_1,
        "samples": single,
    }


def _fmt(seconds):
    return "-" if seconds is None else f"{seconds:.2f}"


CONFIGS = (
    ("exact sums", {"denoiser": "exact"}),
    ("certified top-32, brute index", {"denoiser": "exact", "n_neighbors": 32,
                                       "algorithm": "brute"}),
    ("clustered means (default from 10,000 patterns)", {"denoiser": "clustered"}),
)


def main(argv=None):
    args, started, info = _common.begin(
        __doc__, argv, add_arguments=lambda parser: parser.add_argument(
            "--parallel", action="store_true",
            help="also time n_jobs=-1 (and check bit-identical samples)"))
    n_patterns, n_samples, n_steps = (2000, 1000, 20) if args.quick else (10_000, 10_000, 50)
    d, bandwidth = 16, 0.1
    data = "50 Gaussian clusters, centres N(0, 4 I), spread 0.3"
    X = clustered_data(n_patterns, d)
    rows = []
    with _common.one_blas_thread():
        for name, params in CONFIGS:
            row = run_row(name, X, n_samples, n_steps, bandwidth, args.parallel, **params)
            rows.append(row)
            print(f"{name:48s} n_jobs=1 {row['sample_s_n_jobs_1']:8.2f} s  "
                  f"engine share {100 * row['engine_share']:5.1f}%", flush=True)
    # Sample i of every denoiser starts from the same noise: disjoint halves
    # compare laws, not paired paths (the floor: the exact samples' two halves).
    reference = rows[0].pop("samples")
    half = n_samples // 2
    floor = sliced_wasserstein(reference[:half], reference[half:], random_state=0)
    for row in rows[1:]:
        samples = row.pop("samples")
        row["max_abs_diff_vs_exact"] = float(np.max(np.abs(samples - reference)))
        row["sw2_vs_exact"] = float(sliced_wasserstein(samples[:half], reference[half:],
                                                       random_state=0))
    lines = _common.header("GuidedDiffusionSampler: sampling speed and engine share",
                           "bench_guided.py", args.quick, started, info)
    lines += [
        f"{n_samples} samples, {n_steps} steps of the default solver (DPM-Solver++(2M), "
        "cosine schedule, angle grid), "
        f"N = {n_patterns} patterns, d = {d}, h = {bandwidth} ({data}). BLAS on one thread.",
        "",
        "| denoiser | fit (s) | sample, n_jobs=1 (s) | sample, n_jobs=-1 (s) "
        "| engine share | max abs diff vs exact | SW2 to exact samples |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        diff = row.get("max_abs_diff_vs_exact")
        sw2 = f"{floor:.4f} (floor)" if diff is None else f"{row['sw2_vs_exact']:.4f}"
        lines.append(
            f"| {row['config']} | {row['fit_s']:.2f} | {row['sample_s_n_jobs_1']:.2f} | "
            f"{_fmt(row['sample_s_n_jobs_all'])} | {100 * row['engine_share']:.1f}% | "
            f"{'-' if diff is None else f'{diff:.1e}'} | {sw2} |")
    lines += ["", "Engine share: time inside the engine's sums / total sampling time "
              "(n_jobs=1); target >= 80%. Max abs diff compares sample i of each denoiser "
              "with exact sample i (same starting noise); the clustered means are "
              "approximate, so their paths part, and what counts is the law: the sliced W2 "
              "(200 projections) between the first half of a denoiser's samples and the "
              "second half of the exact ones, against the floor, the exact samples' two "
              "halves (more in `denoiser.md`). With --parallel, "
              "samples are checked bit-identical for n_jobs=1 and -1 ('-': not timed).", ""]
    meta = dict(n_patterns=n_patterns, n_features=d, n_samples=n_samples, n_steps=n_steps,
                bandwidth=bandwidth, data=data, sw2_floor=float(floor))
    path = _common.write("guided_bench", args.quick, "\n".join(lines),
                         dict(machine=info, meta=meta, rows=rows))
    print("\n".join(lines))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
