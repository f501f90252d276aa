"""Speed, one protocol for every model: warm-up, then batch 1, median and p90 of each stage's time.

Stages: preprocess (decoded uint8 image to a float tensor on the device), model (the forward pass),
postprocess (outputs to a :class:`Prediction`, masks thresholded and pasted). On CUDA each stage is
closed by a synchronize, so that asynchronous kernels are charged to the stage that launched them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode
from torchvision.transforms.v2.functional import to_dtype

from segcore.models.prediction import Prediction, from_output
from segcore.precision import autocast, precision_name


@dataclass
class StageTimer:
    """Milliseconds of each stage, image by image, after ``warmup`` images."""

    device: torch.device
    warmup: int = 3
    amp: bool = True
    seen: int = 0
    times: dict[str, list[float]] = field(default_factory=lambda: {"preprocess": [], "model": [], "postprocess": []})

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    @torch.no_grad()
    def predict(self, model: torch.nn.Module, image: torch.Tensor) -> Prediction:
        """(3, H, W) uint8 image -> Prediction, timing each stage; the model must be in eval mode."""
        start = self._now()
        tensor = to_dtype(image.to(self.device), torch.float32, scale=True)
        preprocessed = self._now()
        with autocast(self.device, self.amp):
            output = model([tensor])[0]
        modelled = self._now()
        prediction = from_output(output, tuple(image.shape[-2:]))
        done = self._now()
        self.seen += 1
        if self.seen > self.warmup:
            for stage, (a, b) in {"preprocess": (start, preprocessed), "model": (preprocessed, modelled),
                                  "postprocess": (modelled, done)}.items():
                self.times[stage].append((b - a) * 1000.0)
        return prediction

    def summary(self) -> dict[str, float | int | None]:
        """{"<stage>_ms_p50", "<stage>_ms_p90"} for preprocess, model, postprocess and total (the three
        summed image by image), and "timed_images"; None where nothing was timed."""
        stages = dict(self.times)
        stages["total"] = list(np.sum([self.times[s] for s in ("preprocess", "model", "postprocess")], axis=0))
        out: dict[str, float | int | None] = {}
        for stage, values in stages.items():
            out[f"{stage}_ms_p50"] = round(float(np.median(values)), 3) if len(values) else None
            out[f"{stage}_ms_p90"] = round(float(np.percentile(values, 90)), 3) if len(values) else None
        out["timed_images"] = len(self.times["model"])
        out["precision"] = precision_name(self.device, self.amp)
        return out


@torch.no_grad()
def model_size(model: torch.nn.Module, image_size: tuple[int, int], device: torch.device) -> dict[str, int]:
    """Parameter count and FLOPs of one forward pass on an image of ``image_size`` (H, W).

    FLOPs come from torch.utils.flop_counter: two per multiply-add of the convolutions and matrix
    products it knows, which is what "FLOPs" means in most papers' tables; RoIAlign and NMS are not
    counted. For a detector the count depends on how many boxes survive, so it is measured on a blank
    image for a number that does not change from one evaluation to the next.
    """
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model([torch.zeros(3, *image_size, device=device)])
    model.train(was_training)
    return {"params": sum(p.numel() for p in model.parameters()), "flops": int(counter.get_total_flops())}
