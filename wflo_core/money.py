"""USD amounts from user input: exact ``Decimal``, finite and non-negative, or one clear ``ConfigError``."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from wflo_core.errors import ConfigError


def parse_usd(value: Decimal | str | int | float, what: str) -> Decimal:
    """``value`` as a USD amount; ``what`` names the setting, tag or argument in the error.

    A float literal is read through its shortest repr (``0.2`` → ``Decimal('0.2')``), never its binary value.
    """
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ConfigError(f"{what} must be a decimal USD amount like '0.50', got {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ConfigError(f"{what} must be a finite amount >= 0, got {value!r}")
    return amount
