"""search_rules: the rules knowledge base (policies, chart of accounts, tax, procedures)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tools.base import EVERYONE, ToolContext, ToolInput, ToolOutput, tool


class SearchRulesIn(ToolInput):
    query: str = Field(min_length=2, max_length=500, description="The question, in words.")


class RuleRow(BaseModel):
    rule_id: str
    title: str
    text: str
    source: str


class SearchRulesOut(ToolOutput):
    rules: list[RuleRow]


@tool("search_rules", roles=EVERYONE)
def search_rules(ctx: ToolContext, params: SearchRulesIn) -> SearchRulesOut:
    """Search the space's rules: proration, invoicing, deposits, tax, approvals, 1099s,
    dunning, expenses and capitalization, the chart of accounts and procedures such as
    month-end close. Answers must cite the rule ids returned, e.g. [proration#upgrades]."""
    from finance.kb import open_kb

    kb = open_kb(ctx.services)
    if kb.count() == 0:
        kb.ingest()  # first use on a fresh install: build the index from knowledge/
    hits = kb.search(params.query, k=4)
    rows = [RuleRow(rule_id=h.rule_id, title=h.title, text=h.text[:1200], source=h.source)
            for h in hits]
    if not rows:
        return SearchRulesOut(summary="no rule matches that question", rules=[])
    best = rows[0]
    summary = f"{best.title} [{best.rule_id}]: {' '.join(best.text.split())[:400]}"
    if len(rows) > 1:
        summary += " (see also " + ", ".join(f"[{r.rule_id}]" for r in rows[1:]) + ")"
    return SearchRulesOut(summary=summary, rules=rows)
