"""Boundary IoU and boundary AP (Cheng et al., "Boundary IoU: Improving Object-Centric Image Segmentation
Evaluation", CVPR 2021), with the paper's dilation of 0.02 of the image diagonal.

The definitions follow the official implementation (github.com/bowenc0221/boundary-iou-api):

- ``boundary_utils.mask_to_boundary``: the boundary of a mask is the mask minus its erosion by
  d = max(1, round(dilation_ratio * image diagonal)) pixels, eroding with a 3x3 square d times after
  padding the image with one row and column of zeros, so a mask cut by the image border has a boundary
  along that border too. Eroding d times by a 3x3 square equals eroding once by a (2d+1)x(2d+1) square
  with everything outside the image counted as background, which is what :func:`boundary_mask` does,
  with cumulative sums in numpy (no OpenCV, no scipy: scipy.ndimage alone takes longer to import than a
  whole COCO evaluation).
- ``coco_instance_api/cocoeval.py`` with ``iouType="boundary"``: the IoU used to match a detection to a
  ground truth is min(mask IoU, boundary IoU); crowd regions keep COCO's mask IoU. Boundary AP is COCO's
  AP (IoU .50:.95, 101 recall points) under that IoU, and here it runs through the same COCO engine as
  mask AP (:mod:`segcore.metrics.coco`), so matching and accumulation are COCO's own.

For masks given as RLE (the metrics' case) no mask is expanded to pixels. The erosion by a square is
separable: down the columns it shrinks each run of a column by d at both ends, which RLE (column-major)
gives directly; across columns a pixel stays if it stays in the d columns on either side, which is an
AND of whole columns once each column is packed into 64-bit words of rows. Bands are kept packed on
their mask's bounding box, with words aligned to image rows, so two bands intersect by AND and
``np.bitwise_count``. The numbers are those of :func:`boundary_mask` on the whole image.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils

from segcore.coco.rle import batches, decode_compressed_counts, foreground_runs, positions_in_runs
from segcore.metrics import coco as coco_engine

DILATION_RATIO = 0.02


def dilation_pixels(height: int, width: int, dilation_ratio: float = DILATION_RATIO) -> int:
    """The boundary width d in pixels for an image: max(1, round(dilation_ratio * diagonal))."""
    return max(1, int(round(dilation_ratio * math.sqrt(height ** 2 + width ** 2))))


def _erode_rows(mask: np.ndarray, d: int) -> np.ndarray:
    """(h, w) bool: a pixel stays if the d pixels above and below it are set too (outside: unset).

    Also for (h, w) packed words (any unsigned integer type): each bit is eroded along axis 0.
    """
    n, window = mask.shape[0], 2 * d + 1
    padding = np.zeros((d, mask.shape[1]), dtype=mask.dtype)
    covered = np.concatenate([padding, mask, padding])
    # covered[s] = AND of `span` consecutive rows from s; doubling the span costs one AND each time.
    span = 1
    while span * 2 <= window:
        covered = covered[:-span] & covered[span:]
        span *= 2
    return covered[:n] & covered[window - span:window - span + n]  # two overlapping spans cover the window


def _erode(mask: np.ndarray, d: int) -> np.ndarray:
    """(h, w) bool -> (h, w) bool: erosion by a (2d+1) square, pixels outside the array counted as 0."""
    return _erode_rows(_erode_rows(mask, d).T, d).T


def boundary_mask(mask: np.ndarray, dilation_ratio: float = DILATION_RATIO) -> np.ndarray:
    """The inner boundary band of a mask: (H, W) bool -> (H, W) bool.

    The band holds the mask pixels within d = :func:`dilation_pixels` (Chebyshev distance) of the
    background or of the image border; an empty mask has an empty boundary.
    """
    mask = np.asarray(mask).astype(bool)
    assert mask.ndim == 2, mask.shape
    d = dilation_pixels(*mask.shape, dilation_ratio)
    boundary = np.zeros_like(mask)
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size:
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        boundary[box] = mask[box] & ~_erode(mask[box], d)
    return boundary


def boundary_iou(gt: np.ndarray, dt: np.ndarray, dilation_ratio: float = DILATION_RATIO) -> float:
    """Boundary IoU |Bg ∩ Bd| / |Bg ∪ Bd| of two (H, W) masks of the same image, in [0, 1].

    Two empty masks agree perfectly and score 1.0; one empty mask against a non-empty one scores 0.0.
    The score is symmetric in its arguments.
    """
    assert np.shape(gt) == np.shape(dt), (np.shape(gt), np.shape(dt))
    gt_boundary, dt_boundary = boundary_mask(gt, dilation_ratio), boundary_mask(dt, dilation_ratio)
    union = np.count_nonzero(gt_boundary | dt_boundary)
    return 1.0 if union == 0 else np.count_nonzero(gt_boundary & dt_boundary) / union


_ONES = np.uint64(0xFFFF_FFFF_FFFF_FFFF)


@dataclass(frozen=True)
class _Bands:
    """Boundary bands of M masks, packed: bit ``r % 64`` of word ``r // 64`` of a column holds image row r.

    Mask m's band covers image columns ``col0[m]`` .. ``col0[m] + n_cols[m] - 1`` and words ``word0[m]``
    .. ``word0[m] + n_words[m] - 1`` of each; the word of column c and word w is
    ``words[offset[m] + (c - col0[m]) * n_words[m] + (w - word0[m])]``. An empty mask has no columns.
    """

    words: np.ndarray   # (total,) uint64
    offset: np.ndarray  # (M,) int64, and likewise the rest
    col0: np.ndarray
    n_cols: np.ndarray
    word0: np.ndarray
    n_words: np.ndarray
    area: np.ndarray    # (M,) int64 pixels in each band

    def index(self, m: np.ndarray, column: np.ndarray, word: np.ndarray) -> np.ndarray:
        """Positions in ``words`` of (mask, image column, word) triples, all (K,) int64."""
        return self.offset[m] + (column - self.col0[m]) * self.n_words[m] + (word - self.word0[m])


def _column_runs(rles: Sequence[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The foreground of compressed RLE masks as runs within one column each.

    Returns:
        mask (F,), column (F,), top (F,), bottom (F,) int64: rows top..bottom - 1 of that image column
        are foreground, maximal (touching runs joined), sorted by mask, column and row.
    """
    runs, starts, valid = decode_compressed_counts([rle["counts"] for rle in rles])
    assert valid.all(), "masks reaching the metrics are validated RLE"
    height = np.array([int(rle["size"][0]) for rle in rles], dtype=np.int64)
    owner, begin, end = foreground_runs(runs, starts)
    # RLE runs go down one column and on into the next; outside the image is background, so a run is
    # cut at each column's end.
    h = height[owner]
    first_column = begin // h
    pieces = (end - 1) // h - first_column + 1
    run = np.repeat(np.arange(owner.size), pieces)
    column = first_column[run] + positions_in_runs(pieces)
    top = np.maximum(begin[run] - column * h[run], 0)
    bottom = np.minimum(end[run] - column * h[run], h[run])
    mask = owner[run]
    # An RLE may hold empty background runs; the foreground runs around one are a single run.
    new = np.ones(mask.size, dtype=bool)
    new[1:] = (mask[1:] != mask[:-1]) | (column[1:] != column[:-1]) | (top[1:] != bottom[:-1])
    first = np.flatnonzero(new)
    last = np.append(first[1:], mask.size) - 1 if first.size else first
    return mask[first], column[first], top[first], bottom[last]


def _pack(total: int, layout: _Bands, mask: np.ndarray, column: np.ndarray, top: np.ndarray,
          bottom: np.ndarray) -> np.ndarray:
    """(total,) uint64 words of ``layout`` with rows top..bottom - 1 of each (mask, column) set.

    The runs come sorted by mask, column and row, so runs that share a word are neighbours.
    """
    first_word, n = top >> 6, ((bottom - 1) >> 6) - (top >> 6) + 1
    run = np.repeat(np.arange(top.size), n)
    word = first_word[run] + positions_in_runs(n)
    low = np.maximum(top[run] - 64 * word, 0)
    high = np.minimum(bottom[run] - 64 * word, 64)
    bits = (_ONES >> (64 - (high - low)).astype(np.uint64)) << low.astype(np.uint64)
    target = layout.index(mask[run], column[run], word)
    new = np.ones(target.size, dtype=bool)
    new[1:] = target[1:] != target[:-1]
    words = np.zeros(total, dtype=np.uint64)
    words[target[new]] = np.bitwise_or.reduceat(bits, np.flatnonzero(new)) if target.size else bits
    return words


def _bands(rles: Sequence[dict], dilation_ratio: float) -> _Bands:
    """The boundary bands of compressed RLE masks (counts str or bytes) of any image sizes."""
    parts = [_batch_bands(rles[batch], dilation_ratio) for batch in batches([len(rle["counts"]) for rle in rles])]
    if not parts:
        return _batch_bands([], dilation_ratio)
    words_before = np.cumsum([0] + [part.words.size for part in parts[:-1]])
    return _Bands(np.concatenate([part.words for part in parts]),
                  np.concatenate([part.offset + before for part, before in zip(parts, words_before)]),
                  *(np.concatenate([getattr(part, name) for part in parts])
                    for name in ("col0", "n_cols", "word0", "n_words", "area")))


def _batch_bands(rles: Sequence[dict], dilation_ratio: float) -> _Bands:
    """_bands of one batch of masks."""
    n_masks = len(rles)
    mask, column, top, bottom = _column_runs(rles)
    sizes = [(int(rle["size"][0]), int(rle["size"][1])) for rle in rles]
    widths = {size: dilation_pixels(*size, dilation_ratio) for size in set(sizes)}
    d = np.array([widths[size] for size in sizes], dtype=np.int64).reshape(n_masks)

    first = np.searchsorted(mask, np.arange(n_masks))
    count = np.searchsorted(mask, np.arange(n_masks), side="right") - first
    present = count > 0
    col0, n_cols, word0, n_words = (np.zeros(n_masks, dtype=np.int64) for _ in range(4))
    col0[present] = column[first[present]]
    n_cols[present] = column[first[present] + count[present] - 1] - col0[present] + 1
    if present.any():
        word0[present] = np.minimum.reduceat(top, first[present]) >> 6
        n_words[present] = ((np.maximum.reduceat(bottom, first[present]) - 1) >> 6) - word0[present] + 1
    # Masks with the same words per column and the same d are laid out one after the other, so that
    # each such group erodes as one (columns, words) array.
    layout_order = np.lexsort((d, n_words))
    size = n_cols * n_words
    offset = np.zeros(n_masks, dtype=np.int64)
    offset[layout_order] = np.cumsum(size[layout_order]) - size[layout_order]
    total = int(size.sum())
    layout = _Bands(np.zeros(0, np.uint64), offset, col0, n_cols, word0, n_words, np.zeros(n_masks, np.int64))

    foreground = _pack(total, layout, mask, column, top, bottom)
    # Down the columns, erosion shrinks each run by d at both ends.
    top_in, bottom_in = top + d[mask], bottom - d[mask]
    kept = bottom_in > top_in
    eroded = _pack(total, layout, mask[kept], column[kept], top_in[kept], bottom_in[kept])
    # Across columns, a column stays where the d columns on either side of it, all inside the mask's
    # columns (outside them is background), keep it.
    for n_w, width in {(int(n_words[m]), int(d[m])) for m in np.flatnonzero(present)}:
        group = layout_order[(n_words[layout_order] == n_w) & (d[layout_order] == width)]
        start, stop = offset[group[0]], offset[group[-1]] + size[group[-1]]
        column_in_mask = positions_in_runs(n_cols[group])
        inside = (column_in_mask >= width) & (column_in_mask < np.repeat(n_cols[group], n_cols[group]) - width)
        columns = _erode_rows(eroded[start:stop].reshape(-1, n_w), width)
        columns[~inside] = 0
        eroded[start:stop] = columns.ravel()
    band = foreground & ~eroded
    counted = np.concatenate([[0], np.cumsum(np.bitwise_count(band), dtype=np.int64)])
    return _Bands(band, offset, col0, n_cols, word0, n_words, counted[offset + size] - counted[offset])


def _paired_ious(bands: _Bands, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(K,) float64 boundary IoU of masks a[k] and b[k]; 1.0 for two empty masks, 0.0 for one."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    # The words both bands have: their common columns, and their common words in each
    col_low = np.maximum(bands.col0[a], bands.col0[b])
    n_cols = np.maximum(np.minimum(bands.col0[a] + bands.n_cols[a], bands.col0[b] + bands.n_cols[b]) - col_low, 0)
    word_low = np.maximum(bands.word0[a], bands.word0[b])
    n_words = np.maximum(np.minimum(bands.word0[a] + bands.n_words[a], bands.word0[b] + bands.n_words[b])
                         - word_low, 0)
    intersection = np.zeros(a.size)
    for batch in batches((n_cols * n_words).tolist()):
        cells = n_cols[batch] * n_words[batch]
        pair = np.repeat(np.arange(cells.size), cells)
        step, word_step = np.divmod(positions_in_runs(cells), np.maximum(n_words[batch], 1)[pair])
        column, word = col_low[batch][pair] + step, word_low[batch][pair] + word_step
        common = (bands.words[bands.index(a[batch][pair], column, word)]
                  & bands.words[bands.index(b[batch][pair], column, word)])
        intersection[batch] = np.bincount(pair, weights=np.bitwise_count(common), minlength=cells.size)
    union = bands.area[a] + bands.area[b] - intersection
    return np.divide(intersection, union, out=np.ones(a.size), where=union > 0)


def boundary_iou_matrix(dt_rles: list[dict], gt_rles: list[dict],
                        dilation_ratio: float = DILATION_RATIO) -> np.ndarray:
    """Boundary IoU of every detection against every ground truth of one image.

    Args:
        dt_rles: D compressed RLE masks (``{"size": [H, W], "counts": str | bytes}``).
        gt_rles: G compressed RLE masks of the same image size.

    Returns:
        (D, G) float64, laid out like ``pycocotools.mask.iou(dt_rles, gt_rles, iscrowd)``. Pairs whose
        masks do not overlap score 0 without being computed (a boundary lies inside its mask).
    """
    ious = np.zeros((len(dt_rles), len(gt_rles)))
    if not dt_rles or not gt_rles:
        return ious
    d, g = np.nonzero(np.asarray(mask_utils.iou(dt_rles, gt_rles, [0] * len(gt_rles))) > 0)
    ious[d, g] = _paired_ious(_bands(list(dt_rles) + list(gt_rles), dilation_ratio), d, len(dt_rles) + g)
    return ious


def paired_boundary_ious(dt_rles: Sequence[dict], gt_rles: Sequence[dict],
                         dilation_ratio: float = DILATION_RATIO) -> np.ndarray:
    """(K,) float64 boundary IoU of ``dt_rles[k]`` against ``gt_rles[k]`` (compressed RLE, same image each)."""
    assert len(dt_rles) == len(gt_rles), (len(dt_rles), len(gt_rles))
    k = np.arange(len(dt_rles))
    return _paired_ious(_bands(list(dt_rles) + list(gt_rles), dilation_ratio), k, len(dt_rles) + k)


def candidate_boundary_ious(evaluation: coco_engine.CocoEvaluation,
                            dilation_ratio: float = DILATION_RATIO) -> dict[tuple[int, int], float]:
    """Boundary IoU of every detection and non-crowd ground truth of one image and class whose mask IoU
    reaches 0.50, the lowest COCO threshold; below it a pair can match at no threshold, whatever its
    boundary IoU, so boundary AP, the mean boundary IoU of matches and per-instance rows need no others.

    Args:
        evaluation: a segm :class:`~segcore.metrics.coco.CocoEvaluation`.

    Returns:
        (index into the results, annotation id) -> boundary IoU.
    """
    assert evaluation.iou_type == "segm", evaluation.iou_type
    chosen = (evaluation.entry_iou >= coco_engine.IOU_THRESHOLDS[0]) & ~evaluation.gt_crowd[evaluation.entry_gt]
    dts, dt_slot = np.unique(evaluation.entry_dt[chosen], return_inverse=True)
    gts, gt_slot = np.unique(evaluation.entry_gt[chosen], return_inverse=True)
    bands = _bands([evaluation.dt_rles[i] for i in dts] + [evaluation.gt_rles[j] for j in gts], dilation_ratio)
    values = _paired_ious(bands, dt_slot, dts.size + gt_slot)
    keys = zip(evaluation.dt_index[dts[dt_slot]].tolist(), evaluation.gt_ids[gts[gt_slot]].tolist())
    return dict(zip(keys, values.tolist()))


def boundary_metrics(coco_gt, results: list[dict], *, class_names: list[str] | None = None,
                     dilation_ratio: float = DILATION_RATIO, evaluation: coco_engine.CocoEvaluation | None = None,
                     boundary_ious: Mapping[tuple[int, int], float] | None = None) -> dict:
    """Boundary AP and the mean boundary IoU of matched instances, for mask results.

    Args:
        coco_gt: a pycocotools ``COCO`` with the ground truth.
        results: COCO results entries with a compressed RLE ``segmentation`` each.
        class_names: names of the categories in ascending id order; default the names in ``coco_gt``.
        dilation_ratio: boundary width as a fraction of the image diagonal.
        evaluation: ``CocoEvaluation(coco_gt, results, "segm")`` when the caller already has it.
        boundary_ious: :func:`candidate_boundary_ious` of that evaluation when the caller already has them.

    Returns:
        {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl" (COCO's 12
        numbers under IoU = min(mask IoU, boundary IoU); None where COCO would report -1, i.e. nothing to
        score), "per_class": {name: AP or None}, "mean_iou": mean boundary IoU over the pairs matched by
        mask IoU at 0.50 under COCO's rules (all areas, 100 detections per image), None if none matched}.
    """
    evaluation = evaluation or coco_engine.CocoEvaluation(coco_gt, results, "segm")
    if boundary_ious is None:
        boundary_ious = candidate_boundary_ious(evaluation, dilation_ratio)
    # mean_iou: boundary IoU of the mask-matched pairs (IoU 0.50, not ignored), in COCOeval's order.
    mask_matches = evaluation.match([coco_engine.ALL_AREAS])
    gt_id = mask_matches.dt_matches[0, 0]
    matched = (gt_id != 0) & ~mask_matches.dt_ignore[0, 0]
    matched_iou = [boundary_ious[key] for key in zip(evaluation.dt_index[matched].tolist(), gt_id[matched].tolist())]
    # Crowd regions and pairs below 0.50 keep their mask IoU: the first are COCO's, the second never match.
    keys = zip(evaluation.dt_index[evaluation.entry_dt].tolist(), evaluation.gt_ids[evaluation.entry_gt].tolist())
    boundary = np.array([boundary_ious.get(key, np.inf) for key in keys], dtype=np.float64)
    metrics = evaluation.with_ious(np.minimum(evaluation.entry_iou, boundary)).summary(class_names=class_names,
                                                                                        curves=False)
    metrics["mean_iou"] = float(np.mean(matched_iou)) if matched_iou else None
    return metrics
