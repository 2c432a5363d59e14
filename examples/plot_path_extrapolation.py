"""
=================================================================
Extrapolated paths versus raw paths and a KDE, in 1-D and 2-D
=================================================================

:class:`~sklearn_diffsample.path_extrapolation.PathExtrapolationDensity` runs
each sample's full-set path and half-set paths with identical noise and
extrapolates in the number of patterns. Here its endpoints are compared with
the raw dt endpoints (``extrapolation="none"``), the tower sampler
(``"exact"``, which copies training points) and a Gaussian KDE of the data.
"""

import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import norm
from sklearn.neighbors import KernelDensity

from sklearn_diffsample.path_extrapolation import PathExtrapolationDensity

rng = np.random.default_rng(0)
X1 = rng.normal(0.0, 5.0, size=(100, 1))
grid = np.linspace(-18, 18, 400)[:, None]

fig, axes = plt.subplots(1, 3, figsize=(14, 4))
ax = axes[0]
ax.plot(grid, norm.pdf(grid, scale=5.0), "k", lw=2, label="target N(0, 25)")
for rule in ["halves", "none"]:
    est = PathExtrapolationDensity(extrapolation=rule, n_splits=4, random_state=0)
    est.fit(X1)
    ends = est.sample_endpoints(1500, random_state=1)
    ax.hist(ends[:, 0], bins=50, density=True, histtype="step", label=f"endpoints, {rule}")
    if rule == "halves":
        ax.plot(grid, np.exp(est.score_samples(grid)), label="model density (halves)")
kde = KernelDensity(bandwidth=5.0 * 100 ** (-1 / 5)).fit(X1)
ax.plot(grid, np.exp(kde.score_samples(grid)), "--", label="KDE (Scott)")
ax.set(title="1-D: 100 patterns of N(0, 25)", xlabel="x")
ax.legend(fontsize=7)

theta = rng.uniform(0, 2 * np.pi, 150)
X2 = np.column_stack([np.cos(theta), np.sin(theta)]) + 0.1 * rng.normal(size=(150, 2))
for ax, rule in zip(axes[1:], ["halves", "exact"]):
    est = PathExtrapolationDensity(extrapolation=rule, n_splits=4, random_state=0).fit(X2)
    ends = est.sample_endpoints(800, random_state=2)
    ax.scatter(*X2.T, s=8, c="k", label="training")
    ax.scatter(*ends.T, s=3, alpha=0.5, label=f"endpoints, {rule}")
    ax.set(title=f"2-D ring: extrapolation={rule!r}", aspect="equal")
    ax.legend(fontsize=7)
fig.tight_layout()
plt.show()
