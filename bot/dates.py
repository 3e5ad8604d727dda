"""Relative dates in plain language, resolved against today's date in a location's time zone.

The caller passes ``today`` already localized: the date at the space's (or the asking
location's) time zone, from :func:`today_in` with the injected clock. Nothing here reads a clock.

One entry point, :func:`resolve`, finds the date expression in a request and turns it into a
:class:`Resolved` span of calendar days (``start``..``end``, both inclusive) plus the character
spans it consumed, so the router can read the rest of the text without the dates. How an
expression without a year is read depends on the ``mode`` the tool needs:

``past`` (reports: KPIs, anomalies, sales tax)
    the latest occurrence that has begun ("March" asked in January is last March, "Q1" asked in
    January is this Q1, "the 15th" asked on the 10th is last month's 15th), and a range never
    ends after today: a period still in progress ends today ("Q1" asked on Jan 15 is
    Jan 1..Jan 15). A range wholly in the future ("next month") is kept whole. "since X" and
    "from X" mean X..today (in this mode only).
``period`` (billing runs, invoice periods)
    a month without a year is the latest one not after next month ("bill December" asked in
    November is this December; "January invoices" asked in November is last January); months
    are never cut short; a day is read as in ``past``.
``future`` (plan changes: a quote's change date)
    the next occurrence on or after today ("on the 15th" asked on the 29th is next month's
    15th; "Jan 1" asked in November is next January 1st); "next month" means its first day.

Supported: today, yesterday, tomorrow; this/last/next week, month, quarter, year (also
current/previous/prior); MTD, QTD, YTD and their spelled-out forms; Q1..Q4 with an optional year
("Q1 2026", "2026 Q1", "Q1'26", "first quarter"); month names with or without a year ("in
March", "Mar 2026"); days ("2026-03-11", "3/11", "3/11/2026" — US month-first, "Mar 11",
"March 11th", "11 March", "on the 15th"); "2026-03" and a bare year ("in 2025"); rolling windows
("last 30 days", "past 2 weeks", "last 3 months"); "since X" / "from X";
"between X and Y", "from X to Y", "X through Y", "X - Y".
"""

from __future__ import annotations

import re
from calendar import monthrange
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

Mode = Literal["past", "period", "future"]
Kind = Literal["day", "week", "month", "quarter", "year", "range"]


def today_in(tz: str, clock: Callable[[], datetime]) -> date:
    """Today's date in time zone ``tz`` at the instant ``clock()`` returns (an aware datetime)."""
    now = clock()
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("the clock must return an aware datetime (UTC), got a naive one")
    return now.astimezone(ZoneInfo(tz)).date()


@dataclass(frozen=True)
class Resolved:
    """Calendar days ``start``..``end`` (inclusive) and the text spans the expression used."""

    start: date
    end: date
    kind: Kind
    spans: tuple[tuple[int, int], ...]

    @property
    def period(self) -> str:
        """The month of ``start`` as ``YYYY-MM`` (billing periods)."""
        return f"{self.start.year:04d}-{self.start.month:02d}"


# --------------------------------------------------------------------------- calendar helpers


def month_start(day: date) -> date:
    return day.replace(day=1)


def month_end(day: date) -> date:
    return day.replace(day=monthrange(day.year, day.month)[1])


def add_months(day: date, n: int) -> date:
    """``day`` moved by ``n`` months, the day clamped to the target month's length."""
    index = day.year * 12 + day.month - 1 + n
    year, month = divmod(index, 12)
    return date(year, month + 1, min(day.day, monthrange(year, month + 1)[1]))


def quarter_start(day: date) -> date:
    return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)


def quarter_range(year: int, q: int) -> tuple[date, date]:
    first = date(year, 3 * (q - 1) + 1, 1)
    return first, month_end(add_months(first, 2))


def month_range(year: int, month: int) -> tuple[date, date]:
    first = date(year, month, 1)
    return first, month_end(first)


# --------------------------------------------------------------------------- vocabulary

MONTHS = {
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3, "april": 4, "apr": 4,
    "may": 5, "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8, "september": 9,
    "sept": 9, "sep": 9, "october": 10, "oct": 10, "november": 11, "nov": 11, "december": 12,
    "dec": 12,
}
_MONTH = (r"(?P<mon>january|february|march|april|may|june|july|august|september|october|"
          r"november|december|jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec)\.?")
_NUMBERS = {"a": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
            "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fourteen": 14,
            "thirty": 30, "sixty": 60, "ninety": 90}
_ORDINAL_Q = {"first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4,
              "4th": 4, "last": 0}
_UNIT = {"week": "week", "wk": "week", "month": "month", "mo": "month", "quarter": "quarter",
         "qtr": "quarter", "year": "year", "yr": "year"}

_B = r"(?<![\w/$.-])"  # start of a token
_E = r"(?![\w/])"  # end of a token

# (name, pattern) in priority order; the scanner takes the earliest, then longest, match.
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern)) for name, pattern in (
        ("iso_day", _B + r"(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})" + _E),
        ("iso_month", _B + r"(?P<y>\d{4})-(?P<m>\d{1,2})" + _E),
        ("us_day", _B + r"(?P<m>\d{1,2})/(?P<d>\d{1,2})(?:/(?P<y>\d{4}|\d{2}))?" + _E),
        ("mon_day", r"\b" + _MONTH + r"\s+(?P<d>\d{1,2})(?:st|nd|rd|th)?"
         r"(?:,?\s+(?P<y>\d{4}))?(?![\w/:])"),
        ("day_mon", r"\b(?:the\s+)?(?P<d>\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?" + _MONTH
         + r"(?:,?\s+(?P<y>\d{4}))?\b"),
        ("mon_year", r"\b" + _MONTH + r",?\s+(?:'(?P<yy>\d{2})|(?P<y>\d{4}))\b"),
        ("quarter", r"\bq(?P<q>[1-4])(?:\s*(?:'|fy|of\s+)?\s*(?P<y>\d{4}|\d{2}))?\b"),
        ("year_quarter", r"\b(?P<y>\d{4})\s*-?\s*q(?P<q>[1-4])\b"),
        ("ordinal_quarter", r"\b(?P<o>first|second|third|fourth|1st|2nd|3rd|4th)\s+quarter"
         r"(?:\s+(?:of\s+)?(?P<y>\d{4}))?\b"),
        ("to_date", r"\b(?P<u>mtd|qtd|ytd|(?:month|quarter|year)[\s-]+to[\s-]+date)\b"),
        ("so_far", r"\bso\s+far\s+this\s+(?P<u>week|month|quarter|year)\b"),
        ("rolling", r"\b(?:in\s+the\s+|over\s+the\s+|for\s+the\s+)?(?:last|past|previous|"
         r"trailing|prior)\s+(?P<n>\d+|a|one|two|three|four|five|six|seven|eight|nine|ten|"
         r"eleven|twelve|fourteen|thirty|sixty|ninety)\s+(?P<u>days?|weeks?|wks?|months?|"
         r"mos?|quarters?|years?|yrs?)\b"),
        ("relative", r"\b(?P<w>this|current|last|previous|prior|past|next|the\s+previous|"
         r"the\s+last)\s+(?P<u>week|wk|month|mo|quarter|qtr|year|yr)\b"),
        ("end_of_month", r"\b(?:the\s+)?end\s+of\s+(?P<w>this|last|next)\s+month\b"),
        ("named_day", r"\b(?P<w>today|yesterday|tomorrow|tonight)\b"),
        ("nth", r"\b(?:on\s+)?the\s+(?P<d>\d{1,2})(?:st|nd|rd|th)\b"),
        ("month", r"(?:(?<=\bin\s)|(?<=\bfor\s)|(?<=\bof\s)|(?<=\bsince\s)|(?<=\bfrom\s)|"
         r"(?<=\bduring\s)|(?<=\bthrough\s)|(?<=\bto\s)|(?<=\buntil\s)|(?<=\band\s)|(?<=-\s)|"
         r"(?<=\bby\s))may\b|\b(?P<mon>january|february|march|april|june|july|august|"
         r"september|october|november|december|jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|"
         r"dec)\b\.?"),
        ("year", r"(?:(?<=\bin\s)|(?<=\bfor\s)|(?<=\bof\s)|(?<=\bsince\s)|(?<=\bduring\s)|"
         r"(?<=\bfy\s)|(?<=\byear\s))(?P<y>20\d{2})\b|(?<![\w$.,-])(?P<y2>20\d{2})(?![\w.,]|-\d)"),
    )
)
_CONNECTOR = re.compile(r"^\s*(?:to|and|through|thru|until|till|-|–|—)\s*$")
_LEAD_RANGE = re.compile(r"\b(?:between|from)\s+$")
_LEAD_SINCE = re.compile(r"\b(?:since|from|starting|after)\s+(?:the\s+)?$")


@dataclass(frozen=True)
class _Hit:
    begin: int
    end: int
    start: date
    stop: date
    kind: Kind


def resolve(text: str, today: date, mode: Mode = "past") -> Resolved | None:
    """The first date expression in ``text`` (lowercase is fine), or None when there is none."""
    lowered = text.lower()
    hits = _scan(lowered, today, mode)
    if not hits:
        return None
    first = hits[0]
    # "between X and Y", "X to Y", "X - Y": two expressions joined by a connector
    if len(hits) > 1 and _CONNECTOR.match(lowered[first.end:hits[1].begin]):
        second = hits[1]
        begin = first.begin
        lead = _LEAD_RANGE.search(lowered[:first.begin])
        if lead:
            begin = lead.start()
        start, stop = first.start, second.stop
        if stop < start and second.kind in ("day", "month"):  # "Dec 20 to Jan 5"
            stop = _next_year(stop)
        return Resolved(start, stop, "range", ((begin, second.end),))
    since = _LEAD_SINCE.search(lowered[:first.begin])
    if since and mode == "past" and first.start <= today:
        return Resolved(first.start, today, "range", ((since.start(), first.end),))
    start, stop = first.start, first.stop
    if mode == "past" and start <= today < stop:
        stop = today
    return Resolved(start, stop, first.kind, ((first.begin, first.end),))


def _next_year(day: date) -> date:
    try:
        return day.replace(year=day.year + 1)
    except ValueError:  # Feb 29
        return day.replace(year=day.year + 1, day=28)


def _scan(text: str, today: date, mode: Mode) -> list[_Hit]:
    found: list[_Hit] = []
    for name, pattern in _PATTERNS:
        for m in pattern.finditer(text):
            hit = _interpret(name, m, today, mode)
            if hit is not None:
                found.append(hit)
    found.sort(key=lambda h: (h.begin, -(h.end - h.begin)))
    chosen: list[_Hit] = []
    for hit in found:
        if chosen and hit.begin < chosen[-1].end:
            continue
        chosen.append(hit)
    return chosen


def _interpret(name: str, m: re.Match[str], today: date, mode: Mode) -> _Hit | None:
    try:
        span = _meaning(name, m, today, mode)
    except ValueError:  # an impossible date such as 2/30
        return None
    if span is None:
        return None
    start, stop, kind = span
    return _Hit(m.start(), m.end(), start, stop, kind)


def _year(raw: str | None) -> int | None:
    if raw is None:
        return None
    value = int(raw)
    return value + 2000 if value < 100 else value


def _pick_day(month: int, day: int, year: int | None, today: date, mode: Mode) -> date:
    if year is not None:
        return date(year, month, day)
    if mode == "future":
        for y in (today.year, today.year + 1):
            if _valid(y, month, day) and date(y, month, day) >= today:
                return date(y, month, day)
        return date(today.year + 1, month, day)
    for y in (today.year, today.year - 1, today.year - 2, today.year - 3, today.year - 4):
        if _valid(y, month, day) and date(y, month, day) <= today:
            return date(y, month, day)
    return date(today.year, month, day)


def _valid(year: int, month: int, day: int) -> bool:
    return 1 <= month <= 12 and 1 <= day <= monthrange(year, month)[1]


def _pick_month(month: int, today: date, mode: Mode) -> int:
    """The year of a month named without one (see the module docstring)."""
    this = today.year * 12 + today.month - 1
    if mode == "future":
        return today.year if month >= today.month else today.year + 1
    limit = this + 1 if mode == "period" else this
    year = today.year
    while year * 12 + month - 1 > limit:
        year -= 1
    return year


def _meaning(name: str, m: re.Match[str], today: date, mode: Mode
             ) -> tuple[date, date, Kind] | None:
    g = m.groupdict()
    if name == "iso_day":
        d = date(int(g["y"]), int(g["m"]), int(g["d"]))
        return d, d, "day"
    if name == "iso_month":
        start, stop = month_range(int(g["y"]), int(g["m"]))
        return start, stop, "month"
    if name == "us_day":
        d = _pick_day(int(g["m"]), int(g["d"]), _year(g.get("y")), today, mode)
        return d, d, "day"
    if name in ("mon_day", "day_mon"):
        d = _pick_day(MONTHS[g["mon"]], int(g["d"]), _year(g.get("y")), today, mode)
        return d, d, "day"
    if name == "mon_year":
        year = _year(g.get("y") or g.get("yy"))
        assert year is not None
        start, stop = month_range(year, MONTHS[g["mon"]])
        return start, stop, "month"
    if name in ("quarter", "year_quarter", "ordinal_quarter"):
        q = int(g["q"]) if g.get("q") else _ORDINAL_Q[g["o"]]
        year = _year(g.get("y"))
        if year is None:
            year = today.year
            current = (today.month - 1) // 3 + 1
            if mode == "future" and q < current:
                year += 1
            elif mode != "future" and q > current:
                year -= 1
        start, stop = quarter_range(year, q)
        return start, stop, "quarter"
    if name in ("to_date", "so_far"):
        unit = g["u"][0]
        first = {"m": month_start(today), "q": quarter_start(today),
                 "y": date(today.year, 1, 1), "w": today - timedelta(days=today.weekday())}[unit]
        return first, today, "range"
    if name == "rolling":
        raw = g["n"]
        n = int(raw) if raw.isdigit() else _NUMBERS[raw]
        unit = g["u"].rstrip("s")
        unit = _UNIT.get(unit, unit)
        if unit == "day":
            return today - timedelta(days=n - 1), today, "range"
        if unit == "week":
            return today - timedelta(days=7 * n - 1), today, "range"
        months = {"month": n, "quarter": 3 * n, "year": 12 * n}[unit]
        return add_months(today, -months) + timedelta(days=1), today, "range"
    if name == "relative":
        which = g["w"].split()[-1]
        step = {"this": 0, "current": 0, "last": -1, "previous": -1, "prior": -1, "past": -1,
                "next": 1}[which]
        return _relative(_UNIT[g["u"]], step, today)
    if name == "end_of_month":
        step = {"this": 0, "last": -1, "next": 1}[g["w"]]
        start, stop, _ = _relative("month", step, today)
        return start, stop, "month"
    if name == "named_day":
        d = today + timedelta(days={"today": 0, "tonight": 0, "yesterday": -1,
                                    "tomorrow": 1}[g["w"]])
        return d, d, "day"
    if name == "nth":
        day = int(g["d"])
        if not 1 <= day <= 31:
            return None
        return _nth(day, today, mode)
    if name == "month":
        month = MONTHS[g["mon"]] if g.get("mon") else 5
        start, stop = month_range(_pick_month(month, today, mode), month)
        return start, stop, "month"
    if name == "year":
        year = int(g.get("y") or g["y2"])
        return date(year, 1, 1), date(year, 12, 31), "year"
    raise AssertionError(name)  # pragma: no cover


def _relative(unit: str, step: int, today: date) -> tuple[date, date, Kind]:
    if unit == "week":
        monday = today - timedelta(days=today.weekday()) + timedelta(weeks=step)
        return monday, monday + timedelta(days=6), "week"
    if unit == "month":
        first = add_months(month_start(today), step)
        return first, month_end(first), "month"
    if unit == "quarter":
        first = add_months(quarter_start(today), 3 * step)
        return first, month_end(add_months(first, 2)), "quarter"
    year = today.year + step
    return date(year, 1, 1), date(year, 12, 31), "year"


def _nth(day: int, today: date, mode: Mode) -> tuple[date, date, Kind] | None:
    """"the 15th": this month's, or the nearest month's in the mode's direction that has it."""
    first = month_start(today)
    order = (0, 1, 2) if mode == "future" else (0, -1, -2)
    for step in order:
        month = add_months(first, step)
        if day > monthrange(month.year, month.month)[1]:
            continue
        d = month.replace(day=day)
        if (mode == "future" and d >= today) or (mode != "future" and d <= today):
            return d, d, "day"
    return None
