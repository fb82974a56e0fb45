"""Train a VAE on the bundled digits in a few lines, then sample, score and reconstruct.

python examples/train_vae.py
"""

import torch

from simulacra.config import DataConfig, TrainConfig
from simulacra.data import load_dataset
from simulacra.metrics.likelihood import evaluate_nll
from simulacra.models.zoo import build_model
from simulacra.tasks.reconstruct import reconstruct
from simulacra.train import fit
from simulacra.viz.grids import save_grid

data = load_dataset(DataConfig("digits"))  # 8x8 grey digits, 17 levels, scaled to [0, 1]
torch.manual_seed(0)
model = build_model({"name": "vae", "latent_dim": 8, "hidden": [256, 128]}, data.info)
fit(model, data, TrainConfig(epochs=100, batch_size=128), progress=True)

model.eval()
samples = model.sample(64, generator=torch.Generator().manual_seed(0))  # (64, 1, 8, 8)
save_grid(samples, "vae-samples.png")
x = data.test.x
save_grid(torch.cat([x[:8], reconstruct(model, x[:8])]), "vae-reconstructions.png", nrow=8)
for name, estimate in evaluate_nll(model, x, num_samples=500).items():
    print(f"{name:9s} {estimate}")
