"""Attention focus on hand-made maps, with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from segcore.metrics.attention import attention_focus, mask_in_roi


def half_mask(size=14):
    mask = np.zeros((size, size))
    mask[:, : size // 2] = 1.0  # the object fills the left half of the RoI
    return mask


def test_attention_spread_evenly_has_no_focus():
    assert attention_focus(np.full((14, 14), 0.3), half_mask()) == pytest.approx(1.0)


def test_attention_on_the_object_alone_is_lifted_by_the_inverse_of_its_coverage():
    attention = half_mask()  # all of the mass inside a mask that covers half the RoI: 1 / 0.5
    assert attention_focus(attention, half_mask()) == pytest.approx(2.0)


def test_attention_away_from_the_object_scores_zero():
    assert attention_focus(1.0 - half_mask(), half_mask()) == pytest.approx(0.0)


def test_a_known_mixture():
    # three quarters of the mass on the object, which covers a quarter of the RoI: 0.75 / 0.25
    mask = np.zeros((4, 4))
    mask[:2, :2] = 1.0
    attention = np.where(mask > 0, 3.0 / 4, 1.0 / 12)
    assert attention_focus(attention, mask) == pytest.approx(3.0)


def test_undefined_without_mass_or_without_the_object():
    assert attention_focus(np.zeros((14, 14)), half_mask()) is None
    assert attention_focus(np.ones((14, 14)), np.zeros((14, 14))) is None


def test_the_mask_is_projected_on_the_roi_as_the_mask_branch_samples_it():
    mask = np.zeros((64, 64), dtype=bool)
    mask[16:32, 16:48] = True  # an object filling the top half of the box below
    projected = mask_in_roi(mask, [16, 16, 48, 48], (14, 14))
    assert projected.shape == (14, 14)
    # RoIAlign without the half-pixel alignment (as Mask R-CNN's) samples the last row and column of cells
    # across the object's edge: they are partly covered
    assert projected[:6, :13].min() == pytest.approx(1.0) and projected[7:].max() == pytest.approx(0.0)
    assert 0 < projected[6, 0] < 1 and 0 < projected[0, 13] < 1
    assert projected.mean() == pytest.approx(0.5, abs=0.05)
    assert attention_focus(projected > 0.5, projected) == pytest.approx(1 / projected.mean(), rel=0.1)


def test_an_attention_model_s_eval_folder_records_the_focus_of_each_match(tiny_run, shapes):
    from segcore import runs
    from segcore.evaluation.evaluate import evaluate_run

    metrics = runs.read_metrics(evaluate_run(tiny_run, shapes, "val", progress=False, speed_images=1))
    per_instance = runs.read_per_instance(tiny_run / "evals" / f"{shapes.name}-val")
    assert "attention_focus" in per_instance
    matched = per_instance[per_instance["error_type"] == "true_positive"]
    focus = per_instance["attention_focus"].dropna()
    # only matches have a focus, and it is a lift over chance: never negative
    assert set(focus.index) <= set(matched.index) and (focus >= 0).all()
    assert metrics["attention"]["instances"] == len(focus)
    if len(focus):
        assert metrics["attention"]["focus_mean"] == pytest.approx(focus.mean())


@pytest.mark.parametrize("kind", ["uniform", "on the object"])
def test_the_eval_folder_focus_of_hand_made_maps(kind, shapes, tmp_path):
    from pycocotools import mask as mask_utils

    from segcore import runs
    from segcore.evaluation.scoring import load_ground_truth, write_eval_folder

    truth = load_ground_truth(shapes / "annotations" / "instances_val.json")
    results, maps, expected = [], [], {}
    for ann in truth.dataset["annotations"]:
        mask = truth.annToMask(ann)
        rle = mask_utils.encode(np.asfortranarray(mask))
        rle["counts"] = rle["counts"].decode()
        x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
        inside = mask_in_roi(mask, [x, y, x + w, y + h], (14, 14))
        maps.append(np.full((14, 14), 0.5) if kind == "uniform" else inside)
        expected[ann["id"]] = 1.0 if kind == "uniform" else float((inside ** 2).sum() / inside.sum() / inside.mean())
        results.append({"image_id": ann["image_id"], "category_id": ann["category_id"], "segmentation": rle,
                        "bbox": [x, y, w, h], "score": 0.9})
    folder = write_eval_folder(tmp_path / "eval", coco_gt=truth, results=results, class_names=[
        c["name"] for c in truth.dataset["categories"]], name="oracle", attention=maps)
    rows = runs.read_per_instance(folder)
    matched = rows[rows["error_type"] == "true_positive"]
    assert len(matched) == len(results)
    for gt_id, focus in zip(matched["gt_id"], matched["attention_focus"]):
        assert focus == pytest.approx(expected[int(gt_id)], rel=1e-4)
    summary = runs.read_metrics(folder)["attention"]
    assert summary["instances"] == len(results)
    assert summary["focus_mean"] == pytest.approx(np.mean(list(expected.values())), rel=1e-4)
    if kind == "on the object":
        assert summary["focus_mean"] > 1.0


def test_a_live_instance_s_focus_is_measured_against_the_ground_truth_it_matches():
    import torch

    from segcore.app.live import focus_caption, instance_focus
    from segcore.models.prediction import Prediction

    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[16:32, 16:48] = True  # the top half of the box below
    attention = torch.from_numpy(mask_in_roi(mask.numpy(), [16, 16, 48, 48], (14, 14))).float()
    prediction = Prediction(masks=mask[None], boxes=torch.tensor([[16.0, 16, 48, 48]]), labels=torch.tensor([2]),
                            scores=torch.tensor([0.9]), semantic=torch.zeros(64, 64, dtype=torch.int64),
                            attention=None, attention_roi=attention[None])
    other = torch.zeros(64, 64, dtype=torch.bool)
    other[40:60, 40:60] = True
    found = instance_focus(prediction, 0, torch.stack([other, mask]), ["circle", "square"], ["circle", "square"])
    assert found["iou"] == pytest.approx(1.0)
    assert found["focus"] == pytest.approx(attention_focus(attention.numpy(), attention.numpy()))
    assert found["focus"] > 1.5 and "Attention focus" in focus_caption(found)
    # the same object under another class name is no match, and neither is a ground truth far away
    assert instance_focus(prediction, 0, torch.stack([mask]), ["circle"], ["circle", "square"]) is None
    assert instance_focus(prediction, 0, torch.stack([other]), ["square"], ["circle", "square"]) is None
    assert "no ground truth" in focus_caption(None)


def test_the_focus_interval_resamples_whole_images():
    from segcore.metrics.attention import image_bootstrap

    # every image's detections share one focus: 2.0 in ten images, 1.0 in ten others, three detections each
    focus = np.repeat(np.r_[np.full(10, 2.0), np.full(10, 1.0)], 3)
    images = np.repeat(np.arange(20), 3)
    ious = focus / 4 + np.tile([0.0, 0.01, 0.02], 20)  # better masks where the focus is higher
    result = image_bootstrap(focus, ious, images)
    low, high = result["focus_interval"]
    assert low < 1.5 < high and 1.0 < low and high < 2.0 and result["interval_images"] == 20
    assert result["focus_iou_spearman_interval"][0] > 0

    # one focus everywhere: the interval collapses onto it, and without a spread ρ is undefined
    flat = image_bootstrap(np.full(6, 1.2), np.linspace(0.5, 0.9, 6), np.arange(6))
    assert flat["focus_interval"] == pytest.approx([1.2, 1.2]) and flat["focus_iou_spearman_interval"] is None
