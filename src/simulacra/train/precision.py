"""Mixed precision and compilation for the training loop (``train.precision``, ``train.compile``).

* ``precision = "bf16"``: each training step's forward pass and loss run under
  ``torch.autocast(dtype=torch.bfloat16)``; the parameters, their gradients and the optimizer
  state stay float32 (fp32 master weights), and the backward pass follows autocast's casts.
  Only the training step is affected: validation scores, evaluation and every reported
  likelihood run in float32. bf16 needs bf16 matrix instructions (AVX-512 BF16 or AMX on a
  CPU, Ampere or newer on CUDA); without them it would be emulated and slower than float32, so
  the run stays in float32 and says so.
* ``compile``: the training forward pass goes through ``torch.compile`` (``True``: the default
  ``inductor`` backend, or a backend's name). The first steps pay the compilation.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from typing import Any

import torch


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` has bf16 matrix instructions (CUDA: ``torch.cuda.is_bf16_supported``;
    CPU: oneDNN's check for AVX-512 BF16 or AMX)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        return bool(check()) if check is not None else False
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision a run on ``device`` uses: ``precision``, or ``"fp32"`` with a warning that
    says why when bf16 is asked for on a device without bf16 matrix instructions."""
    if precision == "bf16" and not bf16_supported(device):
        warnings.warn(
            f"train.precision = 'bf16' asked for, but this {device.type.upper()} has no bf16 matrix "
            "instructions (AVX-512 BF16 or AMX on a CPU, Ampere or newer on a GPU): training in fp32",
            RuntimeWarning,
            stacklevel=3,
        )
        return "fp32"
    return precision


def autocast_context(precision: str, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    """A factory of the context each training forward pass runs in: bf16 autocast on ``device``
    for ``"bf16"``, nothing for ``"fp32"``."""
    if precision == "bf16":
        return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def compiled(module: torch.nn.Module, setting: bool | str) -> Any:
    """``module`` through ``torch.compile`` (``setting`` True: the inductor backend; a string: that
    backend), or ``module`` itself when ``setting`` is False."""
    if setting is False:
        return module
    return torch.compile(module, backend="inductor" if setting is True else setting)
