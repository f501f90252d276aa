"""The dataset folder's layout (a contract, see DESIGN.md), COCO's own, so a COCO download works as it is::

    DIR/annotations/instances_<split>.json     COCO instances JSON
    DIR/<split>/<file_name>                    the images named in that JSON

Torch-free, so scoring and the dashboard's tables can find the files without loading the data layer.
"""

from __future__ import annotations

import os
from pathlib import Path


def annotation_path(root: str | os.PathLike, split: str) -> Path:
    """Where the layout puts the annotation file of ``split``."""
    return Path(root) / "annotations" / f"instances_{split}.json"


def image_folder(root: str | os.PathLike, split: str) -> Path:
    """Where the layout puts the images of ``split``."""
    return Path(root) / split


def split_of(annotation_file: str | os.PathLike) -> tuple[Path | None, str]:
    """(dataset folder, split) of an annotation file; the folder is None when the file is not in the layout."""
    path = Path(annotation_file)
    split = path.stem.removeprefix("instances_")
    return (path.parent.parent if path.parent.name == "annotations" else None), split
