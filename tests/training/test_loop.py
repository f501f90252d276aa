"""Training end to end: a complete run directory, resuming, atomic checkpoints, divergence, every model."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from segcore import runs
from segcore.errors import SegcoreError, TrainingError
from segcore.models import MODELS
from segcore.predictor import load_model
from segcore.runs import checkpoints
from segcore.training.config import TrainConfig
from segcore.training.loop import train
from segcore.training.schedule import learning_rate_factor
from tests.conftest import TINY_MASKRCNN, TINY_OPTIONS


def read_csv(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_a_run_directory_is_complete(tiny_run, shapes):
    manifest = json.loads((tiny_run / "run.json").read_text())
    for key in ("name", "model", "options", "class_names", "dataset", "seed", "git_commit", "versions", "created",
                "wall_time_s"):
        assert key in manifest, key
    assert manifest["model"] == "maskrcnn" and manifest["options"]["attention"] == "spatial"
    assert manifest["dataset"]["checksum"] and manifest["status"] == "finished"
    assert manifest["versions"]["torch"] == torch.__version__ and manifest["versions"]["pycocotools"] != "unknown"
    history = read_csv(tiny_run / "history.csv")
    assert [int(r["iteration"]) for r in history] == [1, 2, 3, 4]
    assert {"epoch", "iteration", "lr", "loss", "loss_mask", "loss_classifier", "images_per_s"} <= set(history[0])
    assert read_csv(tiny_run / "validation.csv")[-1]["val_mIoU"] != ""
    for name in ("checkpoint.pt", "last.pt"):
        content = torch.load(tiny_run / name, weights_only=True)
        assert content["format"] == checkpoints.FORMAT and content["model"] == "maskrcnn"
    assert not list(tiny_run.glob(".*.tmp"))


def test_a_checkpoint_rebuilds_its_model_alone(tiny_run):
    loaded = load_model(tiny_run)
    assert loaded.name == "maskrcnn" and len(loaded.class_names) == 7
    prediction = loaded([torch.zeros(3, 256, 256, dtype=torch.uint8)])[0]
    assert prediction.semantic.shape == (256, 256)


def test_resume_continues_from_last(shapes, tmp_path):
    options = dict(model="maskrcnn", data=str(shapes), out=str(tmp_path / "run"), batch_size=4, epochs=2,
                   log_every=1, model_options=TINY_MASKRCNN)
    # 8 images at batch 4: two iterations an epoch; stop after the first epoch
    train(TrainConfig(**options, max_iters=2), progress=False)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["iterations_done"] == 2
    train(TrainConfig(**options, resume=True), progress=False)
    manifest = json.loads((tmp_path / "run" / "run.json").read_text())
    assert manifest["epochs_done"] == 2 and manifest["iterations_done"] == 4
    assert [int(r["iteration"]) for r in read_csv(tmp_path / "run" / "history.csv")] == [1, 2, 3, 4]
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["iteration"] == 4


def test_an_existing_run_is_never_overwritten(tiny_run, shapes):
    before = (tiny_run / "checkpoint.pt").read_bytes()
    with pytest.raises(SegcoreError, match="already holds a run"):
        train(TrainConfig(model="maskrcnn", data=str(shapes), out=str(tiny_run), max_iters=1), progress=False)
    assert (tiny_run / "checkpoint.pt").read_bytes() == before


def test_a_diverging_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint(shapes, tmp_path, monkeypatch):
    import segcore.models.losses

    calls = []
    bce = segcore.models.losses.mask_bce_loss

    def diverging_after_first_epoch(logits, targets):
        calls.append(1)
        loss = bce(logits, targets)
        return loss * float("nan") if len(calls) > 2 else loss

    monkeypatch.setattr(segcore.models.losses, "mask_bce_loss", diverging_after_first_epoch)
    out = tmp_path / "run"
    snapshots, save = {}, checkpoints.save_atomic
    monkeypatch.setattr(checkpoints, "save_atomic", lambda payload, path: (
        save(payload, path), snapshots.__setitem__(path.name, path.read_bytes())))
    # 8 images at batch 4: the first epoch's two steps are fine, the third is not
    with pytest.raises(TrainingError, match="iteration 3: .*not finite.*last.pt"):
        train(TrainConfig(model="maskrcnn", data=str(shapes), out=str(out), batch_size=4, epochs=2, log_every=1,
                          model_options=TINY_MASKRCNN), progress=False)
    assert (out / "last.pt").read_bytes() == snapshots["last.pt"]
    assert torch.load(out / "last.pt", weights_only=True)["iteration"] == 2


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_trains_and_predicts(name, shapes, tmp_path):
    out = tmp_path / name
    train(TrainConfig(model=name, data=str(shapes), out=str(out), max_iters=2, batch_size=2,
                      model_options=TINY_OPTIONS[name]), progress=False)
    loaded = load_model(out)
    prediction = loaded([torch.zeros(3, 256, 256, dtype=torch.uint8)])[0]
    assert prediction.masks.shape[1:] == (256, 256) and prediction.semantic.shape == (256, 256)


def test_warmup_then_cosine_decay():
    factors = [learning_rate_factor(i, total=100, warmup=10, schedule="cosine") for i in range(101)]
    assert factors[0] == pytest.approx(0.001) and factors[10] == pytest.approx(1.0)
    assert factors[55] == pytest.approx(0.5) and factors[100] == pytest.approx(0.0, abs=1e-9)


def test_checkpoints_are_written_atomically(tmp_path):
    path = tmp_path / "a.pt"
    checkpoints.save_atomic({"x": torch.ones(2)}, path)
    checkpoints.save_atomic({"x": torch.zeros(2)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.zeros(2))
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]


def test_run_manifest_errors_name_the_folder(tmp_path):
    with pytest.raises(SegcoreError, match="no run.json"):
        runs.read_run(tmp_path)


def test_training_from_a_torchvision_file_takes_its_architecture(shapes, tmp_path):
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    path = tmp_path / "maskrcnn_resnet50_fpn_coco.pth"
    torch.save(maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91).state_dict(), path)
    out = tmp_path / "run"
    train(TrainConfig(model="maskrcnn", data=str(shapes), out=str(out), max_iters=1, batch_size=1, weights=str(path),
                      model_options={"attention": "spatial", "min_size": 128, "max_size": 128}), progress=False)
    options = json.loads((out / "run.json").read_text())["options"]
    assert options["backbone"] == "resnet50" and options["fpn_channels"] == 256 and options["mask_width"] == 256
    assert options["attention"] == "spatial" and options["min_size"] == 128


def test_resume_mid_epoch_finishes_the_epoch_on_the_same_images(shapes, tmp_path):
    options = dict(model="unet", data=str(shapes), out=str(tmp_path / "run"), batch_size=2, epochs=2, log_every=1,
                   model_options=TINY_OPTIONS["unet"], augment=False, schedule="constant", warmup_iters=0)
    # 8 images at batch 2: four steps an epoch; stop after three, inside the first epoch
    train(TrainConfig(**options, max_iters=3), progress=False)
    resumed = train(TrainConfig(**{**options, "model": None, "model_options": {}}, resume=True), progress=False)
    rows = read_csv(resumed / "history.csv")
    assert [int(r["iteration"]) for r in rows] == list(range(1, 9))
    assert json.loads((resumed / "run.json").read_text())["iterations_done"] == 8

    straight = train(TrainConfig(**{**options, "out": str(tmp_path / "straight")}), progress=False)
    # the same images in the same order give the same losses, step for step
    assert [float(r["loss"]) for r in rows] == pytest.approx(
        [float(r["loss"]) for r in read_csv(straight / "history.csv")], rel=1e-4)


def test_resume_refuses_to_change_the_model(tiny_run, shapes):
    with pytest.raises(SegcoreError, match="attention cannot change"):
        train(TrainConfig(data=str(shapes), out=str(tiny_run), resume=True, max_iters=5,
                          model_options={"attention": "none"}), progress=False)
    with pytest.raises(SegcoreError, match="trained as maskrcnn"):
        train(TrainConfig(model="unet", data=str(shapes), out=str(tiny_run), resume=True), progress=False)


def test_the_logged_learning_rate_is_the_one_each_step_used(shapes, tmp_path):
    out = train(TrainConfig(model="unet", data=str(shapes), out=str(tmp_path / "run"), max_iters=3, batch_size=2,
                            lr=0.5, schedule="constant", warmup_iters=0, log_every=1,
                            model_options=TINY_OPTIONS["unet"]), progress=False)
    assert [float(r["lr"]) for r in read_csv(out / "history.csv")] == [0.5, 0.5, 0.5]


def test_a_failed_run_says_so_in_its_manifest(shapes, tmp_path, monkeypatch):
    import segcore.training.loop

    def broken(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(segcore.training.loop, "training_targets", broken)
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(model="unet", data=str(shapes), out=str(tmp_path / "run"), max_iters=2,
                          model_options=TINY_OPTIONS["unet"]), progress=False)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "interrupted"


@pytest.mark.parametrize("name, selection", [("maskrcnn", "val_mask_AP"), ("unet", "val_mIoU")])
def test_validation_every_n_iterations_on_a_subset_picks_by_the_kind_of_model(name, selection, shapes, tmp_path):
    out = train(TrainConfig(model=name, data=str(shapes), out=str(tmp_path / "run"), max_iters=5, batch_size=2,
                            val_every=2, val_images=3, model_options=TINY_OPTIONS[name]), progress=False)
    rows = read_csv(out / "validation.csv")
    # every second iteration, and the last one
    assert [int(r["iteration"]) for r in rows] == [2, 4, 5]
    assert list(rows[0]) == ["epoch", "iteration", "minutes", "images", "val_mask_AP", "val_box_AP", "val_mIoU",
                             "val_pixel_accuracy"]
    assert {r["images"] for r in rows} == {"3"}
    minutes = [float(r["minutes"]) for r in rows]
    assert minutes == sorted(minutes) and minutes[0] >= 0
    best = json.loads((out / "run.json").read_text())["best"]
    values = [float(r[selection]) for r in rows]
    # the last of the best validations holds checkpoint.pt (a tie goes to the later weights)
    assert best["metric"] == selection and best["value"] == pytest.approx(max(values))
    last_best = max(i for i, value in enumerate(values) if value == max(values))
    assert best["iteration"] == int(rows[last_best]["iteration"])
    assert torch.load(out / "checkpoint.pt", weights_only=True)["iteration"] == best["iteration"]


def test_a_resumed_run_continues_its_validation_csv(shapes, tmp_path):
    options = dict(model="unet", data=str(shapes), out=str(tmp_path / "run"), batch_size=2, epochs=2, log_every=1,
                   val_every=3, val_images=2, model_options=TINY_OPTIONS["unet"])
    # 8 images at batch 2: four steps an epoch; a first sitting of 5 steps validates at 3 and at its end
    train(TrainConfig(**options, max_iters=5), progress=False)
    first = read_csv(tmp_path / "run" / "validation.csv")
    assert [int(r["iteration"]) for r in first] == [3, 5]
    resumed = train(TrainConfig(**options, resume=True), progress=False)
    rows = read_csv(resumed / "validation.csv")
    assert [int(r["iteration"]) for r in rows] == [3, 5, 6, 8]
    assert rows[:2] == first
    # the minutes go on from the first sitting's, not from 0
    assert float(rows[2]["minutes"]) >= float(first[1]["minutes"])


def test_a_run_from_before_the_recipes_resumes_with_its_own_options(shapes, tmp_path):
    from segcore.cli import main

    out = tmp_path / "old"
    # trained as segcore trained before: SGD at 0.02, selecting by mIoU, validation.csv of semantic scores
    train(TrainConfig(model="unet", data=str(shapes), out=str(out), max_iters=2, batch_size=2,
                      optimizer="sgd", lr=0.02, model_options=TINY_OPTIONS["unet"]), progress=False)
    state = torch.load(out / "last.pt", weights_only=True)
    for key in ("optimizer_name", "best_metric", "train_only"):
        state.pop(key)
    torch.save(state, out / "last.pt")
    (out / "validation.csv").write_text("epoch,iteration,val_mIoU,val_pixel_accuracy,val_mean_class_accuracy\n"
                                        "1,2,0.1,0.5,0.2\n")
    assert main(["train", "--out", str(out), "--data", str(shapes), "--resume", "--max-iters", "4",
                 "--no-progress"]) == 0
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "finished" and manifest["iterations_done"] == 4
    assert torch.load(out / "last.pt", weights_only=True)["optimizer_name"] == "sgd"
    rows = read_csv(out / "validation.csv")
    assert rows[0]["val_mean_class_accuracy"] == "0.2" and rows[-1]["val_mask_AP"] != ""


def test_a_resume_with_another_optimizer_is_refused(shapes, tmp_path, capsys):
    from segcore.cli import main

    out = tmp_path / "run"
    train(TrainConfig(model="unet", data=str(shapes), out=str(out), max_iters=1, batch_size=2, optimizer="sgd",
                      model_options=TINY_OPTIONS["unet"]), progress=False)
    assert main(["train", "--out", str(out), "--data", str(shapes), "--resume", "--optimizer", "adamw",
                 "--max-iters", "2"]) == 2
    assert "was trained with sgd; resume it with --optimizer sgd" in capsys.readouterr().err


def test_the_recipe_gives_way_to_another_optimizer():
    from segcore.training.config import make_train_config

    assert make_train_config({"model": "maskrcnn"}).optimizer == "adamw"
    sgd = make_train_config({"model": "maskrcnn", "optimizer": "sgd"})
    assert (sgd.lr, sgd.weight_decay) == (0.02, 1e-4)  # SGD's own defaults, not AdamW's
    assert sgd.grad_clip == 10.0 and sgd.warmup_iters == 300  # the rest of the recipe stays
