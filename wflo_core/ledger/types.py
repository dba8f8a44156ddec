"""Column types that behave the same on Postgres and SQLite."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Dialect, Numeric
from sqlalchemy.types import TypeDecorator

from wflo_core.ledger.units import MONEY_SCALE, from_units, quantize_usd, to_units


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
            return to_units(amount)
        return amount

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return from_units(value)
        return quantize_usd(Decimal(value))

    @property
    def python_type(self) -> type:
        return Decimal
