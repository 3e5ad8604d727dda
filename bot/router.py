"""The offline router: plain-language requests to the agent tools of DESIGN §7, without an LLM.

It is the assistant's default when no LLM is configured, and the engine behind ``/books``.
:func:`route` reads one message and returns one of

- :class:`Routed` ``(tool, args)``: the tool to call and its arguments, exactly as the tool
  names them, the same call the LLM would make;
- :class:`Clarify` ``(question, options)``: a short question when the request is ambiguous
  (two members match, a required argument is missing, a name matches nobody) instead of a guess;
- :class:`NotUnderstood` ``(help)``: not a bookkeeping request.

Conventions for argument values (the labeled set in tests/data/router_requests.yaml follows
them):

- members: the member's display name (``"Acme Design"``); when two members share a display
  name, that member's code (``"M-000123"``);
- plans: the plan's display name at the member's location (``"Private Office (Riverside)"``),
  or at the location the request names; "annual" picks the yearly plan;
- locations: the location's name (``"Uptown"``); desk types: ``hot_desk``, ``dedicated_desk``,
  ``private_office``;
- dates ISO ``YYYY-MM-DD``, billing and invoice periods ``YYYY-MM``, resolved by
  :mod:`bot.dates` against ``today`` (the caller's date in the location's time zone);
- amounts: integer cents under ``amount`` (DESIGN §3); bill ids: integers;
- optional arguments appear only when the request states them, so the tool's defaults apply
  (``run_billing`` stays a dry run unless the request says "for real");
- defaults for required ranges: KPIs this month to date; anomalies the last 30 days; sales tax
  last month; a 1099 report the previous calendar year (the one being filed); a quote's change
  date today.

Safety: the router is deterministic and obeys nothing in the text but the request itself. It
never routes to a write the text does not literally ask for, and two requests in one message
where one is a write get a clarifying question. ``request_bill_approval`` only asks the approvers
(a card with buttons); it never approves: approvals are clicks by authorized users.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from rapidfuzz import fuzz, process

from bot.dates import Mode, Resolved, add_months, month_end, month_start, resolve

KPIS = ("occupancy_rate", "mrr", "mrr_vs_plan", "arpm", "revenue", "expense_ratio",
        "cash_burn", "dso", "invoice_error_rate", "active_members")
ANOMALY_KINDS = ("invoice_jump", "duplicate_charge", "duplicate_receipt", "duplicate_customer",
                 "deposit_misposted", "capex_as_opex", "vendor_is_employee",
                 "just_under_threshold", "contractor_missing_tin", "unrecognized_deferred")
WRITE_TOOLS = frozenset({"run_billing", "request_bill_approval"})
MAX_TEXT = 1_000  # characters of a message the router reads (requests are short; bounds latency)
MAX_VENDOR = 120  # characters of a vendor name taken from the text
MAX_NAME_TOKENS = 12  # candidate member-name words looked up per message
# The arguments each tool declares (DESIGN §7); the router fills no other keys.
TOOL_ARGS: dict[str, tuple[str, ...]] = {
    "quote_proration": ("member", "to_plan", "change_date", "quantity"),
    "run_billing": ("period", "location", "dry_run"),
    "find_invoices": ("member", "status", "period"),
    "member_balance": ("member",),
    "categorize_expense": ("vendor", "amount", "description", "date", "location"),
    "scan_receipt": ("file",),
    "flag_anomalies": ("start", "end", "kinds", "location"),
    "lookup_kpi": ("kpi", "start", "end", "location", "desk_type"),
    "list_bills": ("status",),
    "request_bill_approval": ("bill_id",),
    "search_rules": ("query",),
    "report_1099": ("year",),
    "sales_tax_report": ("start", "end", "location"),
}


TOOLS = tuple(TOOL_ARGS)

# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Routed:
    """Call ``tool`` with ``args`` (names and value formats as the tool declares them)."""

    tool: str
    args: dict[str, Any]

    @property
    def writes(self) -> bool:
        """Does the call lead to a write (always behind a preview with a Confirm button)?"""
        return self.tool in WRITE_TOOLS


@dataclass(frozen=True)
class Clarify:
    """Ask ``question``; ``options`` are short answers a button or a reply can carry."""

    question: str
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class NotUnderstood:
    help: str


Decision = Routed | Clarify | NotUnderstood

HELP = (
    "I can help with the books. Try: \"what's MRR?\", \"occupancy at Riverside last month\", "
    "\"quote Priya Shah moving to a private office on the 15th\", \"run billing for December\", "
    "\"overdue invoices\", \"what does Bluebird Labs owe?\", \"categorize $42.50 at Starbucks\", "
    "\"any anomalies?\", \"pending bills\", \"send bill 42 for approval\", \"sales tax for Q3\", "
    "\"1099s for 2025\", \"what's our capitalization threshold?\" — or share a receipt photo."
)


# --------------------------------------------------------------------------- vocabulary

_LEGAL = frozenset({"llc", "inc", "ltd", "co", "corp", "corporation", "company", "gmbh", "plc",
                    "lp", "llp", "pllc", "incorporated", "limited"})
_TOKEN = re.compile(r"[a-z0-9]+")


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower().replace("'s ", " ").replace("’s ", " "))


@dataclass(frozen=True)
class MemberEntry:
    code: str
    name: str
    kind: str = "company"
    company: str | None = None
    location: str | None = None  # home location name
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class PlanEntry:
    code: str
    name: str
    desk_type: str
    location: str | None = None  # location name; None = every location
    interval: str = "month"


@dataclass(frozen=True)
class LocationEntry:
    code: str
    name: str
    timezone: str = "UTC"


@dataclass
class _MemberIndex:
    core: tuple[frozenset[str], ...]  # name tokens without legal suffixes
    full: tuple[frozenset[str], ...]
    postings: dict[str, list[int]]
    token_list: list[str]


class Vocabulary:
    """A snapshot of the store's names for routing; build once, share, rebuild on change."""

    def __init__(
        self,
        *,
        members: Iterable[MemberEntry],
        plans: Iterable[PlanEntry],
        locations: Iterable[LocationEntry],
        vendors: Iterable[str] = (),
        anomaly_kinds: Sequence[str] = ANOMALY_KINDS,
        kpis: Sequence[str] = KPIS,
    ) -> None:
        self.members = tuple(members)
        self.plans = tuple(plans)
        self.locations = tuple(locations)
        self.vendors = tuple(dict.fromkeys(v for v in vendors if v))
        self.anomaly_kinds = tuple(anomaly_kinds)
        self.kpis = tuple(kpis)
        counts: dict[str, int] = defaultdict(int)
        for m in self.members:
            counts[m.name.lower()] += 1
        self._refs = tuple(m.name if counts[m.name.lower()] == 1 else m.code
                           for m in self.members)
        self._by_code = {m.code.lower(): i for i, m in enumerate(self.members)}
        self._index = self._index_members()
        self._loc_names = {loc.name.lower(): loc for loc in self.locations}
        self._loc_codes = {loc.code: loc for loc in self.locations}
        self._vendor_tokens = [(v, frozenset(_tokens(v)) - _VENDOR_GENERIC or frozenset(_tokens(v)))
                               for v in self.vendors]

    def _index_members(self) -> _MemberIndex:
        core: list[frozenset[str]] = []
        full: list[frozenset[str]] = []
        postings: dict[str, list[int]] = defaultdict(list)
        for i, m in enumerate(self.members):
            names = [m.name, *m.aliases]
            toks = frozenset(t for n in names for t in _tokens(n))
            full_set = frozenset(_tokens(m.name))
            core_set = frozenset(t for t in full_set if t not in _LEGAL) or full_set
            core.append(core_set)
            full.append(full_set)
            for t in toks:
                if t not in _LEGAL:
                    postings[t].append(i)
        return _MemberIndex(tuple(core), tuple(full), dict(postings),
                            [t for t in postings if len(t) >= 4])

    def ref(self, index: int) -> str:
        """How a member is named in tool arguments (display name, or code if the name is shared)."""
        return self._refs[index]

    def location_named(self, name: str) -> LocationEntry | None:
        return self._loc_names.get(name.lower())


def load_vocabulary(session: Any) -> Vocabulary:
    """Read members, active plans, locations and vendors from the store (finance.models).

    One query per table, members as plain rows: about 0.1 s for 10,000 members. The caller
    caches the result (and rebuilds it when members or plans change)."""
    from sqlalchemy import select
    from sqlmodel import col

    from finance.models import Location, Member, Plan, Vendor

    locs = {row.id: row for row in session.execute(select(Location).order_by(col(Location.id)))
            .scalars()}
    rows = session.execute(select(col(Member.id), col(Member.code), col(Member.name),
                                  col(Member.kind), col(Member.company_id),
                                  col(Member.home_location_id)).order_by(col(Member.id))).all()
    names = {r.id: r.name for r in rows}
    members = [MemberEntry(code=r.code, name=r.name, kind=r.kind,
                           company=names.get(r.company_id) if r.company_id else None,
                           location=locs[r.home_location_id].name
                           if r.home_location_id in locs else None)
               for r in rows]
    active = select(Plan).where(col(Plan.active).is_(True)).order_by(col(Plan.id))
    plans = [PlanEntry(code=p.code, name=p.name, desk_type=p.desk_type,
                       location=locs[p.location_id].name if p.location_id in locs else None,
                       interval=p.interval)
             for p in session.execute(active).scalars()]
    vendors = list(session.execute(select(col(Vendor.name)).order_by(col(Vendor.id))).scalars())
    return Vocabulary(
        members=members, plans=plans, vendors=vendors,
        locations=[LocationEntry(code=loc.code, name=loc.name, timezone=loc.timezone)
                   for loc in locs.values()],
    )


# --------------------------------------------------------------------------- phrase tables


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


_MENTION = _rx(r"<[@#!][^>]*>")
_LINK = _rx(r"<(https?://[^|>]+)(?:\|([^>]*))?>")
_SLASH = _rx(r"^\s*/?books\b[:,]?\s*")
_SPACES = _rx(r"\s+")

_KPI_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple((k, _rx(p)) for k, p in (
    ("arpm", r"\barp[mu]\b|\b(?:avg|average|mean)\.?\s+(?:rev|revenue)\s+(?:per|/)\s*"
             r"(?:member|customer|user|seat)s?\b|\b(?:rev|revenue)\s+(?:per|/)\s*"
             r"(?:member|customer)s?\b"),
    ("mrr", r"\bmrr\b|\bmonthly\s+recurring(?:\s+rev(?:enue)?)?\b|\brecurring\s+revenue\b|"
            r"\brun[\s-]?rate\b"),
    ("invoice_error_rate", r"\berror\s+rate\b|\bcredit[\s-]notes?\s+rate\b|\berrors?\s+on\s+"
                           r"(?:our\s+)?invoices\b|\binvoice\s+errors?\b"),
    ("occupancy_rate", r"\bocc(?:upancy)?\b|\butili[sz]ation\b|\bvacanc(?:y|ies)\b|"
                       r"\bhow\s+full\b|\bfill\s+rate\b|\bseats?\s+filled\b"),
    ("expense_ratio", r"\b(?:expense|opex|cost|spend(?:ing)?)\s+ratio\b|"
                      r"\bexpenses?\s+(?:to|vs\.?|/)\s+"
                      r"(?:revenue|income)\b|\bexpenses?\s+(?:as\s+"
                      r"a\s+)?(?:%|percent(?:age)?|share)\s+of\s+revenue\b"),
    ("cash_burn", r"\bburn(?:ed|t|ing|\s+rate)?\b"),
    ("dso", r"\bdso\b|\bdays?\s+sales\s+outstanding\b|\bdays?\s+to\s+(?:collect|get\s+paid)\b|"
            r"\bcollection\s+days\b"),
    ("active_members", r"\bactive\s+members?\b|\bmembers?\s+count\b|"
                       r"\bhow\s+many\s+(?:[\w-]+\s+){0,3}"
                       r"(?:members|customers)\b|\bnumber\s+of\s+(?:active\s+)?members\b|"
                       r"\bheadcount\b"),
    ("revenue", r"\brev(?:enue)?s?\b|\bsales\b(?!\s+tax)|\bincome\b|\btop[\s-]?line\b|"
                r"\bturnover\b|\bhow\s+much\s+(?:money\s+)?(?:did\s+we\s+|do\s+we\s+|have\s+we\s+)?"
                r"(?:make|made|bring\s+in|brought\s+in|earn|earned|bill|billed)\b"),
))
_KPI_FUZZY = {"revenue": "revenue", "occupancy": "occupancy_rate", "utilization": "occupancy_rate",
              "recurring": "mrr"}
_VS_PLAN = _rx(r"\b(?:plan|budget|budgeted|target|forecast)\b")
_KPI_VAGUE = _rx(r"\bkpis?\b|\bhow\s+(?:are|is)\s+(?:we|business|things|it)\s+(?:doing|going)\b|"
                 r"\bmetrics?\b|\bnumbers\b|\bdashboard\b|\bperformance\b")

_ANOMALY_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple((k, _rx(p)) for k, p in (
    ("invoice_jump", r"\binvoice[_\s]jumps?\b|\b(?:jump|jumps|jumped|spike|spikes|spiked|"
                     r"surge)\b"),
    ("duplicate_charge", r"\b(?:duplicate|double|dupe?d?|repeat(?:ed)?)[\s-]+(?:charge|billing|"
                         r"payment|subscription)s?\b|\b(?:charged|billed|paid)\s+twice\b|"
                         r"\bduplicate_charge\b"),
    ("duplicate_receipt", r"\b(?:duplicate|double|dupe?)[\s-]+receipts?\b|\breceipts?\s+"
                          r"(?:submitted\s+|sent\s+)?twice\b|\bduplicate_receipt\b"),
    ("duplicate_customer", r"\b(?:duplicate|double|dupe?)[\s-]+(?:customer|member|client|"
                           r"account)s?\b|\bduplicate_customer\b"),
    ("deposit_misposted", r"\bdeposits?\b.*\b(?:mis-?posted|wrong\s+(?:account|place)|"
                          r"miscoded|mis-?coded)\b|\bmis-?posted\s+deposits?\b|"
                          r"\bdeposit_misposted\b"),
    ("capex_as_opex", r"\bcapex\b.*\b(?:opex|expensed|expenses?)\b|\bcapex_as_opex\b|"
                      r"\bshould\s+(?:have\s+)?been\s+capitali[sz]ed\b"),
    ("vendor_is_employee", r"\bvendors?\b.*\bemployees?\b|\bemployees?\b.*\bvendors?\b|"
                           r"\bvendor_is_employee\b"),
    ("just_under_threshold", r"\bjust\s+(?:under|below)\b|\bunder\s+the\s+(?:approval\s+)?"
                             r"(?:threshold|limit)\b|\bsplit\s+bills?\b|"
                             r"\bjust_under_threshold\b"),
    ("contractor_missing_tin", r"\b(?:missing|without|no)\s+(?:a\s+)?(?:tins?|tax\s+ids?|"
                               r"w-?9s?)\b|\btins?\s+missing\b|\bcontractor_missing_tin\b"),
    ("unrecognized_deferred", r"\b(?:unrecognized|unrecognised|not\s+recognized)\b.*\bdeferred\b|"
                              r"\bdeferred\b.*\b(?:unrecognized|not\s+recognized)\b|"
                              r"\bunrecognized_deferred\b"),
))
_DUPLICATES = _rx(r"\bdup(?:e|es|licates?)\b")
_ANOMALY_CUE = _rx(r"\banomal(?:y|ies|ous)\b|\bdup(?:e|es|licates?)\b|\bweird\b|"
                   r"\bsuspicious\b|\bfishy\b|\bodd\b|"
                   r"\bflag\b|\bred\s+flags?\b|\bunusual\b|\bout\s+of\s+the\s+ordinary\b|"
                   r"\bsomething\s+off\b|\bwrong\s+in\s+the\s+books\b")

_RULES_STRONG = _rx(r"\bsearch\s+(?:the\s+)?(?:rules|kb|knowledge\s*base|polic(?:y|ies)|docs|"
                    r"sops?)\b|\brules?\b|\bpolic(?:y|ies)\b|\bsops?\b|\bprocedures?\b|\bkb\b|"
                    r"\bknowledge\s*base\b|\bthreshold\b|\bchart\s+of\s+accounts\b|"
                    r"\btax\s+rates?\b|(?<!error\s)\brate\s+(?:on|for)\b|\bguidelines?\b")
_RULES_WEAK = _rx(r"\bhow\s+(?:do|should|can|must)\s+(?:we|i)\s+(?:handle|treat|book|record|"
                  r"deal|process|account)\b|\bhow\s+do\s+we\b|\bwhat(?:'s|\s+is|s)\s+our\b|"
                  r"\bwhat\s+(?:does|do)\s+(?:the\s+)?(?:rules?|policy|sop)\b|\bwhen\s+do\s+we\b|"
                  r"\bare\s+we\s+allowed\b|\bcan\s+we\b")
_RULES_PREFIX = _rx(r"^\s*(?:(?:please\s+)?(?:search|look\s*up|find|check)\s+(?:in\s+)?"
                    r"(?:the\s+)?(?:rules|kb|knowledge\s*base|policies|policy|docs|sops?)"
                    r"(?:\s+(?:for|on|about))?\s*:?\s*|(?:kb|rules)(?:\s+search)?\s*:?\s+)")

_1099 = _rx(r"\b1099s?\b|\b1099-?nec\b")
_BILL_ID = _rx(r"\bbill\s*(?:#|no\.?|number|id)?\s*#?\s*(\d{1,9})\b")
_APPROVAL_VERB = _rx(r"\b(?:approv(?:e|al|als|ed|ing|er|ers)|sign[\s-]?off|signoff|ok|okay|"
                     r"route|send|submit|escalate|green[\s-]?light)\b")
_BILLS_PLURAL = _rx(r"\bbills\b")
_BILL_SINGULAR = _rx(r"\bbill\b")

_FILE_ID = _rx(r"\bF[0-9A-Z]{8,}\b")
_FILE_PATH = _rx(r"(?:^|\s)((?:~|\.{1,2})?/?[\w.~-]+(?:/[\w.~ -]+)*\.(?:jpe?g|png|pdf|heic|"
                 r"heif|webp|tiff?|gif|bmp))\b", )
_RECEIPT = _rx(r"\breceipts?\b|\bscan\b|\bocr\b|\bphoto\b|\bpic(?:ture)?\b")

_SALES_TAX = _rx(r"\bsales[\s-]+tax(?:es)?\b|\btax\s+report\b|\btax(?:es)?\s+collected\b|"
                 r"\bcollected\s+"
                 r"(?:sales\s+)?tax\b")
_QUOTE = _rx(r"\bquote\b|\bprorat\w*|\bupgrad\w*|\bdowngrad\w*|\bmov(?:e|es|ed|ing)\b|"
             r"\bswitch\w*|\bchange\s+(?:\w+\s+)?(?:plan|to)\b|\btransfer\b")
_CATEGORIZE = _rx(r"\bcategori[sz](?:e|es|ed|ing|ation)\b|\bcode\b|\bcoding\b|\b(?:what|which)\s+"
                  r"(?:gl\s+)?(?:account|category)\b|\bwhere\s+(?:should|does|do|would|to)\b|"
                  r"\bbook\s+(?:this|it|a|an)\b|^\s*expense\s*[:\-]?\s+(?!ratio|to\b|vs\b)|\bexpense\s+this\b|"
                  r"\bgl\s+code\b")
_RUN_BILLING = _rx(r"\bbilling\s+run\b|\binvoice\s+run\b|\brun\s+(?:the\s+)?(?:[\w-]+\s+){0,2}"
                   r"(?:billing|invoicing|invoices)\b|\b(?:kick\s+off|start|do|preview|trigger|"
                   r"launch)\s+(?:the\s+)?(?:monthly\s+)?(?:billing|invoicing|invoice\s+run)\b|"
                   r"^\s*bill\s+(?!\d|#|no\b)|\binvoice\s+(?:everyone|everybody|all\s+members|"
                   r"(?:the\s+)?members)\b|\bgenerate\s+(?:the\s+)?(?:monthly\s+)?invoices\b|"
                   r"\bdry[\s-]?run\b|\bbilling\s+for\b|^\s*billing\b")
_DRY_RUN_OFF = _rx(r"\bfor\s+real\b|\bnot\s+(?:a\s+)?dry[\s-]?run\b|\bno\s+dry[\s-]?run\b|"
                   r"\bdry[\s_-]?run\s*(?:=|:)?\s*(?:off|false|no)\b|\blive\s+run\b|"
                   r"\bfinal\s+run\b|\bactually\s+(?:run|post|bill|issue)\b")
_DRY_RUN_ON = _rx(r"\bdry[\s-]?run\b|\bpreview\b|\btest\s+run\b|\bsimulat\w+|\bwhat\s+if\b")
_LIST_BILLS = _rx(r"\bbills\b|\bpayables\b|\b(?:anything|what)\s+(?:do\s+)?i\s+(?:need\s+to|"
                  r"have\s+to|should|must)\s+approve\b|\bneeds?\s+(?:my\s+)?approval\b|\bwhat\s+needs\s+(?:my\s+)?approval\b|"
                  r"\b(?:waiting|awaiting)\s+(?:for\s+)?(?:my\s+)?(?:approval|sign[\s-]?off)\b")
_INVOICES = _rx(r"\binvoices?\b|\binv\b|\bdid\s+.+\s+pay\b|\bunpaid\b|\boverdue\b|"
                r"\bpast\s+due\b")
_BALANCE = _rx(r"\bbalance\b|\bowes?\b|\bowed\b|\bowing\b|\bhow\s+much\s+credit\b|"
               r"\bcredit\s+balance\b|\bin\s+credit\b|\boutstanding\b|\bin\s+arrears\b")

_WHO_OWES = _rx(r"\bwho\s+(?:still\s+)?(?:owes|is\s+behind|hasn'?t\s+paid|has\s+not\s+paid)\b|"
                r"\bwho(?:'s|\s+is)\s+(?:in\s+arrears|behind)\b")
_INVOICE_STATUS = (
    ("overdue", _rx(r"\boverdue\b|\bpast\s+due\b|\blate\b")),
    ("void", _rx(r"\bvoid(?:ed|s)?\b")),
    ("draft", _rx(r"\bdrafts?\b")),
    ("open", _rx(r"\bunpaid\b|\bopen\b|\boutstanding\b|\bnot\s+(?:yet\s+)?paid\b|"
                 r"\bstill\s+owed\b")),
    ("paid", _rx(r"(?<!un)\bpaid\b")),
)
_BILL_STATUS = (
    ("rejected", _rx(r"\breject(?:ed|s)?\b|\bdeclined\b|\bdenied\b")),
    ("paid", _rx(r"(?<!un)\bpaid\b")),
    ("pending", _rx(r"\bpending\b|\b(?:waiting|awaiting)\b|\bneeds?\s+(?:my\s+|an?\s+)?"
                    r"approval\b|\bto\s+approve\b|\bunapproved\b|\boutstanding\b|"
                    r"\bneeds?\s+(?:my\s+)?sign[\s-]?off\b")),
    ("approved", _rx(r"\bapproved\b")),
)

_DESK_PATTERNS = (
    ("virtual_office", _rx(r"\bvirtual\s+offices?\b|\bvirtual\b|\bmailbox\b")),
    ("private_office", _rx(r"\bprivate\s+offices?\b|\bpos?\b|\boffices?\b")),
    ("dedicated_desk", _rx(r"\bdedicated(?:\s+desks?)?\b|\bfixed\s+desks?\b")),
    ("hot_desk", _rx(r"\bhot[\s-]?desk(?:s|ing)?\b|\bflex(?:ible)?\s+desks?\b|\bcoworking\s+"
                     r"desks?\b")),
)
_ANNUAL = _rx(r"\bannual(?:ly)?\b|\byearly\b|\b12[\s-]month\b")
_QUANTITY = _rx(r"\b(\d{1,3})\s+(?:more\s+)?(?:hot[\s-]?desks?|dedicated(?:\s+desks?)?|"
                r"private\s+offices?|offices?|desks?|seats?|pos|people)\b|\b(?:quantity|qty|x)\s*"
                r"(\d{1,3})\b")

_AMOUNT = _rx(r"(?:(?<![\w/.])\$\s?|(?<![\w/.$])usd\s?)(?P<a>\d{1,3}(?:,\d{3})+|\d+)"
              r"(?:\.(?P<c>\d{1,2}))?(?P<k>\s?k\b)?|(?<![\w/.$-])(?P<ka>\d+(?:\.\d+)?)k\b|"
              r"(?<![\w/.$-])(?P<b>\d+)\.(?P<bc>\d{2})(?![\d/])|(?<![\w/.$-])(?P<d>\d+(?:\.\d{1,2})?)"
              r"\s+(?:bucks|dollars|usd)\b")
_DESCRIPTION = _rx(r"\bfor\s+(?:the\s+|a\s+|an\s+|our\s+)?(?P<d>[^$,.;!?\d][^$,.;!?]*?)\s*(?=$|"
                   r"[,.;!?]|\s+(?:on|at|from|yesterday|today|last|in)\b)")
_VENDOR_LEAD = _rx(r"(?:\bat|\bfrom|@|\bto|\bwith|\bvia)\s+(?:the\s+)?(?P<v>[^\s$,;!?]+"
                   r"(?:\s+[^\s$,;!?]+){0,3})")
_VENDOR_GENERIC = frozenset({"the", "store", "business", "services", "service", "inc", "llc",
                             "co", "group", "company", "wholesale", "technologies", "online",
                             "of", "and", "&"})
_CODE = _rx(r"(?<![\w-])[a-z0-9-]*\d[a-z0-9-]*(?![\w-])")
_INJECTION = _rx(r"\bignore\s+(?:all\s+|any\s+)?(?:the\s+)?(?:previous|prior|above|earlier)\s+"
                 r"(?:instructions|prompts?|messages?)\b|\byou\s+are\s+now\b|\bsystem\s*:")

_STOP = frozenset("""
a about above after again all also am an and any anything are as ask at be been before being
between bot both but by can could current currently did do does doing done dont don't each
either else every for from get give go going got had has have having he her here hers him his
hey hi hello how hows i if in into is it its it's just know last let lets like list look looking
me mine more most much my need needs next no not now of off on once one only or other our ours
out over own please pls plz right see she should show so some still tell than thanks thank that
the their theirs them then there these they this those through to too total under up us very was
we were what whats what's when where which while who whom whose why will with would yes yet you
your yours s t isn didn doesn wasn re ve ll d m u ur
balance balances owe owes owed owing credit credits account accounts outstanding arrears
invoice invoices inv bill billed billing quote quoting quoted prorate proration prorated
upgrade upgrading upgraded downgrade downgrading move moving moved switch switching change
changing plan plans desk desks office offices hot dedicated private virtual annual yearly cost
costs pay paid unpaid overdue void voided draft drafts open member members customer customers
client clients find books deskbooks amount due report status new seat seats quantity qty
effective starting start period month months year years day days week weeks quarter
dollars bucks usd approx roughly about around exactly find would it cost much many
money overall everyone everybody anyone anybody lol pls thx ok okay
""".split())


# --------------------------------------------------------------------------- request state


@dataclass
class _Request:
    raw: str  # original case, Slack markup removed, spaces collapsed
    low: str
    today: date
    files: tuple[str, ...]
    used: list[tuple[int, int]] = field(default_factory=list)

    def use(self, span: tuple[int, int]) -> None:
        self.used.append(span)

    def remaining(self) -> str:
        """The lowercase text with every used span blanked out."""
        chars = list(self.low)
        for begin, end in self.used:
            for i in range(max(begin, 0), min(end, len(chars))):
                chars[i] = " "
        return "".join(chars)


def _clean(text: str) -> str:
    text = _LINK.sub(lambda m: m.group(2) or m.group(1), text)
    text = _MENTION.sub(" ", text)
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace(
        "\u201d", '"')
    text = _SPACES.sub(" ", text).strip()
    return _SLASH.sub("", text).strip()


# --------------------------------------------------------------------------- entry point


def route(
    text: str,
    *,
    vocab: Vocabulary,
    today: date,
    location_tz: str = "UTC",
    files: Sequence[str] = (),
) -> Decision:
    """Route one message. ``today`` is the date in ``location_tz`` (see bot.dates.today_in);
    ``files`` are Slack file ids or paths shared with the message."""
    del location_tz  # dates are already resolved against the localized ``today``
    raw = _clean(text or "")[:MAX_TEXT]
    low = raw.lower()
    if len(low) != len(raw):  # case folding changed the length: work on the lowercase text
        raw = low
    req = _Request(raw, low, today, tuple(files))
    return _decide(req, vocab)


def _decide(req: _Request, vocab: Vocabulary) -> Decision:
    low = req.low
    path = _file_in_text(req)
    if req.files or path:
        other = _intents(req, vocab) - {"scan_receipt"}
        if not low or _RECEIPT.search(low) or not other or path:
            return Routed("scan_receipt", {"file": req.files[0] if req.files else path})
    if not low:
        return NotUnderstood(HELP)

    kinds = [k for k, rx in _ANOMALY_PATTERNS if rx.search(low)]
    if not kinds and _DUPLICATES.search(low):  # "any dupes?": every duplicate kind
        kinds = ["duplicate_charge", "duplicate_receipt", "duplicate_customer"]
    if kinds or _ANOMALY_CUE.search(low):
        return _anomalies(req, vocab, kinds)
    if _RULES_STRONG.search(low):
        return _rules(req)
    if _1099.search(low):
        return _report_1099(req)
    if re.search(r"\breceipts?\b|\bocr\b|^(?:pls\s+|please\s+)?scan\W*$", low) and \
            not _intents(req, vocab):
        return Clarify("Share the receipt as a photo or PDF (or give me its path) and I'll "
                       "read it.", ())
    bill = _BILL_ID.search(low)
    if bill and _APPROVAL_VERB.search(low):
        return _guard_write(req, vocab, "request_bill_approval",
                            Routed("request_bill_approval", {"bill_id": int(bill.group(1))}))
    if (_APPROVAL_VERB.search(low) and not _BILLS_PLURAL.search(low)
            and (_BILL_SINGULAR.search(low) or re.fullmatch(r"(?:please\s+)?approve\W*(?:it|"
                                                             r"this|that)?\W*", low))):
        return Clarify("Which bill should I send for approval? Give me its number, e.g. "
                       "\"send bill 42 for approval\".", ())
    if _SALES_TAX.search(low):
        return _sales_tax(req, vocab)
    if _QUOTE.search(low) and not _kpi_of(low):
        return _quote(req, vocab)
    if _CATEGORIZE.search(low):
        return _categorize(req, vocab)
    if _RUN_BILLING.search(low):
        return _guard_write(req, vocab, "run_billing", _run_billing(req, vocab))
    if _LIST_BILLS.search(low):
        return _list_bills(req)
    kpi = _kpi_of(low)
    if kpi:
        return _kpi(req, vocab, kpi)
    if _INVOICES.search(low):
        return _invoices(req, vocab)
    if _BALANCE.search(low):
        return _balance(req, vocab)
    if _KPI_VAGUE.search(low):
        return Clarify("Which number would you like?",
                       ("mrr", "occupancy_rate", "revenue", "arpm", "cash_burn", "dso",
                        "active_members"))
    if _RULES_WEAK.search(low):
        return _rules(req)
    match = _match_member(req, vocab)
    if isinstance(match, int):
        name = vocab.ref(match)
        return Clarify(f"What would you like to know about {name}?",
                       (f"{name} balance", f"{name} invoices"))
    if isinstance(match, Clarify) and match.options:
        return match
    return NotUnderstood(HELP)


def _intents(req: _Request, vocab: Vocabulary) -> set[str]:
    """Every tool family the text hints at (for mixed requests)."""
    low = req.low
    found: set[str] = set()
    if _kpi_of(low):
        found.add("lookup_kpi")
    for name, rx in (("sales_tax_report", _SALES_TAX), ("report_1099", _1099),
                     ("quote_proration", _QUOTE), ("categorize_expense", _CATEGORIZE),
                     ("run_billing", _RUN_BILLING), ("member_balance", _BALANCE),
                     ("flag_anomalies", _ANOMALY_CUE)):
        if rx.search(low):
            found.add(name)
    if any(rx.search(low) for _, rx in _ANOMALY_PATTERNS):
        found.add("flag_anomalies")
    if _BILL_ID.search(low) and _APPROVAL_VERB.search(low):
        found.add("request_bill_approval")
    if _INVOICES.search(low) and "run_billing" not in found:
        found.add("find_invoices")
    return found


def _guard_write(req: _Request, vocab: Vocabulary, tool: str, decision: Decision) -> Decision:
    """A write asked together with something else gets a question, never both at once."""
    others = sorted(_intents(req, vocab) - {tool})
    if tool == "run_billing":
        others = [o for o in others if o != "find_invoices"]
    if others:
        labels = {"request_bill_approval": "request the bill approval",
                  "run_billing": "the billing run", "lookup_kpi": "the KPI",
                  "find_invoices": "the invoices", "member_balance": "the balance",
                  "sales_tax_report": "the sales tax report", "report_1099": "the 1099 report",
                  "quote_proration": "the quote", "categorize_expense": "the categorization",
                  "flag_anomalies": "the anomaly check"}
        options = tuple(labels.get(t, t) for t in [tool, *others])
        return Clarify("That message asks for several things; I do one at a time. "
                       "Which one first?", options)
    return decision


# --------------------------------------------------------------------------- shared extractors


def _file_in_text(req: _Request) -> str | None:
    m = _FILE_ID.search(req.raw)
    if m:
        return m.group(0)
    m = _FILE_PATH.search(req.raw)
    return m.group(1).strip() if m else None


def _kpi_of(low: str) -> str | None:
    for kpi, rx in _KPI_PATTERNS:
        if rx.search(low):
            if kpi == "mrr" and _VS_PLAN.search(low):
                return "mrr_vs_plan"
            return kpi
    for token in _TOKEN.findall(low):
        if len(token) >= 6:
            hit = process.extractOne(token, list(_KPI_FUZZY), scorer=fuzz.ratio, score_cutoff=85)
            if hit:
                return _KPI_FUZZY[hit[0]]
    return None


def _dates(req: _Request, mode: Mode) -> Resolved | None:
    found = resolve(req.low, req.today, mode)
    if found:
        for span in found.spans:
            req.use(span)
    return found


def _location(req: _Request, vocab: Vocabulary) -> str | None:
    for token in re.finditer(r"[A-Za-z]+", req.raw):
        word = token.group(0)
        loc = vocab._loc_codes.get(word) if word.isupper() else None
        if loc is None and len(word) >= 5:
            loc = vocab._loc_names.get(word.lower())
            if loc is None:
                hit = process.extractOne(word.lower(), list(vocab._loc_names), scorer=fuzz.ratio,
                                         score_cutoff=84)
                loc = vocab._loc_names[hit[0]] if hit else None
        if loc is not None:
            req.use(token.span())
            return loc.name
    for loc in vocab.locations:  # multi-word location names
        if " " in loc.name:
            i = req.low.find(loc.name.lower())
            if i >= 0:
                req.use((i, i + len(loc.name)))
                return loc.name
    return None


def _desk_type(req: _Request, allowed: Sequence[str], *, loose: bool = False) -> str | None:
    """The desk type a phrase names; a bare "office" counts only when ``loose`` (a plan change:
    "move to an office"), since in reports "the Uptown office" means the location."""
    for desk, rx in _DESK_PATTERNS:
        m = next((m for m in rx.finditer(req.low) if loose or m.group(0) != "office"), None)
        if m and desk in allowed:
            req.use(m.span())
            return desk
        if m and desk not in allowed:
            req.use(m.span())
    return None


def _amount(req: _Request) -> int | None:
    for m in _AMOUNT.finditer(req.low):
        g = m.groupdict()
        try:
            if g["a"] is not None:
                value = Decimal(g["a"].replace(",", "") + "." + (g["c"] or "0"))
                if g["k"]:
                    value *= 1000
            elif g["ka"] is not None:
                value = Decimal(g["ka"]) * 1000
            elif g["b"] is not None:
                value = Decimal(f"{g['b']}.{g['bc']}")
            else:
                value = Decimal(g["d"])
        except InvalidOperation:  # pragma: no cover - the pattern only admits digits
            continue
        req.use(m.span())
        return int((value * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return None


def _range(req: _Request, default: tuple[date, date]) -> tuple[str, str]:
    found = _dates(req, "past")
    start, end = (found.start, found.end) if found else default
    return start.isoformat(), end.isoformat()


def _month_to_date(today: date) -> tuple[date, date]:
    return month_start(today), today


def _last_month(today: date) -> tuple[date, date]:
    first = add_months(month_start(today), -1)
    return first, month_end(first)


def _with(args: dict[str, Any], **optional: Any) -> dict[str, Any]:
    args.update({k: v for k, v in optional.items() if v is not None})
    return args


# --------------------------------------------------------------------------- members


def _member_tokens(req: _Request) -> list[tuple[str, int]]:
    """Candidate name tokens (text, position) from what the other extractors left."""
    rest = req.remaining()
    out: list[tuple[str, int]] = []
    seen: set[str] = set()
    for m in _TOKEN.finditer(rest):
        t = m.group(0)
        if t in _STOP or t in seen or t.isdigit() or len(t) < 2:
            continue
        seen.add(t)
        out.append((t, m.start()))
        if len(out) == MAX_NAME_TOKENS:
            break
    return out


def _match_member(req: _Request, vocab: Vocabulary, *, required: bool = False
                  ) -> int | Clarify | None:
    """One member's index, a question (several match / none does), or None (no name given)."""
    for code in _CODE.finditer(req.low):  # a member code ("M-000123") names one member
        if code.group(0) in vocab._by_code:
            req.use(code.span())
            return vocab._by_code[code.group(0)]
    tokens = _member_tokens(req)
    if not tokens:
        return None
    index = vocab._index
    matched: dict[int, dict[str, float]] = defaultdict(dict)  # member -> name token -> score
    used_query: dict[int, set[str]] = defaultdict(set)
    for query, _ in tokens:
        if query in index.postings:
            candidates: list[tuple[str, float]] = [(query, 100.0)]
        elif len(query) >= 5 and query not in _LEGAL:
            candidates = [(name, score) for name, score, _ in process.extract(
                query, index.token_list, scorer=fuzz.ratio, score_cutoff=80, limit=4)]
        else:
            candidates = []
        for name_token, score in candidates:
            for i in index.postings.get(name_token, ()):
                if score > matched[i].get(name_token, 0):
                    matched[i][name_token] = score
                    used_query[i].add(query)
    if not matched:
        unknown = " ".join(t for t, _ in tokens if t not in _LEGAL)
        unknown = unknown if len(unknown) <= 60 else unknown[:57] + "..."
        if required or unknown:
            return Clarify(f"I couldn't find a member matching \"{unknown}\". Which member "
                           "do you mean? (a name or a member code)", ())
        return None

    def key(i: int) -> tuple[int, float]:
        return len(used_query[i]), len(matched[i]) / len(index.core[i])

    best = max(key(i) for i in matched)
    top = [i for i in matched if key(i) == best]
    if len(top) > 1 and best[1] == 1.0:  # "acme design" vs "acme design llc": the closest
        said = _query_set(tokens) | set(_TOKEN.findall(req.low)) & _LEGAL

        def closeness(i: int) -> tuple[int, int]:
            full = index.full[i] | set(matched[i])
            return len(full & (said | set(matched[i]))), -len(index.full[i] - said -
                                                             set(matched[i]))

        nearest = max(closeness(i) for i in top)
        exact = [i for i in top if closeness(i) == nearest]
        if len(exact) == 1:
            top = exact
    if len(top) == 1:
        return top[0]
    top.sort(key=lambda i: (-sum(matched[i].values()), vocab.members[i].name))
    options = tuple(vocab.ref(i) for i in top[:6])
    more = f" (and {len(top) - 6} more)" if len(top) > 6 else ""
    return Clarify(f"Which member do you mean{more}?", options)


def _query_set(tokens: list[tuple[str, int]]) -> set[str]:
    return {t for t, _ in tokens}


def _need_member(req: _Request, vocab: Vocabulary, what: str) -> int | Clarify:
    found = _match_member(req, vocab, required=True)
    if found is None:
        return Clarify(f"Which member's {what}?", ())
    return found


# --------------------------------------------------------------------------- tools


def _kpi(req: _Request, vocab: Vocabulary, kpi: str) -> Decision:
    location = _location(req, vocab)
    desk = _desk_type(req, ("hot_desk", "dedicated_desk", "private_office"))
    start, end = _range(req, _month_to_date(req.today))
    return Routed("lookup_kpi", _with({"kpi": kpi, "start": start, "end": end},
                                      location=location, desk_type=desk))


def _anomalies(req: _Request, vocab: Vocabulary, kinds: list[str]) -> Decision:
    location = _location(req, vocab)
    start, end = _range(req, (req.today - timedelta(days=29), req.today))
    ordered = [k for k in vocab.anomaly_kinds if k in kinds] or None
    return Routed("flag_anomalies", _with({"start": start, "end": end}, kinds=ordered,
                                          location=location))


def _sales_tax(req: _Request, vocab: Vocabulary) -> Decision:
    location = _location(req, vocab)
    start, end = _range(req, _last_month(req.today))
    return Routed("sales_tax_report", _with({"start": start, "end": end}, location=location))


def _report_1099(req: _Request) -> Decision:
    low = req.low
    year = None
    m = re.search(r"(?<![\w-])(20\d{2})(?!\w)", low)
    if m:
        year = int(m.group(1))
    elif re.search(r"\b(?:this|current)\s+(?:tax\s+)?year\b|\bytd\b|\byear\s+to\s+date\b|"
                   r"\bso\s+far\b", low):
        year = req.today.year
    elif re.search(r"\b(?:last|previous|prior)\s+(?:tax\s+)?year\b", low):
        year = req.today.year - 1
    return Routed("report_1099", {"year": year if year is not None else req.today.year - 1})


def _rules(req: _Request) -> Decision:
    query = _RULES_PREFIX.sub("", req.raw, count=1).strip().rstrip("?!. ").strip()
    if not query:
        return Clarify("What should I look up in the rules?", ())
    return Routed("search_rules", {"query": query})


def _list_bills(req: _Request) -> Decision:
    for status, rx in _BILL_STATUS:
        if rx.search(req.low):
            return Routed("list_bills", {"status": status})
    return Routed("list_bills", {})


def _run_billing(req: _Request, vocab: Vocabulary) -> Decision:
    location = _location(req, vocab)
    found = _dates(req, "period")
    dry_run: bool | None = None
    if _DRY_RUN_OFF.search(req.low):
        dry_run = False
    elif _DRY_RUN_ON.search(req.low):
        dry_run = True
    if found is None or found.kind not in ("month", "day"):
        this = month_start(req.today)
        options = (f"{this:%Y-%m} (this month)", f"{add_months(this, 1):%Y-%m} (next month)")
        return Clarify("Which month should I bill?", options)
    return Routed("run_billing", _with({"period": found.period}, location=location,
                                       dry_run=dry_run))


def _invoices(req: _Request, vocab: Vocabulary, status: str | None = None) -> Decision:
    status = status or next((s for s, rx in _INVOICE_STATUS if rx.search(req.low)), None)
    found = _dates(req, "period")
    period = found.period if found and found.kind in ("month", "day") else None
    member = _match_member(req, vocab)
    if isinstance(member, Clarify):
        if member.options:  # several members match: ask; an unknown word is not a member
            return member
        member = None
    return Routed("find_invoices", _with({}, member=vocab.ref(member) if member is not None
                                         else None, status=status, period=period))


def _balance(req: _Request, vocab: Vocabulary) -> Decision:
    if _WHO_OWES.search(req.low):  # nobody named: the open invoices answer "who owes us?"
        return _invoices(req, vocab, status="open")
    member = _need_member(req, vocab, "balance")
    if isinstance(member, Clarify):
        return member
    return Routed("member_balance", {"member": vocab.ref(member)})


def _categorize(req: _Request, vocab: Vocabulary) -> Decision:
    amount = _amount(req)
    location = _location(req, vocab)
    description = None
    for m in _DESCRIPTION.finditer(req.raw):
        text = m.group("d").strip()
        if vocab.location_named(text) or resolve(text, req.today, "past"):
            continue
        description = text
        req.use(m.span())
        break
    found = _dates(req, "period")  # "from 11/24" is the expense's day, not a range
    day = found.start.isoformat() if found and found.kind == "day" else None
    vendor = _vendor(req, vocab)
    if vendor is None:
        return Clarify("Which vendor was it? e.g. \"categorize $42.50 at Starbucks\"", ())
    if amount is None:
        return Clarify(f"How much was the {vendor} expense?", ())
    return Routed("categorize_expense", _with({"vendor": vendor, "amount": amount},
                                              description=description, date=day,
                                              location=location))


_CATEGORIZE_WORDS = frozenset("""
categorize categorise categorized categorised categorizing categorising categorization code
coding account category gl expense expenses where should does go goes book how what which
receipt purchase purchases charge charges bill item run spend spent paid buy bought order
chair laptop lunch dinner ride trip fare order subscription supplies
""".split())


def _vendor(req: _Request, vocab: Vocabulary) -> str | None:
    rest = req.remaining()
    words = set(_TOKEN.findall(rest))
    best: tuple[int, str] | None = None
    for name, distinctive in vocab._vendor_tokens:
        if distinctive and distinctive <= words and (best is None or len(distinctive) > best[0]):
            best = (len(distinctive), name)
    if best:
        return best[1]
    for m in _VENDOR_LEAD.finditer(rest):
        begin = m.start("v")
        picked = []
        for w in re.finditer(r"\S+", req.raw[begin:m.end("v")]):
            word = w.group(0)
            if not rest[begin + w.start():begin + w.end()].strip() or \
                    word.lower() in _STOP or word.lower() in _CATEGORIZE_WORDS:
                break
            picked.append(word.strip("'\"()"))
        if picked:
            return " ".join(picked)[:MAX_VENDOR]
    run: list[str] = []
    for m in re.finditer(r"\S+", rest):
        word = req.raw[m.start():m.end()].strip("'\":()")
        if not word or word.lower() in _STOP or word.lower() in _CATEGORIZE_WORDS or \
                not re.search(r"[a-z]", word.lower()):
            if run:
                break
            continue
        run.append(word)
    return " ".join(run)[:MAX_VENDOR] if run else None


def _quote(req: _Request, vocab: Vocabulary) -> Decision:
    quantity = None
    q = _QUANTITY.search(req.low)
    if q:
        quantity = int(q.group(1) or q.group(2))
        req.use((q.start(), q.start() + len(q.group(1) or "")) if q.group(1) else q.span())
    location = _location(req, vocab)
    annual = _ANNUAL.search(req.low)
    if annual:
        req.use(annual.span())
    desk = _desk_type(req, ("hot_desk", "dedicated_desk", "private_office", "virtual_office"),
                      loose=True)
    found = _dates(req, "future")
    change = found.start if found else req.today
    member = _need_member(req, vocab, "plan change")
    if isinstance(member, Clarify):
        return member
    entry = vocab.members[member]
    name = vocab.ref(member)
    where = location or entry.location
    if desk is None:
        options = tuple(p.name for p in vocab.plans if p.location in (where, None))
        return Clarify(f"Which plan should {name} move to?", options)
    interval = "year" if annual else "month"
    plans = [p for p in vocab.plans if p.desk_type == desk and p.interval == interval]
    plans = [p for p in plans if p.location == where] or [p for p in plans if p.location is None]
    if len(plans) != 1:
        options = tuple(p.name for p in vocab.plans if p.desk_type == desk)
        return Clarify(f"Which {desk.replace('_', ' ')} plan should {name} move to?", options)
    return Routed("quote_proration", _with({"member": name, "to_plan": plans[0].name,
                                            "change_date": change.isoformat()},
                                           quantity=quantity))


def is_injection(text: str) -> bool:
    """Does the text try to give the assistant new instructions? (for logging and replies)"""
    return bool(_INJECTION.search(text.lower()))


def vocabulary_to_dict(vocab: Vocabulary) -> dict[str, Any]:
    """A JSON-ready snapshot of a vocabulary (fixtures, caches)."""
    from dataclasses import asdict

    return {
        "members": [asdict(m) for m in vocab.members],
        "plans": [asdict(p) for p in vocab.plans],
        "locations": [asdict(loc) for loc in vocab.locations],
        "vendors": list(vocab.vendors),
    }


def vocabulary_from_dict(data: dict[str, Any]) -> Vocabulary:
    """The inverse of :func:`vocabulary_to_dict`."""
    return Vocabulary(
        members=[MemberEntry(**{**m, "aliases": tuple(m.get("aliases", ()))})
                 for m in data["members"]],
        plans=[PlanEntry(**p) for p in data["plans"]],
        locations=[LocationEntry(**loc) for loc in data["locations"]],
        vendors=data.get("vendors", ()),
    )
