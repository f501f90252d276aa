"""Choosing the device: CPU first, CUDA when present, the same code on both."""

from __future__ import annotations

import os

import torch

from segcore.errors import SegcoreError


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when present; under torchrun each process takes the GPU of its local rank.

    Args:
        name: "auto", "cpu" or "cuda".
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise SegcoreError("--device cuda was asked for, but PyTorch sees no CUDA device; use --device cpu.")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if name != "cpu":
        raise SegcoreError(f"device '{name}' is not known; choose cpu, cuda or auto.")
    return torch.device("cpu")
