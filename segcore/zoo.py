"""The demo model zoo: ``segcore zoo build`` trains and evaluates a fixed set of models on the built-in
dataset, from scratch, on CPU, and ships the result under data/zoo/.

Every Mask R-CNN variant shares the backbone, the data, the seed and the training budget, so their
differences mean something; the paired comparisons say whether they are real. The test split is only
ever evaluated, never used to choose anything.

data/zoo/ holds one run directory per model (run.json, checkpoint.pt stored in half precision, history.csv,
evals/shapes-val and evals/shapes-test, comparisons/) and ``zoo.json``: the command, seed, git commit,
dataset checksums, wall times and machine.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segcore import atomic, runs
from segcore.errors import SegcoreError

ZOO_FILE = "zoo.json"
#: The built-in dataset the zoo is trained on: ``segcore data synth`` with its defaults.
DATA_SEED = 0
SPLITS = ("val", "test")

#: What every Mask R-CNN variant shares: ResNet-18 from scratch, an FPN over stages 1-3, anchors of two
#: scales per level so that objects up to the image's size get well-matching anchors, BatchNorm in the heads
#: (measured on val after 600 iterations: mask AP 0.012 with both against 0.008 with neither), and 128 RoIs
#: sampled per image for the box head: with at most 15 objects an image that still leaves up to 32
#: positives, and it makes a training step 1.25x faster on the CPU, where roi_align's backward pass was a
#: quarter of the step (1.17 against 1.46 s at batch 4, measured with torch.profiler).
MASKRCNN_BASE: dict[str, Any] = {"backbone": "resnet18", "anchor_scales": [1.0, 2.0], "norm_heads": True,
                                 "box_batch_size_per_image": 128}
#: The shared training budget of the Mask R-CNN variants, and the semantic baselines' own. Sized so that
#: the whole build fits 90 minutes on 2 CPU cores: there a Mask R-CNN step takes 1.2 s at first and 1.7 s
#: once the RPN finds objects (the mask branch then trains on more positive RoIs), an FCN step 0.7 s and a
#: U-Net step 0.85 s (batch 4), and each evaluation of a split about 30 s.
MASKRCNN_TRAINING: dict[str, Any] = {"max_iters": 500, "batch_size": 4, "optimizer": "sgd", "lr": 0.02,
                                     "warmup_iters": 100}
SEMANTIC_TRAINING: dict[str, Any] = {"max_iters": 400, "batch_size": 4, "optimizer": "adamw", "lr": 0.001,
                                     "weight_decay": 0.0001, "warmup_iters": 50}


@dataclass
class ZooModel:
    """One model of the zoo: what it is and how it is trained."""

    model: str
    description: str
    options: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)


ZOO: dict[str, ZooModel] = {
    "maskrcnn": ZooModel("maskrcnn", "Mask R-CNN, plain mask branch", {**MASKRCNN_BASE}, MASKRCNN_TRAINING),
    "maskrcnn-attention": ZooModel("maskrcnn", "Mask R-CNN, spatial attention in the mask branch",
                                   {**MASKRCNN_BASE, "attention": "spatial"}, MASKRCNN_TRAINING),
    "maskrcnn-attention-iou": ZooModel("maskrcnn", "Mask R-CNN, spatial attention, BCE + Lovász IoU mask loss",
                                       {**MASKRCNN_BASE, "attention": "spatial", "iou_loss": "lovasz"},
                                       MASKRCNN_TRAINING),
    "maskrcnn-single-scale": ZooModel("maskrcnn", "Mask R-CNN on single-scale features (no FPN)",
                                      {**MASKRCNN_BASE, "fpn": False}, MASKRCNN_TRAINING),
    "fcn": ZooModel("fcn", "FCN on a ResNet-18 truncated after stage 3", {"backbone": "resnet18", "stages": 3},
                    SEMANTIC_TRAINING),
    "unet": ZooModel("unet", "U-Net, depth 4, width 16", {"depth": 4, "width": 16}, SEMANTIC_TRAINING),
}

#: Paired comparisons shipped with the zoo, (A, B): each gives B − A on the test split.
COMPARISONS: list[tuple[str, str]] = [
    ("maskrcnn", "maskrcnn-attention"),                  # does spatial attention help?
    ("maskrcnn-attention", "maskrcnn-attention-iou"),    # does the IoU loss add to BCE?
    ("maskrcnn-single-scale", "maskrcnn"),               # multi-scale fusion against single scale
    ("fcn", "maskrcnn-attention"),                       # instance against semantic models
    ("unet", "maskrcnn-attention"),
]


def content_checksum(root: str | os.PathLike) -> str:
    """sha256 of every file of a dataset folder, names and bytes: equal only for byte-identical folders."""
    root = Path(root)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        digest.update(f"{path.relative_to(root).as_posix()}\0{path.stat().st_size}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def check_data(zoo: str | Path, data: str | Path) -> str | None:
    """None when ``data`` is byte-identical to the dataset the zoo was trained on, else one sentence
    saying how it differs and what to do."""
    manifest_path = Path(zoo) / ZOO_FILE
    if not manifest_path.is_file():
        return None
    manifest = describe(zoo)
    expected = (manifest.get("dataset") or {}).get("content_sha256")
    if expected is None:
        return None
    if not Path(data).is_dir():
        return f"{data} does not exist; generate it with python -m segcore data synth --out {data}."
    if content_checksum(data) != expected:
        return (f"{data} differs from the dataset the zoo in {zoo} was trained on; delete it and run make data "
                f"(or python -m segcore data synth --out {data}) to regenerate it.")
    return None


def compact(run_dir: str | Path) -> int:
    """Ship a run: checkpoint.pt rewritten with half-precision weights (floating tensors only; they load
    back into float32 models) and last.pt, the optimizer state for resuming, removed.

    Returns:
        the size of checkpoint.pt in bytes.
    """
    import torch

    from segcore import checkpoints

    run_dir = Path(run_dir)
    path = run_dir / runs.CHECKPOINT
    content = checkpoints.load_file(path)
    content["state_dict"] = {k: (v.half() if v.is_floating_point() else v) for k, v in content["state_dict"].items()}
    content["stored_dtype"] = str(torch.float16)
    checkpoints.save_atomic(content, path)
    (run_dir / runs.LAST).unlink(missing_ok=True)
    return path.stat().st_size


def _machine() -> dict[str, Any]:
    import torch

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}


def build(out: str | Path = "data/zoo", data: str | Path = "data/shapes", *, only: list[str] | None = None,
          iterations: int | None = None, device: str = "auto", progress: bool = True) -> Path:
    """Train, compact, evaluate and compare the zoo's models; write ``out`` atomically.

    Everything is built in a temporary folder beside ``out`` and moved into place at the end, so an
    interrupted build leaves the previous zoo as it was.

    Args:
        out: the zoo folder.
        data: the built-in dataset (generated with its default seed if missing).
        only: names of ZOO to build (default all); comparisons need both of their runs.
        iterations: override every model's training length (for tests and quick looks; a shipped zoo
            uses the budgets above).
        device: "auto", "cpu" or "cuda".

    Returns:
        ``out``.
    """
    from tqdm import tqdm

    from segcore.compare import compare_runs
    from segcore.config import TrainConfig
    from segcore.data.coco import checksum
    from segcore.data.synth import generate
    from segcore.engine import train
    from segcore.evaluate import evaluate_run

    names = list(only or ZOO)
    unknown = [n for n in names if n not in ZOO]
    if unknown:
        raise SegcoreError(f"the zoo has no model {unknown[0]}; choose from {', '.join(ZOO)}.")
    out, data = Path(out), Path(data)
    started = time.time()
    if not (data / "annotations" / "instances_test.json").is_file():
        generate(data, seed=DATA_SEED, progress=progress)
    staging = out.with_name(f".{out.name}.building-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    timings: dict[str, dict[str, float]] = {}
    steps = tqdm(names, desc="zoo", disable=not progress, dynamic_ncols=True)
    try:
        for name in steps:
            spec = ZOO[name]
            steps.set_postfix_str(f"training {name}")
            training = {**spec.training, **({"max_iters": iterations} if iterations else {})}
            began = time.time()
            config = TrainConfig(model=spec.model, data=str(data), out=str(staging / name), name=name,
                                 model_options=dict(spec.options), val_split="val", seed=0, device=device,
                                 **training)
            run_dir = train(config, progress=progress)
            trained = time.time()
            size = compact(run_dir)
            steps.set_postfix_str(f"evaluating {name}")
            for split in SPLITS:
                evaluate_run(run_dir, data, split, device=device, progress=progress)
            timings[name] = {"train_s": round(trained - began, 1), "eval_s": round(time.time() - trained, 1),
                             "checkpoint_bytes": size}
        built = set(names)
        for a, b in COMPARISONS:
            if a in built and b in built:
                steps.set_postfix_str(f"comparing {b} with {a}")
                compare_runs(staging / a, staging / b, data, "test", progress=False)
        runs.write_json(staging / ZOO_FILE, {
            "command": " ".join(["python -m segcore", *sys.argv[1:]]) if sys.argv else "segcore zoo build",
            "models": {n: {"description": ZOO[n].description, "model": ZOO[n].model, "options": ZOO[n].options,
                           "training": {**ZOO[n].training, **({"max_iters": iterations} if iterations else {})},
                           **timings[n]} for n in names},
            "comparisons": [[a, b] for a, b in COMPARISONS if a in built and b in built],
            "seed": 0, "dataset": {"path": str(data), "seed": DATA_SEED, "checksum": checksum(data),
                                   "content_sha256": content_checksum(data)},
            "git_commit": runs.git_commit(), "versions": runs.library_versions(), "machine": _machine(),
            "wall_time_s": round(time.time() - started, 1), "created": runs.now(),
        })
        _relocate(staging, out, data)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _relocate(staging: Path, out: Path, data: Path) -> None:
    """Move the built zoo into place. The JSON files name folders as they were given (data/zoo and
    data/shapes from the repository's root, by default), never the staging folder or this machine's
    absolute paths, so that a clone elsewhere finds its data."""
    replacements = [(str(staging.resolve()), str(out)), (str(staging), str(out)), (str(data.resolve()), str(data))]
    for path in staging.rglob("*.json"):
        text = original = path.read_text()
        for old, new in replacements:  # absolute forms first: the relative ones are inside them
            text = text.replace(old, new)
        if text != original:
            path.write_text(text)
    atomic.replace_folder(staging, out)


def _split_metrics(zoo: Path, manifest: dict, split: str) -> dict[str, dict]:
    """Each zoo model's metrics.json on ``split``, by name, for the models evaluated on it."""
    dataset = Path(manifest["dataset"]["path"]).name
    folders = {name: runs.eval_folders(zoo / name).get(f"{dataset}-{split}") for name in manifest["models"]}
    return {name: runs.read_metrics(folder) for name, folder in folders.items() if folder is not None}


def _comparison_metrics(zoo: Path, manifest: dict, a: str, b: str, split: str = "test") -> dict | None:
    """The metrics of the shipped comparison of B with A, or None where there is none: the file segcore
    compare writes into B, <dataset>-<split>-vs-<name of A>."""
    path = runs.comparison_files(zoo / b).get(f"{Path(manifest['dataset']['path']).name}-{split}-vs-{a}")
    return None if path is None else runs.read_comparison(path)["metrics"]


def table(zoo: str | Path = "data/zoo", split: str = "test") -> str:
    """The zoo's results on ``split`` as a markdown table, from the shipped metrics (the README's table)."""
    zoo = Path(zoo)
    manifest = describe(zoo)
    rows = [("| model | mask AP | AP50 | APs | APm | APl | AP, occlusion > 0.25 | box AP | mIoU | boundary AP | "
             "latency p50 (ms) | params | checkpoint (MB) | iterations | train (min) |"),
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, m in _split_metrics(zoo, manifest, split).items():
        entry = manifest["models"][name]
        occluded = _occluded_ap(m)
        cells = [m["segm"]["AP"], m["segm"]["AP50"], m["segm"]["APs"], m["segm"]["APm"], m["segm"]["APl"], occluded,
                 m["bbox"]["AP"], m["semantic"]["mIoU"], m["boundary"]["AP"]]
        latency = m["speed"].get("total_ms_p50")
        rows.append(f"| {name} | " + " | ".join("–" if v is None else f"{v:.3f}" for v in cells)
                    + f" | {'–' if latency is None else f'{latency:.0f}'} | {m['speed']['params'] / 1e6:.1f} M"
                    + f" | {entry['checkpoint_bytes'] / 1e6:.1f} | {entry['training']['max_iters']}"
                    + f" | {entry['train_s'] / 60:.1f} |")
    return "\n".join(rows) + "\n"


def variants(manifest: dict) -> dict[str, list[str]]:
    """The zoo's models grouped by variant (its "variant" in zoo.json, or its own name), seeds in order."""
    groups: dict[str, list[tuple[int, str]]] = {}
    for name, entry in manifest["models"].items():
        variant = entry.get("variant") or name
        seed = entry.get("seed", manifest.get("seed", 0))
        groups.setdefault(variant, []).append((seed if isinstance(seed, int) else 0, name))
    return {variant: [name for _, name in sorted(members)] for variant, members in groups.items()}


#: The figures the variants table gives for each variant: (column, metrics.json section, key).
VARIANT_FIGURES = [("mask AP", "segm", "AP"), ("box AP", "bbox", "AP"), ("mIoU", "semantic", "mIoU"),
                   ("boundary AP", "boundary", "AP")]


def variant_scores(zoo: str | Path = "data/zoo", split: str = "test") -> dict[str, dict[str, dict]]:
    """Each variant's figures over its seeds on ``split``: variant -> column -> :func:`seed_spread` (mean,
    std, min, max, n), from the shipped metrics."""
    from segcore.metrics.seeds import seed_spread

    zoo = Path(zoo)
    manifest = describe(zoo)
    metrics = _split_metrics(zoo, manifest, split)
    scores = {}
    for variant, names in variants(manifest).items():
        evaluated = [metrics[n] for n in names if n in metrics]
        if evaluated:
            scores[variant] = {column: seed_spread([m[section][key] for m in evaluated
                                                    if (m.get(section) or {}).get(key) is not None])
                               for column, section, key in VARIANT_FIGURES}
    return scores


def _spread_cell(spread: dict) -> str:
    """"0.412 ± 0.006 (0.405–0.418)": a mean with its standard deviation and range over seeds."""
    if not spread["n"]:
        return "–"
    if spread["n"] == 1:
        return f"{spread['mean']:.3f}"
    return f"{spread['mean']:.3f} ± {spread['std']:.3f} ({spread['min']:.3f}–{spread['max']:.3f})"


def variants_table(zoo: str | Path = "data/zoo", split: str = "test") -> str:
    """Each variant's mean ± standard deviation (min–max) over its seeds on ``split``, as markdown."""
    scores = variant_scores(zoo, split)
    columns = [column for column, _, _ in VARIANT_FIGURES]
    rows = ["| variant | seeds | " + " | ".join(columns) + " |", "| --- | ---: |" + " --- |" * len(columns)]
    for variant, figures in scores.items():
        seeds = max(spread["n"] for spread in figures.values())
        rows.append(f"| {variant} | {seeds} | " + " | ".join(_spread_cell(figures[c]) for c in columns) + " |")
    return "\n".join(rows) + "\n"


def variant_comparison(zoo: str | Path, a: str, b: str, split: str = "test", column: str = "mask AP") -> dict:
    """Variant B against variant A on ``column``, in both ways a reviewer asks for:

    - "seeds": the difference of their seed means with Welch's 95% interval over seeds
      (:func:`segcore.metrics.seeds.seed_difference`);
    - "images": the shipped paired bootstrap over images between each variant's first seed (the runs the
      Live and Browse pages open), or None where the zoo ships no such comparison;
    - "verdict": "B" or "A" where both intervals exclude 0 on the same side, else None.
    """
    from segcore.metrics.seeds import seed_difference

    zoo = Path(zoo)
    manifest = describe(zoo)
    groups, metrics = variants(manifest), _split_metrics(zoo, manifest, split)
    section, key = next((s, k) for c, s, k in VARIANT_FIGURES if c == column)
    values = {v: [metrics[n][section][key] for n in groups[v] if n in metrics
                  and (metrics[n].get(section) or {}).get(key) is not None] for v in (a, b)}
    seeds = seed_difference(values[a], values[b])
    compared = _comparison_metrics(zoo, manifest, groups[a][0], groups[b][0], split)
    images = (compared or {}).get({"mask AP": "mask_AP", "box AP": "box_AP", "mIoU": "semantic_miou"}.get(column, ""))
    return {"seeds": seeds, "images": images, "verdict": agreed_verdict(seeds, images)}


def variant_of(run_dir: str | Path) -> tuple[Path, str] | None:
    """(the zoo folder, the variant) of a run that is one of a zoo's models, else None."""
    run_dir = Path(run_dir)
    if not (run_dir.parent / ZOO_FILE).is_file():
        return None
    try:
        manifest = describe(run_dir.parent)
    except SegcoreError:
        return None
    models = manifest.get("models")
    if not isinstance(models, dict) or run_dir.name not in models:
        return None
    return run_dir.parent, next(v for v, names in variants(manifest).items() if run_dir.name in names)


def seed_sentence(zoo: str | Path, a: str, b: str, split: str, column: str = "mask AP") -> str:
    """One sentence on variant B against variant A over their training seeds, with the verdict that needs
    both the seeds' interval and the images' (the Compare page's and the findings' words)."""
    result = variant_comparison(zoo, a, b, split, column)
    seeds = result["seeds"]
    if seeds["low"] is None:
        return (f"{column}, {b} − {a} over training seeds: {seeds['difference']:+.3f} from {seeds['n_b']} and "
                f"{seeds['n_a']} seed(s); without two seeds a side the zoo cannot say how much another training "
                f"would move it, so no verdict.")
    verdict = {"B": f"{b} better", "A": f"{a} better", None: "no verdict (the two intervals do not agree on a side)"}
    return (f"{column}, {b} − {a} over training seeds: {_interval_cell(seeds)} (Welch 95%, {seeds['n_b']} and "
            f"{seeds['n_a']} seeds); over images: {_interval_cell(result['images'])}; "
            f"{verdict[result['verdict']]}.")


def agreed_verdict(seeds: dict, images: dict | None) -> str | None:
    """"B" or "A" where the interval over seeds and the one over images both exclude 0 on that side, else None
    (a difference the images show but another training seed would not repeat is no finding)."""
    sides = [None if seeds.get("low") is None else _better(seeds), None if images is None else _better(images)]
    return sides[0] if sides[0] is not None and sides[0] == sides[1] else None


def seeded_variants_table(zoo: str | Path = "data/zoo", split: str = "test") -> str:
    """:func:`variants_table` where some variant of the zoo has several seeds, else nothing (the results
    table already gives each model's figures)."""
    if not any(len(names) > 1 for names in variants(describe(zoo)).values()):
        return ""
    return f"Each variant over its training seeds, on {split}: mean ± standard deviation (min–max).\n\n" + \
        variants_table(zoo, split)


def _occluded_ap(metrics: dict) -> float | None:
    """AP over the objects more than a quarter hidden: the two occlusion bins above 0.25, weighted alike."""
    bins = [metrics["breakdowns"]["occlusion"].get(b) for b in ("0.25-0.5", ">0.5")]
    known = [b for b in bins if b is not None]
    return sum(known) / len(known) if known else None


def _interval_cell(result: dict | None) -> str:
    """"+0.012 [-0.004, +0.030]": a difference and its interval."""
    if result is None:
        return "–"
    return f"{result['difference']:+.3f} [{result['low']:+.3f}, {result['high']:+.3f}]"


def comparisons_table(zoo: str | Path = "data/zoo") -> str:
    """The shipped paired comparisons as a markdown table: B − A with its 95% interval, per metric."""
    zoo = Path(zoo)
    manifest = describe(zoo)
    rows = ["| B − A | mask AP | box AP | semantic mIoU (per image) | verdict on mask AP |",
            "| --- | --- | --- | --- | --- |"]
    for a, b in manifest.get("comparisons", []):
        metrics = _comparison_metrics(zoo, manifest, a, b)
        if metrics is None:
            continue
        cells = [_interval_cell(metrics.get(m)) for m in ("mask_AP", "box_AP", "semantic_miou")]
        ap = metrics.get("mask_AP")
        verdict = "–" if ap is None else {"B": "B better", "A": "A better", None: NO_DIFFERENCE}[_better(ap)]
        rows.append(f"| {b} − {a} | " + " | ".join(cells) + f" | {verdict} |")
    return "\n".join(rows) + "\n"


NO_DIFFERENCE = "no real difference (the interval includes 0)"


def _better(result: dict) -> str | None:
    """"B" or "A" when the 95% interval of B − A lies wholly on one side of 0, else None."""
    return "B" if result["low"] > 0 else "A" if result["high"] < 0 else None


#: The target the issue sets for the best Mask R-CNN on the test split.
MASK_AP_TARGET = 0.50
#: What each shipped comparison asks, by (A, B).
QUESTIONS = {
    ("maskrcnn", "maskrcnn-attention"): "Does spatial attention in the mask branch help?",
    ("maskrcnn-attention", "maskrcnn-attention-iou"): "Does the Lovász IoU loss add to BCE?",
    ("maskrcnn-single-scale", "maskrcnn"): "Does multi-scale fusion (FPN) help?",
}


def findings(zoo: str | Path = "data/zoo", split: str = "test") -> str:
    """What the shipped zoo shows on ``split``, as markdown bullets written from its files: the best Mask
    R-CNN against the mask AP target, Mask R-CNN against FCN and U-Net on occluded objects and on speed,
    and the answer of each paired comparison with its interval."""
    zoo = Path(zoo)
    manifest = describe(zoo)
    metrics = _split_metrics(zoo, manifest, split)
    instance = [n for n in metrics if manifest["models"][n]["model"] == "maskrcnn"]
    semantic = [n for n in metrics if manifest["models"][n]["model"] != "maskrcnn"]
    lines = []
    if instance:
        best = max(instance, key=lambda n: metrics[n]["segm"]["AP"])
        ap = metrics[best]["segm"]["AP"]
        lines.append(f"- **Best Mask R-CNN:** {best}, mask AP {ap:.3f} on {split} against the target of "
                     f"{MASK_AP_TARGET:.2f}: {'met' if ap >= MASK_AP_TARGET else 'not met'}.")
        occluded = {n: _occluded_ap(metrics[n]) for n in metrics}
        others = [n for n in semantic if occluded[n] is not None]
        if others and occluded[best] is not None:
            higher = all(occluded[best] > occluded[n] for n in others)
            # four decimals: close scores must not read as equal where one is higher
            lines.append(f"- **Occlusion > 0.25:** {best} AP {occluded[best]:.4f} against "
                         + ", ".join(f"{n} {occluded[n]:.4f}" for n in others)
                         + f": Mask R-CNN {'higher than' if higher else 'not higher than all of'} the semantic "
                         f"baselines (point estimates, without an interval).")
        latency = {n: metrics[n].get("speed", {}).get("total_ms_p50") for n in metrics}
        timed = [n for n in instance if latency[n] is not None]
        if semantic and timed:
            fastest = min(latency[n] for n in timed)
            parts = [f"{n} {latency[n]:.0f} ms ({'faster' if latency[n] < fastest else 'not faster'})"
                     for n in semantic if latency[n] is not None]
            lines.append(f"- **Speed, median per image (batch 1, {metrics[timed[0]]['speed'].get('device', 'cpu')}):** "
                         + ", ".join(parts) + f" against the fastest Mask R-CNN's {fastest:.0f} ms.")
    for a, b in manifest.get("comparisons", []):
        question = QUESTIONS.get((a, b))
        compared = _comparison_metrics(zoo, manifest, a, b, split) if question else None
        result = (compared or {}).get("mask_AP")
        if result is None:
            continue
        answer = {"B": "yes", "A": "no: it is worse", None: "not shown: " + NO_DIFFERENCE}[_better(result)]
        lines.append(f"- **{question}** {answer}; mask AP {b} − {a} {_interval_cell(result)} (95% paired "
                     f"bootstrap over the {split} images).")
    return "\n".join(lines) + "\n" if lines else ""


def provenance(zoo: str | Path = "data/zoo") -> str:
    """One line on how the zoo was built: command, wall time, machine, versions, commit."""
    manifest = describe(zoo)
    machine, versions = manifest.get("machine", {}), manifest.get("versions", {})
    commit = (manifest.get("git_commit") or "unknown")[:10]
    return (f"Built by `{manifest.get('command')}` in {manifest['wall_time_s'] / 60:.1f} min on "
            f"{machine.get('cpu_count')} cores of {machine.get('processor')} ({machine.get('device')}), torch "
            f"{versions.get('torch')}, torchvision {versions.get('torchvision')}, commit {commit}.\n")


def readme_text(zoo: str | Path = "data/zoo", split: str = "test") -> str:
    """What goes between the README's zoo markers: how the zoo was built, the results table and the findings
    on ``split``, and the paired comparisons (always on test)."""
    return "\n".join(part for part in (provenance(zoo), table(zoo, split), comparisons_table(zoo),
                                        findings(zoo, split)) if part)


#: The README's zoo tables sit between these lines, written by ``segcore zoo table --readme README.md``.
README_MARKERS = ("<!-- zoo tables: written by python -m segcore zoo table --readme README.md -->",
                  "<!-- end of zoo tables -->")


def readme_tables(readme: str | Path) -> str | None:
    """The text between the README's zoo markers, or None without them."""
    text = Path(readme).read_text()
    begin, end = README_MARKERS
    if begin not in text or end not in text:
        return None
    return text.split(begin, 1)[1].split(end, 1)[0].strip("\n") + "\n"


def write_readme_tables(readme: str | Path, tables: str) -> None:
    """Replace the text between the README's zoo markers with ``tables``."""
    readme = Path(readme)
    text = readme.read_text()
    begin, end = README_MARKERS
    if begin not in text or end not in text:
        raise SegcoreError(f"{readme} has no zoo markers; add the lines {begin} and {end} where the tables go.")
    head, rest = text.split(begin, 1)
    atomic.write_text(readme, head + begin + "\n" + tables.strip("\n") + "\n" + end + rest.split(end, 1)[1])


def describe(zoo: str | Path = "data/zoo") -> dict[str, Any]:
    """The zoo manifest (zoo.json)."""
    return runs.read_json(Path(zoo) / ZOO_FILE, missing="has no zoo manifest; build it with segcore zoo build.",
                           damaged="build the zoo again.")

