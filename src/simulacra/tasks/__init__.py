"""Applications of trained models: reconstruction, interpolation, latent manifolds."""

from simulacra.tasks.interpolate import interpolate, lerp, slerp
from simulacra.tasks.manifold import encode_means, latent_manifold
from simulacra.tasks.reconstruct import reconstruct

__all__ = ["encode_means", "interpolate", "latent_manifold", "lerp", "reconstruct", "slerp"]
