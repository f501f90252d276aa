"""The recipe study: validation mask AP (Mask R-CNN) or mIoU (FCN, U-Net) against CPU minutes, one lever at a
time against each model's default recipe, all from seed 0 on the built-in data.

    .venv/bin/python docs/recipe_study.py run [--only maskrcnn/default ...] [--out ~/segcore-runs/study]
    .venv/bin/python docs/recipe_study.py report [--out ~/segcore-runs/study] [--readme README.md]
    .venv/bin/python docs/recipe_study.py diagnose RUN_DIR [--split val]

``run`` trains each candidate with ``segcore train`` (one process each, never two at once), skipping the
finished ones and resuming an interrupted one from its last.pt, so that the study can be run in several
sittings and from a ``git worktree``. Each candidate changes one lever of its model's recipe
(:mod:`segcore.training.recipes` and the model's defaults) and trains as many iterations as the default, so that the
minutes axis shows what the lever costs. ``report`` draws the curves (docs/recipe_study.png, through
Debian's chromium) and writes the table of what each lever was worth between the README's markers.
``diagnose`` evaluates a run's checkpoint on the validation split and says where its mask AP is lost:
by object size and occlusion, and which TIDE error types its false positives are.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from segcore import runs
from segcore.training.validation import SELECTION_METRIC

ROOT = Path(__file__).resolve().parents[1]


#: the name of a model's long run: drawn on its own figure, since its minutes dwarf the levers'
LONG = "long"
#: model -> (training iterations of every candidate, iterations between validations)
LENGTHS = {"maskrcnn": (2000, 500), "fcn": (2000, 500), "unet": (2000, 500)}
#: model -> candidate name -> the options it changes (a flat config file's keys: training or model options)
CANDIDATES: dict[str, dict[str, dict]] = {
    "maskrcnn": {
        "default": {},
        "sgd lr 0.02": {"optimizer": "sgd", "lr": 0.02, "weight_decay": 1e-4},
        "adamw lr 3e-4": {"lr": 3e-4},
        "adamw lr 2e-3": {"lr": 2e-3},
        "groupnorm": {"norm": "group"},
        "no warm-up": {"warmup_iters": 0},
        "warm-up 1000": {"warmup_iters": 1000},
        "no augmentation": {"augment": False},
        "scale jitter 0.5": {"scale_jitter": 0.5},
        "anchors 8-64": {"anchor_sizes": [8, 16, 32, 64]},
        "box RoIs 256": {"box_batch_size_per_image": 256},
        "mask RoIs 16": {"mask_positives_per_image": 16},
        "images 384": {"min_size": 384, "max_size": 768},
        # the target run: the recipe on a schedule of about 4 hours, validated on the whole val split
        LONG: {"max_iters": 20000, "val_every": 1000},
    },
    "fcn": {
        "default": {},
        "adamw lr 3e-3": {"lr": 3e-3},
        "adamw lr 3e-4": {"lr": 3e-4},
        "output stride 16": {"output_stride": 16},
        # the zoo's FCN: a quarter of the weights, so that its checkpoint fits the zoo's size budget
        "stages 3": {"stages": 3},
        "no augmentation": {"augment": False},
    },
    "unet": {
        "default": {},
        "adamw lr 3e-3": {"lr": 3e-3},
        "adamw lr 3e-4": {"lr": 3e-4},
        "width 16": {"width": 16},
        "no augmentation": {"augment": False},
    },
}
#: validation.csv's column that each model is judged by
JUDGED_BY = {model: f"val_{SELECTION_METRIC['semantic' if model != 'maskrcnn' else 'instance']}" for model in LENGTHS}
README_START, README_END = "<!-- recipe-study:start -->", "<!-- recipe-study:end -->"


def run_dir(out: Path, model: str, name: str) -> Path:
    return out / model / name.replace(" ", "_")


def config_of(model: str, name: str, data: str) -> dict:
    """The candidate's options as a config file holds them."""
    iterations, every = LENGTHS[model]
    return {"model": model, "data": data, "max_iters": iterations, "val_every": every, "seed": 0,
            **CANDIDATES[model][name]}


def train_candidate(out: Path, model: str, name: str, data: str) -> None:
    """Train one candidate to its end, resuming what an earlier sitting left."""
    folder = run_dir(out, model, name)
    manifest = folder / runs.RUN_FILE
    if manifest.exists() and json.loads(manifest.read_text()).get("status") == "finished":
        print(f"{model}/{name}: finished already", flush=True)
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as file:
        yaml.safe_dump(config_of(model, name, data), file)
    command = [sys.executable, "-m", "segcore", "train", "--config", file.name, "--out", str(folder), "--no-progress"]
    if (folder / runs.LAST).exists():
        command.append("--resume")
    print(f"{model}/{name}: {' '.join(command)}", flush=True)
    try:
        subprocess.run(command, check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        os.unlink(file.name)


def curves(out: Path) -> dict[str, dict[str, object]]:
    """model -> candidate -> its validation.csv (a DataFrame), for the candidates that have one."""
    found: dict[str, dict[str, object]] = {}
    for model, candidates in CANDIDATES.items():
        for name in candidates:
            table = runs.read_validation(run_dir(out, model, name))
            if not table.empty:
                found.setdefault(model, {})[name] = table
    return found


def table_rows(found: dict[str, dict[str, object]]) -> list[str]:
    """The README's table: each candidate's last and best validation score, its minutes, and the difference
    of its last score from the default's."""
    lines = ["| model | candidate | changes | iterations | minutes | last | best | last − default's |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for model, tables in found.items():
        column = JUDGED_BY[model]
        default = tables.get("default")
        base = float(default[column].iloc[-1]) if default is not None else None
        for name, table in tables.items():
            last = float(table[column].iloc[-1])
            change = ", ".join(f"{k}={v}" for k, v in CANDIDATES[model][name].items()) or "the recipe"
            done = int(table["iteration"].iloc[-1])
            difference = f"{last - base:+.3f}" if base is not None and name != "default" else ""
            lines.append(f"| {model} | {name} | {change} | {done} | {float(table['minutes'].iloc[-1]):.1f} | "
                         f"{last:.3f} | {float(table[column].max()):.3f} | {difference} |")
    return lines


def figure(found: dict[str, dict[str, object]]):
    """One panel per model: the judged score against minutes, a line per candidate (``found`` may hold
    the long runs alone, or the levers alone)."""
    from plotly.subplots import make_subplots

    models = list(found)
    plot = make_subplots(rows=1, cols=len(models), subplot_titles=[
        f"{m}: validation {JUDGED_BY[m].removeprefix('val_').replace('_', ' ')}" for m in models])
    for col, model in enumerate(models, start=1):
        for name, table in found[model].items():
            plot.add_scatter(x=table["minutes"], y=table[JUDGED_BY[model]], name=f"{model}: {name}",
                             mode="lines+markers", row=1, col=col,
                             line={"width": 4 if name == "default" else 1.5})
        plot.update_xaxes(title_text="minutes on 2 CPU cores", row=1, col=col)
    plot.update_layout(width=700 * len(models), height=600, template="plotly_white")
    return plot


def draw(found: dict[str, dict[str, object]], png: Path) -> None:
    """The figure of ``found`` as a PNG, drawn by plotly in Debian's chromium."""
    from dashboard.browser import chromium

    with tempfile.TemporaryDirectory() as folder:
        html = Path(folder) / "study.html"
        figure(found).write_html(html, include_plotlyjs=True)
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 700 * len(found) + 40, "height": 640})
            page.goto(html.as_uri())
            page.wait_for_timeout(1500)
            page.screenshot(path=str(png), full_page=True)
    print(f"wrote {png}")


def report(out: Path, png: Path, readme: Path | None) -> None:
    found = curves(out)
    if not found:
        raise SystemExit(f"{out} holds no study runs yet; run `docs/recipe_study.py run` first.")
    lines = table_rows(found)
    print("\n".join(lines))
    levers = {m: {n: t for n, t in tables.items() if n != LONG} for m, tables in found.items()}
    long = {m: {LONG: tables[LONG]} for m, tables in found.items() if LONG in tables}
    levers = {m: t for m, t in levers.items() if t}
    if levers:
        draw(levers, png)
    if long:
        draw(long, png.with_name(png.stem + "_long.png"))
    if readme is not None:
        text = readme.read_text()
        start, end = text.index(README_START) + len(README_START), text.index(README_END)
        readme.write_text(text[:start] + "\n" + "\n".join(lines) + "\n" + text[end:])
        print(f"wrote the study's table into {readme}")


def diagnose(run: Path, data: str, split: str) -> None:
    """Where a run's mask AP is lost, as markdown lines: AP by area and occlusion, TIDE error types."""
    from segcore.evaluation.evaluate import evaluate_run

    # an evaluation the run has already (the zoo's detector has one) is read, not computed again
    folder = runs.eval_folders(run).get(runs.eval_name(data, split)) or evaluate_run(run, data, split, progress=False)
    metrics, rows = runs.read_metrics(folder), runs.read_per_instance(folder)
    segm = {k: "–" if v is None else f"{v:.3f}" for k, v in metrics["segm"].items() if not isinstance(v, dict)}
    print(f"- mask AP {segm['AP']} (AP50 {segm['AP50']}, AP75 {segm['AP75']}); by size: small {segm['APs']}, "
          f"medium {segm['APm']}, large {segm['APl']}; box AP {metrics['bbox']['AP']:.3f}; "
          f"boundary AP {metrics['boundary']['AP']:.3f}")
    occlusion = metrics["breakdowns"]["occlusion"]
    print("- mask AP by occlusion: " + ", ".join(f"{k} {v:.3f}" for k, v in occlusion.items() if v is not None))
    for label, kept in (("all", rows), ("score >= 0.5", rows[rows["score"].fillna(1.0) >= 0.5])):
        counts = kept["error_type"].value_counts()
        print(f"- error types ({label}): " + ", ".join(f"{k} {int(v)}" for k, v in counts.items()))
    matched = rows[rows["error_type"] == "true_positive"]
    by_size = matched.groupby("area_bucket")["iou"].mean()
    print("- mean mask IoU of the matches: " + ", ".join(f"{k} {v:.3f}" for k, v in by_size.items())
          + f" (all {matched['iou'].mean():.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="train the candidates not finished yet")
    run.add_argument("--only", nargs="+", metavar="MODEL/NAME", help="e.g. maskrcnn/default 'fcn/adamw lr 3e-3'")
    shown = commands.add_parser("report", help="draw the curves and write the README's table")
    shown.add_argument("--png", type=Path, default=ROOT / "docs" / "recipe_study.png")
    shown.add_argument("--readme", type=Path, default=None)
    examined = commands.add_parser("diagnose", help="where a run's mask AP is lost, on a split")
    examined.add_argument("run", type=Path)
    examined.add_argument("--split", default="val")
    for command in (run, examined):
        command.add_argument("--data", default=str(ROOT / "data" / "shapes"))
    for command in (run, shown):
        command.add_argument("--out", type=Path, default=Path.home() / "segcore-runs" / "study")
    args = parser.parse_args()
    if args.command == "diagnose":
        diagnose(args.run, args.data, args.split)
        return
    if args.command == "report":
        report(args.out, args.png, args.readme)
        return
    chosen = [(m, n) for m, names in CANDIDATES.items() for n in names]
    if args.only:
        unknown = sorted(set(args.only) - {f"{m}/{n}" for m, n in chosen})
        if unknown:
            names = ", ".join(f"{m}/{n}" for m, n in chosen)
            raise SystemExit(f"no candidate {', '.join(unknown)}; choose from {names}.")
        chosen = [(m, n) for m, n in chosen if f"{m}/{n}" in args.only]
    for model, name in chosen:
        train_candidate(args.out, model, name, args.data)


if __name__ == "__main__":
    main()
