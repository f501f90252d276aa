"""``segcore zoo build``: train, compact, evaluate, compare and land the zoo's models (:data:`segcore.zoo.ZOO`),
one after another, in as many sittings as it takes.

Each model is built in a staging folder outside the work tree (``--staging``, default
~/.cache/segcore/zoo-build), so that a fresh checkout does not remove it:

* a model already trained there is not trained again (its run.json must hold the zoo's options and recipe,
  else the build says which differs and stops); one interrupted goes on from its last.pt;
* evaluations and comparisons already written are kept;
* as soon as a model is done it **lands** in the zoo folder: a copy whose files name the zoo's folder, put in
  place in one step, and zoo.json rewritten with the models landed so far. A zoo can so be committed model
  by model, and what a sitting finished is never lost.

The detector is compacted (half precision) before its variants train on it, so the shipped detector is the
one they froze, and each variant's checkpoint keeps its mask branch alone and names the detector's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from segcore import atomic, runs
from segcore.errors import SegcoreError
from segcore.zoo import (
    COMPARISONS,
    DATA_SEED,
    SCHEDULES,
    SEEDS,
    ZOO,
    ZOO_FILE,
    ZooModel,
    compact,
    content_checksum,
)

DEFAULT_STAGING = Path.home() / ".cache" / "segcore" / "zoo-build"
#: The build's own record in the staging folder: each model's evaluation time.
RECORD = "build.json"
#: Training options whose value a staged run must share with the zoo's to be kept (with the model options).
KEPT_IF_EQUAL = ("model", "max_iters", "batch_size", "optimizer", "lr", "schedule", "weight_decay", "warmup_iters",
                 "grad_clip", "seed", "augment", "scale_jitter", "train_only", "val_every", "val_images", "train_split",
                 "val_split")


def build(out: str | Path = "data/zoo", data: str | Path = "data/shapes", *, staging: str | Path | None = None,
          only: list[str] | None = None, iterations: int | None = None, device: str = "auto",
          progress: bool = True) -> Path:
    """Build the zoo's models (all, or ``only`` these and the detector they freeze) into ``out``.

    Args:
        out: the zoo folder: new, empty, or a zoo (its models not in :data:`ZOO` are removed as the first
            model lands).
        data: the built-in dataset (generated with its default seed if missing).
        staging: where the models are trained and evaluated before they land.
        only: names of ZOO to build; comparisons need both of their runs.
        iterations: every model's training length instead of the zoo's (tests and quick looks).
        device: "auto", "cpu" or "cuda".

    Returns:
        ``out``.
    """
    from tqdm import tqdm

    from segcore.data.synth import generate
    from segcore.models.mask_branch import forget_kept

    names = _ordered(only)
    out, data = Path(out), Path(data)
    staging = Path(staging) if staging is not None else DEFAULT_STAGING
    if out.exists() and (not out.is_dir() or any(out.iterdir()) and not (out / ZOO_FILE).is_file()):
        raise SegcoreError(f"{out} holds other files and no {ZOO_FILE}; give a new or empty folder, or a zoo's, "
                           f"as --out.")
    if not (data / "annotations" / "instances_test.json").is_file():
        generate(data, seed=DATA_SEED, progress=progress)
    staging.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    record = runs.read_json(staging / RECORD, missing="", damaged="delete it, and the build times the evaluations "
                            "from now on.") if (staging / RECORD).is_file() else {}
    steps = tqdm(names, desc="zoo", disable=not progress, dynamic_ncols=True)
    try:
        for name in steps:
            spec, folder = ZOO[name], staging / name
            steps.set_postfix_str(f"training {name}")
            _train(name, spec, folder, data, staging, _training(spec, iterations), device, progress)
            if (folder / runs.LAST).exists():  # trained, not yet compacted
                compact(folder, base=staging / spec.detector / runs.CHECKPOINT if spec.detector else None)
            began = time.time()
            for split in spec.splits:
                if runs.eval_name(data, split) not in runs.eval_folders(folder):
                    steps.set_postfix_str(f"evaluating {name} on {split}")
                    from segcore.evaluation.evaluate import evaluate_run

                    evaluate_run(folder, data, split, device=device, progress=progress)
            spent = record.get(name, {}).get("eval_s", 0.0) + time.time() - began
            record.setdefault(name, {})["eval_s"] = round(spent, 1)
            runs.write_json(staging / RECORD, record)
            touched = {name} | _compare(staging, data, names)
            for landed in sorted(touched):
                _land(staging, out, landed, data)
            _write_manifest(out, staging, data, names, record)
    finally:
        forget_kept()
    return out


def _ordered(only: list[str] | None) -> list[str]:
    """The models to build in the zoo's order, each variant's detector added before it."""
    names = list(only or ZOO)
    unknown = [n for n in names if n not in ZOO]
    if unknown:
        raise SegcoreError(f"the zoo has no model {unknown[0]}; choose from {', '.join(ZOO)}.")
    wanted = set(names) | {ZOO[n].detector for n in names if ZOO[n].detector}
    return [n for n in ZOO if n in wanted]


def _training(spec: ZooModel, iterations: int | None) -> dict[str, Any]:
    return {**spec.training, **({"max_iters": iterations} if iterations else {})}


def _layer(name: str, spec: ZooModel, folder: Path, data: Path, staging: Path, training: dict, device: str) -> dict:
    """The model's options as one layer of :func:`segcore.training.config.make_train_config`."""
    layer = {"model": spec.model, "data": str(data), "out": str(folder), "name": name, "seed": spec.seed,
             "device": device, **spec.options, **training}
    if spec.detector:
        layer["weights"] = str(staging / spec.detector / runs.CHECKPOINT)
    return layer


def _train(name: str, spec: ZooModel, folder: Path, data: Path, staging: Path, training: dict, device: str,
           progress: bool) -> None:
    """Train the model in ``folder``, unless it is trained there already with the zoo's options."""
    from segcore.training.config import make_train_config
    from segcore.training.loop import train

    config = make_train_config(_layer(name, spec, folder, data, staging, training, device))
    manifest = runs.read_run(folder) if (folder / runs.RUN_FILE).is_file() else None
    if manifest is not None:
        _check_staged(folder, manifest, config)
    if manifest is None or manifest.get("status") != "finished":
        config = dataclasses.replace(config, resume=(folder / runs.LAST).is_file())
        train(config, progress=progress)
        manifest = runs.read_run(folder)
    if manifest.get("name") != name:  # a run trained elsewhere by the same command (the README's target run)
        runs.write_run(folder, {**manifest, "name": name})


def _check_staged(folder: Path, manifest: dict, config) -> None:
    """Refuse a staged run trained with other options than the zoo's (an older recipe, another length)."""
    from segcore.models import model_options

    # a key that a run.json lacks was written before the option existed, when segcore did what its default does
    training = manifest.get("training") if isinstance(manifest.get("training"), dict) else {}
    wanted = {**dataclasses.asdict(config), "model": config.model}
    defaults = {f.name: f.default for f in dataclasses.fields(config) if f.default is not dataclasses.MISSING}
    recorded = {**defaults, **training, "model": manifest.get("model")}
    for key in KEPT_IF_EQUAL:
        if recorded.get(key) != wanted.get(key):
            _stale(folder, key, recorded.get(key), wanted.get(key))
    options = model_options(config.model, **config.model_options)
    stored = manifest.get("options") if isinstance(manifest.get("options"), dict) else {}
    stored = {**dataclasses.asdict(model_options(config.model)), **stored}
    for key, value in dataclasses.asdict(options).items():
        if stored.get(key) != value:
            _stale(folder, key, stored.get(key), value)


def _stale(folder: Path, key: str, found: Any, wanted: Any) -> None:
    raise SegcoreError(f"the staged run {folder} was trained with {key}={found!r}, not the zoo's {wanted!r}; delete "
                       f"{folder} (or give another --staging) to train it again.")


def _compare(staging: Path, data: Path, names: list[str]) -> set[str]:
    """Write the comparisons whose two runs are evaluated and which are missing; the runs B written into."""
    from segcore.evaluation.compare import compare_runs

    written = set()
    for a, b in COMPARISONS:
        if a in names and b in names and all(_evaluated(staging / n, data) for n in (a, b)):
            stem = runs.comparison_stem(runs.eval_name(data, "test"), a)
            if stem not in runs.comparison_files(staging / b):
                compare_runs(staging / a, staging / b, data, "test", progress=False)
                written.add(b)
    return written


def _evaluated(folder: Path, data: Path) -> bool:
    return folder.is_dir() and not (folder / runs.LAST).exists() and \
        all(runs.eval_name(data, s) in runs.eval_folders(folder) for s in ZOO[folder.name].splits)


def _land(staging: Path, out: Path, name: str, data: Path) -> None:
    """Copy the staged model into the zoo in one step. Its files name the zoo's folder and the dataset as they
    were given (data/zoo and data/shapes from the repository's root, by default), never the staging folder
    or this machine's absolute paths, so that a clone elsewhere finds its data."""
    landing = out / f".{name}.landing-{os.getpid()}"
    shutil.rmtree(landing, ignore_errors=True)
    shutil.copytree(staging / name, landing, ignore=shutil.ignore_patterns(runs.LAST, ".*"))
    replacements = [(str(staging.resolve()), str(out)), (str(staging), str(out)), (str(data.resolve()), str(data))]
    for path in landing.rglob("*.json"):
        text = original = path.read_text()
        for old, new in replacements:  # absolute forms first: the relative ones are inside them
            text = text.replace(old, new)
        if text != original:
            path.write_text(text)
    atomic.replace_folder(landing, out / name)


def _landed(out: Path, staging: Path, data: Path, names: list[str]) -> list[str]:
    """The models of this build that are in the zoo folder, in the zoo's order."""
    return [n for n in names if (out / n / runs.RUN_FILE).is_file() and _evaluated(staging / n, data)]


def _write_manifest(out: Path, staging: Path, data: Path, names: list[str], record: dict) -> None:
    """zoo.json with the models landed so far; run folders of an earlier zoo that this one has not are removed."""
    from segcore.data.coco import checksum

    landed = _landed(out, staging, data, names)
    previous = runs.read_json(out / ZOO_FILE, missing="", damaged="delete it, and build the zoo again.") \
        if (out / ZOO_FILE).is_file() else {}
    before = previous.get("models") if isinstance(previous.get("models"), dict) else {}
    # models an earlier sitting landed under these schedules and this one did not build (a partial --only)
    kept = {n: e for n, e in before.items() if n in ZOO and n not in landed and isinstance(e, dict)
            and (out / n / runs.RUN_FILE).is_file() and e.get("schedules_version") == _schedules_version()}
    models = {**kept, **{n: _entry(out, n, record) for n in landed}}
    models = {n: models[n] for n in ZOO if n in models}
    for folder in out.iterdir():
        if folder.is_dir() and folder.name not in models and (folder / runs.RUN_FILE).is_file():
            shutil.rmtree(folder)  # a model of an earlier zoo: its files are in git's history
    pairs = [[a, b] for a, b in COMPARISONS if a in models and b in models
             and runs.comparison_stem(runs.eval_name(data, "test"), a) in runs.comparison_files(out / b)]
    runs.write_json(out / ZOO_FILE, {
        "command": " ".join(["python -m segcore", *sys.argv[1:]]) if sys.argv[1:] else "python -m segcore zoo build",
        "models": models, "comparisons": pairs, "seeds": list(SEEDS), "schedules": SCHEDULES,
        "dataset": {"path": str(data), "seed": DATA_SEED, "checksum": checksum(data),
                    "content_sha256": content_checksum(data)},
        "git_commit": runs.git_commit(), "versions": runs.library_versions(), "machine": _machine(),
        # the models' own times, over every sitting, so that an interrupted build is not counted twice
        "wall_time_s": round(sum(e["train_s"] + e["eval_s"] for e in models.values()), 1), "created": runs.now(),
    })


def _schedules_version() -> str:
    """A digest of the schedules: a model landed under other schedules is not kept by a partial build."""
    return hashlib.sha256(json.dumps(SCHEDULES, sort_keys=True).encode()).hexdigest()[:12]


def _entry(out: Path, name: str, record: dict) -> dict[str, Any]:
    """zoo.json's record of one landed model, from its run.json."""
    spec, manifest = ZOO[name], runs.read_run(out / name)
    training = manifest.get("training") or {}
    return {"description": spec.description, "model": spec.model, "variant": spec.variant, "seed": spec.seed,
            "detector": spec.detector, "options": spec.options,
            "training": {k: training.get(k) for k in KEPT_IF_EQUAL if k in training and k != "model"},
            "command": train_command(out, name, spec, training),
            "train_s": float(manifest.get("wall_time_s") or 0.0),
            "eval_s": float(record.get(name, {}).get("eval_s", 0.0)),
            "device": manifest.get("device"), "precision": manifest.get("precision"),
            "iterations": manifest.get("iterations_done"),
            "checkpoint_bytes": (out / name / runs.CHECKPOINT).stat().st_size,
            "schedules_version": _schedules_version()}


def train_command(out: Path, name: str, spec: ZooModel, training: dict) -> str:
    """The ``segcore train`` command line that trains the model as the zoo did."""
    parts = ["python -m segcore train", f"--model {spec.model}", f"--data {training.get('data', 'data/shapes')}",
             f"--out {out / name}", f"--seed {spec.seed}"]
    for key in ("max_iters", "val_every", "train_only"):
        if training.get(key) is not None:
            parts.append(f"--{key.replace('_', '-')} {training[key]}")
    if spec.detector:
        parts.append(f"--weights {out / spec.detector / runs.CHECKPOINT}")
    for key, value in spec.options.items():
        flag = "--" + key.replace("_", "-")
        parts.append(flag if value is True else f"--no-{flag[2:]}" if value is False else f"{flag} {value}")
    return " ".join(parts)


def _machine() -> dict[str, Any]:
    import torch

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}
