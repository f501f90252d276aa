"""COCO's compressed RLE strings, decoded without pycocotools (and without torch).

pycocotools' decoder (``rleFrString``) trusts its input: counts that run past the image write outside the
mask buffer. Anything read from a user's file is therefore checked here first: a string is well formed
when every character is in COCO's alphabet ('0'..'o'), it ends on a complete value, no value needs more
than 7 characters (35 bits; pycocotools' C shifts would overflow) and no decoded run is negative. The
caller then compares the total with height * width.

The decoder is vectorized over many strings at once because a results file holds thousands of masks and
checking them one character at a time in Python costs more than the whole COCO evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_MAX_CHARS_PER_VALUE = 7


def _as_bytes(counts: bytes | str) -> bytes | None:
    if isinstance(counts, bytes):
        return counts
    if isinstance(counts, str) and counts.isascii():
        return counts.encode("ascii")
    return None


def decode_compressed_counts(counts_list: Sequence[bytes | str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run lengths of many compressed RLE strings, decoded in one vectorized pass.

    Args:
        counts_list: N compressed ``counts`` strings (str or bytes).

    Returns:
        runs: (R,) int64, the run lengths of every string, one string after the other;
        starts: (N + 1,) int64, string i's runs are ``runs[starts[i]:starts[i + 1]]``;
        valid: (N,) bool, False where a string is malformed (its runs are then meaningless).
    """
    n = len(counts_list)
    blobs = [_as_bytes(counts) for counts in counts_list]
    valid = np.array([blob is not None for blob in blobs], dtype=bool)
    blobs = [blob or b"" for blob in blobs]
    lengths = np.fromiter((len(blob) for blob in blobs), dtype=np.int64, count=n)
    if lengths.sum() == 0:
        return np.zeros(0, np.int64), np.zeros(n + 1, np.int64), valid

    chars = np.frombuffer(b"".join(blobs), dtype=np.uint8).astype(np.int16) - 48
    owner = np.repeat(np.arange(n), lengths)
    bad_char = (chars < 0) | (chars >= 64)
    valid[owner[bad_char]] = False
    chars[bad_char] = 0
    # A value ends on a character without the 0x20 "more" bit; every string must end on one, and a value
    # must never continue into the next string.
    more = (chars & 0x20) != 0
    last_char = np.cumsum(lengths)[lengths > 0] - 1
    valid[owner[last_char[more[last_char]]]] = False
    ends = ~more
    ends[last_char] = True

    begins = np.empty_like(ends)
    begins[0] = True
    begins[1:] = ends[:-1]
    value_start = np.flatnonzero(begins)
    value_of_char = np.cumsum(begins) - 1
    position = np.arange(chars.size) - value_start[value_of_char]
    too_long = position >= _MAX_CHARS_PER_VALUE
    valid[owner[too_long]] = False
    position = np.minimum(position, _MAX_CHARS_PER_VALUE - 1)

    values = np.add.reduceat((chars & 0x1F).astype(np.int64) << (5 * position), value_start)
    n_chars = np.minimum(np.diff(np.append(value_start, chars.size)), _MAX_CHARS_PER_VALUE)
    negative = (chars[value_start + n_chars - 1] & 0x10) != 0  # sign bit of the last 5-bit chunk
    values -= np.where(negative, np.left_shift(1, 5 * n_chars), 0)

    # Runs after the third are stored as differences to the run two before: undo that with a cumulative
    # sum along each string's odd chain (runs 1, 3, 5, ...) and even chain (runs 2, 4, ...); run 0 stands alone.
    value_owner = owner[value_start]
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
    valid[value_owner[runs < 0]] = False
    return runs, first_value.astype(np.int64), valid


def compressed_rle_totals(counts_list: Sequence[bytes | str]) -> np.ndarray:
    """(N,) int64: pixels covered by each compressed RLE string, -1 where a string is malformed."""
    runs, starts, valid = decode_compressed_counts(counts_list)
    cumulative = np.concatenate([[0], np.cumsum(runs)])
    totals = cumulative[starts[1:]] - cumulative[starts[:-1]]
    return np.where(valid, totals, -1)


def compressed_rle_total(counts: bytes | str) -> int | None:
    """Pixels covered by one compressed RLE string (pycocotools' rleFrString), None if it is malformed."""
    total = int(compressed_rle_totals([counts])[0])
    return None if total < 0 else total


def compressed_rle_runs(counts: bytes | str) -> np.ndarray | None:
    """(R,) int64 run lengths of one compressed RLE string (zeros first, then ones, alternating); None if malformed."""
    runs, starts, valid = decode_compressed_counts([counts])
    return runs[starts[0]:starts[1]] if valid[0] else None
