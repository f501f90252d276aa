"""The built-in dataset generator: determinism, COCO layout, coverage of the hard cases, atomic writes."""

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from segcore.data import synth
from segcore.errors import DatasetError

TINY = {"n_train": 12, "n_val": 4, "n_test": 4}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _load(root: Path, split: str = "train") -> dict:
    return json.loads((root / "annotations" / f"instances_{split}.json").read_text())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "shapes"
    synth.generate(out, seed=0, workers=2, **TINY)
    return out


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    """40 training images: enough for every kind of object and scene to turn up."""
    out = tmp_path_factory.mktemp("sample") / "shapes"
    synth.generate(out, seed=1, n_train=40, n_val=0, n_test=0, workers=2)
    return out


@pytest.fixture(scope="module")
def sample_annotations(sample) -> dict[int, list[dict]]:
    per_image = defaultdict(list)
    for ann in _load(sample)["annotations"]:
        per_image[ann["image_id"]].append(ann)
    return per_image


# Determinism


def test_same_seed_gives_byte_identical_files_whatever_the_worker_count(tiny, tmp_path):
    again = tmp_path / "again"
    synth.generate(again, seed=0, workers=1, **TINY)
    assert _files(again) == _files(tiny)


def test_another_seed_gives_other_images_and_annotations(tiny, tmp_path):
    other = tmp_path / "other"
    synth.generate(other, seed=7, workers=1, **TINY)
    assert (other / "train" / "000001.png").read_bytes() != (tiny / "train" / "000001.png").read_bytes()
    assert _load(other)["annotations"] != _load(tiny)["annotations"]


# Layout


@pytest.mark.parametrize("split", synth.SPLITS)
def test_annotation_file_loads_with_pycocotools(tiny, split):
    coco = COCO(str(tiny / "annotations" / f"instances_{split}.json"))
    assert len(coco.getImgIds()) == TINY[f"n_{split}"]
    assert [coco.cats[i]["name"] for i in sorted(coco.cats)] == list(synth.CLASSES)
    assert sorted(coco.cats) == list(range(1, len(synth.CLASSES) + 1))


def test_every_image_exists_as_a_256_pixel_rgb_png(tiny):
    for split in synth.SPLITS:
        for image in _load(tiny, split)["images"]:
            with Image.open(tiny / split / image["file_name"]) as im:
                assert (im.format, im.mode, im.size) == ("PNG", "RGB", (image["width"], image["height"]))
                assert im.size == (256, 256)


def test_image_and_annotation_ids_start_at_one_and_are_unique(tiny):
    dataset = _load(tiny)
    assert [im["id"] for im in dataset["images"]] == list(range(1, TINY["n_train"] + 1))
    assert [a["id"] for a in dataset["annotations"]] == list(range(1, len(dataset["annotations"]) + 1))


def test_rle_masks_decode_to_the_annotated_area_and_box(tiny):
    for ann in _load(tiny)["annotations"]:
        assert isinstance(ann["segmentation"]["counts"], str)
        mask = mask_utils.decode(ann["segmentation"])
        assert mask.shape == (256, 256)
        assert mask.sum() == ann["area"]
        ys, xs = np.nonzero(mask)
        x, y = xs.min(), ys.min()
        assert ann["bbox"] == [x, y, xs.max() - x + 1, ys.max() - y + 1]
        assert ann["iscrowd"] == 0


def test_summarize_agrees_with_what_generate_reports(tmp_path):
    report = synth.generate(tmp_path / "shapes", seed=3, n_train=3, n_val=1, n_test=1, workers=1)
    stats = synth.summarize(tmp_path / "shapes")
    assert list(stats) == list(synth.SPLITS)
    assert {s: stats[s]["images"] for s in stats} == report["images"]
    assert {s: stats[s]["annotations"] for s in stats} == report["annotations"]
    assert {s: sum(stats[s]["area"].values()) for s in stats} == report["annotations"]


# Coverage of the hard cases


def test_objects_fall_in_all_three_coco_area_buckets(sample):
    areas = np.array([a["area"] for a in _load(sample)["annotations"]])
    assert (areas < 32**2).any()
    assert ((areas >= 32**2) & (areas <= 96**2)).any()
    assert (areas > 96**2).any()


def test_images_hold_between_one_and_fifteen_objects_with_sparse_and_crowded_scenes(sample, sample_annotations):
    counts = [len(sample_annotations[im["id"]]) for im in _load(sample)["images"]]
    assert 1 <= min(counts) and max(counts) <= 15
    assert min(counts) <= 3 and max(counts) >= 10


def test_occlusion_is_a_hidden_fraction_and_some_objects_are_heavily_occluded(sample):
    occlusion = np.array([a["occlusion"] for a in _load(sample)["annotations"]])
    assert ((occlusion >= 0) & (occlusion < 1)).all()
    assert (occlusion > 0.25).mean() >= 0.1


def test_the_front_object_of_every_image_is_fully_visible(sample_annotations):
    # Annotations of an image are listed back to front.
    for anns in sample_annotations.values():
        assert anns[-1]["occlusion"] == 0


def test_at_least_five_classes_appear(sample):
    assert len({a["category_id"] for a in _load(sample)["annotations"]}) >= 5


def test_visible_masks_of_an_image_do_not_overlap(sample_annotations):
    for anns in sample_annotations.values():
        masks = mask_utils.decode([a["segmentation"] for a in anns])
        assert masks.sum(axis=2).max() == 1


# Atomic write


def test_generating_into_an_existing_dataset_replaces_it_and_leaves_no_temp_folder(tmp_path):
    out = tmp_path / "shapes"
    synth.generate(out, seed=0, n_train=2, n_val=1, n_test=1, workers=1)
    (out / "stale.txt").write_text("from an older run")
    synth.generate(out, seed=0, n_train=3, n_val=1, n_test=1, workers=1)
    assert not (out / "stale.txt").exists()
    assert len(list((out / "train").iterdir())) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shapes"]


def test_an_interrupted_run_keeps_the_old_dataset_and_leaves_no_temp_folder(tmp_path, monkeypatch):
    out = tmp_path / "shapes"
    synth.generate(out, seed=0, n_train=2, n_val=1, n_test=1, workers=1)
    before = _files(out)

    def crash(task):
        raise KeyboardInterrupt

    monkeypatch.setattr(synth, "_render", crash)
    with pytest.raises(KeyboardInterrupt):
        synth.generate(out, seed=5, n_train=2, n_val=1, n_test=1, workers=1)
    assert _files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shapes"]


def test_refuses_to_replace_a_folder_that_is_not_a_dataset(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(DatasetError, match="not a dataset"):
        synth.generate(tmp_path, n_train=1, n_val=0, n_test=0, workers=1)
    assert (tmp_path / "notes.txt").read_text() == "keep me"
