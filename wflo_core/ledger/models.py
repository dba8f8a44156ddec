"""The ledger schema: what ran, what each LLM call cost, what budgets hold, and what is still to publish.

SQLAlchemy 2 declarative models. Money columns use :class:`Money` (``NUMERIC(20,10)``; exact on
SQLite too). Constraint names follow one convention so Alembic migrations stay deterministic.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from wflo_core.ledger.reads import BILLED_STATUSES as BILLED_STATUSES
from wflo_core.ledger.types import Money

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BigInteger primary keys autoincrement on SQLite only when declared INTEGER.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


def _ts(nullable: bool = False, **kw: Any) -> Mapped[Any]:
    return mapped_column(DateTime(timezone=True), nullable=nullable, **kw)


def _non_negative(*columns: str) -> tuple[CheckConstraint, ...]:
    return tuple(CheckConstraint(f"{c} >= 0", name=f"{c}_non_negative") for c in columns)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, Decimal: Money()}


class Workflow(Base):
    """A Dagster job or asset graph, by name; runs roll up to it."""

    __tablename__ = "workflows"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = _ts(default=utcnow)

    runs: Mapped[list[Run]] = relationship(back_populates="workflow", cascade="all, delete-orphan",
                                           passive_deletes=True)


class Run(Base):
    """One Dagster run (id = the Dagster run id)."""

    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workflow_id: Mapped[int] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(32), default="running")
    """running, succeeded, failed, canceled, waiting_approval, rolled_back."""
    status_reason: Mapped[str | None] = mapped_column(Text)
    parent_run_id: Mapped[str | None] = mapped_column(String(64), index=True)
    """The run this one resumes or continues (checkpoints and approvals follow the chain)."""
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_at: Mapped[datetime] = _ts(default=utcnow)
    ended_at: Mapped[datetime | None] = _ts(nullable=True)

    workflow: Mapped[Workflow] = relationship(back_populates="runs")
    steps: Mapped[list[Step]] = relationship(back_populates="run", cascade="all, delete-orphan",
                                             passive_deletes=True)


class Step(Base):
    """One attempt of one step (op or asset) of a run."""

    __tablename__ = "steps"
    __table_args__ = (UniqueConstraint("run_id", "step_key", "attempt", name="uq_steps_run_step_attempt"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    step_key: Mapped[str] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    asset_key: Mapped[str | None] = mapped_column(String(255), index=True)
    status: Mapped[str] = mapped_column(String(32), default="running")
    """running, succeeded, failed, crashed, skipped."""
    error: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_at: Mapped[datetime] = _ts(default=utcnow)
    ended_at: Mapped[datetime | None] = _ts(nullable=True)

    run: Mapped[Run] = relationship(back_populates="steps")


class LLMCall(Base):
    """One physical call to a provider (or one cache hit). ``idempotency_key`` makes writes exactly-once."""

    __tablename__ = "llm_calls"
    __table_args__ = (
        *_non_negative("cost_usd", "saved_usd", "bound_usd", "input_tokens", "output_tokens", "cached_input_tokens",
                       "cache_write_tokens", "reasoning_tokens"),
        Index("ix_llm_calls_run_created", "run_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(Text, unique=True)
    """One physical attempt: ``<run>:<step>:<attempt>:<n>`` and ``#<k>`` for the k-th send after the first."""
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step_id: Mapped[int | None] = mapped_column(ForeignKey("steps.id", ondelete="SET NULL"), index=True)
    step_key: Mapped[str | None] = mapped_column(Text)
    asset_key: Mapped[str | None] = mapped_column(String(255))
    parent_call_id: Mapped[int | None] = mapped_column(ForeignKey("llm_calls.id", ondelete="SET NULL"))
    """The call whose agent made this one (sub-agents), for nested roll-ups."""
    provider: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(32))
    """held (in flight), settled (priced from usage), over_bound (settled, usage above the hold),
    estimated (billing unknown: charged at its bound), cache_hit, failed (not billed)."""
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cached_input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cache_write_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    reasoning_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[Decimal] = mapped_column(default=Decimal(0))
    saved_usd: Mapped[Decimal] = mapped_column(default=Decimal(0))
    """For cache hits: what the call would have cost."""
    bound_usd: Mapped[Decimal] = mapped_column(default=Decimal(0), server_default="0")  # as migration 0002 added it
    """The upper bound held before the attempt was sent (what an ``estimated`` attempt is charged)."""
    max_output_tokens: Mapped[int | None] = mapped_column(Integer)
    """The output limit sent with the attempt (after any default or ``fit``)."""
    requested_max_tokens: Mapped[int | None] = mapped_column(Integer)
    """What the caller asked for, when wflo sent a different limit (a default applied, or ``fit``)."""
    price_version: Mapped[str] = mapped_column(String(255))
    cache_key: Mapped[str | None] = mapped_column(String(128))
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = _ts(default=utcnow, index=True)


class Budget(Base):
    """A spending limit for one scope with its running totals.

    ``scope`` is run, workflow, asset, tag, day or month; ``scope_key`` names the instance
    (a run id, job name, asset key, ``team=ml``, ``2026-11-24``, ``2026-11``).
    """

    __tablename__ = "budgets"
    __table_args__ = (
        UniqueConstraint("scope", "scope_key", name="uq_budgets_scope_key"),
        *_non_negative("limit_usd", "spent_usd", "held_usd"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    scope: Mapped[str] = mapped_column(String(32))
    scope_key: Mapped[str] = mapped_column(String(255))
    limit_usd: Mapped[Decimal]
    spent_usd: Mapped[Decimal] = mapped_column(default=Decimal(0))
    held_usd: Mapped[Decimal] = mapped_column(default=Decimal(0))
    on_breach: Mapped[str] = mapped_column(String(16), default="fail")
    """fail: refuse the call; ask: open an approval request."""
    alerts_sent: Mapped[list[int]] = mapped_column(JSON, default=list)
    """Threshold percentages already alerted, so each fires once."""
    created_at: Mapped[datetime] = _ts(default=utcnow)
    updated_at: Mapped[datetime] = _ts(default=utcnow, onupdate=utcnow)


class BudgetHold(Base):
    """An amount reserved against a budget for one call until it settles, is released or expires."""

    __tablename__ = "budget_holds"
    __table_args__ = (
        UniqueConstraint("budget_id", "call_key", name="uq_budget_holds_budget_call"),
        *_non_negative("amount_usd"),
        Index("ix_budget_holds_status_expires", "status", "expires_at"),
        Index("ix_budget_holds_call_key", "call_key"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    budget_id: Mapped[int] = mapped_column(ForeignKey("budgets.id", ondelete="CASCADE"), index=True)
    call_key: Mapped[str] = mapped_column(Text)
    run_id: Mapped[str | None] = mapped_column(String(64))
    amount_usd: Mapped[Decimal]
    status: Mapped[str] = mapped_column(String(16), default="held")
    """held, settled, released, expired."""
    created_at: Mapped[datetime] = _ts(default=utcnow)
    expires_at: Mapped[datetime] = _ts()


class SandboxRun(Base):
    """One execution of untrusted code in a sandbox."""

    __tablename__ = "sandbox_runs"
    __table_args__ = _non_negative("wall_ms")

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    step_key: Mapped[str | None] = mapped_column(Text)
    backend: Mapped[str] = mapped_column(String(32))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    killed_reason: Mapped[str | None] = mapped_column(String(32))
    wall_ms: Mapped[int] = mapped_column(Integer, default=0)
    cpu_ms: Mapped[int | None] = mapped_column(Integer)
    peak_memory_bytes: Mapped[int | None] = mapped_column(BigInteger)
    stdout_excerpt: Mapped[str] = mapped_column(Text, default="")
    stderr_excerpt: Mapped[str] = mapped_column(Text, default="")
    stdout_truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    stderr_truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    limits: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = _ts(default=utcnow)


class Checkpoint(Base):
    """Named state a step saved; a resumed run reads the latest version along its run chain."""

    __tablename__ = "checkpoints"
    __table_args__ = (UniqueConstraint("run_id", "name", "version", name="uq_checkpoints_run_name_version"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    step_key: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(String(255))
    version: Mapped[int] = mapped_column(Integer, default=1)
    state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = _ts(default=utcnow)


class Approval(Base):
    """A request for a human decision, and the decision (who, when, why) once made."""

    __tablename__ = "approvals"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    step_key: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    context: Mapped[dict[str, Any]] = mapped_column(default=dict)
    approvers: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    """pending, approved, rejected, expired, escalated."""
    timeout_policy: Mapped[str] = mapped_column(String(16), default="reject")
    requested_at: Mapped[datetime] = _ts(default=utcnow)
    expires_at: Mapped[datetime | None] = _ts(nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(255))
    decided_at: Mapped[datetime | None] = _ts(nullable=True)
    decision_reason: Mapped[str | None] = mapped_column(Text)
    continuation_run_id: Mapped[str | None] = mapped_column(String(64))


class Compensation(Base):
    """An undo action a step registered; rollback runs them in reverse ``seq`` order, each at most once."""

    __tablename__ = "compensations"
    __table_args__ = (UniqueConstraint("run_id", "seq", name="uq_compensations_run_seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    step_key: Mapped[str] = mapped_column(Text)
    seq: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(255))
    """Import path of the registered compensation function."""
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="registered")
    """registered, running, done, failed."""
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _ts(default=utcnow)
    executed_at: Mapped[datetime | None] = _ts(nullable=True)


class OutboxEvent(Base):
    """An event committed with the ledger change that caused it, waiting to be relayed to Kafka.

    Relayed rows are not rewritten: :class:`OutboxCursor` says how far the relay got. ``published_at``
    is set only on a row the relay published ahead of that position (an earlier id was still being
    written, or failed).
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    """Monotonic: relaying in id order keeps each run's events in order."""
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    event_type: Mapped[str] = mapped_column(String(128))
    topic: Mapped[str] = mapped_column(String(255))
    key: Mapped[str | None] = mapped_column(String(255))
    """Partition key (the run id) so a run's events stay ordered."""
    payload: Mapped[str] = mapped_column(Text)
    """The CloudEvents JSON exactly as it will be sent."""
    created_at: Mapped[datetime] = _ts(default=utcnow)
    published_at: Mapped[datetime | None] = _ts(nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    """Failed delivery attempts (a row published at the first try keeps 0)."""
    last_error: Mapped[str | None] = mapped_column(Text)
    dead_lettered_at: Mapped[datetime | None] = _ts(nullable=True)


class OutboxCursor(Base):
    """How far the outbox relay got (one row, migration 0005): every outbox row with an id up to
    ``relayed_through`` was published or dead-lettered, and no row with such an id can still commit.

    One small row updated per batch instead of every relayed row: marking wide outbox rows one by
    one cost the relay more than sending them.
    """

    __tablename__ = "outbox_cursor"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    relayed_through: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = _ts(default=utcnow)
