"""One accumulator of a model's answers over a split, shared by validation while training and ``segcore eval``.

In the shape of Detectron2's ``DatasetEvaluator``: :meth:`~Accumulator.reset`, then
:meth:`~Accumulator.process` once per image, then :meth:`~Accumulator.evaluate`. Each image's instances
become COCO results entries at once (masks as compressed RLE) and its semantic map is folded into a
confusion matrix, so memory holds no mask beyond the image under way. AP comes from segcore's own COCO
evaluation (:mod:`segcore.metrics.coco`, equal to pycocotools').
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import MutableSequence

import numpy as np

from segcore.coco.results import to_coco_results
from segcore.metrics.coco import coco_metrics
from segcore.metrics.semantic import confusion_matrix, semantic_scores


def subset_ground_truth(coco, image_ids: list[int]):
    """A pycocotools ``COCO`` holding only ``image_ids`` and their annotations (all categories kept)."""
    from pycocotools.coco import COCO

    keep = set(image_ids)
    subset = COCO()
    subset.dataset = {
        **{k: v for k, v in coco.dataset.items() if k not in ("images", "annotations")},
        "images": [image for image in coco.dataset["images"] if image["id"] in keep],
        "annotations": [a for a in coco.dataset.get("annotations", []) if a["image_id"] in keep],
    }
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        subset.createIndex()
    return subset


class Accumulator:
    """A model's answers on a split, image by image.

    Args:
        category_ids: the COCO category id of each label 1..K (``category_ids[label - 1]``).
        per_image: also keep each image's semantic scores (``per_image_semantic``), as an eval folder does.
        attention: also keep each instance's attention map in its RoI (float16), for models that have one.

    Attributes (after :meth:`process`):
        results: the COCO results entries, a list or the container given to :meth:`reset`.
        matrix: (K + 1, K + 1) int64 confusion matrix of the semantic maps, rows the ground truth.
        per_image_semantic: image id -> {"semantic_miou", "pixel_accuracy"}.
        attention: one (h, w) float16 map or None per results entry.
        image_ids: the images processed, in order.
    """

    def __init__(self, category_ids: list[int], *, per_image: bool = False, attention: bool = False) -> None:
        self.category_ids, self.keep_per_image, self.keep_attention = list(category_ids), per_image, attention
        self.reset()

    def reset(self, results: MutableSequence | None = None) -> None:
        """Forget everything processed; entries go to ``results`` (a list by default, or e.g. a
        :class:`segcore.coco.results_table.ResultsTable` to hold a large split's in little memory)."""
        num_classes = len(self.category_ids) + 1
        self.results = results if results is not None else []
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
        self.per_image_semantic: dict[int, dict] = {}
        self.attention: list[np.ndarray | None] = []
        self.image_ids: list[int] = []

    def process(self, image_id: int, prediction, semantic_target: np.ndarray) -> list[dict]:
        """Fold in one image's :class:`segcore.models.prediction.Prediction` (on the CPU) and its (H, W) int
        ground-truth label map; returns the image's results entries."""
        entries = to_coco_results(prediction, image_id, self.category_ids)
        self.results.extend(entries)
        if self.keep_attention:
            maps = prediction.attention_roi
            self.attention.extend(list(maps.numpy().astype(np.float16)) if maps is not None else [None] * len(entries))
        image_matrix = confusion_matrix(prediction.semantic.numpy(), semantic_target, len(self.matrix))
        self.matrix += image_matrix
        if self.keep_per_image:
            scores = semantic_scores(image_matrix)
            self.per_image_semantic[image_id] = {"semantic_miou": scores["mIoU"],
                                                 "pixel_accuracy": scores["pixel_accuracy"]}
        self.image_ids.append(image_id)
        return entries

    def evaluate(self, coco_gt) -> dict[str, float | int]:
        """The headline scores of the images processed, against their part of ``coco_gt``.

        Returns:
            {"images", "mask_AP", "box_AP": COCO AP at IoU .50:.95 (0 where nothing was found), "mIoU",
            "pixel_accuracy": of the semantic maps}.
        """
        truth = subset_ground_truth(coco_gt, self.image_ids)
        # AP is None only without ground truth to find; a model then has nothing to be credited for
        mask_ap = coco_metrics(truth, self.results, "segm")["AP"]
        box_ap = coco_metrics(truth, self.results, "bbox")["AP"]
        semantic = semantic_scores(self.matrix)
        return {"images": len(self.image_ids), "mask_AP": mask_ap or 0.0, "box_AP": box_ap or 0.0,
                "mIoU": semantic["mIoU"], "pixel_accuracy": semantic["pixel_accuracy"]}
