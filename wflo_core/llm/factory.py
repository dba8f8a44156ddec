"""Build every wflo service from settings: embedded defaults, or Postgres/Redis/Kafka when configured."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from wflo_core.approvals import ApprovalBook, BudgetAsk
from wflo_core.budgets import BudgetBook
from wflo_core.cache.base import ResponseCache
from wflo_core.cache.keys import cache_key, is_cacheable
from wflo_core.cache.locks import LockFactory
from wflo_core.cache.redis import RedisCache
from wflo_core.cache.redis_locks import RedisLocks
from wflo_core.cache.singleflight import SingleFlight
from wflo_core.cache.sqlite import SQLiteCache, SQLiteLocks
from wflo_core.config import WfloSettings
from wflo_core.errors import ConfigError
from wflo_core.events.outbox import emit
from wflo_core.events.relay import RelayStats, relay_best_effort
from wflo_core.events.schemas import EventData
from wflo_core.events.sinks import build_event_sink
from wflo_core.events.sinks.base import EventSink
from wflo_core.events.topics import TopicLayout
from wflo_core.ledger.migrations import upgrade
from wflo_core.ledger.store import Ledger
from wflo_core.llm.gateway import Gateway, GatewayParts
from wflo_core.llm.providers.base import Provider
from wflo_core.llm.providers.factory import build_provider
from wflo_core.llm.redis_outage import FailOpenBreakerStore, FailOpenCache, fail_open_single_flight
from wflo_core.llm.types import LLMRequest, LLMResponse
from wflo_core.pricing import PriceCatalog
from wflo_core.resilience.breaker import BreakerConfig, BreakerStore, CircuitBreaker, MemoryBreakerStore
from wflo_core.resilience.redis_breaker import RedisBreakerStore
from wflo_core.resilience.retry import RetryPolicy, call_with_retries

T = TypeVar("T")


@dataclass
class WfloServices:
    """The ledger, budgets and gateway of one process, built once and closed together."""

    settings: WfloSettings
    ledger: Ledger
    budgets: BudgetBook
    gateway: Gateway
    _providers: dict[str, Provider] = field(default_factory=dict)
    _sink: EventSink | None = None

    def emit(self, session: Session, event: EventData) -> None:
        emit(session, event, topic=TopicLayout.from_settings(self.settings).events)

    @staticmethod
    def parse_usd(value: str, what: str) -> Decimal:
        try:
            amount = Decimal(value)
        except InvalidOperation:
            raise ConfigError(f"{what} must be a decimal USD amount like '0.50', got {value!r}") from None
        if amount < 0 or not amount.is_finite():
            raise ConfigError(f"{what} must be a finite amount >= 0, got {value!r}")
        return amount

    def relay_events(self, *, max_seconds: float = 10.0) -> RelayStats:
        """Publish pending outbox events now (best effort; never raises)."""
        if self._sink is None:
            self._sink = build_event_sink(self.settings, delivery_timeout_s=5.0)
        return relay_best_effort(self.ledger, self._sink, max_seconds=max_seconds)

    def close(self) -> None:
        for provider in self._providers.values():
            provider.close()
        if self._sink is not None:
            self._sink.close()
        self.ledger.close()


def build_services(settings: WfloSettings, **part_overrides: Any) -> WfloServices:
    """Wire the gateway from settings. Embedded mode migrates its SQLite ledger on first use."""
    if settings.is_embedded:
        upgrade(settings.ledger_url)
    ledger = Ledger(settings.ledger_url)
    budgets = BudgetBook(ledger, hold_ttl=timedelta(seconds=settings.hold_ttl_seconds),
                         alert_thresholds=settings.budget_alert_thresholds)
    providers: dict[str, Provider] = {}

    def provider_for(name: str) -> Provider:
        if name not in providers:
            providers[name] = build_provider(name, settings)
        return providers[name]

    if settings.redis_url:
        import redis

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

    events_topic = TopicLayout.from_settings(settings).events
    parts = GatewayParts(
        ledger=ledger, budgets=budgets, catalog=PriceCatalog.from_settings(settings),
        provider_for=provider_for, record_event=functools.partial(emit, topic=events_topic),
        cache=cache, cache_key=key_for,
        single_flight=fail_open_single_flight(flights),
        call_with_resilience=resilient, ask_approval=BudgetAsk(ApprovalBook(ledger)),
    )
    for key, value in part_overrides.items():
        setattr(parts, key, value)
    return WfloServices(settings, ledger, budgets, Gateway(parts), providers)
