"""Relative dates (bot/dates.py): ranges, periods and change dates against a localized today."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.dates import add_months, resolve, today_in


def span(text: str, today: str, mode: str = "past") -> tuple[str, str]:
    found = resolve(text, date.fromisoformat(today), mode)  # type: ignore[arg-type]
    assert found is not None, text
    return found.start.isoformat(), found.end.isoformat()


def test_today_differs_by_time_zone_near_midnight() -> None:
    """At 05:30 UTC on Dec 1 it is already Dec 1 in New York but still Nov 30 in Los Angeles."""
    clock = lambda: datetime(2026, 12, 1, 5, 30, tzinfo=UTC)  # noqa: E731
    assert today_in("America/New_York", clock) == date(2026, 12, 1)
    assert today_in("America/Los_Angeles", clock) == date(2026, 11, 30)
    assert today_in("UTC", clock) == date(2026, 12, 1)


def test_today_in_refuses_a_naive_clock() -> None:
    """A clock without a time zone is a bug, not a local time to guess."""
    with pytest.raises(ValueError, match="aware"):
        today_in("UTC", lambda: datetime(2026, 12, 1, 5, 30))  # noqa: DTZ001


def test_last_month_in_january_is_december_of_last_year() -> None:
    """The year boundary: "last month" on Jan 15 is the previous December, whole."""
    assert span("last month", "2027-01-15") == ("2026-12-01", "2026-12-31")


def test_quarters_around_the_year_boundary() -> None:
    """Q1 asked in January is this Q1 so far; Q4 asked in January is last year's Q4."""
    assert span("q1", "2027-01-15") == ("2027-01-01", "2027-01-15")
    assert span("Q4", "2027-01-15") == ("2026-10-01", "2026-12-31")
    assert span("q3 2025", "2027-01-15") == ("2025-07-01", "2025-09-30")
    assert span("2026 Q2", "2027-01-15") == ("2026-04-01", "2026-06-30")
    assert span("first quarter", "2026-11-29") == ("2026-01-01", "2026-03-31")
    assert span("last quarter", "2027-01-15") == ("2026-10-01", "2026-12-31")


def test_leap_year_february_and_yesterday() -> None:
    """February 2028 has 29 days; the day before Mar 1, 2028 is Feb 29."""
    assert span("february", "2028-03-01") == ("2028-02-01", "2028-02-29")
    assert span("yesterday", "2028-03-01") == ("2028-02-29", "2028-02-29")
    assert span("february", "2027-03-01") == ("2027-02-01", "2027-02-28")
    assert add_months(date(2028, 1, 31), 1) == date(2028, 2, 29)
    assert add_months(date(2027, 1, 31), 1) == date(2027, 2, 28)


def test_to_date_ranges_end_today() -> None:
    """MTD, QTD, YTD and "this year" start at the period's first day and end today."""
    assert span("mtd", "2026-11-29") == ("2026-11-01", "2026-11-29")
    assert span("quarter to date", "2026-11-29") == ("2026-10-01", "2026-11-29")
    assert span("YTD", "2026-11-29") == ("2026-01-01", "2026-11-29")
    assert span("this year", "2026-11-29") == ("2026-01-01", "2026-11-29")


def test_weeks_run_monday_to_sunday() -> None:
    """On Sunday Nov 29, 2026 this week began Monday Nov 23; last week is Nov 16..22."""
    assert span("last week", "2026-11-29") == ("2026-11-16", "2026-11-22")
    assert span("this week", "2026-11-25") == ("2026-11-23", "2026-11-25")


def test_rolling_windows_include_today() -> None:
    """"last 30 days" is today and the 29 days before it."""
    assert span("last 30 days", "2026-11-29") == ("2026-10-31", "2026-11-29")
    assert span("past two weeks", "2026-11-29") == ("2026-11-16", "2026-11-29")
    assert span("over the last 3 months", "2026-11-29") == ("2026-08-30", "2026-11-29")


def test_day_formats_are_us_month_first() -> None:
    """3/11, Mar 11, March 11th, 11 March and ISO all mean March 11."""
    for text in ("3/11", "Mar 11", "march 11th", "11 March", "the 11th of march"):
        assert span(text, "2026-11-29") == ("2026-03-11", "2026-03-11"), text
    assert span("3/11/2025", "2026-11-29") == ("2025-03-11", "2025-03-11")
    assert span("2026-03-11", "2026-11-29") == ("2026-03-11", "2026-03-11")
    assert resolve("2/30", date(2026, 11, 29)) is None


def test_on_the_nth_looks_back_for_reports_and_ahead_for_changes() -> None:
    """"on the 15th" asked on the 29th: this month's for a report, next month's for a change."""
    assert span("on the 15th", "2026-11-29") == ("2026-11-15", "2026-11-15")
    assert span("on the 15th", "2026-11-10") == ("2026-10-15", "2026-10-15")
    assert span("on the 15th", "2026-11-29", "future") == ("2026-12-15", "2026-12-15")
    assert span("on the 31st", "2026-11-29") == ("2026-10-31", "2026-10-31")
    assert span("on the 31st", "2026-11-29", "future") == ("2026-12-31", "2026-12-31")


def test_month_names_by_mode() -> None:
    """A month without a year: the latest begun (past), not after next month (period), next
    (future)."""
    assert span("in march", "2026-11-29") == ("2026-03-01", "2026-03-31")
    assert span("in december", "2026-11-29") == ("2025-12-01", "2025-12-31")
    assert span("december", "2026-11-29", "period") == ("2026-12-01", "2026-12-31")
    assert span("january", "2026-11-29", "period") == ("2026-01-01", "2026-01-31")
    assert span("december", "2027-01-15", "period") == ("2026-12-01", "2026-12-31")
    assert span("jan 1", "2026-11-29", "future") == ("2027-01-01", "2027-01-01")
    assert span("march 2026", "2026-11-29") == ("2026-03-01", "2026-03-31")
    assert span("2026-03", "2026-11-29") == ("2026-03-01", "2026-03-31")
    assert span("in 2025", "2026-11-29") == ("2025-01-01", "2025-12-31")


def test_may_is_a_month_only_in_context() -> None:
    """"may I" is not a date; "in May" is."""
    assert resolve("may I see the numbers", date(2026, 11, 29)) is None
    assert span("revenue in may", "2026-11-29") == ("2026-05-01", "2026-05-31")


def test_ranges_since_and_between() -> None:
    """since X runs to today; between/from-to/through join two expressions, across a year end."""
    assert span("since Jan 1", "2026-11-29") == ("2026-01-01", "2026-11-29")
    assert span("since september", "2026-11-29") == ("2026-09-01", "2026-11-29")
    assert span("between 2026-09-01 and 2026-09-15", "2026-11-29") == ("2026-09-01",
                                                                      "2026-09-15")
    assert span("from 3/1 to 3/15", "2026-11-29") == ("2026-03-01", "2026-03-15")
    assert span("jan through mar", "2026-11-29") == ("2026-01-01", "2026-03-31")
    assert span("Dec 20 - Jan 5", "2026-11-29") == ("2025-12-20", "2026-01-05")


def test_a_range_in_progress_ends_today_but_a_future_one_stays_whole() -> None:
    """This month to date, but next month whole."""
    assert span("this month", "2026-11-29") == ("2026-11-01", "2026-11-29")
    assert span("next month", "2026-11-29") == ("2026-12-01", "2026-12-31")
    assert span("this month", "2026-11-29", "period") == ("2026-11-01", "2026-11-30")


def test_spans_point_at_the_date_words() -> None:
    """The router reads the rest of the text without the date words."""
    text = "occupancy at riverside last month please"
    found = resolve(text, date(2026, 11, 29))
    assert found is not None
    (begin, end), = found.spans
    assert text[begin:end] == "last month"
    assert found.period == "2026-10"


def test_no_date_at_all() -> None:
    """Text without a date expression resolves to None (the tool's default applies)."""
    assert resolve("what's mrr?", date(2026, 11, 29)) is None
    assert resolve("send bill 42 for approval", date(2026, 11, 29)) is None


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)))
def test_relative_ranges_hold_for_any_today(today: date) -> None:
    """For any today: last month ends before this month; YTD and MTD end today; 'yesterday'
    is the day before."""
    last = resolve("last month", today)
    assert last is not None and last.end == today.replace(day=1) - timedelta(days=1)
    assert last.start.day == 1 and last.start.month == last.end.month
    for text, first in (("ytd", today.replace(month=1, day=1)), ("mtd", today.replace(day=1))):
        found = resolve(text, today)
        assert found is not None and (found.start, found.end) == (first, today)
    found = resolve("yesterday", today)
    assert found is not None and found.start == found.end == today - timedelta(days=1)
    q = resolve("this quarter", today)
    assert q is not None and q.start <= today == q.end and (today - q.start).days < 92
