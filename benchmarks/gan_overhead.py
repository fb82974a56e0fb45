"""Overhead of the one training loop for a GAN: the same DCGAN networks, batch and optimizers
trained by :func:`simulacra.train.fit` and by a plain PyTorch loop written like the pytorch
examples' DCGAN script, alternating within each repeat.

    python benchmarks/gan_overhead.py --threads 1

Three ways to train the same networks (the ``gan`` preset's DCGAN pair on 1×28×28 images,
non-saturating loss, Adam 2e-4 with β = (0.5, 0.999), fused where torch allows, batch 64):

* ``fit``: ``simulacra.train.fit`` (checkpoints, validation and logging off; metrics kept on the
  device as always);
* ``plain``: a hand-written loop doing exactly the same work per step: a D update on a real batch
  and fresh fakes drawn without gradients, then a G update on new fakes;
* ``plain-reuse``: the DCGAN example's loop, whose G update reuses the fakes of the D update
  (one generator forward fewer per step: a different algorithm, shown for what it saves).

Reports steps/s (median and range over the repeats, each repeat timing every variant in turn, the
order rotated) and the ratios fit / plain of wall and CPU time. The images are random grey
levels (a step's cost does not depend on the values). Writes benchmarks/results/gan-overhead.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _machine import write_record  # noqa: E402


def _data(n: int) -> Any:
    from simulacra.data.info import DataInfo, Dataset, Split

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 1, 28, 28), generator=g).float() / 255
    return Dataset("mnist-shaped", DataInfo((1, 28, 28), "unit", levels=256), Split(x))


def _model(info: Any) -> Any:
    from simulacra.models.zoo import build_model

    torch.manual_seed(0)
    return build_model("gan", info)


def time_fit(steps: int, batch: int, data: Any) -> tuple[float, float]:
    from simulacra.config import TrainConfig
    from simulacra.train import fit

    model = _model(data.info)
    config = TrainConfig.for_model(
        model,
        steps=steps,
        batch_size=batch,
        eval_every=0,
        ema_decay=None,
        log_every=10**9,
        checkpoint_every=0,
    )
    fit(
        model,
        data,
        TrainConfig.for_model(model, steps=2, batch_size=batch, eval_every=0, ema_decay=None),
        progress=False,
    )
    wall, cpu = time.perf_counter(), time.process_time()
    fit(model, data, config, progress=False)
    return time.perf_counter() - wall, time.process_time() - cpu


def time_plain(steps: int, batch: int, data: Any, *, reuse: bool) -> tuple[float, float]:
    model = _model(data.info)
    G, D, latent = model.generator, model.discriminator, model.latent
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999), fused=True)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999), fused=True)
    x_all = data.train.x * 2 - 1  # [0, 1] -> [-1, 1], as the model does
    n = x_all.shape[0]
    latent_dim = latent(None, 1).event_shape[0]

    def step() -> None:
        real = x_all[torch.randint(0, n, (batch,))]
        z = torch.randn(batch, latent_dim)
        if reuse:
            fake = G(z)
            d_fake = D(fake.detach())
        else:
            with torch.no_grad():
                fake = G(z)
            d_fake = D(fake)
        d_real = D(real)
        loss_d = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()  # BCE with logits
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        if not reuse:
            fake = G(torch.randn(batch, latent_dim))
        loss_g = F.softplus(-D(fake)).mean()  # non-saturating
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()

    for _ in range(2):
        step()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="timed steps per variant and repeat")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = _data(2048)
    variants = {
        "fit": lambda: time_fit(args.steps, args.batch_size, data),
        "plain": lambda: time_plain(args.steps, args.batch_size, data, reuse=False),
        "plain-reuse": lambda: time_plain(args.steps, args.batch_size, data, reuse=True),
    }
    names = list(variants)
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in names}
    for r in range(args.repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # the order rotates
            times[name].append(variants[name]())
        print(
            f"repeat {r + 1}: "
            + ", ".join(f"{k} {args.steps / v[-1][0]:.2f} steps/s" for k, v in times.items())
        )
    rows = {}
    for name, pairs in times.items():
        rates = [args.steps / wall for wall, _ in pairs]
        rows[name] = {
            "steps_per_s": round(statistics.median(rates), 3),
            "range": [round(min(rates), 3), round(max(rates), 3)],
            "cpu_s_per_step": round(statistics.median(cpu / args.steps for _, cpu in pairs), 4),
        }
    ratio_wall = [p[0] / f[0] for f, p in zip(times["fit"], times["plain"])]  # fit rate / plain rate
    ratio_cpu = [p[1] / f[1] for f, p in zip(times["fit"], times["plain"])]
    record = {
        "what": f"DCGAN on 1x28x28, batch {args.batch_size}, {args.steps} steps per variant, "
        f"{args.repeats} repeats with the order rotated",
        "variants": rows,
        "fit_over_plain_steps_per_s": {
            "wall_median": round(statistics.median(ratio_wall), 3),
            "wall_range": [round(min(ratio_wall), 3), round(max(ratio_wall), 3)],
            "cpu_median": round(statistics.median(ratio_cpu), 3),
            "cpu_range": [round(min(ratio_cpu), 3), round(max(ratio_cpu), 3)],
        },
    }
    write_record(record, HERE / "results" / "gan-overhead.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
