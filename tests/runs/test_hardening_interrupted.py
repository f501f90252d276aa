"""Interrupted work: ``kill -9`` during training, evaluation and file writes loses nothing but the work under way.

Each kill is real: ``segcore train`` or ``segcore eval`` runs as a subprocess and gets SIGKILL, which no
handler can catch. Training is killed at a moment it reaches by itself (polled with deadlines); an evaluation
or a file write is paused at the moment under test by a small driver around the real code, so that the kill
lands exactly there. Tests of the unprotected writes show the danger is real: the same kill at the same
moment leaves a half-written eval folder or a cut-off file.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from segcore import atomic, liveness, runs
from segcore.cli import main
from segcore.evaluation.evaluate import evaluate_run
from segcore.runs import EVAL_FILES, checkpoints

ROOT = Path(__file__).resolve().parents[2]
#: A U-Net small enough that a step on 64×64 images takes well under a second on a busy CPU.
MODEL = ["--model", "unet", "--depth", "2", "--width", "4"]
TRAIN_IMAGES = 16
#: Deadline for any one thing a test waits for (a subprocess importing torch on a loaded 2-core machine).
DEADLINE_S = 180.0


# ---- a tiny dataset and the helpers that start, watch and kill a segcore subprocess ----

def write_tiny_dataset(root: Path, *, n_train: int = TRAIN_IMAGES, n_val: int = 2) -> Path:
    """COCO layout, 64×64 images with two objects each (a square and a triangle), polygons."""
    categories = [{"id": 1, "name": "square"}, {"id": 2, "name": "triangle"}]
    for split, count in (("train", n_train), ("val", n_val)):
        (root / split).mkdir(parents=True)
        images, annotations = [], []
        for index in range(count):
            rng = np.random.default_rng(index + (1000 if split == "val" else 0))
            picture = Image.fromarray(rng.integers(0, 60, (64, 64, 3), dtype=np.uint8))
            draw = ImageDraw.Draw(picture)
            x, y = rng.integers(4, 24, 2)
            square = [x, y, x + 20, y, x + 20, y + 20, x, y + 20]
            u, v = rng.integers(36, 44, 2)
            triangle = [u, v - 16, u + 16, v + 16, u - 16, v + 16]
            for category, polygon, colour in ((1, square, (200, 60, 60)), (2, triangle, (60, 200, 60))):
                draw.polygon([int(p) for p in polygon], fill=colour)
                xs, ys = polygon[0::2], polygon[1::2]
                annotations.append({"id": len(annotations) + 1, "image_id": index + 1, "category_id": category,
                                    "segmentation": [[float(p) for p in polygon]], "iscrowd": 0,
                                    "bbox": [float(min(xs)), float(min(ys)), float(max(xs) - min(xs)),
                                             float(max(ys) - min(ys))],
                                    "area": 400.0 if category == 1 else 512.0})
            picture.save(root / split / f"{index + 1:04d}.png")
            images.append({"id": index + 1, "file_name": f"{index + 1:04d}.png", "height": 64, "width": 64})
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / f"instances_{split}.json").write_text(
            json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return root


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Train and evaluate on one thread, here and in the subprocesses (OMP_NUM_THREADS): on a busy 2-core
    machine two threads wait on each other, and a step of the tiny U-Net takes 20-50 times longer."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """16 train and 2 val images of 64×64."""
    return write_tiny_dataset(tmp_path_factory.mktemp("interrupted") / "tiny")


@pytest.fixture(scope="module")
def long_data(tmp_path_factory) -> Path:
    """64 train images of 64×64: an epoch one image at a time is long enough to kill inside, also on a
    fast machine."""
    return write_tiny_dataset(tmp_path_factory.mktemp("interrupted") / "long", n_train=64)


def wait_for(condition, what: str, process: subprocess.Popen | None = None, deadline_s: float = DEADLINE_S):
    """Poll ``condition`` until it returns something true; fail naming ``what`` after the deadline or when
    ``process`` ended first (it finished or failed before the moment came)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            pytest.fail(f"the process ended (status {process.returncode}) before {what}: {output_of(process)}")
        time.sleep(0.02)
    pytest.fail(f"timed out after {deadline_s:.0f} s waiting for {what}")


def start(args: list[str], log: Path, *, driver: str | None = None, env: dict | None = None) -> subprocess.Popen:
    """``python -m segcore ARGS`` (or the driver code with ARGS) in the repository, output to ``log``."""
    command = [sys.executable, "-c", driver, *args] if driver else [sys.executable, "-m", "segcore", *args]
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    process.log = log
    return process


def output_of(process: subprocess.Popen) -> str:
    return process.log.read_text()[-2000:]


def kill(process: subprocess.Popen) -> None:
    """SIGKILL: nothing in the process runs after it, no except or finally block, no atexit."""
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL


def read_manifest(run_dir: Path) -> dict | None:
    """run.json while a subprocess may be rewriting it; always whole (or absent), never half a file."""
    try:
        text = (run_dir / runs.RUN_FILE).read_text()
    except FileNotFoundError:
        return None
    return json.loads(text)  # a JSONDecodeError here would be a half-written run.json


def history_rows(run_dir: Path) -> list[dict]:
    path = run_dir / runs.HISTORY
    if not path.is_file():
        return []
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--out", str(out), "--log-every", "1", "--device", "cpu",
            "--no-progress", *extra]


# ---- kill -9 during training ----

@pytest.fixture(scope="module")
def killed_in_second_epoch(tiny_data, tmp_path_factory) -> dict:
    """A run killed in its second epoch (4 iterations an epoch), once its first epoch was saved."""
    run = tmp_path_factory.mktemp("killed") / "run"
    process = start(train_args(tiny_data, run, *MODEL, "--batch-size", "4", "--epochs", "4"), run.with_suffix(".log"))

    def second_epoch_under_way():
        manifest = read_manifest(run)
        saved = manifest and manifest["epochs_done"] >= 1 and (run / runs.LAST).is_file()
        return saved and any(int(r["iteration"]) > manifest["iterations_done"] for r in history_rows(run))

    wait_for(second_epoch_under_way, "the second epoch to start", process)
    kill(process)
    return {"run": run, "pid": process.pid, "logged": max(int(r["iteration"]) for r in history_rows(run)),
            "saved": checkpoints.load_file(run / runs.LAST)["iteration"]}


@pytest.mark.hardening(4, "kill -9 during training, then train --resume",
                       "resumed from the last epoch saved; history.csv holds each iteration once; run.json finished")
def test_a_kill_during_training_leaves_whole_files_and_a_run_that_reads_as_killed(killed_in_second_epoch):
    run, pid = killed_in_second_epoch["run"], killed_in_second_epoch["pid"]
    manifest = read_manifest(run)
    # run.json was never rewritten after the kill: it still says running, but names a process that is gone
    assert manifest["status"] == "running" and manifest["trainer"]["pid"] == pid
    assert liveness.training_status(manifest) == "killed"
    for name in (runs.LAST, runs.CHECKPOINT):
        assert checkpoints.is_segcore_checkpoint(checkpoints.load_file(run / name))
    # the kill cost at most the epoch under way
    assert killed_in_second_epoch["logged"] - killed_in_second_epoch["saved"] <= 4


@pytest.mark.hardening(4, "kill -9 during training, then train --resume",
                       "resumed from the last epoch saved; history.csv holds each iteration once; run.json finished")
def test_train_resume_after_a_kill_finishes_every_iteration_once(killed_in_second_epoch, tiny_data, tmp_path, capsys):
    run, saved = tmp_path / "run", killed_in_second_epoch["saved"]
    shutil.copytree(killed_in_second_epoch["run"], run)
    resumed = main(train_args(tiny_data, run, "--batch-size", "4", "--epochs", "4", "--resume"))
    assert resumed == 0, capsys.readouterr().err
    manifest = read_manifest(run)
    assert manifest["status"] == "finished" and manifest["iterations_done"] == 16
    assert manifest["resumed"][-1]["at_iteration"] == saved and saved % 4 == 0
    rows = history_rows(run)
    # each iteration once, in order, and every row whole (no cell cut off by the kill)
    assert [int(r["iteration"]) for r in rows] == list(range(1, 17))
    assert all(None not in r and all(v not in ("", None) for v in r.values()) for r in rows)
    assert checkpoints.load_file(run / runs.LAST)["iteration"] == 16
    assert checkpoints.is_segcore_checkpoint(checkpoints.load_file(run / runs.CHECKPOINT))
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # no temporary left behind


@pytest.mark.hardening(4, "kill -9 between saving last.pt and updating run.json, then train --resume",
                       "run.json catches up with last.pt")
def test_a_resume_corrects_a_run_json_left_an_epoch_behind(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_args(tiny_data, run, *MODEL, "--batch-size", "4", "--epochs", "1")) == 0
    # what a kill right after the epoch's last.pt was saved leaves: run.json as it was before that epoch
    manifest = read_manifest(run)
    runs.write_json(run / runs.RUN_FILE, {**manifest, "status": "running", "epochs_done": 0, "iterations_done": 0})
    resumed = main(train_args(tiny_data, run, "--batch-size", "4", "--epochs", "1", "--resume"))
    assert resumed == 0, capsys.readouterr().err
    manifest = read_manifest(run)
    assert (manifest["status"], manifest["epochs_done"], manifest["iterations_done"]) == ("finished", 1, 4)


@pytest.fixture(scope="module")
def killed_before_first_checkpoint(long_data, tmp_path_factory) -> dict:
    """A run killed in its first epoch (64 iterations), before any checkpoint; while it ran, another
    ``segcore train`` into the same folder was tried."""
    run = tmp_path_factory.mktemp("killed-early") / "run"
    process = start(train_args(long_data, run, *MODEL, "--batch-size", "1", "--epochs", "1"), run.with_suffix(".log"))
    wait_for(lambda: history_rows(run), "the first iteration", process)
    status_while_training = liveness.training_status(read_manifest(run))
    # in this process, which has torch loaded already: the first epoch is still under way when it answers
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        status = main(train_args(long_data, run, *MODEL, "--epochs", "1"))
    kill(process)
    return {"run": run, "pid": process.pid, "status while training": status_while_training,
            "intruder": (status, stderr.getvalue()), "checkpoint written": (run / runs.LAST).exists()}


@pytest.mark.hardening(4, "segcore train into a run another process is training",
                       "refused with one sentence naming the process; a killed one reads as killed")
def test_training_into_a_run_being_trained_is_refused(killed_before_first_checkpoint):
    (status, stderr), pid = killed_before_first_checkpoint["intruder"], killed_before_first_checkpoint["pid"]
    assert status == 2
    assert f"is being trained right now (process {pid} on " in stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert killed_before_first_checkpoint["status while training"] == "running"
    assert liveness.training_status(read_manifest(killed_before_first_checkpoint["run"])) == "killed"


@pytest.mark.hardening(4, "segcore train into a run another process is training",
                       "refused with one sentence naming the process; a killed one reads as killed")
def test_two_trainings_started_at_once_into_one_folder_cannot_both_go_on(tiny_data, tmp_path, capsys):
    # before either has written run.json, the first holds the run's lock
    run = tmp_path / "run"
    held = liveness.lock_run(run)
    try:
        assert main(train_args(tiny_data, run, "--epochs", "1")) == 2
    finally:
        held.close()
    error = capsys.readouterr().err
    assert error == (f"error: {run} is being trained right now (process {os.getpid()} on {socket.gethostname()}); "
                     "wait for it to finish, or choose another --out.\n")
    assert not (run / runs.RUN_FILE).exists()


@pytest.mark.hardening(4, "a run.json saying running, written on another host (shared file system)",
                       "judged by its heartbeat: silent for 30 minutes, it reads as killed")
@pytest.mark.parametrize(("silent_s", "status"), [(60, "running"), (liveness.SILENT_AFTER_S + 60, "killed")])
def test_a_run_trained_on_another_host_is_judged_by_its_heartbeat(silent_s, status):
    from datetime import datetime, timedelta, timezone

    heard = (datetime.now(timezone.utc) - timedelta(seconds=silent_s)).isoformat()
    trainer = {"host": "another-host.invalid", "pid": 1, "started": heard, "heartbeat": heard}
    assert liveness.training_status({"status": "running", "trainer": trainer}) == status


@pytest.mark.hardening(4, "kill -9 before the first checkpoint, then train or train --resume",
                       "trained again from the first iteration, with or without --resume")
@pytest.mark.parametrize("how", ["train", "train --resume"])
def test_a_run_killed_before_its_first_checkpoint_trains_again(how, killed_before_first_checkpoint, long_data,
                                                               tmp_path, capsys):
    assert not killed_before_first_checkpoint["checkpoint written"], "the first epoch ended before the kill"
    run = tmp_path / "run"
    shutil.copytree(killed_before_first_checkpoint["run"], run)
    # the resume names no model: the run's own, in run.json, is trained again
    extra = ["--resume"] if how == "train --resume" else MODEL
    assert main(train_args(long_data, run, "--batch-size", "16", "--epochs", "1", *extra)) == 0, capsys.readouterr().err
    assert "training it again from the beginning" in capsys.readouterr().out
    manifest = read_manifest(run)
    assert manifest["status"] == "finished" and manifest["iterations_done"] == 4
    assert manifest["model"] == "unet" and manifest["options"] == {"depth": 2, "width": 4}
    assert [int(r["iteration"]) for r in history_rows(run)] == [1, 2, 3, 4]


# ---- kill -9 during evaluation ----

@pytest.fixture(scope="module")
def evaluated_run(tiny_data, tmp_path_factory) -> Path:
    """A U-Net trained 2 iterations and evaluated on val: it has an eval folder a kill could lose."""
    run = tmp_path_factory.mktemp("evaluated") / "run"
    assert main(train_args(tiny_data, run, *MODEL, "--batch-size", "4", "--max-iters", "2")) == 0
    evaluate_run(run, tiny_data, "val", device="cpu", progress=False)
    return run


#: Runs ``segcore ARGS`` and pauses it at the moment $PAUSE_AT, touching $PAUSE_MARKER, for the kill.
PAUSING_DRIVER = r'''
import os, pathlib, shutil, sys, time
from segcore import atomic
from segcore.runs import eval_folder

moment, marker = os.environ["PAUSE_AT"], pathlib.Path(os.environ["PAUSE_MARKER"])

def pause():
    marker.touch()
    time.sleep(600)

def pause_before_the_tables():
    write_csv = eval_folder._write_csv
    def paused(path, rows):
        pause()
        write_csv(path, rows)
    eval_folder._write_csv = paused

if moment in ("writing", "writing straight into the folder"):
    pause_before_the_tables()  # metrics.json and predictions.json are written, the CSVs and curves are not
if moment == "writing straight into the folder":  # no protection: no staging folder, no rename
    def staging_folder(out):
        shutil.rmtree(out, ignore_errors=True)
        pathlib.Path(out).mkdir(parents=True)
        return pathlib.Path(out)
    atomic.staging_folder = staging_folder
    atomic.replace_folder = lambda built, out: None
if moment == "swapped, removing the old folder":
    remove = shutil.rmtree
    def rmtree(path, *args, **kwargs):
        if ".old-" in pathlib.Path(path).name:
            pause()
        remove(path, *args, **kwargs)
    shutil.rmtree = rmtree
if moment == "between the two renames (no atomic swap)":
    atomic.exchange = lambda a, b: False  # as on a system without renameat2(RENAME_EXCHANGE)
    rename = pathlib.Path.rename
    def rename_then_pause(self, target):
        moved = rename(self, target)
        if ".old-" in pathlib.Path(target).name:
            pause()
        return moved
    pathlib.Path.rename = rename_then_pause

from segcore.cli import main
sys.exit(main(sys.argv[1:]))
'''


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def is_complete(folder: Path, n_images: int) -> bool:
    """Every file of an eval folder there and whole."""
    if not all((folder / name).is_file() for name in EVAL_FILES):
        return False
    for name in ("metrics.json", "predictions.json", "curves.json"):
        json.loads((folder / name).read_text())
    return len(runs.read_per_image(folder)) == n_images


def evaluate_until_killed(run: Path, data: Path, moment: str, tmp_path: Path) -> None:
    marker = tmp_path / "paused"
    process = start(["eval", str(run), "--data", str(data), "--split", "val", "--device", "cpu", "--no-progress"],
                    tmp_path / "eval.log", driver=PAUSING_DRIVER, env={"PAUSE_AT": moment, "PAUSE_MARKER": str(marker)})
    wait_for(marker.exists, f"segcore eval to reach the moment: {moment}", process)
    kill(process)


@pytest.mark.hardening(4, "kill -9 during segcore eval, over an earlier eval folder",
                       "the old folder stays whole (or the new one is whole); the next eval puts it back if needed "
                       "and removes the leftovers")
@pytest.mark.parametrize("moment", ["writing", "swapped, removing the old folder",
                                    "between the two renames (no atomic swap)"])
def test_a_kill_during_evaluation_never_leaves_half_an_eval_folder(moment, evaluated_run, tiny_data, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(evaluated_run, run)
    folder = run / "evals" / f"{tiny_data.name}-val"
    before = snapshot(folder)
    evaluate_until_killed(run, tiny_data, moment, tmp_path)

    listed = runs.eval_folders(run)
    # a reader lists only whole folders: the old one, or (killed after the swap) the new one
    assert all(is_complete(f, 2) for f in listed.values())
    if moment == "writing":
        assert snapshot(listed[folder.name]) == before
    elif moment.startswith("swapped"):
        assert snapshot(listed[folder.name]) != before
    else:
        # killed between the renames, the old folder is set aside, hidden, never removed...
        assert listed == {} and [p for p in folder.parent.iterdir() if ".old-" in p.name]
        # ...and the next write of the folder (or a recovery) puts it back first, as it was
        atomic.recover_folder(folder)
        assert snapshot(folder) == before

    assert evaluate_run(run, tiny_data, "val", device="cpu", progress=False) == folder
    assert is_complete(folder, 2) and [p.name for p in folder.parent.iterdir()] == [folder.name]


@pytest.mark.hardening(4, "kill -9 during an eval that writes straight into its folder (no staging folder)",
                       "a half-written folder is listed: the danger is real")
def test_without_a_staging_folder_a_kill_leaves_half_an_eval_folder(evaluated_run, tiny_data, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(evaluated_run, run)
    evaluate_until_killed(run, tiny_data, "writing straight into the folder", tmp_path)
    listed = runs.eval_folders(run)[f"{tiny_data.name}-val"]
    assert not is_complete(listed, 2) and not (listed / "per_image.csv").exists()


# ---- kill -9 in the middle of writing a file ----

#: Writes half of a run.json-like file to sys.argv[1], atomically or with a plain open(), and pauses.
HALF_WRITER = r'''
import pathlib, sys, time
from segcore import atomic
path, marker, how = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
text = '{"status": "finished", "notes": "' + "x" * 100000 + '"}\n'
with (atomic.atomic_open(path) if how == "atomic" else open(path, "w")) as file:
    file.write(text[:len(text) // 2])
    file.flush()
    marker.touch()
    time.sleep(600)
'''


def write_until_killed(path: Path, how: str, tmp_path: Path) -> None:
    marker = tmp_path / "paused"
    process = start([str(path), str(marker), how], tmp_path / "write.log", driver=HALF_WRITER)
    wait_for(marker.exists, "half the file to be written", process)
    kill(process)


@pytest.mark.hardening(4, "kill -9 halfway through writing run.json, a checkpoint or a comparison",
                       "the old file stays whole; the next write removes the leftover")
def test_a_kill_halfway_through_an_atomic_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "run" / runs.RUN_FILE
    runs.write_json(path, {"status": "running"})
    write_until_killed(path, "atomic", tmp_path)
    assert json.loads(path.read_text()) == {"status": "running"}
    assert len(list(path.parent.iterdir())) == 2  # run.json and the killed writer's temporary
    runs.write_json(path, {"status": "finished"})
    assert [p.name for p in path.parent.iterdir()] == [runs.RUN_FILE]


@pytest.mark.hardening(4, "kill -9 halfway through a plain open(path, 'w') write",
                       "the file is cut off and no longer JSON: the danger is real")
def test_a_kill_halfway_through_a_plain_write_cuts_the_file(tmp_path):
    path = tmp_path / "run" / runs.RUN_FILE
    runs.write_json(path, {"status": "running"})
    write_until_killed(path, "plain", tmp_path)
    with pytest.raises(json.JSONDecodeError):
        json.loads(path.read_text())


@pytest.mark.hardening(4, "how run.json, checkpoints, history, eval folders, comparisons and datasets are written",
                       "each is built beside its place and renamed there")
def test_every_file_a_user_keeps_is_written_by_a_rename(tiny_data, tmp_path, monkeypatch):
    from segcore.data.synth import generate
    from segcore.evaluation.compare import compare_runs

    renamed, replaced = [], []
    rename, swap = os.replace, atomic.replace_folder
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: (renamed.append(Path(b).name), rename(a, b))[1])
    monkeypatch.setattr(atomic, "replace_folder", lambda a, b: (replaced.append(Path(b).name), swap(a, b))[1])
    run = tmp_path / "run"
    assert main(train_args(tiny_data, run, *MODEL, "--batch-size", "4", "--max-iters", "1")) == 0
    # a resume rewrites history.csv without the rows past its checkpoint
    assert main(train_args(tiny_data, run, "--batch-size", "4", "--max-iters", "2", "--resume")) == 0
    evaluate_run(run, tiny_data, "val", device="cpu", progress=False)
    compare_runs(run, run, tiny_data, "val", resamples=10, progress=False)
    generate(tmp_path / "shapes", n_train=1, n_val=1, n_test=1, workers=1)
    assert {runs.RUN_FILE, runs.CHECKPOINT, runs.LAST, runs.HISTORY, runs.VALIDATION,
            f"{tiny_data.name}-val-vs-run.json"} <= set(renamed)
    assert replaced == [f"{tiny_data.name}-val", "shapes"]
