"""Evaluation speed and memory, measured side by side in one run.

1. Scoring speed: the shared COCO fixture's segm results scored by ``segcore eval --predictions`` and by a
   plain pycocotools script, each timed as a whole process (start-up included), best of --repeats runs,
   with the ratio and a check that the 12 numbers are identical.
2. Memory: peak resident memory of ``segcore eval RUN`` on 200 and on 1000 built-in images (generated
   here), with the ratio; evaluation streams, so the target is flat within 10%.

    .venv/bin/python bench/eval_speed.py [--repeats 3] [--run RUN_DIR] [--skip-memory]

Without --run a Mask R-CNN is trained for 20 iterations first: barely trained, it answers up to 100
detections an image, the most that evaluation has to hold.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT.parent / "shared" / "fixtures" / "coco-val2014-100"
PYCOCOTOOLS = """
import json, sys, contextlib, io
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO(sys.argv[1]); ev = COCOeval(gt, gt.loadRes(sys.argv[2]), "segm")
    ev.evaluate(); ev.accumulate(); ev.summarize()
print(json.dumps(list(ev.stats)))
"""
STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def timed(command: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, result


def scoring_speed(repeats: int) -> None:
    gt, results = FIXTURE / "instances_val2014_100.json", FIXTURE / "instances_val2014_fakesegm100_results.json"
    ours, theirs = [], []
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(repeats):
            seconds, _ = timed([sys.executable, "-m", "segcore", "eval", "--gt", str(gt), "--predictions",
                                str(results), "--out", f"{folder}/ext"])
            ours.append(seconds)
            seconds, plain = timed([sys.executable, "-c", PYCOCOTOOLS, str(gt), str(results)])
            theirs.append(seconds)
        [eval_folder] = (Path(folder) / "ext" / "evals").iterdir()
        metrics = json.loads((eval_folder / "metrics.json").read_text())["segm"]
    identical = [metrics[k] for k in STATS] == json.loads(plain.stdout)
    print(f"scoring the fixture's segm results ({len(json.loads(results.read_text()))} detections, 100 images), "
          f"whole processes, best of {repeats}:")
    print(f"  segcore eval --predictions {min(ours):.2f} s (full eval folder: COCO segm and bbox, boundary, "
          f"breakdowns, per image and per instance)")
    print(f"  plain pycocotools (segm only) {min(theirs):.2f} s")
    print(f"  ratio pycocotools/segcore {min(theirs) / min(ours):.2f}x (target >= 2), identical numbers: {identical}")
    in_process(gt, results, repeats)


def in_process(gt: Path, results: Path, repeats: int) -> None:
    """The segm numbers alone, inside one process: segcore's CocoEvaluation against COCOeval's three steps,
    start-up and file writing left out."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from segcore.metrics.coco import coco_metrics
    from segcore.results import load_results

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt))
    entries = load_results(results, coco_gt)
    ours, theirs = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        coco_metrics(coco_gt, entries, "segm")
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator = COCOeval(coco_gt, coco_gt.loadRes(str(results)), "segm")
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        theirs.append(time.perf_counter() - start)
    print(f"  in one process, segm numbers only: segcore {min(ours) * 1000:.0f} ms, pycocotools "
          f"{min(theirs) * 1000:.0f} ms, ratio {min(theirs) / min(ours):.1f}x")


def peak_memory_mb(arguments: list[str]) -> float:
    """Peak resident memory, in MB, of a fresh process that runs ``segcore <arguments>``."""
    code = ("import resource, sys; from segcore.cli import main; code = main(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", code, *arguments], cwd=ROOT, capture_output=True, text=True,
                            check=True)
    return int(result.stdout.strip().splitlines()[-1]) / 1024


def memory(run: str | None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "shapes"
        subprocess.run([sys.executable, "-m", "segcore", "data", "synth", "--out", str(data), "--n-train", "8",
                        "--n-val", "200", "--n-test", "1000"], cwd=ROOT, check=True, capture_output=True)
        if run is None:
            run = f"{folder}/run"
            subprocess.run([sys.executable, "-m", "segcore", "train", "--data", str(data), "--out", run,
                            "--max-iters", "20", "--batch-size", "2", "--val-split", "none", "--no-progress"],
                           cwd=ROOT, check=True, capture_output=True)
        small = peak_memory_mb(["eval", run, "--data", str(data), "--split", "val", "--no-progress"])
        large = peak_memory_mb(["eval", run, "--data", str(data), "--split", "test", "--no-progress"])
    print(f"peak memory of segcore eval: 200 images {small:.0f} MB, 1000 images {large:.0f} MB, "
          f"ratio {large / small:.3f} (target within 10%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--run", help="a trained run to evaluate for the memory figure")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    scoring_speed(args.repeats)
    if not args.skip_memory:
        memory(args.run)


if __name__ == "__main__":
    main()
