"""Training Mask R-CNN's mask branch alone, on a frozen detector, from cached RoI features.

``segcore train --model maskrcnn --weights RUN/checkpoint.pt --train-only mask_head [--attention spatial …]``
keeps the detector of RUN (backbone, FPN, RPN, box head) as it is and trains a fresh mask branch (the conv
stack, its extras and the predictor) on it. Every variant of one seed starts from the same conv-stack and
predictor weights (:func:`reset_mask_branch`), and sees the same detections, so a difference in mask AP
between variants is the mask branch's alone.

The detector is frozen, so what it computes for a training image never changes: its feature maps and
the positive RoIs of each image (proposals matched to a ground truth at IoU >= 0.5, as the RoI heads match
them, ground-truth boxes included) are computed once (:class:`DetectorRoIs`, where they fit in memory).
A training step then samples positives per image as the box sampler would (at most a quarter of
``box_batch_size_per_image``, then the ``mask_positives_per_image`` cap), pools their features and trains
the mask branch on them (:func:`mask_branch_losses`): a fraction of a full step. The training images are
seen without augmentation.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset
from torchvision.models.detection.roi_heads import project_masks_on_boxes

from segcore.errors import SegcoreError
from segcore.models.losses import mask_losses
from segcore.precision import autocast

#: What ``--train-only`` can name.
TRAIN_ONLY = ("mask_head",)
#: Parameter-name prefixes of the mask branch.
MASK_BRANCH = ("roi_heads.mask_head.", "roi_heads.mask_predictor.")
#: Positive RoIs kept per image in the cache, drawn once at random: a step samples from them.
CACHED_POSITIVES = 64


def is_mask_branch(name: str) -> bool:
    """Whether parameter ``name`` belongs to the mask branch."""
    return name.startswith(MASK_BRANCH)


def reset_mask_branch(model: nn.Module, seed: int) -> None:
    """Fresh mask-branch weights drawn from ``seed``: the conv stack and the predictor first, in a fixed
    order, with torchvision's initialisation (He normal, fan-out), then the variant's extras (squeeze-
    excitation, spatial attention) from ``seed + 1``, so that the plain part is the same in every variant."""
    head, predictor = model.roi_heads.mask_head, model.roi_heads.mask_predictor
    torch.manual_seed(seed)
    plain = [*(head[i] for i in range(head.num_convs)), predictor]
    for part in plain:
        for module in part.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif hasattr(module, "reset_parameters") and module is not part:
                module.reset_parameters()
    torch.manual_seed(seed + 1)
    for extra in (head.squeeze_excitation, head.spatial_attention):
        if extra is not None:
            for module in extra.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()


def freeze_detector(model: nn.Module) -> int:
    """Leave only the mask branch trainable; returns the number of trainable parameters."""
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(is_mask_branch(name))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class DetectorRoIs(Dataset):
    """What the frozen detector gives the mask branch for each training image: its feature maps at the mask
    branch's pooling levels (float16), its size after the model's resizing, and up to
    :data:`CACHED_POSITIVES` positive RoIs with their labels and 28×28 mask targets.

    The items are computed once, all at the start, where they fit in ``memory_budget`` bytes (about 0.7 MB
    an image for 256×256 images and a 64-channel FPN); otherwise each is computed again whenever it is asked
    for, at the cost of the detector's forward pass in every step.

    Several variants trained one after another in one process (``segcore zoo build``) on the same detector,
    data and seed share one computation: given a ``key`` that names the detector's weights and options and
    the dataset, the items of the last cache built with that key and seed are kept and used again.

    Args:
        model: the Mask R-CNN, its detector frozen.
        dataset: the training images and targets, untransformed (:func:`segcore.data.eval_transforms`).
        seed: draws each image's cached positives (the same with and without the cache).
        memory_budget: bytes the cache may take; default a quarter of the machine's memory.
        progress: called with (images done, images in all) while the cache is built.
        key: what identifies the detector and the data, for sharing (None: never shared).
    """

    def __init__(self, model: nn.Module, dataset, device: torch.device, *, seed: int, amp: bool = True,
                 memory_budget: int | None = None, progress=None, key: tuple | None = None):
        global _KEPT
        self.model, self.dataset, self.device, self.seed, self.amp = model, dataset, device, seed, amp
        if key is not None and _KEPT is not None and _KEPT[0] == (key, seed, amp, str(device)):
            self.items, self.estimate = _KEPT[1], _KEPT[2]
            return
        _KEPT = None  # another detector or seed: free the kept items before computing these
        first = self.compute(0) if len(dataset) else None
        budget = memory_budget if memory_budget is not None else _memory_bytes() // 4
        self.estimate = _item_bytes(first) * len(dataset) if first is not None else 0
        self.items: list[dict] | None = None
        if self.estimate <= budget:
            self.items = [first]
            for index in range(1, len(dataset)):
                self.items.append(self.compute(index))
                if progress is not None:
                    progress(index + 1, len(dataset))
            if not any(len(item["boxes"]) for item in self.items):
                raise SegcoreError("the training split has no object to train the mask branch on (every annotation "
                                   "is a crowd region, or there is none); train on a split with objects.")
            if key is not None:
                _KEPT = ((key, seed, amp, str(device)), self.items, self.estimate)

    @property
    def cached(self) -> bool:
        """Whether every item was computed once and kept."""
        return self.items is not None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return self.items[index] if self.items is not None else self.compute(index)

    @torch.no_grad()
    def compute(self, index: int) -> dict:
        """Run the frozen detector on image ``index`` (in eval mode, whatever the model's mode)."""
        model, device = self.model, self.device
        roi_heads = model.roi_heads
        # the predictor's 2×2 deconvolution doubles the pooled size: 14 -> 28
        resolution = 2 * roi_heads.mask_roi_pool.output_size[0]
        image, target = self.dataset[index]
        keep = target["iscrowd"] == 0
        truth = {"boxes": target["boxes"][keep].float().to(device), "labels": target["labels"][keep].to(device),
                 "masks": target["masks"][keep].to(device)}
        image = image.to(device)
        if image.dtype == torch.uint8:
            image = image.float() / 255
        detector = (model.transform, model.backbone, model.rpn)
        modes = [part.training for part in detector]
        for part in detector:
            part.eval()
        try:
            with autocast(device, self.amp):
                images, targets = model.transform([image], [truth])
                features = model.backbone(images.tensors)
                proposals, _ = model.rpn(images, features)
        finally:
            for part, mode in zip(detector, modes):
                part.train(mode)
        truth = targets[0]
        boxes, labels = torch.zeros((0, 4), device=device), torch.zeros(0, dtype=torch.int64, device=device)
        masks = torch.zeros((0, resolution, resolution), device=device)
        if len(truth["boxes"]):
            proposals = roi_heads.add_gt_proposals(proposals, [truth["boxes"]])
            matched, labels = roi_heads.assign_targets_to_proposals(proposals, [truth["boxes"]], [truth["labels"]])
            positive = torch.where(labels[0] > 0)[0]
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
            positive = positive[torch.randperm(len(positive), generator=generator)[:CACHED_POSITIVES].to(device)]
            boxes = proposals[0][positive]
            masks = project_masks_on_boxes(truth["masks"], boxes, matched[0][positive], resolution)
            labels = labels[0][positive]
        return {"features": {k: features[k][0].half().cpu() for k in roi_heads.mask_roi_pool.featmap_names},
                "image_size": tuple(images.image_sizes[0]), "boxes": boxes.float().cpu(), "labels": labels.cpu(),
                "targets": masks.half().cpu()}


#: (key, items, estimate) of the last cache built with a key: the next variant on that detector uses it
_KEPT: tuple | None = None
#: Model options that change only the mask branch: a cache computed under one value serves every other.
MASK_BRANCH_OPTIONS = ("mask_convs", "mask_width", "attention", "squeeze_excitation", "iou_loss", "iou_loss_weight",
                       "mask_positives_per_image")


def forget_kept() -> None:
    """Release the kept cache (its memory) once no variant needs it."""
    global _KEPT
    _KEPT = None


def _item_bytes(item: dict) -> int:
    tensors = [*item["features"].values(), item["boxes"], item["labels"], item["targets"]]
    return sum(t.numel() * t.element_size() for t in tensors)


def _memory_bytes() -> int:
    """The memory this process may use: the machine's, or its container's (cgroup v2) limit where lower."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return physical
    return min(physical, int(limit)) if limit.isdigit() else physical


def collate_cached(batch: list[dict]) -> tuple[list[dict], None]:
    """A batch of the detector's items, shaped as the training loop's (inputs, targets) pairs."""
    return batch, None


def mask_branch_losses(model: nn.Module, batch: list[dict], device: torch.device, *,
                       generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """The mask branch's loss terms on a batch of cached images, positives sampled as in end-to-end training.

    Returns:
        {"loss_mask": …, and "loss_mask_iou" with an IoU loss}, as the RoI heads give them.
    """
    roi_heads = model.roi_heads
    # the box sampler's positives: at most a quarter of the RoIs it samples, then the mask loss's own cap
    limit = int(roi_heads.fg_bg_sampler.batch_size_per_image * roi_heads.fg_bg_sampler.positive_fraction)
    if roi_heads.mask_positives_per_image is not None:
        limit = min(limit, roi_heads.mask_positives_per_image)
    pooled, labels, targets = [], [], []
    for item in batch:
        chosen = torch.randperm(len(item["boxes"]), generator=generator)[:limit]
        if not len(chosen):
            continue
        features = {k: v[None].to(device).float() for k, v in item["features"].items()}
        with torch.no_grad():  # the detector's features are constants here
            pooled.append(roi_heads.mask_roi_pool(features, [item["boxes"][chosen].to(device)], [item["image_size"]]))
        labels.append(item["labels"][chosen].to(device))
        targets.append(item["targets"][chosen].to(device).float())
    if not pooled:  # no positive RoI in this batch: zero losses, still connected to the mask branch's weights
        zero = sum(p.sum() for p in roi_heads.mask_predictor.parameters()) * 0.0
        return {"loss_mask": zero, **({"loss_mask_iou": zero} if roi_heads.iou_loss else {})}
    mask_features, _ = roi_heads.mask_head(torch.cat(pooled))
    logits = roi_heads.mask_predictor(mask_features)
    labels = torch.cat(labels)
    logits = logits[torch.arange(len(labels), device=labels.device), labels]
    return mask_losses(logits, torch.cat(targets), iou_loss=roi_heads.iou_loss,
                       iou_loss_weight=roi_heads.iou_loss_weight)
