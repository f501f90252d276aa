"""Mask R-CNN with segcore's mask branch: shapes, losses, attention, torchvision compatibility."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection import maskrcnn_resnet50_fpn

from segcore.errors import SegcoreError
from segcore.models import create_model
from segcore.models.maskrcnn import build_maskrcnn, torchvision_options
from segcore.models.prediction import predict
from segcore.runs import checkpoints
from tests.conftest import TINY_MASKRCNN

SMALL = {**TINY_MASKRCNN, "min_size": 64, "max_size": 64}


def three_objects(size: int = 64) -> dict:
    masks = torch.zeros(3, size, size, dtype=torch.uint8)
    boxes = []
    for i, (y, x, s) in enumerate([(4, 4, 12), (20, 30, 24), (50, 8, 10)]):
        masks[i, y:y + s, x:x + s] = 1
        boxes.append([x, y, x + s, y + s])
    return {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor([1, 2, 3]), "masks": masks}


def no_objects(size: int = 64) -> dict:
    return {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
            "masks": torch.zeros(0, size, size, dtype=torch.uint8)}


@pytest.mark.parametrize("options", [
    {}, {"attention": "spatial"}, {"squeeze_excitation": True, "attention": "spatial"},
    {"iou_loss": "jaccard"}, {"iou_loss": "lovasz", "iou_loss_weight": 0.5}, {"fpn": False},
    {"norm_heads": True, "anchor_scales": [1.0, 2.0]}, {"fpn": False, "anchor_scales": [1.0, 2.0]},
])
def test_training_step_gives_every_loss_term_and_gradients(options):
    torch.manual_seed(0)
    model = create_model("maskrcnn", num_classes=4, **SMALL, **options).train()
    losses = model([torch.rand(3, 64, 64), torch.rand(3, 64, 64)], [three_objects(), no_objects()])
    expected = {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
    if "iou_loss" in options:
        expected.add("loss_mask_iou")
    assert set(losses) == expected
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    head = model.roi_heads.mask_head
    assert head[0][0].weight.grad is not None
    if options.get("attention") == "spatial":
        assert head.spatial_attention.conv.weight.grad is not None


def test_a_batch_with_no_objects_trains():
    model = create_model("maskrcnn", num_classes=4, **SMALL).train()
    losses = model([torch.rand(3, 64, 64)], [no_objects()])
    assert torch.isfinite(sum(losses.values()))
    sum(losses.values()).backward()


def test_attention_maps_come_out_beside_masks_in_image_coordinates():
    torch.manual_seed(0)
    # a low score threshold so that an untrained model still answers some detections
    model = create_model("maskrcnn", num_classes=4, **SMALL, attention="spatial", box_score_thresh=0.0)
    prediction = predict(model, [torch.rand(3, 64, 48)])[0]
    n = len(prediction)
    assert n > 0
    assert prediction.masks.shape == (n, 64, 48) and prediction.masks.dtype == torch.bool
    assert prediction.attention.shape == (n, 64, 48)
    assert prediction.attention_roi.shape == (n, 14, 14)
    assert 0 <= prediction.attention.min() and prediction.attention.max() <= 1
    assert prediction.semantic.shape == (64, 48)


def test_without_attention_there_are_no_attention_maps():
    model = create_model("maskrcnn", num_classes=4, **SMALL, box_score_thresh=0.0)
    prediction = predict(model, [torch.rand(3, 64, 64)])[0]
    assert prediction.attention is None and prediction.attention_roi is None


def test_torchvision_state_dict_loads_strictly(tmp_path):
    torch.manual_seed(0)
    reference = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)
    path = tmp_path / "maskrcnn_resnet50_fpn.pth"
    torch.save(reference.state_dict(), path)
    ours = build_maskrcnn(torchvision_options(), num_classes=91)
    ours.load_state_dict(torch.load(path, weights_only=True), strict=True)
    assert torch.equal(ours.roi_heads.mask_head[0][0].weight, reference.roi_heads.mask_head[0][0].weight)


def test_torchvision_weights_fill_every_shared_layer_when_attention_is_on(tmp_path):
    reference = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)
    path = tmp_path / "coco.pth"
    torch.save(reference.state_dict(), path)
    ours = build_maskrcnn(torchvision_options(attention="spatial", squeeze_excitation=True), num_classes=91)
    report = checkpoints.load_weights(ours, checkpoints.load_file(path), path)
    assert report["skipped"] == []
    assert all(".spatial_attention." in k or ".squeeze_excitation." in k for k in report["fresh"])
    assert len(report["fresh"]) == 6


def test_same_predictions_as_torchvision_from_its_weights(tmp_path):
    torch.manual_seed(0)
    reference = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91, min_size=96,
                                      max_size=96, box_score_thresh=0.0).eval()
    ours = build_maskrcnn(torchvision_options(norm="batch", norm_eps=1e-5, min_size=96, max_size=96,
                                              box_score_thresh=0.0),
                          num_classes=91).eval()
    ours.load_state_dict(reference.state_dict())
    image = [torch.rand(3, 96, 96)]
    with torch.no_grad():
        expected, got = reference(image)[0], ours(image)[0]
    assert torch.allclose(expected["boxes"], got["boxes"], atol=1e-4)
    assert torch.allclose(expected["masks"], got["masks"], atol=1e-4)


@pytest.mark.parametrize("options, needle", [
    ({"backbone": "vgg"}, "backbone"), ({"attention": "channel"}, "attention"), ({"iou_loss": "dice"}, "iou_loss"),
    ({"anchor_sizes": [16, 32]}, "anchor_sizes"), ({"returned_layers": [0, 5]}, "returned_layers"),
    ({"no_such_option": 1}, "no_such_option"),
    # a list option's items are of its type, and it has one (found by the checkpoint mutations)
    ({"anchor_scales": [1, "a"]}, "anchor_scales must be a list of float values"),
    ({"aspect_ratios": []}, "aspect_ratios must be a list of at least one float"),
    ({"anchor_sizes": [16.5, 32, 64, 128]}, "anchor_sizes must be a list of int values"),
])
def test_bad_options_are_refused_with_a_sentence(options, needle):
    with pytest.raises(SegcoreError, match=needle):
        create_model("maskrcnn", num_classes=4, **options)


def test_anchor_scales_put_several_sizes_on_each_level():
    model = create_model("maskrcnn", num_classes=4, **SMALL, anchor_scales=[1.0, 2.0])
    sizes = model.rpn.anchor_generator.sizes
    assert all(len(level) == 2 and level[1] == 2 * level[0] for level in sizes)
    assert model.rpn.head.cls_logits.out_channels == 2 * 3  # two sizes by three aspect ratios
