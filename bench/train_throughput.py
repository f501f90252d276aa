"""Training throughput and inference latency: segcore's defaults against a bare float32 torchvision loop.

Training. The bare loop is the five lines of torchvision's detection reference (forward, sum the losses,
zero_grad, backward, step) in float32, with the data loaded in the loop, over the same model, data, batch
size and optimizer (the recipe's AdamW) as ``segcore train`` with its defaults. Each of segcore's speed
options is then turned off alone, so that its share shows. All of them start from the same weights, by
default the shipped zoo's maskrcnn: a model whose RPN already finds objects, so the mask branch trains on
as many positive RoIs as in a real run (from scratch it sees almost none, and a step looks cheaper than it
is). The variants run in turn, round after round, so that drift in the machine's load hits all of them;
the median images/s of each is compared. Warm-up iterations are not timed.

Inference. The median per-image model time and total time (``speed`` in metrics.json: batch 1, after
warm-up) of the same weights in float32 and with segcore's defaults, on the first val images.

    .venv/bin/python bench/train_throughput.py [--iters 30] [--warmup 5] [--rounds 2] [--infer-images 30]
                                               [--readme README.md]

Prints the figures and the ratios to the bare float32 loop; the targets are at least 1.5× for both. With
--readme it also writes them as a table between the README's throughput markers.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import DataLoader, DistributedSampler

from segcore.data import CocoSegmentation, collate, train_transforms
from segcore.evaluation.speed import StageTimer
from segcore.models import create_model
from segcore.runs import checkpoints
from segcore.training.config import make_train_config
from segcore.training.loop import train, training_targets

#: segcore's speed options, each turned off alone: (label, command-line options that turn it off)
ABLATIONS = {
    "bfloat16 autocast": {"amp": False},
    "channels-last": {"channels_last": False},
}
#: options measured but not (or not yet) segcore's defaults: (label, options that turn it on)
CANDIDATES = {
    "1 data-loader worker": {"workers": 1},
    # torch's intra-op threads (default: one per core); "threads" is this benchmark's, not a training option
    "1 compute thread": {"threads": 1},
    "mask loss on 16 positive RoIs per image": {"mask_positives_per_image": 16},
}


def bare_loop(args: argparse.Namespace, weights: dict | None) -> float:
    """images/s of the plain float32 loop after warm-up."""
    torch.manual_seed(args.seed)
    dataset = CocoSegmentation(args.data, "train", transforms=train_transforms())
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=args.seed)
    loader = DataLoader(dataset, batch_size=args.batch_size, sampler=sampler, collate_fn=collate, num_workers=0)
    config = make_train_config({"model": args.model})
    model = create_model(args.model, num_classes=len(dataset.class_names) + 1, **args.options)
    if weights is not None:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in weights.items()})
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=config.weight_decay)
    device = torch.device("cpu")
    images_seen, start = 0, None
    for iteration, (images, targets) in enumerate(loader):
        if iteration == args.warmup:
            start = time.perf_counter()
        if iteration == args.warmup + args.iters:
            break
        losses = model(images, training_targets(targets, device))
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if start is not None:
            images_seen += len(images)
    return images_seen / (time.perf_counter() - start)


def segcore_loop(args: argparse.Namespace, overrides: dict) -> float:
    """images/s of ``segcore train`` with its defaults and ``overrides``, after warm-up, from history.csv."""
    overrides = dict(overrides)
    threads = torch.get_num_threads()
    torch.set_num_threads(overrides.pop("threads", threads))
    try:
        return _segcore_loop(args, overrides)
    finally:
        torch.set_num_threads(threads)


def _segcore_loop(args: argparse.Namespace, overrides: dict) -> float:
    with tempfile.TemporaryDirectory() as folder:
        # a small learning rate: the weights should stay those of a trained model while they are timed
        config = make_train_config({"model": args.model, "data": args.data, "out": str(Path(folder) / "run"),
                                    "seed": args.seed, "batch_size": args.batch_size,
                                    "max_iters": args.warmup + args.iters, "lr": 1e-5, "warmup_iters": 0,
                                    "log_every": 1, "val_split": "no-validation-in-this-benchmark",
                                    "weights": args.weights, **args.options, **overrides})
        train(config, progress=False)
        history = pd.read_csv(Path(folder) / "run" / "history.csv")
    timed = history[history["iteration"] > args.warmup]
    # each row covers one step; images / total seconds over the timed steps
    return len(timed) * args.batch_size / (args.batch_size / timed["images_per_s"]).sum()


def inference_ms(args: argparse.Namespace, weights: dict | None, *, fast: bool) -> tuple[float, float]:
    """Median (model, total) milliseconds per image at batch 1, as metrics.json's speed measures them."""
    dataset = CocoSegmentation(args.data, "val")
    model = create_model(args.model, num_classes=len(dataset.class_names) + 1, **args.options)
    if weights is not None:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in weights.items()})
    model.eval()
    if fast:
        model.to(memory_format=torch.channels_last)
    timer = StageTimer(torch.device("cpu"), amp=fast)
    for index in range(min(len(dataset), args.infer_images + timer.warmup)):
        timer.predict(model, dataset[index][0])
    summary = timer.summary()
    return summary["model_ms_p50"], summary["total_ms_p50"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/shapes")
    parser.add_argument("--model", default="maskrcnn")
    parser.add_argument("--weights", default="data/zoo/maskrcnn/checkpoint.pt",
                        help="start every variant from these weights ('' for a fresh model)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--iters", type=int, default=30, help="timed iterations per measurement")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of every variant")
    parser.add_argument("--infer-images", type=int, default=30, help="timed images per inference measurement")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--readme", type=Path, help="write the figures between this README's throughput markers")
    args = parser.parse_args()

    weights, args.options = None, {}
    if args.weights and Path(args.weights).exists():
        content = checkpoints.load_file(args.weights)
        weights, args.options = content["state_dict"], dict(content["options"])
        # options that are training choices, not architecture, stay segcore's defaults
        for key in ("mask_positives_per_image",):
            args.options.pop(key, None)
    else:
        args.weights = None
    print(f"model {args.model}, weights {args.weights or 'fresh'}, batch {args.batch_size}, {args.iters} timed "
          f"iterations after {args.warmup}, {args.rounds} rounds, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    variants = {"bare float32 loop": None, "segcore defaults": {}}
    variants.update({f"segcore without {name}": overrides for name, overrides in ABLATIONS.items()})
    variants.update({f"segcore with {name}": overrides for name, overrides in CANDIDATES.items()})
    measured: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(args.rounds):
        for name, overrides in variants.items():
            value = bare_loop(args, weights) if overrides is None else segcore_loop(args, overrides)
            measured[name].append(value)
            print(f"round {round_ + 1}: {name}: {value:.2f} images/s", flush=True)

    bare = statistics.median(measured["bare float32 loop"])
    ours = statistics.median(measured["segcore defaults"])
    print("\ntraining, median images/s over rounds")
    for name, values in measured.items():
        value = statistics.median(values)
        print(f"  {name:36s} {value:6.2f} images/s  {value / bare:5.2f}x bare")
    for name in ABLATIONS:
        without = statistics.median(measured[f"segcore without {name}"])
        print(f"  share of {name}: {ours / without:.2f}x (segcore defaults / segcore without it)")
    for name in CANDIDATES:
        with_it = statistics.median(measured[f"segcore with {name}"])
        print(f"  candidate {name}: {with_it / ours:.2f}x (segcore with it / segcore defaults)")
    print(f"training speed-up, segcore defaults / bare float32: {ours / bare:.2f}x (target >= 1.5x)")

    print(f"\ninference, batch 1, median of {args.infer_images} val images after warm-up")
    slow = inference_ms(args, weights, fast=False)
    fast = inference_ms(args, weights, fast=True)
    print(f"  float32:          model {slow[0]:7.1f} ms, total {slow[1]:7.1f} ms")
    print(f"  segcore defaults: model {fast[0]:7.1f} ms, total {fast[1]:7.1f} ms")
    print(f"inference speed-up, float32 / segcore defaults: model {slow[0] / fast[0]:.2f}x, "
          f"total {slow[1] / fast[1]:.2f}x (target >= 1.5x)")
    if args.readme is not None:
        write_readme(args.readme, {name: statistics.median(values) for name, values in measured.items()}, bare,
                     slow, fast, args)


def write_readme(readme: Path, medians: dict[str, float], bare: float, slow: tuple, fast: tuple,
                 args: argparse.Namespace) -> None:
    """The figures as a markdown table between ``<!-- throughput:start -->`` and ``<!-- throughput:end -->``."""
    lines = ["| variant | images/s | × bare float32 |", "| --- | ---: | ---: |"]
    lines += [f"| {name} | {value:.2f} | {value / bare:.2f} |" for name, value in medians.items()]
    lines += ["", f"Inference at batch 1 (metrics.json's `speed`, median of {args.infer_images} val images): model "
              f"{slow[0]:.1f} ms in float32, {fast[0]:.1f} ms with the defaults, {slow[0] / fast[0]:.2f}×; "
              f"the whole prediction {slow[1]:.1f} ms against {fast[1]:.1f} ms, {slow[1] / fast[1]:.2f}×."]
    text = readme.read_text()
    start, end = "<!-- throughput:start -->", "<!-- throughput:end -->"
    head, rest = text.split(start, 1)
    readme.write_text(head + start + "\n" + "\n".join(lines) + "\n" + end + rest.split(end, 1)[1])
    print(f"wrote the table into {readme}")


if __name__ == "__main__":
    main()
