"""Baselines of the benchmark tables (docs/benchmarks.rst): what a user would pick instead.

* :func:`kde_cv` — scikit-learn ``KernelDensity`` with its bandwidth chosen by
  ``GridSearchCV`` (held-out log-likelihood) on the folds the caller passes;
* :func:`gmm_bic` — ``GaussianMixture`` with n_components chosen by BIC;
* :class:`SigmaCFDM` — a small reference implementation of sigma-CFDM,
  closed-form diffusion with a smoothed score (Scarvelis, Borde & Solomon,
  "Closed-form diffusion models", arXiv:2310.12395, 2023);
* :class:`MLPDDPM` — a small trained neural diffusion model (MLP noise
  predictor, DDPM), run only when PyTorch is importable.

What :class:`SigmaCFDM` implements (our own code, written from the paper's idea)
--------------------------------------------------------------------------------
Data are standardised isotropically (subtract the mean, divide by the root mean
per-feature variance).  Under the linear interpolant x_t = t x_1 + (1 - t) x_0,
x_0 ~ N(0, I), x_1 ~ the empirical law of the N training points, the exact
closed-form denoiser is

    D(x, t) = E[x_1 | x_t = x] = sum_i softmax_i(-|x/t - x_i|^2 / (2 s_t^2)) x_i,
    s_t = (1 - t) / t,

(computed by the project's ``PatternPosterior`` engine: query x/t, variance
s_t^2) and the exact velocity is v(x, t) = (D(x, t) - x) / (1 - t).  Integrated
exactly it reproduces the training points.  sigma-CFDM smooths it: v_sigma(x, t)
= E_eps[v(x + sigma eps, t)], eps ~ N(0, I), which equals
(E_eps[D(x + sigma eps, t)] - x) / (1 - t); the expectation is a Monte Carlo
mean over ``n_smoothing_draws`` antithetic draws, fresh at every step.  Euler
steps on a uniform grid t_k = k / n_steps from t = 0 (where D is the data mean)
to t = 1; the last Euler step returns the smoothed denoiser itself, so samples
are averages of convex combinations of training points (the paper's
"barycentres" picture).

Where it may differ from the paper: the paper's exact smoothing convention
(which argument is perturbed, whether the noise is resampled per step, the
number of draws), its start time T > 0 and its nearest-neighbour acceleration
may not be what we do; here the state is perturbed in standardised units, the
draws are resampled every step, integration starts at t = 0 from N(0, I) and
sums are exact over all N points.  It has no density: ``score_samples`` is not
provided, so it has no held-out log-likelihood.
"""

import time

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KernelDensity

from _common import ROOT  # noqa: F401  (puts the checkout on sys.path)
from sklearn_diffsample import PatternPosterior

__all__ = ["kde_cv", "gmm_bic", "SigmaCFDM", "MLPDDPM", "torch_available"]


def kde_cv(X, cv, bandwidths):
    """KernelDensity refitted at the GridSearchCV-best bandwidth (log-likelihood)."""
    search = GridSearchCV(KernelDensity(), {"bandwidth": list(bandwidths)}, cv=cv)
    search.fit(X)
    return search


def gmm_bic(X, max_components, random_state=0):
    """Full-covariance GaussianMixture with the n_components of lowest BIC."""
    best, bics = None, {}
    for k in range(1, max_components + 1):
        gmm = GaussianMixture(k, covariance_type="full", random_state=random_state,
                              reg_covar=1e-6).fit(X)
        bics[k] = float(gmm.bic(X))
        if best is None or bics[k] < bics[best.n_components]:
            best = gmm
    return best, bics


def _data_scale(X):
    scale = float(np.sqrt(np.mean(np.var(X, axis=0))))
    return scale if scale > 0 else 1.0


class SigmaCFDM(BaseEstimator):
    """Closed-form diffusion with a smoothed velocity (reference sigma-CFDM).

    Parameters
    ----------
    smoothing : float, default=0.1
        sigma, the width of the Gaussian perturbations, in standardised units.
    n_steps : int, default=50
        Euler steps from t = 0 to t = 1.
    n_smoothing_draws : int, default=8
        Antithetic Monte Carlo draws of eps per sample and step (even).
    batch_size : int, default=1024
        Samples integrated together (bounds memory).
    """

    def __init__(self, *, smoothing=0.1, n_steps=50, n_smoothing_draws=8, batch_size=1024):
        self.smoothing = smoothing
        self.n_steps = n_steps
        self.n_smoothing_draws = n_smoothing_draws
        self.batch_size = batch_size

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=np.float64)
        self.location_ = X.mean(axis=0)
        self.scale_ = _data_scale(X)
        self.posterior_ = PatternPosterior((X - self.location_) / self.scale_)
        self.n_features_in_ = X.shape[1]
        return self

    def _smoothed_denoiser(self, x, t, rng):
        if t == 0.0:
            # At t = 0 the posterior is uniform over the patterns.
            return np.broadcast_to(self.posterior_.patterns.mean(axis=0), x.shape)
        m, d = x.shape
        half = rng.standard_normal((m, self.n_smoothing_draws // 2, d))
        eps = np.concatenate([half, -half], axis=1)
        q = (x[:, None, :] + self.smoothing * eps).reshape(-1, d) / t
        stats = self.posterior_.query(q, ((1.0 - t) / t) ** 2, mean=True)
        return stats.mean.reshape(m, -1, d).mean(axis=1)

    def _integrate(self, x, rng):
        grid = np.linspace(0.0, 1.0, self.n_steps + 1)
        for t, t_next in zip(grid[:-1], grid[1:]):
            velocity = (self._smoothed_denoiser(x, t, rng) - x) / (1.0 - t)
            x = x + (t_next - t) * velocity
        return x

    def sample(self, n_samples=1, random_state=None):
        rng = np.random.default_rng(random_state)
        d = self.n_features_in_
        parts = []
        for start in range(0, n_samples, self.batch_size):
            size = min(self.batch_size, n_samples - start)
            parts.append(self._integrate(rng.standard_normal((size, d)), rng))
        Z = np.concatenate(parts) if parts else np.empty((0, d))
        return self.location_ + self.scale_ * Z


def torch_available():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


class MLPDDPM(BaseEstimator):
    """Small MLP noise-prediction DDPM trained on CPU (needs PyTorch).

    float32 on one CPU thread.  Standardised data, linear beta schedule over ``n_timesteps``, an MLP
    (``n_layers`` SiLU layers of width ``hidden``) on [x, sinusoidal time
    features] trained with Adam on the epsilon-prediction loss for ``n_iter``
    minibatches; ancestral DDPM sampling.  ``fit_time_`` is the training time.

    With ``until_plateau=True`` ``n_iter`` is a cap: the mean loss of each
    window of ``window`` minibatches is recorded in ``loss_curve_``, and
    training stops once ``patience`` windows in a row failed to improve the best
    window mean by 0.5%; the learning rate is then halved once and training goes
    on until the same happens again (``n_iter_`` minibatches in all).
    """

    def __init__(self, *, hidden=128, n_layers=3, n_timesteps=100, n_iter=3000,
                 batch_size=256, learning_rate=1e-3, until_plateau=False, window=500,
                 patience=4, random_state=0):
        self.hidden = hidden
        self.n_layers = n_layers
        self.n_timesteps = n_timesteps
        self.n_iter = n_iter
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.until_plateau = until_plateau
        self.window = window
        self.patience = patience
        self.random_state = random_state

    def _net(self, d):
        import torch
        layers, width = [], d + 16
        for _ in range(self.n_layers):
            layers += [torch.nn.Linear(width, self.hidden), torch.nn.SiLU()]
            width = self.hidden
        layers.append(torch.nn.Linear(width, d))
        return torch.nn.Sequential(*layers)

    def _features(self, x, t):
        import torch
        freqs = torch.exp(torch.linspace(0.0, np.log(1000.0), 8))
        angle = t[:, None].float() / self.n_timesteps * freqs[None, :] * 2 * np.pi
        return torch.cat([x, torch.sin(angle), torch.cos(angle)], dim=1)

    def fit(self, X, y=None):
        import torch
        start = time.perf_counter()
        # One thread: a small MLP gains nothing from more, and loses a lot on a busy machine.
        torch.set_num_threads(1)
        torch.manual_seed(self.random_state)
        X = np.asarray(X, dtype=np.float64)
        self.location_, self.scale_ = X.mean(axis=0), _data_scale(X)
        data = torch.from_numpy((X - self.location_) / self.scale_).float()
        betas = torch.linspace(1e-4, 0.02 * 1000 / self.n_timesteps,
                               self.n_timesteps).clamp(max=0.5)
        self.alphas_bar_ = torch.cumprod(1 - betas, 0)
        self.betas_ = betas
        self.net_ = self._net(X.shape[1])
        opt = torch.optim.Adam(self.net_.parameters(), lr=self.learning_rate)
        self.loss_curve_, window_losses, best, stale, decays = [], [], np.inf, 0, 0
        for it in range(self.n_iter):
            x0 = data[torch.randint(0, len(data), (self.batch_size,))]
            t = torch.randint(0, self.n_timesteps, (self.batch_size,))
            noise = torch.randn_like(x0)
            ab = self.alphas_bar_[t][:, None]
            xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
            loss = ((self.net_(self._features(xt, t)) - noise) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            window_losses.append(float(loss.detach()))
            if len(window_losses) == self.window:
                mean = float(np.mean(window_losses))
                self.loss_curve_.append(mean)
                window_losses = []
                improved = mean < best * (1 - 0.005)
                best, stale = (mean, 0) if improved else (min(best, mean), stale + 1)
                if self.until_plateau and stale >= self.patience:
                    if decays:
                        break
                    decays, stale = 1, 0
                    for group in opt.param_groups:
                        group["lr"] *= 0.5
        self.n_iter_ = it + 1
        self.final_loss_ = self.loss_curve_[-1] if self.loss_curve_ else float(loss.detach())
        self.n_features_in_ = X.shape[1]
        self.fit_time_ = time.perf_counter() - start
        return self

    def sample(self, n_samples=1, random_state=None):
        import torch
        gen = torch.Generator().manual_seed(0 if random_state is None else int(random_state))
        d = self.n_features_in_
        x = torch.randn((n_samples, d), generator=gen)
        alphas = 1 - self.betas_
        with torch.no_grad():
            for k in reversed(range(self.n_timesteps)):
                t = torch.full((n_samples,), k)
                eps = self.net_(self._features(x, t))
                x = (x - self.betas_[k] / (1 - self.alphas_bar_[k]).sqrt() * eps) / alphas[k].sqrt()
                if k > 0:
                    x = x + self.betas_[k].sqrt() * torch.randn(x.shape, generator=gen)
        return self.location_ + self.scale_ * x.numpy().astype(np.float64)
