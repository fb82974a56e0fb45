"""Unconstrained monotonic neural networks (UMNN; Wehenkel & Louppe 2019).

A univariate map is monotonic when its derivative is positive, and any positive function
integrates to one. UMNN therefore parametrises the derivative, not the map:

    h(x; θ) = ∫_0^x f(t; e) dt + β,    f(t; e) = softplus(g([t, e])) > 0    (or ELU(g) + 1)

with g an unconstrained MLP shared by all coordinates and θ = (e, β) per coordinate (an
embedding e ∈ R^E and an offset β, produced by a conditioner such as a MADE). Then h is strictly
increasing, log h'(x) = log f(x; e) exactly, and the integral is computed by Clenshaw–Curtis
quadrature on N + 1 Chebyshev points (exact for polynomials of degree ≤ N, geometrically
convergent for analytic f; hence smooth activations). The inverse x = h⁻¹(y) has no closed form:
it is found by bisection on a bracket grown by doubling, then one Newton step that also carries
the implicit-function gradient ∂x/∂θ = −(∂h/∂θ) / h'(x).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from simulacra.errors import ConfigError
from simulacra.flows.base import Elementwise
from simulacra.nn.mlp import MLP


def clenshaw_curtis(n: int, dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """Nodes s_k = cos(kπ/n), k = 0..n, and weights w_k with ∫_{−1}^{1} p(s) ds = Σ_k w_k p(s_k)
    for every polynomial p of degree ≤ n (Clenshaw & Curtis 1960; Trefethen 2008, "Is Gauss
    quadrature better than Clenshaw–Curtis?"). The weights come from integrating the Chebyshev
    interpolant: w_k = (c_k / n) (1 − Σ_{j=1}^{⌊n/2⌋} b_j cos(2jkπ/n) / (4j² − 1)), with c_k = 1 at
    the end points, 2 inside, b_j = 2 except b_{n/2} = 1 for even n. Returns two (n + 1,) tensors.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"Clenshaw–Curtis needs n >= 1 intervals; found {n!r}")
    k = torch.arange(n + 1, dtype=torch.float64)
    theta = k * math.pi / n
    total = torch.ones(n + 1, dtype=torch.float64)
    for j in range(1, n // 2 + 1):
        b = 1.0 if 2 * j == n else 2.0
        total = total - b * torch.cos(2 * j * theta) / (4 * j * j - 1)
    c = torch.full((n + 1,), 2.0, dtype=torch.float64)
    c[0] = c[-1] = 1.0
    weights = c * total / n
    return torch.cos(theta).to(dtype), weights.to(dtype)


class UMNN(Elementwise):
    """y = β + ∫_0^x f(t; e) dt coordinate-wise, with θ = (e_1..e_E, β) (see the module docstring).

    Args:
        embedding: E, the size of the per-coordinate embedding e (``num_params = E + 1``).
        hidden: hidden widths of the integrand network g: R^{1+E} -> R.
        nodes: N, the number of Clenshaw–Curtis intervals (N + 1 evaluations of g per x).
        activation: g's activation (smooth ones keep the quadrature accurate).
        positive: ``"softplus"`` (analytic) or ``"elu"`` (ELU + 1, as in the paper).

    Shapes: x (*S,), params (*S, E + 1) -> y (*S,), log h'(x) (*S,). Every call evaluates g on a
    (*S, N + 1, 1 + E) tensor: batch, coordinates and nodes at once.
    """

    def __init__(
        self,
        embedding: int = 8,
        hidden: Sequence[int] = (32, 32),
        nodes: int = 24,
        activation: str = "tanh",
        positive: str = "softplus",
    ) -> None:
        super().__init__()
        if isinstance(embedding, bool) or not isinstance(embedding, int) or embedding < 0:
            raise ConfigError(f"embedding must be a non-negative integer; found {embedding!r}")
        if positive not in ("softplus", "elu"):
            raise ConfigError(f"positive must be 'softplus' or 'elu'; found {positive!r}")
        self.embedding = embedding
        self.num_params = embedding + 1
        self.positive = positive
        self.integrand = MLP(1 + embedding, hidden, 1, activation)
        s, w = clenshaw_curtis(nodes)
        # h(x) − β = (x/2) Σ_k w_k f(x (1 + s_k) / 2): the map [−1, 1] -> [0, x]; s_0 = 1 gives t = x.
        self.register_buffer("fractions", (1 + s) / 2)
        self.register_buffer("weights", w / 2)

    # -- the integrand ---------------------------------------------------------------------------

    def log_integrand(self, t: Tensor, e: Tensor) -> Tensor:
        """log f(t; e) for t (*S, K) and e (*S, E) -> (*S, K), computed without underflow."""
        inp = torch.cat([t.unsqueeze(-1), e.unsqueeze(-2).expand(*t.shape, self.embedding)], -1)
        u = self.integrand(inp).squeeze(-1)
        if self.positive == "elu":  # log(ELU(u) + 1) = log1p(u) for u > 0, u otherwise
            return torch.where(u > 0, torch.log1p(u.clamp(min=0)), u)
        # log softplus(u) → u as u → −∞; the clamp keeps the unused branch finite
        return torch.where(u < -20, u, torch.log(F.softplus(u.clamp(min=-20))))

    def _split(self, params: Tensor) -> tuple[Tensor, Tensor]:
        if params.shape[-1] != self.num_params:
            raise ConfigError(
                f"UMNN expects {self.num_params} parameters per coordinate; found {params.shape[-1]}"
            )
        return params[..., :-1], params[..., -1]

    def _map(self, x: Tensor, e: Tensor, beta: Tensor) -> tuple[Tensor, Tensor]:
        """(h(x), log f(x)): one vectorised evaluation of g on the N + 1 nodes of [0, x]."""
        fr, w = self.fractions.to(x.dtype), self.weights.to(x.dtype)
        log_f = self.log_integrand(x.unsqueeze(-1) * fr, e)  # (*S, N + 1)
        return beta + x * (log_f.exp() * w).sum(-1), log_f[..., 0]

    # -- the Elementwise interface -----------------------------------------------------------

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        e, beta = self._split(params)
        return self._map(x, e, beta)

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        """x = h⁻¹(y) by bisection to the dtype's resolution, one Newton step, and −log f(x)."""
        e, beta = self._split(params)
        with torch.no_grad():
            x0 = self._bisect(y.detach(), e.detach(), beta.detach())
        # Newton's step x0 − (h(x0) − y) / h'(x0) with a detached h': at the root its value is x0
        # (to rounding) and its gradient is the implicit one, ∂x/∂y = 1/h', ∂x/∂θ = −(∂h/∂θ)/h'.
        h0, log_f0 = self._map(x0, e, beta)
        x = x0 - (h0 - y) * torch.exp(-log_f0.detach())
        log_f = self.log_integrand(x.unsqueeze(-1), e).squeeze(-1)
        return x, -log_f

    def _bisect(self, y: Tensor, e: Tensor, beta: Tensor, max_doublings: int = 60) -> Tensor:
        """Grow [lo, hi] = [−2^a, 2^b] until h(lo) ≤ y ≤ h(hi), then halve it a fixed number of
        times: (doublings + mantissa bits + 2) halvings bring its width below the dtype's spacing."""
        lo, hi = -torch.ones_like(y), torch.ones_like(y)
        doublings = 0
        while doublings < max_doublings:
            h_lo, h_hi = self._map(torch.stack([lo, hi]), e, beta)[0].unbind(0)  # one pass for both ends
            below, above = h_lo > y, h_hi < y
            if not bool((below | above).any()):  # one host sync per doubling (a few at most)
                break
            lo = torch.where(below, 2 * lo, lo)
            hi = torch.where(above, 2 * hi, hi)
            doublings += 1
        for _ in range(doublings + _mantissa_bits(y.dtype) + 3):
            mid = (lo + hi) / 2
            h_mid, _ = self._map(mid, e, beta)
            go_right = h_mid < y
            lo = torch.where(go_right, mid, lo)
            hi = torch.where(go_right, hi, mid)
        return (lo + hi) / 2


def _mantissa_bits(dtype: torch.dtype) -> int:
    """The number of explicit mantissa bits of a float dtype (52 for float64, 23 for float32)."""
    return -int(round(math.log2(torch.finfo(dtype).eps)))
