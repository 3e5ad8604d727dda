"""Forecast accuracy on the demo history: MAPE of the chosen method vs the naive forecast.

Setup: ``seed_demo`` with 400 members, 24 months through 2026-10 (SQLite); full mode also
10,000 members. For the monthly MRR and occupancy series (whole space and per location) and,
for contrast, recognized revenue: a rolling-origin backtest (train on the first 12..23
months, forecast 1-3 months ahead, score every origin and step), each method's MAPE, the
method ``forecast(method="auto")`` picks, and the time the backtest takes.
"""

from __future__ import annotations

from benchmarks.common import fresh_services, machine_details, timed
from finance import demo, kpi
from finance import forecast as fc

NAME = "forecast"
LAST = "2026-10"


def _series(svc, name: str, location: str | None) -> list[int]:  # type: ignore[no-untyped-def]
    values = [v for _, v in kpi.kpi_series(svc, name, kpi.last_months(LAST, 24),
                                           location=location)]
    return [int(v) for v in values if v is not None]


def run(quick: bool = False) -> str:
    sizes = [400] if quick else [400, 10_000]
    fc.forecast(list(range(100, 124)))  # import and warm statsmodels outside the timings
    rows = []
    for members in sizes:
        with fresh_services("sqlite") as svc:
            demo.seed_demo(svc, members=members, months=24, through=LAST)
            cases = [("mrr", None), ("occupancy_rate", None), ("revenue", None)]
            cases += [("mrr", loc) for loc in ("DT", "RS", "UT")]
            cases += [("occupancy_rate", loc) for loc in ("DT", "RS", "UT")]
            for name, location in cases:
                values = _series(svc, name, location)
                report: dict[str, fc.BacktestReport] = {}
                seconds = timed(lambda v=values: report.setdefault(
                    "r", fc.backtest(v, horizon=3, min_train=12)))
                r = report["r"]
                c = r.candidates
                verdict = "beats naive" if r.beats_naive else "naive kept"
                rows.append(
                    f"| {members:,} | {name} | {location or 'all'} | {len(values)} | "
                    f"{r.n_origins} | {c.get('naive')}% | {c.get('holt')}% | "
                    f"{c.get('holt_winters')}% | **{r.method}** {r.mape_model}% | {verdict} | "
                    f"{seconds:.2f} |")
    return "\n".join([
        "## Forecasts (issue 5): rolling-origin backtest on the demo history",
        "",
        f"Machine: {machine_details()}",
        "",
        "| members | series | location | months | origins | naive MAPE | holt MAPE |"
        " holt_winters MAPE | chosen | vs naive | backtest s |",
        "|---:|---|---|---:|---:|---:|---:|---:|---|---|---:|",
        *rows,
        "",
        "Horizon 3 months, first origin after 12 months, every (origin, step) with an actual"
        " month scored; MAPE in percent. *naive* is \"same as last month\". *holt* is"
        " statsmodels' damped additive trend; *holt_winters* adds a 12-month season only when"
        " the training window holds two full seasons (24 months), so on 24 months of history"
        " it never gets a seasonal origin and equals *holt*. `forecast()` uses the method"
        " with the lowest backtest MAPE (naive on ties), so the choice is made on the same"
        " backtest that reports it: read the chosen MAPE as slightly optimistic.",
    ])
