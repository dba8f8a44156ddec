"""The composition root: settings in, one ``WfloServices`` (ledger, budgets, gateway, books, sinks) out.

Everything that needs a ledger or the gateway gets it from here, so a process opens one ledger engine
however many resources, sensors or commands use it: :func:`shared_services` hands out one
``WfloServices`` per distinct settings and closes it when its last user lets go.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from wflo_core import telemetry
from wflo_core.approvals import ApprovalBook, BudgetAsk
from wflo_core.budgets import BudgetBook
from wflo_core.budgets.scopes import PERIOD_TEMPLATE_KEY
from wflo_core.cache.base import ResponseCache
from wflo_core.cache.fail_open import FailOpenCache, fail_open_single_flight
from wflo_core.cache.keys import cache_key, is_cacheable
from wflo_core.cache.locks import LockFactory
from wflo_core.cache.singleflight import SingleFlight
from wflo_core.cache.sqlite import SQLiteCache, SQLiteLocks
from wflo_core.calls import LLMRequest, LLMResponse
from wflo_core.checkpoints import CheckpointStore, SettledResults
from wflo_core.compensation import CompensationBook
from wflo_core.config import WfloSettings
from wflo_core.events.outbox import EventRecorder, OutboxRecorder
from wflo_core.events.relay import IN_STEP_DELIVERY_TIMEOUT_S, RelayStats, relay_in_step
from wflo_core.events.sinks import build_event_sink, in_step_sink, publish_breaker
from wflo_core.events.sinks.base import EventSink
from wflo_core.events.topics import TopicLayout
from wflo_core.ledger.access import open_ledger
from wflo_core.ledger.models import Run
from wflo_core.ledger.rollups import run_total
from wflo_core.ledger.store import Ledger
from wflo_core.llm.gateway import Gateway, GatewayParts
from wflo_core.llm.providers.base import Provider
from wflo_core.llm.providers.factory import build_provider
from wflo_core.pricing import PriceCatalog
from wflo_core.resilience.breaker import BreakerConfig, BreakerStore, CircuitBreaker, MemoryBreakerStore
from wflo_core.resilience.fail_open import FailOpenBreakerStore
from wflo_core.resilience.retry import RetryPolicy, call_with_retries
from wflo_core.runs.close import close_run
from wflo_core.steps.writer import StepWriter, unwritten

log = logging.getLogger(__name__)

T = TypeVar("T")
HOLD_MARGIN_SECONDS = 60
"""How much longer than the provider timeout an attempt's hold lives (the answer is settled after it)."""


@dataclass
class WfloServices:
    """The ledger, budgets, gateway and books of one process, built once and closed together."""

    settings: WfloSettings
    ledger: Ledger
    budgets: BudgetBook
    gateway: Gateway
    record_event: EventRecorder
    """Writes an event into the outbox, in the caller's transaction, on the configured topic."""
    approvals: ApprovalBook
    checkpoints: CheckpointStore
    settled: SettledResults
    """LLM answers a run's chain already paid for (reused on re-execution)."""
    compensations: CompensationBook
    _providers: dict[str, Provider] = field(default_factory=dict)
    step_writer: StepWriter = field(default_factory=StepWriter)
    """Steps' open and close rows written in the background (see ``steps.writer``)."""
    _sink: EventSink | None = None

    def close_run(self, run_id: str, workflow: str, status: str, reason: str | None = None) -> bool:
        """Record the run's end once: crashed steps, released holds, the run event (see ``runs.close``)."""
        self._log_unwritten(self.step_writer.flush())  # this process's steps closed first
        closed = close_run(self.ledger, self.budgets, run_id, workflow, status, reason,
                           record_event=self.record_event)
        if closed:
            with self.ledger.transaction() as session:
                run = session.get(Run, run_id)
                started, ended = (run.started_at, run.ended_at) if run else (None, None)
                cost = run_total(session, run_id)
            telemetry.record_run(run_id, workflow, status, started, ended, cost)
            telemetry.flush()
        return closed

    @staticmethod
    def _log_unwritten(errors: list[BaseException]) -> None:
        for err in errors:
            log.warning(unwritten(err))

    def prepare_relay(self) -> None:
        """Build the in-step publisher when a step starts: it connects while the step runs."""
        if self._sink is None:
            self._sink = in_step_sink(self.settings, delivery_timeout_s=IN_STEP_DELIVERY_TIMEOUT_S)

    def relay_events(self) -> RelayStats:
        """Publish pending outbox events now, the in-step way: short, never raises, and skipped while
        the broker is known to be down (the relay sensor and ``wflo events relay`` catch up)."""
        if self._sink is None:  # no step prepared it (the demo's close-out): built now, connected if needed
            self._sink = build_event_sink(self.settings, delivery_timeout_s=IN_STEP_DELIVERY_TIMEOUT_S)
        return relay_in_step(self.ledger, self._sink, publish_breaker(self.settings))

    def close(self) -> None:
        self._log_unwritten(self.step_writer.close())
        for provider in self._providers.values():
            provider.close()
        if self._sink is not None:
            self._sink.close()
        self.ledger.close()


def build_services(settings: WfloSettings, **part_overrides: Any) -> WfloServices:
    """Wire the gateway from settings. Embedded mode migrates its SQLite ledger on first use (Alembic only
    runs, and is only imported, when the schema is behind: the check is one query)."""
    ledger = open_ledger(settings) if settings.is_embedded else Ledger(settings.ledger_url)
    attempt_ttl = timedelta(seconds=max(settings.hold_ttl_seconds, settings.llm_timeout_seconds + HOLD_MARGIN_SECONDS))
    budgets = BudgetBook(ledger, hold_ttl=attempt_ttl, alert_thresholds=settings.budget_alert_thresholds,
                         unknown_billing=settings.unknown_billing)
    if settings.budget_day_usd is not None:
        with ledger.transaction() as session:
            budgets.set_limit(session, "day", PERIOD_TEMPLATE_KEY, settings.budget_day_usd, settings.budget_on_breach)
    providers: dict[str, Provider] = {}

    def provider_for(name: str) -> Provider:
        if name not in providers:
            providers[name] = build_provider(name, settings)
        return providers[name]

    if settings.redis_url:
        import redis

        from wflo_core.cache.redis import RedisCache
        from wflo_core.cache.redis_locks import RedisLocks
        from wflo_core.resilience.redis_breaker import RedisBreakerStore

        client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=5)
        cache: ResponseCache = FailOpenCache(RedisCache(client, max_entries=settings.cache_max_entries,
                                                        default_ttl_seconds=settings.cache_ttl_seconds or None))
        locks: LockFactory = RedisLocks(client)
        breaker_store: BreakerStore = FailOpenBreakerStore(RedisBreakerStore(client))
    else:  # a file under WFLO_HOME, so answers outlive each `dagster asset materialize` process
        cache = SQLiteCache(settings.cache_path, max_entries=settings.cache_max_entries,
                            default_ttl_seconds=settings.cache_ttl_seconds or None)
        locks, breaker_store = SQLiteLocks(settings.cache_path), MemoryBreakerStore()
    flights: SingleFlight[LLMResponse] = SingleFlight(cache, locks)
    breaker_config, retry_policy = BreakerConfig.from_settings(settings), RetryPolicy.from_settings(settings)
    breakers: dict[str, CircuitBreaker] = {}

    def resilient(provider: str, send: Callable[[int], T]) -> T:
        breaker = breakers.setdefault(provider, CircuitBreaker(provider, store=breaker_store,
                                                               config=breaker_config))
        attempts = iter(range(1, retry_policy.max_attempts + 1))
        return call_with_retries(lambda: breaker.call(lambda: send(next(attempts))), policy=retry_policy,
                                 description=f"provider {provider!r}")

    def key_for(request: LLMRequest) -> str | None:
        return cache_key(request) if is_cacheable(request, settings.cache_mode) else None

    record_event = OutboxRecorder(TopicLayout.from_settings(settings).events)
    checkpoints = CheckpointStore(ledger)
    approvals = ApprovalBook(ledger, record_event=record_event)
    parts = GatewayParts(
        ledger=ledger, budgets=budgets, catalog=PriceCatalog.from_settings(settings),
        provider_for=provider_for, record_event=record_event,
        cache=cache, cache_key=key_for,
        single_flight=fail_open_single_flight(flights),
        call_with_resilience=resilient, ask_approval=BudgetAsk(approvals),
        attempt_ttl=attempt_ttl, fit_min_output_tokens=settings.budget_fit_min_output_tokens,
    )
    for key, value in part_overrides.items():
        setattr(parts, key, value)
    return WfloServices(settings, ledger, budgets, Gateway(parts), record_event, approvals,
                        checkpoints, SettledResults(checkpoints), CompensationBook(ledger), providers)


_shared: dict[str, tuple[WfloServices, int]] = {}
_shared_lock = threading.Lock()


def acquire_services(settings: WfloSettings) -> WfloServices:
    """The process's ``WfloServices`` for ``settings`` (built on first use); pair with :func:`release_services`."""
    key = settings.model_dump_json()
    with _shared_lock:
        services, users = _shared.get(key) or (None, 0)
        if services is None:
            services = build_services(settings)
        _shared[key] = (services, users + 1)
        return services


def release_services(services: WfloServices) -> None:
    """Let go of ``services``; the last user closes it."""
    key = services.settings.model_dump_json()
    with _shared_lock:
        shared, users = _shared.get(key) or (None, 0)
        if shared is not services:
            services.close()  # not shared (built directly): close it
            return
        if users > 1:
            _shared[key] = (services, users - 1)
            return
        del _shared[key]
    services.close()


@contextmanager
def shared_services(settings: WfloSettings) -> Iterator[WfloServices]:
    """``with shared_services(load_settings()) as services:``, sharing one ledger engine per process."""
    services = acquire_services(settings)
    try:
        yield services
    finally:
        release_services(services)
