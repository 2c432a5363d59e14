"""DiffusionOverSampler against imbalanced-learn's over-samplers, downstream.

Cases: wine (class 0 against the rest), digits (the digit 3 against the rest,
PCA to 16 dimensions fitted inside each training fold) and two interleaved 2-D
spirals, each with the minority subsampled to 1:10 and 1:30 of the majority (at least
10 minority rows, which SMOTE and ADASYN need; the tables give the counts).
Resamplers: none, RandomOverSampler, SMOTE, ADASYN, DiffusionOverSampler with
w = 1 and w = 3 (all to balance).  Classifiers: LogisticRegression and
HistGradientBoostingClassifier.  Metrics over 5 stratified folds: balanced
accuracy and the minority class's F1 on the held-out fold, and the share of
synthetic minority rows whose nearest real training row is of the majority
class (rows placed off the minority's support).  Needs imbalanced-learn
(``pip install imbalanced-learn``).

Writes ``benchmarks/results/oversampling{,_quick}.md`` and ``.json``.
"""

import time
import warnings

import _common
import numpy as np
from imblearn.over_sampling import ADASYN, SMOTE, RandomOverSampler
from sklearn.datasets import load_digits, load_wine
from sklearn.decomposition import PCA
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

from sklearn_diffsample import DiffusionOverSampler

FULL = dict(ratios=(10, 30), folds=5, spiral_majority=1500)
QUICK = dict(ratios=(10,), folds=3, spiral_majority=300)


def _subsample_minority(X, y, ratio, seed):
    """Keep all majority rows (label 0) and n_majority / ratio minority rows (label 1)."""
    rng = np.random.default_rng(seed)
    majority, minority = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
    # At least 10 minority rows: SMOTE and ADASYN need 6 per training fold.
    keep = rng.choice(minority, max(len(majority) // ratio, 10), replace=False)
    rows = np.concatenate([majority, keep])
    return X[rows], y[rows]


def load_case(name, ratio, cfg):
    if name == "wine":
        X, target = load_wine(return_X_y=True)
        y = (target == 0).astype(int)
    elif name == "digits":
        X, target = load_digits(return_X_y=True)
        y = (target == 3).astype(int)
    else:
        # Two interleaved Archimedean spiral arms, 1.5 turns, radius 3, noise
        # 0.1 (the two_spirals target of sklearn_diffsample.datasets), one arm
        # per class.
        rng = np.random.default_rng(0)
        n, turns = 2 * cfg["spiral_majority"], 2 * np.pi * 1.5
        t = turns * np.sqrt(rng.uniform(size=n))
        y = rng.integers(0, 2, n)
        sign = np.where(y == 1, 1.0, -1.0)[:, None]
        X = sign * (3.0 / turns) * t[:, None] * np.c_[-np.cos(t), np.sin(t)]
        X = X + 0.1 * rng.normal(size=X.shape)
    return _subsample_minority(X.astype(float), y, ratio, seed=ratio)


RESAMPLERS = {
    "none": lambda: None,
    "RandomOverSampler": lambda: RandomOverSampler(random_state=0),
    "SMOTE": lambda: SMOTE(random_state=0),
    "ADASYN": lambda: ADASYN(random_state=0),
    "Diffusion w=1": lambda: DiffusionOverSampler(guidance_scale=1.0, random_state=0),
    "Diffusion w=3": lambda: DiffusionOverSampler(guidance_scale=3.0, random_state=0),
}
CLASSIFIERS = {
    "LogisticRegression": lambda: LogisticRegression(max_iter=2000),
    "HistGradientBoosting": lambda: HistGradientBoostingClassifier(random_state=0),
}


def _prepare(name, X_train, X_test):
    """Standardise on the training fold (and reduce digits to 16 dimensions there)."""
    if name == "digits":
        pca = PCA(16, random_state=0).fit(X_train)
        X_train, X_test = pca.transform(X_train), pca.transform(X_test)
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test)


def evaluate(name, ratio, cfg):
    X, y = load_case(name, ratio, cfg)
    folds = StratifiedKFold(cfg["folds"], shuffle=True, random_state=0)
    scores = {(r, c): {"bacc": [], "f1": [], "off": [], "s": []}
              for r in RESAMPLERS for c in CLASSIFIERS}
    for train, test in folds.split(X, y):
        X_train, X_test = _prepare(name, X[train], X[test])
        y_train, y_test = y[train], y[test]
        for rname, make in RESAMPLERS.items():
            resampler = make()
            start = time.perf_counter()
            if resampler is None:
                X_res, y_res = X_train, y_train
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    X_res, y_res = resampler.fit_resample(X_train, y_train)
            seconds = time.perf_counter() - start
            synthetic = X_res[len(X_train):]
            off = np.nan
            if len(synthetic):
                nearest = NearestNeighbors(n_neighbors=1).fit(X_train).kneighbors(synthetic)[1]
                off = float(np.mean(y_train[nearest[:, 0]] == 0))
            for cname, make_clf in CLASSIFIERS.items():
                pred = make_clf().fit(X_res, y_res).predict(X_test)
                entry = scores[rname, cname]
                entry["bacc"].append(balanced_accuracy_score(y_test, pred))
                entry["f1"].append(f1_score(y_test, pred, pos_label=1))
                entry["off"].append(off)
                entry["s"].append(seconds)
    rows = []
    for (rname, cname), v in scores.items():
        rows.append(dict(case=f"{name} 1:{ratio}", resampler=rname, classifier=cname,
                         n=len(y), n_minority=int(y.sum()),
                         balanced_accuracy=float(np.mean(v["bacc"])),
                         balanced_accuracy_std=float(np.std(v["bacc"])),
                         f1_minority=float(np.mean(v["f1"])),
                         off_support=float(np.nanmean(v["off"])) if np.any(np.isfinite(v["off"]))
                         else None,
                         resample_s=float(np.mean(v["s"]))))
    print(f"{name} 1:{ratio} done", flush=True)
    return rows


def verdicts(rows):
    """Per case and classifier: Diffusion's balanced accuracy >= SMOTE's, off-support below."""
    out = {}
    for case in dict.fromkeys(r["case"] for r in rows):
        for clf in CLASSIFIERS:
            by = {r["resampler"]: r for r in rows if r["case"] == case and r["classifier"] == clf}
            smote = by["SMOTE"]
            for w in ("Diffusion w=1", "Diffusion w=3"):
                d = by[w]
                out[case, clf, w] = dict(
                    bacc_gap=d["balanced_accuracy"] - smote["balanced_accuracy"],
                    off_gap=d["off_support"] - smote["off_support"],
                    # Off the support: below SMOTE's, or level with it at zero.
                    met=bool(d["balanced_accuracy"] >= smote["balanced_accuracy"]
                             and (d["off_support"] < smote["off_support"]
                                  or d["off_support"] == smote["off_support"] == 0.0)))
    return out


def markdown(rows, verdict, cfg, quick, started, info):
    lines = _common.header("Over-sampling benchmark", "bench_oversampling.py", quick, started,
                           info)
    lines += [
        f"{cfg['folds']}-fold stratified CV; balanced accuracy and minority F1 on the held-out "
        "folds; off-support: share of synthetic minority rows whose nearest real training row "
        "is of the majority class. Every resampler balances the classes.", ""]
    for case in dict.fromkeys(r["case"] for r in rows):
        sel = [r for r in rows if r["case"] == case]
        lines += [f"## {case} ({sel[0]['n']} rows, {sel[0]['n_minority']} minority)", "",
                  "| resampler | classifier | balanced accuracy | minority F1 | off-support | "
                  "resample s |", "|---|---|---|---|---|---|"]
        for r in sel:
            off = "-" if r["off_support"] is None else f"{r['off_support']:.3f}"
            lines.append(f"| {r['resampler']} | {r['classifier']} | "
                         f"{r['balanced_accuracy']:.3f} ± {r['balanced_accuracy_std']:.3f} | "
                         f"{r['f1_minority']:.3f} | {off} | {r['resample_s']:.2f} |")
        lines.append("")
    lines += ["## Target: balanced accuracy at least SMOTE's, off-support share below SMOTE's "
              "(or both zero)",
              "", "| case | classifier | resampler | balanced accuracy - SMOTE | "
              "off-support - SMOTE | met |", "|---|---|---|---|---|---|"]
    for (case, clf, w), v in verdict.items():
        lines.append(f"| {case} | {clf} | {w} | {v['bacc_gap']:+.3f} | {v['off_gap']:+.3f} | "
                     f"{'yes' if v['met'] else 'no'} |")
    n_met = sum(v["met"] for v in verdict.values())
    lines += ["", f"Met in {n_met} of {len(verdict)} (case, classifier, guidance) cells.", ""]
    return "\n".join(lines) + "\n"


def main(argv=None):
    args, started, info = _common.begin(__doc__, argv)
    cfg = QUICK if args.quick else FULL
    rows = []
    with _common.one_blas_thread():
        for name in ("wine", "digits", "spirals"):
            for ratio in cfg["ratios"]:
                rows += evaluate(name, ratio, cfg)
    verdict = verdicts(rows)
    text = markdown(rows, verdict, cfg, args.quick, started, info)
    path = _common.write("oversampling", args.quick, text,
                         dict(config=cfg, machine=info, rows=rows,
                              targets={"|".join(k): v for k, v in verdict.items()}))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
