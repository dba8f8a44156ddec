"""Every error wflo raises on purpose, in one hierarchy so callers can catch at the level they need.

    WfloError
    ├── ConfigError                  bad settings or input; the message names the variable and the fix
    ├── LedgerError                  a ledger write broke a constraint (duplicate key, FK, negative money)
    ├── PricingError
    │   ├── ModelNotPriced           the catalog knows no price for a model (raised before any call)
    │   └── UsageInvalid             a response's token usage is missing or inconsistent
    ├── BudgetExceeded               a reservation would take a budget over its limit
    ├── ProviderError                an LLM provider call failed; ``retryable`` says whether to retry
    │   ├── ProviderRateLimited      429; carries ``retry_after``
    │   ├── ProviderUnavailable      5xx, timeouts, connection errors
    │   ├── ProviderRequestRejected  400/404/422: the request itself is wrong
    │   ├── ProviderAuthFailed       401/403
    │   ├── RetriesExhausted         every attempt failed with a retryable error
    │   └── CircuitOpen              the provider's shared breaker is open; nothing was sent
    ├── CassetteMiss                 replay mode got a request the cassette does not hold
    ├── LockTimeout                  a lock or a single-flight result was not ready within the max wait
    ├── SandboxError                 the sandbox itself failed (not the code inside it)
    ├── ApprovalError                approval requested/decided wrongly (unknown id, already decided)
    ├── AwaitingApproval             not a failure: the step stopped cleanly to wait for a human decision
    ├── CompensationError            a compensation action cannot be registered or resolved
    └── EventError                   an event could not be encoded/decoded or delivered

Every subclass takes keyword-only fields and implements ``__reduce__`` so it survives crossing a
process boundary (Dagster's multiprocess executor pickles step errors).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any


class WfloError(Exception):
    """Base class of every error wflo raises on purpose."""

    #: Whether trying the same thing again later may succeed.
    retryable: bool = False

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields
        for key, value in fields.items():
            setattr(self, key, value)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.fields))

    def __str__(self) -> str:
        return self.message


def _rebuild(cls: type[WfloError], message: str, fields: dict[str, Any]) -> WfloError:
    err = cls.__new__(cls)
    WfloError.__init__(err, message, **fields)
    return err


class ConfigError(WfloError):
    """Settings or user input are invalid; the message names what and how to fix it."""


class LedgerError(WfloError):
    """A ledger write violated a constraint; the transaction was rolled back."""


class PricingError(WfloError):
    """A call could not be priced."""


class ModelNotPriced(PricingError):
    """The price catalog has no entry for this provider/model."""


class UsageInvalid(PricingError):
    """A provider response's token usage is missing or inconsistent (e.g. more cached than input)."""


class BudgetExceeded(WfloError):
    """Reserving a call's upper-bound cost would take a budget over its limit. Nothing was sent."""

    def __init__(
        self,
        *,
        scope: str,
        scope_key: str,
        limit_usd: Decimal,
        spent_usd: Decimal,
        held_usd: Decimal,
        requested_usd: Decimal,
    ) -> None:
        message = (
            f"BudgetExceeded: {scope} budget '{scope_key}' limit ${limit_usd}, spent ${spent_usd}, "
            f"held ${held_usd}, this call needs up to ${requested_usd}; raise the limit with "
            f"`wflo budgets set {scope} {scope_key} LIMIT` or lower max_tokens"
        )
        super().__init__(
            message,
            scope=scope,
            scope_key=scope_key,
            limit_usd=limit_usd,
            spent_usd=spent_usd,
            held_usd=held_usd,
            requested_usd=requested_usd,
        )


class ProviderError(WfloError):
    """An LLM provider call failed."""


class ProviderRateLimited(ProviderError):
    """HTTP 429. ``retry_after`` (seconds) is set when the provider said how long to wait."""

    retryable = True


class ProviderUnavailable(ProviderError):
    """5xx, timeout or connection failure."""

    retryable = True


class ProviderRequestRejected(ProviderError):
    """The provider rejected the request (400/404/422); sending it again will not help."""


class ProviderAuthFailed(ProviderError):
    """401/403: the API key is missing, wrong or lacks access."""


class RetriesExhausted(ProviderError):
    """Every allowed attempt failed with a retryable error."""


class CircuitOpen(ProviderError):
    """The provider's circuit breaker is open; the call failed fast without being sent."""


class CassetteMiss(WfloError):
    """Replay mode received a request that the cassette does not contain."""


class LockTimeout(WfloError):
    """A distributed lock (or the result of an identical in-flight call) did not arrive in time."""

    retryable = True


class SandboxError(WfloError):
    """The sandbox backend failed (image missing, engine down), as opposed to the code inside it."""


class ApprovalError(WfloError):
    """An approval request or decision is invalid."""


class AwaitingApproval(WfloError):
    """The step stopped to wait for approval ``approval_id``; an approved continuation run resumes it."""


class CompensationError(WfloError):
    """A compensation action is not importable or its payload is not JSON."""


class EventError(WfloError):
    """An event could not be encoded, decoded or delivered."""
