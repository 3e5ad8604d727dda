"""KPIs (DESIGN §6) and their charts: ``deskbooks kpi NAME`` and ``deskbooks chart NAME``."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy import select

from bot.cli import JsonOpt, TodayOpt, UsageError, _date, _emit, _services, app, handle_errors
from finance.services import Services

StartOpt = Annotated[str | None, typer.Option("--start", help="First day, YYYY-MM-DD.")]
EndOpt = Annotated[str | None, typer.Option("--end", help="Last day, YYYY-MM-DD.")]
LocationOpt = Annotated[str | None, typer.Option("--location", help="Location code or name.")]
DeskTypeOpt = Annotated[str | None, typer.Option(
    "--desk-type", help="hot_desk | dedicated_desk | private_office | virtual_office")]
# which chart `kpi NAME --chart FILE` draws; other KPIs get their monthly series as a line
KPI_CHARTS = {"mrr": "mrr_vs_plan", "mrr_vs_plan": "mrr_vs_plan",
              "occupancy_rate": "occupancy", "revenue": "revenue_by_stream", "dso": "ar_aging"}


def _space_today(services: Services, location: str | None) -> date:
    """Today in the location's time zone (the first location's when none is given)."""
    from finance.models import Location

    with services.session() as session:
        rows = session.execute(select(Location.code, Location.name, Location.timezone)
                               .order_by(Location.id)).all()
    tz = rows[0].timezone if rows else "UTC"
    for row in rows:
        if location and location.lower() in (row.code.lower(), row.name.lower()):
            tz = row.timezone
    return services.today(tz)


def _resolve_range(today: date, start: str | None, end: str | None) -> tuple[date, date]:
    """Default: the last full month. Only --end: its month so far. Only --start: to today."""
    first = _date(start, "--start") if start else None
    last = _date(end, "--end") if end else None
    if first is None and last is None:
        last = today.replace(day=1) - timedelta(days=1)
        first = last.replace(day=1)
    elif first is None:
        assert last is not None
        first = last.replace(day=1)
    elif last is None:
        last = today
    if last < first:
        raise UsageError(f"--end {last} is before --start {first}")
    return first, last


def _write(path: Path, png: bytes) -> None:
    try:
        path.write_bytes(png)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None


@app.command("kpi")
@handle_errors
def kpi_command(
    name: Annotated[str, typer.Argument(help="occupancy_rate, mrr, mrr_vs_plan, arpm, revenue, "
                                             "expense_ratio, cash_burn, dso, "
                                             "invoice_error_rate, active_members")],
    start: StartOpt = None,
    end: EndOpt = None,
    location: LocationOpt = None,
    desk_type: DeskTypeOpt = None,
    series: Annotated[bool, typer.Option(
        "--series", help="One value per calendar month (default: the last 12 full months).")]
    = False,
    months: Annotated[int | None, typer.Option(
        "--months", min=1, max=120, help="Months in the series (ending with --end's month).")]
    = None,
    forecast: Annotated[bool, typer.Option(
        "--forecast", help="With --series: the next 3 months, backtested against naive.")]
    = False,
    chart: Annotated[Path | None, typer.Option("--chart", help="Also write a PNG chart.")]
    = None,
    today: TodayOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A KPI of DESIGN §6 for a date range (default: last full month), or a monthly series."""
    from finance import charts, kpi
    from finance.forecast import ForecastError

    services = _services(today)
    now = _space_today(services, location)
    first_day: date | None = None
    last_day: date | None = None
    try:
        if series or months or forecast:
            data, text = _series(services, name, now, start, end, months, location, desk_type,
                                 forecast)
            last_month = data["series"][-1]["month"]
        else:
            first_day, last_day = _resolve_range(now, start, end)
            result = kpi.compute_kpi(services, name, first_day, last_day, location=location,
                                     desk_type=desk_type)
            data, text = result.as_dict(), _render(result)
            last_month = kpi.month_of(last_day)
        if chart is not None:
            chart_name = KPI_CHARTS.get(name) if desk_type is None else None
            if chart_name is None:  # the KPI's own monthly series (with its filters)
                png = charts.render_series(charts.series_data(
                    services, name, kpi.last_months(last_month, 12), location=location,
                    desk_type=desk_type))
            else:
                png = charts.build_chart(services, chart_name, end_month=last_month,
                                         location=location, start=first_day,
                                         end=last_day).png
            _write(chart, png)
            data["chart"] = str(chart)
            text += f"\nchart written to {chart}"
    except (kpi.KpiError, charts.ChartError, ForecastError) as exc:
        raise UsageError(str(exc)) from None
    _emit(data, as_json, text)


def _series(services: Services, name: str, now: date, start: str | None, end: str | None,
            months: int | None, location: str | None, desk_type: str | None,
            with_forecast: bool) -> tuple[dict[str, Any], str]:
    from finance import forecast as fc
    from finance import kpi

    if start or end:
        first, last = _resolve_range(now, start, end)
        month_list = (kpi.last_months(kpi.month_of(last), months) if months and not start
                      else kpi.month_range(kpi.month_of(first), kpi.month_of(last)))
    else:
        last_full = now.replace(day=1) - timedelta(days=1)
        month_list = kpi.last_months(kpi.month_of(last_full), months or 12)
    points = kpi.kpi_series(services, name, month_list, location=location, desk_type=desk_type)
    unit = kpi.UNITS.get(name, "")
    data: dict[str, Any] = {
        "name": name, "unit": unit, "location": location, "desk_type": desk_type,
        "definition": kpi.DEFINITIONS[name],
        "series": [{"month": m, "value": str(v) if unit == "days" and v is not None else v,
                    "display": kpi.format_value(v, unit)} for m, v in points],
    }
    lines = [f"{name} by month" + (f" ({location})" if location else "")
             + (f" [{desk_type}]" if desk_type else "")]
    lines += [f"  {m}  {kpi.format_value(v, unit):>16}" for m, v in points]
    if with_forecast:
        values = [v for _, v in points]
        if len(values) < 24:  # forecasts learn from up to 24 months (and backtest on them)
            history = kpi.last_months(month_list[-1], 24)
            values = [v for _, v in kpi.kpi_series(services, name, history, location=location,
                                                   desk_type=desk_type)]
            while values and values[0] in (0, None):  # months before the space opened
                values.pop(0)
        if not values or any(v is None or not isinstance(v, int) for v in values):
            raise UsageError(f"{name} has months without a value or non-integer values; "
                             "no forecast")
        result = fc.forecast([int(v) for v in values if v is not None], horizon=3)  # type: ignore[arg-type]
        future = [kpi.add_months(month_list[-1], i + 1) for i in range(3)]
        data["forecast"] = result.as_dict() | {"months": future}
        lines.append(f"forecast ({result.method}):")
        for m, p, lo, hi in zip(future, result.points, result.lower, result.upper, strict=True):
            lines.append(f"  {m}  {kpi.format_value(p, unit):>16}   "
                         f"[{kpi.format_value(lo, unit)} … {kpi.format_value(hi, unit)}]")
        if result.backtest is not None:
            b = result.backtest
            lines.append(f"  backtest over {b.n_origins} origins: MAPE {b.mape_model}% "
                         f"({b.method}) vs naive {b.mape_naive}%")
    return data, "\n".join(lines)


def _render(result: Any) -> str:
    where = " ".join(x for x in (result.location, result.desk_type) if x)
    head = (f"{result.name} {result.start}..{result.end}" + (f" [{where}]" if where else "")
            + f": {result.display}")
    lines = [head]
    if result.note:
        lines.append(f"  note: {result.note}")
    for key, value in result.breakdown.items():
        if key == "rows":
            continue
        if isinstance(value, dict):
            shown = ", ".join(f"{k} {_fmt(key, v, result)}" for k, v in value.items())
            lines.append(f"  {key}: {shown}")
        else:
            lines.append(f"  {key}: {_fmt(key, value, result)}")
    lines.append(f"  definition: {result.definition}")
    return "\n".join(lines)


def _fmt(key: str, value: Any, result: Any) -> str:
    """A breakdown value as text: money for *_cents and money breakdowns, % for rates."""
    from finance import kpi

    if value is None or isinstance(value, str) or isinstance(value, bool):
        return str(value)
    money_maps = ("by_account", "by_location", "by_desk_type", "change_by_account",
                  "change_by_location", "expenses_by_account")
    if key.endswith("_cents") or key == "expenses_by_account" or (
            result.unit == "cents" and key in money_maps):
        return kpi.format_value(value, "cents", result.currency)
    if key.endswith("_ppm") or (result.unit == "ppm" and key.startswith("by_")):
        return kpi.format_value(value, "ppm")
    return f"{value:,}" if isinstance(value, int) else str(value)


@app.command("chart")
@handle_errors
def chart_command(
    name: Annotated[str, typer.Argument(help="mrr_vs_plan, occupancy, revenue_by_stream, "
                                             "ar_aging")],
    out: Annotated[Path, typer.Option("--out", help="PNG file to write.")],
    month: Annotated[str | None, typer.Option(
        "--month", help="Last month shown, YYYY-MM (default: last full month).")] = None,
    start: StartOpt = None,
    end: EndOpt = None,
    location: LocationOpt = None,
    today: TodayOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Draw a KPI chart as a PNG (readable as a Slack thumbnail)."""
    from finance import charts, kpi
    from finance.forecast import ForecastError

    services = _services(today)
    now = _space_today(services, location)
    first = _date(start, "--start") if start else None
    last = _date(end, "--end") if end else None
    if first and last and last < first:
        raise UsageError(f"--end {last} is before --start {first}")
    if month is None:
        month = kpi.month_of(last) if last else kpi.month_of(now.replace(day=1)
                                                             - timedelta(days=1))
    try:
        result = charts.build_chart(services, name, end_month=month, location=location,
                                    start=first, end=last)
    except (kpi.KpiError, charts.ChartError, ForecastError) as exc:
        raise UsageError(str(exc)) from None
    _write(out, result.png)
    width, height = charts.png_size(result.png)
    _emit({"chart": name, "out": str(out), "width": width, "height": height,
           "data": result.data}, as_json, f"{result.title}: wrote {width}x{height} PNG to {out}")
