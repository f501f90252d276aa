"""Evaluation speed and memory, measured side by side in one run.

1. Scoring speed: the shared COCO fixture's segm results scored by ``segcore eval --predictions`` and by a
   plain pycocotools script, each timed as a whole process (start-up included), best of --repeats runs,
   with the ratio and a check that the 12 numbers are identical.
2. Memory: peak resident memory of ``segcore eval RUN`` on 200 and on 1000 built-in images (generated
   here), with the ratio; evaluation streams, so the target is flat within 10%.

3. COCO scale (``--coco-scale``): a ground truth of 5,000 built-in scenes and a results file of 100
   detections an image (RLE masks: each object found one to three times, shifted and grown or shrunk by a few
   pixels, and the rest false positives taken from other scenes, so that overlaps are realistic), written
   once into --cache. Timed as whole processes, with their peak memory: ``segcore eval --predictions`` (the
   full eval folder), ``segcore eval --coco-only`` (the COCO numbers alone), plain pycocotools and
   faster-coco-eval (masks and boxes each), and the same at 1,000 images, for how memory grows; and a check
   that the 24 COCO numbers are identical across them.

    .venv/bin/python bench/eval_speed.py [--repeats 3] [--run RUN_DIR] [--skip-memory]
    .venv/bin/python bench/eval_speed.py --coco-scale [--images 5000] [--cache ~/.cache/segcore/coco-scale]

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

    from segcore.coco.results import load_results
    from segcore.metrics.coco import coco_metrics

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


#: Printed by a process after its work: its peak resident memory plus that of the largest process it forked
#: (scoring forks one to use the second core), in KB: an upper bound of what the two held at once.
PEAK = ("import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss "
        "+ resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def peak_memory_mb(arguments: list[str]) -> float:
    """Peak resident memory, in MB, of a fresh process that runs ``segcore <arguments>`` (with the process it
    forks, if any: :data:`PEAK`)."""
    code = f"import sys; from segcore.cli import main; code = main(sys.argv[1:]); {PEAK}; sys.exit(code)"
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


#: A whole-process scorer of a results file by another tool, masks then boxes; prints the 24 stats and its peak
#: memory (MB). As Detectron2 does, the boxes are dropped for the mask evaluation: loadRes would otherwise take
#: a detection's box area, not its mask's, for the small, medium and large ranges.
OTHER_TOOL = """
import contextlib, io, json, resource, sys
{imports}
stats = []
with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO(sys.argv[1])
    entries = json.load(open(sys.argv[2]))
    masks = [{{k: v for k, v in entry.items() if k != "bbox"}} for entry in entries]
    for kind, chosen in (("segm", masks), ("bbox", entries)):
        ev = {evaluator}(gt, gt.loadRes(chosen), kind); ev.evaluate(); ev.accumulate(); ev.summarize()
        stats += list(ev.stats)[:12]
print(json.dumps(stats)); print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
TOOLS = {
    "plain pycocotools": OTHER_TOOL.format(imports="from pycocotools.coco import COCO\n"
                                                   "from pycocotools.cocoeval import COCOeval", evaluator="COCOeval"),
    "faster-coco-eval": OTHER_TOOL.format(imports="from faster_coco_eval import COCO, COCOeval_faster",
                                          evaluator="COCOeval_faster"),
}


def write_coco_scale(cache: Path, images: int, detections: int = 100, seed: int = 0) -> tuple[Path, Path]:
    """The ground truth (``images`` scenes of the built-in generator's test split) and a results file of
    ``detections`` per image, written once into ``cache``; returns their paths."""
    import numpy as np
    from pycocotools import mask as mask_utils

    folder = cache / f"{images}x{detections}-seed{seed}"
    gt, results = folder / "shapes" / "annotations" / "instances_test.json", folder / "results.json"
    if gt.is_file() and results.is_file():
        return gt, results
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "segcore", "data", "synth", "--out", str(folder / "shapes"), "--seed",
                    str(seed), "--n-train", "0", "--n-val", "0", "--n-test", str(images)], cwd=ROOT, check=True)
    truth = json.loads(gt.read_text())
    by_image: dict[int, list[dict]] = {}
    for annotation in truth["annotations"]:
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    rng = np.random.default_rng(seed)
    categories = [c["id"] for c in truth["categories"]]
    image_ids = [image["id"] for image in truth["images"]]
    entries = []
    for image in truth["images"]:
        height, width = image["height"], image["width"]
        found = []
        for annotation in by_image.get(image["id"], []):  # each object found one to three times, imprecisely
            for _ in range(int(rng.integers(1, 4))):
                found.append((annotation, annotation["category_id"]))
        while len(found) < detections:  # false positives: objects of other scenes, some of another class
            others = by_image.get(image_ids[int(rng.integers(len(image_ids)))], [])
            if others:
                other = others[int(rng.integers(len(others)))]
                label = other["category_id"] if rng.random() < 0.5 else categories[int(rng.integers(len(categories)))]
                found.append((other, label))
        for annotation, label in found[:detections]:
            mask = mask_utils.decode(annotation["segmentation"])
            mask = np.roll(mask, (int(rng.integers(-3, 4)), int(rng.integers(-3, 4))), axis=(0, 1))
            if rng.random() < 0.5:  # grown or shrunk by a pixel
                from scipy import ndimage

                grow = ndimage.binary_dilation if rng.random() < 0.5 else ndimage.binary_erosion
                mask = grow(mask).astype(np.uint8)
            if not mask.any():
                continue
            rle = mask_utils.encode(np.asfortranarray(mask[:height, :width]))
            entries.append({"image_id": image["id"], "category_id": label, "score": round(float(rng.random()), 6),
                            "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},
                            "bbox": [round(float(v), 2) for v in mask_utils.toBbox(rle)]})
    results.write_text(json.dumps(entries))
    return gt, results


def subset(gt: Path, results: Path, images: int, out: Path) -> tuple[Path, Path]:
    """The first ``images`` images of a ground truth and their results, written into ``out``."""
    truth = json.loads(gt.read_text())
    keep = {image["id"] for image in truth["images"][:images]}
    truth["images"] = [image for image in truth["images"] if image["id"] in keep]
    truth["annotations"] = [a for a in truth["annotations"] if a["image_id"] in keep]
    out.mkdir(parents=True, exist_ok=True)
    (out / "gt.json").write_text(json.dumps(truth))
    (out / "results.json").write_text(json.dumps([r for r in json.loads(results.read_text()) if r["image_id"] in keep]))
    return out / "gt.json", out / "results.json"


def segcore_scored(gt: Path, results: Path, out: Path, *extra: str) -> tuple[float, float, list[float]]:
    """Seconds, peak memory (MB) and the 24 COCO numbers of ``segcore eval --predictions`` as a whole process."""
    start = time.perf_counter()
    peak = peak_memory_mb(["eval", "--gt", str(gt), "--predictions", str(results), "--out", str(out),
                           "--no-progress", *extra])
    seconds = time.perf_counter() - start
    [folder] = (out / "evals").iterdir()
    metrics = json.loads((folder / "metrics.json").read_text())
    return seconds, peak, [metrics[kind][k] for kind in ("segm", "bbox") for k in STATS]


def segcore_coco_only(gt: Path, results: Path) -> tuple[float, float, list[float]]:
    """Seconds, peak memory (MB) and the 24 COCO numbers of ``segcore eval --coco-only`` as a whole process."""
    code = f"import sys; from segcore.cli import main; code = main(sys.argv[1:]); {PEAK}; sys.exit(code)"
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code, "eval", "--gt", str(gt), "--predictions", str(results),
                             "--coco-only"], cwd=ROOT, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    *printed, peak = result.stdout.strip().splitlines()
    scores = json.loads("\n".join(printed))
    return seconds, int(peak) / 1024, [scores[kind][k] for kind in ("segm", "bbox") for k in STATS]


def tool_scored(tool: str, gt: Path, results: Path) -> tuple[float, float, list[float | None]]:
    seconds, result = timed([sys.executable, "-c", TOOLS[tool], str(gt), str(results)])
    lines = result.stdout.strip().splitlines()
    # COCOeval's -1 ("nothing to score") is segcore's None
    return seconds, float(lines[-1]), [None if v == -1 else v for v in json.loads(lines[-2])]


def coco_scale(cache: Path, images: int) -> None:
    gt, results = write_coco_scale(cache, images)
    entries = len(json.loads(results.read_text()))
    print(f"COCO scale: {images} images, {entries} detections (RLE masks), whole processes, masks and boxes:")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        small_gt, small_results = subset(gt, results, images // 5, Path(folder) / "small")
        small = segcore_scored(small_gt, small_results, Path(folder) / "small-eval")
        ours = segcore_scored(gt, results, Path(folder) / "eval")
        rows.append(("segcore eval --predictions (the full eval folder)", *ours))
        rows.append(("segcore eval --coco-only (the COCO numbers alone)", *segcore_coco_only(gt, results)))
        for tool in TOOLS:
            rows.append((tool, *tool_scored(tool, gt, results)))
    fastest_other = rows[-1][1]
    plain = next(numbers for name, _, _, numbers in rows if name == "plain pycocotools")
    for name, seconds, peak, numbers in rows:
        same = numbers == plain
        print(f"  {name}: {seconds:.1f} s, peak {peak:.0f} MB, {seconds / fastest_other:.2f}x faster-coco-eval's time, "
              f"24 numbers identical to plain pycocotools: {same}")
    print(f"  segcore's peak memory at {images // 5} and {images} images: {small[1]:.0f} and {ours[1]:.0f} MB, "
          f"ratio {ours[1] / small[1]:.2f} for 5x the images (target: less than linear, under 4 GB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--run", help="a trained run to evaluate for the memory figure")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--coco-scale", action="store_true", help="only the COCO-scale case")
    parser.add_argument("--images", type=int, default=5000, help="with --coco-scale: images in the ground truth")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "segcore" / "coco-scale",
                        help="with --coco-scale: where the ground truth and results are written once")
    args = parser.parse_args()
    if args.coco_scale:
        coco_scale(args.cache, args.images)
        return
    scoring_speed(args.repeats)
    if not args.skip_memory:
        memory(args.run)


if __name__ == "__main__":
    main()
