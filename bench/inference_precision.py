"""What bfloat16 inference costs in accuracy: each run evaluated in float32 and with segcore's default mixed
precision, on the same split, side by side; the target is a mask AP drop of at most 0.005.

    .venv/bin/python bench/inference_precision.py [RUN_DIR ...] [--data data/shapes] [--split test]

Without run directories it takes every trained run of the shipped zoo (data/zoo/*/checkpoint.pt). Each
evaluation writes into a temporary copy of the run, so the shipped eval folders are left as they are; the
float32 figures should equal the shipped ones (they were evaluated in float32).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from segcore import runs  # noqa: E402
from segcore.evaluate import evaluate_run  # noqa: E402
from segcore.precision import precision_name  # noqa: E402

#: metrics.json's figures compared: (label, section, key)
FIGURES = [("mask AP", "segm", "AP"), ("box AP", "bbox", "AP"), ("mIoU", "semantic", "mIoU")]


def evaluate_copy(run_dir: Path, data: str, split: str, amp: bool, scratch: Path) -> tuple[dict, float]:
    """metrics.json of ``run_dir``'s checkpoint on ``split``, evaluated in a copy of the run; and seconds."""
    copy = scratch / f"{run_dir.name}-{'amp' if amp else 'fp32'}"
    copy.mkdir()
    for name in (runs.RUN_FILE, runs.CHECKPOINT):
        shutil.copy2(run_dir / name, copy / name)
    start = time.perf_counter()
    folder = evaluate_run(copy, data, split, progress=False, amp=amp, speed_images=20)
    return runs.read_metrics(folder), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path)
    parser.add_argument("--data", default=str(ROOT / "data" / "shapes"))
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    chosen = args.runs or sorted(p.parent for p in (ROOT / "data" / "zoo").glob("*/checkpoint.pt"))
    print(f"{args.split} split of {args.data}; mixed precision here is {precision_name('cpu')}")
    worst = 0.0
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
    print(f"largest mask AP drop with mixed precision: {-worst:.4f} (target <= 0.005)")


if __name__ == "__main__":
    main()
