"""Model presets: short registered functions that compose the parts into named models.

Each preset takes the data's :class:`DataInfo` first and keyword arguments after it, and returns
a :class:`GenerativeModel`. ``simulacra models`` lists them with the first docstring line.

The presets live in one module per family (:mod:`~simulacra.models.zoo.autoencoders`,
:mod:`~simulacra.models.zoo.flows`, :mod:`~simulacra.models.zoo.autoregressive`,
:mod:`~simulacra.models.zoo.diffusion`, :mod:`~simulacra.models.zoo.gan`,
:mod:`~simulacra.models.zoo.translation`, :mod:`~simulacra.models.zoo.ebm`); importing this package registers all of them in
:data:`MODELS`.
"""

from __future__ import annotations

from simulacra.models.zoo._registry import (
    ACCELERATOR_IMAGE_DEFAULTS,
    IMAGE_DEFAULTS,
    MISSING_DATA_PRESETS,
    MODELS,
    build_model,
    recorded_spec,
)

# Importing a family registers its presets: these imports keep the registration order fixed.
# isort: off
from simulacra.models.zoo.autoencoders import (
    vae, vae_iaf, vae_flow_prior, conv_vae, beta_vae, iwae, miwae, cvae, ae, conv_ae, linear_ae, dae,
)  # fmt: skip
from simulacra.models.zoo.autoencoders import vae_vamp, lsgm
from simulacra.models.zoo.vqvae import vqvae, vqvae_prior
from simulacra.models.zoo.hierarchical import lvae, hvae
from simulacra.models.zoo.flows import realnvp, maf, iaf, nsf, nsf_coupling, torus, glow, umnn, cnf, posterior
from simulacra.models.zoo.autoregressive import nade, rnade, made, pixelcnn, gated_pixelcnn, transformer
from simulacra.models.zoo.diffusion import ddpm, score_sde
from simulacra.models.zoo.gan import gan, wgan_gp, sngan, lsgan, fgan
from simulacra.models.zoo.translation import pix2pix
from simulacra.models.zoo.ebm import ebm, jem
# isort: on

__all__ = [
    "ACCELERATOR_IMAGE_DEFAULTS",
    "IMAGE_DEFAULTS",
    "MISSING_DATA_PRESETS",
    "MODELS",
    "build_model",
    "recorded_spec",
    # auto-encoders and VAEs
    "vae", "vae_iaf", "vae_flow_prior", "conv_vae", "beta_vae", "iwae", "miwae", "cvae",
    "ae", "conv_ae", "linear_ae", "dae",
    # learned priors for VAEs
    "vae_vamp", "lsgm",
    # discrete latents
    "vqvae", "vqvae_prior",
    # hierarchical VAEs
    "lvae", "hvae",
    # normalizing flows
    "realnvp", "maf", "iaf", "nsf", "nsf_coupling", "torus", "glow", "umnn", "cnf", "posterior",
    # autoregressive
    "nade", "rnade", "made", "pixelcnn", "gated_pixelcnn", "transformer",
    # diffusion
    "ddpm", "score_sde",
    # adversarial
    "gan", "wgan_gp", "sngan", "lsgan", "fgan",
    # image-to-image
    "pix2pix",
    # energy-based
    "ebm", "jem",
]  # fmt: skip
