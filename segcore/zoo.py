"""The demo model zoo: what ``segcore zoo build`` trains on the built-in dataset, and the tables and
findings written from what it shipped under data/zoo/.

The zoo answers one question, about Mask R-CNN's mask branch, so that the answer would survive a reviewer:

* **One detector** (``maskrcnn``): the plain Mask R-CNN trained end to end with the recipe of
  :mod:`segcore.training.recipes`, the same command as the README's target run.
* **Mask-branch variants on that detector, frozen** (``mask-<variant>-seed<k>``): each trains a fresh mask
  branch (``--train-only mask_head``) from the same initial weights of its seed, with several seeds. The
  detections are the detector's, so box AP is the same for all of them and a difference in mask AP is the
  mask branch's alone. Their checkpoints hold the mask branch only and name the detector's
  (:func:`segcore.runs.checkpoints.with_base`).
* **Two end-to-end ablations**, for the questions about the whole network: the single-scale model (no FPN)
  and end-to-end spatial attention, each against the plain model trained on the same shorter schedule
  (``maskrcnn-short``), since the detector's own schedule would not fit the build's budget three times.
* **The semantic baselines** FCN and U-Net, on their recipes, with as many passes over the training images
  as the detector.

The test split is only ever evaluated, never used to choose anything. ``zoo.json`` records each model's
command, seed, wall time and device, the dataset's checksums, and the schedules (:data:`SCHEDULES`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segcore import atomic, runs
from segcore.errors import SegcoreError

ZOO_FILE = "zoo.json"
#: The built-in dataset the zoo is trained on: ``segcore data synth`` with its defaults.
DATA_SEED = 0
SPLITS = ("val", "test")
#: The splits the other models are evaluated on: the test split alone, since an evaluation's predictions.json
#: is most of a model's size in the repository (1.7 MB, 0.8 MB in git, for a mask branch's 200 test images)
#: and the zoo's size budget holds one for each model; each run's validation.csv keeps its val curve.
TEST_ONLY = ("test",)

#: The name of the shared detector, whose checkpoint every mask-branch variant freezes.
DETECTOR = "maskrcnn"
#: Training options (TrainConfig fields) of each group, over each model's recipe; batch 4 throughout.
DETECTOR_TRAINING: dict[str, Any] = {"max_iters": 20000, "val_every": 1000}
MASK_BRANCH_TRAINING: dict[str, Any] = {"train_only": "mask_head", "max_iters": 3000, "val_every": 1000}
E2E_TRAINING: dict[str, Any] = {"max_iters": 2000, "val_every": 1000}
# 20 passes over the 1,000 training images, a quarter of the detector's 80: at the 14.0 and 12.9 images/s
# measured for the FCN and the U-Net on 2 cores, the detector's passes would take 95 and 104 minutes each, and
# the build would no longer fit 8 hours
SEMANTIC_TRAINING: dict[str, Any] = {"max_iters": 5000, "val_every": 1000}
#: Seeds of each mask-branch variant (the first is the one the Live and Browse pages open).
SEEDS = (0, 1, 2)
#: What zoo.json and the README say about the schedules.
SCHEDULES = {
    "detector": f"{DETECTOR_TRAINING['max_iters']} iterations end to end (the README's target run)",
    "mask branches": f"{MASK_BRANCH_TRAINING['max_iters']} iterations each, mask branch alone on the frozen "
                     f"detector, seeds {', '.join(map(str, SEEDS))}",
    "end-to-end ablations": f"{E2E_TRAINING['max_iters']} iterations each, one shorter schedule shared by the "
                            f"single-scale and attention models and their plain reference maskrcnn-short, so that "
                            f"the build fits 8 hours on 2 CPU cores",
    "baselines": f"{SEMANTIC_TRAINING['max_iters']} iterations at batch 4 ("
                 f"{SEMANTIC_TRAINING['max_iters'] * 4 // 1000} passes over the training images, against the "
                 f"detector's {DETECTOR_TRAINING['max_iters'] * 4 // 1000}), so that the build fits 8 hours on 2 "
                 f"CPU cores",
}


@dataclass
class ZooModel:
    """One model of the zoo: what it is and how it is trained.

    Attributes:
        model: a name of :data:`segcore.models.MODELS`.
        options: model options over the model's defaults.
        training: training options over the model's recipe.
        variant: the group its seeds share (its own name where it has one seed).
        seed: the training seed.
        detector: the zoo model whose checkpoint it freezes (mask-branch variants), else None.
        splits: the splits it is evaluated on (the detector on val too, for ``recipe_study.py diagnose``).
    """

    model: str
    description: str
    options: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    variant: str = ""
    seed: int = 0
    detector: str | None = None
    splits: tuple[str, ...] = TEST_ONLY


#: The mask-branch variants: name -> (model options, description).
MASK_BRANCHES: dict[str, tuple[dict[str, Any], str]] = {
    "plain": ({}, "the plain conv stack"),
    "attention": ({"attention": "spatial"}, "spatial attention (CenterMask's SAM)"),
    "se": ({"squeeze_excitation": True}, "squeeze-excitation"),
    "attention-se": ({"attention": "spatial", "squeeze_excitation": True}, "spatial attention with squeeze-excitation"),
    "jaccard": ({"iou_loss": "jaccard"}, "BCE with the soft Jaccard loss"),
    "lovasz": ({"iou_loss": "lovasz"}, "BCE with the Lovász hinge"),
}


def _zoo() -> dict[str, ZooModel]:
    models = {DETECTOR: ZooModel("maskrcnn", "Mask R-CNN end to end, plain mask branch: the shared detector",
                                 training=DETECTOR_TRAINING, splits=SPLITS)}
    # seed-major: the variants of one seed share one cache of the detector's features
    for seed in SEEDS:
        for variant, (options, what) in MASK_BRANCHES.items():
            models[f"mask-{variant}-seed{seed}"] = ZooModel(
                "maskrcnn", f"mask branch: {what}, on the frozen detector", options, MASK_BRANCH_TRAINING,
                variant=f"mask-{variant}", seed=seed, detector=DETECTOR)
    models["maskrcnn-short"] = ZooModel("maskrcnn", "Mask R-CNN end to end, plain, on the ablations' schedule",
                                        training=E2E_TRAINING)
    models["maskrcnn-single-scale"] = ZooModel("maskrcnn", "Mask R-CNN end to end on single-scale features (no FPN)",
                                               {"fpn": False}, E2E_TRAINING)
    models["maskrcnn-attention"] = ZooModel("maskrcnn", "Mask R-CNN end to end with spatial attention",
                                            {"attention": "spatial"}, E2E_TRAINING)
    # cut after stage 3 and at width 16, the baselines' checkpoints fit the zoo's size budget (5.6 and 3.9 MB in
    # half precision, against 22 MB for a whole ResNet-18)
    models["fcn"] = ZooModel("fcn", "FCN on a ResNet-18 truncated after stage 3", {"stages": 3},
                             SEMANTIC_TRAINING)
    models["unet"] = ZooModel("unet", "U-Net, depth 4, width 16", {"width": 16}, SEMANTIC_TRAINING)
    for name, spec in models.items():
        spec.variant = spec.variant or name
    return models


ZOO: dict[str, ZooModel] = _zoo()

#: Paired comparisons shipped with the zoo, (A, B): each gives B − A on the test split, between the first
#: seeds of variants (the seeds' own interval comes from every seed's metrics).
COMPARISONS: list[tuple[str, str]] = [
    *[(f"mask-plain-seed{SEEDS[0]}", f"mask-{v}-seed{SEEDS[0]}") for v in MASK_BRANCHES if v != "plain"],
    ("maskrcnn-short", "maskrcnn-attention"),       # attention trained end to end
    ("maskrcnn-single-scale", "maskrcnn-short"),    # the FPN against single scale
    ("fcn", DETECTOR),                              # instance against semantic models
    ("unet", DETECTOR),
]
#: What each comparison of variants asks, by (variant A, variant B).
QUESTIONS = {
    ("mask-plain", "mask-attention"): "Does spatial attention in the mask branch help?",
    ("mask-plain", "mask-se"): "Does squeeze-excitation in the mask branch help?",
    ("mask-plain", "mask-attention-se"): "Do attention and squeeze-excitation together help?",
    ("mask-plain", "mask-jaccard"): "Does the soft Jaccard loss add to BCE?",
    ("mask-plain", "mask-lovasz"): "Does the Lovász loss add to BCE?",
    ("maskrcnn-short", "maskrcnn-attention"): "Does spatial attention help when the whole network trains?",
    ("maskrcnn-single-scale", "maskrcnn-short"): "Does multi-scale fusion (FPN) help?",
}


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


def compact(run_dir: str | Path, base: str | Path | None = None) -> int:
    """Ship a run: checkpoint.pt rewritten with int8 weights and float16 other tensors
    (:func:`segcore.runs.checkpoints.quantized`; they load back into float32 models) and last.pt, the optimizer
    state for resuming, removed. With ``base`` (the shared detector's shipped checkpoint, for a mask-branch
    variant) only the tensors that differ from it are kept, and the file names it
    (:func:`segcore.runs.checkpoints.with_base`). The zoo evaluates the compacted checkpoint, so its numbers are
    those of the weights it ships.

    Returns:
        the size of checkpoint.pt in bytes.
    """
    from segcore.runs import checkpoints

    run_dir = Path(run_dir)
    path = run_dir / runs.CHECKPOINT
    content = checkpoints.load_file(path)
    content.pop(checkpoints.BASE, None)
    if base is not None:
        content = checkpoints.with_base(content, path, base)
    content = checkpoints.quantized(content)
    content["stored_dtype"] = "int8 weights, float16 others"
    checkpoints.save_atomic(content, path)
    (run_dir / runs.LAST).unlink(missing_ok=True)
    return path.stat().st_size


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


def opens_first(run_dir: str | Path) -> bool:
    """Whether the pages open this run by default: any run but a zoo variant's later seeds (the first seed of
    each variant is the one Live and Browse show; the others are there for the seeds' spread)."""
    try:
        found = variant_of(run_dir)
        if found is None:
            return True
        zoo, variant = found
        return variants(describe(zoo))[variant][0] == Path(run_dir).name
    except (AttributeError, TypeError, KeyError):  # a zoo.json of the wrong inner shape: the run opens as any
        return True


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


#: The targets of the zoo issue on the test split: the best Mask R-CNN, and every mask-branch variant.
MASK_AP_TARGET = 0.50
VARIANT_AP_TARGET = 0.40


def _variant_names(manifest: dict) -> dict[str, str]:
    """Each zoo model's variant (its own name where it has none)."""
    return {name: (entry.get("variant") or name) for name, entry in manifest["models"].items()}


def _question(manifest: dict, a: str, b: str) -> str | None:
    """The question a comparison of runs A and B asks, by their variants."""
    variant = _variant_names(manifest)
    return QUESTIONS.get((variant.get(a, a), variant.get(b, b)))


def findings(zoo: str | Path = "data/zoo", split: str = "test") -> str:
    """What the shipped zoo shows on ``split``, as markdown bullets written from its files: the best Mask
    R-CNN and the mask-branch variants against the targets, the answer of each question with the interval
    over images and, for variants with seeds, the one over seeds (a "yes" needs both), where the attention
    looks, and Mask R-CNN against FCN and U-Net on occluded objects and on speed."""
    zoo = Path(zoo)
    manifest = describe(zoo)
    metrics = _split_metrics(zoo, manifest, split)
    instance = [n for n in metrics if manifest["models"][n]["model"] == "maskrcnn"]
    semantic = [n for n in metrics if manifest["models"][n]["model"] != "maskrcnn"]
    groups = variants(manifest)
    lines = []
    if instance:
        best = max(instance, key=lambda n: metrics[n]["segm"]["AP"])
        ap = metrics[best]["segm"]["AP"]
        lines.append(f"- **Best Mask R-CNN:** {best}, mask AP {ap:.3f} on {split} against the target of "
                     f"{MASK_AP_TARGET:.2f}: {'met' if ap >= MASK_AP_TARGET else 'not met'}.")
        seeded = {v: names for v, names in groups.items() if len(names) > 1}
        if seeded:
            scores = variant_scores(zoo, split)
            lowest = min((v for v in seeded if v in scores), key=lambda v: scores[v]["mask AP"]["mean"], default=None)
            if lowest is not None:
                low = scores[lowest]["mask AP"]
                lines.append(f"- **Every mask-branch variant ≥ {VARIANT_AP_TARGET:.2f}** (seed means): "
                             f"{'met' if low['mean'] >= VARIANT_AP_TARGET else 'not met'}; the lowest is "
                             f"{lowest}, {_spread_cell(low)} over {low['n']} seeds.")
    variant = _variant_names(manifest)
    for a, b in manifest.get("comparisons", []):
        question = _question(manifest, a, b)
        compared = _comparison_metrics(zoo, manifest, a, b, split) if question else None
        result = (compared or {}).get("mask_AP")
        if result is None:
            continue
        va, vb = variant[a], variant[b]
        if len(groups.get(va, [])) > 1 and len(groups.get(vb, [])) > 1:
            lines.append(f"- **{question}** {seed_sentence(zoo, va, vb, split)}")
        else:
            answer = {"B": "yes", "A": "no: it is worse", None: "not shown: " + NO_DIFFERENCE}[_better(result)]
            planned = max(sum(spec.variant == v for spec in ZOO.values()) for v in (va, vb))
            if planned > 1 and _better(result) is not None:  # a zoo still landing: "yes" needs the seeds too
                side = "B" if _better(result) == "B" else "A"
                answer = (f"not yet: the images favour {side}, but a verdict also needs the interval over the "
                          f"{planned} training seeds, which have not all landed")
            lines.append(f"- **{question}** {answer}; mask AP {b} − {a} {_interval_cell(result)} (95% paired "
                         f"bootstrap over the {split} images; one training seed a side).")
    lines.extend(_attention_lines(manifest, metrics, groups))
    if instance:
        best = max(instance, key=lambda n: metrics[n]["segm"]["AP"])
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
    return "\n".join(lines) + "\n" if lines else ""


def _attention_lines(manifest: dict, metrics: dict[str, dict], groups: dict[str, list[str]]) -> list[str]:
    """Does the attention look at the object? One bullet per attention variant's first seed: its mean focus
    with the interval over images, and whether a more focused attention goes with a better mask."""
    lines = []
    for variant, names in groups.items():
        focus = (metrics.get(names[0]) or {}).get("attention") or {}
        if focus.get("focus_mean") is None:
            continue
        interval = focus.get("focus_interval")
        above = "" if not interval else (" (above 1)" if interval[0] > 1 else " (below 1)" if interval[1] < 1
                                         else " (not clearly away from 1)")
        where = f" [{interval[0]:.2f}, {interval[1]:.2f}]{above}" if interval else ""
        sentence = (f"- **Does {variant}'s attention look at the object?** {names[0]}: mean focus "
                    f"{focus['focus_mean']:.2f}{where} over {focus['instances']} matched detections (1 is no focus; "
                    f"95% bootstrap over images)")
        rho, rho_interval = focus.get("focus_iou_spearman"), focus.get("focus_iou_spearman_interval")
        if rho is not None:
            tie = ("" if not rho_interval else f" [{rho_interval[0]:+.2f}, {rho_interval[1]:+.2f}]")
            goes = ("" if not rho_interval
                    else "; a more focused attention goes with a better mask" if rho_interval[0] > 0
                    else "; a more focused attention goes with a worse mask" if rho_interval[1] < 0
                    else "; no clear tie between focus and mask quality")
            sentence += f"; Spearman's ρ of focus with mask IoU {rho:+.2f}{tie}{goes}"
        lines.append(sentence + ".")
    return lines


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

