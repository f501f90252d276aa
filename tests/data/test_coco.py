"""The COCO-layout reader: real COCO annotations, tiny synthetic folders, and every kind of bad data."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch.utils.data import DataLoader

from segcore.data import CocoSegmentation, checksum, collate, train_transforms
from segcore.data.coco import read_categories
from segcore.errors import DatasetError

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
# pycocotools' decode trips a numpy 2 DeprecationWarning on every call; recording 800 of them is slow noise.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

COCO_VAL_100 = FIXTURES / "coco-val2014-100" / "instances_val2014_100.json"


# ---- real COCO annotations (no images: blank PNGs of the sizes the JSON gives) ----

@pytest.fixture(scope="module")
def coco_val(tmp_path_factory) -> CocoSegmentation:
    if not COCO_VAL_100.exists():
        pytest.skip(f"COCO fixture not found at {COCO_VAL_100} (the shared fixtures sit beside the repo)")
    root = tmp_path_factory.mktemp("coco-val")
    (root / "annotations").mkdir()
    shutil.copy(COCO_VAL_100, root / "annotations" / "instances_val.json")
    (root / "val").mkdir()
    for image in json.loads(COCO_VAL_100.read_text())["images"]:
        Image.new("1", (image["width"], image["height"])).save(root / "val" / image["file_name"])
    return CocoSegmentation(root, "val")


@pytest.fixture(scope="module")
def coco_val_targets(coco_val) -> list[dict]:
    return [coco_val.target(index) for index in range(len(coco_val))]


def test_coco_masks_equal_pycocotools(coco_val_targets):
    reference = COCO(str(COCO_VAL_100))  # loaded independently of the reader
    decoded = 0
    for target in coco_val_targets:
        for mask, annotation_id in zip(target["masks"], target["annotation_ids"].tolist()):
            expected = reference.annToMask(reference.anns[annotation_id])
            assert np.array_equal(mask.numpy(), expected), annotation_id
            decoded += 1
    assert decoded == len(reference.anns) == 839


def test_coco_labels_are_contiguous_in_category_id_order(coco_val, coco_val_targets):
    assert coco_val.category_ids == sorted(coco_val.coco.cats) and max(coco_val.category_ids) == 90
    assert coco_val.class_names[0] == "person" and len(coco_val.class_names) == 80
    for target in coco_val_targets:
        for label, annotation_id in zip(target["labels"].tolist(), target["annotation_ids"].tolist()):
            category_id = coco_val.coco.anns[annotation_id]["category_id"]
            assert label == coco_val.category_ids.index(category_id) + 1 == coco_val.label_of(category_id)


def test_coco_crowd_regions_are_kept_and_flagged(coco_val, coco_val_targets):
    crowd = {}
    for target in coco_val_targets:
        crowd.update(zip(target["annotation_ids"].tolist(), target["iscrowd"].tolist()))
    assert sum(crowd.values()) == 9
    assert all(flag == coco_val.coco.anns[i]["iscrowd"] for i, flag in crowd.items())


def test_coco_boxes_are_the_json_bbox_as_xyxy(coco_val):
    target = coco_val.target(3)
    for box, annotation_id in zip(target["boxes"].tolist(), target["annotation_ids"].tolist()):
        x, y, w, h = coco_val.coco.anns[annotation_id]["bbox"]
        assert box == pytest.approx([x, y, x + w, y + h], abs=1e-3)
    assert target["boxes"].canvas_size == tuple(target["masks"].shape[-2:])


def test_coco_read_categories_matches_the_dataset(coco_val):
    assert read_categories(coco_val.root, "val") == coco_val.class_names


# ---- synthetic folders: 64x64 images, 3 objects ----

def rectangle(x0, y0, x1, y1) -> list[list[float]]:
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def annotation(annotation_id, segmentation, category_id=1, image_id=1, **extra) -> dict:
    return {"id": annotation_id, "image_id": image_id, "category_id": category_id,
            "segmentation": segmentation, "area": 100.0, "iscrowd": 0, **extra}


def three_objects() -> list[dict]:
    return [annotation(1, rectangle(4, 4, 44, 44), 1, bbox=[4, 4, 40, 40]),
            annotation(2, rectangle(20, 20, 30, 30), 2, bbox=[20, 20, 10, 10], occlusion=0.25),
            annotation(3, rectangle(50, 50, 60, 60), 1, bbox=[50, 50, 10, 10])]


def write_dataset(root: Path, annotations: list[dict], *, images=None, categories=None, write_images=True) -> Path:
    """A COCO-layout folder with split "val"; by default one blank 64x64 RGB image, id 1."""
    images = images if images is not None else [{"id": 1, "file_name": "a.png", "height": 64, "width": 64}]
    categories = categories if categories is not None else [{"id": 1, "name": "square"}, {"id": 2, "name": "dot"}]
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "val").mkdir(exist_ok=True)
    data = {"images": images, "annotations": annotations, "categories": categories}
    (root / "annotations" / "instances_val.json").write_text(json.dumps(data))
    if write_images:
        for image in images:
            Image.new("RGB", (image["width"], image["height"])).save(root / "val" / image["file_name"])
    return root


def test_synthetic_target_has_every_field_with_its_shape(tmp_path):
    target = CocoSegmentation(write_dataset(tmp_path, three_objects()), "val").target(0)
    assert target["boxes"].shape == (3, 4) and target["boxes"].dtype == torch.float32
    assert target["masks"].shape == (3, 64, 64) and target["masks"].dtype == torch.uint8
    assert target["labels"].tolist() == [1, 2, 1]
    assert target["area"].dtype == torch.float32 and target["iscrowd"].tolist() == [0, 0, 0]
    assert target["annotation_ids"].tolist() == [1, 2, 3] and target["image_id"] == 1
    assert target["semantic"].shape == (64, 64) and target["semantic"].dtype == torch.int64


def test_occlusion_is_nan_where_the_json_has_none(tmp_path):
    target = CocoSegmentation(write_dataset(tmp_path, three_objects()), "val").target(0)
    assert math.isnan(target["occlusion"][0]) and target["occlusion"][1] == 0.25


def test_image_without_annotations_gives_empty_target(tmp_path):
    dataset = CocoSegmentation(write_dataset(tmp_path, []), "val")
    image, target = dataset[0]
    assert image.shape == (3, 64, 64)
    assert target["boxes"].shape == (0, 4) and target["masks"].shape == (0, 64, 64)
    assert target["labels"].shape == (0,) and target["labels"].dtype == torch.int64
    assert target["semantic"].eq(0).all()


def test_missing_bbox_is_computed_from_the_mask(tmp_path):
    dataset = CocoSegmentation(write_dataset(tmp_path, [annotation(1, rectangle(10, 20, 30, 40))]), "val")
    assert dataset.target(0)["boxes"].tolist() == [[10.0, 20.0, 30.0, 40.0]]  # columns 10..29 are inside


def blob() -> np.ndarray:
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[10:30, 5:50] = 1
    mask[40:60, 30:35] = 1
    return mask


def test_compressed_rle_decodes(tmp_path):
    rle = mask_utils.encode(np.asfortranarray(blob()))
    rle = {"size": rle["size"], "counts": rle["counts"].decode()}
    dataset = CocoSegmentation(write_dataset(tmp_path, [annotation(1, rle, iscrowd=1)]), "val")
    assert np.array_equal(dataset.target(0)["masks"][0].numpy(), blob())


def test_uncompressed_rle_decodes(tmp_path):
    flat = blob().flatten(order="F")  # COCO runs go down columns
    edges = np.flatnonzero(np.diff(flat)) + 1
    counts = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()  # starts with a background run
    dataset = CocoSegmentation(write_dataset(tmp_path, [annotation(1, {"size": [64, 64], "counts": counts})]), "val")
    assert np.array_equal(dataset.target(0)["masks"][0].numpy(), blob())


def test_overlapping_masks_paint_the_smaller_in_front(tmp_path):
    semantic = CocoSegmentation(write_dataset(tmp_path, three_objects()), "val").target(0)["semantic"]
    assert semantic[25, 25] == 2  # the small "dot" lies on the large "square"
    assert semantic[10, 10] == 1 and semantic[55, 55] == 1 and semantic[0, 0] == 0


def test_semantic_is_painted_after_the_transforms(tmp_path):
    dataset = CocoSegmentation(write_dataset(tmp_path, three_objects()), "val",
                               transforms=train_transforms(hflip=1.0, scale_range=None, photometric=False))
    _, target = dataset[0]
    assert target["semantic"][25, 63 - 25] == 2 and target["semantic"][10, 63 - 10] == 1


def test_collate_gives_lists_for_detection_models(tmp_path):
    images = [{"id": i, "file_name": f"{i}.png", "height": 64, "width": 64} for i in (1, 2, 3)]
    dataset = CocoSegmentation(write_dataset(tmp_path, three_objects(), images=images), "val")
    images, targets = next(iter(DataLoader(dataset, batch_size=2, collate_fn=collate)))
    assert [image.shape for image in images] == [(3, 64, 64)] * 2
    assert [target["masks"].shape[0] for target in targets] == [3, 0]


def test_checksum_is_stable_and_follows_the_annotations(tmp_path):
    root = write_dataset(tmp_path, three_objects())
    before = checksum(root)
    assert checksum(root) == before and len(before) == 64
    write_dataset(root, three_objects()[:2], write_images=False)
    assert checksum(root) != before


def test_checksum_follows_the_image_files(tmp_path):
    root = write_dataset(tmp_path, three_objects())
    before = checksum(root)
    Image.new("RGB", (64, 64)).save(root / "val" / "extra.png")
    assert checksum(root) != before


# ---- image files ----

@pytest.mark.parametrize("image", [
    Image.new("L", (64, 64), 7),
    Image.new("RGBA", (64, 64), (7, 7, 7, 0)),
    Image.new("P", (64, 64), 0),
    Image.new("1", (64, 64), 0),
], ids=lambda image: image.mode)
def test_image_modes_load_as_rgb_uint8(tmp_path, image):
    root = write_dataset(tmp_path, three_objects(), write_images=False)
    image.save(root / "val" / "a.png")
    loaded, _ = CocoSegmentation(root, "val")[0]
    assert loaded.shape == (3, 64, 64) and loaded.dtype == torch.uint8


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    root = write_dataset(tmp_path, three_objects(), write_images=False)
    values = np.full((64, 64), 65535, dtype=np.uint16)
    values[0, 0], values[0, 1] = 0, 32896
    Image.fromarray(values).save(root / "val" / "a.png")
    loaded, _ = CocoSegmentation(root, "val")[0]
    assert loaded.shape == (3, 64, 64) and loaded.dtype == torch.uint8
    assert loaded[:, 0, :3].tolist() == [[0, 128, 255]] * 3


def test_image_of_another_size_than_the_json_is_refused(tmp_path):
    root = write_dataset(tmp_path, three_objects(), write_images=False)
    Image.new("RGB", (32, 64)).save(root / "val" / "a.png")
    with pytest.raises(DatasetError, match=r"image 1 .*a\.png is 32x64 pixels.*instances_val\.json says 64x64"):
        CocoSegmentation(root, "val")[0]


# ---- bad data: one sentence naming the file and the id; with skip_invalid, skipped and counted ----

BAD_ANNOTATIONS = {
    # case: (annotation 77, skip reason, words of the message)
    "two-point polygon": (annotation(77, [[1, 1, 9, 9]]), "invalid polygon", "2 points"),
    "odd coordinates": (annotation(77, [[1, 1, 9, 9, 1, 9, 4]]), "invalid polygon", "odd number"),
    "no segmentation": ({k: v for k, v in annotation(77, []).items() if k != "segmentation"},
                        "missing segmentation", "no segmentation"),
    "empty segmentation": (annotation(77, []), "missing segmentation", "no segmentation"),
    "rle of another size": (annotation(77, {"size": [32, 64], "counts": [2048]}), "invalid rle", "32x64"),
    "rle counts too short": (annotation(77, {"size": [64, 64], "counts": [10, 5]}), "invalid rle", "15 pixels"),
    "negative rle counts": (annotation(77, {"size": [64, 64], "counts": [5000, -904]}), "invalid rle", "malformed"),
    "garbled compressed rle": (annotation(77, {"size": [64, 64], "counts": "~~~~"}), "invalid rle", "malformed"),
    "unknown image": (annotation(77, rectangle(1, 1, 9, 9), image_id=5), "unknown image id", "image 5"),
    "unknown category": (annotation(77, rectangle(1, 1, 9, 9), category_id=9), "unknown category id", "category 9"),
    "bbox of three numbers": (annotation(77, rectangle(1, 1, 9, 9), bbox=[1, 1, 8]), "invalid bbox", "bbox"),
}


@pytest.mark.parametrize("case", BAD_ANNOTATIONS)
def test_bad_annotation_is_reported_with_its_id_and_file(tmp_path, case):
    bad, _, words = BAD_ANNOTATIONS[case]
    root = write_dataset(tmp_path, [*three_objects(), bad])
    with pytest.raises(DatasetError, match=rf"annotation 77 in .*instances_val\.json .*{words}.*--skip-invalid"):
        CocoSegmentation(root, "val")


@pytest.mark.parametrize("case", BAD_ANNOTATIONS)
def test_bad_annotation_is_skipped_and_counted(tmp_path, case):
    bad, reason, _ = BAD_ANNOTATIONS[case]
    dataset = CocoSegmentation(write_dataset(tmp_path, [*three_objects(), bad]), "val", skip_invalid=True)
    assert dataset.skipped == {reason: 1}
    assert dataset.target(0)["annotation_ids"].tolist() == [1, 2, 3]
    assert 77 not in dataset.coco.anns


def collinear_polygon() -> dict:
    return annotation(77, [[1, 1, 5, 5, 9, 9]])


def test_mask_without_pixels_is_reported_when_the_dataset_is_built(tmp_path):
    # found before training starts, not by a DataLoader worker mid-epoch
    with pytest.raises(DatasetError, match=r"annotation 77 in .*instances_val\.json .*covers no pixel"):
        CocoSegmentation(write_dataset(tmp_path, [*three_objects(), collinear_polygon()]), "val")


def test_mask_without_pixels_is_skipped_once(tmp_path):
    dataset = CocoSegmentation(write_dataset(tmp_path, [*three_objects(), collinear_polygon()]), "val",
                               skip_invalid=True)
    assert dataset.target(0)["annotation_ids"].tolist() == [1, 2, 3]
    dataset.target(0)
    assert dataset.skipped == {"empty mask": 1}


def test_missing_image_file_is_reported_at_construction(tmp_path):
    root = write_dataset(tmp_path, three_objects(), write_images=False)
    with pytest.raises(DatasetError, match=r"image 1 of .*instances_val\.json has no file at .*a\.png"):
        CocoSegmentation(root, "val")


def test_missing_image_file_is_skipped_with_its_annotations(tmp_path):
    images = [{"id": 1, "file_name": "a.png", "height": 64, "width": 64},
              {"id": 2, "file_name": "b.png", "height": 64, "width": 64}]
    root = write_dataset(tmp_path, three_objects(), images=images)
    (root / "val" / "a.png").unlink()
    dataset = CocoSegmentation(root, "val", skip_invalid=True)
    assert dataset.image_ids == [2] and dataset.skipped == {"missing image file": 1}
    assert dataset.skipped_summary() == "skipped 1 image with a missing file"


def test_skipped_summary_counts_each_reason(tmp_path):
    bad = [annotation(77, [[1, 1, 9, 9]]), annotation(78, [[1, 1, 9, 9]]), annotation(79, [], image_id=5)]
    dataset = CocoSegmentation(write_dataset(tmp_path, [*three_objects(), *bad]), "val", skip_invalid=True)
    assert dataset.skipped_summary() == ("skipped 2 annotations with invalid polygons, "
                                         "1 annotation of an unknown image")


def test_missing_annotation_file_names_the_expected_path_and_layout(tmp_path):
    with pytest.raises(DatasetError, match=r"instances_train\.json.*ROOT/annotations/instances_<split>\.json"):
        CocoSegmentation(tmp_path, "train")


def test_malformed_json_is_reported(tmp_path):
    root = write_dataset(tmp_path, three_objects())
    (root / "annotations" / "instances_val.json").write_text('{"images": [')
    with pytest.raises(DatasetError, match=r"instances_val\.json is not valid JSON"):
        CocoSegmentation(root, "val")


def test_missing_top_level_key_is_reported(tmp_path):
    root = write_dataset(tmp_path, three_objects())
    (root / "annotations" / "instances_val.json").write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(DatasetError, match=r"instances_val\.json has no \"categories\" list"):
        CocoSegmentation(root, "val")


@pytest.mark.parametrize("kind", ["image", "annotation", "category"])
def test_duplicate_ids_are_reported(tmp_path, kind):
    images = [{"id": 1, "file_name": "a.png", "height": 64, "width": 64}]
    categories = [{"id": 1, "name": "square"}, {"id": 2, "name": "dot"}]
    annotations = three_objects()
    {"image": images, "annotation": annotations, "category": categories}[kind].append(
        {"image": {"id": 1, "file_name": "b.png", "height": 64, "width": 64},
         "annotation": annotation(2, rectangle(1, 1, 9, 9)),
         "category": {"id": 2, "name": "again"}}[kind])
    root = write_dataset(tmp_path, annotations, images=images, categories=categories)
    with pytest.raises(DatasetError, match=rf"{kind} id \d appears twice in .*instances_val\.json"):
        CocoSegmentation(root, "val")


def test_exif_orientation_is_applied_before_the_size_check(tmp_path):
    images = [{"id": 1, "file_name": "a.jpg", "height": 64, "width": 32}]
    root = write_dataset(tmp_path, [], images=images, write_images=False)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to view
    Image.new("RGB", (64, 32)).save(root / "val" / "a.jpg", exif=exif)
    image, _ = CocoSegmentation(root, "val")[0]
    assert image.shape == (3, 64, 32)
