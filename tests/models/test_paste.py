"""segcore's mask pasting gives exactly torchvision's."""

from __future__ import annotations

import torch
from torchvision.models.detection.roi_heads import paste_masks_in_image

from segcore.models.paste import paste_masks


def test_pasted_masks_equal_torchvision_s_inside_outside_and_across_the_edges():
    torch.manual_seed(0)
    masks = torch.rand(40, 1, 28, 28)
    # some start above or left of the image, and some reach past its far edges (torchvision's slicing fails
    # for a box that starts past a far edge; clipped detections never do)
    corners = torch.rand(40, 2) * torch.tensor([70.0, 54.0]) - 10
    sizes = torch.rand(40, 2) * 48 + 12  # every box reaches into the image
    boxes = torch.cat([corners, corners + sizes], dim=1)
    boxes[0] = torch.tensor([5.0, 5.0, 5.0, 5.0])        # a degenerate box
    boxes[2] = torch.tensor([0.0, 0.0, 63.0, 47.0])        # the whole image
    assert torch.equal(paste_masks(masks, boxes, (48, 64)), paste_masks_in_image(masks, boxes, (48, 64)))


def test_a_box_wholly_outside_the_image_pastes_nothing():
    # torchvision's slicing wraps around there; detections are clipped to the image, so none reaches it
    boxes = torch.tensor([[-40.0, -40.0, -20.0, -20.0]])
    assert not paste_masks(torch.ones(1, 1, 28, 28), boxes, (48, 64)).any()


def test_no_masks_paste_to_an_empty_batch():
    pasted = paste_masks(torch.zeros(0, 1, 28, 28), torch.zeros(0, 4), (32, 32))
    assert pasted.shape == (0, 1, 32, 32)


def test_the_model_answers_torchvision_s_pasted_masks():
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    from segcore.models import create_model

    model = create_model("maskrcnn", num_classes=3, min_size=64, max_size=64, box_score_thresh=0.0).eval()
    image = torch.rand(3, 80, 96)
    with torch.no_grad():
        ours = model([image])[0]
        model.transform.postprocess = GeneralizedRCNNTransform.postprocess.__get__(model.transform)
        theirs = model([image])[0]
    assert len(ours["masks"]) > 0 and ours["masks"].shape[-2:] == (80, 96)
    for key in ("boxes", "masks", "scores"):
        assert torch.equal(ours[key], theirs[key]), key
