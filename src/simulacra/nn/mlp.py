"""Multi-layer perceptrons and the activation registry.

An MLP is the composition ``h_{l+1} = φ(W_l h_l + b_l)`` for the hidden layers, with a final affine
map and no activation, so its output can parametrise any distribution head.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from simulacra.errors import ConfigError
from simulacra.registry import Registry

ACTIVATIONS: Registry[Callable[[], nn.Module]] = Registry("activation")
ACTIVATIONS.register("relu", "max(0, x)")(nn.ReLU)
ACTIVATIONS.register("tanh", "tanh(x) (Burda et al. 2016 use it in the IWAE experiments)")(nn.Tanh)
ACTIVATIONS.register("elu", "x if x > 0 else exp(x) - 1")(nn.ELU)
ACTIVATIONS.register("gelu", "x Φ(x)")(nn.GELU)
ACTIVATIONS.register("silu", "x σ(x) (swish)")(nn.SiLU)
ACTIVATIONS.register("leaky-relu", "max(0.2 x, x) (the DCGAN discriminator's)")(lambda: nn.LeakyReLU(0.2))


def activation(name: str) -> nn.Module:
    """A fresh activation module for a registered ``name`` (relu, tanh, elu, gelu, silu, leaky-relu)."""
    return ACTIVATIONS.get(name)()


def check_dropout(p: float) -> float:
    """A dropout probability in [0, 1); else a :class:`ConfigError` naming it."""
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= float(p) < 1:
        raise ConfigError(f"dropout must be a probability in [0, 1); found {p!r}")
    return float(p)


class GatedLinear(nn.Module):
    """h = (W x + b) ⊙ σ(V x + c): a gated dense layer (Dauphin et al. 2017's GLU; the "GatedDense"
    units of Tomczak & Welling 2018's VampPrior models). (B, in_features) -> (B, out_features).

    One linear map to 2 · out_features computes both halves; the first half is the value, the
    second the gate.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(int(in_features), 2 * int(out_features))

    def forward(self, x: Tensor) -> Tensor:
        return F.glu(self.linear(x), dim=-1)


class MLP(nn.Sequential):
    """Fully connected network ``in_features -> hidden[0] -> ... -> out_features``.

    ``y = W_L φ(... φ(W_1 x + b_1) ...) + b_L``: the activation ``φ`` follows every hidden layer, the
    last layer is affine. With ``hidden = ()`` the MLP is a single linear map.

    Args:
        in_features: size of the input, (B, in_features).
        hidden: sizes of the hidden layers (a list from JSON is fine).
        out_features: size of the output, (B, out_features).
        activation: a name in :data:`ACTIVATIONS`.
        dropout: p ∈ [0, 1): dropout after every hidden activation while training (0: none).
        gated: every hidden layer is a :class:`GatedLinear`, h = (W x + b) ⊙ σ(V x + c), with the
            gate as its nonlinearity (no ``activation`` after it); the output layer stays affine.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        activation: str = "relu",
        dropout: float = 0.0,
        gated: bool = False,
    ) -> None:
        act = ACTIVATIONS.get(activation)  # resolve the name once, fail before building layers
        p = check_dropout(dropout)
        sizes = [int(in_features), *(int(h) for h in hidden), int(out_features)]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            hidden_layer = i < len(sizes) - 2
            layers.append(GatedLinear(a, b) if gated and hidden_layer else nn.Linear(a, b))
            if hidden_layer:
                if not gated:
                    layers.append(act())
                if p > 0:
                    layers.append(nn.Dropout(p))
        super().__init__(*layers)
        self.in_features = sizes[0]
        self.out_features = sizes[-1]
