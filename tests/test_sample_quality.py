"""KID, precision/recall and density/coverage of feature sets (simulacra.metrics.features).

Cross-checks: the prdc package (Naeem et al.'s code) on fixed arrays gives the same precision,
recall, density and coverage; torch-fidelity's KID and FID on the same features agree to 1e-4
relative (torch-fidelity imports torchvision, which has no CPU build here, so its import runs
against a stub of the few torchvision names it reads at import; its metric functions use none).
Behaviour: two draws of one distribution give KID near 0 (within its spread), density near 1,
coverage near 1 and precision and recall near 0.85 (with k = 3 in 8 dimensions a finite sample's
balls miss part of its own distribution; 0.97 in 2 dimensions); a generator that drops half the
modes keeps its precision and loses half its recall and coverage.
"""

from __future__ import annotations

import importlib
import sys
import types

import numpy as np
import pytest
import torch

from simulacra.errors import DataError
from simulacra.metrics.features import class_histogram_kl, kid, manifold_metrics, polynomial_mmd2
from simulacra.metrics.fid import frechet_bootstrap_sd, frechet_distance, gaussian_fit


def _modes(n: int, modes: int, seed: int, dim: int = 8) -> torch.Tensor:
    """n points of a mixture of ``modes`` tight Gaussians at fixed centres in ``dim`` dimensions."""
    centres = 10 * torch.randn(10, dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    which = torch.randint(0, modes, (n,), generator=g)
    return centres[which] + 0.5 * torch.randn(n, dim, generator=g, dtype=torch.float64)


def test_manifold_metrics_equal_the_prdc_package() -> None:
    prdc = pytest.importorskip("prdc")
    real, fake = _modes(300, 10, 1).numpy(), _modes(250, 7, 2).numpy()
    for k in (3, 5):
        theirs = prdc.compute_prdc(real_features=real, fake_features=fake, nearest_k=k)
        ours = manifold_metrics(torch.from_numpy(real), torch.from_numpy(fake), k_pr=k, k_dc=k)
        for key in ("precision", "recall", "density", "coverage"):
            assert getattr(ours, key) == pytest.approx(theirs[key], rel=1e-12, abs=1e-12), (k, key)


def _torch_fidelity() -> tuple[types.ModuleType, types.ModuleType]:
    """torch_fidelity's metric modules, imported with a stub of torchvision if it is missing; the
    stub is removed from ``sys.modules`` again at once, so no other test sees it."""
    if importlib.util.find_spec("torch_fidelity") is None:
        pytest.skip("torch-fidelity is not installed (make setup installs it without its dependencies)")
    stubbed: list[str] = []
    if importlib.util.find_spec("torchvision") is None:

        def names(attr: str) -> type:
            if attr.startswith("__"):
                raise AttributeError(attr)
            return type(attr, (), {})

        parts = ("datasets", "transforms", "transforms.functional", "models", "utils")
        for name in ("torchvision", *(f"torchvision.{p}" for p in parts)):
            module = types.ModuleType(name)
            module.__getattr__ = names  # type: ignore[method-assign]
            sys.modules[name] = module
            stubbed.append(name)
            parent, _, child = name.rpartition(".")
            if parent:
                setattr(sys.modules[parent], child, module)
    try:
        return importlib.import_module("torch_fidelity.metric_kid"), importlib.import_module(
            "torch_fidelity.metric_fid"
        )
    finally:
        for name in stubbed:
            sys.modules.pop(name, None)


def test_kid_and_fid_equal_torch_fidelity_on_the_same_features() -> None:
    metric_kid, metric_fid = _torch_fidelity()
    real, fake = _modes(200, 10, 3).float(), _modes(200, 6, 4).float()
    theirs = metric_kid.kid_features_to_metric(
        real,
        fake,
        kid_subsets=1,
        kid_subset_size=200,
        kid_degree=3,
        kid_gamma=None,
        kid_coef0=1,
        verbose=False,
    )
    ours, sd = kid(real, fake, subsets=1, subset_size=200)  # one subset of all: no draw matters
    assert ours == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-4) and sd == 0
    stats = [metric_fid.fid_features_to_statistics(f) for f in (real, fake)]
    fid_theirs = metric_fid.fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]
    fid_ours = frechet_distance(*gaussian_fit(fake.double()), *gaussian_fit(real.double()))
    assert fid_ours == pytest.approx(fid_theirs, rel=1e-4)


def test_polynomial_mmd2_is_the_unbiased_estimator_by_hand() -> None:
    x, y = _modes(5, 3, 5, dim=2), _modes(5, 3, 6, dim=2)

    def k(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a @ b / 2 + 1) ** 3)

    m = 5
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    assert polynomial_mmd2(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-10)


def test_one_distribution_scores_as_one_and_dropped_modes_lose_recall() -> None:
    data, same, half = _modes(1000, 10, 7), _modes(1000, 10, 8), _modes(1000, 5, 9)
    g = torch.Generator().manual_seed(0)
    mean, sd = kid(data, same, subsets=50, subset_size=500, generator=g)
    assert abs(mean) < 3 * sd + 1e-3  # unbiased: zero within its spread
    far, _ = kid(data, half, subsets=50, subset_size=500, generator=g)
    assert far > 10 * (abs(mean) + sd)
    ok = manifold_metrics(data, same)  # measured: 0.839, 0.879, density 0.923, coverage 0.953
    assert min(ok.precision, ok.recall) > 0.8 and ok.coverage > 0.9 and 0.85 < ok.density < 1.15
    dropped = manifold_metrics(data, half)  # measured: 0.856, 0.437, 0.928, 0.491
    assert dropped.precision > 0.8  # every sample is as good as the data's own
    assert dropped.recall == pytest.approx(0.5, abs=0.08) and dropped.coverage == pytest.approx(0.5, abs=0.08)


def test_the_standard_errors_of_the_manifold_metrics_are_their_spread_over_draws() -> None:
    """Precision is the mean of i.i.d. indicators over the generated points (given the real
    balls), so its s.e. is √(p(1 − p)/(M − 1)) and matches the sd of precision over independent
    generated sets; every *_se is the sd over points / √n of its figure."""
    real = _modes(400, 10, 21)
    found = [manifold_metrics(real, _modes(300, 7, 100 + r)) for r in range(40)]
    first = found[0]
    p = first.precision
    assert first.precision_se == pytest.approx(np.sqrt(p * (1 - p) / 299), rel=1e-9)
    q = first.coverage  # the mean of indicators over the 400 real points
    assert first.coverage_se == pytest.approx(np.sqrt(q * (1 - q) / 399), rel=1e-9)
    spread = float(np.std([f.precision for f in found], ddof=1))
    typical = float(np.mean([f.precision_se for f in found]))
    assert 0.6 < spread / typical < 1.5, (spread, typical)
    assert all(np.isfinite([first.recall_se, first.density_se])) and first.density_se > 0


def test_the_bootstrap_sd_of_fid_is_its_spread_over_independent_draws() -> None:
    """Over 40 independent pairs of 400 points (N(0, I) against N(0.3, 1.2² I) in 4 dimensions)
    the FD's sd is matched, within the noise of either, by the bootstrap sd of single pairs."""

    def pair(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        real = torch.randn(400, 4, generator=g, dtype=torch.float64)
        return real, 0.3 + 1.2 * torch.randn(400, 4, generator=g, dtype=torch.float64)

    values = [frechet_distance(*gaussian_fit(a), *gaussian_fit(b)) for a, b in map(pair, range(40))]
    spread = float(np.std(values, ddof=1))
    boot = [frechet_bootstrap_sd(*pair(s), generator=torch.Generator().manual_seed(s)) for s in range(5)]
    assert 0.6 < float(np.mean(boot)) / spread < 1.6, (boot, spread)
    with pytest.raises(DataError, match="features must be"):
        frechet_bootstrap_sd(torch.zeros(5, 3), torch.zeros(5, 2))


def test_bad_features_are_refused() -> None:
    good = _modes(10, 2, 0)
    with pytest.raises(DataError, match="N >= 2"):
        manifold_metrics(good[:1], good)
    with pytest.raises(DataError, match="differ in width"):
        kid(good, good[:, :3])
    with pytest.raises(DataError, match="NaN"):
        manifold_metrics(good, good * float("nan"))
    with pytest.raises(DataError, match="k = 5"):
        manifold_metrics(good[:4], good[:4])
    assert np.isfinite(kid(good, good, subsets=2, subset_size=5)[0])


def test_the_class_histogram_kl_by_hand() -> None:
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 2, 2])  # data: 1/4, 1/4, 1/2
    predicted = torch.tensor([0, 0, 0, 1])  # samples: 3/4, 1/4, 0
    kl, reached, p = class_histogram_kl(predicted, labels, 4)
    assert reached == 2 and p.tolist() == [0.75, 0.25, 0.0, 0.0]
    assert kl == pytest.approx(0.75 * np.log(0.75 / 0.25) + 0.25 * np.log(0.25 / 0.25))
    assert class_histogram_kl(labels, labels, 3)[0] == 0.0
    assert class_histogram_kl(torch.tensor([3]), labels, 4)[0] == float("inf")  # a class the data lack
