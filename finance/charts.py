"""KPI charts as PNG bytes, drawn headless and sized to stay readable as Slack thumbnails.

Each chart is two steps: a ``*_data`` function that asks the KPI engine (finance.kpi) and the
forecaster (finance.forecast) for the numbers, as integers, and a ``render_*`` function that
draws them. :func:`build_chart` does both and returns a :class:`ChartResult` with the PNG and
the data behind it, so tests (and the Slack message text) can show the same figures.

Drawing uses matplotlib's Agg canvas on a ``Figure`` object (never pyplot's global state), so
nothing is configured at import and concurrent renders do not interfere. The images are
960×540 px with 12–17 pt text, few ticks and compact money labels ("$7.1M"): at Slack's
360 px thumbnail the text is still about 10 px high. The data stays integer (cents, ppm);
matplotlib turns it into floats itself, and the few fractional style numbers (alpha, grid
width, margins) are marked ``float-ok`` at the plotting boundary.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from finance import forecast as fc
from finance import kpi

CHART_NAMES = ("mrr_vs_plan", "occupancy", "revenue_by_stream", "ar_aging")
SIZE_PX = (960, 540)
DPI = 150  # the figure is SIZE_PX / DPI inches
# plotting style: the only non-integer numbers in this module (matplotlib's own units)
BAND_ALPHA, GRID_WIDTH, LABEL_MARGIN = 0.18, 0.8, 0.18  # float-ok
HISTORY_MONTHS = 24  # what the forecasts learn from (leading months without data dropped)
COLORS = {"actual": "#1f5fa8", "plan": "#8a8a8a", "forecast": "#e07b00",
          "hot_desk": "#1f5fa8", "dedicated_desk": "#2a9d5b", "private_office": "#b5429a",
          "total": "#222222"}
DESK_LABELS = {"hot_desk": "Hot desk", "dedicated_desk": "Dedicated", "private_office": "Office"}
# revenue streams: chart account codes -> one bar each (anything else is "Other")
STREAMS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Memberships", ("4000", "4010", "4020", "4050")),
    ("Meeting rooms", ("4100",)),
    ("Virtual office", ("4200",)),
    ("Events", ("4300",)),
    ("Lockers", ("4400",)),
    ("Food & bev", ("4500",)),
    ("Printing", ("4600",)),
    ("Day passes", ("4700",)),
    ("Credits", ("4900",)),
)


class ChartError(ValueError):
    """A chart that cannot be drawn as asked (unknown name, bad month)."""


@dataclass(frozen=True)
class ChartResult:
    name: str
    title: str
    png: bytes
    data: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- data


def _history(source: Any, name: str, end_month: str, location: str | None,
             desk_type: str | None = None) -> tuple[list[str], list[int]]:
    months = kpi.last_months(end_month, HISTORY_MONTHS)
    series = kpi.kpi_series(source, name, months, location=location, desk_type=desk_type)
    pairs = [(m, int(v)) for m, v in series if v is not None]
    while pairs and pairs[0][1] == 0:  # before the space opened
        pairs.pop(0)
    return [m for m, _ in pairs], [v for _, v in pairs]


def _forecast_block(months: list[str], values: list[int], horizon: int) -> dict[str, Any]:
    if not values:
        return {"months": [], "points": [], "lower": [], "upper": [], "method": None,
                "backtest": None}
    result = fc.forecast(values, horizon=horizon)
    last = months[-1]
    return {"months": [kpi.add_months(last, i + 1) for i in range(horizon)],
            "points": list(result.points), "lower": list(result.lower),
            "upper": list(result.upper), "method": result.method,
            "backtest": result.backtest.as_dict() if result.backtest else None}


def mrr_vs_plan_data(source: Any, end_month: str, *, location: str | None = None,
                     months: int = 12, horizon: int = 3) -> dict[str, Any]:
    """MRR at each month end vs the month's budget target, plus a forecast of MRR."""
    shown = kpi.last_months(end_month, months)
    with kpi.session_for(source) as (session, _):
        hist_months, hist = _history(session, "mrr", end_month, location)
        loc_id = kpi.location_id_of(session, location)
        plan = [kpi.budget_target_cents(session, m, location_id=loc_id) for m in shown]
    actual = dict(zip(hist_months, hist, strict=True))
    return {"months": shown, "actual_cents": [actual.get(m, 0) for m in shown],
            "plan_cents": plan, "location": location,
            "forecast": _forecast_block(hist_months, hist, horizon)}


def occupancy_data(source: Any, end_month: str, *, location: str | None = None,
                   months: int = 12, horizon: int = 3) -> dict[str, Any]:
    """Monthly occupancy (ppm) per desk type and in total, plus a forecast of the total."""
    shown = kpi.last_months(end_month, months)
    with kpi.session_for(source) as (session, _):
        results = kpi.kpi_series_results(session, "occupancy_rate", shown, location=location)
        hist_months, hist = _history(session, "occupancy_rate", end_month, location)
    by_desk: dict[str, list[int | None]] = {d: [] for d in kpi.SEATED_DESK_TYPES}
    for _, r in results:
        for d in by_desk:
            by_desk[d].append(r.breakdown["by_desk_type"].get(d))
    return {"months": shown, "total_ppm": [r.value for _, r in results],
            "by_desk_type_ppm": by_desk, "location": location,
            "forecast": _forecast_block(hist_months, hist, horizon)}


def revenue_by_stream_data(source: Any, start: date, end: date, *,
                           location: str | None = None) -> dict[str, Any]:
    """Recognized revenue in [start, end] grouped into streams (from the revenue KPI)."""
    result = kpi.compute_kpi(source, "revenue", start, end, location=location)
    by_account: dict[str, int] = result.breakdown["by_account"]
    streams: dict[str, int] = {}
    known: set[str] = set()
    for label, codes in STREAMS:
        known.update(codes)
        cents = sum(by_account.get(c, 0) for c in codes)
        if cents:
            streams[label] = cents
    other = sum(v for c, v in by_account.items() if c not in known)
    if other:
        streams["Other"] = other
    return {"start": start.isoformat(), "end": end.isoformat(), "location": location,
            "streams_cents": streams, "total_cents": result.value}


def ar_aging_data(source: Any, as_of: date, *, location: str | None = None) -> dict[str, Any]:
    """Open receivables by days past due on ``as_of`` (finance.kpi.ar_aging)."""
    buckets = kpi.ar_aging(source, as_of, location=location)
    return {"as_of": as_of.isoformat(), "location": location, "buckets_cents": buckets,
            "total_cents": sum(buckets.values())}


def series_data(source: Any, name: str, months: Sequence[str], *,
                location: str | None = None, desk_type: str | None = None) -> dict[str, Any]:
    """Any KPI's monthly series (for KPIs without a chart of their own)."""
    series = kpi.kpi_series(source, name, months, location=location, desk_type=desk_type)
    return {"name": name, "unit": kpi.UNITS[name], "months": list(months),
            "values": [v for _, v in series], "location": location, "desk_type": desk_type}


# --------------------------------------------------------------------------- drawing


def _figure() -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(SIZE_PX[0] / DPI, SIZE_PX[1] / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.tick_params(labelsize=14, length=0)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(axis="y", color="#dddddd", linewidth=GRID_WIDTH)
    ax.set_axisbelow(True)
    return fig, ax


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def money_short(cents: Any) -> str:
    """Compact money for axes and labels: $950, $12k, $7.1M (cents; axis values too)."""
    dollars = Decimal(cents) / 100
    sign = "-" if dollars < 0 else ""
    d = abs(dollars)

    def q(x: Decimal, places: str = "1") -> Decimal:
        return x.quantize(Decimal(places), rounding=ROUND_HALF_UP)

    if d >= 1_000_000:
        m = d / 1_000_000
        return f"{sign}${q(m, '0.1') if m * 10 == int(m * 10) or m >= 100 else q(m, '0.01')}M"
    if d >= 1_000:
        k = d / 1_000
        return f"{sign}${q(k) if k == int(k) or k >= 100 else q(k, '0.1')}k"
    return f"{sign}${q(d)}"


def _month_label(month: str) -> str:
    names = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    return f"{names[int(month[5:]) - 1]} {month[2:4]}"


def _month_axis(ax: Any, months: Sequence[str]) -> None:
    step = max(1, len(months) // 4)
    ticks = list(range(len(months) - 1, -1, -step))[::-1]
    ax.set_xticks(ticks)
    ax.set_xticklabels([_month_label(months[i]) for i in ticks])


def _money_axis(ax: Any) -> None:
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(4))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: money_short(v)))


def _pct_axis(ax: Any) -> None:
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(4))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 10_000:.0f}%"))


def _draw_forecast(ax: Any, block: dict[str, Any], x0: int, last_value: int | None) -> None:
    if not block["points"] or last_value is None:
        return
    xs = [x0 + i for i in range(len(block["points"]) + 1)]
    ax.fill_between(xs, [last_value, *block["lower"]], [last_value, *block["upper"]],
                    color=COLORS["forecast"], alpha=BAND_ALPHA, linewidth=0)
    ax.plot(xs, [last_value, *block["points"]], color=COLORS["forecast"], linewidth=3,
            linestyle="--", label="Forecast")


def render_mrr_vs_plan(data: dict[str, Any]) -> bytes:
    fig, ax = _figure()
    months = data["months"]
    n = len(months)
    ax.plot(range(n), data["actual_cents"], color=COLORS["actual"], linewidth=3, label="MRR")
    plan = [(i, p) for i, p in enumerate(data["plan_cents"]) if p is not None]
    if plan:
        ax.plot([i for i, _ in plan], [p for _, p in plan], color=COLORS["plan"], linewidth=2,
                linestyle=":", label="Plan")
    _draw_forecast(ax, data["forecast"], n - 1, data["actual_cents"][-1] if n else None)
    _month_axis(ax, months + data["forecast"]["months"])
    _money_axis(ax)
    last = data["actual_cents"][-1] if n else 0
    ax.set_title(f"MRR vs plan — {money_short(last)} in {_month_label(months[-1])}",
                 fontsize=17, loc="left")
    ax.legend(fontsize=13, frameon=False, loc="upper left")
    fig.tight_layout()
    return _png(fig)


def render_occupancy(data: dict[str, Any]) -> bytes:
    fig, ax = _figure()
    months = data["months"]
    n = len(months)
    for desk, values in data["by_desk_type_ppm"].items():
        pts = [(i, v) for i, v in enumerate(values) if v is not None]
        if pts:
            ax.plot([i for i, _ in pts], [v for _, v in pts], color=COLORS[desk], linewidth=3,
                    label=DESK_LABELS[desk])
    total = data["total_ppm"]
    pts = [(i, v) for i, v in enumerate(total) if v is not None]
    if pts:
        ax.plot([i for i, _ in pts], [v for _, v in pts], color=COLORS["total"], linewidth=4,
                label="All")
    _draw_forecast(ax, data["forecast"], n - 1, total[-1] if n else None)
    _month_axis(ax, months + data["forecast"]["months"])
    _pct_axis(ax)
    last = total[-1] if n and total[-1] is not None else 0
    ax.set_title(f"Occupancy — {last / 10_000:.0f}% in {_month_label(months[-1])}",
                 fontsize=17, loc="left")
    ax.legend(fontsize=12, frameon=False, loc="upper left", bbox_to_anchor=(1, 1))
    fig.tight_layout()
    return _png(fig)


def render_revenue_by_stream(data: dict[str, Any]) -> bytes:
    fig, ax = _figure()
    items = sorted(data["streams_cents"].items(), key=lambda kv: kv[1])
    labels = [k for k, _ in items]
    values = [v for _, v in items]
    ax.barh(range(len(items)), values,
            color=[COLORS["actual"] if v >= 0 else COLORS["forecast"] for v in values])
    ax.set_yticks(range(len(items)))
    ax.set_yticklabels(labels)
    ax.grid(axis="y", visible=False)
    ax.grid(axis="x", color="#dddddd", linewidth=GRID_WIDTH)
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(3))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: money_short(v)))
    for i, v in enumerate(values):
        ax.text(v, i, f" {money_short(v)}", va="center", fontsize=12)
    ax.margins(x=LABEL_MARGIN)
    ax.set_title(f"Revenue by stream — {money_short(data['total_cents'] or 0)}",
                 fontsize=17, loc="left")
    fig.tight_layout()
    return _png(fig)


def render_ar_aging(data: dict[str, Any]) -> bytes:
    fig, ax = _figure()
    buckets = data["buckets_cents"]
    labels = list(buckets)
    values = list(buckets.values())
    colors = ["#2a9d5b", "#f2c14e", "#e07b00", "#d1495b", "#8b1e3f"]
    ax.bar(range(len(labels)), values, color=colors[: len(labels)])
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels)
    _money_axis(ax)
    for i, v in enumerate(values):
        if v:
            ax.text(i, v, money_short(v), ha="center", va="bottom", fontsize=12)
    ax.margins(y=LABEL_MARGIN)
    ax.set_title(f"A/R aging — {money_short(data['total_cents'])} open", fontsize=17,
                 loc="left")
    ax.set_xlabel("days past due", fontsize=13)
    fig.tight_layout()
    return _png(fig)


def render_series(data: dict[str, Any]) -> bytes:
    fig, ax = _figure()
    months, unit = data["months"], data["unit"]
    pts = [(i, float(v)) for i, v in enumerate(data["values"]) if v is not None]  # float-ok
    ax.plot([i for i, _ in pts], [v for _, v in pts], color=COLORS["actual"], linewidth=3)
    _month_axis(ax, months)
    if unit == "cents":
        _money_axis(ax)
    elif unit == "ppm":
        _pct_axis(ax)
    else:
        from matplotlib.ticker import MaxNLocator

        ax.yaxis.set_major_locator(MaxNLocator(4))
    last = data["values"][-1] if data["values"] else None
    shown = kpi.format_value(last, unit) if unit != "cents" or last is None \
        else money_short(int(last))
    scope = " ".join(x for x in (data.get("location"), DESK_LABELS.get(data.get("desk_type")
                                                                      or "", "")) if x)
    ax.set_title(f"{data['name']}{' · ' + scope if scope else ''} — {shown} in "
                 f"{_month_label(months[-1])}", fontsize=17, loc="left")
    fig.tight_layout()
    return _png(fig)


# --------------------------------------------------------------------------- entry point


def build_chart(source: Any, name: str, *, end_month: str, location: str | None = None,
                start: date | None = None, end: date | None = None) -> ChartResult:
    """Draw one of :data:`CHART_NAMES` for the 12 months through ``end_month`` (time charts),
    the range [start, end] (revenue; default: ``end_month``) or ``end`` (aging; default: the
    last day of ``end_month``)."""
    try:
        last_day = kpi.month_end(end_month)
    except kpi.KpiError as exc:
        raise ChartError(str(exc)) from None
    if name == "mrr_vs_plan":
        data = mrr_vs_plan_data(source, end_month, location=location)
        return ChartResult(name, "MRR vs plan", render_mrr_vs_plan(data), data)
    if name == "occupancy":
        data = occupancy_data(source, end_month, location=location)
        return ChartResult(name, "Occupancy by desk type", render_occupancy(data), data)
    if name == "revenue_by_stream":
        data = revenue_by_stream_data(source, start or kpi.month_start(end_month),
                                      end or last_day, location=location)
        return ChartResult(name, "Revenue by stream", render_revenue_by_stream(data), data)
    if name == "ar_aging":
        data = ar_aging_data(source, end or last_day, location=location)
        return ChartResult(name, "A/R aging", render_ar_aging(data), data)
    raise ChartError(f"unknown chart {name!r}; choose one of {', '.join(CHART_NAMES)}")


def mrr_vs_plan_chart(source: Any, today: date, *, location: str | None = None) -> bytes:
    """The MRR vs plan PNG for the 12 full months before ``today`` (weekly digest, Home)."""
    last_full = today.replace(day=1) - timedelta(days=1)
    return build_chart(source, "mrr_vs_plan", end_month=kpi.month_of(last_full),
                       location=location).png


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; raises ChartError if it is not a PNG."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ChartError("not a PNG image")
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
