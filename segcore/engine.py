"""The training loop: one loop for every model, on CPU or CUDA (with AMP), alone or under torchrun.

Under ``torchrun --nproc_per_node=N`` the same command trains with DistributedDataParallel (gloo on CPU,
nccl on CUDA) and a distributed sampler; only rank 0 validates and writes the run directory.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from segcore import checkpoints, runs
from segcore.config import TrainConfig
from segcore.data import CocoSegmentation, checksum, collate, eval_transforms, train_transforms
from segcore.errors import SegcoreError, TrainingError
from segcore.metrics.semantic import confusion_matrix, semantic_scores
from segcore.models import model_options, model_spec
from segcore.models.maskrcnn import torchvision_options
from segcore.models.prediction import predict

#: The validation metric that picks checkpoint.pt (higher is better).
SELECTION_METRIC = "mIoU"


@dataclasses.dataclass
class Process:
    """This process's place in a (possibly single-process) distributed job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def start_process(device: torch.device) -> Process:
    """Join the torchrun job described by the environment, if there is one."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Process()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Process(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when present; under torchrun each process takes the GPU of its local rank."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise SegcoreError("--device cuda was asked for, but PyTorch sees no CUDA device; use --device cpu.")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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
    parameters = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(parameters, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)


@torch.no_grad()
def validate(model: torch.nn.Module, loader: DataLoader, device: torch.device, class_names: list[str]) -> dict:
    """Semantic scores of the model's predictions (painted instances or label maps) over a split."""
    num_classes = len(class_names) + 1
    matrix = torch.zeros((num_classes, num_classes), dtype=torch.int64)
    for images, targets in loader:
        predictions = predict(model, [image.to(device) for image in images])
        for prediction, target in zip(predictions, targets):
            matrix += confusion_matrix(prediction.semantic.cpu(), target["semantic"], num_classes)
    return semantic_scores(matrix, ["background", *class_names])


def _finite_or_stop(losses: dict[str, torch.Tensor], epoch: int, iteration: int, run_dir: Path) -> None:
    bad = [name for name, value in losses.items() if not torch.isfinite(value).all()]
    if bad:
        kept = run_dir / runs.LAST
        where = f"the last good checkpoint is {kept}" if kept.exists() else "no checkpoint was written yet"
        raise TrainingError(
            f"training diverged at epoch {epoch + 1}, iteration {iteration + 1}: {', '.join(bad)} is not finite; "
            f"{where}. Lower --lr (or raise --warmup-iters) and start again or --resume."
        )


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
    return dataclasses.asdict(torchvision_options()) if model_name == "maskrcnn" else {}


def train(config: TrainConfig, *, progress: bool = True) -> Path:
    """Train ``config.model`` on ``config.data`` and write the run directory ``config.out``.

    Returns:
        the run directory.
    """
    device = resolve_device(config.device)
    process = start_process(device)
    run_dir = Path(config.out)
    if not config.out:
        raise SegcoreError("no run directory given; pass --out RUN_DIR.")
    if process.main and not config.resume and (run_dir / runs.RUN_FILE).exists():
        raise SegcoreError(f"{run_dir} already holds a run; pass --resume to continue it, or choose another --out.")
    if config.resume and not (run_dir / runs.LAST).exists():
        raise SegcoreError(f"cannot resume: {run_dir / runs.LAST} does not exist; train without --resume first.")
    seed_everything(config.seed + process.rank)

    train_set = CocoSegmentation(config.data, config.train_split, skip_invalid=config.skip_invalid,
                                 transforms=train_transforms() if config.augment else eval_transforms())
    val_set = None
    if (Path(config.data) / "annotations" / f"instances_{config.val_split}.json").exists():
        val_set = CocoSegmentation(config.data, config.val_split, skip_invalid=config.skip_invalid,
                                   transforms=eval_transforms())
    class_names = train_set.class_names
    if process.main:
        for dataset in (train_set, val_set):
            if dataset is not None and dataset.skipped:
                print(f"{dataset.annotation_file}: {dataset.skipped_summary()}")
    if len(train_set) == 0:
        raise SegcoreError(f"the {config.train_split} split of {config.data} has no images to train on.")

    spec = model_spec(config.model)
    weights = checkpoints.load_file(config.weights) if config.weights and not config.resume else None
    options = model_options(config.model, **{**_architecture_of(weights, config.model), **config.model_options})
    model = spec.build(options, num_classes=len(class_names) + 1)

    sampler = DistributedSampler(train_set, num_replicas=process.world_size, rank=process.rank, shuffle=True,
                                 seed=config.seed)
    generator = torch.Generator()
    loader = DataLoader(train_set, batch_size=config.batch_size, sampler=sampler, num_workers=config.workers,
                        collate_fn=collate, generator=generator, persistent_workers=False,
                        pin_memory=device.type == "cuda")
    val_loader = None
    if val_set is not None and len(val_set):
        val_loader = DataLoader(val_set, batch_size=config.batch_size, shuffle=False, num_workers=config.workers,
                                collate_fn=collate)
    iterations_per_epoch = len(loader)
    total_iters = config.max_iters or config.epochs * iterations_per_epoch
    epochs = math.ceil(total_iters / iterations_per_epoch)

    optimizer = build_optimizer(model, config)
    # a short run (a test, a smoke check) still reaches its peak learning rate
    warmup = min(config.warmup_iters, total_iters // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: learning_rate_factor(
        i, total=total_iters, warmup=warmup, schedule=config.schedule))
    use_amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    start_epoch, iteration, best, wall_time = 0, 0, -math.inf, 0.0
    manifest = None
    if config.resume:
        state = checkpoints.load_file(run_dir / runs.LAST)
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, iteration, best = state["epoch"], state["iteration"], state["best"]
        manifest = runs.read_run(run_dir) if process.main else None
        wall_time = manifest["wall_time_s"] if manifest else 0.0
    elif weights is not None:
        report = checkpoints.load_weights(model, weights, config.weights)
        if process.main:
            print(f"loaded {len(report['loaded'])} tensors from {config.weights}; "
                  f"{len(report['fresh'])} start fresh, {len(report['skipped'])} in the file did not fit")

    model.to(device)
    if process.distributed:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    bare = model.module if process.distributed else model

    history = validation = None
    if process.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if manifest is None:
            manifest = {
                "name": config.run_name, "kind": "trained", "model": config.model,
                "model_kind": spec.kind, "options": dataclasses.asdict(options), "class_names": class_names,
                "category_ids": train_set.category_ids,
                "dataset": {"path": str(Path(config.data).resolve()), "name": Path(config.data).resolve().name,
                            "checksum": checksum(config.data), "train_split": config.train_split,
                            "val_split": config.val_split if val_loader else None,
                            "train_images": len(train_set), "val_images": len(val_set) if val_set else 0},
                "training": {k: v for k, v in dataclasses.asdict(config).items() if k != "model_options"},
                "seed": config.seed, "git_commit": runs.git_commit(), "versions": runs.library_versions(),
                "created": runs.now(), "wall_time_s": 0.0, "device": str(device), "world_size": process.world_size,
                "status": "running", "epochs_done": 0, "iterations_done": 0, "best": None,
            }
        manifest["status"] = "running"
        runs.write_json(run_dir / runs.RUN_FILE, manifest)
        kept = iteration if config.resume else None
        history = runs.CsvLog(run_dir / runs.HISTORY, keep_until_iteration=kept)
        validation = runs.CsvLog(run_dir / runs.VALIDATION, keep_until_iteration=kept)

    def save(epoch_done: int, scores: dict | None) -> None:
        nonlocal best
        payload = dict(model_name=config.model, options=options, class_names=class_names,
                       category_ids=train_set.category_ids, epoch=epoch_done, iteration=iteration)
        # without a validation split the latest weights are the best we know of
        if scores is None or scores[SELECTION_METRIC] > best:
            best = scores[SELECTION_METRIC] if scores is not None else best
            checkpoints.save_atomic(checkpoints.checkpoint(bare, **payload, metrics=scores), run_dir / runs.CHECKPOINT)
            manifest["best"] = {"metric": f"val_{SELECTION_METRIC}" if scores else None,
                                "value": best if scores else None, "epoch": epoch_done, "iteration": iteration}
        checkpoints.save_atomic(
            checkpoints.checkpoint(bare, **payload, optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                                   scaler=scaler.state_dict(), best=best),
            run_dir / runs.LAST,
        )

    started = time.perf_counter()
    for epoch in range(start_epoch, epochs):
        if iteration >= total_iters:
            break
        sampler.set_epoch(epoch)
        generator.manual_seed(config.seed * 10_000 + epoch)  # augmentations reproduce on --resume
        model.train()
        bar = tqdm(total=min(iterations_per_epoch, total_iters - iteration), desc=f"epoch {epoch + 1}/{epochs}",
                   disable=not (progress and process.main), dynamic_ncols=True, leave=False)
        window_losses: dict[str, float] = {}
        window_steps, window_images, window_start = 0, 0, time.perf_counter()
        for images, targets in loader:
            images = [image.to(device, non_blocking=True) for image in images]
            with torch.autocast(device.type, enabled=use_amp):
                losses = model(images, training_targets(targets, device))
            loss = sum(losses.values())
            _finite_or_stop({**losses, "loss": loss}, epoch, iteration, run_dir)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.grad_clip > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            iteration += 1

            window_steps += 1
            window_images += len(images) * process.world_size
            for name, value in {"loss": loss, **losses}.items():
                window_losses[name] = window_losses.get(name, 0.0) + value.item()
            last = iteration >= total_iters
            if iteration % config.log_every == 0 or last:
                # windows tile the whole loop, so the time spent logging counts against the next one
                now = time.perf_counter()
                row = {"epoch": epoch + 1, "iteration": iteration, "lr": optimizer.param_groups[0]["lr"],
                       **{name: total / window_steps for name, total in window_losses.items()},
                       "images_per_s": window_images / (now - window_start)}
                if history is not None:
                    history.append(row)
                bar.set_postfix(loss=f"{row['loss']:.3f}", img_s=f"{row['images_per_s']:.1f}")
                window_losses, window_steps, window_images, window_start = {}, 0, 0, now
            bar.update(1)
            if last:
                break
        bar.close()

        if process.main:
            scores = validate(bare, val_loader, device, class_names) if val_loader is not None else None
            if scores is not None:
                validation.append({"epoch": epoch + 1, "iteration": iteration,
                                   **{f"val_{k}": v for k, v in scores.items() if k != "per_class_iou"}})
                if progress:
                    print(f"epoch {epoch + 1}/{epochs}: val mIoU {scores['mIoU']:.3f}, "
                          f"pixel accuracy {scores['pixel_accuracy']:.3f}")
            save(epoch + 1, scores)
            manifest.update(epochs_done=epoch + 1, iterations_done=iteration,
                            wall_time_s=round(wall_time + time.perf_counter() - started, 1))
            runs.write_json(run_dir / runs.RUN_FILE, manifest)
        process.barrier()

    if process.main:
        manifest["status"] = "finished"
        runs.write_json(run_dir / runs.RUN_FILE, manifest)
    process.barrier()
    if process.distributed:
        dist.destroy_process_group()
    return run_dir
