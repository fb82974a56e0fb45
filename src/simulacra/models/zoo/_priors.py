"""The VAE's prior as a configuration: :data:`LATENT_PRIORS`, one name per prior p(z).

A VAE preset's ``prior`` setting is a name or a spec, ``"vamp"`` or
``{"name": "vamp", "components": 100}``, resolved here once into a lazy prior module
``(c, n) -> Distribution`` (:mod:`simulacra.distributions.lazy`):

* ``normal``: N(0, I);
* ``vamp``: the VampPrior, a mixture of the encoder's posteriors at K learned pseudo-inputs
  (Tomczak & Welling 2018);
* ``maf``: a masked autoregressive flow over z (Papamakarios et al. 2017), conditional on the label
  in a conditional VAE (``vae-flow-prior`` is the ``vae`` preset with it);
* ``diffusion``: a score-based diffusion model over z with the mixed score parameterization
  (LSGM, Vahdat et al. 2021; the ``lsgm`` preset trains it on top of a VAE run or jointly).

Each builder receives the :class:`PriorSite` (what the prior is built for) and its own settings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from simulacra.data.info import DataInfo
from simulacra.distributions.lazy import Amortized
from simulacra.distributions.standard import DiagonalGaussian, StandardNormal
from simulacra.errors import ConfigError, positive_int
from simulacra.flows.flow import LazyFlow
from simulacra.flows.recipes import maf_layers
from simulacra.models.latent_prior import LatentDiffusion, VampPrior
from simulacra.models.zoo._common import _flow_context
from simulacra.nn.time import TimeMLP
from simulacra.processes.schedules import SCHEDULES
from simulacra.registry import Registry
from simulacra.samplers import resolve_sampler


@dataclass(frozen=True)
class PriorSite:
    """What a prior p(z | c) is built for: the data, the latent size, the encoder
    ``(x, c) -> q(z | x)`` that the VampPrior reads (a VAE's encoder module, or a hierarchy's
    ``top_posterior``), whether the VAE is conditional, and the flow settings of the ``vae`` preset
    (``flow_transforms``, ``flow_hidden``), the ``maf`` prior's defaults."""

    info: DataInfo
    latent_dim: int
    encoder: Callable[..., Any]
    conditional: bool = False
    embedding_dim: int | None = None
    flow_transforms: int = 4
    flow_hidden: Sequence[int] = (64, 64)


LATENT_PRIORS: Registry[Callable[..., nn.Module]] = Registry("latent prior")


def _unconditional(site: PriorSite, name: str) -> None:
    if site.conditional:
        raise ConfigError(
            f"the {name} prior is unconditional; use prior='normal' or 'maf' with a conditional VAE"
        )


@LATENT_PRIORS.register("normal", "N(0, I)")
def normal_prior(site: PriorSite) -> nn.Module:
    """p(z) = N(0, I)."""
    return StandardNormal(site.latent_dim)


@LATENT_PRIORS.register(
    "vamp", "VampPrior (Tomczak & Welling 2018): a mixture of posteriors at K pseudo-inputs"
)
def vamp_prior(site: PriorSite, components: int = 500, init_std: float = 1.0) -> nn.Module:
    """p(z) = (1/K) Σ_k q(z | u_k), K = ``components`` learned pseudo-inputs (500 in the paper)."""
    _unconditional(site, "vamp")
    # a VAE's encoder module must be the diagonal Gaussian one; a hierarchy passes its q(z_L | x)
    gaussian = isinstance(site.encoder, Amortized) and isinstance(site.encoder.head, DiagonalGaussian)
    if isinstance(site.encoder, nn.Module) and not gaussian:
        raise ConfigError(
            "the vamp prior mixes diagonal Gaussian posteriors: use it with posterior='gaussian'"
        )
    return VampPrior(site.encoder, site.info, components, init_std)


@LATENT_PRIORS.register("maf", "a masked autoregressive flow over z (Papamakarios et al. 2017)")
def maf_prior(
    site: PriorSite, transforms: int | None = None, hidden: Sequence[int] | None = None
) -> nn.Module:
    """A MAF of ``transforms`` layers of ``hidden`` units (default the preset's ``flow_transforms``
    and ``flow_hidden``), every layer reading the label when the VAE is conditional."""
    context, features = _flow_context(site.info, site.conditional, site.embedding_dim)
    transforms = site.flow_transforms if transforms is None else positive_int(transforms, "transforms")
    hidden = site.flow_hidden if hidden is None else hidden
    layers = maf_layers(site.latent_dim, transforms, hidden, "relu", features)
    return LazyFlow(layers, (site.latent_dim,), context=context)


@LATENT_PRIORS.register("diffusion", "a score-based diffusion over z, mixed score parameterization (LSGM)")
def diffusion_prior(
    site: PriorSite,
    sde: str = "vp",
    hidden: Sequence[int] = (256, 256, 256),
    embedding_dim: int = 64,
    mixing_logit: float = -6.0,
    weighting: str = "eps",
    sampler: str | Mapping[str, Any] = "euler-maruyama",
    sample_steps: int = 100,
) -> nn.Module:
    """A :class:`LatentDiffusion` on the ``sde`` (vp, subvp, cosine) with a TimeMLP of ``hidden``
    units predicting the correction ε'; m = sigmoid(``mixing_logit``) at the start (LSGM: −6);
    ``weighting`` how the prior learns (``eps``: the unweighted denoising loss, LSGM's reweighted
    objective; ``likelihood``: the bound itself);
    ``sampler`` (a name or ``{"name": ..., options}``) draws z with ``sample_steps`` points."""
    _unconditional(site, "diffusion")
    if sde not in ("vp", "subvp", "cosine"):
        raise ConfigError(f"the latent diffusion's sde must be 'vp', 'subvp' or 'cosine'; found {sde!r}")
    network = TimeMLP(
        (site.latent_dim,), [positive_int(h, "each hidden size") for h in hidden], embedding_dim
    )
    return LatentDiffusion(
        site.latent_dim, network, SCHEDULES.build(sde), mixing_logit=mixing_logit,
        weighting=weighting, sampler=resolve_sampler(sampler), sample_steps=sample_steps,
    )  # fmt: skip


def build_prior(spec: str | Mapping[str, Any], site: PriorSite) -> nn.Module:
    """The prior named by ``spec`` (a name or ``{"name": ..., **settings}``) for ``site``."""
    return LATENT_PRIORS.build(spec, site=site)


def named(spec: str | Mapping[str, Any], default: str) -> str | Mapping[str, Any]:
    """``spec`` with the preset's ``default`` prior name filled in where a mapping has none, so that
    ``--set model.prior.components=20`` on ``vae-vamp`` sets the VampPrior's K instead of failing."""
    if isinstance(spec, Mapping) and "name" not in spec:
        return {"name": default, **spec}
    return spec


def prior_name(spec: str | Mapping[str, Any]) -> str:
    """The name of a prior spec."""
    return LATENT_PRIORS.split(spec)[0]
