"""Sales tax: rates per location and invoice line kind, loaded from ``knowledge/tax_rates.yaml``.

Rates are integer parts per million at rest (8.875 % = 88_750 ppm). Tax is computed on the
already-rounded line amount, half up, per line.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

import yaml
from sqlalchemy import select
from sqlmodel import Session

from finance import audit
from finance.models import LineKind, Location, TaxRate
from finance.money import MoneyError, round_half_up, to_decimal

PPM = 1_000_000


class TaxError(ValueError):
    """A tax table that cannot be used; the message names the file and the entry."""


def percent_to_ppm(percent: object) -> int:
    try:
        value = to_decimal(str(percent))
    except MoneyError:
        raise TaxError(f"not a tax rate: {percent!r}") from None
    if not Decimal(0) <= value <= Decimal(100):
        raise TaxError(f"tax rate must be between 0 and 100 percent, got {percent}")
    ppm = value * 10_000
    if ppm != ppm.to_integral_value():
        raise TaxError(f"tax rate {percent}% has more than four decimal places")
    return int(ppm)


def tax_on(amount_cents: int, rate_ppm: int) -> int:
    """Tax on a rounded line amount, rounded half up (negative for credit lines)."""
    return round_half_up(Decimal(amount_cents) * rate_ppm / PPM)


def ppm_to_percent(rate_ppm: int) -> Decimal:
    return (Decimal(rate_ppm) / 10_000).normalize()


@dataclass(frozen=True)
class TaxTable:
    """Rates in force, looked up by (location id, line kind, date) without further queries."""

    rates: dict[tuple[int, str], list[tuple[date, date | None, int]]]

    @classmethod
    def load(cls, session: Session) -> TaxTable:
        rates: dict[tuple[int, str], list[tuple[date, date | None, int]]] = defaultdict(list)
        for row in session.execute(select(TaxRate).order_by(TaxRate.effective_from)).scalars():
            rates[(row.location_id, row.line_kind)].append(
                (row.effective_from, row.effective_to, row.rate_ppm)
            )
        return cls(dict(rates))

    def rate_ppm(self, location_id: int, line_kind: str, on: date) -> int:
        rate = 0
        for start, end, ppm in self.rates.get((location_id, line_kind), []):
            if start <= on and (end is None or on <= end):
                rate = ppm
        return rate


def sync_tax_rates(session: Session, knowledge_dir: Path, *, actor: str = "system") -> int:
    """Load the rate table for the locations that exist; returns rows added.

    A rate already present for (location, kind, effective_from) is left alone when equal and
    refused when different (change a rate with a new ``effective_from``, never in place).
    """
    path = knowledge_dir / "tax_rates.yaml"
    if not path.exists():
        return 0
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    locations = {loc.code: loc.id for loc in session.execute(select(Location)).scalars()}
    existing = {
        (r.location_id, r.line_kind, r.effective_from): r
        for r in session.execute(select(TaxRate)).scalars()
    }
    kinds = {k.value for k in LineKind}
    added = 0
    for code, spec in (data.get("locations") or {}).items():
        loc_id = locations.get(str(code))
        if loc_id is None:
            continue  # the file may describe locations this space does not have
        start = spec.get("effective_from") or date(2000, 1, 1)
        if not isinstance(start, date):
            raise TaxError(f"{path.name}: {code}.effective_from must be a date (YYYY-MM-DD)")
        for kind, percent in (spec.get("rates") or {}).items():
            if kind not in kinds:
                raise TaxError(f"{path.name}: {code} names unknown line kind {kind!r}")
            ppm = percent_to_ppm(percent)
            found = existing.get((loc_id, kind, start))
            if found is not None:
                if found.rate_ppm != ppm:
                    raise TaxError(
                        f"{path.name}: {code}/{kind} from {start} is already "
                        f"{ppm_to_percent(found.rate_ppm)}%; add a new effective_from instead "
                        "of editing a rate in force"
                    )
                continue
            session.add(TaxRate(location_id=loc_id, line_kind=kind,
                                name=f"{spec.get('name') or code} {kind}", rate_ppm=ppm,
                                effective_from=start))
            added += 1
    if added:
        audit.record(session, actor=actor, action="tax.sync", entity_type="tax_rate",
                     details={"added": added, "file": path.name})
    session.flush()
    return added
