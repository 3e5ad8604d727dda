"""Every KPI query of DESIGN §6 on the demo space (24 months), SQLite and PostgreSQL.

Setup (not timed): ``seed_demo`` with 400 members (quick) or 400 and 10,000 members (full),
24 months through 2026-10. Timed: ``compute_kpi`` for the last month (2026-10) and for the
last 12 months, whole space, median of 7 runs (5 in quick mode) after one warm-up run.
Baseline, same run and database: one full scan of the journal (``SELECT sum(amount_cents)
FROM journal_line``), the cheapest query that reads the whole ledger. Goal: each one-month
KPI query <= 200 ms on SQLite at 10,000 members.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import func, select, text

from benchmarks.common import fresh_services, machine_details, median, postgres_reachable, timed
from finance import demo, kpi
from finance.models import JournalLine

NAME = "kpi"
MONTH = (date(2026, 10, 1), date(2026, 10, 31))
YEAR = (date(2025, 11, 1), date(2026, 10, 31))
GOAL_MS = 200


def _time(svc, name: str, span: tuple[date, date], repeats: int) -> float:  # type: ignore[no-untyped-def]
    with svc.session() as s:
        kpi.compute_kpi(s, name, *span, chart=svc.chart)  # warm-up (plans, caches)
        return median([timed(lambda s=s: kpi.compute_kpi(s, name, *span, chart=svc.chart))
                       for _ in range(repeats)]) * 1000


def run(quick: bool = False) -> str:
    sizes = [400] if quick else [400, 10_000]
    repeats = 5 if quick else 7
    backends = ["sqlite"] + (["postgresql"] if postgres_reachable() else [])
    table: dict[tuple[str, int], dict[str, tuple[float, float]]] = {}
    baselines: dict[tuple[str, int], tuple[float, int]] = {}
    for backend in backends:
        for members in sizes:
            with fresh_services(backend) as svc:
                demo.seed_demo(svc, members=members, months=24, through="2026-10")
                if backend == "postgresql":
                    with svc.engine.begin() as conn:
                        conn.execute(text("ANALYZE"))
                with svc.session() as s:
                    lines = int(s.execute(select(func.count()).select_from(JournalLine))
                                .scalar_one())
                    scan = select(func.sum(JournalLine.amount_cents))
                    s.execute(scan)
                    base = median([timed(lambda s=s: s.execute(scan).scalar_one())
                                   for _ in range(repeats)]) * 1000
                baselines[(backend, members)] = (base, lines)
                table[(backend, members)] = {
                    name: (_time(svc, name, MONTH, repeats), _time(svc, name, YEAR, repeats))
                    for name in kpi.KPI_NAMES
                }
    header = "| KPI | " + " | ".join(f"{b} {m:,} month / 12 mo ms" for b, m in table) + " |"
    rule = "|---|" + "---:|" * len(table)
    rows = []
    for name in kpi.KPI_NAMES:
        cells = []
        for key in table:
            month_ms, year_ms = table[key][name]
            flag = "" if month_ms <= GOAL_MS else " ⚠"
            cells.append(f"{month_ms:.1f}{flag} / {year_ms:.1f}")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    base_row = "| *baseline: full journal scan* | " + " | ".join(
        f"{baselines[k][0]:.1f} ({baselines[k][1]:,} lines)" for k in table) + " |"
    worst = {k: max(v[0] for v in table[k].values()) for k in table}
    verdict = "; ".join(f"{b} {m:,}: slowest one-month KPI {ms:.0f} ms "
                        f"({ms / baselines[(b, m)][0]:.2f}x the full scan)"
                        for (b, m), ms in worst.items())
    return "\n".join([
        "## KPI queries (issue 5): every DESIGN §6 KPI on the demo space, 24 months",
        "",
        f"Machine: {machine_details()}",
        "",
        header,
        rule,
        *rows,
        base_row,
        "",
        f"Median of {repeats} runs after a warm-up, whole space (no location filter): the last"
        " month (2026-10) / the last 12 months. Goal: each one-month KPI <= 200 ms on SQLite"
        " at 10,000 members (⚠ marks a miss). " + verdict + ".",
        "",
        "Ledger KPIs (revenue, expense_ratio, cash_burn, dso, arpm) read whole months from"
        " `ledger_month_total` (kept in the same transaction by every posting) and only the"
        " partial months at the edges of the range from journal lines (entry date -> the"
        " entry's lines through `ix_journal_line_entry_cover`), so a 12-month range costs"
        " about what one month does. Subscription KPIs (mrr, occupancy, active_members)"
        " aggregate the subscription table in one query.",
    ])
