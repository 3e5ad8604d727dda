"""The detectors' thresholds, read from ``knowledge/anomaly_rules.yaml`` and validated once."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from finance.models import Severity

RULES_FILE = "anomaly_rules.yaml"
KINDS = (
    "invoice_jump",
    "duplicate_charge",
    "duplicate_receipt",
    "duplicate_customer",
    "deposit_misposted",
    "capex_as_opex",
    "vendor_is_employee",
    "just_under_threshold",
    "contractor_missing_tin",
    "unrecognized_deferred",
)
SEVERITY_ORDER = (Severity.LOW, Severity.MEDIUM, Severity.HIGH)


class AnomalyError(ValueError):
    """Bad anomaly input or rules; the message says what is wrong in plain words."""


@dataclass(frozen=True)
class AnomalyRules:
    """Every threshold the detectors use (see the yaml file for what each one means)."""

    high_cents: int
    medium_cents: int
    min_severity: dict[str, Severity]
    jump_multiple: Decimal
    jump_history: int
    dup_tolerance: Decimal  # a fraction: 0.005 for 0.5 %
    dup_window_days: int
    dup_recurring_min_gap_days: int
    dup_recurring_min_count: int
    dup_history_days: int
    legal_suffixes: frozenset[str]
    freemail_domains: frozenset[str]
    dup_customer_max_domain_group: int
    deposit_account: str
    capex_threshold_cents: int
    capex_watch_accounts: tuple[str, ...]
    employee_strong_signals: frozenset[str]
    employee_weak_signals: frozenset[str]
    approval_thresholds_cents: tuple[int, ...]
    under_band: Decimal  # a fraction: 0.90
    under_repeat_count: int
    under_window_days: int
    tin_thresholds: tuple[tuple[int, int], ...]  # (from_year, cents), ascending
    tin_excluded_methods: frozenset[str]
    contractor_accounts: tuple[str, ...]
    deferred_account: str
    deferred_grace_days: int

    def severity(self, kind: str, amount_cents: int | None) -> Severity:
        """Severity by amount at stake, never below the kind's floor."""
        level = Severity.LOW
        if amount_cents is not None and amount_cents >= self.high_cents:
            level = Severity.HIGH
        elif amount_cents is not None and amount_cents >= self.medium_cents:
            level = Severity.MEDIUM
        return max_severity(level, self.min_severity.get(kind, Severity.LOW))

    def tin_threshold(self, year: int) -> int:
        """The 1099-NEC reporting threshold for payments made in ``year``."""
        found = None
        for from_year, cents in self.tin_thresholds:
            if year >= from_year:
                found = cents
        if found is None:
            raise AnomalyError(f"{RULES_FILE}: no 1099 threshold covers the year {year}")
        return found


def max_severity(a: Severity | str, b: Severity | str) -> Severity:
    return SEVERITY_ORDER[max(SEVERITY_ORDER.index(Severity(a)), SEVERITY_ORDER.index(Severity(b)))]


def load_rules(knowledge_dir: Path, *, capitalization_threshold_cents: int | None = None
               ) -> AnomalyRules:
    """Read and validate the rules file; ``AnomalyError`` names the bad entry."""
    path = knowledge_dir / RULES_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise AnomalyError(f"anomaly rules not found at {path}") from None
    except yaml.YAMLError as exc:
        raise AnomalyError(f"{RULES_FILE} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise AnomalyError(f"{RULES_FILE} must be a mapping of sections")
    r = _Reader(data)
    floors: dict[str, Severity] = {}
    for kind in KINDS:
        value = r.section(kind).get("min_severity")
        if value is not None:
            try:
                floors[kind] = Severity(value)
            except ValueError:
                raise AnomalyError(f"{RULES_FILE}: {kind}.min_severity must be low, medium or "
                                   f"high, got {value!r}") from None
    tin_rows = []
    for i, row in enumerate(r.section("contractor_missing_tin").get("thresholds_by_year") or []):
        if not isinstance(row, dict):
            raise AnomalyError(f"{RULES_FILE}: thresholds_by_year #{i + 1} must be a mapping")
        tin_rows.append((_int(row.get("from_year"), f"thresholds_by_year #{i + 1}.from_year"),
                         _int(row.get("threshold_cents"),
                              f"thresholds_by_year #{i + 1}.threshold_cents")))
    if not tin_rows:
        raise AnomalyError(f"{RULES_FILE}: contractor_missing_tin.thresholds_by_year is empty")
    thresholds = tuple(r.int_("just_under_threshold", "thresholds_cents", item)
                       for item in r.list_("just_under_threshold", "thresholds_cents"))
    rules = AnomalyRules(
        high_cents=r.int_("severity", "high_cents"),
        medium_cents=r.int_("severity", "medium_cents"),
        min_severity=floors,
        jump_multiple=r.dec("invoice_jump", "multiple"),
        jump_history=r.int_("invoice_jump", "history"),
        dup_tolerance=r.dec("duplicate_charge", "tolerance_percent") / 100,
        dup_window_days=r.int_("duplicate_charge", "window_days"),
        dup_recurring_min_gap_days=r.int_("duplicate_charge", "recurring_min_gap_days"),
        dup_recurring_min_count=r.int_("duplicate_charge", "recurring_min_count"),
        dup_history_days=r.int_("duplicate_charge", "history_days"),
        legal_suffixes=frozenset(str(s).lower() for s in
                                 r.list_("duplicate_customer", "legal_suffixes")),
        freemail_domains=frozenset(str(s).lower() for s in
                                   r.list_("duplicate_customer", "freemail_domains")),
        dup_customer_max_domain_group=r.int_("duplicate_customer", "max_domain_group"),
        deposit_account=str(r.section("deposit_misposted").get("deposit_account", "2300")),
        capex_threshold_cents=(capitalization_threshold_cents
                               if capitalization_threshold_cents is not None
                               else r.int_("capex_as_opex", "threshold_cents")),
        capex_watch_accounts=tuple(str(a) for a in r.list_("capex_as_opex", "watch_accounts")),
        employee_strong_signals=frozenset(r.list_("vendor_is_employee", "strong_signals")),
        employee_weak_signals=frozenset(r.list_("vendor_is_employee", "weak_signals")),
        approval_thresholds_cents=tuple(sorted(thresholds)),
        under_band=r.dec("just_under_threshold", "band_percent") / 100,
        under_repeat_count=r.int_("just_under_threshold", "repeat_count"),
        under_window_days=r.int_("just_under_threshold", "window_days"),
        tin_thresholds=tuple(sorted(tin_rows)),
        tin_excluded_methods=frozenset(
            str(m) for m in r.list_("contractor_missing_tin", "excluded_payment_methods")),
        contractor_accounts=tuple(str(a) for a in
                                  r.list_("contractor_missing_tin", "contractor_accounts")),
        deferred_account=str(r.section("unrecognized_deferred").get("deferred_account", "2200")),
        deferred_grace_days=r.int_("unrecognized_deferred", "grace_days"),
    )
    unknown = (rules.employee_strong_signals | rules.employee_weak_signals) - {
        "tin", "address", "name", "bank_last4"}
    if unknown:
        raise AnomalyError(f"{RULES_FILE}: unknown vendor_is_employee signals "
                           f"{', '.join(sorted(unknown))} (use tin, address, name, bank_last4)")
    if rules.medium_cents > rules.high_cents:
        raise AnomalyError(f"{RULES_FILE}: severity.medium_cents must not exceed high_cents")
    if not 0 < rules.under_band <= 1:
        raise AnomalyError(f"{RULES_FILE}: just_under_threshold.band_percent must be in (0, 100]")
    if rules.jump_multiple <= 1 or rules.jump_history < 1:
        raise AnomalyError(f"{RULES_FILE}: invoice_jump needs multiple > 1 and history >= 1")
    return rules


class _Reader:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def section(self, name: str) -> dict[str, Any]:
        value = self.data.get(name) or {}
        if not isinstance(value, dict):
            raise AnomalyError(f"{RULES_FILE}: section {name} must be a mapping")
        return value

    def raw(self, section: str, key: str) -> Any:
        value = self.section(section).get(key)
        if value is None:
            raise AnomalyError(f"{RULES_FILE}: {section}.{key} is missing")
        return value

    def int_(self, section: str, key: str, value: Any = None) -> int:
        return _int(self.raw(section, key) if value is None else value, f"{section}.{key}")

    def dec(self, section: str, key: str) -> Decimal:
        value = self.raw(section, key)
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise AnomalyError(f"{RULES_FILE}: {section}.{key} must be a whole number or a "
                               f'quoted decimal such as "0.5", got {value!r}')
        try:
            result = Decimal(str(value))
        except InvalidOperation:
            raise AnomalyError(f"{RULES_FILE}: {section}.{key} must be a number, got "
                               f"{value!r}") from None
        if not result.is_finite() or result < 0:
            raise AnomalyError(f"{RULES_FILE}: {section}.{key} must be a positive number")
        return result

    def list_(self, section: str, key: str) -> list[Any]:
        value = self.raw(section, key)
        if not isinstance(value, list):
            raise AnomalyError(f"{RULES_FILE}: {section}.{key} must be a list")
        return value


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise AnomalyError(f"{RULES_FILE}: {name} must be a whole number >= 0, got {value!r}")
    return value
