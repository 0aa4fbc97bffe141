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
from typing import TYPE_CHECKING, BinaryIO

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
    is whole: its header and chunks are read and checked (Pillow's ``verify``) and a PNG's compressed pixel data is
    inflated to the size its header says; no image is built. For files handed on as they are (a training dataset's
    images), and to refuse a bad one before slow work (a model's load)."""
    from PIL import Image

    what = what or (str(source) if isinstance(source, Path) else "the image")
    with _reading(what):
        with Image.open(source if isinstance(source, Path) else io.BytesIO(source)) as image:
            check_screenshot_size(*image.size, what=what)
            if image.format == "PNG":  # read again as a stream: a file is never held whole (it may be huge)
                with source.open("rb") if isinstance(source, Path) else io.BytesIO(source) as stream:
                    _check_png_pixels(stream, what)
            image.verify()


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type: grey, RGB, palette, grey + alpha, RGBA
_INFLATE_STEP = 1 << 20  # bytes read and inflated at a time: a bomb stops as soon as it passes the expected size
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))  # x, y, dx, dy


def _png_data_size(width: int, height: int, bits: int, interlaced: bool) -> int:
    """Bytes a PNG's pixel data inflates to: each row, a filter byte and its packed pixels (``bits`` per pixel);
    interlaced, the same for each of Adam7's seven reduced images (an empty one has no rows)."""
    if not interlaced:
        return height * (1 + (width * bits + 7) // 8)
    size = 0
    for x, y, dx, dy in _ADAM7:
        columns, rows = (width - x + dx - 1) // dx, (height - y + dy - 1) // dy
        if columns > 0 and rows > 0:
            size += rows * (1 + (columns * bits + 7) // 8)
    return size


def _check_png_pixels(stream: BinaryIO, what: str) -> None:
    """The compressed pixel data of a PNG whose chunks are whole (``verify``, run after this, checks their
    checksums, not what they hold): it must inflate, to exactly the size the header says. Read, inflated and thrown
    away a step at a time, never held; far cheaper than decoding (no filters undone, no image built)."""
    import struct
    import zlib

    width = height = expected = 0
    seen_data = False
    inflate = zlib.decompressobj()
    inflated = 0
    stream.read(len(_PNG_SIGNATURE))
    while len(head := stream.read(8)) == 8:
        length, kind = struct.unpack(">I4s", head)
        if kind == b"IEND":
            break
        if kind == b"IHDR" and length >= 13:
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", stream.read(13))
            expected = _png_data_size(width, height, depth * _PNG_CHANNELS.get(colour, 4), interlace != 0)
            length -= 13
        if kind != b"IDAT":
            stream.seek(length + 4, io.SEEK_CUR)  # the rest of the body, and its checksum
            continue
        seen_data = True
        left = length
        while left > 0 and (piece := stream.read(min(left, _INFLATE_STEP))):
            left -= len(piece)
            while piece:
                try:
                    inflated += len(inflate.decompress(piece, _INFLATE_STEP))
                except zlib.error as exc:
                    raise UnreadableImage(f"{what} cannot be decoded (its pixel data is damaged: {exc})") from None
                if expected and inflated > expected:
                    raise UnreadableImage(f"{what} cannot be decoded (its pixel data is larger than its {width}x{height})")
                piece = inflate.unconsumed_tail
        stream.seek(4, io.SEEK_CUR)  # the checksum
    if not seen_data:
        raise UnreadableImage(f"{what} cannot be decoded (it holds no pixel data: no IDAT chunk)")
    if not inflate.eof:
        raise UnreadableImage(f"{what} cannot be decoded (its pixel data ends early)")
    if expected and inflated != expected:
        raise UnreadableImage(f"{what} cannot be decoded (its pixel data holds {inflated:,} bytes, not {expected:,})")


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
