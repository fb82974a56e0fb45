"""Continuous normalizing flows (src/simulacra/flows/continuous.py) against closed forms.

* a linear field g(z) = A z: z(T) = expm(A T) x and log|det| = tr(A)·T, both ways;
* the exact trace equals the trace of autograd's Jacobian; Hutchinson's estimate is unbiased
  (its mean over many probes is the exact trace, Rademacher and Gaussian);
* with Hutchinson's estimator z does not depend on the probe (steps are controlled by z alone);
* the same numbers under torch.no_grad and torch.inference_mode, with no graph kept;
* a 1-D CNF's density integrates to 1; a CNF fitted for a few steps to a 2-D Gaussian improves
  and its density still integrates to 1.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from simulacra.distributions.standard import StandardNormal
from simulacra.errors import ConfigError
from simulacra.flows.continuous import ConcatSquashField, ContinuousFlow
from simulacra.flows.flow import Flow

F64 = torch.float64


class _LinearField(nn.Module):
    """g(z, t) = A z."""

    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.a = nn.Parameter(a)

    def forward(self, t: float, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return z @ self.a.T


def _field(d: int, context: int = 0, seed: int = 0, gain: float = 1.0) -> ConcatSquashField:
    torch.manual_seed(seed)
    field = ConcatSquashField(d, [16, 16], context, "tanh").double()
    with torch.no_grad():
        for layer in field.layers:
            layer.linear.weight.mul_(gain)
    return field


def test_linear_field_has_the_matrix_exponential_and_trace_times_t() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 3, generator=g, dtype=F64) * 0.6
    x = torch.randn(5, 3, generator=g, dtype=F64)
    flow = ContinuousFlow(_LinearField(a), 0.7, trace="exact", rtol=1e-10, atol=1e-10)
    z, ladj = flow(x)
    torch.testing.assert_close(z, x @ torch.linalg.matrix_exp(a * 0.7).T, atol=1e-9, rtol=0)
    torch.testing.assert_close(ladj, (torch.trace(a) * 0.7).expand(5), atol=1e-9, rtol=0)
    x_back, ladj_inv = flow.inverse(z)
    torch.testing.assert_close(x_back, x, atol=1e-9, rtol=0)
    torch.testing.assert_close(ladj_inv, -ladj, atol=1e-9, rtol=0)


def test_exact_trace_is_the_trace_of_the_jacobian() -> None:
    field = _field(4, context=2)
    flow = ContinuousFlow(field, trace="exact")
    z, c = torch.randn(3, 4, dtype=F64), torch.randn(3, 2, dtype=F64)
    dz, tr = flow.field_and_trace(0.4, z, c)
    torch.testing.assert_close(dz, field(0.4, z, c))
    for b in range(3):
        jac = torch.func.jacrev(lambda v, b=b: field(0.4, v[None], c[b : b + 1])[0])(z[b])
        torch.testing.assert_close(tr[b], torch.trace(jac), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
def test_hutchinson_estimate_is_unbiased(noise: str) -> None:
    """E_ε[εᵀ J ε] = tr J: the mean over K probes is within 5 standard errors of the exact trace."""
    field = _field(12, gain=2.0)  # D = 12 > 10: "auto" uses Hutchinson
    flow = ContinuousFlow(field, noise=noise)
    assert not flow.uses_exact_trace(12) and ContinuousFlow(field, trace="auto").uses_exact_trace(10)
    z = torch.randn(2, 12, dtype=F64)
    _, exact = flow.field_and_trace(0.3, z, None)
    k = 4000
    zk = z.repeat(k, 1)  # (K·B, D)
    eps = torch.randn_like(zk) if noise == "gaussian" else torch.randint_like(zk, 0, 2) * 2 - 1
    _, estimates = flow.field_and_trace(0.3, zk, None, eps)
    estimates = estimates.reshape(k, 2)
    error = estimates.std(0) / k**0.5
    assert (estimates.std(0) > 1e-3).all()  # a genuinely random estimate
    assert ((estimates.mean(0) - exact).abs() < 5 * error).all(), (estimates.mean(0), exact, error)


def test_hutchinson_solves_do_not_let_the_probe_steer_z() -> None:
    flow = ContinuousFlow(_field(12), trace="hutchinson", rtol=1e-6, atol=1e-6)
    x = torch.randn(4, 12, dtype=F64)
    with torch.no_grad():
        torch.manual_seed(1)
        z1, l1 = flow(x)
        torch.manual_seed(2)
        z2, l2 = flow(x)
    assert torch.equal(z1, z2)
    assert not torch.equal(l1, l2)


def test_no_grad_and_inference_mode_match_training_mode() -> None:
    flow = ContinuousFlow(_field(2, context=1), rtol=1e-8, atol=1e-8)
    x, c = torch.randn(6, 2, dtype=F64), torch.randn(6, 1, dtype=F64)
    z, ladj = flow(x, c)
    assert ladj.requires_grad  # the graph reaches the field's parameters
    with torch.no_grad():
        z_ng, ladj_ng = flow(x, c)
    with torch.inference_mode():
        z_im, ladj_im = flow(x, c)
    for a, b in ((z_ng, z), (ladj_ng, ladj), (z_im, z), (ladj_im, ladj)):
        assert not a.requires_grad
        torch.testing.assert_close(a, b.detach(), atol=1e-12, rtol=0)


def test_fixed_step_solver_agrees_with_dopri5() -> None:
    field = _field(3)
    x = torch.randn(4, 3, dtype=F64)
    with torch.no_grad():
        z_ad, l_ad = ContinuousFlow(field, rtol=1e-10, atol=1e-10)(x)
        rk4 = ContinuousFlow(field, method="rk4", steps=20)
        z_rk, l_rk = rk4(x)
    assert rk4.nfev == 80
    torch.testing.assert_close(z_rk, z_ad, atol=1e-7, rtol=0)
    torch.testing.assert_close(l_rk, l_ad, atol=1e-7, rtol=0)


def test_density_of_a_1d_cnf_integrates_to_one() -> None:
    flow = ContinuousFlow(_field(1, gain=3.0), time_length=1.5, rtol=1e-7, atol=1e-7)
    edges = torch.linspace(-10, 10, 2001, dtype=F64)
    x = ((edges[1:] + edges[:-1]) / 2).unsqueeze(1)
    base = StandardNormal((1,)).double()()
    with torch.no_grad():
        log_p = Flow(flow, base).log_prob(x)
    assert (log_p - base.log_prob(x)).abs().max() > 0.1  # far from the base density
    assert (log_p.exp() * 0.01).sum().item() == pytest.approx(1.0, abs=1e-3)


def test_training_on_a_gaussian_lowers_the_loss() -> None:
    g = torch.Generator().manual_seed(0)
    data = torch.randn(256, 2, generator=g) * torch.tensor([0.5, 1.5]) + torch.tensor([1.0, -0.5])
    torch.manual_seed(0)
    flow = ContinuousFlow(ConcatSquashField(2, [16], 0, "tanh"), train_rtol=1e-3, train_atol=1e-3)
    base = StandardNormal((2,))()
    opt = torch.optim.Adam(flow.parameters(), lr=3e-2)

    def nll() -> torch.Tensor:
        return -Flow(flow, base).log_prob(data).mean()

    with torch.no_grad():
        before = nll().item()
    for _ in range(15):
        opt.zero_grad()
        loss = nll()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = nll().item()
        # the trained density still integrates to one (midpoint rule on the data mean ± 8): a
        # log-determinant of the wrong sign would let training lower the loss by inflating q
        h = 0.1
        axis = torch.arange(-8 + h / 2, 8, h)
        grid = torch.cartesian_prod(axis + 1.0, axis - 0.5)
        flow.eval()
        mass = (Flow(flow, base).log_prob(grid).exp() * h * h).sum().item()
    assert after < before - 0.2, (before, after)
    assert mass == pytest.approx(1.0, abs=0.01)


def test_bad_settings_are_reported() -> None:
    field = _field(2)
    with pytest.raises(ConfigError, match="trace"):
        ContinuousFlow(field, trace="stochastic")
    with pytest.raises(ConfigError, match="steps"):
        ContinuousFlow(field, method="rk4")
    with pytest.raises(ConfigError, match="steps"):
        ContinuousFlow(field, steps=10)
    with pytest.raises(ConfigError, match="time_length"):
        ContinuousFlow(field, time_length=0.0)
