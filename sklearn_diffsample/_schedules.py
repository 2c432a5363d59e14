"""Variance-preserving noise schedules and the time grids a sampler walks.

The schedule (alpha_t, sigma_t with alpha_t**2 + sigma_t**2 = 1) is kept separate
from the solver: a sampler asks for a grid of times, gets the matching alphas and
sigmas, and never looks at the schedule's formula.  ``lambda_t = log(alpha_t / sigma_t)``
is the half log signal-to-noise ratio; it decreases in t.
"""

from abc import ABC, abstractmethod

import numpy as np

__all__ = ["CosineSchedule", "LinearSchedule", "VPSchedule", "make_schedule", "time_grid",
           "LOG_SNR_FLOOR", "SCHEDULES", "TIMESTEPS"]

TIMESTEPS = ("logsnr", "time_uniform", "angle")

# The logSNR grid needs a finite start; below this half log-SNR the state is
# N(0, I) to within alpha**2 ~ 2e-9 of variance, far below any sampler error.
LOG_SNR_FLOOR = -10.0

_LINEAR_B0, _LINEAR_B1 = 0.1, 19.9


class VPSchedule(ABC):
    """A variance-preserving schedule on t in [0, 1]: alpha_t^2 + sigma_t^2 = 1.

    Subclasses give ``log_alpha`` and ``t_from_log_snr``; ``alpha``, ``sigma``
    and ``log_snr`` follow, written to stay accurate at both ends.
    """

    name = None

    @abstractmethod
    def log_alpha(self, t):
        """log alpha_t."""

    @abstractmethod
    def t_from_log_snr(self, lam):
        """Inverse of :meth:`log_snr`."""

    def alpha(self, t):
        return np.exp(self.log_alpha(np.asarray(t, dtype=np.float64)))

    def sigma(self, t):
        # sqrt(1 - alpha^2) without cancellation at small t.
        return np.sqrt(-np.expm1(2.0 * self.log_alpha(np.asarray(t, dtype=np.float64))))

    def log_snr(self, t):
        """Half log signal-to-noise ratio lambda_t = log(alpha_t / sigma_t)."""
        log_a = self.log_alpha(np.asarray(t, dtype=np.float64))
        with np.errstate(divide="ignore"):
            return log_a - 0.5 * np.log(-np.expm1(2.0 * log_a))

    def __repr__(self):
        return f"make_schedule({self.name!r})"


class LinearSchedule(VPSchedule):
    """beta(t) = 0.1 + 19.9 t, so log alpha_t = -19.9 t^2 / 4 - 0.1 t / 2 (alpha_1 ~ 6.6e-3)."""

    name = "linear"

    def log_alpha(self, t):
        t = np.asarray(t, dtype=np.float64)
        return -0.25 * _LINEAR_B1 * t**2 - 0.5 * _LINEAR_B0 * t

    def t_from_log_snr(self, lam):
        # log alpha = -0.5 log(1 + e^{-2 lambda}); solve the quadratic in t.
        log_a = -0.5 * np.logaddexp(0.0, -2.0 * np.asarray(lam, dtype=np.float64))
        a = 0.25 * _LINEAR_B1
        b = 0.5 * _LINEAR_B0
        return (-b + np.sqrt(b * b - 4.0 * a * log_a)) / (2.0 * a)


class CosineSchedule(VPSchedule):
    """alpha_t = cos(pi t / 2), sigma_t = sin(pi t / 2) (alpha_1 = 0 exactly)."""

    name = "cosine"

    def log_alpha(self, t):
        with np.errstate(divide="ignore"):
            return np.log(np.cos(0.5 * np.pi * np.asarray(t, dtype=np.float64)))

    def alpha(self, t):
        t = np.asarray(t, dtype=np.float64)
        # cos(pi/2) is 6e-17 in floating point; the schedule's alpha_1 is 0.
        return np.where(t >= 1.0, 0.0, np.cos(0.5 * np.pi * t))

    def sigma(self, t):
        return np.sin(0.5 * np.pi * np.asarray(t, dtype=np.float64))

    def log_snr(self, t):
        with np.errstate(divide="ignore"):
            return -np.log(np.tan(0.5 * np.pi * np.asarray(t, dtype=np.float64)))

    def t_from_log_snr(self, lam):
        return (2.0 / np.pi) * np.arctan(np.exp(-np.asarray(lam, dtype=np.float64)))


_SCHEDULES = {cls.name: cls for cls in (LinearSchedule, CosineSchedule)}
SCHEDULES = tuple(_SCHEDULES)


def make_schedule(name):
    """The schedule called ``name``: ``"linear"`` or ``"cosine"``."""
    if name not in _SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {name!r}.")
    return _SCHEDULES[name]()


def time_grid(schedule, n_steps, noise_floor, kind="logsnr"):
    """Decreasing times t_0 = T > t_1 > ... > t_K = t_min.

    Parameters
    ----------
    schedule : VPSchedule
    n_steps : int
        Number of steps K (the grid has K + 1 points).
    noise_floor : float
        sigma/alpha at the last time (the sampler's bandwidth in its own
        coordinates): lambda_min = -log(noise_floor).  ``0`` ends at t = 0.
    kind : {"logsnr", "time_uniform", "angle"}
        Uniform in lambda, in t, or in the angle atan(sigma / alpha).

    Returns
    -------
    t : ndarray of shape (n_steps + 1,)
    """
    if kind not in TIMESTEPS:
        raise ValueError(f"timesteps must be one of {TIMESTEPS}, got {kind!r}.")
    n_steps = int(n_steps)
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}.")
    if noise_floor < 0:
        raise ValueError(f"noise_floor must be >= 0, got {noise_floor}.")
    t_max = 1.0
    if noise_floor == 0:
        t_min = 0.0
    else:
        t_min = float(schedule.t_from_log_snr(-np.log(noise_floor)))
    if kind == "time_uniform":
        return np.linspace(t_max, t_min, n_steps + 1)
    if kind == "angle":
        # atan(sigma/alpha) = atan(exp(-lambda)), in [0, pi/2].
        angle_max = float(np.arctan(np.exp(-schedule.log_snr(t_max))))
        angle_min = float(np.arctan(noise_floor))
        angles = np.linspace(angle_max, angle_min, n_steps + 1)
        with np.errstate(divide="ignore"):
            t = schedule.t_from_log_snr(-np.log(np.tan(angles)))
        t[0], t[-1] = t_max, t_min
        return t
    lam_max = -np.log(noise_floor) if noise_floor > 0 else np.inf
    if not np.isfinite(lam_max):
        raise ValueError("timesteps='logsnr' needs a noise_floor > 0.")
    lam_start = max(float(schedule.log_snr(t_max)), LOG_SNR_FLOOR)
    lams = np.linspace(lam_start, lam_max, n_steps + 1)
    t = schedule.t_from_log_snr(lams)
    t[-1] = t_min
    if lam_start == float(schedule.log_snr(t_max)):
        t[0] = t_max
    return t
