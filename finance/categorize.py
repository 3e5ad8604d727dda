"""Expense categorization: account + cost center + location, with a confidence and a reason.

The pipeline, first answer wins (DESIGN §4):

1. explicit rules (``knowledge/categorization_rules.yaml`` synced into the versioned rule
   store, plus rules added later from Slack);
2. the operator's own history for this vendor (exact normalized vendor, then a close vendor
   name), amount- and description-aware: past expenses of the vendor vote, the ones most like
   this one (description words, amount, recency) weigh most;
3. fallback rules: typical-vendor defaults, used only for vendors without history;
4. similar past expenses of other vendors (the ChromaDB expense history when one is passed in,
   else a word-overlap search of the SQL history);
5. the LLM, when the caller passes one (a :class:`LlmCategorizer`);
6. a default: uncategorized, confidence 0, a person chooses.

The capitalization threshold then applies to every answer: an item at or above it goes to a
CapEx account (by keywords), a CapEx account proposed for a smaller item is expensed.

The rule store: every change is a new ``categorization_rule`` version row (the previous one is
deactivated), with an audit row and a role check. Text read off receipts is data only: it can
match rule keywords, it never chooses an account the rules, the history or the chart do not
allow.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import yaml
from sqlalchemy import func, select
from sqlmodel import Session

from finance import audit
from finance.authz import FINANCE_WRITERS, Actor, require_role
from finance.models import (
    Account,
    AccountType,
    CategorizationRule,
    Expense,
    ExpenseStatus,
    Location,
)
from finance.money import MoneyError, format_cents, parse_amount

if TYPE_CHECKING:
    from finance.services import Services

log = logging.getLogger(__name__)

RULES_FILE = "categorization_rules.yaml"
Source = Literal["rule", "history", "vendor_history", "llm", "default"]


class CategorizationError(ValueError):
    """Input the categorizer cannot work with; the message says what is wrong."""


class RuleError(CategorizationError):
    """A rule that cannot be loaded or stored; the message names the rule."""


# --------------------------------------------------------------------------- normalization

_PROCESSOR_PREFIX = re.compile(r"^\s*(sq|tst|sp|pp|paypal|py|pos|in|dd|ic)\s*\*\s*", re.I)
_DROP_TOKENS = frozenset({
    "inc", "llc", "ltd", "corp", "co", "company", "pllc", "gmbh", "the", "store", "com", "www",
    "us", "usa", "shop",
})
_STOPWORDS = frozenset({
    "a", "an", "and", "for", "of", "the", "to", "in", "on", "at", "with", "from", "by", "x",
    "our", "new", "per",
})


def normalize_text(text: str | None) -> str:
    """Lower case ASCII words separated by single spaces ("&" reads as "and")."""
    if not text:
        return ""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = text.lower().replace("&", " and ").replace("'", "").replace("\u2019", "")
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text).split())


@lru_cache(maxsize=20_000)
def normalize_vendor(name: str | None) -> str:
    """A vendor name as history and rules compare it: "SQ *STARBUCKS STORE #1234" -> "starbucks"."""
    if not name:
        return ""
    text = _PROCESSOR_PREFIX.sub("", name)
    tokens = [t for t in normalize_text(text).split()
              if t not in _DROP_TOKENS and not t.isdigit() and not _is_reference(t)]
    return " ".join(tokens) or normalize_text(text)


def _is_reference(token: str) -> bool:
    """A card-statement reference such as "2k3l1x" (letters mixed with digits, 5+ chars)."""
    return len(token) >= 5 and any(c.isdigit() for c in token) and any(c.isalpha() for c in token)


def _words(text: str | None) -> frozenset[str]:
    return frozenset(t for t in normalize_text(text).split()
                     if t not in _STOPWORDS and not t.isdigit() and len(t) > 1)


# --------------------------------------------------------------------------- requests, results


@dataclass(frozen=True)
class CategorizationRequest:
    """What is known about one expense. ``amount_cents`` is the item total (tax included)."""

    vendor: str
    amount_cents: int
    description: str | None = None
    date: date | None = None
    location: str | int | None = None  # a location code or id
    mcc: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.vendor, str) or not self.vendor.strip():
            raise CategorizationError("a vendor name is needed to categorize an expense")
        if len(self.vendor) > 200:
            raise CategorizationError("the vendor name is longer than 200 characters")
        if not normalize_vendor(self.vendor):
            raise CategorizationError(f"the vendor name {self.vendor!r} has no letters or digits")
        if isinstance(self.amount_cents, bool) or not isinstance(self.amount_cents, int):
            raise CategorizationError("the amount must be integer cents")
        if self.amount_cents <= 0:
            raise CategorizationError(
                f"the amount must be positive, got {format_cents(self.amount_cents)}")
        if self.description is not None and len(self.description) > 2000:
            raise CategorizationError("the description is longer than 2,000 characters")
        if self.date is not None and not isinstance(self.date, date):
            raise CategorizationError("the date must be a date")
        if self.mcc is not None and not re.fullmatch(r"\d{4}", str(self.mcc)):
            raise CategorizationError(f"an MCC is four digits, got {self.mcc!r}")


@dataclass(frozen=True)
class Alternative:
    account_code: str
    account_name: str
    confidence_pct: int
    source: str
    reason: str


@dataclass(frozen=True)
class Categorization:
    """The proposed account (None = nobody could tell: a person chooses), and why."""

    account_code: str | None
    account_name: str | None
    cost_center: str | None
    location_id: int | None
    confidence_pct: int
    reason: str
    source: Source
    rule_id: str | None = None
    capitalized: bool = False
    alternatives: tuple[Alternative, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "account_code": self.account_code, "account_name": self.account_name,
            "cost_center": self.cost_center, "location_id": self.location_id,
            "confidence_pct": self.confidence_pct, "reason": self.reason, "source": self.source,
            "rule_id": self.rule_id, "capitalized": self.capitalized,
            "alternatives": [a.__dict__ for a in self.alternatives],
        }


@dataclass(frozen=True)
class AccountChoice:
    code: str
    name: str
    capex: bool = False


@dataclass(frozen=True)
class PastExpense:
    """One categorized expense of the history (the SQL store)."""

    expense_id: int
    vendor: str
    description: str
    account_code: str
    cost_center: str | None
    location_id: int
    amount_cents: int
    expense_date: date


@dataclass(frozen=True)
class LlmSuggestion:
    account_code: str
    cost_center: str | None = None
    confidence_pct: int = 50
    reason: str = ""


class LlmCategorizer(Protocol):
    """An optional language model, injected by the caller (the core never imports one).

    It gets the request as data, the accounts it may choose from and a few similar past
    expenses. Whatever it answers is checked: an account outside ``choices`` is ignored.
    """

    def suggest(self, request: CategorizationRequest, choices: Sequence[AccountChoice],
                examples: Sequence[PastExpense]) -> LlmSuggestion | None: ...


class SimilarHistory(Protocol):
    """The expense-history search of :mod:`finance.kb` (``history.similar(...)``)."""

    def similar(self, vendor: str, description: str | None = None, *, k: int = 8,
                location_id: int | None = None, before: date | None = None) -> list[Any]: ...


# --------------------------------------------------------------------------- rules


def _kw_pattern(phrase: str) -> re.Pattern[str]:
    return re.compile(r"(?<![a-z0-9])" + re.escape(normalize_text(phrase)) + r"(?![a-z0-9])")


def _str_list(value: object, what: str, rule_id: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str | int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not all(
            isinstance(v, str | int) and not isinstance(v, bool) for v in value):
        raise RuleError(f"rule {rule_id}: {what} must be a list of text values")
    out = tuple(str(v).strip() for v in value if str(v).strip())
    return out


def _amount(value: object, what: str, rule_id: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        cents = parse_amount(value)
    except MoneyError as exc:
        hint = " (write amounts as quoted text, e.g. \"25.00\")"
        raise RuleError(f"rule {rule_id}: {what} {value!r} is not an amount: {exc}{hint}") from None
    if cents < 0:
        raise RuleError(f"rule {rule_id}: {what} must not be negative")
    return cents


_BODY_KEYS = {"id", "vendor", "keywords", "mcc", "match", "min_amount", "max_amount", "account",
              "cost_center", "location", "priority", "fallback", "reason", "origin"}


@dataclass(frozen=True)
class Rule:
    """One categorization rule (see the header of ``knowledge/categorization_rules.yaml``)."""

    id: str
    account: str
    vendor: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    mcc: tuple[str, ...] = ()
    match: Literal["any", "all"] = "any"
    min_amount_cents: int | None = None
    max_amount_cents: int | None = None
    cost_center: str | None = None
    location: str | None = None
    priority: int = 50
    fallback: bool = False
    reason: str = ""
    origin: str = "knowledge"
    version: int | None = None
    _vendor_res: tuple[re.Pattern[str], ...] = field(default=(), compare=False, repr=False)
    _keyword_res: tuple[re.Pattern[str], ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def from_body(cls, body: object, allowed_accounts: dict[str, str], *,
                  origin: str | None = None, version: int | None = None) -> Rule:
        """Validate a rule body (YAML mapping or stored JSON); raise ``RuleError`` naming it."""
        if not isinstance(body, dict):
            raise RuleError(f"a rule must be a mapping, got {type(body).__name__}")
        rule_id = str(body.get("id") or "").strip()
        if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,79}", rule_id):
            raise RuleError(f"rule id {rule_id or '(missing)'!r} must be 1-80 lower-case letters, "
                            "digits, '-', '_' or '.'")
        unknown = set(body) - _BODY_KEYS
        if unknown:
            raise RuleError(f"rule {rule_id}: unknown field(s) {', '.join(sorted(unknown))}")
        vendor = _str_list(body.get("vendor"), "vendor", rule_id)
        vendor_res = []
        for pattern in vendor:
            try:
                vendor_res.append(re.compile(pattern))
            except re.error as exc:
                raise RuleError(f"rule {rule_id}: vendor pattern {pattern!r} is not a valid "
                                f"regular expression ({exc})") from None
        keywords = _str_list(body.get("keywords"), "keywords", rule_id)
        if any(not normalize_text(k) for k in keywords):
            raise RuleError(f"rule {rule_id}: a keyword has no letters or digits")
        mcc = _str_list(body.get("mcc"), "mcc", rule_id)
        for code in mcc:
            if not re.fullmatch(r"\d{4}", code):
                raise RuleError(f"rule {rule_id}: MCC {code!r} is not four digits")
        if not (vendor or keywords or mcc):
            raise RuleError(f"rule {rule_id}: needs at least one of vendor, keywords or mcc")
        match = body.get("match", "any")
        if match not in ("any", "all"):
            raise RuleError(f"rule {rule_id}: match must be 'any' or 'all', got {match!r}")
        low = _amount(body.get("min_amount"), "min_amount", rule_id)
        high = _amount(body.get("max_amount"), "max_amount", rule_id)
        if low is not None and high is not None and low >= high:
            raise RuleError(f"rule {rule_id}: min_amount must be below max_amount")
        account = str(body.get("account") or "").strip()
        if account not in allowed_accounts:
            raise RuleError(f"rule {rule_id}: account {account or '(missing)'!r} is not an expense "
                            "or CapEx account of the chart of accounts")
        priority = body.get("priority", 50)
        if (isinstance(priority, bool) or not isinstance(priority, int)
                or not -1000 <= priority <= 1000):
            raise RuleError(f"rule {rule_id}: priority must be an integer from -1000 to 1000")
        fallback = body.get("fallback", False)
        if not isinstance(fallback, bool):
            raise RuleError(f"rule {rule_id}: fallback must be true or false")
        text_fields = {}
        for name, limit in (("cost_center", 40), ("location", 32), ("reason", 300)):
            value = body.get(name)
            if value is not None and not isinstance(value, str):
                raise RuleError(f"rule {rule_id}: {name} must be text")
            value = value.strip() if value else None
            if value and len(value) > limit:
                raise RuleError(f"rule {rule_id}: {name} is longer than {limit} characters")
            text_fields[name] = value
        return cls(
            id=rule_id, account=account, vendor=vendor, keywords=keywords, mcc=mcc, match=match,
            min_amount_cents=low, max_amount_cents=high, cost_center=text_fields["cost_center"],
            location=text_fields["location"], priority=priority, fallback=fallback,
            reason=text_fields["reason"] or "",
            origin=origin or str(body.get("origin") or "knowledge"),
            version=version, _vendor_res=tuple(vendor_res),
            _keyword_res=tuple(_kw_pattern(k) for k in keywords),
        )

    def body(self) -> dict[str, Any]:
        """The canonical JSON body stored in the rule store (equal rules, equal bodies)."""
        out: dict[str, Any] = {"id": self.id, "account": self.account, "priority": self.priority,
                               "origin": self.origin}
        if self.vendor:
            out["vendor"] = list(self.vendor)
        if self.keywords:
            out["keywords"] = list(self.keywords)
        if self.mcc:
            out["mcc"] = list(self.mcc)
        if self.match != "any":
            out["match"] = self.match
        for key, cents in (("min_amount", self.min_amount_cents),
                           ("max_amount", self.max_amount_cents)):
            if cents is not None:
                out[key] = f"{cents // 100}.{cents % 100:02d}"
        for key in ("cost_center", "location"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.reason:
            out["reason"] = self.reason
        if self.fallback:
            out["fallback"] = True
        return out

    @property
    def specificity(self) -> int:
        return sum(bool(x) for x in (self.vendor, self.keywords, self.mcc)) + \
            (self.min_amount_cents is not None) + (self.max_amount_cents is not None)

    def explain_match(self, vendor_norm: str, text_norm: str, amount_cents: int,
                      mcc: str | None, currency: str = "USD") -> list[str] | None:
        """The plain-English conditions that held, or None when the rule does not apply.

        vendor / keywords / mcc: any one of the named ones must hold (``match: all``: every
        one); the amount bounds must always hold.
        """
        held: list[str] = []
        missed = 0
        if self._vendor_res:
            hit = next((p for p in self._vendor_res if p.search(vendor_norm)), None)
            if hit is None:
                missed += 1
            else:
                held.append(f"vendor matches {_pattern_label(hit.pattern)}")
        if self._keyword_res:
            found = next((k for k, p in zip(self.keywords, self._keyword_res, strict=True)
                          if p.search(text_norm)), None)
            if found is None:
                missed += 1
            else:
                held.append(f"the text mentions {found!r}")
        if self.mcc:
            if mcc is None or mcc not in self.mcc:
                missed += 1
            else:
                held.append(f"merchant category {mcc}")
        if not held or (self.match == "all" and missed):
            return None
        parts = held
        if self.min_amount_cents is not None:
            if amount_cents < self.min_amount_cents:
                return None
            parts.append(f"amount {format_cents(amount_cents, currency)} ≥ "
                         f"{format_cents(self.min_amount_cents, currency)}")
        if self.max_amount_cents is not None:
            if amount_cents >= self.max_amount_cents:
                return None
            parts.append(f"amount {format_cents(amount_cents, currency)} < "
                         f"{format_cents(self.max_amount_cents, currency)}")
        return parts


def _pattern_label(pattern: str) -> str:
    label = re.sub(r"\\b|\(\?[!=<][^)]*\)|[\^$]", "", pattern)
    label = re.sub(r"\(([^()|]*)\)\?", "", label)
    return label.replace("?", "").strip() or pattern


@dataclass(frozen=True)
class CapexPolicy:
    threshold_cents: int
    routes: tuple[tuple[str, tuple[re.Pattern[str], ...], tuple[str, ...]], ...]
    eligible_accounts: frozenset[str]
    without_keyword: frozenset[str]
    default_account: str
    expense_below_threshold: str | None

    @property
    def capex_accounts(self) -> frozenset[str]:
        return frozenset([r[0] for r in self.routes] + [self.default_account])

    def route(self, text_norm: str) -> tuple[str, str] | None:
        for account, patterns, words in self.routes:
            for word, pattern in zip(words, patterns, strict=True):
                if pattern.search(text_norm):
                    return account, word
        return None


@dataclass(frozen=True)
class RuleBook:
    """Rules plus the file-level policy (capitalization, default cost centers)."""

    rules: tuple[Rule, ...]
    capex: CapexPolicy
    cost_centers: dict[str, str]


def categorizable_accounts(accounts: Iterable[tuple[str, str, str, bool]],
                           capex_codes: Iterable[str]) -> dict[str, str]:
    """code -> name of the accounts an expense may go to: expense accounts and CapEx assets."""
    capex = set(capex_codes)
    return {code: name for code, name, kind, contra in accounts
            if not contra and (kind == AccountType.EXPENSE.value or code in capex)}


@lru_cache(maxsize=8)
def _parse_yaml(path: str, mtime_ns: int, size: int) -> Any:
    """The parsed file, cached until it changes on disk (parsing costs more than categorizing)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(Path(path).read_text(encoding="utf-8"), Loader=loader)  # noqa: S506


def load_rules_file(path: Path, chart_accounts: Iterable[tuple[str, str, str, bool]],
                    *, threshold_cents: int) -> RuleBook:
    """Read and validate the rules file; every error names the file and the rule."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise RuleError(f"categorization rules not found at {path}") from None
    return _load_rules_file(path, stat.st_mtime_ns, stat.st_size, tuple(chart_accounts),
                            threshold_cents)


@lru_cache(maxsize=16)
def _load_rules_file(path: Path, mtime_ns: int, size: int,
                     chart_accounts: tuple[tuple[str, str, str, bool], ...],
                     threshold_cents: int) -> RuleBook:
    try:
        data = _parse_yaml(str(path), mtime_ns, size)
    except FileNotFoundError:
        raise RuleError(f"categorization rules not found at {path}") from None
    except yaml.YAMLError as exc:
        raise RuleError(f"{path.name} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise RuleError(f"{path.name} must hold a mapping with a 'rules' list")
    known = {code for code, _, _, _ in chart_accounts}
    cap = data.get("capitalization") or {}
    routes = []
    for i, route in enumerate(cap.get("routes") or []):
        account = str(route.get("account", ""))
        if account not in known:
            raise RuleError(f"{path.name}: capitalization route #{i + 1} names unknown account "
                            f"{account!r}")
        words = _str_list(route.get("keywords"), "keywords", f"capitalization route #{i + 1}")
        routes.append((account, tuple(_kw_pattern(w) for w in words), words))
    default_capex = str(cap.get("default_account", "1500"))
    below = cap.get("expense_below_threshold")
    for code, what in ((default_capex, "default_account"),
                       (str(below) if below else None, "expense_below_threshold"),
                       *((str(c), "eligible_accounts") for c in cap.get("eligible_accounts") or []),
                       *((str(c), "capitalize_without_keyword")
                         for c in cap.get("capitalize_without_keyword") or [])):
        if code is not None and code not in known:
            raise RuleError(f"{path.name}: capitalization {what} names unknown account {code!r}")
    capex = CapexPolicy(
        threshold_cents=threshold_cents, routes=tuple(routes),
        eligible_accounts=frozenset(str(c) for c in cap.get("eligible_accounts") or []),
        without_keyword=frozenset(str(c) for c in cap.get("capitalize_without_keyword") or []),
        default_account=default_capex, expense_below_threshold=str(below) if below else None,
    )
    allowed = categorizable_accounts(chart_accounts, capex.capex_accounts)
    centers = {str(k): str(v) for k, v in (data.get("account_cost_centers") or {}).items()}
    for code in centers:
        if code not in known:
            raise RuleError(f"{path.name}: account_cost_centers names unknown account {code!r}")
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, body in enumerate(data.get("rules") or []):
        try:
            rule = Rule.from_body(body, allowed, origin="knowledge")
        except RuleError as exc:
            raise RuleError(f"{path.name}: {exc}") from None
        except (TypeError, AttributeError):
            raise RuleError(f"{path.name}: rule #{i + 1} is malformed") from None
        if rule.id in seen:
            raise RuleError(f"{path.name}: rule id {rule.id} appears twice")
        seen.add(rule.id)
        rules.append(rule)
    return RuleBook(tuple(rules), capex, centers)


def _chart_rows(session: Session) -> list[tuple[str, str, str, bool]]:
    stmt = select(Account.code, Account.name, Account.type, Account.contra).where(
        Account.active.is_(True))  # type: ignore[attr-defined]
    return [(c, n, t, bool(k)) for c, n, t, k in session.execute(stmt)]


def _file_book(services: Services, session: Session) -> RuleBook:
    return load_rules_file(services.settings.knowledge_path / RULES_FILE, _chart_rows(session),
                           threshold_cents=services.settings.capitalization_threshold_cents)


def allowed_accounts(services: Services, session: Session) -> dict[str, str]:
    """code -> name of the accounts an expense may be posted to (expense and CapEx accounts)."""
    book = _file_book(services, session)
    return categorizable_accounts(_chart_rows(session), book.capex.capex_accounts)


def _allowed_accounts(session: Session, knowledge_dir: Path | None) -> dict[str, str]:
    from finance.settings import default_knowledge_dir

    path = (knowledge_dir or default_knowledge_dir()) / RULES_FILE
    book = load_rules_file(path, _chart_rows(session), threshold_cents=0)
    return categorizable_accounts(_chart_rows(session), book.capex.capex_accounts)


# --------------------------------------------------------------------------- rule store


@dataclass(frozen=True)
class RuleSyncReport:
    added: list[str]
    changed: list[str]
    deactivated: list[str]
    unchanged: int
    kept_user_versions: list[str]

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _latest_rows(session: Session) -> dict[str, CategorizationRule]:
    rows = session.execute(select(CategorizationRule).order_by(
        CategorizationRule.rule_id, CategorizationRule.version)).scalars()
    latest: dict[str, CategorizationRule] = {}
    for row in rows:
        latest[row.rule_id] = row
    return latest


def _write_version(session: Session, actor: str, body: dict[str, Any], *, active: bool,
                   previous: CategorizationRule | None, action: str,
                   extra: dict[str, Any] | None = None) -> CategorizationRule:
    if previous is not None:
        previous.active = False
        session.add(previous)
        session.flush()
    row = CategorizationRule(rule_id=body["id"], version=(previous.version + 1) if previous else 1,
                             body=body, active=active, created_by=actor[:60])
    session.add(row)
    session.flush()
    audit.record(session, actor=actor, action=action, entity_type="categorization_rule",
                 entity_id=f"{row.rule_id}@v{row.version}",
                 details={"rule_id": row.rule_id, "version": row.version, "active": active,
                          "body": body} | (extra or {}))
    return row


def sync_rules(services: Services, session: Session, *,
               actor: str = "system:rules-sync") -> RuleSyncReport:
    """Load the rules file into the store: new rule -> version 1, changed -> a new version.

    Rules whose latest version came from a person (Slack, CLI ``rules add``) are left alone:
    the store wins over the file for them. A file rule removed from the file is deactivated.
    """
    book = _file_book(services, session)
    latest = _latest_rows(session)
    added, changed, deactivated, kept = [], [], [], []
    unchanged = 0
    in_file = set()
    for rule in book.rules:
        in_file.add(rule.id)
        body = rule.body()
        row = latest.get(rule.id)
        if row is None:
            _write_version(session, actor, body, active=True, previous=None, action="rule.add")
            added.append(rule.id)
        elif row.body.get("origin", "knowledge") != "knowledge":
            kept.append(rule.id)
        elif row.body == body and row.active:
            unchanged += 1
        else:
            _write_version(session, actor, body, active=True, previous=row, action="rule.change")
            changed.append(rule.id)
    for rule_id, row in latest.items():
        from_file = row.body.get("origin", "knowledge") == "knowledge"
        if rule_id not in in_file and row.active and from_file:
            _write_version(session, actor, row.body, active=False, previous=row,
                           action="rule.deactivate",
                           extra={"reason": "removed from the rules file"})
            deactivated.append(rule_id)
    return RuleSyncReport(added, changed, deactivated, unchanged, kept)


def add_rule(session: Session, actor: Actor, body: dict[str, Any], *,
             knowledge_dir: Path | None = None) -> CategorizationRule:
    """Add a rule, or change one (a new version); refused for roles outside FINANCE_WRITERS.

    ``body`` uses the fields of the rules file (id, vendor, keywords, mcc, min_amount,
    max_amount, account, cost_center, location, priority, fallback, reason). Returns the stored
    version; an identical active rule is returned unchanged (no new row). ``knowledge_dir``
    (default: the project's knowledge/) supplies the CapEx accounts rules may name.
    """
    require_role(session, actor, FINANCE_WRITERS, "change categorization rules")
    if not isinstance(body, dict):
        raise RuleError("a rule must be a mapping of fields")
    allowed = _allowed_accounts(session, knowledge_dir)
    body = dict(body)
    body["origin"] = "user"
    rule = Rule.from_body(body, allowed)
    canonical = rule.body()
    latest = _latest_rows(session).get(rule.id)
    if latest is not None and latest.active and latest.body == canonical:
        return latest
    return _write_version(session, actor.label, canonical, active=True, previous=latest,
                          action="rule.add" if latest is None else "rule.change")


def deactivate_rule(session: Session, actor: Actor, rule_id: str, *,
                    reason: str) -> CategorizationRule:
    """Switch a rule off with a new, inactive version (its history stays readable)."""
    require_role(session, actor, FINANCE_WRITERS, "change categorization rules")
    if not reason or not reason.strip():
        raise RuleError("deactivating a rule needs a reason")
    latest = _latest_rows(session).get(rule_id)
    if latest is None:
        raise RuleError(f"no rule {rule_id!r}")
    if not latest.active:
        return latest
    body = dict(latest.body)
    body["origin"] = "user"
    return _write_version(session, actor.label, body, active=False, previous=latest,
                          action="rule.deactivate", extra={"reason": reason.strip()[:300]})


def list_rules(session: Session, *, include_inactive: bool = False) -> list[CategorizationRule]:
    """The latest version of every rule (active ones only unless asked)."""
    rows = sorted(_latest_rows(session).values(), key=lambda r: r.rule_id)
    return [r for r in rows if include_inactive or r.active]


def rule_versions(session: Session, rule_id: str) -> list[CategorizationRule]:
    return list(session.execute(select(CategorizationRule).where(
        CategorizationRule.rule_id == rule_id).order_by(CategorizationRule.version)).scalars())


def active_rule_book(services: Services, session: Session) -> RuleBook:
    """The rules that apply now: the store's active rules (the file's while the store is
    empty), with the file's capitalization policy and default cost centers."""
    book = _file_book(services, session)
    stored = session.execute(select(func.count()).select_from(CategorizationRule)).scalar_one()
    if not stored:
        return book
    allowed = categorizable_accounts(_chart_rows(session), book.capex.capex_accounts)
    rules = []
    allowed_key = tuple(sorted(allowed.items()))
    for rule_id, version, body in session.execute(select(
            CategorizationRule.rule_id, CategorizationRule.version, CategorizationRule.body,
    ).where(CategorizationRule.active.is_(True))):  # type: ignore[attr-defined]
        try:
            rules.append(_stored_rule(json.dumps(body, sort_keys=True), allowed_key, version))
        except RuleError as exc:  # e.g. an account deactivated after the rule was written
            log.warning("skipping stored rule %s v%s: %s", rule_id, version, exc)
    return replace(book, rules=tuple(rules))


@lru_cache(maxsize=4096)
def _stored_rule(body_json: str, allowed: tuple[tuple[str, str], ...], version: int) -> Rule:
    return Rule.from_body(json.loads(body_json), dict(allowed), version=version)


# --------------------------------------------------------------------------- the categorizer


# Scores are integers per mille (0..1000): no floats in the core, and exact, portable ordering.
PER_MILLE = 1000


def _amount_similarity(a: int, b: int) -> int:
    """1000 for equal amounts, falling to 0 at a tenfold difference (log scale)."""
    low, high = sorted((max(a, 1), max(b, 1)))
    decades = (Decimal(high) / Decimal(low)).log10()
    return max(0, PER_MILLE - int(decades * PER_MILLE))


def _jaccard(a: frozenset[str], b: frozenset[str]) -> int:
    if not a or not b:
        return 0
    return PER_MILLE * len(a & b) // len(a | b)


def _per_mille(similarity: object) -> int:
    """A 0..1 similarity from the vector store as an integer per mille."""
    try:
        value = int(Decimal(str(similarity)) * PER_MILLE)
    except ArithmeticError:
        return 0
    return max(0, min(PER_MILLE, value))


@dataclass
class _Vote:
    account: str
    weight: int
    rows: list[PastExpense]


class Categorizer:
    """The pipeline with its rules, chart and history loaded once (reuse it for batches)."""

    def __init__(self, *, book: RuleBook, accounts: dict[str, str], locations: dict[str, int],
                 currency_of: dict[int, str], history: SimilarHistory | None = None,
                 llm: LlmCategorizer | None = None, as_of: date | None = None,
                 history_limit: int = 5000) -> None:
        self.book = book
        self.accounts = accounts
        self.locations = locations
        self.currency_of = currency_of
        self.history = history
        self.llm = llm
        self.as_of = as_of
        self.history_limit = history_limit
        self.location_names: dict[str, int] = {}
        order = sorted(book.rules, key=lambda r: (-r.priority, -r.specificity, r.id))
        self.explicit = [r for r in order if not r.fallback]
        self.fallback = [r for r in order if r.fallback]

    @classmethod
    def load(cls, services: Services, session: Session, *, history: SimilarHistory | None = None,
             llm: LlmCategorizer | None = None, as_of: date | None = None) -> Categorizer:
        book = active_rule_book(services, session)
        accounts = categorizable_accounts(_chart_rows(session), book.capex.capex_accounts)
        locs = list(session.execute(select(Location.id, Location.code, Location.currency,
                                           Location.name)))
        categorizer = cls(book=book, accounts=accounts, locations={c: i for i, c, _, _ in locs},
                          currency_of={i: cur for i, _, cur, _ in locs}, history=history,
                          llm=llm, as_of=as_of)
        categorizer.location_names = {n.strip().upper(): i for i, _, _, n in locs}
        return categorizer

    # ------------------------------------------------------------------ public

    def categorize(self, session: Session, request: CategorizationRequest) -> Categorization:
        location_id = self.location_id_of(request.location)
        currency = self.currency_of.get(location_id or -1, "USD")
        vendor_norm = normalize_vendor(request.vendor)
        text_norm = normalize_text(f"{request.vendor} {request.description or ''}")
        alternatives: list[Alternative] = []

        result = self._rules(self.explicit, request, vendor_norm, text_norm, currency, location_id)
        vendor_rows = self._vendor_history(session, vendor_norm)
        if result is None and vendor_rows[0]:
            result = self._from_vendor_history(request, vendor_rows, location_id)
        elif result is not None and vendor_rows[0]:
            usual = self._vote(request, vendor_rows[0])
            if usual and usual[0].account != result.account_code:
                alternatives.append(self._alt(
                    usual[0].account, 60, "vendor_history",
                    f"usually coded to {usual[0].account} for this vendor"))
        if result is None:
            result = self._rules(self.fallback, request, vendor_norm, text_norm, currency,
                                 location_id)
        if result is None:
            result = self._from_neighbours(session, request, location_id)
        if result is None and self.llm is not None:
            result = self._from_llm(session, request, location_id, alternatives)
        if result is None:
            result = Categorization(
                None, None, None, location_id, 0,
                f"No rule or past expense matches {request.vendor.strip()!r}; please choose an "
                "account.", "default")
        result = self._capitalize(result, request, text_norm, currency)
        if result.cost_center is None and result.account_code:
            result = replace(result, cost_center=self.book.cost_centers.get(result.account_code))
        if alternatives:
            result = replace(result, alternatives=tuple(alternatives) + result.alternatives)
        if result.location_id is None and len(self.locations) == 1:
            result = replace(result, location_id=next(iter(self.locations.values())))
        return result

    # ------------------------------------------------------------------ steps

    def location_id_of(self, value: str | int | None) -> int | None:
        """A location code or id as an id (None stays None); unknown ones are refused."""
        if value is None or value == "":
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            if value in self.currency_of:
                return value
        elif isinstance(value, str):
            wanted = value.strip().upper()
            for code, loc_id in self.locations.items():
                if code.upper() == wanted:
                    return loc_id
            if wanted in self.location_names:
                return self.location_names[wanted]
        known = ", ".join(sorted(self.locations)) or "none yet"
        raise CategorizationError(f"unknown location {value!r} (known: {known})")

    def _name(self, code: str) -> str:
        return self.accounts.get(code, code)

    def _alt(self, code: str, pct: int, source: str, reason: str) -> Alternative:
        return Alternative(code, self._name(code), pct, source, reason)

    def _rules(self, rules: Sequence[Rule], request: CategorizationRequest, vendor_norm: str,
               text_norm: str, currency: str, location_id: int | None) -> Categorization | None:
        matched = []
        for rule in rules:
            parts = rule.explain_match(vendor_norm, text_norm, request.amount_cents,
                                       request.mcc, currency)
            if parts is not None and rule.account in self.accounts:
                matched.append((rule, parts))
        if not matched:
            return None
        rule, parts = matched[0]
        loc = location_id
        if loc is None and rule.location:
            loc = self.locations.get(rule.location)
        why = " and ".join(parts)
        reason = f"Rule {rule.id}: {why} → {rule.account} {self._name(rule.account)}"
        if rule.reason:
            reason += f" ({rule.reason})"
        alts = tuple(self._alt(r.account, 70, "rule", f"rule {r.id} also matches")
                     for r, _ in matched[1:3] if r.account != rule.account)
        confidence = 90 if rule.fallback else 97
        return Categorization(rule.account, self._name(rule.account), rule.cost_center, loc,
                              confidence, reason, "rule", rule_id=rule.id, alternatives=alts)

    def _history_filter(self, stmt: Any) -> Any:
        stmt = stmt.where(Expense.account_code.is_not(None),  # type: ignore[union-attr]
                          Expense.status != ExpenseStatus.DISCARDED.value)
        if self.as_of is not None:
            stmt = stmt.where(Expense.expense_date < self.as_of)
        return stmt

    def _vendor_history(self, session: Session, vendor_norm: str) -> tuple[list[PastExpense], bool]:
        """Past expenses of this vendor: (rows, exact). Exact normalized name first, then a
        close name (rapidfuzz ratio ≥ 90, or one name's words contained in the other's)."""
        names = list(session.execute(self._history_filter(
            select(Expense.vendor_name).distinct())).scalars())
        exact = [n for n in names if normalize_vendor(n) == vendor_norm]
        is_exact = bool(exact)
        if not exact:
            exact = [n for n in names if _close_vendor(vendor_norm, normalize_vendor(n))]
        if not exact:
            return [], False
        stmt = self._history_filter(select(
            Expense.id, Expense.vendor_name, Expense.description, Expense.account_code,
            Expense.cost_center, Expense.location_id, Expense.amount_cents, Expense.expense_date,
        ).where(Expense.vendor_name.in_(exact))).order_by(  # type: ignore[attr-defined]
            Expense.expense_date.desc()).limit(self.history_limit)  # type: ignore[attr-defined]
        rows = [PastExpense(i, v, d or "", a, c, loc, amt, day)
                for i, v, d, a, c, loc, amt, day in session.execute(stmt)
                if a in self.accounts]
        return rows, is_exact

    def _vote(self, request: CategorizationRequest, rows: Sequence[PastExpense],
              k: int = 9) -> list[_Vote]:
        """Past rows vote for their account; the most similar (words, amount, recency) weigh
        most. Returns the votes, best first."""
        want = _words(request.description)
        latest = max(r.expense_date for r in rows)
        scored = []
        for r in rows:
            amount = _amount_similarity(r.amount_cents, request.amount_cents)
            words = _jaccard(_words(r.description), want)
            sim = (6 * words + 4 * amount) // 10 if want else amount
            recency = PER_MILLE * 365 // (365 + (latest - r.expense_date).days)
            scored.append((sim, recency, r))
        scored.sort(key=lambda t: (-t[0], -t[1]))
        votes: dict[str, _Vote] = {}
        for sim, recency, r in scored[:k]:
            v = votes.setdefault(r.account_code, _Vote(r.account_code, 0, []))
            v.weight += (50 + sim) ** 2 * recency
            v.rows.append(r)
        # the vendor's overall habit breaks near-ties (2% of one perfect vote)
        overall = Counter(r.account_code for r in rows)
        for v in votes.values():
            v.weight += 20 * PER_MILLE ** 2 * overall[v.account] // len(rows)
        return sorted(votes.values(), key=lambda v: -v.weight)

    def _from_vendor_history(self, request: CategorizationRequest,
                             found: tuple[list[PastExpense], bool],
                             location_id: int | None) -> Categorization | None:
        rows, exact = found
        votes = self._vote(request, rows)
        if not votes:
            return None
        best = votes[0]
        total = sum(v.weight for v in votes)
        same = sum(1 for r in rows if r.account_code == best.account)
        consistent = same == len(rows)
        n = len(rows)
        confidence = 100 * best.weight * (n + 2) // (total * (n + 3))
        if not exact:
            confidence = confidence * 9 // 10
        confidence = max(35, min(96, confidence))
        cost_center = Counter(r.cost_center for r in best.rows if r.cost_center).most_common(1)
        loc = location_id
        if loc is None:
            loc = Counter(r.location_id for r in rows).most_common(1)[0][0]
        vendor_label = rows[0].vendor if exact else f"{rows[0].vendor} (a close match)"
        if consistent:
            reason = (f"All {len(rows)} past expense{'s' if len(rows) > 1 else ''} from "
                      f"{vendor_label} went to {best.account} {self._name(best.account)}")
        else:
            example = best.rows[0]
            reason = (f"{same} of {len(rows)} past expenses from {vendor_label} went to "
                      f"{best.account} {self._name(best.account)}; the most similar one was "
                      f"{format_cents(example.amount_cents)} on {example.expense_date}"
                      + (f" ({example.description!r})" if example.description else ""))
        alts = tuple(self._alt(v.account, 100 * v.weight // total, "vendor_history",
                               f"{len(v.rows)} similar past expense(s) went there")
                     for v in votes[1:3])
        return Categorization(best.account, self._name(best.account),
                              cost_center[0][0] if cost_center else None, loc, confidence,
                              reason, "vendor_history", alternatives=alts)

    def _from_neighbours(self, session: Session, request: CategorizationRequest,
                         location_id: int | None) -> Categorization | None:
        if self.history is not None:
            try:
                found = self.history.similar(request.vendor, request.description, k=24,
                                             location_id=None, before=self.as_of)
                found = _distinct_neighbours(found or [])[:8]
            except Exception:  # the vector store is optional: fall back to the SQL history
                log.warning("expense history search failed; using the SQL history", exc_info=True)
                found = None
            if found:
                return self._neighbour_vote(
                    [(_per_mille(n.similarity), str(n.account_code), n.cost_center,
                      n.location_id, n.vendor, n.description or "") for n in found
                     if n.account_code],
                    location_id, min_similarity=450, cap=80)
        return self._neighbour_vote(self._sql_neighbours(session, request), location_id,
                                    min_similarity=300, cap=75)

    def _sql_neighbours(self, session: Session, request: CategorizationRequest) -> list[tuple[
            int, str, str | None, int | None, str, str]]:
        """Word overlap between this expense and recent history (no vector store needed)."""
        want = _words(f"{normalize_vendor(request.vendor)} {request.description or ''}")
        if not want:
            return []
        stmt = self._history_filter(select(
            Expense.vendor_name, Expense.description, Expense.account_code, Expense.cost_center,
            Expense.location_id, Expense.amount_cents,
        )).order_by(Expense.expense_date.desc()).limit(self.history_limit)  # type: ignore[attr-defined]
        seen: dict[tuple[str, str, str], tuple[int, str, str | None, int | None, str, str]] = {}
        for vendor, desc, account, center, loc, amount in session.execute(stmt):
            if account not in self.accounts:
                continue
            key = (normalize_vendor(vendor), desc or "", account)
            if key in seen:
                continue
            have = _words(f"{key[0]} {desc or ''}")
            amount_sim = _amount_similarity(amount, request.amount_cents)
            sim = _jaccard(have, want) * (4 * PER_MILLE + amount_sim) // (5 * PER_MILLE)
            if sim > 0:
                seen[key] = (sim, account, center, loc, vendor, desc or "")
        return sorted(seen.values(), key=lambda t: -t[0])[:8]

    def _neighbour_vote(self, found: Sequence[tuple[int, str, str | None, int | None, str, str]],
                        location_id: int | None, *, min_similarity: int,
                        cap: int) -> Categorization | None:
        found = [f for f in found if f[1] in self.accounts]
        if not found or max(f[0] for f in found) < min_similarity:
            return None
        weights: dict[str, int] = defaultdict(int)
        for sim, account, *_ in found:
            weights[account] += sim ** 2
        total = sum(weights.values())
        account, weight = max(weights.items(), key=lambda kv: kv[1])
        top = max((f for f in found if f[1] == account), key=lambda f: f[0])
        confidence = min(cap, 100 * weight * min(PER_MILLE, top[0] + 300) // (total * PER_MILLE))
        reason = (f"Similar past expense: {top[4]}"
                  + (f" ({top[5]!r})" if top[5] else "")
                  + f" went to {account} {self._name(account)}")
        alts = tuple(self._alt(a, 100 * w // total, "history", "similar past expenses")
                     for a, w in sorted(weights.items(), key=lambda kv: -kv[1])
                     if a != account)[:2]
        return Categorization(account, self._name(account), top[2],
                              location_id if location_id is not None else top[3],
                              max(20, confidence), reason, "history", alternatives=alts)

    def _from_llm(self, session: Session, request: CategorizationRequest, location_id: int | None,
                  alternatives: list[Alternative]) -> Categorization | None:
        assert self.llm is not None
        capex = self.book.capex.capex_accounts
        choices = [AccountChoice(c, n, c in capex) for c, n in sorted(self.accounts.items())]
        examples = self._vendor_history(session, normalize_vendor(request.vendor))[0][:5]
        try:
            answer = self.llm.suggest(request, choices, examples)
        except Exception:  # an unreachable model must not break categorization
            log.warning("the LLM categorizer failed; a person will choose", exc_info=True)
            return None
        if answer is None:
            return None
        code = str(answer.account_code).strip()
        if code not in self.accounts:
            alternatives.append(Alternative(code[:10], "not allowed", 0, "llm",
                                            "the language model suggested an account that is "
                                            "not an expense or CapEx account; ignored"))
            return None
        pct = answer.confidence_pct if isinstance(answer.confidence_pct, int) else 50
        reason = "Suggested by the language model"
        if answer.reason:
            reason += ": " + " ".join(str(answer.reason).split())[:200]
        center = answer.cost_center if isinstance(answer.cost_center, str) else None
        return Categorization(code, self._name(code), center[:40] if center else None,
                              location_id, max(0, min(70, pct)), reason, "llm")

    def _capitalize(self, result: Categorization, request: CategorizationRequest,
                    text_norm: str, currency: str) -> Categorization:
        cap = self.book.capex
        code = result.account_code
        amount = format_cents(request.amount_cents, currency)
        limit = format_cents(cap.threshold_cents, currency)
        if request.amount_cents >= cap.threshold_cents:
            if code in cap.capex_accounts:
                return replace(result, capitalized=True)
            route = cap.route(text_norm)
            target, why = None, ""
            if route and (code is None or code in cap.eligible_accounts):
                target, why = route[0], f"it mentions {route[1]!r}"
            elif code in cap.without_keyword:
                target, why = cap.default_account, f"{code} items this large are assets"
            if target is None or target not in self.accounts:
                return result
            alt = (self._alt(code, result.confidence_pct, result.source,
                             "the account before capitalization"),) if code else ()
            reason = (f"{amount} is at or above the capitalization threshold of {limit} and "
                      f"{why}, so it is capitalized to {target} {self._name(target)}")
            if code:
                reason += f" (instead of {code} {self._name(code)}, {_proposed_by(result)})"
            return replace(result, account_code=target, account_name=self._name(target),
                           cost_center=result.cost_center or self.book.cost_centers.get(target),
                           confidence_pct=max(result.confidence_pct, 60) if code else 60,
                           reason=reason, capitalized=True,
                           # with nothing else known, the capitalization policy is the rule
                           source=result.source if code else "rule",
                           rule_id=result.rule_id if code else "capitalization",
                           alternatives=alt + result.alternatives)
        below = cap.expense_below_threshold
        if (code in cap.capex_accounts and below and result.source != "rule"
                and below in self.accounts):
            reason = (f"{amount} is below the capitalization threshold of {limit}, so it is "
                      f"expensed to {below} {self._name(below)} (instead of {code} "
                      f"{self._name(code)}, {_proposed_by(result)})")
            return replace(result, account_code=below, account_name=self._name(below),
                           reason=reason, cost_center=result.cost_center,
                           alternatives=(self._alt(code, result.confidence_pct, result.source,
                                                   "capitalize it anyway"),) + result.alternatives)
        return result


def _distinct_neighbours(found: Sequence[Any]) -> list[Any]:
    """One neighbour per (vendor, description, account): repeats of a monthly charge would
    otherwise fill every slot."""
    seen: set[tuple[str, str, str]] = set()
    out = []
    for n in found:
        key = (normalize_vendor(n.vendor), normalize_text(n.description), str(n.account_code))
        if key not in seen:
            seen.add(key)
            out.append(n)
    return out


def _proposed_by(result: Categorization) -> str:
    if result.rule_id:
        return f"proposed by rule {result.rule_id}"
    return {"vendor_history": "proposed by this vendor's history",
            "history": "proposed by similar past expenses",
            "llm": "proposed by the language model"}.get(result.source, "proposed")


def _close_vendor(a: str, b: str) -> bool:
    if not a or not b:
        return False
    ta, tb = set(a.split()), set(b.split())
    small, big = (ta, tb) if len(ta) <= len(tb) else (tb, ta)
    if small <= big and any(len(t) >= 4 for t in small):
        return True
    from rapidfuzz import fuzz

    return fuzz.ratio(a, b) >= 90


def categorize(services: Services, request: CategorizationRequest, *,
               history: SimilarHistory | None = None,
               llm: LlmCategorizer | None = None) -> Categorization:
    """Categorize one expense (reads only; nothing is written)."""
    with services.session() as session:
        return Categorizer.load(services, session, history=history, llm=llm).categorize(
            session, request)


def default_history(services: Services) -> SimilarHistory | None:
    """The ChromaDB expense history of :mod:`finance.kb`, or None when it is not available."""
    try:
        from finance.kb import open_history
    except ImportError:
        return None
    try:
        history = open_history(services)
        return history if history.count() else None
    except Exception:  # the vector store is optional; the SQL history still works
        log.warning("could not open the expense history index", exc_info=True)
        return None
