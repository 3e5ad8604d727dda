"""Safe loading of receipt files (photos, scans and PDFs) from untrusted bytes.

Staff forward whatever their phone or scanner produced, so everything here treats the input
as hostile: the type is sniffed from magic bytes (the file name is never trusted), sizes and
pixel counts are checked from the headers *before* anything is decoded, PDFs are bounded in
bytes and pages, and every refusal is a :class:`ReceiptInputError` with a message a person
can read.

What comes out is a :class:`LoadedReceipt`: the sha256 of the raw bytes (duplicate
detection), the detected kind, and one :class:`ReceiptPage` per page holding either the PDF
text layer or an upright, lightly deskewed, contrast-enhanced grayscale image ready for OCR.
"""

from __future__ import annotations

import hashlib
import io
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from PIL import Image, ImageFile, ImageOps, ImageStat, UnidentifiedImageError

ReceiptKind = Literal["jpeg", "png", "webp", "heic", "pdf"]

#: The brands in an ISO-BMFF ``ftyp`` box that mean HEIF/HEIC stills (iPhone photos).
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1",
                          b"msf1"})


class ReceiptInputError(ValueError):
    """The bytes cannot be used as a receipt; the message says why, in plain words."""


@dataclass(frozen=True)
class ReceiptLimits:
    """Upper bounds applied before decoding anything (all configurable, defaults are safe)."""

    max_image_bytes: int = 30 * 1024 * 1024
    max_pixels: int = 50_000_000
    max_pdf_bytes: int = 20 * 1024 * 1024
    max_pdf_pages: int = 10
    #: Resolution used to render a PDF page that has no text layer.
    pdf_render_dpi: int = 200
    #: Longest side of the image handed to OCR; bigger photos are scaled down.
    max_ocr_side: int = 2400
    #: A PDF page counts as having a text layer from this many non-blank characters.
    min_text_layer_chars: int = 20


DEFAULT_LIMITS = ReceiptLimits()


@dataclass(frozen=True)
class ReceiptPage:
    """One page of a receipt: the PDF text layer when there is one, else an image for OCR."""

    index: int
    text: str | None
    image: Image.Image | None
    #: Rotation applied by deskewing, in tenths of a degree (counter-clockwise positive).
    deskew_decidegrees: int = 0

    @property
    def needs_ocr(self) -> bool:
        """True when the page has no usable text layer and must go through OCR."""
        return self.text is None


@dataclass(frozen=True)
class LoadedReceipt:
    """A receipt file that passed every check, ready for OCR or text extraction."""

    kind: ReceiptKind
    sha256: str
    size_bytes: int
    pages: tuple[ReceiptPage, ...]

    @property
    def text(self) -> str | None:
        """The text layer of all pages joined, or None when any page needs OCR."""
        if any(page.text is None for page in self.pages):
            return None
        return "\n".join(page.text or "" for page in self.pages)


def sniff_kind(data: bytes) -> ReceiptKind | None:
    """Recognise the file type from its first bytes; None for anything unsupported."""
    head = data[:64]
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp" and (
        head[8:12] in _HEIF_BRANDS or any(head[i:i + 4] in _HEIF_BRANDS
                                          for i in range(16, min(len(head), 48), 4))
    ):
        return "heic"
    # The PDF header may legally follow a little junk; look at the first kilobyte only.
    if b"%PDF-" in data[:1024]:
        return "pdf"
    return None


def sha256_hex(data: bytes) -> str:
    """The sha256 of the raw file bytes, as lowercase hex (the duplicate-image key)."""
    return hashlib.sha256(data).hexdigest()


def load_receipt(data: bytes, *, limits: ReceiptLimits = DEFAULT_LIMITS,
                 enhance: bool = True) -> LoadedReceipt:
    """Validate and decode a receipt file into pages.

    ``enhance`` applies EXIF rotation (always), then light deskewing and low-light
    autocontrast to images that go to OCR. Raises :class:`ReceiptInputError` for empty,
    unknown, oversized, truncated or otherwise unusable input.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ReceiptInputError("a receipt must be given as bytes")
    data = bytes(data)
    if not data:
        raise ReceiptInputError("the file is empty")
    kind = sniff_kind(data)
    if kind is None:
        raise ReceiptInputError(
            "this file is not a supported receipt (send a JPEG, PNG, WebP or HEIC photo, "
            "or a PDF)")
    digest = sha256_hex(data)
    if kind == "pdf":
        pages = _load_pdf(data, limits, enhance)
    else:
        image = _decode_image(data, kind, limits)
        pages = (_image_page(0, image, limits, enhance),)
    return LoadedReceipt(kind=kind, sha256=digest, size_bytes=len(data), pages=pages)


def prepare_for_ocr(image: Image.Image, *, limits: ReceiptLimits = DEFAULT_LIMITS,
                    enhance: bool = True) -> Image.Image:
    """Upright, grayscale, size-capped (and by default deskewed, autocontrasted) copy."""
    return _image_page(0, image, limits, enhance).image  # type: ignore[return-value]


# --- images -------------------------------------------------------------------------------

_heif_lock = threading.Lock()
_heif_registered: list[bool] = []


def _register_heif() -> None:
    """Teach Pillow to open HEIC (done once, lazily, not at import time)."""
    with _heif_lock:
        if _heif_registered:
            return
        try:
            import pillow_heif
        except ImportError as exc:
            raise ReceiptInputError(
                "HEIC photos are not supported on this server (pillow-heif is not installed); "
                "send a JPEG or PNG instead") from exc
        pillow_heif.register_heif_opener()
        _heif_registered.append(True)


def _decode_image(data: bytes, kind: ReceiptKind, limits: ReceiptLimits) -> Image.Image:
    if len(data) > limits.max_image_bytes:
        raise ReceiptInputError(
            f"the image is too large ({_mb(len(data))}); the limit is "
            f"{_mb(limits.max_image_bytes)}")
    if kind == "heic":
        _register_heif()
    formats = {"jpeg": ("JPEG",), "png": ("PNG",), "webp": ("WEBP",), "heic": ("HEIF",)}[kind]
    try:
        with warnings.catch_warnings():
            # Pillow warns (or raises) on huge images with its own global limit; we check
            # against ours below, from the header, before any pixel is decoded.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=formats)
    except Image.DecompressionBombError as exc:
        raise _too_many_pixels(None, limits) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ReceiptInputError(f"the {kind.upper()} file is damaged or not really an image") \
            from exc
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ReceiptInputError("the image has no pixels")
    if width * height > limits.max_pixels:
        raise _too_many_pixels((width, height), limits)
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)  # animated WebP: the first frame is the picture
    if kind == "jpeg":
        # Decode big phone photos at a reduced scale straight from the DCT data.
        side = limits.max_ocr_side
        image.draft("RGB", (side, side))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            _load_strict(image)
    except Image.DecompressionBombError as exc:
        raise _too_many_pixels(image.size, limits) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ReceiptInputError(
            f"the {kind.upper()} file is truncated or damaged; please send it again") from exc
    return image


def _load_strict(image: Image.Image) -> None:
    """Decode pixels, failing on truncated data whatever the global Pillow setting is."""
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    if previous:  # somebody relaxed it process-wide; do not inherit that here
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        image.load()
    finally:
        if previous:
            ImageFile.LOAD_TRUNCATED_IMAGES = previous


def _too_many_pixels(size: tuple[int, int] | None, limits: ReceiptLimits) -> ReceiptInputError:
    shown = f" ({size[0]}×{size[1]}, {size[0] * size[1] // 1_000_000} megapixels)" if size else ""
    return ReceiptInputError(
        f"the image is too large{shown}; the limit is {limits.max_pixels // 1_000_000} "
        "megapixels")


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"  # float-ok: display only


def _to_gray(image: Image.Image) -> Image.Image:
    """Grayscale on a white background (transparent screenshots would otherwise go black)."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    if image.mode.startswith("I;16") or image.mode == "I":
        image = image.convert("I").point(lambda v: v / 256)  # float-ok: 16-bit to 8-bit
    if image.mode == "CMYK":
        image = image.convert("RGB")
    return image.convert("L")


def _image_page(index: int, image: Image.Image, limits: ReceiptLimits,
                enhance: bool) -> ReceiptPage:
    upright = ImageOps.exif_transpose(image) or image
    gray = _to_gray(upright)
    longest = max(gray.size)
    if longest > limits.max_ocr_side:
        gray = ImageOps.contain(gray, (limits.max_ocr_side, limits.max_ocr_side),
                                Image.Resampling.LANCZOS)
    angle = 0
    if enhance:
        gray = _enhance_contrast(gray)
        angle = estimate_skew_decidegrees(gray)
        if angle:
            gray = gray.rotate(angle / 10, resample=Image.Resampling.BICUBIC,  # float-ok: degrees
                               expand=True, fillcolor=255)
    return ReceiptPage(index=index, text=None, image=gray, deskew_decidegrees=angle)


def _enhance_contrast(gray: Image.Image) -> Image.Image:
    """Stretch dim or washed-out photos; leaves a clean black-on-white scan as it is."""
    extrema = gray.getextrema()
    low, high = int(extrema[0]), int(extrema[1])  # type: ignore[arg-type]
    mean = ImageStat.Stat(gray).mean[0]  # float-ok: brightness statistic
    if high - low >= 200 and mean >= 110:
        return gray
    stretched = ImageOps.autocontrast(gray, cutoff=1)
    if ImageStat.Stat(stretched).mean[0] < 100:  # float-ok: brightness statistic
        # Still dark overall (a receipt shot in a dim cafe): lift the mid-tones.
        lut = [round(255 * (v / 255) ** 0.6) for v in range(256)]  # float-ok: gamma curve
        stretched = stretched.point(lut)
    return stretched


def estimate_skew_decidegrees(gray: Image.Image, *, max_decidegrees: int = 50,
                              step: int = 5) -> int:
    """Estimate a small page skew by maximising the sharpness of the row-ink profile.

    Returns the rotation (tenths of a degree, counter-clockwise) that straightens the text,
    0 when the page is straight, nearly straight, or shows no clear text rows.
    """
    small = ImageOps.contain(gray, (600, 600))
    if min(small.size) < 40:
        return 0
    ink = ImageOps.invert(small).point(lambda v: 255 if v > 96 else 0)

    def sharpness(decidegrees: int) -> int:
        rotated = ink.rotate(decidegrees / 10, resample=Image.Resampling.NEAREST,  # float-ok
                             expand=False, fillcolor=0)
        rows = rotated.resize((1, rotated.height), Image.Resampling.BOX)
        profile = list(rows.tobytes())  # mode "L": one byte per row
        return sum((b - a) * (b - a) for a, b in zip(profile, profile[1:], strict=False))

    base = sharpness(0)
    if base == 0:
        return 0
    best, best_score = 0, base
    for angle in range(-max_decidegrees, max_decidegrees + 1, step):
        if angle == 0:
            continue
        score = sharpness(angle)
        if score > best_score:
            best, best_score = angle, score
    # Only rotate when it clearly helps; re-rendering a straight scan only blurs it.
    if abs(best) < 10 or best_score * 100 < base * 115:
        return 0
    return best


# --- PDF ----------------------------------------------------------------------------------

def _load_pdf(data: bytes, limits: ReceiptLimits, enhance: bool) -> tuple[ReceiptPage, ...]:
    if len(data) > limits.max_pdf_bytes:
        raise ReceiptInputError(
            f"the PDF is too large ({_mb(len(data))}); the limit is {_mb(limits.max_pdf_bytes)}")
    try:
        import pypdfium2 as pdfium
    except ImportError as exc:  # pragma: no cover - dependency missing
        raise ReceiptInputError("PDF receipts are not supported on this server "
                                "(pypdfium2 is not installed)") from exc
    with _pdfium_lock:  # pdfium is not thread-safe; Slack handlers may run in threads
        return _read_pdf(pdfium, data, limits, enhance)


_pdfium_lock = threading.Lock()


def _read_pdf(pdfium: Any, data: bytes, limits: ReceiptLimits,
              enhance: bool) -> tuple[ReceiptPage, ...]:
    try:
        document = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        message = str(exc).lower()
        if "password" in message:
            raise ReceiptInputError("the PDF is password-protected; send an unlocked copy") \
                from exc
        raise ReceiptInputError("the PDF is damaged or not really a PDF") from exc
    try:
        count = len(document)
        if count == 0:
            raise ReceiptInputError("the PDF has no pages")
        if count > limits.max_pdf_pages:
            raise ReceiptInputError(
                f"the PDF has {count} pages; a receipt may have at most {limits.max_pdf_pages}")
        pages = []
        for index in range(count):
            page = document[index]
            try:
                pages.append(_pdf_page(index, page, limits, enhance))
            finally:
                page.close()
        return tuple(pages)
    except pdfium.PdfiumError as exc:
        raise ReceiptInputError("the PDF is damaged and cannot be read") from exc
    finally:
        document.close()


def _pdf_page(index: int, page: object, limits: ReceiptLimits, enhance: bool) -> ReceiptPage:
    get_textpage: Callable[[], object] = page.get_textpage  # type: ignore[attr-defined]
    textpage = get_textpage()
    try:
        text = textpage.get_text_bounded()  # type: ignore[attr-defined]
    finally:
        textpage.close()  # type: ignore[attr-defined]
    text = (text or "").replace("\r\n", "\n").replace("\r", "\n")
    if sum(1 for ch in text if not ch.isspace()) >= limits.min_text_layer_chars:
        return ReceiptPage(index=index, text=text, image=None)
    width_pt, height_pt = page.get_size()  # type: ignore[attr-defined]
    if width_pt <= 0 or height_pt <= 0:
        raise ReceiptInputError(f"page {index + 1} of the PDF has no size")
    # Render at the configured DPI, but never past the pixel budget (huge page boxes).
    scale = limits.pdf_render_dpi / 72  # float-ok: render scale
    pixels = width_pt * scale * height_pt * scale
    if pixels > limits.max_pixels:
        scale *= (limits.max_pixels / pixels) ** 0.5  # float-ok: render scale
    side = max(width_pt, height_pt) * scale
    if side > limits.max_ocr_side * 2:
        scale *= limits.max_ocr_side * 2 / side  # float-ok: render scale
    bitmap = page.render(scale=scale, grayscale=True)  # type: ignore[attr-defined]
    try:
        image = bitmap.to_pil()
    finally:
        bitmap.close()
    return _image_page(index, image, limits, enhance)
