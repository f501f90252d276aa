"""Reading image files as the models take them: upright, 8-bit RGB, (3, H, W) uint8.

Every file is treated as untrusted (a dataset from elsewhere, an upload): an empty, damaged, truncated or
oversized file, or one that is not an image, is refused with one :class:`DatasetError` sentence naming it.
"""

from __future__ import annotations

import os
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms.v2.functional import pil_to_tensor

from segcore.errors import DatasetError

#: The most pixels segcore decodes from one image: 8192x8192 (67 megapixels). That takes in the largest
#: common photos (a 48-megapixel phone's 8064x6048, a 61-megapixel camera's 9504x6336) while bounding memory:
#: decoding peaks at about 10 bytes a pixel (PIL's 4-byte RGB, and its bytes copied on the way to the 3-byte
#: tensor), 640 MiB at the limit, and every model scales its input down to about a thousand pixels a side
#: anyway. PIL's own guard (``Image.MAX_IMAGE_PIXELS``, 89 megapixels) only warns below twice that and is a
#: global any other code may change, so segcore checks its own number against the size the file declares,
#: before a pixel is decoded.
MAX_PIXELS = 8192 * 8192

#: The formats segcore decodes, by content whatever the file's extension. PIL reads many more, but each
#: decoder is more code running on untrusted bytes (EPS even hands the file to Ghostscript), and datasets and
#: photos come in these (the multi-picture JPEGs of many phones and cameras, MPO, are read by the JPEG one).
FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "GIF", "WEBP")

_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode as 8-bit RGB; 16-bit grey is scaled by 255/65535 and rounded, not clipped at 255.

    Alpha is dropped (the colour under it is kept, as torchvision's readers do); CMYK and palettes are
    converted by PIL.
    """
    if image.mode in _SIXTEEN_BIT_MODES:
        values = np.clip(np.asarray(image), 0, 65535).astype(np.uint32)
        # round(v / 257) in integers: no float64 copy of a large image (65535 = 255 * 257, so no ties)
        image = Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8))
    elif image.mode == "P":
        image = image.convert("RGBA")  # a palette's transparency converts cleanly only through RGBA
    return image if image.mode == "RGB" else image.convert("RGB")


def read_image(source: str | os.PathLike | BinaryIO, *, what: str = "image",
               remedy: str = "check or replace the file") -> torch.Tensor:
    """The image file as (3, H, W) uint8 RGB, upright as its EXIF orientation says.

    Args:
        source: an image file in one of :data:`FORMATS` (grey, RGBA, CMYK, palette and 16-bit included),
            or an open binary file such as an upload's bytes in ``io.BytesIO``.
        what: how the error message names the file, e.g. "image 12"; a path is added after it.
        remedy: what the error message tells the user to do about a file that is not a readable image.

    Raises:
        DatasetError: one sentence naming the file when it is empty, not an image, damaged or truncated, or
            larger than :data:`MAX_PIXELS`.
    """
    subject = f"{what} at {source}" if isinstance(source, (str, os.PathLike)) else what
    if isinstance(source, (str, os.PathLike)) and os.path.exists(source) and not os.path.isfile(source):
        # a FIFO, a socket or a device would block the read, or never end: only regular files are images
        kind = "a folder" if os.path.isdir(source) else "not a regular file (a pipe, socket or device)"
        raise DatasetError(f"{subject} is {kind}; {remedy}.")
    try:
        opened = Image.open(source, formats=FORMATS)  # reads the header only
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # PIL's own guard fired first (or its warning is raised as an error): the size is over ours as well
        raise DatasetError(_too_large(subject)) from None
    except UnidentifiedImageError:
        problem = "is empty (0 bytes)" if _is_empty(source) else "cannot be read as an image"
        raise DatasetError(f"{subject} {problem}; {remedy}.") from None
    except (OSError, ValueError) as error:
        raise DatasetError(f"{subject} cannot be opened ({_reason(error)}); {remedy}.") from None
    with opened:
        width, height = opened.size
        if width * height > MAX_PIXELS:
            raise DatasetError(_too_large(subject, width, height))
        bits = opened.tag_v2.get(258) if opened.format == "TIFF" and hasattr(opened, "tag_v2") else None
        if opened.mode == "F" or opened.mode.startswith("I") and bits and max(bits) > 16:
            # 32-bit integers or floats have no one scale to 8 bits (a camera's may use 12 of them, a model's
            # output 0..1): a guess would show a white or black picture without a word
            depth = "floating-point" if opened.mode == "F" else f"{max(bits)}-bit integer"
            raise DatasetError(f"{subject} holds {depth} pixels, which have no standard scale to 8 bits; convert "
                               f"it to an 8- or 16-bit image and try again.")
        try:
            opened.load()  # the pixels are decoded here, once the size is known to be within the limit
            ImageOps.exif_transpose(opened, in_place=True)  # in place: no second copy of a large image
            image = to_rgb(opened)
        except (OSError, ValueError, SyntaxError, EOFError) as error:
            reason = _reason(error)
            problem = ("is truncated: the file ends before its pixels do" if "truncated" in reason.lower()
                       else f"is damaged ({reason})")
            raise DatasetError(f"{subject} {problem}; {remedy}.") from None
        return pil_to_tensor(image)  # before the file closes: closing frees the pixels of an RGB image


def _too_large(subject: str, width: int | None = None, height: int | None = None) -> str:
    size = f"is {width}x{height} pixels, more" if width is not None else "declares more pixels"
    return (f"{subject} {size} than segcore's limit of {MAX_PIXELS:,} pixels (8192x8192) for one image, set to "
            f"bound the memory decoding takes; scale it down below the limit and try again.")


def _is_empty(source: str | os.PathLike | BinaryIO) -> bool:
    if isinstance(source, (str, os.PathLike)):
        return os.path.getsize(source) == 0
    return source.seek(0, os.SEEK_END) == 0


def _reason(error: Exception) -> str:
    """PIL's or the system's words for what went wrong, without a trailing full stop."""
    return str(getattr(error, "strerror", None) or error).rstrip(".")
