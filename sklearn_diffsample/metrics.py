"""Sample-quality metrics for generative density estimators.

Every function compares point clouds (generated samples, training data, held-out
data) and depends on numpy, scipy and scikit-learn only.  Distances are Euclidean
and computed in float64 whatever the input dtype.

Held-out mean log-likelihood needs no function here: it is
``estimator.score(X_test) / len(X_test)`` for any estimator of this package.
"""

from math import gcd
from typing import NamedTuple

import numpy as np
from scipy.spatial.distance import pdist
from sklearn import get_config
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics.pairwise import euclidean_distances
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import NearestNeighbors
from sklearn.utils import check_array, column_or_1d, gen_batches

from ._random import as_random_state

__all__ = [
    "sliced_wasserstein",
    "mmd",
    "median_bandwidth",
    "c2st_auc",
    "memorization",
    "MemorizationResult",
    "support_distance",
]

# The copy threshold is relative to the data scale: a row reproduced through a
# float64 pipeline (scaling, PCA round trip) lands within ~1e-12 of its source,
# while any genuinely new point is many orders of magnitude farther away.
_COPY_RTOL = 1e-8

# Pairwise distances for the median heuristic cost O(m^2); 1000 points pin the
# median down to about a percent, which is all a bandwidth heuristic needs.
_MEDIAN_MAX_SAMPLES = 1000


def _check_points(X, name):
    return check_array(X, dtype=np.float64, input_name=name)


def _check_same_features(A, B, name_a, name_b):
    if A.shape[1] != B.shape[1]:
        raise ValueError(
            f"{name_a} has {A.shape[1]} features but {name_b} has {B.shape[1]}; "
            "both must describe points in the same space."
        )


def _check_pair(X, Y, name_x, name_y):
    X = _check_points(X, name_x)
    Y = _check_points(Y, name_y)
    _check_same_features(X, Y, name_x, name_y)
    return X, Y


def _rows_per_chunk(row_bytes):
    """Rows per block so that one block stays within scikit-learn's working_memory."""
    budget = get_config()["working_memory"] * 2**20
    return max(1, int(budget // max(row_bytes, 1)))


def _quantile_coupling(n, m):
    """Exact pairing of the quantile functions of two empirical measures.

    Both quantile functions are step functions of the level u in (0, 1], with
    breaks at multiples of 1/n and 1/m.  On the merged breaks they are constant,
    so W2^2 = sum_k w_k (x_(i_k) - y_(j_k))^2 holds exactly.  Breaks are kept as
    integers on the grid 1/lcm(n, m) so equal levels merge without rounding.
    """
    lcm = n // gcd(n, m) * m
    step_x, step_y = lcm // n, lcm // m
    breaks = np.union1d(
        np.arange(0, lcm + 1, step_x, dtype=np.int64),
        np.arange(0, lcm + 1, step_y, dtype=np.int64),
    )
    left = breaks[:-1]
    weights = np.diff(breaks).astype(np.float64) / lcm
    return left // step_x, left // step_y, weights


def sliced_wasserstein(X, Y, n_projections=200, random_state=None):
    """Sliced 2-Wasserstein distance between two point clouds.

    Both samples are projected on ``n_projections`` random directions; on each
    direction the exact 1-D 2-Wasserstein distance between the two empirical
    measures is computed from their quantile functions, and the result is

        SW2 = sqrt( mean over directions of W2(theta . X, theta . Y)^2 ).

    Parameters
    ----------
    X : array-like of shape (n_samples_X, n_features)
        First sample.
    Y : array-like of shape (n_samples_Y, n_features)
        Second sample; its size may differ from ``X``'s.
    n_projections : int, default=200
        Number of random directions.
    random_state : int, RandomState instance, Generator or None, default=None
        Draws the directions: ``rng.standard_normal((n_projections, n_features))``
        with ``rng = sklearn.utils.check_random_state(random_state)``, each row
        divided by its norm (uniform on the sphere).  Fix it to compare several
        samples against the same reference on the same directions.

    Returns
    -------
    distance : float
        SW2, in the units of the data.  0 for identical samples.

    Notes
    -----
    For samples of equal size the 1-D distance pairs the sorted projections.
    For sizes n != m the two quantile functions are compared on the merged grid
    of levels {i/n} U {j/m}, on which both are constant, so the 1-D distance is
    exact for any sizes (no interpolation).  Memory is bounded by blocking the
    directions under scikit-learn's ``working_memory``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_diffsample.metrics import sliced_wasserstein
    >>> X = np.random.default_rng(0).normal(size=(500, 1))
    >>> round(sliced_wasserstein(X, X + 2.0, random_state=0), 12)
    2.0
    >>> sliced_wasserstein(X, X, random_state=0)
    0.0
    """
    X, Y = _check_pair(X, Y, "X", "Y")
    if not isinstance(n_projections, (int, np.integer)) or n_projections < 1:
        raise ValueError(
            f"n_projections must be a positive integer, got {n_projections!r}."
        )
    rng = as_random_state(random_state)
    theta = rng.standard_normal((n_projections, X.shape[1]))
    theta /= np.linalg.norm(theta, axis=1, keepdims=True)

    idx_x, idx_y, weights = _quantile_coupling(X.shape[0], Y.shape[0])
    row_bytes = 8 * (X.shape[0] + Y.shape[0] + 2 * weights.shape[0])
    block = _rows_per_chunk(row_bytes)
    sq_w2 = np.empty(n_projections, dtype=np.float64)
    for sl in gen_batches(n_projections, block):
        proj_x = np.sort(X @ theta[sl].T, axis=0)
        proj_y = np.sort(Y @ theta[sl].T, axis=0)
        diff = proj_x[idx_x] - proj_y[idx_y]
        sq_w2[sl] = weights @ (diff * diff)
    return float(np.sqrt(np.mean(sq_w2)))


def median_bandwidth(X, random_state=None):
    """Median heuristic: the median pairwise Euclidean distance of a sample.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Sample, at least two rows.  Above 1000 rows a subsample of 1000 rows,
        drawn without replacement from ``random_state``, is used.
    random_state : int, RandomState instance, Generator or None, default=None
        Draws the subsample; irrelevant for 1000 rows or fewer.

    Returns
    -------
    bandwidth : float
        The median distance, > 0.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_diffsample.metrics import median_bandwidth
    >>> median_bandwidth(np.array([[0.0], [1.0], [3.0]]))
    2.0
    """
    X = _check_points(X, "X")
    if X.shape[0] < 2:
        raise ValueError("The median heuristic needs at least 2 rows in X.")
    if X.shape[0] > _MEDIAN_MAX_SAMPLES:
        rng = as_random_state(random_state)
        X = X[rng.choice(X.shape[0], _MEDIAN_MAX_SAMPLES, replace=False)]
    bandwidth = float(np.median(pdist(X)))
    if bandwidth <= 0.0:
        raise ValueError(
            "More than half of the pairwise distances are 0 (repeated rows), so "
            "the median heuristic gives no bandwidth; pass a float bandwidth."
        )
    return bandwidth


def _gaussian_kernel_sum(A, B, gamma, same):
    """Sum of exp(-gamma |a - b|^2) over all pairs, without the diagonal if same.

    Streams row blocks of A so the (n_A x n_B) kernel matrix never exists.
    """
    total = 0.0
    sq_norms_b = np.einsum("ij,ij->i", B, B)
    for sl in gen_batches(A.shape[0], _rows_per_chunk(16 * B.shape[0])):
        sq_dist = euclidean_distances(
            A[sl], B, Y_norm_squared=sq_norms_b, squared=True
        )
        if same:
            # The BLAS expansion leaves ~1e-16 on the diagonal; the pairs i = j
            # are excluded from the U-statistic, so pin them to 0 and drop them.
            rows = np.arange(sl.stop - sl.start)
            sq_dist[rows, rows + sl.start] = 0.0
        total += np.exp(-gamma * sq_dist).sum()
        if same:
            total -= sl.stop - sl.start
    return total


def mmd(X, Y, kernel="rbf", bandwidth="median", random_state=None):
    """Unbiased estimate of the squared maximum mean discrepancy.

    With the Gaussian kernel ``k(x, y) = exp(-|x - y|^2 / (2 h^2))``, returns the
    U-statistic::

        MMD^2_u = sum_{i != j} k(x_i, x_j) / (n (n - 1))
                + sum_{i != j} k(y_i, y_j) / (m (m - 1))
                - 2 sum_{i, j} k(x_i, y_j) / (n m),

    whose expectation is the population MMD^2 (Gretton et al., 2012).  It can be
    slightly negative when the two laws are equal.

    Parameters
    ----------
    X : array-like of shape (n_samples_X, n_features)
        First sample, at least 2 rows.
    Y : array-like of shape (n_samples_Y, n_features)
        Second sample, at least 2 rows.
    kernel : {"rbf"}, default="rbf"
        The Gaussian kernel (``"gaussian"`` is accepted as an alias).
    bandwidth : "median" or float, default="median"
        The kernel scale h.  ``"median"`` is :func:`median_bandwidth` of the
        pooled sample ``X`` U ``Y``.  When several generators are compared to
        one reference, pass one float (e.g. ``median_bandwidth(X_ref)``) so
        that every MMD is measured with the same kernel.
    random_state : int, RandomState instance, Generator or None, default=None
        Subsample of the median heuristic for more than 1000 pooled rows.

    Returns
    -------
    mmd2 : float
        The unbiased MMD^2 estimate.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_diffsample.metrics import mmd
    >>> rng = np.random.default_rng(0)
    >>> X, Y = rng.normal(size=(300, 2)), rng.normal(3.0, size=(300, 2))
    >>> bool(mmd(X, Y, bandwidth=1.0) > 0.5)
    True
    """
    X, Y = _check_pair(X, Y, "X", "Y")
    if kernel not in ("rbf", "gaussian"):
        raise ValueError(f"kernel must be 'rbf', got {kernel!r}.")
    n, m = X.shape[0], Y.shape[0]
    if n < 2 or m < 2:
        raise ValueError(
            f"The unbiased MMD needs at least 2 rows in X and in Y, got {n} and {m}."
        )
    if isinstance(bandwidth, str) and bandwidth == "median":
        bandwidth = median_bandwidth(np.vstack([X, Y]), random_state=random_state)
    elif (
        isinstance(bandwidth, str)
        or not np.isscalar(bandwidth)
        or not np.isfinite(bandwidth)
        or bandwidth <= 0
    ):
        raise ValueError(
            f"bandwidth must be 'median' or a positive float, got {bandwidth!r}."
        )
    gamma = 0.5 / float(bandwidth) ** 2
    k_xx = _gaussian_kernel_sum(X, X, gamma, same=True)
    k_yy = _gaussian_kernel_sum(Y, Y, gamma, same=True)
    k_xy = _gaussian_kernel_sum(X, Y, gamma, same=False)
    return float(k_xx / (n * (n - 1)) + k_yy / (m * (m - 1)) - 2.0 * k_xy / (n * m))


def c2st_auc(X_real, X_fake, *, classifier=None, cv=5, random_state=None):
    """Classifier two-sample test: cross-validated ROC AUC of real vs generated.

    The larger sample is subsampled (without replacement) to the size of the
    smaller one so the two classes are balanced, a classifier learns to tell
    them apart, and the ROC AUC on held-out folds is averaged over folds.
    0.5 means the classifier cannot tell the samples apart; 1 means it always
    can.  Under equal laws, each fold's AUC has mean exactly 0.5 (held-out
    labels are exchangeable) and standard deviation about
    sqrt((2 k + 1) / (12 k^2)) for k held-out rows per class.

    Parameters
    ----------
    X_real : array-like of shape (n_real, n_features)
        Reference sample (e.g. held-out data).
    X_fake : array-like of shape (n_fake, n_features)
        Generated sample.
    classifier : classifier or None, default=None
        Any scikit-learn classifier with ``predict_proba`` or
        ``decision_function``; it is cloned.  ``None`` uses
        ``HistGradientBoostingClassifier(max_iter=100, max_leaf_nodes=15,
        early_stopping=False)``: trees are invariant to the scale of each
        feature, find the non-linear boundaries that separate a thin manifold
        from a blurred copy of it, give continuous scores (unlike k-NN, whose
        k + 1 probability levels make the AUC coarse), and fit a few thousand
        rows in well under a second.
    cv : int or cross-validation splitter, default=5
        An int gives ``StratifiedKFold(cv, shuffle=True)`` seeded from
        ``random_state``.  The pooled rows are shuffled before splitting, so
        any splitter sees both classes in every fold.
    random_state : int, RandomState instance, Generator or None, default=None
        Drives the subsampling, the folds and the default classifier.

    Returns
    -------
    auc : float
        Mean held-out ROC AUC over the folds.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_diffsample.metrics import c2st_auc
    >>> rng = np.random.default_rng(0)
    >>> real, fake = rng.normal(size=(200, 2)), rng.normal(5.0, size=(200, 2))
    >>> bool(c2st_auc(real, fake, random_state=0) > 0.99)
    True
    """
    X_real, X_fake = _check_pair(X_real, X_fake, "X_real", "X_fake")
    rng = as_random_state(random_state)
    n_per_class = min(X_real.shape[0], X_fake.shape[0])
    n_splits = cv if isinstance(cv, (int, np.integer)) else cv.get_n_splits()
    if n_per_class < n_splits:
        raise ValueError(
            f"Each sample needs at least cv={n_splits} rows for stratified folds, "
            f"got {X_real.shape[0]} real and {X_fake.shape[0]} generated rows."
        )
    if X_real.shape[0] > n_per_class:
        X_real = X_real[rng.choice(X_real.shape[0], n_per_class, replace=False)]
    if X_fake.shape[0] > n_per_class:
        X_fake = X_fake[rng.choice(X_fake.shape[0], n_per_class, replace=False)]
    seed = int(rng.randint(np.iinfo(np.int32).max))
    # Shuffled rows keep both classes in every fold of any splitter, even an
    # unshuffled KFold.
    order = rng.permutation(2 * n_per_class)
    X = np.vstack([X_real, X_fake])[order]
    y = np.repeat(np.array([0, 1]), n_per_class)[order]
    if classifier is None:
        classifier = HistGradientBoostingClassifier(
            max_iter=100, max_leaf_nodes=15, early_stopping=False, random_state=seed
        )
    else:
        classifier = clone(classifier)
    if isinstance(cv, (int, np.integer)):
        cv = StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
    scores = cross_val_score(classifier, X, y, cv=cv, scoring="roc_auc")
    return float(np.mean(scores))


def _nearest_distances(queries, reference):
    """Distance of each query row to its nearest reference row.

    The neighbour search may use the BLAS expansion |a|^2 - 2ab + |b|^2, whose
    rounding (~sqrt(eps) * |a|) would hide exact copies; the distance to the
    neighbour found is therefore recomputed from the coordinate differences.
    """
    index = NearestNeighbors(n_neighbors=1).fit(reference)
    nearest = index.kneighbors(queries, return_distance=False)[:, 0]
    return np.linalg.norm(queries - reference[nearest], axis=1)


class MemorizationResult(NamedTuple):
    """Result of :func:`memorization`.

    Attributes
    ----------
    dcr_ratio : float
        Median distance to the closest training record (DCR) of the samples
        divided by that of the test rows: about 1 for fresh data, near 0 for copies.
    copy_rate : float
        Fraction of samples within ``1e-8 * data_scale`` of a training row.
    sample_distances : ndarray of shape (n_samples,)
        Distance of each sample to its nearest training row.
    test_distances : ndarray of shape (n_test,)
        Distance of each test row to its nearest training row.
    data_scale : float
        sqrt of the mean per-feature variance of ``X_train``.
    """

    dcr_ratio: float
    copy_rate: float
    sample_distances: np.ndarray
    test_distances: np.ndarray
    data_scale: float


def memorization(samples, X_train, X_test):
    """How much generated samples copy the training data.

    Parameters
    ----------
    samples : array-like of shape (n_samples, n_features)
        Generated samples.
    X_train : array-like of shape (n_train, n_features)
        The data the generator was fitted on.
    X_test : array-like of shape (n_test, n_features)
        Held-out data from the same law, the yardstick for "fresh" points.

    Returns
    -------
    result : MemorizationResult
        Named tuple ``(dcr_ratio, copy_rate, sample_distances, test_distances,
        data_scale)``; see :class:`MemorizationResult`.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_diffsample.metrics import memorization
    >>> rng = np.random.default_rng(0)
    >>> X_train, X_test = rng.normal(size=(500, 2)), rng.normal(size=(500, 2))
    >>> res = memorization(X_train[:100], X_train, X_test)
    >>> res.copy_rate, res.dcr_ratio
    (1.0, 0.0)
    """
    samples = _check_points(samples, "samples")
    X_train = _check_points(X_train, "X_train")
    X_test = _check_points(X_test, "X_test")
    _check_same_features(samples, X_train, "samples", "X_train")
    _check_same_features(X_test, X_train, "X_test", "X_train")
    sample_distances = _nearest_distances(samples, X_train)
    test_distances = _nearest_distances(X_test, X_train)
    test_median = float(np.median(test_distances))
    if test_median == 0.0:
        raise ValueError(
            "At least half of the X_test rows are also rows of X_train, so the "
            "DCR ratio is undefined; remove the duplicates from X_test."
        )
    data_scale = float(np.sqrt(np.mean(np.var(X_train, axis=0))))
    return MemorizationResult(
        dcr_ratio=float(np.median(sample_distances)) / test_median,
        copy_rate=float(np.mean(sample_distances <= _COPY_RTOL * data_scale)),
        sample_distances=sample_distances,
        test_distances=test_distances,
        data_scale=data_scale,
    )


def support_distance(samples, X_train, y_train=None, y=None):
    """Distance of each sample to the nearest training row (of its class).

    Parameters
    ----------
    samples : array-like of shape (n_samples, n_features)
        Generated samples.
    X_train : array-like of shape (n_train, n_features)
        Training data.
    y_train : array-like of shape (n_train,), default=None
        Class of each training row.  Give it together with ``y``.
    y : scalar or array-like of shape (n_samples,), default=None
        Class of the samples: one label for all, or one per sample.  With
        ``y_train``, each sample is compared only with the training rows of
        its own class.

    Returns
    -------
    distances : ndarray of shape (n_samples,)
        Euclidean distance to the nearest (same-class) training row.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_diffsample.metrics import support_distance
    >>> X_train = np.array([[0.0, 0.0], [10.0, 0.0]])
    >>> support_distance([[1.0, 0.0]], X_train)
    array([1.])
    >>> support_distance([[1.0, 0.0]], X_train, y_train=[0, 1], y=1)
    array([9.])
    """
    samples = _check_points(samples, "samples")
    X_train = _check_points(X_train, "X_train")
    _check_same_features(samples, X_train, "samples", "X_train")
    if (y_train is None) != (y is None):
        raise ValueError(
            "Pass both y_train and y for class-wise distances, or neither."
        )
    if y_train is None:
        return _nearest_distances(samples, X_train)

    y_train = column_or_1d(y_train)
    if y_train.shape[0] != X_train.shape[0]:
        raise ValueError(
            f"y_train has {y_train.shape[0]} labels but X_train has "
            f"{X_train.shape[0]} rows."
        )
    y = np.asarray(y)
    if y.ndim == 0:
        y = np.full(samples.shape[0], y)
    y = column_or_1d(y)
    if y.shape[0] != samples.shape[0]:
        raise ValueError(
            f"y has {y.shape[0]} labels but samples has {samples.shape[0]} rows; "
            "give one label per sample or a single label."
        )
    classes = np.unique(y_train)
    unknown = np.setdiff1d(np.unique(y), classes)
    if unknown.size:
        raise ValueError(
            f"Labels {unknown.tolist()} in y do not occur in y_train; "
            f"known classes are {classes.tolist()}."
        )
    distances = np.empty(samples.shape[0], dtype=np.float64)
    for label in np.unique(y):
        in_class = y == label
        distances[in_class] = _nearest_distances(
            samples[in_class], X_train[y_train == label]
        )
    return distances
