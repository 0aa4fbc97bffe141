"""Every decode of a screenshot goes through tools.images.open_rgb: a file that is not a screenshot is refused with
one error naming it, before it is decoded (a run folder is untrusted)."""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import pytest
from PIL import Image

from tools.errors import UsageError
from tools.images import UnreadableImage, open_rgb


def png_bomb(width: int, height: int) -> bytes:
    """A valid PNG of black pixels: a few hundred KB on disk, width x height x 3 bytes decoded."""
    squeeze = zlib.compressobj(9)
    row = b"\x00" * (1 + width * 3)
    data = b"".join(squeeze.compress(row) for _ in range(height)) + squeeze.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def png(width: int = 64, height: int = 40) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (width, height), (10, 20, 30, 255)).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_screenshot_decodes_to_rgb() -> None:
    image = open_rgb(png())
    assert image.mode == "RGB" and image.size == (64, 40) and image.getpixel((3, 3)) == (10, 20, 30)


def test_an_image_larger_than_any_screen_is_refused_without_a_bomb_warning() -> None:
    bomb = png_bomb(12000, 9000)  # 108 M pixels: Pillow itself would only warn, then decode 324 MB
    assert len(bomb) < 1_000_000
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning would raise here
        with pytest.raises(UnreadableImage, match=r"^steps/0003/screenshot.png is 12000x9000 pixels: not a screenshot"):
            open_rgb(bomb, what="steps/0003/screenshot.png")


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"not an image at all", "is not an image"),
        (b"", "is not an image"),
        (png()[:60], "cannot be decoded"),  # a PNG cut short: its header reads, its pixels do not
    ],
)
def test_a_file_that_is_not_an_image_is_one_error_naming_it(data: bytes, says: str) -> None:
    with pytest.raises(UnreadableImage, match=f"^the recorded screenshot {says}") as caught:
        open_rgb(data, what="the recorded screenshot")
    assert isinstance(caught.value, UsageError) and isinstance(caught.value, ValueError)  # the CLI exits 2


def test_an_image_file_handed_on_is_checked_whole_without_decoding_it(tmp_path) -> None:
    from tools.images import check_image_file

    good, bomb, cut, text = (tmp_path / n for n in ("good.png", "bomb.png", "cut.png", "text.png"))
    good.write_bytes(png())
    bomb.write_bytes(png_bomb(12000, 9000))
    cut.write_bytes(png()[:-20])  # the end of the file lost: the last chunk's checksum and IEND
    text.write_text("hello")
    check_image_file(good)
    with pytest.raises(UnreadableImage, match=r"^images/bomb.png is 12000x9000 pixels"):
        check_image_file(bomb, what="images/bomb.png")
    with pytest.raises(UnreadableImage, match="cannot be decoded"):
        check_image_file(cut)
    with pytest.raises(UnreadableImage, match="is not an image"):
        check_image_file(text)


def rechunk(data: bytes, kind: bytes, change) -> bytes:
    """``data`` (a PNG) with the body of its chunks of ``kind`` changed by ``change`` and their checksums made right
    again: a damage only decoding can find."""
    out, at = [data[:8]], 8
    while at < len(data):
        length, name = struct.unpack(">I4s", data[at : at + 8])
        body = data[at + 8 : at + 8 + length]
        if name == kind:
            body = change(body)
        out.append(struct.pack(">I", len(body)) + name + body + struct.pack(">I", zlib.crc32(name + body)))
        at += 12 + length
    return b"".join(out)


def test_damaged_pixel_data_with_right_checksums_is_refused(tmp_path) -> None:
    from tools.images import check_image_file

    shot = png(300, 200)
    check_image_file(shot)
    garbled = rechunk(shot, b"IDAT", lambda body: body[:10] + bytes(b ^ 0x5A for b in body[10:40]) + body[40:])
    with pytest.raises(UnreadableImage, match=r"^images/3.png cannot be decoded \(its pixel data"):
        check_image_file(garbled, what="images/3.png")
    short = rechunk(shot, b"IDAT", lambda body: zlib.compress(zlib.decompress(body)[:-50]))  # a whole stream, too little
    with pytest.raises(UnreadableImage, match="holds .* bytes, not"):
        check_image_file(short)
    cut = rechunk(shot, b"IDAT", lambda body: body[: len(body) // 2])  # the stream stops half way
    (tmp_path / "cut.png").write_bytes(cut)
    with pytest.raises(UnreadableImage, match="ends early"):
        check_image_file(tmp_path / "cut.png")
    with pytest.raises(UnreadableImage):  # the decoder agrees: each of these fails to decode
        open_rgb(garbled).load()


def interlaced_png(width: int, height: int, *, drop: int = 0) -> bytes:
    """An Adam7-interlaced RGB PNG (Pillow writes none), each pixel's colour from its place; ``drop`` bytes
    fewer pixel data than its header says, in a whole zlib stream."""
    passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
    raw = bytearray()
    for x0, y0, dx, dy in passes:
        xs, ys = range(x0, width, dx), range(y0, height, dy)
        if len(xs) and len(ys):
            for y in ys:
                raw += b"\x00" + b"".join(bytes((x * 3 % 256, y * 5 % 256, 90)) for x in xs)
    data = zlib.compress(bytes(raw[: len(raw) - drop]))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 1)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def test_an_interlaced_png_is_checked_for_the_size_of_its_seven_passes() -> None:
    from tools.images import check_image_file

    whole = interlaced_png(61, 37)
    assert open_rgb(whole).getpixel((60, 36)) == (60 * 3 % 256, 36 * 5 % 256, 90)  # the decoder reads it as built
    check_image_file(whole)
    with pytest.raises(UnreadableImage, match="holds .* bytes, not"):
        check_image_file(interlaced_png(61, 37, drop=40))  # whole zlib, too little: found only by counting passes


def test_a_png_without_pixel_data_is_refused_saying_so() -> None:
    from tools.images import check_image_file

    empty = rechunk(png(), b"IDAT", lambda body: b"")
    chunks = empty.replace(struct.pack(">I", 0) + b"IDAT" + struct.pack(">I", zlib.crc32(b"IDAT")), b"")
    assert b"IDAT" not in chunks
    with pytest.raises(UnreadableImage, match=r"no pixel data: no IDAT chunk"):
        check_image_file(chunks)
