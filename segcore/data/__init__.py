"""segcore data: COCO-layout datasets."""

from segcore.data.coco import CocoSegmentation, checksum, collate
from segcore.data.transforms import eval_transforms, train_transforms

__all__ = ["CocoSegmentation", "checksum", "collate", "eval_transforms", "train_transforms"]
