"""Proration: the one engine behind quotes and invoices, so a quote always equals the invoice.

Pure functions over dates, instants and integer cents (DESIGN §3, §4): no database, no clock.

Conventions
-----------
* A :class:`BillingPeriod` is calendar days with both ends inclusive (Mar 1..Mar 31). An
  :class:`InstantPeriod` (``per_second``) is exact timestamps, half-open ``[start, end)``.
* A change or join date is the first day on the new plan: the change day belongs to the new plan.
* A cancellation's ``last_day`` is the last day of service, inclusive; the credit starts the day
  after. (A timestamp given to ``per_second`` is the instant service stops.)
* Every line is rounded on its own, ROUND_HALF_UP to the cent; tax is computed on the rounded
  line. Credits are negative amounts.

Day-count rules (:data:`ProrationRule`)
---------------------------------------
``actual_days``
    Daily rate = price ÷ days in the billing period. Mar 11..Mar 31 is 21/31.
``kill_bill``
    Kill Bill's half-open ``[start, end)`` fragments over the billing period that holds them:
    Feb 1..Feb 15 2012 is 14/29 of Feb 2012. For a plan change this prices like ``actual_days``
    (``[change, next period start)``); the difference is how a fragment's end is read.
``per_second``
    Stripe-style: remaining seconds ÷ period seconds, periods half-open ``[start, end)``.
``thirty_day``
    A fixed 30-day month (360-day year): daily rate = price ÷ 30 per month of the period. Days
    are counted 30E/360 (a 31st counts as the 30th), and the last day of a period always keeps
    at least 1/30. With calendar-month periods a change on the 30th or the 31st of a 31-day
    month is 1/30 and a change on Feb 28 (non-leap) is 3/30. A whole period is always 30/30.
"""

from __future__ import annotations

import calendar
import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from fractions import Fraction
from typing import Literal, get_args

from finance.money import MoneyError, cents_to_decimal, percent_of, round_half_up, to_decimal

ProrationRule = Literal["actual_days", "kill_bill", "per_second", "thirty_day"]
DowngradeTiming = Literal["period_end", "immediate"]
Interval = Literal["month", "year"]
Direction = Literal["upgrade", "downgrade", "same"]

RULES: tuple[str, ...] = get_args(ProrationRule)
CSV_COLUMNS = (
    "description",
    "service_start",
    "service_end",
    "days",
    "period_days",
    "amount",
    "tax",
    "total",
)

_DAY = timedelta(days=1)
_SECOND = timedelta(seconds=1)
_SECONDS_PER_DAY = 86_400


class ProrationError(ValueError):
    """Input the proration engine cannot price; the message says what is wrong."""


# --------------------------------------------------------------------------- value types


@dataclass(frozen=True)
class PlanItem:
    """What a member pays per billing period: a plan's unit price (cents) times a quantity."""

    name: str
    unit_price_cents: int
    quantity: int = 1

    def __post_init__(self) -> None:
        _require_int("unit_price_cents", self.unit_price_cents, money=True)
        if self.unit_price_cents < 0:
            raise ProrationError(
                f"price must not be negative: {self.name!r} has {self.unit_price_cents} cents"
            )
        _require_int("quantity", self.quantity)
        if self.quantity < 1:
            raise ProrationError(f"quantity must be at least 1, got {self.quantity}")

    @property
    def amount_cents(self) -> int:
        """The full price of one billing period for the whole quantity."""
        return self.unit_price_cents * self.quantity

    @property
    def label(self) -> str:
        """``Dedicated Desk`` or ``Dedicated Desk × 3``."""
        return self.name if self.quantity == 1 else f"{self.name} × {self.quantity}"


@dataclass(frozen=True)
class BillingPeriod:
    """A billing period of calendar days, both ends inclusive (Mar 1..Mar 31)."""

    start: date
    end: date

    def __post_init__(self) -> None:
        _require_date("period start", self.start)
        _require_date("period end", self.end)
        if self.end < self.start:
            raise ProrationError(f"period ends ({self.end}) before it starts ({self.start})")

    @property
    def days(self) -> int:
        """Number of calendar days in the period."""
        return (self.end - self.start).days + 1

    @property
    def months(self) -> int:
        """Calendar months the period spans: 1 for monthly periods, 12 for yearly (at least 1)."""
        after = self.end + _DAY
        return max(1, 12 * (after.year - self.start.year) + after.month - self.start.month)

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and self.start <= day <= self.end

    def instants(self, tz: tzinfo = UTC) -> InstantPeriod:
        """The same period as instants: ``[start 00:00, day after end 00:00)`` in ``tz``."""
        return InstantPeriod(
            datetime.combine(self.start, time(), tz), datetime.combine(self.end + _DAY, time(), tz)
        )

    def __str__(self) -> str:
        return f"{self.start}..{self.end}"


@dataclass(frozen=True)
class InstantPeriod:
    """A billing period of exact, timezone-aware instants, half-open ``[start, end)``."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        _require_aware("period start", self.start)
        _require_aware("period end", self.end)
        if self.end <= self.start:
            raise ProrationError(f"period ends ({self.end}) at or before it starts ({self.start})")

    @property
    def seconds(self) -> int:
        """Whole seconds in the period."""
        return _seconds_between(self.start, self.end)

    def __str__(self) -> str:
        return f"[{self.start.isoformat()}, {self.end.isoformat()})"


Period = BillingPeriod | InstantPeriod


@dataclass(frozen=True)
class PeriodFraction:
    """A share of a billing period as counted units: ``numerator`` of ``denominator`` days
    (or seconds for ``per_second``). Kept unreduced so a schedule reads "21/31 days"."""

    numerator: int
    denominator: int
    unit: Literal["day", "second"] = "day"

    @property
    def value(self) -> Fraction:
        """The exact fraction."""
        return Fraction(self.numerator, self.denominator)

    def __str__(self) -> str:
        return f"{self.numerator}/{self.denominator}"


@dataclass(frozen=True)
class ProrationLine:
    """One priced fragment: a credit (negative) or a charge, with its service period.

    ``service_end`` is the last day of service (inclusive) for calendar-day rules and the
    exclusive end instant for ``per_second``.
    """

    description: str
    service_start: date | datetime
    service_end: date | datetime
    fraction: PeriodFraction
    amount_cents: int
    tax_cents: int = 0

    @property
    def total_cents(self) -> int:
        """Amount plus tax."""
        return self.amount_cents + self.tax_cents

    def to_row(self) -> dict[str, str]:
        """The line as text, keyed by :data:`CSV_COLUMNS`; money as ``"-406.45"``."""
        return {
            "description": self.description,
            "service_start": self.service_start.isoformat(),
            "service_end": self.service_end.isoformat(),
            "days": _as_days(self.fraction.numerator, self.fraction.unit),
            "period_days": _as_days(self.fraction.denominator, self.fraction.unit),
            "amount": str(cents_to_decimal(self.amount_cents)),
            "tax": str(cents_to_decimal(self.tax_cents)),
            "total": str(cents_to_decimal(self.total_cents)),
        }


@dataclass(frozen=True)
class Proration:
    """The result: lines to bill (or quote) now, and the date the change takes effect."""

    rule: ProrationRule
    period: Period
    effective: date | datetime
    lines: tuple[ProrationLine, ...] = ()

    @property
    def net_cents(self) -> int:
        """Sum of line amounts before tax (negative = the member gets a credit)."""
        return sum(line.amount_cents for line in self.lines)

    @property
    def tax_cents(self) -> int:
        """Sum of line taxes."""
        return sum(line.tax_cents for line in self.lines)

    @property
    def total_cents(self) -> int:
        """Net plus tax."""
        return self.net_cents + self.tax_cents

    def to_rows(self) -> list[dict[str, str]]:
        """The line-by-line schedule (the dispute schedule), one dict per line."""
        return [line.to_row() for line in self.lines]

    def to_csv(self) -> str:
        """The schedule as CSV text with a header row of :data:`CSV_COLUMNS`."""
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.to_rows())
        return out.getvalue()


@dataclass(frozen=True)
class ChangeTiming:
    """When a plan change takes effect and whether it is prorated now."""

    direction: Direction
    effective: date | datetime
    prorated: bool


# --------------------------------------------------------------------------- billing periods


def billing_period(
    anchor_day: int, on: date, *, interval: Interval = "month", anchor_month: int = 1
) -> BillingPeriod:
    """The billing period (calendar days, end inclusive) that contains ``on``.

    Periods start on ``anchor_day`` of each month (``interval="month"``) or on ``anchor_day``
    of ``anchor_month`` each year (``interval="year"``). Anchor days 29–31 snap to the last day
    of shorter months: anchor 31 starts periods on Jan 31, Feb 28 (Feb 29 in leap years),
    Mar 31, Apr 30, ...; each period ends the day before the next one starts.
    """
    _require_int("anchor_day", anchor_day)
    if not 1 <= anchor_day <= 31:
        raise ProrationError(f"billing anchor day must be 1–31, got {anchor_day}")
    _require_date("date", on)
    if interval == "month":
        start = _anchored(on.year, on.month, anchor_day)
        if on < start:
            start = _anchored(*_add_month(on.year, on.month, -1), anchor_day)
        following = _anchored(*_add_month(start.year, start.month, 1), anchor_day)
    elif interval == "year":
        _require_int("anchor_month", anchor_month)
        if not 1 <= anchor_month <= 12:
            raise ProrationError(f"billing anchor month must be 1–12, got {anchor_month}")
        start = _anchored(on.year, anchor_month, anchor_day)
        if on < start:
            start = _anchored(on.year - 1, anchor_month, anchor_day)
        following = _anchored(start.year + 1, anchor_month, anchor_day)
    else:
        raise ProrationError(f"unknown billing interval {interval!r}; expected 'month' or 'year'")
    return BillingPeriod(start, following - _DAY)


def period_fraction(
    period: Period,
    start: date | datetime,
    end: date | datetime,
    rule: ProrationRule = "actual_days",
) -> PeriodFraction:
    """The share of ``period`` covered by the fragment from ``start`` to ``end``.

    How ``end`` is read depends on the rule: inclusive last day for ``actual_days`` and
    ``thirty_day``; exclusive for ``kill_bill`` (``[start, end)``, so ``end`` may be the day
    after the period) and for ``per_second`` (instants).
    """
    _check_rule(rule)
    if rule == "per_second":
        if not isinstance(period, InstantPeriod):
            raise ProrationError("per_second counts instants; pass an InstantPeriod")
        _require_aware("fragment start", start)
        _require_aware("fragment end", end)
        if not period.start <= start <= end <= period.end:
            raise ProrationError(f"fragment [{start}, {end}) is not within the period {period}")
        return PeriodFraction(_seconds_between(start, end), period.seconds, "second")

    if not isinstance(period, BillingPeriod):
        raise ProrationError(f"the {rule} rule counts calendar days; pass a BillingPeriod")
    _require_date("fragment start", start)
    _require_date("fragment end", end)
    after = end if rule == "kill_bill" else end + _DAY  # first day not in the fragment
    if not period.start <= start <= after <= period.end + _DAY:
        shown = f"[{start}, {end})" if rule == "kill_bill" else f"{start}..{end}"
        raise ProrationError(f"fragment {shown} is not within the billing period {period}")
    if rule == "thirty_day":
        full = 30 * period.months
        covered = _thirty_day_position(period, after) - _thirty_day_position(period, start)
        return PeriodFraction(covered, full)
    return PeriodFraction((after - start).days, period.days)


# --------------------------------------------------------------------------- policy


def change_timing(
    old: PlanItem,
    new: PlanItem,
    period: Period,
    change: date | datetime,
    *,
    downgrade: DowngradeTiming = "period_end",
) -> ChangeTiming:
    """When a change from ``old`` to ``new`` takes effect, and whether it is prorated.

    An upgrade (the new period amount is higher) and a same-amount change apply at ``change``,
    prorated. A downgrade waits for the next period start by default (``downgrade=
    "period_end"``), with no proration, so upgrade-for-credit / downgrade-for-refund cannot be
    gamed; ``downgrade="immediate"`` prorates it at ``change`` like an upgrade. Both items are
    priced per the same billing period.
    """
    if downgrade not in get_args(DowngradeTiming):
        raise ProrationError(
            f"unknown downgrade timing {downgrade!r}; expected 'period_end' or 'immediate'"
        )
    _check_within(period, change, "change")
    if new.amount_cents > old.amount_cents:
        return ChangeTiming("upgrade", change, prorated=True)
    if new.amount_cents == old.amount_cents:
        return ChangeTiming("same", change, prorated=True)
    if downgrade == "immediate":
        return ChangeTiming("downgrade", change, prorated=True)
    next_start = period.end + _DAY if isinstance(period, BillingPeriod) else period.end
    return ChangeTiming("downgrade", next_start, prorated=False)


# --------------------------------------------------------------------------- pricing


def prorate_change(
    old: PlanItem,
    new: PlanItem,
    period: Period,
    change: date | datetime,
    *,
    rule: ProrationRule = "actual_days",
    tax_rate_percent: Decimal | int | str | None = None,
    downgrade: DowngradeTiming = "period_end",
) -> Proration:
    """Price a plan or quantity change within ``period``.

    ``change`` is the first day on the new plan (a date; for ``per_second`` an aware datetime,
    or a date meaning midnight UTC). The result has a credit line for the unused part of
    ``old`` (negative) and a charge line for the remaining part of ``new``, each rounded on its
    own, with tax on each rounded line when ``tax_rate_percent`` is given. A downgrade under
    ``downgrade="period_end"`` produces no lines and takes effect at the next period start
    (see :func:`change_timing`).
    """
    period, change = _coerce(period, change, rule, "change")
    rate = _tax_rate(tax_rate_percent)
    timing = change_timing(old, new, period, change, downgrade=downgrade)
    if not timing.prorated:
        return Proration(rule, period, timing.effective)
    end, fraction = _remaining(period, change, rule)
    lines = (
        _line(f"Unused time on {old.label}", old, -1, change, end, fraction, rate),
        _line(f"Remaining time on {new.label}", new, 1, change, end, fraction, rate),
    )
    return Proration(rule, period, change, lines)


def prorate_join(
    item: PlanItem,
    period: Period,
    start: date | datetime,
    *,
    rule: ProrationRule = "actual_days",
    tax_rate_percent: Decimal | int | str | None = None,
) -> Proration:
    """Charge a member who joins mid-period for the rest of it, ``start`` included."""
    period, start = _coerce(period, start, rule, "start")
    _check_within(period, start, "start")
    rate = _tax_rate(tax_rate_percent)
    end, fraction = _remaining(period, start, rule)
    line = _line(f"{item.label}, prorated first period", item, 1, start, end, fraction, rate)
    return Proration(rule, period, start, (line,))


def prorate_cancel(
    item: PlanItem,
    period: Period,
    last_day: date | datetime,
    *,
    rule: ProrationRule = "actual_days",
    tax_rate_percent: Decimal | int | str | None = None,
) -> Proration:
    """Credit the unused part of a paid period after a cancellation.

    ``last_day`` is the last day of service, inclusive: the credit covers the day after it
    through the period end, and ``effective`` is that day after. Cancelling on the period's
    last day credits nothing. For ``per_second`` a datetime is the instant service stops.
    """
    if isinstance(last_day, datetime):
        if rule != "per_second":
            raise ProrationError(
                f"the {rule} rule counts calendar days; pass the last day as a date"
            )
        stop: date | datetime = last_day
    else:
        _require_date("last day", last_day)
        if isinstance(period, BillingPeriod) and last_day not in period:
            raise ProrationError(
                f"last day of service {last_day} is outside the billing period {period}"
            )
        stop = last_day + _DAY
    period, stop = _coerce(period, stop, rule, "cancellation")
    if isinstance(period, InstantPeriod) and not period.start <= stop <= period.end:
        raise ProrationError(f"cancellation at {stop} is outside the billing period {period}")
    rate = _tax_rate(tax_rate_percent)
    past_end = stop > period.end if isinstance(period, BillingPeriod) else stop == period.end
    if past_end:
        return Proration(rule, period, stop)
    end, fraction = _remaining(period, stop, rule)
    description = f"Unused time on {item.label} after cancellation"
    line = _line(description, item, -1, stop, end, fraction, rate)
    return Proration(rule, period, stop, (line,))


# --------------------------------------------------------------------------- internals


def _remaining(
    period: Period, start: date | datetime, rule: ProrationRule
) -> tuple[date | datetime, PeriodFraction]:
    """The fragment from ``start`` to the period end, as (service end, fraction)."""
    if isinstance(period, InstantPeriod):
        return period.end, period_fraction(period, start, period.end, rule)
    end = period.end + _DAY if rule == "kill_bill" else period.end
    return period.end, period_fraction(period, start, end, rule)


def _line(
    description: str,
    item: PlanItem,
    sign: int,
    start: date | datetime,
    end: date | datetime,
    fraction: PeriodFraction,
    rate: Decimal | None,
) -> ProrationLine:
    exact = Decimal(sign * item.amount_cents) * fraction.numerator / fraction.denominator
    amount = round_half_up(exact)
    tax = percent_of(amount, rate) if rate is not None else 0
    return ProrationLine(description, start, end, fraction, amount, tax)


def _coerce(
    period: Period, moment: date | datetime, rule: ProrationRule, what: str
) -> tuple[Period, date | datetime]:
    """Match the period and moment types to the rule (instants for per_second, else days)."""
    _check_rule(rule)
    if rule == "per_second":
        if isinstance(moment, datetime):
            _require_aware(what, moment)
            tz = moment.tzinfo or UTC
        else:
            _require_date(what, moment)
            tz = period.start.tzinfo if isinstance(period, InstantPeriod) else UTC
            moment = datetime.combine(moment, time(), tz)
        if isinstance(period, BillingPeriod):
            period = period.instants(tz)
        return period, moment
    if isinstance(period, InstantPeriod):
        raise ProrationError(
            f"the {rule} rule counts calendar days; pass a BillingPeriod, not instants"
        )
    if isinstance(moment, datetime):
        raise ProrationError(
            f"the {rule} rule counts calendar days; pass the {what} as a date, not a timestamp"
        )
    _require_date(what, moment)
    return period, moment


def _check_within(period: Period, moment: date | datetime, what: str) -> None:
    if isinstance(period, BillingPeriod):
        if isinstance(moment, datetime) or not isinstance(moment, date):
            raise ProrationError(f"{what} must be a date for a calendar-day period")
        if moment not in period:
            raise ProrationError(f"{what} date {moment} is outside the billing period {period}")
        return
    _require_aware(what, moment)
    if not period.start <= moment < period.end:
        raise ProrationError(f"{what} {moment.isoformat()} is outside the billing period {period}")


def _thirty_day_position(period: BillingPeriod, day: date) -> int:
    """Where ``day`` starts on the period's 30-day-month scale: 0 at the period start,
    30 × months after its end; the last day of the period always keeps at least one day."""
    full = 30 * period.months
    if day > period.end:
        return full
    return min(_days_30e_360(period.start, day), full - 1)


def _days_30e_360(a: date, b: date) -> int:
    """Days from ``a`` to ``b`` counting every month as 30 days (30E/360: the 31st is the 30th)."""
    return 360 * (b.year - a.year) + 30 * (b.month - a.month) + min(b.day, 30) - min(a.day, 30)


def _anchored(year: int, month: int, anchor_day: int) -> date:
    return date(year, month, min(anchor_day, calendar.monthrange(year, month)[1]))


def _add_month(year: int, month: int, delta: int) -> tuple[int, int]:
    index = year * 12 + month - 1 + delta
    return index // 12, index % 12 + 1


def _seconds_between(start: datetime, end: datetime) -> int:
    return (end.astimezone(UTC) - start.astimezone(UTC)) // _SECOND


def _as_days(count: int, unit: str) -> str:
    if unit == "day":
        return str(count)
    days = (Decimal(count) / _SECONDS_PER_DAY).quantize(Decimal("0.000001")).normalize()
    return f"{days:f}"


def _tax_rate(rate: object) -> Decimal | None:
    if rate is None:
        return None
    try:
        value = to_decimal(rate)
    except MoneyError as exc:
        raise ProrationError(f"tax rate: {exc}") from None
    if value < 0:
        raise ProrationError(f"tax rate must not be negative, got {value}%")
    return value


def _check_rule(rule: object) -> None:
    if rule not in RULES:
        raise ProrationError(f"unknown proration rule {rule!r}; expected one of {', '.join(RULES)}")


def _require_int(name: str, value: object, *, money: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        hint = " (money is integer cents; floats are never used)" if money else ""
        raise ProrationError(
            f"{name} must be an integer{hint}, got {type(value).__name__} {value!r}"
        )


def _require_date(name: str, value: object) -> None:
    if isinstance(value, datetime) or not isinstance(value, date):
        raise ProrationError(f"{name} must be a calendar date, got {type(value).__name__}")


def _require_aware(name: str, value: object) -> None:
    if not isinstance(value, datetime):
        raise ProrationError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ProrationError(f"{name} {value.isoformat()} is naive; pass an aware datetime")
