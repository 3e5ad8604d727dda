"""A billing run for 10,000 members with 100,000 usage events, against a bulk-insert baseline.

Setup (not timed): 10,000 members on monthly plans at one location each, 100,000 print /
coffee / day-pass events in March. Timed: the April run (compute + store drafts), then approve
and issue (numbering + postings). Baseline, in the same run and database: bulk-inserting as
many rows as the run wrote (invoices, lines, usage links, journal entries and lines) with
plain Core ``executemany`` into a scratch table. Goal: run within 3x of the baseline, < 15 s.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, func, insert, select

from benchmarks.common import (
    fresh_services,
    machine_details,
    median,
    postgres_reachable,
    run_or_profile,
    timed,
)
from finance.authz import Actor
from finance.billing import BillingEngine, BillingPolicy
from finance.models import (
    Invoice,
    InvoiceLine,
    JournalEntry,
    JournalLine,
    Location,
    Member,
    Plan,
    Subscription,
    UsageEvent,
)
from finance.tax import sync_tax_rates

NAME = "billing"
ACTOR = Actor.system("bench")


def _seed(svc, members: int, events: int) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(11)
    with svc.session() as s:
        locs = []
        for code, tz in (("DT", "America/New_York"), ("RS", "America/Chicago"),
                         ("UT", "America/Los_Angeles")):
            loc = Location(code=code, name=code, timezone=tz)
            s.add(loc)
            locs.append(loc)
        plans = [Plan(code="HOT", name="Hot Desk", desk_type="hot_desk", price_cents=30_000),
                 Plan(code="DED", name="Dedicated Desk", desk_type="dedicated_desk",
                      price_cents=55_000),
                 Plan(code="OFF", name="Private Office", desk_type="private_office",
                      price_cents=95_000)]
        s.add_all(plans)
        s.flush()
        sync_tax_rates(s, svc.settings.knowledge_path)
        ids = s.execute(insert(Member).returning(Member.id, sort_by_parameter_order=True), [
            {"code": f"M-{i:06d}", "kind": "person", "name": f"Member {i}"}
            for i in range(members)]).scalars().all()
        subs, usage = [], []
        for i, member_id in enumerate(ids):
            plan = plans[i % 3]
            start = date(2025, 1, 1) if i % 10 else date(2026, 3, 1 + i % 28)
            subs.append({"member_id": member_id, "plan_id": plan.id, "location_id": locs[i % 3].id,
                         "quantity": 1, "unit_price_cents": plan.price_cents,
                         "start_date": start, "billing_anchor_day": 1})
        s.execute(insert(Subscription), subs)
        base = datetime(2026, 3, 1, 12, tzinfo=UTC)
        kinds = [("print", 10), ("coffee", 450), ("day_pass", 2_500)]
        for n in range(events):
            i = rng.randrange(members)
            kind, price = kinds[n % 3]
            usage.append({"source": "bench", "external_id": f"e{n}", "member_id": ids[i],
                          "location_id": locs[i % 3].id, "kind": kind,
                          "quantity": rng.randint(1, 20) if kind == "print" else 1,
                          "unit_price_cents": price,
                          "occurred_at": base + timedelta(minutes=rng.randrange(60 * 24 * 29))})
        for i in range(0, len(usage), 10_000):
            s.execute(insert(UsageEvent), usage[i:i + 10_000])


def _rows_written(svc) -> int:  # type: ignore[no-untyped-def]
    with svc.session() as s:
        return sum(s.execute(select(func.count()).select_from(m)).scalar_one()
                   for m in (Invoice, InvoiceLine, JournalEntry, JournalLine)) + s.execute(
            select(func.count()).select_from(UsageEvent).where(
                UsageEvent.invoice_line_id.is_not(None))).scalar_one()  # type: ignore[union-attr]


def _baseline(svc, rows: int) -> float:  # type: ignore[no-untyped-def]
    meta = MetaData()
    scratch = Table("bench_scratch", meta, Column("id", Integer, primary_key=True),
                    Column("ref", BigInteger), Column("kind", String(16)),
                    Column("description", String(300)), Column("amount_cents", BigInteger),
                    Column("account", String(10)))
    meta.create_all(svc.engine)
    payload = [{"ref": i, "kind": "membership", "description": f"Dedicated Desk line {i}",
                "amount_cents": 55_000 + i % 100, "account": "4010"} for i in range(rows)]

    def load() -> None:
        with svc.engine.begin() as conn:
            for i in range(0, rows, 10_000):
                conn.execute(insert(scratch), payload[i:i + 10_000])

    return timed(load)


def run(quick: bool = False, *, backends: list[str] | None = None, members: int | None = None,
        events: int | None = None, repeats: int | None = None) -> str:
    default_members, default_events = (1_000, 10_000) if quick else (10_000, 100_000)
    members = members or default_members
    events = events or default_events
    if backends is None:
        backends = ["sqlite"] + (["postgresql"] if postgres_reachable() else [])
    out = []
    for backend in backends:
        runs, issues, bases, ratios = [], [], [], []
        for _ in range(repeats or (1 if quick else 3)):
            with fresh_services(backend) as svc:
                _seed(svc, members, events)
                engine = BillingEngine(svc.chart, BillingPolicy())
                result = {}

                def do_run(svc=svc, engine=engine, result=result) -> None:  # type: ignore[no-untyped-def]
                    with svc.session() as s:
                        result["run"] = engine.run(s, "2026-04", actor=ACTOR, dry_run=False)

                def do_issue(svc=svc, engine=engine, result=result) -> None:  # type: ignore[no-untyped-def]
                    with svc.session() as s:
                        ids = result["run"].invoice_ids
                        engine.approve(s, ids, actor=ACTOR)
                        engine.issue(s, ids, actor=ACTOR, on=date(2026, 4, 1))

                t_run = timed(do_run)
                t_issue = timed(do_issue)
                rows = _rows_written(svc)
                base = _baseline(svc, rows)
                runs.append(t_run)
                issues.append(t_issue)
                bases.append(base)
                ratios.append((t_run + t_issue) / base)
                invoices = len(result["run"].invoice_ids)
        out.append(f"| {backend} | {members:,} | {events:,} | {invoices:,} | {rows:,} | "
                   f"{median(runs):.2f} | {median(issues):.2f} | "
                   f"{median(runs) + median(issues):.2f} | {median(bases):.2f} | "
                   f"{median(ratios):.1f}x |")
    return "\n".join([
        "## Billing run (issue 3): members × usage events, run + issue vs bulk insert",
        "",
        f"Machine: {machine_details()}",
        "",
        "| backend | members | usage events | invoices | rows written | run s | issue s |"
        " total s | bulk-insert baseline s | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *out,
        "",
        "Median of 3 runs, each on a fresh database. *run* computes and stores the drafts"
        " (plan charges, March join prorations for 10% of members, usage in arrears, tax);"
        " *issue* approves, numbers and posts them. The baseline bulk-inserts the same number"
        " of rows the run wrote into a scratch table in the same database, in the same run"
        " (Core `executemany`, 10,000 rows a statement; *rows written* counts invoices, lines,"
        " journal entries and lines, and the usage events marked billed).",
        "",
        "Profile with `python -m benchmarks.bench_billing --backend sqlite --profile FILE`"
        " (one backend, any size, no docs written).",
    ])


def _main() -> None:
    """Run one backend at one size, optionally under cProfile (for tuning, writes no docs)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=_main.__doc__)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], action="append")
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--profile", metavar="FILE", help="write cProfile stats; print the top")
    args = parser.parse_args()

    def go() -> None:
        sys.stdout.write(run(backends=args.backend or ["sqlite"], members=args.members,
                             events=args.events, repeats=args.repeats) + "\n")

    run_or_profile(go, args.profile, 45)


if __name__ == "__main__":
    _main()
