"""Speed and scaling of the samplers (benchmark tables 2 and 3).

Table 2: fit time, time to draw 10^4 samples and to score 10^4 rows, over
N in {1e3, 1e4, 1e5} and d in {2, 16, 64} (standard normal data), for
``KernelDensity`` and the package's estimators: the guided sampler at its
defaults (DPM-Solver++(2M), 50 steps, clustered sums from 10,000 rows) and in
three engine modes at 20 steps (exact sums, certified top-k with a kd-tree,
top-k with a pynndescent graph); MM-SOLD and path extrapolation at 20 steps
(MM-SOLD's score estimator at its default, clustered from 10,000 rows or
above N d = 1e5; path
extrapolation's denoiser at its default, clustered from 10,000 rows).  Every sample/score cell first times a small probe; when
the probe predicts more than the per-cell cap, the 10^4 figure is the probe's
time scaled linearly (the cost is linear in the number of samples / rows) and
is marked ``~``.  Cells whose fit alone would exceed the cap are cut.

Table 3: n_jobs = 1 vs 2 speed-up, time vs N at fixed d = 16, and peak memory
(tracemalloc and ``resource.getrusage``) of scoring and sampling at
N = 1e6, d = 16 in a fresh subprocess.

Usage::

    python benchmarks/bench_speed.py            # full grid
    python benchmarks/bench_speed.py --quick    # small grid (CI)

Writes ``results/speed{,_quick}.md``/``.json``, ``results/scaling{,_quick}.md``/
``.json`` and ``results/scaling{,_quick}.png``.
"""

import argparse
import json
import subprocess
import sys
import tracemalloc
import warnings

import numpy as np
from sklearn.neighbors import KernelDensity

import _common
from _baselines import SigmaCFDM
from sklearn_diffsample.guided import GuidedDiffusionSampler
from sklearn_diffsample.mmsold import MMSOLDSampler
from sklearn_diffsample.path_extrapolation import PathExtrapolationDensity

STEPS = 20  # integrator steps of every sampler in the speed tables
# n_jobs 1 vs 2: timed calls per setting after the first (see jobs_speedup).
_JOBS_RUNS = 3
FULL = dict(Ns=(1_000, 10_000, 100_000), ds=(2, 16, 64), n_target=10_000, cap=10.0,
            probe_samples=200, probe_rows=500, mem_N=1_000_000, jobs_N=5_000, jobs_n=2048,
            jobs_n_large=25_000)
QUICK = dict(Ns=(500, 2_000), ds=(2,), n_target=1_000, cap=1.0,
             probe_samples=100, probe_rows=200, mem_N=20_000, jobs_N=1_000, jobs_n=1024,
             jobs_n_large=2048)


def methods():
    """name -> factory(bandwidth). Bandwidth: Scott's rule on unit-variance data."""
    return {
        "KernelDensity (sklearn)": lambda h: KernelDensity(bandwidth=h),
        "Guided, defaults": lambda h: GuidedDiffusionSampler(bandwidth=h),
        "Guided, exact": lambda h: GuidedDiffusionSampler(bandwidth=h, n_steps=STEPS,
                                                          denoiser="exact"),
        "Guided, certified top-64 (kd_tree)": lambda h: GuidedDiffusionSampler(
            bandwidth=h, n_steps=STEPS, n_neighbors=64, algorithm="kd_tree"),
        "Guided, top-64 (pynndescent)": lambda h: GuidedDiffusionSampler(
            bandwidth=h, n_steps=STEPS, n_neighbors=64, algorithm="nndescent", random_state=0),
        "MMSOLD, defaults": lambda h: MMSOLDSampler(n_steps=STEPS, random_state=0),
        "PathExtrapolation": lambda h: PathExtrapolationDensity(
            bandwidth=h, n_steps=STEPS, n_splits=2, n_reference_samples=200, random_state=0),
        "sigma-CFDM (reference)": lambda h: SigmaCFDM(smoothing=0.05, n_steps=STEPS),
    }


def measure(func, n_target, n_probe, cap):
    """(seconds for n_target, how): measured, or the probe scaled linearly."""
    t_probe, _ = _common.timed(lambda: func(n_probe))
    predicted = t_probe * n_target / n_probe
    if predicted <= cap:
        seconds, _ = _common.timed(lambda: func(n_target))
        return seconds, "measured"
    return predicted, f"~ from {n_probe}"


def speed_cells(cfg, log):
    rows, fit_history = [], {}
    for name, make in methods().items():
        for d in cfg["ds"]:
            for N in cfg["Ns"]:
                rows.append(one_cell(name, make, N, d, cfg, fit_history, log))
    return rows


def one_cell(name, make, N, d, cfg, fit_history, log):
    row = {"method": name, "N": N, "d": d}
    prev = fit_history.get((name, d))
    if prev is not None and prev[1] * N / prev[0] > 2 * cfg["cap"]:
        row["status"] = f"cut: fit predicted {prev[1] * N / prev[0]:.0f} s (linear in N)"
        log(f"{name} N={N} d={d}: {row['status']}")
        return row
    X = np.random.default_rng(N + d).standard_normal((N, d))
    Q = np.random.default_rng(1).standard_normal((cfg["n_target"], d))
    h = float(N ** (-1.0 / (d + 4)))
    est = make(h)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            row["fit_s"], _ = _common.timed(lambda: est.fit(X))
            fit_history[(name, d)] = (N, row["fit_s"])
            row["sample_s"], row["sample_how"] = measure(
                lambda n: est.sample(n, random_state=0), cfg["n_target"], cfg["probe_samples"], cfg["cap"])
            if hasattr(est, "score_samples"):
                row["score_s"], row["score_how"] = measure(
                    lambda n: est.score_samples(Q[:n]), cfg["n_target"], cfg["probe_rows"], cfg["cap"])
        row["status"] = "ok"
    except Exception as exc:
        row["status"] = f"failed: {type(exc).__name__}: {str(exc)[:160]}"
    log(f"{name} N={N} d={d}: {row}")
    return row


def warm_numba(log):
    """pynndescent compiles once per process; time it apart from the cells."""
    X = np.random.default_rng(0).standard_normal((2000, 4))
    seconds, _ = _common.timed(lambda: GuidedDiffusionSampler(
        n_steps=2, n_neighbors=16, algorithm="nndescent", random_state=0).fit(X).sample(64, random_state=0))
    log(f"pynndescent warm-up (numba compilation): {seconds:.1f} s")
    return seconds


def jobs_speedup(cfg, log):
    """n_jobs 1 vs 2 on the same work, BLAS on one thread in every worker."""
    X = np.random.default_rng(0).standard_normal((cfg["jobs_N"], 16))
    Q = np.random.default_rng(1).standard_normal((cfg["n_target"], 16))
    out = []
    cases = [
        ("Guided exact, sample", lambda j: GuidedDiffusionSampler(bandwidth=0.3, n_steps=STEPS, n_jobs=j),
         lambda e: e.sample(cfg["jobs_n"], random_state=0)),
        # From 10,000 patterns the default denoiser is the clustered one.
        ("Guided clustered, sample", lambda j: GuidedDiffusionSampler(
            bandwidth=0.3, n_steps=STEPS, denoiser="clustered", n_jobs=j),
         lambda e: e.sample(cfg["jobs_n"], random_state=0)),
        # A call of at least 1e9 pattern terms (here 1.1e9) prefers processes.
        (f"Guided clustered, sample {cfg['jobs_n_large']:,}", lambda j: GuidedDiffusionSampler(
            bandwidth=0.3, n_steps=STEPS, denoiser="clustered", n_jobs=j),
         lambda e: e.sample(cfg["jobs_n_large"], random_state=0)),
        ("Guided exact, score_samples", lambda j: GuidedDiffusionSampler(bandwidth=0.3, n_jobs=j),
         lambda e: e.score_samples(Q)),
        ("MMSOLD knn sums, sample", lambda j: MMSOLDSampler(n_steps=STEPS, score_estimator="knn", batch_size=512,
                                                   n_jobs=j, random_state=0),
         lambda e: e.sample(cfg["jobs_n"] // 2, random_state=0)),
        # Below N d = 1e5 the default score estimator sums every pattern.
        ("MMSOLD exact sums, sample", lambda j: MMSOLDSampler(
            n_steps=STEPS, score_estimator="exact", batch_size=512, n_jobs=j, random_state=0),
         lambda e: e.sample(cfg["jobs_n"] // 2, random_state=0)),
        ("PathExtrapolation, sample", lambda j: PathExtrapolationDensity(
            n_steps=STEPS, n_splits=2, n_reference_samples=100, batch_size=512, n_jobs=j, random_state=0),
         lambda e: e.sample(cfg["jobs_n"] // 2, random_state=0)),
    ]
    for name, make, work in cases:
        times, first = {}, {}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ests = {jobs: make(jobs).fit(X) for jobs in (1, 2)}
                for jobs, est in ests.items():
                    # The first call starts joblib's workers.
                    first[jobs], _ = _common.timed(lambda: work(est))
                # The best of the next _JOBS_RUNS compares the work itself,
                # one and two jobs in turn: the shared host moves single calls
                # by 20-40% and its speed drifts within a case (a one-job call
                # took 10.2 s, the best of the next three 6.5 s; measured),
                # which calls run one setting after the other would read as
                # a speed-up or a slow-down.
                runs = {1: [], 2: []}
                for _ in range(_JOBS_RUNS):
                    for jobs, est in ests.items():
                        runs[jobs].append(_common.timed(lambda: work(est))[0])
                times = {jobs: min(t) for jobs, t in runs.items()}
            row = {"case": name, "t1": times[1], "t2": times[2], "speedup": times[1] / times[2],
                   "first_t1": first[1], "first_t2": first[2],
                   "first_speedup": first[1] / first[2], "load": _common.load_average()}
        except Exception as exc:
            row = {"case": name, "status": f"failed: {type(exc).__name__}: {str(exc)[:160]}"}
        log(str(row))
        out.append(row)
    return out


def memory_child(N, d):
    """Runs in a fresh process: peak memory of score_samples / sample at (N, d)."""
    reset = _common.reset_peak_rss()
    X = np.random.default_rng(0).standard_normal((N, d))
    Q = np.random.default_rng(1).standard_normal((2000, d))
    rss_data = _common.peak_rss_mb()
    with _common.one_blas_thread():
        est = GuidedDiffusionSampler(bandwidth=0.3, n_steps=3, denoiser="exact").fit(X)
        rss_fitted = _common.peak_rss_mb()
        result = {"N": N, "d": d, "data_mb": X.nbytes / 2**20, "rss_with_data_mb": rss_data,
                  "rss_after_fit_mb": rss_fitted, "peak_reset": reset}
        for label, work in (("score_samples(2000 rows)", lambda: est.score_samples(Q)),
                            ("sample(1024), 3 steps", lambda: est.sample(1024, random_state=0))):
            tracemalloc.start()
            seconds, _ = _common.timed(work)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            result[label] = {"seconds": seconds, "tracemalloc_peak_mb": peak / 2**20,
                             "rss_peak_mb": _common.peak_rss_mb()}
    print(json.dumps(result))


def memory(cfg, log):
    proc = subprocess.run([sys.executable, __file__, "--memory-child", str(cfg["mem_N"]), "16"],
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        return {"status": f"failed: {proc.stderr[-300:]}"}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    log(str(result))
    return result


def _fmt(row, key):
    if row.get("status") != "ok":
        return row.get("status", "")[:60] if key == "fit_s" else ""
    if key not in row:
        return "n/a (no density)"
    how = row.get(key.replace("_s", "_how"), "measured")
    return f"{row[key]:.2f}" if how == "measured" else f"~{row[key]:.1f}"


def speed_markdown(rows, cfg):
    n = cfg["n_target"]
    lines = [f"| method | d | N | fit s | sample {n} s | score_samples {n} s |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['d']} | {r['N']:.0e} | {_fmt(r, 'fit_s')} | "
                     f"{_fmt(r, 'sample_s')} | {_fmt(r, 'score_s')} |")
    return lines


def slope(rows, method, d, key):
    pts = [(r["N"], r[key]) for r in rows if r["method"] == method and r["d"] == d
           and r.get("status") == "ok" and key in r]
    if len(pts) < 2:
        return None
    return _common.loglog_slope(*zip(*pts))


def plot_scaling(rows, d, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, ("sample_s", "score_s")):
        for method in methods():
            pts = [(r["N"], r[key]) for r in rows if r["method"] == method and r["d"] == d
                   and r.get("status") == "ok" and key in r]
            if pts:
                ax.loglog(*zip(*pts), marker="o", label=method)
        ax.set_xlabel("N (training patterns)")
        ax.set_ylabel(f"{key.replace('_s', '')} seconds (~ = extrapolated)")
        ax.set_title(f"d = {d}")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None):
    args, started, info = _common.begin(
        __doc__, argv, quick_help="small grid (CI)",
        add_arguments=lambda parser: parser.add_argument(
            "--memory-child", nargs=2, type=int, help=argparse.SUPPRESS))
    if args.memory_child:
        return memory_child(*args.memory_child)
    cfg = QUICK if args.quick else FULL
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    with _common.one_blas_thread():
        numba_s = warm_numba(log)
        rows = speed_cells(cfg, log)
        jobs = jobs_speedup(cfg, log)
    mem = memory(cfg, log)
    d_fixed = 16
    png = _common.stem("scaling", args.quick) + ".png"
    plot_scaling(rows, d_fixed, _common.RESULTS / png)

    lines = _common.header("Speed benchmark (benchmark table 2)", "bench_speed.py", args.quick, started, info)
    lines += [
        f"Standard normal data, bandwidth h = N^(-1/(d+4)) (Scott's rule at unit scale); every sampler "
        f"runs {STEPS} integrator steps (Guided: DDIM; MMSOLD: Langevin, its default score estimator (clustered from N = 1e4 or N d > 1e5, else exact sums), "
        "swarms of its default size; PathExtrapolation: 2 half-splits, 200 reference endpoints; "
        "sigma-CFDM: 8 smoothing draws, exact sums). One worker (n_jobs=None), BLAS on one thread. "
        f"Per-cell cap {cfg['cap']:.0f} s: `~x` = the probe ({cfg['probe_samples']} samples / "
        f"{cfg['probe_rows']} rows) scaled linearly to {cfg['n_target']}. pynndescent's one-off "
        f"numba compilation ({numba_s:.0f} s) is excluded (warm-up before the cells). "
        "KernelDensity's score runs at its defaults (atol = rtol = 0, a tree).",
        "",
        *speed_markdown(rows, cfg),
        "",
    ]
    speed_text = "\n".join(lines)
    _common.write("speed", args.quick, speed_text,
                  {"machine": info, "config": cfg, "steps": STEPS, "numba_warmup_s": numba_s,
                   "rows": rows, "load_average_end": _common.load_average()})
    print(speed_text)

    lines = _common.header("Scaling benchmark (benchmark table 3)", "bench_speed.py", args.quick, started, info)
    lines += [f"## n_jobs = 1 vs 2 (N = {cfg['jobs_N']}, d = 16, {STEPS} steps, BLAS one thread per worker)", "",
              f"Best of {_JOBS_RUNS} calls after a first call that starts the workers; the first "
              "call's speed-up is shown beside it.", "",
              "| case | n_jobs=1 s | n_jobs=2 s | speed-up | first call | "
              "load average (1/5/15) after |", "|---|---|---|---|---|---|"]
    for r in jobs:
        if "speedup" in r:
            lines.append(f"| {r['case']} | {r['t1']:.2f} | {r['t2']:.2f} | **{r['speedup']:.2f}x** "
                         f"| {r['first_speedup']:.2f}x | {r['load']} |")
        else:
            lines.append(f"| {r['case']} | {r['status']} | | | | |")
    ok = [r["speedup"] for r in jobs if "speedup" in r]
    lines += ["", "Target: n_jobs = 2 gives >= 1.7x on 2 cores. Measured: "
              + ", ".join(f"{r['case']} {r['speedup']:.2f}x" for r in jobs if "speedup" in r)
              + (" -> **met** on every case." if ok and min(ok) >= 1.7 else
                 " -> **open** where below 1.7x; the machine's other processes hold part of the "
                 "second core (see load average), so this bounds the speed-up from below."), ""]
    lines += [f"## Time vs N at d = {d_fixed} (log-log slope of time vs N, from table 2)", "",
              "| method | sample slope | score_samples slope |", "|---|---|---|"]
    for method in methods():
        s1, s2 = slope(rows, method, d_fixed, "sample_s"), slope(rows, method, d_fixed, "score_s")
        lines.append(f"| {method} | {'n/a' if s1 is None else f'{s1:.2f}'} | "
                     f"{'n/a' if s2 is None else f'{s2:.2f}'} |")
    lines += ["", "A slope of 1 is linear in N; below 1 is sublinear (the index pays off). "
              f"Plot: `{png}`.", ""]
    lines += [f"## Peak memory at N = {cfg['mem_N']:.0e}, d = 16 (GuidedDiffusionSampler, exact engine, fresh process)", ""]
    if "data_mb" in mem:
        lines += ["| call | seconds | tracemalloc peak during call (MB) | process peak RSS (MB) |", "|---|---|---|---|"]
        for key, val in mem.items():
            if isinstance(val, dict):
                lines.append(f"| {key} | {val['seconds']:.1f} | {val['tracemalloc_peak_mb']:.0f} | {val['rss_peak_mb']:.0f} |")
        worst = max(v["tracemalloc_peak_mb"] for v in mem.values() if isinstance(v, dict))
        worst_rss = max(v["rss_peak_mb"] for v in mem.values() if isinstance(v, dict)) - mem["rss_after_fit_mb"]
        lines += ["", f"Data: {mem['data_mb']:.0f} MB; peak RSS with the data loaded (interpreter + "
                  f"imports + data): {mem['rss_with_data_mb']:.0f} MB; peak RSS after fit (data + the estimator's stored, "
                  f"centred copy + interpreter): {mem['rss_after_fit_mb']:.0f} MB. Largest allocation peak "
                  f"during a call: {worst:.0f} MB; RSS growth over the fitted state: {worst_rss:.0f} MB. "
                  f"Target: under 1 GB beyond the stored data at N = 1e6, d = 16 -> "
                  + ("**met**" if cfg["mem_N"] >= 1_000_000 and max(worst, worst_rss) < 1024 else
                     "**not measured at 1e6 in quick mode**" if cfg["mem_N"] < 1_000_000 else "**open**") + ".", ""]
    else:
        lines.append(mem.get("status", "failed"))
    scaling_text = "\n".join(lines)
    _common.write("scaling", args.quick, scaling_text,
                  {"machine": info, "config": cfg, "n_jobs": jobs, "memory": mem,
                   "load_average_end": _common.load_average()})
    print(scaling_text)


if __name__ == "__main__":
    main()
