"""Moment-matched swarms: the centred scaled Stiefel set and its algebra.

A swarm of P particles in R^d with mean mu and covariance Sigma (1/P
normalisation) is written Z = 1 mu^T + Y A with A = Sigma^{1/2} symmetric and
Y in the centred scaled Stiefel set

    M = {Y in R^{P x d} : 1^T Y = 0, Y^T Y = P I_d},

which is non-empty for P >= d + 1.  Every Y in M gives a swarm whose first two
moments are exactly (mu, Sigma); the dynamics move Y along M with the tangent
projection and return to it with a Cholesky-QR retraction (MM-SOLD,
arXiv 2605.14276, Sec. 3).
"""

import numpy as np
from scipy.linalg import eigh

__all__ = [
    "sym",
    "tangent_project",
    "retract",
    "symmetric_sqrt",
    "to_swarm",
    "from_particles",
]


def sym(B):
    """Symmetric part (B + B^T) / 2 of a square matrix."""
    return 0.5 * (B + B.T)


def tangent_project(Y, G):
    """Project G onto the tangent space of M at Y.

    Pi_Y(G) = G_c - Y sym(Y^T G / P), with G_c = G minus its column means.
    Since 1^T Y = 0, Y^T G_c = Y^T G, so the result is the paper's
    G - Y sym(Y^T G / P) with its mean removed; the retraction removes that
    mean anyway, so both give the same step, and this one lies in the
    tangent space: 1^T Pi = 0 and sym(Y^T Pi) = 0.
    """
    P = Y.shape[0]
    G_c = G - G.mean(axis=0)
    return G_c - Y @ sym(Y.T @ G / P)


def retract(Y_tilde):
    """Map a P x d matrix (full column rank once centred) onto M.

    Centre the rows, then Y = Y_c C^{-1} with C the upper Cholesky factor of
    Y_c^T Y_c / P: a thin QR with positive diagonal, scaled by sqrt(P).
    On M itself C = I, so the retraction is the identity there.
    """
    P = Y_tilde.shape[0]
    Y_c = Y_tilde - Y_tilde.mean(axis=0)
    Y = Y_c @ _inverse_cholesky_factor(Y_c, P)
    # One pass of the same map removes the rounding residue of the first
    # (Cholesky-QR2), which keeps Y^T Y = P I at ~1e-14 for ill-conditioned Y_c.
    Y -= Y.mean(axis=0)
    return Y @ _inverse_cholesky_factor(Y, P)


def _inverse_cholesky_factor(Y, P):
    """C^{-1} for the upper Cholesky factor C of Y^T Y / P (a small d x d solve)."""
    # numpy's LAPACK wrappers: scipy's triangular solve costs ~1 ms per call.
    L = np.linalg.cholesky(Y.T @ Y / P)
    return np.linalg.inv(L).T


def symmetric_sqrt(S):
    """(A, A^{-1}) with A the symmetric positive square root of S (SPD)."""
    w, V = eigh(S)
    if w[0] <= 0:
        raise ValueError("The target covariance must be positive definite.")
    root = np.sqrt(w)
    return (V * root) @ V.T, (V / root) @ V.T


def to_swarm(Y, mu, A):
    """Particles Z = 1 mu^T + Y A."""
    return mu + Y @ A


def from_particles(Z, mu, A_inv):
    """The point of M nearest in the Cholesky-QR sense to particles Z."""
    return retract((Z - mu) @ A_inv)
