"""TINY: small keyword arguments and a matching DataInfo for every registered model preset.

The contract test iterates ``MODELS.names()`` and builds each preset with these settings; a preset
missing here fails it. Keep models tiny (a few thousand parameters) so the whole table runs in
seconds on CPU.
"""

from __future__ import annotations

from typing import Any

from simulacra.data.info import DataInfo

DIGITS = DataInfo(event_shape=(1, 8, 8), support="unit", num_classes=10, levels=17)
VECTORS = DataInfo(event_shape=(5,), support="real")
TOY = DataInfo(event_shape=(2,), support="real")

TINY: dict[str, tuple[dict[str, Any], DataInfo]] = {
    "vae": ({"latent_dim": 3, "hidden": [16]}, DIGITS),
    "conv-vae": ({"latent_dim": 3, "channels": [4, 8]}, DIGITS),
    "beta-vae": ({"latent_dim": 3, "hidden": [16]}, DIGITS),
    "iwae": ({"latent_dim": 3, "hidden": [16], "num_samples": 3}, DIGITS),
    "cvae": ({"latent_dim": 3, "hidden": [16]}, DIGITS),
    "miwae": ({"latent_dim": 2, "hidden": [16], "num_samples": 3}, VECTORS),
    "vae-iaf": ({"latent_dim": 3, "hidden": [16], "flow_transforms": 2, "flow_hidden": [8]}, DIGITS),
    "vae-flow-prior": ({"latent_dim": 3, "hidden": [16], "flow_transforms": 2, "flow_hidden": [8]}, DIGITS),
    # -- learned priors: the VampPrior and LSGM (two-stage, on a tiny vae)
    "vae-vamp": ({"latent_dim": 3, "hidden": [16], "prior": {"name": "vamp", "components": 4}}, DIGITS),
    "lsgm": (
        {"stage_one": {"name": "vae", "latent_dim": 3, "hidden": [16]}, "hidden": [8], "sample_steps": 4},
        DIGITS,
    ),
    "ae": ({"latent_dim": 3, "hidden": [16]}, DIGITS),
    "conv-ae": ({"latent_dim": 3, "channels": [4, 8]}, DIGITS),
    "linear-ae": ({"latent_dim": 2}, VECTORS),
    "dae": ({"latent_dim": 3, "hidden": [16], "corruption": "masking", "noise": 0.25}, DIGITS),
    # -- hierarchical VAEs
    "lvae": ({"groups": 2, "latent_dim": [3, 2], "hidden": 8}, DIGITS),
    "hvae": ({"groups": 2, "latent_dim": 2, "hidden": 4, "beta": 0.5}, DIGITS),
    "hvae-vamp": (
        {"groups": 2, "latent_dim": 2, "hidden": 4, "prior": {"name": "vamp", "components": 3}},
        DIGITS,
    ),
    # -- flows
    "realnvp": ({"transforms": 2, "hidden": [8], "batchnorm": True}, TOY),
    "maf": ({"transforms": 2, "hidden": [8], "conditional": True}, DIGITS),
    "iaf": ({"transforms": 2, "hidden": [8]}, VECTORS),
    # -- flows: splines and the torus
    "nsf": ({"transforms": 2, "hidden": [8], "bins": 4}, VECTORS),
    "nsf-coupling": ({"transforms": 2, "hidden": [8], "bins": 4}, TOY),
    "torus": ({"transforms": 2, "hidden": [8], "bins": 4}, TOY),
    # -- flows: glow and image flows
    "glow": (
        {"levels": 2, "steps": 2, "hidden": 8, "conditional": True, "dequantization": "variational"},
        DIGITS,
    ),
    # -- flows: umnn and cnf
    "umnn": (
        {"transforms": 2, "hidden": [8], "integrand_embedding": 2, "integrand_hidden": [8], "nodes": 8},
        TOY,
    ),
    "cnf": ({"hidden": [8], "conditional": True, "train_rtol": 1e-3, "train_atol": 1e-3}, DIGITS),
    # -- flows: conditional density estimation (a continuous context: x of simulation-based inference)
    "posterior": ({"context_dim": 3, "transforms": 2, "hidden": [8], "embedding_dim": 4}, VECTORS),
    # -- autoregressive
    "nade": ({"hidden": 8}, DIGITS),
    "rnade": ({"hidden": 8, "components": 2}, VECTORS),
    "made": ({"hidden": [16], "num_masks": 3}, DIGITS),
    "pixelcnn": ({"channels": 4, "blocks": 1, "kernel_size": 3}, DIGITS),
    "gated-pixelcnn": ({"channels": 4, "layers": 1, "kernel_size": 3}, DIGITS),
    "transformer": (
        {"dim": 8, "layers": 1, "heads": 2},
        DataInfo(event_shape=(12,), support="unit", levels=7),
    ),
    # -- diffusion
    "ddpm": (
        {"timesteps": 10, "channels": [4, 8], "attention_resolution": 4, "conditional": True},
        DIGITS,
    ),
    "score-sde": ({"sde": "ve", "sigma_max": 5.0, "hidden": [16], "sample_steps": 10}, VECTORS),
    # -- adversarial: DCGAN pairs on 8x8 images, MLP pairs on vectors
    "gan": ({"latent_dim": 4, "channels": [4, 8], "conditional": True, "r1": 1.0, "r1_every": 2}, DIGITS),
    "wgan-gp": ({"latent_dim": 3, "hidden": [8], "critic_updates": 2}, TOY),
    "sngan": (
        {"latent_dim": 4, "channels": [4, 8], "conditional": True, "augment": "color,translation,cutout"},
        DIGITS,
    ),
    "lsgan": ({"latent_dim": 3, "hidden": [8, 8]}, VECTORS),
    "fgan": ({"latent_dim": 3, "hidden": [8], "divergence": "kl"}, TOY),
    # -- image-to-image: pix2pix on 8x8 digits, super-resolution x2; cyclegan between two sources
    "pix2pix": (
        {"task": "super-resolution", "factor": 2, "channels": [4, 8], "patch_channels": [4, 8]},
        DIGITS,
    ),
    "cyclegan": (
        {"channels": [4, 8], "patch_channels": [4, 8]},
        DataInfo(event_shape=(1, 8, 8), support="unit", num_classes=2, levels=17, label_names=("a", "b")),
    ),
    # -- energy-based: PCD with ULA on a 2-D toy (log Z by quadrature); JEM on 8x8 digits
    "ebm": ({"hidden": [8], "steps": 2, "buffer_size": 16, "sample_steps": 3, "quadrature_points": 32}, TOY),
    "jem": ({"channels": [4, 8], "steps": 2, "buffer_size": 16, "sample_steps": 3}, DIGITS),
    # -- discrete latents: a 4x4 code grid of 8x8 digits (8 codes); the prior over a tiny vqvae's codes
    "vqvae": ({"num_codes": 8, "code_dim": 3, "channels": [4]}, DIGITS),
    "vqvae-prior": (
        {
            "stage_one": {"name": "vqvae", "num_codes": 8, "code_dim": 3, "channels": [4]},
            "channels": 8,
            "layers": 1,
            "heads": 2,
        },
        DIGITS,
    ),
    # -- test-only (tests/toymodels.py): a two-group model for the contract's per-group checks
    "test-adversarial": ({"latent": 2, "hidden": 8}, VECTORS),
}


def context_for(model: Any, n: int, labels: Any = None) -> Any:
    """c for a conditional preset: labels when the data have classes (``labels``, else 0, 1, ...),
    features (n, context_dim) for a preset conditioned on a continuous context (``posterior``);
    degraded images (n, *event) for an image-translation model (``pix2pix``)."""
    import torch

    from simulacra.models.base import ImageTranslation

    if isinstance(model, ImageTranslation):  # observations of images (pix2pix): their degraded versions
        return model.observe(
            torch.rand(n, *model.info.event_shape, generator=torch.Generator().manual_seed(1))
        )
    if not model.conditional:
        return None
    if model.info.num_classes is None:
        return torch.randn(n, model.spec["context_dim"], generator=torch.Generator().manual_seed(1))
    return labels if labels is not None else torch.arange(n) % model.info.num_classes


def draw(model: Any, n: int, seed: int) -> Any:
    """What the contract checks of a preset's output: n samples under a generator seeded
    ``seed``; for a domain-translation model (``cyclegan``), which draws nothing of its own, the
    translations (A -> B) of n random images drawn with that seed."""
    import torch

    from simulacra.models.base import DomainTranslation

    generator = torch.Generator().manual_seed(seed)
    if isinstance(model, DomainTranslation):
        return model.translate(torch.rand(n, *model.info.event_shape, generator=generator), "a->b")
    return model.sample(n, context_for(model, n), generator=generator)
