"""COCO's compressed RLE strings, decoded without pycocotools (and without torch).

pycocotools trusts its input: 2.0.11's ``decode`` refuses runs past the image, but one that stops short
decodes to uninitialized pixels, ``merge`` writes runs past its buffer (the heap then breaks) and ``iou``
can loop for minutes. Anything read from a user's file is therefore checked here first: a string is well formed
when every character is in COCO's alphabet ('0'..'o'), it ends on a complete value (pycocotools would
read past the string's end), no value needs more than 7 characters (35 bits; pycocotools' C shifts would
overflow), no 7-character value is negative, and every decoded run is in 0 .. 2**32 - 1. The caller then
compares the total with height * width. The last two rules make pycocotools read the very runs decoded
here, so that this total is the one it writes: it keeps runs as 32-bit unsigned integers, and it reads the
sign of a 7-character value wrong (its ``-1 << 35`` on a 32-bit int is ``-1 << 3`` on x86), so that
``0PPPP20PPPPooO`` is 3145728 pixels here (a 1536 x 2048 image) but 4194296 there, a megabyte more.

The decoder is vectorized over many strings at once because a results file holds thousands of masks and
checking them one character at a time in Python costs more than the whole COCO evaluation. The metrics
work on the decoded runs directly (boundary bands, painted label maps), with the run-level helpers below.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_MAX_CHARS_PER_VALUE = 7
#: pycocotools holds runs as C ``uint`` (32 bits).
_MAX_RUN = (1 << 32) - 1
#: The most pixels a mask may have for pycocotools to encode it: its encoder (behind ``encode``, ``merge`` and
#: ``frPyObjects``) allocates 6 characters a run, the string's closing NUL included, and a run of 2**24
#: pixels or more takes 6 characters itself, so the mask of a larger image (one empty mask is one such run)
#: is written past its buffer. Images in datasets and masks segcore encodes are held below this.
MAX_ENCODED_PIXELS = (1 << 24) - 1
#: Items' total size (characters, runs) per batch of a vectorized step; see :func:`batches`.
BATCH_SIZE = 1 << 15


def _as_bytes(counts: bytes | str) -> bytes | None:
    if isinstance(counts, bytes):
        return counts
    if isinstance(counts, str) and counts.isascii():
        return counts.encode("ascii")
    return None


def batches(sizes: Sequence[int], limit: int = BATCH_SIZE) -> list[slice]:
    """Consecutive slices of items whose sizes add up to about ``limit`` each (at least one item each).

    Vectorized steps over many masks run batch by batch: their temporaries then stay small, and their
    memory is reused from one batch to the next instead of being mapped afresh, which costs more than
    the arithmetic (about twice the time for a split's masks).
    """
    out, first, total = [], 0, 0
    for i, size in enumerate(sizes):
        total += size
        if total >= limit or i == len(sizes) - 1:
            out.append(slice(first, i + 1))
            first, total = i + 1, 0
    return out


def decode_compressed_counts(counts_list: Sequence[bytes | str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run lengths of many compressed RLE strings, decoded vectorized, a batch of strings at a time.

    Args:
        counts_list: N compressed ``counts`` strings (str or bytes).

    Returns:
        runs: (R,) int64, the run lengths of every string, one string after the other;
        starts: (N + 1,) int64, string i's runs are ``runs[starts[i]:starts[i + 1]]``;
        valid: (N,) bool, False where a string is malformed (its runs are then meaningless).
    """
    blobs = [_as_bytes(counts) for counts in counts_list]
    valid = np.array([blob is not None for blob in blobs], dtype=bool)
    blobs = [blob or b"" for blob in blobs]
    runs, starts, total = [np.zeros(0, np.int64)], [np.zeros(1, np.int64)], 0
    for batch in batches([len(blob) for blob in blobs]):
        batch_runs, batch_starts = _decode_batch(blobs[batch], valid[batch])
        starts.append(batch_starts[1:] + total)
        runs.append(batch_runs)
        total += batch_runs.size
    return np.concatenate(runs), np.concatenate(starts), valid


def _decode_batch(blobs: list[bytes], valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """decode_compressed_counts of N byte strings; clears ``valid`` (N,) where one is malformed."""
    n = len(blobs)
    lengths = np.fromiter((len(blob) for blob in blobs), dtype=np.int64, count=n)
    if lengths.sum() == 0:
        return np.zeros(0, np.int64), np.zeros(n + 1, np.int64)

    # Characters stay one byte each: only the values they make are widened.
    code = np.frombuffer(b"".join(blobs), dtype=np.uint8) - np.uint8(48)  # below '0' wraps to >= 208
    string_end = np.cumsum(lengths)
    bad = code >= 64
    if bad.any():
        valid[np.searchsorted(string_end, np.flatnonzero(bad), side="right")] = False
        code = np.where(bad, np.uint8(0), code)
    # A value ends on a character without the 0x20 "more" bit; every string must end on one, and a value
    # must never continue into the next string.
    more = (code & 0x20) != 0
    last_char = string_end[lengths > 0] - 1
    valid[np.flatnonzero(lengths > 0)[more[last_char]]] = False
    ends = ~more
    ends[last_char] = True
    value_end = np.flatnonzero(ends)
    value_start = np.concatenate([[0], value_end[:-1] + 1])
    value_owner = np.searchsorted(string_end, value_start, side="right")
    n_chars = value_end - value_start + 1
    valid[value_owner[n_chars > _MAX_CHARS_PER_VALUE]] = False
    n_chars = np.minimum(n_chars, _MAX_CHARS_PER_VALUE)

    chunks = code & 0x1F  # 5 bits per character, least significant first
    values = chunks[value_start].astype(np.int64)
    for k in range(1, int(n_chars.max())):  # most values take one or two characters
        longer = np.flatnonzero(n_chars > k)
        values[longer] |= chunks[value_start[longer] + k].astype(np.int64) << (5 * k)
    negative = (code[value_start + n_chars - 1] & 0x10) != 0  # sign bit of the last 5-bit chunk
    values[negative] -= np.left_shift(1, 5 * n_chars[negative])
    valid[value_owner[negative & (n_chars == _MAX_CHARS_PER_VALUE)]] = False  # pycocotools misreads its sign

    # Runs after the third are stored as differences to the run two before: undo that with a cumulative
    # sum along each string's odd chain (runs 1, 3, 5, ...) and even chain (runs 2, 4, ...); run 0 stands alone.
    first_value = np.searchsorted(value_owner, np.arange(n + 1))
    index_in_string = np.arange(values.size) - first_value[value_owner]
    runs = values.copy()
    for parity in (1, 0):
        chain = np.flatnonzero(((index_in_string & 1) == parity) & (index_in_string > 0))
        if chain.size == 0:
            continue
        summed = np.cumsum(values[chain])
        chain_owner = value_owner[chain]
        new_string = np.flatnonzero(np.r_[True, chain_owner[1:] != chain_owner[:-1]])
        before = np.repeat(summed[new_string] - values[chain[new_string]], np.diff(np.append(new_string, chain.size)))
        runs[chain] = summed - before
    valid[value_owner[(runs < 0) | (runs > _MAX_RUN)]] = False
    return runs, first_value.astype(np.int64)


def compressed_rle_totals(counts_list: Sequence[bytes | str]) -> np.ndarray:
    """(N,) int64: pixels covered by each compressed RLE string, -1 where a string is malformed."""
    return compressed_rle_totals_and_areas(counts_list)[0]


def compressed_rle_totals_and_areas(counts_list: Sequence[bytes | str]) -> tuple[np.ndarray, np.ndarray]:
    """(N,) int64 pixels covered by each compressed RLE string and (N,) int64 of them in the mask (its
    foreground, pycocotools' ``area``); -1 for both where a string is malformed.

    Summed batch by batch: a results file's runs are never held all at once (a COCO-scale file has
    about a hundred million).
    """
    blobs = [_as_bytes(counts) for counts in counts_list]
    valid = np.array([blob is not None for blob in blobs], dtype=bool)
    blobs = [blob or b"" for blob in blobs]
    totals, areas = np.zeros(len(blobs), dtype=np.int64), np.zeros(len(blobs), dtype=np.int64)
    for batch in batches([len(blob) for blob in blobs]):
        runs, starts = _decode_batch(blobs[batch], valid[batch])
        cumulative = np.concatenate([[0], np.cumsum(runs)])
        totals[batch] = cumulative[starts[1:]] - cumulative[starts[:-1]]
        # runs alternate background and foreground, background first: the odd ones are the mask
        odd = (np.arange(runs.size) - np.repeat(starts[:-1], np.diff(starts))) & 1
        covered = np.concatenate([[0], np.cumsum(runs * odd)])
        areas[batch] = covered[starts[1:]] - covered[starts[:-1]]
    return np.where(valid, totals, -1), np.where(valid, areas, -1)


def compressed_rle_total(counts: bytes | str) -> int | None:
    """Pixels covered by one compressed RLE string (pycocotools' rleFrString), None if it is malformed."""
    total = int(compressed_rle_totals([counts])[0])
    return None if total < 0 else total


def compressed_rle_runs(counts: bytes | str) -> np.ndarray | None:
    """(R,) int64 run lengths of one compressed RLE string (zeros first, then ones, alternating); None if malformed."""
    runs, starts, valid = decode_compressed_counts([counts])
    return runs[starts[0]:starts[1]] if valid[0] else None


def foreground_runs(runs: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The non-empty foreground runs of many masks, as :func:`decode_compressed_counts` gives them.

    Args:
        runs: (R,) int64 run lengths of N masks, one mask after the other, each covering its image.
        starts: (N + 1,) int64, mask i's runs are ``runs[starts[i]:starts[i + 1]]``.

    Returns:
        owner (F,) int64 mask index, begin (F,) and end (F,) int64: pixels begin..end - 1 of the mask's
        image, column-major (RLE order), are foreground; sorted by mask, then position.
    """
    per_mask = np.diff(starts)
    owner = np.repeat(np.arange(per_mask.size), per_mask)
    cumulative = np.cumsum(runs)
    before = np.concatenate([[0], cumulative])[starts[:-1]]  # pixels of the masks before each one
    end = cumulative - before[owner]
    # RLE runs alternate background, foreground, background, ...: odd positions in a mask are foreground
    foreground = ((np.arange(runs.size) - starts[:-1][owner]) % 2 == 1) & (runs > 0)
    return owner[foreground], end[foreground] - runs[foreground], end[foreground]


def positions_in_runs(lengths: np.ndarray) -> np.ndarray:
    """(sum(lengths),) int64: 0, 1, ..., lengths[i] - 1 for each run i, the runs one after the other."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    return np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)


def distinct_sorted(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sorted distinct values of an int64 array made of sorted stretches (such as the run ends of
    masks), and the index of each value among them.

    A stable argsort (timsort) merges the sorted stretches in near-linear time: several times faster than
    ``np.unique`` (which hashes) on the hundreds of thousands of pixel positions of a split.

    Returns:
        distinct (D,) int64 increasing, index (V,) int64 with ``distinct[index] == values``.
    """
    values = np.asarray(values, dtype=np.int64)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    new = np.ones(values.size, dtype=bool)
    new[1:] = ordered[1:] != ordered[:-1]
    index = np.empty(values.size, dtype=np.int64)
    index[order] = np.cumsum(new) - 1
    return ordered[new], index
