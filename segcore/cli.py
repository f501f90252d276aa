"""The command line: ``python -m segcore data synth | train | eval | compare | predict | zoo``.

Errors a user can fix (a SegcoreError, a file that cannot be written, a GPU out of memory) are printed
as one sentence on stderr with exit status 2; anything else is a bug in segcore and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

from segcore.errors import SegcoreError, os_error_sentence


def _model_option_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per model option, from the union of the models' option dataclasses."""
    from segcore.models import MODELS

    group = parser.add_argument_group("model options (see each model's options class)")
    seen: dict[str, Any] = {}
    for name, spec in MODELS.items():
        hints = typing.get_type_hints(spec.options)
        for option in dataclasses.fields(spec.options):
            seen.setdefault(option.name, (hints[option.name], []))[1].append(name)
    for option, (hint, owners) in sorted(seen.items()):
        flag = "--" + option.replace("_", "-")
        help_text = f"({', '.join(owners)})"
        args = typing.get_args(hint)
        if hint is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif typing.get_origin(hint) is list:
            group.add_argument(flag, type=args[0], nargs="+", default=None, metavar=args[0].__name__.upper(),
                               help=help_text)
        elif isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
            base = next(a for a in args if a is not type(None))
            group.add_argument(flag, type=lambda v, base=base: None if v.lower() == "none" else base(v), default=None,
                               metavar=base.__name__.upper(), help=help_text + " 'none' to unset")
        else:
            group.add_argument(flag, type=hint, default=None, metavar=hint.__name__.upper(), help=help_text)
    parser.set_defaults(_model_options=sorted(seen))


def _add_data(commands) -> None:
    """``segcore data synth``: the built-in dataset."""
    data = commands.add_parser("data", help="datasets").add_subparsers(dest="data_command", required=True)
    synth = data.add_parser("synth", help="write the built-in shapes dataset in COCO layout")
    synth.add_argument("--out", required=True, type=Path)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--n-train", type=int, default=1000)
    synth.add_argument("--n-val", type=int, default=200)
    synth.add_argument("--n-test", type=int, default=200)
    synth.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")


def _add_train(commands) -> None:
    """``segcore train``: every option of :class:`segcore.training.config.TrainConfig`, and the models'."""
    from segcore.models import MODELS

    train = commands.add_parser("train", help="train a model and write a run directory")
    train.add_argument("--config", type=Path, help="YAML or JSON file of options; the command line overrides it")
    train.add_argument("--model", choices=sorted(MODELS), default=None, help="default maskrcnn")
    train.add_argument("--data", default=None, help="dataset folder in COCO layout (default data/shapes)")
    train.add_argument("--out", default=None, help="run directory to write")
    length = train.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, default=None, help="default 12")
    length.add_argument("--max-iters", type=int, default=None)
    for flag, kind in [("--batch-size", int), ("--lr", float), ("--weight-decay", float), ("--warmup-iters", int),
                       ("--grad-clip", float), ("--seed", int), ("--workers", int), ("--log-every", int),
                       ("--val-every", int), ("--val-images", int), ("--scale-jitter", float)]:
        train.add_argument(flag, type=kind, default=None)
    train.add_argument("--optimizer", choices=["sgd", "adamw"], default=None)
    train.add_argument("--schedule", choices=["cosine", "constant"], default=None)
    train.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None)
    train.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                       help="mixed precision: float16 on CUDA, bfloat16 on CPUs with AVX512-BF16 or AMX "
                            "(default on; --no-amp trains in float32)")
    train.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                       help="channels-last weights and activations (default on)")
    train.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None)
    train.add_argument("--skip-invalid", action="store_true", default=None,
                       help="skip and count invalid annotations and images instead of stopping")
    train.add_argument("--train-split", default=None)
    train.add_argument("--val-split", default=None)
    train.add_argument("--weights", default=None,
                       help="start from a segcore checkpoint or a torchvision state dict")
    train.add_argument("--train-only", choices=["mask_head"], default=None,
                       help="train a fresh mask branch alone on the frozen detector of --weights")
    train.add_argument("--resume", action="store_true", default=None, help="continue the run in --out from last.pt")
    train.add_argument("--name", default=None, help="the run's name (default: the name of --out)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    _model_option_flags(train)


def _add_eval(commands) -> None:
    """``segcore eval``: a run on a split, or another tool's results file."""
    evaluate = commands.add_parser("eval", help="evaluate a run on a split, or score another tool's results file")
    evaluate.add_argument("run", nargs="?", type=Path, help="run directory to evaluate")
    evaluate.add_argument("--data", type=Path, help="dataset folder in COCO layout")
    evaluate.add_argument("--split", default="val")
    evaluate.add_argument("--gt", type=Path, help="with --predictions: the COCO instances file")
    evaluate.add_argument("--predictions", type=Path, help="a COCO results file from any tool")
    evaluate.add_argument("--out", type=Path, help="with --predictions: the external run directory to write")
    evaluate.add_argument("--name", help="with --predictions: the external run's name")
    evaluate.add_argument("--coco-only", action="store_true",
                          help="with --gt and --predictions: print COCO's numbers (masks and boxes) as JSON and "
                               "write nothing; the fastest way to score a large results file")
    evaluate.add_argument("--area-ranges", nargs="+", metavar="NAME=LOW:HIGH", default=None,
                          help="extra area ranges for AP, in pixels, e.g. tiny=0:256 huge=40000:1e10")
    evaluate.add_argument("--speed-images", type=int, default=None, help="time only the first N images")
    evaluate.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    evaluate.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                          help="infer in bfloat16 on CPUs with AVX512-BF16 or AMX, float16 on CUDA (default on)")
    evaluate.add_argument("--skip-invalid", action="store_true",
                          help="skip invalid annotations, images and results entries, print and record how many "
                               "(metrics.json's \"skipped\"), instead of stopping at the first")
    evaluate.add_argument("--no-progress", action="store_true")


def _add_compare(commands) -> None:
    """``segcore compare``: two runs, paired over one split's images."""
    compare = commands.add_parser("compare", help="paired bootstrap comparison of two runs on one split")
    compare.add_argument("run_a", type=Path)
    compare.add_argument("run_b", type=Path)
    compare.add_argument("--data", type=Path, required=True)
    compare.add_argument("--split", default="val")
    compare.add_argument("--resamples", type=int, default=1000)
    compare.add_argument("--seed", type=int, default=0)
    compare.add_argument("--out", type=Path, help="the JSON file (default RUN_B/comparisons/...)")
    compare.add_argument("--no-progress", action="store_true")


def _add_predict(commands) -> None:
    """``segcore predict``: image files through a run's model or a weights file."""
    from segcore.models import MODELS

    predict = commands.add_parser("predict", help="predict image files: overlay PNGs and COCO results JSON")
    predict.add_argument("source", nargs="?", help="run directory or checkpoint file")
    predict.add_argument("images", nargs="+", type=Path)
    predict.add_argument("--model", choices=sorted(MODELS), help="with --weights: the model the weights are for")
    predict.add_argument("--weights",
                         help="a segcore checkpoint or a torchvision Mask R-CNN state dict (e.g. COCO)")
    predict.add_argument("--out", required=True, type=Path)
    predict.add_argument("--score-threshold", type=float, default=0.5)
    predict.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    predict.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                         help="infer in bfloat16 on CPUs with AVX512-BF16 or AMX, float16 on CUDA (default on)")


def _add_zoo(commands) -> None:
    """``segcore zoo``: build, tabulate and check the demo zoo."""
    zoo = commands.add_parser("zoo", help="the demo model zoo").add_subparsers(dest="zoo_command", required=True)
    build = zoo.add_parser("build", help="train, evaluate and compare the demo models into data/zoo, model by "
                                         "model, resuming where an earlier sitting stopped (CPU, about 8 hours)")
    build.add_argument("--out", type=Path, default=Path("data/zoo"))
    build.add_argument("--staging", type=Path, default=None,
                       help="where the models train before they land in --out (default ~/.cache/segcore/zoo-build)")
    build.add_argument("--data", type=Path, default=Path("data/shapes"), help="generated here if missing")
    build.add_argument("--only", nargs="+", metavar="NAME", help="build only these models")
    build.add_argument("--iterations", type=int, help="train every model this many iterations (a quick look)")
    build.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    build.add_argument("--no-progress", action="store_true")
    table = zoo.add_parser("table", help="print the zoo's results and comparisons as markdown")
    table.add_argument("--zoo", type=Path, default=Path("data/zoo"))
    table.add_argument("--split", default="test")
    table.add_argument("--readme", type=Path, help="rewrite the zoo tables between this file's zoo markers")
    check = zoo.add_parser("check", help="is the dataset byte-identical to the one the zoo was trained on?")
    check.add_argument("--zoo", type=Path, default=Path("data/zoo"))
    check.add_argument("--data", type=Path, default=Path("data/shapes"))


#: Each command's parser builder, in the order ``--help`` lists them.
_COMMANDS = {"data": _add_data, "train": _add_train, "eval": _add_eval, "compare": _add_compare,
             "predict": _add_predict, "zoo": _add_zoo}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``command`` given, only that command's options are built, so that a command
    that needs no model (``eval --predictions``) does not import torch."""
    parser = argparse.ArgumentParser(prog="python -m segcore", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, add in _COMMANDS.items():
        if command in (None, name):
            add(commands)
    return parser


def _train(args: argparse.Namespace) -> None:
    from segcore.training.config import make_train_config, read_config_file, stored_training
    from segcore.training.loop import train

    given = {k: v for k, v in vars(args).items()
             if v is not None and k not in ("command", "config", "no_progress", "_model_options")}
    # a resumed run goes on with the options it was started with, under the file's and the command line's
    stored = stored_training(given["out"]) if given.get("resume") and given.get("out") else {}
    config = make_train_config(stored, read_config_file(args.config) if args.config else {}, given)
    run_dir = train(config, progress=not args.no_progress)
    print(f"wrote {run_dir}")


def _predict(args: argparse.Namespace) -> None:
    from segcore.device import resolve_device
    from segcore.predictor import check_outputs, load_model, predict_files

    if args.weights and args.source:
        # argparse cannot tell a run directory from the first image; with --weights there is no run
        args.images.insert(0, Path(args.source))
    source = args.weights or args.source
    if source is None:
        raise SegcoreError("predict needs a run directory, or --model NAME --weights PATH.")
    missing = [str(p) for p in args.images if not p.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise SegcoreError(f"image file {missing[0]} does not exist{more}.")
    if not 0 <= args.score_threshold <= 1:  # NaN too: it would draw no instance, without a word
        raise SegcoreError(f"--score-threshold must be a score from 0 to 1, got {args.score_threshold}.")
    check_outputs(args.images, args.out)  # before the model loads: a refusal costs nothing
    loaded = load_model(source, model_name=args.model, device=resolve_device(args.device), amp=args.amp)
    summary = predict_files(loaded, args.images, args.out, score_threshold=args.score_threshold)
    print(f"wrote {summary['images']} overlays and predictions.json ({summary['instances']} instances at score "
          f">= {args.score_threshold}) to {summary['out']}")


def _synth(args: argparse.Namespace) -> None:
    from segcore.data.synth import generate

    summary = generate(args.out, seed=args.seed, n_train=args.n_train, n_val=args.n_val, n_test=args.n_test,
                       workers=args.workers, progress=True)
    images = ", ".join(f"{n} {split}" for split, n in summary["images"].items())
    print(f"wrote {images} images to {args.out} in {summary['seconds']:.1f} s")


def _area_ranges(values: list[str] | None) -> dict[str, tuple[float, float]] | None:
    if not values:
        return None
    ranges = {}
    for value in values:
        try:
            name, bounds = value.split("=", 1)
            low, high = (float(v) for v in bounds.split(":", 1))
        except ValueError:
            raise SegcoreError(
                f"--area-ranges takes NAME=LOW:HIGH in pixels, e.g. tiny=0:256; got '{value}'.") from None
        # NaN compares false with every area, so a NaN, negative or inverted range scores nothing, silently
        if not name or name in ranges or not (0 <= low < high):
            problem = ("has no name" if not name else f"names {name} twice" if name in ranges else
                       "is not a range from a low area at least 0 to a higher one")
            raise SegcoreError(f"--area-ranges {value} {problem}; give NAME=LOW:HIGH in pixels, e.g. tiny=0:256.")
        ranges[name] = (low, high)
    return ranges


def _eval(args: argparse.Namespace) -> None:
    ranges = _area_ranges(args.area_ranges)
    if args.coco_only:
        if args.gt is None or args.predictions is None or args.run is not None:
            raise SegcoreError("eval --coco-only scores a results file: give --gt GT_JSON and --predictions FILE, "
                               "and no run directory.")
        from segcore.evaluation.scoring import coco_numbers

        print(json.dumps(coco_numbers(args.gt, args.predictions, skip_invalid=args.skip_invalid,
                                      area_ranges=ranges), indent=1))
        return
    if args.predictions is not None:
        if args.gt is None or args.out is None:
            raise SegcoreError("eval --predictions needs --gt GT_JSON and --out DIR as well.")
        from segcore.evaluation.scoring import READING_STAGES, STAGES, evaluate_results

        with _stage_bar(len(READING_STAGES) + len(STAGES), disable=args.no_progress) as on_stage:
            folder = evaluate_results(args.gt, args.predictions, args.out, name=args.name, area_ranges=ranges,
                                      skip_invalid=args.skip_invalid, on_stage=on_stage)
        _print_skipped(folder, {"ground_truth": args.gt, "predictions": args.predictions})
    else:
        if args.run is None or args.data is None:
            raise SegcoreError("eval needs a run directory and --data DIR (or --gt, --predictions and --out).")
        from segcore.data.layout import annotation_path
        from segcore.evaluation.evaluate import evaluate_run
        from segcore.evaluation.scoring import STAGES

        with _stage_bar(len(STAGES), disable=args.no_progress) as on_stage:
            folder = evaluate_run(args.run, args.data, args.split, device=args.device,
                                  speed_images=args.speed_images, area_ranges=ranges, skip_invalid=args.skip_invalid,
                                  progress=not args.no_progress, amp=args.amp, on_stage=on_stage)
        _print_skipped(folder, {"ground_truth": annotation_path(args.data, args.split)})
    print(f"wrote {folder}")


@contextlib.contextmanager
def _stage_bar(stages: int, *, disable: bool):
    """A progress bar over the named stages of a long step, drawn from the first stage on; yields the callback
    that starts each stage."""
    from tqdm import tqdm

    # no monitor thread: scoring forks onto the second core only from a process without other threads
    tqdm.monitor_interval = 0
    bars = []

    def on_stage(name: str) -> None:
        if not bars:  # the stage under way counts: "stage 1/7" while the first runs
            # on a terminal only: a log or a pipe gets the result and the error sentences alone
            bars.append(tqdm(total=stages, initial=1, desc=name, disable=disable or not sys.stderr.isatty(),
                             dynamic_ncols=True, leave=False,
                             bar_format="{desc}: stage {n_fmt}/{total_fmt}, {elapsed}"))
            return
        bars[0].set_description_str(name, refresh=False)
        bars[0].update(1)

    try:
        yield on_stage
    finally:
        for bar in bars:
            bar.close()


def _print_skipped(folder: Path, files: dict[str, Path]) -> None:
    """Print what ``--skip-invalid`` left out of each file, by reason, as the eval folder's metrics.json
    records it, e.g. "results.json: skipped 2 entries of unknown images"."""
    from collections import Counter

    from segcore import runs
    from segcore.coco.instances import SKIP_REASONS, skipped_summary
    from segcore.coco.results import SKIP_REASONS as RESULTS_SKIP_REASONS

    skipped = runs.read_metrics(folder).get("skipped") or {}
    for part, counts in skipped.items():
        reasons = RESULTS_SKIP_REASONS if part == "predictions" else SKIP_REASONS
        print(f"{files.get(part, part)}: {skipped_summary(Counter(counts), reasons)}")


def _compare(args: argparse.Namespace) -> None:
    from segcore.evaluation.compare import compare_runs

    if args.resamples < 1000:
        print(f"note: {args.resamples} resamples; 1000 or more give stable 95% intervals", file=sys.stderr)
    out = compare_runs(args.run_a, args.run_b, args.data, args.split, resamples=args.resamples, seed=args.seed,
                       out=args.out, progress=not args.no_progress)
    comparison = json.loads(out.read_text())
    for metric, result in comparison["metrics"].items():
        print(f"{metric}: B - A = {result['difference']:+.4f} [{result['low']:+.4f}, {result['high']:+.4f}] "
              f"(A {result['a']:.4f}, B {result['b']:.4f})")
    print(f"wrote {out}")


def _zoo(args: argparse.Namespace) -> None:
    from segcore import zoo

    if args.zoo_command == "build":
        from segcore.zoo_build import build

        out = build(args.out, args.data, staging=args.staging, only=args.only, iterations=args.iterations,
                    device=args.device, progress=not args.no_progress)
        print(zoo.table(out), end="")
        print(f"wrote {out} in {zoo.describe(out)['wall_time_s'] / 60:.1f} min")
    elif args.zoo_command == "table":
        tables = zoo.readme_text(args.zoo, args.split)
        if args.readme is not None:
            zoo.write_readme_tables(args.readme, tables)
            print(f"wrote the zoo tables into {args.readme}")
        else:
            print(tables, end="")
    elif not (args.zoo / zoo.ZOO_FILE).is_file():
        print(f"no zoo in {args.zoo} to check {args.data} against")
    else:
        problem = zoo.check_data(args.zoo, args.data)
        if problem is not None:
            raise SegcoreError(problem)
        print(f"{args.data} is the dataset the zoo was trained on")


def _sentence(error: SegcoreError) -> str:
    """The error's own sentence, also when a DataLoader worker re-raised it with its traceback inside."""
    message = str(error)
    if "Original Traceback" in message:
        last = message.strip().splitlines()[-1]
        message = last.split(": ", 1)[1] if ": " in last else last
    return message


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (0, 2 for a user's error, 130 when interrupted)."""
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    known = ("data", "train", "eval", "compare", "predict", "zoo")
    args = build_parser(command if command in known else None).parse_args(argv)
    handlers = {"train": _train, "predict": _predict, "data": _synth, "eval": _eval, "compare": _compare, "zoo": _zoo}
    try:
        handlers[args.command](args)
    except SegcoreError as error:
        print(f"error: {_sentence(error)}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: {os_error_sentence(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        # torch is imported only by the commands that need it; its out-of-memory error is the user's to fix
        if type(error).__name__ == "OutOfMemoryError":
            print("error: the GPU ran out of memory; lower --batch-size (or the image size).", file=sys.stderr)
            return 2
        raise
    return 0
