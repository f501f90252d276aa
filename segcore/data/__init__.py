"""segcore data: COCO-layout datasets, the built-in one, transforms, image files and the dataset layout.

The names below are imported on first use: :mod:`segcore.data.layout` and :mod:`segcore.data.label_maps`
are torch-free, and scoring a results file reads them without loading the torch-based dataset.
"""

from segcore import lazy_exports

_PUBLIC = {
    "CocoSegmentation": "segcore.data.coco",
    "checksum": "segcore.data.coco",
    "collate": "segcore.data.coco",
    "eval_transforms": "segcore.data.transforms",
    "train_transforms": "segcore.data.transforms",
}

__all__ = sorted(_PUBLIC)
__getattr__, __dir__ = lazy_exports("segcore.data", _PUBLIC)
