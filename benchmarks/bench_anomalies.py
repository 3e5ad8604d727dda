"""A full anomaly scan of the demo space (24 months), against a read-the-books-once baseline.

Setup (not timed): ``seed_demo`` with N members and 24 months through 2026-10. Timed: a scan of
all ten kinds over the whole 24 months (``finance.anomalies.scan``: detect and store; the first
scan inserts the findings, later ones find them stored), three times. Baseline, in the same run
and database: one full pass over the largest tables (sums over ``journal_line`` and
``invoice``), i.e. the cost of reading the books once. Quality: recall on the planted problems
of ``DemoSummary.planted`` and precision (findings that are a planted problem / all findings).
Goal: a scan of the 10,000-member space in at most 30 s on SQLite and PostgreSQL.
"""

from __future__ import annotations

import time
from datetime import date

from sqlalchemy import func, select

from benchmarks.common import fresh_services, machine_details, median, postgres_reachable, timed
from finance.anomalies import Finding, scan
from finance.authz import Actor
from finance.demo import PlantedProblem, seed_demo
from finance.models import Invoice, JournalLine

NAME = "anomalies"
ACTOR = Actor.system("bench")
START, END = date(2024, 11, 1), date(2026, 10, 31)


def matches(finding: Finding, planted: PlantedProblem) -> bool:
    """Same kind, and every record type both name shares at least one id."""
    if finding.kind != planted.kind:
        return False
    common = set(finding.records) & set(planted.records)
    return bool(common) and all(set(finding.records[k]) & set(planted.records[k])
                                for k in common)


def _baseline(svc) -> float:  # type: ignore[no-untyped-def]
    def read() -> None:
        with svc.session() as s:
            s.execute(select(func.count(), func.sum(JournalLine.amount_cents))).one()
            s.execute(select(func.count(), func.sum(Invoice.total_cents))).one()

    return timed(read)


def _one(backend: str, members: int, repeats: int) -> str:
    with fresh_services(backend) as svc:
        t0 = time.perf_counter()
        demo = seed_demo(svc, members=members, months=24, through="2026-10")
        seeded = time.perf_counter() - t0
        times, reports = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            reports.append(scan(svc, ACTOR, start=START, end=END))
            times.append(time.perf_counter() - start)
        base = median([_baseline(svc) for _ in range(3)])
        with svc.session() as s:
            lines = s.execute(select(func.count()).select_from(JournalLine)).scalar_one()
            invoices = s.execute(select(func.count()).select_from(Invoice)).scalar_one()
    found = reports[0].findings
    recall = sum(1 for p in demo.planted if any(matches(f, p) for f in found))
    true = sum(1 for f in found if any(matches(f, p) for p in demo.planted))
    precision = true / len(found) if found else 1.0
    assert reports[-1].new == 0, "a rescan must store nothing new"
    return (f"| {backend} | {members:,} | {invoices:,} | {lines:,} | {seeded:.0f} | "
            f"{times[0]:.2f} | {median(times):.2f} | {base:.2f} | {median(times) / base:.1f}x | "
            f"{len(found)} | {recall}/{len(demo.planted)} | {precision:.0%} |")


def run(quick: bool = False) -> str:
    sizes = [400] if quick else [400, 10_000]
    backends = ["sqlite"] + (["postgresql"] if postgres_reachable() else [])
    rows = [_one(backend, members, 3) for members in sizes for backend in backends]
    return "\n".join([
        "## Anomaly scan (issue 5): the demo space, 24 months, all ten kinds",
        "",
        f"Machine: {machine_details()}",
        "",
        "| backend | members | invoices | journal lines | seed s | first scan s | median scan s |"
        " read-once baseline s | ratio | findings | planted found | precision |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "Each row is one fresh database seeded with `seed_demo(members=N, months=24, "
        "through='2026-10')`. A scan runs every detector over 2024-11-01..2026-10-31 and stores "
        "the findings by fingerprint; median of 3 scans (the first inserts, the others dedupe). "
        "The baseline reads the largest tables once (sums over `journal_line` and `invoice`). "
        "*planted found* is recall on `DemoSummary.planted`; precision counts a finding as true "
        "when it is one of the planted problems (same kind, same records). Goal: <= 30 s for "
        "10,000 members.",
    ])
