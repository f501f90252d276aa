"""Training options: one typed dataclass, filled from a YAML or JSON file and overridden on the command line.

A config file is flat, with the command line's option names (dashes or underscores), e.g.::

    model: maskrcnn
    data: data/shapes
    epochs: 12
    attention: spatial          # a model option
    model_options: {iou_loss: lovasz}   # model options may also be grouped

Keys that are not training options are model options; the model's own dataclass checks them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from segcore.errors import SegcoreError
from segcore.options import coerce, shown


@dataclass
class TrainConfig:
    """Everything ``segcore train`` needs.

    Attributes:
        model: a name of :data:`segcore.models.MODELS`; default maskrcnn, or the resumed run's.
        data: dataset folder in COCO layout.
        out: run directory to write.
        model_options: options of the model's own dataclass.
        epochs: passes over the training split; ignored where ``max_iters`` is given.
        max_iters: stop after this many iterations (optimizer steps).
        batch_size: images per step and process.
        optimizer: "sgd" (momentum 0.9) or "adamw".
        lr: peak learning rate, reached after ``warmup_iters`` and then decayed by ``schedule``.
        schedule: "cosine" (to 0 at the last iteration) or "constant".
        weight_decay: L2 penalty (decoupled for AdamW).
        warmup_iters: linear warm-up from lr/1000, as Detectron2's default (at most a tenth of the run).
        grad_clip: clip the gradient norm to this value (0: no clipping).
        seed: seeds the weights, the sampling order and the augmentations.
        device: "cpu", "cuda" or "auto" (cuda when present); AMP is used on cuda.
        amp: mixed precision: float16 on CUDA, bfloat16 on a CPU that computes it natively (AVX512-BF16,
            AMX); float32 where neither applies or when False.
        channels_last: hold weights and activations channels-last (NHWC), the layout oneDNN's and cuDNN's
            fastest convolutions use.
        workers: data-loader processes.
        train_split, val_split: splits of the dataset folder; validation picks the best checkpoint (by
            mask AP for an instance model, mIoU for a semantic one).
        val_every: iterations between validations; default at the end of every epoch. The last iteration
            is always validated.
        val_images: validate on a seeded sample of this many images of the split; default all of them.
        augment: random flips, scale jitter and colour changes while training.
        scale_jitter: with ``augment``, each image is zoomed by a factor drawn from [1 - s, 1 + s]; 0 for none.
        skip_invalid: skip (and count) invalid annotations and images instead of stopping.
        log_every: iterations between rows of history.csv.
        weights: start from these weights (a segcore checkpoint or a torchvision state dict).
        train_only: "mask_head" trains a fresh mask branch alone on the frozen detector of ``weights``
            (see :mod:`segcore.models.mask_branch`); None trains the whole model.
        resume: continue the run in ``out`` from its last.pt.
        name: the run's name; default the name of ``out``.
    """

    model: str | None = None
    data: str = "data/shapes"
    out: str = ""
    model_options: dict[str, Any] = field(default_factory=dict)
    epochs: int = 12
    max_iters: int | None = None
    batch_size: int = 4
    optimizer: str = "sgd"
    lr: float = 0.02
    schedule: str = "cosine"
    weight_decay: float = 1e-4
    warmup_iters: int = 100
    grad_clip: float = 0.0
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    workers: int = 0
    train_split: str = "train"
    val_split: str = "val"
    val_every: int | None = None
    val_images: int | None = None
    augment: bool = True
    scale_jitter: float = 0.25
    skip_invalid: bool = False
    log_every: int = 10
    weights: str | None = None
    train_only: str | None = None
    resume: bool = False
    name: str | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.optimizer in ("sgd", "adamw"), f"optimizer '{self.optimizer}' is not known; choose sgd or adamw"),
            (self.schedule in ("cosine", "constant"),
             f"schedule '{self.schedule}' is not known; choose cosine or constant"),
            (self.device in ("auto", "cpu", "cuda"), f"device '{self.device}' is not known; choose cpu, cuda or auto"),
            (self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}"),
            (self.max_iters is None or self.max_iters >= 1, f"max_iters must be at least 1, got {self.max_iters}"),
            (self.batch_size >= 1, f"batch_size must be at least 1, got {self.batch_size}"),
            (0 < self.lr < math.inf, f"lr must be a positive finite number, got {self.lr}"),
            (self.log_every >= 1, f"log_every must be at least 1, got {self.log_every}"),
            (0 <= self.weight_decay < math.inf, f"weight_decay must be finite and at least 0, got {self.weight_decay}"),
            (self.warmup_iters >= 0, f"warmup_iters must not be negative, got {self.warmup_iters}"),
            (0 <= self.grad_clip < math.inf, f"grad_clip must be a finite number at least 0, got {self.grad_clip}"),
            (self.workers >= 0, f"workers must not be negative, got {self.workers}"),
            (self.train_only in (None, "mask_head"), f"train_only '{self.train_only}' is not known; choose mask_head"),
            (0 <= self.scale_jitter < 1, f"scale_jitter must be at least 0 and below 1, got {self.scale_jitter}"),
            (self.val_every is None or self.val_every >= 1, f"val_every must be at least 1, got {self.val_every}"),
            (self.val_images is None or self.val_images >= 1, f"val_images must be at least 1, got {self.val_images}"),
        ]
        for ok, message in checks:
            if not ok:
                raise SegcoreError(message + ".")

    @property
    def run_name(self) -> str:
        return self.name or Path(self.out).name


TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}
TRAIN_HINTS = typing.get_type_hints(TrainConfig)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The options in a YAML or JSON config file, keys with dashes turned into underscores."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise SegcoreError(f"config file {path} cannot be read ({error.strerror}); check the path.") from None
    try:
        content = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise SegcoreError(f"config file {path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: "
                           f"{str(error).splitlines()[0]}.") from None
    except RecursionError:
        raise SegcoreError(f"config file {path} nests its values too deeply to read; a config file is a flat "
                           f"mapping of option names to values.") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise SegcoreError(f"config file {path} must hold a mapping of option names to values.")
    return {str(k).replace("-", "_"): v for k, v in content.items()}


def stored_training(run_dir: str | Path) -> dict[str, Any]:
    """The training options a run was started with (its run.json), as the first layer of a ``--resume``: the
    run goes on with its own recipe, length and optimizer unless the command line changes them. Empty for a
    folder without a run.json (the resume then says what is missing)."""
    from segcore import runs

    if not (Path(run_dir) / runs.RUN_FILE).is_file():
        return {}
    manifest = runs.read_run(run_dir)
    training = manifest.get("training")
    stored = {k: v for k, v in training.items() if k in TRAIN_FIELDS} if isinstance(training, dict) else {}
    stored.pop("resume", None)
    if isinstance(manifest.get("model"), str):
        stored["model"] = manifest["model"]
    return stored


def make_train_config(*layers: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from layers of options, later layers overriding earlier ones (file, then command line),
    over the training recipe of the model they name (:mod:`segcore.training.recipes`; maskrcnn's when none is named).

    Keys that are not training options are model options, checked later by the model's own dataclass.
    """
    from segcore.training.recipes import recipe

    named = [layer["model"] for layer in layers if isinstance(layer.get("model"), str)]
    base = recipe(named[-1] if named else "maskrcnn")
    chosen = [layer["optimizer"] for layer in layers if "optimizer" in layer]
    if chosen and chosen[-1] != base.get("optimizer"):
        # another optimizer than the recipe's: its learning rate and weight decay are not that optimizer's
        base = {k: v for k, v in base.items() if k not in ("optimizer", "lr", "weight_decay")}
    merged: dict[str, Any] = {}
    model_options: dict[str, Any] = {}
    for layer in (base, *layers):
        for key, value in layer.items():
            if key == "model_options":
                if not isinstance(value or {}, dict):
                    raise SegcoreError(
                        f"option model_options must be a mapping of option names to values, got {shown(value)}.")
                model_options.update({str(k).replace("-", "_"): v for k, v in (value or {}).items()})
            elif key in TRAIN_FIELDS:
                merged[key] = coerce(key, value, TRAIN_HINTS[key])
            else:
                model_options[key] = value
    return TrainConfig(**merged, model_options=model_options)
