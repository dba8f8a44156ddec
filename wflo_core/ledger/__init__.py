"""The ledger: SQLAlchemy models, engines, migrations and the queries wflo runs against them.

``open_ledger(settings)`` is the checked way in; it loads on first use (PEP 562), so importing a
leaf such as ``wflo_core.ledger.types`` does not pay for SQLAlchemy and Alembic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wflo_core.lazy import lazy_exports

if TYPE_CHECKING:
    from wflo_core.ledger.access import open_ledger as open_ledger

__all__ = ["open_ledger"]
__getattr__ = lazy_exports(__name__, {"open_ledger": "wflo_core.ledger.access"})
