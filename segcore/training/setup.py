"""What a training builds before its first step: the run claimed, the state to resume, the datasets, the
model with its weights, and the batches; each refused in one sentence when it cannot be.

A run killed before its first checkpoint has nothing to lose and is trained again from the beginning,
with or without ``--resume``; one killed later resumes from last.pt.
"""

from __future__ import annotations

import dataclasses
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from segcore import liveness, runs
from segcore.data import CocoSegmentation, collate, eval_transforms, train_transforms
from segcore.data.layout import annotation_path
from segcore.errors import CheckpointError, SegcoreError
from segcore.models import mask_branch, model_options, model_spec
from segcore.models.maskrcnn import torchvision_options
from segcore.runs import checkpoints
from segcore.training.config import TrainConfig
from segcore.training.distributed import Process

#: The model trained when neither the command line nor a resumed run names one.
DEFAULT_MODEL = "maskrcnn"


def seed_everything(*entropy: int) -> int:
    """Seed Python, NumPy and torch from a tuple such as (seed, epoch, rank); returns the derived seed."""
    seed = int(np.random.SeedSequence(list(entropy)).generate_state(1)[0])
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return seed


def claim(run_dir: Path, config: TrainConfig) -> dict | None:
    """Check that this training may write ``run_dir``: a run being trained by another process, or one with
    weights that would be lost, is refused.

    Returns:
        the manifest of a run that stopped (was killed, failed or was interrupted) before writing its first
        checkpoint, which is trained again from its first iteration, with or without ``--resume``: it
        has nothing to lose. None for a new run directory, or a run resumed from its last.pt.
    """
    if not (run_dir / runs.RUN_FILE).exists():
        return None
    manifest = runs.read_run(run_dir)
    trainer = manifest.get("trainer")
    if manifest.get("status") == "running" and liveness.is_alive(trainer):
        raise SegcoreError(f"{run_dir} is being trained right now ({liveness.describe(trainer)}); wait for it to "
                           f"finish, or choose another --out.")
    if manifest.get("kind", "trained") != "trained":
        raise SegcoreError(f"{run_dir} holds a run of kind {manifest.get('kind')}, not one segcore trains; "
                           f"choose another --out.")
    if config.resume and (run_dir / runs.LAST).exists():
        return None
    has_weights = (run_dir / runs.LAST).exists() or (run_dir / runs.CHECKPOINT).exists()
    if manifest.get("status") != "finished" and not has_weights:
        return manifest
    if config.resume:
        raise SegcoreError(f"cannot resume: {run_dir / runs.LAST} does not exist (the run kept only its best "
                           f"weights, {runs.CHECKPOINT}); train a new run with another --out, from them with "
                           f"--weights if you like.")
    raise SegcoreError(f"{run_dir} already holds a run; pass --resume to continue it, or choose another --out.")


def load_state(run_dir: Path, config: TrainConfig, restarted: dict | None,
               process: Process) -> tuple[dict | None, dict | None]:
    """The run's last.pt when resuming (checked), else the ``--weights`` file: (state, weights), either None."""
    state = weights = None
    if restarted is not None and process.main:
        print(f"{run_dir} stopped before its first checkpoint ({liveness.training_status(restarted)}); training "
              f"it again from the beginning.")
    if config.resume and restarted is None:
        if not (run_dir / runs.LAST).exists():
            raise SegcoreError(f"cannot resume: {run_dir / runs.LAST} does not exist; train without --resume first.")
        state = checkpoints.load_file(run_dir / runs.LAST)
        if not checkpoints.is_segcore_checkpoint(state) or "optimizer" not in state:
            raise CheckpointError(f"{run_dir / runs.LAST} is not a segcore training state; it cannot be resumed.")
        _check_resumable(run_dir, state, config)
    elif config.weights:
        weights = checkpoints.load_file(config.weights)
    if config.train_only is not None:
        _check_train_only(config, state, weights, process)
    return state, weights


def _check_resumable(run_dir: Path, state: dict, config: TrainConfig) -> None:
    """A resume goes on with the optimizer and the trained parts of the run's last.pt, or is refused."""
    groups = (state.get("optimizer") or {}).get("param_groups") or [{}]
    # last.pt files written before the optimizer's name was recorded: AdamW's groups have betas
    optimizer = state.get("optimizer_name") or ("adamw" if "betas" in groups[0] else "sgd")
    if optimizer != config.optimizer:
        raise SegcoreError(f"{run_dir} was trained with {optimizer}; resume it with --optimizer {optimizer}, or train "
                           f"a new run to try {config.optimizer}.")
    trained = state.get("train_only")
    if "train_only" in state and trained != config.train_only:
        what = f"--train-only {trained}" if trained else "without --train-only"
        raise SegcoreError(f"{run_dir} was trained {what}; resume it the same way.")


def _check_train_only(config: TrainConfig, state: dict | None, weights: dict | None, process: Process) -> None:
    """``--train-only mask_head`` needs a trained Mask R-CNN to freeze, and one process."""
    if (config.model or DEFAULT_MODEL) != "maskrcnn" or (state is not None and state["model"] != "maskrcnn"):
        raise SegcoreError("--train-only mask_head trains Mask R-CNN's mask branch; use it with --model maskrcnn.")
    if state is None and (weights is None or not checkpoints.is_segcore_checkpoint(weights)
                          or weights["model"] != "maskrcnn"):
        raise SegcoreError("--train-only mask_head freezes a trained detector: pass --weights RUN/checkpoint.pt of "
                           "a segcore maskrcnn run.")
    if process.distributed:
        raise SegcoreError("--train-only mask_head trains in one process (each step is a fraction of a second); "
                           "run it without torchrun.")


def datasets(config: TrainConfig, process: Process) -> tuple[CocoSegmentation, CocoSegmentation | None]:
    """The training split (augmented) and the validation split, where the dataset has one."""
    jitter = config.scale_jitter
    augment = train_transforms(scale_range=(1 - jitter, 1 + jitter) if jitter > 0 else None)
    # a mask branch trained on cached detector features sees the images as they are
    augmented = config.augment and config.train_only is None
    train_set = CocoSegmentation(config.data, config.train_split, skip_invalid=config.skip_invalid,
                                 transforms=augment if augmented else eval_transforms())
    if len(train_set) == 0:
        raise SegcoreError(f"the {config.train_split} split of {config.data} has no images to train on.")
    val_set = None
    if annotation_path(config.data, config.val_split).exists():
        val_set = CocoSegmentation(config.data, config.val_split, skip_invalid=config.skip_invalid,
                                   transforms=eval_transforms())
        if val_set.category_ids != train_set.category_ids:
            raise SegcoreError(
                f"the categories of {val_set.annotation_file} differ from those of {train_set.annotation_file} "
                f"(ids {val_set.category_ids} against {train_set.category_ids}); give both splits the same list.")
    if process.main:
        for dataset in (train_set, val_set):
            if dataset is not None and dataset.skipped:
                print(f"{dataset.annotation_file}: {dataset.skipped_summary()}")
    return train_set, val_set


def _architecture_of(weights: dict | None, model_name: str) -> dict:
    """Model options implied by a weights file, which the command line's own options override.

    A segcore checkpoint of the same model brings its options; a plain state dict given to maskrcnn is
    torchvision's maskrcnn_resnet50_fpn, so its architecture comes with it and
    ``--weights maskrcnn_resnet50_fpn_coco.pth --attention spatial`` needs nothing more.
    """
    if weights is None:
        return {}
    if checkpoints.is_segcore_checkpoint(weights):
        return dict(weights["options"]) if weights["model"] == model_name else {}
    return dataclasses.asdict(torchvision_options()) if model_name == DEFAULT_MODEL else {}


def model_and_options(config: TrainConfig, state: dict | None, weights: dict | None) -> tuple[str, Any]:
    """The model name and options: a resumed run's own (``state`` is its last.pt, or the run.json of a run
    stopped before its first checkpoint), else the command line's over the weights file's."""
    if state is None:
        name = config.model or DEFAULT_MODEL
        return name, model_options(name, **{**_architecture_of(weights, name), **config.model_options})
    name, stored = state["model"], state["options"]
    if config.model not in (None, name):
        raise SegcoreError(f"{config.out} was trained as {name}; resume it without --model, or with --model {name}.")
    changed = sorted(k for k, v in config.model_options.items() if stored.get(k) != v)
    if changed:
        raise SegcoreError(f"--resume continues {config.out} with its own model options; "
                           f"{', '.join(changed)} cannot change (train a new run to try other options).")
    return name, model_options(name, **stored)


def build_model(config: TrainConfig, model_name: str, options: Any, train_set: CocoSegmentation, *,
                state: dict | None, weights: dict | None, process: Process, device: torch.device) -> torch.nn.Module:
    """The model with the resumed state or the ``--weights`` loaded into it (a frozen detector where
    ``--train-only mask_head``), on ``device``."""
    class_names = train_set.class_names
    model = model_spec(model_name).build(options, num_classes=len(class_names) + 1)
    if state is not None:
        model.load_state_dict(state["state_dict"])
    elif weights is not None:
        report = checkpoints.load_weights(model, weights, config.weights)
        if process.main:
            print(f"loaded {len(report['loaded'])} tensors from {config.weights}; "
                  f"{len(report['fresh'])} start fresh, {len(report['skipped'])} in the file did not fit")
        unfit = [k for k in report["fresh"] if not mask_branch.is_mask_branch(k)]
        if config.train_only is not None and (unfit or weights.get("class_names") != class_names):
            # a frozen detector must be the trained one: frozen random weights would never learn
            why = (f"its classes {weights.get('class_names')} are not {train_set.annotation_file}'s {class_names}"
                   if weights.get("class_names") != class_names else
                   f"{len(unfit)} of the detector's tensors do not fit these model options (e.g. {unfit[0]})")
            raise SegcoreError(f"--train-only mask_head cannot freeze the detector of {config.weights}: {why}; give "
                               f"the weights of a maskrcnn trained on this dataset, with its detector options.")
    if config.train_only is not None:
        if state is None:  # a fresh mask branch, the same for every variant of this seed
            mask_branch.reset_mask_branch(model, config.seed)
        trainable = mask_branch.freeze_detector(model)
        if process.main:
            print(f"training the mask branch alone ({trainable:,} parameters) on the frozen detector")
    # on the device before the optimizer exists, so that its state (loaded or new) lives there too
    return model.to(device, memory_format=torch.channels_last if config.channels_last else torch.preserve_format)


def batches(config: TrainConfig, model: torch.nn.Module, options: Any, train_set: CocoSegmentation,
            device: torch.device, process: Process, progress: bool):
    """What the loader draws from: the training split's images, or, for ``--train-only mask_head``, the
    frozen detector's features, RoIs and mask targets of each image, computed once.

    Returns:
        (dataset, collate function, loader worker processes).
    """
    if config.train_only is None:
        return train_set, collate, config.workers
    bar = tqdm(total=len(train_set), desc="caching the detector's features", leave=False,
               disable=not progress, dynamic_ncols=True)
    cached = mask_branch.DetectorRoIs(model, train_set, device, seed=config.seed, amp=config.amp,
                                      progress=lambda done, total: bar.update(done - bar.n),
                                      key=_detector_key(config, options))
    bar.close()
    if process.main and not cached.cached:
        print(f"the detector's features for {len(train_set)} images would take {cached.estimate / 1e9:.1f} GB, "
              f"more than a quarter of this machine's memory: each step runs the frozen detector instead")
    # the items are in memory, or computed by the model itself: neither is work for loader processes
    return cached, mask_branch.collate_cached, 0


def _detector_key(config: TrainConfig, options: Any) -> tuple | None:
    """What the frozen detector's cached items depend on: its weights file (path, size, time), its options
    apart from the mask branch's, and the training split; None where the weights are not a file."""
    if not config.weights or not Path(config.weights).is_file():
        return None
    weights = Path(config.weights).resolve()
    stat = weights.stat()
    detector = {k: v for k, v in dataclasses.asdict(options).items() if k not in mask_branch.MASK_BRANCH_OPTIONS}
    return (str(weights), stat.st_size, stat.st_mtime_ns, repr(sorted(detector.items())),
            str(Path(config.data).resolve()), config.train_split, config.skip_invalid)


def resume_optimization(state: dict | None, run_dir: Path, selection: str, optimizer, scheduler,
                        scaler) -> tuple[int, float]:
    """Load a resumed run's optimizer, schedule and gradient scaling; returns (iteration, best score so far)."""
    if state is None:
        return 0, -math.inf
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if state["scaler"]:  # empty when the run so far had no gradient scaling (CPU)
        scaler.load_state_dict(state["scaler"])
    chosen_by = state.get("best_metric")
    if chosen_by is None:  # a last.pt from before it was recorded: run.json says which score chose
        recorded = runs.read_run(run_dir).get("best")
        chosen_by = str(recorded.get("metric") or "").removeprefix("val_") if isinstance(recorded, dict) else None
    # a run that chose by another score (before mask AP) starts the choice again
    return state["iteration"], state["best"] if chosen_by == selection else -math.inf
