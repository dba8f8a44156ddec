"""Where a ledger's schema stands against the code's migration heads, without Alembic or SQLAlchemy.

The heads come from the ``revision`` / ``down_revision`` lines of the revision files (importing
Alembic costs half a second, parsing whole migrations more); the messages are the ones every way
into the ledger gives, so ``open_ledger`` and the driver-level reads (``reads``) fail alike.
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass
from pathlib import Path

from wflo_core.config import redact_url
from wflo_core.errors import ConfigError, first_line

_VERSIONS = Path(__file__).parent / "migrations" / "versions"
_REVISION_LINE = re.compile(r"^(revision|down_revision)\s*(?::[^=\n]*)?=\s*(.+?)\s*$", re.MULTILINE)
"""``revision = '0002'`` / ``down_revision: str | None = '0001'``, as Alembic's templates write them."""


@dataclass(frozen=True, slots=True)
class SchemaState:
    """Where a ledger's schema is (``revision`` None = never migrated) against the code's heads."""

    revision: str | None
    heads: tuple[str, ...]

    @property
    def at_head(self) -> bool:
        return self.revision in self.heads


@functools.cache
def migration_heads() -> tuple[str, ...]:
    """Revisions no other revision builds on, read from the files Alembic's template writes."""
    revisions: dict[str, tuple[str, ...]] = {}
    for path in _VERSIONS.glob("*.py"):
        fields = {name: ast.literal_eval(value) for name, value in _REVISION_LINE.findall(path.read_text())}
        down = fields.get("down_revision")
        revisions[str(fields["revision"])] = tuple(down) if isinstance(down, tuple | list) else (
            (str(down),) if down else ()
        )
    parents = {parent for downs in revisions.values() for parent in downs}
    return tuple(sorted(set(revisions) - parents))


def unreachable(url: str, error: BaseException) -> ConfigError:
    """The one line for a ledger the driver could not reach or read; ``reason`` is the driver's first line."""
    reason = first_line(error)
    return ConfigError(
        f"ledger at {redact_url(url)} is unreachable ({reason}); check WFLO_DATABASE_URL and that "
        f"the database server is running",
        reason=reason,
    )


def refuse_unless_at_head(state: SchemaState, url: str) -> None:
    """``ConfigError`` naming the fix unless the ledger schema is at the head revision."""
    if not state.at_head:
        raise ConfigError(
            f"ledger at {redact_url(url)} is at revision {state.revision or 'none (empty database)'}, "
            f"expected {', '.join(state.heads)}; run `wflo db upgrade`"
        )
