"""One set of small, fast estimator factories for the tests that run every estimator."""

from sklearn.preprocessing import StandardScaler

from sklearn_diffsample import (
    GuidedDiffusionSampler,
    MMSOLDSampler,
    PathExtrapolationDensity,
    TransformedDensity,
)

# Each factory takes the paths a contract could break in: stochastic guided
# steps, the clustered denoiser (per class), the smoothed and unsmoothed
# MM-SOLD swarms, uncoupled particles, extrapolated and tower paths, and a
# transformed estimator.
FACTORIES = {
    "guided": lambda: GuidedDiffusionSampler(n_steps=6, eta=0.5, batch_size=16),
    "guided-labelled": lambda: GuidedDiffusionSampler(n_steps=6, eta=0.5, batch_size=16,
                                                      n_neighbors=8, algorithm="kd_tree"),
    "guided-clustered": lambda: GuidedDiffusionSampler(n_steps=6, denoiser="clustered",
                                                       batch_size=16, random_state=0),
    "mmsold": lambda: MMSOLDSampler(smoothing=0.0, n_steps=5, batch_size=40,
                                    score_estimator="exact", random_state=0),
    "mmsold-smoothed": lambda: MMSOLDSampler(n_steps=5, batch_size=30, random_state=0),
    "mmsold-independent": lambda: MMSOLDSampler(n_steps=5, batch_size=30,
                                                interaction="independent", random_state=0),
    "mmsold-labelled": lambda: MMSOLDSampler(n_steps=5, batch_size=30, random_state=0),
    "mmsold-sold": lambda: MMSOLDSampler(n_steps=5, batch_size=30, interaction="sold",
                                         random_state=0),
    "path": lambda: PathExtrapolationDensity(n_steps=10, n_splits=2, n_reference_samples=150,
                                             batch_size=64, random_state=0),
    "path-exact": lambda: PathExtrapolationDensity(extrapolation="exact", n_steps=10,
                                                   algorithm="kd_tree", n_reference_samples=150,
                                                   batch_size=64, random_state=0),
    "transformed": lambda: TransformedDensity(StandardScaler(),
                                              GuidedDiffusionSampler(n_steps=5, batch_size=16)),
}
# Fitted with class labels, sampled and scored per class with guidance.
LABELLED = ("guided-labelled", "guided-clustered", "mmsold-labelled")
# The estimators whose density is a KDE of the patterns at the bandwidth
# (MM-SOLD at smoothing 0), so that held-out likelihood ranks bandwidths.
KDE_LIKE = ("guided", "mmsold", "path")
