"""``segcore eval RUN_DIR``: run a trained model over a split and write its eval folder.

Evaluation streams: each image's masks are encoded to compressed RLE as soon as they are predicted, held
as columns with the RLE strings spilled to a temporary file (:class:`segcore.coco.results_table.ResultsTable`),
and the semantic scores are accumulated in a confusion matrix (:class:`segcore.evaluation.accumulator.Accumulator`,
shared with validation), so memory stays flat as the split grows.
The eval folder is scored by :mod:`segcore.evaluation.scoring` (shared with imported results files) and written
by :func:`segcore.runs.write_eval_files`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from segcore import runs
from segcore.coco.results_table import ResultsTable
from segcore.data import CocoSegmentation
from segcore.device import resolve_device
from segcore.errors import SegcoreError
from segcore.evaluation import scoring
from segcore.evaluation.accumulator import Accumulator
from segcore.evaluation.speed import StageTimer, model_size
from segcore.precision import precision_name
from segcore.predictor import load_model


def evaluate_run(run_dir: str | Path, data: str | Path, split: str, *, device: str = "auto",
                 speed_images: int | None = None, area_ranges: dict[str, tuple[float, float]] | None = None,
                 skip_invalid: bool = False, progress: bool = True, amp: bool = True,
                 on_image: Callable[[int, int], None] | None = None,
                 on_stage: Callable[[str], None] | None = None) -> Path:
    """Evaluate the run's best checkpoint on ``split`` of ``data``.

    Args:
        run_dir: a run directory written by ``segcore train``.
        data: the dataset folder (COCO layout).
        split: e.g. "val" or "test".
        speed_images: time only the first N images (after warm-up); default every image.
        area_ranges: extra named area ranges for AP, e.g. {"tiny": (0, 256)}.
        on_image: called with (images done, images in all) after each image, e.g. by a progress bar.
        on_stage: called with the name of each stage of scoring the predictions
            (:data:`segcore.evaluation.scoring.STAGES`) as it starts.
        amp: infer in mixed precision where the device has it (bfloat16 on a CPU with AVX512-BF16 or AMX,
            float16 on CUDA); the speed section records which ("precision").

    Returns:
        the eval folder, ``RUN_DIR/evals/<dataset>-<split>``.
    """
    run_dir = Path(run_dir)
    manifest = runs.read_run(run_dir)
    target = resolve_device(device)
    loaded = load_model(run_dir, device=target, amp=amp)
    dataset = CocoSegmentation(data, split, skip_invalid=skip_invalid)
    if dataset.class_names != loaded.class_names:
        raise SegcoreError(f"{run_dir} was trained on classes {loaded.class_names}, but {dataset.annotation_file} "
                           f"has {dataset.class_names}; evaluate on a dataset with the same categories.")
    if len(dataset) == 0:
        raise SegcoreError(f"{dataset.annotation_file} lists no images; evaluate on a split that has some.")
    out = run_dir / runs.EVALS / runs.eval_name(data, split)
    out.parent.mkdir(parents=True, exist_ok=True)
    has_attention = getattr(loaded.options, "attention", "none") != "none"
    # each result's attention map in its RoI (float16: 196 values a detection), for models that have one
    accumulator = Accumulator(dataset.category_ids, per_image=True, attention=has_attention)
    timer = StageTimer(target, amp=amp)
    limit = len(dataset) if speed_images is None else min(len(dataset), speed_images + timer.warmup)
    # Columns, the RLE strings spilled beside the eval folder: held as dicts they would fill memory.
    with ResultsTable(spill_dir=out.parent) as results:
        accumulator.reset(results)
        for index in tqdm(range(len(dataset)), desc=f"eval {run_dir.name} on {split}", disable=not progress,
                          dynamic_ncols=True):
            image, target_instances = dataset[index]
            prediction = timer.predict(loaded.model, image) if index < limit else loaded([image])[0]
            # the classes are the same, in the same order: label i is this dataset's i-th category, whatever ids
            # the training dataset gave them
            accumulator.process(dataset.image_ids[index], prediction.to("cpu"), target_instances["semantic"].numpy())
            if on_image is not None:
                on_image(index + 1, len(dataset))
        height, width = (int(v) for v in np.median([[i["height"], i["width"]] for i in dataset.coco.imgs.values()], 0))
        speed = {"device": torch.cuda.get_device_name(target) if target.type == "cuda" else "cpu",
                 **timer.summary(), **model_size(loaded.model, (height, width), target), "image_size": [height, width]}
        return scoring.write_eval_folder(
            out, coco_gt=dataset.coco, results=results, class_names=dataset.class_names, name=manifest["name"],
            semantic_matrix=accumulator.matrix, per_image_semantic=accumulator.per_image_semantic, speed=speed,
            area_ranges=area_ranges,
            source={"run": str(run_dir), "data": str(Path(data).resolve()), "split": split,
                    "checkpoint": loaded.source, "model": loaded.name,
                    # bfloat16 inference depends on the processor: the numbers say which precision gave them
                    "precision": precision_name(target, amp)},
            masks=True,  # every model answers masks, also when it found nothing
            skipped={"ground_truth": dict(dataset.skipped)} if skip_invalid else None,
            attention=accumulator.attention if has_attention else None, on_stage=on_stage,
        )
