"""The semantic baselines (FCN, U-Net) behind Mask R-CNN's calling convention."""

from __future__ import annotations

import pytest
import torch

from segcore.errors import SegcoreError
from segcore.models.prediction import Prediction, predict
from segcore.models.semantic import FCNOptions, UNetOptions, build_fcn, build_unet

NUM_CLASSES = 4  # 3 classes + background
SIZES = [(64, 64), (48, 64)]  # (H, W) of the two images of a batch

BUILDERS = {
    "fcn": lambda num_classes=NUM_CLASSES: build_fcn(FCNOptions(), num_classes=num_classes),
    "unet": lambda num_classes=NUM_CLASSES: build_unet(UNetOptions(), num_classes=num_classes),
}


@pytest.fixture(params=sorted(BUILDERS))
def model(request):
    torch.manual_seed(0)
    return BUILDERS[request.param]()


def image_and_target(height: int, width: int, label: int | None = 1) -> tuple[torch.Tensor, dict]:
    """A random image with one square of class ``label`` (none if ``label`` is None), and its target."""
    image = torch.rand(3, height, width)
    semantic = torch.zeros(height, width, dtype=torch.int64)
    if label is not None:
        semantic[8:24, 8:24] = label
        image[:, 8:24, 8:24] = 1.0
    # the keys an instance model needs are present too and must be ignored
    target = {"semantic": semantic, "boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64)}
    return image, target


def test_training_returns_finite_cross_entropy_with_gradients_everywhere(model):
    images, targets = zip(*(image_and_target(h, w, label) for (h, w), label in zip(SIZES, [1, 3])))
    model.train()
    losses = model(list(images), list(targets))
    assert set(losses) == {"loss_ce"}
    assert losses["loss_ce"].ndim == 0 and torch.isfinite(losses["loss_ce"])
    losses["loss_ce"].backward()
    missing = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing


def test_training_on_an_image_without_objects(model):
    image, target = image_and_target(64, 64, label=None)
    model.train()
    loss = model([image, image.clone()], [target, target])["loss_ce"]
    assert torch.isfinite(loss) and loss > 0


def test_evaluation_answers_probabilities_at_each_image_size(model):
    images = [torch.rand(3, h, w) for h, w in SIZES]
    model.eval()
    with torch.no_grad():
        outputs = model(images)
    assert len(outputs) == len(images)
    for output, (h, w) in zip(outputs, SIZES):
        probabilities = output["probabilities"]
        assert probabilities.shape == (NUM_CLASSES, h, w) and probabilities.dtype == torch.float32
        torch.testing.assert_close(probabilities.sum(0), torch.ones(h, w))


def test_predictions_have_consistent_shapes(model):
    images = [torch.rand(3, h, w) for h, w in SIZES]
    predictions = predict(model, images)
    for prediction, (h, w) in zip(predictions, SIZES):
        assert isinstance(prediction, Prediction)
        n = len(prediction)
        assert prediction.masks.shape == (n, h, w) and prediction.masks.dtype == torch.bool
        assert prediction.boxes.shape == (n, 4)
        assert prediction.semantic.shape == (h, w)


def test_fcn_features_keep_an_eighth_of_the_resolution_by_default():
    for backbone in ["resnet18", "resnet50"]:
        fcn = build_fcn(FCNOptions(backbone=backbone), num_classes=NUM_CLASSES).eval()
        with torch.no_grad():
            features = fcn.network.backbone(torch.zeros(1, 3, 64, 64))["out"]
        assert features.shape[-2:] == (8, 8), backbone


def test_unet_overfits_one_image():
    torch.manual_seed(0)
    model = build_unet(UNetOptions(depth=3, width=16), num_classes=2).train()
    image, target = image_and_target(32, 32, label=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = model([image], [target])["loss_ce"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]


def test_unet_checkpoint_keys_are_named_by_stage():
    keys = build_unet(UNetOptions(depth=2, width=4), num_classes=2).state_dict().keys()
    assert {"network.encoder.0.conv1.weight", "network.decoder.0.up.weight", "network.head.weight"} <= set(keys)


@pytest.mark.parametrize("build, message", [
    (lambda: build_fcn(FCNOptions(backbone="vgg16"), num_classes=2), "unknown backbone 'vgg16' for fcn"),
    (lambda: build_fcn(FCNOptions(output_stride=4), num_classes=2), "output_stride 4"),
    (lambda: build_fcn(FCNOptions(stages=3, output_stride=32), num_classes=2), "fcn stages 3 with output_stride 32"),
    (lambda: build_fcn(FCNOptions(stages=2), num_classes=2), "fcn stages 2"),
    (lambda: build_unet(UNetOptions(depth=0), num_classes=2), "unet depth 0"),
    (lambda: build_unet(UNetOptions(width=0), num_classes=2), "unet width 0"),
    (lambda: build_unet(UNetOptions(), num_classes=1), "num_classes of at least 2"),
])
def test_bad_options_raise_a_clear_error(build, message):
    with pytest.raises(SegcoreError, match=message):
        build()


def test_an_fcn_cut_after_stage_3_keeps_a_quarter_of_the_weights():
    full, cut = (build_fcn(FCNOptions(output_stride=16, stages=k), num_classes=3) for k in (4, 3))

    def count(model):
        return sum(p.numel() for p in model.parameters())

    assert count(cut) < count(full) / 3
    cut.eval()
    with torch.no_grad():
        assert cut([torch.rand(3, 64, 96)])[0]["probabilities"].shape == (3, 64, 96)
