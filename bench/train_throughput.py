"""Training throughput: segcore's training loop against a bare torchvision-style loop.

Both train the same model (segcore's default ``maskrcnn`` unless --model says otherwise) on the same
data, batch size, data loader and optimizer; the bare loop is the five lines of torchvision's detection
reference (forward, sum the losses, zero_grad, backward, step) with nothing else. They run alternately
(bare, segcore, bare, segcore …) so that drift in a shared machine's load hits both, and the median
images/s of each is compared. Warm-up iterations are not timed.

    .venv/bin/python bench/train_throughput.py [--iters 40] [--warmup 5] [--rounds 2] [--batch-size 4]

Prints the figures and their ratio (segcore / bare); the target is a ratio of at least 0.95.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import DataLoader, DistributedSampler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segcore.config import TrainConfig  # noqa: E402
from segcore.data import CocoSegmentation, collate, train_transforms  # noqa: E402
from segcore.engine import train  # noqa: E402
from segcore.models import create_model  # noqa: E402


def bare_loop(args: argparse.Namespace) -> float:
    """images/s of the plain loop after warm-up."""
    torch.manual_seed(args.seed)
    dataset = CocoSegmentation(args.data, "train", transforms=train_transforms())
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=args.seed)
    loader = DataLoader(dataset, batch_size=args.batch_size, sampler=sampler, collate_fn=collate, num_workers=0)
    model = create_model(args.model, num_classes=len(dataset.class_names) + 1).train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.001, momentum=0.9,
                                weight_decay=1e-4)
    images_seen, start = 0, None
    for iteration, (images, targets) in enumerate(loader):
        if iteration == args.warmup:
            start = time.perf_counter()
        if iteration == args.warmup + args.iters:
            break
        losses = model(images, targets)
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if start is not None:
            images_seen += len(images)
    return images_seen / (time.perf_counter() - start)


def segcore_loop(args: argparse.Namespace) -> float:
    """images/s of segcore's train loop after warm-up, from the run's history.csv (logged every step)."""
    with tempfile.TemporaryDirectory() as folder:
        config = TrainConfig(model=args.model, data=args.data, out=str(Path(folder) / "run"), seed=args.seed,
                             batch_size=args.batch_size, max_iters=args.warmup + args.iters, lr=0.001,
                             warmup_iters=0, log_every=1, val_split="no-validation-in-this-benchmark")
        train(config, progress=False)
        history = pd.read_csv(Path(folder) / "run" / "history.csv")
    timed = history[history["iteration"] > args.warmup]
    # each row covers one step; images / total seconds over the timed steps
    return len(timed) * args.batch_size / (args.batch_size / timed["images_per_s"]).sum()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/shapes")
    parser.add_argument("--model", default="maskrcnn")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--iters", type=int, default=40, help="timed iterations per measurement")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2, help="bare/segcore pairs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    print(f"model {args.model}, batch {args.batch_size}, {args.iters} timed iterations after {args.warmup}, "
          f"{args.rounds} rounds, torch {torch.__version__}, {torch.get_num_threads()} threads")
    bare, ours = [], []
    for round_ in range(args.rounds):
        bare.append(bare_loop(args))
        ours.append(segcore_loop(args))
        print(f"round {round_ + 1}: bare {bare[-1]:.2f} images/s, segcore {ours[-1]:.2f} images/s")
    b, s = statistics.median(bare), statistics.median(ours)
    print(f"median: bare {b:.2f} images/s, segcore {s:.2f} images/s, ratio segcore/bare {s / b:.3f} (target >= 0.95)")


if __name__ == "__main__":
    main()
