"""Training-free, diffusion-based density estimation and sampling for scikit-learn."""

from . import gaussian
from ._posterior import PatternPosterior, PosteriorStats
from .compose import TransformedDensity
from .guided import GuidedDiffusionSampler
from .mmsold import MMSOLDSampler
from .oversampling import DiffusionOverSampler
from .path_extrapolation import PathExtrapolationDensity, path_convergence, path_direction

__version__ = "0.1.0.dev0"

__all__ = [
    "DiffusionOverSampler",
    "GuidedDiffusionSampler",
    "MMSOLDSampler",
    "PathExtrapolationDensity",
    "PatternPosterior",
    "PosteriorStats",
    "TransformedDensity",
    "gaussian",
    "path_convergence",
    "path_direction",
    "__version__",
]
