"""Field extraction from receipt text: vendor, date, total, tax, currency, card, line items.

Rules only, no LLM: the input is OCR rows (ideally merged by vertical position, see
:func:`finance.receipts.ocr.merge_rows`) or the text layer of a PDF, one printed line per
line. Every field comes with a confidence from 0 to 100 and ``overall`` summarises them.

The text is treated strictly as data. Nothing in it is ever followed; a receipt that
contains instruction-like text ("ignore previous instructions ...") is extracted like any
other and marked ``suspicious_text=True`` so that downstream agents can be told.

Money is integer cents; amounts are parsed with ``Decimal`` and never touch ``float``.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import Literal

from finance.receipts.ocr import OcrLine, OcrResult

DateOrder = Literal["day_first", "month_first"]

#: How far in the future a receipt date may lie (time zones, pre-dated slips).
FUTURE_TOLERANCE = timedelta(days=3)


@dataclass(frozen=True)
class LineItem:
    """One purchased line: what it was and what it cost (integer cents)."""

    description: str
    amount_cents: int


@dataclass(frozen=True)
class FieldConfidence:
    """Confidence per field, 0 (nothing found) to 100 (certain)."""

    vendor: int = 0
    date: int = 0
    total: int = 0
    tax: int = 0
    currency: int = 0
    card_last4: int = 0
    items: int = 0
    overall: int = 0


@dataclass(frozen=True)
class ReceiptFields:
    """Everything read off one receipt. Missing fields are None (items: empty)."""

    vendor: str | None
    date: date | None
    total_cents: int | None
    tax_cents: int | None
    subtotal_cents: int | None
    currency: str | None
    card_last4: str | None
    items: tuple[LineItem, ...]
    confidence: FieldConfidence
    suspicious_text: bool = False
    warnings: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly form (ISO date, cents as integers)."""
        return {
            "vendor": self.vendor,
            "date": self.date.isoformat() if self.date else None,
            "total_cents": self.total_cents,
            "tax_cents": self.tax_cents,
            "subtotal_cents": self.subtotal_cents,
            "currency": self.currency,
            "card_last4": self.card_last4,
            "items": [{"description": i.description, "amount_cents": i.amount_cents}
                      for i in self.items],
            "confidence": {
                "vendor": self.confidence.vendor, "date": self.confidence.date,
                "total": self.confidence.total, "tax": self.confidence.tax,
                "currency": self.confidence.currency,
                "card_last4": self.confidence.card_last4, "items": self.confidence.items,
                "overall": self.confidence.overall,
            },
            "suspicious_text": self.suspicious_text,
            "warnings": list(self.warnings),
        }


# --- input normalisation ------------------------------------------------------------------

@dataclass(frozen=True)
class _Line:
    index: int
    text: str
    key: str  # uppercase, OCR-repaired keywords, punctuation collapsed
    confidence: int  # OCR confidence 0–100 (100 for a PDF text layer)
    height: int  # pixel height (0 when unknown)


_KEY_FIXES = [
    (re.compile(r"\bT[O0]T[A4][L1I!|]\b"), "TOTAL"),
    (re.compile(r"\bT[O0]T[A4][L1I!|](?=[A-Z(:])"), "TOTAL "),
    (re.compile(r"(?<=[A-Z])T[O0]T[A4][L1I!|]\b"), " TOTAL"),
    (re.compile(r"\bSUB[\s\-]*TOTAL"), "SUBTOTAL"),
    (re.compile(r"\bG[I1]?ST\b"), "GST"),
    # A currency glued to the keyword by OCR: "CHANGERM 0.10".
    (re.compile(r"\b(CHANGE|CASH|TOTAL|SUBTOTAL|PAID|DUE|TAX|GST|VAT)(RM|USD|EUR|GBP|SGD|MYR)\b"),
     r"\1 \2"),
]


def _key(text: str) -> str:
    key = text.upper()
    for pattern, repl in _KEY_FIXES:
        key = pattern.sub(repl, key)
    return re.sub(r"\s+", " ", key).strip()


def _as_lines(source: OcrResult | Sequence[OcrLine | str] | str) -> list[_Line]:
    if isinstance(source, OcrResult):
        raw: Iterable[OcrLine | str] = source.lines
    elif isinstance(source, str):
        raw = source.splitlines()
    else:
        raw = source
    lines: list[_Line] = []
    for item in raw:
        if isinstance(item, OcrLine):
            text, conf, height = item.text, item.confidence, item.box.height
        else:
            text, conf, height = str(item), 100, 0
        text = text.replace("\u00a0", " ").strip()
        if not text:
            continue
        lines.append(_Line(len(lines), text, _key(text), conf, height))
    return lines


# --- amounts ------------------------------------------------------------------------------

_CURRENCY_PREFIX = r"(?:RM|S\$|US\$|A\$|C\$|NZ\$|HK\$|USD|EUR|GBP|MYR|SGD|AUD|CAD|\$|€|£|¥|₹)"
_AMOUNT_RE = re.compile(
    r"(?<![\d.,])(?P<neg>-\s?)?(?:" + _CURRENCY_PREFIX + r"\s?)?(?P<neg2>-)?"
    r"(?:(?P<int>\d{1,3}(?:,\d{3})+|\d{1,3}(?:\.\d{3})+(?=,\d{2}(?!\d))|\d+)?"
    r"(?P<sep>[.,])(?P<dec>\d{2}))(?![\d])"
)
_PERCENT_RE = re.compile(r"\d{1,3}(?:[.,]\d{1,3})?\s?%")
_TIME_RE = re.compile(r"(?<!\d)\d{1,2}[:.]\d{2}(?:[:.]\d{2})?\s?(?:[AP]\.?M\.?)?(?![\d])",
                      re.IGNORECASE)
_TIME_COLON_RE = re.compile(r"(?<!\d)\d{1,2}:\d{2}(?::\d{2})?(?!\d)")


@dataclass(frozen=True)
class _Amount:
    cents: int
    start: int
    end: int


def _mask(text: str, pattern: re.Pattern[str]) -> str:
    return pattern.sub(lambda m: " " * len(m.group(0)), text)


def amounts_in(text: str) -> list[_Amount]:
    """Money amounts with exactly two decimals in a line (percentages, dates, times skipped)."""
    masked = _mask(text, _PERCENT_RE)
    masked = _mask_dates(masked)
    masked = _mask(masked, _TIME_COLON_RE)
    found = []
    for match in _AMOUNT_RE.finditer(masked):
        integer = match.group("int") or "0"
        if match.group("int") is None and match.start() > 0 and not (
                masked[match.start() - 1].isspace() or masked[match.start() - 1] in "M$:"):
            continue
        sep = match.group("sep")
        if sep == ",":
            # "12,50" is a decimal comma; "1.234,50" has dots for thousands.
            integer = integer.replace(".", "")
        else:
            integer = integer.replace(",", "")
        try:
            value = Decimal(f"{integer}.{match.group('dec')}")
        except InvalidOperation:
            continue
        cents = int(value * 100)
        if match.group("neg") or match.group("neg2"):
            cents = -cents
        found.append(_Amount(cents, match.start(), match.end()))
    return found


def _mask_dates(text: str) -> str:
    """Blank out things that really are dates, so "14.1.18" is not read as an amount."""
    def blank(match: re.Match[str]) -> str:
        return " " * len(match.group(0))

    def blank_numeric(match: re.Match[str]) -> str:
        a, b = int(match.group(1)), int(match.group(3))
        if 1 <= a <= 31 and 1 <= b <= 31 and min(a, b) <= 12:
            return blank(match)
        return match.group(0)

    def blank_iso(match: re.Match[str]) -> str:
        if 1 <= int(match.group(3)) <= 12 and 1 <= int(match.group(4)) <= 31:
            return blank(match)
        return match.group(0)

    text = _ISO_DATE.sub(blank_iso, text)
    text = _NUMERIC_DATE.sub(blank_numeric, text)
    text = _DAY_MONTH_NAME.sub(blank, text)
    return _MONTH_NAME_DAY.sub(blank, text)


def _hyphen_amount(text: str) -> int | None:
    """OCR sometimes reads a decimal point as a hyphen ("12-45") at the end of a total line."""
    match = re.search(r"(?<![\d\-/])(\d{1,5})-(\d{2})\s*$", text)
    if not match:
        return None
    return int(match.group(1)) * 100 + int(match.group(2))


# --- dates --------------------------------------------------------------------------------

_MONTHS = {
    "JAN": 1, "FEB": 2, "MAR": 3, "APR": 4, "MAY": 5, "JUN": 6, "JUL": 7, "AUG": 8,
    "SEP": 9, "SEPT": 9, "OCT": 10, "NOV": 11, "DEC": 12,
    # Malay / Indonesian / Spanish / French / German short forms that differ from English
    "MEI": 5, "OGO": 8, "OGOS": 8, "DIS": 12, "AGO": 8, "AGU": 8, "DES": 12, "OKT": 10,
    "ENE": 1, "ABR": 4, "DIC": 12, "JANV": 1, "FEVR": 2, "AVR": 4, "MAI": 5, "JUIN": 6,
    "JUIL": 7, "AOUT": 8, "MRZ": 3, "MÄR": 3, "DEZ": 12,
}
_MONTH_ALT = "|".join(sorted(_MONTHS, key=len, reverse=True))
# A 4-digit year may run straight into the time ("7/4/202619:05:12").
_YEAR4 = r"(?:19|20)\d{2}(?:(?!\d)|(?=\d{1,2}[:.]\d{2}))"
_NUMERIC_DATE = re.compile(
    r"(?<![\d/.\-])(\d{1,2})\s?([/\-.])\s?(\d{1,2})\s?\2\s?(" + _YEAR4 + r"|\d{2}(?!\d))")
_ISO_DATE = re.compile(r"(?<![\d/.\-])((?:19|20)\d{2})([/\-.])(\d{1,2})\2(\d{1,2})(?!\d)")
_DAY_MONTH_NAME = re.compile(
    r"(?<![\dA-Z])(\d{1,2})(?:ST|ND|RD|TH)?[\s\-/.]*(" + _MONTH_ALT + r")[A-Z]*\.?[\s\-/.,']*("
    + _YEAR4 + r"|\d{2}(?!\d))", re.IGNORECASE)
_MONTH_NAME_DAY = re.compile(
    r"(?<![A-Z])(" + _MONTH_ALT + r")[A-Z]*\.?\s?(\d{1,2})(?:ST|ND|RD|TH)?,?\s?("
    + _YEAR4 + r")", re.IGNORECASE)
_DATE_PATTERNS = (_ISO_DATE, _NUMERIC_DATE, _DAY_MONTH_NAME, _MONTH_NAME_DAY)

_DATE_GOOD = re.compile(r"\b(DATE|DATED|TARIKH|DT|FECHA|DATUM|TRANS|TXN)\b|DATE")
_DATE_BAD = re.compile(
    r"\b(EXP|EXPIRY|EXPIRES|VALID|UNTIL|DUE|BEST BEFORE|BBE|USE BY|WARRANTY|BIRTH|DOB|"
    r"PRINTED|REPRINT|MEMBER SINCE|SINCE|TILL)\b")


@dataclass(frozen=True)
class _DateCandidate:
    value: date
    line: int
    ambiguous: bool  # both day-first and month-first readings were valid
    order: DateOrder | None  # the order this date proves, when unambiguous
    alternative: date | None
    score: int


def _year(text: str) -> int:
    digits = text[:4] if len(text) >= 4 else text
    year = int(digits)
    return year + 2000 if year < 100 else year


def _safe_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _plausible(value: date, today: date | None) -> bool:
    if value.year < 1990:
        return False
    if today is not None:
        return value <= today + FUTURE_TOLERANCE and value.year >= today.year - 15
    return value.year <= 2100


def _dates_in_line(line: _Line, hint: DateOrder, today: date | None) -> list[_DateCandidate]:
    text = line.text
    found: list[_DateCandidate] = []
    base = 50
    if _DATE_GOOD.search(line.key):
        base += 25
    if _DATE_BAD.search(line.key):
        base -= 30
    taken: list[tuple[int, int]] = []

    def free(start: int, end: int) -> bool:
        return all(end <= s or start >= e for s, e in taken)

    for match in _ISO_DATE.finditer(text):
        value = _safe_date(int(match.group(1)), int(match.group(3)), int(match.group(4)))
        if value and _plausible(value, today):
            taken.append(match.span())
            found.append(_DateCandidate(value, line.index, False, None, None, base + 10))
    for match in _DAY_MONTH_NAME.finditer(text):
        if not free(*match.span()):
            continue
        month = _MONTHS.get(match.group(2).upper()[:4]) or _MONTHS.get(match.group(2).upper()[:3])
        value = _safe_date(_year(match.group(3)), month or 0, int(match.group(1)))
        if value and _plausible(value, today):
            taken.append(match.span())
            found.append(_DateCandidate(value, line.index, False, None, None, base + 10))
    for match in _MONTH_NAME_DAY.finditer(text):
        if not free(*match.span()):
            continue
        month = _MONTHS.get(match.group(1).upper()[:4]) or _MONTHS.get(match.group(1).upper()[:3])
        value = _safe_date(_year(match.group(3)), month or 0, int(match.group(2)))
        if value and _plausible(value, today):
            taken.append(match.span())
            found.append(_DateCandidate(value, line.index, False, None, None, base + 10))
    for match in _NUMERIC_DATE.finditer(text):
        if not free(*match.span()):
            continue
        a, b, year = int(match.group(1)), int(match.group(3)), _year(match.group(4))
        day_first = _safe_date(year, b, a)
        month_first = _safe_date(year, a, b)
        if day_first and not _plausible(day_first, today):
            day_first = None
        if month_first and not _plausible(month_first, today):
            month_first = None
        score = base + (5 if len(match.group(4)) >= 4 else 0)
        if day_first and month_first and day_first != month_first:
            preferred, other = ((day_first, month_first) if hint == "day_first"
                                else (month_first, day_first))
            found.append(_DateCandidate(preferred, line.index, True, None, other, score))
        elif day_first or month_first:
            value = day_first or month_first
            assert value is not None
            order: DateOrder | None = None
            if day_first and not month_first and a != b:
                order = "day_first" if a > 12 else None
            elif month_first and not day_first:
                order = "month_first" if b > 12 else None
            found.append(_DateCandidate(value, line.index, False, order, None, score + 10))
        else:
            continue
        taken.append(match.span())
    return found


def _pick_date(lines: Sequence[_Line], hint: DateOrder, today: date | None) -> tuple[
        date | None, int, list[str]]:
    candidates = [c for line in lines for c in _dates_in_line(line, hint, today)]
    if not candidates:
        return None, 0, []
    # An unambiguous date on the same receipt tells us how this printer writes dates.
    proven = {c.order for c in candidates if c.order}
    order = hint
    if len(proven) == 1:
        order = proven.pop()
    resolved = []
    for c in candidates:
        if c.ambiguous and c.alternative is not None and order != hint:
            resolved.append(_DateCandidate(c.alternative, c.line, True, None, c.value, c.score))
        else:
            resolved.append(c)
    # The same date printed twice (header and footer) is strong evidence.
    counts: dict[date, int] = {}
    for c in resolved:
        counts[c.value] = counts.get(c.value, 0) + 1
    best = max(resolved, key=lambda c: (c.score + 10 * min(2, counts[c.value] - 1), -c.line))
    confidence = min(100, best.score + 10 * min(2, counts[best.value] - 1) + 15)
    warnings: list[str] = []
    if best.ambiguous:
        if order != hint or proven:
            confidence = min(confidence, 85)
        else:
            confidence = min(confidence, 60)
            warnings.append(
                f"date is ambiguous; read {order.replace('_', '-')} as {best.value.isoformat()}")
    if len({c.value for c in resolved}) > 1:
        confidence -= 5
    return best.value, max(5, min(100, confidence)), warnings


# --- vendor -------------------------------------------------------------------------------

_LEGAL_SUFFIX = re.compile(
    r"\b(SDN\.?\s*BHD|S/B|BHD|BERHAD|LTD|LIMITED|LLC|L\.L\.C|INC|INCORPORATED|CORP|"
    r"CORPORATION|PTE|PTY|GMBH|AG|S\.?A\.?S?|S\.?R\.?L|PLC|LLP|LP|CO\.?|COMPANY|B\.?V|N\.?V|"
    r"OY|AB|AS|KG|SARL|SPA|K\.?K)\.?(?=$|[\s,)(])")
_LEGAL_SUFFIX_END = re.compile(
    r"(SDN\.?\s*BHD|S/B|BHD|BERHAD|LTD|LIMITED|LLC|INC|INCORPORATED|CORP|CORPORATION|PTE\.? "
    r"LTD|PTY\.? LTD|GMBH|PLC|LLP)\.?$")
_BUSINESS_WORDS = re.compile(
    r"\b(RESTAURANT|RESTORAN|RESTAURANTS|CAFE|CAFÉ|COFFEE|BAKERY|BAKERIES|MART|MARKET|"
    r"SUPERMARKET|HYPERMARKET|STORE|STORES|SHOP|HARDWARE|STATIONERY|STATIONERS|TRADING|"
    r"ENTERPRISE|ENTERPRISES|PHARMACY|HOTEL|ELECTRICAL|CONFECTIONERY|PETROL|STATION|"
    r"SYARIKAT|PERNIAGAAN|KEDAI|DELI|BAR|BISTRO|KITCHEN|GRILL|PIZZA|SUPPLIES|SUPPLY|"
    r"SERVICES|FOODS?|BOOKS?|BOOKSTORE|CARRY|OUTLET|WHOLESALE|DEPOT|GAS|FUEL|PARKING)\b")
_GENERIC = re.compile(
    r"\b(TAX|INVOICE|RECEIPT|OFFICIAL|SIMPLIFIED|CASH|BILL|SALES?|WELCOME|TO|THE|THANK|YOU|"
    r"THANKS|PROMO|COPY|CUSTOMER|MERCHANT|DUPLICATE|RE-?PRINT|ORIGINAL|ORDER|CHECK|TABLE|"
    r"TAKE ?AWAY|DINE|IN|ADJUSTMENT|CREDIT|DEBIT|NOTE|STATEMENT|QUOTATION|DELIVERY|PAYMENT|"
    r"THIS|IS|NOT|A|AN|OF|AND|PLEASE|COME|AGAIN|COUNTER|POS|CASHIER|MEMBER|HOURS|"
    r"SHOPPING|OPEN|DAILY|NUMBER|NO|DOCUMENT|DOC|HELLO|HI|HRS|HOURS|"
    r"TRANSACTION|RECORD|SLIP|GUEST|SERVER|STAFF|VALUED)\b")
_ADDRESS = re.compile(
    r"\b(JALAN|JLN|LORONG|LRG|TAMAN|TMN|PERSIARAN|LEBUHRAYA|KAWASAN|SEKSYEN|BANDAR|KAMPUNG|"
    r"MUKIM|ROAD|RD|STREET|STR|ST|AVENUE|AVE|BOULEVARD|BLVD|LANE|LN|DRIVE|DR|WAY|HIGHWAY|"
    r"HWY|SUITE|STE|FLOOR|FLR|LEVEL|LOT|BLOCK|BLK|UNIT|PO BOX|P\.O\.|PLAZA|BUILDING|BLDG|"
    r"BANGUNAN|CENTRE|CENTER|MALL|STRASSE|STRAßE|RUE|VIA|CALLE|BASEMENT|GROUND)\b|"
    r"\b\d{5}(?:-\d{4})?\b|\bNO\.?\s?\d|^\d+[A-Z]?\s?,")
_PHONE = re.compile(
    r"\b(TEL|TELEPHONE|PHONE|PH|FAX|MOBILE|MOB|HP|WHATSAPPS?|HOTLINE|CALL)\b|"
    r"\+?\d[\d\s\-()]{7,}\d")
_IDS = re.compile(
    r"\b(GST|SST|VAT|ABN|ACN|EIN|TIN|UEN|NPWP|CO\.?\s?REG|REG|REGISTRATION|ROC|BRN|"
    r"COMPANY\s+NO|BUSINESS\s+NO|CRN|SIRET|USt-?IdNr)\b", re.IGNORECASE)
_REG_ID = re.compile(
    r"\(?\s*(?:CO\.?\s?REG(?:\.|ISTRATION)?\s?(?:NO\.?)?\s?:?\s*|NO\.?\s?)?\d{4,}\s?[-\s]?\s?"
    r"[A-Z]\s*\)?(?=$|[\s(])|\(\s*\d{5,}\s*\)", re.IGNORECASE)
_WEB = re.compile(r"@|WWW\.|HTTPS?:|\.COM\b|\.MY\b|\.NET\b|FACEBOOK", re.IGNORECASE)


def _clean_vendor(text: str) -> str:
    text = _REG_ID.sub(" ", text)
    text = re.sub(r"\s+", " ", text).strip(" -*:;,|=~_#>")
    if text.endswith(".") and not re.search(r"\b(CO|INC|LTD|BHD|CORP|PTE|PTY|LLC|PLC|SDN)\.$",
                                            text.upper()):
        text = text.rstrip(".")
    # Title-case OCR confusion: "NorthwInd" → "Northwind" (capital I between lowercase).
    text = re.sub(r"(?<=[a-z])I(?=[a-z]|\b)", "l", text)
    # Cut trailing noise after the legal form: "ACME BAKERS S/B (HQ)" keeps S/B.
    upper = text.upper()
    matches = list(_LEGAL_SUFFIX.finditer(upper))
    match = matches[-1] if matches else None
    if match is not None and match.group(1) not in ("CO", "CO.", "AG", "AS", "AB", "SA", "LP"):
        end = match.end()
        if end < len(text) and text[end:end + 1] == ".":
            end += 1
        text = text[:end]
    return text.strip(" -*:;,|=~_#>")


def _is_noise_for_vendor(line: _Line) -> str | None:
    """Why a line cannot be the vendor name, or None when it could be."""
    text = _REG_ID.sub(" ", line.text)
    key = _key(text)
    letters = sum(ch.isalpha() for ch in text)
    if letters < 3:
        return "too few letters"
    if _LEGAL_SUFFIX_END.search(_clean_vendor(text).upper()) and not _WEB.search(key):
        return None  # "X (JALAN BARU) SDN BHD" is a company, even with a place in its name
    if _WEB.search(key):
        return "web"
    if _PHONE.search(key):
        return "phone"
    if _IDS.search(key) and not _LEGAL_SUFFIX.search(key):
        return "id"
    if _ADDRESS.search(key):
        return "address"
    if any(p.search(text) for p in _DATE_PATTERNS) or _TIME_COLON_RE.search(text):
        return "date"
    if re.search(r"\b(NO|NUMBER|NBR|REF)\b\.?\s*[:#]|#\s*:|\b\w+\s*:\s*\w", key):
        return "form field"
    if re.match(r"^\W*(WELCOME|THANK|HELLO|HI|GOOD (MORNING|DAY))\b", key):
        return "generic"
    residue = _GENERIC.sub(" ", re.sub(r"[^A-Z ]", " ", key))
    if sum(ch.isalpha() for ch in residue) < 3:
        return "generic"
    if letters * 100 // max(1, sum(not ch.isspace() for ch in text)) < 50:
        return "mostly digits"
    return None


def _stands_alone(text: str) -> bool:
    """True when a row with a legal form is a whole company name, not the tail of one."""
    rest = _LEGAL_SUFFIX.sub(" ", _REG_ID.sub(" ", text.upper()))
    if rest.count(")") > rest.count("("):
        return False  # "BARU) SDN BHD" closes a parenthesis opened on the row above
    words = [w for w in re.split(r"[^A-Z']+", rest) if len(w) >= 2]
    return len(words) >= 2


def _pick_vendor(lines: Sequence[_Line]) -> tuple[str | None, int]:
    if not lines:
        return None, 0
    window = lines[: max(10, len(lines) // 3)]
    heights = [line.height for line in lines if line.height > 0]
    median_height = statistics.median_low(heights) if heights else 0
    header_end = len(window)
    for line in window:
        reason = _is_noise_for_vendor(line)
        if reason in ("address", "phone"):
            header_end = line.index
            break
    best: tuple[int, str] | None = None
    rank = 0
    consumed: set[int] = set()
    for pos, line in enumerate(window):
        if pos in consumed or _is_noise_for_vendor(line):
            continue
        text = line.text
        key = line.key
        last_pos = pos
        # A name printed over several rows: join continuation rows up to the legal form.
        if not _LEGAL_SUFFIX_END.search(_clean_vendor(text).upper()):
            joined = text
            for offset, follow in enumerate(window[pos + 1: pos + 3], start=pos + 1):
                if _is_noise_for_vendor(follow) and not _LEGAL_SUFFIX.search(follow.key):
                    break
                if any(ch.isdigit() for ch in _REG_ID.sub("", follow.text)):
                    break
                if line.height and follow.height and not (
                        3 * line.height <= 4 * follow.height
                        and 3 * follow.height <= 4 * line.height):
                    break  # a different font size is a different element (brand vs company)
                joined = f"{joined} {follow.text}"
                if _LEGAL_SUFFIX_END.search(_clean_vendor(follow.text).upper()):
                    if not _stands_alone(follow.text):
                        text, key = joined, _key(joined)
                        consumed.update(range(pos + 1, offset + 1))
                        last_pos = offset
                    break
        name = _clean_vendor(text)
        if sum(ch.isalpha() for ch in name) < 3:
            continue
        score = 40 - 6 * rank
        rank += 1
        if _LEGAL_SUFFIX_END.search(name.upper()) or _LEGAL_SUFFIX.search(name.upper()):
            score += 40
        if _BUSINESS_WORDS.search(key):
            score += 15
        if line.index > header_end:
            score -= 55  # below the address block: a customer, owner or branch, not the seller
        if median_height and line.height:
            score += max(-10, min(20, (line.height - median_height) * 20 // median_height))
        if line.confidence < 85:
            score -= 85 - line.confidence
        if name == name.lower():
            score -= 15  # printed headers are rarely all lowercase (handwriting, stamps)
        follow_id = any(_REG_ID.fullmatch(n.text.strip())
                        for n in window[last_pos + 1: last_pos + 3])
        if follow_id or _REG_ID.search(line.text):
            score += 15  # a company name is usually printed with its registration number
        if best is None or score > best[0]:
            best = (score, name)
    if best is None:
        return None, 0
    score, name = best
    return name, max(10, min(95, 30 + score // 2))


# --- money fields -------------------------------------------------------------------------

_EXCLUDE_TOTAL = re.compile(
    r"SUBTOTAL|\bTOTAL\s*(QTY|QUANTITY|ITEMS?|ITEM\(S\)|PCS|PIECES|DISC|DISCOUNTS?|SAVINGS?|"
    r"POINTS?|UNITS?|WEIGHT|COUNT|TENDER(ED)?|EXCL|EXCLUDING|BEFORE|NET OF|VOLUME)\b|"
    r"\bITEMS?\s*\(?S?\)?\s*TOTAL|\bTOTAL\s*(TAX|GST|VAT|SST|HST)\b|"
    r"\b(TAX|GST|VAT|SST|HST)\s*TOTAL|\bEXCL|\bEXCLUSIVE|\bEXCLUDING|\bBEFORE\s+(TAX|GST|VAT)|"
    r"\bCHANGE\b|\bTENDER|\bACCEPTED\b|\bRECEIVED\b|\bSAVINGS?\b|\bYOU SAVED\b|\bPOINTS?\b|"
    r"\bINCLUDES\b|\bINCLUDED\b|\bSUPPLIES\b")
_TOTAL_TIERS: tuple[tuple[int, re.Pattern[str]], ...] = (
    (100, re.compile(
        r"\b(ROUNDED\s*TOTAL|TOTAL\s*ROUNDED|GRAND\s*TOTAL|TOTAL\s*PAYABLE|AMOUNT\s*PAYABLE|"
        r"AMOUNT\s*DUE|TOTAL\s*DUE|BALANCE\s*DUE|NETT?\s*TOTAL|FINAL\s*TOTAL|"
        r"TOTAL\s*AFTER|TOTAL\s*AMOUNT\s*DUE|TOTAL\s*TO\s*PAY|JUMLAH\s*BESAR)\b")),
    (85, re.compile(
        r"\bTOTAL\s*(SALES?\s*)?(\(?INCL|\(?INC\b|\(?INCLUSIVE|\(?WITH)|\bTOTAL\s*AMOUNT\b|"
        r"\bTOTAL\s*\((RM|USD|MYR|SGD|EUR|GBP|AUD|CAD|\$)\)|\bTOTAL\s*SALES?\b|"
        r"\bTOTAL\s*(RM|USD|MYR|SGD|EUR|GBP|AUD|CAD)\b|\bAMOUNT\s*TOTAL\b|\bJUMLAH\b|"
        r"\bTOTAL\s*BILL\b|\bBILL\s*TOTAL\b|\bTOTAL\s*CHARGES?\b")),
    (75, re.compile(r"\bTOTAL\b|\bDUE\b")),
    (45, re.compile(r"\b(NETT?|AMOUNT|AMT|BALANCE|TO PAY|PAYABLE)\b")),
)
_PAYMENT = re.compile(
    r"\b(CASH|PAID|PAYMENT|PAY|VISA|MASTER(CARD)?|AMEX|DEBIT|CREDIT|CARD|EFTPOS|NETS|"
    r"TOUCH ?N ?GO|GRABPAY|BOOST|PAYPAL|APPLE PAY|GOOGLE PAY)\b")
_CHANGE = re.compile(r"\bCHANGE\b|\bKEMBALI\b|\bBALANCE\s*RETURN")
_TENDER = re.compile(r"\bCASH\b|\bTENDER(ED)?\b|\bACCEPTED\b|\bRECEIVED\b|\bPAID\b")
_ROUNDING = re.compile(r"\bROUND(ING)?\b|\bADJ(USTMENT)?\b")
_SUMMARY = re.compile(r"\bSUMMARY\b|\bTAX\s*CODE\b|\bGST\s*CODE\b|\bVAT\s*(RATE|CODE)\b")
_TAX_WORD = re.compile(
    r"\b(GST|VAT|TAX|SST|HST|PST|QST|IVA|MWST|TVA|CGST|SGST|IGST|SALES\s*TAX|CONSUMPTION\s*TAX)"
    r"\b")
_TAX_NOT = re.compile(
    r"\b(ID|REG|REGISTRATION|NO|NUMBER|INVOICE|EXCL|EXCLUDING|EXCLUSIVE|SERVICE|CHRG|"
    r"CHARGE|SUMMARY|CODE)\b|\bTOTAL\s*(SALES?\s*)?\(?(INCL|INC|INCLUSIVE)|TAX\s*INVOICE|"
    r"SUPPLIES")
_SUBTOTAL = re.compile(r"SUBTOTAL|\bTOTAL\s*(SALES?\s*)?\(?(EXCL|EXCLUDING|EXCLUSIVE|BEFORE)|"
                       r"\bGROSS\s*(AMOUNT|TOTAL)?\b|\bITEMS?\s*\(?S?\)?\s*TOTAL")


_CURRENCY_WORD = re.compile(r"\b(RM|USD|EUR|GBP|SGD|MYR|AUD|CAD)\b")


def _last_amount(line: _Line) -> int | None:
    found = amounts_in(line.text)
    return found[-1].cents if found else None


def _summary_lines(lines: Sequence[_Line]) -> set[int]:
    """Rows of a tax summary table (after "GST Summary" and similar headers)."""
    rows: set[int] = set()
    for line in lines:
        if _SUMMARY.search(line.key):
            rows.add(line.index)
            for follow in lines[line.index + 1: line.index + 6]:
                if re.search(r"THANK|PLEASE|GOODS|INVOICE|CASH|CHANGE", follow.key):
                    break
                if len(amounts_in(follow.text)) == 1 and any(
                        pattern.search(follow.key) for _, pattern in _TOTAL_TIERS[:2]):
                    break  # a grand-total row after the table, not part of it
                rows.add(follow.index)
    return rows


@dataclass(frozen=True)
class _Money:
    total: int | None
    total_confidence: int
    tax: int | None
    tax_confidence: int
    subtotal: int | None
    warnings: tuple[str, ...] = field(default=())


def _pick_money(lines: Sequence[_Line]) -> _Money:
    summary = _summary_lines(lines)
    candidates: list[tuple[int, int, int]] = []  # (score, cents, line index)
    tendered: list[int] = []
    change: list[int] = []
    card_payments: list[int] = []
    subtotals: list[int] = []
    taxes: list[tuple[int, int, int]] = []  # (score, cents, line)
    all_amounts: list[tuple[int, int]] = []  # (cents, line)
    summary_rows: list[int] = []
    summary_total: int | None = None
    for line in lines:
        key = line.key
        amount = _last_amount(line)
        if amount is not None:
            all_amounts.append((amount, line.index))
        if line.index in summary:
            # Tax summary table: rate rows "SR 6% 40.00 2.40" and perhaps a "Total" row.
            found = amounts_in(line.text)
            if _SUMMARY.search(key) and not found:
                continue
            if re.search(r"\bTOTAL\b", key) and len(found) >= 2:
                summary_total = found[-1].cents
            elif len(found) >= 2:
                summary_rows.append(found[-1].cents)
            elif found and _TAX_WORD.search(key):
                taxes.append((45, found[-1].cents, line.index))
            continue
        if _CHANGE.search(key):
            if amount is not None:
                change.append(amount)
            continue
        is_tax = bool(_TAX_WORD.search(key)) and not _TAX_NOT.search(key) and (
            not re.search(r"\bTOTAL\b", key) or bool(re.search(
                r"\bTOTAL\s*(TAX|GST|VAT|SST|HST)\b|\b(TAX|GST|VAT|SST|HST)\s*(AMT|AMOUNT)?\s*"
                r"TOTAL\b", key)))
        tax_statement = bool(re.search(r"\bINCLUDE[SD]\b", key)) and bool(_TAX_WORD.search(key))
        if (is_tax or tax_statement) and amount is not None and amount >= 0:
            base = 70 if tax_statement or re.search(r"\bTOTAL\b", key) else 65
            taxes.append((base, amount, line.index))
            continue
        if _SUBTOTAL.search(key) and amount is not None:
            subtotals.append(amount)
        if _ROUNDING.search(key) and not re.search(r"\bTOTAL\b", key):
            continue
        if _TENDER.search(key) and not re.search(r"\bTOTAL\b|\bDUE\b", key):
            if amount is not None:
                tendered.append(amount)
                if _PAYMENT.search(key) and not re.search(r"\bCASH\b", key):
                    card_payments.append(amount)
            continue
        if _PAYMENT.search(key) and not re.search(r"\bTOTAL\b", key):
            if amount is not None:
                card_payments.append(amount)
            continue
        if _EXCLUDE_TOTAL.search(key):
            continue
        for tier, pattern in _TOTAL_TIERS:
            if pattern.search(key):
                value = amount
                score = tier
                if value is None:
                    value = _hyphen_amount(line.text)
                    score -= 10
                if value is None:
                    # "TOTAL" with its amount printed on the next row.
                    nxt = lines[line.index + 1] if line.index + 1 < len(lines) else None
                    if nxt is not None and not re.search(r"[A-Z]{3,}", _mask(
                            nxt.key, _CURRENCY_WORD)):
                        value = _last_amount(nxt)
                        score -= 15
                if value is not None and value > 0:
                    candidates.append((score, value, line.index))
                break
    if summary_total is not None:
        taxes.append((60, summary_total, len(lines)))
    elif summary_rows:
        taxes.append((50, sum(summary_rows), len(lines)))
    paid_by_cash = {t - c for t in tendered for c in change if t - c > 0}
    if tendered and not change:
        paid_by_cash |= {t for t in tendered if t > 0}
    warnings: list[str] = []
    subtotal = subtotals[-1] if subtotals else None
    best_tax = max(taxes, key=lambda t: (t[0], t[2])) if taxes else None
    total: int | None = None
    confidence = 0
    if candidates:
        scores: dict[int, int] = {}
        last_line: dict[int, int] = {}
        for score, cents, index in candidates:
            support = scores.get(cents)
            scores[cents] = score if support is None else max(support, score) + 5
            last_line[cents] = max(last_line.get(cents, -1), index)
        for cents in scores:
            if cents in paid_by_cash:
                scores[cents] += 15
            if cents in card_payments:
                scores[cents] += 10
            if subtotal is not None and best_tax is not None and subtotal + best_tax[1] == cents:
                scores[cents] += 10
        total = max(scores, key=lambda c: (scores[c], last_line[c], c))
        confidence = min(98, scores[total])
    elif card_payments:
        total = card_payments[-1]
        confidence = 55
        warnings.append("no TOTAL line; used the card payment amount")
    elif paid_by_cash:
        total = max(paid_by_cash) if len(paid_by_cash) == 1 else min(paid_by_cash)
        confidence = 45
        warnings.append("no TOTAL line; used cash tendered minus change")
    elif all_amounts:
        total = max(cents for cents, _ in all_amounts)
        confidence = 25
        warnings.append("no TOTAL line; used the largest amount on the receipt")
    tax: int | None = None
    tax_conf = 0
    if taxes:
        plausible = [t for t in taxes if total is None or 0 <= t[1] < total]
        if plausible:
            score, tax, _ = max(plausible, key=lambda t: (
                t[0] + (25 if subtotal is not None and total is not None
                        and subtotal + t[1] == total else 0), t[2]))
            tax_conf = score
            if subtotal is not None and total is not None and subtotal + tax == total:
                tax_conf = min(95, tax_conf + 25)
    if total is None:
        warnings.append("total not found")
    return _Money(total, confidence, tax, tax_conf, subtotal, tuple(warnings))


# --- currency, card, items, injection -----------------------------------------------------

_CURRENCY_CODES = ("USD", "EUR", "GBP", "MYR", "SGD", "AUD", "CAD", "NZD", "HKD", "JPY",
                   "INR", "CHF", "IDR", "THB", "PHP", "CNY", "MXN", "BRL", "ZAR", "SEK", "NOK",
                   "DKK", "PLN", "AED")
_DOLLAR_CODES = {"USD", "SGD", "AUD", "CAD", "NZD", "HKD", "MXN"}
_SYMBOLS = (("S$", "SGD"), ("US$", "USD"), ("A$", "AUD"), ("C$", "CAD"), ("NZ$", "NZD"),
            ("HK$", "HKD"), ("€", "EUR"), ("£", "GBP"), ("₹", "INR"), ("¥", "JPY"),
            ("R$", "BRL"))


def _pick_currency(lines: Sequence[_Line], default: str | None) -> tuple[str | None, int]:
    text = "\n".join(line.text for line in lines)
    upper = text.upper()
    votes: dict[str, int] = {}
    for code in _CURRENCY_CODES:
        # A code counts next to an amount ("USD 12.00", "12.00 EUR") or as a column unit
        # ("(MYR)"), not inside words or item names ("CNY DECO").
        hits = len(re.findall(rf"(?<![A-Z]){code}\s?-?\d|\d[.,]\d\d\s?{code}(?![A-Z])|\({code}\)|"
                              rf"\b{code}\s*:|\bCURRENCY\W+{code}\b", upper))
        if hits:
            votes[code] = votes.get(code, 0) + 3 * hits
    rm = len(re.findall(r"(?<![A-Z])RM(?=\s?\d|\s?\)|\s*$|\s)", upper, re.MULTILINE))
    rm += len(re.findall(r"\(RM\)", upper))
    if rm:
        votes["MYR"] = votes.get("MYR", 0) + 2 * rm
    rest = upper
    for symbol, code in _SYMBOLS:
        hits = rest.count(symbol)
        if hits:
            votes[code] = votes.get(code, 0) + 2 * hits
            rest = rest.replace(symbol, " ")
    dollars = rest.count("$")
    if dollars:
        dollar_code = default if default in _DOLLAR_CODES else "USD"
        votes[dollar_code] = votes.get(dollar_code, 0) + dollars
    if not votes:
        return (default, 40) if default else (None, 0)
    best = max(votes, key=lambda c: votes[c])
    if best == default:
        return best, 95
    return best, 85 if votes[best] >= 3 else 65


_CARD_PATTERNS = (
    re.compile(r"(?:[X*•#]{2,}[\s\-]?){1,4}[X*•#]*\s?(\d{4})(?!\d)", re.IGNORECASE),
    re.compile(r"\b(?:ENDING|ENDS|ENDING IN|LAST\s?4(?:\s?DIGITS)?|LAST FOUR)\b\s*(?:IN)?\s*[:#]?"
               r"\s*[X*•#\s\-]*(\d{4})(?!\d)", re.IGNORECASE),
    re.compile(r"\b(?:CARD|ACCT|ACCOUNT|PAN)\s*(?:NO\.?|NUMBER|#)?\s*[:#]?\s*[X*•#\s\-]+(\d{4})"
               r"(?!\d)", re.IGNORECASE),
)


def _pick_card(lines: Sequence[_Line]) -> tuple[str | None, int]:
    for line in lines:
        for index, pattern in enumerate(_CARD_PATTERNS):
            match = pattern.search(line.text)
            if match:
                brand = re.search(r"VISA|MASTER|AMEX|DEBIT|CREDIT|CARD|DISCOVER|MAESTRO|JCB|"
                                  r"UNIONPAY|ENDING|ACCT", line.key)
                return match.group(1), (90 if brand else 70) - 5 * index
    return None, 0


_ITEM_STOP = re.compile(
    r"\bTOTAL\b|SUBTOTAL|\b(TAX|GST|VAT|SST|HST|CASH|CHANGE|ROUND(ING)?|TENDER(ED)?|PAID|"
    r"PAYMENT|VISA|MASTER(CARD)?|DEBIT|CREDIT|BALANCE|DUE|SUMMARY|AMOUNT|DISCOUNT|"
    r"SERVICE)\b")


def _pick_items(lines: Sequence[_Line], total: int | None, subtotal: int | None) -> tuple[
        tuple[LineItem, ...], int]:
    items: list[LineItem] = []
    stop = next((line.index for line in lines if _ITEM_STOP.search(line.key)
                 and amounts_in(line.text) and re.search(r"TOTAL", line.key)), len(lines))
    pending: str | None = None
    for line in lines[:stop]:
        key = line.key
        found = amounts_in(line.text)
        letters_only = re.sub(r"[^A-Za-z]", "", line.text)
        if not found:
            noise = _is_noise_for_vendor(line)
            pending = line.text if len(letters_only) >= 3 and noise in (None, "generic") \
                and not _ITEM_STOP.search(key) else None
            continue
        if _ITEM_STOP.search(key) or _DATE_GOOD.search(key):
            pending = None
            continue
        last = found[-1]
        description = line.text[: found[0].start].strip()
        description = re.sub(r"^\s*\d+(?:[.,]\d+)?\s*[xX×*@]?\s+", "", description)
        description = re.sub(r"\s+\d+(?:[.,]\d+)?\s*[xX×*@]\s*$", "", description)
        if len(found) >= 2:  # "Name  qty  unit-price  amount": drop the quantity column
            description = re.sub(r"\s+\d{1,3}$", "", description)
        description = description.strip(" :-*@x×")
        if sum(ch.isalpha() for ch in description) < 3:
            if pending is None:
                continue
            description = pending
        items.append(LineItem(description=description[:120], amount_cents=last.cents))
        pending = None
    if not items:
        return (), 0
    amount_sum = sum(item.amount_cents for item in items)
    if amount_sum in {v for v in (total, subtotal) if v is not None}:
        return tuple(items), 90
    return tuple(items), 45


_INJECTION = re.compile(
    r"\b(IGNORE|DISREGARD|FORGET|OVERRIDE)\b.{0,40}\b(INSTRUCTIONS?|PROMPTS?|RULES|ABOVE|"
    r"PREVIOUS|PRIOR|EVERYTHING)\b|"
    r"\bSYSTEM\s*PROMPT\b|\bYOU\s+ARE\s+(NOW\s+)?(AN?\s+)?(AI|ASSISTANT|CHATGPT|LLM|MODEL|BOT)\b|"
    r"\b(APPROVE|AUTO-?APPROVE|PAY|TRANSFER|REFUND|WIRE)\b.{0,30}\b(THIS|THE|ALL|IMMEDIATELY|"
    r"BILL|INVOICE|PAYMENT|EXPENSE)\b.{0,30}\b(WITHOUT|NO)\s+(REVIEW|APPROVAL|CHECK)|"
    r"\b(NEW|UPDATED|HIDDEN)\s+INSTRUCTIONS?\b|\bACT\s+AS\b|\bJAILBREAK\b|"
    r"\bDO\s+NOT\s+(FLAG|REPORT|MENTION|TELL)\b|<\|?(SYSTEM|IM_START|ASSISTANT)\|?>|"
    r"\bASSISTANT\s*:|\bSYSTEM\s*:|\bAS\s+AN?\s+AI\b|\bCATEGORI[SZ]E\s+(THIS\s+)?AS\b.{0,40}"
    r"\b(IGNORE|APPROVED?)\b",
    re.IGNORECASE | re.DOTALL)


def looks_like_instructions(text: str) -> bool:
    """True when the text contains phrases aimed at an AI assistant rather than a customer."""
    return bool(_INJECTION.search(text))


# --- entry point --------------------------------------------------------------------------

def extract_fields(source: OcrResult | Sequence[OcrLine | str] | str, *,
                   date_order: DateOrder = "day_first", today: date | None = None,
                   default_currency: str | None = None) -> ReceiptFields:
    """Read vendor, date, total, tax, currency, card last four and items from receipt text.

    ``source`` is an :class:`OcrResult`, its lines, plain strings (one printed row each) or
    one text blob (a PDF text layer). ``date_order`` decides dates like 4/7/2026 that read
    both ways, unless the receipt itself proves its order with another date (24/07/2026).
    ``today`` rejects dates more than a few days in the future (pass the space's local
    date; None disables the check). ``default_currency`` is used when the receipt shows no
    currency (and to tell which dollar a bare ``$`` is).
    """
    if date_order not in ("day_first", "month_first"):
        raise ValueError("date_order must be 'day_first' or 'month_first'")
    lines = _as_lines(source)
    full_text = "\n".join(line.text for line in lines)
    suspicious = looks_like_instructions(full_text)
    vendor, vendor_conf = _pick_vendor(lines)
    when, date_conf, date_warnings = _pick_date(lines, date_order, today)
    money = _pick_money(lines)
    currency, currency_conf = _pick_currency(lines, default_currency)
    card, card_conf = _pick_card(lines)
    items, items_conf = _pick_items(lines, money.total, money.subtotal)
    ocr_conf = _ocr_quality(lines)
    vendor_conf = _scaled(vendor_conf, ocr_conf)
    date_conf = _scaled(date_conf, ocr_conf)
    total_conf = _scaled(money.total_confidence, ocr_conf)
    tax_conf = _scaled(money.tax_confidence, ocr_conf)
    overall = (vendor_conf + date_conf + 2 * total_conf) // 4
    warnings = list(date_warnings) + list(money.warnings)
    if suspicious:
        warnings.append("the receipt contains instruction-like text; it was treated as data")
    if not lines:
        warnings.append("no text found")
    return ReceiptFields(
        vendor=vendor, date=when, total_cents=money.total, tax_cents=money.tax,
        subtotal_cents=money.subtotal, currency=currency, card_last4=card, items=items,
        confidence=FieldConfidence(
            vendor=vendor_conf, date=date_conf, total=total_conf, tax=tax_conf,
            currency=currency_conf, card_last4=card_conf, items=items_conf, overall=overall),
        suspicious_text=suspicious, warnings=tuple(warnings))


def _ocr_quality(lines: Sequence[_Line]) -> int:
    if not lines:
        return 0
    return statistics.median_low(line.confidence for line in lines)


def _scaled(rule_confidence: int, ocr_confidence: int) -> int:
    """Field confidence: the rule's certainty, discounted when the OCR itself was unsure."""
    return max(0, min(100, rule_confidence * (50 + ocr_confidence // 2) // 100))
