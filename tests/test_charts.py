"""KPI charts (PNG, Slack-thumbnail sized) and the ``kpi`` / ``chart`` commands, on a small
demo space (60 members, 14 months through 2026-10) seeded once for the module on SQLite.

The numbers behind each chart are checked against the KPI engine, which test_kpi.py checks
by hand on both backends.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from finance import charts, kpi
from finance.demo import seed_demo
from finance.services import Services, build_services
from finance.settings import load_settings
from tests.conftest import FIXED_NOW

LAST = "2026-10"
runner = CliRunner()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Services, str]]:
    path = tmp_path_factory.mktemp("charts") / "demo.db"
    url = f"sqlite:///{path}"
    settings = load_settings(_env_file=None, DESKBOOKS_DATABASE_URL=url)
    services = build_services(settings, clock=lambda: FIXED_NOW)
    services.init_schema()  # migrated like a real install, so the CLI accepts the file
    seed_demo(services, members=60, months=14, through=LAST)
    yield services, url
    services.dispose()


@pytest.fixture
def svc(demo: tuple[Services, str]) -> Services:
    return demo[0]


def assert_thumbnail_png(png: bytes) -> None:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert charts.png_size(png) == charts.SIZE_PX == (960, 540)


def test_mrr_vs_plan_chart_shows_the_kpi_plan_and_a_forecast(svc):
    """Actual MRR per month is the mrr KPI, plan is the budget target, forecast follows."""
    result = charts.build_chart(svc, "mrr_vs_plan", end_month=LAST)
    assert_thumbnail_png(result.png)
    data = result.data
    months = kpi.last_months(LAST, 12)
    assert data["months"] == months
    assert data["actual_cents"] == [v for _, v in kpi.kpi_series(svc, "mrr", months)]
    with svc.session() as s:
        assert data["plan_cents"] == [kpi.budget_target_cents(s, m) for m in months]
    assert data["plan_cents"][-1] is not None
    last = kpi.compute_kpi(svc, "mrr_vs_plan", date(2026, 10, 1), date(2026, 10, 31))
    assert data["actual_cents"][-1] - data["plan_cents"][-1] == last.value
    fc = data["forecast"]
    assert fc["months"] == ["2026-11", "2026-12", "2027-01"]
    assert len(fc["points"]) == 3
    assert all(lo <= p <= hi for lo, p, hi in zip(fc["lower"], fc["points"], fc["upper"],
                                                  strict=True))
    assert fc["backtest"]["mape_naive"] is not None


def test_occupancy_chart_matches_the_kpi_by_desk_type(svc):
    """Each line is occupancy_rate for that desk type; the thick line is the total."""
    result = charts.build_chart(svc, "occupancy", end_month=LAST)
    assert_thumbnail_png(result.png)
    data = result.data
    months = kpi.last_months(LAST, 12)
    assert data["total_ppm"] == [v for _, v in kpi.kpi_series(svc, "occupancy_rate", months)]
    for desk in ("hot_desk", "private_office"):
        oct_ = kpi.compute_kpi(svc, "occupancy_rate", date(2026, 10, 1), date(2026, 10, 31),
                               desk_type=desk)
        assert data["by_desk_type_ppm"][desk][-1] == oct_.value
    assert len(data["forecast"]["points"]) == 3


def test_revenue_by_stream_adds_up_to_revenue(svc):
    """Streams regroup the revenue KPI's accounts and sum to it; memberships = 4000–4050."""
    result = charts.build_chart(svc, "revenue_by_stream", end_month=LAST)
    assert_thumbnail_png(result.png)
    revenue = kpi.compute_kpi(svc, "revenue", date(2026, 10, 1), date(2026, 10, 31))
    data = result.data
    assert sum(data["streams_cents"].values()) == data["total_cents"] == revenue.value
    by_account = revenue.breakdown["by_account"]
    assert data["streams_cents"]["Memberships"] == sum(
        by_account.get(c, 0) for c in ("4000", "4010", "4020", "4050"))


def test_ar_aging_chart_ties_to_the_receivable_balance(svc):
    """The aging buckets are kpi.ar_aging and add up to 1100 at the same date."""
    result = charts.build_chart(svc, "ar_aging", end_month=LAST)
    assert_thumbnail_png(result.png)
    data = result.data
    assert list(data["buckets_cents"]) == ["current", "1-30", "31-60", "61-90", "90+"]
    assert data["buckets_cents"] == kpi.ar_aging(svc, date(2026, 10, 31))
    dso = kpi.compute_kpi(svc, "dso", date(2026, 10, 1), date(2026, 10, 31))
    assert data["total_cents"] == dso.breakdown["receivable_cents"] > 0


def test_series_chart_and_renderers_cope_with_gaps(svc):
    """Any KPI draws as a series; empty or undefined points do not break a render."""
    data = charts.series_data(svc, "dso", kpi.last_months(LAST, 6))
    assert len(data["values"]) == 6
    assert_thumbnail_png(charts.render_series(data))
    assert_thumbnail_png(charts.render_ar_aging(
        {"buckets_cents": dict.fromkeys(kpi.AGING_BUCKETS, 0), "total_cents": 0}))
    gaps = {"months": ["2026-09", "2026-10"], "total_ppm": [None, 500_000],
            "by_desk_type_ppm": {"hot_desk": [None, None]},
            "forecast": {"months": [], "points": [], "lower": [], "upper": []}}
    assert_thumbnail_png(charts.render_occupancy(gaps))


def test_digest_chart_covers_the_last_full_months(svc):
    """mrr_vs_plan_chart(today) draws the 12 full months before today's month."""
    png = charts.mrr_vs_plan_chart(svc, date(2026, 11, 15))
    assert png == charts.build_chart(svc, "mrr_vs_plan", end_month=LAST).png


def test_unknown_chart_and_bad_month_are_refused(svc):
    """A chart name or month that does not exist is a ChartError with the choices."""
    with pytest.raises(charts.ChartError, match="mrr_vs_plan, occupancy"):
        charts.build_chart(svc, "pie", end_month=LAST)
    with pytest.raises(charts.ChartError, match="YYYY-MM"):
        charts.build_chart(svc, "occupancy", end_month="October")


def test_money_labels_are_compact():
    """Axis and bar labels stay short at thumbnail size."""
    assert [charts.money_short(c) for c in (95_000, 800_000, 1_250_000, 708_717_800, -50_000)] \
        == ["$950", "$8k", "$12.5k", "$7.09M", "-$500"]


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def cli_env(demo, monkeypatch):
    monkeypatch.setenv("DESKBOOKS_DATABASE_URL", demo[1])
    monkeypatch.setenv("DESKBOOKS_LOG_LEVEL", "WARNING")


def test_cli_kpi_defaults_to_the_last_full_month(cli_env, svc):
    """`kpi revenue --json` answers for last month and equals the engine's value."""
    out = runner.invoke(app, ["kpi", "revenue", "--today", "2026-11-15", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    expected = kpi.compute_kpi(svc, "revenue", date(2026, 10, 1), date(2026, 10, 31))
    assert (data["start"], data["end"], data["value"]) == ("2026-10-01", "2026-10-31",
                                                          expected.value)
    text = runner.invoke(app, ["kpi", "occupancy_rate", "--location", "DT", "--desk-type",
                               "hot_desk", "--start", "2026-09-01", "--end", "2026-09-30"])
    assert text.exit_code == 0 and "occupancy_rate 2026-09-01..2026-09-30 [DT hot_desk]" in \
        text.output


def test_cli_series_with_forecast_and_chart(cli_env, svc, tmp_path):
    """`kpi mrr --series --forecast --chart` gives 12 months, 3 forecast months and a PNG."""
    png = tmp_path / "mrr.png"
    out = runner.invoke(app, ["kpi", "mrr", "--series", "--forecast", "--chart", str(png),
                              "--today", "2026-11-15", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert [p["month"] for p in data["series"]] == kpi.last_months(LAST, 12)
    assert data["series"][-1]["value"] == kpi.compute_kpi(
        svc, "mrr", date(2026, 10, 1), date(2026, 10, 31)).value
    assert data["forecast"]["months"] == ["2026-11", "2026-12", "2027-01"]
    assert data["forecast"]["backtest"]["mape_naive"] is not None
    assert_thumbnail_png(png.read_bytes())


def test_cli_chart_command_writes_a_png(cli_env, tmp_path):
    """`chart ar_aging --out FILE` writes the PNG and reports its data."""
    png = tmp_path / "aging.png"
    out = runner.invoke(app, ["chart", "ar_aging", "--out", str(png), "--month", LAST,
                              "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["width"] == 960
    assert_thumbnail_png(Path(png).read_bytes())


@pytest.mark.parametrize(("args", "message"), [
    (["kpi", "cash_burn", "--desk-type", "hot_desk"], "no desk-type breakdown"),
    (["kpi", "profit"], "unknown KPI"),
    (["kpi", "mrr", "--location", "Mars"], "unknown location"),
    (["kpi", "mrr", "--start", "2026-10-05", "--end", "2026-10-01"], "before --start"),
    (["chart", "pie", "--out", "x.png"], "unknown chart"),
])
def test_cli_refusals_are_one_line_and_exit_2(cli_env, args, message):
    """Bad KPI questions exit 2 with one readable line and no traceback."""
    out = runner.invoke(app, args)
    assert out.exit_code == 2, out.output
    assert message in out.stderr and "Traceback" not in out.output
