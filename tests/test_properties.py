"""Property-based checks (hypothesis) of invariants that must hold for every input."""

from __future__ import annotations

import math

import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from simulacra.config import apply_overrides
from simulacra.distributions.heads import LogitBernoulli
from simulacra.metrics.likelihood import chunk_sizes
from simulacra.tasks.interpolate import slerp
from simulacra.train.batches import BatchSchedule

FAST = settings(max_examples=60, deadline=None)


@FAST
@given(
    n=st.integers(1, 10_000),
    dim=st.integers(1, 4096),
    k=st.integers(1, 10_000),
    budget=st.integers(1, 2**24),
)
def test_importance_sampling_chunks_respect_the_memory_budget(n: int, dim: int, k: int, budget: int) -> None:
    b, kk = chunk_sizes(n, dim, k, budget)
    assert 1 <= b <= n and 1 <= kk <= k
    assert kk * b * dim <= max(budget, dim)  # one sample of one example is the unavoidable minimum
    assert b == 1 or kk == k  # whole sample sets are kept together before examples are split


@FAST
@given(
    n=st.integers(2, 300),
    per_rank=st.integers(1, 16),
    world=st.integers(1, 4),
    seed=st.integers(0, 2**31 - 1),
    epoch=st.integers(0, 5),
)
def test_ranks_partition_every_global_batch_and_an_epoch_never_repeats(
    n: int, per_rank: int, world: int, seed: int, epoch: int
) -> None:
    global_batch = per_rank * world
    assume(global_batch <= n)  # a global batch larger than the data is a configuration error
    ranks = [BatchSchedule(n, global_batch, seed, rank=r, world_size=world) for r in range(world)]
    steps = ranks[0].steps_per_epoch
    seen: list[int] = []
    for step in range(epoch * steps, (epoch + 1) * steps):
        shards = [r.indices(step) for r in ranks]
        assert all(len(s) == per_rank for s in shards)
        seen += torch.cat(shards).tolist()
    assert len(seen) == len(set(seen)) == steps * global_batch  # no example twice in an epoch
    assert all(0 <= i < n for i in seen)


@FAST
@given(st.lists(st.floats(-400, 400, allow_nan=False), min_size=1, max_size=64), st.integers(0, 2**32 - 1))
def test_bernoulli_log_prob_is_torchs_for_any_logits(logits: list[float], seed: int) -> None:
    from torch.distributions import Bernoulli

    l = torch.tensor(logits, dtype=torch.float64)
    x = torch.bernoulli(torch.full_like(l, 0.5), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ours = LogitBernoulli(logits=l).log_prob(x)
    torch.testing.assert_close(ours, Bernoulli(logits=l).log_prob(x), rtol=1e-12, atol=1e-12)
    assert (ours <= 0).all()


@FAST
@given(
    st.lists(st.floats(-10, 10, allow_nan=False), min_size=3, max_size=3),
    st.lists(st.floats(-10, 10, allow_nan=False), min_size=3, max_size=3),
    st.floats(0, 1),
)
def test_slerp_keeps_endpoints_and_the_norm_of_equal_norm_endpoints(
    a: list[float], b: list[float], t: float
) -> None:
    ta, tb = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    torch.testing.assert_close(slerp(ta, tb, 0.0), ta)
    torch.testing.assert_close(slerp(ta, tb, 1.0), tb)
    assert torch.isfinite(slerp(ta, tb, t)).all()
    # a zero or antipodal endpoint has no unique great circle (documented lerp fallback)
    assume(ta.norm() >= 1e-3 and tb.norm() >= 1e-3 and torch.cosine_similarity(ta, tb, dim=0) >= -0.999)
    tb = tb * (ta.norm() / tb.norm())  # on the sphere of radius |a|, slerp stays on that sphere
    torch.testing.assert_close(slerp(ta, tb, t).norm(), ta.norm(), rtol=1e-6, atol=1e-9)


@FAST
@given(
    key=st.from_regex(r"[a-z][a-z_]{0,8}", fullmatch=True),
    value=st.one_of(st.integers(-(10**6), 10**6), st.booleans(), st.floats(-1e6, 1e6, allow_nan=False)),
)
def test_an_override_reads_back_as_the_value_written(key: str, value: object) -> None:
    text = str(value).lower() if isinstance(value, bool) else repr(value)
    out = apply_overrides({"model": {"name": "vae"}}, [f"model.{key}={text}"])
    got = out["model"][key]
    if isinstance(value, float):
        assert math.isclose(got, value) or (math.isinf(value) and got == value)
    else:
        assert got == value
