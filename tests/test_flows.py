"""One table over every transform (tests/flow_cases.py): the mathematics of a bijection.

* inverse(forward(x)) = x, and the two log-determinants cancel;
* log|det ∂f/∂x| equals autograd's (``torch.func.jacrev`` + ``slogdet``);
* the context changes the output (conditional cases);
* in 1-D and 2-D the flow's density integrates to 1 on a grid;
* far in the tails, log p and samples stay finite.
"""

from __future__ import annotations

import math

import pytest
import torch

from flow_cases import CASES, Case
from simulacra.distributions.standard import StandardNormal
from simulacra.flows.circular import UniformCircle
from simulacra.flows.flow import Flow

NAMES = sorted(CASES)


def _build(case: Case) -> torch.nn.Module:
    torch.manual_seed(0)
    return case.build().double()


def _inputs(case: Case, n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor | None]:
    g = torch.Generator().manual_seed(seed)
    if case.domain == "unit":
        x = torch.rand(n, *case.shape, generator=g, dtype=torch.float64) * 0.98 + 0.01
    elif case.domain == "circle":
        x = (torch.rand(n, *case.shape, generator=g, dtype=torch.float64) * 2 - 1) * math.pi
    else:
        x = torch.randn(n, *case.shape, generator=g, dtype=torch.float64)
    c = torch.randn(n, case.context, generator=g, dtype=torch.float64) if case.context else None
    return x, c


@pytest.mark.parametrize("name", NAMES)
def test_inverse_of_forward_is_identity(name: str) -> None:
    case = CASES[name]
    t = _build(case)
    x, c = _inputs(case, 16)
    with torch.no_grad():
        z, ladj = t(x, c)
        x_back, ladj_inv = t.inverse(z, c)
    assert z.shape == (16, *(case.out_shape or case.shape)) and ladj.shape == (16,)
    torch.testing.assert_close(x_back, x, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(ladj + ladj_inv, torch.zeros(16, dtype=torch.float64), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_log_det_matches_autograd(name: str) -> None:
    case = CASES[name]
    t = _build(case)
    x, c = _inputs(case, 4)
    _, ladj = t(x, c)
    for i in range(x.shape[0]):
        ci = None if c is None else c[i : i + 1]

        def f(v: torch.Tensor, ci: torch.Tensor | None = ci) -> torch.Tensor:
            return t(v.reshape(1, *case.shape), ci)[0].reshape(-1)

        jac = torch.func.jacrev(f)(x[i].reshape(-1))
        sign, logabs = torch.linalg.slogdet(jac)
        assert sign.abs() > 0, "the Jacobian is singular"
        torch.testing.assert_close(ladj[i], logabs, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", [n for n in NAMES if CASES[n].context])
def test_context_changes_the_output(name: str) -> None:
    case = CASES[name]
    t = _build(case)
    x, c = _inputs(case, 8)
    z1, _ = t(x, c)
    z2, _ = t(x, c + 1.0)
    assert (z1 - z2).abs().max() > 1e-4


def _grid(case: Case, n: int) -> tuple[torch.Tensor, float]:
    """Points covering the support and the volume of one cell."""
    d = math.prod(case.shape)
    lo, hi = {"unit": (0.0, 1.0), "circle": (-math.pi, math.pi)}.get(case.domain, (-10.0, 10.0))
    edges = torch.linspace(lo, hi, n + 1, dtype=torch.float64)
    mids = (edges[1:] + edges[:-1]) / 2
    axes = torch.meshgrid(*([mids] * d), indexing="ij")
    points = torch.stack([a.reshape(-1) for a in axes], 1).reshape(-1, *case.shape)
    return points, ((hi - lo) / n) ** d


@pytest.mark.parametrize("name", [n for n in NAMES if CASES[n].density and math.prod(CASES[n].shape) <= 2])
def test_density_integrates_to_one(name: str) -> None:
    case = CASES[name]
    t = _build(case)
    d = math.prod(case.shape)
    points, cell = _grid(case, 2000 if d == 1 else 400)
    _, c = _inputs(case, 1)
    base = (UniformCircle(case.shape) if case.domain == "circle" else StandardNormal(case.shape)).double()()
    flow = Flow(t, base, None if c is None else c)
    with torch.no_grad():
        log_p = torch.cat([flow.log_prob(p.unsqueeze(1)).reshape(-1) for p in points.split(8192)])
    mass = (log_p.exp() * cell).sum().item()
    assert mass == pytest.approx(1.0, abs=2e-3), f"∫p = {mass}"


@pytest.mark.parametrize("name", [n for n in NAMES if CASES[n].tails])
def test_far_tails_are_finite(name: str) -> None:
    case = CASES[name]
    t = _build(case).float()
    x, c = _inputs(case, 6)
    far = (x.sign() * 50.0).float()
    cf = None if c is None else c.float()
    base = StandardNormal(case.out_shape or case.shape)()
    with torch.no_grad():
        flow = Flow(t, base, cf, case.shape)
        assert torch.isfinite(flow.log_prob(far)).all()
        z = (torch.randn(6, *(case.out_shape or case.shape)).sign() * 8.0).float()
        x_back, ladj = t.inverse(z, cf)
        assert torch.isfinite(x_back).all() and torch.isfinite(ladj).all()
