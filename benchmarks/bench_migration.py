"""A 24-month migration through the CSV importers: the demo space out as CSV, then back in.

Setup (not timed): seed the demo space (finance.demo.seed_demo, 24 months through 2026-10) into
a scratch SQLite database and export its members, plans, subscriptions and payments as CSV in
the documented layouts (finance.imports). A fresh database on each backend gets the three
locations (the importers do not create locations). Timed: importing the four files in order,
each one validated row by row and written in one transaction; payments post through
the bulk path that a test holds equal to finance.receivables.record_payment (one balanced entry
each). Checked: row counts and the
payment total match the source, the trial balance is zero, and re-importing every file adds
nothing (timed too: the idempotency check on a full database).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select

from benchmarks.common import (
    fresh_services,
    machine_details,
    postgres_reachable,
    run_or_profile,
    timed,
)
from finance import demo, ledger
from finance.authz import Actor
from finance.imports import import_members, import_payments, import_plans, import_subscriptions
from finance.models import Location, Member, Payment, Plan, Subscription

NAME = "migration"
ACTOR = Actor.system("bench-migration")
KINDS = ("members", "plans", "subscriptions", "payments")


def _csv(header: list[str], rows: list[list[object]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    return out.getvalue().encode("utf-8")


def _money(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


Export = tuple[dict[str, bytes], list[dict[str, str]], dict[str, int]]


def export_space(svc) -> Export:  # type: ignore[no-untyped-def]
    """The four CSV files, the locations, and the source counts (and payment total)."""
    with svc.session() as s:
        locs = {loc.id: loc for loc in s.execute(select(Location)).scalars()}
        members = list(s.execute(select(Member).order_by(Member.id)).scalars())
        code_of = {m.id: m.code for m in members}
        # parents first: a person may name a company that comes earlier in the file
        members.sort(key=lambda m: (m.company_id is not None, m.id))
        files = {"members": _csv(
            ["code", "name", "kind", "email", "phone", "tax_id", "company", "home_location",
             "external_id", "joined_on"],
            [[m.code, m.name, m.kind, m.email, m.phone, m.tax_id,
              code_of.get(m.company_id) if m.company_id else None,
              locs[m.home_location_id].code if m.home_location_id else None, m.external_ref,
              m.joined_on] for m in members])}
        plans = list(s.execute(select(Plan).order_by(Plan.id)).scalars())
        plan_code = {p.id: p.code for p in plans}
        files["plans"] = _csv(
            ["code", "name", "desk_type", "price", "location", "interval", "currency",
             "deposit", "included_meeting_minutes"],
            [[p.code, p.name, p.desk_type, _money(p.price_cents),
              locs[p.location_id].code if p.location_id else None, p.interval, p.currency,
              _money(p.deposit_cents), p.included_meeting_minutes] for p in plans])
        subs = list(s.execute(select(Subscription).order_by(Subscription.id)).scalars())
        files["subscriptions"] = _csv(
            ["member", "plan", "location", "start_date", "end_date", "quantity", "unit_price",
             "billing_anchor_day"],
            [[code_of[x.member_id], plan_code[x.plan_id], locs[x.location_id].code,
              x.start_date, x.end_date, x.quantity, _money(x.unit_price_cents),
              x.billing_anchor_day] for x in subs])
        pays = list(s.execute(select(Payment).order_by(Payment.id)).scalars())
        files["payments"] = _csv(
            ["external_id", "member", "date", "amount", "method", "fee", "location",
             "reference"],
            [[p.external_id, code_of[p.member_id], p.received_on, _money(p.amount_cents),
              p.method, _money(p.fee_cents), locs[p.location_id].code, p.reference]
             for p in pays])
        counts = {"members": len(members), "plans": len(plans), "subscriptions": len(subs),
                  "payments": len(pays),
                  "payment_cents": sum(p.amount_cents for p in pays)}
        loc_rows = [{"code": loc.code, "name": loc.name, "timezone": loc.timezone,
                     "currency": loc.currency} for loc in locs.values()]
    return files, loc_rows, counts


IMPORT: dict[str, Callable[..., object]] = {
    "members": import_members, "plans": import_plans,
    "subscriptions": import_subscriptions, "payments": import_payments,
}


def migrate(backend: str, files: dict[str, bytes], loc_rows: list[dict[str, str]],
            counts: dict[str, int]) -> dict[str, float]:
    """Import the files into a fresh database; return seconds per kind (plus re-import)."""
    out: dict[str, float] = {}
    with fresh_services(backend) as svc:
        with svc.session() as s:
            s.add_all(Location(**row) for row in loc_rows)
        for kind in KINDS:
            result: dict[str, object] = {}

            def go(kind: str = kind, result: dict[str, object] = result) -> None:
                result["report"] = IMPORT[kind](svc, ACTOR, files[kind], file=f"{kind}.csv")

            out[kind] = timed(go)
            report: Any = result["report"]
            assert report.ok, report.rejected[:5]
            assert report.imported == counts[kind], (kind, report.imported, counts[kind])
        with svc.session() as s:
            got = {"members": s.execute(select(func.count(Member.id))).scalar_one(),
                   "subscriptions": s.execute(select(func.count(Subscription.id))).scalar_one(),
                   "payments": s.execute(select(func.count(Payment.id))).scalar_one(),
                   "payment_cents": s.execute(select(func.sum(Payment.amount_cents))).scalar_one()}
            for key, value in got.items():
                assert value == counts[key], (key, value, counts[key])
            assert ledger.trial_balance(s).is_balanced
            assert -ledger.balance(s, "1100") == counts["payment_cents"]

        def again() -> None:
            for kind in KINDS:
                report: Any = IMPORT[kind](svc, ACTOR, files[kind])
                assert report.imported == 0 and report.skipped_existing == counts[kind]

        out["reimport"] = timed(again)
    return out


def run(quick: bool = False, *, backends: list[str] | None = None,
        members: list[int] | None = None) -> str:
    sizes = members or ([400] if quick else [400, 10_000])
    if backends is None:
        backends = ["sqlite"] + (["postgresql"] if postgres_reachable() else [])
    rows = []
    for size in sizes:
        with fresh_services("sqlite") as source:
            demo.seed_demo(source, members=size, months=24, through="2026-10")
            files, loc_rows, counts = export_space(source)
        sizes_mb = sum(len(b) for b in files.values()) / 1_048_576
        total_rows = sum(counts[k] for k in KINDS)
        for backend in backends:
            t = migrate(backend, files, loc_rows, counts)
            total = sum(t[k] for k in KINDS)
            per_kind = " | ".join(f"{counts[k]:,} in {t[k]:.2f} s ({counts[k] / t[k]:,.0f}/s)"
                                  for k in KINDS)
            rows.append(f"| {backend} | {size:,} | {sizes_mb:.1f} MB | {per_kind} | "
                        f"{total:.2f} | {total_rows / total:,.0f} | {t['reimport']:.2f} |")
    return "\n".join([
        "## 24-month migration through the CSV importers (issue 8)",
        "",
        f"Machine: {machine_details()}",
        "",
        "| backend | demo members | CSV size | members | plans | subscriptions | payments |"
        " total s | rows/s | re-import s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "The demo space (24 months through 2026-10) is exported to the four documented CSV"
        " layouts and imported into a fresh database, one file at a time, each validated row"
        " by row and written in one transaction. Payments are recorded in bulk exactly as"
        " `receivables.record_payment` records them (one balanced journal entry and an audit"
        " row each; `tests/test_imports.py` holds both paths equal)."
        " Afterwards the counts and the payment total equal the source, the trial balance is"
        " zero, and a second import of all four files adds nothing (*re-import s*). One run"
        " per size; the demo seeding is not timed.",
    ])


def _main() -> None:
    """Run one size on chosen backends, optionally under cProfile (writes no docs)."""
    import argparse

    parser = argparse.ArgumentParser(description=_main.__doc__)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], action="append")
    parser.add_argument("--members", type=int, action="append")
    parser.add_argument("--profile", metavar="FILE")
    args = parser.parse_args()

    def go() -> None:
        print(run(backends=args.backend or ["sqlite"], members=args.members or [400]))

    run_or_profile(go, args.profile, 40)


if __name__ == "__main__":
    _main()
