"""segcore's models: one dictionary of builders, shared by the command line and the dashboard.

Every model is built by ``create_model(name, num_classes=…, **options)`` and follows torchvision's
detection calling convention: ``model(images, targets)`` in training mode gives a dict of ``loss_<term>``
tensors; :func:`segcore.models.prediction.predict` turns eval-mode outputs into :class:`Prediction`.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from segcore.errors import SegcoreError
from segcore.models.maskrcnn import MaskRCNNOptions, build_maskrcnn
from segcore.models.prediction import Prediction
from segcore.models.semantic import FCNOptions, UNetOptions, build_fcn, build_unet
from segcore.options import coerce

__all__ = ["MODELS", "ModelSpec", "Prediction", "create_model", "model_options", "model_spec"]


@dataclass(frozen=True)
class ModelSpec:
    """One entry of :data:`MODELS`.

    Attributes:
        build: ``build(options, *, num_classes) -> nn.Module``.
        options: the dataclass of the model's options.
        kind: "instance" (answers instances, paints a semantic map) or "semantic" (answers a label map,
            derives instances by connected components).
        description: one line for the command line's help and the dashboard.
    """

    build: Callable[..., nn.Module]
    options: type
    kind: str
    description: str


MODELS: dict[str, ModelSpec] = {
    "maskrcnn": ModelSpec(build_maskrcnn, MaskRCNNOptions, "instance",
                          "Mask R-CNN, ResNet + FPN, mask branch with optional spatial attention and IoU loss"),
    "fcn": ModelSpec(build_fcn, FCNOptions, "semantic", "FCN (Long et al.) on a ResNet, torchvision's"),
    "unet": ModelSpec(build_unet, UNetOptions, "semantic", "U-Net (Ronneberger et al.), configurable depth and width"),
}


#: Bounds of the numeric options, inclusive, wherever options come from (a config file, a checkpoint, the
#: command line): beyond them a model would ask for tens of gigabytes before it computes anything (a U-Net of
#: width 10^6, images resized to 100,000 pixels a side), so they are refused first, in one sentence.
LIMITS: dict[str, dict[str, tuple[float, float]]] = {
    "maskrcnn": {"fpn_channels": (1, 1024), "min_size": (16, 4096), "max_size": (16, 8192),
                 "rpn_pre_nms_top_n": (1, 20000), "rpn_post_nms_top_n": (1, 20000), "box_representation": (1, 4096),
                 "box_batch_size_per_image": (1, 4096), "mask_positives_per_image": (1, 4096),
                 "detections_per_img": (1, 1000), "mask_convs": (0, 16), "mask_width": (1, 1024),
                 "box_score_thresh": (0.0, 1.0), "iou_loss_weight": (0.0, 1000.0), "trainable_layers": (0, 5),
                 "norm_eps": (0.0, 1.0)},
    "fcn": {"output_stride": (8, 32)},
    "unet": {"depth": (1, 8), "width": (1, 512)},
}


def _check_limits(name: str, options) -> None:
    for key, (low, high) in LIMITS.get(name, {}).items():
        value = getattr(options, key, None)
        if value is None or isinstance(value, bool):
            continue
        if not (low <= value <= high):  # NaN fails this too
            raise SegcoreError(f"model '{name}' option {key}={value!r} is outside the range segcore builds, "
                               f"{low:g} to {high:g}; give a value in it.")


def model_spec(name: str) -> ModelSpec:
    """The entry of :data:`MODELS` called ``name``, or a SegcoreError listing the names."""
    if name not in MODELS:
        raise SegcoreError(f"unknown model '{name}'; choose one of {', '.join(MODELS)}.")
    return MODELS[name]


def model_options(name: str, **options: Any):
    """The options dataclass of model ``name`` filled from keyword options; unknown names are refused."""
    spec = model_spec(name)
    fields = {f.name for f in dataclasses.fields(spec.options)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise SegcoreError(
            f"model '{name}' has no option {', '.join(unknown)}; its options are {', '.join(sorted(fields))}."
        )
    hints = typing.get_type_hints(spec.options)
    built = spec.options(**{key: coerce(key, value, hints[key]) for key, value in options.items()})
    _check_limits(name, built)
    return built


def create_model(name: str, *, num_classes: int, **options: Any) -> nn.Module:
    """Build model ``name`` for ``num_classes`` classes (background included) from keyword options."""
    return model_spec(name).build(model_options(name, **options), num_classes=num_classes)
