"""COCO results entries held as columns, so that a split's predictions take little memory.

A model evaluated on a split answers up to 100 instances an image; as Python dicts (an entry, its
segmentation, its size and box lists) each costs about 2 KB beyond its RLE string, which made memory
grow with the split. Here an entry costs 72 bytes of numbers, plus its RLE string, which can be spilled
to a file, leaving an 8-byte offset in memory (a barely trained model's masks average 740 bytes of RLE);
it reads back as the same dict it was appended as, built when asked for.
"""

from __future__ import annotations

import json
import os
import tempfile
from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import IO


class ResultsTable(Sequence):
    """A sequence of COCO results entries ``{"image_id", "category_id", "segmentation", "bbox", "score"}``,
    in that key order (as :func:`segcore.coco.results.to_coco_results` makes them), the segmentation being
    compressed RLE ``{"size": [H, W], "counts": str}``.

    Entries without a segmentation are accepted only in a table of box-only entries.

    Args:
        entries: the first entries.
        spill_dir: keep the RLE strings in an unnamed temporary file in this folder rather than in
            memory; it is read with ``os.pread``, whose pages are the system's cache and not the process's
            memory. Close the table (or use it as a context manager) to release the file.
    """

    def __init__(self, entries: Iterable[dict] = (), *, spill_dir: str | os.PathLike | None = None):
        self._image_id, self._category_id = array("q"), array("q")
        self._score, self._bbox = array("d"), array("d")
        self._size = array("q")
        self._counts: list[str] = []
        self._masked = None
        self._spill = tempfile.TemporaryFile(dir=spill_dir) if spill_dir is not None else None
        self._offsets = array("q", [0])
        self.extend(entries)

    def close(self) -> None:
        if self._spill is not None:
            self._spill.close()

    def __enter__(self) -> ResultsTable:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def append(self, entry: dict) -> None:
        masked = "segmentation" in entry
        if self._masked is None:
            self._masked = masked
        elif masked != self._masked:
            raise ValueError("a ResultsTable holds entries either all with a segmentation or all without")
        self._image_id.append(int(entry["image_id"]))
        self._category_id.append(int(entry["category_id"]))
        self._score.append(float(entry["score"]))
        self._bbox.extend(float(v) for v in entry["bbox"])
        if masked:
            rle = entry["segmentation"]
            self._size.extend(int(v) for v in rle["size"])
            counts = rle["counts"] if isinstance(rle["counts"], str) else rle["counts"].decode("ascii")
            if self._spill is None:
                self._counts.append(counts)
            else:
                self._offsets.append(self._offsets[-1] + self._spill.write(counts.encode("ascii")))

    def extend(self, entries: Iterable[dict]) -> None:
        for entry in entries:
            self.append(entry)

    def __len__(self) -> int:
        return len(self._image_id)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        entry = {"image_id": self._image_id[index], "category_id": self._category_id[index]}
        if self._masked:
            entry["segmentation"] = {"size": [self._size[2 * index], self._size[2 * index + 1]],
                                     "counts": self._read_counts(index)}
        entry["bbox"] = list(self._bbox[4 * index:4 * index + 4])
        entry["score"] = self._score[index]
        return entry

    def _read_counts(self, index: int) -> str:
        if self._spill is None:
            return self._counts[index]
        self._spill.flush()
        begin, end = self._offsets[index], self._offsets[index + 1]
        return os.pread(self._spill.fileno(), end - begin, begin).decode("ascii")

    def __iter__(self) -> Iterator[dict]:
        return (self[i] for i in range(len(self)))


def write_results_json(file: IO[str], results: Sequence[dict], chunk: int = 4096) -> None:
    """Write ``results`` as ``json.dump(list(results), file)`` would, a chunk of entries at a time, so a
    :class:`ResultsTable` is never expanded into dicts all at once."""
    file.write("[")
    for start in range(0, len(results), chunk):
        if start:
            file.write(", ")
        file.write(json.dumps(list(results[start:start + chunk]))[1:-1])
    file.write("]")
