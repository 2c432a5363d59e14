"""Variance matching: the linear map that gives a smoothed law the data's covariance.

A Gaussian KDE of bandwidth h adds h^2 I to the covariance C of its patterns
(centred at the origin).  The symmetric map

    A = C^(1/2) (C + h^2 I)^(-1/2)

takes it back: A (C + h^2 I) A = C.  In C's eigenbasis A scales direction k by
sqrt(lam_k / (lam_k + h^2)), so directions where the data spread widely keep
their spread and those where it is thin (correlated features) lose the
kernel's.  With C = I it is Silverman's shrunk smoothed bootstrap, one factor
1 / sqrt(1 + h^2) (*Density Estimation for Statistics and Data Analysis*,
1986, section 6.4.1).  The mapped law keeps a closed form:

    log p(z) = log KDE_h(A^(-1) z) - log |det A|.

A law whose covariance S is not C + h^2 I (path extrapolation's: the KDE of
its reference endpoints) is taken to C by the symmetric map

    T = C^(1/2) (C^(1/2) S C^(1/2))^(-1/2) C^(1/2),   T S T = C,

which is A when S = C + h^2 I (the optimal-transport map between the two
Gaussians).
"""

import numpy as np

__all__ = ["VarianceMatchingMixin", "covariance_spectrum", "matching_map", "transport_map"]

# Eigenvalues below this fraction of the mean are raised to it: a constant or
# exactly collinear feature would make A singular and the law degenerate.
_MIN_RELATIVE_EIGENVALUE = 1e-6


def covariance_spectrum(Z):
    """(eigenvalues, eigenvectors) of Z's second moment about the origin.

    Z is in internal coordinates, centred on the training mean; eigenvalues
    are floored at 1e-6 times their mean.
    """
    Z = np.asarray(Z, dtype=np.float64)
    lam, V = np.linalg.eigh(Z.T @ Z / max(Z.shape[0], 1))
    floor = _MIN_RELATIVE_EIGENVALUE * max(float(np.mean(lam)), np.finfo(float).tiny)
    return np.maximum(lam, floor), V


def matching_map(spectrum, kernel_variance, power=1):
    """The symmetric map A**power and its log |det| for a kernel of that
    variance (power -1: the inverse map, which scoring applies)."""
    lam, V = spectrum
    factors = (lam / (lam + kernel_variance)) ** (0.5 * power)
    return (V * factors) @ V.T, float(np.sum(np.log(factors)))


def transport_map(law_covariance, spectrum):
    """The symmetric T with T S T = C, S the law's covariance and C given by
    its spectrum (from :func:`covariance_spectrum`)."""
    lam, V = spectrum
    root = (V * np.sqrt(lam)) @ V.T
    mu, W = np.linalg.eigh(root @ law_covariance @ root)
    return root @ ((W / np.sqrt(mu)) @ W.T) @ root


class VarianceMatchingMixin:
    """The map ``shrinkage_`` between an estimator's smoothed law and its output.

    For estimators whose law, in internal coordinates, is a Gaussian kernel
    about centres (the patterns, or path extrapolation's endpoints): samples
    leave through the map, densities are evaluated at the mapped-back rows
    with the map's log-Jacobian.
    """

    def _fit_shrinkage(self, Z, kernel_variance, matched, law_centres=None, spectrum=None):
        """Set ``shrinkage_`` for the patterns Z (the identity when not matched).

        The smoothed law is centred on ``law_centres`` (default Z itself) with
        a kernel of ``kernel_variance``; the map takes its covariance to Z's,
        whose :func:`covariance_spectrum` is ``spectrum`` when given.
        """
        if not matched:
            self.shrinkage_ = np.eye(Z.shape[1])
            return
        spectrum = covariance_spectrum(Z) if spectrum is None else spectrum
        if law_centres is None:
            self.shrinkage_ = matching_map(spectrum, kernel_variance)[0]
        else:
            centres = np.asarray(law_centres, dtype=np.float64)
            S = centres.T @ centres / centres.shape[0] + kernel_variance * np.eye(Z.shape[1])
            self.shrinkage_ = transport_map(S, spectrum)

    def _output_to_data(self, Z):
        """Rows of the smoothed law (internal coordinates) as output, in data units."""
        return self._to_data(Z @ self.shrinkage_)  # symmetric

    def _law_coordinates(self, X):
        """Rows of X where the smoothed law is evaluated: internal, the map undone."""
        return np.linalg.solve(self.shrinkage_, self._to_internal(X).T).T

    def _law_log_jacobian(self):
        """log |det| of data -> law coordinates: add it to the law's log-density."""
        return self._log_jacobian() - np.linalg.slogdet(self.shrinkage_)[1]
