"""Sampling speed of GuidedDiffusionSampler and the engine's share of it.

One row per configuration: 1e4 samples, 50 DDIM steps, N = 1e4 clustered
patterns in d = 16, exact sums vs certified top-k (the guided row of the speed table).
The engine share is the wall time spent inside ``PatternPosterior.query``
divided by the total sampling time, measured single-threaded (n_jobs=1) so
that the two clocks see the same work; the target is >= 80%, i.e. the
dynamics around the engine cost little.

Usage::

    python benchmarks/bench_guided.py            # full sizes
    python benchmarks/bench_guided.py --quick    # smoke run, small sizes

Writes ``benchmarks/results/guided_bench{,_quick}.md`` and ``.json``.
"""

import argparse
import json
import os
import platform
import threading
import time
from pathlib import Path

import numpy as np

from sklearn_diffsample import PatternPosterior
from sklearn_diffsample.guided import GuidedDiffusionSampler

RESULTS = Path(__file__).resolve().parent / "results"


def clustered_data(n, d, n_clusters=50, spread=0.3, seed=0):
    """Patterns around well-separated centres, so that top-k can pay off."""
    rng = np.random.default_rng(seed)
    centres = 2.0 * rng.standard_normal((n_clusters, d))
    labels = rng.integers(0, n_clusters, n)
    return centres[labels] + spread * rng.standard_normal((n, d))


class EngineClock:
    """Accumulates the wall time spent inside ``PatternPosterior.query``."""

    def __init__(self):
        self.seconds = 0.0
        self._original = PatternPosterior.query
        self._lock = threading.Lock()

    def __enter__(self):
        original = self._original

        def timed_query(posterior, *args, **kwargs):
            start = time.perf_counter()
            try:
                return original(posterior, *args, **kwargs)
            finally:
                with self._lock:
                    self.seconds += time.perf_counter() - start

        PatternPosterior.query = timed_query
        return self

    def __exit__(self, *exc):
        PatternPosterior.query = self._original


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--parallel", action="store_true",
                        help="also time n_jobs=-1 (and check bit-identical samples)")
    args = parser.parse_args()
    n_patterns, n_samples, n_steps = (2000, 1000, 20) if args.quick else (10_000, 10_000, 50)
    d = 16
    X = clustered_data(n_patterns, d)
    bandwidth = 0.1
    configs = [
        ("exact sums", {}),
        ("certified top-32, brute index", {"n_neighbors": 32, "algorithm": "brute"}),
    ]
    rows = []
    for name, params in configs:
        row = run_row(name, X, n_samples, n_steps, bandwidth, args.parallel, **params)
        rows.append(row)
        print(f"{name:32s} n_jobs=1 {row['sample_s_n_jobs_1']:8.2f} s  "
              f"engine share {100 * row['engine_share']:5.1f}%", flush=True)
    reference = rows[0].pop("samples")
    for row in rows[1:]:
        row["max_abs_diff_vs_exact"] = float(np.max(np.abs(row.pop("samples") - reference)))
    meta = {
        "n_patterns": n_patterns, "n_features": d, "n_samples": n_samples,
        "n_steps": n_steps, "sampler": "DDIM (eta=0), cosine schedule, angle grid",
        "bandwidth": bandwidth, "data": "50 Gaussian clusters, centres N(0, 4 I), spread 0.3",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(), "numpy": np.__version__,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    suffix = "_quick" if args.quick else ""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"guided_bench{suffix}.json").write_text(
        json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [
        "# GuidedDiffusionSampler: sampling speed and engine share", "",
        f"{n_samples} samples, {n_steps} DDIM steps, N = {n_patterns} patterns, d = {d}, "
        f"h = {bandwidth} ({meta['data']}); {meta['machine']}, load average "
        f"{', '.join(f'{x:.1f}' for x in meta['load_average'] or [])}.", "",
        "| configuration | fit (s) | sample, n_jobs=1 (s) | sample, n_jobs=-1 (s) "
        "| engine share | max abs diff vs exact |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        diff = row.get("max_abs_diff_vs_exact")
        lines.append(
            f"| {row['config']} | {row['fit_s']:.2f} | {row['sample_s_n_jobs_1']:.2f} | "
            f"{_fmt(row['sample_s_n_jobs_all'])} | {100 * row['engine_share']:.1f}% | "
            f"{'-' if diff is None else f'{diff:.1e}'} |")
    lines += ["", "Engine share: time inside `PatternPosterior.query` / total sampling time "
              "(n_jobs=1); target >= 80%. With --parallel, samples are checked "
              "bit-identical for n_jobs=1 and -1 ('-': not timed)."]
    (RESULTS / f"guided_bench{suffix}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
