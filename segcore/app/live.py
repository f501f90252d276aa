"""Live segmentation of uploaded images: decoding any upload, running models, and what the user downloads.

Used by the dashboard's live page; every function works on tensors and bytes, so the same steps can
run in a notebook.
"""

from __future__ import annotations

import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2.functional import resize, to_pil_image
from torchvision.utils import draw_segmentation_masks

from segcore.coco.results import to_coco_results
from segcore.data.images import read_image
from segcore.errors import DatasetError, SegcoreError
from segcore.metrics.attention import attention_focus, mask_in_roi
from segcore.models.prediction import Prediction
from segcore.predictor import LoadedModel
from segcore.visualize import class_colors

#: Uploads whose longer side exceeds this are scaled down before the model sees them: the models resize
#: internally to at most 512 px anyway, and full-size masks of a photo would cost seconds to paste and draw.
MAX_SIDE = 1024
#: Attention maps are blended over the image in this colour.
ATTENTION_COLOR = (255, 0, 255)
#: The largest upload segcore decodes, in megabytes as Streamlit counts them (MiB). A photo of the largest
#: size segcore reads (:data:`segcore.data.images.MAX_PIXELS`) is a JPEG of 10 to 30 MB, and Streamlit keeps
#: every uploaded file in the server's memory while its session shows it, so this bounds what each user's
#: uploads cost. The Live page gives the same number to its uploader, so a browser refuses a larger file with
#: Streamlit's own message before sending it, and .streamlit/config.toml gives it to Streamlit's server
#: (``server.maxUploadSize``), which refuses larger request bodies; this check holds where those are not in
#: force (AppTest, a notebook, a server started from another folder), and its message is then what users see.
MAX_UPLOAD_MB = 50
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024
#: The most images the Live page segments at once. Each is decoded alone and kept only as scaled to
#: :data:`MAX_SIDE` (3 MB at most), so that what a session holds is bounded whatever its uploads decode to:
#: a 64 KB PNG of 8192 x 8192 pixels decodes to 200 MB, which is let go before the next upload is decoded.
MAX_IMAGES = 8


def decode_upload(name: str, data: bytes) -> torch.Tensor:
    """An uploaded file as (3, H, W) uint8 RGB: PNG, JPEG, TIFF …, 16-bit, grayscale, RGBA and CMYK included.

    Raises:
        SegcoreError: one sentence naming the file when it is over :data:`MAX_UPLOAD_BYTES`, not an image,
            damaged or truncated, or has more pixels than segcore decodes.
    """
    if len(data) > MAX_UPLOAD_BYTES:
        megabytes = math.ceil(len(data) / 2**20 * 10) / 10  # rounded up: just over the limit never reads as on it
        raise SegcoreError(f"uploaded file {name} is {megabytes:.1f} MB, over the {MAX_UPLOAD_MB} MB limit for one "
                           f"upload; upload a smaller file, such as a JPEG or the image scaled down.")
    try:
        return read_image(io.BytesIO(data), what=f"uploaded file {name}", remedy="upload a PNG, JPEG or TIFF image")
    except DatasetError as error:
        raise SegcoreError(str(error)) from None


def shown(original: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """What the Live page keeps of a decoded image: the image fitted to :data:`MAX_SIDE` and the original's
    (height, width). The caller drops ``original`` with this call, so that one full-size image at most is
    held at a time."""
    return fit(original)[0], (int(original.shape[-2]), int(original.shape[-1]))


def fit(image: torch.Tensor, max_side: int = MAX_SIDE) -> tuple[torch.Tensor, float]:
    """The image scaled down (aspect kept) so that its longer side is at most ``max_side``.

    Returns:
        (3, h, w) uint8 and the scale applied (1.0 when the image already fits).
    """
    height, width = image.shape[-2:]
    longer = max(height, width)
    if longer <= max_side:
        return image, 1.0
    scale = max_side / longer
    size = [max(1, round(height * scale)), max(1, round(width * scale))]
    return resize(image, size, antialias=True), scale


@dataclass
class LiveResult:
    """One model's answer on one image, with its wall time."""

    prediction: Prediction
    milliseconds: float


def segment(loaded: LoadedModel, image: torch.Tensor) -> LiveResult:
    """Run a model on a (3, H, W) uint8 image; the time includes pre- and postprocessing (CUDA synchronised)."""
    device = next(loaded.model.parameters()).device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    prediction = loaded([image])[0]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return LiveResult(prediction.to("cpu"), (time.perf_counter() - start) * 1000.0)


def instances_table(prediction: Prediction, class_names: list[str]) -> list[dict]:
    """One row per instance: class, score, area in pixels and XYXY box."""
    areas = prediction.masks.flatten(1).sum(1).tolist() if len(prediction) else []
    return [{"instance": i, "class": class_names[int(label) - 1], "score": round(float(score), 3), "area": int(area),
             "box": [round(float(v), 1) for v in box]}
            for i, (label, score, area, box) in enumerate(zip(prediction.labels, prediction.scores, areas,
                                                             prediction.boxes))]


def attention_overlay(image: torch.Tensor, attention: torch.Tensor, alpha: float = 0.6) -> torch.Tensor:
    """One instance's attention map, (H, W) in [0, 1] pasted into the image, blended over the image.

    Returns:
        (3, H, W) uint8.
    """
    weight = attention.clamp(0, 1).to(torch.float32)[None] * alpha
    color = torch.tensor(ATTENTION_COLOR, dtype=torch.float32)[:, None, None]
    return (image.to(torch.float32) * (1 - weight) + color * weight).round().to(torch.uint8)


def semantic_picture(image: torch.Tensor, prediction: Prediction, num_classes: int, alpha: float = 0.5) -> torch.Tensor:
    """The semantic map over the image, each class 1..K in its class colour (background left clear).

    Returns:
        (3, H, W) uint8.
    """
    labels = torch.arange(1, num_classes + 1)
    masks = prediction.semantic[None] == labels[:, None, None]
    colors = class_colors(num_classes + 1)[1:]
    return draw_segmentation_masks(image, masks, alpha=alpha, colors=colors)


def masks_png(prediction: Prediction) -> bytes:
    """The instances as one PNG label image: 0 background, i + 1 for instance i, painted in score order
    (the highest on top); 16-bit when there are more than 255 instances."""
    height, width = prediction.semantic.shape[-2:]
    ids = np.zeros((height, width), dtype=np.uint16 if len(prediction) > 255 else np.uint8)
    for i in np.argsort(prediction.scores.numpy(), kind="stable"):
        ids[prediction.masks[i].numpy()] = i + 1
    buffer = io.BytesIO()
    Image.fromarray(ids).save(buffer, format="PNG")
    return buffer.getvalue()


def semantic_png(prediction: Prediction) -> bytes:
    """The semantic map as a PNG of class labels (0 background)."""
    buffer = io.BytesIO()
    Image.fromarray(prediction.semantic.numpy().astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def coco_json(prediction: Prediction, loaded: LoadedModel, file_name: str, size: tuple[int, int]) -> str:
    """The prediction as COCO JSON: the image, the categories and the instances as annotations with
    scores (masks as compressed RLE), which COCO tools and segcore eval read."""
    annotations = to_coco_results(prediction, 1, loaded.category_ids)
    for i, entry in enumerate(annotations, start=1):
        entry.update(id=i, area=int(prediction.masks[i - 1].sum()), iscrowd=0)
    return json.dumps({
        "images": [{"id": 1, "file_name": file_name, "height": int(size[0]), "width": int(size[1])}],
        "categories": [{"id": c, "name": n} for c, n in zip(loaded.category_ids, loaded.class_names)],
        "annotations": annotations,
    })


def png_bytes(picture: torch.Tensor) -> bytes:
    """(3, H, W) uint8 -> PNG bytes, for st.image and downloads."""
    buffer = io.BytesIO()
    to_pil_image(picture).save(buffer, format="PNG")
    return buffer.getvalue()



def instance_focus(prediction: Prediction, index: int, gt_masks: torch.Tensor, gt_classes: list[str],
                   class_names: list[str]) -> dict | None:
    """The attention focus (:mod:`segcore.metrics.attention`) of instance ``index`` of ``prediction``, against
    the ground truth of its class it overlaps most, when that overlap is a match (mask IoU >= 0.5).

    Args:
        prediction: one image's prediction, with ``attention_roi``.
        gt_masks: (G, H, W) bool ground-truth masks at the prediction's size; gt_classes: their G class names.
        class_names: the model's class names (label k is ``class_names[k - 1]``).

    Returns:
        {"focus": float or None, "iou": the match's mask IoU}, or None without attention or a match.
    """
    if prediction.attention_roi is None or not len(gt_masks):
        return None
    mask = prediction.masks[index].bool().cpu()
    name = class_names[int(prediction.labels[index]) - 1]
    truths = gt_masks.bool().cpu()
    intersection = (truths & mask).flatten(1).sum(1).double()
    union = (truths | mask).flatten(1).sum(1).double().clamp(min=1)
    ious = torch.where(torch.tensor([c == name for c in gt_classes]), intersection / union, torch.zeros(1))
    best = int(ious.argmax())
    if float(ious[best]) < 0.5:
        return None
    attention = prediction.attention_roi[index].float().cpu().numpy()
    inside = mask_in_roi(truths[best].numpy(), prediction.boxes[index].tolist(), attention.shape)
    return {"focus": attention_focus(attention, inside), "iou": float(ious[best])}


def focus_caption(focus: dict | None) -> str:
    """One line on an instance's attention focus, for beside its attention map."""
    if focus is None:
        return ("Attention focus: no ground truth of its class matches this instance (mask IoU ≥ 0.5), so there "
                "is no object to measure the attention against.")
    value = "undefined (the map has no mass)" if focus["focus"] is None else f"{focus['focus']:.2f}"
    return (f"Attention focus {value}: the share of the attention inside the matched ground truth (mask IoU "
            f"{focus['iou']:.2f}) over the share of the box it covers; 1 is no focus, above 1 drawn to the object.")


def download_names(file_name: str, model_name: str) -> tuple[str, str]:
    """The file names the Live page offers an image's masks (PNG) and predictions (COCO JSON) under."""
    stem = f"{Path(file_name).stem}-{model_name}"
    return f"{stem}-masks.png", f"{stem}.json"
