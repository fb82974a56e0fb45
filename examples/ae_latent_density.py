"""Why an auto-encoder needs a good post-hoc latent density to be a generative model.

An auto-encoder has no prior. To sample from it we fit a density to the codes of the training
set and decode draws from it (Ghosh et al. 2020). A diagonal Gaussian puts mass between the
clusters of codes, where the decoder has never been trained, so its samples are blurry hybrids;
a Gaussian mixture follows the clusters. This script trains one AE on the bundled digits, fits
both densities to the same codes and compares them: the codes' held-out log-likelihood under
each density, and the MMD between decoded samples and the test images (lower is better).

    python examples/ae_latent_density.py     # writes ae-gaussian.png and ae-gmm.png
"""

import torch

from simulacra.config import DataConfig, TrainConfig
from simulacra.data import load_dataset
from simulacra.metrics.two_sample import mmd
from simulacra.models.zoo import build_model
from simulacra.tasks.manifold import encode_means
from simulacra.train import fit
from simulacra.viz.grids import save_grid

data = load_dataset(DataConfig("digits"))
torch.manual_seed(0)
spec = {"name": "ae", "latent_dim": 8, "hidden": [256, 128], "latent_density": "gmm", "num_components": 10}
model = build_model(spec, data.info)
fit(
    model, data, TrainConfig(epochs=150, batch_size=128, eval_every=0), progress=True
)  # 150 epochs, no early stop
model.eval()

z_train = encode_means(model, data.train.x)
z_test = encode_means(model, data.test.x)
gaussian = build_model({**spec, "latent_density": "gaussian"}, data.info)
gaussian.load_state_dict(model.state_dict(), strict=False)  # the same encoder and decoder
gaussian.eval()
model.fit_latent_density(z_train)
gaussian.fit_latent_density(z_train)

for name, m in (("gaussian", gaussian), ("gmm", model)):
    codes = m.prior(n=1).log_prob(z_test.unsqueeze(1)).mean()  # held-out codes, nats
    x = m.sample(len(data.test), generator=torch.Generator().manual_seed(0))
    print(f"{name:8s}  log p(z_test) = {codes:7.2f} nats   MMD²(samples, test) = {mmd(x, data.test.x):.4f}")
    save_grid(x[:64], f"ae-{name}.png")
