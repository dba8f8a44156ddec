"""How the ledger stores USD: 10 decimal places, and on SQLite an integer count of 1e-10 USD.

Plain ``Decimal`` arithmetic, so the column type (``types.Money``) and the driver-level reads
(``reads``) share one definition without the second importing SQLAlchemy.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

MONEY_SCALE = 10
"""Digits after the decimal point kept for USD amounts (1e-10 USD)."""
_QUANTUM = Decimal(1).scaleb(-MONEY_SCALE)
_FACTOR: int = 10**MONEY_SCALE


def quantize_usd(value: Decimal) -> Decimal:
    return value.quantize(_QUANTUM, rounding=ROUND_HALF_EVEN)


def to_units(amount: Decimal) -> int:
    """``amount`` (already quantized) as SQLite stores it."""
    return int(amount * _FACTOR)


def from_units(units: int) -> Decimal:
    """A SQLite money value (or a SUM of them) back in USD."""
    return (Decimal(int(units)) / _FACTOR).quantize(_QUANTUM)
