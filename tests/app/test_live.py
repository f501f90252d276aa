"""Live segmentation's building blocks: any upload decoded, large ones scaled, downloads readable back."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from segcore.app import live
from segcore.errors import SegcoreError
from segcore.models.prediction import Prediction


def encoded(array: np.ndarray, format: str = "PNG", mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format=format)
    return buffer.getvalue()


@pytest.mark.parametrize("array, format", [
    (np.full((5, 7), 65535, np.uint16), "PNG"),                   # 16-bit grey: white stays white
    (np.full((5, 7), 255, np.uint8), "TIFF"),                     # 8-bit grey TIFF
    (np.full((5, 7, 4), 255, np.uint8), "PNG"),                   # RGBA
    (np.full((5, 7, 3), 255, np.uint8), "JPEG"),
])
def test_every_upload_format_becomes_8_bit_rgb(array, format):
    image = live.decode_upload(f"upload.{format.lower()}", encoded(array, format))
    assert image.dtype == torch.uint8 and image.shape == (3, 5, 7)
    assert int(image.min()) >= 250


def test_a_file_that_is_not_an_image_is_one_sentence():
    with pytest.raises(SegcoreError, match=r"^uploaded file notes.txt cannot be read as an image; upload a PNG"):
        live.decode_upload("notes.txt", b"hello")


def test_large_images_are_scaled_down_keeping_the_aspect():
    image = torch.zeros((3, 3000, 1500), dtype=torch.uint8)
    fitted, scale = live.fit(image, max_side=1000)
    assert fitted.shape == (3, 1000, 500) and scale == pytest.approx(1 / 3)
    assert live.fit(fitted, max_side=1000)[1] == 1.0


def two_instances() -> Prediction:
    masks = torch.zeros((2, 6, 8), dtype=torch.bool)
    masks[0, :3, :4] = True
    masks[1, 2:, 2:] = True
    return Prediction(masks=masks, boxes=torch.tensor([[0, 0, 4, 3], [2, 2, 8, 6]], dtype=torch.float32),
                      labels=torch.tensor([1, 2]), scores=torch.tensor([0.9, 0.6]),
                      semantic=masks[1].long() * 2)


class FakeLoaded:
    category_ids, class_names = [5, 9], ["cat", "dog"]


def test_the_masks_png_paints_the_highest_score_on_top():
    ids = np.asarray(Image.open(io.BytesIO(live.masks_png(two_instances()))))
    assert ids.dtype == np.uint8 and ids[0, 0] == 1 and ids[5, 7] == 2
    assert ids[2, 2] == 1  # the overlap belongs to the higher score


def test_the_coco_json_reads_back_as_the_masks():
    content = json.loads(live.coco_json(two_instances(), FakeLoaded(), "photo.png", (6, 8)))
    assert content["images"][0] == {"id": 1, "file_name": "photo.png", "height": 6, "width": 8}
    assert [a["category_id"] for a in content["annotations"]] == [5, 9]
    decoded = mask_utils.decode(content["annotations"][0]["segmentation"])
    assert decoded.sum() == 12 and content["annotations"][0]["area"] == 12
    assert json.loads(live.coco_json(two_instances().above(1.0), FakeLoaded(), "x.png", (6, 8)))["annotations"] == []


def test_instances_table_and_pictures():
    prediction = two_instances()
    rows = live.instances_table(prediction, ["cat", "dog"])
    assert [(r["class"], r["area"]) for r in rows] == [("cat", 12), ("dog", 24)]
    image = torch.zeros((3, 6, 8), dtype=torch.uint8)
    attention = torch.zeros((6, 8))
    attention[0, 0] = 1.0
    blended = live.attention_overlay(image, attention)
    assert blended[:, 0, 0].tolist() != [0, 0, 0] and blended[:, 5, 5].tolist() == [0, 0, 0]
    semantic = live.semantic_picture(image, prediction, 2)
    assert semantic[:, 5, 7].tolist() != [0, 0, 0] and semantic[:, 0, 0].tolist() == [0, 0, 0]
    assert live.png_bytes(semantic).startswith(b"\x89PNG")
