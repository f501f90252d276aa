"""Mask losses: values on simple cases, the empty case, and what they reward."""

from __future__ import annotations

import pytest
import torch

from segcore.models.losses import lovasz_hinge_loss, mask_bce_loss, mask_losses, soft_jaccard_loss

LOSSES = [mask_bce_loss, soft_jaccard_loss, lovasz_hinge_loss]


@pytest.mark.parametrize("loss", LOSSES)
def test_no_rois_gives_zero_connected_to_the_graph(loss):
    logits = torch.zeros(0, 28, 28, requires_grad=True)
    value = loss(logits, torch.zeros(0, 28, 28))
    assert value.item() == 0.0
    value.backward()
    assert logits.grad is not None


@pytest.mark.parametrize("loss", LOSSES)
def test_a_confident_right_mask_costs_less_than_a_wrong_one(loss):
    target = torch.zeros(2, 28, 28)
    target[:, 7:21, 7:21] = 1
    right = (target * 2 - 1) * 10
    assert loss(right, target) < loss(-right, target)
    assert loss(right, target) < 0.05


def test_soft_jaccard_on_a_half_overlap():
    target = torch.zeros(1, 4, 4)
    target[0, :, :2] = 1
    logits = torch.full((1, 4, 4), -50.0)
    logits[0, :2, :] = 50.0  # predicts the top half: 4 of 8 target pixels, union 12
    assert soft_jaccard_loss(logits, target, eps=0.0).item() == pytest.approx(1 - 4 / 12, abs=1e-5)


def test_lovasz_gradient_flows():
    logits = torch.randn(3, 28, 28, requires_grad=True)
    lovasz_hinge_loss(logits, (torch.rand(3, 28, 28) > 0.5).float()).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_mask_losses_names_each_term():
    logits, target = torch.randn(2, 28, 28), torch.rand(2, 28, 28)
    assert set(mask_losses(logits, target)) == {"loss_mask"}
    both = mask_losses(logits, target, iou_loss="jaccard", iou_loss_weight=2.0)
    assert both["loss_mask_iou"].item() == pytest.approx(2 * soft_jaccard_loss(logits, target).item())
