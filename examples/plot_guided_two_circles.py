"""
===================================================
Guided diffusion keeps samples on the class support
===================================================

Two classes lie on circles of radius 1 and 2 (200 points each).
:class:`~sklearn_diffsample.guided.GuidedDiffusionSampler` samples the inner
class with classifier-free guidance D_w = D_u + w (D_c - D_u) and the exact
score of the smoothed training set, so nothing but the integrator can push a
sample off the circle.

* Top row: the default deterministic sampler (DPM-Solver++(2M), DDIM's
  second-order multistep form), 50 steps.  Even at w = 10 every sample stays within a few
  noise floors h of its class's training points, and none drifts to the other
  circle: the support robustness of guided exponential integrators
  (arXiv:2605.07220).
* Bottom row: DDPM with only 10 steps.  Each coarse stochastic step jumps most
  of the way to the extrapolated denoiser.  Unguided, a few stragglers already
  sit off the circle; from w ~ 7 samples land inside the circle and, at w = 10,
  far beyond both (red: farther than 10 h from the class).  The estimator warns
  in that region.
"""

import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sklearn_diffsample.guided import GuidedDiffusionSampler  # noqa: E402
from sklearn_diffsample.metrics import support_distance  # noqa: E402

rng = np.random.default_rng(0)
theta = rng.uniform(0.0, 2.0 * np.pi, (2, 200))
X = np.vstack([np.c_[np.cos(theta[0]), np.sin(theta[0])],
               2.0 * np.c_[np.cos(theta[1]), np.sin(theta[1])]])
y = np.repeat([0, 1], 200)
h = 0.05

samplers = {
    "DPM-Solver++(2M), 50 steps": GuidedDiffusionSampler(bandwidth=h, n_steps=50).fit(X, y),
    "DDPM, 10 steps": GuidedDiffusionSampler(bandwidth=h, n_steps=10, eta=1.0).fit(X, y),
}
scales = (1.0, 7.0, 10.0)

fig, axes = plt.subplots(2, 3, figsize=(11, 7.5), sharex=True, sharey=True)
for row, (name, est) in zip(axes, samplers.items()):
    for ax, w in zip(row, scales):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            S = est.sample(2000, y=0, guidance_scale=w, random_state=1)
        dist = support_distance(S, X, y_train=y, y=0)
        off = dist > 10 * h
        ax.scatter(*X[y == 0].T, s=4, c="tab:blue", label="class 0 (sampled)")
        ax.scatter(*X[y == 1].T, s=4, c="tab:gray", label="class 1")
        ax.scatter(*S[~off].T, s=2, c="tab:green", alpha=0.4, label="samples")
        ax.scatter(*S[off].T, s=6, c="tab:red", label="> 10 h off support")
        flag = " (warned)" if caught else ""
        ax.set_title(f"{name}, w = {w:g}{flag}\nmax distance {dist.max() / h:.1f} h, "
                     f"{off.sum()} off", fontsize=9)
        print(f"{name:16s} w = {w:4.1f}: max support distance {dist.max() / h:6.1f} h, "
              f"{off.sum():4d} of 2000 beyond 10 h{flag}")
        ax.set_aspect("equal")
axes[0, 0].legend(loc="lower left", fontsize=7, markerscale=3)
fig.suptitle("Guided samples of the inner circle: exact score, DPM-Solver++(2M) vs coarse DDPM")
fig.tight_layout()
plt.show()
