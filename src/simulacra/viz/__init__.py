"""Pictures: image grids, example plots, training curves, latent scatters, 2-D densities.

matplotlib and Pillow are imported inside the functions that draw, never at import.
"""

from simulacra.viz.grids import make_grid, save_examples, save_grid
from simulacra.viz.plots import plot_density_2d, plot_latent_scatter, plot_metrics

__all__ = [
    "make_grid",
    "plot_density_2d",
    "plot_latent_scatter",
    "plot_metrics",
    "save_examples",
    "save_grid",
]
