"""The path of one LLM call: cache → budget hold → retries behind the breaker → settle in the ledger.

Every step calls :meth:`Gateway.complete`. The order is the product's promise:

1. a cache hit returns at once and is recorded at $0 with the USD it saved; identical concurrent
   calls are single-flighted (one goes upstream, the rest read its result);
2. the call's upper-bound cost is held on every applicable budget, or ``BudgetExceeded`` is raised
   before anything is sent;
3. the provider is called with retries behind its shared circuit breaker;
4. the ledger row, the budget settlement and the outbox events commit in one transaction.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy.orm import Session

from wflo_core.approvals.budget_ask import awaiting as awaiting_approval
from wflo_core.budgets import BudgetBook, CallScope, ThresholdCrossed
from wflo_core.cache.base import ResponseCache
from wflo_core.calls import CallOutcome, LLMRequest, LLMResponse, Usage
from wflo_core.errors import BudgetExceeded, ProviderError, UsageInvalid
from wflo_core.events.outbox import EventRecorder
from wflo_core.events.schemas import (
    BudgetExceededEvent,
    BudgetThresholdCrossed,
    LLMCallCacheHit,
    LLMCallSettled,
)
from wflo_core.ledger.store import Ledger
from wflo_core.llm.providers.base import Provider, StreamChunk

MESSAGE_OVERHEAD_TOKENS = 8
log = logging.getLogger("wflo.gateway")


def prompt_token_upper_bound(request: LLMRequest) -> int:
    """An upper bound on the prompt's tokens without a tokenizer.

    Every BPE token of every provider encodes at least one byte, so the UTF-8 byte count of all
    text sent (plus a per-message allowance for role/format tokens) can only overestimate.
    """
    size = sum(len(m.content.encode()) + MESSAGE_OVERHEAD_TOKENS for m in request.messages)
    size += sum(len(tc.arguments.encode()) + len(tc.name) for m in request.messages for tc in m.tool_calls)
    if request.tools:
        size += len(json.dumps(request.tools).encode())
    if request.response_format:
        size += len(json.dumps(request.response_format).encode())
    return size + MESSAGE_OVERHEAD_TOKENS


class Catalog(Protocol):
    def cost(self, provider: str, model: str, usage: Usage) -> Any: ...
    def upper_bound(self, provider: str, model: str, prompt_tokens: int, max_output_tokens: int) -> Decimal: ...


@dataclass
class GatewayParts:
    """What a gateway is built from; each part has an embedded and a production implementation."""

    ledger: Ledger
    budgets: BudgetBook
    catalog: Catalog
    provider_for: Callable[[str], Provider]
    record_event: EventRecorder
    cache: ResponseCache | None = None
    cache_key: Callable[[LLMRequest], str | None] | None = None
    """Returns the cache key, or None when the request must not be cached."""
    single_flight: Callable[[str, Callable[[], LLMResponse]], tuple[LLMResponse, bool]] | None = None
    call_with_resilience: Callable[[str, Callable[[int], Any]], Any] | None = None
    """Runs ``send(attempt)`` with retries behind the provider's breaker."""
    ask_approval: Callable[[Session, BudgetExceeded, CallScope], str | None] | None = None
    """For a refused call: opens an approval request and returns its id when the budget says ``ask``."""


class Gateway:
    def __init__(self, parts: GatewayParts) -> None:
        self.parts = parts
        self._known_runs: set[str] = set()

    def complete(self, request: LLMRequest, scope: CallScope, call_key: str) -> tuple[LLMResponse, CallOutcome]:
        """Answer ``request`` for ``scope``; ``call_key`` is the call's idempotency key in the ledger."""
        p = self.parts
        cache, key = p.cache, self._cache_key(request)
        if key is None or cache is None:
            return self._call_upstream(request, scope, call_key, None)
        cached = cache.get(key)
        if cached is not None:
            return cached, self._record_cache_hit(cached, scope, call_key, key)
        computed: list[CallOutcome] = []

        def compute() -> LLMResponse:
            response, outcome = self._call_upstream(request, scope, call_key, key)
            computed.append(outcome)
            return response

        if p.single_flight is not None:
            response = p.single_flight(key, compute)[0]  # stores the result for the waiters
        else:
            response = compute()
            cache.put(key, response)
        if computed:
            return response, computed[0]
        return response, self._record_cache_hit(response, scope, call_key, key)

    def stream(self, request: LLMRequest, scope: CallScope, call_key: str,
               on_outcome: Callable[[CallOutcome], None] | None = None) -> Iterator[StreamChunk]:
        """Stream the answer chunk by chunk, with the same promise as :meth:`complete`.

        The budget hold is taken before the request is sent and settled from the final chunk's usage.
        Retries happen only before the first chunk arrives (a half-streamed answer is never resent).
        A cached answer streams as one chunk. If the caller stops reading early the provider may
        still bill the partial answer, which wflo cannot see: the hold is released and a warning logged.
        """
        p = self.parts
        key = self._cache_key(request)
        cached = p.cache.get(key) if key is not None and p.cache is not None else None
        if cached is not None and key is not None:
            outcome = self._record_cache_hit(cached, scope, call_key, key)
            if on_outcome:
                on_outcome(outcome)
            yield StreamChunk(text=cached.text)
            yield StreamChunk(response=cached)
            return
        provider = p.provider_for(request.provider)
        self._reserve(request, provider.name, scope, call_key)
        started = time.monotonic()

        def open_stream(attempt: int) -> tuple[StreamChunk, Iterator[StreamChunk]]:
            try:
                chunks = iter(provider.stream(request))
                return next(chunks), chunks
            except ProviderError as err:
                self._record_failed_attempt(request, provider.name, scope, call_key, attempt, err)
                raise

        final: LLMResponse | None = None
        try:
            first, rest = p.call_with_resilience(provider.name, open_stream) if p.call_with_resilience \
                else open_stream(1)
            for chunk in itertools.chain([first], rest):
                final = chunk.response or final
                yield chunk
        finally:
            if final is None:
                with p.ledger.transaction() as session:
                    p.budgets.release(session, call_key)
                log.warning("stream %s ended before the provider reported usage; hold released", call_key)
        if final is None:
            raise UsageInvalid(f"the {provider.name} stream for {request.model!r} ended without reporting "
                               "usage, so the call cannot be priced; the provider or proxy must send usage "
                               "(OpenAI: stream_options include_usage)")
        outcome = self._settle(request, final, scope, call_key, key, int((time.monotonic() - started) * 1000))
        if key is not None and p.cache is not None:
            p.cache.put(key, final)
        if on_outcome:
            on_outcome(outcome)

    # ------------------------------------------------------------------ internals

    def _cache_key(self, request: LLMRequest) -> str | None:
        """The request's cache key, or None when there is no cache or the request must not be cached."""
        p = self.parts
        return p.cache_key(request) if p.cache_key is not None and p.cache is not None else None

    def _reserve(self, request: LLMRequest, provider: str, scope: CallScope, call_key: str) -> None:
        """Hold the call's upper-bound cost, or refuse it (``BudgetExceeded`` / an approval request)."""
        p = self.parts
        amount = p.catalog.upper_bound(provider, request.model, prompt_token_upper_bound(request),
                                       request.max_tokens)
        try:
            p.budgets.reserve(scope.refs(), call_key, amount, run_id=scope.run_id)
        except BudgetExceeded as err:
            with p.ledger.transaction() as session:
                approval_id = p.ask_approval(session, err, scope) if p.ask_approval else None
                p.record_event(session, BudgetExceededEvent(
                    scope=err.scope, scope_key=err.scope_key, limit_usd=err.limit_usd, spent_usd=err.spent_usd,
                    held_usd=err.held_usd, requested_usd=err.requested_usd, run_id=scope.run_id,
                    action="approval_requested" if approval_id else "failed"))
            if approval_id:
                raise awaiting_approval(err, approval_id) from err
            raise

    def _call_upstream(self, request: LLMRequest, scope: CallScope, call_key: str,
                       cache_key: str | None) -> tuple[LLMResponse, CallOutcome]:
        p = self.parts
        provider = p.provider_for(request.provider)
        self._reserve(request, provider.name, scope, call_key)
        started = time.monotonic()

        def send(attempt: int) -> LLMResponse:
            try:
                return provider.complete(request)
            except ProviderError as err:
                self._record_failed_attempt(request, provider.name, scope, call_key, attempt, err)
                raise

        try:
            response = p.call_with_resilience(provider.name, send) if p.call_with_resilience else send(1)
        except BaseException:
            with p.ledger.transaction() as session:
                p.budgets.release(session, call_key)
            raise
        latency_ms = int((time.monotonic() - started) * 1000)
        return response, self._settle(request, response, scope, call_key, cache_key, latency_ms)

    def _settle(self, request: LLMRequest, response: LLMResponse, scope: CallScope, call_key: str,
                cache_key: str | None, latency_ms: int) -> CallOutcome:
        p = self.parts
        cost = p.catalog.cost(response.provider, request.model, response.usage)
        outcome = CallOutcome(response.provider, request.model, response.usage, cost.total_usd, Decimal(0),
                              False, cost.price_version, call_key)
        with p.ledger.transaction() as session:
            outcome = replace(outcome, call_id=self._write_call(session, outcome, scope, status="settled",
                                                                cache_key=cache_key, latency_ms=latency_ms))
            crossed = p.budgets.settle(session, call_key, outcome.cost_usd)
            p.record_event(session, LLMCallSettled(**self._event_fields(outcome, scope), latency_ms=latency_ms))
            self._record_thresholds(session, scope, crossed)
        return outcome

    def _record_cache_hit(self, response: LLMResponse, scope: CallScope, call_key: str,
                          cache_key: str) -> CallOutcome:
        p = self.parts
        saved = p.catalog.cost(response.provider, response.model, response.usage)
        outcome = CallOutcome(response.provider, response.model, response.usage, Decimal(0),
                              saved.total_usd, True, saved.price_version, call_key)
        with p.ledger.transaction() as session:
            outcome = replace(outcome, call_id=self._write_call(session, outcome, scope, status="cache_hit",
                                                                cache_key=cache_key, latency_ms=0))
            p.record_event(session, LLMCallCacheHit(**self._event_fields(outcome, scope),
                                                    saved_usd=outcome.saved_usd))
        return outcome

    def _record_failed_attempt(self, request: LLMRequest, provider: str, scope: CallScope, call_key: str,
                               attempt: int, err: ProviderError) -> None:
        with self.parts.ledger.transaction() as session:
            self._ensure_run(session, scope)
            self.parts.ledger.record_call(
                session, idempotency_key=f"{call_key}#failed{attempt}", run_id=scope.run_id,
                step_key=scope.step_key, asset_key=scope.asset_key, provider=provider, model=request.model,
                status="failed", attempt=attempt, price_version="unbilled", error=str(err)[:500],
                tags=dict(scope.tags),
            )

    def _ensure_run(self, session: Session, scope: CallScope) -> None:
        """Record the run once per process (the step normally did already; direct callers may not)."""
        if scope.run_id not in self._known_runs:
            self.parts.ledger.ensure_run(session, scope.run_id, scope.workflow)
            self._known_runs.add(scope.run_id)

    def _write_call(self, session: Session, outcome: CallOutcome, scope: CallScope, *, status: str,
                    cache_key: str | None, latency_ms: int) -> int | None:
        ledger = self.parts.ledger
        self._ensure_run(session, scope)
        u = outcome.usage
        return ledger.record_call(
            session, idempotency_key=outcome.call_key, run_id=scope.run_id, step_key=scope.step_key,
            asset_key=scope.asset_key, provider=outcome.provider, model=outcome.model, status=status,
            input_tokens=u.input_tokens, cached_input_tokens=u.cached_input_tokens,
            cache_write_tokens=u.cache_write_tokens, output_tokens=u.output_tokens,
            reasoning_tokens=u.reasoning_tokens, cost_usd=outcome.cost_usd, saved_usd=outcome.saved_usd,
            price_version=outcome.price_version, cache_key=cache_key, latency_ms=latency_ms,
            tags=dict(scope.tags), parent_call_id=scope.parent_call_id,
        )

    def _record_thresholds(self, session: Session, scope: CallScope, crossed: list[ThresholdCrossed]) -> None:
        for alert in crossed:
            self.parts.record_event(session, BudgetThresholdCrossed(
                scope=alert.scope, scope_key=alert.scope_key, limit_usd=alert.limit_usd,
                spent_usd=alert.spent_usd, run_id=scope.run_id, threshold_pct=alert.percent))

    @staticmethod
    def _event_fields(outcome: CallOutcome, scope: CallScope) -> dict[str, Any]:
        u = outcome.usage
        return {
            "run_id": scope.run_id, "step_key": scope.step_key, "provider": outcome.provider,
            "model": outcome.model, "input_tokens": u.input_tokens, "cached_input_tokens": u.cached_input_tokens,
            "output_tokens": u.output_tokens, "reasoning_tokens": u.reasoning_tokens,
            "cost_usd": outcome.cost_usd, "price_version": outcome.price_version,
            "idempotency_key": outcome.call_key,
        }
