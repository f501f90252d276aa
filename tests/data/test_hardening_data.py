"""Datasets and results files (issue 6, section 3): a damaged annotation file, ground truth or results file
is refused with one sentence naming the file and the id, in the library and on the command line; with
``--skip-invalid`` the bad parts are left out, and what was skipped is printed and recorded.

The dataset reader (``CocoSegmentation``: train, eval RUN_DIR) and the ground truth of ``eval --gt`` share
their checks (:mod:`segcore.coco.instances`), so each damage is tried on both. The first test shows that the
danger is real: plain pycocotools crashes the process on a polygon point at 1e12.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from segcore.cli import main
from segcore.coco.instances import read_instances
from segcore.coco.results import ResultsError, load_results, parse_results
from segcore.data import CocoSegmentation
from segcore.errors import DatasetError
from segcore.evaluation.scoring import load_ground_truth

# ---- the shapes dataset's val split (4 images of 256x256, 30 annotations), copied to be damaged ----


@pytest.fixture
def data(shapes, tmp_path) -> Path:
    root = tmp_path / "data"
    (root / "annotations").mkdir(parents=True)
    shutil.copy(shapes / "annotations" / "instances_val.json", root / "annotations")
    shutil.copytree(shapes / "val", root / "val")
    return root


def gt_file(root: Path) -> Path:
    return root / "annotations" / "instances_val.json"


def damage(root: Path, change, split: str = "val") -> Path:
    """Apply ``change`` to the split's parsed JSON and write it back; returns the file."""
    path = root / "annotations" / f"instances_{split}.json"
    content = json.loads(path.read_text())
    change(content)
    path.write_text(json.dumps(content))  # NaN and Infinity are written as JSON's readers accept them
    return path


def entry_of(content: dict, kind: str, entry_id: int) -> dict:
    return next(e for e in content[kind] if e["id"] == entry_id)


def setting(kind: str, entry_id: int, **values):
    """A damage: set (or with ``...`` remove) keys of one image or annotation."""
    def change(content):
        entry = entry_of(content, kind, entry_id)
        for key, value in values.items():
            if value is ...:
                entry.pop(key)
            else:
                entry[key] = value
    return change


def read_dataset(root: Path, **options):
    return CocoSegmentation(root, "val", **options)


def read_ground_truth(root: Path, **options):
    return load_ground_truth(gt_file(root), **options)


READERS = [pytest.param(read_dataset, id="dataset"), pytest.param(read_ground_truth, id="ground truth")]


def one_sentence(message: str) -> bool:
    return "\n" not in message and message.endswith(".") and "Traceback" not in message


# ---- the danger without protection ----

@pytest.mark.hardening(3, "a polygon point at 1e12 under plain pycocotools",
                       "the process crashes (SIGSEGV): the danger is real")
def test_plain_pycocotools_crashes_on_a_polygon_point_far_away(data):
    path = damage(data, setting("annotations", 7, segmentation=[[0, 0, 1e12, 0, 1e12, 1e12]]))
    code = ("import contextlib, io, sys; from pycocotools.coco import COCO\n"
            "with contextlib.redirect_stdout(io.StringIO()): coco = COCO(sys.argv[1])\n"
            "coco.annToMask(coco.anns[7])")
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, timeout=120)
    assert result.returncode < 0  # killed by a signal, not an exception


# ---- annotations: refused naming the file and the id, or skipped and counted ----

MISSING_KEYS = ("missing keys (top-level lists, an annotation's or image's keys)",
                "refused: one sentence naming the file, the id and the key")
MISSING_IMAGES = ("annotations of missing images (unknown image id, no file on disk)",
                  "refused naming the annotation or image; --skip-invalid skips and counts them")
SHORT_POLYGONS = ("polygons with fewer than 3 points", "refused naming the annotation, or the results entry")
EMPTY_MASKS = ("empty masks (zero-area polygon, RLE without foreground)",
               "ground truth: refused naming the annotation; results: kept, scored as a false positive as COCO does")
OUTSIDE = ("boxes outside the image (wholly, or more than 2 px past an edge)",
           "refused naming the id and the rule; up to 2 px past an edge is clipped")
CRASHERS = ("values that crash or hang pycocotools (point at 1e12 or NaN, RLE overrun, huge image size)",
            "refused before pycocotools sees them")
WRONG_TYPES = ("wrong types (id as a list, area, iscrowd, negative box size)", "refused naming the id")


def blank_rle(compressed: bool) -> dict:
    if not compressed:
        return {"size": [256, 256], "counts": [256 * 256]}
    rle = mask_utils.encode(np.zeros((256, 256), np.uint8, order="F"))
    return {"size": [256, 256], "counts": rle["counts"].decode()}


def annotation_case(name: str, change, words: str, reason: str, marker: tuple[str, str]):
    return pytest.param(change, words, reason, id=name, marks=pytest.mark.hardening(3, *marker))


ANNOTATION_DAMAGE = [
    annotation_case("no image_id", setting("annotations", 7, image_id=...),
                    'has no integer "image_id"', "unknown image id", MISSING_KEYS),
    annotation_case("no category_id", setting("annotations", 7, category_id=...),
                    'has no integer "category_id"', "unknown category id", MISSING_KEYS),
    annotation_case("no segmentation", setting("annotations", 7, segmentation=...),
                    "has no segmentation", "missing segmentation", MISSING_KEYS),
    annotation_case("unknown image id", setting("annotations", 7, image_id=99),
                    'refers to image 99, which is not in its "images" list', "unknown image id", MISSING_IMAGES),
    annotation_case("two-point polygon", setting("annotations", 7, segmentation=[[10, 10, 50, 50]]),
                    r"has a polygon with 2 points \(at least 3 are needed\)", "invalid polygon", SHORT_POLYGONS),
    annotation_case("zero-area polygon", setting("annotations", 7, segmentation=[[10, 10, 30, 30, 50, 50]]),
                    "has a segmentation that covers no pixel", "empty mask", EMPTY_MASKS),
    annotation_case("RLE without foreground", setting("annotations", 7, segmentation=blank_rle(False)),
                    "has a segmentation that covers no pixel", "empty mask", EMPTY_MASKS),
    annotation_case("compressed RLE without foreground", setting("annotations", 7, segmentation=blank_rle(True)),
                    "has a segmentation that covers no pixel", "empty mask", EMPTY_MASKS),
    annotation_case("bbox wholly outside", setting("annotations", 7, bbox=[300, 10, 20, 20]),
                    r"has a bbox \[300, 10, 20, 20\] that lies outside its 256x256 image", "bbox outside image",
                    OUTSIDE),
    annotation_case("bbox 44 px past the edge", setting("annotations", 7, bbox=[200, 10, 100, 20]),
                    r"has a bbox \[200, 10, 100, 20\] that reaches 44 pixels past its 256x256 image \(boxes may "
                    r"reach 2 pixels past an edge, which are clipped off\)", "bbox outside image", OUTSIDE),
    annotation_case("[x1, y1, x2, y2] as a bbox", setting("annotations", 7, bbox=[100, 150, 180, 250]),
                    r"has a bbox \[100, 150, 180, 250\] that reaches 144 pixels past its 256x256 image",
                    "bbox outside image", OUTSIDE),
    annotation_case("polygon point at 1e12", setting("annotations", 7, segmentation=[[0, 0, 1e12, 0, 1e12, 1e12]]),
                    "has polygon points far outside its 256x256 image", "invalid polygon", CRASHERS),
    annotation_case("polygon point NaN", setting("annotations", 7, segmentation=[[0, 0, float("nan"), 0, 5, 5]]),
                    "has a polygon coordinate that is not a finite number", "invalid polygon", CRASHERS),
    annotation_case("RLE overrunning the image", setting("annotations", 7, segmentation={"size": [256, 256],
                                                                                        "counts": [0, 70000]}),
                    "has RLE counts that cover 70000 pixels instead of 65536", "invalid rle", CRASHERS),
    annotation_case("image_id as a list", setting("annotations", 7, image_id=[2]),
                    r'has an "image_id" that is not an integer \(\[2\]\)', "unknown image id", WRONG_TYPES),
    annotation_case("category_id as a list", setting("annotations", 7, category_id=[1]),
                    r'has a "category_id" that is not an integer \(\[1\]\)', "unknown category id", WRONG_TYPES),
    annotation_case("area a string", setting("annotations", 7, area="big"),
                    r'has an "area" that is not a number >= 0 \(\'big\'\)', "invalid area or iscrowd", WRONG_TYPES),
    annotation_case("iscrowd a string", setting("annotations", 7, iscrowd="yes"),
                    r'has an "iscrowd" that is neither 0 nor 1', "invalid area or iscrowd", WRONG_TYPES),
    annotation_case("negative bbox width", setting("annotations", 7, bbox=[10, 10, -5, 5]),
                    r"has a bbox \[10, 10, -5, 5\] with a negative width or height", "invalid bbox", WRONG_TYPES),
    annotation_case("bbox of zero width", setting("annotations", 7, bbox=[10, 10, 0, 5]),
                    r"has a bbox \[10, 10, 0, 5\] of zero width or height", "invalid bbox", WRONG_TYPES),
]


#: What a dataset to train on refuses, but a ground truth that is only scored keeps (with its bbox).
SCORED_ON_ITS_BOX = {"has no segmentation", r"has a bbox \[10, 10, 0, 5\] of zero width or height"}


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("change, words, reason", ANNOTATION_DAMAGE)
def test_a_damaged_annotation_is_refused_naming_the_file_and_its_id(data, reader, change, words, reason):
    path = damage(data, change)
    if reader is read_ground_truth and words in SCORED_ON_ITS_BOX:
        assert 7 in reader(data).anns  # a ground truth is only scored: a box alone is a detection dataset's
        return
    with pytest.raises(DatasetError) as error:
        reader(data)
    message = str(error.value)
    assert re.fullmatch(rf"annotation 7 in {re.escape(str(path))} {words}.*; fix or remove it, or pass "
                        rf"--skip-invalid to skip such annotations\.", message), message
    assert one_sentence(message)


@pytest.mark.parametrize("change, words, reason", ANNOTATION_DAMAGE)
def test_a_damaged_annotation_is_skipped_and_counted(data, change, words, reason):
    damage(data, change)
    for coco, skipped in [(lambda d: (d.coco, d.skipped))(read_dataset(data, skip_invalid=True)),
                          (lambda i: (i.coco(), i.skipped))(read_instances(gt_file(data), skip_invalid=True))]:
        assert skipped == {reason: 1}
        assert 7 not in coco.anns and len(coco.anns) == 29


@pytest.mark.hardening(3, *OUTSIDE)
@pytest.mark.parametrize("reader", READERS)
def test_a_box_up_to_2_px_past_the_edge_is_clipped(data, reader):
    damage(data, setting("annotations", 7, bbox=[250, -1.5, 7.5, 20]))
    coco = reader(data)
    coco = getattr(coco, "coco", coco)
    assert coco.anns[7]["bbox"] == [250, 0, 6, 18.5]


def test_the_dataset_gives_the_clipped_box_to_the_model(data):
    damage(data, setting("annotations", 7, bbox=[250, -1.5, 7.5, 20]))
    dataset = read_dataset(data)
    target = dataset.target(dataset.image_ids.index(dataset.coco.anns[7]["image_id"]))
    [box] = target["boxes"][target["annotation_ids"] == 7].tolist()
    assert box == [250, 0, 256, 18.5]


def test_a_ground_truth_without_area_iscrowd_and_bbox_is_completed_from_its_masks(data):
    damage(data, setting("annotations", 7, area=..., iscrowd=..., bbox=...))
    expected = mask_utils.toBbox(json.loads((gt_file(data)).read_text())["annotations"][6]["segmentation"]).tolist()
    annotation = load_ground_truth(gt_file(data)).anns[7]
    assert annotation["iscrowd"] == 0 and annotation["bbox"] == expected
    assert annotation["area"] == mask_utils.area(annotation["segmentation"]) > 0  # COCOeval needs all three


# ---- images ----

IMAGE_DAMAGE = [
    pytest.param(setting("images", 2, file_name=...), 'has no "file_name"', id="no file_name",
                 marks=pytest.mark.hardening(3, *MISSING_KEYS)),
    pytest.param(setting("images", 2, height=...), 'needs positive integer "height" and "width"', id="no height",
                 marks=pytest.mark.hardening(3, *MISSING_KEYS)),
    pytest.param(setting("images", 2, width=...), 'needs positive integer "height" and "width"', id="no width",
                 marks=pytest.mark.hardening(3, *MISSING_KEYS)),
    pytest.param(setting("images", 2, width=10 ** 6, height=10 ** 6),
                 "is 1000000x1000000 pixels, more than the 16777215 pycocotools can encode a mask of",
                 id="10^6 x 10^6 image",
                 marks=pytest.mark.hardening(3, *CRASHERS)),
]


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("change, words", IMAGE_DAMAGE)
def test_a_damaged_image_entry_is_refused_naming_the_file_and_its_id(data, reader, change, words):
    path = damage(data, change)
    with pytest.raises(DatasetError) as error:
        reader(data)
    message = str(error.value)
    assert re.fullmatch(rf"image 2 in {re.escape(str(path))} {words}.*; fix its entry, or pass --skip-invalid to skip "
                        rf"such images\.", message), message


@pytest.mark.parametrize("change, words", IMAGE_DAMAGE)
def test_a_damaged_image_entry_is_skipped_with_its_annotations(data, change, words):
    damage(data, change)
    dataset = read_dataset(data, skip_invalid=True)
    assert dataset.skipped == {"invalid image": 1} and 2 not in dataset.image_ids
    assert not [a for a in dataset.coco.anns.values() if a["image_id"] == 2]
    assert dataset.skipped_summary() == "skipped 1 image with a malformed entry"


@pytest.mark.hardening(3, *MISSING_IMAGES)
def test_an_image_file_missing_on_disk_is_refused_or_skipped(data):
    (data / "val" / "000002.png").unlink()
    with pytest.raises(DatasetError, match=rf"^image 2 of {re.escape(str(gt_file(data)))} has no file at "
                                           rf"{re.escape(str(data / 'val' / '000002.png'))} .*--skip-invalid"):
        read_dataset(data)
    dataset = read_dataset(data, skip_invalid=True)
    assert dataset.image_ids == [1, 3, 4] and dataset.skipped_summary() == "skipped 1 image with a missing file"
    assert load_ground_truth(gt_file(data)).imgs[2]  # scoring needs no image files


# ---- the file as a whole: refused, never skipped ----

@pytest.mark.hardening(3, "malformed JSON", "refused: one sentence naming the file, the line and the column")
@pytest.mark.parametrize("reader", READERS)
def test_malformed_json_is_refused_with_its_line_and_column(data, reader):
    gt_file(data).write_text('{"images": [\n  {"id": 1,}\n]}')
    with pytest.raises(DatasetError) as error:
        reader(data)
    assert str(error.value) == (f"{gt_file(data)} is not valid JSON (Expecting property name enclosed in double "
                                f"quotes at line 2, column 12); fix or regenerate the file.")


@pytest.mark.hardening(3, *MISSING_KEYS)
@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("key", ["images", "annotations", "categories"])
def test_a_missing_top_level_list_is_refused(data, reader, key):
    damage(data, lambda content: content.pop(key))
    with pytest.raises(DatasetError, match=rf"^{re.escape(str(gt_file(data)))} has no \"{key}\" list; a COCO "
                                           rf"instances file needs"):
        reader(data)


@pytest.mark.hardening(3, "duplicate image, annotation and category ids",
                       "refused: one sentence naming the file and the id")
@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("kind, one, entry_id", [("images", "image", 3), ("annotations", "annotation", 12),
                                                ("categories", "category", 5)])
def test_a_duplicate_id_is_refused_naming_it(data, reader, kind, one, entry_id):
    damage(data, lambda content: content[kind].append(dict(entry_of(content, kind, entry_id))))
    with pytest.raises(DatasetError) as error:
        reader(data, skip_invalid=True)  # which of the two is right cannot be guessed, so never skipped
    assert str(error.value) == f"{one} id {entry_id} appears twice in {gt_file(data)}; give every {one} its own id."


@pytest.mark.parametrize("kind, one, huge", [("annotations", "annotation", 2 ** 63),
                                             ("categories", "category", 2 ** 70),
                                             ("images", "image", -(2 ** 63) - 1)])
def test_an_id_beyond_64_bits_is_refused_naming_it(data, tmp_path, kind, one, huge, capsys):
    predictions = write_results(tmp_path, results_of(data))

    def enlarge(content):
        content[kind][0]["id"] = huge

    damage(data, enlarge)
    assert main(["eval", "--gt", str(gt_file(data)), "--predictions", str(predictions),
                 "--out", str(tmp_path / "ext")]) == 2
    line = stderr_line(capsys)
    assert line == (f"error: the {one} at position 0 of {gt_file(data)} has the id {huge}, beyond the 64-bit "
                    f"integers that evaluation holds ids in; renumber it below 2**63.")
    assert not (tmp_path / "ext").exists()


# ---- results files ----

def results_of(root: Path) -> list[dict]:
    """The ground truth's own masks as detections: a valid results file to damage."""
    annotations = json.loads(gt_file(root).read_text())["annotations"]
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": a["segmentation"],
             "bbox": a["bbox"], "score": 1.0} for a in annotations]


def write_results(tmp_path: Path, results: list[dict]) -> Path:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    return path


def results_case(name: str, change: dict, words: str, reason: str, marker: tuple[str, str]):
    return pytest.param(change, words, reason, id=name, marks=pytest.mark.hardening(3, *marker))


RESULTS_DAMAGE = [
    results_case("no image_id", {"image_id": ...}, 'has no "image_id"', "missing key", MISSING_KEYS),
    results_case("no category_id", {"category_id": ...}, 'has no "category_id"', "missing key", MISSING_KEYS),
    results_case("no score", {"score": ...}, 'has no "score"', "missing key", MISSING_KEYS),
    results_case("unknown image id", {"image_id": 99}, "has image_id 99, which is not in instances_val.json",
                 "unknown image id", MISSING_IMAGES),
    results_case("two-point polygon", {"segmentation": [[10, 10, 50, 50]]},
                 r"has a polygon with 2 points \(at least 3 are needed\)", "invalid polygon", SHORT_POLYGONS),
    results_case("bbox wholly outside", {"bbox": [300, 10, 20, 20]},
                 r"has a bbox \[300, 10, 20, 20\] that lies outside its 256x256 image 1", "bbox outside image",
                 OUTSIDE),
    results_case("[x1, y1, x2, y2] as a bbox", {"bbox": [100, 150, 180, 250]},
                 r"has a bbox \[100, 150, 180, 250\] that reaches 144 pixels past its 256x256 image 1 \(boxes may "
                 r"reach 2 pixels past an edge, which are clipped off\)", "bbox outside image", OUTSIDE),
    results_case("polygon point at 1e12", {"segmentation": [[0, 0, 1e12, 0, 1e12, 1e12]]},
                 "has polygon points far outside its 256x256 image 1", "invalid polygon", CRASHERS),
    results_case("RLE overrunning the image", {"segmentation": {"size": [256, 256], "counts": [0, 70000]}},
                 "has uncompressed RLE counts that are not runs covering 65536 pixels", "invalid rle", CRASHERS),
]


def damaged_results(root: Path, change: dict, at=(2, 4)) -> list[dict]:
    """The valid results with entries ``at`` (indices; all of image 1) changed."""
    results = results_of(root)
    for index in at:
        results[index] = {k: v for k, v in {**results[index], **change}.items() if v is not ...}
    return results


@pytest.mark.parametrize("change, words, reason", RESULTS_DAMAGE)
def test_a_damaged_results_entry_is_refused_naming_its_index_and_counting_the_rest(data, tmp_path, change, words,
                                                                                   reason):
    path = write_results(tmp_path, damaged_results(data, change))
    with pytest.raises(ResultsError) as error:
        load_results(path, load_ground_truth(gt_file(data)), gt_name="instances_val.json")
    message = str(error.value)
    assert re.fullmatch(rf"results\.json: entry 2 {words} \(and 1 more entries are invalid\); .*, or pass "
                        rf"--skip-invalid to skip invalid entries\.", message), message
    assert one_sentence(message)


@pytest.mark.parametrize("change, words, reason", RESULTS_DAMAGE)
def test_a_damaged_results_entry_is_skipped_and_counted(data, change, words, reason):
    skipped = Counter()
    results = parse_results(damaged_results(data, change), load_ground_truth(gt_file(data)), skipped=skipped)
    assert skipped == {reason: 2} and len(results) == 28


@pytest.mark.hardening(3, "malformed JSON", "refused: one sentence naming the file, the line and the column")
def test_a_malformed_results_file_is_refused_with_its_line_and_column(data, tmp_path):
    path = tmp_path / "results.json"
    path.write_text('[\n  {"image_id": 1, "score": 0.5\n]')
    with pytest.raises(ResultsError) as error:
        load_results(path, load_ground_truth(gt_file(data)))
    assert str(error.value) == ("results.json: is not valid JSON (Expecting ',' delimiter at line 3, column 1); "
                                "pass the results file the tool wrote.")


@pytest.mark.hardening(3, *OUTSIDE)
def test_a_results_box_up_to_2_px_past_the_edge_is_clipped(data, tmp_path):
    results = damaged_results(data, {"bbox": [250, -1.5, 7.5, 20]}, at=[0])
    [first, *_] = load_results(write_results(tmp_path, results), load_ground_truth(gt_file(data)))
    assert first["bbox"] == [250, 0, 6, 18.5]


@pytest.mark.hardening(3, *EMPTY_MASKS)
def test_a_results_mask_without_pixels_is_kept_and_scored_as_a_false_positive(data, tmp_path):
    # detectors write empty masks for objects smaller than their mask resolution; COCO scores them as misses
    empty = {"image_id": 1, "category_id": 1, "segmentation": blank_rle(True), "score": 0.5}
    path = write_results(tmp_path, [*results_of(data), empty])
    results = load_results(path, load_ground_truth(gt_file(data)))
    assert len(results) == 31 and results[-1]["bbox"] == [0, 0, 0, 0]
    assert main(["eval", "--gt", str(gt_file(data)), "--predictions", str(path), "--out", str(tmp_path / "ext")]) == 0
    [folder] = (tmp_path / "ext" / "evals").iterdir()
    per_instance = (folder / "per_instance.csv").read_text().splitlines()
    assert len(per_instance) == 1 + 31  # 30 matched pairs and the empty mask, a false positive


# ---- the command line: exit 2, one line on stderr naming the file; --skip-invalid prints and records ----

CLI = ("bad dataset, ground truth or results file on the command line",
       "exit 2 and one stderr line 'error: ...' naming the file and the id, no traceback")
SKIP = ("--skip-invalid on bad annotations, images and results entries",
        "skipped; what and how many printed by reason and recorded in metrics.json / run.json")


def stderr_line(capsys) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.err.count("\n") == 1, captured.err
    return captured.err.strip()


@pytest.mark.hardening(3, *CLI)
def test_eval_refuses_a_damaged_ground_truth(data, tmp_path, capsys):
    predictions = write_results(tmp_path, results_of(data))
    damage(data, setting("annotations", 7, segmentation=[[10, 10, 50, 50]]))
    assert main(["eval", "--gt", str(gt_file(data)), "--predictions", str(predictions),
                 "--out", str(tmp_path / "ext")]) == 2
    line = stderr_line(capsys)
    assert line.startswith(f"error: annotation 7 in {gt_file(data)} has a polygon with 2 points")
    assert not (tmp_path / "ext").exists()


@pytest.mark.hardening(3, *CLI)
def test_eval_refuses_a_damaged_results_file(data, tmp_path, capsys):
    predictions = write_results(tmp_path, damaged_results(data, {"image_id": 99}))
    assert main(["eval", "--gt", str(gt_file(data)), "--predictions", str(predictions),
                 "--out", str(tmp_path / "ext")]) == 2
    line = stderr_line(capsys)
    assert line.startswith("error: results.json: entry 2 has image_id 99, which is not in instances_val.json "
                           "(and 1 more entries are invalid)")
    assert not (tmp_path / "ext").exists()


@pytest.mark.hardening(3, *CLI)
def test_eval_refuses_a_malformed_results_file(data, tmp_path, capsys):
    predictions = tmp_path / "results.json"
    predictions.write_text("[{")
    assert main(["eval", "--gt", str(gt_file(data)), "--predictions", str(predictions),
                 "--out", str(tmp_path / "ext")]) == 2
    assert stderr_line(capsys).startswith("error: results.json: is not valid JSON (")


@pytest.mark.hardening(3, *SKIP)
def test_eval_skip_invalid_skips_prints_and_records_what_it_skipped(data, tmp_path, capsys):
    results = damaged_results(data, {"image_id": 99})
    results[5]["bbox"] = [300, 10, 20, 20]
    predictions = write_results(tmp_path, results)
    damage(data, setting("annotations", 7, segmentation=[[10, 10, 30, 30, 50, 50]]))
    assert main(["eval", "--gt", str(gt_file(data)), "--predictions", str(predictions),
                 "--out", str(tmp_path / "ext"), "--skip-invalid"]) == 0
    out = capsys.readouterr().out
    assert f"{gt_file(data)}: skipped 1 annotation with an empty mask\n" in out
    assert f"{predictions}: skipped 2 entries of unknown images, 1 entry with a bbox outside its image\n" in out
    [folder] = (tmp_path / "ext" / "evals").iterdir()
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["skipped"] == {"ground_truth": {"empty mask": 1},
                                  "predictions": {"unknown image id": 2, "bbox outside image": 1}}


@pytest.mark.hardening(3, *SKIP)
def test_what_reads_an_eval_folder_made_with_skip_invalid_skips_the_same(data, tmp_path):
    # the leaderboard's AP intervals and compare read the ground truth again: as the evaluation read it
    from segcore import runs
    from segcore.app import leaderboard

    damage(data, setting("annotations", 7, segmentation=[[10, 10, 30, 30, 50, 50]]))
    predictions = write_results(tmp_path, results_of(data))
    assert main(["eval", "--gt", str(gt_file(data)), "--predictions", str(predictions), "--out",
                 str(tmp_path / "ext"), "--skip-invalid"]) == 0
    [folder] = (tmp_path / "ext" / "evals").iterdir()
    assert runs.dataset_source(folder).skip_invalid
    assert 0 <= leaderboard.ap_intervals(folder, resamples=20)["mask AP"]["mean"] <= 1


@pytest.mark.hardening(3, *SKIP)
def test_the_ap_intervals_of_a_model_evaluated_without_an_image_file_match_its_metrics(data, tiny_run, tmp_path):
    # eval RUN_DIR --skip-invalid also leaves out images without files: the intervals must leave them out too
    from segcore.app import leaderboard

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("evals", "comparisons"))
    sorted((data / "val").iterdir())[0].unlink()
    assert main(["eval", str(run), "--data", str(data), "--split", "val", "--skip-invalid", "--no-progress"]) == 0
    [folder] = (run / "evals").iterdir()
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["skipped"]["ground_truth"] == {"missing image file": 1}
    interval = leaderboard.ap_intervals(folder, resamples=20)["mask AP"]
    assert (interval["n_images"], interval["mean"]) == (metrics["n_images"], pytest.approx(metrics["segm"]["AP"]))


@pytest.mark.hardening(3, "an eval folder's predictions.json edited afterwards (an RLE that overruns its image)",
                       "refused with one sentence naming the file and the entry by compare, the AP intervals and "
                       "the Browse page, before pycocotools decodes it")
def test_an_edited_predictions_json_is_checked_by_everything_that_reads_it(data, tmp_path, capsys):
    from segcore.app import leaderboard
    from segcore.runs import read_eval_predictions

    predictions = write_results(tmp_path, results_of(data))
    for name in ("a", "b"):
        assert main(["eval", "--gt", str(gt_file(data)), "--predictions", str(predictions), "--out",
                     str(tmp_path / name), "--name", name]) == 0
    [folder] = (tmp_path / "b" / "evals").iterdir()
    edited = json.loads((folder / "predictions.json").read_text())
    edited[3]["segmentation"]["counts"] = "0" + "o" * 6 + "1"  # a run far past the image's pixels
    (folder / "predictions.json").write_text(json.dumps(edited))
    coco_gt = load_ground_truth(gt_file(data))
    sentence = f"{folder / 'predictions.json'} is damaged (entry 3 has RLE counts that cover"
    with pytest.raises(ResultsError, match=re.escape(sentence)):
        read_eval_predictions(folder, coco_gt)  # what the Browse and Compare pages read it with
    with pytest.raises(ResultsError, match=re.escape(sentence)):
        leaderboard.ap_intervals(folder, resamples=10)
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--data", str(data), "--split", "val",
                 "--no-progress"]) == 2
    assert stderr_line(capsys).startswith(f"error: {sentence}")


def test_a_box_only_ground_truth_is_scored_on_boxes(data, tmp_path, capsys):
    # a detection dataset: boxes, no segmentations; its own boxes as detections score AP 1
    with_masks = results_of(data)
    content = json.loads(gt_file(data).read_text())
    for annotation in content["annotations"]:
        del annotation["segmentation"]
    gt_file(data).write_text(json.dumps(content))
    boxes = [{k: v for k, v in r.items() if k != "segmentation"} for r in with_masks]
    assert main(["eval", "--gt", str(gt_file(data)), "--predictions", str(write_results(tmp_path, boxes)),
                 "--out", str(tmp_path / "boxes")]) == 0
    [folder] = (tmp_path / "boxes" / "evals").iterdir()
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["bbox"]["AP"] == pytest.approx(1.0) and "segm" not in metrics
    capsys.readouterr()
    masks = tmp_path / "masks"
    masks.mkdir()
    assert main(["eval", "--gt", str(gt_file(data)), "--predictions", str(write_results(masks, with_masks)),
                 "--out", str(tmp_path / "masks-run")]) == 2
    assert "annotations with a box but no segmentation, so masks cannot be scored" in stderr_line(capsys)


@pytest.mark.hardening(3, *CLI)
def test_train_refuses_a_damaged_dataset(shapes, tmp_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(shapes, root)
    path = damage(root, setting("annotations", 3, bbox=[300, 10, 20, 20]), split="train")
    assert main(["train", "--model", "unet", "--data", str(root), "--out", str(tmp_path / "run"),
                 "--max-iters", "1", "--no-progress"]) == 2
    assert stderr_line(capsys).startswith(f"error: annotation 3 in {path} has a bbox [300, 10, 20, 20] that lies "
                                          f"outside its 256x256 image")


@pytest.mark.hardening(3, *SKIP)
def test_train_and_eval_skip_invalid_print_and_record_what_they_skipped(shapes, tmp_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(shapes, root)
    train_file = damage(root, setting("annotations", 3, segmentation=[[10, 10, 50, 50]]), split="train")
    val_file = damage(root, setting("annotations", 7, image_id=99))
    run = tmp_path / "run"
    assert main(["train", "--model", "unet", "--depth", "3", "--width", "8", "--data", str(root), "--out", str(run),
                 "--max-iters", "1", "--batch-size", "2", "--device", "cpu", "--no-progress", "--skip-invalid"]) == 0
    out = capsys.readouterr().out
    assert f"{train_file}: skipped 1 annotation with an invalid polygon\n" in out
    assert f"{val_file}: skipped 1 annotation of an unknown image\n" in out
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["dataset"]["skipped"] == {"train": {"invalid polygon": 1}, "val": {"unknown image id": 1}}

    assert main(["eval", str(run), "--data", str(root), "--split", "val", "--device", "cpu", "--skip-invalid",
                 "--speed-images", "1", "--no-progress"]) == 0
    assert f"{val_file}: skipped 1 annotation of an unknown image\n" in capsys.readouterr().out
    metrics = json.loads((run / "evals" / "data-val" / "metrics.json").read_text())
    assert metrics["skipped"] == {"ground_truth": {"unknown image id": 1}}
