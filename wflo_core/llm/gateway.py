"""The path of one LLM call: cache → budget hold → retries behind the breaker → settle in the ledger.

Every step calls :meth:`Gateway.complete` (or :meth:`Gateway.stream`). The order is the product's promise:

1. a cache hit returns at once and is recorded at $0 with the USD it saved; identical concurrent
   calls are single-flighted (one goes upstream, the rest read its result);
2. each physical attempt's upper-bound cost is held on every applicable budget, in the transaction
   that writes its ``llm_calls`` row (status ``held``), or ``BudgetExceeded`` is raised before
   anything is sent;
3. the provider is called with retries behind its shared circuit breaker;
4. every attempt ends exactly once: ``settled`` from the usage the provider reported (the ledger
   row, the budget settlement and the outbox events in one transaction), ``failed`` when the
   provider did not bill it, or ``estimated`` at its bound when nobody can know (a timeout, a
   5xx, a dropped connection or stream). Whatever goes wrong after the provider answered, the
   answer's cost stays on the ledger and the budgets.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import json
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from typing import Any, Literal, Protocol, cast

from sqlalchemy.orm import Session

from wflo_core.approvals.budget_ask import awaiting as awaiting_approval
from wflo_core.budgets import BudgetBook, CallScope, ThresholdCrossed
from wflo_core.budgets.scopes import Scope
from wflo_core.cache.base import ResponseCache
from wflo_core.calls import CallOutcome, LLMRequest, LLMResponse, Usage
from wflo_core.errors import BudgetExceeded, ConfigError, PricingError, ProviderError, UsageInvalid
from wflo_core.events.outbox import EventRecorder
from wflo_core.events.schemas import (
    BudgetExceededEvent,
    BudgetThresholdCrossed,
    EventData,
    LLMCallCacheHit,
    LLMCallOverBound,
    LLMCallSettled,
)
from wflo_core.ledger.store import Ledger
from wflo_core.llm.attempt_writes import AttemptWrites, HeldRow, PostgresAttemptWrites, Settlement
from wflo_core.llm.providers.base import Provider, StreamChunk
from wflo_core.llm.sqlite_writes import SqliteAttemptWrites
from wflo_core.telemetry import traced_complete, traced_stream

MESSAGE_OVERHEAD_TOKENS = 8
ANTHROPIC_TOOL_OVERHEAD_TOKENS = 600
"""Anthropic adds a tool-use system prompt (up to ~350 tokens per its docs) whenever tools are sent."""
SETTLE_ATTEMPTS = 3
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
        if request.provider == "anthropic" or request.api == "messages":
            size += ANTHROPIC_TOOL_OVERHEAD_TOKENS
    if request.response_format:
        size += len(json.dumps(request.response_format).encode())
    return size + MESSAGE_OVERHEAD_TOKENS


OUTPUT_LIMIT_KEYS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
"""Keys in ``LLMRequest.extra`` that raise the output limit sent to the provider."""


def output_token_upper_bound(request: LLMRequest) -> int:
    """The most output tokens the request can be billed for: its largest output limit (from the
    request or ``extra``), a reasoning budget, times the number of choices ``n``.

    Hosted tools priced per call (web search, file search, code interpreter) cannot be bounded by
    tokens: such a request is refused with a ``ConfigError`` before anything is held or sent.
    """
    extra = request.extra
    hosted = [t.get("type") for t in [*request.tools, *extra.get("tools", ())]
              if isinstance(t, dict) and t.get("type") not in (None, "function", "custom")]
    if hosted:
        raise ConfigError(
            f"the request uses hosted tool(s) {', '.join(map(str, hosted))}, which providers price per call; "
            "wflo cannot bound their cost before sending, so it refuses the call: use function tools instead")
    limits = [request.max_tokens, *(int(extra[k]) for k in OUTPUT_LIMIT_KEYS if extra.get(k) is not None)]
    thinking = extra.get("thinking")
    if isinstance(thinking, dict) and thinking.get("budget_tokens"):
        limits.append(int(thinking["budget_tokens"]))
    return max(limits) * max(1, int(extra.get("n") or 1))


Remember = Callable[[Session, LLMResponse], None]
"""Called inside the settling transaction with the answer (the step recorder saves it for resumes)."""


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
    attempt_ttl: timedelta = timedelta(minutes=15)
    """How long an attempt's hold lives: longer than the provider timeout, so it never expires in flight."""
    fit_min_output_tokens: int = 16
    """With ``on_breach="fit"``: the smallest output limit worth sending; below it the call is refused."""


@dataclass(frozen=True, slots=True)
class _Attempt:
    """One physical send: its ledger key, the request as sent, and the bound held for it."""

    key: str
    number: int
    request: LLMRequest
    provider: str
    bound_usd: Decimal
    requested_max_tokens: int | None
    started: float


class Gateway:
    def __init__(self, parts: GatewayParts) -> None:
        self.parts = parts
        writes = {"postgresql": PostgresAttemptWrites, "sqlite": SqliteAttemptWrites}.get(
            parts.ledger.dialect, AttemptWrites)
        self._writes = writes(parts.ledger, parts.budgets, parts.record_event)
        self._workers: concurrent.futures.ThreadPoolExecutor | None = None
        self._workers_lock = threading.Lock()

    @traced_complete
    def complete(self, request: LLMRequest, scope: CallScope, call_key: str, *,
                 remember: Remember | None = None) -> tuple[LLMResponse, CallOutcome]:
        """Answer ``request`` for ``scope``; ``call_key`` is the call's idempotency key in the ledger."""
        p = self.parts
        cache, key = p.cache, self._cache_key(request)
        if key is None or cache is None:
            return self._call_upstream(request, scope, call_key, None, remember)
        cached = cache.get(key)
        if cached is not None:
            return cached, self._record_cache_hit(request, cached, scope, call_key, key, remember)
        computed: list[CallOutcome] = []

        def compute() -> LLMResponse:
            response, outcome = self._call_upstream(request, scope, call_key, key, remember)
            computed.append(outcome)
            return response

        if p.single_flight is not None:
            response = p.single_flight(key, compute)[0]  # stores the result for the waiters
        else:
            response = compute()
            cache.put(key, response)
        if computed:
            return response, computed[0]
        return response, self._record_cache_hit(request, response, scope, call_key, key, remember)

    @traced_stream
    def stream(self, request: LLMRequest, scope: CallScope, call_key: str,
               on_outcome: Callable[[CallOutcome], None] | None = None, *,
               remember: Remember | None = None) -> Generator[StreamChunk, None, None]:
        """Stream the answer chunk by chunk, with the same promise as :meth:`complete`.

        Each attempt is held before it is sent; retries happen only before the first chunk arrives
        (a half-streamed answer is never resent). The call settles the moment the final chunk (with
        the usage) arrives, before it is handed on, so a caller that stops reading there loses
        nothing. A stream abandoned or broken before its usage arrived is charged at its bound
        (``estimated``), never at $0. A cached answer streams as one chunk.
        """
        p = self.parts
        key = self._cache_key(request)
        cached = p.cache.get(key) if key is not None and p.cache is not None else None
        if cached is not None and key is not None:
            outcome = self._record_cache_hit(request, cached, scope, call_key, key, remember)
            if on_outcome:
                on_outcome(outcome)
            yield StreamChunk(text=cached.text)
            yield StreamChunk(response=cached)
            return
        provider = p.provider_for(request.provider)
        opened: list[_Attempt] = []

        def open_stream(number: int) -> tuple[StreamChunk, Iterator[StreamChunk]]:
            attempt = self._open_attempt(request, provider.name, scope, call_key, number, key)
            opened.append(attempt)
            try:
                chunks = iter(provider.stream(attempt.request))
                return next(chunks), chunks
            except BaseException as err:
                self._close_unanswered(attempt, scope, err)
                raise

        first, rest = p.call_with_resilience(provider.name, open_stream) if p.call_with_resilience \
            else open_stream(1)
        attempt, settled = opened[-1], False
        renewed = time.monotonic()
        try:
            for chunk in _chain(first, rest):
                if chunk.response is not None and not settled:
                    outcome = self._settle(attempt, chunk.response, scope, key, remember)
                    settled = True
                    if key is not None and p.cache is not None:
                        p.cache.put(key, chunk.response)
                    if on_outcome:
                        on_outcome(outcome)
                elif time.monotonic() - renewed > p.attempt_ttl.total_seconds() / 3:
                    renewed = time.monotonic()
                    with p.ledger.transaction() as session:
                        p.budgets.renew(session, attempt.key, p.attempt_ttl)
                yield chunk
        except BaseException as err:
            if not settled:
                self._close_unanswered(attempt, scope, err)
            raise
        finally:
            close = getattr(rest, "close", None)
            if close is not None:
                close()  # give the provider's connection back, however the caller stopped
        if not settled:
            self._close_unanswered(attempt, scope, None)
            raise UsageInvalid(f"the {provider.name} stream for {request.model!r} ended without reporting "
                               "usage, so the call was charged at its bound (estimated); the provider or proxy "
                               "must send usage (OpenAI: stream_options include_usage)")

    async def acomplete(self, request: LLMRequest, scope: CallScope, call_key: str) -> tuple[LLMResponse, CallOutcome]:
        """:meth:`complete` for async code: the ledger and the provider are waited on in a worker thread,
        never on the event loop. A task cancelled before its call started sends nothing; one cancelled
        later stops waiting while the call runs to its end and settles (or releases) its hold."""
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(
            self._pool(), context.run, self.complete, request, scope, call_key)

    async def astream(self, request: LLMRequest, scope: CallScope, call_key: str,
                      on_outcome: Callable[[CallOutcome], None] | None = None) -> AsyncGenerator[StreamChunk, None]:
        """:meth:`stream` for async code, each chunk read in a worker thread. Closing or cancelling the
        iterator closes the stream exactly as a sync caller stopping early would."""
        context = contextvars.copy_context()
        chunks = self.stream(request, scope, call_key, on_outcome)
        pending: concurrent.futures.Future[StreamChunk | None] | None = None

        def read() -> StreamChunk | None:
            return next(chunks, None)

        try:
            while True:
                pending = self._pool().submit(context.run, read)
                chunk = await asyncio.wrap_future(pending)
                if chunk is None:
                    return
                yield chunk
        finally:
            def close() -> None:
                if pending is not None:
                    concurrent.futures.wait([pending])  # a generator cannot be closed while it runs
                context.run(chunks.close)

            await asyncio.shield(asyncio.wrap_future(self._pool().submit(close)))

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        """Worker threads for async callers (Postgres row locks, not this pool, bound concurrency)."""
        with self._workers_lock:
            if self._workers is None:
                self._workers = concurrent.futures.ThreadPoolExecutor(64, thread_name_prefix="wflo-gateway")
            return self._workers

    # ------------------------------------------------------------------ internals

    def _cache_key(self, request: LLMRequest) -> str | None:
        """The request's cache key, or None when there is no cache or the request must not be cached."""
        p = self.parts
        return p.cache_key(request) if p.cache_key is not None and p.cache is not None else None

    def _call_upstream(self, request: LLMRequest, scope: CallScope, call_key: str, cache_key: str | None,
                       remember: Remember | None) -> tuple[LLMResponse, CallOutcome]:
        p = self.parts
        provider = p.provider_for(request.provider)

        def send(number: int) -> tuple[LLMResponse, CallOutcome]:
            attempt = self._open_attempt(request, provider.name, scope, call_key, number, cache_key)
            try:
                response = provider.complete(attempt.request)
            except BaseException as err:
                self._close_unanswered(attempt, scope, err)
                raise
            return response, self._settle(attempt, response, scope, cache_key, remember)

        result: tuple[LLMResponse, CallOutcome] = (
            p.call_with_resilience(provider.name, send) if p.call_with_resilience else send(1))
        return result

    # -- holding

    def _open_attempt(self, request: LLMRequest, provider: str, scope: CallScope, call_key: str, number: int,
                      cache_key: str | None) -> _Attempt:
        """Hold the attempt's upper bound and write its ``held`` row, or refuse it before anything is sent.

        A budget with ``on_breach="fit"`` lowers the output limit to what fits (down to a floor); one
        with ``ask`` opens an approval request (``AwaitingApproval``).
        """
        p = self.parts
        key = call_key if number == 1 else f"{call_key}#{number}"
        prompt_bound = prompt_token_upper_bound(request)
        requested = output_token_upper_bound(request)
        max_tokens, requested_max = request.max_tokens, None
        refusals = 0
        while True:
            bound = p.catalog.upper_bound(provider, request.model, prompt_bound,
                                          requested if requested_max is None else max_tokens)
            attempt = _Attempt(key, number, replace(request, max_tokens=max_tokens), provider, bound,
                               requested_max, time.monotonic())
            try:
                p.budgets.after_expiring_stale(functools.partial(self._hold, attempt, scope, cache_key))
                return attempt
            except BudgetExceeded as err:
                refusals += 1
                fitted = self._fit(err, provider, request, prompt_bound) if refusals <= 8 else None
                if fitted is None:
                    self._refuse(err, scope)
                    raise
                max_tokens, requested_max = fitted, request.max_tokens

    def _hold(self, attempt: _Attempt, scope: CallScope, cache_key: str | None) -> None:
        p = self.parts
        known = scope.run_id in p.ledger.recorded_runs
        self._writes.hold(HeldRow(
            attempt.key, scope.run_id, scope.refs(), attempt.bound_usd, p.attempt_ttl,
            {"step_key": scope.step_key, "asset_key": scope.asset_key, "provider": attempt.provider,
             "model": attempt.request.model, "attempt": attempt.number, "max_output_tokens": attempt.request.max_tokens,
             "requested_max_tokens": attempt.requested_max_tokens, "cache_key": cache_key, "tags": dict(scope.tags),
             "parent_call_id": scope.parent_call_id},
        ), None if known else functools.partial(self._ensure_run, scope=scope))
        p.ledger.recorded_runs.add(scope.run_id)  # only once the run row is committed

    def _fit(self, err: BudgetExceeded, provider: str, request: LLMRequest, prompt_bound: int) -> int | None:
        """The largest output limit whose bound fits what the refusing budget has left, or None."""
        floor = self.parts.fit_min_output_tokens
        if err.on_breach != "fit" or any(k in request.extra for k in (*OUTPUT_LIMIT_KEYS, "n", "thinking")):
            return None  # the output limit is not ours alone to lower
        room = err.limit_usd - err.spent_usd - err.held_usd
        bound = self.parts.catalog.upper_bound
        low, high = floor, request.max_tokens - 1
        if high < low or bound(provider, request.model, prompt_bound, low) > room:
            return None
        while low < high:  # the bound grows with the output limit: binary search the largest that fits
            mid = (low + high + 1) // 2
            low, high = (mid, high) if bound(provider, request.model, prompt_bound, mid) <= room else (low, mid - 1)
        return low

    def _refuse(self, err: BudgetExceeded, scope: CallScope) -> None:
        """Record the refusal; a budget that asks turns it into an approval request."""
        p = self.parts
        with p.ledger.transaction() as session:
            approval_id = p.ask_approval(session, err, scope) if p.ask_approval else None
            # a budget row's scope is one of SCOPES (the event validates it again)
            p.record_event(session, BudgetExceededEvent(
                scope=cast(Scope, err.scope), scope_key=err.scope_key, limit_usd=err.limit_usd, spent_usd=err.spent_usd,
                held_usd=err.held_usd, requested_usd=err.requested_usd, run_id=scope.run_id,
                action="approval_requested" if approval_id else "failed"))
        if approval_id:
            raise awaiting_approval(err, approval_id) from err

    def _ensure_run(self, session: Session, scope: CallScope) -> None:
        """Record the run unless a committed transaction of this process already has."""
        if scope.run_id not in self.parts.ledger.recorded_runs:
            self.parts.ledger.ensure_run(session, scope.run_id, scope.workflow)

    # -- closing

    def _settle(self, attempt: _Attempt, response: LLMResponse, scope: CallScope, cache_key: str | None,
                remember: Remember | None) -> CallOutcome:
        """Charge the answer's priced usage; retried, since the provider has already billed it.

        Usage that cannot be priced charges the attempt at its bound (``estimated``). If the ledger
        stays unreachable, the hold remains and its expiry or the run close-out estimates it.
        """
        p = self.parts
        latency_ms = int((time.monotonic() - attempt.started) * 1000)
        for tries in range(1, SETTLE_ATTEMPTS + 1):
            try:
                try:
                    cost = p.catalog.cost(response.provider, attempt.request.model, response.usage)
                except (UsageInvalid, PricingError) as err:
                    log.warning("call %s: %s; charged at its bound", attempt.key, err)
                    return self._charge_bound(attempt, scope, response.usage, str(err))
                status: Literal["over_bound", "settled"] = (
                    "over_bound" if cost.total_usd > attempt.bound_usd else "settled")
                outcome = CallOutcome(response.provider, attempt.request.model, response.usage, cost.total_usd,
                                      Decimal(0), False, cost.price_version, attempt.key)
                events: list[EventData] = [LLMCallSettled(
                    **self._event_fields(outcome, scope), latency_ms=latency_ms, attempt=attempt.number,
                    status=status, bound_usd=attempt.bound_usd, max_output_tokens=attempt.request.max_tokens,
                    requested_max_tokens=attempt.requested_max_tokens)]
                if status == "over_bound":
                    log.warning("call %s cost $%s, over its bound $%s", attempt.key, cost.total_usd, attempt.bound_usd)
                    events.append(LLMCallOverBound(**self._event_fields(outcome, scope), bound_usd=attempt.bound_usd))
                call_id = self._writes.settle(
                    Settlement(attempt.key, status, response.usage, cost.total_usd, cost.price_version, latency_ms,
                               events),
                    functools.partial(self._record_thresholds, scope=scope),
                    None if remember is None else lambda session: remember(session, response))
                return replace(outcome, call_id=call_id)
            except Exception:
                if tries == SETTLE_ATTEMPTS:
                    log.exception("call %s was answered but could not be settled; its hold stays until it "
                                  "expires or the run is closed out, then it is charged at its bound", attempt.key)
                    raise
                time.sleep(0.05 * tries)
        raise AssertionError("unreachable")

    def _close_unanswered(self, attempt: _Attempt, scope: CallScope, err: BaseException | None) -> None:
        """End an attempt that produced no answer: released if the provider did not bill it, else
        charged at its bound (its billing is unknown: a timeout, a 5xx, a dropped connection)."""
        p = self.parts
        reason = f"{type(err).__name__}: {err}"[:500] if err is not None else "ended before usage arrived"
        if isinstance(err, ProviderError) and err.billed is False:
            with p.ledger.transaction() as session:
                p.budgets.release(session, attempt.key)
                p.ledger.fail_call(session, attempt.key, error=reason)
            return
        self._charge_bound(attempt, scope, Usage(), reason)

    def _charge_bound(self, attempt: _Attempt, scope: CallScope, usage: Usage, reason: str) -> CallOutcome:
        p = self.parts
        with p.ledger.transaction() as session:
            charged, crossed = p.budgets.charge_bound(session, attempt.key)
            if charged is None and p.budgets.unknown_billing == "release":
                call_id = p.ledger.fail_call(session, attempt.key, error=f"{reason}; not charged")
                return CallOutcome(attempt.provider, attempt.request.model, usage, Decimal(0), Decimal(0), False,
                                   "unbilled", attempt.key, call_id)
            call_id = p.ledger.settle_call(session, attempt.key, status="estimated", usage=usage,
                                           cost_usd=attempt.bound_usd, price_version="estimated:bound", error=reason)
            outcome = CallOutcome(attempt.provider, attempt.request.model, usage, attempt.bound_usd, Decimal(0),
                                  False, "estimated:bound", attempt.key, call_id)
            p.record_event(session, LLMCallSettled(
                **self._event_fields(outcome, scope), attempt=attempt.number, status="estimated",
                bound_usd=attempt.bound_usd, max_output_tokens=attempt.request.max_tokens,
                requested_max_tokens=attempt.requested_max_tokens))
            self._record_thresholds(session, crossed, scope=scope)
        return outcome

    def _record_cache_hit(self, request: LLMRequest, response: LLMResponse, scope: CallScope, call_key: str,
                          cache_key: str, remember: Remember | None) -> CallOutcome:
        """A $0 row with the saving, priced as the paid call was: the requested model, not the snapshot."""
        p = self.parts
        saved = p.catalog.cost(response.provider, request.model, response.usage)
        outcome = CallOutcome(response.provider, request.model, response.usage, Decimal(0),
                              saved.total_usd, True, saved.price_version, call_key)
        u = response.usage
        with p.ledger.transaction() as session:
            self._ensure_run(session, scope)
            call_id = p.ledger.record_call(
                session, idempotency_key=call_key, run_id=scope.run_id, step_key=scope.step_key,
                asset_key=scope.asset_key, provider=outcome.provider, model=outcome.model, status="cache_hit",
                input_tokens=u.input_tokens, cached_input_tokens=u.cached_input_tokens,
                cache_write_tokens=u.cache_write_tokens, output_tokens=u.output_tokens,
                reasoning_tokens=u.reasoning_tokens, cost_usd=Decimal(0), saved_usd=outcome.saved_usd,
                price_version=outcome.price_version, cache_key=cache_key, latency_ms=0,
                tags=dict(scope.tags), parent_call_id=scope.parent_call_id)
            p.record_event(session, LLMCallCacheHit(**self._event_fields(outcome, scope),
                                                    saved_usd=outcome.saved_usd))
            if remember is not None:
                remember(session, response)
        p.ledger.recorded_runs.add(scope.run_id)
        return replace(outcome, call_id=call_id)

    def _record_thresholds(self, session: Session, crossed: list[ThresholdCrossed], *, scope: CallScope) -> None:
        for alert in crossed:
            # a budget row's scope is one of SCOPES (the event validates it again)
            self.parts.record_event(session, BudgetThresholdCrossed(
                scope=cast(Scope, alert.scope), scope_key=alert.scope_key, limit_usd=alert.limit_usd,
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


def _chain(first: StreamChunk, rest: Iterator[StreamChunk]) -> Iterator[StreamChunk]:
    yield first
    yield from rest
