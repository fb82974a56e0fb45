"""Flows inside the VAE family: an IAF posterior q(z | x) and a MAF prior p(z).

* the IAF posterior scores its own draws from the sampling pass; that value equals the flow's
  density computed the slow way (D inverse passes), so the ELBO uses the exact log q;
* the bounds still order: ELBO ≤ IWAE(k) for k > 1 (averaged), for both variants;
* the flow prior's draws and densities are those of the flow, with batch shape (n,).
"""

from __future__ import annotations

import pytest
import torch

import simulacra.models  # noqa: F401
from simulacra.data.info import DataInfo
from simulacra.flows.flow import Flow
from simulacra.models.zoo import build_model

DIGITS = DataInfo(event_shape=(1, 8, 8), support="unit", num_classes=10, levels=17)
SMALL = {"latent_dim": 4, "hidden": [32], "flow_transforms": 2, "flow_hidden": [16]}


def _x(n: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.round(torch.rand(n, 1, 8, 8, generator=g) * 16) / 16


def test_iaf_posterior_log_q_from_sampling_equals_the_density() -> None:
    torch.manual_seed(0)
    model = build_model({"name": "vae-iaf", **SMALL}, DIGITS).double()
    q = model.encode(_x().double())
    assert isinstance(q, Flow) and q.batch_shape == (16,)
    z, log_q = q.rsample_and_log_prob((3,))
    assert z.shape == (3, 16, 4) and log_q.shape == (3, 16)
    assert q.log_prob(z) is log_q  # the cached value for the very same draw
    slow = q.log_prob(z.clone())  # a different tensor: the D-pass inverse
    torch.testing.assert_close(slow, log_q, atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("name", ["vae-iaf", "vae-flow-prior"])
def test_elbo_below_iwae_bound(name: str) -> None:
    torch.manual_seed(0)
    model = build_model({"name": name, **SMALL}, DIGITS).eval()
    x = _x(32)
    with torch.no_grad():
        elbo = torch.stack([model.log_importance_weights(x, num_samples=1)[0] for _ in range(200)]).mean(0)
        w = model.log_importance_weights(x, num_samples=200)
        iwae = torch.logsumexp(w, 0) - torch.log(torch.tensor(200.0))
    assert (iwae - elbo).mean() > 0
    assert torch.isfinite(w).all()


def test_flow_prior_draws_and_scores_like_its_flow() -> None:
    torch.manual_seed(0)
    model = build_model({"name": "vae-flow-prior", **SMALL}, DIGITS)
    p = model.prior(n=5)
    assert isinstance(p, Flow) and p.batch_shape == (5,)
    z = p.sample(generator=torch.Generator().manual_seed(1))
    assert z.shape == (5, 4)
    direct = model.prior_module().log_prob(z.clone())
    torch.testing.assert_close(p.log_prob(z.clone()), direct)
    x = model.sample(6, generator=torch.Generator().manual_seed(2))
    assert x.shape == (6, 1, 8, 8)


def test_iaf_vae_trains_and_its_posterior_stays_normalized() -> None:
    """The loss falls, and the trained IAF posterior q(z | x) is still a density: the log q the
    ELBO uses (from the sampling pass) is the flow's density, which integrates to one over a 2-D
    latent grid (a log-determinant of the wrong sign would let training lower the loss by
    inflating q)."""
    torch.manual_seed(0)
    model = build_model({"name": "vae-iaf", **SMALL, "latent_dim": 2}, DIGITS)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = _x(64)
    first = None
    for _ in range(60):
        out = model.loss(x)
        first = out.loss.item() if first is None else first
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert out.loss.item() < first - 5.0
    model.eval()
    with torch.no_grad():
        q = model.encode(x[:1])  # batch shape (1,), event (2,)
        z, log_q = q.rsample_and_log_prob((2000,), generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(q.log_prob(z.clone()), log_q, atol=1e-4, rtol=1e-4)
        centre, scale = z[:, 0].mean(0), z[:, 0].std(0)  # (2,) each
        k = 160  # midpoint rule on centre ± 8 scale, 160 cells a side
        h = 16 * scale / k
        cells = (torch.arange(k) + 0.5) / k * 2 - 1  # (k,) in (-1, 1)
        grid = torch.cartesian_prod(centre[0] + 8 * scale[0] * cells, centre[1] + 8 * scale[1] * cells)
        mass = (q.log_prob(grid[:, None, :]).exp().squeeze(1) * h[0] * h[1]).sum().item()
    assert mass == pytest.approx(1.0, abs=0.01)
