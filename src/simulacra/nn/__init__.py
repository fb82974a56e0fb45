"""Networks only: MLPs, convolutional encoders/decoders, context embeddings."""

from simulacra.nn.conv import ConvDecoder, ConvEncoder
from simulacra.nn.embeddings import ContextEmbedding, ContextNet
from simulacra.nn.mlp import ACTIVATIONS, MLP, activation

__all__ = ["ACTIVATIONS", "MLP", "ContextEmbedding", "ContextNet", "ConvDecoder", "ConvEncoder", "activation"]
