"""Class labels: encoding, and class-conditional models built from one per class.

An estimator without a class mechanism of its own (MM-SOLD) becomes
class-conditional by fitting one copy of itself per class: ``fit(X, y)`` keeps
the model of all rows and adds ``class_models_``; ``sample(n, seed, y=...)``
routes each requested row to its class's model, class k drawing from the k-th
child of the call's seed, so the result is the same for any ``n_jobs``.
:func:`beyond_class_reach` measures how far guided samples left their class.
"""

import numpy as np
from sklearn.base import clone
from sklearn.utils import column_or_1d
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_consistent_length

from ._neighbors import PatternIndex

__all__ = ["beyond_class_reach", "encode_fit_labels", "encode_labels", "fit_class_models",
           "sample_by_class", "score_by_class"]


def encode_fit_labels(X, y):
    """Class codes and classes of fit's ``y``; continuous targets are refused."""
    if y is None:
        return None, None
    y = column_or_1d(y, warn=True)
    check_consistent_length(X, y)
    kind = type_of_target(y, raise_unknown=True)
    if kind not in ("binary", "multiclass"):
        raise ValueError(
            f"y must hold class labels (a binary or multiclass target) to condition "
            f"on, got a {kind!r} target. Fit without y, or bin it into classes first."
        )
    classes, codes = np.unique(y, return_inverse=True)
    return codes.reshape(-1), classes


def encode_labels(estimator, values, n_rows):
    """Class codes of ``values`` (one label, or one label per row) for a fitted estimator."""
    if not hasattr(estimator, "classes_"):
        raise ValueError(
            f"y was given, but this {type(estimator).__name__} was fitted without "
            "class labels; call fit(X, y) with labels to condition on classes."
        )
    values = np.asarray(values)
    if values.ndim == 0:
        values = np.full(n_rows, values.item(), dtype=object)
    elif values.ndim != 1 or values.shape[0] != n_rows:
        raise ValueError(
            f"y must be one class label or an array of {n_rows} labels, got "
            f"shape {values.shape}."
        )
    known = {label: code for code, label in enumerate(estimator.classes_.tolist())}
    uniques, inverse = np.unique(values.astype(object), return_inverse=True)
    unknown = [u for u in uniques.tolist() if u not in known]
    if unknown:
        raise ValueError(
            f"Unknown class label(s) {unknown}; the known classes are "
            f"{estimator.classes_.tolist()}."
        )
    return np.array([known[u] for u in uniques.tolist()], dtype=np.intp)[inverse]


def fit_class_models(estimator, X, codes, classes):
    """One unfitted copy of ``estimator`` per class code, fitted on that class's rows."""
    models = []
    for k, label in enumerate(classes.tolist()):
        rows = X[codes == k]
        try:
            models.append(clone(estimator).fit(rows))
        except ValueError as exc:
            # The copy only sees its class's rows: name the class.
            raise ValueError(f"Class {label!r}: {exc}") from exc
    return models


def sample_by_class(models, codes, seed, n_features):
    """Row i drawn from ``models[codes[i]]``; class k seeded by the k-th child of ``seed``."""
    out = np.empty((len(codes), n_features))
    for k, child in enumerate(seed.spawn(len(models))):
        rows = np.flatnonzero(codes == k)
        if rows.size:
            out[rows] = models[k].sample(rows.size, child)
    return out


def score_by_class(score, X, codes):
    """Log-density of row i under class ``codes[i]``: ``score(rows, code)`` per class."""
    out = np.empty(X.shape[0])
    for k in np.unique(codes):
        rows = codes == k
        out[rows] = score(X[rows], int(k))
    return out


def beyond_class_reach(samples, codes, class_patterns, kernel_std, n_reference=1000,
                       max_patterns=20_000):
    """Per class code: (count, total) of its samples farther from every class pattern
    than 99% of draws from the class's own kernel density.

    ``class_patterns(code)`` gives that class's patterns and ``kernel_std`` the
    std of the class law's kernel (all in internal units); the reference draws
    are a pattern plus kernel noise, from a fixed seed, so the check is
    deterministic.  The class's own law (guidance w = 1) puts about 1% of its
    samples beyond that reach.  Beyond ``max_patterns`` patterns, distances
    are measured to a fixed random subset of that many, for the reference
    draws (still drawn from every pattern) and the samples alike, so that the
    check stays an exact search of bounded cost.
    """
    rng = np.random.default_rng(0)
    shares = {}
    for code in np.unique(codes):
        patterns = class_patterns(int(code))
        reference = (patterns[rng.integers(0, len(patterns), n_reference)]
                     + kernel_std * rng.standard_normal((n_reference, patterns.shape[1])))
        if len(patterns) > max_patterns:
            patterns = patterns[rng.choice(len(patterns), max_patterns, replace=False)]
        index = PatternIndex(algorithm="auto").fit(patterns)
        # Squared distances: the comparison is the same.
        reach = np.quantile(index.kneighbors(reference, 1)[0][:, 0], 0.99)
        sq_dist = index.kneighbors(samples[codes == code], 1)[0][:, 0]
        shares[int(code)] = (int(np.sum(sq_dist > reach)), len(sq_dist))
    return shares

