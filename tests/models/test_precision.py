"""Mixed precision: bfloat16 autocast on the CPU gives the float32 losses and float32 outputs."""

from __future__ import annotations

import pytest
import torch

from segcore.data import CocoSegmentation, collate, eval_transforms
from segcore.models import create_model
from segcore.precision import autocast_dtype, cpu_bfloat16, precision_name
from segcore.training.loop import training_targets
from tests.conftest import TINY_OPTIONS

#: bfloat16 keeps 8 bits of mantissa (a relative step of 2^-8 = 0.4%); over a network's depth and a loss's
#: mean the errors partly cancel. A loss term may differ from float32's by this much, relative (measured on
#: this batch: at most 0.07%, Mask R-CNN's mask loss).
LOSS_TOLERANCE = 0.01


def fixed_batch(shapes, size=2):
    dataset = CocoSegmentation(shapes, "train", transforms=eval_transforms())
    images, targets = collate([dataset[i] for i in range(size)])
    return dataset, images, training_targets(targets, torch.device("cpu"))


def losses_of(name, dataset, images, targets, *, bfloat16, proposals=None):
    """The model's loss terms on the batch, from the same weights and the same random draws; with
    ``proposals`` (Mask R-CNN) the RoI heads see those instead of the RPN's own."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=len(dataset.class_names) + 1, **TINY_OPTIONS[name]).train()
    seen = {}
    if proposals is not None or name == "maskrcnn":
        def swap(_module, _inputs, output):
            seen["proposals"] = output[0]
            return (proposals, output[1]) if proposals is not None else output
        model.rpn.register_forward_hook(swap)
    torch.manual_seed(1)  # the RPN's and RoI heads' sampling
    # torch's own autocast, so that the float32 hand-overs are tested on any CPU (emulated where not native)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
        losses = model(images, targets)
    return {k: v.item() for k, v in losses.items()}, seen.get("proposals")


@pytest.mark.parametrize("name", ["maskrcnn", "fcn", "unet"])
def test_bfloat16_losses_match_float32_on_a_fixed_batch(name, shapes):
    dataset, images, targets = fixed_batch(shapes)
    exact, proposals = losses_of(name, dataset, images, targets, bfloat16=False)
    # the RPN ranks its proposals by score; a bfloat16 rounding may swap two near-equal ones and so change
    # which RoIs are sampled. The RoI heads get float32's proposals, so that the losses compare like for like.
    mixed, _ = losses_of(name, dataset, images, targets, bfloat16=True, proposals=proposals)
    assert set(mixed) == set(exact)
    for term, value in exact.items():
        assert mixed[term] == pytest.approx(value, rel=LOSS_TOLERANCE, abs=1e-3), term


def test_under_autocast_the_instances_come_out_in_float32(shapes):
    dataset, images, _ = fixed_batch(shapes, size=1)
    model = create_model("maskrcnn", num_classes=len(dataset.class_names) + 1, **TINY_OPTIONS["maskrcnn"],
                         box_score_thresh=0.0).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(images)[0]
    assert len(output["boxes"]) > 0
    for key in ("boxes", "scores", "masks"):
        assert output[key].dtype == torch.float32, key


def test_the_autocast_dtype_follows_the_device():
    assert autocast_dtype("cpu", enabled=False) is None and precision_name("cpu", enabled=False) == "float32"
    assert autocast_dtype("cpu") == (torch.bfloat16 if cpu_bfloat16() else None)
    assert autocast_dtype("cuda") == torch.float16 and precision_name("cuda") == "float16"
