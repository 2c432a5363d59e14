"""DiffusionOverSampler: top up minority classes with guided diffusion samples.

A resampler with imbalanced-learn's contract (``fit_resample(X, y)``,
``sampling_strategy``, ``random_state``; usable in ``imblearn.pipeline.Pipeline``)
that needs no imbalanced-learn at run time.  Each class to top up gets its own
:class:`~sklearn_diffsample.GuidedDiffusionSampler` over all rows and labels, at
the class's own ``bandwidth="auto"`` (the held-out-likelihood bandwidth of that
class's rows), sampled class-conditionally with guidance ``guidance_scale``:
w = 1 draws from the class's KDE; w > 1 pushes the synthetic rows away from the
other classes while the exact-score integrator keeps them on the class's support
(arXiv:2605.07220).
"""

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_array, check_consistent_length

from ._base import BANDWIDTH_RULES, resolve_bandwidth
from ._conditional import encode_fit_labels
from ._coordinates import fit_coordinates, to_internal
from ._parallel import seed_sequence
from .guided import GuidedDiffusionSampler

__all__ = ["DiffusionOverSampler"]

STRATEGIES = ("auto", "minority", "not minority", "not majority", "all")


def target_counts(strategy, counts):
    """Rows to generate per class: imbalanced-learn's over-sampling strategies.

    ``counts`` maps each class to its number of rows.  "auto" (= "not
    majority"), "minority", "not minority" and "all" raise the classes they
    name to the majority's count; a float r (two classes) raises the minority
    to r times the majority; a dict gives the wanted total per class.
    """
    majority = max(counts, key=counts.get)
    minority = min(counts, key=counts.get)
    top = counts[majority]
    if isinstance(strategy, str):
        chosen = {"auto": [c for c in counts if c != majority],
                  "not majority": [c for c in counts if c != majority],
                  "minority": [minority],
                  "not minority": [c for c in counts if c != minority],
                  "all": list(counts)}[strategy]
        return {c: top - counts[c] for c in chosen}
    if isinstance(strategy, dict):
        unknown = [c for c in strategy if c not in counts]
        if unknown:
            raise ValueError(f"sampling_strategy names unknown classes {unknown}; the classes "
                             f"are {sorted(counts)}.")
        short = {c: n for c, n in strategy.items() if n < counts[c]}
        if short:
            raise ValueError(f"sampling_strategy asks for fewer rows than some classes have "
                             f"({short}); an over-sampler only adds rows.")
        return {c: int(n) - counts[c] for c, n in strategy.items()}
    if len(counts) != 2:
        raise ValueError("A float sampling_strategy needs exactly two classes; use a dict.")
    wanted = int(np.floor(strategy * top))
    if wanted < counts[minority]:
        raise ValueError(f"sampling_strategy={strategy} asks for {wanted} minority rows, fewer "
                         f"than the {counts[minority]} there are.")
    return {minority: wanted - counts[minority]}


class DiffusionOverSampler(BaseEstimator):
    """Over-sample classes with class-conditional guided diffusion samples.

    Parameters
    ----------
    sampling_strategy : float, str or dict, default="auto"
        Which classes to top up, and to how many rows, as in imbalanced-learn:
        "auto" (every class but the majority, to the majority's count),
        "minority", "not minority", "not majority", "all"; a float r for two
        classes (the minority to r times the majority); a dict
        ``{class: wanted total rows}``.
    guidance_scale : float >= 0, default=1.0
        w of the class guidance: 1 samples the class's KDE, > 1 extrapolates
        away from the other classes.
    bandwidth : float or {"auto", "scott", "silverman"}, default="auto"
        The samplers' bandwidth, in the internal units of a sampler fitted on
        all rows (multiples of X's per-feature standard deviations); a rule
        is evaluated per class, on that class's rows in those units.
    n_steps : int, default=50
        Integrator steps of the samplers.
    random_state : int, RandomState, Generator or None, default=None
        Seed of the synthetic rows (class k draws from the k-th child seed).
    n_jobs : int or None, default=None
        joblib workers of the samplers.

    Attributes
    ----------
    sampling_strategy_ : dict
        Rows generated per class.
    classes_ : ndarray of shape (n_classes,)
        Class labels seen by ``fit``.
    bandwidths_ : dict
        The bandwidth (internal units) of each class that was topped up.
    samplers_ : dict
        The fitted :class:`GuidedDiffusionSampler` of each class topped up.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_diffsample import DiffusionOverSampler
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(0, 1, (90, 2)), rng.normal(4, 0.5, (10, 2))])
    >>> y = np.repeat([0, 1], [90, 10])
    >>> X_res, y_res = DiffusionOverSampler(n_steps=20, random_state=0).fit_resample(X, y)
    >>> np.bincount(y_res).tolist()
    [90, 90]
    """

    _parameter_constraints: dict = {
        "sampling_strategy": [Interval(Real, 0, None, closed="neither"),
                              StrOptions(set(STRATEGIES)), dict],
        "guidance_scale": [Interval(Real, 0, None, closed="left")],
        "bandwidth": [Interval(Real, 0, None, closed="neither"),
                      StrOptions(set(BANDWIDTH_RULES))],
        "n_steps": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state", np.random.Generator],
        "n_jobs": [Integral, None],
    }

    def __init__(self, *, sampling_strategy="auto", guidance_scale=1.0, bandwidth="auto",
                 n_steps=50, random_state=None, n_jobs=None):
        self.sampling_strategy = sampling_strategy
        self.guidance_scale = guidance_scale
        self.bandwidth = bandwidth
        self.n_steps = n_steps
        self.random_state = random_state
        self.n_jobs = n_jobs

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Fit one sampler per class to top up.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels (a one-hot matrix is read as its argmax).

        Returns
        -------
        self : DiffusionOverSampler
        """
        X, y, _ = _check_X_y(X, y)
        codes, classes = encode_fit_labels(X, y)
        if len(classes) < 2:
            raise ValueError("An over-sampler needs at least two classes; y has only one "
                             f"class, {classes.tolist()}.")
        counts = {label: int(np.sum(codes == k)) for k, label in enumerate(classes.tolist())}
        self.classes_ = classes
        self.sampling_strategy_ = {c: n for c, n in
                                   target_counts(self.sampling_strategy, counts).items()}
        self.samplers_, self.bandwidths_ = {}, {}
        # A class's bandwidth is chosen on its rows in the internal
        # coordinates of the samplers, which are fitted on all rows.
        coordinates = GuidedDiffusionSampler().coordinates
        Z = to_internal(X, *fit_coordinates(X, coordinates))
        for label, n_new in self.sampling_strategy_.items():
            if n_new <= 0:
                continue
            h = resolve_bandwidth(self.bandwidth, Z[y == label])
            self.bandwidths_[label] = h
            self.samplers_[label] = GuidedDiffusionSampler(
                bandwidth=h, coordinates=coordinates, n_steps=self.n_steps,
                match_variance=False, n_jobs=self.n_jobs).fit(X, y)
        return self

    def fit_resample(self, X, y):
        """The rows of X and y followed by the synthetic rows of each class topped up.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_classes)
            Class labels, or their one-hot encoding.

        Returns
        -------
        X_resampled : ndarray or list of shape (n_samples + n_new, n_features)
            Of X's dtype (float32 or float64), or a list if X was a list.
        y_resampled : ndarray or list
            Of y's dtype and shape (labels or one-hot).
        """
        as_list = isinstance(X, list)
        X_arr, labels, restore_y = _check_X_y(X, y)
        self.fit(X_arr, labels)
        seeds = seed_sequence(self.random_state).spawn(len(self.classes_))
        new_X, new_y = [X_arr], [labels]
        for k, label in enumerate(self.classes_.tolist()):
            if label in self.samplers_:
                n_new = self.sampling_strategy_[label]
                new_X.append(self.samplers_[label].sample(
                    n_new, seeds[k], y=label, guidance_scale=self.guidance_scale))
                new_y.append(np.full(n_new, label, dtype=labels.dtype))
        X_res = np.vstack(new_X).astype(X_arr.dtype, copy=False)
        y_res = restore_y(np.concatenate(new_y))
        if as_list:
            return X_res.tolist(), y_res.tolist()
        return X_res, y_res


def _check_X_y(X, y):
    """Float X, 1-D labels, and the map back to y's own form (one-hot, column, dtype)."""
    X = check_array(X, dtype=[np.float64, np.float32])
    y_in = np.asarray(y)
    check_consistent_length(X, y_in)
    if type_of_target(y_in) == "multilabel-indicator":
        if np.any(y_in.sum(axis=1) != 1):
            raise ValueError("Multilabel and multioutput targets are not supported; a 2-D "
                             "y must be a one-hot encoding of one class per row.")
        labels = y_in.argmax(axis=1)

        def restore(y_res):
            return (y_res[:, None] == np.arange(y_in.shape[1])).astype(y_in.dtype)

        return X, labels, restore
    if y_in.ndim == 2 and y_in.shape[1] == 1:
        return X, y_in.ravel(), lambda y_res: y_res.reshape(-1, 1).astype(y_in.dtype)
    return X, y_in, lambda y_res: y_res.astype(y_in.dtype, copy=False)
