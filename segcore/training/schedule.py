"""The optimizer and its schedule: SGD or AdamW, a linear warm-up, then cosine decay or a constant rate."""

from __future__ import annotations

import math

import torch

from segcore.training.config import TrainConfig


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


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig,
                    total_iters: int) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning-rate schedule over ``total_iters`` steps, stepped once per step."""
    # a short run (a test, a smoke check) still reaches its peak learning rate
    warmup = min(config.warmup_iters, total_iters // 10)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: learning_rate_factor(
        i, total=total_iters, warmup=warmup, schedule=config.schedule))
