"""Networks: MLP layout and activations, conv encoder/decoder shapes, context embeddings."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from simulacra.errors import DataError, UnknownNameError
from simulacra.nn import MLP, ContextEmbedding, ContextNet, ConvDecoder, ConvEncoder, GatedLinear


@pytest.mark.parametrize("activation", ["relu", "tanh", "elu", "gelu", "silu"])
def test_mlp_layout(activation: str) -> None:
    mlp = MLP(5, [7, 3], 2, activation)
    linears = [m for m in mlp if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(5, 7), (7, 3), (3, 2)]
    assert len(mlp) == 5  # activations after hidden layers only, the output is affine
    assert mlp(torch.randn(4, 5)).shape == (4, 2)


def test_mlp_without_hidden_is_affine() -> None:
    mlp = MLP(3, (), 2)
    x, y = torch.randn(3), torch.randn(3)
    f = mlp(torch.stack([x, y, 0.3 * x + 0.7 * y]))
    torch.testing.assert_close(f[2], 0.3 * f[0] + 0.7 * f[1])


def test_gated_linear_is_value_times_sigmoid_of_gate() -> None:
    torch.manual_seed(0)
    layer = GatedLinear(5, 3)
    x = torch.randn(4, 5)
    w, b = layer.linear.weight, layer.linear.bias
    value = x @ w[:3].T + b[:3]
    gate = x @ w[3:].T + b[3:]
    torch.testing.assert_close(layer(x), value * torch.sigmoid(gate))


def test_gated_mlp_gates_hidden_layers_and_keeps_the_output_affine() -> None:
    mlp = MLP(5, [7, 3], 2, "silu", gated=True)
    assert [type(m) for m in mlp] == [GatedLinear, GatedLinear, nn.Linear]  # the gate is the nonlinearity
    assert mlp[0].linear.out_features == 14 and mlp[2].in_features == 3
    x, y = torch.randn(3, 5), torch.randn(3, 5)
    f = mlp(torch.cat([x, y, 0.3 * x + 0.7 * y]))
    assert not torch.allclose(f[6:], 0.3 * f[:3] + 0.7 * f[3:6], atol=1e-3)  # not affine


def test_unknown_activation_lists_names() -> None:
    with pytest.raises(UnknownNameError, match="relu"):
        MLP(2, [3], 1, "rellu")


@pytest.mark.parametrize(
    "shape", [(1, 8, 8), (1, 28, 28), (3, 7, 9), (2, 5, 5), (1, 1, 1), (1, 16, 12)], ids=str
)
@pytest.mark.parametrize("channels", [(4,), (4, 8), (4, 8, 8)], ids=str)
def test_conv_encoder_decoder_shapes(shape: tuple[int, int, int], channels: tuple[int, ...]) -> None:
    enc = ConvEncoder(shape, 6, channels)
    dec = ConvDecoder(6, (2 * shape[0], *shape[1:]), channels[::-1])
    x = torch.randn(3, *shape)
    h = enc(x)
    assert h.shape == (3, 6)
    assert dec(h).shape == (3, 2 * shape[0], *shape[1:])


def test_context_embedding_one_hot_and_learned() -> None:
    c = torch.tensor([0, 2, 1, 2])
    one_hot = ContextEmbedding(3)(c)
    torch.testing.assert_close(one_hot, torch.eye(3)[c])
    learned = ContextEmbedding(3, dim=5)
    e = learned(c)
    assert e.shape == (4, 5)
    torch.testing.assert_close(e[1], e[3])  # same label, same vector
    with pytest.raises(DataError, match="shape"):
        learned(c[:, None])


def test_context_net_concatenates_features_and_channels() -> None:
    emb = ContextEmbedding(3)
    vec = ContextNet(nn.Identity(), emb)
    out = vec(torch.zeros(2, 1, 2, 2), torch.tensor([1, 2]))
    assert out.shape == (2, 4 + 3)
    torch.testing.assert_close(out[:, 4:], torch.eye(3)[[1, 2]])
    img = ContextNet(nn.Identity(), emb, flatten=False)
    out = img(torch.zeros(2, 1, 2, 2), torch.tensor([1, 2]))
    assert out.shape == (2, 1 + 3, 2, 2)
    assert (out[0, 2] == 1).all() and (out[0, 1] == 0).all()  # label 1 -> channel 1 + 1 constant
    with pytest.raises(DataError, match="context"):
        vec(torch.zeros(2, 4))
