"""The one prediction type: instance and semantic outputs converted into each other."""

from __future__ import annotations

import numpy as np
import torch

from segcore.data.label_maps import connected_components, paint_instances, painting_order_by_area
from segcore.models.prediction import from_instances, from_probabilities


def test_instances_are_painted_in_score_order():
    masks = torch.zeros(3, 1, 8, 8)
    masks[0, 0, :4, :4] = 1.0   # label 1, score 0.9
    masks[1, 0, 2:6, 2:6] = 1.0  # label 2, score 0.6: under label 1 where they overlap
    masks[2, 0, 5:, 5:] = 1.0    # label 3, score 0.1: under label 2 where they overlap
    output = {"boxes": torch.tensor([[0, 0, 4, 4], [2, 2, 6, 6], [6, 6, 8, 8]], dtype=torch.float32),
              "labels": torch.tensor([1, 2, 3]), "scores": torch.tensor([0.9, 0.6, 0.1]), "masks": masks}
    prediction = from_instances(output, (8, 8))
    assert prediction.semantic[3, 3] == 1 and prediction.semantic[5, 5] == 2 and prediction.semantic[7, 7] == 3
    assert prediction.semantic[0, 7] == 0
    assert len(prediction) == 3 and prediction.attention is None


def test_semantic_probabilities_become_scored_instances():
    probabilities = torch.zeros(3, 8, 8)
    probabilities[0] = 1.0
    probabilities[:, 1:3, 1:3] = torch.tensor([0.1, 0.9, 0.0])[:, None, None]  # class 1, mean prob 0.9
    probabilities[:, 5:8, 4:8] = torch.tensor([0.3, 0.0, 0.7])[:, None, None]  # class 2, mean prob 0.7
    prediction = from_probabilities(probabilities, min_area=1)
    assert prediction.labels.tolist() == [1, 2]
    assert torch.allclose(prediction.scores, torch.tensor([0.9, 0.7]))
    assert prediction.boxes.tolist() == [[1, 1, 3, 3], [4, 5, 8, 8]]
    assert prediction.masks.sum().item() == 4 + 12


def test_no_objects_give_empty_instances():
    probabilities = torch.zeros(3, 8, 8)
    probabilities[0] = 1.0
    prediction = from_probabilities(probabilities)
    assert len(prediction) == 0 and prediction.masks.shape == (0, 8, 8) and prediction.boxes.shape == (0, 4)
    masks, labels, scores = connected_components(np.zeros((4, 4), dtype=np.int64))
    assert masks.shape == (0, 4, 4) and labels.shape == (0,) and scores.shape == (0,)


def test_the_smaller_of_two_overlapping_objects_is_in_front():
    masks = np.zeros((2, 6, 6), dtype=bool)
    masks[0, 2:4, 2:4] = True  # small, listed first
    masks[1] = True            # large
    label_map = paint_instances(masks, np.array([1, 2]), order=painting_order_by_area(masks))
    assert label_map[3, 3] == 1 and label_map[0, 0] == 2


def test_diagonal_neighbours_are_one_component():
    label_map = np.zeros((4, 4), dtype=np.int64)
    label_map[0, 0] = label_map[1, 1] = 1
    masks, labels, _ = connected_components(label_map)
    assert len(masks) == 1 and labels.tolist() == [1]
