"""Tiny models and datasets for the training-loop tests (registered as ``test-*`` presets)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simulacra.data.info import DataInfo, Dataset, Split
from simulacra.models.base import GenerativeModel, LossOutput
from simulacra.models.zoo import MODELS


class ToyObjective:
    """Holds the KL weight β that KL warm-up anneals."""

    def __init__(self, beta: float = 1.0) -> None:
        self.beta = beta


class ToyGaussianAE(GenerativeModel):
    """A stochastic Gaussian auto-encoder: z = μ(x) + σ(x) ε with ε from torch's global RNG.

    loss = mean_b [ ||x - dec(z)||² / D + β KL(q(z|x) || N(0, I)) ]. A BatchNorm gives it
    buffers that change during training (running statistics).
    """

    def __init__(self, info: DataInfo, hidden: int = 16, latent: int = 2, beta: float = 1.0) -> None:
        super().__init__(info)
        d = info.dim
        self.latent = latent
        self.encoder = nn.Sequential(
            nn.Linear(d, hidden), nn.BatchNorm1d(hidden), nn.Tanh(), nn.Linear(hidden, 2 * latent)
        )
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.Tanh(), nn.Linear(hidden, d))
        self.objective = ToyObjective(beta)
        self.betas_seen: list[float] = []

    def loss_weights(self) -> dict[str, float]:
        return {"kl": float(self.objective.beta)}

    def set_loss_weight(self, name: str, value: float) -> None:
        self.objective.beta = value

    def loss(self, x: Tensor, c: Tensor | None = None, *, group: str = "main") -> LossOutput:
        x = x.flatten(1)
        mu, logvar = self.encoder(x).chunk(2, dim=-1)
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
        rec = (x - self.decoder(z)).pow(2).mean(-1)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1)
        self.betas_seen.append(float(self.objective.beta))
        loss = (rec + self.objective.beta * kl).mean()
        return LossOutput(loss, {"rec": rec.mean().detach(), "kl": kl.mean().detach()})

    def sample(
        self, n: int, c: Tensor | None = None, *, generator: torch.Generator | None = None, **_: Any
    ) -> Tensor:
        z = torch.randn(n, self.latent, generator=generator, device=self.device)
        return self.decoder(z).view(n, *self.event_shape)


class ToyDeterministicAE(GenerativeModel):
    """A deterministic auto-encoder with mean-squared error (no randomness at all)."""

    def __init__(self, info: DataInfo, hidden: int = 8, conditional: bool = False) -> None:
        super().__init__(info)
        d = info.dim
        self.conditional = conditional
        self.net = nn.Sequential(nn.Linear(d, hidden), nn.Tanh(), nn.Linear(hidden, d))
        self.embed = nn.Embedding(info.num_classes or 1, d) if conditional else None
        self.contexts: list[Tensor | None] = []

    def loss(self, x: Tensor, c: Tensor | None = None, *, group: str = "main") -> LossOutput:
        x = x.flatten(1)
        self.contexts.append(c)
        h = x if self.embed is None or c is None else x + self.embed(c)
        return LossOutput((self.net(h) - x).pow(2).mean())

    def sample(
        self, n: int, c: Tensor | None = None, *, generator: torch.Generator | None = None, **_: Any
    ) -> Tensor:
        return self.net(torch.randn(n, self.info.dim, generator=generator, device=self.device)).view(
            n, *self.event_shape
        )


class ToyTwoGroup(GenerativeModel):
    """Two optimizer groups "a" and "b", each fitting its own linear map; counts loss calls."""

    groups = ("a", "b")

    def __init__(self, info: DataInfo) -> None:
        super().__init__(info)
        self.a = nn.Linear(info.dim, info.dim)
        self.b = nn.Linear(info.dim, info.dim)
        self.calls: Counter[str] = Counter()

    def loss(self, x: Tensor, c: Tensor | None = None, *, group: str = "main") -> LossOutput:
        self.calls[group] += 1
        net = self.a if group == "a" else self.b
        return LossOutput((net(x) - x).pow(2).mean(), {f"mse_{group}": (net(x) - x).pow(2).mean().detach()})

    def sample(
        self, n: int, c: Tensor | None = None, *, generator: torch.Generator | None = None, **_: Any
    ) -> Tensor:
        return torch.randn(n, self.info.dim, generator=generator)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"a": list(self.a.parameters()), "b": list(self.b.parameters())}


class ToyAdversarial(GenerativeModel):
    """A toy GAN: two optimizer groups whose losses differ, updated discriminator first.

    Generator G(z) = A z + b, z ~ N(0, I); discriminator D(x) = w·tanh(V x + a) + d (logits).
    discriminator loss: mean[softplus(−D(x))] + mean[softplus(D(G(z)))]   (G(z) detached)
    generator loss:     mean[softplus(−D(G(z)))]                          (non-saturating)
    Each group's loss reaches its own parameters; the generator's also reaches D's (which the
    loop must not step with it).
    """

    groups = ("discriminator", "generator")

    def __init__(self, info: DataInfo, latent: int = 2, hidden: int = 8) -> None:
        super().__init__(info)
        self.latent = latent
        self.generator = nn.Linear(latent, info.dim)
        self.discriminator = nn.Sequential(nn.Linear(info.dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def loss(self, x: Tensor, c: Tensor | None = None, *, group: str = "main") -> LossOutput:
        x = x.flatten(1)
        fake = self.generator(torch.randn(x.shape[0], self.latent, device=x.device))
        if group == "discriminator":
            real_term = F.softplus(-self.discriminator(x)).mean()
            fake_term = F.softplus(self.discriminator(fake.detach())).mean()
            return LossOutput(
                real_term + fake_term, {"d_real": real_term.detach(), "d_fake": fake_term.detach()}
            )
        if group == "generator":
            return LossOutput(F.softplus(-self.discriminator(fake)).mean())
        raise ValueError(f"ToyAdversarial has groups {self.groups}; found {group!r}")

    def sample(
        self, n: int, c: Tensor | None = None, *, generator: torch.Generator | None = None, **_: Any
    ) -> Tensor:
        z = torch.randn(n, self.latent, generator=generator, device=self.device)
        return self.generator(z).view(n, *self.event_shape)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {
            "discriminator": list(self.discriminator.parameters()),
            "generator": list(self.generator.parameters()),
        }


class ToyScalar(GenerativeModel):
    """One scalar w with loss mean((w - x)²): its validation loss is scripted by the data."""

    def __init__(self, info: DataInfo) -> None:
        super().__init__(info)
        self.w = nn.Parameter(torch.zeros(()))

    def loss(self, x: Tensor, c: Tensor | None = None, *, group: str = "main") -> LossOutput:
        return LossOutput((self.w - x).pow(2).mean())

    def sample(
        self, n: int, c: Tensor | None = None, *, generator: torch.Generator | None = None, **_: Any
    ) -> Tensor:
        return self.w.detach().expand(n, *self.event_shape).clone()


def _register() -> None:
    presets = {
        "test-toy": (ToyGaussianAE, "Test-only stochastic Gaussian auto-encoder"),
        "test-toy-det": (ToyDeterministicAE, "Test-only deterministic auto-encoder"),
        "test-toy-two-group": (ToyTwoGroup, "Test-only model with optimizer groups a and b"),
        "test-adversarial": (ToyAdversarial, "Test-only GAN: groups discriminator and generator"),
    }
    for name, (cls, doc) in presets.items():
        if name not in MODELS:  # tests may import this module more than once
            MODELS.register(name, doc)(lambda info, _cls=cls, **kw: _cls(info, **kw))


_register()


def toy_dataset(
    n: int = 256,
    dim: int = 4,
    *,
    seed: int = 0,
    unit: bool = False,
    labels: bool = False,
    valid: int = 0,
    dynamic_binarization: bool = False,
) -> Dataset:
    """Points near a 1-D curve in R^dim (or grey levels in [0, 1] when ``unit``), seeded.

    ``dynamic_binarization`` adds a batch transform drawing x ~ Bernoulli(x) with the loop's
    generator (implies ``unit``).
    """
    g = torch.Generator().manual_seed(seed)
    total = n + valid
    t = torch.rand(total, 1, generator=g) * 4 - 2
    basis = torch.randn(1, dim, generator=g)
    x = torch.sin(t * basis) + 0.05 * torch.randn(total, dim, generator=g)
    unit = unit or dynamic_binarization
    if unit:
        x = (x + 1.2) / 2.4
        x = x.clamp(0, 1)
    y = torch.randint(0, 3, (total,), generator=g) if labels else None
    info = DataInfo((dim,), support="unit" if unit else "real", num_classes=3 if labels else None)
    train = Split(x[:n].float(), None if y is None else y[:n])
    val = Split(x[n:].float(), None if y is None else y[n:]) if valid else None

    def binarize(batch: Tensor, generator: torch.Generator) -> Tensor:
        return torch.bernoulli(batch, generator=generator)

    return Dataset("toy", info, train, val, None, binarize if dynamic_binarization else None)
