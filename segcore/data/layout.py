"""The dataset folder's layout (a contract, see DESIGN.md), COCO's own, so a COCO download works as it is::

    DIR/annotations/instances_<split>.json     COCO instances JSON
    DIR/<split>/<file_name>                    the images named in that JSON

Torch-free, so scoring and the dashboard's tables can find the files without loading the data layer.
"""

from __future__ import annotations

import os
from pathlib import Path

from segcore.errors import SegcoreError


def check_split(split: str) -> str:
    """``split`` when it is a plain name (val, test, val2017…); it names the annotation file, the image
    folder and the eval folder, so a "/", "\\" or ".." in it would lead outside the dataset and run folders."""
    if not isinstance(split, str) or not split or split in (".", "..") or any(c in split for c in "/\\\0"):
        raise SegcoreError(f"split {split!r} is not a plain name such as val or test (it names "
                           f"annotations/instances_<split>.json, the <split>/ image folder and the eval folder).")
    if len(os.fsencode(f"instances_{split}.json")) > MAX_NAME_BYTES:
        raise SegcoreError(f"split {split[:40]!r}… is too long to name a file (instances_<split>.json may take at "
                           f"most {MAX_NAME_BYTES} bytes); give a shorter split name.")
    return split


#: The longest file name and path, in bytes, the file systems segcore writes to accept (Linux: 255 and 4096).
MAX_NAME_BYTES, MAX_PATH_BYTES = 255, 4095


def check_path_length(typed: str, what: str) -> None:
    """A SegcoreError naming ``what`` where the text typed as a path is longer than a file system allows
    (which would fail later, in whichever call first touches it, with "File name too long")."""
    encoded = os.fsencode(typed)
    if len(encoded) > MAX_PATH_BYTES or any(len(os.fsencode(part)) > MAX_NAME_BYTES for part in Path(typed).parts):
        raise SegcoreError(f"{what} {typed[:40]!r}… is too long for a file system (a name of at most "
                           f"{MAX_NAME_BYTES} bytes, a path of at most {MAX_PATH_BYTES}); give a shorter one.")


def annotation_path(root: str | os.PathLike, split: str) -> Path:
    """Where the layout puts the annotation file of ``split``."""
    return Path(root) / "annotations" / f"instances_{check_split(split)}.json"


def image_folder(root: str | os.PathLike, split: str) -> Path:
    """Where the layout puts the images of ``split``."""
    return Path(root) / check_split(split)


def lies_within(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether ``path`` is ``folder`` or inside it, once "." and ".." are resolved (lexically: a link the
    operator placed inside ``folder`` is followed as intended)."""
    path, folder = os.path.abspath(path), os.path.abspath(folder)
    return os.path.commonpath([path, folder]) == folder


def split_of(annotation_file: str | os.PathLike) -> tuple[Path | None, str]:
    """(dataset folder, split) of an annotation file; the folder is None when the file is not in the layout."""
    path = Path(annotation_file)
    split = path.stem.removeprefix("instances_")
    return (path.parent.parent if path.parent.name == "annotations" else None), split
