"""The command line: each command end to end, and errors as one sentence with a non-zero exit."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from segcore.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, timeout: int = 300, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "segcore", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **env})


def test_synth_writes_a_dataset(tmp_path):
    assert main(["data", "synth", "--out", str(tmp_path / "s"), "--n-train", "2", "--n-val", "1", "--n-test", "1",
                 "--workers", "1"]) == 0
    assert (tmp_path / "s" / "annotations" / "instances_test.json").is_file()


def test_train_takes_a_config_file_and_the_command_line_overrides_it(shapes, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(f"model: unet\ndata: {shapes}\nmax-iters: 5\nbatch_size: 2\ndepth: 2\n"
                      f"model_options: {{width: 4}}\n")
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(out), "--max-iters", "1", "--no-progress"]) == 0
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["model"] == "unet" and manifest["options"] == {"depth": 2, "width": 4}
    assert manifest["iterations_done"] == 1


def test_predict_writes_overlays_and_coco_results(tiny_run, shapes, tmp_path):
    images = sorted((shapes / "test").glob("*.png"))
    assert main(["predict", str(tiny_run), *map(str, images), "--out", str(tmp_path / "p"),
                 "--score-threshold", "0"]) == 0
    for image in images:
        assert Image.open(tmp_path / "p" / image.name).size == (256, 256)
    results = json.loads((tmp_path / "p" / "predictions.json").read_text())
    assert all({"image_id", "category_id", "segmentation", "bbox", "score"} <= set(r) for r in results)
    assert all(isinstance(r["segmentation"]["counts"], str) for r in results)


def test_predict_reads_a_torchvision_state_dict(tmp_path):
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    weights = tmp_path / "coco.pth"
    torch.save(maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91).state_dict(), weights)
    image = tmp_path / "photo.jpg"
    Image.new("RGB", (64, 48), (120, 30, 200)).save(image)
    assert main(["predict", "--model", "maskrcnn", "--weights", str(weights), str(image),
                 "--out", str(tmp_path / "p")]) == 0
    categories = json.loads((tmp_path / "p" / "images.json").read_text())["categories"]
    assert categories[0] == {"id": 1, "name": "person"}


@pytest.mark.parametrize("args, needle", [
    (["train", "--model", "maskrcnn", "--data", "/no/such/dir", "--out", "{tmp}/r"], "/no/such/dir"),
    (["train", "--data", "{shapes}", "--out", "{tmp}/r", "--attention", "channel"], "attention"),
    (["train", "--model", "unet", "--data", "{shapes}", "--out", "{tmp}/r", "--attention", "spatial"], "attention"),
    (["train", "--config", "{tmp}/missing.yaml", "--out", "{tmp}/r"], "missing.yaml"),
    (["predict", "{tmp}/no_run", "{tmp}/x.png", "--out", "{tmp}/p"], "x.png"),
    (["predict", "--weights", "{tmp}/garbage.pt", "{tmp}/img.png", "--out", "{tmp}/p"], "garbage.pt"),
    (["predict", "--weights", "{tmp}/code.pt", "{tmp}/img.png", "--out", "{tmp}/p"], "code.pt"),
])
def test_errors_are_one_sentence_without_a_traceback(args, needle, shapes, tmp_path, capsys):
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint at all")
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "code.pt")  # a pickled module: code, not data
    Image.new("RGB", (8, 8)).save(tmp_path / "img.png")
    args = [a.format(tmp=tmp_path, shapes=shapes) for a in args]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and needle in error
    assert "Traceback" not in error and error.count("\n") == 1


NUMBERS = ("a number option that is NaN, infinite, negative or an inverted range",
           "exit 2 with one sentence naming the option; nothing scored or trained with it")


@pytest.mark.hardening(3, *NUMBERS)
@pytest.mark.parametrize("args, needle", [
    (["train", "--data", "{shapes}", "--out", "{tmp}/r", "--lr", "inf"], "lr must be a positive finite number"),
    (["train", "--data", "{shapes}", "--out", "{tmp}/r", "--lr", "nan"], "lr must be a positive finite number"),
    (["train", "--data", "{shapes}", "--out", "{tmp}/r", "--weight-decay", "inf"], "weight_decay must be finite"),
    (["train", "--data", "{shapes}", "--out", "{tmp}/r", "--grad-clip", "nan"], "grad_clip must be a finite"),
    (["eval", "{tmp}/run", "--area-ranges", "tiny=256:0"], "--area-ranges tiny=256:0 is not a range"),
    (["eval", "{tmp}/run", "--area-ranges", "tiny=nan:256"], "--area-ranges tiny=nan:256 is not a range"),
    (["eval", "{tmp}/run", "--area-ranges", "tiny=-5:256"], "--area-ranges tiny=-5:256 is not a range"),
    (["eval", "{tmp}/run", "--area-ranges", "a=0:9", "a=9:99"], "--area-ranges a=9:99 names a twice"),
    (["eval", "{tmp}/run", "--area-ranges", "=0:9"], "--area-ranges =0:9 has no name"),
    (["predict", "--weights", "{tmp}/w.pt", "{tmp}/img.png", "--out", "{tmp}/p", "--score-threshold", "nan"],
     "--score-threshold must be a score from 0 to 1, got nan"),
    (["predict", "--weights", "{tmp}/w.pt", "{tmp}/img.png", "--out", "{tmp}/p", "--score-threshold", "1.5"],
     "--score-threshold must be a score from 0 to 1, got 1.5"),
])
def test_numbers_that_would_score_or_train_silently_wrong_are_refused(args, needle, shapes, tmp_path, capsys):
    Image.new("RGB", (8, 8)).save(tmp_path / "img.png")
    args = [a.format(tmp=tmp_path, shapes=shapes) for a in args]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and needle in error, error
    assert "Traceback" not in error and error.count("\n") == 1
    assert not (tmp_path / "r").exists() and not (tmp_path / "p").exists()


def test_the_module_entry_point_exits_non_zero_on_bad_input():
    result = run("train", "--data", "/no/such/dir", "--out", "/tmp/never")
    assert result.returncode == 2 and "Traceback" not in result.stderr and "/no/such/dir" in result.stderr


def test_a_config_file_number_in_yaml_exponent_form_is_read(shapes, tmp_path):
    config = tmp_path / "config.yaml"
    # YAML 1.1 reads 1e-3 as a string; segcore reads it as the number it is meant to be
    config.write_text(f"model: unet\ndata: {shapes}\nlr: 1e-3\nmax_iters: 1\ndepth: 2\nwidth: 4\n")
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "run" / "run.json").read_text())["training"]["lr"] == 0.001


def test_a_bad_image_found_by_a_loader_worker_is_one_sentence(shapes, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(shapes, broken)
    first = sorted((broken / "train").glob("*.png"))[0]
    first.write_bytes(b"this is not a png")
    code = main(["train", "--model", "unet", "--depth", "2", "--width", "4", "--data", str(broken), "--out",
                 str(tmp_path / "run"), "--max-iters", "8", "--batch-size", "1", "--workers", "1", "--no-progress"])
    error = capsys.readouterr().err
    assert code == 2 and first.name in error
    assert "Traceback" not in error and error.count("\n") == 1


def test_images_with_the_same_name_are_refused(tiny_run, shapes, tmp_path, capsys):
    image = sorted((shapes / "test").glob("*.png"))[0]
    (tmp_path / "other").mkdir()
    copy = tmp_path / "other" / image.name
    copy.write_bytes(image.read_bytes())
    assert main(["predict", str(tiny_run), str(image), str(copy), "--out", str(tmp_path / "p")]) == 2
    assert "overwrite" in capsys.readouterr().err


def test_garbage_and_code_are_told_apart(tmp_path):
    from segcore.errors import CheckpointError
    from segcore.runs.checkpoints import load_file

    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint at all")
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "code.pt")
    with pytest.raises(CheckpointError, match="garbage.pt is not a PyTorch checkpoint"):
        load_file(tmp_path / "garbage.pt")
    with pytest.raises(CheckpointError, match="code.pt holds Python objects beyond tensors"):
        load_file(tmp_path / "code.pt")


def test_the_installed_package_gives_a_segcore_command():
    """make installs segcore editable (pyproject.toml): the `segcore` command beside `python -m segcore`."""
    command = Path(sys.executable).parent / "segcore"
    assert command.is_file(), "run make venv: it installs segcore with pip install -e ."
    result = subprocess.run([str(command), "data", "synth", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--n-train" in result.stdout


@pytest.mark.parametrize("suffix, nested", [(".json", '{"lr": ' + "[" * 100_000 + "]" * 100_000 + "}"),
                                            (".yaml", "lr: " + "[" * 100_000 + "]" * 100_000 + "\n")])
def test_a_deeply_nested_config_file_is_one_sentence(tmp_path, capsys, suffix, nested):
    config = tmp_path / f"deep{suffix}"
    config.write_text(nested)
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert str(config) in error and "Traceback" not in error and not (tmp_path / "run").exists()


def test_a_deeply_nested_run_file_is_one_sentence(tmp_path):
    from segcore import runs
    from segcore.errors import SegcoreError

    (tmp_path / "run.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(SegcoreError, match="nests its JSON too deeply"):
        runs.read_run(tmp_path)


def test_predict_never_writes_over_what_the_user_has(tiny_run, shapes, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    image = folder / "a.png"
    shutil.copy(next((shapes / "val").glob("*.png")), image)
    original = image.read_bytes()
    # --out the images' own folder: the overlay a.png would replace the input a.png
    assert main(["predict", str(tiny_run), str(image), "--out", str(folder)]) == 2
    assert "holds the input image" in capsys.readouterr().err and image.read_bytes() == original
    # two inputs of one stem would write one overlay
    Image.open(image).save(folder / "a.jpg")
    assert main(["predict", str(tiny_run), str(image), str(folder / "a.jpg"), "--out", str(tmp_path / "o")]) == 2
    assert "would both write their overlay" in capsys.readouterr().err and not (tmp_path / "o").exists()
    # a predictions.json of the user's own is kept
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "predictions.json").write_text("[]")
    assert main(["predict", str(tiny_run), str(image), "--out", str(mine)]) == 2
    assert "was not written by segcore predict" in capsys.readouterr().err
    assert (mine / "predictions.json").read_text() == "[]" and sorted(p.name for p in mine.iterdir()) == [
        "predictions.json"]
    # what an earlier predict wrote is written again
    assert main(["predict", str(tiny_run), str(image), "--out", str(tmp_path / "again")]) == 0
    assert main(["predict", str(tiny_run), str(image), "--out", str(tmp_path / "again")]) == 0


@pytest.mark.hardening(6, "a config file changed inside (an option replaced by a value of another type, NaN, "
                          "2**70, deep nesting, an unknown key)",
                       "read, or one sentence naming the option; never a traceback")
def test_a_config_file_changed_inside_is_read_or_one_sentence(tmp_path_factory, request):
    """Every mutation of a valid config file either gives a training configuration whose model options build,
    or one SegcoreError sentence, as ``segcore train --config`` shows it."""
    import yaml
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from segcore.errors import SegcoreError
    from segcore.models import model_options
    from segcore.training.config import make_train_config, read_config_file

    valid = {"model": "maskrcnn", "data": "data/shapes", "out": "runs/x", "max_iters": 10, "batch_size": 2,
             "lr": 0.001, "weight_decay": 0.01, "val_every": 5, "seed": 0, "augment": True, "attention": "spatial",
             "min_size": 256, "iou_loss": "lovasz"}
    odd = [None, True, -1, 0, 2 ** 70, float("nan"), float("inf"), "", "x" * 300, [], [1, "a"], {}, {"a": [1]},
           "1e-3", 1e300]
    folder = tmp_path_factory.mktemp("configs")

    @settings(max_examples=80, deadline=None, derandomize=True)
    @given(st.sampled_from(sorted(valid) + ["no_such_option"]), st.sampled_from(odd), st.sampled_from(["yaml", "json"]))
    def check(key, value, kind):
        request.node.hardening_inputs = getattr(request.node, "hardening_inputs", 0) + 1  # for docs/hardening.py
        content = {**valid, key: value}
        path = folder / f"config.{kind}"
        text = yaml.safe_dump(content) if kind == "yaml" else json.dumps(content)
        path.write_text(text)
        try:
            config = make_train_config(read_config_file(path))
            options = model_options(config.model, **config.model_options)
        except SegcoreError as error:
            assert "\n" not in str(error) and str(error).endswith("."), str(error)
            return
        # what is read is a number a training can use: never NaN or infinite
        for values in (dataclasses.asdict(config), dataclasses.asdict(options)):
            assert all(math.isfinite(v) for v in values.values() if isinstance(v, float)), (key, value)

    check()


@pytest.mark.hardening(3, "a write refused by the system (a full disk, a folder one may not write, a read-only "
                          "file system)", "exit 2 with one sentence naming the file, the cause and what to do")
@pytest.mark.parametrize("code, remedy", [("ENOSPC", "free some space on that disk"),
                                          ("EACCES", "write into a folder you may write to"),
                                          ("EROFS", "the file system is read-only")])
def test_a_refused_write_names_the_file_and_its_cause(code, remedy, tmp_path, monkeypatch, capsys):
    import errno

    from segcore import cli

    number = getattr(errno, code)
    target = str(tmp_path / "shapes" / "annotations" / "instances_train.json")

    def refused(args):
        raise OSError(number, os.strerror(number), target)

    monkeypatch.setattr(cli, "_synth", refused)
    assert main(["data", "synth", "--out", str(tmp_path / "shapes")]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {target}: {os.strerror(number)}; {remedy}")
    assert error.count("\n") == 1 and error.endswith(".\n") and "Traceback" not in error
