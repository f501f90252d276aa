"""Each model's training recipe: the defaults ``segcore train --model NAME`` uses where nothing else is given.

They come from the recipe study (docs/recipe_study.py; its curves and what each lever was worth are in
the README). A config file or the command line overrides any of them.
"""

from __future__ import annotations

from typing import Any

#: model name -> training options (TrainConfig fields) that differ from TrainConfig's own defaults.
RECIPES: dict[str, dict[str, Any]] = {
    # AdamW with a warm-up and gradient clipping trains a detector from scratch where SGD at 0.02 diverges
    # or stalls in the same number of steps
    "maskrcnn": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.01, "warmup_iters": 300, "grad_clip": 10.0},
    "fcn": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "warmup_iters": 100, "grad_clip": 10.0},
    "unet": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "warmup_iters": 100, "grad_clip": 10.0},
}


def recipe(model: str) -> dict[str, Any]:
    """The training defaults of ``model`` (empty for a model without a recipe of its own)."""
    return dict(RECIPES.get(model, {}))
