"""Column types that behave the same on Postgres and SQLite."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import BigInteger, Dialect, Numeric
from sqlalchemy.types import TypeDecorator

MONEY_SCALE = 10
"""Digits after the decimal point kept for USD amounts (1e-10 USD)."""
_QUANTUM = Decimal(1).scaleb(-MONEY_SCALE)
_FACTOR: int = 10**MONEY_SCALE


def quantize_usd(value: Decimal) -> Decimal:
    return value.quantize(_QUANTUM, rounding=ROUND_HALF_EVEN)


class Money(TypeDecorator[Decimal]):
    """USD as ``NUMERIC(20, 10)`` on Postgres and as an integer count of 1e-10 USD on SQLite.

    SQLite has no decimal type (SQLAlchemy would round-trip through float), so it stores scaled
    integers: sums and comparisons in SQL stay exact on both backends.
    """

    impl = Numeric(20, MONEY_SCALE, asdecimal=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(20, MONEY_SCALE, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, float):
            raise TypeError("money must be Decimal, not float")
        amount = quantize_usd(Decimal(value))
        if dialect.name == "sqlite":
            return int(amount * _FACTOR)
        return amount

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return (Decimal(int(value)) / _FACTOR).quantize(_QUANTUM)
        return quantize_usd(Decimal(value))

    @property
    def python_type(self) -> type:
        return Decimal
