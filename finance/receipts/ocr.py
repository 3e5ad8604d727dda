"""OCR engines for receipt images, behind one small protocol.

Two real engines:

* ``rapidocr`` — PP-OCR detection + recognition models that ship inside the ``rapidocr``
  wheel, run by onnxruntime. Nothing is downloaded at run time; if the shipped model files
  are missing the engine refuses to start instead of reaching for the network.
* ``tesseract`` — the Debian ``tesseract`` binary, called as a subprocess with TSV output.

Both return :class:`OcrResult`: text fragments with pixel boxes, and the same fragments
merged into visual rows (:func:`merge_rows`), so a receipt's item name and its price, or
"TOTAL" and its amount, end up on one line even when the engine saw them as separate
pieces.

onnxruntime phones home unless ``ORT_DISABLE_TELEMETRY=1`` is in the environment *before*
it is imported; :func:`get_engine` sets it (if unset) just before the lazy import.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from PIL import Image

EngineName = Literal["rapidocr", "tesseract"]
ENGINE_NAMES: tuple[EngineName, ...] = ("rapidocr", "tesseract")
#: Chosen by benchmarks/bench_ocr.py on the receipts_dev set (see docs/benchmarks.md).
DEFAULT_ENGINE: EngineName = "rapidocr"


class OcrUnavailableError(RuntimeError):
    """The requested OCR engine is unknown or not installed on this machine."""


class OcrFailedError(RuntimeError):
    """The OCR engine was installed but failed on this image."""


@dataclass(frozen=True, order=True)
class Box:
    """An axis-aligned pixel box: ``left <= right``, ``top <= bottom``."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def height(self) -> int:
        """Height in pixels."""
        return self.bottom - self.top

    @property
    def width(self) -> int:
        """Width in pixels."""
        return self.right - self.left

    @property
    def center_y(self) -> int:
        """Vertical centre (rounded down)."""
        return (self.top + self.bottom) // 2

    def union(self, other: Box) -> Box:
        """The smallest box holding both."""
        return Box(min(self.left, other.left), min(self.top, other.top),
                   max(self.right, other.right), max(self.bottom, other.bottom))


@dataclass(frozen=True)
class OcrFragment:
    """A piece of text the engine read in one go (a word or a run of words) and its box."""

    text: str
    box: Box
    confidence: int  # 0–100


@dataclass(frozen=True)
class OcrLine:
    """One visual row of the receipt: fragments left to right, joined with spaces."""

    text: str
    box: Box
    confidence: int  # 0–100, the weakest fragment's
    fragments: tuple[OcrFragment, ...] = ()


@dataclass(frozen=True)
class OcrResult:
    """What an engine read on one image."""

    engine: str
    width: int
    height: int
    lines: tuple[OcrLine, ...]
    fragments: tuple[OcrFragment, ...] = field(default=(), repr=False)
    elapsed_ms: int = 0

    @property
    def text(self) -> str:
        """The rows as plain text, one per line."""
        return "\n".join(line.text for line in self.lines)


@runtime_checkable
class OcrEngine(Protocol):
    """Anything that turns a receipt image into rows of text with boxes."""

    name: str

    def recognize(self, image: Image.Image) -> OcrResult:
        """Read the text on ``image`` (any Pillow mode; upright is best)."""
        ...


# --- layout -------------------------------------------------------------------------------

def merge_rows(fragments: Iterable[OcrFragment], *, min_overlap_pct: int = 50) -> tuple[
        OcrLine, ...]:
    """Group fragments into visual rows by vertical overlap, each row sorted left to right.

    Two fragments share a row when their vertical extents overlap by at least
    ``min_overlap_pct`` percent of the shorter one and they do not overlap horizontally.
    This keeps "Total" and "12.34" together across a wide gap, and splits text stacked above.
    """
    items = sorted((f for f in fragments if f.text.strip()), key=lambda f: (f.box.top, f.box.left))
    rows: list[list[OcrFragment]] = []
    row_boxes: list[Box] = []
    for frag in items:
        best, best_overlap = -1, 0
        for index in range(max(0, len(rows) - 8), len(rows)):
            overlap = _row_overlap_pct(rows[index], frag)
            if overlap >= min_overlap_pct and overlap > best_overlap and not any(
                    _x_overlap(other.box, frag.box) for other in rows[index]):
                best, best_overlap = index, overlap
        if best < 0:
            rows.append([frag])
            row_boxes.append(frag.box)
        else:
            rows[best].append(frag)
            row_boxes[best] = row_boxes[best].union(frag.box)
    lines = []
    for row, box in zip(rows, row_boxes, strict=True):
        row.sort(key=lambda f: f.box.left)
        lines.append(OcrLine(
            text=" ".join(f.text.strip() for f in row),
            box=box,
            confidence=min(f.confidence for f in row),
            fragments=tuple(row),
        ))
    lines.sort(key=lambda line: (line.box.center_y, line.box.left))
    return tuple(lines)


def _row_overlap_pct(row: list[OcrFragment], frag: OcrFragment) -> int:
    """Vertical overlap with the row's nearest fragment, in percent of the shorter height."""
    nearest = min(row, key=lambda other: min(abs(other.box.right - frag.box.left),
                                             abs(frag.box.right - other.box.left)))
    top = max(nearest.box.top, frag.box.top)
    bottom = min(nearest.box.bottom, frag.box.bottom)
    shorter = max(1, min(nearest.box.height, frag.box.height))
    return max(0, bottom - top) * 100 // shorter


def _x_overlap(a: Box, b: Box) -> bool:
    """True when the boxes overlap horizontally by more than a third of the narrower one."""
    overlap = min(a.right, b.right) - max(a.left, b.left)
    return overlap > min(a.width, b.width) // 3


# --- engines ------------------------------------------------------------------------------

class RapidOcrEngine:
    """RapidOCR with the models shipped in its wheel (PP-OCR small det/rec), via onnxruntime."""

    name = "rapidocr"

    def __init__(self, *, use_angle_classifier: bool = False, threads: int | None = None,
                 extra_params: Mapping[str, object] | None = None,
                 low_memory: bool = True) -> None:
        """Prepare the engine (models load lazily on the first image).

        Raises :class:`OcrUnavailableError` when rapidocr or its shipped models are missing.
        ``extra_params`` are passed to RapidOCR as dotted config keys (e.g.
        ``{"Det.limit_side_len": 960}``). ``low_memory`` turns off onnxruntime's per-shape
        memory patterns, which roughly halves the resident memory on receipts of varying
        sizes at no measurable cost in speed.
        """
        if "onnxruntime" not in sys.modules:
            os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
        elif not os.environ.get("ORT_DISABLE_TELEMETRY"):
            warnings.warn("onnxruntime was imported before ORT_DISABLE_TELEMETRY=1 was set; "
                          "its telemetry may be active", RuntimeWarning, stacklevel=2)
        try:
            import numpy
            import rapidocr
            from rapidocr import RapidOCR
        except ImportError as exc:
            raise OcrUnavailableError(
                "the rapidocr engine is not installed (pip install rapidocr onnxruntime)") from exc
        models = Path(rapidocr.__file__).resolve().parent / "models"
        shipped = sorted(p.name for p in models.glob("*.onnx")) if models.is_dir() else []
        if not any("det" in n for n in shipped) or not any("rec" in n for n in shipped):
            raise OcrUnavailableError(
                f"rapidocr's shipped models are missing under {models}; reinstall the wheel "
                "(models are never downloaded at run time)")
        params: dict[str, object] = {
            "Global.log_level": "error",
            "Global.use_cls": use_angle_classifier,
            "Global.model_root_dir": str(models),
        }
        if threads:
            params["EngineConfig.onnxruntime.intra_op_num_threads"] = threads
        params.update(extra_params or {})
        if low_memory:
            _disable_ort_memory_patterns()
        self._numpy = numpy
        self._engine = RapidOCR(params=params)
        self._lock = threading.Lock()

    def recognize(self, image: Image.Image) -> OcrResult:
        """Detect and read text regions; each region becomes a fragment, then rows merge."""
        rgb = image.convert("RGB")
        # RapidOCR works on BGR arrays (OpenCV order).
        array = self._numpy.ascontiguousarray(self._numpy.asarray(rgb)[:, :, ::-1])
        started = time.perf_counter()
        with self._lock:  # one onnxruntime session set per process, used one call at a time
            try:
                output = self._engine(array)
            except Exception as exc:  # noqa: BLE001 - any engine failure is an OCR failure
                raise OcrFailedError(f"rapidocr failed: {type(exc).__name__}") from exc
        elapsed = int((time.perf_counter() - started) * 1000)
        fragments = []
        boxes = getattr(output, "boxes", None)
        texts = getattr(output, "txts", None) or ()
        scores = getattr(output, "scores", None) or ()
        if boxes is not None:
            for quad, text, score in zip(boxes, texts, scores, strict=False):
                xs = [int(round(p[0])) for p in quad]
                ys = [int(round(p[1])) for p in quad]
                fragments.append(OcrFragment(
                    text=str(text).strip(),
                    box=Box(min(xs), min(ys), max(xs), max(ys)),
                    confidence=max(0, min(100, int(round(score * 100)))),
                ))
        return OcrResult(engine=self.name, width=rgb.width, height=rgb.height,
                         lines=merge_rows(fragments), fragments=tuple(fragments),
                         elapsed_ms=elapsed)


_patch_lock = threading.Lock()


def _disable_ort_memory_patterns() -> None:
    """Make rapidocr's onnxruntime sessions skip memory-pattern caching.

    rapidocr (3.x) builds its ``SessionOptions`` in ``OrtInferSession._init_sess_opts`` and
    offers no setting for ``enable_mem_pattern``. With it on, onnxruntime keeps a buffer plan
    per input shape, and receipt crops come in every shape: resident memory grows to about
    0.7 GB (peak ~0.9 GB) instead of ~0.35 GB (peak ~0.6 GB). The wrapper is installed once,
    only when that method exists, and changes nothing else.
    """
    with _patch_lock:
        try:
            from rapidocr.inference_engine.onnxruntime import main as ort_main
        except ImportError:
            return
        session_cls = getattr(ort_main, "OrtInferSession", None)
        original = getattr(session_cls, "_init_sess_opts", None)
        if session_cls is None or original is None or getattr(original, "_low_memory", False):
            return

        def init_sess_opts(cfg: object) -> object:
            options = original(cfg)
            options.enable_mem_pattern = False
            return options

        init_sess_opts._low_memory = True  # type: ignore[attr-defined]
        session_cls._init_sess_opts = staticmethod(init_sess_opts)


class TesseractEngine:
    """Tesseract 5 via its command-line binary, TSV output (words with boxes and confidence).

    ``--psm 6`` ("a single uniform block of text") keeps a receipt's item and price on one
    row; on the receipts_dev scans it read more totals and dates than ``--psm 4`` (single
    column), ``3`` (automatic) or ``11`` (sparse text). Narrow scans are upscaled to about
    1000 px wide first, since Tesseract wants ~20–30 px tall capitals.
    """

    name = "tesseract"

    def __init__(self, *, binary: str | None = None, language: str = "eng", psm: int = 6,
                 timeout_s: int = 60, min_width: int = 1000) -> None:
        """Find the binary and the language data; raises :class:`OcrUnavailableError`."""
        found = binary or shutil.which("tesseract")
        if not found:
            raise OcrUnavailableError(
                "the tesseract engine is not installed "
                "(apt-get install tesseract-ocr tesseract-ocr-eng)")
        try:
            langs = subprocess.run([found, "--list-langs"], capture_output=True, text=True,
                                   timeout=30, check=False).stdout.split()
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise OcrUnavailableError(f"tesseract cannot be run: {exc}") from exc
        if language not in langs:
            raise OcrUnavailableError(
                f"tesseract has no {language!r} language data "
                f"(apt-get install tesseract-ocr-{language})")
        self._binary = found
        self._language = language
        self._psm = psm
        self._timeout_s = timeout_s
        self._min_width = min_width

    def recognize(self, image: Image.Image) -> OcrResult:
        """Run tesseract on the image (upscaled when its text is small) and merge rows."""
        gray = image.convert("L")
        scale_pct = 100
        # Tesseract reads best at ~30 px cap height; narrow scans (≈500 px wide) are too small.
        if gray.width < self._min_width:
            scale_pct = min(300, self._min_width * 100 // max(1, gray.width))
            gray = gray.resize((gray.width * scale_pct // 100, gray.height * scale_pct // 100),
                               Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        gray.save(buffer, format="PNG")
        started = time.perf_counter()
        env = dict(os.environ, OMP_THREAD_LIMIT=os.environ.get("OMP_THREAD_LIMIT", "1"))
        try:
            completed = subprocess.run(
                [self._binary, "stdin", "stdout", "-l", self._language, "--psm", str(self._psm),
                 "--dpi", "300", "-c", "preserve_interword_spaces=1", "tsv"],
                input=buffer.getvalue(), capture_output=True, timeout=self._timeout_s,
                check=False, env=env)
        except subprocess.TimeoutExpired as exc:
            raise OcrFailedError(f"tesseract took longer than {self._timeout_s} s") from exc
        except OSError as exc:
            raise OcrFailedError(f"tesseract could not be started: {exc}") from exc
        if completed.returncode != 0:
            raise OcrFailedError("tesseract failed: "
                                 + completed.stderr.decode("utf-8", "replace").strip()[-300:])
        elapsed = int((time.perf_counter() - started) * 1000)
        words = parse_tesseract_tsv(completed.stdout.decode("utf-8", "replace"), scale_pct)
        fragments = _tesseract_runs(words)
        return OcrResult(engine=self.name, width=image.width, height=image.height,
                         lines=merge_rows(fragments), fragments=tuple(fragments),
                         elapsed_ms=elapsed)


@dataclass(frozen=True)
class _TessWord:
    key: tuple[int, int, int]  # block, paragraph, line
    fragment: OcrFragment


def parse_tesseract_tsv(tsv: str, scale_pct: int = 100) -> list[_TessWord]:
    """Words from tesseract's TSV output, boxes mapped back to the original image scale."""
    words = []
    for row in tsv.splitlines()[1:]:
        cols = row.split("\t")
        if len(cols) < 12 or cols[0] != "5" or not cols[11].strip():
            continue
        try:
            block, par, line = int(cols[2]), int(cols[3]), int(cols[4])
            left, top, width, height = (int(c) for c in cols[6:10])
            conf = int(float(cols[10]))  # float-ok: tesseract prints e.g. "96.437408"
        except ValueError:
            continue
        box = Box(left * 100 // scale_pct, top * 100 // scale_pct,
                  (left + width) * 100 // scale_pct, (top + height) * 100 // scale_pct)
        words.append(_TessWord((block, par, line),
                               OcrFragment(cols[11].strip(), box, max(0, min(100, conf)))))
    return words


def _tesseract_runs(words: Sequence[_TessWord]) -> list[OcrFragment]:
    """Join words of one tesseract line into runs, split where the gap is wide (columns)."""
    runs: list[OcrFragment] = []
    current: list[OcrFragment] = []
    current_key: tuple[int, int, int] | None = None

    def flush() -> None:
        if current:
            box = current[0].box
            for frag in current[1:]:
                box = box.union(frag.box)
            runs.append(OcrFragment(" ".join(f.text for f in current), box,
                                    min(f.confidence for f in current)))
            current.clear()

    for word in words:
        frag = word.fragment
        if current and (word.key != current_key
                        or frag.box.left - current[-1].box.right > 2 * max(
                            frag.box.height, current[-1].box.height)):
            flush()
        current.append(frag)
        current_key = word.key
    flush()
    return runs


# --- registry -----------------------------------------------------------------------------

_engines: dict[str, OcrEngine] = {}
_engines_lock = threading.Lock()


def get_engine(name: str = DEFAULT_ENGINE) -> OcrEngine:
    """The process-wide engine for ``name`` ("rapidocr" | "tesseract"), created on first use.

    Raises :class:`OcrUnavailableError` for an unknown name or a missing installation.
    """
    key = name.strip().lower()
    if key not in ENGINE_NAMES:
        raise OcrUnavailableError(
            f"unknown OCR engine {name!r}; choose one of {', '.join(ENGINE_NAMES)}")
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = RapidOcrEngine() if key == "rapidocr" else TesseractEngine()
            _engines[key] = engine
        return engine


def available_engines() -> tuple[str, ...]:
    """Names of the engines that can start here (tries each; cheap after the first call)."""
    names = []
    for name in ENGINE_NAMES:
        try:
            get_engine(name)
        except OcrUnavailableError:
            continue
        names.append(name)
    return tuple(names)
