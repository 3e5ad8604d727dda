"""report_1099: contractors to report on Form 1099-NEC for a tax year."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tools.base import FINANCE, ToolContext, ToolInput, ToolOutput, tool


class Report1099In(ToolInput):
    year: int = Field(ge=1990, le=2100, description="Tax year, e.g. 2026.")


class ContractorRow(BaseModel):
    vendor: str
    tin_on_file: bool
    paid_cents: int
    card_cents: int
    reportable: bool
    missing_tin: bool


class Report1099Out(ToolOutput):
    year: int
    threshold_cents: int
    reportable: int
    missing_tin: int
    contractors: list[ContractorRow]


@tool("report_1099", roles=FINANCE)
def report_1099(ctx: ToolContext, params: Report1099In) -> Report1099Out:
    """The 1099-NEC report for a year: contractors paid at or above the year's threshold
    ($600 through 2025, $2,000 from 2026), card payments excluded, and who is missing a TIN.
    Use for '1099s for 2026' or 'which contractors need a W-9'."""
    from finance.money import format_cents
    from finance.reports import load_1099_policy
    from finance.reports import report_1099 as build

    policy = load_1099_policy(ctx.services.settings.knowledge_path)
    with ctx.services.session() as session:
        rep = build(session, params.year, policy)
    rows = [ContractorRow(vendor=c.name, tin_on_file=bool(c.tin), paid_cents=c.paid_cents,
                          card_cents=c.card_cents, reportable=c.reportable,
                          missing_tin=c.missing_tin) for c in rep.contractors]
    summary = (f"1099-NEC {params.year} (threshold {format_cents(rep.threshold_cents)}): "
               f"{len(rep.reportable)} contractors to report, {len(rep.missing_tin)} missing a TIN")
    return Report1099Out(summary=summary, year=params.year, threshold_cents=rep.threshold_cents,
                         reportable=len(rep.reportable), missing_tin=len(rep.missing_tin),
                         contractors=rows)
