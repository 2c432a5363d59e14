"""Benchmark of PathExtrapolationDensity (docs/design.rst, docs/benchmarks.rst).

1. The 1-D study: target N(0, 25), N in {100, 1000} training patterns.  For
   each rule ("halves", "richardson", "none", "exact"), a Scott-bandwidth KDE
   and the p = infinity dt path (the Gaussian oracle, endpoint std 4.8978):
   held-out mean log-likelihood, KS distance of the unsmoothed endpoints to
   the target, and the copy rate (endpoints within 1e-9 of a training point).
2. Quality on the four 2-D targets: held-out log-likelihood, SW2 to
   held-out data and copy rate, against KernelDensity with a CV bandwidth.

Every number is measured in the run that writes the tables; nothing is
filtered: rows where extrapolation does not win are reported as they are.

    python benchmarks/bench_path.py [--quick]
"""

import time

import _common
import numpy as np
from scipy import stats
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KernelDensity

from sklearn_diffsample.path_extrapolation import PathExtrapolationDensity

RULES = ["halves", "richardson", "none", "exact"]
SIGMA_T = 5.0
ORACLE_STD = 4.8978  # p = infinity dt path at dtau = 0.1 (tests check it)


def copy_rate(ends, X):
    nearest = np.min(np.linalg.norm(ends[:, None, :] - X[None], axis=2), axis=1)
    return float(np.mean(nearest < 1e-9))


def study_1d(n_train, n_end, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(0, SIGMA_T, size=(n_train, 1))
    X_test = rng.normal(0, SIGMA_T, size=(5000, 1))
    target = stats.norm(scale=SIGMA_T).cdf
    rows = []
    for rule in RULES:
        t0 = time.perf_counter()
        est = PathExtrapolationDensity(extrapolation=rule, random_state=0,
                                       n_reference_samples=n_end).fit(X)
        ends = est.sample_endpoints(n_end, random_state=1)
        rows.append(dict(N=n_train, method=f"path {rule}",
                         loglik=est.score(X_test) / len(X_test),
                         ks=float(stats.kstest(ends[:, 0], target).statistic),
                         copy_rate=copy_rate(ends, X),
                         seconds=time.perf_counter() - t0))
    h = SIGMA_T * n_train ** (-1 / 5)
    kde = KernelDensity(bandwidth=h).fit(X)
    draws = kde.sample(n_end, random_state=1)
    rows.append(dict(N=n_train, method="KDE (Scott)", loglik=kde.score(X_test) / 5000,
                     ks=float(stats.kstest(draws[:, 0], target).statistic),
                     copy_rate=0.0, seconds=float("nan")))
    oracle = rng.normal(0, ORACLE_STD, size=n_end)
    rows.append(dict(N=n_train, method="p = inf dt path (oracle)",
                     loglik=float(np.mean(stats.norm(scale=SIGMA_T).logpdf(X_test))),
                     ks=float(stats.kstest(oracle, target).statistic),
                     copy_rate=0.0, seconds=float("nan")))
    return rows


def study_2d(n_train, n_end, quick):
    from sklearn_diffsample.datasets import make_target
    from sklearn_diffsample.metrics import sliced_wasserstein

    rows = []
    for name in ["checkerboard", "two_spirals", "rings", "moons"]:
        target = make_target(name)
        X = target.sample(n_train, random_state=0)
        X_test = target.sample(2000 if quick else 5000, random_state=1)
        t0 = time.perf_counter()
        est = PathExtrapolationDensity(n_reference_samples=n_end, random_state=0,
                                       n_jobs=2).fit(X)
        search = GridSearchCV(KernelDensity(),
                              {"bandwidth": np.geomspace(0.02, 1.0, 12)}, cv=3).fit(X)
        kde = search.best_estimator_
        for method, model, draws in [
            ("path halves", est, est.sample(n_end, random_state=2)),
            ("KDE-CV", kde, kde.sample(n_end, random_state=2)),
        ]:
            rows.append(dict(target=name, method=method,
                             loglik=model.score(X_test) / len(X_test),
                             sw2=float(sliced_wasserstein(draws, X_test, random_state=0)),
                             copy_rate=copy_rate(draws, X)))
        rows[-2]["seconds"] = time.perf_counter() - t0
    return rows


def to_markdown(rows, cols):
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [f"{r.get(c):.4g}" if isinstance(r.get(c), float) else str(r.get(c, ""))
                 for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    args, started, info = _common.begin(__doc__, argv, quick_help="small sizes, minutes")
    sizes = [100] if args.quick else [100, 1000]
    one_d = [r for n in sizes for r in study_1d(n, 500 if args.quick else 2000, seed=n)]
    two_d = study_2d(300 if args.quick else 1000, 500 if args.quick else 2000, args.quick)
    lines = _common.header("PathExtrapolationDensity benchmark", "bench_path.py", args.quick,
                           started, info)
    lines += ["Seconds are informative only: the 2-D fits sample with n_jobs=2.", "",
              "## 1-D study: N(0, 25) target", "",
              to_markdown(one_d, ["N", "method", "loglik", "ks", "copy_rate", "seconds"]),
              "", "## 2-D targets", "",
              to_markdown(two_d, ["target", "method", "loglik", "sw2", "copy_rate", "seconds"]),
              ""]
    path = _common.write("path", args.quick, "\n".join(lines),
                         dict(machine=info, quick=args.quick, one_d=one_d, two_d=two_d))
    print("\n".join(lines))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
