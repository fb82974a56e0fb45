"""Networks only: MLPs, convolutional encoders/decoders, context embeddings and standardization."""

from simulacra.nn.conv import ConvDecoder, ConvEncoder
from simulacra.nn.embeddings import ContextEmbedding, ContextNet, Standardization
from simulacra.nn.mlp import ACTIVATIONS, MLP, GatedLinear, activation

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "GatedLinear",
    "ContextEmbedding",
    "ContextNet",
    "ConvDecoder",
    "ConvEncoder",
    "Standardization",
    "activation",
]
