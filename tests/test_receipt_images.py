"""Receipt files: safe loading, hostile inputs, PDFs, HEIC, rotation, and the real OCR engines.

Every receipt here is drawn by the test itself with Pillow's built-in font, so the suite
runs on a clean checkout without the receipts_dev data set.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import shutil
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator, Sequence
from datetime import date

import pytest
from PIL import Image, ImageDraw, ImageFont

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from finance.receipts import (  # noqa: E402 - the environment variable must come first
    OcrUnavailableError,
    ReceiptInputError,
    ReceiptLimits,
    get_engine,
    load_receipt,
    scan_receipt,
    sniff_kind,
)
from finance.receipts.images import estimate_skew_decidegrees  # noqa: E402
from finance.receipts.ocr import (  # noqa: E402
    Box,
    OcrFragment,
    OcrResult,
    TesseractEngine,
    merge_rows,
    parse_tesseract_tsv,
)

TODAY = date(2026, 11, 29)
RECEIPT_ROWS: list[tuple[str, str | None]] = [
    ("BLUEBIRD COFFEE CO.", None),
    ("123 Main Street, Springfield", None),
    ("Date: 03/14/2026 10:42", None),
    ("Latte", "4.50"),
    ("Blueberry Muffin", "3.25"),
    ("SUBTOTAL", "7.75"),
    ("TAX 8%", "0.62"),
    ("TOTAL", "8.37"),
    ("VISA **** 4242", "8.37"),
]


# --- builders -----------------------------------------------------------------------------

def draw_receipt(rows: Sequence[tuple[str, str | None]] = RECEIPT_ROWS, *, width: int = 640,
                 font_size: int = 30) -> Image.Image:
    """A clean synthetic receipt: names on the left, amounts right-aligned far away."""
    font = ImageFont.load_default(size=font_size)
    pitch = font_size * 19 // 10
    image = Image.new("RGB", (width, 60 + pitch * len(rows)), "white")
    draw = ImageDraw.Draw(image)
    y = 30
    for left, right in rows:
        draw.text((30, y), left, fill="black", font=font)
        if right:
            draw.text((width - 30 - int(draw.textlength(right, font=font)), y), right,
                      fill="black", font=font)
        y += pitch
    return image


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def bomb_png(width: int, height: int) -> bytes:
    """A valid-looking, tiny PNG whose header declares width × height gray pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))


def _pdf_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def text_pdf(pages: Sequence[Sequence[str]]) -> bytes:
    """A minimal, valid PDF whose pages carry real text (Helvetica), written by hand."""
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"",  # pages tree, filled in below
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    kids = []
    for lines in pages:
        ops = ["BT", "/F1 12 Tf", "14 TL", "50 800 Td"]
        for line in lines:
            ops += [f"({_pdf_escape(line)}) Tj", "T*"]
        ops.append("ET")
        stream = "\n".join(ops).encode("latin-1")
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        content_id = len(objects)
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
                       b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % content_id)
        kids.append(len(objects))
    objects[1] = (b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % k for k in kids)
                  + b"] /Count %d >>" % len(kids))
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += (b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n"
            % (len(objects) + 1, xref))
    return bytes(out)


@pytest.fixture(scope="module")
def rapidocr() -> Iterator[object]:
    """The process-wide RapidOCR engine (models ship in the wheel; nothing is downloaded)."""
    try:
        engine = get_engine("rapidocr")
    except OcrUnavailableError as exc:  # pragma: no cover - rapidocr is a dependency
        pytest.skip(f"rapidocr is not installed: {exc}")
    yield engine


# --- sniffing and good inputs -------------------------------------------------------------

def test_sniff_kind_reads_magic_bytes_not_names() -> None:
    """The type comes from the first bytes: JPEG, PNG, WebP, HEIC, PDF; anything else is None."""
    image = draw_receipt(RECEIPT_ROWS[:2])
    assert sniff_kind(encode(image, "JPEG")) == "jpeg"
    assert sniff_kind(encode(image, "PNG")) == "png"
    assert sniff_kind(encode(image, "WEBP")) == "webp"
    assert sniff_kind(text_pdf([["hello"]])) == "pdf"
    assert sniff_kind(b"\x00\x00\x00\x1cftypheic\x00\x00\x00\x00mif1heic") == "heic"
    assert sniff_kind(encode(image, "GIF")) is None
    assert sniff_kind(b"PK\x03\x04 a zip file") is None


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_load_common_formats_to_grayscale_page(fmt: str) -> None:
    """JPEG, PNG and WebP load as one grayscale page with the sha256 of the raw bytes."""
    data = encode(draw_receipt(), fmt)
    loaded = load_receipt(data)
    assert loaded.kind == fmt.lower()
    assert loaded.sha256 == hashlib.sha256(data).hexdigest()
    assert loaded.size_bytes == len(data)
    assert len(loaded.pages) == 1
    page = loaded.pages[0]
    assert page.needs_ocr and page.image is not None and page.image.mode == "L"
    assert page.image.size == (640, 60 + 57 * len(RECEIPT_ROWS))


def test_transparent_png_gets_white_background() -> None:
    """A transparent screenshot is composited on white, not turned black."""
    image = Image.new("RGBA", (200, 100), (0, 0, 0, 0))
    ImageDraw.Draw(image).text((10, 40), "TOTAL 9.99", fill=(0, 0, 0, 255))
    page = load_receipt(encode(image, "PNG")).pages[0]
    assert page.image is not None
    assert page.image.getpixel((0, 0)) == 255
    assert page.image.getextrema()[0] < 100  # the text is still dark


def test_exif_orientation_is_applied() -> None:
    """A photo stored sideways with EXIF orientation 6 comes out upright."""
    upright = draw_receipt()
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    loaded = load_receipt(encode(stored, "JPEG", exif=exif.tobytes()))
    assert loaded.pages[0].image is not None
    assert loaded.pages[0].image.size == upright.size


def test_heic_photo_loads() -> None:
    """An iPhone-style HEIC file is recognised and decoded through pillow-heif."""
    pillow_heif = pytest.importorskip("pillow_heif")
    if not pillow_heif.libheif_info().get("encoders", {}).get("x265"):
        pytest.skip("this libheif build cannot write HEIC, so no HEIC sample can be made")
    buffer = io.BytesIO()
    pillow_heif.from_pillow(draw_receipt()).save(buffer, quality=90)
    loaded = load_receipt(buffer.getvalue())
    assert loaded.kind == "heic"
    assert loaded.pages[0].image is not None
    assert loaded.pages[0].image.size == draw_receipt().size


def test_skewed_scan_is_straightened() -> None:
    """A page rotated by 3° is detected and rotated back within half a degree."""
    skewed = draw_receipt().convert("L").rotate(3, expand=True, fillcolor=255,
                                                resample=Image.Resampling.BICUBIC)
    assert abs(estimate_skew_decidegrees(skewed) + 30) <= 5
    page = load_receipt(encode(skewed, "PNG")).pages[0]
    assert abs(page.deskew_decidegrees + 30) <= 5
    assert estimate_skew_decidegrees(draw_receipt().convert("L")) == 0


def test_dim_photo_is_contrast_enhanced() -> None:
    """A dark, low-contrast photo is stretched to a usable range."""
    dim = draw_receipt().convert("L").point(lambda v: 20 + v * 60 // 255)
    page = load_receipt(encode(dim, "PNG")).pages[0]
    assert page.image is not None
    low, high = page.image.getextrema()  # type: ignore[misc]
    assert high - low >= 200


def test_large_photo_is_scaled_down_for_ocr() -> None:
    """A 12-megapixel photo is handed to OCR with its longest side capped."""
    big = Image.new("RGB", (3000, 4000), "white")
    page = load_receipt(encode(big, "JPEG", quality=50),
                        limits=ReceiptLimits(max_ocr_side=2000)).pages[0]
    assert page.image is not None and max(page.image.size) <= 2000


# --- hostile and broken inputs ------------------------------------------------------------

def test_empty_input_is_refused() -> None:
    """Zero bytes is a clear error, not a crash."""
    with pytest.raises(ReceiptInputError, match="empty"):
        load_receipt(b"")


@pytest.mark.parametrize("data", [b"hello, this is a text file", b"PK\x03\x04zipzipzip",
                                  b"GIF89a\x01\x00\x01\x00"])
def test_not_an_image_is_refused(data: bytes) -> None:
    """Text, archives and unsupported image types are refused with a readable message."""
    with pytest.raises(ReceiptInputError, match="not a supported receipt"):
        load_receipt(data)


def test_truncated_jpeg_is_refused() -> None:
    """A JPEG cut in half is reported as truncated instead of half-decoded."""
    noisy = Image.effect_noise((600, 800), 80).convert("RGB")
    data = encode(noisy, "JPEG", quality=90)
    with pytest.raises(ReceiptInputError, match="truncated or damaged"):
        load_receipt(data[: len(data) // 2])


def test_disguised_file_is_refused() -> None:
    """JPEG magic bytes followed by garbage is refused as damaged."""
    with pytest.raises(ReceiptInputError, match="JPEG"):
        load_receipt(b"\xff\xd8\xff" + b"\x00garbage" * 100)


@pytest.mark.parametrize("megapixels", [100, 400])
def test_decompression_bomb_is_refused_fast(megapixels: int) -> None:
    """A tiny PNG declaring 100+ megapixels is refused from its header, in milliseconds."""
    side = int(megapixels**0.5 * 1000)  # float-ok: test geometry
    data = bomb_png(side, side)
    assert len(data) < 2000
    started = time.perf_counter()
    with pytest.raises(ReceiptInputError, match="too large"):
        load_receipt(data)
    assert time.perf_counter() - started < 0.5


def test_pixel_limit_is_configurable() -> None:
    """A receipt just above a configured pixel budget is refused."""
    data = encode(Image.new("L", (1000, 1001), 255), "PNG")
    with pytest.raises(ReceiptInputError, match="limit is 1 megapixels"):
        load_receipt(data, limits=ReceiptLimits(max_pixels=1_000_000))


def test_oversized_pdf_is_refused_before_parsing() -> None:
    """A 50 MB PDF is refused by size alone, with the limit in the message."""
    data = b"%PDF-1.4\n%" + b"0" * (50 * 1024 * 1024) + b"\n%%EOF\n"
    started = time.perf_counter()
    with pytest.raises(ReceiptInputError, match=r"too large \(50\.0 MB\); the limit is 20\.0 MB"):
        load_receipt(data)
    assert time.perf_counter() - started < 1


def test_pdf_with_too_many_pages_is_refused() -> None:
    """A PDF with more pages than allowed is refused."""
    data = text_pdf([[f"page {n}"] for n in range(12)])
    with pytest.raises(ReceiptInputError, match="12 pages"):
        load_receipt(data)


def test_damaged_pdf_is_refused() -> None:
    """A file that starts like a PDF but is not one is refused."""
    with pytest.raises(ReceiptInputError, match="PDF"):
        load_receipt(b"%PDF-1.7\nthis is not really a pdf\n")


# --- PDFs ---------------------------------------------------------------------------------

def test_text_layer_pdf_needs_no_ocr() -> None:
    """A PDF with a text layer is read directly and extracted without any OCR engine."""
    rows = ["Northwind Supplies Ltd", "Invoice date: 2026-10-05", "Printer paper   42.00",
            "Subtotal   42.00", "VAT 20%   8.40", "Total due   GBP 50.40"]
    data = text_pdf([rows])
    loaded = load_receipt(data)
    assert loaded.kind == "pdf" and not loaded.pages[0].needs_ocr
    assert "Northwind Supplies Ltd" in (loaded.text or "")

    class NoOcr:
        name = "none"

        def recognize(self, image: Image.Image) -> OcrResult:
            raise AssertionError("a text-layer PDF must not be OCR'd")

    scan = scan_receipt(data, engine=NoOcr(), today=TODAY)
    assert scan.engine is None
    assert scan.fields.vendor == "Northwind Supplies Ltd"
    assert scan.fields.date == date(2026, 10, 5)
    assert scan.fields.total_cents == 5040
    assert scan.fields.tax_cents == 840
    assert scan.fields.currency == "GBP"


def test_scanned_pdf_is_rendered_and_ocrd(rapidocr: object) -> None:
    """An image-only PDF page is rendered and goes through OCR."""
    data = encode(draw_receipt(), "PDF", resolution=150)
    loaded = load_receipt(data)
    assert loaded.pages[0].needs_ocr and loaded.text is None
    scan = scan_receipt(data, engine="rapidocr", today=TODAY, date_order="month_first")
    assert scan.engine == "rapidocr"
    assert scan.fields.total_cents == 837
    assert scan.fields.date == date(2026, 3, 14)


# --- OCR engines --------------------------------------------------------------------------

def test_merge_rows_puts_name_and_price_on_one_line() -> None:
    """Fragments at the same height join left to right; stacked ones stay apart."""
    frags = [
        OcrFragment("12.34", Box(400, 101, 440, 121), 99),
        OcrFragment("Total :", Box(200, 100, 260, 122), 98),
        OcrFragment("Cash", Box(200, 140, 240, 160), 97),
        OcrFragment("20.00", Box(398, 139, 440, 161), 96),
        OcrFragment("THANK YOU", Box(150, 200, 300, 220), 90),
    ]
    lines = merge_rows(frags)
    assert [line.text for line in lines] == ["Total : 12.34", "Cash 20.00", "THANK YOU"]
    assert lines[0].confidence == 98
    assert lines[0].box == Box(200, 100, 440, 122)


def test_tesseract_tsv_is_parsed_and_scaled() -> None:
    """Tesseract's TSV words come back with boxes mapped to the original scale."""
    tsv = ("level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight"
           "\tconf\ttext\n"
           "5\t1\t1\t1\t1\t1\t200\t100\t80\t40\t96.5\tTOTAL\n"
           "5\t1\t1\t1\t1\t2\t800\t100\t80\t40\t91.0\t8.37\n"
           "5\t1\t1\t1\t2\t1\t200\t200\t80\t40\t-1\t \n")
    words = parse_tesseract_tsv(tsv, scale_pct=200)
    assert [w.fragment.text for w in words] == ["TOTAL", "8.37"]
    assert words[0].fragment.box == Box(100, 50, 140, 70)
    assert words[0].fragment.confidence == 96


def test_unknown_engine_is_a_clear_error() -> None:
    """Asking for an engine that does not exist names the valid choices."""
    with pytest.raises(OcrUnavailableError, match="rapidocr, tesseract"):
        get_engine("paddle")


def test_missing_tesseract_binary_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the tesseract binary the engine says how to install it."""
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(OcrUnavailableError, match="apt-get install tesseract-ocr"):
        TesseractEngine()


def test_nothing_loads_at_import_and_telemetry_is_disabled() -> None:
    """Importing the package loads no OCR runtime; creating RapidOCR sets the telemetry opt-out."""
    if importlib.util.find_spec("rapidocr") is None:
        pytest.skip("rapidocr is not installed")
    code = (
        "import os, sys\n"
        "os.environ.pop('ORT_DISABLE_TELEMETRY', None)\n"
        "import finance.receipts as r\n"
        "assert 'onnxruntime' not in sys.modules and 'rapidocr' not in sys.modules\n"
        "r.get_engine('rapidocr')\n"
        "assert os.environ['ORT_DISABLE_TELEMETRY'] == '1'\n"
        "import rapidocr.inference_engine.onnxruntime.main as m\n"
        "assert m.OrtInferSession._init_sess_opts._low_memory\n"
        "print('ok')\n")
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120, check=False,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_rapidocr_reads_a_synthetic_receipt(rapidocr: object) -> None:
    """RapidOCR with its shipped models reads the receipt; fields come out right."""
    scan = scan_receipt(encode(draw_receipt(), "JPEG", quality=90), engine="rapidocr",
                        today=TODAY, date_order="month_first")
    assert "TOTAL 8.37" in scan.text.splitlines()
    fields = scan.fields
    assert fields.vendor == "BLUEBIRD COFFEE CO."
    assert fields.date == date(2026, 3, 14)
    assert fields.total_cents == 837
    assert fields.subtotal_cents == 775
    assert fields.tax_cents == 62
    assert fields.card_last4 == "4242"
    assert [(i.description, i.amount_cents) for i in fields.items] == [
        ("Latte", 450), ("Blueberry Muffin", 325)]
    assert fields.confidence.total >= 80


def test_rapidocr_reads_a_rotated_photo(rapidocr: object) -> None:
    """A sideways photo with EXIF orientation is read after being turned upright."""
    stored = draw_receipt().transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    scan = scan_receipt(encode(stored, "JPEG", exif=exif.tobytes()), engine="rapidocr",
                        today=TODAY, date_order="month_first")
    assert scan.fields.total_cents == 837


def test_tesseract_reads_a_synthetic_receipt() -> None:
    """Tesseract (when installed) reads the same receipt's date and total."""
    try:
        get_engine("tesseract")
    except OcrUnavailableError as exc:
        pytest.skip(f"tesseract binary not available ({exc})")
    scan = scan_receipt(encode(draw_receipt(), "PNG"), engine="tesseract", today=TODAY,
                        date_order="month_first")
    assert scan.engine == "tesseract"
    assert scan.fields.total_cents == 837
    assert scan.fields.date == date(2026, 3, 14)
