"""Training the mask branch alone on a frozen detector, from cached features (--train-only mask_head)."""

from __future__ import annotations

import json

import pytest
import torch

from segcore.errors import SegcoreError
from segcore.models import create_model
from segcore.models.mask_branch import is_mask_branch, reset_mask_branch
from segcore.training.config import TrainConfig
from segcore.training.loop import train
from tests.conftest import TINY_MASKRCNN


def mask_branch_state(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items() if is_mask_branch(k)}


def test_every_variant_of_a_seed_starts_from_the_same_conv_stack_and_predictor():
    plain = create_model("maskrcnn", num_classes=4, **TINY_MASKRCNN)
    fancy = create_model("maskrcnn", num_classes=4, **TINY_MASKRCNN, attention="spatial", squeeze_excitation=True)
    for model in (plain, fancy):
        reset_mask_branch(model, seed=3)
    shared = mask_branch_state(plain)
    extras = {k: v for k, v in mask_branch_state(fancy).items() if k not in shared}
    assert extras and all("squeeze_excitation" in k or "spatial_attention" in k for k in extras)
    for key, value in shared.items():
        assert torch.equal(mask_branch_state(fancy)[key], value), key
    other = create_model("maskrcnn", num_classes=4, **TINY_MASKRCNN)
    reset_mask_branch(other, seed=4)
    assert not torch.equal(other.roi_heads.mask_predictor.mask_fcn_logits.weight,
                           plain.roi_heads.mask_predictor.mask_fcn_logits.weight)


def test_the_mask_branch_trains_alone_and_the_detector_stays_as_it_was(tiny_run, shapes, tmp_path):
    out = train(TrainConfig(model="maskrcnn", data=str(shapes), out=str(tmp_path / "mask-se"), max_iters=3,
                            batch_size=2, log_every=1, weights=str(tiny_run / "checkpoint.pt"),
                            train_only="mask_head", model_options={"squeeze_excitation": True}), progress=False)
    detector = torch.load(tiny_run / "checkpoint.pt", weights_only=True)["state_dict"]
    trained = torch.load(out / "checkpoint.pt", weights_only=True)
    assert trained["options"]["squeeze_excitation"] and trained["options"]["attention"] == "spatial"
    for key, value in trained["state_dict"].items():
        if not is_mask_branch(key) and key in detector and value.is_floating_point():
            assert torch.equal(value.float(), detector[key].float()), key
    assert any(not torch.equal(trained["state_dict"][k].float(), detector[k].float())
               for k in detector if is_mask_branch(k))
    history = (out / "history.csv").read_text().splitlines()
    assert history[0].split(",")[:4] == ["epoch", "iteration", "lr", "loss"] and "loss_mask" in history[0]
    assert "loss_classifier" not in history[0] and len(history) == 4
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["training"]["train_only"] == "mask_head" and manifest["best"]["metric"] == "val_mask_AP"


def test_train_only_needs_a_maskrcnn_checkpoint(shapes, tmp_path):
    with pytest.raises(SegcoreError, match="pass --weights RUN/checkpoint.pt"):
        train(TrainConfig(model="maskrcnn", data=str(shapes), out=str(tmp_path / "a"), max_iters=1,
                          train_only="mask_head", model_options=TINY_MASKRCNN), progress=False)
    with pytest.raises(SegcoreError, match="use it with --model maskrcnn"):
        train(TrainConfig(model="unet", data=str(shapes), out=str(tmp_path / "b"), max_iters=1,
                          train_only="mask_head"), progress=False)


def test_without_room_for_the_cache_each_step_runs_the_detector_and_sees_the_same_rois(tiny_run, shapes):
    from segcore.data import CocoSegmentation, eval_transforms
    from segcore.models.mask_branch import DetectorRoIs
    from segcore.predictor import load_model

    model = load_model(tiny_run).model.train()
    dataset = CocoSegmentation(shapes, "train", transforms=eval_transforms())
    cached = DetectorRoIs(model, dataset, torch.device("cpu"), seed=0)
    lazy = DetectorRoIs(model, dataset, torch.device("cpu"), seed=0, memory_budget=0)
    assert cached.cached and not lazy.cached and lazy.estimate > 0
    assert model.training and model.backbone.training  # the detector ran in eval mode and was put back
    for index in (0, len(dataset) - 1):
        a, b = cached[index], lazy[index]
        assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["targets"], b["targets"])
        assert all(torch.equal(a["features"][k], b["features"][k]) for k in a["features"])


def test_a_detector_that_does_not_fit_is_refused_rather_than_frozen_at_random(tiny_run, shapes, tmp_path):
    with pytest.raises(SegcoreError, match="tensors do not fit these model options"):
        train(TrainConfig(model="maskrcnn", data=str(shapes), out=str(tmp_path / "wide"), max_iters=1,
                          weights=str(tiny_run / "checkpoint.pt"), train_only="mask_head",
                          model_options={"box_representation": 32}), progress=False)
