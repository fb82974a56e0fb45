"""pythae's half of benchmarks/pythae_comparison.py; runs in pythae's own virtual environment.

It imports pythae and torch only (never simulacra), builds pythae's VAE on an MLP architecture
(784-h1-h2-L with ``--hidden h1 h2 --latent L``, tanh or ReLU, Bernoulli), and measures one of:

* ``train``: pythae's BaseTrainer (its DataLoader, per-item collation) over whole epochs after an
  untimed warm-up epoch, with ``optimizer_params={"fused": True}`` unless ``--unfused``;
* ``nll``: pythae's ``get_nll`` (importance sampling, image by image) at ``--nll-batch-size``,
  with weights exported by the driver from simulacra, so both libraries score one model.

The timed region reports wall and process CPU seconds. Prints one JSON object on stdout.
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

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def mlp(sizes: list[int], activation: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class Encoder(BaseEncoder):
    """784-h1-h2-(L μ, L σ). ``softplus_std``: σ = softplus(s) + 1e-4 as in simulacra's
    DiagonalGaussian (for scoring shared weights); otherwise pythae's usual log-variance head."""

    def __init__(self, hidden: list[int], latent: int, activation: str, softplus_std: bool) -> None:
        BaseEncoder.__init__(self)
        self.net = mlp([784, *hidden, 2 * latent], activation)
        self.latent, self.softplus_std = latent, softplus_std

    def forward(self, x: torch.Tensor) -> ModelOutput:
        h = self.net(x.reshape(x.shape[0], -1))
        mu, s = h[:, : self.latent], h[:, self.latent :]
        log_var = 2 * torch.log(nn.functional.softplus(s) + 1e-4) if self.softplus_std else s
        return ModelOutput(embedding=mu, log_covariance=log_var)


class Decoder(BaseDecoder):
    """L-h2-h1-784, sigmoid output (pythae's "bce" loss takes probabilities)."""

    def __init__(self, hidden: list[int], latent: int, activation: str) -> None:
        BaseDecoder.__init__(self)
        self.net = mlp([latent, *hidden[::-1], 784], activation)

    def forward(self, z: torch.Tensor) -> ModelOutput:
        return ModelOutput(reconstruction=torch.sigmoid(self.net(z)).reshape(z.shape[0], 1, 28, 28))


def build(args: argparse.Namespace, softplus_std: bool) -> VAE:
    config = VAEConfig(input_dim=(1, 28, 28), latent_dim=args.latent, reconstruction_loss="bce")
    encoder = Encoder(args.hidden, args.latent, args.activation, softplus_std)
    return VAE(config, encoder=encoder, decoder=Decoder(args.hidden, args.latent, args.activation))


def load_weights(model: VAE, path: str) -> None:
    """Weights exported by the driver: enc{i}_w/b and dec{i}_w/b for the three Linear layers."""
    arrays = np.load(path)
    for prefix, seq in (("enc", model.encoder.net), ("dec", model.decoder.net)):
        linears = [m for m in seq if isinstance(m, nn.Linear)]
        for i, layer in enumerate(linears):
            layer.weight.data.copy_(torch.from_numpy(arrays[f"{prefix}{i}_w"]))
            layer.bias.data.copy_(torch.from_numpy(arrays[f"{prefix}{i}_b"]))


def train_throughput(x: np.ndarray, args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    model = build(args, softplus_std=False)
    epochs = args.epochs
    data = torch.from_numpy(x.reshape(-1, 1, 28, 28).astype(np.float32))
    dataset = BaseDataset(data, torch.zeros(len(data)))
    with tempfile.TemporaryDirectory() as out:
        config = BaseTrainerConfig(
            output_dir=out,
            per_device_train_batch_size=args.batch_size,
            num_epochs=epochs,
            learning_rate=args.lr,
            optimizer_cls="Adam",
            optimizer_params=None if args.unfused else {"fused": True},
            no_cuda=True,
        )
        trainer = BaseTrainer(model, dataset, training_config=config)
        trainer.prepare_training()
        trainer.train_step(0)  # warm-up epoch, not timed
        wall, cpu = time.perf_counter(), time.process_time()
        losses = [trainer.train_step(epoch) for epoch in range(1, epochs + 1)]
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "examples_per_s": epochs * len(data) / wall,
        "wall_s": wall,
        "cpu_s": cpu,
        "epochs": epochs,
        "fused_adam": not args.unfused,
        "final_train_loss": losses[-1],
    }


def nll(x: np.ndarray, args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    model = build(args, softplus_std=True)
    load_weights(model, args.weights)
    model.eval()
    data = torch.from_numpy(x.reshape(-1, 1, 28, 28).astype(np.float32))
    wall, cpu = time.perf_counter(), time.process_time()
    with torch.no_grad():
        value = model.get_nll(data, n_samples=args.k, batch_size=args.nll_batch_size)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "nll": float(value),
        "wall_s": wall,
        "cpu_s": cpu,
        "k": args.k,
        "n": len(data),
        "batch_size": args.nll_batch_size,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("task", choices=["train", "nll"])
    parser.add_argument("--data", required=True, help="binarized_mnist.npz")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--hidden", type=int, nargs=2, default=[200, 200])
    parser.add_argument("--latent", type=int, default=50)
    parser.add_argument("--activation", choices=sorted(ACTIVATIONS), default="tanh")
    parser.add_argument("--unfused", action="store_true", help="pythae's default unfused Adam")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights", help="npz of Linear weights (nll)")
    parser.add_argument("--images", help="npy of the (n, 784) test images the driver scores (nll)")
    parser.add_argument("--k", type=int, default=500)
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--nll-batch-size", type=int, default=100, help="get_nll's batch_size")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    arrays = np.load(args.data)
    if args.task == "train":
        result = train_throughput(arrays["train"], args)
    else:
        # the driver's images: simulacra loads the class-sorted test split in a fixed shuffled order
        images = np.load(args.images) if args.images else arrays["test"][: args.n]
        result = nll(images, args)
    import pythae

    result["pythae"] = getattr(pythae, "__version__", "0.1.2")
    result["torch"] = torch.__version__
    print(json.dumps(result))


if __name__ == "__main__":
    main()
