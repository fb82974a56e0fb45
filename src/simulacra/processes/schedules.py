"""Gaussian noising processes in continuous time: the schedules of DDPM and of score SDEs.

Every process here perturbs data x₀ by

    q(x_t | x₀) = N(α(t) x₀, σ(t)² I),    t ∈ [0, 1],

and is the marginal of the linear Itô SDE dx = f(t) x dt + g(t) dw (Song et al. 2021, "Score-based
generative modeling through stochastic differential equations") with

    f(t) = d log α / dt,    g(t)² = dσ²/dt − 2 f(t) σ(t)²

(Kingma et al. 2021, "Variational diffusion models", appendix A). The signal-to-noise ratio is
SNR(t) = α²/σ² and its log, λ(t) = log SNR(t), decreases in t. A discrete-time DDPM with T steps
is the same process read on the grid t_i = i/T.

* ``VP`` (β linear in t; ``linear`` is its DDPM parametrisation β_1 = 10⁻⁴, β_T = 0.02, T = 1000,
  i.e. β_min = T β_1 = 0.1 and β_max = T β_T = 20, Ho et al. 2020): with B(t) = ∫_0^t β,
  α = exp(−B/2), σ² = 1 − e^{−B}, f = −β/2, g² = β. ``sub=True`` is the sub-VP SDE:
  σ = 1 − e^{−B}, g² = β (1 − e^{−2B}).
* ``Cosine`` (Nichol & Dhariwal 2021): α² = cos²(u(t)) / cos²(u(0)), u(t) = (τ t + s)/(1 + s) · π/2,
  σ² = 1 − α², f = −u′ tan u, g² = −2 f; τ ≤ 1 stops just short of α = 0 so that λ(1) is finite.
* ``VE`` (Song & Ermon 2019): α = 1, σ = σ_min (σ_max/σ_min)^t, f = 0, g² = 2 σ² log(σ_max/σ_min).

Times are tensors of any shape; every coefficient is returned with t's shape, dtype and device.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable

import torch
from torch import Tensor

from simulacra.errors import ConfigError
from simulacra.registry import Registry


def _as_time(t: Tensor | float) -> Tensor:
    return t if isinstance(t, Tensor) else torch.tensor(float(t), dtype=torch.get_default_dtype())


class NoiseSchedule(abc.ABC):
    """q(x_t | x₀) = N(α(t) x₀, σ(t)² I) on t ∈ [0, 1]; the SDE dx = f x dt + g dw.

    Attributes:
        t_min: the smallest time used for training, sampling and likelihoods (σ(t_min) > 0).
        name: a short name for reports.
    """

    t_min: float = 1e-3
    name: str = "schedule"

    @abc.abstractmethod
    def alpha(self, t: Tensor | float) -> Tensor:
        """α(t), the scale of the signal."""

    @abc.abstractmethod
    def sigma(self, t: Tensor | float) -> Tensor:
        """σ(t), the standard deviation of the noise."""

    @abc.abstractmethod
    def drift_diffusion(self, t: Tensor | float) -> tuple[Tensor, Tensor]:
        """(f(t), g(t)²): the SDE dx = f(t) x dt + g(t) dw whose marginals are q(x_t | x₀)."""

    def alpha_sigma(self, t: Tensor | float) -> tuple[Tensor, Tensor]:
        """(α(t), σ(t))."""
        return self.alpha(t), self.sigma(t)

    def log_snr(self, t: Tensor | float) -> Tensor:
        """λ(t) = log(α² / σ²), decreasing in t."""
        return 2.0 * (torch.log(self.alpha(t)) - torch.log(self.sigma(t)))

    def time_at_log_snr(self, lam: Tensor) -> Tensor:
        """t with λ(t) = ``lam`` (clamped to [λ(1), λ(0⁺)]), by 64 bisections of the decreasing λ."""
        lo = torch.zeros_like(lam, dtype=torch.float64)
        hi = torch.ones_like(lo)
        target = lam.to(torch.float64)
        for _ in range(64):
            mid = 0.5 * (lo + hi)
            above = self.log_snr(mid) > target  # λ(mid) too large: the answer lies later
            lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
        return (0.5 * (lo + hi)).to(lam.dtype)

    @property
    def prior_std(self) -> float:
        """Standard deviation of the prior p(x_1) = N(0, s² I), s² = α(1)² + σ(1)²: the marginal
        at t = 1 of data with unit variance (1 for VP processes, ≈ σ_max for VE)."""
        alpha, sigma = self.alpha_sigma(torch.tensor(1.0, dtype=torch.float64))
        return float(torch.sqrt(alpha**2 + sigma**2))

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class VP(NoiseSchedule):
    """The variance-preserving SDE dx = −½ β(t) x dt + √β(t) dw, β(t) = β_min + t (β_max − β_min);
    ``sub=True``: the sub-VP SDE dx = −½ β x dt + √(β (1 − e^{−2B(t)})) dw, B(t) = ∫_0^t β.

    Args:
        beta_min, beta_max: β(0) and β(1) (DDPM's linear β_1..β_T with T steps is
            β_min = T β_1, β_max = T β_T).
        sub: the sub-VP process, σ = 1 − e^{−B} (smaller noise, same mean).
        t_min: the smallest time used (ε in Song et al. 2021).
    """

    def __init__(
        self, beta_min: float = 0.1, beta_max: float = 20.0, sub: bool = False, t_min: float = 1e-3
    ) -> None:
        if not 0 <= beta_min <= beta_max or beta_max <= 0:
            raise ConfigError(
                f"VP needs 0 <= beta_min <= beta_max, beta_max > 0; found {beta_min}, {beta_max}"
            )
        if not 0 < t_min < 1:
            raise ConfigError(f"t_min must be in (0, 1); found {t_min}")
        self.beta_min, self.beta_max, self.sub, self.t_min = (
            float(beta_min),
            float(beta_max),
            bool(sub),
            float(t_min),
        )
        self.name = "sub-VP" if sub else "VP"

    def beta(self, t: Tensor | float) -> Tensor:
        """β(t) = β_min + t (β_max − β_min)."""
        return self.beta_min + _as_time(t) * (self.beta_max - self.beta_min)

    def integral(self, t: Tensor | float) -> Tensor:
        """B(t) = ∫_0^t β(s) ds = β_min t + ½ (β_max − β_min) t²."""
        t = _as_time(t)
        return t * (self.beta_min + 0.5 * (self.beta_max - self.beta_min) * t)

    def alpha(self, t: Tensor | float) -> Tensor:
        return torch.exp(-0.5 * self.integral(t))

    def sigma(self, t: Tensor | float) -> Tensor:
        return self.alpha_sigma(t)[1]

    def alpha_sigma(self, t: Tensor | float) -> tuple[Tensor, Tensor]:
        """(α(t), σ(t)) from one B(t) (few operations: samplers call this once per step)."""
        b = self.integral(t)
        var = -torch.expm1(-b)  # 1 − e^{−B}, accurate for small B
        return torch.exp(-0.5 * b), (var if self.sub else torch.sqrt(var))

    def time_at_log_snr(self, lam: Tensor) -> Tensor:
        """t with λ(t) = ``lam``, in closed form for VP: α² = e^{−B}, σ² = 1 − e^{−B} give
        e^{−B} = sigmoid(λ), B = softplus(−λ), and t solves the quadratic B(t) = B (sub-VP: by
        bisection)."""
        if self.sub:
            return super().time_at_log_snr(lam)
        b = torch.nn.functional.softplus(-lam.to(torch.float64))
        k = self.beta_max - self.beta_min
        if k == 0:
            t = b / self.beta_min
        else:  # ½ k t² + β_min t − B = 0, the positive root, written without cancellation
            t = 2 * b / (self.beta_min + torch.sqrt(self.beta_min**2 + 2 * k * b))
        return t.clamp(0.0, 1.0).to(lam.dtype)

    def drift_diffusion(self, t: Tensor | float) -> tuple[Tensor, Tensor]:
        beta = self.beta(t)
        g2 = beta * -torch.expm1(-2.0 * self.integral(t)) if self.sub else beta
        return -0.5 * beta, g2


class Cosine(NoiseSchedule):
    """The cosine schedule of improved DDPM (Nichol & Dhariwal 2021) in continuous time:
    α(t)² = cos²(u(t)) / cos²(u(0)), u(t) = (τ t + s)/(1 + s) · π/2, σ² = 1 − α² (a VP process:
    f = −u′(t) tan u(t), g² = −2 f).

    Args:
        s: the offset that keeps β small near t = 0 (0.008 in the paper).
        alpha2_end: α(1)²; τ is chosen to reach it (the paper's discrete schedule ends near 10⁻⁵
            through its clipping of β_t at 0.999).
        t_min: the smallest time used.
    """

    def __init__(self, s: float = 0.008, alpha2_end: float = 1e-5, t_min: float = 1e-3) -> None:
        if not s > 0 or not 0 < alpha2_end < 1 or not 0 < t_min < 1:
            raise ConfigError(
                f"Cosine needs s > 0, alpha2_end in (0, 1), t_min in (0, 1); found {s}, {alpha2_end}, {t_min}"
            )
        self.s, self.alpha2_end, self.t_min = float(s), float(alpha2_end), float(t_min)
        self.name = "cosine"
        u0 = self.s / (1 + self.s) * math.pi / 2
        u1 = math.acos(math.sqrt(self.alpha2_end) * math.cos(u0))
        self._u0, self._du = u0, u1 - u0  # u(t) = u0 + t du

    def _u(self, t: Tensor | float) -> Tensor:
        return self._u0 + _as_time(t) * self._du

    def alpha(self, t: Tensor | float) -> Tensor:
        return torch.cos(self._u(t)) / math.cos(self._u0)

    def sigma(self, t: Tensor | float) -> Tensor:
        return self.alpha_sigma(t)[1]

    def alpha_sigma(self, t: Tensor | float) -> tuple[Tensor, Tensor]:
        a = self.alpha(t)
        return a, torch.sqrt((1 - a) * (1 + a))

    def time_at_log_snr(self, lam: Tensor) -> Tensor:
        """t with λ(t) = ``lam`` in closed form: α² = sigmoid(λ), u = acos(α cos u(0))."""
        alpha = torch.sigmoid(lam.to(torch.float64)).sqrt()
        u = torch.acos((alpha * math.cos(self._u0)).clamp(-1.0, 1.0))
        return ((u - self._u0) / self._du).clamp(0.0, 1.0).to(lam.dtype)

    def drift_diffusion(self, t: Tensor | float) -> tuple[Tensor, Tensor]:
        f = -self._du * torch.tan(self._u(t))
        return f, -2.0 * f


class VE(NoiseSchedule):
    """The variance-exploding SDE dx = σ(t) √(2 log(σ_max/σ_min)) dw, σ(t) = σ_min (σ_max/σ_min)^t,
    α = 1 (the noise levels of NCSN, Song & Ermon 2019, in continuous time).

    Args:
        sigma_min, sigma_max: σ(0) and σ(1); σ_max should be of the order of the largest
            distance between training points (Song & Ermon 2020, technique 1).
        t_min: the smallest time used (10⁻⁵ in Song et al. 2021).
    """

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, t_min: float = 1e-5) -> None:
        if not 0 < sigma_min < sigma_max:
            raise ConfigError(f"VE needs 0 < sigma_min < sigma_max; found {sigma_min}, {sigma_max}")
        if not 0 < t_min < 1:
            raise ConfigError(f"t_min must be in (0, 1); found {t_min}")
        self.sigma_min, self.sigma_max, self.t_min = float(sigma_min), float(sigma_max), float(t_min)
        self.name = "VE"

    def alpha(self, t: Tensor | float) -> Tensor:
        return torch.ones_like(_as_time(t))

    def sigma(self, t: Tensor | float) -> Tensor:
        return self.sigma_min * torch.exp(_as_time(t) * math.log(self.sigma_max / self.sigma_min))

    def drift_diffusion(self, t: Tensor | float) -> tuple[Tensor, Tensor]:
        sigma = self.sigma(t)
        return torch.zeros_like(sigma), 2.0 * math.log(self.sigma_max / self.sigma_min) * sigma**2

    def time_at_log_snr(self, lam: Tensor) -> Tensor:
        """t with λ(t) = −2 log σ(t) = ``lam``, in closed form."""
        log_sigma = -0.5 * lam.to(torch.float64)
        t = (log_sigma - math.log(self.sigma_min)) / math.log(self.sigma_max / self.sigma_min)
        return t.clamp(0.0, 1.0).to(lam.dtype)


SCHEDULES: Registry[Callable[..., NoiseSchedule]] = Registry("noise schedule")
SCHEDULES.register("linear", "DDPM's linear β (Ho et al. 2020): the VP SDE, β from 0.1 to 20")(VP)
SCHEDULES.register("vp", "variance-preserving SDE (Song et al. 2021), β linear in t")(VP)
SCHEDULES.register("cosine", "cosine schedule of improved DDPM (Nichol & Dhariwal 2021)")(Cosine)
SCHEDULES.register("ve", "variance-exploding SDE (Song et al. 2021), σ geometric in t")(VE)


@SCHEDULES.register("subvp", "sub-VP SDE (Song et al. 2021): the VP mean with smaller noise")
def subvp(beta_min: float = 0.1, beta_max: float = 20.0, t_min: float = 1e-3) -> VP:
    """``VP(beta_min, beta_max, sub=True)``."""
    return VP(beta_min, beta_max, sub=True, t_min=t_min)
