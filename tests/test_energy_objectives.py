"""Energy-based objectives against closed forms and maximum likelihood on Gaussian energies.

Model: E(x) = ½ (x − μ)ᵀΛ(x − μ), p(x) = N(μ, Λ⁻¹), log Z = (D/2) log 2π − ½ log det Λ, score
s(x) = −Λ(x − μ), ∇ₓs = −Λ. Hyvärinen's J(x) = ½‖Λ(x − μ)‖² − tr Λ. For the Gaussian family,
maximum likelihood, score matching and NCE share their population optimum, and on a sample the
ML estimates are the sample mean and the inverse of the biased (1/N) sample covariance.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import MultivariateNormal

from simulacra.distributions.standard import BoxUniform, FittedGaussian
from simulacra.errors import ConfigError, DataError
from simulacra.objectives.contrastive import (
    NCE,
    ContrastiveDivergence,
    EnergyObjective,
    ScoreMatching,
    contrastive_divergence,
    nce_loss,
)
from simulacra.objectives.score import (
    score_matching_denoising,
    score_matching_exact,
    score_matching_sliced,
)

DT = torch.float64


class GaussianEnergy(nn.Module):
    """E(x) = ½‖Lᵀ(x − μ)‖², Λ = LLᵀ, L lower triangular with a positive (exp) diagonal."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mu = nn.Parameter(torch.zeros(dim, dtype=DT))
        self.raw = nn.Parameter(torch.zeros(dim, dim, dtype=DT))

    def tril(self) -> Tensor:
        return torch.tril(self.raw, -1) + torch.diag(self.raw.diagonal().exp())

    def precision(self) -> Tensor:
        L = self.tril()
        return L @ L.T

    def forward(self, x: Tensor) -> Tensor:
        return 0.5 * ((x - self.mu) @ self.tril()).square().sum(1)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """Exact draws μ + L⁻ᵀz from N(μ, Λ⁻¹), detached."""
        z = torch.randn(n, self.mu.shape[0], dtype=DT, generator=generator)
        L = self.tril().detach()
        return self.mu.detach() + torch.linalg.solve_triangular(L.T, z.T, upper=True).T

    def log_normaliser(self) -> Tensor:
        return 0.5 * self.mu.shape[0] * math.log(2 * math.pi) - self.tril().diagonal().log().sum()


def _quadratic(mu: Tensor, lam: Tensor) -> Callable[[Tensor], Tensor]:
    return lambda x: 0.5 * ((x - mu) @ lam * (x - mu)).sum(1)


def _spd(d: int, seed: int) -> Tensor:
    a = torch.randn(d, d, dtype=DT, generator=torch.Generator().manual_seed(seed))
    return a @ a.T / d + 0.5 * torch.eye(d, dtype=DT)


def _closed_form_j(mu: Tensor, lam: Tensor, x: Tensor) -> Tensor:
    return 0.5 * ((x - mu) @ lam).square().sum(1) - torch.trace(lam)


# -- estimator identities ---------------------------------------------------------------------


@pytest.mark.parametrize("d", [2, 3])
def test_exact_score_matching_is_the_closed_form(d: int) -> None:
    g = torch.Generator().manual_seed(d)
    mu, lam = torch.randn(d, dtype=DT, generator=g), _spd(d, d)
    x = torch.randn(7, d, dtype=DT, generator=g)
    torch.testing.assert_close(score_matching_exact(_quadratic(mu, lam), x), _closed_form_j(mu, lam, x))


@pytest.mark.parametrize("variance_reduced", [True, False])
def test_sliced_score_matching_with_given_directions_is_its_formula(variance_reduced: bool) -> None:
    """For the Gaussian energy, −vᵀΛv + ½(vᵀg)² (or ½‖g‖²), g = Λ(x − μ), averaged over v; and its
    gradient w.r.t. (μ, Λ) is that of the formula: the Hessian-vector product keeps its graph."""
    g = torch.Generator().manual_seed(0)
    d, b, p = 3, 5, 4
    mu = torch.randn(d, dtype=DT, generator=g).requires_grad_(True)
    lam = _spd(d, 1).requires_grad_(True)
    x = torch.randn(b, d, dtype=DT, generator=g)
    v = torch.randn(p, b, d, dtype=DT, generator=g)
    got = score_matching_sliced(
        _quadratic(mu, lam), x, projections=p, directions=v, variance_reduced=variance_reduced
    )
    sym = 0.5 * (lam + lam.T)  # ∇ₓE = ½(Λ + Λᵀ)(x − μ) as a function of the matrix entries
    grad = (x - mu) @ sym  # (B, D) = ∇E
    quad = torch.einsum("pbi,ij,pbj->pb", v, sym, v)
    second = grad.square().sum(1) if variance_reduced else (v * grad).sum(2).square()
    want = (-quad + 0.5 * second).mean(0) if not variance_reduced else -quad.mean(0) + 0.5 * second
    torch.testing.assert_close(got, want)
    g_got = torch.autograd.grad(got.sum(), (mu, lam))
    g_want = torch.autograd.grad(want.sum(), (mu, lam))
    for a, w in zip(g_got, g_want):
        torch.testing.assert_close(a, w)


@pytest.mark.parametrize("variance_reduced", [True, False])
def test_sliced_score_matching_is_unbiased_for_the_exact_value(variance_reduced: bool) -> None:
    """The mean over P = 4,000 random directions per example is within 5 standard errors of J(x);
    the per-direction variance is known: Var = 2 tr Λ² (reduced) or 2 tr Λ² + ½‖g‖⁴ − 2 gᵀΛg."""
    g = torch.Generator().manual_seed(1)
    d, b, p = 3, 6, 4000
    mu, lam = torch.randn(d, dtype=DT, generator=g), _spd(d, 2)
    x = torch.randn(b, d, dtype=DT, generator=g)
    energy = _quadratic(mu, lam)
    # one direction per row of x repeated P times: the P estimates of each example in one pass
    draws = score_matching_sliced(
        energy, x.repeat(p, 1), generator=g, variance_reduced=variance_reduced
    ).view(p, b)
    grad = (x - mu) @ lam
    var = torch.full((b,), 2 * torch.trace(lam @ lam).item(), dtype=DT)
    if not variance_reduced:
        var = var + 0.5 * grad.square().sum(1).square() - 2 * ((grad @ lam) * grad).sum(1)
    se = (var / p).sqrt()
    exact = _closed_form_j(mu, lam, x)
    assert ((draws.mean(0) - exact).abs() < 5 * se).all()
    # the sample variance matches the formula (the plain form is the noisier one)
    torch.testing.assert_close(draws.var(0), var, rtol=0.2, atol=0.0)


def test_denoising_score_matching_with_given_noise_is_its_formula() -> None:
    """½‖ε − σΛ(x̃ − μ)‖² at x̃ = x + σε, and its gradient w.r.t. (μ, Λ)."""
    g = torch.Generator().manual_seed(2)
    d, b, sigma = 2, 5, 0.3
    mu = torch.randn(d, dtype=DT, generator=g).requires_grad_(True)
    lam = _spd(d, 3).requires_grad_(True)
    x, eps = torch.randn(b, d, dtype=DT, generator=g), torch.randn(b, d, dtype=DT, generator=g)
    got = score_matching_denoising(_quadratic(mu, lam), x, sigma, noise=eps)
    sym = 0.5 * (lam + lam.T)  # ∇ₓE = ½(Λ + Λᵀ)(x − μ) as a function of the matrix entries
    want = 0.5 * (eps - sigma * (x + sigma * eps - mu) @ sym).square().sum(1)
    torch.testing.assert_close(got, want)
    for a, w in zip(torch.autograd.grad(got.sum(), (mu, lam)), torch.autograd.grad(want.sum(), (mu, lam))):
        torch.testing.assert_close(a, w)


def test_exact_score_matching_gradient_is_that_of_the_closed_form() -> None:
    """∇_θ of ½‖Λ(x − μ)‖² − tr Λ: the −tr Λ term exists only through the double backward pass."""
    m = GaussianEnergy(3)
    with torch.no_grad():
        m.mu.copy_(torch.tensor([0.5, -1.0, 0.2], dtype=DT))
        m.raw.copy_(0.3 * torch.randn(3, 3, dtype=DT, generator=torch.Generator().manual_seed(4)))
    x = torch.randn(8, 3, dtype=DT, generator=torch.Generator().manual_seed(5))
    got = torch.autograd.grad(score_matching_exact(m, x).sum(), tuple(m.parameters()))
    want = torch.autograd.grad(_closed_form_j(m.mu, m.precision(), x).sum(), tuple(m.parameters()))
    for a, w in zip(got, want):
        torch.testing.assert_close(a, w)


def test_estimators_work_under_no_grad() -> None:
    """Validation calls them under torch.no_grad(): they still build a graph to the parameters."""
    m = GaussianEnergy(2)
    x = torch.randn(6, 2, dtype=DT, generator=torch.Generator().manual_seed(6))
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        values = [
            score_matching_exact(m, x),
            score_matching_sliced(m, x, projections=2, generator=g),
            score_matching_denoising(m, x, 0.1, generator=g),
        ]
    torch.testing.assert_close(values[0], _closed_form_j(m.mu, m.precision(), x).detach())
    for v in values:
        assert v.shape == (6,) and v.requires_grad
        m.zero_grad()
        v.sum().backward()
        assert all(
            p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
            for p in m.parameters()
        )


class ConvEnergy(nn.Module):
    """A tiny image energy: Σ softplus(conv(x)) + ½‖x‖² over (B, 1, 4, 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1).double()

    def forward(self, x: Tensor) -> Tensor:
        return F.softplus(self.conv(x)).flatten(1).sum(1) + 0.5 * x.flatten(1).square().sum(1)


def test_estimators_on_images() -> None:
    """(B, 1, 4, 4): the exact Laplacian equals the trace of autograd's Hessian of each example;
    the sliced mean over 2,000 directions lies within 5 empirical standard errors of it; all three
    reach the conv weights."""
    torch.manual_seed(0)
    m = ConvEnergy()
    g = torch.Generator().manual_seed(8)
    x = torch.randn(3, 1, 4, 4, dtype=DT, generator=g)
    exact = score_matching_exact(m, x)
    want = []
    for xb in x:
        xb = xb.unsqueeze(0)
        grad = torch.autograd.functional.jacobian(lambda z: m(z).sum(), xb).flatten()
        hess = torch.autograd.functional.hessian(lambda z: m(z).sum(), xb).reshape(16, 16)
        want.append(0.5 * grad.square().sum() - torch.trace(hess))
    torch.testing.assert_close(exact, torch.stack(want).detach())
    p = 2000
    draws = score_matching_sliced(m, x.repeat(p, 1, 1, 1), generator=g).view(p, 3).detach()
    se = draws.std(0) / math.sqrt(p)
    assert ((draws.mean(0) - exact.detach()).abs() < 5 * se).all()
    for value in (
        exact,
        score_matching_sliced(m, x, generator=g),
        score_matching_denoising(m, x, 0.2, generator=g),
    ):
        assert value.shape == (3,)
        m.zero_grad()
        value.sum().backward()
        assert m.conv.weight.grad is not None and m.conv.weight.grad.abs().sum() > 0


# -- contrastive divergence -------------------------------------------------------------------


def test_contrastive_divergence_gradient_is_the_likelihood_gradient() -> None:
    """E = ½(x − μ)ᵀA(x − μ): NLL = mean E(data) + (D/2) log 2π − ½ log det A. With M = 50,000 exact
    samples, ∇ of the CD loss w.r.t. (μ, A) is within 5 standard errors of ∇ NLL, the errors
    being those of the sample averages: √(A_ii/M) for μ (Cov(Ax') = A) and
    ½√((Σ_ii Σ_jj + Σ_ij²)/M) for A (Σ = A⁻¹, Var(z_i z_j) of a Gaussian)."""
    g = torch.Generator().manual_seed(9)
    d, m_samples = 2, 50_000
    mu = torch.tensor([0.3, -0.4], dtype=DT, requires_grad=True)
    a = _spd(d, 10).requires_grad_(True)
    cov = torch.linalg.inv(a.detach())
    data = torch.randn(50, d, dtype=DT, generator=g) + 1.0
    samples = mu.detach() + torch.randn(m_samples, d, dtype=DT, generator=g) @ torch.linalg.cholesky(cov).T
    energy = _quadratic(mu, a)
    loss, _ = contrastive_divergence(energy(data), energy(samples))
    got = torch.autograd.grad(loss, (mu, a))
    nll = energy(data).mean() + 0.5 * d * math.log(2 * math.pi) - 0.5 * torch.logdet(a)
    want = torch.autograd.grad(nll, (mu, a))
    se_mu = (a.detach().diagonal() / m_samples).sqrt()
    se_a = 0.5 * ((torch.outer(cov.diagonal(), cov.diagonal()) + cov.square()) / m_samples).sqrt()
    assert ((got[0] - want[0]).abs() < 5 * se_mu).all()
    assert ((got[1] - want[1]).abs() < 5 * se_a).all()
    # the tolerance is small against the gradient itself, so the comparison has power
    assert (got[0] - want[0]).abs().max() < 0.1 * want[0].abs().max()


def test_contrastive_divergence_metrics_and_regulariser() -> None:
    e_data = torch.tensor([0.5, 1.0, 1.5], requires_grad=True)
    e_samples = torch.tensor([4.0, 6.0], requires_grad=True)
    loss, metrics = contrastive_divergence(e_data, e_samples)
    assert metrics["energy_data"].item() == pytest.approx(1.0)
    assert metrics["energy_samples"].item() == pytest.approx(5.0)
    assert metrics["energy_gap"].item() == pytest.approx(4.0)  # samples less likely than data: gap > 0
    assert not any(v.requires_grad for v in metrics.values())
    assert loss.item() == pytest.approx(-4.0)
    reg, _ = contrastive_divergence(e_data, e_samples, alpha=0.5)
    # α (mean E(data)² + mean E(samples)²) = 0.5 (3.5/3 + 26)
    assert (reg - loss).item() == pytest.approx(0.5 * (3.5 / 3 + 26.0))


def test_contrastive_divergence_object_detaches_the_samples() -> None:
    m = GaussianEnergy(2)
    x = torch.randn(4, 2, dtype=DT)
    samples = (3.0 * torch.randn(6, 2, dtype=DT)).requires_grad_(True)
    cd: EnergyObjective = ContrastiveDivergence(alpha=0.0)
    assert cd.needs_samples
    loss, metrics = cd(m, x, samples)
    loss.backward()
    assert samples.grad is None and m.mu.grad is not None
    assert metrics["energy_gap"].item() == pytest.approx((m(samples).mean() - m(x).mean()).item())


# -- noise-contrastive estimation ------------------------------------------------------------


def _h(g: float, nu: float) -> float:
    return 1.0 / (1.0 + math.exp(-(g - math.log(nu))))


def test_nce_loss_by_hand_with_nu_two() -> None:
    g_data, g_noise = [1.5, 0.2], [0.9, -2.0, 0.1, -0.4]
    nu = 2.0
    want = -(
        sum(math.log(_h(v, nu)) for v in g_data) / 2 + nu * sum(math.log(1 - _h(v, nu)) for v in g_noise) / 4
    )
    loss, metrics = nce_loss(torch.tensor(g_data, dtype=DT), torch.tensor(g_noise, dtype=DT))
    assert loss.item() == pytest.approx(want, rel=1e-12)
    # logits G − log 2: data (0.81, −0.49) -> ½ right; noise (0.21, ...) -> ¾ right
    assert metrics["nce_accuracy"].item() == pytest.approx(0.625)
    assert metrics["log_nu"].item() == pytest.approx(math.log(2.0))


def test_nce_loss_with_nu_one_is_binary_cross_entropy_and_stable() -> None:
    gd, gn = torch.tensor([0.3, -1.0, 2.0]), torch.tensor([-0.5, 1.2, 0.0])
    loss, metrics = nce_loss(gd, gn)
    bce = F.binary_cross_entropy_with_logits(gd, torch.ones(3)) + F.binary_cross_entropy_with_logits(
        gn, torch.zeros(3)
    )
    torch.testing.assert_close(loss, bce)
    assert metrics["log_nu"].item() == 0.0
    big, _ = nce_loss(torch.tensor([800.0]), torch.tensor([-800.0, 900.0]))
    assert torch.isfinite(big) and big.item() == pytest.approx(900.0 - math.log(2.0), rel=1e-6)


def test_fitted_gaussian() -> None:
    """Mean and covariance c² S + δ I (S biased), log_prob against torch's MultivariateNormal, draws
    with those moments, image event shapes, and the fit saved in the state_dict."""
    g = torch.Generator().manual_seed(11)
    x = torch.randn(500, 3, dtype=DT, generator=g) @ torch.tensor(
        [[1.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 0.2]], dtype=DT
    )
    noise = FittedGaussian(3, inflation=1.2, jitter=1e-4).double()
    assert not noise.fitted
    with pytest.raises(ConfigError, match="fit"):
        noise.log_prob(x)
    noise.fit(x)
    assert noise.fitted
    s = torch.cov(x.T, correction=0)
    cov = 1.44 * s + 1e-4 * torch.eye(3, dtype=DT)
    torch.testing.assert_close(noise.covariance_matrix, cov)
    torch.testing.assert_close(noise.log_prob(x[:5]), MultivariateNormal(x.mean(0), cov).log_prob(x[:5]))
    y = noise.sample(40_000, generator=g)
    torch.testing.assert_close(y.mean(0), x.mean(0), atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(y.T), cov, atol=0.03, rtol=0.03)
    loaded = FittedGaussian(3).double()
    loaded.load_state_dict(noise.state_dict())
    assert loaded.fitted
    torch.testing.assert_close(loaded.log_prob(x[:5]), noise.log_prob(x[:5]))
    images = FittedGaussian((1, 2, 2)).fit(torch.zeros(10, 1, 2, 2))  # constant pixels: the jitter
    assert (
        images.sample(3).shape == (3, 1, 2, 2)
        and torch.isfinite(images.log_prob(torch.zeros(4, 1, 2, 2))).all()
    )
    with pytest.raises(DataError, match="expects"):
        images.log_prob(torch.zeros(4, 4))


def test_nce_fits_an_unfitted_noise_on_the_first_batch() -> None:
    x = torch.randn(64, 2, dtype=DT) * 2.0 + 1.0
    nce = NCE(FittedGaussian(2).double(), ratio=3).double()
    assert not nce.needs_samples
    loss, metrics = nce(GaussianEnergy(2), x, None, generator=torch.Generator().manual_seed(0))
    assert nce.noise.fitted
    torch.testing.assert_close(nce.noise.loc, x.mean(0))
    assert torch.isfinite(loss) and set(metrics) == {"nce_accuracy", "log_nu", "log_z"}
    assert metrics["log_nu"].item() == pytest.approx(math.log(3.0))


# -- recovery of maximum likelihood ----------------------------------------------------------


N = 2000


@pytest.fixture(scope="module")
def correlated() -> tuple[Tensor, Tensor, Tensor]:
    """2,000 points of N((1, −½), [[1, .6], [.6, .5]]), their mean and inverse biased covariance."""
    g = torch.Generator().manual_seed(12)
    cov = torch.tensor([[1.0, 0.6], [0.6, 0.5]], dtype=DT)
    x = (
        torch.tensor([1.0, -0.5], dtype=DT)
        + torch.randn(N, 2, dtype=DT, generator=g) @ torch.linalg.cholesky(cov).T
    )
    mean = x.mean(0)
    return x, mean, torch.linalg.inv((x - mean).T @ (x - mean) / N)


def _lbfgs(params: list[nn.Parameter], loss: Callable[[], Tensor], iters: int = 100) -> None:
    opt = torch.optim.LBFGS(
        params,
        lr=1,
        max_iter=iters,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-12,
        tolerance_change=1e-15,
    )

    def closure() -> Tensor:
        opt.zero_grad()
        value = loss()
        value.backward()
        return value

    opt.step(closure)


def _relative(a: Tensor, b: Tensor) -> float:
    return (torch.linalg.matrix_norm(a - b) / torch.linalg.matrix_norm(b)).item()


@pytest.mark.parametrize(
    ("method", "mu_tol", "lam_tol"),
    [
        # J's minimiser over the Gaussian family is exactly (x̄, Σ̂⁻¹): only the optimiser's error
        ("exact", 1e-6, 1e-6),
        # μ's minimiser is still x̄ exactly; Λ solves ½(ΛΣ̂ + Σ̂Λ) = V̄ with V̄ the mean vvᵀ of the
        # B·P = 16,000 fixed directions, V̄ − I having entries of size ≈ √(2/16000) ≈ 1.1 % (the error
        # in Λ was 1 % on average and 2.7 % at most over 20 seeds): allow 5 %
        ("sliced", 1e-6, 0.05),
    ],
)
def test_score_matching_recovers_maximum_likelihood(
    correlated, method: str, mu_tol: float, lam_tol: float
) -> None:
    x, mu_ml, lam_ml = correlated
    m = GaussianEnergy(2)
    objective = ScoreMatching(method, projections=8)
    _lbfgs(list(m.parameters()), lambda: objective(m, x, None, generator=torch.Generator().manual_seed(1))[0])
    assert (m.mu - mu_ml).abs().max().item() < mu_tol
    assert _relative(m.precision(), lam_ml) < lam_tol


def test_contrastive_divergence_with_exact_samples_recovers_maximum_likelihood(correlated) -> None:
    """Adam on CD with 2,000 fresh exact draws of the current model per step (lr 0.05, then 0.005),
    parameters averaged over the last 100 steps. The gradient noise of a step is that of a mean of
    2,000 draws (≈ 3 % of Λ, ≈ 0.02 in μ), shrunk by the small final step size and the averaging
    (over 8 seeds the errors stayed below 0.002 in μ and 0.5 % in Λ): allow 0.01 in μ (half a
    standard error of x̄ itself, so a biased gradient would show) and 2 % in Λ."""
    x, mu_ml, lam_ml = correlated
    m = GaussianEnergy(2)
    cd = ContrastiveDivergence(alpha=0.0)
    opt = torch.optim.Adam(m.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(2)
    total = [torch.zeros_like(p) for p in m.parameters()]
    for step in range(300):
        if step == 100:
            opt.param_groups[0]["lr"] = 0.005
        opt.zero_grad()
        loss, _ = cd(m, x, m.sample(2000, g))
        loss.backward()
        opt.step()
        if step >= 200:
            total = [t + p.detach() for t, p in zip(total, m.parameters())]
    with torch.no_grad():
        for p, t in zip(m.parameters(), total):
            p.copy_(t / 100)
    assert (m.mu - mu_ml).abs().max().item() < 0.01
    assert _relative(m.precision(), lam_ml) < 0.02


def test_nce_recovers_maximum_likelihood_and_the_normaliser(correlated) -> None:
    """NCE with a FittedGaussian noise (fitted to the data, std × 1.2) and ν = 10: 20,000 noise
    draws, the same at every LBFGS evaluation. NCE is consistent and, with a noise this close
    to the data, nearly efficient: its difference from ML is of the order of the Monte Carlo
    error of 20,000 noise draws (≈ 0.01 in μ, ≈ 1 % in Λ). Allow 0.03, 5 % and 0.03 nats in
    log_z against log Z = log 2π − ½ log det Λ of the fitted model (dropping log ν from the
    logit would be off by log 10 = 2.3 nats)."""
    x, mu_ml, lam_ml = correlated
    m = GaussianEnergy(2)
    nce = NCE(FittedGaussian(2).double().fit(x), ratio=10).double()
    params = list(m.parameters()) + list(nce.parameters())
    _lbfgs(params, lambda: nce(m, x, None, generator=torch.Generator().manual_seed(1))[0], iters=200)
    assert (m.mu - mu_ml).abs().max().item() < 0.03
    assert _relative(m.precision(), lam_ml) < 0.05
    assert nce.log_z.item() == pytest.approx(m.log_normaliser().item(), abs=0.03)


def test_nce_against_uniform_noise_on_a_box_recovers_maximum_likelihood(correlated) -> None:
    """The EBM's other fixed noise, uniform on its box (here [−5, 7]², which holds the Gaussian
    to 6 standard deviations, so truncation changes nothing measurable): ν = 50, 100,000 noise
    draws. Uniform noise is far from the data, so NCE is less efficient than with the fitted
    Gaussian; still consistent. Over 3 data sets × 2 noise draws the errors were at most 0.018 in
    μ, 1.8 % in Λ and 0.028 nats in log_z; allow 0.05, 5 % and 0.06 nats."""
    x, mu_ml, lam_ml = correlated
    m = GaussianEnergy(2)
    nce = NCE(BoxUniform(2, -5.0, 7.0).double(), ratio=50).double()
    params = list(m.parameters()) + list(nce.parameters())
    _lbfgs(params, lambda: nce(m, x, None, generator=torch.Generator().manual_seed(1))[0], iters=200)
    assert (m.mu - mu_ml).abs().max().item() < 0.05
    assert _relative(m.precision(), lam_ml) < 0.05
    assert nce.log_z.item() == pytest.approx(m.log_normaliser().item(), abs=0.06)
    outside, inside = BoxUniform(2, -5.0, 7.0).log_prob(torch.tensor([[8.0, 0.0], [0.0, 0.0]])).tolist()
    assert outside == -math.inf and inside == pytest.approx(-2 * math.log(12.0))
    with pytest.raises(ConfigError, match="low < high"):
        BoxUniform(2, 1.0, 1.0)


def test_denoising_score_matching_recovers_the_smoothed_density() -> None:
    """1-D data N(1, ½²), σ = ½: DSM's minimiser is N(m̂, ŝ² + σ²), precision ≈ 2 (not 1/ŝ² ≈ 4).
    With N = 20,000 fixed noise draws, the fitted precision is a regression slope with standard
    error √(4/N) ≈ 0.014 (0.7 %); allow 3.5 %, and 0.02 for the mean (s.e. ≈ 0.004)."""
    g = torch.Generator().manual_seed(13)
    n, sigma = 20_000, 0.5
    x = 1.0 + 0.5 * torch.randn(n, 1, dtype=DT, generator=g)
    m = GaussianEnergy(1)
    _lbfgs(
        list(m.parameters()),
        lambda: score_matching_denoising(m, x, sigma, generator=torch.Generator().manual_seed(3)).mean(),
    )
    smoothed = x.var(correction=0).item() + sigma**2
    assert m.precision().item() == pytest.approx(1 / smoothed, rel=0.035)
    assert m.mu.item() == pytest.approx(x.mean().item(), abs=0.02)


# -- bad arguments ----------------------------------------------------------------------------


def test_bad_arguments() -> None:
    x = torch.randn(4, 2, dtype=DT)
    with pytest.raises(ConfigError, match="exact, sliced, denoising"):
        ScoreMatching("hyvarinen")
    for sigma in (0.0, -0.1):
        with pytest.raises(ConfigError, match="sigma"):
            ScoreMatching("denoising", sigma=sigma)
        with pytest.raises(ConfigError, match="sigma"):
            score_matching_denoising(GaussianEnergy(2), x, sigma)
    with pytest.raises(ConfigError, match="projections"):
        ScoreMatching(projections=0)
    with pytest.raises(ConfigError, match="ratio"):
        NCE(FittedGaussian(2), ratio=0)
    with pytest.raises(ConfigError, match="sample"):
        NCE(nn.Linear(2, 2))
    with pytest.raises(ConfigError, match="'sliced' or 'denoising'"):
        score_matching_exact(lambda z: z.flatten(1).sum(1), torch.randn(2, 65))
    with pytest.raises(DataError, match="samples"):
        ContrastiveDivergence()(GaussianEnergy(2), x, None)
    with pytest.raises(DataError, match="event shape"):
        ContrastiveDivergence()(GaussianEnergy(2), x, torch.randn(3, 3, dtype=DT))
    with pytest.raises(DataError, match="one value per example"):
        score_matching_sliced(lambda z: z.sum(), x)
    with pytest.raises(DataError, match="vector"):
        nce_loss(torch.zeros(2, 1), torch.zeros(2))
    with pytest.raises(ConfigError, match="alpha"):
        ContrastiveDivergence(alpha=-1.0)
