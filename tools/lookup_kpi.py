"""lookup_kpi: one KPI of DESIGN §6 for a date range, location and desk type."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import Field, model_validator

from tools.base import MANAGERS, ToolContext, ToolInput, ToolOutput, tool

KpiName = Literal["occupancy_rate", "mrr", "mrr_vs_plan", "arpm", "revenue", "expense_ratio",
                  "cash_burn", "dso", "invoice_error_rate", "active_members"]
DeskType = Literal["hot_desk", "dedicated_desk", "private_office"]


class LookupKpiIn(ToolInput):
    kpi: KpiName = Field(description="Which KPI (DESIGN §6 names).")
    start: date = Field(description="First day of the range, YYYY-MM-DD.")
    end: date = Field(description="Last day of the range, YYYY-MM-DD (inclusive).")
    location: str | None = Field(default=None, description="Location code or name; all if empty.")
    desk_type: DeskType | None = Field(default=None, description="Only this desk type.")

    @model_validator(mode="after")
    def _order(self) -> LookupKpiIn:
        if self.end < self.start:
            raise ValueError("end is before start")
        return self


class LookupKpiOut(ToolOutput):
    kpi: str
    value: int | str | None  # cents, ppm or members as int; days as a decimal string
    unit: str
    display: str
    start: date
    end: date
    location: str | None
    desk_type: str | None
    definition: str
    breakdown: dict[str, Any]
    note: str | None = None


@tool("lookup_kpi", roles=MANAGERS)
def lookup_kpi(ctx: ToolContext, params: LookupKpiIn) -> LookupKpiOut:
    """A KPI from the books for a date range: occupancy_rate, mrr, mrr_vs_plan, arpm, revenue,
    expense_ratio, cash_burn, dso, invoice_error_rate or active_members, optionally for one
    location and desk type. Use for 'what's our occupancy for private offices at Downtown' or
    'MRR vs plan last month'. Not for lists of invoices or members."""
    from decimal import Decimal

    from finance.kpi import compute_kpi

    result = compute_kpi(ctx.services, params.kpi, params.start, params.end,
                         location=params.location, desk_type=params.desk_type)
    data = result.as_dict()
    where = " ".join(p for p in (result.location, (result.desk_type or "").replace("_", " "))
                     if p)
    summary = (f"{params.kpi.replace('_', ' ')}{' (' + where + ')' if where else ''} "
               f"{params.start} to {params.end}: {result.display}"
               + (f" — {result.note}" if result.note else ""))
    value = str(result.value) if isinstance(result.value, Decimal) else result.value
    return LookupKpiOut(summary=summary, kpi=params.kpi, value=value, unit=result.unit,
                        display=result.display, start=params.start, end=params.end,
                        location=result.location, desk_type=result.desk_type,
                        definition=result.definition, breakdown=_plain(data["breakdown"]),
                        note=result.note)


def _plain(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))
