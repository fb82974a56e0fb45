"""Flow recipes: the stacks of layers behind MAF, IAF, RealNVP and NSF on vectors of D features.

Two structures, each a loop over ``transforms`` layers of one elementwise bijection h(·; θ):

* autoregressive (Papamakarios et al. 2017, "Masked autoregressive flow"): z_i = h(x_i; θ_i(x_<i, c))
  with θ computed by one MADE (Germain et al. 2015) per layer, the variable order alternating
  between the identity and its reverse from one layer to the next (as MAF and zuko); one pass
  for log p, D passes to invert; ``inverse=True`` swaps the directions (IAF, Kingma et al. 2016);
* coupling (Dinh et al. 2017, "Density estimation using Real NVP", §3.3): z_B = h(x_B; θ(x_A, c)),
  z_A = x_A, with the halves A, B of an alternating mask swapping roles between layers and θ
  from an MLP; one pass both ways.

The elementwise map makes the flow: affine (MAF, IAF, RealNVP) or a monotonic rational-quadratic
spline (NSF, Durkan et al. 2019). :func:`flow_layers` builds either structure with any map; the
recipes are its configurations, and :data:`FLOW_RECIPES` names them (``maf``, ``realnvp``,
``nsf``, ``nsf-coupling``): the one place where such a name becomes layers, used by the model
presets (:mod:`simulacra.models.zoo`), the VAE's flow prior and IAF posterior, and posterior
estimation (the ``posterior`` preset). Every recipe is called as ``recipe(dim, transforms, hidden,
activation, context_features, **options) -> list[Transform]``, the layers in the normalizing
direction (data -> base); a context of ``context_features`` features reaches every conditioner.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from simulacra.errors import positive_int
from simulacra.flows.autoregressive import MaskedAutoregressive
from simulacra.flows.base import Affine, Elementwise, Inverse, Transform
from simulacra.flows.coupling import Coupling, alternating_mask
from simulacra.flows.permutation import BatchNorm
from simulacra.flows.splines import RationalQuadraticSpline
from simulacra.nn.masked import MADE
from simulacra.nn.mlp import MLP
from simulacra.registry import Registry

FlowRecipe = Callable[..., list[Transform]]

FLOW_RECIPES: Registry[FlowRecipe] = Registry("flow")

# NSF's spline on [−3, 3] (identity beyond): the interval of standardized inputs. Data on a wider
# scale want a wider one (the ``nsf`` model preset uses 5).
STANDARDIZED_SPLINE = partial(RationalQuadraticSpline, bins=8, bound=3.0)


def flow_layers(
    dim: int,
    transforms: int = 5,
    hidden: Sequence[int] = (64, 64),
    activation: str = "relu",
    context_features: int = 0,
    *,
    elementwise: Callable[[], Elementwise] = Affine,
    coupling: bool = False,
    inverse: bool = False,
    batchnorm: bool = False,
) -> list[Transform]:
    """``transforms`` layers z = f(x; c) over D = ``dim`` features, each with a fresh
    elementwise map h = ``elementwise()``:

    * autoregressive (default): z_i = h(x_i; θ_i(x_<i, c)) with θ from a MADE of widths
      ``hidden``, the order alternating between the identity and its reverse;
    * ``coupling``: z_B = h(x_B; θ(x_A, c)), z_A = x_A, with alternating masks and θ from an MLP
      (|A| + C_c → hidden → |B| · params of h).

    ``inverse`` wraps each layer in :class:`Inverse` (the IAF from MAF layers); ``batchnorm``
    puts a :class:`BatchNorm` between consecutive layers.

    Raises:
        ConfigError: ``transforms`` is not a positive integer.
    """
    layers: list[Transform] = []
    for i in range(positive_int(transforms, "transforms")):
        h = elementwise()
        layer: Transform
        if coupling:
            mask = alternating_mask(dim, i % 2)
            n_a, n_b = int(mask.sum()), int((~mask).sum())
            layer = Coupling(mask, MLP(n_a + context_features, hidden, n_b * h.num_params, activation), h)
        else:
            order = range(dim) if i % 2 == 0 else range(dim - 1, -1, -1)
            made = MADE(dim, hidden, h.num_params, context_features, list(order), activation)
            layer = MaskedAutoregressive(made, h)
        layers.append(Inverse(layer) if inverse else layer)
        if batchnorm and i < transforms - 1:
            layers.append(BatchNorm(dim))
    return layers


# The recipes: MAF z_i = x_i·exp(s_i(x_<i, c)) + t_i(x_<i, c) (``inverse=True``: IAF); RealNVP
# z_B = x_B·exp(s(x_A, c)) + t(x_A, c); NSF and its coupling form with STANDARDIZED_SPLINE.
maf_layers: FlowRecipe = partial(flow_layers, elementwise=Affine)
realnvp_layers: FlowRecipe = partial(flow_layers, elementwise=Affine, coupling=True)
nsf_layers: FlowRecipe = partial(flow_layers, elementwise=STANDARDIZED_SPLINE)
nsf_coupling_layers: FlowRecipe = partial(flow_layers, elementwise=STANDARDIZED_SPLINE, coupling=True)

for _name, _recipe, _description in (
    ("maf", maf_layers, "masked autoregressive flow (Papamakarios et al. 2017): affine MADE layers"),
    ("realnvp", realnvp_layers, "RealNVP (Dinh et al. 2017): affine couplings with alternating masks"),
    ("nsf", nsf_layers, "neural spline flow (Durkan et al. 2019): rational-quadratic splines in MADE layers"),
    ("nsf-coupling", nsf_coupling_layers, "neural spline flow (Durkan et al. 2019): spline couplings"),
):
    FLOW_RECIPES.register(_name, _description)(_recipe)
