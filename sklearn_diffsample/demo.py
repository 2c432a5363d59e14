"""The demo behind ``python -m sklearn_diffsample demo``.

Fits KernelDensity (bandwidth by cross-validation) and the package's three
estimators on the two-spirals target, scores them on fresh draws of the
target, prints one metrics table and draws the samples side by side.
"""

import sys
import time

import numpy as np
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KernelDensity

from ._base import data_scale
from .datasets import make_target
from .guided import GuidedDiffusionSampler
from .metrics import memorization, sliced_wasserstein
from .mmsold import MMSOLDSampler
from .path_extrapolation import PathExtrapolationDensity

__all__ = ["run_demo"]


def _timed(func):
    start = time.perf_counter()
    value = func()
    return value, time.perf_counter() - start


def _models(X, random_state):
    scale = data_scale(X)
    grid = scale * np.geomspace(0.01, 0.5, 12)
    search = GridSearchCV(KernelDensity(), {"bandwidth": grid}, cv=5).fit(X)
    h = float(search.best_params_["bandwidth"])
    # The package's estimators at their defaults (bandwidth="auto"; path
    # extrapolation at half its steps, for the demo's time), against the
    # baseline a user would tune by hand.
    return h, {
        "KernelDensity (CV)": KernelDensity(bandwidth=h),
        "GuidedDiffusionSampler": GuidedDiffusionSampler(random_state=random_state),
        "MMSOLDSampler": MMSOLDSampler(random_state=random_state),
        "PathExtrapolationDensity": PathExtrapolationDensity(
            n_steps=50, random_state=random_state),
    }


def evaluate(model, X, X_test, n_samples, random_state):
    """Fit, sample and score one model; the metrics row of the demo table."""
    _, fit_s = _timed(lambda: model.fit(X))
    samples, sample_s = _timed(lambda: model.sample(n_samples, random_state=random_state))
    loglik = float(np.mean(model.score_samples(X_test)))
    mem = memorization(samples, X, X_test)
    return samples, {
        "held-out log-lik": loglik,
        "SW2 to test": sliced_wasserstein(samples, X_test, random_state=0),
        "DCR ratio": mem.dcr_ratio,
        "copy rate": mem.copy_rate,
        "fit s": fit_s,
        "sample s": sample_s,
    }


def format_table(rows, reference):
    columns = list(next(iter(rows.values())).keys())
    lines = ["| method | " + " | ".join(columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[c]:.3g}" for c in columns) + " |")
    lines.append(f"| (target, exact) | {reference['held-out log-lik']:.3g} | "
                 f"{reference['SW2 to test']:.3g} | 1 | 0 | - | - |")
    return "\n".join(lines)


def _draw(path, X, results, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("training set", X, None)] + [(k, s, r) for k, (s, r) in results.items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6), sharex=True,
                             sharey=True)
    for ax, (name, pts, row) in zip(axes, panels):
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5, color="k" if row is None else "C0")
        label = name if row is None else (
            f"{name}\nSW2 {row['SW2 to test']:.3f}, DCR {row['DCR ratio']:.2f}")
        ax.set_title(label, fontsize=8)
        ax.set_aspect("equal")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_demo(output="diffsample_demo.png", quick=False, random_state=0):
    """Run the demo: print the metrics table, write the figure to ``output``."""
    n_train, n_test = (400, 800) if quick else (1000, 2000)
    target = make_target("two_spirals")
    X = target.sample(n_train, random_state=random_state)
    X_test = target.sample(n_test, random_state=random_state + 1)
    h, models = _models(X, random_state)
    print(f"two spirals: {n_train} training points, {n_test} test points; "
          f"KernelDensity bandwidth by 5-fold CV: {h:.4g}", file=sys.stderr)
    results = {}
    for name, model in models.items():
        print(f"  fitting and sampling {name} ...", file=sys.stderr)
        results[name] = evaluate(model, X, X_test, n_test, random_state)
    fresh = target.sample(n_test, random_state=random_state + 2)
    reference = {"held-out log-lik": float(np.mean(target.log_density(X_test))),
                 "SW2 to test": sliced_wasserstein(fresh, X_test, random_state=0)}
    print(format_table({k: r for k, (_, r) in results.items()}, reference))
    _draw(output, X, results, "sklearn-diffsample on two spirals (samples vs training set)")
    print(f"figure written to {output}", file=sys.stderr)
    return results
