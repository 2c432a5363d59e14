"""Quality of the samplers against their peers (benchmark table 1).

Datasets: the four 2-D targets of ``sklearn_diffsample.datasets`` (1000 train,
5000 held-out test rows, several seeds) and scikit-learn's digits through a
15-D PCA (1297 train / 500 test, one random split per seed).  Methods: the
baselines of ``_baselines.py`` and the three estimators of the package twice,
as a user meets them: at their defaults (``bandwidth="auto"``), and tuned as
the command line's ``--cv`` tunes them (GridSearchCV over its bandwidth grid
by held-out log-likelihood, path extrapolation with a ``memory`` for the
search).  Every smoothing parameter is chosen by ``GridSearchCV`` on the SAME
``KFold`` folds (fixed seed): by held-out log-likelihood where the method has
an exact one, by held-out SW2 of its samples otherwise (GaussianMixture: BIC,
as the benchmark prescribes; the DDPM is trained once, it has no smoothing
knob).  SW2, DCR ratio and copy rate are averaged over several draws of
samples (one draw's SW2 varies by about 0.02 here); MMD and C2ST AUC come
from the first.

Usage::

    python benchmarks/bench_quality.py            # 3 seeds, full settings
    python benchmarks/bench_quality.py --quick    # 1 seed, small settings (CI)

Writes ``benchmarks/results/quality_bench{,_quick}.md``/``.json`` and
``quality{,_quick}_samples.png``.
"""

import time
import warnings

import numpy as np
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import GridSearchCV, KFold

import _common
from _baselines import MLPDDPM, SigmaCFDM, gmm_bic, kde_cv, torch_available
from sklearn_diffsample.__main__ import _bandwidth_search, bandwidth_grid
from sklearn_diffsample.datasets import load_digits_pca, make_target
from sklearn_diffsample.guided import GuidedDiffusionSampler
from sklearn_diffsample.metrics import c2st_auc, memorization, mmd, sliced_wasserstein
from sklearn_diffsample.mmsold import MMSOLDSampler
from sklearn_diffsample.path_extrapolation import PathExtrapolationDensity

TARGETS = ("checkerboard", "two_spirals", "rings", "moons")
ESTIMATORS = {"GuidedDiffusionSampler": GuidedDiffusionSampler,
              "MMSOLDSampler": MMSOLDSampler,
              "PathExtrapolationDensity": PathExtrapolationDensity}
BASELINES = ("KernelDensity-CV", "GaussianMixture-BIC", "sigma-CFDM", "MLP DDPM")
OURS = tuple(f"{name}{suffix}" for name in ESTIMATORS for suffix in ("", " (CV)"))
METHODS = BASELINES + OURS
# The sample figure shows the estimators at their defaults.
PLOTTED = BASELINES + tuple(ESTIMATORS)

FULL = dict(seeds=(0, 1, 2), targets=TARGETS, digits=True, n_gen=1000, draws=3, n_folds=3,
            kde_grid=10, cfdm_grid=3, gmm_max=20, cfdm_steps=20, ddpm_iter=2000, c2st_cv=5)
# CI smoke run: two targets, no digits.
QUICK = dict(seeds=(0,), targets=("checkerboard", "rings"), digits=False, n_gen=500, draws=1,
             n_folds=3, kde_grid=6, cfdm_grid=2, gmm_max=8, cfdm_steps=20, ddpm_iter=300,
             c2st_cv=3)


def sw2(A, B):
    return sliced_wasserstein(A, B, n_projections=200, random_state=0)


def sw2_scorer(est, X_val, y=None):
    """CV criterion of samplers without a usable likelihood: minus held-out SW2."""
    return -sw2(est.sample(len(X_val), random_state=0), X_val)


def datasets(cfg):
    """(name, seed, X_train, X_test, fresh target draws or None) for every run."""
    for name in cfg["targets"]:
        target = make_target(name)
        for seed in cfg["seeds"]:
            fresh = [target.sample(cfg["n_gen"], random_state=100 * seed + 3 + 10 * k)
                     for k in range(cfg["draws"])]
            yield (name, seed, target.sample(1000, random_state=100 * seed + 1),
                   target.sample(5000, random_state=100 * seed + 2), fresh, target)
    if not cfg["digits"]:
        return
    Z = load_digits_pca(n_components=15)[0]
    for seed in cfg["seeds"]:
        perm = np.random.default_rng(seed).permutation(len(Z))
        yield ("digits-PCA15", seed, Z[perm[500:]], Z[perm[:500]], None, None)


def select(est, grid_name, grid, X, folds, scoring=None):
    """GridSearchCV on the shared folds; returns (best params, seconds, cv table)."""
    start = time.perf_counter()
    search = GridSearchCV(est, {grid_name: list(grid)}, cv=folds, scoring=scoring,
                          refit=False, error_score="raise").fit(X)
    return search.best_params_, time.perf_counter() - start, cv_table(search, grid_name)


def cv_table(search, grid_name):
    return [(float(p[grid_name]), float(s)) for p, s in
            zip(search.cv_results_["params"], search.cv_results_["mean_test_score"])]


# sigma-CFDM's CV samples from every candidate on every fold: it runs on the first
# seed's training set only and the choice is reused for the other seeds (same law, same N).
SAMPLE_CV = ("sigma-CFDM",)
_CHOSEN = {}


def build(method, X, folds, cfg, dataset=None, seed=None):
    """(unfitted estimator with the CV-chosen parameter, selection record)."""
    scale = float(np.sqrt(np.mean(np.var(X, axis=0))))
    h_grid = scale * np.geomspace(0.02, 1.0, cfg["kde_grid"])
    if method == "KernelDensity-CV":
        start = time.perf_counter()
        search = kde_cv(X, folds, h_grid)
        est = search.best_estimator_
        return est, {"param": "bandwidth", "value": est.bandwidth,
                     "select_s": time.perf_counter() - start, "criterion": "log-lik"}
    if method == "GaussianMixture-BIC":
        start = time.perf_counter()
        est, bics = gmm_bic(X, cfg["gmm_max"])
        return est, {"param": "n_components", "value": est.n_components,
                     "select_s": time.perf_counter() - start, "criterion": "BIC"}
    if method == "MLP DDPM":
        return MLPDDPM(n_iter=cfg["ddpm_iter"]), {"param": "-", "value": None, "select_s": 0.0,
                                                   "criterion": "none (trained once)"}
    if method in ESTIMATORS:
        # Its bandwidth_ joins the record once fitted (evaluate).
        return ESTIMATORS[method](random_state=0), {"param": "bandwidth_", "value": None,
                                                    "select_s": 0.0, "criterion": "auto"}
    if method.endswith(" (CV)"):
        # The command line's own search: its grid, and path extrapolation's
        # endpoints cached for the search.
        cls, params = ESTIMATORS[method[:-len(" (CV)")]], {"random_state": 0}
        start = time.perf_counter()
        search = _bandwidth_search(cls, params, X, folds)
        best = search.best_params_["bandwidth"]
        return cls(bandwidth=best, **params), {
            "param": "bandwidth", "value": best, "select_s": time.perf_counter() - start,
            "criterion": "log-lik", "cv_table": cv_table(search, "bandwidth")}
    if method == "sigma-CFDM":
        est = SigmaCFDM(n_steps=cfg["cfdm_steps"])
        name, grid, scoring = "smoothing", np.geomspace(0.005, 0.3, cfg["cfdm_grid"]), sw2_scorer
    key = (dataset, method)
    if method in SAMPLE_CV and seed != cfg["seeds"][0] and key in _CHOSEN:
        best, seconds, table = _CHOSEN[key], 0.0, "reused from the first seed"
    else:
        best, seconds, table = select(est, name, grid, X, folds, scoring)
        _CHOSEN[key] = best
    est.set_params(**best)
    return est, {"param": name, "value": best[name], "select_s": seconds,
                 "criterion": "log-lik" if scoring is None else "held-out SW2",
                 "cv_table": table}


def draw(est, n, seed):
    """n samples; GaussianMixture.sample takes its seed from the estimator."""
    if isinstance(est, GaussianMixture):
        return est.set_params(random_state=seed).sample(n)[0]
    return est.sample(n, random_state=seed)


def draw_seeds(seed, cfg):
    """Seeds of a (method, seed) cell's draws; the first is the cell's seed."""
    return [seed + 1000 * k for k in range(cfg["draws"])]


def sample_metrics(draws, X, X_test, cfg, copies=True):
    """SW2, DCR ratio and copy rate averaged over ``draws``; MMD and C2ST of the first."""
    sw2s = [sw2(S, X_test) for S in draws]
    out = {"sw2": float(np.mean(sw2s)), "sw2_draws": sw2s,
           "mmd": mmd(draws[0], X_test, random_state=0),
           "c2st": c2st_auc(X_test, draws[0], cv=cfg["c2st_cv"], random_state=0),
           "dcr": None, "copy": None}
    if copies:
        mems = [memorization(S, X, X_test) for S in draws]
        out["dcr"] = float(np.mean([m.dcr_ratio for m in mems]))
        out["copy"] = float(np.mean([m.copy_rate for m in mems]))
    return out


def evaluate(method, X, X_test, cfg, seed, dataset=None):
    folds = list(KFold(cfg["n_folds"], shuffle=True, random_state=0).split(X))
    if method == "MLP DDPM" and not torch_available():
        return {"status": "not run: torch not installed"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est, record = build(method, X, folds, cfg, dataset, seed)
        fit_s, _ = _common.timed(lambda: est.fit(X))
        if record["value"] is None and hasattr(est, "bandwidth_"):
            record["value"] = float(est.bandwidth_)
        sample_s, first = _common.timed(lambda: draw(est, cfg["n_gen"], seed))
        draws = [first] + [draw(est, cfg["n_gen"], s) for s in draw_seeds(seed, cfg)[1:]]
        loglik = None
        if hasattr(est, "score_samples"):
            loglik = float(np.mean(est.score_samples(X_test)))
    record.update({
        "status": "ok", "loglik": loglik, **sample_metrics(draws, X, X_test, cfg),
        "fit_s": fit_s, "sample_s": sample_s,
        "warnings": sorted({str(w.message)[:160] for w in caught}),
    })
    if method == "MLP DDPM":
        record["train_s"] = est.fit_time_
    return record, first


def floor_row(X, X_test, fresh, cfg, target):
    """The iid floor: fresh draws of the same size as the samples (digits: training rows)."""
    if fresh is None:
        fresh = [X[np.random.default_rng(k).choice(len(X), min(cfg["n_gen"], len(X)),
                                                    replace=False)]
                 for k in range(cfg["draws"])]
    # Training rows against test: DCR and copy rate say nothing.
    out = {"status": "ok", **sample_metrics(fresh, X, X_test, cfg, copies=target is not None),
           "loglik": None if target is None else float(np.mean(target.log_density(X_test)))}
    return out


def run(cfg, log=print):
    rows, examples = [], {}
    for name, seed, X, X_test, fresh, target in datasets(cfg):
        floor = floor_row(X, X_test, fresh, cfg, target)
        rows.append({"dataset": name, "seed": seed, "method": "iid floor", **floor})
        for method in METHODS:
            start = time.perf_counter()
            try:
                out = evaluate(method, X, X_test, cfg, seed, name)
            except Exception as exc:  # a broken estimator is reported, not fatal
                out = {"status": f"failed: {type(exc).__name__}: {str(exc)[:200]}"}
            if isinstance(out, tuple):
                out, S = out
                if seed == cfg["seeds"][0]:
                    examples[(name, method)] = S
            rows.append({"dataset": name, "seed": seed, "method": method, **out})
            log(f"{name} seed {seed} {method}: {out.get('status')} "
                f"sw2={out.get('sw2', float('nan')):.4g} ({time.perf_counter() - start:.1f} s)")
        examples[(name, "held-out data")] = X_test[: cfg["n_gen"]]
    return rows, examples


METRICS = [("loglik", "held-out log-lik", "{:.3f}"), ("sw2", "SW2", "{:.4f}"),
           ("mmd", "MMD²", "{:.2e}"), ("c2st", "C2ST AUC", "{:.3f}"), ("dcr", "DCR ratio", "{:.3f}"),
           ("copy", "copy rate", "{:.3f}"), ("fit_s", "fit s", "{:.2f}"),
           ("sample_s", "sample s", "{:.2f}"), ("select_s", "CV s", "{:.1f}")]


def collect(rows, dataset, method, key):
    return [r.get(key) for r in rows if r["dataset"] == dataset and r["method"] == method
            and r.get("status") == "ok"]


def mean_of(rows, dataset, method, key):
    vals = [v for v in collect(rows, dataset, method, key) if v is not None]
    return float(np.mean(vals)) if vals else None


def quality_table(rows, names):
    lines = ["| dataset | method | chosen parameter (criterion) | "
             + " | ".join(label for _, label, _ in METRICS) + " |",
             "|---|---|---|" + "---|" * len(METRICS)]
    for name in names:
        for method in ("iid floor",) + METHODS:
            sel = [r for r in rows if r["dataset"] == name and r["method"] == method]
            status = sel[0].get("status") if sel else "missing"
            if status != "ok":
                lines.append(f"| {name} | {method} | {status} |" + " |" * len(METRICS))
                continue
            values = [r.get("value") for r in sel]
            param = ("-" if method == "iid floor" else
                     f"{sel[0]['param']} = {_common.mean_std(values)} ({sel[0]['criterion']})"
                     if values[0] is not None else sel[0]["criterion"])
            cells = []
            for key, _, fmt in METRICS:
                vals = collect(rows, name, method, key)
                if key == "loglik" and method in ("sigma-CFDM", "MLP DDPM"):
                    cells.append("none (no density)")
                else:
                    cells.append(_common.mean_std(vals, fmt))
            label = "iid floor (fresh target draw)" if method == "iid floor" else method
            if method == "iid floor" and name.startswith("digits"):
                label = "floor (training rows vs test)"
            if method == "MLP DDPM":
                label += f" (train {_common.mean_std(collect(rows, name, method, 'train_s'), '{:.1f}')} s)"
            lines.append(f"| {name} | {label} | {param} | " + " | ".join(cells) + " |")
    return lines


def winners(rows, names):
    lines = ["| dataset | best SW2 | best held-out log-lik | highest DCR ratio (copies least; well above 1 = farther from the training rows than fresh data, i.e. blurred) |",
             "|---|---|---|---|"]
    for name in names:
        def best(key, sign):
            scored = [(mean_of(rows, name, m, key), m) for m in METHODS]
            scored = [(v, m) for v, m in scored if v is not None]
            if not scored:
                return "n/a"
            v, m = max(scored, key=lambda vm: sign * vm[0])
            return f"{m} ({v:.4g})"
        lines.append(f"| {name} | {best('sw2', -1)} | {best('loglik', 1)} | {best('dcr', 1)} |")
    return lines


def targets(rows):
    """the quality targets of docs/benchmarks.rst, each met or open with the measured gap."""
    lines, verdicts = [], {}
    for method in ("MMSOLDSampler", "MMSOLDSampler (CV)", "PathExtrapolationDensity",
                   "PathExtrapolationDensity (CV)"):
        for name in sorted({r["dataset"] for r in rows} & set(TARGETS), key=TARGETS.index):
            s_ours, s_kde = mean_of(rows, name, method, "sw2"), mean_of(rows, name, "KernelDensity-CV", "sw2")
            d_ours, d_kde = mean_of(rows, name, method, "dcr"), mean_of(rows, name, "KernelDensity-CV", "dcr")
            if None in (s_ours, s_kde, d_ours, d_kde):
                lines.append(f"- {method} on {name}: not measured ({_status(rows, name, method)}).")
                verdicts[f"{method}/{name}"] = "not measured"
                continue
            ok = s_ours <= s_kde and d_ours > d_kde
            verdicts[f"{method}/{name}"] = "met" if ok else "open"
            lines.append(
                f"- {method} on {name}: SW2 {s_ours:.4f} vs KernelDensity-CV {s_kde:.4f} "
                f"(ratio {s_ours / s_kde:.2f}, target <= 1), DCR ratio {d_ours:.3f} vs {d_kde:.3f} "
                f"(target: higher) -> **{'met' if ok else 'open'}**.")
    for method in ("GuidedDiffusionSampler", "GuidedDiffusionSampler (CV)"):
        for name in [n for n in TARGETS + ("digits-PCA15",) if n in {r["dataset"] for r in rows}]:
            g, k = mean_of(rows, name, method, "loglik"), mean_of(rows, name, "KernelDensity-CV", "loglik")
            if None in (g, k):
                lines.append(f"- {method} log-lik on {name}: not measured.")
                continue
            # The variance matching moved the law off KernelDensity's: a
            # likelihood above it meets the target, one more than 2% below does not.
            ok = g - k >= -0.02 * max(1.0, abs(k))
            verdicts[f"{method}/{name}"] = "met" if ok else "open"
            lines.append(f"- {method} on {name}: held-out log-lik {g:.4f} vs KernelDensity-CV "
                         f"{k:.4f} (gap {g - k:+.4f} nats; target: at most 2% below) -> "
                         f"**{'met' if ok else 'open'}**.")
    return lines, verdicts


def _status(rows, name, method):
    sel = [r.get("status") for r in rows if r["dataset"] == name and r["method"] == method]
    return sel[0] if sel else "missing"


def plot(examples, names, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cols = ("held-out data",) + PLOTTED
    fig, axes = plt.subplots(len(names), len(cols), figsize=(2.2 * len(cols), 2.2 * len(names)),
                             squeeze=False)
    for i, name in enumerate(names):
        for j, method in enumerate(cols):
            ax = axes[i, j]
            S = examples.get((name, method))
            if S is not None:
                ax.scatter(S[:, 0], S[:, 1], s=1, alpha=0.5)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(method.replace("Sampler", "").replace("Density", ""), fontsize=8)
            if j == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None):
    args, started, info = _common.begin(__doc__, argv, quick_help="1 seed, small settings (CI)")
    cfg = QUICK if args.quick else FULL
    with _common.one_blas_thread():
        rows, examples = run(cfg)
    names = list(cfg["targets"]) + (["digits-PCA15"] if cfg["digits"] else [])
    target_lines, verdicts = targets(rows)
    png = _common.stem("quality", args.quick) + "_samples.png"
    plot(examples, list(cfg["targets"]), _common.RESULTS / png)
    grid = bandwidth_grid()
    lines = _common.header("Quality benchmark (benchmark table 1)", "bench_quality.py",
                           args.quick, started, info)
    lines += [
        f"Settings: seeds {list(cfg['seeds'])}; targets {list(cfg['targets'])}"
        + (" and digits" if cfg["digits"] else " (no digits in the quick run)")
        + "; 2-D targets: 1000 train / 5000 held-out test rows; digits: 15-D PCA, 1297 train / "
        f"500 test; {cfg['n_gen']} generated samples per draw, {cfg['draws']} draws per method "
        "and seed (SW2, DCR ratio and copy rate are their mean; MMD and C2ST AUC come from the "
        "first). The estimators of the package appear twice: at their defaults (bandwidth "
        "\"auto\", the value it chose shown as bandwidth_) and (CV) tuned as the command line's "
        f"--cv tunes them, GridSearchCV over its bandwidth grid ({grid[0]:g} to {grid[-1]:g} "
        f"in internal units, {grid.size} values) by held-out log-likelihood, path "
        "extrapolation with a memory for the search; "
        "every other parameter at its default. Baselines: KernelDensity by GridSearchCV over "
        f"{cfg['kde_grid']} bandwidths, GaussianMixture by BIC up to {cfg['gmm_max']} components, "
        f"sigma-CFDM ({cfg['cfdm_steps']} Euler steps x 8 smoothing draws; its smoothing by "
        "held-out SW2 on the first seed's training set, reused for the other seeds, CV s = 0 "
        f"there), a DDPM ({cfg['ddpm_iter']} Adam iterations, batch 256, 100 timesteps). Every "
        f"parameter is chosen on the same {cfg['n_folds']}-fold KFold (shuffle, seed 0). Metrics "
        "against the held-out test rows: SW2 (200 projections), unbiased MMD² (median "
        f"bandwidth), C2ST AUC (gradient boosting, {cfg['c2st_cv']}-fold; 0.5 = "
        "indistinguishable), DCR ratio and copy rate against the training rows. Held-out "
        "log-lik is the mean log-density of the test rows; the iid floor row's log-lik is the "
        "true target's. Values are mean ± std over seeds. sigma-CFDM and the DDPM have no "
        "density, so no log-likelihood. BLAS runs on one thread and every estimator with "
        "n_jobs=None (one worker).",
        "",
        "## Table 1: quality",
        "",
        *quality_table(rows, names),
        "",
        "## Who wins (means over seeds)",
        "",
        *winners(rows, names),
        "",
        "## Targets (docs/benchmarks.rst)",
        "",
        *target_lines,
        "",
        f"Samples (seed {cfg['seeds'][0]}): `{png}`.",
        "",
    ]
    warned = sorted({(r["method"], w) for r in rows for w in r.get("warnings", [])})
    if warned:
        lines += ["## Warnings raised by the estimators", ""]
        lines += [f"- {m}: {w}" for m, w in warned] + [""]
    text = "\n".join(lines)
    path = _common.write("quality_bench", args.quick, text,
                         {"machine": info, "config": cfg, "rows": rows, "targets": verdicts,
                          "load_average_end": _common.load_average()})
    print(text)
    return path


if __name__ == "__main__":
    main()
