"""Benchmark of MMSOLDSampler (docs/design.rst, docs/benchmarks.rst).

The sections, in the order of the written tables:

1. The fit's cost in exact engine passes (issue 12): MMSOLDSampler at its
   defaults fitted on N = 10,000 rows of the 16-d mixture of section 2,
   against one exact engine pass of 2000 queries over the same patterns (the
   fitted posterior's ``log_density``), each the fastest of three, timed in
   the same run.  Target: at most 10 passes.
2. The log-normaliser against the dimension (d in 2..32, a 10-component
   Gaussian mixture, N = 500, MMSOLDSampler at its defaults): the ESS and the
   reported standard error of log Z, the spread of log Z over reruns of the
   importance sampler at the fitted tilt (does the reported error hold?), the
   spread of the held-out log-likelihood over refits with other seeds (tilt
   and log Z together), and the fit time.  Target (issue 11): standard error
   at most 0.05 nats up to d = 32.
3. Time per Langevin step against the number of patterns N in {1e3, 1e4, 1e5}
   at d = 16 (the mixture of section 2), with the "knn" score estimator (K nearest patterns from a
   pynndescent index plus L uniform remainder patterns): the claim to test is
   that a step costs sublinearly in N.  The index build is timed on its own;
   pynndescent's numba compilation is triggered on a small warm-up index first
   and not counted.  The timed fit uses smoothing = 0 (no calibration), then
   the fitted sigma is set to the fitted delta (what smoothing="auto" gives)
   so that each timed step runs the full smoothed score with M = 32
   antithetic draws: calibration does not change the cost of a step.
4. Quality on the four 2-D targets (N = 1000 training points, 5000
   held-out): SW2 to the held-out data, DCR ratio and copy rate of
   MMSOLDSampler at its defaults against KernelDensity with a GridSearchCV
   bandwidth, and the iid floor (SW2 of fresh target draws of the same size).

Every number is measured in the run that writes the tables; nothing is
filtered: rows where MM-SOLD loses are reported as they are.

    python benchmarks/bench_mmsold.py [--quick]
"""

import warnings

import numpy as np

from _common import begin, header, mean_std, timed, write
from _baselines import kde_cv
from sklearn_diffsample import PatternPosterior
from sklearn_diffsample._calibration import DefensiveProposal, importance_log_normalizer
from sklearn_diffsample.datasets import make_target
from sklearn_diffsample.metrics import memorization, sliced_wasserstein
from sklearn_diffsample.mmsold import MMSOLDSampler, _n_importance_draws

TARGETS = ["checkerboard", "two_spirals", "rings", "moons"]
FULL = dict(sizes=(1_000, 10_000, 100_000), d=16, particles=500, timed_steps=10,
            n_train=1000, n_test=5000, n_gen=1000, seeds=(0, 1, 2), kde_grid=12,
            log_z_dims=(2, 4, 8, 16, 32), log_z_n=500, log_z_reruns=5, passes_N=10_000)
QUICK = dict(sizes=(1_000, 3_000), d=16, particles=200, timed_steps=3,
             n_train=400, n_test=1000, n_gen=300, seeds=(0,), kde_grid=6,
             log_z_dims=(2, 8), log_z_n=200, log_z_reruns=3, passes_N=2_000)
LOG_Z_TARGET = 0.05


# ----------------------------------------------------------------- speed
def warm_up_numba():
    """Compile pynndescent's kernels on a small index (not part of any timing)."""
    X = np.random.default_rng(0).normal(size=(500, 4))
    PatternPosterior(X, algorithm="nndescent", random_state=0).kneighbors(X[:10], 5)


def step_time(N, cfg):
    # The mixture of the log Z table: on Gaussian data the variance-matched
    # delta runs to 16 times the KDE's, where the particles sit far from
    # every pattern and pynndescent's graph search slows down (docs/design.rst).
    X, _ = _mixture(cfg["d"], N, N)
    est = MMSOLDSampler(smoothing=0.0, score_estimator="knn", algorithm="nndescent",
                        batch_size=cfg["particles"], n_steps=1, random_state=0)
    build, _ = timed(lambda: est.fit(X))
    est.smoothing_ = est.bandwidth_  # the "auto" sigma equals the fitted delta
    one, _ = timed(lambda: est.sample(cfg["particles"], random_state=1))
    est.set_params(n_steps=1 + cfg["timed_steps"])
    more, _ = timed(lambda: est.sample(cfg["particles"], random_state=1))
    # The difference removes the per-call set-up (initial draws, retraction).
    per_step = (more - one) / cfg["timed_steps"]
    return dict(N=N, d=cfg["d"], particles=cfg["particles"], draws=est.n_smoothing_draws_,
                index_build_s=build, step_s=per_step,
                step_per_particle_us=1e6 * per_step / cfg["particles"])


def speed_table(cfg):
    warm_up_numba()
    rows = [step_time(N, cfg) for N in cfg["sizes"]]
    for row in rows:
        row["step_ratio_vs_smallest_N"] = row["step_s"] / rows[0]["step_s"]
    return rows


# --------------------------------------------------------------- quality
def quality_rows(name, cfg):
    target = make_target(name)
    X = target.sample(cfg["n_train"], random_state=0)
    X_test = target.sample(cfg["n_test"], random_state=1)
    bandwidths = np.geomspace(0.02, 0.5, cfg["kde_grid"])
    kde = kde_cv(X, 3, bandwidths).best_estimator_
    est, fit_s = None, 0.0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit_s, est = timed(lambda: MMSOLDSampler(random_state=0).fit(X))
    results = {"iid floor": [], "KernelDensity-CV": [], "MMSOLDSampler": []}
    sample_s = []
    for seed in cfg["seeds"]:
        draws = {"iid floor": target.sample(cfg["n_gen"], random_state=100 + seed),
                 "KernelDensity-CV": kde.sample(cfg["n_gen"], random_state=seed)}
        seconds, draws["MMSOLDSampler"] = timed(lambda: est.sample(cfg["n_gen"], random_state=seed))
        sample_s.append(seconds)
        for method, Z in draws.items():
            mem = memorization(Z, X, X_test)
            results[method].append(dict(sw2=sliced_wasserstein(Z, X_test, random_state=0),
                                        dcr=mem.dcr_ratio, copy=mem.copy_rate))
    rows = []
    for method, per_seed in results.items():
        rows.append(dict(
            target=name, method=method,
            sw2=[r["sw2"] for r in per_seed], dcr=[r["dcr"] for r in per_seed],
            copy_rate=[r["copy"] for r in per_seed],
            detail=(f"h = {kde.bandwidth:.3f}" if method == "KernelDensity-CV" else
                    f"delta = {est.bandwidth_:.3f}, sigma = {est.smoothing_:.3f}, "
                    f"{est.n_steps} steps, ESS {est.calibration_ess_:.2f}, fit {fit_s:.1f} s, "
                    f"sample {np.mean(sample_s):.1f} s"
                    + (f", {len(caught)} warning(s)" if caught else "")
                    if method == "MMSOLDSampler" else "")))
    return rows


# ------------------------------------------------------------- log Z vs d
def _mixture(d, n, seed):
    rng = np.random.default_rng(seed)
    centres = 2.0 * rng.normal(size=(10, d))
    return centres[rng.integers(0, 10, n)] + rng.normal(size=(n, d)), centres


def log_z_row(d, cfg):
    X, centres = _mixture(d, cfg["log_z_n"], d)
    rng = np.random.default_rng(1000 + d)
    X_test = centres[rng.integers(0, 10, 1000)] + rng.normal(size=(1000, d))
    fits, caught_all = [], 0
    for seed in range(cfg["log_z_reruns"]):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit_s, est = timed(lambda: MMSOLDSampler(random_state=seed).fit(X))
        caught_all += len(caught)
        fits.append((fit_s, est, float(np.mean(est.score_samples(X_test)))))
    est = fits[0][1]
    proposal = DefensiveProposal(est.posterior_, est.bandwidth_, est.swarm_mean_,
                                 est.swarm_scale_)
    reruns = [importance_log_normalizer(
        est._tilted_energy, proposal, _n_importance_draws(est.posterior_.n_patterns),
        np.random.default_rng(seed), rows=est._score_rows)[0]
        for seed in range(100, 100 + cfg["log_z_reruns"])]
    return dict(d=d, N=cfg["log_z_n"], multipliers=d + d * (d + 1) // 2,
                ess=[f[1].calibration_ess_ for f in fits],
                se=[f[1].log_normalizer_se_ for f in fits],
                log_z_rerun_std=float(np.std(reruns, ddof=1)),
                heldout_ll_std=float(np.std([f[2] for f in fits], ddof=1)),
                fit_s=[f[0] for f in fits], warnings=caught_all,
                target_met=bool(max(f[1].log_normalizer_se_ for f in fits) <= LOG_Z_TARGET
                                and np.std(reruns, ddof=1) <= LOG_Z_TARGET))


def fit_passes(cfg):
    """The default fit's seconds over those of one exact pass of 2000 queries."""
    X, _ = _mixture(cfg["d"], cfg["passes_N"], 7)
    fit_s, est = min((timed(lambda: MMSOLDSampler(random_state=0).fit(X)) for _ in range(3)),
                     key=lambda pair: pair[0])
    Z = est._to_internal(X[:2000])
    s2 = est.bandwidth_**2
    pass_s = min(timed(lambda: est.posterior_.log_density(Z, s2))[0] for _ in range(3))
    return dict(N=cfg["passes_N"], d=cfg["d"], fit_s=fit_s, pass_s=pass_s,
                passes=fit_s / pass_s, score_estimator=est.score_estimator_,
                log_z_se=est.log_normalizer_se_, target_met=bool(fit_s / pass_s <= 10))


def verdict(rows):
    """Per target: does MM-SOLD reach SW2 <= KDE-CV's with a higher DCR ratio?"""
    out = {}
    for name in {r["target"] for r in rows}:
        by = {r["method"]: r for r in rows if r["target"] == name}
        mm, kd = by["MMSOLDSampler"], by["KernelDensity-CV"]
        out[name] = dict(sw2_ratio=float(np.mean(mm["sw2"]) / np.mean(kd["sw2"])),
                         dcr_difference=float(np.mean(mm["dcr"]) - np.mean(kd["dcr"])),
                         target_met=bool(np.mean(mm["sw2"]) <= np.mean(kd["sw2"])
                                         and np.mean(mm["dcr"]) > np.mean(kd["dcr"])))
    return out


# ---------------------------------------------------------------- output
def markdown(speed, quality, verdicts, log_z, passes, cfg, quick, started, info):
    lines = header("MMSOLDSampler benchmark", "bench_mmsold.py", quick, started, info)
    lines += [
        f"## The fit in exact engine passes (N = {passes['N']:,}, d = {passes['d']}, defaults)",
        "",
        "MMSOLDSampler's default fit (the held-out bandwidth search, then the moment tilt "
        "and log Z, V and the proposal's KDE summed in one matrix product per draw) against "
        "one exact engine pass of 2000 queries over the same patterns, each the fastest of "
        "three, in the same run; the 10-component mixture of the log Z table. Target "
        "(issue 12): at most 10 passes.",
        "",
        "| fit s | one pass s | passes | score estimator | log Z SE | met |",
        "|---|---|---|---|---|---|",
        f"| {passes['fit_s']:.2f} | {passes['pass_s']:.3f} | {passes['passes']:.0f} | "
        f"{passes['score_estimator']} | {passes['log_z_se']:.3f} | "
        f"{'yes' if passes['target_met'] else 'no'} |",
        "",
        f"## log Z against the dimension (N = {cfg['log_z_n']}, 10-component Gaussian "
        f"mixture, defaults, {cfg['log_z_reruns']} seeds)",
        "",
        "ESS and reported SE of the fitted log Z (mean over the seeds, and the largest SE); "
        "rerun std: the spread of log Z over reruns of the importance sampler at the first "
        "fit's tilt (what the reported SE claims to be); held-out LL std: the spread of the "
        "mean held-out log-likelihood over refits with other seeds (tilt and log Z together). "
        f"Target: SE at most {LOG_Z_TARGET} nats.",
        "",
        "| d | multipliers | ESS | SE mean / max | rerun std | held-out LL std | fit s | "
        "warnings | met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in log_z:
        lines.append(f"| {r['d']} | {r['multipliers']} | {np.mean(r['ess']):.2f} | "
                     f"{np.mean(r['se']):.3f} / {np.max(r['se']):.3f} | "
                     f"{r['log_z_rerun_std']:.3f} | {r['heldout_ll_std']:.3f} | "
                     f"{np.mean(r['fit_s']):.2f} | {r['warnings']} | "
                     f"{'yes' if r['target_met'] else 'no'} |")
    lines += [
        "",
        "## Time per step vs N (d = 16, score_estimator=\"knn\", algorithm=\"nndescent\")",
        "",
        f"One swarm of {cfg['particles']} particles, K = L = 50, M antithetic draws per "
        "particle; time per step from the difference of a "
        f"{1 + cfg['timed_steps']}-step and a 1-step run; patterns from the 10-component "
        "mixture of the log Z table. "
        "Index build = fit with smoothing = 0 (pynndescent graph; numba compiled beforehand).",
        "",
        "| N | M | index build (s) | time per step (s) | µs per particle-step | step time / smallest N |",
        "|---|---|---|---|---|---|",
    ]
    for r in speed:
        lines.append(f"| {r['N']:,} | {r['draws']} | {r['index_build_s']:.2f} | {r['step_s']:.3f} | "
                     f"{r['step_per_particle_us']:.0f} | {r['step_ratio_vs_smallest_N']:.2f} |")
    lines += [
        "",
        f"## Quality on the 2-D targets (N = {cfg['n_train']} train, {cfg['n_test']} held out, "
        f"{cfg['n_gen']} samples, seeds {list(cfg['seeds'])})",
        "",
        "SW2 to the held-out data (200 projections), DCR ratio (median distance sample -> train / "
        "test -> train; about 1 = like fresh data), copy rate (samples within 1e-8 x data scale "
        "of a training row). MMSOLDSampler at its defaults; KernelDensity bandwidth by "
        "3-fold GridSearchCV. The iid floor is fresh target draws of the same size.",
        "",
        "| target | method | SW2 | DCR ratio | copy rate | detail |",
        "|---|---|---|---|---|---|",
    ]
    for r in quality:
        lines.append(f"| {r['target']} | {r['method']} | {mean_std(r['sw2'])} | "
                     f"{mean_std(r['dcr'], '{:.2f}')} | {mean_std(r['copy_rate'], '{:.3f}')} | "
                     f"{r['detail']} |")
    lines += ["", "Target (docs/benchmarks.rst): SW2 no worse than KernelDensity-CV with a higher DCR "
              "ratio.", "", "| target | SW2 MM-SOLD / KDE-CV | DCR MM-SOLD - KDE-CV | met |",
              "|---|---|---|---|"]
    for name in TARGETS:
        v = verdicts[name]
        lines.append(f"| {name} | {v['sw2_ratio']:.2f} | {v['dcr_difference']:+.2f} | "
                     f"{'yes' if v['target_met'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    args, started, info = begin(__doc__, argv, quick_help="small sizes, one seed")
    cfg = QUICK if args.quick else FULL
    log_z = [log_z_row(d, cfg) for d in cfg["log_z_dims"]]
    quality = [row for name in TARGETS for row in quality_rows(name, cfg)]
    verdicts = verdict(quality)
    passes = fit_passes(cfg)
    speed = speed_table(cfg)
    text = markdown(speed, quality, verdicts, log_z, passes, cfg, args.quick, started, info)
    path = write("mmsold_bench", args.quick, text, dict(config=cfg, machine=info, speed=speed,
                                                  quality=quality, verdict=verdicts,
                                                  log_z=log_z, fit_passes=passes))
    print(text)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
