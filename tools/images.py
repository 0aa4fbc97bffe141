"""Decoding screenshots, in one place: a file that cannot be a screenshot is refused before it is decoded.

A run folder is untrusted. A crafted PNG of a few hundred KB can decode to gigabytes (Pillow only warns up to 179 M
pixels), and a corrupt one raises any of several Pillow errors. Every decode of a screenshot (replay's and diff's
comparisons, evidence crops, attention pictures, OCR, a model's prompt) goes through :func:`open_rgb`, which
reads the size from the header first and raises one error, :class:`UnreadableImage`, naming what it was given.

Usage::

    image = open_rgb(png, what=f"step {index}'s screenshot")  # a PIL RGB image, or UnreadableImage
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from tools.errors import UsageError
from tools.views import MAX_DEVICE_PIXELS

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["UnreadableImage", "check_image_file", "check_screenshot_size", "open_rgb"]


class UnreadableImage(UsageError, ValueError):
    """An image that is not a screenshot Glassbox can read: not an image, corrupt, or larger than any screen."""


def check_screenshot_size(width: int, height: int, *, what: str = "the image") -> None:
    """:class:`UnreadableImage` for a size no screenshot can have (at most ``MAX_DEVICE_PIXELS`` a side)."""
    if not (0 < width <= MAX_DEVICE_PIXELS and 0 < height <= MAX_DEVICE_PIXELS):
        raise UnreadableImage(f"{what} is {width}x{height} pixels: not a screenshot (at most {MAX_DEVICE_PIXELS} px a side)")


def open_rgb(data: bytes, *, what: str = "the image") -> "Image.Image":
    """``data`` decoded as an RGB image; :class:`UnreadableImage` (saying ``what`` it was) when it cannot be."""
    from PIL import Image

    with _reading(what):
        with Image.open(io.BytesIO(data)) as image:
            check_screenshot_size(*image.size, what=what)
            return image.convert("RGB")


def check_image_file(source: Path | bytes, *, what: str | None = None) -> None:
    """:class:`UnreadableImage` unless ``source`` (a file, or its bytes) is an image of a screenshot's size whose file
    is whole: its header and chunks are read and checked (Pillow's ``verify``), its pixels are not decoded. For files
    handed on as they are (a training dataset's images), and to refuse a bad one before slow work (a model's load)."""
    from PIL import Image

    what = what or (str(source) if isinstance(source, Path) else "the image")
    with _reading(what):
        with Image.open(source if isinstance(source, Path) else io.BytesIO(source)) as image:
            check_screenshot_size(*image.size, what=what)
            image.verify()


@contextmanager
def _reading(what: str) -> Iterator[None]:
    """Pillow's many errors for a bad file as one UnreadableImage; its bomb warning silenced (the size check, made
    from the header before any pixel is decoded, refuses a bomb anyway)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    except UnreadableImage:
        raise
    except Image.UnidentifiedImageError:
        raise UnreadableImage(f"{what} is not an image (no known format)") from None
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, EOFError, ... for a bad file
        raise UnreadableImage(f"{what} cannot be decoded ({type(exc).__name__}: {exc})") from None
