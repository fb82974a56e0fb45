"""Post-hoc latent densities: p(z) fitted to the codes of a trained auto-encoder.

A deterministic auto-encoder has no prior; to generate, fit a density to the codes
``z_n = f(x_n)`` of the training data and decode draws from it (Ghosh et al. 2020, "From
variational to deterministic autoencoders"). Each density is a lazy distribution module
``forward(c=None, n=None) -> Distribution`` (batch shape ``(len(c),)``, ``(n,)`` or ``()``)
whose parameters are **buffers**, so they move with the model and save in safetensors, and
``fit(z)`` sets them from codes (N, dim).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.distributions import (
    Categorical,
    Distribution,
    Independent,
    MixtureSameFamily,
    MultivariateNormal,
    Normal,
)

from simulacra.distributions.standard import StandardNormal, batch_shape_of
from simulacra.errors import ConfigError, DataError
from simulacra.registry import Registry


def _check_codes(z: Tensor, dim: int, minimum: int = 2) -> Tensor:
    if z.dim() != 2 or z.shape[1] != dim:
        raise DataError(f"latent codes must have shape (N, {dim}); found {tuple(z.shape)}")
    if z.shape[0] < minimum:
        raise DataError(f"fitting a latent density needs at least {minimum} codes; found {z.shape[0]}")
    if not bool(torch.isfinite(z).all()):
        raise DataError("latent codes contain NaN or infinite values")
    return z.detach()


class StandardNormalDensity(nn.Module):
    """p(z) = N(0, I): the VAE prior; ``fit`` leaves it unchanged (a baseline for the others)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = int(dim)
        self.normal = StandardNormal(self.dim)

    def fit(self, z: Tensor) -> StandardNormalDensity:
        _check_codes(z, self.dim, minimum=0)
        return self

    def forward(self, c: Tensor | None = None, n: int | None = None) -> Distribution:
        return self.normal(c, n)


class DiagonalGaussianDensity(nn.Module):
    """p(z) = N(z; m, diag s²) with m, s the per-dimension mean and standard deviation of the codes."""

    def __init__(self, dim: int, min_std: float = 1e-6) -> None:
        super().__init__()
        self.dim = int(dim)
        self.min_std = float(min_std)
        self.register_buffer("loc", torch.zeros(self.dim))
        self.register_buffer("scale", torch.ones(self.dim))

    @torch.no_grad()
    def fit(self, z: Tensor) -> DiagonalGaussianDensity:
        """Set m = mean(z), s = std(z) (unbiased) over the N codes (N, dim)."""
        z = _check_codes(z, self.dim)
        self.loc.copy_(z.mean(0))
        self.scale.copy_(z.std(0).clamp_min(self.min_std))
        return self

    def forward(self, c: Tensor | None = None, n: int | None = None) -> Distribution:
        batch = batch_shape_of(c, n)
        base = Normal(
            self.loc.expand(*batch, self.dim), self.scale.expand(*batch, self.dim), validate_args=False
        )
        return Independent(base, 1, validate_args=False)


class GaussianMixtureDensity(nn.Module):
    """p(z) = Σ_k π_k N(z; μ_k, Σ_k), fitted by EM (scikit-learn's GaussianMixture).

    Stored as buffers: mixture logits log π (K,), means (K, dim) and Cholesky factors
    L_k (K, dim, dim) with Σ_k = L_k L_kᵀ (diagonal for ``covariance="diag"``). Before ``fit`` it
    is a mixture of K standard normals, i.e. N(0, I).

    Args:
        dim: latent size.
        num_components: K.
        covariance: ``"full"`` or ``"diag"``.
        reg_covar: added to the covariance diagonals by EM, for stability.
    """

    def __init__(
        self, dim: int, num_components: int = 10, covariance: str = "full", reg_covar: float = 1e-6
    ) -> None:
        super().__init__()
        if covariance not in ("full", "diag"):
            raise ConfigError(
                f"GaussianMixtureDensity covariance must be 'full' or 'diag'; found {covariance!r}"
            )
        if int(num_components) < 1:
            raise ConfigError(f"GaussianMixtureDensity needs num_components >= 1; found {num_components}")
        self.dim, self.num_components = int(dim), int(num_components)
        self.covariance, self.reg_covar = covariance, float(reg_covar)
        k = self.num_components
        self.register_buffer("logits", torch.zeros(k))
        self.register_buffer("means", torch.zeros(k, self.dim))
        self.register_buffer("scale_tril", torch.eye(self.dim).expand(k, self.dim, self.dim).clone())

    @torch.no_grad()
    def fit(self, z: Tensor, seed: int = 0) -> GaussianMixtureDensity:
        """Run EM on the codes (N, dim), seeded; copies the result into the buffers."""
        from sklearn.mixture import GaussianMixture  # heavy import, only when fitting

        z = _check_codes(z, self.dim, minimum=self.num_components)
        gmm = GaussianMixture(
            self.num_components, covariance_type=self.covariance, reg_covar=self.reg_covar, random_state=seed
        )
        gmm.fit(z.cpu().double().numpy())
        weights = torch.as_tensor(gmm.weights_)
        means = torch.as_tensor(gmm.means_)
        cov = torch.as_tensor(gmm.covariances_)
        tril = torch.diag_embed(cov.sqrt()) if self.covariance == "diag" else torch.linalg.cholesky(cov)
        self.logits.copy_(weights.log())
        self.means.copy_(means)
        self.scale_tril.copy_(tril)
        return self

    def forward(self, c: Tensor | None = None, n: int | None = None) -> Distribution:
        mixture = Categorical(logits=self.logits, validate_args=False)
        components = MultivariateNormal(self.means, scale_tril=self.scale_tril, validate_args=False)
        dist = MixtureSameFamily(mixture, components, validate_args=False)
        batch = batch_shape_of(c, n)
        return dist.expand(torch.Size(batch)) if batch else dist


LATENT_DENSITIES: Registry[Callable[..., nn.Module]] = Registry("latent density")
LATENT_DENSITIES.register("normal", "N(0, I), not fitted")(StandardNormalDensity)
LATENT_DENSITIES.register("gaussian", "diagonal Gaussian fitted to the codes")(DiagonalGaussianDensity)
LATENT_DENSITIES.register("gmm", "Gaussian mixture fitted to the codes by EM")(GaussianMixtureDensity)
