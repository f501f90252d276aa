"""What bfloat16 inference and int8 storage cost in accuracy: each run evaluated in float32, with segcore's
default mixed precision, and (``--int8``) with its weights stored as the zoo ships them (int8 convolutions and
linear layers, :func:`segcore.runs.checkpoints.quantized`), on the same split, side by side; the target is a mask
AP drop of at most 0.005.

    .venv/bin/python bench/inference_precision.py [RUN_DIR ...] [--data data/shapes] [--split test] [--int8]

Without run directories it takes every trained run of the shipped zoo (data/zoo/*/checkpoint.pt). Each
evaluation writes into a temporary copy of the run, so the shipped eval folders are left as they are; the
float32 figures should equal the shipped ones (they were evaluated in float32).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from segcore import runs
from segcore.evaluation.evaluate import evaluate_run
from segcore.precision import precision_name
from segcore.runs import checkpoints

ROOT = Path(__file__).resolve().parents[1]


#: metrics.json's figures compared: (label, section, key)
FIGURES = [("mask AP", "segm", "AP"), ("box AP", "bbox", "AP"), ("mIoU", "semantic", "mIoU")]


def evaluate_copy(run_dir: Path, data: str, split: str, amp: bool, scratch: Path, *,
                  int8: bool = False) -> tuple[dict, float]:
    """metrics.json of ``run_dir``'s checkpoint on ``split``, evaluated in a copy of the run (its weights
    stored in int8 first, with ``int8``); and seconds."""
    copy = scratch / f"{run_dir.name}-{'amp' if amp else 'fp32'}{'-int8' if int8 else ''}"
    copy.mkdir()
    for name in (runs.RUN_FILE, runs.CHECKPOINT):
        shutil.copy2(run_dir / name, copy / name)
    if int8:
        content = checkpoints.load_file(copy / runs.CHECKPOINT)
        checkpoints.save_atomic(checkpoints.quantized(content), copy / runs.CHECKPOINT)
    start = time.perf_counter()
    folder = evaluate_run(copy, data, split, progress=False, amp=amp, speed_images=20)
    return runs.read_metrics(folder), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path)
    parser.add_argument("--data", default=str(ROOT / "data" / "shapes"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--int8", action="store_true",
                        help="also evaluate each run with int8 weights (as the zoo ships)")
    args = parser.parse_args()
    chosen = args.runs or sorted(p.parent for p in (ROOT / "data" / "zoo").glob("*/checkpoint.pt"))
    print(f"{args.split} split of {args.data}; mixed precision here is {precision_name('cpu')}")
    worst = int8_worst = 0.0
    with tempfile.TemporaryDirectory() as folder:
        for run_dir in chosen:
            exact, exact_s = evaluate_copy(run_dir, args.data, args.split, False, Path(folder))
            mixed, mixed_s = evaluate_copy(run_dir, args.data, args.split, True, Path(folder))
            parts = []
            for label, section, key in FIGURES:
                a, b = exact.get(section, {}).get(key), mixed.get(section, {}).get(key)
                if a is not None and b is not None:
                    parts.append(f"{label} {a:.4f} -> {b:.4f} ({b - a:+.4f})")
                    if section == "segm":
                        worst = min(worst, b - a)
            speed = f"model p50 {exact['speed']['model_ms_p50']:.0f} -> {mixed['speed']['model_ms_p50']:.0f} ms"
            print(f"{run_dir.name}: {'; '.join(parts)}; {speed}; eval {exact_s:.0f} s -> {mixed_s:.0f} s", flush=True)
            if args.int8:
                packed, _ = evaluate_copy(run_dir, args.data, args.split, True, Path(folder), int8=True)
                a, b = mixed["segm"].get("AP"), packed["segm"].get("AP")
                if a is not None and b is not None:
                    int8_worst = min(int8_worst, b - a)
                    sizes = [(p / runs.CHECKPOINT).stat().st_size / 1e6 for p in (run_dir, Path(folder) / (
                        f"{run_dir.name}-amp-int8"))]
                    print(f"  int8 weights (mixed precision): mask AP {a:.4f} -> {b:.4f} ({b - a:+.4f}); checkpoint "
                          f"{sizes[0]:.1f} -> {sizes[1]:.1f} MB", flush=True)
    print(f"largest mask AP drop with mixed precision: {max(0.0, -worst):.4f} (target <= 0.005)")
    if args.int8:
        print(f"largest mask AP drop with int8 weights, against mixed precision: {max(0.0, -int8_worst):.4f} "
              f"(target <= 0.005)")


if __name__ == "__main__":
    main()
