"""Reading image files as the models take them: upright, 8-bit RGB, (3, H, W) uint8."""

from __future__ import annotations

import os
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms.v2.functional import pil_to_tensor

from segcore.errors import DatasetError

_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode as 8-bit RGB; 16-bit grey is scaled by 255/65535 and rounded, not clipped at 255."""
    if image.mode in _SIXTEEN_BIT_MODES:
        values = np.clip(np.asarray(image, dtype=np.float64), 0, 65535)
        image = Image.fromarray(np.rint(values / 257).astype(np.uint8))
    elif image.mode == "P":
        image = image.convert("RGBA")  # a palette's transparency converts cleanly only through RGBA
    return image.convert("RGB")


def read_image(path: str | os.PathLike | BinaryIO, *, what: str = "image") -> torch.Tensor:
    """The image file as (3, H, W) uint8 RGB, upright as its EXIF orientation says.

    Args:
        path: an image file PIL can open (PNG, JPEG, TIFF …; grey, RGBA, palette and 16-bit included), or
            an open binary file such as an upload's bytes in ``io.BytesIO``.
        what: how the error message names the file, e.g. "image 12".
    """
    try:
        with Image.open(path) as opened:
            image = to_rgb(ImageOps.exif_transpose(opened))
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as error:
        where = f" at {path}" if isinstance(path, (str, os.PathLike)) else ""
        raise DatasetError(f"{what}{where} cannot be read as an image ({error}); check or replace the file.") from None
    return pil_to_tensor(image)
