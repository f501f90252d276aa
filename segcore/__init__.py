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
    "TrainConfig": "segcore.training.config",
    "train": "segcore.training.loop",
    "load_model": "segcore.predictor",
    "SegcoreError": "segcore.errors",
}

def lazy_exports(package: str, public: dict[str, str]):
    """A package's ``__getattr__`` and ``__dir__`` for ``public`` (name -> module): each name is imported
    from its module on first use."""

    def __getattr__(name: str):
        if name not in public:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(public[name]), name)

    def __dir__() -> list[str]:
        return sorted(public)

    return __getattr__, __dir__


__all__ = sorted(_PUBLIC)
__getattr__, __dir__ = lazy_exports("segcore", _PUBLIC)
