"""Checkpoints: data, never code.

A segcore checkpoint is a dict of tensors and plain data that carries everything needed to rebuild its
model (name, options, class names), so a model can be rebuilt from the file alone. Every file is read
with ``torch.load(weights_only=True)``, which refuses pickled code, and written atomically (a temporary
file renamed over the old one) so that a kill never leaves a broken checkpoint behind.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segcore import atomic
from segcore.errors import CheckpointError

FORMAT = "segcore.checkpoint"
VERSION = 1


def save_atomic(payload: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it over ``path``."""
    with atomic.atomic_open(path, "wb") as file:
        torch.save(payload, file)


def checkpoint(model: nn.Module, *, model_name: str, options: Any, class_names: list[str], **extra: Any) -> dict:
    """The payload of a segcore checkpoint: weights plus what is needed to rebuild the model."""
    module = model.module if hasattr(model, "module") else model  # unwrap DistributedDataParallel
    return {
        "format": FORMAT,
        "version": VERSION,
        "model": model_name,
        "options": dataclasses.asdict(options) if dataclasses.is_dataclass(options) else dict(options),
        "class_names": list(class_names),
        "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
        **extra,
    }


def load_file(path: str | Path) -> dict:
    """Read a checkpoint or state dict with ``weights_only=True``; one clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path.")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch names what it refused: "Unsupported global: GLOBAL torch.nn…Linear" for a class it does not
        # allow, "unsupported GLOBAL posix.mkdir whose module posix is blocked" for a call into a blocked
        # module; garbage bytes fail too ("Unsupported operand 110"), but they are no code
        refused = [line.strip() for line in str(error).splitlines()
                   if "unsupported global" in line.lower() or "unsupported class" in line.lower()]
        if not refused:
            raise CheckpointError(f"{path} is not a PyTorch checkpoint (it does not unpickle); check the file.") from None
        named = re.search(r"GLOBAL ([\w.]+)", refused[0])
        detail = f"it asks for {named.group(1)}" if named else refused[0][:160]
        raise CheckpointError(
            f"{path} holds Python objects beyond tensors and plain data, which could run code when loaded, "
            f"so segcore refuses it ({detail}); use a checkpoint saved by segcore or a plain state dict."
        ) from None
    except Exception as error:  # noqa: BLE001 - torch raises many types for a file that is not its own
        raise CheckpointError(f"{path} is not a PyTorch checkpoint ({type(error).__name__}); check the file.") from None
    if not isinstance(content, dict):
        raise CheckpointError(f"{path} holds a {type(content).__name__}, not a checkpoint or state dict.")
    return content


def is_segcore_checkpoint(content: dict) -> bool:
    """True for a dict written by :func:`checkpoint`."""
    return content.get("format") == FORMAT


def state_dict_of(content: dict, path: str | Path) -> dict[str, torch.Tensor]:
    """The weights inside a segcore checkpoint or a plain (torchvision) state dict."""
    if is_segcore_checkpoint(content):
        return content["state_dict"]
    if content and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in content.items()):
        return content
    raise CheckpointError(
        f"{path} is neither a segcore checkpoint nor a state dict of tensors; pass a file written by "
        f"'segcore train' or a torchvision weights file."
    )


def load_matching(model: nn.Module, weights: dict[str, torch.Tensor], path: str | Path) -> dict[str, list[str]]:
    """Load every tensor that fits the model; the rest of the model keeps its initialisation.

    Used to start from another model's weights (torchvision's COCO file, or a run with other classes or
    a different mask branch): layers that differ, such as new attention or a predictor for other
    classes, start fresh. Names the model does not know are still offered to it, so that torchvision's
    own compatibility hooks can rename legacy keys (``mask_fcn1`` -> ``0.0``).

    Returns:
        {"loaded": model names loaded, "skipped": file names that did not fit, "fresh": model names left as they were}.
    """
    own = model.state_dict()
    offered = {k: v for k, v in weights.items() if k not in own or own[k].shape == v.shape}
    try:
        result = model.load_state_dict(offered, strict=False)
    except RuntimeError as error:  # a legacy key renamed by a module's hook can still differ in shape
        raise CheckpointError(f"{path} does not fit this model: {str(error).splitlines()[-1].strip()}") from None
    missing = set(result.missing_keys)
    loaded = sorted(k for k in own if k not in missing and not k.endswith("num_batches_tracked"))
    if not loaded:
        raise CheckpointError(f"no tensor of {path} fits this model (names or shapes differ); check the model options.")
    return {
        "loaded": loaded,
        "skipped": sorted(set(weights) - set(offered) | set(result.unexpected_keys)),
        "fresh": sorted(k for k in missing if not k.endswith("num_batches_tracked")),
    }


def load_weights(model: nn.Module, content: dict, path: str | Path) -> dict[str, list[str]]:
    """Start ``model`` from ``content``, what :func:`load_file` read from ``path`` (a segcore checkpoint or a
    torchvision state dict); see :func:`load_matching` for what is loaded."""
    return load_matching(model, state_dict_of(content, path), path)
