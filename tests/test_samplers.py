"""Diffusion samplers and the probability-flow likelihood, checked on Gaussian data.

For data N(μ, Σ) the optimal denoiser E[x₀ | x_t] is known in closed form; plugged into any
sampler it must reproduce μ and Σ, and the probability-flow ODE must give the exact log-density.
"""

from __future__ import annotations

import pytest
import torch

from simulacra.errors import ConfigError
from simulacra.processes import SCHEDULES, gaussian_denoiser
from simulacra.processes.gaussian import gaussian_marginal_log_prob
from simulacra.samplers import DDIM, SAMPLERS, DPMSolver, ProbabilityFlowODE, resolve_sampler, time_grid
from simulacra.samplers.ode import log_prob

MEAN = torch.tensor([1.0, -0.5])
COV = torch.tensor([[1.0, 0.6], [0.6, 0.5]])
PROCESSES = ["vp", "subvp", "cosine", "ve"]
# grid points and spacing per sampler: enough for its order on this problem
STEPS = {
    "ancestral": (400, "time"),
    "ddim": (100, "time"),
    "euler-maruyama": (200, "time"),
    "pc": (100, "time"),
    "dpm-solver": (30, "log-snr"),
    "ode": (2, "time"),
    "heun": (50, "time"),
}


def _process(name: str):
    return SCHEDULES.build({"name": name, **({"sigma_max": 50.0} if name == "ve" else {})})


def test_every_sampler_is_tested() -> None:
    assert set(SAMPLERS.names()) == set(STEPS)


@pytest.mark.parametrize("process_name", PROCESSES)
@pytest.mark.parametrize("sampler", sorted(STEPS))
def test_samplers_reproduce_gaussian_data(sampler: str, process_name: str) -> None:
    """With the optimal denoiser, samples have the data's mean and covariance."""
    process = _process(process_name)
    steps, spacing = STEPS[sampler]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(10_000, 2, generator=g) * process.prior_std
    out = SAMPLERS.get(sampler)()(gaussian_denoiser(process, MEAN, COV), process, x,
                                  time_grid(process, steps, spacing), generator=g)  # fmt: skip
    assert out.shape == x.shape and torch.isfinite(out).all()
    torch.testing.assert_close(out.mean(0), MEAN, atol=0.05, rtol=0)
    torch.testing.assert_close(torch.cov(out.T), COV, atol=0.06, rtol=0)


def test_ddim_is_deterministic_at_eta_zero() -> None:
    process = _process("cosine")
    denoise = gaussian_denoiser(process, MEAN, COV)
    x = torch.randn(50, 2)
    times = time_grid(process, 10)
    a = DDIM(eta=0.0)(denoise, process, x, times, generator=torch.Generator().manual_seed(1))
    b = DDIM(eta=0.0)(denoise, process, x, times, generator=torch.Generator().manual_seed(2))
    c = DDIM(eta=0.5)(denoise, process, x, times, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.allclose(a, c)
    # DDIM with η = 0 is a first-order solver of the probability-flow ODE: it converges to it
    ref = ProbabilityFlowODE(rtol=1e-7, atol=1e-7)(denoise, process, x, times)
    errors = [
        (DDIM()(denoise, process, x, time_grid(process, n)) - ref).abs().max().item() for n in (50, 200)
    ]
    assert errors[1] < errors[0] / 2.5, errors


def test_dpm_solver_is_second_order() -> None:
    """Error against a tight RK45 solution of the same ODE falls ~4x when the steps double."""
    process = _process("vp")
    denoise = gaussian_denoiser(process, MEAN, COV)
    x = torch.randn(200, 2, dtype=torch.float64)
    ref = ProbabilityFlowODE(rtol=1e-9, atol=1e-9)(denoise, process, x, time_grid(process, 2))
    err = [
        (DPMSolver()(denoise, process, x, time_grid(process, n, "log-snr")) - ref).abs().max()
        for n in (40, 80)
    ]
    assert 3.0 < err[0] / err[1] < 6.0, err


def test_dpm_solver_takes_a_first_order_final_step_on_short_grids() -> None:
    """Under 15 grid points the last step is first order (DPM-Solver++(1) = DDIM), as diffusers'
    ``lower_order_final``; the steps before it, and every step of a longer grid, are unchanged."""
    process = _process("vp")
    denoise = gaussian_denoiser(process, MEAN, COV)
    dpm, x = DPMSolver(), torch.randn(50, 2, dtype=torch.float64)
    seen: list[torch.Tensor] = []

    def recording(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append(x)
        return denoise(x, t)

    times = time_grid(process, 10, "log-snr")
    second_order = DPMSolver(lower_order_final=False)(recording, process, x, times)
    first_order_last = DDIM()(denoise, process, seen[-2], times[-2:])
    torch.testing.assert_close(dpm(denoise, process, x, times), first_order_last)
    assert (second_order - first_order_last).abs().max() > 1e-4
    long = time_grid(process, 20, "log-snr")
    assert torch.equal(
        dpm(denoise, process, x, long), DPMSolver(lower_order_final=False)(denoise, process, x, long)
    )


def test_stochastic_samplers_follow_the_generator() -> None:
    process = _process("vp")
    denoise = gaussian_denoiser(process, MEAN, COV)
    x = torch.randn(20, 2)
    times = time_grid(process, 10)
    for name in ("ancestral", "euler-maruyama", "pc"):
        run = SAMPLERS.get(name)()
        a = run(denoise, process, x, times, generator=torch.Generator().manual_seed(5))
        b = run(denoise, process, x, times, generator=torch.Generator().manual_seed(5))
        c = run(denoise, process, x, times, generator=torch.Generator().manual_seed(6))
        assert torch.equal(a, b) and not torch.equal(a, c), name


def test_options_and_grids_are_checked() -> None:
    process = _process("vp")
    denoise = gaussian_denoiser(process, MEAN, COV)
    x = torch.randn(4, 2)
    with pytest.raises(ConfigError, match="has no option 'eta'.*snr"):
        resolve_sampler("pc", eta=0.5)
    with pytest.raises(ConfigError, match="decreasing"):
        DDIM()(denoise, process, x, torch.tensor([0.1, 0.5]))
    with pytest.raises(ConfigError, match="steps >= 2"):
        time_grid(process, 1)
    lam = process.log_snr(time_grid(process, 6, "log-snr"))
    torch.testing.assert_close(lam.diff(), lam.diff()[:1].expand(5))  # equal log-SNR steps


# Zero-mean data for the likelihoods: the prior N(0, s² I) then matches the marginal at t = 1 up to
# O(α(1)²) (VP: 4e-5) or O(1/σ_max²) (VE); a mean μ would shift log p by about α(1) μ·x(1) nats.


@pytest.mark.parametrize("process_name", ["vp", "subvp", "cosine", "ve"])
def test_probability_flow_likelihood_is_exact_for_gaussian_data(process_name: str) -> None:
    """log p_{t_min}(x) from the PF-ODE (exact trace, D = 2) is log N(x; 0, α² Σ + σ² I)."""
    process = _process(process_name)
    mean, cov = torch.zeros(2, dtype=torch.float64), COV.double()
    denoise = gaussian_denoiser(process, mean, cov)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(64, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    got = log_prob(denoise, process, x, rtol=1e-7, atol=1e-7)
    t = torch.full((64,), process.t_min, dtype=torch.float64)
    exact = gaussian_marginal_log_prob(x, *process.alpha_sigma(t), mean, cov)
    torch.testing.assert_close(got, exact, atol=2e-3, rtol=0)


def test_hutchinson_likelihood_is_unbiased_in_higher_dimension() -> None:
    """D = 12, Hutchinson's trace: the mean over examples matches the exact mean log-density."""
    d, n = 12, 400
    process = _process("vp")
    g = torch.Generator().manual_seed(4)
    a = torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5
    cov = a @ a.T + 0.2 * torch.eye(d, dtype=torch.float64)
    mean = torch.zeros(d, dtype=torch.float64)
    denoise = gaussian_denoiser(process, mean, cov)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    got = log_prob(denoise, process, x, rtol=1e-5, atol=1e-5, generator=g)
    exact_trace = log_prob(denoise, process, x[:8], trace="exact", rtol=1e-5, atol=1e-5)
    t = torch.full((n,), process.t_min, dtype=torch.float64)
    exact = gaussian_marginal_log_prob(x, *process.alpha_sigma(t), mean, cov)
    torch.testing.assert_close(exact_trace, exact[:8], atol=5e-3, rtol=0)
    diff = got - exact
    assert diff.std() > 1e-3, "the Hutchinson estimate should be noisy"
    assert abs(diff.mean()) < 3 * diff.std() / n**0.5 + 1e-3


def test_likelihood_keeps_no_graph_unless_asked_and_its_gradient_is_the_score() -> None:
    """By default the solve records no graph (a trajectory's graph would fill memory on images),
    even with gradients on; ``differentiable=True`` keeps it, and ∇ₓ log p is then the exact
    Gaussian score −(α²Σ + σ²I)⁻¹ x."""
    process = _process("vp")
    mean, cov = torch.zeros(2, dtype=torch.float64), COV.double()
    denoise = gaussian_denoiser(process, mean, cov)
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    x.requires_grad_(True)
    assert torch.is_grad_enabled()
    assert not log_prob(denoise, process, x, rtol=1e-7, atol=1e-7).requires_grad
    got = log_prob(denoise, process, x, rtol=1e-7, atol=1e-7, differentiable=True)
    (score,) = torch.autograd.grad(got.sum(), x)
    alpha, sigma = process.alpha_sigma(torch.tensor(process.t_min, dtype=torch.float64))
    marginal = alpha**2 * cov + sigma**2 * torch.eye(2, dtype=torch.float64)
    torch.testing.assert_close(score, -x.detach() @ torch.linalg.inv(marginal), atol=2e-3, rtol=0)
