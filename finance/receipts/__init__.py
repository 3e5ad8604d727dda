"""Receipt capture: safe file loading, OCR, and rule-based field extraction.

The usual path is one call::

    scan = scan_receipt(data, today=local_today, default_currency="USD")
    scan.fields.vendor, scan.fields.date, scan.fields.total_cents, scan.sha256

which sniffs and validates the bytes (:mod:`.images`), uses a PDF's text layer when it has
one and OCR otherwise (:mod:`.ocr`), and reads the fields (:mod:`.extract`). Nothing is
loaded at import time: OCR engines are created on first use, one per process.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from finance.receipts.extract import (
    DateOrder,
    FieldConfidence,
    LineItem,
    ReceiptFields,
    extract_fields,
    looks_like_instructions,
)
from finance.receipts.images import (
    DEFAULT_LIMITS,
    LoadedReceipt,
    ReceiptInputError,
    ReceiptKind,
    ReceiptLimits,
    ReceiptPage,
    load_receipt,
    sha256_hex,
    sniff_kind,
)
from finance.receipts.ocr import (
    DEFAULT_ENGINE,
    ENGINE_NAMES,
    Box,
    OcrEngine,
    OcrFailedError,
    OcrFragment,
    OcrLine,
    OcrResult,
    OcrUnavailableError,
    available_engines,
    get_engine,
    merge_rows,
)

__all__ = [
    "DEFAULT_ENGINE", "DEFAULT_LIMITS", "ENGINE_NAMES", "Box", "DateOrder", "FieldConfidence",
    "LineItem", "LoadedReceipt", "OcrEngine", "OcrFailedError", "OcrFragment", "OcrLine",
    "OcrResult", "OcrUnavailableError", "ReceiptFields", "ReceiptInputError", "ReceiptKind",
    "ReceiptLimits", "ReceiptPage", "ReceiptScan", "available_engines", "extract_fields",
    "get_engine", "load_receipt", "looks_like_instructions", "merge_rows", "scan_receipt",
    "sha256_hex", "sniff_kind",
]


@dataclass(frozen=True)
class ReceiptScan:
    """The result of scanning one receipt file."""

    sha256: str
    kind: ReceiptKind
    #: The OCR engine used, or None when every page had a PDF text layer.
    engine: str | None
    pages: int
    text: str
    fields: ReceiptFields
    ocr_ms: int = 0


def scan_receipt(data: bytes, *, engine: str | OcrEngine = DEFAULT_ENGINE,
                 date_order: DateOrder = "day_first", today: date | None = None,
                 default_currency: str | None = None,
                 limits: ReceiptLimits = DEFAULT_LIMITS) -> ReceiptScan:
    """Load, OCR (when needed) and extract one receipt file.

    Raises :class:`ReceiptInputError` for unusable files, :class:`OcrUnavailableError` when
    a page needs OCR and the engine is not installed, :class:`OcrFailedError` when it fails.
    """
    loaded = load_receipt(data, limits=limits)
    rows: list[OcrLine | str] = []
    used: str | None = None
    elapsed = 0
    for page in loaded.pages:
        if page.text is not None:
            rows.extend(page.text.splitlines())
            continue
        ocr = get_engine(engine) if isinstance(engine, str) else engine
        assert page.image is not None
        result = ocr.recognize(page.image)
        used = ocr.name
        elapsed += result.elapsed_ms
        rows.extend(result.lines)
    fields = extract_fields(rows, date_order=date_order, today=today,
                            default_currency=default_currency)
    text = "\n".join(row.text if isinstance(row, OcrLine) else row for row in rows)
    return ReceiptScan(sha256=loaded.sha256, kind=loaded.kind, engine=used,
                       pages=len(loaded.pages), text=text, fields=fields, ocr_ms=elapsed)
