"""Money: integer minor units (cents) at rest, ``Decimal`` inside calculations, never float.

One rounding policy for the whole product: ROUND_HALF_UP to the cent, applied per line.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

CENT = Decimal("0.01")


class MoneyError(ValueError):
    """A value that cannot be money (float, bool, junk text, fractional cents at rest)."""


def to_decimal(value: object) -> Decimal:
    """Convert ``int``, ``Decimal`` or decimal text to ``Decimal``; refuse floats and bools."""
    if isinstance(value, bool):
        raise MoneyError("a boolean is not an amount")
    if isinstance(value, float):
        raise MoneyError("floats are never used for money; pass a Decimal, an int or text")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise MoneyError(f"not a finite amount: {value}")
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str):
        text = value.strip().replace(",", "").replace("$", "")
        if text.startswith("(") and text.endswith(")"):
            text = "-" + text[1:-1]
        try:
            result = Decimal(text)
        except InvalidOperation:
            raise MoneyError(f"not an amount: {value!r}") from None
        if not result.is_finite():
            raise MoneyError(f"not a finite amount: {value!r}")
        return result
    raise MoneyError(f"not an amount: {value!r}")


def round_cents(amount: Decimal) -> int:
    """Round a Decimal amount in currency units (dollars) to integer cents, half up."""
    return int(to_decimal(amount).quantize(CENT, rounding=ROUND_HALF_UP) * 100)


def round_half_up(value: Decimal) -> int:
    """Round a Decimal number of cents to whole cents, half up (away from zero on .5)."""
    return int(to_decimal(value).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def parse_amount(text: object) -> int:
    """Parse a user-given amount in currency units ("600", "600.00", "$1,250.5") to cents.

    More than two decimal places is refused rather than silently rounded.
    """
    amount = to_decimal(text)
    if amount != amount.quantize(CENT):
        raise MoneyError(f"amount has fractions of a cent: {text!r}")
    return int(amount * 100)


def cents_to_decimal(cents: int) -> Decimal:
    """Cents as a Decimal in currency units (for display and export only)."""
    _require_cents(cents)
    return (Decimal(cents) / 100).quantize(CENT)


def format_cents(cents: int, currency: str = "USD") -> str:
    """Human display: ``$1,234.56`` / ``-$5.00``; other currencies as ``1,234.56 EUR``."""
    _require_cents(cents)
    sign = "-" if cents < 0 else ""
    units = f"{abs(cents) // 100:,}.{abs(cents) % 100:02d}"
    if currency == "USD":
        return f"{sign}${units}"
    return f"{sign}{units} {currency}"


def percent_of(cents: int, rate_percent: Decimal) -> int:
    """``rate_percent`` % of an amount in cents, rounded half up (tax on a rounded line)."""
    _require_cents(cents)
    return round_half_up(Decimal(cents) * to_decimal(rate_percent) / 100)


def allocate(total_cents: int, weights: Sequence[int | Decimal]) -> list[int]:
    """Split ``total_cents`` in proportion to ``weights``; the parts always sum to the total.

    Largest-remainder method: each part gets the floor of its exact share, and the cents left
    over go to the parts with the largest remainders (earliest first on ties). Negative totals
    are split like positive ones and negated.
    """
    _require_cents(total_cents)
    if not weights:
        raise MoneyError("cannot allocate over no weights")
    ws = [to_decimal(w) for w in weights]
    if any(w < 0 for w in ws):
        raise MoneyError("allocation weights must not be negative")
    weight_sum = sum(ws, Decimal(0))
    if weight_sum == 0:
        raise MoneyError("allocation weights must not all be zero")
    sign = -1 if total_cents < 0 else 1
    total = abs(total_cents)
    exact = [Decimal(total) * w / weight_sum for w in ws]
    parts = [int(e) for e in exact]  # floor: every e is >= 0
    leftover = total - sum(parts)
    order = sorted(range(len(ws)), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in order[:leftover]:
        parts[i] += 1
    return [sign * p for p in parts]


def _require_cents(cents: object) -> None:
    if isinstance(cents, bool) or not isinstance(cents, int):
        raise MoneyError(f"amounts at rest are integer cents, got {type(cents).__name__}")
