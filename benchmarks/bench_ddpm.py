"""A trained diffusion model against the training-free samplers, trained to a plateau.

An MLP noise-prediction DDPM (4 SiLU layers of width 256, 50 timesteps, Adam)
is trained on each of the four 2-D targets (1000 training rows) and on digits
reduced to 16 dimensions by PCA (70% of the rows), until its windowed training
loss stops improving (``_baselines.MLPDDPM(until_plateau=True)``); its loss
curves and training times are recorded.  It is sampled with 50 ancestral steps,
the step count of GuidedDiffusionSampler and MMSOLDSampler at their defaults.
Sliced W2 to held-out rows (5000 fresh target draws; the other 30% of digits)
for the DDPM, MMSOLDSampler and GuidedDiffusionSampler at their defaults and
KernelDensity with a cross-validated bandwidth, over 3 sampling seeds; each
comparison with MM-SOLD says better, worse or within noise (difference within
twice the combined standard error over the seeds).  Needs PyTorch.

Writes ``benchmarks/results/ddpm{,_quick}.md``, ``.json`` and ``ddpm_loss.png``.
"""

import warnings

import _common
import numpy as np
from _baselines import MLPDDPM, kde_cv
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.model_selection import KFold

from sklearn_diffsample import GuidedDiffusionSampler, MMSOLDSampler
from sklearn_diffsample.datasets import make_target
from sklearn_diffsample.metrics import sliced_wasserstein

FULL = dict(seeds=[0, 1, 2], n_gen=1000, n_iter=40000, targets=("checkerboard", "two_spirals",
                                                                 "rings", "moons"), digits=True)
QUICK = dict(seeds=[0], n_gen=300, n_iter=1500, targets=("moons",), digits=False)
DDPM = dict(hidden=256, n_layers=4, n_timesteps=50, until_plateau=True)


def datasets(cfg):
    for name in cfg["targets"]:
        target = make_target(name)
        yield name, target.sample(1000, random_state=0), target.sample(5000, random_state=1), \
            target
    if cfg["digits"]:
        X = load_digits().data.astype(float)
        order = np.random.default_rng(0).permutation(len(X))
        cut = int(0.7 * len(X))
        pca = PCA(16, random_state=0).fit(X[order[:cut]])
        yield "digits-PCA16", pca.transform(X[order[:cut]]), pca.transform(X[order[cut:]]), None


def run(name, train, test, target, cfg):
    scale = float(np.sqrt(np.mean(np.var(train, axis=0))))
    models = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models["KernelDensity-CV"] = kde_cv(train, KFold(3, shuffle=True, random_state=0),
                                            scale * np.geomspace(0.02, 1.0, 15)).best_estimator_
        models["GuidedDiffusionSampler"] = GuidedDiffusionSampler().fit(train)
        models["MMSOLDSampler"] = MMSOLDSampler(random_state=0).fit(train)
        ddpm = MLPDDPM(n_iter=cfg["n_iter"], **DDPM).fit(train)
    models["MLP DDPM"] = ddpm
    sw2 = {m: [] for m in ["iid floor", *models]} if target is not None else \
        {m: [] for m in models}
    for seed in cfg["seeds"]:
        if target is not None:
            sw2["iid floor"].append(sliced_wasserstein(
                target.sample(cfg["n_gen"], random_state=100 + seed), test, random_state=0))
        for m, est in models.items():
            sw2[m].append(sliced_wasserstein(est.sample(cfg["n_gen"], random_state=seed), test,
                                             random_state=0))
    print(f"{name}: DDPM {ddpm.n_iter_} iterations in {ddpm.fit_time_:.0f} s", flush=True)
    return dict(dataset=name, sw2=sw2, ddpm_iter=ddpm.n_iter_, ddpm_fit_s=ddpm.fit_time_,
                ddpm_final_loss=ddpm.final_loss_, loss_curve=ddpm.loss_curve_)


def compare(a, b):
    """'better' / 'worse' / 'within noise' for the mean of a against b (lower is better)."""
    se = np.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b)) if len(a) > 1 else 0.0
    diff = np.mean(a) - np.mean(b)
    if abs(diff) <= 2 * se:
        return "within noise"
    return "better" if diff < 0 else "worse"


def figure(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        window = DDPM_WINDOW
        ax.plot(window * np.arange(1, len(r["loss_curve"]) + 1), r["loss_curve"],
                label=f"{r['dataset']} ({r['ddpm_fit_s']:.0f} s)")
    ax.set_xlabel("minibatches")
    ax.set_ylabel(f"mean training loss per {DDPM_WINDOW} minibatches")
    ax.set_title("MLP DDPM trained to a loss plateau")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


DDPM_WINDOW = MLPDDPM().window


def markdown(results, cfg, quick, started, info):
    lines = _common.header("Trained DDPM against the training-free samplers", "bench_ddpm.py",
                           quick, started, info)
    lines += [
        f"SW2 to held-out rows, {cfg['n_gen']} samples, mean ± std over seeds {cfg['seeds']}. "
        "The DDPM: MLP 4 x 256 SiLU, 50 timesteps, trained until the mean loss of 500-minibatch "
        "windows stopped improving by 0.5% for 4 windows, twice (the learning rate halved "
        "in between); sampled with 50 ancestral steps, as the package's samplers run 50 "
        "steps at their defaults. Loss curves: `ddpm_loss.png`.", "",
        "| dataset | iid floor | KDE-CV | Guided | MM-SOLD | MLP DDPM | DDPM iterations | "
        "DDPM training s | MM-SOLD vs DDPM | Guided vs DDPM |",
        "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        cell = {m: _common.mean_std(v) for m, v in r["sw2"].items()}
        lines.append(
            f"| {r['dataset']} | {cell.get('iid floor', '-')} | {cell['KernelDensity-CV']} | "
            f"{cell['GuidedDiffusionSampler']} | {cell['MMSOLDSampler']} | {cell['MLP DDPM']} | "
            f"{r['ddpm_iter']} | {r['ddpm_fit_s']:.0f} | "
            f"{compare(r['sw2']['MMSOLDSampler'], r['sw2']['MLP DDPM'])} | "
            f"{compare(r['sw2']['GuidedDiffusionSampler'], r['sw2']['MLP DDPM'])} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    args, started, info = _common.begin(__doc__, argv)
    from _baselines import torch_available

    if not torch_available():
        print("bench_ddpm: PyTorch is not installed; nothing to run.")
        return
    cfg = QUICK if args.quick else FULL
    with _common.one_blas_thread():
        results = [run(*data, cfg) for data in datasets(cfg)]
    text = markdown(results, cfg, args.quick, started, info)
    figure(results, _common.RESULTS / (_common.stem("ddpm", args.quick) + "_loss.png"))
    path = _common.write("ddpm", args.quick, text, dict(config=cfg, machine=info,
                                                        results=results))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
