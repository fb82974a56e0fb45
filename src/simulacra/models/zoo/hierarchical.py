"""Hierarchical VAE presets: lvae (Sønderby et al. 2016) and hvae (NVAE/VDVAE-style residual cells)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn
from torch.distributions import Distribution

from simulacra.data.info import DataInfo
from simulacra.distributions.heads import head_for
from simulacra.distributions.ladder import PrecisionWeighted, RelativeToPrior
from simulacra.errors import ConfigError
from simulacra.models.hierarchical import HierarchicalVAE
from simulacra.models.zoo._priors import PriorSite, build_prior, named, prior_name
from simulacra.models.zoo._registry import MODELS
from simulacra.nn.ladder import Ladder, check_groups, conv_ladder, mlp_ladder
from simulacra.nn.mlp import check_dropout

TOP_PRIORS = ("normal", "vamp", "maf")
"""The priors p(z_L) a hierarchy's top group takes (names in ``LATENT_PRIORS``)."""


def _top_prior(
    info: DataInfo, ladder: Ladder, spec: str | Mapping[str, Any]
) -> Callable[[Callable[..., Distribution]], nn.Module] | None:
    """None for N(0, I); else the factory that builds the learned p(z_L) on the model's q(z_L | x)."""
    name = prior_name(spec)
    if name == "normal":
        return None
    if name not in TOP_PRIORS:
        hint = (
            " (a latent diffusion prior is the lsgm preset, on a one-group VAE)"
            if name == "diffusion"
            else ""
        )
        raise ConfigError(
            f"a hierarchy's top group takes the prior {', '.join(TOP_PRIORS)}; found {name!r}{hint}"
        )
    size = math.prod(ladder.latent_shapes[-1])
    return lambda encoder: build_prior(spec, PriorSite(info, size, encoder))


def _hierarchy(
    info: DataInfo, arch: str, groups: int, latent: int | Sequence[int], hidden: int | Sequence[int],
    activation: str, likelihood: str, merge: str, residual: bool, prior: str | Mapping[str, Any] = "normal",
    dropout: float = 0.0, gated: bool = False, **options: float | bool | None,
) -> HierarchicalVAE:  # fmt: skip
    """Build the ladder of ``arch`` ("mlp" or "conv") with the posterior ``merge`` ("precision":
    LVAE's; "relative": NVAE's) and a likelihood head."""
    check_groups(groups)
    dropout = check_dropout(dropout)
    if not isinstance(gated, bool):
        raise ConfigError(f"gated must be true or false; found {gated!r}")
    if merge not in ("precision", "relative"):
        raise ConfigError(f"unknown merge {merge!r}; expected 'precision' (LVAE) or 'relative' (NVAE)")
    merger = PrecisionWeighted() if merge == "precision" else RelativeToPrior()
    head = head_for(info, likelihood)
    reads = merger.reads_prior_state
    ladder: Ladder
    if arch == "mlp":
        ladder = mlp_ladder(info.dim, head.params_per_dim * info.dim, latent, hidden, groups,
                            residual=residual, posterior_reads_state=reads, activation=activation,
                            dropout=dropout, gated=gated)  # fmt: skip
    elif arch == "conv":
        if not info.is_image:
            raise ConfigError(f"arch='conv' needs images (C, H, W); found event_shape {info.event_shape}")
        if dropout > 0 or gated:
            option = "dropout" if dropout > 0 else "gated"
            raise ConfigError(
                f"{option} is an option of the MLP cells (arch='mlp'); the conv cells have none"
            )
        out = head.params_per_dim * info.event_shape[0]
        ladder = conv_ladder(info.event_shape, out, latent, hidden, groups,
                             residual=residual, posterior_reads_state=reads, activation=activation)  # fmt: skip
    else:
        raise ConfigError(f"unknown architecture {arch!r}; expected 'mlp' or 'conv'")
    top = _top_prior(info, ladder, prior)
    return HierarchicalVAE(info, ladder, merger, head, top_prior=top, **options)  # type: ignore[arg-type]


@MODELS.register(
    "lvae", "ladder VAE (Sønderby et al. 2016): precision-weighted merge of bottom-up and top-down"
)
def lvae(
    info: DataInfo, groups: int = 3, latent_dim: int | Sequence[int] = (64, 32, 16),
    hidden: int | Sequence[int] = (512, 256, 128), activation: str = "relu", likelihood: str = "auto",
    arch: str = "mlp", merge: str = "precision", residual: bool = False, beta: float = 1.0,
    free_bits: float = 0.0, kl_balance: bool = False, grad_clip: float | None = 200.0,
    grad_skip: float | None = None, prior: str | Mapping[str, Any] = "normal", num_samples: int = 1,
    dropout: float = 0.0, gated: bool = False,
) -> HierarchicalVAE:  # fmt: skip
    """L = ``groups`` latent groups of ``latent_dim`` units (z_1, nearest the data, first), MLP
    blocks of ``hidden`` units, q(z_i | ·) = bottom-up N(μ̂, σ̂²) ⊗ p(z_i | z_{>i}). Sizes are one
    integer for every group or one per group (MNIST in the paper: 5 groups, 64-32-16-8-4).
    ``prior``: p(z_L) of the top group, ``normal``, ``vamp`` (``{"name": "vamp", "components": K}``)
    or ``maf``; ``num_samples`` > 1 trains on the IWAE bound. ``dropout``: p in the MLP cells;
    ``gated``: gated dense units in them (h ⊙ σ(g), Tomczak & Welling 2018)."""
    return _hierarchy(info, arch, groups, latent_dim, hidden, activation, likelihood, merge, residual, prior, dropout, gated,
                      beta=beta, free_bits=free_bits, kl_balance=kl_balance, grad_clip=grad_clip, grad_skip=grad_skip,
                      num_samples=num_samples)  # fmt: skip


@MODELS.register("hvae", "NVAE/VDVAE-style hierarchy: residual top-down cells, posterior relative to prior")
def hvae(
    info: DataInfo, groups: int = 3, latent_dim: int | Sequence[int] = 8, hidden: int | Sequence[int] = 64,
    activation: str = "silu", likelihood: str = "auto", arch: str = "auto", beta: float = 1.0,
    free_bits: float = 0.0, kl_balance: bool = True, grad_clip: float | None = 200.0,
    grad_skip: float | None = None, prior: str | Mapping[str, Any] = "normal", num_samples: int = 1,
    dropout: float = 0.0, gated: bool = False,
) -> HierarchicalVAE:  # fmt: skip
    """q(z_i | ·) = N(μ_p + Δμ, (σ_p Δσ)²), residual top-down cells d ← d + f([d, z]) with a learned
    top state; ``arch="auto"``: convolutional cells for images (a group per resolution, 28 → 14, 7,
    4; ``latent_dim`` and ``hidden`` are channels), MLP cells for vectors; KL balancing on.
    ``prior``: p(z_L) of the top group, ``normal``, ``vamp`` (the hierarchical VampPrior VAE of
    Tomczak & Welling 2018) or ``maf``; ``num_samples`` > 1 trains on the IWAE bound. ``dropout``: p
    in the MLP cells; ``gated``: gated dense units in them (h ⊙ σ(g), Tomczak & Welling 2018)."""
    arch = ("conv" if info.is_image else "mlp") if arch == "auto" else arch
    return _hierarchy(info, arch, groups, latent_dim, hidden, activation, likelihood, "relative", True, prior, dropout, gated,
                      beta=beta, free_bits=free_bits, kl_balance=kl_balance, grad_clip=grad_clip, grad_skip=grad_skip,
                      num_samples=num_samples)  # fmt: skip


@MODELS.register(
    "hvae-vamp",
    "hvae with a VampPrior on its top group (Tomczak & Welling 2018's hierarchical VampPrior VAE)",
)
def hvae_vamp(info: DataInfo, prior: str | Mapping[str, Any] = "vamp", **kwargs: Any) -> HierarchicalVAE:
    """The ``hvae`` preset with p(z_L) = (1/K) Σ_k q(z_L | u_k) at K learned pseudo-inputs (500 by
    default; ``prior={"name": "vamp", "components": K}``, or ``--set model.prior.components=K``); other
    keywords as ``hvae``."""
    return hvae(info, prior=named(prior, "vamp"), **kwargs)
