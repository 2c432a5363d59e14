"""Benchmark data: 2-D targets with exact samplers and log-densities, and digits.

Each 2-D target is a law on the plane known in closed form up to (at most) a
one-dimensional integral, so that held-out likelihoods and KL divergences of a
model can be measured against the truth.  Every target is a noiseless law
convolved with an isotropic Gaussian N(0, noise^2 I): its log-density is finite
everywhere, and the sampler draws exactly from it.

Nothing here downloads: the digits come with scikit-learn.
"""

from abc import ABC, abstractmethod

import numpy as np
from scipy.special import i0e, log_ndtr, logsumexp
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.utils import check_array

from ._base import check_n_samples
from ._posterior import PatternPosterior
from ._random import as_random_state

__all__ = [
    "Target2D",
    "Checkerboard",
    "TwoSpirals",
    "Rings",
    "Moons",
    "TARGETS",
    "make_target",
    "load_digits_pca",
]

_LOG_2PI = np.log(2.0 * np.pi)

# Curve targets integrate the curve parameter with composite Gauss-Legendre
# rules on panels of one noise std of arc length.  Near the curve the
# integrand is a Gaussian of that std along it, which 16 nodes per std
# integrate to float64 precision (tests/test_datasets.py checks against
# adaptive quadrature).
_GL_ORDER = 16
_PANEL_ARC = 1.0
_ARC_GRID = 4097
# Queries farther than this many noise stds from a curve get finer panels
# (see _CurveTarget._log_density), up to 2**_MAX_LEVEL times finer: beyond
# _FAR_RATIO * 2**_MAX_LEVEL noise stds (200 units at noise 0.1) the
# relative error grows slowly from 1e-16, while the cost stays bounded.
_FAR_RATIO = 32.0
_MAX_LEVEL = 6


def _check_positive(value, name):
    if not np.isscalar(value) or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}.")
    return float(value)


def _log1mexp(z):
    """log(1 - exp(z)) for z <= 0, accurate on both sides of -log 2."""
    z = np.asarray(z, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(
            z > -np.log(2.0), np.log(-np.expm1(z)), np.log1p(-np.exp(np.minimum(z, 0)))
        )


def _log_normal_interval(lo, hi):
    """log P(lo < Z < hi) for Z ~ N(0, 1) and lo <= hi, elementwise.

    The interval is reflected into the lower tail (where log_ndtr keeps full
    relative precision) before the two CDF values are subtracted in log space.
    """
    flip = lo + hi > 0
    a = np.where(flip, -hi, lo)
    b = np.where(flip, -lo, hi)
    log_b = log_ndtr(b)
    return log_b + _log1mexp(log_ndtr(a) - log_b)


class Target2D(ABC):
    """Base class of the 2-D benchmark targets.

    A target is a fixed probability law on R^2: ``sample`` draws i.i.d. points
    from it and ``log_density`` evaluates its normalised log-density.
    Subclasses draw the noiseless part (``_sample_clean``) and compute the
    log-density; the base class validates inputs and adds the Gaussian noise.

    Parameters
    ----------
    noise : float
        Standard deviation of the isotropic Gaussian noise added to the
        noiseless law, > 0.
    """

    n_features = 2

    def __init__(self, *, noise):
        self.noise = _check_positive(noise, "noise")

    def _params(self):
        return {"noise": self.noise}

    def __repr__(self):
        params = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({params})"

    def sample(self, n_samples=1, random_state=None):
        """Draw i.i.d. points from the target.

        Parameters
        ----------
        n_samples : int, default=1
            Number of points, >= 0.
        random_state : int, RandomState instance, Generator or None, default=None
            Seed or generator; ``None`` draws fresh entropy.

        Returns
        -------
        X : ndarray of shape (n_samples, 2)
            The points, float64.

        Examples
        --------
        >>> from sklearn_diffsample.datasets import Rings
        >>> Rings().sample(3, random_state=0).shape
        (3, 2)
        """
        n_samples = check_n_samples(n_samples)
        rng = as_random_state(random_state)
        clean = self._sample_clean(n_samples, rng)
        return clean + self.noise * rng.standard_normal((n_samples, 2))

    def log_density(self, X):
        """Normalised log-density of the target at each row of X.

        Parameters
        ----------
        X : array-like of shape (n_queries, 2)
            Query points.

        Returns
        -------
        log_density : ndarray of shape (n_queries,)
            log p(x), finite for every finite query.

        Examples
        --------
        >>> from sklearn_diffsample.datasets import Rings
        >>> log_p = Rings().log_density([[1.0, 0.0], [50.0, 50.0]])
        >>> [round(float(v), 2) for v in log_p]  # on a ring; far away, still finite
        [-1.55, -229241.03]
        """
        X = check_array(X, dtype=np.float64, input_name="X")
        if X.shape[1] != 2:
            raise ValueError(
                f"X has {X.shape[1]} features but the targets live in the "
                "plane; pass an array of shape (n_queries, 2)."
            )
        return self._log_density(X)

    @abstractmethod
    def _sample_clean(self, n_samples, rng):
        """(n_samples, 2) draws of the noiseless law from the RandomState rng."""

    @abstractmethod
    def _log_density(self, X):
        """Log-density at the rows of a validated (n, 2) float64 array."""


class Checkerboard(Target2D):
    """Uniform law on the dark squares of a checkerboard, blurred by Gaussian noise.

    The board has ``n_cells x n_cells`` square cells of side ``cell_size``,
    centred at the origin, so it covers [-L/2, L/2]^2 with L = n_cells *
    cell_size.  Cell (i, j) (column i, row j, counted from the lower left,
    starting at 0) is dark when i + j is even; for the default 4 x 4 board
    this is the FFJORD "checkerboard" toy law.  A point is

        x = u + noise * e,   u ~ Uniform(union of dark cells),  e ~ N(0, I_2),

    and its density is exact in closed form:

        p(x) = 1 / (K s^2) * sum over dark (i, j) of
               P(a_i < x_1 - noise Z < a_i + s) * P(b_j < x_2 - noise Z < b_j + s)

    with K the number of dark cells, s the cell size and (a_i, b_j) the lower
    left corner of the cell, each probability computed as a difference of
    normal CDFs in log space (finite arbitrarily far away).

    Parameters
    ----------
    n_cells : int, default=4
        Cells per side, >= 1.
    cell_size : float, default=1.0
        Side of a cell, > 0.
    noise : float, default=0.05
        Standard deviation of the Gaussian blur, > 0.

    Examples
    --------
    >>> from sklearn_diffsample.datasets import Checkerboard
    >>> target = Checkerboard()
    >>> X = target.sample(1000, random_state=0)
    >>> X.shape, target.log_density(X).shape
    ((1000, 2), (1000,))
    >>> round(float(target.log_density([[0.5, 0.5]])[0]), 6)  # log(1/8)
    -2.079442
    """

    def __init__(self, *, n_cells=4, cell_size=1.0, noise=0.05):
        super().__init__(noise=noise)
        if not isinstance(n_cells, (int, np.integer)) or n_cells < 1:
            raise ValueError(f"n_cells must be a positive integer, got {n_cells!r}.")
        self.n_cells = int(n_cells)
        self.cell_size = _check_positive(cell_size, "cell_size")

    def _params(self):
        return {
            "n_cells": self.n_cells,
            "cell_size": self.cell_size,
            "noise": self.noise,
        }

    def _dark_cells(self):
        index = np.arange(self.n_cells)
        i, j = np.meshgrid(index, index, indexing="ij")
        dark = (i + j) % 2 == 0
        return i[dark], j[dark]

    def _corners(self):
        return self.cell_size * (np.arange(self.n_cells) - 0.5 * self.n_cells)

    def _sample_clean(self, n_samples, rng):
        col, row = self._dark_cells()
        cell = rng.choice(col.shape[0], size=n_samples)
        corners = self._corners()
        lower_left = np.column_stack([corners[col[cell]], corners[row[cell]]])
        return lower_left + self.cell_size * rng.uniform(size=(n_samples, 2))

    def _log_density(self, X):
        corners = self._corners()
        # log P(cell edge interval contains x - noise Z) per axis and cell index.
        lo = (X[:, :, None] - corners - self.cell_size) / self.noise
        log_axis = _log_normal_interval(lo, lo + self.cell_size / self.noise)
        col, row = self._dark_cells()
        log_terms = log_axis[:, 0, col] + log_axis[:, 1, row]
        log_norm = np.log(col.shape[0]) + 2.0 * np.log(self.cell_size)
        return logsumexp(log_terms, axis=1) - log_norm


class Rings(Target2D):
    """Equal-weight mixture of concentric circles, blurred by Gaussian noise.

    A point is ``x = R_k (cos phi, sin phi) + noise * e`` with k uniform on the
    rings, phi ~ Uniform[0, 2 pi) and e ~ N(0, I_2).  Averaging the Gaussian
    over the angle gives the exact density

        p(x) = 1/K sum_k exp(-(|x| - R_k)^2 / (2 noise^2))
                         * i0e(|x| R_k / noise^2) / (2 pi noise^2),

    with ``i0e`` the exponentially scaled modified Bessel function of order 0,
    evaluated in log space (finite arbitrarily far away).

    Parameters
    ----------
    radii : sequence of float, default=(1.0, 2.0, 3.0)
        Ring radii, each >= 0 (a radius of 0 is a Gaussian blob at the origin).
    noise : float, default=0.1
        Standard deviation of the Gaussian blur, > 0.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_diffsample.datasets import Rings
    >>> target = Rings(radii=(1.0,), noise=0.1)
    >>> X = target.sample(2000, random_state=0)
    >>> round(float(np.median(np.linalg.norm(X, axis=1))), 1)
    1.0
    """

    def __init__(self, *, radii=(1.0, 2.0, 3.0), noise=0.1):
        super().__init__(noise=noise)
        radii = np.asarray(radii, dtype=np.float64).reshape(-1)
        if radii.size == 0 or not np.all(np.isfinite(radii)) or np.any(radii < 0):
            raise ValueError(
                "radii must be a non-empty sequence of finite numbers >= 0, "
                f"got {radii!r}."
            )
        self.radii = tuple(radii.tolist())

    def _params(self):
        return {"radii": self.radii, "noise": self.noise}

    def _sample_clean(self, n_samples, rng):
        radius = np.asarray(self.radii)[rng.choice(len(self.radii), size=n_samples)]
        angle = rng.uniform(0.0, 2.0 * np.pi, size=n_samples)
        return radius[:, None] * np.column_stack([np.cos(angle), np.sin(angle)])

    def _log_density(self, X):
        rho = np.hypot(X[:, 0], X[:, 1])[:, None]
        radii = np.asarray(self.radii)
        var = self.noise**2
        log_terms = -((rho - radii) ** 2) / (2.0 * var) + np.log(i0e(rho * radii / var))
        log_norm = np.log(radii.size) + _LOG_2PI + np.log(var)
        return logsumexp(log_terms, axis=1) - log_norm


class _CurveTarget(Target2D):
    """Equal-weight mixture of laws on parametrised curves, blurred by noise.

    Arm k is a curve t -> c_k(t), t in [t_lo, t_hi], with t drawn from a
    density f_k(t).  The blurred density is

        p(x) = 1/K sum_k int f_k(t) N(x; c_k(t), noise^2 I) dt,

    integrated by composite Gauss-Legendre rules on panels of equal arc length
    (one noise std each, finer for far queries), so the Gaussian along the
    curve is resolved wherever it sits.  Subclasses define the arms.
    """

    @abstractmethod
    def _arms(self):
        """List of (t_lo, t_hi, curve, log_pdf) with curve(t) -> (m, 2)."""

    def _quadrature(self, refine=1):
        """Nodes on the curves (J, 2) and the log-weights of the mixture (J,).

        Panels hold ``noise / refine`` of arc length each.
        """
        gl_x, gl_w = np.polynomial.legendre.leggauss(_GL_ORDER)
        arms = self._arms()
        nodes, log_weights = [], []
        for t_lo, t_hi, curve, log_pdf in arms:
            # Arc length on a fine polyline only places the panel edges; the
            # Gauss-Legendre rule integrates exactly what lies between them.
            t_fine = np.linspace(t_lo, t_hi, _ARC_GRID)
            steps = np.linalg.norm(np.diff(curve(t_fine), axis=0), axis=1)
            arc = np.concatenate([[0.0], np.cumsum(steps)])
            panel = _PANEL_ARC * self.noise / refine
            n_panels = max(1, int(np.ceil(arc[-1] / panel)))
            edges = np.interp(np.linspace(0.0, arc[-1], n_panels + 1), arc, t_fine)
            half = 0.5 * np.diff(edges)[:, None]
            t = ((0.5 * (edges[1:] + edges[:-1]))[:, None] + half * gl_x).ravel()
            nodes.append(curve(t))
            log_weights.append(np.log((half * gl_w).ravel()) + log_pdf(t))
        log_weights = np.concatenate(log_weights) - np.log(len(arms))
        return np.concatenate(nodes), log_weights

    def _log_sum(self, X, nodes, log_weights):
        """log sum_j w_j exp(-|x - c_j|^2 / (2 noise^2)) and min_j |x - c_j|^2, by the engine."""
        engine = PatternPosterior(nodes, log_weights=log_weights, algorithm="kd_tree")
        log_sum = engine.query(X, self.noise**2).log_norm
        return log_sum, engine.kneighbors(X, 1)[0][:, 0]

    def _log_density(self, X):
        log_sum, sq_min = self._log_sum(X, *self._quadrature())
        # At distance rho from the curves, the integrand along them varies on
        # an arc length down to noise^2 / rho (beyond an end of the curve):
        # panels shrink in proportion so that each spans at most _FAR_RATIO
        # such lengths, in power-of-two steps shared by the queries.
        ratio = np.sqrt(sq_min) / (_FAR_RATIO * self.noise)
        level = np.ceil(np.log2(np.clip(ratio, 1.0, 2.0**_MAX_LEVEL))).astype(np.int64)
        for lev in np.unique(level[level > 0]):
            rows = level == lev
            log_sum[rows] = self._log_sum(X[rows], *self._quadrature(2**lev))[0]
        return log_sum - _LOG_2PI - 2.0 * np.log(self.noise)


class TwoSpirals(_CurveTarget):
    """Two interleaved Archimedean spirals, blurred by Gaussian noise.

    With T = 2 pi n_turns and a = radius / T, arm 1 is the curve
    c(t) = a t (-cos t, sin t) and arm 2 is -c(t), t in [0, T].  A point is

        x = s c(T sqrt(U)) + noise * e,   s = +-1 with probability 1/2,
        U ~ Uniform(0, 1),   e ~ N(0, I_2),

    so t has density 2 t / T^2, which spreads the points roughly evenly along
    the arc, as in the FFJORD "2spirals" toy data (here with Gaussian noise
    only).  The log-density integrates t numerically: composite Gauss-Legendre
    on panels of one noise std of arc length, refined for queries far from the
    arms; it matches adaptive quadrature to ~1e-14 relative, far queries
    included.

    Parameters
    ----------
    n_turns : float, default=1.5
        Turns of each arm, > 0.
    radius : float, default=3.0
        Distance from the origin to the end of each arm, > 0.
    noise : float, default=0.1
        Standard deviation of the Gaussian blur, > 0.

    Examples
    --------
    >>> from sklearn_diffsample.datasets import TwoSpirals
    >>> target = TwoSpirals()
    >>> X = target.sample(500, random_state=0)
    >>> bool(abs(X).max() < 4.0)
    True
    """

    def __init__(self, *, n_turns=1.5, radius=3.0, noise=0.1):
        super().__init__(noise=noise)
        self.n_turns = _check_positive(n_turns, "n_turns")
        self.radius = _check_positive(radius, "radius")

    def _params(self):
        return {"n_turns": self.n_turns, "radius": self.radius, "noise": self.noise}

    def _curve(self, t):
        slope = self.radius / (2.0 * np.pi * self.n_turns)
        return slope * t[:, None] * np.column_stack([-np.cos(t), np.sin(t)])

    def _sample_clean(self, n_samples, rng):
        t = 2.0 * np.pi * self.n_turns * np.sqrt(rng.uniform(size=n_samples))
        sign = np.where(rng.uniform(size=n_samples) < 0.5, 1.0, -1.0)
        return sign[:, None] * self._curve(t)

    def _arms(self):
        t_max = 2.0 * np.pi * self.n_turns

        def log_pdf(t):
            return np.log(2.0 * t / t_max**2)

        return [
            (0.0, t_max, self._curve, log_pdf),
            (0.0, t_max, lambda t: -self._curve(t), log_pdf),
        ]


class Moons(_CurveTarget):
    """The law of :func:`sklearn.datasets.make_moons`, with i.i.d. points.

    With probability 1/2 each, a point is on the upper moon
    (cos theta, sin theta) or on the lower moon (1 - cos theta, 0.5 - sin theta),
    with theta ~ Uniform[0, pi], plus N(0, noise^2 I_2) noise.  ``make_moons``
    puts exactly half the points on each moon at evenly spaced angles; its
    empirical law converges to this one.  The log-density integrates theta
    numerically: composite Gauss-Legendre on panels of one noise std of arc
    length, refined for queries far from the moons; it matches adaptive
    quadrature to ~1e-14 relative, far queries included.

    Parameters
    ----------
    noise : float, default=0.1
        Standard deviation of the Gaussian noise, > 0 (``make_moons``' ``noise``).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_diffsample.datasets import Moons
    >>> target = Moons(noise=0.1)
    >>> X = target.sample(20000, random_state=0)
    >>> bool(np.allclose(X.mean(axis=0), [0.5, 0.25], atol=0.02))  # the law's mean
    True
    """

    def __init__(self, *, noise=0.1):
        super().__init__(noise=noise)

    @staticmethod
    def _upper(theta):
        return np.column_stack([np.cos(theta), np.sin(theta)])

    @staticmethod
    def _lower(theta):
        return np.column_stack([1.0 - np.cos(theta), 0.5 - np.sin(theta)])

    def _sample_clean(self, n_samples, rng):
        theta = rng.uniform(0.0, np.pi, size=n_samples)
        upper = rng.uniform(size=n_samples) < 0.5
        return np.where(upper[:, None], self._upper(theta), self._lower(theta))

    def _arms(self):
        def log_pdf(theta):
            return np.full(theta.shape, -np.log(np.pi))

        return [(0.0, np.pi, self._upper, log_pdf), (0.0, np.pi, self._lower, log_pdf)]


TARGETS = {
    "checkerboard": Checkerboard,
    "two_spirals": TwoSpirals,
    "rings": Rings,
    "moons": Moons,
}


def make_target(name, **params):
    """Build a 2-D target by name.

    Parameters
    ----------
    name : {"checkerboard", "two_spirals", "rings", "moons"}
        Key of :data:`TARGETS`.
    **params : dict
        Keyword parameters of the target class (e.g. ``noise``).

    Returns
    -------
    target : Target2D
        The target, with ``sample`` and ``log_density``.

    Examples
    --------
    >>> from sklearn_diffsample.datasets import make_target
    >>> make_target("moons", noise=0.05)
    Moons(noise=0.05)
    """
    if name not in TARGETS:
        raise ValueError(f"Unknown target {name!r}; choose one of {sorted(TARGETS)}.")
    return TARGETS[name](**params)


def load_digits_pca(n_components=15, whiten=False, random_state=0):
    """scikit-learn's bundled 8x8 digits in a PCA latent space.

    The latent of scikit-learn's "Kernel Density Estimation" example
    (``plot_digits_kde_sampling``): the 1797 64-pixel digit images, projected
    by a :class:`~sklearn.decomposition.PCA` fitted on all of them.  Map
    samples back to images with ``pca.inverse_transform``.

    Parameters
    ----------
    n_components : int, default=15
        Dimension of the latent space.
    whiten : bool, default=False
        Passed to PCA: scale the components to unit variance.
    random_state : int, RandomState instance or None, default=0
        Passed to PCA (matters only for randomised SVD solvers).

    Returns
    -------
    Z : ndarray of shape (1797, n_components)
        The latent coordinates, float64.
    pca : PCA
        The fitted PCA.
    y : ndarray of shape (1797,)
        The digit of each image, 0 to 9.

    Examples
    --------
    >>> from sklearn_diffsample.datasets import load_digits_pca
    >>> Z, pca, y = load_digits_pca()
    >>> Z.shape, pca.inverse_transform(Z).shape, y.shape
    ((1797, 15), (1797, 64), (1797,))
    """
    digits = load_digits()
    pca = PCA(n_components=n_components, whiten=whiten, random_state=random_state)
    Z = pca.fit_transform(digits.data.astype(np.float64))
    return Z, pca, digits.target
