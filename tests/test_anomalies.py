"""Anomaly flagging (DESIGN §5): each detector on a hand-built case and a near miss, dedupe
across rescans, triage with roles and audit, the rules file, the demo space and the CLI."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select
from sqlmodel import Session
from typer.testing import CliRunner

from bot.cli import app
from finance import ledger
from finance.anomalies import (
    KINDS,
    AnomalyError,
    Finding,
    list_anomalies,
    load_rules,
    rules_for,
    scan,
    set_status,
)
from finance.authz import Actor, NotAuthorized
from finance.demo import PlantedProblem, seed_demo
from finance.ledger import EntryDraft, Leg
from finance.models import (
    Anomaly,
    AuditLog,
    Bill,
    Deposit,
    Employee,
    Expense,
    Invoice,
    InvoiceLine,
    Member,
    SlackUser,
    Vendor,
)
from finance.money import parse_amount
from finance.receivables import recognize_revenue
from finance.services import Services, build_services
from finance.settings import default_knowledge_dir, load_settings
from tests.conftest import FIXED_NOW
from tests.helpers import add_location, count

SYSTEM = Actor.system("test")
MANAGER = Actor("UMGR", "T1")
STAFF = Actor("USTAFF", "T1")
runner = CliRunner()


# --------------------------------------------------------------------------- builders


class Books:
    """A tiny space built record by record, so each detector sees exactly one pattern."""

    def __init__(self, session: Session, location_id: int | None = None, start: int = 0) -> None:
        self.s = session
        self.loc = location_id or add_location(session, "DT")
        self._n = start

    def vendor(self, name: str, *, tin: str | None = "81-0000001", contractor: bool = False,
               address: str | None = None, bank: str | None = None) -> int:
        self._n += 1
        v = Vendor(name=name, normalized_name=f"{name.lower()} {self._n}", tin=tin,
                   is_contractor=contractor, address=address, bank_account_last4=bank,
                   created_at=datetime(2025, 1, 1, tzinfo=UTC))
        self.s.add(v)
        self.s.flush()
        return v.id  # type: ignore[return-value]

    def bill(self, vendor: int, on: date, cents: int, *, account: str = "6200",
             number: str | None = None, status: str = "approved", method: str | None = None,
             paid_on: date | None = None, memo: str = "services") -> int:
        self._n += 1
        b = Bill(vendor_id=vendor, location_id=self.loc, number=number or f"B-{self._n}",
                 bill_date=on, amount_cents=cents, account_code=account, memo=memo,
                 status=status, payment_method=method, paid_on=paid_on)
        self.s.add(b)
        self.s.flush()
        return b.id  # type: ignore[return-value]

    def expense(self, vendor_name: str, on: date, cents: int, *, account: str = "6100",
                vendor: int | None = None, image: str | None = None,
                method: str = "card", description: str = "supplies") -> int:
        e = Expense(vendor_id=vendor, vendor_name=vendor_name, location_id=self.loc,
                    expense_date=on, amount_cents=cents, account_code=account,
                    description=description, payment_method=method, status="posted",
                    image_sha256=image)
        self.s.add(e)
        self.s.flush()
        return e.id  # type: ignore[return-value]

    def member(self, name: str, *, email: str | None = None, tax_id: str | None = None,
               kind: str = "company", company_id: int | None = None) -> int:
        self._n += 1
        m = Member(code=f"M-{self._n:04d}", kind=kind, name=name, email=email, tax_id=tax_id,
                   company_id=company_id, home_location_id=self.loc,
                   joined_on=date(2025, 6, 1))
        self.s.add(m)
        self.s.flush()
        return m.id  # type: ignore[return-value]

    def invoice(self, member: int, period: str, cents: int, *, status: str = "paid") -> int:
        self._n += 1
        y, mo = map(int, period.split("-"))
        inv = Invoice(member_id=member, location_id=self.loc, period=period, status=status,
                      number=f"INV-{self._n:06d}", issue_date=date(y, mo, 1),
                      subtotal_cents=cents, total_cents=cents)
        self.s.add(inv)
        self.s.flush()
        return inv.id  # type: ignore[return-value]

    def employee(self, name: str, *, tin: str, address: str, bank: str) -> int:
        e = Employee(name=name, tin=tin, address=address, bank_account_last4=bank,
                     location_id=self.loc)
        self.s.add(e)
        self.s.flush()
        return e.id  # type: ignore[return-value]

    def post(self, on: date, legs: list[tuple[str, int]], *, source: str | None = None,
             source_id: int | None = None, member: int | None = None) -> int:
        entry = ledger.post_entry(self.s, EntryDraft(
            on, "test entry", [Leg(code, cents, self.loc, member_id=member)
                               for code, cents in legs], source, source_id), actor="test")
        return entry.id  # type: ignore[return-value]


def build(services: Services, fn: Any) -> dict[str, Any]:
    """Run ``fn(Books)`` in one transaction and return what it returns."""
    with services.session() as session:
        session.add(SlackUser(team_id="T1", user_id="UMGR", name="Maya", role="manager"))
        session.add(SlackUser(team_id="T1", user_id="USTAFF", name="Sam", role="staff"))
        return fn(Books(session)) or {}


def run(services: Services, kind: str, start: date = date(2025, 1, 1),
        end: date = date(2026, 10, 31), **kw: Any) -> list[Finding]:
    return list(scan(services, SYSTEM, start=start, end=end, kinds=[kind], **kw).findings)


# --------------------------------------------------------------------------- detectors


def test_invoice_jump_flags_far_above_history_only(services):
    """An invoice above 2x the median of the member's 3 previous ones is flagged; 1.9x is not."""
    def fill(b: Books) -> dict[str, Any]:
        jumpy, steady, young = (b.member("Jumpy Co"), b.member("Steady Co"),
                                b.member("Young Co"))
        for period, cents in (("2026-05", 30_000), ("2026-06", 31_000), ("2026-07", 29_500)):
            b.invoice(jumpy, period, cents)
            b.invoice(steady, period, cents)
        b.invoice(jumpy, "2026-08", 8_000, status="void")  # voids are no history
        big = b.invoice(jumpy, "2026-08", 62_500)
        b.invoice(steady, "2026-08", 58_900)  # 1.96x the $300 median: under 2x
        b.invoice(young, "2026-07", 10_000)
        b.invoice(young, "2026-08", 90_000)  # too little history to judge
        return {"big": big, "jumpy": jumpy}

    ids = build(services, fill)
    found = run(services, "invoice_jump")
    assert [f.records for f in found] == [{"invoice": [ids["big"]], "member": [ids["jumpy"]]}]
    assert "$625.00" in found[0].reason and "$300.00 median" in found[0].reason
    assert found[0].amount_cents == 32_500


def test_duplicate_charge_flags_double_billing_not_monthly_cadence(services):
    """Same vendor and amount days apart is a duplicate; the monthly subscription is not."""
    def fill(b: Books) -> dict[str, Any]:
        saas = b.vendor("Nexudus")
        monthly = [b.bill(saas, date(2026, m, 3), 44_900, number=f"NX-2026{m:02d}")
                   for m in range(3, 9)]
        resent = b.bill(saas, date(2026, 6, 5), 44_950, number="NX-202606-R")  # 0.11 % more
        b.bill(saas, date(2026, 7, 6), 46_000)  # 2.4 % off: a different charge
        card = b.vendor("Adobe")
        twice = [b.expense("Adobe", date(2026, 4, 12), 8_999, vendor=card),
                 b.expense("Adobe", date(2026, 4, 13), 8_999, vendor=card)]
        fixer = b.vendor("Fixit")  # a one-off amount charged again six weeks later
        oneoff = [b.bill(fixer, date(2026, 2, 10), 123_400),
                  b.bill(fixer, date(2026, 3, 24), 123_400)]
        b.bill(fixer, date(2026, 9, 24), 123_400)  # 184 days later: outside the window
        b.bill(fixer, date(2026, 5, 1), 90_000, status="rejected")
        b.bill(fixer, date(2026, 5, 2), 90_000)  # the rejected one is not a charge
        return {"nx": [monthly[3], resent], "adobe": twice, "fix": oneoff}

    ids = build(services, fill)
    found = {tuple(f.records.get("bill", []) + f.records.get("expense", [])): f
             for f in run(services, "duplicate_charge")}
    assert set(found) == {tuple(ids["nx"]), tuple(ids["adobe"]), tuple(ids["fix"])}
    assert "twice within 2 days" in found[tuple(ids["nx"])].reason


def test_duplicate_receipt_same_total_or_same_image(services):
    """Same vendor + date + total, or the same image, is flagged; a second real purchase is not."""
    def fill(b: Books) -> dict[str, Any]:
        day = date(2026, 8, 16)
        same = [b.expense("The Home Depot", day, 18_437), b.expense("the home depot ", day, 18_437)]
        image = [b.expense("Costco", date(2026, 7, 9), 24_680, image="a" * 64),
                 b.expense("Costco", date(2026, 7, 9), 24_860, image="a" * 64)]
        b.expense("The Home Depot", day, 18_473, image="b" * 64)  # another purchase that day
        b.expense("Staples", day, 18_437)  # same total, other vendor
        return {"same": same, "image": image}

    ids = build(services, fill)
    found = sorted(f.records["expense"] for f in run(services, "duplicate_receipt"))
    assert found == sorted([ids["same"], ids["image"]])


def test_duplicate_customer_by_name_domain_and_tax_id(services):
    """Acme Design / ACME Design LLC is flagged; free-mail users and colleagues are not."""
    def fill(b: Books) -> dict[str, Any]:
        acme = b.member("Acme Design", email="billing@acmedesign.com", tax_id="84-3920117")
        dup = b.member("ACME Design LLC", email="accounts@acmedesign.com", tax_id="843920117")
        b.member("Ann Lee", kind="person", email="ann@gmail.com")
        b.member("Bo Chen", kind="person", email="bo@gmail.com")
        firm = b.member("Bluebird Labs", email="finance@bluebird.io")
        b.member("Cy Park", kind="person", email="cy@bluebird.io", company_id=firm)
        b.member("Acme Designs Studio", email="hi@acmestudio.com")  # a different name
        return {"pair": sorted([acme, dup])}

    ids = build(services, fill)
    found = run(services, "duplicate_customer")
    assert [f.records["member"] for f in found] == [ids["pair"]]
    assert found[0].severity == "high"
    assert "acmedesign.com" in found[0].reason and "ending 0117" in found[0].reason


def test_deposit_misposted_only_when_refund_misses_2300(services):
    """A deposit refund debited to Owner Draws is flagged; 2300 and reversed ones are not."""
    def fill(b: Books) -> dict[str, Any]:
        who = b.member("Harbor & Pine")
        out = {}
        for key, account in (("good", "2300"), ("bad", "3100"), ("fixed", "3100")):
            dep = Deposit(member_id=who, location_id=b.loc, amount_cents=180_000,
                          received_on=date(2025, 3, 1), status="refunded")
            b.s.add(dep)
            b.s.flush()
            entry = b.post(date(2026, 8, 14), [(account, 180_000), ("1000", -180_000)],
                           source="deposit", source_id=dep.id, member=who)
            dep.refund_journal_entry_id = entry
            out[key] = (dep.id, entry)
        ledger.reverse_entry(b.s, out["fixed"][1], on_date=date(2026, 8, 20), actor="test",
                             reason="posted to the wrong account")
        return out

    ids = build(services, fill)
    found = run(services, "deposit_misposted")
    assert [f.records["journal_entry"] for f in found] == [[ids["bad"][1]]]
    assert found[0].records["deposit"] == [ids["bad"][0]]
    assert "3100 Owner Draws" in found[0].reason and found[0].severity == "medium"


def test_capex_as_opex_threshold_and_accounts(services):
    """$3,200 in Office Supplies is flagged; $2,499.99, a CapEx account and rent are not."""
    def fill(b: Books) -> dict[str, Any]:
        chair = b.expense("Herman Miller", date(2026, 8, 21), 320_000,
                          description="Aeron chair")
        b.expense("Staples", date(2026, 8, 21), 249_999)
        b.expense("Apple Store", date(2026, 8, 2), 289_900, account="1510")
        office = b.vendor("Office Depot")
        desk = b.bill(office, date(2026, 4, 12), 250_000, account="6100", number="2025-0412",
                      memo="Standing desk")
        landlord = b.vendor("Landlord LLC")
        b.bill(landlord, date(2026, 4, 1), 3_800_000, account="5000")
        return {"chair": chair, "desk": desk}

    ids = build(services, fill)
    found = {("expense", f.records["expense"][0]) if "expense" in f.records
             else ("bill", f.records["bill"][0]): f for f in run(services, "capex_as_opex")}
    assert set(found) == {("expense", ids["chair"]), ("bill", ids["desk"])}
    assert ("Bill 2025-0412 from Office Depot ($2,500.00, 'Standing desk', 2026-04-12) is at or "
            "above the $2,500.00 capitalization threshold but was coded to 6100 Office Supplies"
            ) in found[("bill", ids["desk"])].reason


def test_vendor_is_employee_by_tin_or_name_not_bank_alone(services):
    """A vendor with an employee's TIN is flagged high; sharing only 4 bank digits is not."""
    def fill(b: Books) -> dict[str, Any]:
        jordan = b.employee("Jordan Morales", tin="900-41-8863",
                            address="418 Elm Park Avenue, Chicago, IL 60614", bank="5524")
        grace = b.employee("Grace Kim", tin="900-41-6641", address="1 Main St", bank="3302")
        side = b.vendor("JM Events", tin="900418863", contractor=True)
        b.bill(side, date(2026, 6, 25), 72_000)
        b.vendor("Random Supplies", bank="5524")  # bank digits alone: chance
        named = b.vendor("G. Kim Design", tin=None, bank="3302")  # name + bank
        b.bill(named, date(2026, 7, 1), 40_000)
        return {"side": side, "jordan": jordan, "named": named, "grace": grace}

    ids = build(services, fill)
    found = {f.records["vendor"][0]: f for f in run(services, "vendor_is_employee")}
    assert set(found) == {ids["side"], ids["named"]}
    assert found[ids["side"]].severity == "high"
    assert found[ids["side"]].records["employee"] == [ids["jordan"]]
    assert found[ids["named"]].records["employee"] == [ids["grace"]]


def test_just_under_threshold_needs_repeats_in_the_band(services):
    """Three bills at 90-100 % of $1,000 are flagged; two, or ones under the band, are not."""
    def fill(b: Books) -> dict[str, Any]:
        apex = b.vendor("Apex Facility")
        split = [b.bill(apex, date(2026, 6, d), c)
                 for d, c in ((6, 96_400), (12, 100_000), (20, 90_000))]
        pair = b.vendor("Pair Co")
        b.bill(pair, date(2026, 6, 6), 99_000)
        b.bill(pair, date(2026, 7, 6), 99_000)
        low = b.vendor("Low Co")
        for d in (1, 2, 3):
            b.bill(low, date(2026, 6, d), 89_999)  # under the band
        over = b.vendor("Over Co")
        for d in (1, 2, 3):
            b.bill(over, date(2026, 6, d), 100_001)  # over: it gets approval anyway
        return {"split": split, "apex": apex}

    ids = build(services, fill)
    found = run(services, "just_under_threshold")
    assert [f.records for f in found] == [{"bill": ids["split"], "vendor": [ids["apex"]]}]
    assert found[0].severity == "medium"


def test_contractor_missing_tin_by_year_threshold_and_method(services):
    """$2,100 by check in 2026 and $700 in 2025 are flagged; under $2,000 or by card is not."""
    def fill(b: Books) -> dict[str, Any]:
        def paid(vendor: int, on: date, cents: int, method: str) -> int:
            return b.bill(vendor, on, cents, account="6400", status="paid", method=method,
                          paid_on=on + timedelta(days=5))
        dan = b.vendor("Dan Handyman", tin=None, contractor=True)
        dan_bills = [paid(dan, date(2026, 3, 1), 105_000, "check"),
                     paid(dan, date(2026, 6, 1), 105_000, "ach")]
        old = b.vendor("Old Painter", tin="", contractor=False)  # a contractor by account
        old_bill = paid(old, date(2025, 5, 1), 70_000, "check")
        small = b.vendor("Small Jobs", tin=None, contractor=True)
        paid(small, date(2026, 3, 1), 190_000, "check")
        card = b.vendor("Card Designer", tin=None, contractor=True)
        paid(card, date(2026, 3, 1), 300_000, "card")
        known = b.vendor("Known Contractor", tin="12-3456789", contractor=True)
        paid(known, date(2026, 3, 1), 300_000, "check")
        return {"dan": (dan, dan_bills), "old": (old, [old_bill])}

    ids = build(services, fill)
    found = {f.records["vendor"][0]: f for f in run(services, "contractor_missing_tin")}
    assert set(found) == {ids["dan"][0], ids["old"][0]}
    assert found[ids["dan"][0]].records["bill"] == ids["dan"][1]
    assert "$2,000.00 1099-NEC" in found[ids["dan"][0]].reason
    assert "$600.00 1099-NEC" in found[ids["old"][0]].reason


def test_unrecognized_deferred_flags_missing_recognition(services):
    """An annual line never recognized is flagged; one recognized by the job is not."""
    def fill(b: Books) -> dict[str, Any]:
        lines = {}
        for key in ("done", "missing"):
            who = b.member(f"Annual {key}")
            inv = b.invoice(who, "2026-08", 600_000, status="paid" if key == "done" else "draft")
            line = InvoiceLine(invoice_id=inv, kind="membership", description="Annual desk",
                               unit_price_cents=600_000, amount_cents=600_000,
                               account_code="4010", deferred_cents=550_000, location_id=b.loc,
                               service_start=date(2026, 8, 1), service_end=date(2027, 7, 31))
            b.s.add(line)
            b.s.flush()
            lines[key] = (inv, line.id)
        recognize_revenue(b.s, date(2026, 10, 1), actor=SYSTEM)  # the draft is skipped
        b.s.get(Invoice, lines["missing"][0]).status = "open"  # type: ignore[union-attr]
        return lines

    ids = build(services, fill)
    found = run(services, "unrecognized_deferred")
    assert [f.records["invoice_line"] for f in found] == [[ids["missing"][1]]]
    # Sep and Oct started (Aug is the issue month, recognized at issue)
    # $6,000 over 365 days: September (30 days) and October (31 days)
    assert found[0].amount_cents == 49_315 + 50_959 and "2 started months" in found[0].reason
    before_grace = run(services, "unrecognized_deferred", end=date(2026, 9, 2))
    assert before_grace == []


# --------------------------------------------------------------------------- storage and triage


def _two_problems(b: Books) -> None:
    apex = b.vendor("Apex")
    for d, cents in ((1, 95_000), (8, 97_000), (15, 99_000)):
        b.bill(apex, date(2026, 6, d), cents)
    b.expense("Herman Miller", date(2026, 6, 2), 320_000)


def test_rescan_dedupes_and_keeps_dismissed_closed(services):
    """A second scan stores nothing new; a dismissed finding stays dismissed after a rescan."""
    build(services, _two_problems)
    first = scan(services, SYSTEM, start=date(2026, 1, 1), end=date(2026, 12, 31))
    assert (first.new, first.existing, len(first.findings)) == (2, 0, 2)
    again = scan(services, SYSTEM, start=date(2026, 1, 1), end=date(2026, 12, 31))
    assert (again.new, again.existing) == (0, 2)
    target = first.anomaly_ids[first.findings[0].fingerprint]
    set_status(services, MANAGER, target, "dismissed", "known: approved split work order")
    third = scan(services, SYSTEM, start=date(2026, 1, 1), end=date(2026, 12, 31))
    assert third.new == 0 and third.statuses[first.findings[0].fingerprint] == "dismissed"
    with services.session() as session:
        assert count(session, Anomaly) == 2
        assert target not in [a.id for a in list_anomalies(session, status="open")]
        assert [a.id for a in list_anomalies(session, status="dismissed")] == [target]
        assert count(session, AuditLog, action="anomalies.scan") == 3


def test_an_open_finding_grows_in_place_a_dismissed_one_stays_as_it_was(services):
    """A new bill joins the open split-bills finding (same row); a dismissed one is not touched."""
    ids = build(services, lambda b: {"apex": b.vendor("Apex"), "loc": b.loc})
    with services.session() as session:
        b = Books(session, location_id=ids["loc"], start=100)
        bills = [b.bill(ids["apex"], date(2026, 6, d), c)
                 for d, c in ((1, 95_000), (8, 97_000), (15, 99_000))]
    first = scan(services, SYSTEM, start=date(2026, 6, 1), end=date(2026, 6, 30))
    (finding,) = first.findings
    with services.session() as session:
        b.s = session
        bills.append(b.bill(ids["apex"], date(2026, 7, 2), 96_000))
    second = scan(services, SYSTEM, start=date(2026, 7, 1), end=date(2026, 7, 31))
    assert second.new == 0 and [f.fingerprint for f in second.findings] == [finding.fingerprint]
    anomaly_id = first.anomaly_ids[finding.fingerprint]
    with services.session() as session:
        row = session.get(Anomaly, anomaly_id)
        assert row.records["bill"] == bills and "4 bills" in row.reason  # type: ignore[union-attr]
    set_status(services, MANAGER, anomaly_id, "dismissed", "one contract, four phases")
    with services.session() as session:
        b.s = session
        b.bill(ids["apex"], date(2026, 7, 20), 98_000)
    scan(services, SYSTEM, start=date(2026, 7, 1), end=date(2026, 7, 31))
    with services.session() as session:
        row = session.get(Anomaly, anomaly_id)
        assert row.status == "dismissed" and row.records["bill"] == bills  # type: ignore[union-attr]
        assert count(session, Anomaly) == 1


def test_status_changes_need_a_finance_role_and_are_audited(services):
    """Staff may not triage; a manager dismisses (with a reason) and resolves, each audited."""
    build(services, _two_problems)
    report = scan(services, MANAGER, start=date(2026, 1, 1), end=date(2026, 12, 31))
    first, second = (report.anomaly_ids[f.fingerprint] for f in report.findings)
    with pytest.raises(NotAuthorized):
        set_status(services, STAFF, first, "resolved")
    with pytest.raises(NotAuthorized):
        scan(services, STAFF, start=date(2026, 1, 1), end=date(2026, 12, 31))
    with pytest.raises(AnomalyError, match="needs a reason"):
        set_status(services, MANAGER, first, "dismissed", "  ")
    with pytest.raises(AnomalyError, match="unknown status"):
        set_status(services, MANAGER, first, "closed")
    with pytest.raises(AnomalyError, match="no anomaly"):
        set_status(services, MANAGER, 999_999, "resolved")
    view = set_status(services, MANAGER, first, "dismissed", "vendor confirmed")
    assert (view.status, view.status_by, view.status_note) == ("dismissed", "UMGR",
                                                                "vendor confirmed")
    assert view.status_at == FIXED_NOW
    set_status(services, MANAGER, second, "resolved", "recoded to 1500")
    set_status(services, MANAGER, second, "resolved", "again")  # no change, no audit row
    with services.session() as session:
        rows = list(session.execute(select(AuditLog).where(
            AuditLog.entity_type == "anomaly", AuditLog.action != "anomalies.scan")
            .order_by(AuditLog.id)).scalars())
        assert [(r.action, r.actor, r.entity_id) for r in rows] == [
            ("anomaly.dismissed", "UMGR", str(first)), ("anomaly.resolved", "UMGR", str(second))]


def test_scan_scope_location_kinds_and_bad_input(services):
    """A location scope hides other locations' findings; bad kinds, dates and places are refused."""
    build(services, _two_problems)
    with services.session() as session:
        add_location(session, "RS", "America/Chicago")
    assert len(scan(services, SYSTEM, start=date(2026, 1, 1), end=date(2026, 12, 31),
                    location="DT").findings) == 2
    assert scan(services, SYSTEM, start=date(2026, 1, 1), end=date(2026, 12, 31),
                location="RS").findings == ()
    assert scan(services, SYSTEM, start=date(2026, 7, 1), end=date(2026, 12, 31)).findings == ()
    only = scan(services, SYSTEM, start=date(2026, 1, 1), end=date(2026, 12, 31),
                kinds=["capex_as_opex"])
    assert [f.kind for f in only.findings] == ["capex_as_opex"]
    with pytest.raises(AnomalyError, match="unknown anomaly kind"):
        scan(services, SYSTEM, start=date(2026, 1, 1), end=date(2026, 2, 1), kinds=["fraud"])
    with pytest.raises(AnomalyError, match="after the end"):
        scan(services, SYSTEM, start=date(2026, 2, 1), end=date(2026, 1, 1))
    with pytest.raises(AnomalyError, match="no location"):
        scan(services, SYSTEM, start=date(2026, 1, 1), end=date(2026, 2, 1), location="XX")


# --------------------------------------------------------------------------- rules


def test_rules_file_parses_and_matches_the_approval_policy():
    """The shipped rules load, 1099 thresholds follow the year, approval bands match the policy."""
    knowledge = default_knowledge_dir()
    rules = load_rules(knowledge)
    assert rules.tin_threshold(2025) == 60_000 and rules.tin_threshold(2026) == 200_000
    assert rules.capex_threshold_cents == 250_000
    policy = yaml.safe_load((knowledge / "approval_policy.yaml").read_text(encoding="utf-8"))
    assert rules.approval_thresholds_cents == tuple(sorted(
        parse_amount(step["over"]) for step in policy["steps"]))
    assert rules.severity("capex_as_opex", 320_000) == "medium"
    assert rules.severity("deposit_misposted", 100) == "medium"
    assert rules.severity("invoice_jump", 600_000) == "high"


def test_broken_rules_and_the_capitalization_setting(tmp_path: Path):
    """A bad rules file is refused by name; an explicit capitalization setting wins."""
    text = (default_knowledge_dir() / "anomaly_rules.yaml").read_text(encoding="utf-8")
    (tmp_path / "anomaly_rules.yaml").write_text(text.replace("repeat_count: 3",
                                                              "repeat_count: three"))
    with pytest.raises(AnomalyError, match="just_under_threshold.repeat_count"):
        load_rules(tmp_path)
    (tmp_path / "anomaly_rules.yaml").write_text(text.replace('tolerance_percent: "0.5"',
                                                              "tolerance_percent: 0.5"))
    with pytest.raises(AnomalyError, match="quoted decimal"):  # never read money via float
        load_rules(tmp_path)
    with pytest.raises(AnomalyError, match="not found"):
        load_rules(tmp_path / "nowhere")
    settings = load_settings(DESKBOOKS_DATA_DIR=str(tmp_path),
                             DESKBOOKS_CAPITALIZATION_THRESHOLD_CENTS="500000")
    assert rules_for(build_services(settings)).capex_threshold_cents == 500_000
    plain = load_settings(DESKBOOKS_DATA_DIR=str(tmp_path))
    assert rules_for(build_services(plain)).capex_threshold_cents == 250_000


# --------------------------------------------------------------------------- the demo space


def matches(finding: Finding, planted: PlantedProblem) -> bool:
    """Same kind, and every record type both name shares at least one id."""
    if finding.kind != planted.kind:
        return False
    common = set(finding.records) & set(planted.records)
    return bool(common) and all(set(finding.records[k]) & set(planted.records[k])
                                for k in common)


@pytest.mark.slow
def test_demo_space_every_planted_problem_found_with_precision(services):
    """On the demo space every planted problem is found and precision is at least 90 %."""
    demo = seed_demo(services, members=80, months=12, through="2026-10")
    assert {p.kind for p in demo.planted} == set(KINDS)
    report = scan(services, SYSTEM, start=date(2025, 11, 1), end=date(2026, 10, 31))
    missed = [p.description for p in demo.planted
              if not any(matches(f, p) for f in report.findings)]
    assert missed == []
    true = [f for f in report.findings if any(matches(f, p) for p in demo.planted)]
    precision = len(true) / len(report.findings)
    assert precision >= 0.9, [f.reason for f in report.findings if f not in true]
    again = scan(services, SYSTEM, start=date(2025, 11, 1), end=date(2026, 10, 31))
    assert again.new == 0 and again.existing == len(report.findings)


# --------------------------------------------------------------------------- CLI


@pytest.mark.slow
def test_cli_scan_list_dismiss_resolve(tmp_path, monkeypatch):
    """The CLI scans the demo, lists, dismisses and resolves; staff and bad input get exit 2."""
    monkeypatch.setenv("DESKBOOKS_DATA_DIR", str(tmp_path))
    seeded = runner.invoke(app, ["demo", "--members", "40", "--months", "6", "--through",
                                 "2026-10", "--today", "2026-11-15", "--no-chat", "--json"])
    assert seeded.exit_code == 0, seeded.output
    planted = json.loads(seeded.stdout)["planted_problems"]
    args = ["anomalies", "scan", "--start", "2026-05-01", "--end", "2026-10-31", "--json"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert report["new"] == len(report["findings"]) >= len(planted)
    assert {f["kind"] for f in report["findings"]} == {p["kind"] for p in planted}
    again = json.loads(runner.invoke(app, args).stdout)
    assert again["new"] == 0 and again["existing"] == report["new"]
    ids = [f["id"] for f in report["findings"]]
    text = runner.invoke(app, ["anomalies", "scan", "--start", "2026-05-01", "--end",
                               "2026-10-31", "--kind", "capex_as_opex"])
    assert "Herman Miller" in text.output and "capex_as_opex" in text.output
    refused = runner.invoke(app, ["anomalies", "dismiss", str(ids[0]), "--reason", "x",
                                  "--as", "U0STAFF1"])
    assert refused.exit_code == 2 and "roles" in refused.output
    dismissed = runner.invoke(app, ["anomalies", "dismiss", str(ids[0]), "--reason",
                                    "known and accepted", "--as", "U0CFO1", "--json"])
    assert dismissed.exit_code == 0, dismissed.output
    assert json.loads(dismissed.stdout)["status_by"] == "U0CFO1"
    resolved = runner.invoke(app, ["anomalies", "resolve", str(ids[1])])
    assert resolved.exit_code == 0, resolved.output
    listing = json.loads(runner.invoke(app, ["anomalies", "list", "--status", "open",
                                             "--json"]).stdout)
    assert {a["id"] for a in listing["anomalies"]} == set(ids[2:])
    bad = runner.invoke(app, ["anomalies", "scan", "--kind", "nonsense"])
    assert bad.exit_code == 2 and "unknown anomaly kind" in bad.output
    missing = runner.invoke(app, ["anomalies", "resolve", "99999"])
    assert missing.exit_code == 2 and "no anomaly 99999" in missing.output
