"""The KPI engine (DESIGN §6): every KPI against values worked out by hand on a small space,
filters and refusals, and revenue / cash burn / DSO against bean-query on the demo ledger.

The hand-built space (June 2026, 30 days), location DT unless noted:

- resources: a hot-desk area of 4 seats, 2 dedicated desks, one 2-seat office; UP: 2 hot seats
- A  hot desk $300 from May 1 (ongoing) and a dedicated desk $600 Jun 21–30 (two at once)
- B  hot desk × 2, $300, Jun 11–20
- C  dedicated desk $600 from Jan 1 (ongoing)
- D  annual dedicated desk $6,000/yr from Jun 16 (ongoing)
- E  private office × 2 seats, $900 a seat, Jun 1–30
- G  (UP) hot desk $250 from Jan 1 (ongoing)

Ledger (cents): see ``_post_books``; invoices and credit notes: see ``_invoices``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session

from finance import db, kpi, ledger, summary
from finance.ledger import EntryDraft, Leg
from finance.models import (
    BudgetTarget,
    CreditNote,
    Invoice,
    Location,
    Plan,
    Resource,
    Subscription,
)
from finance.services import Services, build_services
from finance.settings import load_settings
from tests.conftest import FIXED_NOW, postgres_url, require_postgres
from tests.helpers import add_location, add_member, build_space

JUNE = (date(2026, 6, 1), date(2026, 6, 30))


def _books(session: Session, knowledge: Path) -> dict[str, Any]:
    space = build_space(session, knowledge)
    dt, plans = space["location"], space["plans"]
    up = add_location(session, "UP", "America/Chicago")
    session.add_all([
        Resource(location_id=dt, kind="desk", desk_type="hot_desk", name="Hot area", capacity=4),
        Resource(location_id=dt, kind="desk", desk_type="dedicated_desk", name="D1"),
        Resource(location_id=dt, kind="desk", desk_type="dedicated_desk", name="D2"),
        Resource(location_id=dt, kind="office", desk_type="private_office", name="O1",
                 capacity=2),
        Resource(location_id=dt, kind="meeting_room", name="Board room", capacity=10),
        Resource(location_id=dt, kind="desk", desk_type="hot_desk", name="Retired", capacity=9,
                 active=False),
        Resource(location_id=up, kind="desk", desk_type="hot_desk", name="Hot area", capacity=2),
    ])
    m: dict[str, int] = {}
    m["A"], _ = add_member(session, "A", "Avery", plan_id=plans["hot"], location_id=dt,
                           start=date(2026, 5, 1), price_cents=30_000)
    session.add(Subscription(member_id=m["A"], plan_id=plans["ded"], location_id=dt,
                             unit_price_cents=60_000, start_date=date(2026, 6, 21),
                             end_date=date(2026, 6, 30)))
    m["B"], _ = add_member(session, "B", "Blake", plan_id=plans["hot"], location_id=dt,
                           start=date(2026, 6, 11), end=date(2026, 6, 20), price_cents=30_000,
                           quantity=2)
    m["C"], _ = add_member(session, "C", "Casey", plan_id=plans["ded"], location_id=dt,
                           start=date(2026, 1, 1), price_cents=60_000)
    m["D"], _ = add_member(session, "D", "Devon", plan_id=plans["yearly"], location_id=dt,
                           start=date(2026, 6, 16), price_cents=600_000)
    m["E"], _ = add_member(session, "E", "Emery", plan_id=plans["office"], location_id=dt,
                           start=date(2026, 6, 1), end=date(2026, 6, 30), price_cents=90_000,
                           quantity=2)
    m["G"], _ = add_member(session, "G", "Gale", plan_id=plans["hot"], location_id=up,
                           start=date(2026, 1, 1), price_cents=25_000)
    session.add_all([
        BudgetTarget(location_id=dt, month="2026-06", metric="mrr", amount_cents=300_000),
        BudgetTarget(location_id=up, month="2026-06", metric="mrr", amount_cents=30_000),
        BudgetTarget(location_id=dt, month="2026-06", metric="revenue", amount_cents=1),
    ])
    session.flush()
    _post_books(session, dt, up, m)
    _invoices(session, dt, up, m)
    return {"dt": dt, "up": up, "members": m}


def _post_books(session: Session, dt: int, up: int, m: dict[str, int]) -> None:
    def e(day: date, memo: str, *legs: tuple[str, int, int, int | None]) -> EntryDraft:
        return EntryDraft(day, memo, [Leg(a, c, loc, member_id=mem) for a, c, loc, mem in legs])

    drafts = [
        e(date(2026, 5, 31), "May invoice A", ("1100", 10_000, dt, m["A"]),
          ("4000", -10_000, dt, m["A"])),
        e(date(2026, 6, 1), "Invoice A", ("1100", 32_663, dt, m["A"]),
          ("4000", -30_000, dt, m["A"]), ("2100", -2_663, dt, m["A"])),
        e(date(2026, 6, 1), "Invoice C", ("1100", 60_000, dt, m["C"]),
          ("4010", -60_000, dt, m["C"])),
        e(date(2026, 6, 5), "Payment A", ("1050", 32_663, dt, m["A"]),
          ("1100", -32_663, dt, m["A"])),
        e(date(2026, 6, 10), "Credit note C", ("4900", 5_000, dt, m["C"]),
          ("1100", -5_000, dt, m["C"])),
        e(date(2026, 6, 12), "Walk-in day pass", ("1010", 2_000, dt, None),
          ("4700", -2_000, dt, None)),
        e(date(2026, 6, 15), "Rent", ("5000", 40_000, dt, None), ("1000", -40_000, dt, None)),
        e(date(2026, 6, 16), "Annual invoice D", ("1100", 600_000, dt, m["D"]),
          ("4010", -50_000, dt, m["D"]), ("2200", -550_000, dt, m["D"])),
        e(date(2026, 6, 18), "Invoice G", ("1100", 25_000, up, m["G"]),
          ("4000", -25_000, up, m["G"])),
        e(date(2026, 6, 20), "Card: paper", ("6100", 3_000, dt, None),
          ("2500", -3_000, dt, None)),
        e(date(2026, 6, 30), "Card payout", ("1000", 31_500, dt, None),
          ("6600", 1_163, dt, None), ("1050", -32_663, dt, None)),
        e(date(2026, 7, 1), "July invoice A", ("1100", 32_663, dt, m["A"]),
          ("4000", -30_000, dt, m["A"]), ("2100", -2_663, dt, m["A"])),
    ]
    ledger.post_entries(session, drafts, actor="test")


def _invoices(session: Session, dt: int, up: int, m: dict[str, int]) -> None:
    def inv(n: int, member: str, loc: int, issued: date | None, due: date | None, total: int,
            status: str, paid: int = 0, credited: int = 0) -> Invoice:
        return Invoice(number=None if issued is None else f"INV-{n}", member_id=m[member],
                       location_id=loc, status=status, issue_date=issued, due_date=due,
                       subtotal_cents=total, total_cents=total, amount_paid_cents=paid,
                       credit_applied_cents=credited)

    rows = [
        inv(1, "A", dt, date(2026, 6, 1), date(2026, 6, 15), 32_663, "paid", paid=32_663),
        inv(2, "C", dt, date(2026, 6, 1), date(2026, 6, 15), 60_000, "open", credited=5_000),
        inv(3, "D", dt, date(2026, 6, 16), date(2026, 7, 16), 600_000, "open"),
        inv(4, "G", up, date(2026, 6, 18), date(2026, 7, 2), 25_000, "open"),
        inv(5, "E", dt, date(2026, 6, 3), date(2026, 6, 17), 90_000, "void"),
        inv(6, "E", dt, None, None, 90_000, "draft"),
        inv(7, "A", dt, date(2026, 7, 1), date(2026, 7, 15), 32_663, "open"),
        inv(8, "B", dt, date(2026, 3, 1), date(2026, 3, 15), 10_000, "open"),
        inv(9, "B", dt, date(2026, 4, 1), date(2026, 4, 15), 7_000, "open", paid=2_000),
        inv(10, "B", dt, date(2026, 5, 1), date(2026, 5, 15), 4_000, "open"),
    ]
    session.add_all(rows)
    session.flush()
    session.add_all([
        CreditNote(number="CN-1", invoice_id=rows[1].id, member_id=m["C"], location_id=dt,
                   amount_cents=5_000, reason="wrong desk", issue_date=date(2026, 6, 10)),
        CreditNote(number="CN-0", invoice_id=rows[7].id, member_id=m["B"], location_id=dt,
                   amount_cents=1_000, reason="goodwill", issue_date=date(2026, 5, 20)),
    ])
    session.flush()


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def sp(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
       ) -> Iterator[Services]:
    """The hand-built space, once per module and backend (tests only read it, or write in a
    session they roll back)."""
    settings = load_settings(_env_file=None,
                             DESKBOOKS_DATA_DIR=str(tmp_path_factory.mktemp("kpi")))
    with ExitStack() as stack:
        if request.param == "sqlite":
            engine = db.make_engine(f"sqlite:///{tmp_path_factory.mktemp('kpidb') / 'k.db'}")
            stack.callback(engine.dispose)
        else:
            require_postgres()
            engine = stack.enter_context(db.scratch_postgres_schema(postgres_url(), "kpi"))
        svc = build_services(settings, clock=lambda: FIXED_NOW, engine=engine)
        svc.init_schema(fast=True)
        with svc.session() as session:
            _books(session, settings.knowledge_path)
        yield svc


@contextmanager
def scratch(svc: Services) -> Iterator[Session]:
    """A session whose writes are rolled back at the end."""
    with Session(svc.engine) as session:
        try:
            yield session
        finally:
            session.rollback()


def k(services: Services, name: str, location: str | None = None,
      desk_type: str | None = None, start: date = JUNE[0], end: date = JUNE[1]) -> kpi.KpiResult:
    return kpi.compute_kpi(services, name, start, end, location=location, desk_type=desk_type)


# --------------------------------------------------------------------------- hand-computed


def test_occupancy_rate_by_desk_type_and_location(sp):
    """Seat-days: hot 50/120, dedicated 55/60, office 60/60; DT 165/240; all 195/300."""
    dt = k(sp, "occupancy_rate", "DT")
    assert dt.value == 687_500 and dt.unit == "ppm"
    assert dt.breakdown["by_desk_type"] == {"dedicated_desk": 916_667, "hot_desk": 416_667,
                                            "private_office": 1_000_000}
    assert (dt.breakdown["occupied_seat_days"], dt.breakdown["available_seat_days"]) == (165, 240)
    whole = k(sp, "occupancy_rate")
    assert whole.value == 650_000
    assert whole.breakdown["by_location"] == {"DT": 687_500, "UP": 500_000}
    assert k(sp, "occupancy_rate", desk_type="hot_desk").value == 444_444  # 80/180


def test_occupancy_of_a_single_day_counts_end_dates_inclusive(sp):
    """On Jun 20 B's two seats still count (end date inclusive): hot 3/4 at DT."""
    day = date(2026, 6, 20)
    r = k(sp, "occupancy_rate", "DT", "hot_desk", start=day, end=day)
    assert r.value == 750_000


def test_mrr_normalizes_yearly_plans_and_splits_by_desk_type(sp):
    """MRR on Jun 30: A 300 + A 600 + C 600 + D 6000/12 + E 2×900 (+ G 250 at UP)."""
    r = k(sp, "mrr")
    assert r.value == 405_000 and r.unit == "cents"
    assert r.breakdown["by_location"] == {"DT": 380_000, "UP": 25_000}
    assert r.breakdown["by_desk_type"] == {"dedicated_desk": 170_000, "hot_desk": 55_000,
                                           "private_office": 180_000}
    assert k(sp, "mrr", "DT", "dedicated_desk").value == 170_000
    before_b_left = k(sp, "mrr", "DT", start=date(2026, 6, 15), end=date(2026, 6, 15))
    assert before_b_left.value == 30_000 + 60_000 + 60_000 + 180_000


def test_mrr_vs_plan_against_location_and_summed_targets(sp):
    """DT: 380,000 − 300,000; all: no all-locations row, so DT + UP targets (330,000)."""
    dt = k(sp, "mrr_vs_plan", "DT")
    assert dt.value == 80_000
    assert dt.breakdown["attainment_ppm"] == 1_266_667
    whole = k(sp, "mrr_vs_plan")
    assert (whole.value, whole.breakdown["plan_cents"]) == (75_000, 330_000)
    with scratch(sp) as s:
        s.add(BudgetTarget(location_id=None, month="2026-06", metric="mrr",
                           amount_cents=400_000))
        s.flush()
        assert kpi.compute_kpi(s, "mrr_vs_plan", *JUNE).value == 5_000


def test_mrr_vs_plan_without_a_target_is_undefined_with_a_note(sp):
    """May has no MRR target: value None and a note naming the month."""
    r = k(sp, "mrr_vs_plan", start=date(2026, 5, 1), end=date(2026, 5, 31))
    assert r.value is None and "2026-05" in (r.note or "")


def test_arpm_uses_member_revenue_and_member_days(sp):
    """All: 160,000 member revenue ÷ (145 member-days / 30); the walk-in pass is excluded."""
    r = k(sp, "arpm")
    assert r.breakdown["member_revenue_cents"] == 160_000
    assert r.breakdown["member_days"] == 145  # A counted once while holding two desks
    assert r.value == 33_103
    assert k(sp, "arpm", "DT").value == 35_217  # 135,000 × 30 / 115
    assert k(sp, "arpm", desk_type="dedicated_desk").value == 60_000  # 110,000 × 30 / 55


def test_revenue_by_account_net_of_credits(sp):
    """June revenue: 4000 55,000 + 4010 110,000 + 4700 2,000 − 4900 5,000 = 162,000."""
    r = k(sp, "revenue")
    assert r.value == 162_000
    assert r.breakdown["by_account"] == {"4000": 55_000, "4010": 110_000, "4700": 2_000,
                                         "4900": -5_000}
    assert k(sp, "revenue", "UP").value == 25_000
    assert k(sp, "revenue", desk_type="dedicated_desk").value == 110_000
    assert k(sp, "revenue", start=date(2026, 5, 1), end=date(2026, 5, 31)).value == 10_000


def test_expense_ratio(sp):
    """Expenses 40,000 + 3,000 + 1,163 over revenue 162,000 (DT: 137,000)."""
    r = k(sp, "expense_ratio")
    assert r.breakdown["expenses_cents"] == 44_163
    assert r.value == 272_611
    assert k(sp, "expense_ratio", "DT").value == 322_358


def test_cash_burn_is_the_net_decrease_of_cash(sp):
    """1000: −40,000 + 31,500; 1010: +2,000; 1050: in and out → cash fell by 6,500."""
    r = k(sp, "cash_burn")
    assert r.value == 6_500
    assert r.breakdown["change_by_account"] == {"1000": -8_500, "1010": 2_000, "1050": 0}
    assert k(sp, "cash_burn", "UP").value == 0
    first_week = k(sp, "cash_burn", start=date(2026, 6, 1), end=date(2026, 6, 7))
    assert first_week.value == -32_663  # the payment landed in 1050: cash grew


def test_dso(sp):
    """A/R on Jun 30 690,000 ÷ credit sales 717,663 × 30 days = 28.8 days."""
    r = k(sp, "dso")
    assert r.breakdown["receivable_cents"] == 690_000
    assert r.breakdown["credit_sales_cents"] == 717_663
    assert r.value == Decimal("28.8") and r.unit == "days"
    up = k(sp, "dso", "UP")
    assert up.value == Decimal("30.0")  # 25,000 ÷ 25,000 × 30
    none = k(sp, "dso", start=date(2026, 8, 1), end=date(2026, 8, 31))
    assert none.value is None and none.breakdown["receivable_cents"] == 722_663


def test_invoice_error_rate_counts_issued_invoices_and_credit_notes(sp):
    """June: one credit note over five issued invoices (the void one too; not the draft)."""
    r = k(sp, "invoice_error_rate")
    assert (r.breakdown["credit_notes"], r.breakdown["invoices_issued"]) == (1, 5)
    assert r.breakdown["invoices_voided"] == 1
    assert r.value == 200_000
    assert k(sp, "invoice_error_rate", "DT").value == 250_000
    assert k(sp, "invoice_error_rate", "UP").value == 0


def test_active_members_counts_distinct_members_at_range_end(sp):
    """Jun 30: A (two subscriptions), C, D, E at DT and G at UP; B left on Jun 20."""
    r = k(sp, "active_members")
    assert r.value == 5
    assert r.breakdown["by_desk_type"] == {"dedicated_desk": 3, "hot_desk": 2,
                                           "private_office": 1}
    assert k(sp, "active_members", "DT").value == 4
    assert k(sp, "active_members", desk_type="hot_desk").value == 2
    assert k(sp, "active_members", end=date(2026, 6, 20)).value == 6


def test_ar_aging_buckets_by_days_past_due(sp):
    """Open invoices on Jun 30: current 625,000; 15 days late 55,000; 46, 76, 107 days."""
    buckets = kpi.ar_aging(sp, date(2026, 6, 30))
    assert buckets == {"current": 625_000, "1-30": 55_000, "31-60": 4_000, "61-90": 5_000,
                       "90+": 10_000}
    assert kpi.ar_aging(sp, date(2026, 6, 30), location="UP")["current"] == 25_000


def test_monthly_series(sp):
    """kpi_series gives one value per calendar month."""
    series = kpi.kpi_series(sp, "revenue", ["2026-05", "2026-06", "2026-07"])
    assert series == [("2026-05", 10_000), ("2026-06", 162_000), ("2026-07", 30_000)]
    assert kpi.last_months("2026-02", 3) == ["2025-12", "2026-01", "2026-02"]


def test_summary_delegates_to_the_kpi_definitions(sp):
    """deskbooks status figures are the KPI engine's figures."""
    with sp.session() as s:
        assert summary.mrr_cents(s, JUNE[1]) == k(sp, "mrr").value
        assert summary.active_members(s, JUNE[1]) == k(sp, "active_members").value
        assert summary.revenue_cents(s, *JUNE) == k(sp, "revenue").value


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("name", ["expense_ratio", "cash_burn", "dso", "invoice_error_rate",
                                  "mrr_vs_plan"])
def test_desk_type_is_refused_where_it_has_no_meaning(sp, name):
    """KPIs without a desk-type split refuse the filter with a readable message."""
    with pytest.raises(kpi.KpiError, match="no desk-type breakdown"):
        k(sp, name, desk_type="hot_desk")


def test_bad_questions_are_refused(sp):
    """Unknown KPI, location or desk type, a reversed range, virtual-office occupancy."""
    with pytest.raises(kpi.KpiError, match="unknown KPI"):
        k(sp, "profit")
    with pytest.raises(kpi.KpiError, match="unknown location 'XX'"):
        k(sp, "mrr", "XX")
    with pytest.raises(kpi.KpiError, match="unknown desk type"):
        k(sp, "mrr", desk_type="sofa")
    with pytest.raises(kpi.KpiError, match="starts"):
        k(sp, "mrr", start=date(2026, 7, 1), end=date(2026, 6, 1))
    with pytest.raises(kpi.KpiError, match="occupies no seats"):
        k(sp, "occupancy_rate", desk_type="virtual_office")


def test_money_kpis_refuse_mixed_currencies_without_a_location(sp):
    """With a EUR location, money totals need a location; rates and counts do not."""
    with scratch(sp) as s:
        s.add(Location(code="PAR", name="Paris", timezone="Europe/Paris", currency="EUR"))
        s.flush()
        with pytest.raises(kpi.KpiError, match="different currencies"):
            kpi.compute_kpi(s, "revenue", *JUNE)
        assert kpi.compute_kpi(s, "revenue", *JUNE, location="DT").value == 137_000
        assert kpi.compute_kpi(s, "active_members", *JUNE).value == 5


def test_empty_space_gives_undefined_ratios_not_errors(services):
    """No data: money is zero, ratios are None with a note."""
    with services.session() as s:
        add_location(s, "DT")
        s.add(Plan(code="HOT", name="Hot", desk_type="hot_desk", price_cents=1))
    assert k(services, "revenue").value == 0
    for name in ("occupancy_rate", "arpm", "expense_ratio", "dso", "invoice_error_rate"):
        r = k(services, name)
        assert r.value is None and r.note, name


def test_results_serialize_for_tools_and_json(sp):
    """as_dict is JSON-ready: dates as text, Decimal days as text, a display string."""
    data = k(sp, "dso").as_dict()
    assert data["value"] == "28.8" and data["display"] == "28.8 days"
    assert data["start"] == "2026-06-01" and "accounts receivable" in data["definition"]
    assert k(sp, "occupancy_rate", "DT").display == "68.8%"


# --------------------------------------------------------------------------- bean-query


@pytest.fixture(scope="module")
def demo_books(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Services, Any]]:
    """A small demo space (60 members, 6 months) and a bean-query connection to its export."""
    import beanquery

    from finance.demo import seed_demo
    from finance.export_beancount import export_beancount

    path = tmp_path_factory.mktemp("kpi_demo")
    settings = load_settings(_env_file=None, DESKBOOKS_DATABASE_URL=f"sqlite:///{path}/d.db")
    services = build_services(settings, clock=lambda: FIXED_NOW)
    services.init_schema(fast=True)
    seed_demo(services, members=60, months=6, through="2026-10")
    with services.session() as s:
        export_beancount(s, path / "books.beancount")
    conn = beanquery.connect(f"beancount:{path / 'books.beancount'}")
    assert not conn.errors
    yield services, conn
    services.dispose()


def _bean(conn: Any, where: str) -> int:
    cur = conn.cursor()
    cur.execute(f"SELECT sum(number) FROM postings WHERE {where}")
    (total,) = cur.fetchone()
    return int((total or Decimal(0)) * 100)


@pytest.mark.parametrize(("start", "end", "location"), [
    (date(2026, 10, 1), date(2026, 10, 31), None),
    (date(2026, 6, 1), date(2026, 9, 30), "DT"),
])
def test_revenue_cash_burn_and_dso_match_bean_query(demo_books, start, end, location):
    """The KPIs equal bean-query sums over the Beancount export of the demo, to the cent."""
    services, conn = demo_books
    span = f"date >= {start} AND date <= {end}"
    where = f" AND meta('location') = '{location}'" if location else ""
    revenue = -_bean(conn, f"account ~ '^Income:' AND {span}{where}")
    cash = -_bean(conn, f"account ~ ':(1000|1010|1050)-' AND {span}{where}")
    receivable = _bean(conn, f"account ~ ':1100-' AND date <= {end}{where}")
    sales = _bean(conn, f"account ~ ':1100-' AND number > 0 AND {span}{where}")

    assert revenue > 0 and sales > 0 and receivable > 0
    assert kpi.compute_kpi(services, "revenue", start, end, location=location).value == revenue
    assert kpi.compute_kpi(services, "cash_burn", start, end, location=location).value == cash
    dso = kpi.compute_kpi(services, "dso", start, end, location=location)
    assert (dso.breakdown["receivable_cents"], dso.breakdown["credit_sales_cents"]) == \
        (receivable, sales)
    days = (end - start).days + 1
    assert dso.value == (Decimal(receivable) * days / sales).quantize(Decimal("0.1"))
