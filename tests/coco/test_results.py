"""Importing other tools' COCO results files: accepted forms, clear errors, nothing but ResultsError."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from segcore.coco.results import ResultsError, has_masks, load_results, parse_results
from segcore.coco.rle import compressed_rle_runs, compressed_rle_total
from segcore.errors import SegcoreError

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "coco-val2014-100"


@pytest.fixture(scope="module")
def gt() -> COCO:
    coco = COCO()
    coco.dataset = {"images": [{"id": 1, "height": 32, "width": 48, "file_name": "street_01.jpg"},
                               {"id": 2, "height": 64, "width": 64, "file_name": "000002.jpg"}],
                    "annotations": [], "categories": [{"id": 1, "name": "car"}, {"id": 7, "name": "person"}]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def rle(shape=(32, 48)) -> dict:
    mask = np.zeros(shape, np.uint8)
    mask[4:20, 6:30] = 1
    encoded = mask_utils.encode(np.asfortranarray(mask))
    return {"size": list(shape), "counts": encoded["counts"].decode()}


def entry(**overrides) -> dict:
    base = {"image_id": 1, "category_id": 7, "score": 0.9, "bbox": [6.0, 4.0, 24.0, 16.0], "segmentation": rle()}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def write(tmp_path: Path, data, name: str = "results.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_detectron2_style_file_is_normalized(tmp_path, gt):
    results = load_results(write(tmp_path, [entry(), entry(score=1, image_id=2.0, segmentation=rle((64, 64)))]), gt)
    assert [r["image_id"] for r in results] == [1, 2]
    assert results[1]["score"] == 1.0 and isinstance(results[1]["score"], float)
    assert has_masks(results)
    assert isinstance(results[0]["segmentation"]["counts"], str)


def test_other_mask_encodings_become_compressed_rle(tmp_path, gt):
    reference = rle()
    uncompressed = {"size": [32, 48], "counts": compressed_rle_runs(reference["counts"]).tolist()}
    polygon = [[6, 4, 30, 4, 30, 20, 6, 20]]
    bytes_literal = {"size": [32, 48], "counts": f"b'{reference['counts']}'"}
    data = [entry(segmentation=s, bbox=...) for s in (uncompressed, polygon, bytes_literal)]
    results = load_results(write(tmp_path, data), gt)
    assert results[0]["segmentation"] == reference
    assert results[2]["segmentation"] == reference
    assert mask_utils.area(results[1]["segmentation"]) > 0
    assert results[0]["bbox"] == [6.0, 4.0, 24.0, 16.0]  # a missing box is the mask's box, as loadRes does


def test_box_only_file_has_no_masks(tmp_path, gt):
    results = load_results(write(tmp_path, [entry(segmentation=...), entry(segmentation=..., score=0.1)]), gt)
    assert not has_masks(results)
    assert "segmentation" not in results[0]


def test_ultralytics_string_image_ids_name_files(tmp_path, gt):
    results = load_results(write(tmp_path, [entry(image_id="street_01")]), gt)
    assert results[0]["image_id"] == 1


def test_empty_list_means_no_detections(tmp_path, gt):
    assert load_results(write(tmp_path, []), gt) == []
    assert not has_masks([])


BAD = {
    "unknown image id": (entry(image_id=999999), "has image_id 999999, which is not in instances_val.json"),
    "unknown category": (entry(category_id=3), "has category_id 3, which is not in"),
    "missing score": (entry(score=...), "has no \"score\""),
    "score not a number": (entry(score="high"), "score that is not a finite number"),
    "score nan": (entry(score=float("nan")), "score that is not a finite number"),
    "short bbox": (entry(bbox=[1, 2, 3]), "bbox that is not four numbers"),
    "negative bbox": (entry(bbox=[1, 2, -3, 4]), "negative width or height"),
    "not an object": (["image_id", 1], "is a JSON list, not an object"),
    "rle size": (entry(segmentation=rle((64, 64))), "RLE mask of size [64, 64], but image 1 is 32 x 48"),
    "rle counts malformed": (entry(segmentation={"size": [32, 48], "counts": "\x01\x02"}), "malformed RLE counts"),
    "rle counts overrun": (entry(segmentation={"size": [32, 48], "counts": rle((64, 64))["counts"]}),
                           "RLE counts that cover 4096 pixels instead of 1536"),
    "rle counts type": (entry(segmentation={"size": [32, 48], "counts": 5}), "neither a string nor a list"),
    "uncompressed overrun": (entry(segmentation={"size": [32, 48], "counts": [0, 5000]}), "not runs covering 1536"),
    "polygon garbage": (entry(segmentation=[[1, 2, "x"]]), "neither RLE nor a list of polygons"),
    "polygon far away": (entry(segmentation=[[0, 0, 1e9, 0, 1e9, 1e9]]), "far outside"),
    "no box no mask": (entry(bbox=..., segmentation=...), "neither a bbox nor a segmentation"),
}


@pytest.mark.parametrize("case", BAD)
def test_invalid_entries_name_the_first_and_count_the_rest(tmp_path, gt, case):
    bad, expected = BAD[case]
    data = [entry(), entry(), bad, entry(), bad, bad]
    with pytest.raises(ResultsError) as error:
        load_results(write(tmp_path, data), gt, gt_name="instances_val.json")
    message = str(error.value)
    assert message.startswith("results.json: entry 2 ")
    assert expected in message
    assert "(and 2 more entries are invalid)" in message


def test_mixed_masks_and_boxes_flag_the_minority(tmp_path, gt):
    data = [entry(), entry(), entry(segmentation=...), entry()]
    with pytest.raises(ResultsError, match=r"entry 2 has no segmentation while most entries have one; give masks"):
        load_results(write(tmp_path, data), gt)


@pytest.mark.parametrize("content, expected", [
    (b"{not json", "is not valid JSON"),
    (b'{"annotations": []}', "ground-truth file"),
    (b'"hello"', "holds a JSON str, not a list of detections"),
    (b"\xff\xfe\x00", "is not valid JSON"),
])
def test_files_that_are_not_results_lists(tmp_path, gt, content, expected):
    path = tmp_path / "results.json"
    path.write_bytes(content)
    with pytest.raises(ResultsError, match=expected):
        load_results(path, gt)


def test_missing_file(tmp_path, gt):
    with pytest.raises(ResultsError, match="cannot be read"):
        load_results(tmp_path / "nope.json", gt)
    assert issubclass(ResultsError, SegcoreError)


@pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"the COCO fixture is not at {FIXTURES}")
def test_fixture_results_files_load():
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(FIXTURES / "instances_val2014_100.json"))
    segm = load_results(FIXTURES / "instances_val2014_fakesegm100_results.json", coco)
    boxes = load_results(FIXTURES / "instances_val2014_fakebbox100_results.json", coco)
    assert len(segm) == len(boxes) == 734
    assert has_masks(segm) and not has_masks(boxes)


def test_rle_total_matches_the_pixels():
    assert compressed_rle_total(rle()["counts"]) == 32 * 48
    assert compressed_rle_total("0o") is None  # ends inside a value
    assert compressed_rle_total("\u00e9") is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)
plausible = st.fixed_dictionaries({}, optional={
    "image_id": st.sampled_from([1, 2, 3, "street_01", 1.5, True]) | json_values,
    "category_id": st.sampled_from([1, 7, 2, None]) | json_values,
    "score": st.floats() | json_values,
    "bbox": st.lists(st.floats() | st.integers(-5, 5), max_size=5) | json_values,
    "segmentation": st.fixed_dictionaries({}, optional={
        "size": st.lists(st.integers(-1, 70), max_size=3) | json_values,
        "counts": st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=130), max_size=12)
        | st.lists(st.integers(-3, 2000), max_size=4) | json_values})
    | st.lists(st.lists(st.floats() | st.integers(-100, 100), max_size=8), max_size=2) | json_values,
})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(json_values, st.lists(plausible | json_values, max_size=5)))
def test_garbage_raises_only_results_error(data):
    coco = COCO()
    coco.dataset = {"images": [{"id": 1, "height": 32, "width": 48, "file_name": "street_01.jpg"},
                               {"id": 2, "height": 64, "width": 64}],
                    "annotations": [], "categories": [{"id": 1, "name": "car"}, {"id": 7, "name": "person"}]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    try:
        results = parse_results(data, coco)
    except ResultsError:
        return
    for result in results:  # whatever passes is safe to hand to pycocotools
        if "segmentation" in result:
            assert mask_utils.area(result["segmentation"]) >= 0


@pytest.mark.hardening(3, "a results entry whose image is named two ways (a file name stem two images share; a "
                          "number-like stem that is another image's id)",
                       "refused with one sentence naming the entry; never scored on a guessed image")
def test_an_image_named_two_ways_is_refused_not_guessed():
    """A results entry's image is found one way: its id, or (as Ultralytics writes it) its file name's stem.
    A stem that two images share, or a number-like stem that is another image's id, is refused in one
    sentence instead of silently scoring the detection on one of them."""
    coco = COCO()
    coco.dataset = {"images": [{"id": 1, "height": 32, "width": 48, "file_name": "a/frame.jpg"},
                               {"id": 2, "height": 32, "width": 48, "file_name": "b/frame.png"},
                               {"id": 3, "height": 32, "width": 48, "file_name": "1.jpg"},
                               {"id": 4, "height": 32, "width": 48, "file_name": "street.jpg"}],
                    "annotations": [], "categories": [{"id": 7, "name": "person"}]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    with pytest.raises(ResultsError, match="has image_id 'frame', the file name of more than one image"):
        parse_results([entry(image_id="frame")], coco)
    with pytest.raises(ResultsError, match="has image_id '1', which names image 3 by its file name but is the id of "
                                           "image 1"):
        parse_results([entry(image_id="1")], coco)
    # one way only: read as it is meant
    assert [r["image_id"] for r in parse_results([entry(image_id="street"), entry(image_id=1)], coco)] == [4, 1]


NUMBERS = st.one_of(st.integers(-3, 80), st.floats(-3, 80), st.sampled_from([0.0, -0.0, 48.0, 32.0, 2 ** 60,
                                                                                float("nan"), float("inf"), True]))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
          derandomize=True)
@given(image_id=st.sampled_from([1, 2, 3, 1.0, "street_01", True, None]),
       category_id=st.sampled_from([1, 7, 2, 7.0, "7", None]), score=NUMBERS,
       bbox=st.one_of(st.none(), st.lists(NUMBERS, min_size=3, max_size=5)),
       size=st.sampled_from([[32, 48], [64, 64], [32.0, 48.0], [48, 32]]),
       counts=st.sampled_from([rle()["counts"], "b'" + rle()["counts"] + "'", 7]),
       masked=st.booleans(), boxed=st.booleans())
def test_the_inline_check_of_the_common_case_agrees_with_the_full_check(gt, image_id, category_id, score, bbox, size,
                                                                         counts, masked, boxed):
    """Issue 15's fast path: an entry the inline check accepts is the one the full check gives, and an entry
    the full check refuses is never accepted inline (the full check then words the problem)."""
    from segcore.coco.results import _Checker

    candidate = {"image_id": image_id, "category_id": category_id, "score": score}
    if boxed:
        candidate["bbox"] = bbox
    if masked:
        candidate["segmentation"] = {"size": size, "counts": counts}
    checker = _Checker(gt, "gt.json")
    fast = checker.common(candidate)
    full, problem = checker.entry(candidate)
    if fast is not None:  # the same to the sign of a zero and the type of each number
        assert problem is None and json.dumps(fast) == json.dumps(full)
        assert [type(v) for v in fast.get("bbox", [])] == [float] * len(fast.get("bbox", []))


def test_a_detectron2_entry_takes_the_inline_check(gt):
    from segcore.coco.results import _Checker

    checker = _Checker(gt, "gt.json")
    assert checker.common(entry()) == checker.entry(entry())[0] is not None
    assert checker.common(entry(bbox=...)) is not None and checker.common(entry(segmentation=...)) is not None
    # the rest go the long way: a string id (Ultralytics), a box reaching past the image, polygons
    assert checker.common(entry(image_id="street_01")) is None
    assert checker.common(entry(bbox=[-1.0, 4.0, 24.0, 16.0])) is None
    assert checker.common(entry(segmentation=[[6, 4, 30, 4, 30, 20]])) is None
