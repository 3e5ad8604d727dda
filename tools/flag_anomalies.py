"""flag_anomalies: scan the books for the anomaly kinds of DESIGN §5."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from tools.base import MANAGERS, ToolContext, ToolInput, ToolOutput, tool

Kind = Literal["invoice_jump", "duplicate_charge", "duplicate_receipt", "duplicate_customer",
               "deposit_misposted", "capex_as_opex", "vendor_is_employee",
               "just_under_threshold", "contractor_missing_tin", "unrecognized_deferred"]


class FlagAnomaliesIn(ToolInput):
    start: date = Field(description="First day, YYYY-MM-DD.")
    end: date = Field(description="Last day, YYYY-MM-DD.")
    kinds: list[Kind] | None = Field(default=None, description="Only these kinds; all if empty.")
    location: str | None = Field(default=None, description="Location code or name.")

    @model_validator(mode="after")
    def _order(self) -> FlagAnomaliesIn:
        if self.end < self.start:
            raise ValueError("end is before start")
        return self


class AnomalyRow(BaseModel):
    id: int | None
    kind: str
    severity: str
    status: str
    reason: str
    amount_cents: int | None
    occurred_on: date | None


class FlagAnomaliesOut(ToolOutput):
    found: int
    new: int
    by_kind: dict[str, int]
    anomalies: list[AnomalyRow]


@tool("flag_anomalies", roles=MANAGERS)
def flag_anomalies(ctx: ToolContext, params: FlagAnomaliesIn) -> FlagAnomaliesOut:
    """Look for problems in a date range: invoice jumps, duplicate charges / receipts /
    customers, misposted deposit refunds, CapEx coded as expense, vendors who are employees,
    bills just under approval thresholds, contractors missing a TIN, unrecognized deferred
    revenue. Findings are stored once with a status. Use for 'anything weird this month?'."""
    from finance.anomalies import scan

    report = scan(ctx.services, ctx.actor, start=params.start, end=params.end,
                  location=params.location, kinds=params.kinds)
    rows = [AnomalyRow(id=report.anomaly_ids.get(f.fingerprint), kind=f.kind,
                       severity=f.severity.value, status=report.statuses.get(f.fingerprint,
                                                                             "open"),
                       reason=f.reason, amount_cents=f.amount_cents, occurred_on=f.occurred_on)
            for f in report.findings]
    rank = {"high": 0, "medium": 1, "low": 2}
    rows.sort(key=lambda r: (r.status != "open", rank.get(r.severity, 3), r.kind))
    open_rows = [r for r in rows if r.status == "open"]
    kinds = {k: n for k, n in report.by_kind().items() if n}
    summary = (f"{len(open_rows)} open findings {params.start} to {params.end}"
               + (f" ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))})" if kinds
                  else "") + (f", {report.new} new" if report.new else ""))
    return FlagAnomaliesOut(summary=summary, found=len(rows), new=report.new, by_kind=kinds,
                            anomalies=rows[:50])
