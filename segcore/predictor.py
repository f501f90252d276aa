"""A trained model rebuilt from its file alone, and ``segcore predict`` on image files.

A model comes from a run directory (its checkpoint.pt), a segcore checkpoint file, or a torchvision
Mask R-CNN state dict (such as torchvision's COCO weights file, given by path: nothing is downloaded).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights
from torchvision.transforms.v2.functional import to_dtype, to_pil_image

from segcore import runs
from segcore.coco.results import to_coco_results
from segcore.coco.rle import MAX_ENCODED_PIXELS
from segcore.data.images import read_image
from segcore.errors import CheckpointError, SegcoreError
from segcore.models import model_options, model_spec
from segcore.models.maskrcnn import torchvision_options
from segcore.models.prediction import Prediction, predict
from segcore.precision import autocast
from segcore.runs import checkpoints
from segcore.visualize import overlay


@dataclass
class LoadedModel:
    """A model ready for inference, with what is needed to name its outputs."""

    model: nn.Module
    name: str
    options: Any
    class_names: list[str]
    category_ids: list[int]
    source: str
    #: mixed precision at inference (:func:`segcore.precision.autocast`): bfloat16 on a CPU that has it
    amp: bool = True

    @property
    def device(self) -> torch.device:
        """Where the model's weights are."""
        return next(self.model.parameters()).device

    def __call__(self, images: list[torch.Tensor]) -> list[Prediction]:
        """(3, H, W) uint8 or float images -> one Prediction each."""
        floats = [to_dtype(image.to(self.device), torch.float32, scale=True) for image in images]
        with autocast(self.device, self.amp):
            return predict(self.model, floats)


def load_model(source: str | Path, *, model_name: str | None = None, device: str | torch.device = "cpu",
               amp: bool = True, **option_overrides: Any) -> LoadedModel:
    """Rebuild a model for inference.

    Args:
        source: a run directory, a segcore checkpoint, or a torchvision Mask R-CNN state dict.
        model_name: needed only for a plain state dict (only "maskrcnn" reads torchvision's files).
        device: where to put the model.
        amp: run it in mixed precision where the device has it (bfloat16 on CPU, float16 on CUDA).
        option_overrides: model options to change, e.g. ``box_score_thresh``, for a plain state dict.
    """
    path = Path(source)
    if path.is_dir():
        path = path / runs.CHECKPOINT
    content = checkpoints.load_file(path)
    if checkpoints.is_segcore_checkpoint(content):
        name = content["model"]
        class_names, category_ids = content["class_names"], content.get("category_ids") or list(
            range(1, len(content["class_names"]) + 1))
        try:  # options of the wrong type or beyond the bounds segcore builds: named with the file they came from
            options = model_options(name, **content["options"])
            model = model_spec(name).build(options, num_classes=len(class_names) + 1)
        except SegcoreError as error:
            raise CheckpointError(f"{path} holds model options segcore cannot build: {error}") from None
        try:
            model.load_state_dict(content["state_dict"])
        except RuntimeError as error:
            why = str(error).splitlines()[0]
            raise CheckpointError(f"{path} does not fit the {name} model it names ({why}).") from None
    else:
        if (model_name or "maskrcnn") != "maskrcnn":
            raise SegcoreError(f"{path} is a plain state dict; only maskrcnn reads those (torchvision's Mask R-CNN).")
        name = "maskrcnn"
        weights = checkpoints.state_dict_of(content, path)
        logits = weights.get("roi_heads.box_predictor.cls_score.weight")
        if logits is None:
            raise CheckpointError(f"{path} is not a Mask R-CNN state dict: it has no roi_heads.box_predictor.")
        num_classes = logits.shape[0]
        options = torchvision_options(**option_overrides)
        class_names, category_ids = _torchvision_classes(num_classes)
        model = model_spec(name).build(options, num_classes=num_classes)
        report = checkpoints.load_weights(model, content, path)
        if report["fresh"]:
            raise CheckpointError(f"{path} does not fit torchvision's maskrcnn_resnet50_fpn: {len(report['fresh'])} "
                                  f"tensors are missing, e.g. {report['fresh'][0]}.")
    # channels-last is the layout the fastest convolutions of oneDNN and cuDNN use
    model.eval().to(device, memory_format=torch.channels_last)
    return LoadedModel(model, name, options, class_names, category_ids, str(path), amp)


def _torchvision_classes(num_classes: int) -> tuple[list[str], list[int]]:
    """Names and category ids of a torchvision model's labels 1..num_classes-1.

    torchvision's COCO models predict COCO category ids directly (91 outputs, some unused), so label i is
    category i; their names ship with torchvision, no download needed.
    """
    if num_classes == 91:
        names = MaskRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"][1:]
    else:
        names = [f"class_{i}" for i in range(1, num_classes)]
    return list(names), list(range(1, num_classes))


def check_outputs(images: list[str | Path], out: Path) -> None:
    """Refuse, before anything is written, an output that would land on a file the user has: an input image
    (``--out`` the images' own folder), another input's overlay (two images of one stem), or a
    predictions.json that an earlier ``segcore predict`` did not write (it writes images.json beside it)."""
    inputs = {Path(file).resolve(): file for file in images}
    written: dict[Path, str | Path] = {}
    for file in images:
        target = (out / f"{Path(file).stem}.png").resolve()
        if target in inputs:
            raise SegcoreError(f"{out} holds the input image {inputs[target]}, over which its overlay would be "
                               f"written; give --out a folder apart from the images.")
        if target in written:
            raise SegcoreError(f"{written[target]} and {file} would both write their overlay to {target}: the second "
                               f"would overwrite the first; predict them into separate --out folders.")
        written[target] = file
    for name in ("predictions.json", "images.json"):
        if (out / name).exists() and not ((out / "predictions.json").is_file() and (out / "images.json").is_file()):
            raise SegcoreError(f"{out / name} exists and was not written by segcore predict; give another --out "
                               f"folder so that it is kept.")


def predict_files(loaded: LoadedModel, images: list[str | Path], out: str | Path, *,
                  score_threshold: float = 0.5) -> dict[str, Any]:
    """Predict each image file; write ``<stem>.png`` overlays and ``predictions.json`` into ``out``.

    predictions.json is in COCO results format; since the images come from no dataset, their ids are
    1..n in the order given, and ``images.json`` maps each id to its file.

    Returns:
        {"images": n, "instances": number of instances at or above ``score_threshold``, "out": out}.
    """
    out = Path(out)
    check_outputs(images, out)
    out.mkdir(parents=True, exist_ok=True)
    results, listing, shown = [], [], 0
    for image_id, file in enumerate(images, start=1):
        image = read_image(file)
        height, width = image.shape[-2:]
        if height * width > MAX_ENCODED_PIXELS:
            raise SegcoreError(f"{file} is {width}x{height} pixels; its masks are written as COCO RLE at full size, "
                               f"which pycocotools can do for at most {MAX_ENCODED_PIXELS:,} pixels (about "
                               f"4096x4096), so scale it down or tile it.")
        prediction = loaded([image])[0].to("cpu")
        shown += int((prediction.scores >= score_threshold).sum())
        picture = overlay(image, prediction, loaded.class_names, score_threshold=score_threshold)
        to_pil_image(picture).save(out / f"{Path(file).stem}.png")
        results += to_coco_results(prediction, image_id, loaded.category_ids)
        listing.append({"id": image_id, "file_name": str(file), "height": image.shape[1], "width": image.shape[2]})
    runs.write_json(out / "predictions.json", results)
    runs.write_json(out / "images.json", {"images": listing, "categories": [
        {"id": c, "name": n} for c, n in zip(loaded.category_ids, loaded.class_names)]})
    return {"images": len(listing), "instances": shown, "out": str(out)}
