"""Fuzzing (issue 6, section 6): RLE and polygon decoding, the metrics and the results importer.

hypothesis throws arbitrary and mutated inputs at each; nothing but the documented error comes out
(:class:`segcore.coco.results.ResultsError` for results files, :class:`segcore.errors.DatasetError` for datasets),
whatever is accepted decodes to masks of its image's size and scores without error, and the COCO numbers
equal pycocotools' COCOeval on the same inputs.

pycocotools trusts its input (see segcore/coco/rle.py), so a test hands it only what segcore accepted, except where
it shows the danger on purpose, and then only to count (``area``, ``toBbox``), which writes nothing. Its
writer (``rleToString``, behind ``encode``, ``merge`` and ``frPyObjects``) has room for 6 characters a value,
its final NUL included, and writes past its buffer when the values take 6 on average (values of 2**24 and
more take 6 characters, of 2**29 and more 7); the tests keep clear of that.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from segcore.coco.results import ResultsError, load_results, parse_results
from segcore.coco.rle import (
    compressed_rle_runs,
    compressed_rle_total,
    compressed_rle_totals,
    compressed_rle_totals_and_areas,
    decode_compressed_counts,
)
from segcore.data.coco import CocoSegmentation
from segcore.errors import DatasetError
from segcore.evaluation.scoring import semantic_from_results, write_eval_folder
from segcore.metrics.boundary import boundary_metrics
from segcore.metrics.coco import STAT_NAMES, CocoEvaluation, breakdowns, coco_metrics
from segcore.metrics.matching import calibration, match_instances, per_image_metrics
from segcore.metrics.semantic import semantic_scores

#: Inputs of tens of thousands of characters and whole scenes are slow to make on a busy 2-core machine, and
#: that is no failure.
SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.data_too_large]

COCO_ALPHABET = "".join(chr(c) for c in range(48, 112))  # '0'..'o', 6 bits a character

# ---- inputs ----


def encode_value(value: int, chars: int | None = None) -> str:
    """One value as COCO writes it (pycocotools' rleToString: 5 bits a character, least significant first,
    0x20 = more follows), or spread over exactly ``chars`` characters (a longer, non-minimal encoding)."""
    out = []
    if chars is None:
        more = True
        while more:
            c = value & 0x1F
            value >>= 5
            more = value != -1 if c & 0x10 else value != 0
            out.append(chr(48 + (c | (0x20 if more else 0))))
        return "".join(out)
    raw = value % (1 << (5 * chars))
    return "".join(chr(48 + (((raw >> 5 * k) & 0x1F) | (0x20 if k < chars - 1 else 0))) for k in range(chars))


def encode_runs(runs: list[int], chars: list[int | None]) -> str:
    """Runs as compressed RLE: the fourth and later stored as differences to the run two before."""
    values = [run - runs[i - 2] if i > 2 else run for i, run in enumerate(runs)]
    return "".join(encode_value(v, c) for v, c in zip(values, chars))


def pixels_of(runs: np.ndarray) -> np.ndarray:
    """(sum(runs),) uint8: the runs expanded, zeros first."""
    return np.repeat(np.arange(runs.size) % 2, runs).astype(np.uint8)


values = (st.integers(-40, 40) | st.integers(-2 ** 36, 2 ** 36)
          | st.sampled_from([2 ** 29 - 1, -2 ** 29, 2 ** 30, -2 ** 30, 2 ** 31, 2 ** 32 - 1, 2 ** 32, -2 ** 31]))
paddings = st.none() | st.integers(1, 8)
#: Strings in COCO's alphabet: any characters, any values in any number of characters, and the encodings of
#: real run lists with some values spread over more characters than needed (up to 7, still well formed).
coco_strings = st.one_of(
    st.text(alphabet=COCO_ALPHABET, max_size=30),
    st.lists(st.tuples(values, paddings), max_size=8).map(lambda vs: "".join(encode_value(v, c) for v, c in vs)),
    st.lists(st.integers(0, 2 ** 20) | st.integers(0, 40), min_size=1, max_size=8).flatmap(
        lambda runs: st.lists(st.none() | st.integers(1, 7), min_size=len(runs), max_size=len(runs)).map(
            lambda chars: encode_runs(runs, chars))),
)
#: Anything a JSON "counts" or a caller could hold: non-ASCII text, bytes, the alphabet's neighbours, very
#: long strings (more than a decoding batch of 32768 characters), and values that are not strings at all.
text_counts = st.one_of(
    coco_strings, st.text(max_size=20),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=130), max_size=20),
    st.builds(lambda s, n: s * n, st.text(alphabet=COCO_ALPHABET, min_size=1, max_size=6), st.integers(2000, 8000)),
)
any_counts = st.one_of(text_counts, text_counts.map(str.encode), st.binary(max_size=20),
                       st.none(), st.integers(), st.lists(st.integers(0, 9), max_size=3))


# ---- RLE decoding ----


@pytest.mark.hardening(6, "arbitrary str/bytes as compressed RLE counts",
                       "decoded, or flagged malformed (-1 / None); never an exception")
@settings(max_examples=300, deadline=None, suppress_health_check=SLOW_IS_FINE)
@given(st.lists(any_counts, max_size=6))
@example([b"", "", "0o", "\u00e9", "oooooooo1", b"\x00\xff", "1" * 40000])
def test_arbitrary_counts_never_raise(counts_list):
    runs, starts, valid = decode_compressed_counts(counts_list)
    totals = compressed_rle_totals(counts_list)
    assert starts.shape == (len(counts_list) + 1,) and valid.shape == totals.shape == (len(counts_list),)
    for i, counts in enumerate(counts_list):
        # one string decodes the same alone as among others (a value never runs into the next string)
        alone = compressed_rle_runs(counts)
        if not valid[i]:
            assert alone is None and compressed_rle_total(counts) is None and totals[i] == -1
            continue
        assert np.array_equal(alone, runs[starts[i]:starts[i + 1]])
        assert (alone >= 0).all() and (alone < 2 ** 32).all()
        assert totals[i] == compressed_rle_total(counts) == alone.sum()
        assert isinstance(counts, bytes) or (isinstance(counts, str) and set(counts) <= set(COCO_ALPHABET))


masks = st.one_of(
    arrays(np.uint8, st.tuples(st.integers(1, 24), st.integers(1, 24)), elements=st.integers(0, 1)),
    st.tuples(st.integers(1, 300), st.integers(1, 300), st.floats(0, 1), st.floats(0, 1)).map(
        lambda s: (np.indices(s[:2]).sum(0) < (s[2] + s[3]) * sum(s[:2])).astype(np.uint8)),  # a big triangle
)


@pytest.mark.hardening(6, "pycocotools' encodings of random masks and run lengths",
                       "runs and totals equal what pycocotools decodes")
@settings(max_examples=300, deadline=None, suppress_health_check=SLOW_IS_FINE)
@given(masks, st.integers(0, 9), st.lists(st.integers(0, 2 ** 28) | st.integers(0, 9), max_size=12))
def test_pycocotools_encodings_round_trip(mask, first_run, more_runs):
    encoded = mask_utils.encode(np.asfortranarray(mask))
    for counts in (encoded["counts"], encoded["counts"].decode("ascii")):
        decoded = compressed_rle_runs(counts)
        assert compressed_rle_total(counts) == mask.size
        assert np.array_equal(pixels_of(decoded), mask_utils.decode(encoded).ravel(order="F"))
        assert np.array_equal(pixels_of(decoded), mask.ravel(order="F"))
    # runs up to a 16384 x 16384 image's pixels, compressed by pycocotools without making the mask. The first
    # is short: pycocotools' writer has room for 6 characters a value and writes its final NUL past the end
    # when every value takes 6 (this test process once aborted on the heap that corrupted).
    runs = [first_run, *more_runs]
    total = sum(runs)
    if total:
        counts = mask_utils.frPyObjects({"size": [1, total], "counts": runs}, 1, total)["counts"]
        assert compressed_rle_runs(counts).tolist() == runs
        assert compressed_rle_totals([counts, counts.decode()]).tolist() == [total, total]
        # the areas COCO evaluation takes from the check are pycocotools' own
        totals, areas = compressed_rle_totals_and_areas([counts, encoded["counts"]])
        assert totals.tolist() == [total, mask.size]
        assert areas.tolist() == [int(mask_utils.area({"size": [1, total], "counts": counts})),
                                  int(mask_utils.area(encoded))]


@pytest.mark.hardening(6, "RLE strings that pycocotools reads differently (overruns, non-minimal values)",
                       "refused unless pycocotools reads the very runs segcore checked")
@settings(max_examples=400, deadline=None, suppress_health_check=SLOW_IS_FINE)
@given(coco_strings)
@example(encode_runs([0, 100, 0, 50], [None, None, None, 7]))  # a negative value in 7 characters
def test_accepted_strings_are_read_alike_by_pycocotools(counts):
    runs = compressed_rle_runs(counts)
    event("refused" if runs is None else "accepted")
    if runs is None or runs.sum() == 0:
        return  # refused (or an image of no pixels, which no size has): pycocotools never sees it
    rle = {"size": [1, int(runs.sum())], "counts": counts.encode()}
    assert mask_utils.area(rle) == int(runs[1::2].sum()) % 2 ** 32  # pycocotools counts in 32 bits
    if runs.max() < 2 ** 28 and len(encode_runs(runs.tolist(), [None] * runs.size)) <= 6 * runs.size - 3:
        # pycocotools' own reading, written back in its canonical form (counting only, no pixels); its
        # writer's buffer holds 6 characters a value and a string that fills it overruns it
        assert compressed_rle_runs(mask_utils.merge([rle])["counts"]).tolist() == runs.tolist()
    if runs.sum() <= 4096:
        assert np.array_equal(mask_utils.decode(rle).ravel(order="F"), pixels_of(runs))


@pytest.mark.hardening(6, "RLE strings that pycocotools reads differently (overruns, non-minimal values)",
                       "refused unless pycocotools reads the very runs segcore checked")
def test_pycocotools_counts_past_the_image_where_segcore_refuses():
    """The danger is real: pycocotools reads a 7-character negative value with the wrong sign (C's
    ``-1 << 35`` on an int), so this string covers 3145728 pixels by its own arithmetic (the size of a
    1536 x 2048 image) and 4194296 by pycocotools', whose functions that trust the counts (``area``,
    ``toBbox``, ``iou``, ``merge``) then see a megabyte more pixels than the image has.
    An RLE of another image's size overruns the same way; segcore refuses both before pycocotools sees them."""
    counts = encode_runs([0, 2 ** 21, 0, 2 ** 20], [None, None, None, 7])
    assert counts == "0PPPP20PPPPooO"
    rle = {"size": [1536, 2048], "counts": counts.encode()}
    assert mask_utils.area(rle) == 2 ** 22 - 8 > 1536 * 2048  # pycocotools' runs overrun the image
    assert compressed_rle_runs(counts) is None and compressed_rle_total(counts) is None
    # the same runs written as pycocotools writes them (-2**20 in 5 characters) are accepted and read alike
    canonical = encode_runs([0, 2 ** 21, 0, 2 ** 20], [None] * 4)
    assert canonical == "0PPPP20PPPPO"
    assert compressed_rle_total(canonical) == mask_utils.area({**rle, "counts": canonical.encode()}) == 1536 * 2048

    mask = np.zeros((64, 64), np.uint8)
    mask[8:56, 8:56] = 1
    other_size = {"size": [32, 48], "counts": mask_utils.encode(np.asfortranarray(mask))["counts"]}
    assert mask_utils.toBbox(other_size)[0] + mask_utils.toBbox(other_size)[2] > 48  # a box past the image
    assert compressed_rle_total(other_size["counts"]) != 32 * 48


# ---- polygons, in a dataset and in a results file ----

HEIGHT, WIDTH = 24, 32

coordinates = st.one_of(
    st.floats(-40, 70), st.integers(-40, 70),       # in and around the 24 x 32 image
    st.floats(), st.integers(-10 ** 30, 10 ** 30),  # NaN, infinities, 1e308, integers too large for a float
    st.sampled_from([True, None, "3", [1.0], {"x": 1}]),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)
plausible_polygons = st.lists(st.tuples(st.floats(-4, 36), st.floats(-4, 28)), min_size=3, max_size=8).map(
    lambda points: [v for point in points for v in point])
#: a plausible polygon with one coordinate far out or not finite (each of which crashes pycocotools)
extreme_polygons = st.tuples(plausible_polygons, st.integers(0, 5),
                             st.sampled_from([math.nan, math.inf, -math.inf, 1e12, -1e12, 3e8, 1e308, 10 ** 30])).map(
    lambda edit: edit[0][:edit[1]] + [edit[2]] + edit[0][edit[1] + 1:])
polygons = plausible_polygons | extreme_polygons | st.lists(coordinates, max_size=14)
#: A COCO "segmentation" that should be polygons: lists of polygons, a flat list, or any JSON value.
polygon_segmentations = st.one_of(st.lists(plausible_polygons, min_size=1, max_size=2),
                                  st.lists(polygons, min_size=1, max_size=3), st.lists(polygons, max_size=3),
                                  polygons, json_values)
#: A COCO "segmentation" that should be an RLE mask of the 32 x 24 image: compressed or uncompressed counts
#: (any text, run lists that may or may not cover the image), of this size or another.
rle_segmentations = st.fixed_dictionaries({}, optional={
    "size": st.sampled_from([[HEIGHT, WIDTH], [WIDTH, HEIGHT], [HEIGHT, WIDTH, 1]]) | json_values,
    "counts": arrays(np.uint8, (HEIGHT, WIDTH), elements=st.integers(0, 1)).map(
        lambda mask: mask_utils.encode(np.asfortranarray(mask))["counts"].decode())
    | text_counts | st.lists(st.integers(-2, 800), max_size=6)
    | st.lists(st.integers(0, 200), max_size=6).map(lambda runs: [*runs, HEIGHT * WIDTH - sum(runs)]) | json_values,
})


def quiet(function, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        return function(*args, **kwargs)


def coco_from(dataset: dict) -> COCO:
    coco = COCO()
    coco.dataset = copy.deepcopy(dataset)
    quiet(coco.createIndex)
    return coco


@pytest.fixture(scope="module")
def dataset_folder(tmp_path_factory) -> Path:
    """A dataset folder with one 32 x 24 image; each example writes its annotation file."""
    root = tmp_path_factory.mktemp("fuzz") / "data"
    (root / "annotations").mkdir(parents=True)
    (root / "val").mkdir()
    Image.new("RGB", (WIDTH, HEIGHT), (90, 120, 30)).save(root / "val" / "1.png")
    return root


@pytest.mark.hardening(6, "random polygons and RLE masks in a dataset annotation (NaN, inf, huge, garbage)",
                       "decoded to a mask of the image's size, or DatasetError naming the file and the annotation")
@settings(max_examples=300, deadline=None, suppress_health_check=SLOW_IS_FINE)
@given(segmentation=polygon_segmentations | rle_segmentations, skip_invalid=st.booleans())
@example(segmentation=[[0, 0, 1e12, 0, 10, 10]], skip_invalid=False)  # crashes pycocotools
@example(segmentation=[[0, 0, 10, 0, 10, float("nan")]], skip_invalid=True)  # crashes pycocotools
def test_polygons_in_a_dataset(dataset_folder, segmentation, skip_invalid):
    annotations = dataset_folder / "annotations" / "instances_val.json"
    annotations.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "1.png", "height": HEIGHT, "width": WIDTH}],
        "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "segmentation": segmentation}],
        "categories": [{"id": 1, "name": "leaf"}]}))
    try:
        dataset = CocoSegmentation(dataset_folder, "val", skip_invalid=skip_invalid)
    except DatasetError as error:
        assert not skip_invalid
        assert str(error).startswith(f"annotation 7 in {annotations} ")
        event("refused")
        return
    event("skipped" if dataset.skipped else "accepted")
    image, target = dataset[0]
    assert image.shape == (3, HEIGHT, WIDTH) and target["semantic"].shape == (HEIGHT, WIDTH)
    assert target["masks"].shape == (1 - sum(dataset.skipped.values()), HEIGHT, WIDTH)
    if len(target["masks"]):
        assert target["masks"].sum() > 0 and target["labels"].tolist() == [1]


@pytest.fixture(scope="module")
def results_gt() -> COCO:
    return results_ground_truth()


def results_ground_truth() -> COCO:
    """Ground truth for results files: a 32 x 24 and a 16 x 16 image, categories 1 and 3, four objects (one crowd)."""
    images = [{"id": 1, "file_name": "street.jpg", "height": HEIGHT, "width": WIDTH},
              {"id": 2, "file_name": "000002.jpg", "height": 16, "width": 16}]
    annotations = [ground_truth(1, 1, 1, (2, 2, 12, 10)), ground_truth(2, 1, 3, (10, 14, 30, 22)),
                   ground_truth(3, 2, 3, (0, 0, 8, 8)), ground_truth(4, 2, 1, (4, 4, 16, 16), crowd=True)]
    return coco_from({"images": images, "annotations": annotations,
                      "categories": [{"id": 1, "name": "car"}, {"id": 3, "name": "person"}]})


@pytest.mark.hardening(6, "random polygons in a results entry (NaN, inf, huge, garbage)",
                       "converted to an RLE mask of the image's size, or ResultsError naming the entry")
@settings(max_examples=300, deadline=None, suppress_health_check=SLOW_IS_FINE)
@given(polygon_segmentations)
@example([[0, 0, 1e12, 0, 10, 10]])
def test_polygons_in_a_results_entry(results_gt, segmentation):
    entry = {"image_id": 1, "category_id": 3, "score": 0.5, "segmentation": segmentation}
    try:
        results = parse_results([entry], results_gt, source="fuzz.json")
    except ResultsError as error:
        assert str(error).startswith("fuzz.json: entry 0 ")
        event("refused")
        return
    event("accepted")
    rle = results[0]["segmentation"]
    assert rle["size"] == [HEIGHT, WIDTH] and compressed_rle_total(rle["counts"]) == HEIGHT * WIDTH
    assert mask_utils.decode(rle).shape == (HEIGHT, WIDTH)


# ---- the metrics ----


def rectangle(height: int, width: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """(H, W) uint8 mask of the pixels x0 <= x < x1, y0 <= y < y1 (empty where x1 <= x0 or y1 <= y0)."""
    x0, y0, x1, y1 = box
    mask = np.zeros((height, width), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def ground_truth(annotation_id: int, image_id: int, category_id: int, box, *, size=None, crowd: bool = False,
                 occlusion: float | None = None, polygon: bool = False) -> dict:
    """A complete COCO annotation (area, bbox, iscrowd) of a rectangle, as segcore.coco.instances keeps one; its
    segmentation an RLE mask or a polygon (which pycocotools rasterizes a little differently)."""
    size = size or ((HEIGHT, WIDTH) if image_id == 1 else (16, 16))
    x0, y0, x1, y1 = box
    if polygon:
        segmentation = [[x0, y0, x1, y0, x1, y1, x0, y1]]
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, *size))
    else:
        rle = mask_utils.encode(np.asfortranarray(rectangle(*size, box)))
        segmentation = {"size": list(size), "counts": rle["counts"].decode()}
    annotation = {"id": annotation_id, "image_id": image_id, "category_id": category_id, "segmentation": segmentation,
                  "area": float(mask_utils.area(rle)), "bbox": mask_utils.toBbox(rle).tolist(), "iscrowd": int(crowd)}
    if occlusion is not None:
        annotation["occlusion"] = occlusion
    return annotation


def detection(image_id: int, category_id: int, mask: np.ndarray, score: float) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"image_id": image_id, "category_id": category_id, "score": score,
            "segmentation": {"size": list(mask.shape), "counts": rle["counts"].decode()},
            "bbox": mask_utils.toBbox(rle).tolist()}


def boxes_in(height: int, width: int, *, empty: bool):
    """(x0, y0, x1, y1) of a rectangle in an image, on a grid of 1 or 4 pixels (on the coarse grid boxes
    coincide and IoUs tie); with ``empty`` it may hold no pixel."""
    def on_grid(step: int):
        columns, rows = -(-width // step), -(-height // step)
        return st.tuples(st.integers(0, columns - 1), st.integers(0, rows - 1)).flatmap(lambda corner: st.tuples(
            st.just(corner[0] * step), st.just(corner[1] * step),
            st.integers(corner[0] + (not empty), columns).map(lambda x: min(x * step, width)),
            st.integers(corner[1] + (not empty), rows).map(lambda y: min(y * step, height))))
    # boxes whose areas are the bounds of COCO's small, medium and large ranges (32 ** 2 and 96 ** 2)
    bounds = [(x, y, x + side, y + side) for side in (32, 96) for x, y in ((0, 0), (4, 2))
              if side <= min(height - y, width - x)]
    return on_grid(1) | on_grid(4) | st.sampled_from(bounds) if bounds else on_grid(1) | on_grid(4)


@st.composite
def scenes(draw) -> tuple[dict, list[dict]]:
    """A small ground truth and results: 1..3 images of 0..4 objects of 1..3 classes (some crowd, some of
    the same box, small to large, a class may have no object, an image none), 0..5 detections an image
    (some exactly on an object, empty masks, tied scores, a class never detected), and now and then 101
    copies of one detection (past COCO's 100 a class and image)."""
    n_classes = draw(st.integers(1, 3))
    with_occlusion = draw(st.booleans())
    images, annotations, results = [], [], []
    for image_id in range(1, draw(st.integers(1, 3)) + 1):
        height, width = draw(st.sampled_from([(16, 16), (24, 32), (40, 12), (100, 120)]))
        images.append({"id": image_id, "file_name": f"{image_id}.png", "height": height, "width": width})
        boxes = []
        for _ in range(draw(st.integers(0, 4))):
            boxes.append(draw(st.sampled_from(boxes) | boxes_in(height, width, empty=False) if boxes
                              else boxes_in(height, width, empty=False)))
            annotations.append(ground_truth(
                len(annotations) + 1, image_id, draw(st.integers(1, n_classes)), boxes[-1], size=(height, width),
                crowd=draw(st.sampled_from([False] * 5 + [True])), polygon=draw(st.booleans()),
                occlusion=draw(st.floats(0, 1)) if with_occlusion else None))
        for _ in range(draw(st.integers(0, 5))):
            box = draw(st.sampled_from(boxes) | boxes_in(height, width, empty=True) if boxes
                       else boxes_in(height, width, empty=True))
            score = draw(st.sampled_from([0.0, 0.5, 0.5, 1.0]) | st.floats(0, 1))
            copies = draw(st.sampled_from([1] * 15 + [101]))
            category = draw(st.integers(1, n_classes))
            results += [detection(image_id, category, rectangle(height, width, box), score)] * copies
    categories = [{"id": c, "name": f"class{c}"} for c in range(1, n_classes + 1)]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def cocoeval_stats(dataset: dict, results: list[dict], iou_type: str) -> tuple[list[float], list[float]]:
    """Plain pycocotools' 12 numbers and per-class AP (Detectron2's: precision at all IoUs, all areas, 100
    detections), -1 where there is nothing to score; on its own copies of the inputs."""
    gt = coco_from(dataset)
    drop = "bbox" if iou_type == "segm" else "segmentation"  # so that loadRes takes the mask's area for segm
    kept = [{k: v for k, v in r.items() if k != drop} for r in copy.deepcopy(results)]
    dt = quiet(gt.loadRes, kept) if kept else coco_from({**dataset, "annotations": []})  # loadRes refuses []
    evaluation = COCOeval(gt, dt, iou_type)
    for step in (evaluation.evaluate, evaluation.accumulate, evaluation.summarize):
        quiet(step)
    precision = evaluation.eval["precision"][:, :, :, 0, -1]
    per_class = [float(np.mean(p[p > -1])) if (p > -1).any() else -1.0 for p in np.moveaxis(precision, 2, 0)]
    return list(evaluation.stats), per_class


#: metrics.json and curves.json keys whose values are not fractions in [0, 1].
NOT_FRACTIONS = {"name", "n_images", "created", "source", "occlusion_source", "count", "low", "high", "speed"}


def assert_fractions(value, where: str = "", ignore: set[str] = NOT_FRACTIONS) -> None:
    """Every number in a metrics tree is in [0, 1] or missing (None, NaN)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key not in ignore:
                assert_fractions(item, f"{where}.{key}", ignore)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            assert_fractions(item, f"{where}[{i}]", ignore)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        assert math.isnan(value) or 0 <= value <= 1, (where, value)


def score(coco_gt, results: list[dict], ignore: set[str] = NOT_FRACTIONS, masks: bool | None = None) -> dict:
    """write_eval_folder (every metric: COCO, boundary, semantic, matching, breakdowns, calibration) into a
    temporary folder; checks that every number is a fraction or missing and returns metrics.json."""
    class_names = [str(coco_gt.cats[c]["name"]) for c in sorted(coco_gt.getCatIds())]
    with tempfile.TemporaryDirectory() as folder:
        out = write_eval_folder(Path(folder) / "eval", coco_gt=coco_gt, results=results, class_names=class_names,
                                name="fuzz", masks=masks)
        metrics = json.loads((out / "metrics.json").read_text())
        curves = json.loads((out / "curves.json").read_text())
    assert_fractions(metrics, ignore=ignore)
    assert_fractions(curves, ignore=ignore | {"calibration"})  # calibration's scores are checked in metrics
    return metrics


@pytest.mark.hardening(6, "metrics on random scenes (no objects or detections, empty masks, a class missing, "
                          "tied scores)",
                       "no exception; fractions in [0, 1] or None where COCOeval says -1; segm and bbox equal COCOeval")
@settings(max_examples=120, deadline=None, suppress_health_check=SLOW_IS_FINE)
@given(scenes())
@example(({"images": [{"id": 1, "file_name": "1.png", "height": 16, "width": 16}], "annotations": [],
           "categories": [{"id": 1, "name": "class1"}]}, []))  # nothing at all
def test_metrics_on_random_scenes(scene):
    dataset, results = scene
    metrics = score(coco_from(dataset), results, masks=True)  # masks even without detections, as for a model
    for iou_type in ("segm", "bbox"):
        stats, per_class = cocoeval_stats(dataset, results, iou_type)
        assert [-1.0 if metrics[iou_type][name] is None else metrics[iou_type][name] for name in STAT_NAMES] == stats
        assert [-1.0 if ap is None else ap for ap in metrics[iou_type]["per_class"].values()] == per_class
    # the same through the functions themselves, on one CocoEvaluation, as scoring calls them
    coco_gt = coco_from(dataset)
    evaluation = CocoEvaluation(coco_gt, results, "segm")
    names = [category["name"] for category in dataset["categories"]]
    labels = {c["id"]: label for label, c in enumerate(dataset["categories"], start=1)}
    assert coco_metrics(coco_gt, results, "segm", evaluation=evaluation)["AP"] == metrics["segm"]["AP"]
    assert_fractions(boundary_metrics(coco_gt, results, class_names=names, evaluation=evaluation))
    matrix, _ = semantic_from_results(coco_gt, results, len(names) + 1, labels, evaluation=evaluation)
    assert matrix.sum() == sum(image["height"] * image["width"] for image in dataset["images"])
    assert_fractions(semantic_scores(matrix, ["background", *names]))
    rows = match_instances(coco_gt, results, iou_type="segm", occlusion={}, evaluation=evaluation)
    assert_fractions([{k: v for k, v in row.items() if k in ("iou", "score")} for row in rows])
    assert_fractions(per_image_metrics(rows, coco_gt),
                     ignore=NOT_FRACTIONS | {"image_id", "n_objects", "tp", "fp", "fn"})
    assert_fractions(calibration(rows))
    assert_fractions(breakdowns(coco_gt, results, "segm", occlusion={}, evaluation=evaluation))


# ---- the results importer ----


def valid_results() -> list[dict]:
    """Detections on ``results_gt`` as Detectron2 writes them (masks and boxes); the last has an empty mask
    and no box, as a detector writes for an object too small for its mask resolution."""
    small = (16, 16)
    return [detection(1, 1, rectangle(HEIGHT, WIDTH, (3, 2, 12, 11)), 0.9),
            detection(1, 3, rectangle(HEIGHT, WIDTH, (10, 13, 30, 22)), 0.5),
            detection(2, 3, rectangle(*small, (0, 0, 7, 8)), 0.5),
            {k: v for k, v in detection(2, 1, rectangle(*small, (0, 0, 0, 0)), 0.1).items() if k != "bbox"}]


#: Numbers outside [0, 1] that a results file may hold (scores), and what is computed from them.
SCORE_DEPENDENT = NOT_FRACTIONS | {"mean_score", "expected_calibration_error"}
KEYS = ["image_id", "category_id", "score", "bbox", "segmentation"]
counts_edits = st.tuples(st.sampled_from(["insert", "delete", "replace", "cut", "literal"]), st.integers(0, 200),
                         st.text(alphabet=COCO_ALPHABET + "\x00\u00e9\"'b", min_size=1, max_size=3))
mutations = st.one_of(
    st.tuples(st.just("delete"), st.integers(0, 3), st.sampled_from(KEYS)),
    st.tuples(st.just("replace"), st.integers(0, 3), st.sampled_from(KEYS), json_values),
    st.tuples(st.just("replace"), st.integers(0, 3), st.sampled_from(["image_id", "category_id"]),
              st.integers(-2, 4) | st.sampled_from(["street", "000002", "2", 1.0, 2.5, True, 10 ** 30])),
    st.tuples(st.just("replace"), st.integers(0, 3), st.just("score"), st.floats() | st.integers()),
    st.tuples(st.just("replace"), st.integers(0, 3), st.just("segmentation"), polygon_segmentations),
    st.tuples(st.just("counts"), st.integers(0, 3), counts_edits),
    st.tuples(st.just("size"), st.integers(0, 3), st.lists(st.integers(-1, 40), max_size=3) | json_values),
    st.tuples(st.just("uncompressed"), st.integers(0, 3), st.lists(st.integers(-2, 800), max_size=6)),
    st.tuples(st.just("entry"), st.integers(0, 3), json_values),
    # edits that keep the file valid: other ids and scores, a box or a mask dropped, a mask written another
    # way (uncompressed runs that fill the image, polygons), entries repeated or removed
    st.tuples(st.just("replace"), st.integers(0, 3), st.sampled_from(["image_id", "category_id"]),
              st.sampled_from([1, 2, 3, 1.0, "street"])),
    st.tuples(st.just("replace"), st.integers(0, 3), st.just("score"), st.sampled_from([0.5, 1e308, -3, 0])),
    st.tuples(st.just("delete"), st.integers(0, 3), st.just("bbox")),
    st.tuples(st.just("fill"), st.integers(0, 3), st.lists(st.integers(0, 60), max_size=8)),
    st.tuples(st.just("replace"), st.integers(0, 3), st.just("segmentation"), st.lists(plausible_polygons, min_size=1,
                                                                                    max_size=2)),
    st.tuples(st.just("repeat"), st.integers(0, 3), st.integers(1, 120)),
    st.tuples(st.just("remove"), st.integers(0, 3)),
)


def edit_counts(counts: str, edit) -> str:
    kind, position, text = edit
    i = position % (len(counts) + 1)
    return {"insert": counts[:i] + text + counts[i:], "delete": counts[:i] + counts[i + 1:],
            "replace": counts[:i] + text + counts[i + 1:], "cut": counts[:i], "literal": f"b'{counts}'"}[kind]


def mutated(edits) -> list:
    """valid_results() with the edits applied, each to one entry (those that no longer apply are passed over)."""
    data: list = valid_results()
    for kind, index, *args in edits:
        if not data:
            break
        index %= len(data)
        entry = data[index]
        mask = entry.get("segmentation") if isinstance(entry, dict) else None
        if kind == "entry":
            data[index] = args[0]
        elif kind == "repeat":
            data += [copy.deepcopy(entry) for _ in range(args[0])]
        elif kind == "remove":
            del data[index]
        elif not isinstance(entry, dict):
            continue
        elif kind == "delete":
            entry.pop(args[0], None)
        elif kind == "replace":
            entry[args[0]] = args[1]
        elif isinstance(mask, dict) and kind == "counts" and isinstance(mask.get("counts"), str):
            mask["counts"] = edit_counts(mask["counts"], args[0])
        elif isinstance(mask, dict) and kind in ("size", "uncompressed"):
            mask["size" if kind == "size" else "counts"] = args[0]
        elif isinstance(mask, dict) and kind == "fill" and mask.get("size") in ([HEIGHT, WIDTH], [16, 16]):
            pixels = mask["size"][0] * mask["size"][1]
            mask["counts"] = [*args[0], pixels - sum(args[0])]
    return data


@pytest.fixture(scope="module")
def results_folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("results")


def load_or_refuse(path: Path, coco_gt) -> tuple[list[dict] | None, str]:
    """(load_results, "") or (None, the message) when it refuses with a ResultsError naming the file; nothing
    else may escape."""
    try:
        results = load_results(path, coco_gt)
    except ResultsError as error:
        assert str(error).startswith(f"{path.name}: ") or str(error).startswith(f"{path}: "), str(error)
        event("refused")
        return None, str(error)
    event("accepted" if results else "accepted: no detections")
    return results, ""


@pytest.mark.hardening(6, "valid results with fields deleted or replaced, ids changed, RLE counts and sizes "
                          "mutated",
                       "ResultsError naming the file and the entry, or accepted and scored without error")
@settings(max_examples=300, deadline=None, suppress_health_check=SLOW_IS_FINE)
@given(st.lists(mutations, min_size=1, max_size=3))
@example([("counts", 0, ("literal", 0, "0"))])  # str(bytes) written by a tool that forgot to decode
@example([("uncompressed", 1, [164, 9, 15, 9, 15, 9, 547])])  # uncompressed RLE that does not cover the image
def test_mutated_results_files(results_gt, results_folder, edits):
    path = results_folder / "results.json"
    path.write_text(json.dumps(mutated(edits)))
    results, refusal = load_or_refuse(path, results_gt)
    if results is None:
        assert re.match(r"results\.json: entry \d+ ", refusal), refusal
    elif results:
        score(results_gt, results, ignore=SCORE_DEPENDENT)


plausible_entries = st.fixed_dictionaries({}, optional={
    "image_id": st.sampled_from([1, 2, 3, "street", 1.0, True]) | json_values,
    "category_id": st.sampled_from([1, 3, 2, None]) | json_values,
    "score": st.floats() | json_values,
    "bbox": st.lists(st.floats() | st.integers(-5, 40), max_size=5) | json_values,
    "segmentation": st.fixed_dictionaries({}, optional={
        "size": st.sampled_from([[HEIGHT, WIDTH], [16, 16]]) | st.lists(st.integers(-1, 70), max_size=3),
        "counts": text_counts | json_values})
    | polygon_segmentations,
})


@pytest.mark.hardening(6, "arbitrary JSON values as a results file", "ResultsError naming the file, or accepted and "
                                                                      "scored without error")
@settings(max_examples=300, deadline=None, suppress_health_check=SLOW_IS_FINE)
@given(json_values | st.lists(plausible_entries | json_values, max_size=5))
@example({"annotations": []})  # a ground-truth file given by mistake
@example([{"image_id": 1, "category_id": 3, "score": 0.5, "bbox": [1, 1, 5, 5]}])
def test_arbitrary_json_results(results_gt, data):
    try:
        results = parse_results(data, results_gt, source="fuzz.json")
    except ResultsError as error:
        assert str(error).startswith("fuzz.json: "), str(error)
        event("refused")
        return
    event("accepted" if results else "accepted: no detections")
    if results:
        score(results_gt, results, ignore=SCORE_DEPENDENT)


VALID_FILE = json.dumps(valid_results()).encode()
DIGITS = [m.start() for m in re.finditer(rb"\d", VALID_FILE)]
file_bytes = st.one_of(
    st.binary(max_size=200),
    st.integers(0, len(VALID_FILE)).map(lambda n: VALID_FILE[:n]),  # cut short, as by a full disk
    st.tuples(st.integers(0, len(VALID_FILE) - 1), st.binary(min_size=1, max_size=3)).map(
        lambda edit: VALID_FILE[:edit[0]] + edit[1] + VALID_FILE[edit[0] + 1:]),  # bytes overwritten
    st.tuples(st.sampled_from(DIGITS), st.sampled_from(b"0123456789")).map(
        lambda edit: VALID_FILE[:edit[0]] + bytes([edit[1]]) + VALID_FILE[edit[0] + 1:]),  # a digit changed
    st.sampled_from([b"[" * 100000, b"\xef\xbb\xbf[]", "[]".encode("utf-16"), b"[1e999]", b"[NaN]", b"\x00",
                     b"", b"null", VALID_FILE.replace(b"0.9", b"Infinity")]),
)


@pytest.mark.hardening(6, "random bytes as a results file (binary, cut short, bytes overwritten, deep nesting)",
                       "ResultsError naming the file, or accepted and scored without error")
@settings(max_examples=200, deadline=None, suppress_health_check=SLOW_IS_FINE)
@given(file_bytes)
def test_random_bytes_as_results_file(results_gt, results_folder, content):
    path = results_folder / "bytes.json"
    path.write_bytes(content)
    results, refusal = load_or_refuse(path, results_gt)
    if results is None:
        assert "bytes.json" in refusal and "Traceback" not in refusal  # one sentence naming the file
    elif results:
        assert score(results_gt, results, ignore=SCORE_DEPENDENT)["n_images"] == len(results_gt.getImgIds())
