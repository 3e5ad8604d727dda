"""Short-horizon forecasts of monthly KPI series (MRR, occupancy), backtested against naive.

Methods (all from statsmodels' exponential smoothing, a well-kept time-series library):

- ``naive``: next months = the last month ("same as last month"), the baseline to beat;
- ``holt``: additive damped trend (Holt's linear method with damping);
- ``holt_winters``: damped trend plus additive 12-month seasonality, used only when the
  training data holds at least two full seasons (24 months); with less it is ``holt``.

``forecast(series, method="auto")`` picks the method by a rolling-origin backtest on the series
itself (lowest MAPE over all origins and steps; ties go to the simpler method), so a model
that does not beat naive is not used. The band is empirical: the 80th percentile of the
chosen method's absolute percentage errors at each step in the backtest, around the point
(with too short a history for a backtest, ±1.28 residual standard deviations × √step).

Values are integers (cents, ppm) in and out. statsmodels computes in binary floating point
internally (a numpy float64 array built from the integers); its outputs come back as Decimal
at once, and points and bands are rounded to integers half up before they leave this module.
MAPE figures are Decimal percentages to 0.01.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

SEASON = 12
METHODS = ("naive", "holt", "holt_winters")
MIN_MODEL_POINTS = 6  # below this a smoothing model is not fitted at all: naive
HEURISTIC_MIN_POINTS = 10
BAND_QUANTILE = Decimal("0.8")
Z_80 = Decimal("1.2816")  # two-sided 80 % normal quantile, for the band without a backtest


class ForecastError(ValueError):
    """A series that cannot be forecast as asked (empty, wrong method, bad horizon)."""


@dataclass(frozen=True)
class Forecast:
    """``horizon`` future points with a lower/upper band, and the method that made them."""

    points: tuple[int, ...]
    lower: tuple[int, ...]
    upper: tuple[int, ...]
    method: str
    backtest: BacktestReport | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"points": list(self.points), "lower": list(self.lower),
                "upper": list(self.upper), "method": self.method,
                "backtest": self.backtest.as_dict() if self.backtest else None}


@dataclass(frozen=True)
class BacktestReport:
    """Rolling-origin backtest: the method's MAPE beside the naive forecast's."""

    method: str
    mape_model: Decimal | None
    mape_naive: Decimal | None
    n_origins: int
    horizon: int
    min_train: int
    candidates: dict[str, Decimal | None] = field(default_factory=dict)
    step_errors: tuple[tuple[Decimal, ...], ...] = ()  # per step: |pct errors| of the method

    @property
    def beats_naive(self) -> bool:
        return (self.mape_model is not None and self.mape_naive is not None
                and self.mape_model < self.mape_naive)

    def as_dict(self) -> dict[str, Any]:
        def text(d: Decimal | None) -> str | None:
            return None if d is None else str(d)
        return {"method": self.method, "mape_model": text(self.mape_model),
                "mape_naive": text(self.mape_naive), "n_origins": self.n_origins,
                "horizon": self.horizon, "min_train": self.min_train,
                "beats_naive": self.beats_naive,
                "candidates": {k: text(v) for k, v in self.candidates.items()}}


# --------------------------------------------------------------------------- models


def _check(series: Sequence[int], horizon: int) -> list[int]:
    values = list(series)
    if not values:
        raise ForecastError("cannot forecast an empty series")
    if any(isinstance(v, bool) or not isinstance(v, int) for v in values):
        raise ForecastError("series values must be integers (cents or ppm); drop missing months")
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise ForecastError(f"horizon must be a positive integer, got {horizon!r}")
    return values


def _fit_points(values: list[int], horizon: int, method: str
                ) -> tuple[list[Decimal], str, Decimal]:
    """(points, method actually used, residual standard deviation)."""
    if method == "holt_winters" and len(values) < 2 * SEASON:
        method = "holt"  # not enough seasons: the same model as holt (and the same fit)
    points, used, std = _fit_cached(tuple(values), horizon, method)
    return list(points), used, std


@lru_cache(maxsize=256)
def _fit_cached(values_t: tuple[int, ...], horizon: int,
                method: str) -> tuple[tuple[Decimal, ...], str, Decimal]:
    return _fit(list(values_t), horizon, method)


def _fit(values: list[int], horizon: int,
         method: str) -> tuple[tuple[Decimal, ...], str, Decimal]:
    last = Decimal(values[-1])
    if method == "naive" or len(values) < MIN_MODEL_POINTS or len(set(values)) == 1:
        diffs = [Decimal(b - a) for a, b in zip(values, values[1:], strict=False)]
        return (last,) * horizon, "naive", _std(diffs)
    import numpy

    seasonal = method == "holt_winters" and len(values) >= 2 * SEASON
    data = numpy.asarray(values, dtype="float64")  # the model's own arithmetic is binary
    # heuristic start values (Hyndman et al.) are 2-4x faster to fit than estimated ones;
    # they need 10 months (two seasons with seasonality)
    init = "heuristic" if len(values) >= HEURISTIC_MIN_POINTS else "estimated"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter on short series
        try:
            fitted = _model(data, seasonal, init).fit(optimized=True)
        except ValueError:
            fitted = _model(data, seasonal, "estimated").fit(optimized=True)
        # back to Decimal straight away, through the shortest repr of each number
        points = tuple(Decimal(str(p)) for p in fitted.forecast(horizon))
        resid = [Decimal(str(r)) for r in fitted.resid]
    if not all(p.is_finite() for p in points):
        return (last,) * horizon, "naive", Decimal(0)
    return points, "holt_winters" if seasonal else "holt", _std(resid)


def _model(data: Any, seasonal: bool, init: str) -> Any:
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    return ExponentialSmoothing(
        data, trend="add", damped_trend=True, seasonal="add" if seasonal else None,
        seasonal_periods=SEASON if seasonal else None, initialization_method=init,
    )


def _std(xs: list[Decimal]) -> Decimal:
    if len(xs) < 2 or not all(x.is_finite() for x in xs):
        return Decimal(0)
    mean = sum(xs, Decimal(0)) / len(xs)
    return (sum(((x - mean) ** 2 for x in xs), Decimal(0)) / (len(xs) - 1)).sqrt()


def _to_int(x: Decimal) -> int:
    return int(x.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _pct(err: Decimal) -> Decimal:
    return err.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


# --------------------------------------------------------------------------- backtest


def _errors(values: list[int], horizon: int, min_train: int,
            predict: Callable[[list[int], int], list[Decimal]]) -> list[list[Decimal]]:
    """Absolute percentage errors per step over rolling origins (actual 0 skipped)."""
    steps: list[list[Decimal]] = [[] for _ in range(horizon)]
    for origin in range(min_train, len(values)):
        points = predict(values[:origin], horizon)
        for h, point in enumerate(points):
            if origin + h >= len(values):
                break
            actual = values[origin + h]
            if actual == 0:
                continue
            steps[h].append(abs(Decimal(actual) - point) * 100 / abs(actual))
    return steps


def _mape(steps: list[list[Decimal]]) -> Decimal | None:
    flat = [e for s in steps for e in s]
    return _pct(sum(flat, Decimal(0)) / len(flat)) if flat else None


def backtest(series: Sequence[int], horizon: int = 3, min_train: int = 12,
             method: str = "auto") -> BacktestReport:
    """Rolling-origin backtest: fit on the first ``t`` months (t = min_train, …, n−1),
    forecast up to ``horizon`` months, score every (origin, step) with an actual month.

    ``method="auto"`` scores every method and reports the best one (ties: simpler first);
    the choice is made on the same backtest, so its MAPE is slightly optimistic.
    """
    values = _check(series, horizon)
    if method != "auto" and method not in METHODS:
        raise ForecastError(f"unknown method {method!r}; choose auto or {', '.join(METHODS)}")
    if min_train < 2:
        raise ForecastError("min_train must be at least 2 months")
    origins = max(0, len(values) - min_train)
    wanted = METHODS if method == "auto" else tuple(dict.fromkeys(("naive", method)))
    steps: dict[str, list[list[Decimal]]] = {}
    for m in wanted:
        steps[m] = _errors(values, horizon, min_train,
                           lambda train, h, m=m: _fit_points(train, h, m)[0])
    scores = {m: _mape(s) for m, s in steps.items()}
    if method == "auto":
        ranked = [m for m in METHODS if scores[m] is not None]
        chosen = min(ranked, key=lambda m: (scores[m], METHODS.index(m))) if ranked else "naive"
    else:
        chosen = method
    return BacktestReport(
        method=chosen, mape_model=scores.get(chosen), mape_naive=scores.get("naive"),
        n_origins=origins, horizon=horizon, min_train=min_train, candidates=scores,
        step_errors=tuple(tuple(s) for s in steps[chosen]),
    )


# --------------------------------------------------------------------------- forecast


def _quantile(xs: Sequence[Decimal], q: Decimal) -> Decimal:
    ordered = sorted(xs)
    index = int((q * (len(ordered) - 1)).to_integral_value(rounding=ROUND_HALF_UP))
    return ordered[index]


def forecast(series: Sequence[int], horizon: int = 3, method: str = "auto",
             min_train: int = 12) -> Forecast:
    """The next ``horizon`` values of a monthly series with an 80 % band.

    ``auto`` picks the method by backtest when the series is long enough (``min_train`` +
    ``horizon`` months), else a damped trend from 6 months on, else naive.
    """
    values = _check(series, horizon)
    report: BacktestReport | None = None
    if method == "auto":
        if len(values) >= min_train + horizon:
            report = backtest(values, horizon, min_train)
            method = report.method
        else:
            method = "holt" if len(values) >= MIN_MODEL_POINTS else "naive"
    elif method not in METHODS:
        raise ForecastError(f"unknown method {method!r}; choose auto or {', '.join(METHODS)}")
    elif len(values) >= min_train + horizon:
        report = backtest(values, horizon, min_train, method)
    exact, used, std = _fit_points(values, horizon, method)
    points = [_to_int(p) for p in exact]
    lower, upper = [], []
    for h, point in enumerate(points):
        errors = report.step_errors[h] if report and h < len(report.step_errors) else ()
        if errors:
            width = _to_int(abs(Decimal(point)) * _quantile(errors, BAND_QUANTILE) / 100)
        else:
            width = _to_int(Z_80 * std * Decimal(h + 1).sqrt())
        lower.append(point - width)
        upper.append(point + width)
    return Forecast(tuple(points), tuple(lower), tuple(upper), used, report)
