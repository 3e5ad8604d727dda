"""sales_tax_report: sales tax charged by location and line kind for a date range."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field, model_validator

from tools.base import FINANCE, ToolContext, ToolInput, ToolOutput, tool


class SalesTaxIn(ToolInput):
    start: date = Field(description="First day, YYYY-MM-DD.")
    end: date = Field(description="Last day, YYYY-MM-DD.")
    location: str | None = Field(default=None, description="Location code or name.")

    @model_validator(mode="after")
    def _order(self) -> SalesTaxIn:
        if self.end < self.start:
            raise ValueError("end is before start")
        return self


class TaxRow(BaseModel):
    location: str
    line_kind: str
    taxable_cents: int
    tax_cents: int


class TaxLocation(BaseModel):
    location: str
    net_tax_cents: int
    refunded_cents: int
    voided_cents: int
    remitted_cents: int
    matches_ledger: bool


class SalesTaxOut(ToolOutput):
    start: date
    end: date
    net_tax_cents: int
    rows: list[TaxRow]
    locations: list[TaxLocation]


@tool("sales_tax_report", roles=FINANCE)
def sales_tax_report(ctx: ToolContext, params: SalesTaxIn) -> SalesTaxOut:
    """Sales tax charged by location and line kind for a date range, less credit notes and
    voids, checked against the ledger's Sales Tax Payable. Use for 'sales tax for Q3' or
    'how much tax do we owe Riverside for October'."""
    from finance.money import format_cents
    from finance.reports import sales_tax_report as build

    with ctx.services.session() as session:
        rep = build(session, params.start, params.end, location=params.location)
    rows = [TaxRow(location=r.location, line_kind=r.line_kind, taxable_cents=r.taxable_cents,
                   tax_cents=r.tax_cents) for r in rep.rows]
    locs = [TaxLocation(location=loc.location, net_tax_cents=loc.net_tax_cents,
                        refunded_cents=loc.tax_refunded_cents, voided_cents=loc.tax_voided_cents,
                        remitted_cents=loc.remitted_cents,
                        matches_ledger=loc.net_tax_cents == loc.ledger_movement_cents)
            for loc in rep.locations]
    parts = ", ".join(f"{loc.location} {format_cents(loc.net_tax_cents)}" for loc in locs)
    mismatch = [loc.location for loc in locs if not loc.matches_ledger]
    summary = (f"sales tax {params.start} to {params.end}: {format_cents(rep.net_tax_cents)} "
               f"({parts})" + (f"; ledger differs at {', '.join(mismatch)}" if mismatch else ""))
    return SalesTaxOut(summary=summary, start=params.start, end=params.end,
                       net_tax_cents=rep.net_tax_cents, rows=rows, locations=locs)
