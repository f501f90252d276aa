"""The training loop: one loop for every model, on CPU or CUDA (with AMP), alone or under torchrun.

:func:`train` claims the run directory; :func:`_train` states the order of events; what is built before
the first step is in :mod:`segcore.training.setup`, what is written in :mod:`segcore.training.run_writer`,
and the steps themselves are :class:`Trainer`'s. Under ``torchrun --nproc_per_node=N`` the same command
trains with DistributedDataParallel (:mod:`segcore.training.distributed`); only rank 0 validates and writes
the run directory. Its history.csv holds rank 0's losses (the gradients are averaged over all ranks) and the
images/s of all.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from segcore import runs
from segcore.data import CocoSegmentation
from segcore.device import resolve_device
from segcore.errors import SegcoreError, TrainingError
from segcore.models import mask_branch, model_spec
from segcore.precision import autocast, precision_name
from segcore.training import distributed, setup
from segcore.training.config import TrainConfig
from segcore.training.distributed import Process
from segcore.training.run_writer import RunWriter, new_manifest
from segcore.training.schedule import build_optimizer, build_scheduler
from segcore.training.validation import SELECTION_METRIC, validate, validation_indices

__all__ = ["Trainer", "train", "training_targets"]


def train(config: TrainConfig, *, progress: bool = True) -> Path:
    """Train a model on ``config.data`` and write the run directory ``config.out``.

    Returns:
        the run directory.
    """
    if not config.out:
        raise SegcoreError("no run directory given; pass --out RUN_DIR.")
    device = resolve_device(config.device)
    process = distributed.start_process(device)
    lock, existed = None, Path(config.out).exists()
    try:
        lock = distributed.lock(Path(config.out), process)
        return _train(config, device, process, progress)
    finally:
        if lock is not None:  # training ended, one way or another: another may continue the run
            Path(lock.name).unlink(missing_ok=True)
            lock.close()
            if not existed:  # a training refused before it wrote anything leaves no empty folder behind
                with contextlib.suppress(OSError):
                    Path(config.out).rmdir()
        distributed.end_process(process)


def _train(config: TrainConfig, device: torch.device, process: Process, progress: bool) -> Path:
    run_dir = Path(config.out)
    restarted = setup.claim(run_dir, config)  # every rank checks, so that none waits for a rank 0 that refused
    process.barrier()  # and every rank has checked before rank 0 writes itself into run.json as the run's trainer
    state, weights = setup.load_state(run_dir, config, restarted, process)
    setup.seed_everything(config.seed)
    train_set, val_set = setup.datasets(config, process)
    if state is not None and state["class_names"] != train_set.class_names:
        raise SegcoreError(f"the classes of {train_set.annotation_file} differ from those {run_dir} was trained on; "
                           f"resume on the same dataset.")
    # a restarted --resume keeps the model the run was started with, as a resume from last.pt does
    origin = state if state is not None else restarted if config.resume else None
    model_name, options = setup.model_and_options(config, origin, weights)
    model = setup.build_model(config, model_name, options, train_set, state=state, weights=weights, process=process,
                              device=device)
    dataset, collate_batch, workers = setup.batches(config, model, options, train_set, device, process, progress)
    sampler = DistributedSampler(dataset, num_replicas=process.world_size, rank=process.rank, shuffle=True,
                                 seed=config.seed)
    generator = torch.Generator()
    loader = DataLoader(dataset, batch_size=config.batch_size, sampler=sampler, num_workers=workers,
                        collate_fn=collate_batch, generator=generator, pin_memory=device.type == "cuda")
    plan = Plan(len(loader), config.max_iters or config.epochs * len(loader), config.val_every,
                validating=val_set is not None and len(val_set) > 0)
    kind = model_spec(model_name).kind
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, plan.total_iters)
    # float16 needs its gradients scaled; bfloat16 has float32's range and does not
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp and device.type == "cuda")
    iteration, best = setup.resume_optimization(state, run_dir, SELECTION_METRIC[kind], optimizer, scheduler, scaler)
    bare = model
    if process.distributed:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    writer = None
    if process.main:
        manifest = runs.read_run(run_dir) if state is not None else new_manifest(
            config, model_name=model_name, model_kind=kind, options=options, train_set=train_set, val_set=val_set,
            validating=plan.validating, precision=precision_name(device, config.amp), device=device,
            world_size=process.world_size)
        identity = dict(model_name=model_name, options=options, class_names=train_set.class_names,
                        category_ids=train_set.category_ids)
        writer = RunWriter(run_dir, manifest, identity=identity, selection=SELECTION_METRIC[kind], state=state,
                           precision=precision_name(device, config.amp))
    trainer = Trainer(config, device, process, model, bare, loader, sampler, generator, optimizer, scheduler, scaler,
                      plan, val_set, writer, SELECTION_METRIC[kind], iteration, best, progress)
    try:
        while trainer.iteration < plan.total_iters:
            trainer.train_epoch()
    except BaseException as error:
        if writer is not None:
            writer.finish("interrupted" if isinstance(error, KeyboardInterrupt) else "failed")
        raise
    if writer is not None:
        writer.finish("finished")
    process.barrier()
    return run_dir


@dataclasses.dataclass
class Plan:
    """How long a run trains, and when it validates and saves."""

    iterations_per_epoch: int
    total_iters: int
    val_every: int | None  # None: at each epoch's end
    validating: bool

    @property
    def epochs(self) -> int:
        return math.ceil(self.total_iters / self.iterations_per_epoch)

    def checkpoint_due(self, iteration: int) -> bool:
        """Whether the run saves (and, where it validates, validates first) after ``iteration`` steps."""
        return iteration % self.iterations_per_epoch == 0 or iteration == self.total_iters or (
            self.validating and self.val_every is not None and iteration % self.val_every == 0)

    def validation_due(self, iteration: int) -> bool:
        """Whether the run validates after ``iteration`` steps."""
        return self.validating and (
            self.val_every is None and iteration % self.iterations_per_epoch == 0
            or self.val_every is not None and iteration % self.val_every == 0
            or iteration == self.total_iters)


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


@dataclasses.dataclass
class Trainer:
    """The steps of a run: an epoch of steps, one step, a validation and save. ``model`` is what trains (the
    DistributedDataParallel wrapper under torchrun), ``bare`` the model inside it, which is validated and saved.
    """

    config: TrainConfig
    device: torch.device
    process: Process
    model: torch.nn.Module
    bare: torch.nn.Module
    loader: DataLoader
    sampler: DistributedSampler
    generator: torch.Generator
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    plan: Plan
    val_set: CocoSegmentation | None
    writer: RunWriter | None  # rank 0's
    selection: str
    iteration: int
    best: float
    progress: bool

    def __post_init__(self) -> None:
        # the same K images at every validation of the run
        self.val_indices = (validation_indices(len(self.val_set), self.config.val_images, self.config.seed)
                            if self.plan.validating else None)

    def train_epoch(self) -> None:
        """Train from the current iteration to the end of its epoch (or of the run), logging and saving."""
        config, plan, per_epoch = self.config, self.plan, self.plan.iterations_per_epoch
        epoch = self.iteration // per_epoch
        epoch_end = min((epoch + 1) * per_epoch, plan.total_iters)
        self.sampler.set_epoch(epoch)
        self.generator.manual_seed(setup.seed_everything(config.seed, epoch, self.process.rank))
        self.model.train()
        bar = tqdm(total=epoch_end - self.iteration, desc=f"epoch {epoch + 1}/{plan.epochs}", leave=False,
                   disable=not (self.progress and self.process.main), dynamic_ncols=True)
        window = Window()
        # a run resumed mid-epoch skips the batches it already trained on; with the epoch's seeds reset
        # above, the rest come in the same order with the same augmentations
        for images, targets in itertools.islice(self.loader, self.iteration - epoch * per_epoch, None):
            lr, losses = self.step(images, targets, epoch)
            window.add(losses, len(images) * self.process.world_size)
            if self.iteration % config.log_every == 0 or self.iteration == epoch_end:
                # windows tile the epoch, so the time spent logging counts against the next one
                row = {"epoch": epoch + 1, "iteration": self.iteration, "lr": lr, **window.close()}
                if self.writer is not None:
                    self.writer.log(row)
                bar.set_postfix(loss=f"{row['loss']:.3f}", img_s=f"{row['images_per_s']:.1f}")
            bar.update(1)
            if plan.checkpoint_due(self.iteration):
                paused = time.perf_counter()
                if self.process.main:
                    self.validate_and_save(epoch, epoch + 1 if self.iteration == epoch_end else epoch)
                    self.model.train()
                self.process.barrier()
                window.start += time.perf_counter() - paused  # validating and saving is not training
            if self.iteration == epoch_end:
                break
        bar.close()

    def step(self, images, targets, epoch: int) -> tuple[float, dict[str, torch.Tensor]]:
        """One optimizer step; returns the learning rate it used and its losses ("loss" their sum)."""
        with autocast(self.device, self.config.amp):
            if self.config.train_only is not None:  # cached images: features, RoIs and mask targets
                parts = mask_branch.mask_branch_losses(self.bare, images, self.device)
            else:
                images = [image.to(self.device, non_blocking=True) for image in images]
                parts = self.model(images, training_targets(targets, self.device))
        total = sum(parts.values())
        bad = distributed.non_finite({**parts, "loss": total}, self.process)
        if bad:
            kept = Path(self.config.out) / runs.LAST
            where = f"the last good checkpoint is {kept}" if kept.exists() else "no checkpoint was written yet"
            raise TrainingError(
                f"training diverged at epoch {epoch + 1}, iteration {self.iteration + 1}: {', '.join(bad)} is not "
                f"finite; {where}. Lower --lr (or raise --warmup-iters) and start again or --resume.")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if self.config.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        lr = self.optimizer.param_groups[0]["lr"]  # the rate this step used, before the scheduler moves on
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.iteration += 1
        return lr, {"loss": total, **parts}

    def validate_and_save(self, epoch: int, epoch_done: int) -> None:
        """Validate (where due) and save, on rank 0; ``epoch_done`` is the epochs completed (for resuming)."""
        scores = None
        if self.plan.validation_due(self.iteration):
            scores = validate(self.bare, self.val_set, self.val_indices, self.device,
                              batch_size=self.config.batch_size, amp=self.config.amp)
            self.writer.log_validation({
                "epoch": epoch + 1, "iteration": self.iteration, "minutes": round(self.writer.elapsed_s() / 60, 3),
                **{f"val_{k}" if k != "images" else k: v for k, v in scores.items()}})
            if self.progress:
                tqdm.write(f"iteration {self.iteration}/{self.plan.total_iters}: val mask AP {scores['mask_AP']:.3f}, "
                           f"box AP {scores['box_AP']:.3f}, mIoU {scores['mIoU']:.3f} on {scores['images']} images")
        # a tie goes to the later weights: early validations of a detector often all score 0 mask AP
        improved = not self.plan.validating or (scores is not None and scores[self.selection] >= self.best)
        training_state = dict(optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                              scaler=self.scaler.state_dict(), optimizer_name=self.config.optimizer,
                              train_only=self.config.train_only)
        self.best = self.writer.save(self.bare, epoch=epoch_done, iteration=self.iteration, scores=scores,
                                     best=self.best, best_too=improved, training_state=training_state)


class Window:
    """The mean of each loss, and the images/s, over the steps since the last logged row."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.steps = self.images = 0
        self.start = time.perf_counter()

    def add(self, losses: dict[str, torch.Tensor], images: int) -> None:
        self.steps += 1
        self.images += images
        for name, value in losses.items():
            self.sums[name] = self.sums.get(name, 0.0) + value.item()

    def close(self) -> dict[str, float]:
        """The window's means and images/s; the next window starts now."""
        now = time.perf_counter()
        row = {name: total / self.steps for name, total in self.sums.items()}
        row["images_per_s"] = self.images / (now - self.start)
        self.__init__()
        self.start = now
        return row
