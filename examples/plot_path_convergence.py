"""
=========================================================
Path convergence: the 1/sqrt(p) collapse of dt paths
=========================================================

Backward dt paths driven by p patterns of a Gaussian target N(0, 5^2), all
started at x_beta = 1 with the same noise, are compared with the p = infinity
path, whose drift is analytic (arXiv 2606.12161). The median deviation
scaled by sqrt(p) collapses onto one curve of tau, while p times the mean
square deviation keeps growing with p: convergence in probability, not in
mean square.
"""

import matplotlib.pyplot as plt
import numpy as np

from sklearn_diffsample.path_extrapolation import path_convergence

p_values = [10, 30, 100, 300]
taus = np.arange(0.0, 10.01, 0.5)
res = path_convergence(p_values, 2000, taus=taus, random_state=0)

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
for i, p in enumerate(p_values):
    ax1.plot(res.taus, res.scaled_median[i], marker="o", ms=3, label=f"p = {p}")
    ax2.plot(res.taus, res.scaled_msd[i], marker="o", ms=3, label=f"p = {p}")
ax1.set(xlabel="tau", ylabel="sqrt(p) * median |x_p - x_inf|",
        title="scaled median: one curve")
ax2.set(xlabel="tau", ylabel="p * mean |x_p - x_inf|^2",
        title="scaled mean square: grows with p")
ax1.legend()
ax2.legend()
fig.tight_layout()
plt.show()
