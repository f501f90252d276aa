"""Predictions in COCO's results format: one entry per instance, masks as compressed RLE (counts as str)."""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from segcore.models.prediction import Prediction
from segcore.rle import MAX_ENCODED_PIXELS


def encode_mask(mask: np.ndarray) -> dict:
    """(H, W) bool mask -> compressed RLE with ``counts`` as str, as COCO's JSON files hold it."""
    # pycocotools would write past its buffer; predict and the dataset reader refuse such images first
    assert mask.size <= MAX_ENCODED_PIXELS, mask.shape
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def to_coco_results(prediction: Prediction, image_id: int, category_ids: list[int]) -> list[dict]:
    """One image's instances as COCO results entries.

    Args:
        prediction: the image's prediction.
        image_id: the COCO image id.
        category_ids: COCO category id of each label 1..K (``category_ids[label - 1]``).

    Returns:
        entries with image_id, category_id, segmentation (RLE), bbox [x, y, w, h] and score.
    """
    prediction = prediction.to("cpu")
    entries = []
    for mask, box, label, score in zip(prediction.masks.numpy(), prediction.boxes.tolist(),
                                       prediction.labels.tolist(), prediction.scores.tolist()):
        x1, y1, x2, y2 = box
        entries.append({
            "image_id": int(image_id),
            "category_id": int(category_ids[label - 1]),
            "segmentation": encode_mask(mask),
            "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
            "score": round(float(score), 5),
        })
    return entries
