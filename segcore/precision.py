"""Mixed precision: bfloat16 autocast on CPUs that compute it natively, float16 on CUDA, float32 elsewhere.

Under autocast the convolutions and matrix products (nearly all of a step's time) run in the lower
precision. What must stay exact is kept in float32 by the models themselves (:func:`float32_outputs`):
bfloat16 holds 8 bits of mantissa, so a box coordinate of 200 pixels would be rounded to a multiple of 1,
and anchors, box decoding, NMS, the losses, the RLE encoding and the metrics would all inherit the error.
"""

from __future__ import annotations

import contextlib
import functools

import torch
from torch import nn


@functools.cache
def cpu_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), so that autocast pays off.

    Without it oneDNN emulates bfloat16 through float32 and a step gets slower, not faster (oneDNN's own
    "bf16 supported" is true on any AVX-512 CPU, emulation included, so the instructions are asked for).
    """
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def autocast_dtype(device: torch.device | str, enabled: bool = True) -> torch.dtype | None:
    """The autocast dtype used on ``device``: float16 on CUDA, bfloat16 on a CPU that has it, else None."""
    device = torch.device(device)
    if not enabled:
        return None
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and cpu_bfloat16():
        return torch.bfloat16
    return None


def autocast(device: torch.device | str, enabled: bool = True) -> contextlib.AbstractContextManager:
    """``torch.autocast`` with :func:`autocast_dtype`, or nothing where it is None."""
    device = torch.device(device)
    dtype = autocast_dtype(device, enabled)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def precision_name(device: torch.device | str, enabled: bool = True) -> str:
    """"bfloat16", "float16" or "float32": what the convolutions of a model run in, for records."""
    dtype = autocast_dtype(device, enabled)
    return "float32" if dtype is None else str(dtype).removeprefix("torch.")


def _to_float32(value):
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, dict):
        return type(value)((k, _to_float32(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(_to_float32(v) for v in value)
    return value


def float32_outputs(*modules: nn.Module) -> None:
    """Make each module hand float32 tensors to what follows it, whatever precision it computed in.

    A forward hook, not a wrapper module, so that parameter names (and so checkpoints) stay as they are.
    A float32 tensor passes unchanged, so the hooks cost nothing outside autocast.
    """
    for module in modules:
        module.register_forward_hook(lambda _module, _inputs, output: _to_float32(output))
