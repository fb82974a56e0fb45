"""Continuous normalizing flows (Chen et al. 2018, "Neural ODEs"; Grathwohl et al. 2019, "FFJORD").

A time-dependent vector field g moves a point along dz/dt = g(z, t; c) from z(0) = x (data) to
z(T) (base). The log-density changes by the instantaneous change of variables

    d log p(z(t))/dt = −tr(∂g/∂z)    so    log p_X(x) = log p_Z(z(T)) + ∫_0^T tr(∂g/∂z(t)) dt,

hence ``forward`` integrates the augmented state (z, ℓ) with dℓ/dt = tr(∂g/∂z) from t = 0 to T
and returns (z(T), ℓ(T) = log|det ∂z(T)/∂x|); ``inverse`` integrates the same system from T
back to 0. The trace is exact for small D (one batched backward pass over D copies of the batch),
or Hutchinson's unbiased estimate tr(J) = E_ε[εᵀ J ε] with E[εεᵀ] = I (FFJORD §2.2), one
vector–Jacobian product per evaluation, with ε drawn once per solve. The ODE is solved by
:func:`simulacra.numerics.ode.odeint` and differentiated by backpropagating through its steps.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from simulacra.errors import ConfigError, DataError
from simulacra.flows.base import Transform
from simulacra.nn.mlp import ACTIVATIONS
from simulacra.numerics.ode import ODE_METHODS, odeint, rms_norm


class ConcatSquashLinear(nn.Module):
    """y = (W x + b) ⊙ σ(G s + g) + H s with s = [t, c] (FFJORD's "concatsquash" layer).

    Shapes: x (B, in), s (B, 1 + C_c) -> y (B, out). Time and context gate and shift every unit.
    """

    def __init__(self, in_features: int, out_features: int, cond_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.gate = nn.Linear(cond_features, out_features)
        self.shift = nn.Linear(cond_features, out_features, bias=False)

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        return self.linear(x) * torch.sigmoid(self.gate(s)) + self.shift(s)


class ConcatSquashField(nn.Module):
    """The vector field g(z, t; c): R^D -> R^D, a stack of :class:`ConcatSquashLinear` layers.

    Args:
        features: D.
        hidden: hidden widths.
        context_features: C_c (0 for an unconditional field).
        activation: a smooth activation keeps the dynamics smooth (tanh by default; not relu).

    ``forward(t, z, c)`` takes a float (or 0-d tensor) t, z (B, D), c (B, C_c) or None -> (B, D).
    """

    def __init__(
        self,
        features: int,
        hidden: Sequence[int] = (64, 64),
        context_features: int = 0,
        activation: str = "tanh",
    ) -> None:
        super().__init__()
        act = ACTIVATIONS.get(activation)
        sizes = [int(features), *(int(h) for h in hidden), int(features)]
        self.features = int(features)
        self.context_features = int(context_features)
        self.layers = nn.ModuleList(
            ConcatSquashLinear(a, b, 1 + self.context_features) for a, b in zip(sizes[:-1], sizes[1:])
        )
        self.activations = nn.ModuleList(act() for _ in sizes[1:-1])

    def forward(self, t: float | Tensor, z: Tensor, c: Tensor | None = None) -> Tensor:
        if isinstance(t, Tensor):
            s = t.to(z.dtype).expand(z.shape[0], 1)
        else:
            s = z.new_full((z.shape[0], 1), float(t))  # a fill on z's device, no host-to-device copy
        if self.context_features:
            if c is None:
                raise DataError(
                    f"this vector field is conditional: it needs a context (B, {self.context_features})"
                )
            s = torch.cat([s, c.to(z.dtype)], 1)
        h = z
        for i, layer in enumerate(self.layers):
            h = layer(h, s)
            if i < len(self.activations):
                h = self.activations[i](h)
        return h


@contextlib.contextmanager
def _gradients_on() -> Iterator[None]:
    """Autograd on, even inside ``torch.no_grad`` or ``torch.inference_mode`` (for ∂g/∂z)."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


class ContinuousFlow(Transform):
    """z = x + ∫_0^T g(z(t), t; c) dt with log|det ∂z/∂x| = ∫_0^T tr(∂g/∂z) dt (FFJORD).

    Args:
        field: the vector field, a module ``(t, z (B, D), c) -> (B, D)`` (e.g.
            :class:`ConcatSquashField`).
        time_length: T.
        trace: ``"exact"`` (one vector–Jacobian product over D copies of the batch),
            ``"hutchinson"`` (one over the batch; unbiased but noisy) or ``"auto"``: exact when
            D ≤ ``exact_max_dim``.
        noise: Hutchinson's ε: ``"rademacher"`` (±1, the lower-variance choice) or ``"gaussian"``;
            drawn once per solve from the global RNG.
        method, rtol, atol, steps, max_steps: passed to :func:`odeint` (dopri5 by default).
        train_rtol, train_atol: looser tolerances used while the module is in training mode.

    Under Hutchinson's estimator the adaptive step sizes are controlled by z's error alone, so
    that z (and a sample) does not depend on the random probe.
    """

    event_dims = 1

    def __init__(
        self,
        field: nn.Module,
        time_length: float = 1.0,
        *,
        trace: str = "auto",
        exact_max_dim: int = 10,
        noise: str = "rademacher",
        method: str = "dopri5",
        rtol: float = 1e-5,
        atol: float = 1e-5,
        steps: int | None = None,
        max_steps: int = 10_000,
        train_rtol: float | None = None,
        train_atol: float | None = None,
    ) -> None:
        super().__init__()
        if trace not in ("exact", "hutchinson", "auto"):
            raise ConfigError(f"trace must be 'exact', 'hutchinson' or 'auto'; found {trace!r}")
        if noise not in ("rademacher", "gaussian"):
            raise ConfigError(f"noise must be 'rademacher' or 'gaussian'; found {noise!r}")
        if not float(time_length) > 0:
            raise ConfigError(f"time_length must be positive; found {time_length!r}")
        self._adaptive = ODE_METHODS.get(method).b_err is not None  # unknown names fail here
        if self._adaptive == (steps is not None):
            raise ConfigError(
                f"{method!r} needs {'no steps (it adapts them)' if self._adaptive else 'steps >= 1'}; "
                f"found steps={steps!r}"
            )
        self.field = field
        self.time_length = float(time_length)
        self.trace, self.exact_max_dim, self.noise = trace, int(exact_max_dim), noise
        self.method, self.steps, self.max_steps = method, steps, int(max_steps)
        self.rtol, self.atol = float(rtol), float(atol)
        self.train_rtol = self.rtol if train_rtol is None else float(train_rtol)
        self.train_atol = self.atol if train_atol is None else float(train_atol)
        self.nfev = 0  # function evaluations of the last solve (FFJORD reports it)

    def uses_exact_trace(self, features: int) -> bool:
        return self.trace == "exact" or (self.trace == "auto" and features <= self.exact_max_dim)

    # -- d(z, ℓ)/dt --------------------------------------------------------------------------

    def field_and_trace(
        self, t: float, z: Tensor, c: Tensor | None, eps: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """g(z, t; c) (B, D) and tr(∂g/∂z) (B,): exact when ``eps`` is None, else εᵀ(∂g/∂z)ε.

        The exact trace evaluates g on D stacked copies of the batch, (D·B, D), and pulls back the
        cotangent e_i through copy i in one vector–Jacobian product: copy i's result is row i of
        each Jacobian, whose i-th entry is ∂g_i/∂z_i. The products are ``torch.func`` transforms,
        so they compose with outer autograd (training) and with ``torch.func.jacrev``; their
        graph is dropped when the caller records no gradients.
        """
        record = torch.is_grad_enabled()
        with _gradients_on():
            z, c, eps = (None if v is None else v.clone() if v.is_inference() else v for v in (z, c, eps))
            b, d = z.shape
            if eps is None:
                cr = None if c is None else c.repeat(d, 1)
                out, vjp = torch.func.vjp(lambda zr: self.field(t, zr, cr), z.repeat(d, 1))
                # cotangent e_i on copy i: the vector–Jacobian product is row i of ∂g/∂z
                onehot = torch.eye(d, dtype=z.dtype, device=z.device).unsqueeze(1).expand(d, b, d)
                (rows,) = vjp(onehot.reshape(d * b, d))
                tr = rows.reshape(d, b, d).diagonal(dim1=0, dim2=2).sum(-1)  # Σ_i (row i)_i
                dz = out[:b]
            else:
                dz, vjp = torch.func.vjp(lambda zz: self.field(t, zz, c), z)
                (row,) = vjp(eps)  # εᵀ ∂g/∂z
                tr = (row * eps).sum(-1)
        if not record:
            dz, tr = dz.detach(), tr.detach()
        return dz, tr

    # -- the Transform interface ---------------------------------------------------------------

    def _solve(self, x: Tensor, c: Tensor | None, t0: float, t1: float) -> tuple[Tensor, Tensor]:
        if x.dim() != 2:
            raise DataError(f"a continuous flow acts on vectors (B, D); found shape {tuple(x.shape)}")
        eps = None
        if not self.uses_exact_trace(x.shape[1]):
            eps = torch.randn_like(x) if self.noise == "gaussian" else torch.randint_like(x, 0, 2) * 2 - 1

        def dynamics(t: float, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
            return self.field_and_trace(t, state[0], c, eps)

        rtol, atol = (self.train_rtol, self.train_atol) if self.training else (self.rtol, self.atol)
        solution = odeint(
            dynamics,
            (x, x.new_zeros(x.shape[0])),
            t0,
            t1,
            method=self.method,
            rtol=rtol,
            atol=atol,
            steps=self.steps,
            max_steps=self.max_steps,
            # the probe ε must not steer the steps: control them on z's error alone
            norm=None if eps is None else (lambda parts: rms_norm(parts[:1])),
        )
        self.nfev = solution.nfev
        z, delta = solution.y
        return z, delta

    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x = z(0) -> (z(T), ∫_0^T tr(∂g/∂z) dt)."""
        return self._solve(x, c, 0.0, self.time_length)

    def inverse(self, z: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """z = z(T) -> (z(0), −∫_0^T tr(∂g/∂z) dt)."""
        return self._solve(z, c, self.time_length, 0.0)
