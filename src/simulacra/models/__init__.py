"""Model families composed of the parts below, and the registry of presets (``zoo``)."""

from simulacra.models.autoencoder import Autoencoder
from simulacra.models.base import GenerativeModel, LossOutput
from simulacra.models.vae import VAE
from simulacra.models.zoo import MODELS, build_model

__all__ = ["MODELS", "VAE", "Autoencoder", "GenerativeModel", "LossOutput", "build_model"]
