"""What an approval request carries: the reason, the reviewer's context, who may decide, and what
happens on timeout; plus auto-approve rules for low-risk cases."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal, Protocol

from wflo_core.errors import ConfigError

TimeoutPolicy = Literal["reject", "approve", "escalate"]
Decision = Literal["approved", "rejected"]
RequestKind = Literal["gate", "budget"]

PENDING: Final = "pending"
ESCALATED: Final = "escalated"
APPROVED: Final = "approved"
REJECTED: Final = "rejected"
EXPIRED: Final = "expired"
OPEN_STATUSES = (PENDING, ESCALATED)
"""Still waiting for a decision."""
TIMEOUT_ACTOR = "wflo:timeout"
"""``decided_by`` of a decision taken by the timeout policy."""


def json_safe(value: Mapping[str, Any]) -> dict[str, Any]:
    """The mapping as plain JSON values (Decimals become strings, exactly)."""
    try:
        decoded: dict[str, Any] = json.loads(json.dumps(dict(value), default=_encode))  # a dict dumped is a JSON object
        return decoded
    except (TypeError, ValueError) as err:
        raise ConfigError(f"approval context must be JSON-serializable: {err}") from None


def _encode(value: Any) -> str:
    if isinstance(value, Decimal):
        return format(value, "f")
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


@dataclass(frozen=True)
class ApprovalRequest:
    """One question for a human.

    ``context`` is what the reviewer needs (the code about to run, ``projected_cost_usd``...).
    An empty ``approvers`` means anyone may decide.
    """

    reason: str
    context: Mapping[str, Any] = field(default_factory=dict)
    approvers: tuple[str, ...] = ()
    timeout: timedelta | None = None
    on_timeout: TimeoutPolicy = "reject"
    escalate_to: tuple[str, ...] = ()
    """Who decides once ``timeout`` passes with ``on_timeout="escalate"``."""
    escalation_timeout: timedelta | None = None
    """How long the escalated request waits before it is rejected; None waits forever."""
    kind: RequestKind = "gate"

    def __post_init__(self) -> None:
        if not self.reason.strip():
            raise ConfigError("an approval request needs a reason the reviewer can read")
        if self.on_timeout not in ("reject", "approve", "escalate"):
            raise ConfigError(f"on_timeout must be reject, approve or escalate, got {self.on_timeout!r}")
        if self.on_timeout == "escalate" and not self.escalate_to:
            raise ConfigError("on_timeout='escalate' needs escalate_to=(...) naming who decides next")
        if self.on_timeout != "reject" and self.timeout is None:
            raise ConfigError(f"on_timeout={self.on_timeout!r} needs a timeout")
        for span in (self.timeout, self.escalation_timeout):
            if span is not None and span.total_seconds() <= 0:
                raise ConfigError(f"approval timeouts must be positive, got {span}")

    def stored_context(self) -> dict[str, Any]:
        stored = {**json_safe(self.context), "kind": self.kind}
        if self.on_timeout == "escalate":
            stored["escalation"] = {
                "approvers": list(self.escalate_to),
                "timeout_seconds": self.escalation_timeout.total_seconds()
                if self.escalation_timeout
                else None,
            }
        return stored


class AutoApproveRule(Protocol):
    """Approves a request without a human when it is low-risk."""

    name: str

    def matches(self, context: Mapping[str, Any]) -> bool: ...


@dataclass(frozen=True)
class ProjectedCostBelow:
    """Approve when the context's ``projected_cost_usd`` is under ``threshold_usd``."""

    threshold_usd: Decimal
    name: str = "projected_cost_below"

    def matches(self, context: Mapping[str, Any]) -> bool:
        value = context.get("projected_cost_usd")
        if value is None or isinstance(value, float | bool):
            return False
        try:
            return Decimal(str(value)) < self.threshold_usd
        except InvalidOperation:
            return False
