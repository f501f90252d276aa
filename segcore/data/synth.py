"""The built-in dataset: random shape scenes written in COCO's own layout.

``generate(out)`` writes ``out/annotations/instances_<split>.json`` and ``out/<split>/<file_name>`` for the
splits train, val and test, so the same reader serves this dataset and a COCO download.

Design choices:

* **Shapes that stress a mask head.** Seven classes (``CLASSES``): convex ones (circle, rotated rectangle,
  triangle), concave ones (star, cross, crescent) whose holes a box cannot describe, and a thin stick
  (a rotated bar 2-5 px wide) whose mask is almost all boundary. Each object is a polygon rasterised by
  ``PIL.ImageDraw`` into a full-image bool mask, so the mask is exact and no anti-aliasing blurs it.
* **Sizes in every COCO area bucket.** Object extents are log-uniform over 8-240 px, with a share of draws
  kept above 150 px because large objects lose the most area to what is in front of them; the larger an
  object the likelier it sits at the back. On the default train split about 54% of annotations are
  small, 33% medium and 14% large (``summarize`` reports the figures for any folder).
* **Occlusion computed, not guessed.** Objects are painted back to front and each one's visible mask is
  its full shape minus the union of the full shapes in front of it, which is exactly what the painter's
  algorithm leaves on screen. ``occlusion = 1 - visible / full`` is therefore the true hidden fraction,
  which the evaluation can use to break errors down by occlusion. About half the objects are placed
  against an earlier one on purpose so that overlaps are common. An object left with almost nothing
  visible (fewer than 8 px, or more than 90% hidden) would be an annotation no one could label, so it is
  removed from the scene, worst first, recomputing visibility after each removal (a removal only
  uncovers the objects behind it). The front-most object is never hidden, so no image ends empty.
* **Colour does not give the class.** Each object gets a random hue and a texture (stripes, gradient or
  speckle), and the background is a smooth noise field with a gradient, faint clutter and pixel noise.
  Each object's colour is the farthest, of a few random candidates, from what it is painted over, so a
  person can always see it.
* **Masks as compressed RLE** (``pycocotools.mask.encode``): exact for any shape, including concave and
  occluded ones that split into pieces, compact, and read by every COCO tool without a polygon fit.
* **Byte-identical output.** Every image draws from its own generator seeded by
  ``SeedSequence([seed, split_index, image_index])``, so the result does not depend on the number of worker
  processes or their scheduling; PNGs carry no metadata and the JSON has a fixed key order, fixed
  separators and no dates.
* **Atomic write.** The dataset is built in a sibling ``OUT.tmp-<pid>`` folder and renamed over ``OUT``
  only after it is complete, so an interrupted run never leaves a half-written dataset behind.
"""

from __future__ import annotations

import colorsys
import json
import os
import shutil
import time
from collections import Counter
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from segcore import atomic
from segcore.errors import DatasetError

__all__ = ["CLASSES", "SPLITS", "generate", "summarize"]

CLASSES: tuple[str, ...] = ("circle", "rectangle", "triangle", "star", "cross", "crescent", "stick")
SPLITS: tuple[str, ...] = ("train", "val", "test")
SIZE = 256
MAX_OBJECTS = 15
MIN_EXTENT, LARGE_EXTENT, MAX_EXTENT = 8.0, 150.0, 240.0
LARGE_SHARE = 0.2
MIN_FULL_AREA = 20
MIN_VISIBLE_AREA = 8
MAX_OCCLUSION = 0.9
OVERLAP_PROBABILITY = 0.5
VERSION = 1
# Pixel coordinates, shared by every gradient and stripe pattern.
_YY, _XX = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)

# (points, fill) steps drawn in order on one mask; fill 0 carves (the crescent's bite).
Outline = list[tuple[np.ndarray, int]]


def _ring(n: int, rx: float, ry: float) -> np.ndarray:
    t = np.arange(n) * (2 * np.pi / n)
    return np.stack([rx * np.cos(t), ry * np.sin(t)], axis=1)


def _outline(name: str, extent: float, rng: np.random.Generator) -> Outline:
    """Polygon(s) of one shape centred on the origin, before rotation; ``extent`` is its longest size."""
    h = extent / 2
    if name == "circle":
        return [(_ring(48, h, h * rng.uniform(0.8, 1.0)), 1)]
    if name == "rectangle":
        b = h * rng.uniform(0.35, 0.9)
        return [(np.array([[-h, -b], [h, -b], [h, b], [-h, b]]), 1)]
    if name == "triangle":
        t = np.arange(3) * (2 * np.pi / 3) + rng.uniform(-0.35, 0.35, 3)
        return [(h * np.stack([np.cos(t), np.sin(t)], axis=1), 1)]
    if name == "star":
        k = int(rng.integers(5, 8))
        radius = np.where(np.arange(2 * k) % 2 == 0, h, h * rng.uniform(0.38, 0.55))
        t = np.arange(2 * k) * (np.pi / k)
        return [(np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1), 1)]
    if name == "cross":
        a = h * rng.uniform(0.25, 0.4)
        pts = [[a, -a], [h, -a], [h, a], [a, a], [a, h], [-a, h], [-a, a], [-h, a], [-h, -a], [-a, -a],
               [-a, -h], [a, -h]]
        return [(np.array(pts, dtype=float), 1)]
    if name == "crescent":
        r = h * rng.uniform(0.8, 0.95)
        bite = _ring(48, r, r) + [h * rng.uniform(0.3, 0.55), 0.0]
        return [(_ring(48, h, h), 1), (bite, 0)]
    if name == "stick":
        w = rng.uniform(1.0, 2.5)
        return [(np.array([[-h, -w], [h, -w], [h, w], [-h, w]]), 1)]
    raise AssertionError(f"unknown shape {name}")


def _polygon_area(outline: Outline) -> float:
    area = 0.0
    for (x, y), fill in ((p.T, f) for p, f in outline):
        area += (1 if fill else -1) * 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))
    return area


def _rasterise(outline: Outline, angle: float, center: np.ndarray) -> np.ndarray:
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    canvas = Image.new("L", (SIZE, SIZE), 0)
    draw = ImageDraw.Draw(canvas)
    for points, fill in outline:
        xy = points @ rotation.T + center
        draw.polygon([tuple(p) for p in xy.tolist()], fill=255 * fill)
    return np.asarray(canvas) > 0


def _place_objects(rng: np.random.Generator) -> list[tuple[int, np.ndarray]]:
    """Random (category_id, full mask) pairs, back to front."""
    objects = []  # (depth key, category_id, mask, center, radius)
    for _ in range(int(rng.integers(1, MAX_OBJECTS + 1))):
        label = int(rng.integers(len(CLASSES)))
        # Large objects lose area to everything in front of them, so some draws are kept to large sizes
        # to keep the large bucket as well filled as the others.
        low = LARGE_EXTENT if rng.random() < LARGE_SHARE else MIN_EXTENT
        extent = float(np.exp(rng.uniform(np.log(low), np.log(MAX_EXTENT))))
        angle = rng.uniform(0, 2 * np.pi)
        while True:
            outline = _outline(CLASSES[label], extent, rng)
            radius = max(float(np.linalg.norm(p, axis=1).max()) for p, fill in outline if fill)
            if radius > SIZE / 2 - 1:
                scale = (SIZE / 2 - 1) / radius
                outline, radius, extent = [(p * scale, f) for p, f in outline], SIZE / 2 - 1, extent * scale
            # Cheap: only the smallest thin shapes can rasterise to fewer pixels than an annotation needs.
            if _polygon_area(outline) >= 2 * MIN_FULL_AREA:
                break
            extent *= 1.5
        if objects and rng.random() < OVERLAP_PROBABILITY:
            _, _, _, other, other_radius = objects[int(rng.integers(len(objects)))]
            t = rng.uniform(0, 2 * np.pi)
            center = other + (other_radius + radius) * rng.uniform(0.15, 0.7) * np.array([np.cos(t), np.sin(t)])
        else:
            center = rng.uniform(0, SIZE, 2)
        # Keep the whole shape inside the image so that hidden pixels are only ever occlusion.
        center = np.clip(center, radius, SIZE - 1 - radius)
        mask = _rasterise(outline, angle, center)
        # Big objects tend to the back, as in real scenes, so they do not bury everything else.
        depth = np.log(extent) + rng.normal(0, 1.0)
        objects.append((depth, label + 1, mask, center, radius))
    objects.sort(key=lambda o: -o[0])
    return [(o[1], o[2]) for o in objects]


def _visible(masks: list[np.ndarray]) -> list[np.ndarray]:
    covered = np.zeros((SIZE, SIZE), dtype=bool)
    visible = [covered] * len(masks)
    for i in range(len(masks) - 1, -1, -1):
        visible[i] = masks[i] & ~covered
        covered = covered | masks[i]
    return visible


def _remove_hidden(masks: list[np.ndarray]) -> tuple[list[int], list[np.ndarray]]:
    """Indices of the objects kept and their visible masks, after dropping the unlabelable ones."""
    keep = list(range(len(masks)))
    while True:
        visible = _visible([masks[i] for i in keep])
        worst, worst_key = None, None
        for j, i in enumerate(keep[:-1]):
            area = np.count_nonzero(visible[j])
            occlusion = 1 - area / np.count_nonzero(masks[i])
            if area < MIN_VISIBLE_AREA or occlusion > MAX_OCCLUSION:
                key = (occlusion, -area)
                if worst_key is None or key > worst_key:
                    worst, worst_key = j, key
        if worst is None:
            return keep, visible
        del keep[worst]


def _hsv(rng: np.random.Generator, saturation: tuple[float, float], value: tuple[float, float]) -> np.ndarray:
    rgb = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(*saturation), rng.uniform(*value))
    return np.array(rgb, dtype=np.float32) * 255


def _smooth_noise(rng: np.random.Generator, amplitude: float) -> np.ndarray:
    cells = int(rng.integers(3, 9))
    coarse = rng.standard_normal((3, cells, cells)).astype(np.float32)
    channels = [np.asarray(Image.fromarray(c).resize((SIZE, SIZE), Image.BICUBIC)) for c in coarse]
    return np.stack(channels, axis=-1) * amplitude


def _background(rng: np.random.Generator) -> np.ndarray:
    base = _hsv(rng, (0.0, 0.35), (0.3, 0.75))
    t = rng.uniform(0, 2 * np.pi)
    ramp = ((_XX * np.cos(t) + _YY * np.sin(t)) / SIZE - 0.5)[..., None] * rng.uniform(0, 60)
    field = base + ramp + _smooth_noise(rng, rng.uniform(8, 30))
    canvas = Image.fromarray(np.clip(field, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    # Faint lines and blobs are background too: a model must not take every edge for an object.
    for _ in range(int(rng.integers(3, 12))):
        colour = tuple(int(c) for c in np.clip(base + rng.uniform(-30, 30, 3), 0, 255))
        x0, y0 = rng.uniform(0, SIZE, 2)
        if rng.random() < 0.5:
            x1, y1 = rng.uniform(0, SIZE, 2)
            draw.line([(x0, y0), (x1, y1)], fill=colour, width=int(rng.integers(1, 4)))
        else:
            rx, ry = rng.uniform(3, 20, 2)
            draw.ellipse([x0 - rx, y0 - ry, x0 + rx, y0 + ry], fill=colour)
    return np.asarray(canvas).astype(np.float32)


def _paint(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> None:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    region, inside = image[box], mask[box]
    under = region[inside].mean(axis=0)
    candidates = [_hsv(rng, (0.35, 1.0), (0.3, 1.0)) for _ in range(4)]
    colour = max(candidates, key=lambda c: float(np.abs(c - under).sum()))
    h, w = inside.shape
    t = rng.uniform(0, 2 * np.pi)
    along = _XX[:h, :w] * np.cos(t) + _YY[:h, :w] * np.sin(t)
    texture = int(rng.integers(4))
    if texture == 0:
        shade = 1 + rng.uniform(0.15, 0.35) * np.sin(along * (2 * np.pi / rng.uniform(4, 14)))
    elif texture == 1:
        shade = 1 + rng.uniform(0.2, 0.4) * (along / max(h, w, 1) - 0.5)
    elif texture == 2:
        shade = 1 + rng.normal(0, rng.uniform(0.05, 0.15), (h, w)).astype(np.float32)
    else:
        shade = np.ones((h, w), dtype=np.float32)
    region[inside] = (colour * shade[..., None])[inside]


def _render(task: tuple[int, int, int, str]) -> list[dict[str, Any]]:
    """Draw one image, write its PNG and return its annotations without ids."""
    seed, split_index, image_index, path = task
    rng = np.random.default_rng(np.random.SeedSequence([seed, split_index, image_index]))
    image = _background(rng)
    objects = _place_objects(rng)
    keep, visible = _remove_hidden([mask for _, mask in objects])
    annotations = []
    for i, vis in zip(keep, visible):
        label, full = objects[i]
        _paint(image, full, rng)
        rle = mask_utils.encode(np.asfortranarray(vis.astype(np.uint8)))
        area = int(np.count_nonzero(vis))
        annotations.append({
            "category_id": label,
            "segmentation": {"size": [SIZE, SIZE], "counts": rle["counts"].decode("ascii")},
            "area": area,
            "bbox": [float(v) for v in mask_utils.toBbox(rle)],
            "iscrowd": 0,
            "occlusion": round(1 - area / np.count_nonzero(full), 4),
        })
    image += rng.standard_normal(image.shape, dtype=np.float32) * rng.uniform(2, 8)
    pixels = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, format="PNG", compress_level=1, optimize=False)
    return annotations


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out} is a file; choose a folder path for the dataset.")
    if out.is_dir() and any(out.iterdir()) and not (out / "annotations").is_dir():
        raise DatasetError(f"{out} is a non-empty folder that is not a dataset; choose another output folder "
                           "or remove it first.")


def generate(out: str | Path, *, seed: int = 0, n_train: int = 1000, n_val: int = 200, n_test: int = 200,
             workers: int | None = None, progress: bool = False) -> dict:
    """Write the synthetic shapes dataset to ``out`` in COCO layout, replacing a dataset already there.

    The same ``seed`` and counts give byte-identical files whatever ``workers`` is (default: one process
    per CPU). Returns ``{"images": {split: n}, "annotations": {split: n}, "seconds": float, "out": str}``.
    """
    start = time.perf_counter()
    out = Path(out).resolve()
    counts = {"train": n_train, "val": n_val, "test": n_test}
    if min(counts.values()) < 0:
        raise DatasetError(f"image counts must not be negative, got {counts}; pass --n-train, --n-val and --n-test "
                           f"of 0 or more.")
    _check_out(out)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (tmp / "annotations").mkdir(parents=True)
        tasks = []
        for split_index, split in enumerate(SPLITS):
            (tmp / split).mkdir()
            tasks += [(seed, split_index, i, str(tmp / split / f"{i + 1:06d}.png")) for i in range(counts[split])]
        results = _run(tasks, workers, progress)
        summary: dict[str, Any] = {"images": {}, "annotations": {}}
        offset = 0
        for split in SPLITS:
            per_image = results[offset:offset + counts[split]]
            offset += counts[split]
            dataset = _coco_json(split, per_image, seed, counts)
            (tmp / "annotations" / f"instances_{split}.json").write_text(
                json.dumps(dataset, separators=(",", ":")) + "\n", encoding="utf-8")
            summary["images"][split] = len(dataset["images"])
            summary["annotations"][split] = len(dataset["annotations"])
        atomic.replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary["seconds"] = round(time.perf_counter() - start, 3)
    summary["out"] = str(out)
    return summary


def _run(tasks: list, workers: int | None, progress: bool) -> list[list[dict[str, Any]]]:
    # The CPUs this process may use, which in a container can be fewer than the machine has.
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = max(1, min(workers or available, len(tasks)))
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(tasks), unit="img", desc="synth")
    results = []
    pool = Pool(workers) if workers > 1 else None
    try:
        # imap keeps the task order, so ids and files do not depend on which worker finished first.
        stream = pool.imap(_render, tasks, chunksize=8) if pool else map(_render, tasks)
        for annotations in stream:
            results.append(annotations)
            if bar is not None:
                bar.update()
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        if bar is not None:
            bar.close()
    return results


def _coco_json(split: str, per_image: list[list[dict[str, Any]]], seed: int, counts: dict[str, int]) -> dict:
    images, annotations = [], []
    for image_id, image_annotations in enumerate(per_image, start=1):
        images.append({"id": image_id, "file_name": f"{image_id:06d}.png", "height": SIZE, "width": SIZE})
        for ann in image_annotations:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, **ann})
    return {
        "info": {"description": "segcore synthetic shapes", "generator": "segcore.data.synth", "version": VERSION,
                 "seed": seed, "split": split, "counts": counts},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": name, "supercategory": "shape"} for i, name in enumerate(CLASSES, 1)],
    }


def summarize(out: str | Path) -> dict:
    """Per-split statistics of a dataset folder: counts, COCO area buckets, objects per image, occlusion."""
    result = {}
    paths = Path(out, "annotations").glob("instances_*.json")
    order = {f"instances_{split}": i for i, split in enumerate(SPLITS)}
    for path in sorted(paths, key=lambda p: (order.get(p.stem, len(order)), p.stem)):
        dataset = json.loads(path.read_text(encoding="utf-8"))
        anns = dataset["annotations"]
        areas = np.array([a["area"] for a in anns], dtype=float)
        occlusion = np.array([a.get("occlusion", 0.0) for a in anns], dtype=float)
        objects = Counter(a["image_id"] for a in anns)
        per_image = np.array([objects[im["id"]] for im in dataset["images"]], dtype=int)
        names = {c["id"]: c["name"] for c in dataset["categories"]}
        result[path.stem.removeprefix("instances_")] = {
            "images": len(dataset["images"]),
            "annotations": len(anns),
            "area": {"small": int((areas < 32 ** 2).sum()),
                     "medium": int(((areas >= 32 ** 2) & (areas <= 96 ** 2)).sum()),
                     "large": int((areas > 96 ** 2).sum())},
            "objects_per_image": {"min": int(per_image.min()) if len(per_image) else 0,
                                  "max": int(per_image.max(initial=0)),
                                  "mean": round(float(per_image.mean()), 2) if len(per_image) else 0.0},
            "occlusion": {"mean": round(float(occlusion.mean()), 4) if len(anns) else 0.0,
                          "max": float(occlusion.max(initial=0.0)),
                          "over_0.25": int((occlusion > 0.25).sum())},
            "per_class": {name: sum(a["category_id"] == i for a in anns) for i, name in names.items()},
        }
    return result
