"""Reading the text on a screenshot: one OCR engine interface, with rapidocr as the embedded default.

::

    from tools.ocr import get_engine

    result = get_engine().read(png_bytes)          # OcrResult: lines with text, box (screenshot pixels), score
    for line in result.lines:
        print(line.text, line.box, line.score)

``rapidocr`` (the ``ocr`` extra: ``pip install 'glassbox[ocr]'``) ships its PP-OCR detection and recognition
models (Chinese and English) inside its wheel: nothing is downloaded at run time. It runs them on OpenVINO when
that is installed (the extra installs it), else on onnxruntime: the same ONNX files, the same text and boxes, but
OpenVINO's CPU kernels detect 3.3x sooner (0.49 s against 1.61 s for a 1280x800 shop screenshot on one thread).
Loading it costs seconds (importing the runtime and the models), so :func:`get_engine` makes one engine per name
per process, on first use. Both runtimes release the GIL while they compute, so a reader on a worker thread
leaves the loop's thread free; one engine reads one image at a time (a lock), since two reads at once on a small
CPU are no faster than one after the other.

Another engine plugs in by name: ``register_engine("mine", factory)``, then ``get_engine("mine")``.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from tools.errors import UsageError
from tools.images import open_rgb

DEFAULT_ENGINE = "rapidocr"
Backend = Literal["openvino", "onnxruntime"]
BACKENDS: tuple[Backend, ...] = ("openvino", "onnxruntime")  # the first one installed is the default
REC_MIN_WIDTH = 192  # px a line is padded to at least for recognition: see RapidOcrEngine (rapidocr pads to 320)


class OcrUnavailable(UsageError):
    """The OCR engine asked for cannot be used here (unknown name, or its package is not installed)."""


class OcrLine(BaseModel):
    """One line of text found on the image; ``box`` is left, top, right, bottom in the image's pixels."""

    model_config = ConfigDict(frozen=True)

    text: str
    box: tuple[int, int, int, int]
    score: float = Field(ge=0, le=1)

    @property
    def center(self) -> tuple[float, float]:
        left, top, right, bottom = self.box
        return (left + right) / 2, (top + bottom) / 2

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]


class OcrResult(BaseModel):
    """What an engine read on one image: its lines in reading order (top to bottom, then left to right)."""

    engine: str
    size: tuple[int, int]  # the image's width and height in pixels
    lines: list[OcrLine] = Field(default_factory=list)
    ms: float = 0.0  # how long the read took

    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)


@runtime_checkable
class OcrEngine(Protocol):
    """Reads the text lines of an image (PNG/JPEG bytes, or an RGB array of shape height x width x 3)."""

    name: str

    def read(self, image: bytes | Any) -> OcrResult: ...


EngineFactory = Callable[[], OcrEngine]
_FACTORIES: dict[str, EngineFactory] = {}
_ENGINES: dict[str, OcrEngine] = {}
_ENGINES_LOCK = threading.Lock()


def register_engine(name: str, factory: EngineFactory) -> None:
    """Make ``get_engine(name)`` build its engine with ``factory`` (called once per process, on first use)."""
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"an OCR engine name is letters, digits, - and _, not {name!r}")
    with _ENGINES_LOCK:
        _FACTORIES[name] = factory
        _ENGINES.pop(name, None)


def engine_names() -> list[str]:
    return sorted(_FACTORIES)


def get_engine(name: str = DEFAULT_ENGINE) -> OcrEngine:
    """The process's engine called ``name``, built on first use; :class:`OcrUnavailable` for an unknown name or
    an engine whose package is missing."""
    with _ENGINES_LOCK:
        engine = _ENGINES.get(name)
        if engine is not None:
            return engine
        factory = _FACTORIES.get(name)
        if factory is None:
            raise OcrUnavailable(f"unknown OCR engine {name!r}; known: {', '.join(sorted(_FACTORIES)) or 'none'}")
        engine = factory()
        _ENGINES[name] = engine
        return engine


def ocr_available(name: str = DEFAULT_ENGINE) -> str | None:
    """None when engine ``name`` can be built here, else why not (without loading any model)."""
    if name not in _FACTORIES:
        return f"unknown OCR engine {name!r}; known: {', '.join(sorted(_FACTORIES))}"
    if name == DEFAULT_ENGINE:
        import importlib.util

        if importlib.util.find_spec("rapidocr") is None:
            return "the rapidocr package is not installed (pip install 'glassbox[ocr]')"
        if installed_backend() is None:
            return "neither openvino nor onnxruntime is installed (pip install 'glassbox[ocr]')"
    return None


def installed_backend() -> Backend | None:
    """The runtime rapidocr will compute on here: OpenVINO when installed, else onnxruntime, else None."""
    import importlib.util

    for backend in BACKENDS:
        if importlib.util.find_spec(backend) is not None:
            return backend
    return None


class RecognizedLines:
    """What recognition read for each line image already seen (by its pixels), so an unchanged line is not read
    again. Screens repeat most of their lines: over the bundled run's 21 screenshots, 249 of the 427 lines a full
    read finds are pixel for pixel a line read before (the header, the menu, a form's labels), and the detector
    still finds them after a navigation. Lines are recognized one at a time, so a line's text depends only on its
    pixels: a remembered line is exactly what reading it again would give.

    Bounded (least recently used first out); shared by an engine and its :meth:`RapidOcrEngine.all_cores`."""

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._lines: OrderedDict[bytes, tuple[str, float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def clear(self) -> None:
        with self._lock:
            self._lines.clear()

    @staticmethod
    def key(crop: Any) -> bytes:
        digest = hashlib.blake2b(repr((crop.shape, crop.dtype.str)).encode(), digest_size=16)
        digest.update(memoryview(crop).cast("B") if crop.flags.c_contiguous else crop.tobytes())
        return digest.digest()

    def wrap(self, recognize: Callable[[list[Any]], Any]) -> Callable[[list[Any]], Any]:
        """``recognize`` (rapidocr's step: line images -> TextRecOutput) reading only the lines not seen before."""

        def remembering(crops: list[Any]) -> Any:
            keys = [self.key(crop) for crop in crops]
            first = {k: i for i, k in reversed(list(enumerate(keys)))}  # a line repeated on one screen: read once
            with self._lock:
                known = {k: self._lines[k] for k in keys if k in self._lines}
                for k in known:
                    self._lines.move_to_end(k)
                new = [i for k, i in first.items() if k not in known]
                self.hits += len(crops) - len(new)
                self.misses += len(new)
            if not new:
                output = _rec_output()
                output.elapse = 0.0
            else:
                output = recognize([crops[i] for i in new])
                words = output.word_results if len(output.word_results) == len(new) else (None,) * len(new)
                with self._lock:
                    for i, text, score, word in zip(new, output.txts, output.scores, words, strict=True):
                        known[keys[i]] = self._lines[keys[i]] = (text, score, word)
                    while len(self._lines) > self.limit:
                        self._lines.popitem(last=False)
            read = [known[k] for k in keys]
            output.imgs = crops
            output.txts = tuple(text for text, _, _ in read)
            output.scores = tuple(score for _, score, _ in read)
            output.word_results = tuple(word for _, _, word in read)
            return output

        return remembering


def _rec_output() -> Any:
    from rapidocr.ch_ppocr_rec.typings import TextRecOutput

    return TextRecOutput()


class RapidOcrEngine:
    """rapidocr's PP-OCR pipeline (detection, recognition) with its bundled models, on ``backend`` (None: the
    first of OpenVINO and onnxruntime that is installed; see :func:`installed_backend`).

    ``threads``: the runtime's compute threads (None: all cores). The default, 1, suits a reader beside a
    running loop: it leaves the loop the other cores, and a pool of threads that spin while they wait (as
    onnxruntime's do) slows everything else down on a busy small CPU. :meth:`all_cores` is the same engine on
    every core, for reading once nothing else needs them.

    ``direction``: run rapidocr's text-direction classifier (turns a line it judges upside down before reading
    it). Off by default: a screenshot's text is upright, and on the shop's screenshots the classifier turned one
    upright line over ('Product "Aurora LED desk lamp" was published.' read as 'prod e uue e u uo urhed'); every
    other line read the same without it, a little sooner."""

    name = DEFAULT_ENGINE

    def __init__(
        self,
        *,
        threads: int | None = 1,
        min_score: float = 0.5,
        direction: bool = False,
        backend: Backend | None = None,
        recognized: RecognizedLines | None = None,
        rec_min_width: int = REC_MIN_WIDTH,
    ) -> None:
        try:
            from rapidocr import EngineType, RapidOCR
        except ImportError as exc:
            raise OcrUnavailable(
                f"rapidocr cannot be imported ({exc}); install the ocr extra: pip install 'glassbox[ocr]'"
            ) from None
        chosen = backend or installed_backend()
        if chosen is None:
            raise OcrUnavailable("neither openvino nor onnxruntime is installed (pip install 'glassbox[ocr]')")
        self.threads, self.min_score, self.direction, self.backend = threads, min_score, direction, chosen
        self.rec_min_width = rec_min_width
        params: dict[str, Any] = {
            "Global.log_level": "error",
            "Global.text_score": min_score,
            "Global.use_cls": direction,
            # One line per recognition call: a batch is padded to its widest line, which changes how some lines
            # read ('Choose File No file chosen' or 'Choose FileNo file chosen' by what shared its batch). Alone,
            # a line reads the same whatever else is on the screen, so RecognizedLines returns exactly what a
            # fresh read would; and on OpenVINO it is no slower (recognition of the bundled run's 21 screenshots
            # 15.2 s against 17.8 s in batches of 6).
            "Rec.rec_batch_num": 1,
            # A line is scaled to 48 px high and padded to at least this width. rapidocr pads to 320, and
            # recognition costs in proportion to the padded width, yet most screen lines are short (a button, a
            # label: 80-200 px at 48 high). At 192, the 361 distinct lines of 69 screenshots (shop, Chinese
            # shop, MiniWoB++) took 0.74x as long: 357 read as at 320, and 4 differed ('Choose a category...'
            # instead of '..', for the page's '…', three times; '| No file chosen' instead of '|No file chosen').
            # At 160 and below, one line lost a text (MiniWoB's 'Time left: -' read 'Time left:').
            "Rec.rec_img_shape": [3, 48, rec_min_width],
        }
        if chosen == "openvino":
            for stage in ("Det", "Cls", "Rec"):
                params[f"{stage}.engine_type"] = EngineType.OPENVINO
            if threads is not None:
                params["EngineConfig.openvino.inference_num_threads"] = threads
        elif threads is not None:
            params["EngineConfig.onnxruntime.intra_op_num_threads"] = threads
            params["EngineConfig.onnxruntime.inter_op_num_threads"] = 1
        # model_path/model_dir stay unset: the models inside the wheel are used (rapidocr downloads only when a
        # configured model file is missing, and none is).
        self._ocr = RapidOCR(params=params)
        self._lock = threading.Lock()
        self._building = threading.Lock()
        self._recognized = recognized or RecognizedLines()
        # rapidocr's pipeline calls recognize_txt with the line images it cropped; wrapping that one step on this
        # instance keeps its detection, cropping and filtering exactly as they are.
        setattr(self._ocr, "recognize_txt", self._recognized.wrap(self._ocr.recognize_txt))  # noqa: B010
        self._all_cores: RapidOcrEngine | None = None

    @property
    def runtime(self) -> str:
        """The runtime and its version, e.g. ``openvino 2026.4.1``."""
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"{self.backend} {version(self.backend)}"
        except PackageNotFoundError:
            return self.backend

    def all_cores(self) -> "RapidOcrEngine":
        """This engine's settings on all cores: another engine (onnxruntime fixes its threads when it loads),
        built once and kept."""
        if self.threads is None:
            return self
        with self._building:  # not the read lock: a read in progress (a second or two) must not hold this up
            if self._all_cores is None:
                self._all_cores = RapidOcrEngine(
                    threads=None,
                    min_score=self.min_score,
                    direction=self.direction,
                    backend=self.backend,
                    recognized=self._recognized,  # one memory of the lines already read
                    rec_min_width=self.rec_min_width,
                )
            return self._all_cores

    def warm_up(self) -> None:
        """Load both models and run the detector once, so the first screenshot is read at warm speed: rapidocr
        loads a model on first use, and OpenVINO compiles it then (0.8 s for the two, and 0.4 s more for the
        first detection, on one thread)."""
        import numpy as np

        with self._lock:
            self._ocr._load_det_model()
            self._ocr._load_rec_model()
        self.read(np.full((64, 64, 3), 255, np.uint8))

    def forget(self) -> None:
        """Forget the lines already read (as a new process would start): for measuring a first read."""
        self._recognized.clear()

    def read(self, image: bytes | Any) -> OcrResult:
        import numpy as np

        array = _rgb_array(image)
        height, width = array.shape[:2]
        started = time.perf_counter()
        bgr = np.ascontiguousarray(array[:, :, ::-1])  # rapidocr takes an array as OpenCV's BGR
        with self._lock:
            output = self._ocr(bgr)
        ms = round((time.perf_counter() - started) * 1000, 2)
        lines = _lines(output, (0, 0), (width, height))
        return OcrResult(engine=self.name, size=(width, height), lines=sort_lines(lines), ms=ms)

    def region_scale_ok(self, size: tuple[int, int]) -> bool:
        """Whether :meth:`read_region` on an image of ``size`` detects at (about) the scale a full read does:
        rapidocr detects on an image whose short side is at least the detector's limit (736) and whose long side
        is at most its bound (2000) at its own size, rounded to multiples of 32; a crop is read at its own size.
        A short side a little under the limit (1280x720: enlarged 2%) is close enough; a smaller image is not."""
        width, height = size
        return min(width, height) >= DET_MIN_SIDE / DET_SCALE_SLACK and max(width, height) <= DET_MAX_SIDE

    def read_region(self, image: Any, box: tuple[int, int, int, int]) -> OcrResult:
        """The lines inside ``box`` (left, top, right, bottom) of an RGB array, in the image's pixels, detected at
        the image's own scale (rapidocr would otherwise enlarge a crop until its short side is 736 px, which both
        costs time and finds other boxes). ``box`` should be aligned to 32 px (the detector's stride), so the crop
        sees the same pixels on the same grid as a full read; see :mod:`tools.ocr_incremental`."""
        import numpy as np

        array = _rgb_array(image)
        height, width = array.shape[:2]
        left, top, right, bottom = box
        if not (0 <= left < right <= width and 0 <= top < bottom <= height):
            raise ValueError(f"region {box} is not inside the {width}x{height} image")
        started = time.perf_counter()
        bgr = np.ascontiguousarray(array[top:bottom, left:right, ::-1])
        with self._lock:
            detector = self._ocr._load_det_model()
            saved = detector.limit_type, detector.limit_side_len
            detector.limit_type, detector.limit_side_len = "max", 1_000_000  # ratio 1: the crop at its own size
            try:
                output = self._ocr(bgr)
            finally:
                detector.limit_type, detector.limit_side_len = saved
        ms = round((time.perf_counter() - started) * 1000, 2)
        lines = _lines(output, (left, top), (width, height))
        return OcrResult(engine=self.name, size=(width, height), lines=sort_lines(lines), ms=ms)


DET_MIN_SIDE = 736  # rapidocr's detector: limit_type min, limit_side_len 736
DET_MAX_SIDE = 2000  # rapidocr's Global.max_side_len
DET_SCALE_SLACK = 1.05  # a full read's detection scale this close to 1 counts as 1 for region reads


def sort_lines(lines: list[OcrLine]) -> list[OcrLine]:
    """Reading order: top to bottom in 8 px bands, then left to right."""
    return sorted(lines, key=lambda line: (line.box[1] // 8, line.box[0]))


def _lines(output: Any, offset: tuple[int, int], size: tuple[int, int]) -> list[OcrLine]:
    """rapidocr's output as lines with boxes in the image's pixels (``offset``: where the read crop starts)."""
    dx, dy = offset
    width, height = size
    lines = []
    boxes = getattr(output, "boxes", None)
    texts, scores = getattr(output, "txts", None) or (), getattr(output, "scores", None) or ()
    if boxes is not None:
        for quad, text, score in zip(boxes, texts, scores, strict=False):
            xs = [float(p[0]) + dx for p in quad]
            ys = [float(p[1]) + dy for p in quad]
            box = (
                max(0, int(min(xs))),
                max(0, int(min(ys))),
                min(width, int(round(max(xs)))),
                min(height, int(round(max(ys)))),
            )
            lines.append(OcrLine(text=str(text), box=box, score=round(min(1.0, max(0.0, float(score))), 4)))
    return lines


def _rgb_array(image: bytes | Any) -> Any:
    """An RGB uint8 array from encoded image bytes or an array."""
    import numpy as np

    if isinstance(image, (bytes, bytearray, memoryview)):
        return np.asarray(open_rgb(bytes(image), what="the screenshot to read"))
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"an OCR image is encoded bytes or an RGB array (height x width x 3), not shape {array.shape}")
    return array


register_engine(DEFAULT_ENGINE, RapidOcrEngine)
