"""pythae's half of benchmarks/pythae_comparison.py; runs in pythae's own virtual environment.

It imports pythae and torch only (never simulacra), builds pythae's VAE on the Burda et al.
architecture (784-200-200-50, tanh, Bernoulli), and measures one of:

* ``train``: examples/s of pythae's BaseTrainer (its DataLoader, per-item collation) over epochs;
* ``nll``: the time and value of pythae's ``get_nll`` (importance sampling, image by image), with
  weights exported by the driver from a simulacra checkpoint so both libraries score one model.

Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch
from pythae.data.datasets import BaseDataset
from pythae.models import VAE, VAEConfig
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseEncoder
from pythae.trainers import BaseTrainer, BaseTrainerConfig
from torch import nn


class Encoder(BaseEncoder):
    """784-200-200-(50 μ, 50 σ), tanh. ``softplus_std``: σ = softplus(s) + 1e-4 as in simulacra's
    DiagonalGaussian (for scoring shared weights); otherwise pythae's usual log-variance head."""

    def __init__(self, softplus_std: bool) -> None:
        BaseEncoder.__init__(self)
        self.net = nn.Sequential(
            nn.Linear(784, 200), nn.Tanh(), nn.Linear(200, 200), nn.Tanh(), nn.Linear(200, 100)
        )
        self.softplus_std = softplus_std

    def forward(self, x: torch.Tensor) -> ModelOutput:
        h = self.net(x.reshape(x.shape[0], -1))
        mu, s = h[:, :50], h[:, 50:]
        log_var = 2 * torch.log(nn.functional.softplus(s) + 1e-4) if self.softplus_std else s
        return ModelOutput(embedding=mu, log_covariance=log_var)


class Decoder(BaseDecoder):
    """50-200-200-784, tanh, sigmoid output (pythae's "bce" loss takes probabilities)."""

    def __init__(self) -> None:
        BaseDecoder.__init__(self)
        self.net = nn.Sequential(
            nn.Linear(50, 200), nn.Tanh(), nn.Linear(200, 200), nn.Tanh(), nn.Linear(200, 784)
        )

    def forward(self, z: torch.Tensor) -> ModelOutput:
        return ModelOutput(reconstruction=torch.sigmoid(self.net(z)).reshape(z.shape[0], 1, 28, 28))


def build(softplus_std: bool) -> VAE:
    config = VAEConfig(input_dim=(1, 28, 28), latent_dim=50, reconstruction_loss="bce")
    return VAE(config, encoder=Encoder(softplus_std), decoder=Decoder())


def load_weights(model: VAE, path: str) -> None:
    """Weights exported by the driver: enc{i}_w/b and dec{i}_w/b for the three Linear layers."""
    arrays = np.load(path)
    for prefix, seq in (("enc", model.encoder.net), ("dec", model.decoder.net)):
        linears = [m for m in seq if isinstance(m, nn.Linear)]
        for i, layer in enumerate(linears):
            layer.weight.data.copy_(torch.from_numpy(arrays[f"{prefix}{i}_w"]))
            layer.bias.data.copy_(torch.from_numpy(arrays[f"{prefix}{i}_b"]))


def train_throughput(x: np.ndarray, epochs: int, batch_size: int, lr: float) -> dict:
    torch.manual_seed(0)
    model = build(softplus_std=False)
    data = torch.from_numpy(x.reshape(-1, 1, 28, 28).astype(np.float32))
    dataset = BaseDataset(data, torch.zeros(len(data)))
    with tempfile.TemporaryDirectory() as out:
        config = BaseTrainerConfig(
            output_dir=out,
            per_device_train_batch_size=batch_size,
            num_epochs=epochs,
            learning_rate=lr,
            optimizer_cls="Adam",
            no_cuda=True,
        )
        trainer = BaseTrainer(model, dataset, training_config=config)
        trainer.prepare_training()
        trainer.train_step(0)  # warm-up epoch, not timed
        start = time.perf_counter()
        losses = [trainer.train_step(epoch) for epoch in range(1, epochs + 1)]
        seconds = time.perf_counter() - start
    return {
        "examples_per_s": epochs * len(data) / seconds,
        "seconds": seconds,
        "epochs": epochs,
        "final_train_loss": losses[-1],
    }


def nll(x: np.ndarray, weights: str, k: int, batch_size: int) -> dict:
    torch.manual_seed(0)
    model = build(softplus_std=True)
    load_weights(model, weights)
    model.eval()
    data = torch.from_numpy(x.reshape(-1, 1, 28, 28).astype(np.float32))
    start = time.perf_counter()
    with torch.no_grad():
        value = model.get_nll(data, n_samples=k, batch_size=batch_size)
    return {"nll": float(value), "seconds": time.perf_counter() - start, "k": k, "n": len(data)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("task", choices=["train", "nll"])
    parser.add_argument("--data", required=True, help="binarized_mnist.npz")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weights", help="npz of Linear weights (nll)")
    parser.add_argument("--k", type=int, default=500)
    parser.add_argument("--n", type=int, default=10000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    arrays = np.load(args.data)
    if args.task == "train":
        result = train_throughput(arrays["train"], args.epochs, args.batch_size, args.lr)
    else:
        result = nll(arrays["test"][: args.n], args.weights, args.k, batch_size=100)
    import pythae

    result["pythae"] = getattr(pythae, "__version__", "0.1.2")
    result["torch"] = torch.__version__
    print(json.dumps(result))


if __name__ == "__main__":
    main()
