"""User-facing errors.

Every error a user can act on (a bad shape, NaNs in the data, an unknown name, a corrupt
checkpoint) is a :class:`SimulacraError`. The CLI prints its message as one line and exits
with status 2, without a traceback; library users catch it like any other exception.
"""

from __future__ import annotations


class SimulacraError(Exception):
    """Base class of every error whose message tells the user what to fix."""


class UnknownNameError(SimulacraError, KeyError):
    """A name (model, dataset, sampler, ...) that no registry knows."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConfigError(SimulacraError, ValueError):
    """A configuration file or override that cannot be read or applied."""


class DataError(SimulacraError, ValueError):
    """Data with the wrong shape or dtype, non-finite values, or values outside the support."""


class CheckpointError(SimulacraError):
    """A run directory or checkpoint that is missing, incomplete or corrupt."""


class CapabilityError(SimulacraError, TypeError):
    """A model asked for something it cannot do (e.g. a likelihood from a GAN)."""


class TrainingError(SimulacraError):
    """Training that cannot go on, e.g. a loss that became NaN or infinite (diverged)."""


class SamplingError(SimulacraError):
    """A sampler that could not produce its draws, e.g. rejection sampling that accepts almost nothing."""


def positive_int(value: object, name: str) -> int:
    """``value`` itself when it is an integer ≥ 1 (a bool is not), else a :class:`ConfigError`
    saying that ``name`` must be a positive integer and what was found."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer; found {value!r}")
    return value


SEED_LIMIT = 2**63
"""Seeds are integers in [0, 2^63): torch's generators take no more (a run derives further seeds)."""


def is_seed(value: object) -> bool:
    """Whether ``value`` is an integer seed in [0, :data:`SEED_LIMIT`) (a bool is not)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < SEED_LIMIT
