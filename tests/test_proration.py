"""Proration engine (DESIGN §4): day-count rules, billing periods, changes, joins, cancellations."""

from __future__ import annotations

import calendar
import csv
import io
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from finance.money import percent_of, round_half_up
from finance.proration import (
    CSV_COLUMNS,
    RULES,
    BillingPeriod,
    InstantPeriod,
    PeriodFraction,
    PlanItem,
    ProrationError,
    billing_period,
    change_timing,
    period_fraction,
    prorate_cancel,
    prorate_change,
    prorate_join,
)

MARCH_2026 = BillingPeriod(date(2026, 3, 1), date(2026, 3, 31))
HOT = PlanItem("Hot Desk", 60_000)
DEDICATED = PlanItem("Dedicated Desk", 90_000)
DAY_RULES = ("actual_days", "kill_bill", "thirty_day")


def period(y1: int, m1: int, d1: int, y2: int, m2: int, d2: int) -> BillingPeriod:
    """A calendar-day billing period from two dates given as numbers."""
    return BillingPeriod(date(y1, m1, d1), date(y2, m2, d2))


def amounts(proration):
    """Line amounts in cents, in line order."""
    return [line.amount_cents for line in proration.lines]


# --------------------------------------------------------------------------- reference cases


def test_stripe_documented_example_halfway_upgrade():
    """Stripe: $10 → $20 exactly halfway through a 30-day period credits $5 and charges $10."""
    period = InstantPeriod(datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC))
    result = prorate_change(
        PlanItem("Basic", 1_000),
        PlanItem("Pro", 2_000),
        period,
        datetime(2026, 4, 16, tzinfo=UTC),
        rule="per_second",
    )
    assert amounts(result) == [-500, 1_000]
    assert result.net_cents == 500
    assert result.lines[0].fraction == PeriodFraction(15 * 86_400, 30 * 86_400, "second")
    assert result.lines[1].service_end == datetime(2026, 5, 1, tzinfo=UTC)


def test_design_worked_example_march_11_upgrade():
    """DESIGN §4: $600 → $900 on Mar 11 credits −$406.45, charges $609.68, nets $203.23."""
    result = prorate_change(HOT, DEDICATED, MARCH_2026, date(2026, 3, 11))
    credit, charge = result.lines
    assert credit.amount_cents == -40_645
    assert charge.amount_cents == 60_968
    assert result.net_cents == 20_323
    assert (credit.fraction.numerator, credit.fraction.denominator) == (21, 31)
    assert (charge.service_start, charge.service_end) == (date(2026, 3, 11), date(2026, 3, 31))
    assert credit.description == "Unused time on Hot Desk"
    assert charge.description == "Remaining time on Dedicated Desk"
    assert result.effective == date(2026, 3, 11)
    assert result.tax_cents == 0 and result.total_cents == 20_323


def test_kill_bill_feb_1_to_15_2012_is_14_of_29():
    """Kill Bill: the half-open fragment [Feb 1, Feb 15) 2012 is 14/29 of the Feb 2012 period."""
    feb_2012 = billing_period(1, date(2012, 2, 10))
    assert feb_2012 == BillingPeriod(date(2012, 2, 1), date(2012, 2, 29))
    fraction = period_fraction(feb_2012, date(2012, 2, 1), date(2012, 2, 15), "kill_bill")
    assert fraction == PeriodFraction(14, 29)
    # actual_days reads the same end date as inclusive: Feb 1..Feb 15 is 15 days.
    assert period_fraction(feb_2012, date(2012, 2, 1), date(2012, 2, 15)) == PeriodFraction(15, 29)


def test_kill_bill_fragment_may_end_on_next_period_start():
    """Kill Bill: [Feb 15, Mar 1) 2012 is 15/29, and a change on Feb 15 prices that fragment."""
    feb_2012 = billing_period(1, date(2012, 2, 1))
    assert period_fraction(feb_2012, date(2012, 2, 15), date(2012, 3, 1), "kill_bill") == (
        PeriodFraction(15, 29)
    )
    result = prorate_change(
        PlanItem("A", 2_900), PlanItem("B", 5_800), feb_2012, date(2012, 2, 15), rule="kill_bill"
    )
    assert amounts(result) == [-1_500, 3_000]


# --------------------------------------------------------------------------- billing periods


def test_anchor_31_snaps_to_end_of_february():
    """Anchor 31: the period holding Feb 10 2026 runs Jan 31..Feb 27 (Feb 28 starts the next)."""
    assert billing_period(31, date(2026, 2, 10)) == period(2026, 1, 31, 2026, 2, 27)
    assert billing_period(31, date(2026, 3, 5)) == period(2026, 2, 28, 2026, 3, 30)


def test_anchor_31_snaps_to_april_30():
    """Anchor 31: Apr 30 starts a period (Apr 30..May 30); Apr 29 ends Mar 31..Apr 29."""
    assert billing_period(31, date(2026, 4, 30)) == period(2026, 4, 30, 2026, 5, 30)
    assert billing_period(31, date(2026, 4, 29)) == period(2026, 3, 31, 2026, 4, 29)


def test_anchor_31_april_change_prorates_over_30_days():
    """Anchor 31, change Apr 20 2026 in Mar 31..Apr 29: 10/30 of $300 → $450 is −$100, +$150."""
    period = billing_period(31, date(2026, 4, 20))
    assert period.days == 30
    result = prorate_change(
        PlanItem("Desk", 30_000), PlanItem("Office", 45_000), period, date(2026, 4, 20)
    )
    assert amounts(result) == [-10_000, 15_000]
    assert result.lines[0].fraction == PeriodFraction(10, 30)


def test_leap_year_february_has_29_days():
    """Feb 2024 is 29 days; a change on Feb 29 is 1/29: $290 → $580 credits $10, charges $20."""
    period = billing_period(1, date(2024, 2, 29))
    assert period == BillingPeriod(date(2024, 2, 1), date(2024, 2, 29))
    result = prorate_change(PlanItem("A", 29_000), PlanItem("B", 58_000), period, date(2024, 2, 29))
    assert amounts(result) == [-1_000, 2_000]
    assert result.lines[0].fraction == PeriodFraction(1, 29)


def test_anchor_29_30_31_in_leap_february():
    """In Feb 2024 anchors 29, 30 and 31 all start on Feb 29; in 2026 they start on Feb 28."""
    for anchor in (29, 30, 31):
        assert billing_period(anchor, date(2024, 3, 1)).start == date(2024, 2, 29)
        assert billing_period(anchor, date(2026, 3, 1)).start == date(2026, 2, 28)
    assert billing_period(30, date(2024, 3, 1)).end == date(2024, 3, 29)


def test_yearly_period_anchored_on_leap_day():
    """Yearly on Feb 29: 2024-02-29..2025-02-27 (365 days), then 2025-02-28..2026-02-27."""
    first = billing_period(29, date(2024, 6, 1), interval="year", anchor_month=2)
    assert first == BillingPeriod(date(2024, 2, 29), date(2025, 2, 27))
    assert first.days == 365
    second = billing_period(29, date(2025, 2, 28), interval="year", anchor_month=2)
    assert second == BillingPeriod(date(2025, 2, 28), date(2026, 2, 27))


def test_yearly_actual_days_uses_366_day_leap_year():
    """Yearly Jan 1 2024 period has 366 days; joining Jul 1 charges 184/366 of $3,660 = $1,840."""
    period = billing_period(1, date(2024, 7, 1), interval="year")
    assert period.days == 366
    result = prorate_join(PlanItem("Office (annual)", 366_000), period, date(2024, 7, 1))
    assert result.lines[0].fraction == PeriodFraction(184, 366)
    assert amounts(result) == [184_000]


def test_calendar_month_anchor_1_january_boundary():
    """Anchor 1 on Jan 1 gives January; anchor 15 on Jan 3 reaches back to Dec 15..Jan 14."""
    assert billing_period(1, date(2026, 1, 1)) == period(2026, 1, 1, 2026, 1, 31)
    assert billing_period(15, date(2026, 1, 3)) == period(2025, 12, 15, 2026, 1, 14)


# --------------------------------------------------------------------------- quantity, rules, tax


def test_quantity_change_two_desks_to_three():
    """2 → 3 desks at $300 on Mar 11 prices like $600 → $900: −$406.45, +$609.68."""
    desk = "Dedicated Desk"
    result = prorate_change(
        PlanItem(desk, 30_000, 2), PlanItem(desk, 30_000, 3), MARCH_2026, date(2026, 3, 11)
    )
    assert amounts(result) == [-40_645, 60_968]
    assert result.lines[0].description == "Unused time on Dedicated Desk × 2"
    assert result.lines[1].description == "Remaining time on Dedicated Desk × 3"


def test_thirty_day_march_11():
    """thirty_day: Mar 11 leaves 20/30 of the month: $600 → $900 is −$400.00, +$600.00."""
    result = prorate_change(HOT, DEDICATED, MARCH_2026, date(2026, 3, 11), rule="thirty_day")
    assert amounts(result) == [-40_000, 60_000]
    assert result.lines[0].fraction == PeriodFraction(20, 30)


def test_thirty_day_day_31_and_30_both_keep_one_thirtieth():
    """thirty_day: joining on Mar 30 or Mar 31 costs 1/30 ($20 of $600); Mar 1 costs all of it."""
    for day, cents in ((1, 60_000), (30, 2_000), (31, 2_000)):
        result = prorate_join(HOT, MARCH_2026, date(2026, 3, day), rule="thirty_day")
        assert amounts(result) == [cents]
        assert result.lines[0].fraction.denominator == 30


def test_thirty_day_february_end():
    """thirty_day: Feb 28 2026 (non-leap) is 3/30 by 30E/360; Feb 1 is the full 30/30."""
    feb = billing_period(1, date(2026, 2, 1))
    assert prorate_join(HOT, feb, date(2026, 2, 28), rule="thirty_day").lines[0].fraction == (
        PeriodFraction(3, 30)
    )
    assert amounts(prorate_join(HOT, feb, date(2026, 2, 1), rule="thirty_day")) == [60_000]


def test_thirty_day_counts_short_months_as_thirty_days():
    """thirty_day, anchor 15: Feb 15..Mar 14 2026 joined Mar 1 is 14/30 (Mar 1..14) = $280."""
    period = billing_period(15, date(2026, 3, 1))
    assert period == BillingPeriod(date(2026, 2, 15), date(2026, 3, 14))
    line = prorate_join(HOT, period, date(2026, 3, 1), rule="thirty_day").lines[0]
    assert line.fraction == PeriodFraction(14, 30)
    assert line.amount_cents == 28_000


def test_thirty_day_yearly_is_a_360_day_year():
    """thirty_day, yearly from Jan 1 2024: joining Jul 1 is 180/360, exactly half of $3,600."""
    period = billing_period(1, date(2024, 7, 1), interval="year")
    result = prorate_join(PlanItem("Annual", 360_000), period, date(2024, 7, 1), rule="thirty_day")
    assert result.lines[0].fraction == PeriodFraction(180, 360)
    assert amounts(result) == [180_000]


def test_tax_is_computed_on_the_rounded_line():
    """$600 × 10/31 = $193.548… → $193.55; 10% tax of the rounded line is $19.36 (not $19.35)."""
    result = prorate_join(HOT, MARCH_2026, date(2026, 3, 22), tax_rate_percent=Decimal("10"))
    (line,) = result.lines
    assert (line.amount_cents, line.tax_cents, line.total_cents) == (19_355, 1_936, 21_291)
    credit = prorate_cancel(HOT, MARCH_2026, date(2026, 3, 21), tax_rate_percent="10")
    assert (credit.lines[0].amount_cents, credit.lines[0].tax_cents) == (-19_355, -1_936)


def test_worked_example_with_tax_per_line():
    """8.875% tax on the worked example: −$36.07 on the credit, +$54.11 on the charge."""
    result = prorate_change(
        HOT, DEDICATED, MARCH_2026, date(2026, 3, 11), tax_rate_percent=Decimal("8.875")
    )
    assert [line.tax_cents for line in result.lines] == [-3_607, 5_411]
    assert result.tax_cents == 1_804
    assert result.total_cents == 20_323 + 1_804


def test_per_second_mid_day_change():
    """per_second: a change at noon on Apr 16 leaves 14.5 of 30 days: $20 → −$9.67 of $20."""
    period = billing_period(1, date(2026, 4, 1))
    result = prorate_change(
        PlanItem("A", 2_000), PlanItem("B", 4_000), period,
        datetime(2026, 4, 16, 12, tzinfo=UTC), rule="per_second",
    )
    assert amounts(result) == [-967, 1_933]
    assert result.to_rows()[0]["days"] == "14.5"
    assert result.to_rows()[0]["period_days"] == "30"


def test_per_second_honours_the_timestamp_zone():
    """per_second: a calendar period in UTC-5 starts 05:00Z; Apr 16 00:00-05:00 is halfway."""
    est = timezone(timedelta(hours=-5))
    result = prorate_change(
        PlanItem("A", 1_000), PlanItem("B", 2_000), billing_period(1, date(2026, 4, 1)),
        datetime(2026, 4, 16, tzinfo=est), rule="per_second",
    )
    assert result.period.start == datetime(2026, 4, 1, 5, tzinfo=UTC)
    assert amounts(result) == [-500, 1_000]


def test_per_second_counts_real_seconds_across_dst():
    """per_second: March 2026 in New York lasts 31 days minus the DST hour (2,674,800 s)."""
    new_york = ZoneInfo("America/New_York")
    result = prorate_join(
        PlanItem("Desk", 100_000),
        billing_period(1, date(2026, 3, 1)),
        datetime(2026, 3, 16, tzinfo=new_york),
        rule="per_second",
    )
    (line,) = result.lines
    assert line.fraction.denominator == 31 * 86_400 - 3_600
    assert line.fraction.numerator == 16 * 86_400  # Mar 16 00:00 EDT → Apr 1 00:00 EDT
    assert line.amount_cents == 51_682  # 1,382,400 / 2,674,800 × $1,000 = $516.823…


# --------------------------------------------------------------------------- policy


def test_upgrade_applies_immediately():
    """An upgrade is effective on the change date and prorated."""
    timing = change_timing(HOT, DEDICATED, MARCH_2026, date(2026, 3, 11))
    assert (timing.direction, timing.effective, timing.prorated) == (
        "upgrade", date(2026, 3, 11), True
    )


def test_downgrade_waits_for_period_end_and_produces_no_lines():
    """A downgrade takes effect Apr 1 by default, with no proration lines and nothing owed."""
    timing = change_timing(DEDICATED, HOT, MARCH_2026, date(2026, 3, 11))
    assert (timing.direction, timing.effective, timing.prorated) == (
        "downgrade", date(2026, 4, 1), False
    )
    result = prorate_change(DEDICATED, HOT, MARCH_2026, date(2026, 3, 11))
    assert result.lines == ()
    assert result.effective == date(2026, 4, 1)
    assert (result.net_cents, result.total_cents) == (0, 0)
    assert result.to_rows() == []


def test_downgrade_immediate_when_configured():
    """downgrade="immediate" prorates a downgrade: $900 → $600 on Mar 11 nets −$203.23."""
    result = prorate_change(DEDICATED, HOT, MARCH_2026, date(2026, 3, 11), downgrade="immediate")
    assert amounts(result) == [-60_968, 40_645]
    assert result.net_cents == -20_323


def test_quantity_decrease_is_a_downgrade():
    """3 desks → 2 desks is a downgrade: effective at the next period start."""
    timing = change_timing(
        PlanItem("Desk", 30_000, 3), PlanItem("Desk", 30_000, 2), MARCH_2026, date(2026, 3, 11)
    )
    assert (timing.direction, timing.effective, timing.prorated) == (
        "downgrade", date(2026, 4, 1), False
    )


def test_per_second_downgrade_effective_at_period_end_instant():
    """per_second: a deferred downgrade takes effect at the period's exclusive end instant."""
    period = InstantPeriod(datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC))
    result = prorate_change(
        PlanItem("Pro", 2_000), PlanItem("Basic", 1_000), period,
        datetime(2026, 4, 16, tzinfo=UTC), rule="per_second",
    )
    assert result.lines == ()
    assert result.effective == datetime(2026, 5, 1, tzinfo=UTC)


def test_same_amount_plan_switch_nets_zero_with_lines():
    """A lateral switch (same price) is immediate, shows both lines and nets to zero."""
    result = prorate_change(HOT, PlanItem("Hot Desk Plus", 60_000), MARCH_2026, date(2026, 3, 11))
    assert amounts(result) == [-40_645, 40_645]
    assert result.net_cents == 0


# --------------------------------------------------------------------------- join and cancel


def test_first_period_join_mid_month():
    """Joining Mar 11 on $600/mo charges 21/31 = $406.45 for Mar 11..Mar 31."""
    result = prorate_join(HOT, MARCH_2026, date(2026, 3, 11))
    (line,) = result.lines
    assert line.amount_cents == 40_645
    assert (line.service_start, line.service_end) == (date(2026, 3, 11), date(2026, 3, 31))
    assert line.description == "Hot Desk, prorated first period"
    assert result.effective == date(2026, 3, 11)


def test_join_on_period_start_is_full_price():
    """Joining on the first day of the period charges the full price."""
    assert amounts(prorate_join(DEDICATED, MARCH_2026, date(2026, 3, 1))) == [90_000]


def test_cancellation_credit_starts_the_day_after_the_last_day():
    """Last day of service Mar 10 (inclusive) credits Mar 11..Mar 31 = −$406.45."""
    result = prorate_cancel(HOT, MARCH_2026, date(2026, 3, 10))
    (line,) = result.lines
    assert line.amount_cents == -40_645
    assert (line.service_start, line.service_end) == (date(2026, 3, 11), date(2026, 3, 31))
    assert line.fraction == PeriodFraction(21, 31)
    assert result.effective == date(2026, 3, 11)


def test_cancellation_on_period_last_day_credits_nothing():
    """Cancelling with Mar 31 as the last day of service produces no credit; effective Apr 1."""
    result = prorate_cancel(HOT, MARCH_2026, date(2026, 3, 31))
    assert result.lines == ()
    assert result.effective == date(2026, 4, 1)
    assert result.net_cents == 0


def test_cancellation_on_first_day_keeps_one_day():
    """Last day Mar 1: the member used one day; the credit is 30/31 of $600 = −$580.65."""
    result = prorate_cancel(HOT, MARCH_2026, date(2026, 3, 1))
    assert amounts(result) == [-58_065]


def test_per_second_cancellation_at_an_instant():
    """per_second: service stopping at 2026-04-16T00:00Z credits half of a $10 period."""
    period = InstantPeriod(datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC))
    result = prorate_cancel(
        PlanItem("Basic", 1_000), period, datetime(2026, 4, 16, tzinfo=UTC), rule="per_second"
    )
    assert amounts(result) == [-500]


# --------------------------------------------------------------------------- schedule


def test_to_rows_renders_money_as_decimal_strings():
    """to_rows: one dict per line with ISO dates, day counts and money like "-406.45"."""
    result = prorate_change(HOT, DEDICATED, MARCH_2026, date(2026, 3, 11), tax_rate_percent="10")
    assert result.to_rows() == [
        {
            "description": "Unused time on Hot Desk",
            "service_start": "2026-03-11",
            "service_end": "2026-03-31",
            "days": "21",
            "period_days": "31",
            "amount": "-406.45",
            "tax": "-40.65",
            "total": "-447.10",
        },
        {
            "description": "Remaining time on Dedicated Desk",
            "service_start": "2026-03-11",
            "service_end": "2026-03-31",
            "days": "21",
            "period_days": "31",
            "amount": "609.68",
            "tax": "60.97",
            "total": "670.65",
        },
    ]


def test_to_csv_has_header_and_one_row_per_line():
    """to_csv: a header of CSV_COLUMNS and the same rows as to_rows."""
    result = prorate_change(HOT, DEDICATED, MARCH_2026, date(2026, 3, 11))
    text = result.to_csv()
    assert text.splitlines()[0] == ",".join(CSV_COLUMNS)
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert parsed == result.to_rows()
    assert [row["amount"] for row in parsed] == ["-406.45", "609.68"]


# --------------------------------------------------------------------------- bad input


def test_change_date_outside_period_is_refused():
    """A change on Apr 1 is not in March: ProrationError naming the date and the period."""
    with pytest.raises(ProrationError, match=r"2026-04-01 is outside the billing period 2026-03"):
        prorate_change(HOT, DEDICATED, MARCH_2026, date(2026, 4, 1))
    with pytest.raises(ProrationError, match="outside"):
        prorate_join(HOT, MARCH_2026, date(2026, 2, 28))
    with pytest.raises(ProrationError, match="outside"):
        prorate_cancel(HOT, MARCH_2026, date(2026, 4, 1))


def test_per_second_change_at_exclusive_end_is_refused():
    """per_second periods are half-open: a change at the end instant is outside the period."""
    period = InstantPeriod(datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC))
    with pytest.raises(ProrationError, match="outside"):
        prorate_change(HOT, DEDICATED, period, datetime(2026, 5, 1, tzinfo=UTC), rule="per_second")


def test_negative_price_is_refused():
    """A negative unit price raises ProrationError (a ValueError)."""
    with pytest.raises(ProrationError, match="must not be negative"):
        PlanItem("Desk", -1)
    assert issubclass(ProrationError, ValueError)


def test_float_price_is_refused():
    """A float price raises ProrationError explaining that money is integer cents."""
    with pytest.raises(ProrationError, match="integer cents"):
        PlanItem("Desk", 600.0)  # type: ignore[arg-type]


def test_float_tax_rate_is_refused():
    """A float tax rate raises ProrationError; Decimal, int and text are accepted."""
    with pytest.raises(ProrationError, match="floats are never used"):
        prorate_join(HOT, MARCH_2026, date(2026, 3, 11), tax_rate_percent=8.875)  # type: ignore
    with pytest.raises(ProrationError, match="must not be negative"):
        prorate_join(HOT, MARCH_2026, date(2026, 3, 11), tax_rate_percent="-1")


def test_other_bad_inputs_are_refused():
    """Unknown rule, bad anchor, zero quantity, reversed period, naive or misplaced timestamps."""
    with pytest.raises(ProrationError, match="unknown proration rule"):
        prorate_change(HOT, DEDICATED, MARCH_2026, date(2026, 3, 11), rule="daily")  # type: ignore
    with pytest.raises(ProrationError, match="anchor day must be 1–31"):
        billing_period(32, date(2026, 3, 1))
    with pytest.raises(ProrationError, match="quantity"):
        PlanItem("Desk", 100, 0)
    with pytest.raises(ProrationError, match="before it starts"):
        BillingPeriod(date(2026, 3, 31), date(2026, 3, 1))
    with pytest.raises(ProrationError, match="naive"):
        prorate_change(HOT, DEDICATED, MARCH_2026, datetime(2026, 3, 11), rule="per_second")
    with pytest.raises(ProrationError, match="not a timestamp"):
        prorate_change(HOT, DEDICATED, MARCH_2026, datetime(2026, 3, 11, tzinfo=UTC))
    with pytest.raises(ProrationError, match="downgrade timing"):
        prorate_change(
            DEDICATED, HOT, MARCH_2026, date(2026, 3, 11), downgrade="never"  # type: ignore
        )


# --------------------------------------------------------------------------- properties

prices = st.integers(min_value=0, max_value=10_000_000)
quantities = st.integers(min_value=1, max_value=50)
anchors = st.integers(min_value=1, max_value=31)
days = st.dates(min_value=date(1999, 1, 1), max_value=date(2101, 12, 31))
intervals = st.sampled_from(["month", "year"])
rules = st.sampled_from(RULES)


@st.composite
def period_and_day(draw):
    """A billing period (any anchor, monthly or yearly) and a day inside it."""
    interval = draw(intervals)
    period = billing_period(
        draw(anchors), draw(days), interval=interval, anchor_month=draw(st.integers(1, 12))
    )
    offset = draw(st.integers(min_value=0, max_value=period.days - 1))
    return period, period.start + timedelta(days=offset)


@given(period_and_day(), prices, quantities, rules)
def test_property_same_plan_change_nets_zero(pd, price, qty, rule):
    """Changing to the same plan and quantity nets to exactly zero, under every rule."""
    period, day = pd
    item = PlanItem("Desk", price, qty)
    result = prorate_change(item, item, period, day, rule=rule)
    assert result.net_cents == 0
    assert result.lines[0].amount_cents == -result.lines[1].amount_cents


@given(period_and_day(), prices, rules)
def test_property_fraction_between_zero_and_one(pd, price, rule):
    """Every line's fraction has 0 < numerator ≤ denominator, and |amount| ≤ the full price."""
    period, day = pd
    line = prorate_join(PlanItem("Desk", price), period, day, rule=rule).lines[0]
    assert 0 < line.fraction.numerator <= line.fraction.denominator
    assert 0 <= line.amount_cents <= price


@given(period_and_day(), prices, quantities, rules)
def test_property_whole_period_charge_equals_price(pd, price, qty, rule):
    """Joining on the period's first day charges exactly price × quantity, under every rule."""
    period, _ = pd
    result = prorate_join(PlanItem("Desk", price, qty), period, period.start, rule=rule)
    assert amounts(result) == [price * qty]
    assert result.lines[0].fraction.value == 1


@given(period_and_day(), prices, prices, st.sampled_from(DAY_RULES))
def test_property_change_lines_bounded_and_signed(pd, old_price, new_price, rule):
    """Credits are ≤ 0 and charges ≥ 0, each no larger than its full price; net = their sum."""
    period, day = pd
    old, new = PlanItem("Old", old_price), PlanItem("New", new_price)
    result = prorate_change(old, new, period, day, rule=rule, downgrade="immediate")
    credit, charge = result.lines
    assert -old_price <= credit.amount_cents <= 0
    assert 0 <= charge.amount_cents <= new_price
    assert result.net_cents == credit.amount_cents + charge.amount_cents


@given(period_and_day(), prices, st.sampled_from(DAY_RULES))
def test_property_used_and_remaining_partition_the_period(pd, price, rule):
    """Used [start, day) + remaining [day, end] is exactly the period; cents within 1 of price."""
    period, day = pd
    remaining = prorate_join(PlanItem("Desk", price), period, day, rule=rule).lines[0]
    if day == period.start:
        assert remaining.fraction.value == 1
        return
    used_end = day if rule == "kill_bill" else day - timedelta(days=1)
    used = period_fraction(period, period.start, used_end, rule)
    assert used.value + remaining.fraction.value == 1
    used_cents = round_half_up(Decimal(price) * used.numerator / used.denominator)
    assert abs(used_cents + remaining.amount_cents - price) <= 1


@given(period_and_day(), prices, st.sampled_from(DAY_RULES))
def test_property_cancel_credit_mirrors_join_charge(pd, price, rule):
    """Cancelling with last day D−1 credits exactly what joining on D charges."""
    period, day = pd
    if day == period.start:
        return
    item = PlanItem("Desk", price)
    joined = prorate_join(item, period, day, rule=rule)
    cancelled = prorate_cancel(item, period, day - timedelta(days=1), rule=rule)
    assert amounts(cancelled) == [-amounts(joined)[0]]
    assert cancelled.lines[0].service_start == joined.lines[0].service_start == day


@given(period_and_day(), prices, st.sampled_from(DAY_RULES))
def test_property_later_day_never_costs_more(pd, price, rule):
    """The remaining fraction never grows as the join day moves later in the period."""
    period, day = pd
    if day == period.end:
        return
    item = PlanItem("Desk", price)
    today = prorate_join(item, period, day, rule=rule).lines[0]
    tomorrow = prorate_join(item, period, day + timedelta(days=1), rule=rule).lines[0]
    assert tomorrow.fraction.value <= today.fraction.value
    assert tomorrow.amount_cents <= today.amount_cents


@given(period_and_day(), prices, prices)
def test_property_per_second_at_midnight_equals_actual_days(pd, old_price, new_price):
    """A per_second change at UTC midnight prices exactly like actual_days on that date."""
    period, day = pd
    old, new = PlanItem("Old", old_price), PlanItem("New", new_price)
    by_day = prorate_change(old, new, period, day, downgrade="immediate")
    instant = datetime(day.year, day.month, day.day, tzinfo=UTC)
    by_second = prorate_change(
        old, new, period, instant, rule="per_second", downgrade="immediate"
    )
    assert amounts(by_second) == amounts(by_day)


@given(period_and_day(), prices, st.decimals(min_value=0, max_value=30, places=3), rules)
def test_property_tax_is_percent_of_rounded_line(pd, price, rate, rule):
    """Each line's tax equals percent_of(its rounded amount); total = net + tax."""
    period, day = pd
    result = prorate_change(
        PlanItem("Old", price), PlanItem("New", price + 1), period, day,
        rule=rule, tax_rate_percent=rate,
    )
    for line in result.lines:
        assert line.tax_cents == percent_of(line.amount_cents, rate)
    assert result.total_cents == result.net_cents + result.tax_cents


@given(anchors, days)
def test_property_monthly_periods_tile_the_calendar(anchor, day):
    """The monthly period holds the date, starts on the snapped anchor and abuts the next one."""
    period = billing_period(anchor, day)
    assert period.start <= day <= period.end
    assert 28 <= period.days <= 31
    month_length = calendar.monthrange(period.start.year, period.start.month)[1]
    assert period.start.day == min(anchor, month_length)
    following = billing_period(anchor, period.end + timedelta(days=1))
    assert following.start == period.end + timedelta(days=1)


@given(anchors, st.integers(1, 12), days)
def test_property_yearly_periods_are_a_year_long(anchor, month, day):
    """The yearly period holds the date and lasts 365 or 366 days."""
    period = billing_period(anchor, day, interval="year", anchor_month=month)
    assert period.start <= day <= period.end
    assert period.days in (365, 366)
    assert period.start.month == month
