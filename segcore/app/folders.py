"""Folders a visitor types into the dashboard: read only where the dashboard's operator pointed it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segcore import runs
from segcore.data import layout


def dataset_paths(found: list[dict[str, Any]]) -> list[str]:
    """The dataset folders the runs of ``found`` were trained on, as their run.json records them."""
    return [d["path"] for r in found
            if isinstance(d := r.get("dataset"), dict) and isinstance(d.get("path"), str) and d["path"]]


def dataset_folder(typed: str, found: list[dict[str, Any]], *, remedy: str) -> Path:
    """A dataset folder typed into a page, when it lies under the dashboard's working folder or is the
    dataset of one of the runs ``found``; otherwise one SegcoreError ending in ``remedy``."""
    return runs.confine(typed, [Path.cwd(), *dataset_paths(found)], what="dataset folder", remedy=remedy)


def split_folder(typed: str, split: str, found: list[dict[str, Any]], *, remedy: str) -> Path:
    """The image folder of ``split`` in a typed dataset folder (:func:`dataset_folder`), the split checked."""
    return dataset_folder(typed, found, remedy=remedy) / layout.check_split(split)


def image_files(folder: Path) -> list[str]:
    """The file names in a split's image folder, sorted; none when it is not a folder."""
    return sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def split_source(folder: Path) -> runs.DatasetSource | None:
    """The ground truth of a split's image folder (DIR/<split>), where the dataset has its annotations file."""
    annotations = layout.annotation_path(folder.parent, folder.name)
    return runs.DatasetSource(annotations, folder, folder.parent, folder.name) if annotations.is_file() else None
