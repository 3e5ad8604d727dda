"""Seeding the demo space: 400 and 10,000 members over 24 months, SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import func, select

from benchmarks.common import fresh_services, machine_details, median, postgres_reachable, timed
from finance import demo
from finance.models import InvoiceLine, JournalLine, UsageEvent

NAME = "seed"


def run(quick: bool = False) -> str:
    sizes = [(400, 3), (10_000, 1)] if not quick else [(400, 1)]
    backends = ["sqlite"] + (["postgresql"] if postgres_reachable() else [])
    rows = []
    for backend in backends:
        for members, repeats in sizes:
            times = []
            counts = (0, 0, 0)
            for _ in range(repeats):
                with fresh_services(backend) as svc:
                    times.append(timed(lambda svc=svc: demo.seed_demo(
                        svc, members=members, months=24, through="2026-10")))
                    with svc.session() as s:
                        counts = tuple(
                            s.execute(select(func.count()).select_from(m)).scalar_one()
                            for m in (JournalLine, InvoiceLine, UsageEvent)
                        )
            t = median(times)
            rows.append(
                f"| {backend} | {members:,} | {repeats} | {t:.2f} | "
                f"{counts[0]:,} | {counts[1]:,} | {counts[2]:,} | {counts[0] / t:,.0f} |"
            )
    return "\n".join([
        "## Seeding the demo space (`deskbooks demo --members N`, 24 months)",
        "",
        f"Machine: {machine_details()}",
        "",
        "| backend | members | runs | median s | journal lines | invoice lines | usage events"
        " | journal lines/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "Each run seeds an empty, freshly created schema in one transaction (all or nothing);"
        " the time includes generating, validating and posting every entry.",
    ])
