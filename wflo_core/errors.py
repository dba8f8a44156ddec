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

Each class declares its typed fields as annotated class attributes (with their defaults); the
constructor takes the message and those fields by keyword and refuses any other. ``__reduce__``
rebuilds the error from them, so it survives crossing a process boundary (Dagster's multiprocess
executor pickles step errors).
"""

from __future__ import annotations

import functools
from decimal import Decimal
from typing import Any, ClassVar


def first_line(err: BaseException) -> str:
    """The first line of ``err``'s message (drivers add detail lines below it), or its type's name."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class WfloError(Exception):
    """Base class of every error wflo raises on purpose."""

    retryable: ClassVar[bool] = False
    """Whether trying the same thing again later may succeed."""

    def __init__(self, message: str, **fields: Any) -> None:
        declared = self.field_names()
        if unknown := fields.keys() - declared:
            raise TypeError(f"{type(self).__name__} has no field {', '.join(sorted(unknown))}; "
                            f"declared: {', '.join(sorted(declared)) or 'none'}")
        super().__init__(message)
        self.message = message
        for name in declared:
            setattr(self, name, fields.get(name, getattr(type(self), name, None)))

    @classmethod
    @functools.cache
    def field_names(cls) -> frozenset[str]:
        """The fields this class and its bases declare."""
        return frozenset(name for klass in cls.__mro__ if issubclass(klass, WfloError)
                         for name, kind in vars(klass).get("__annotations__", {}).items()
                         if "ClassVar" not in str(kind))

    @property
    def fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in sorted(self.field_names())}

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

    field: str | None = None
    path: str | None = None
    reason: str | None = None


class LedgerError(WfloError):
    """A ledger write violated a constraint; the transaction was rolled back."""


class PricingError(WfloError):
    """A call could not be priced."""

    price_version: str | None = None


class ModelNotPriced(PricingError):
    """The price catalog has no entry for this provider/model."""

    provider: str | None = None
    model: str | None = None


class UsageInvalid(PricingError):
    """A provider response's token usage is missing or inconsistent (e.g. more cached than input)."""

    shape: str | None = None


class BudgetExceeded(WfloError):
    """Reserving a call's upper-bound cost would take a budget over its limit. Nothing was sent."""

    scope: str
    scope_key: str
    limit_usd: Decimal
    spent_usd: Decimal
    held_usd: Decimal
    requested_usd: Decimal
    on_breach: str = "fail"

    def __init__(
        self,
        *,
        scope: str,
        scope_key: str,
        limit_usd: Decimal,
        spent_usd: Decimal,
        held_usd: Decimal,
        requested_usd: Decimal,
        on_breach: str = "fail",
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
            on_breach=on_breach,
        )


class ProviderError(WfloError):
    """An LLM provider call failed."""

    provider: str | None = None
    model: str | None = None
    status_code: int | None = None
    billed: bool | None = None
    """False: the provider did not bill the attempt; None: unknown (a timeout, a 5xx after sending)."""


class ProviderRateLimited(ProviderError):
    """HTTP 429. ``retry_after`` (seconds) is set when the provider said how long to wait."""

    retry_after: float | None = None

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

    attempts: int = 0
    last_error: BaseException | None = None


class CircuitOpen(ProviderError):
    """The provider's circuit breaker is open; the call failed fast without being sent."""

    retry_in_seconds: float | None = None


class CassetteMiss(WfloError):
    """Replay mode received a request that the cassette does not contain."""

    provider: str | None = None
    model: str | None = None
    fingerprint: str | None = None
    prompt_excerpt: str | None = None
    cassette_path: str | None = None


class LockTimeout(WfloError):
    """A distributed lock (or the result of an identical in-flight call) did not arrive in time."""

    retryable = True
    key: str | None = None
    waited_seconds: float | None = None


class SandboxError(WfloError):
    """The sandbox backend failed (image missing, engine down), as opposed to the code inside it."""


class ApprovalError(WfloError):
    """An approval request or decision is invalid."""

    approval_id: str | None = None
    status: str | None = None


class AwaitingApproval(WfloError):
    """The step stopped to wait for approval ``approval_id``; an approved continuation run resumes it."""

    approval_id: str | None = None
    scope: str | None = None
    scope_key: str | None = None


class CompensationError(WfloError):
    """A compensation action is not importable or its payload is not JSON."""


class EventError(WfloError):
    """An event could not be encoded, decoded or delivered."""

    event_type: str | None = None
    topic: str | None = None
    position: str | None = None
