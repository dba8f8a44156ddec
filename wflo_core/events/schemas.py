"""Versioned data models of every event wflo publishes, one class per CloudEvents ``type``.

Each class names its ``type`` (``io.wflo.<area>.<what>``) and its data schema ``version``. A change
that an old consumer could misread bumps ``version``. Money is :data:`Usd`: a ``Decimal`` that is a
JSON *string* on the wire ("0.0123"), never a float, so sums rebuilt from events are exact.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

TYPE_PREFIX = "io.wflo."


def _usd(value: Any) -> Any:
    if isinstance(value, float):
        raise ValueError('money must be a decimal string such as "0.0123", not a float')
    if isinstance(value, bool):
        raise ValueError("money must be a decimal string, not a boolean")
    return value


Usd = Annotated[
    Decimal,
    BeforeValidator(_usd),
    Field(ge=0, allow_inf_nan=False),
    PlainSerializer(lambda v: format(v, "f"), return_type=str, when_used="json"),
]
"""A non-negative USD amount; serialized as a plain decimal string."""

Key = Annotated[str, Field(min_length=1, max_length=255)]
LongKey = Annotated[str, Field(min_length=1, max_length=8192)]
"""Step keys and call keys: dynamic step keys have no length limit worth imposing."""


class EventData(BaseModel):
    """Base of every event payload. ``dedupe_key`` makes re-emitting the same fact yield the same id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: ClassVar[str]
    version: ClassVar[str] = "1"

    @property
    def partition_key(self) -> str:
        """Kafka key: events sharing it stay in order (a run's events)."""
        return getattr(self, "run_id", None) or self.type

    @property
    def subject(self) -> str | None:
        run_id = getattr(self, "run_id", None)
        return f"runs/{run_id}" if run_id else None

    @property
    def dedupe_key(self) -> str | None:
        """A natural identity of the fact, or None when every emission is a new fact."""
        return None


# ---------------------------------------------------------------------------------------------- runs


class _RunEvent(EventData):
    run_id: Key
    workflow: Key

    @property
    def dedupe_key(self) -> str:
        return self.run_id


class RunStarted(_RunEvent):
    type: ClassVar[str] = "io.wflo.run.started"
    tags: dict[str, str] = Field(default_factory=dict)
    parent_run_id: str | None = None


class RunSucceeded(_RunEvent):
    type: ClassVar[str] = "io.wflo.run.succeeded"
    cost_usd: Usd | None = None


class RunFailed(_RunEvent):
    type: ClassVar[str] = "io.wflo.run.failed"
    error: str
    cost_usd: Usd | None = None


class RunCanceled(_RunEvent):
    type: ClassVar[str] = "io.wflo.run.canceled"
    reason: str | None = None


# ---------------------------------------------------------------------------------------------- steps


class _StepEvent(EventData):
    run_id: Key
    step_key: LongKey
    attempt: int = Field(default=0, ge=0)
    asset_key: str | None = None

    @property
    def subject(self) -> str:
        return f"runs/{self.run_id}/steps/{self.step_key}"

    @property
    def dedupe_key(self) -> str:
        return f"{self.run_id}/{self.step_key}/{self.attempt}"


class StepStarted(_StepEvent):
    type: ClassVar[str] = "io.wflo.step.started"


class StepSucceeded(_StepEvent):
    type: ClassVar[str] = "io.wflo.step.succeeded"
    cost_usd: Usd = Decimal(0)
    llm_calls: int = Field(default=0, ge=0)
    cache_hits: int = Field(default=0, ge=0)
    saved_usd: Usd = Decimal(0)


class StepFailed(_StepEvent):
    type: ClassVar[str] = "io.wflo.step.failed"
    error: str
    cost_usd: Usd = Decimal(0)


class StepRetried(_StepEvent):
    type: ClassVar[str] = "io.wflo.step.retried"
    error: str


# ---------------------------------------------------------------------------------------------- llm calls


class _LLMCallEvent(EventData):
    run_id: Key
    step_key: str | None = None
    provider: Key
    model: Key
    input_tokens: int = Field(default=0, ge=0)
    cached_input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    reasoning_tokens: int = Field(default=0, ge=0)
    cost_usd: Usd
    price_version: Key
    idempotency_key: LongKey
    """The ledger row's idempotency key: one event per recorded call."""

    @property
    def subject(self) -> str:
        base = f"runs/{self.run_id}"
        return f"{base}/steps/{self.step_key}" if self.step_key else base

    @property
    def dedupe_key(self) -> str:
        return self.idempotency_key


class LLMCallSettled(_LLMCallEvent):
    """One physical attempt's charge: priced from usage (``settled``/``over_bound``) or at its bound
    (``estimated``). A later settlement of an estimated attempt is a new event for the same
    ``idempotency_key``; consumers keep the latest per key (by ``sequence``)."""

    type: ClassVar[str] = "io.wflo.llm_call.settled"
    latency_ms: int | None = Field(default=None, ge=0)
    attempt: int = Field(default=1, ge=1)
    status: Literal["settled", "over_bound", "estimated"] = "settled"
    bound_usd: Usd | None = None
    """The upper bound held before the attempt was sent."""
    max_output_tokens: int | None = Field(default=None, ge=0)
    requested_max_tokens: int | None = Field(default=None, ge=0)
    """Set when wflo sent another output limit than the caller asked for (a default, or ``fit``)."""

    @property
    def dedupe_key(self) -> str:
        return f"{self.idempotency_key}#{self.status}"


class LLMCallOverBound(_LLMCallEvent):
    """The provider billed more than the bound held for the attempt (e.g. a server ignoring
    ``max_tokens``): charged in full, flagged so the bound can be fixed before it overshoots a budget."""

    type: ClassVar[str] = "io.wflo.llm_call.over_bound"
    bound_usd: Usd


class LLMCallCacheHit(_LLMCallEvent):
    type: ClassVar[str] = "io.wflo.llm_call.cache_hit"
    cost_usd: Usd = Decimal(0)
    saved_usd: Usd
    """What the call would have cost without the cache."""


# ---------------------------------------------------------------------------------------------- budgets


class _BudgetEvent(EventData):
    scope: Literal["run", "workflow", "asset", "materialization", "tag", "day", "month"]
    scope_key: LongKey
    limit_usd: Usd
    spent_usd: Usd
    held_usd: Usd = Decimal(0)
    run_id: str | None = None
    """The run whose call caused the event, if any."""

    @property
    def partition_key(self) -> str:
        return self.run_id or f"budget/{self.scope}/{self.scope_key}"


class BudgetThresholdCrossed(_BudgetEvent):
    type: ClassVar[str] = "io.wflo.budget.threshold_crossed"
    threshold_pct: int = Field(gt=0, lt=100)

    @property
    def dedupe_key(self) -> str:
        return f"{self.scope}/{self.scope_key}/{self.threshold_pct}"


class BudgetExceededEvent(_BudgetEvent):
    """A call was refused (or sent to approval) because a budget would go over its limit."""

    type: ClassVar[str] = "io.wflo.budget.exceeded"
    requested_usd: Usd
    action: Literal["failed", "approval_requested"] = "failed"


# ---------------------------------------------------------------------------------------------- sandbox


class _SandboxEvent(EventData):
    run_id: str | None = None
    step_key: str | None = None
    backend: Literal["docker", "process"]
    exit_code: int | None = None
    wall_ms: int = Field(ge=0)
    cpu_ms: int | None = Field(default=None, ge=0)
    peak_memory_bytes: int | None = Field(default=None, ge=0)
    stdout_truncated: bool = False
    stderr_truncated: bool = False


class SandboxFinished(_SandboxEvent):
    type: ClassVar[str] = "io.wflo.sandbox.finished"


class SandboxKilled(_SandboxEvent):
    type: ClassVar[str] = "io.wflo.sandbox.killed"
    reason: Literal["timeout", "cpu", "memory", "output_limit", "container_died"]
    """``wflo_core.sandbox.KilledReason``."""


# ---------------------------------------------------------------------------------------------- approvals


class _ApprovalEvent(EventData):
    run_id: Key
    approval_id: Key
    step_key: LongKey


class ApprovalRequested(_ApprovalEvent):
    type: ClassVar[str] = "io.wflo.approval.requested"
    reason: str
    approvers: list[str] = Field(default_factory=list)
    expires_at: datetime | None = None

    @property
    def dedupe_key(self) -> str:
        return self.approval_id


class ApprovalDecided(_ApprovalEvent):
    type: ClassVar[str] = "io.wflo.approval.decided"
    decision: Literal["approved", "rejected", "expired", "escalated"]
    decided_by: str | None = None
    reason: str | None = None

    @property
    def dedupe_key(self) -> str:
        # an escalation and the final decision are two facts about one approval
        return f"{self.approval_id}/{self.decision}"


# ---------------------------------------------------------------------------------------------- delivery


class EventDeadLettered(EventData):
    """Published to a dead-letter topic in place of an event that can never be delivered."""

    type: ClassVar[str] = "io.wflo.event.dead_lettered"
    original_id: str
    original_type: str
    original_topic: str
    original_key: str | None = None
    reason: str
    payload_bytes: int = Field(ge=0)
    payload_excerpt: str
    """The start of the original payload (the full text stays in the outbox row)."""

    @property
    def partition_key(self) -> str:
        return self.original_key or self.original_id

    @property
    def dedupe_key(self) -> str:
        return self.original_id


EVENT_TYPES: dict[str, type[EventData]] = {
    cls.type: cls
    for cls in (
        RunStarted,
        RunSucceeded,
        RunFailed,
        RunCanceled,
        StepStarted,
        StepSucceeded,
        StepFailed,
        StepRetried,
        LLMCallSettled,
        LLMCallCacheHit,
        LLMCallOverBound,
        BudgetThresholdCrossed,
        BudgetExceededEvent,
        SandboxFinished,
        SandboxKilled,
        ApprovalRequested,
        ApprovalDecided,
        EventDeadLettered,
    )
}
"""Every known ``type`` string and the model that validates its ``data``."""
