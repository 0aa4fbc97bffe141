"""Evidence crops: the region of the screenshot around the executed point, with the point marked.

Decoding a 1280x800 PNG takes ~25 ms on a small CPU, so crops are made on a background thread
(:class:`EvidenceWriter`); the step record names the file up front, and the step's line in ``steps.jsonl``
is appended only once the crop is on disk (:meth:`EvidenceWriter.wait`), so a live viewer never announces a
step whose crop is not there yet. The writer is drained when the run ends.

The crop's box needs the element under the point, known only once the action ran; the screenshot is known
before. :meth:`EvidenceWriter.decode_ahead` decodes it while the action runs, so that the step's line does
not wait for the decode.
"""

from __future__ import annotations

import io
import queue
import threading
from pathlib import Path

from PIL import Image, ImageDraw

from tools.images import open_rgb
from tools.views import Box
from tracer.run_files import atomic_write
from tracer.schema import Evidence

FIXED_BOX = 200  # screenshot pixels, when the element under the point is unknown or huge
MARGIN = 24
MAX_SIDE = 480
MAX_PENDING = 64  # crops waiting at most


def evidence_box(
    point: tuple[int, int],
    size: tuple[int, int],
    element: Box | None,
    scale: float,
) -> tuple[tuple[int, int, int, int], str]:
    """The crop box in screenshot pixels: the element under the point plus a margin, else a fixed box."""
    width, height = size
    px, py = point
    if element is not None and 0 < element.width * scale <= MAX_SIDE and 0 < element.height * scale <= MAX_SIDE:
        left = element.x * scale - MARGIN
        top = element.y * scale - MARGIN
        right = (element.x + element.width) * scale + MARGIN
        bottom = (element.y + element.height) * scale + MARGIN
        sized_by = "element"
    else:
        half = FIXED_BOX // 2
        left, top, right, bottom = px - half, py - half, px + half, py + half
        sized_by = "fixed"
    box = (max(0, int(left)), max(0, int(top)), min(width, int(right)), min(height, int(bottom)))
    return box, sized_by


def render_crop(png: bytes, box: tuple[int, int, int, int], point: tuple[int, int]) -> bytes:
    """Crop ``box`` out of the PNG, mark ``point`` and encode as WebP."""
    return crop_decoded(decode(png), box, point)


def decode(png: bytes) -> Image.Image:
    """The PNG as an RGB image (the whole decode: what a crop costs most)."""
    return open_rgb(png, what="the step's screenshot")


def crop_decoded(image: Image.Image, box: tuple[int, int, int, int], point: tuple[int, int]) -> bytes:
    """:func:`render_crop` of an image already decoded."""
    crop = image.crop(box)
    draw = ImageDraw.Draw(crop)
    x, y = point[0] - box[0], point[1] - box[1]
    r = 9
    draw.ellipse((x - r, y - r, x + r, y + r), outline=(239, 68, 68), width=3)
    draw.line((x - r - 5, y, x + r + 5, y), fill=(239, 68, 68), width=1)
    draw.line((x, y - r - 5, x, y + r + 5), fill=(239, 68, 68), width=1)
    out = io.BytesIO()
    crop.save(out, "WEBP", quality=80, method=4)
    return out.getvalue()


class EvidenceWriter:
    """Writes evidence crops on a background thread; :meth:`close` waits for all of them."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        # Bounded: a loop far ahead of the crops waits rather than holding every screenshot in memory.
        # (png, None) asks for a decode ahead of the crop (decode_ahead).
        self._queue: queue.Queue[tuple[bytes, Evidence | None] | None] = queue.Queue(maxsize=MAX_PENDING)
        self._decoded: tuple[bytes, Image.Image] | None = None  # the last screenshot decoded ahead (worker only)
        self._errors: list[str] = []
        self._done = threading.Condition()
        self._submitted = 0
        self._finished = 0
        self._thread = threading.Thread(target=self._work, name="evidence-writer", daemon=True)
        self._thread.start()

    def submit(
        self,
        index: int,
        png: bytes,
        size: tuple[int, int],
        point_css: tuple[int, int],
        scale: float,
        element: Box | None,
    ) -> Evidence:
        point = (round(point_css[0] * scale), round(point_css[1] * scale))
        box, sized_by = evidence_box(point, size, element, scale)
        evidence = Evidence(crop=f"steps/{index:04d}/evidence.webp", box=box, point=point, sized_by=sized_by)
        self._queue.put((png, evidence))
        self._submitted += 1
        return evidence

    def decode_ahead(self, png: bytes) -> None:
        """Start decoding ``png`` now, for a crop of it submitted later (the step's, once its action ran): the
        decode then runs beside the action instead of before the step's line. Only the last one is kept."""
        self._queue.put((png, None))

    @property
    def submitted(self) -> int:
        """How many crops were submitted so far: a ticket for :meth:`wait`."""
        return self._submitted

    def wait(self, ticket: int) -> None:
        """Block until the first ``ticket`` crops are written (or failed, or the writer is closed)."""
        with self._done:
            self._done.wait_for(lambda: self._finished >= ticket or not self._thread.is_alive())

    def _work(self) -> None:
        try:
            while (item := self._queue.get()) is not None:
                png, evidence = item
                if evidence is None:
                    try:
                        self._decoded = (png, decode(png))
                    except Exception:  # the crop decodes it again and reports the error
                        self._decoded = None
                    continue
                try:
                    decoded, self._decoded = self._decoded, None
                    if decoded is not None and decoded[0] == png:
                        crop = crop_decoded(decoded[1], evidence.box, evidence.point)
                    else:
                        crop = render_crop(png, evidence.box, evidence.point)
                    atomic_write(self.run_dir / evidence.crop, crop)
                except Exception as exc:  # a bad image must not stop the run; the reader sees no file
                    self._errors.append(f"{evidence.crop}: {exc}")
                with self._done:
                    self._finished += 1
                    self._done.notify_all()
        finally:
            with self._done:  # a waiter must not wait for a thread that is gone
                self._done.notify_all()

    def close(self) -> list[str]:
        """Wait for pending crops; returns the errors met, if any."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        return self._errors
