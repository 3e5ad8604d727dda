"""Forecasts of monthly KPI series: method choice, bands, and the rolling-origin backtest
against the naive "same as last month" forecast. Series are synthetic and deterministic."""

from __future__ import annotations

from decimal import Decimal

import pytest

from finance import forecast as fc

TREND = [1_000_000 + 25_000 * i for i in range(24)]
# 36 months: trend plus a strong yearly pattern (summer dip, January peak)
PATTERN = [120, 60, 20, 0, -20, -60, -140, -160, -40, 20, 60, 140]
SEASONAL = [2_000_000 + 5_000 * i + 1_000 * PATTERN[i % 12] for i in range(36)]


def test_naive_backtest_mape_by_hand():
    """Naive on 100, 110, 121, 133 from 2 months: errors 11/121 and 12/133 → 9.06 %."""
    report = fc.backtest([100, 110, 121, 133], horizon=1, min_train=2, method="naive")
    assert report.n_origins == 2
    assert report.mape_naive == report.mape_model == Decimal("9.06")
    assert not report.beats_naive


def test_zero_actuals_are_skipped_in_mape():
    """A month with actual 0 has no percentage error; the others still count."""
    report = fc.backtest([100, 100, 0, 100], horizon=1, min_train=2, method="naive")
    assert report.step_errors == ((Decimal(100),),)  # 0 vs 100 scored, 100 vs 0 skipped
    assert report.mape_naive == Decimal("100.00")
    assert fc.backtest([100, 100, 0, 0], horizon=1, min_train=2).mape_naive is None


def test_short_series_fall_back_to_naive():
    """Under six months no model is fitted: the last value repeats."""
    result = fc.forecast([10, 20, 30, 40], horizon=3)
    assert result.method == "naive" and result.points == (40, 40, 40)
    assert fc.forecast([7] * 20).points == (7, 7, 7)  # a flat series stays flat


def test_trend_is_picked_by_backtest_and_beats_naive():
    """On a straight line the damped trend wins the backtest and continues the line."""
    report = fc.backtest(TREND, horizon=3, min_train=12)
    assert report.method in ("holt", "holt_winters")  # the same model below 24 months
    assert report.mape_model is not None and report.mape_naive is not None
    assert report.mape_model < report.mape_naive
    assert report.n_origins == 12
    result = fc.forecast(TREND, horizon=3)
    assert result.method == "holt"
    for step, point in enumerate(result.points, start=24):
        assert abs(point - (1_000_000 + 25_000 * step)) < 25_000  # within one month's growth
    assert all(isinstance(p, int) for p in result.points + result.lower + result.upper)


def test_seasonality_only_with_two_full_seasons():
    """With 24+ training months Holt-Winters beats a plain trend on a seasonal series."""
    report = fc.backtest(SEASONAL, horizon=3, min_train=24)
    assert report.candidates["holt_winters"] < report.candidates["holt"]
    assert report.method == "holt_winters" and report.beats_naive
    short = fc.forecast(SEASONAL[:20], horizon=3, method="holt_winters")
    assert short.method == "holt"  # fewer than two seasons: no seasonal term


def test_band_surrounds_the_points():
    """The empirical band holds each point and has a width."""
    noisy = [1_000_000 + 20_000 * i + (15_000 if i % 3 == 0 else -9_000) for i in range(24)]
    result = fc.forecast(noisy, horizon=3)
    assert all(lo <= p <= hi for lo, p, hi in zip(result.lower, result.points, result.upper,
                                                  strict=True))
    assert all(hi > lo for lo, hi in zip(result.lower, result.upper, strict=True))
    assert result.backtest is not None and result.as_dict()["backtest"]["mape_naive"]


@pytest.mark.parametrize(("series", "kwargs", "message"), [
    ([], {}, "empty"),
    ([1.5, 2.5], {}, "integers"),
    ([1, 2, 3], {"horizon": 0}, "horizon"),
    ([1, 2, 3], {"method": "prophet"}, "unknown method"),
])
def test_bad_input_is_refused(series, kwargs, message):
    """Forecasting refuses floats, empty series, bad horizons and unknown methods."""
    with pytest.raises(fc.ForecastError, match=message):
        fc.forecast(series, **kwargs)
