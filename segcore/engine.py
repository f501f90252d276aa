"""The training loop: one loop for every model, on CPU or CUDA (with AMP), alone or under torchrun.

Under ``torchrun --nproc_per_node=N`` the same command trains with DistributedDataParallel (gloo on CPU,
nccl on CUDA) and a distributed sampler; only rank 0 validates and writes the run directory. Its
history.csv holds rank 0's losses (the gradients are averaged over all ranks) and the images/s of all.

A kill (``kill -9``, a lost machine) loses at most the epoch under way: each epoch ends by saving
checkpoint.pt, last.pt and run.json, each replaced atomically, and ``--resume`` continues from last.pt,
dropping history.csv's rows past it. A run killed before its first checkpoint has nothing to lose and is
trained again from the beginning, with or without ``--resume``. run.json names the process training the
run (host, pid, heartbeat; see :mod:`segcore.liveness`), so that a run left saying "running" by a kill is
told apart from a live one, and a second ``segcore train`` into a live run is refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from segcore import checkpoints, liveness, mask_branch, runs
from segcore.config import TrainConfig
from segcore.data import CocoSegmentation, checksum, collate, eval_transforms, train_transforms
from segcore.device import resolve_device
from segcore.errors import CheckpointError, SegcoreError, TrainingError
from segcore.layout import annotation_path
from segcore.models import model_options, model_spec
from segcore.models.maskrcnn import torchvision_options
from segcore.precision import autocast, precision_name
from segcore.validation import SELECTION_METRIC, validate, validation_indices

#: The model trained when neither the command line nor a resumed run names one.
DEFAULT_MODEL = "maskrcnn"


@dataclasses.dataclass
class Process:
    """This process's place in a (possibly single-process) distributed job."""

    rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        """Whether this process validates and writes the run directory."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether other processes train beside this one."""
        return self.world_size > 1

    def barrier(self) -> None:
        """Wait for every process (nothing to wait for alone)."""
        if self.distributed:
            dist.barrier()


def start_process(device: torch.device) -> Process:
    """Join the torchrun job described by the environment, if there is one."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Process()
    if device.type == "cuda":
        # otherwise every rank's pinned-memory thread and NCCL's first guess land on GPU 0
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                device_id=device if device.type == "cuda" else None)
    return Process(dist.get_rank(), world_size)


def seed_everything(*entropy: int) -> int:
    """Seed Python, NumPy and torch from a tuple such as (seed, epoch, rank); returns the derived seed."""
    seed = int(np.random.SeedSequence(list(entropy)).generate_state(1)[0])
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return seed


def training_targets(targets: list[dict], device: torch.device) -> list[dict]:
    """Targets as the models take them: crowd regions dropped (kept for evaluation, never trained as
    instances), tensors on ``device``. The semantic map keeps the crowd's pixels."""
    out = []
    for target in targets:
        keep = target["iscrowd"] == 0
        out.append({
            "boxes": target["boxes"][keep].to(device).float(),
            "labels": target["labels"][keep].to(device),
            "masks": target["masks"][keep].to(device),
            "semantic": target["semantic"].to(device),
        })
    return out


def learning_rate_factor(iteration: int, *, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of the peak learning rate: linear warm-up from 1/1000, then cosine decay or constant."""
    if iteration < warmup:
        alpha = iteration / warmup
        return 0.001 * (1 - alpha) + alpha
    if schedule == "constant" or total <= warmup:
        return 1.0
    progress = (iteration - warmup) / (total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def build_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum 0.9 or AdamW over the trainable parameters."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(parameters, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)


def _non_finite(losses: dict[str, torch.Tensor], process: Process) -> list[str]:
    """Names of the losses that are not finite, here or (as a placeholder name) on another process.

    Every process must stop together: one that stopped alone would leave the others waiting in the
    gradient all-reduce forever.
    """
    bad = [name for name, value in losses.items() if not torch.isfinite(value).all()]
    if process.distributed:
        flag = torch.tensor([float(len(bad))], device=next(iter(losses.values())).device)
        dist.all_reduce(flag)
        if flag.item() and not bad:
            bad = ["a loss on another process"]
    return bad


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


def _model_and_options(config: TrainConfig, state: dict | None, weights: dict | None) -> tuple[str, Any]:
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


def _claim(run_dir: Path, config: TrainConfig) -> dict | None:
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


def _datasets(config: TrainConfig, process: Process) -> tuple[CocoSegmentation, CocoSegmentation | None]:
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


def train(config: TrainConfig, *, progress: bool = True) -> Path:
    """Train a model on ``config.data`` and write the run directory ``config.out``.

    Returns:
        the run directory.
    """
    if not config.out:
        raise SegcoreError("no run directory given; pass --out RUN_DIR.")
    device = resolve_device(config.device)
    process = start_process(device)
    lock, existed = None, Path(config.out).exists()
    try:
        lock = _lock(Path(config.out), process)
        return _train(config, device, process, progress)
    finally:
        if lock is not None:  # training ended, one way or another: another may continue the run
            Path(lock.name).unlink(missing_ok=True)
            lock.close()
            if not existed:  # a training refused before it wrote anything leaves no empty folder behind
                with contextlib.suppress(OSError):
                    Path(config.out).rmdir()
        if process.distributed and dist.is_initialized():
            dist.destroy_process_group()


def _lock(run_dir: Path, process: Process):
    """Rank 0 takes the run's lock (:func:`segcore.liveness.lock_run`) before anything is read, so that two
    trainings started at once cannot both pass the checks; every rank learns whether it got it."""
    refusal, lock = None, None
    if process.main:
        try:
            lock = liveness.lock_run(run_dir)
        except SegcoreError as error:
            refusal = str(error)
    if process.distributed:
        told = [refusal]
        dist.broadcast_object_list(told, src=0)
        refusal = told[0]
    if refusal is not None:
        raise SegcoreError(refusal)
    return lock


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


def _train(config: TrainConfig, device: torch.device, process: Process, progress: bool) -> Path:
    run_dir = Path(config.out)
    # every rank checks, so that none goes on to wait for a rank 0 that refused
    restarted = _claim(run_dir, config)
    # and every rank has checked before rank 0 writes itself into run.json as the run's trainer
    process.barrier()
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
    seed_everything(config.seed)

    train_set, val_set = _datasets(config, process)
    class_names = train_set.class_names
    if state is not None and state["class_names"] != class_names:
        raise SegcoreError(f"the classes of {train_set.annotation_file} differ from those {run_dir} was trained on; "
                           f"resume on the same dataset.")
    # a restarted --resume keeps the model the run was started with, as a resume from last.pt does
    origin = state if state is not None else restarted if config.resume else None
    model_name, options = _model_and_options(config, origin, weights)
    spec = model_spec(model_name)
    model = spec.build(options, num_classes=len(class_names) + 1)
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
    model.to(device, memory_format=torch.channels_last if config.channels_last else torch.preserve_format)

    batches, collate_batch, workers = train_set, collate, config.workers
    if config.train_only is not None:
        bar = tqdm(total=len(train_set), desc="caching the detector's features", leave=False,
                   disable=not progress, dynamic_ncols=True)
        batches = mask_branch.DetectorRoIs(model, train_set, device, seed=config.seed, amp=config.amp,
                                           progress=lambda done, total: bar.update(done - bar.n),
                                           key=_detector_key(config, options))
        bar.close()
        if process.main and not batches.cached:
            print(f"the detector's features for {len(train_set)} images would take {batches.estimate / 1e9:.1f} GB, "
                  f"more than a quarter of this machine's memory: each step runs the frozen detector instead")
        collate_batch = mask_branch.collate_cached
        # the items are in memory, or computed by the model itself: neither is work for loader processes
        workers = 0
    sampler = DistributedSampler(batches, num_replicas=process.world_size, rank=process.rank, shuffle=True,
                                 seed=config.seed)
    generator = torch.Generator()
    loader = DataLoader(batches, batch_size=config.batch_size, sampler=sampler, num_workers=workers,
                        collate_fn=collate_batch, generator=generator, pin_memory=device.type == "cuda")
    # every rank knows when rank 0 validates, so that all of them meet at the barrier after it
    validating = val_set is not None and len(val_set) > 0
    val_indices = validation_indices(len(val_set), config.val_images, config.seed) if validating else None
    selection = SELECTION_METRIC[spec.kind]
    iterations_per_epoch = len(loader)
    total_iters = config.max_iters or config.epochs * iterations_per_epoch
    epochs = math.ceil(total_iters / iterations_per_epoch)

    optimizer = build_optimizer(model, config)
    # a short run (a test, a smoke check) still reaches its peak learning rate
    warmup = min(config.warmup_iters, total_iters // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: learning_rate_factor(
        i, total=total_iters, warmup=warmup, schedule=config.schedule))
    # float16 needs its gradients scaled; bfloat16 has float32's range and does not
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp and device.type == "cuda")
    iteration, best = 0, -math.inf
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:  # empty when the run so far had no gradient scaling (CPU)
            scaler.load_state_dict(state["scaler"])
        iteration, best = state["iteration"], state["best"]
        chosen_by = state.get("best_metric")
        if chosen_by is None:  # a last.pt from before it was recorded: run.json says which score chose
            recorded = runs.read_run(run_dir).get("best")
            chosen_by = str(recorded.get("metric") or "").removeprefix("val_") if isinstance(recorded, dict) else None
        if chosen_by != selection:  # a run that chose by another score (before mask AP): start the choice again
            best = -math.inf
    if process.distributed:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    bare = model.module if process.distributed else model

    manifest = history = validation = None
    if process.main:
        manifest = runs.read_run(run_dir) if state is not None else {
            "name": config.run_name, "kind": "trained", "model": model_name, "model_kind": spec.kind,
            "options": dataclasses.asdict(options), "class_names": class_names,
            "category_ids": train_set.category_ids,
            "dataset": {"path": str(Path(config.data).resolve()), "name": Path(config.data).resolve().name,
                        "checksum": checksum(config.data), "train_split": config.train_split,
                        "val_split": config.val_split if validating else None,
                        "train_images": len(train_set), "val_images": len(val_set) if val_set else 0,
                        # what --skip-invalid left out: split -> reason -> count
                        "skipped": {d.split: dict(d.skipped) for d in (train_set, val_set) if d is not None}
                        if config.skip_invalid else None},
            "training": {k: v for k, v in dataclasses.asdict(config).items() if k != "model_options"},
            "precision": precision_name(device, config.amp),
            "seed": config.seed, "git_commit": runs.git_commit(), "versions": runs.library_versions(),
            "created": runs.now(), "wall_time_s": 0.0, "device": str(device), "world_size": process.world_size,
            "epochs_done": 0, "iterations_done": 0, "best": None,
        }
        if state is not None:
            manifest.setdefault("resumed", []).append({"at_iteration": iteration, "time": runs.now()})
            # last.pt is saved before run.json: a kill between the two leaves run.json a save behind
            manifest.update(epochs_done=state["epoch"], iterations_done=iteration)
            if "wall_time_s" in state:
                manifest["wall_time_s"] = state["wall_time_s"]
        manifest["status"] = "running"
        manifest["precision"] = precision_name(device, config.amp)  # this sitting's (a resume may move machine)
        # who trains the run, so that a reader can tell a live run from a killed one (which says "running")
        manifest["trainer"] = liveness.holder()
        run_dir.mkdir(parents=True, exist_ok=True)
        runs.write_json(run_dir / runs.RUN_FILE, manifest)
        kept = iteration if state is not None else None
        history = runs.CsvLog(run_dir / runs.HISTORY, keep_until_iteration=kept)
        validation = runs.CsvLog(run_dir / runs.VALIDATION, keep_until_iteration=kept)

    started, wall_time = time.perf_counter(), manifest["wall_time_s"] if manifest else 0.0
    last_written = time.monotonic()

    def elapsed_s() -> float:
        """Seconds this run has trained and validated, over all its sittings."""
        return wall_time + time.perf_counter() - started

    def save(epoch_done: int, scores: dict | None, *, best_too: bool) -> None:
        """last.pt, and checkpoint.pt where ``best_too`` (the scores improved, or the run has no validation)."""
        nonlocal best
        payload = dict(model_name=model_name, options=options, class_names=class_names,
                       category_ids=train_set.category_ids, epoch=epoch_done, iteration=iteration)
        if best_too:
            best = scores[selection] if scores is not None else best
            checkpoints.save_atomic(checkpoints.checkpoint(bare, **payload, metrics=scores), run_dir / runs.CHECKPOINT)
            manifest["best"] = {"metric": f"val_{selection}" if scores else None,
                                "value": best if scores else None, "epoch": epoch_done, "iteration": iteration}
        checkpoints.save_atomic(
            checkpoints.checkpoint(bare, **payload, optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                                   scaler=scaler.state_dict(), best=best, best_metric=selection,
                                   optimizer_name=config.optimizer, train_only=config.train_only,
                                   wall_time_s=round(elapsed_s(), 1)),
            run_dir / runs.LAST,
        )

    def write_manifest() -> None:
        nonlocal last_written
        liveness.beat(manifest["trainer"])
        runs.write_json(run_dir / runs.RUN_FILE, manifest)
        last_written = time.monotonic()

    def validate_and_save(epoch: int, epoch_done: int) -> None:
        """Validate (where due) and save, on rank 0; ``epoch_done`` is the epochs completed (for resuming)."""
        due = validating and (
            config.val_every is None and iteration % iterations_per_epoch == 0
            or config.val_every is not None and iteration % config.val_every == 0
            or iteration == total_iters)
        scores = None
        if due:
            scores = validate(bare, val_set, val_indices, device, batch_size=config.batch_size, amp=config.amp)
            validation.append({"epoch": epoch + 1, "iteration": iteration, "minutes": round(elapsed_s() / 60, 3),
                               **{f"val_{k}" if k != "images" else k: v for k, v in scores.items()}})
            if progress:
                tqdm.write(f"iteration {iteration}/{total_iters}: val mask AP {scores['mask_AP']:.3f}, "
                           f"box AP {scores['box_AP']:.3f}, mIoU {scores['mIoU']:.3f} on {scores['images']} images")
        # a tie goes to the later weights: early validations of a detector often all score 0 mask AP
        save(epoch_done, scores, best_too=not validating or (scores is not None and scores[selection] >= best))
        manifest.update(epochs_done=epoch_done, iterations_done=iteration, wall_time_s=round(elapsed_s(), 1))
        write_manifest()

    def checkpoint_due() -> bool:
        return iteration % iterations_per_epoch == 0 or iteration == total_iters or (
            validating and config.val_every is not None and iteration % config.val_every == 0)

    try:
        while iteration < total_iters:
            epoch = iteration // iterations_per_epoch
            epoch_end = min((epoch + 1) * iterations_per_epoch, total_iters)
            sampler.set_epoch(epoch)
            generator.manual_seed(seed_everything(config.seed, epoch, process.rank))
            model.train()
            bar = tqdm(total=epoch_end - iteration, desc=f"epoch {epoch + 1}/{epochs}", leave=False,
                       disable=not (progress and process.main), dynamic_ncols=True)
            window: dict[str, float] = {}
            window_steps = window_images = 0
            window_start = time.perf_counter()
            # a run resumed mid-epoch skips the batches it already trained on; with the epoch's seeds
            # reset above, the rest come in the same order with the same augmentations
            for images, targets in itertools.islice(loader, iteration - epoch * iterations_per_epoch, None):
                with autocast(device, config.amp):
                    if config.train_only is not None:  # cached images: features, RoIs and mask targets
                        losses = mask_branch.mask_branch_losses(bare, images, device)
                    else:
                        images = [image.to(device, non_blocking=True) for image in images]
                        losses = model(images, training_targets(targets, device))
                loss = sum(losses.values())
                bad = _non_finite({**losses, "loss": loss}, process)
                if bad:
                    kept = run_dir / runs.LAST
                    where = f"the last good checkpoint is {kept}" if kept.exists() else "no checkpoint was written yet"
                    raise TrainingError(
                        f"training diverged at epoch {epoch + 1}, iteration {iteration + 1}: {', '.join(bad)} is not "
                        f"finite; {where}. Lower --lr (or raise --warmup-iters) and start again or --resume.")
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if config.grad_clip > 0:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                lr = optimizer.param_groups[0]["lr"]  # the rate this step used, before the scheduler moves on
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                iteration += 1

                window_steps += 1
                window_images += len(images) * process.world_size
                for name, value in {"loss": loss, **losses}.items():
                    window[name] = window.get(name, 0.0) + value.item()
                if iteration % config.log_every == 0 or iteration == epoch_end:
                    # windows tile the epoch, so the time spent logging counts against the next one
                    now = time.perf_counter()
                    row = {"epoch": epoch + 1, "iteration": iteration, "lr": lr,
                           **{name: total / window_steps for name, total in window.items()},
                           "images_per_s": window_images / (now - window_start)}
                    if history is not None:
                        history.append(row)
                        if time.monotonic() - last_written > liveness.HEARTBEAT_S:
                            write_manifest()
                    bar.set_postfix(loss=f"{row['loss']:.3f}", img_s=f"{row['images_per_s']:.1f}")
                    window, window_steps, window_images, window_start = {}, 0, 0, now
                bar.update(1)
                if checkpoint_due():
                    paused = time.perf_counter()
                    if process.main:
                        validate_and_save(epoch, epoch + 1 if iteration == epoch_end else epoch)
                        model.train()
                    process.barrier()
                    # validating and saving is not training: the window's images/s leaves it out
                    window_start += time.perf_counter() - paused
                if iteration == epoch_end:
                    break
            bar.close()
    except BaseException as error:
        if manifest is not None:
            manifest["status"] = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
            write_manifest()
        raise
    if manifest is not None:
        manifest["status"] = "finished"
        write_manifest()
    process.barrier()
    return run_dir
