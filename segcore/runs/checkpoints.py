"""Checkpoints: data, never code.

A segcore checkpoint is a dict of tensors and plain data that carries everything needed to rebuild its
model (name, options, class names), so a model can be rebuilt from the file alone. Every file is read
with ``torch.load(weights_only=True)``, which refuses pickled code, and written atomically (a temporary
file renamed over the old one) so that a kill never leaves a broken checkpoint behind.

A checkpoint may hold only the tensors that differ from another one, its **base** (``"base_weights"``: the
base's path relative to the checkpoint's folder and its sha256): the zoo's mask-branch variants store their
mask branch alone and name the shared detector's checkpoint, so 18 variants cost 18 mask branches, not 18
detectors. :func:`load_file` completes such a checkpoint from its base, so every reader sees whole weights.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import pickle
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segcore import atomic
from segcore.errors import CheckpointError

FORMAT = "segcore.checkpoint"
VERSION = 1
#: the key of a checkpoint that stores only what differs from its base checkpoint
BASE = "base_weights"
#: the key of a checkpoint whose large weights are stored as int8 (:func:`quantized`), and the number of values
#: from which a weight is stored so (smaller ones, biases and norms, stay float16)
INT8, INT8_MIN_SIZE = "int8_scales", 4096


#: Free bytes below which a failed checkpoint write is put down to a full disk.
FULL_DISK_BYTES = 64 * 2 ** 20


def save_atomic(payload: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it over ``path``.

    Raises:
        OSError: ENOSPC naming ``path`` where the write failed on a full disk (torch's zip writer reports
            that as "unexpected pos …", which names neither the file nor the cause).
    """
    try:
        with atomic.atomic_open(path, "wb") as file:
            torch.save(payload, file)
    except RuntimeError:
        if shutil.disk_usage(Path(path).parent).free >= FULL_DISK_BYTES:
            raise
        raise OSError(errno.ENOSPC, "no space left on the disk to save the checkpoint", str(path)) from None


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
            raise CheckpointError(
                f"{path} is not a PyTorch checkpoint (it does not unpickle); check the file.") from None
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
    if is_segcore_checkpoint(content) and INT8 in content:
        content = _dequantized(content, path)
    if is_segcore_checkpoint(content) and BASE in content:
        content = _completed(content, path)
    if is_segcore_checkpoint(content):
        problem = shape_problem(content)
        if problem:
            raise CheckpointError(f"{path} is a segcore checkpoint whose {problem}; use the checkpoint.pt that "
                                  f"segcore train wrote, or train again.")
    return content


#: The largest category id that evaluation holds (a signed 64-bit integer).
MAX_ID = 2 ** 63 - 1


def shape_problem(content: dict) -> str | None:
    """What is wrong inside a segcore checkpoint (types, lengths, ids), as the end of a sentence; None for a
    checkpoint of the shape :func:`checkpoint` writes."""
    def is_int(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    names, ids, state = content.get("class_names"), content.get("category_ids"), content.get("state_dict")
    if not isinstance(content.get("model"), str):
        return f"\"model\" is {type(content.get('model')).__name__}, not a model's name"
    if not isinstance(content.get("options"), dict) or not all(isinstance(k, str) for k in content["options"]):
        return "\"options\" is not a mapping of option names to values"
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        return "\"class_names\" is not a list of class names"
    if not (isinstance(state, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                            for k, v in state.items())):
        return "\"state_dict\" is not a mapping of parameter names to tensors"
    if ids is not None:
        if not (isinstance(ids, list) and all(is_int(i) and 0 <= i <= MAX_ID for i in ids)):
            return "\"category_ids\" is not a list of category ids (whole numbers from 0 to 2**63 - 1)"
        if len(ids) != len(names) or len(set(ids)) != len(ids):
            return (f"\"category_ids\" holds {len(ids)} ids ({len(set(ids))} different) for {len(names)} class "
                    f"names; each class needs its own id")
    return None


def quantized(content: dict) -> dict:
    """``content`` with each weight of at least :data:`INT8_MIN_SIZE` values (the convolutions and linear
    layers: 99.6% of a Mask R-CNN's) stored as int8, symmetric per output channel (scale = max |w| / 127,
    kept in float32 under "int8_scales"), and the other floating tensors in float16: a quarter of float32's
    size, for a change of mask AP measured at 0.002 (README). :func:`load_file` turns them back to floats."""
    state, scales = {}, {}
    for name, value in content["state_dict"].items():
        if value.is_floating_point() and value.ndim >= 2 and value.numel() >= INT8_MIN_SIZE:
            rows = value.float().reshape(value.shape[0], -1)
            scale = rows.abs().amax(dim=1).clamp_min(1e-12) / 127
            state[name] = torch.round(rows / scale[:, None]).clamp(-127, 127).to(torch.int8).reshape(value.shape)
            scales[name] = scale
        else:
            state[name] = value.half() if value.is_floating_point() else value
    return {**content, "state_dict": state, INT8: scales}


def _dequantized(content: dict, path: Path) -> dict:
    """The int8 weights of :func:`quantized` back as float32."""
    state, scales = content.get("state_dict"), content[INT8]
    if not (isinstance(state, dict) and isinstance(scales, dict) and all(
            isinstance(state.get(k), torch.Tensor) and state[k].dtype == torch.int8 and isinstance(v, torch.Tensor)
            and v.ndim == 1 and state[k].ndim >= 1 and len(v) == state[k].shape[0] for k, v in scales.items())):
        raise CheckpointError(f"{path} holds int8 weights whose scales do not fit them; use a checkpoint written by "
                              f"segcore.")
    whole = dict(state)
    for name, scale in scales.items():
        shape = (-1,) + (1,) * (state[name].ndim - 1)
        whole[name] = state[name].float() * scale.float().reshape(shape)
    return {**{k: v for k, v in content.items() if k != INT8}, "state_dict": whole}


def file_sha256(path: str | Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def with_base(content: dict, path: str | Path, base: str | Path) -> dict:
    """``content`` (a whole segcore checkpoint to be written at ``path``) reduced to the tensors that differ
    from the checkpoint file ``base``, which it then names: :func:`load_file` puts the two back together."""
    path, base = Path(path), Path(base)
    shared = state_dict_of(load_file(base), base)
    own = {k: v for k, v in content["state_dict"].items() if not _same(shared.get(k), v)}
    relative = Path(os.path.relpath(base.resolve(), path.resolve().parent)).as_posix()
    return {**content, "state_dict": own, BASE: {"path": relative, "sha256": file_sha256(base)}}


def _same(shared: torch.Tensor | None, own: torch.Tensor) -> bool:
    """Equal values (floating ones compared in float32: a base stored in float16 still matches its copy)."""
    if shared is None or shared.shape != own.shape or shared.is_floating_point() != own.is_floating_point():
        return False
    return torch.equal(shared.float(), own.float()) if own.is_floating_point() else torch.equal(shared, own)


def _completed(content: dict, path: Path) -> dict:
    """A checkpoint that names a base, with the base's tensors filled in under its own."""
    base = content[BASE]
    if not (isinstance(base, dict) and isinstance(base.get("path"), str) and isinstance(base.get("sha256"), str)
            and not Path(base["path"]).is_absolute()):
        raise CheckpointError(f"{path} names its base weights in a form segcore does not know ({BASE} must hold a "
                              f"relative path and a sha256); use a checkpoint written by segcore.")
    base_path = path.parent / base["path"]
    if not base_path.is_file():
        raise CheckpointError(f"{path} holds only its own tensors and needs the checkpoint it was trained on, "
                              f"{base_path}, which does not exist; keep the two run folders side by side.")
    if file_sha256(base_path) != base["sha256"]:
        raise CheckpointError(f"{base_path} is not the checkpoint {path} was trained on (its sha256 differs); "
                              f"restore that file, or train {path.parent} again.")
    shared = torch.load(base_path, map_location="cpu", weights_only=True)
    if not (isinstance(shared, dict) and is_segcore_checkpoint(shared) and BASE not in shared
            and isinstance(shared.get("state_dict"), dict) and isinstance(content.get("state_dict"), dict)):
        raise CheckpointError(f"{base_path}, the base of {path}, is not a whole segcore checkpoint; restore it.")
    if INT8 in shared:
        shared = _dequantized(shared, base_path)
    return {**content, "state_dict": {**shared["state_dict"], **content["state_dict"]}}


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
