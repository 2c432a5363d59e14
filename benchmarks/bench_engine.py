"""Accuracy and speed of the pattern-posterior engine (benchmark tables 2 and 4).

Compares the engine's Gaussian-KDE log-density with scikit-learn's
``KernelDensity`` (defaults: atol = rtol = 0) and with a brute-force float64
reference computed from direct differences.  Every number in one table comes
from one run on one machine.

Usage::

    python benchmarks/bench_engine.py            # full sizes
    python benchmarks/bench_engine.py --quick    # CI smoke run, small sizes

Writes ``benchmarks/results/engine{,_quick}.md`` and ``.json``.
"""

import time

import _common
import numpy as np
from sklearn.neighbors import KernelDensity

from sklearn_diffsample import PatternPosterior


def timed(func, repeats=1):
    best, value = np.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        value = func()
        best = min(best, time.perf_counter() - start)
    return best, value


def accuracy_table(n, d, h, n_queries, far_scale, seed=0):
    """Table 4: max |log-density error| vs brute force, engine and KernelDensity."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    rows = []
    for label, scale in [("standard normal queries", 1.0), (f"far queries (x{far_scale:g})", far_scale)]:
        Q = rng.standard_normal((n_queries, d)) * scale
        ref = _common.brute_kde(Q, X, h)
        ours = PatternPosterior(X).log_density(Q, h * h)
        kd = KernelDensity(bandwidth=h).fit(X).score_samples(Q)
        err_ours, err_kd = np.abs(ours - ref), np.abs(kd - ref)
        rows.append({
            "queries": label, "N": n, "d": d, "h": h, "n_queries": n_queries,
            "engine_max_abs_err": float(err_ours.max()),
            "engine_max_rel_err": float(np.max(err_ours / np.abs(ref))),
            "kd_max_abs_err": float(np.max(err_kd[np.isfinite(err_kd)], initial=0.0)),
            "kd_nonfinite": int(np.sum(~np.isfinite(kd))),
            "kd_share_off_by_17_nats": float(np.mean(~(err_kd <= 17))),
        })
    return rows


def speed_table(n, d, h, n_queries, seed=1):
    """Table 2 (engine row): exact score time vs KernelDensity at equal accuracy."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    Q = rng.standard_normal((n_queries, d))
    ref = _common.brute_kde(Q, X, h)
    post = PatternPosterior(X)
    t_engine, ours = timed(lambda: post.log_density(Q, h * h), repeats=2)
    kde = KernelDensity(bandwidth=h).fit(X)
    t_kd, kd = timed(lambda: kde.score_samples(Q))
    indexed = PatternPosterior(X, algorithm="kd_tree")
    rows = [{
        "method": "engine, exact", "N": n, "d": d, "h": h, "n_queries": n_queries,
        "seconds": t_engine, "max_abs_err": float(np.abs(ours - ref).max()),
    }, {
        "method": "KernelDensity (atol=rtol=0)", "N": n, "d": d, "h": h,
        "n_queries": n_queries, "seconds": t_kd, "max_abs_err": float(np.abs(kd - ref).max()),
    }]
    for small_h in (h, h / 3):
        ref_small = _common.brute_kde(Q, X, small_h) if small_h != h else ref
        t_exact, _ = timed(lambda: post.log_density(Q, small_h**2), repeats=2)
        t_topk, top = timed(lambda: indexed.log_density(Q, small_h**2, n_neighbors=64), repeats=2)
        rows.append({
            "method": f"engine, certified top-64 (h={small_h:.3g}; exact {t_exact:.3f} s)",
            "N": n, "d": d, "h": small_h, "n_queries": n_queries, "seconds": t_topk,
            "max_abs_err": float(np.abs(top - ref_small).max()),
        })
    return rows


def markdown(accuracy, speed, quick, started, info):
    ratio = speed[1]["seconds"] / speed[0]["seconds"]
    lines = _common.header("Engine benchmark", "bench_engine.py", quick, started, info)
    lines += [
        "BLAS on one thread, as KernelDensity's tree runs on one core.",
        "",
        "## Accuracy vs a brute-force float64 reference (benchmark table 4)",
        "",
        "| queries | N | d | h | engine max abs err | engine max rel err | KernelDensity max abs err | KD share off by > 17 nats | KD non-finite |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in accuracy:
        lines.append(
            f"| {r['queries']} | {r['N']} | {r['d']} | {r['h']} | {r['engine_max_abs_err']:.2e} | "
            f"{r['engine_max_rel_err']:.2e} | {r['kd_max_abs_err']:.3g} | "
            f"{100 * r['kd_share_off_by_17_nats']:.1f}% | {r['kd_nonfinite']} |"
        )
    lines += [
        "",
        "## Speed of exact scoring (benchmark table 2, engine rows)",
        "",
        "| method | N | d | queries | seconds | max abs err vs brute force |",
        "|---|---|---|---|---|---|",
    ]
    for r in speed:
        lines.append(
            f"| {r['method']} | {r['N']} | {r['d']} | {r['n_queries']} | {r['seconds']:.3f} | "
            f"{r['max_abs_err']:.2e} |"
        )
    lines += ["", f"**Speed-up of the exact engine over KernelDensity: {ratio:.1f}x** "
              "(target >= 5x at N = 1e5, d = 8, 2000 queries, error <= 1e-9).", ""]
    return "\n".join(lines), ratio


def main(argv=None):
    args, started, info = _common.begin(__doc__, argv)
    with _common.one_blas_thread():
        if args.quick:
            accuracy = accuracy_table(2000, 16, 0.3, 200, far_scale=5.0)
            speed = speed_table(5000, 8, 0.3, 200)
        else:
            accuracy = accuracy_table(10_000, 16, 0.3, 1000, far_scale=5.0)
            speed = speed_table(100_000, 8, 0.3, 2000)
    text, ratio = markdown(accuracy, speed, args.quick, started, info)
    path = _common.write("engine", args.quick, text,
                         dict(machine=info, accuracy=accuracy, speed=speed,
                              speedup_vs_kernel_density=ratio))
    print(text)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
