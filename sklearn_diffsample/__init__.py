"""Training-free, diffusion-based density estimation and sampling for scikit-learn."""

from . import gaussian
from ._posterior import PatternPosterior, PosteriorStats

__version__ = "0.1.0.dev0"

__all__ = ["PatternPosterior", "PosteriorStats", "gaussian", "__version__"]
