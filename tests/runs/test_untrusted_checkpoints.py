"""Untrusted checkpoints: a file whose unpickling would run code is refused with one sentence, in the
library, the command line and the dashboard, and its code never runs.

The payload's code is harmless but visible: unpickling it calls ``os.mkdir(marker)``. The first test shows
that it really runs under a plain ``torch.load``, so the others fail if the protection goes.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from segcore import runs
from segcore.cli import main
from segcore.errors import CheckpointError
from segcore.runs import checkpoints

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
REFUSED = "could run code when loaded, so segcore refuses it"
#: the hardening table's row for the refused pickle: (attack, outcome)
PICKLE_REFUSED = ("that pickle as a checkpoint, in the library, the CLI (predict, eval, train --resume) and the "
                  "Live page",
                  "refused with one sentence naming the file and what it asks for; its code never runs")


class RunsCode:
    """Pickled as a call of os.mkdir: loading the pickle makes the marker folder."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def write_payload(path: Path, marker: Path) -> Path:
    """A checkpoint-shaped file (state_dict and all) with the payload inside."""
    torch.save({"model": "maskrcnn", "state_dict": {"w": torch.zeros(1)}, "extra": RunsCode(marker)}, path)
    return path


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "code-ran"


@pytest.mark.hardening(1, "a pickle that calls os.mkdir when loaded, under a plain torch.load",
                       "its code runs: the danger is real")
def test_the_payload_runs_code_when_loaded_without_protection(tmp_path, marker):
    torch.load(write_payload(tmp_path / "evil.pt", marker), weights_only=False)
    assert marker.is_dir()


@pytest.mark.hardening(1, *PICKLE_REFUSED)
def test_the_library_refuses_it_and_runs_nothing(tmp_path, marker):
    path = write_payload(tmp_path / "evil.pt", marker)
    with pytest.raises(CheckpointError, match=REFUSED) as error:
        checkpoints.load_file(path)
    assert str(path) in str(error.value) and "mkdir" in str(error.value)  # it names what the file asks for
    assert not marker.exists()


@pytest.mark.hardening(1, *PICKLE_REFUSED)
@pytest.mark.parametrize("command", ["predict", "eval", "train"])
def test_the_command_line_refuses_it_and_runs_nothing(command, tiny_run, shapes, tmp_path, marker, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("evals", "comparisons"))
    write_payload(run / runs.CHECKPOINT, marker)
    write_payload(run / runs.LAST, marker)
    image = tmp_path / "image.png"
    Image.new("RGB", (16, 16)).save(image)
    args = {"predict": ["predict", str(run), str(image), "--out", str(tmp_path / "out")],
            "eval": ["eval", str(run), "--data", str(shapes), "--split", "val"],
            "train": ["train", "--out", str(run), "--data", str(shapes), "--resume"]}[command]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert REFUSED in error and error.count("\n") == 1 and "Traceback" not in error
    assert not marker.exists()


@pytest.mark.hardening(1, *PICKLE_REFUSED)
def test_the_dashboard_refuses_it_and_runs_nothing(tiny_run, tmp_path, marker, monkeypatch):
    run = tmp_path / "runs" / "evil"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("evals", "comparisons"))
    write_payload(run / runs.CHECKPOINT, marker)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEGCORE_RUNS", raising=False)
    app = AppTest.from_file(APP, default_timeout=60).run()
    app.switch_page("app_pages/live.py").run()
    app.file_uploader(key="live_upload").set_value(("a.png", _png(), "image/png")).run()
    assert not app.exception
    assert any(REFUSED in e.value for e in app.error)
    assert not marker.exists()


def _png() -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("base, message", [
    ({"path": "/etc/passwd", "sha256": "0" * 64}, "in a form segcore does not know"),
    ("../x/checkpoint.pt", "in a form segcore does not know"),
    ({"path": "../elsewhere/checkpoint.pt", "sha256": "0" * 64}, "which does not exist"),
])
def test_a_checkpoint_naming_a_base_is_read_only_where_its_base_is_whole_and_named(tiny_run, tmp_path, base, message):
    content = torch.load(tiny_run / "checkpoint.pt", weights_only=True)
    content["base_weights"] = base
    (tmp_path / "run").mkdir()
    torch.save(content, tmp_path / "run" / "checkpoint.pt")
    with pytest.raises(CheckpointError, match=message):
        checkpoints.load_file(tmp_path / "run" / "checkpoint.pt")


def test_a_base_that_names_a_base_is_refused(tiny_run, tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    whole = torch.load(tiny_run / "checkpoint.pt", weights_only=True)
    torch.save(whole, tmp_path / "a" / "checkpoint.pt")
    reduced = checkpoints.with_base(whole, tmp_path / "b" / "checkpoint.pt", tmp_path / "a" / "checkpoint.pt")
    assert reduced["state_dict"] == {} and reduced["base_weights"]["path"] == "../a/checkpoint.pt"
    torch.save(reduced, tmp_path / "b" / "checkpoint.pt")
    assert set(checkpoints.load_file(tmp_path / "b" / "checkpoint.pt")["state_dict"]) == set(whole["state_dict"])
    # a chain (or a loop) of bases is not what segcore writes
    torch.save({**reduced, "base_weights": {**reduced["base_weights"], "path": "../b/checkpoint.pt"}},
               tmp_path / "a" / "checkpoint.pt")
    with pytest.raises(CheckpointError):
        checkpoints.load_file(tmp_path / "b" / "checkpoint.pt")


def test_int8_weights_load_back_within_half_a_step_and_wrong_scales_are_refused(tiny_run, tmp_path):
    whole = torch.load(tiny_run / "checkpoint.pt", weights_only=True)
    packed = checkpoints.quantized(whole)
    torch.save(packed, tmp_path / "checkpoint.pt")
    loaded = checkpoints.load_file(tmp_path / "checkpoint.pt")
    assert "int8_scales" not in loaded and set(loaded["state_dict"]) == set(whole["state_dict"])
    for name, scale in packed["int8_scales"].items():
        error = (loaded["state_dict"][name] - whole["state_dict"][name]).abs().reshape(len(scale), -1).amax(dim=1)
        assert torch.all(error <= scale / 2 + 1e-7), name  # rounding to the nearest step of each channel
    name = next(iter(packed["int8_scales"]))
    torch.save({**packed, "int8_scales": {**packed["int8_scales"], name: packed["int8_scales"][name][:1]}},
               tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="int8 weights whose scales do not fit them"):
        checkpoints.load_file(tmp_path / "checkpoint.pt")


def test_a_checkpoint_save_on_a_full_disk_names_the_file_and_the_cause(tmp_path, monkeypatch, capsys):
    """torch's zip writer fails with "unexpected pos" when the disk fills; the user reads the file and the cause."""
    import errno
    import shutil
    from collections import namedtuple

    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 4288 vs 4176")

    monkeypatch.setattr(torch, "save", full)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: usage(10 ** 9, 10 ** 9, 0))
    with pytest.raises(OSError) as error:
        checkpoints.save_atomic({"w": torch.zeros(1)}, tmp_path / "last.pt")
    assert error.value.errno == errno.ENOSPC and error.value.filename == str(tmp_path / "last.pt")
    assert not list(tmp_path.iterdir())  # no temporary file left behind
    # with room on the disk the error is not the disk's, and stays torch's own
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: usage(10 ** 9, 0, 10 ** 9))
    with pytest.raises(RuntimeError, match="unexpected pos"):
        checkpoints.save_atomic({"w": torch.zeros(1)}, tmp_path / "last.pt")


@pytest.mark.parametrize("change, words", [
    ({"options": ["min_size", 128]}, '"options" is not a mapping'),
    ({"model": ["maskrcnn"]}, '"model" is list'),
    ({"class_names": 3}, '"class_names" is not a list'),
    ({"state_dict": [1, 2]}, '"state_dict" is not a mapping'),
    ({"category_ids": ["1", "2"]}, '"category_ids" is not a list of category ids'),
    ({"category_ids": [1]}, '"category_ids" holds 1 ids'),
    ({"category_ids": [2 ** 70] * 2}, '"category_ids" is not a list of category ids'),
])
def test_a_checkpoint_of_the_wrong_inner_shape_is_one_sentence(tiny_run, tmp_path, capsys, change, words):
    content = torch.load(tiny_run / "checkpoint.pt", weights_only=True)
    content["class_names"] = content["class_names"][:2] if "category_ids" in change else content["class_names"]
    torch.save({**content, **change}, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match=words):
        checkpoints.load_file(tmp_path / "checkpoint.pt")
    image = tmp_path / "image.png"
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(image)
    assert main(["predict", str(tmp_path / "checkpoint.pt"), str(image), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {tmp_path / 'checkpoint.pt'} is a segcore checkpoint whose ")
    assert "Traceback" not in error


@pytest.mark.parametrize("model, option, value", [("maskrcnn", "min_size", 100_000), ("unet", "width", 10 ** 6),
                                                  ("maskrcnn", "box_score_thresh", float("nan"))])
def test_model_options_that_would_take_all_memory_are_refused_before_building(model, option, value):
    from segcore.errors import SegcoreError
    from segcore.models import model_options

    with pytest.raises(SegcoreError, match=f"option {option}=.* is outside the range segcore builds"):
        model_options(model, **{option: value})


def test_a_checkpoint_asking_for_huge_images_is_one_sentence(tiny_run, tmp_path, capsys):
    content = torch.load(tiny_run / "checkpoint.pt", weights_only=True)
    content["options"] = {**content["options"], "min_size": 100_000, "max_size": 100_000}
    torch.save(content, tmp_path / "checkpoint.pt")
    image = tmp_path / "image.png"
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(image)
    assert main(["predict", str(tmp_path / "checkpoint.pt"), str(image), "--out", str(tmp_path / "out")]) == 2
    assert "option min_size=100000 is outside the range segcore builds, 16 to 4096" in capsys.readouterr().err


# ---- structure-aware mutations of a whole checkpoint (issue 16) ----

#: values of every kind a mutation puts in place of a checkpoint's value
ODD_VALUES = [None, True, -1, 0, 2 ** 70, float("nan"), float("inf"), 1e300, "", "maskrcnn", "x" * 300, [], [1, "a"],
              {}, {"a": 1}, torch.zeros(0), torch.zeros(3, 3), torch.full((2,), float("nan"))]


def _mutations():
    from hypothesis import strategies as st

    top = st.sampled_from(["model", "options", "class_names", "category_ids", "state_dict", "int8_scales"])
    return st.one_of(
        st.tuples(st.just("top"), top, st.sampled_from(ODD_VALUES)),
        st.tuples(st.just("option"), st.integers(0, 40), st.sampled_from(ODD_VALUES)),
        st.tuples(st.just("weight"), st.integers(0, 400), st.sampled_from(ODD_VALUES)),
        st.tuples(st.just("drop"), top, st.none()),
    )


@pytest.mark.hardening(6, "a trained checkpoint changed inside (a key, an option or a weight replaced by a value of "
                          "another type, NaN, 2**70, a tensor of another shape; a key dropped)",
                       "loaded, or one sentence naming the file; never a traceback")
def test_a_checkpoint_changed_inside_loads_or_is_one_sentence(tiny_run, tmp_path_factory, request):
    """Every mutation of a whole checkpoint either loads and predicts, or is refused with one SegcoreError
    sentence naming the file, by the library and so by every command and page that loads models."""
    from hypothesis import HealthCheck, given, settings

    from segcore.errors import SegcoreError
    from segcore.predictor import load_model

    original = torch.load(tiny_run / "checkpoint.pt", weights_only=True)
    folder = tmp_path_factory.mktemp("mutated")
    image = torch.zeros(3, 32, 32, dtype=torch.uint8)

    @settings(max_examples=int(os.environ.get("SEGCORE_FUZZ_EXAMPLES", 60)), deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(_mutations())
    def check(mutation):
        request.node.hardening_inputs = getattr(request.node, "hardening_inputs", 0) + 1  # for docs/hardening.py
        kind, where, value = mutation
        content = {**original, "options": dict(original["options"]), "state_dict": dict(original["state_dict"])}
        if kind == "top":
            content[where] = value
        elif kind == "drop":
            content.pop(where, None)
        else:
            inner = content["options" if kind == "option" else "state_dict"]
            keys = sorted(inner)
            inner[keys[where % len(keys)]] = value
        path = folder / "checkpoint.pt"
        torch.save(content, path)
        try:
            loaded = load_model(path)
        except SegcoreError as error:
            assert str(path) in str(error) and "\n" not in str(error), str(error)
            return
        loaded.model.eval()
        with torch.no_grad():
            loaded.model([image.float() / 255])

    check()


@pytest.mark.hardening(1, "a checkpoint of the wrong inner shape beside a good model, on the Live page",
                       "its panel names the file and the field; the good model's panel still segments")
def test_a_wrong_checkpoint_on_the_live_page_leaves_the_good_model_its_panel(tiny_run, tmp_path, monkeypatch):
    good, bad = tmp_path / "runs" / "good", tmp_path / "runs" / "bad"
    for run in (good, bad):
        shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("evals", "comparisons"))
        runs.write_json(run / runs.RUN_FILE, {**runs.read_run(run), "name": run.name})
    content = torch.load(bad / runs.CHECKPOINT, weights_only=True)
    torch.save({**content, "options": ["min_size", 128]}, bad / runs.CHECKPOINT)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEGCORE_RUNS", raising=False)
    app = AppTest.from_file(APP, default_timeout=120).run()
    app.switch_page("app_pages/live.py").run()
    picker = app.multiselect(key="live_models")
    picker.set_value([str(Path("runs") / "bad"), str(Path("runs") / "good")]).run()
    app.file_uploader(key="live_upload").set_value(("a.png", _png(), "image/png")).run()
    assert not app.exception
    assert [e.value for e in app.error] and all('"options" is not a mapping' in e.value for e in app.error)
    assert any(str(Path("runs") / "bad" / runs.CHECKPOINT) in e.value for e in app.error)
    captions = [caption for element in app.get("image") for caption in element.captions]
    assert any(caption.startswith("good · ") for caption in captions), captions
