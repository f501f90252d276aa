"""segcore: train, evaluate and compare image-segmentation models.

The public API. Names are imported on first use, so that ``import segcore`` stays cheap for commands
that do not need torch.
"""

from __future__ import annotations

import importlib

_PUBLIC = {
    "MODELS": "segcore.models",
    "create_model": "segcore.models",
    "Prediction": "segcore.models.prediction",
    "predict": "segcore.models.prediction",
    "CocoSegmentation": "segcore.data.coco",
    "TrainConfig": "segcore.config",
    "train": "segcore.engine",
    "load_model": "segcore.predictor",
    "SegcoreError": "segcore.errors",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'segcore' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)


def __dir__() -> list[str]:
    return __all__
