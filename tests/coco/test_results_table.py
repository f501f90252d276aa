"""ResultsTable: COCO results held as columns read back as the dicts appended, and write as json.dumps."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from segcore.coco.results_table import ResultsTable, write_results_json

KEYS = ("image_id", "category_id", "segmentation", "bbox", "score")


def in_order(entry: dict) -> dict:
    """The keys in to_coco_results' order (and pycocotools' for the RLE), as segcore eval writes them."""
    entry = {key: entry[key] for key in KEYS}
    entry["segmentation"] = {"size": entry["segmentation"]["size"], "counts": entry["segmentation"]["counts"]}
    return entry


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
entries = st.lists(st.fixed_dictionaries({
    "image_id": st.integers(0, 2 ** 40),
    "category_id": st.integers(1, 2 ** 31),
    "segmentation": st.fixed_dictionaries({"size": st.tuples(st.integers(1, 4096), st.integers(1, 4096)).map(list),
                                           "counts": st.text("0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abc")}),
    "bbox": st.lists(finite, min_size=4, max_size=4),
    "score": finite,
}).map(in_order), max_size=30)


@given(entries)
def test_entries_read_back_as_appended(results):
    table = ResultsTable(results)
    assert len(table) == len(results)
    assert list(table) == results
    assert table[1:4] == results[1:4]
    if results:
        assert table[-1] == results[-1]
        assert tuple(table[0]) == KEYS


@given(entries, st.integers(1, 7))
def test_written_json_equals_json_dumps(results, chunk):
    file = io.StringIO()
    write_results_json(file, ResultsTable(results), chunk=chunk)
    assert file.getvalue() == json.dumps(results)


def test_box_only_entries_and_bytes_counts():
    boxes = [{"image_id": 1, "category_id": 2, "bbox": [0.0, 1.0, 2.0, 3.0], "score": 0.5}]
    assert list(ResultsTable(boxes)) == boxes
    table = ResultsTable([{**boxes[0], "segmentation": {"size": [2, 2], "counts": b"04"}}])
    assert table[0]["segmentation"]["counts"] == "04"
    with pytest.raises(ValueError, match="all with a segmentation or all without"):
        table.append(boxes[0])
    with pytest.raises(IndexError):
        table[1]


def test_spilled_strings_read_back(tmp_path):
    entries = [{"image_id": i, "category_id": 1, "segmentation": {"size": [4, 4], "counts": "0" * i + "4"},
                "bbox": [0.0, 0.0, 1.0, 1.0], "score": 1 / (i + 1)} for i in range(50)]
    with ResultsTable(entries[:20], spill_dir=tmp_path) as table:
        assert table[5] == entries[5]
        table.extend(entries[20:])  # appends after a read are read back too
        assert list(table) == entries
    assert list(tmp_path.iterdir()) == []  # the spill file is unnamed: nothing is left behind
