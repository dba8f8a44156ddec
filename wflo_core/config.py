"""Settings from the environment (``WFLO_*``) and ``.env``, validated once.

Nothing set means the embedded default: a SQLite ledger, an in-process cache, a JSONL event file
under ``WFLO_HOME`` (default ``.wflo/``), the process sandbox and the replay LLM provider. Setting
``WFLO_DATABASE_URL``, ``WFLO_REDIS_URL`` or ``WFLO_KAFKA_BOOTSTRAP_SERVERS`` switches each concern
to its production backend independently.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from wflo_core.errors import ConfigError

ENV_PREFIX = "WFLO_"
_HOSTPORT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


class WfloSettings(BaseSettings):
    """All of wflo's configuration. Field ``x`` is read from ``WFLO_X``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", populate_by_name=True,
        env_ignore_empty=True,  # VAR= (compose's ${VAR:-} pass-through) means unset, not ""
    )

    home: Path = Path(".wflo")
    """Where the embedded default keeps its SQLite ledger, JSONL events and caches."""

    database_url: str | None = None
    """Postgres URL of the ledger (``postgresql://user:pass@host:5432/db``); unset = SQLite in home."""
    redis_url: str | None = None
    """Redis for the response cache, locks and the shared circuit breaker; unset = in-process."""
    kafka_bootstrap_servers: str | None = None
    """Comma-separated ``host:port`` list; unset = events go to ``home/events.jsonl``."""
    kafka_topic_prefix: str = "wflo"
    kafka_partitions: int = Field(default=3, ge=1)

    llm_mode: Literal["auto", "replay", "live", "record"] = "auto"
    """``auto``: live for a provider whose key is set, else recorded answers; ``replay`` serves recorded
    responses only (no key, no network); ``record`` calls live and saves each answer."""
    cassette_path: Path | None = None
    """Cassette for replay/record; unset = replay from the example pipelines' cassette and your own
    recordings (``recordings_path``), record into ``recordings_path``."""
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("WFLO_OPENAI_API_KEY", "OPENAI_API_KEY")
    )
    openai_base_url: str | None = None
    anthropic_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("WFLO_ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY")
    )
    anthropic_base_url: str | None = None
    openai_compatible_base_url: str | None = None
    """A server speaking OpenAI's API (vLLM, Ollama, LM Studio), e.g. ``http://localhost:11434/v1``."""
    openai_compatible_api_key: SecretStr | None = None
    llm_timeout_seconds: float = Field(default=60.0, gt=0)
    """How long one provider request may take before it counts as failed (and is retried)."""
    default_max_tokens: int = Field(default=1024, gt=0)
    """Output limit given to drop-in SDK requests that set none, so their cost has a bound to hold."""

    price_overrides_path: Path | None = None
    """YAML/JSON file of prices for private or self-hosted models."""
    unknown_model_policy: Literal["error", "warn", "fallback"] = "error"
    fallback_model: str | None = None
    """``provider:model`` whose prices apply to unknown models when the policy is ``fallback``."""

    budget_run_usd: Decimal | None = Field(default=None, ge=0)
    """Default limit for every run; unset = no run budget unless a job/asset tag sets one."""
    budget_day_usd: Decimal | None = Field(default=None, ge=0)
    """Limit for every UTC day across all runs (a ``day *`` budget); unset = none unless set with the CLI."""
    budget_on_breach: Literal["fail", "ask", "fit"] = "fail"
    """What a refused call does: fail the step, ask for approval, or ``fit`` (send with a lower max_tokens)."""
    budget_fit_min_output_tokens: int = Field(default=16, ge=1)
    """With ``fit``: below this output limit the call is refused instead of sent."""
    budget_alert_thresholds: list[int] = Field(default_factory=lambda: [50, 75, 90])
    hold_ttl_seconds: int = Field(default=900, gt=0)
    """Holds of a step that crashed expire after this long (at least the LLM timeout plus a margin, so
    a hold never expires while its call is in flight)."""
    unknown_billing: Literal["charge", "release"] = "charge"
    """An attempt whose billing is unknown (timeout, 5xx, dropped stream, crashed step): ``charge`` its
    bound as ``estimated`` (never $0), or ``release`` the hold and count nothing."""

    cache_ttl_seconds: int = Field(default=86_400, ge=0)
    """0 = entries never expire (the size limit still applies)."""
    cache_mode: Literal["auto", "always", "never"] = "auto"
    """auto caches deterministic requests only (temperature 0 or a seed); always/never override."""
    cache_max_entries: int = Field(default=10_000, gt=0)

    retry_max_attempts: int = Field(default=4, ge=1, le=20)
    retry_base_delay_seconds: float = Field(default=0.5, ge=0)
    retry_max_delay_seconds: float = Field(default=30.0, ge=0)
    breaker_failure_threshold: int = Field(default=5, ge=1)
    breaker_reset_timeout_seconds: float = Field(default=30.0, gt=0)
    breaker_half_open_probes: int = Field(default=1, ge=1)

    sandbox_backend: Literal["docker", "process"] | None = None
    """Unset = docker when a database URL is set (production), process otherwise."""
    sandbox_image: str = "wflo-sandbox:latest"
    sandbox_runtime: str | None = None
    """Docker runtime for sandbox containers, e.g. ``runsc`` (gVisor); unset = the engine default."""
    sandbox_warm_pool: int | None = Field(default=None, ge=0, le=32)
    """Sandboxes kept ready ahead of time: Docker containers started, or process sandboxes set up;
    0 = set each up when its run starts; unset = 2 for the process backend, 0 for Docker."""
    docker_host: str | None = None

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme in ("postgres", "postgresql", "postgresql+psycopg"):
            return "postgresql+psycopg://" + value.split("://", 1)[1]
        if scheme.startswith("sqlite"):
            return value
        raise ValueError(
            "must be a URL like postgresql://user:pass@host:5432/db or sqlite:///path/ledger.db"
        )

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _bootstrap(cls, value: str | None) -> str | None:
        if not value:
            return None
        for server in value.split(","):
            if not _HOSTPORT.match(server.strip()):
                raise ValueError(f"{server.strip()!r} is not host:port; use e.g. localhost:9092")
        return value

    @field_validator("budget_alert_thresholds")
    @classmethod
    def _thresholds(cls, value: list[int]) -> list[int]:
        if any(not 0 < v < 100 for v in value):
            raise ValueError("each threshold must be a percentage between 1 and 99, e.g. 50,75,90")
        return sorted(set(value))

    # ------------------------------------------------------------------ derived

    @property
    def is_embedded(self) -> bool:
        return self.database_url is None

    @property
    def ledger_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'ledger.db').resolve()}"

    @property
    def recordings_path(self) -> Path:
        """Where record mode writes when no ``WFLO_CASSETTE_PATH`` is set: under ``home``, never into the package."""
        return self.home / "cassettes" / "recorded.jsonl"

    def has_credentials(self, provider: str) -> bool:
        """Whether a live call to ``provider`` is configured (a key, or a base URL for a local server)."""
        if provider == "openai":
            return self.openai_api_key is not None
        if provider == "anthropic":
            return self.anthropic_api_key is not None
        return provider == "openai_compatible" and self.openai_compatible_base_url is not None

    def mode_for(self, provider: str) -> Literal["replay", "live", "record"]:
        """The mode calls to ``provider`` run in; ``auto`` resolves to live when its key is set."""
        if self.llm_mode != "auto":
            return self.llm_mode
        return "live" if self.has_credentials(provider) else "replay"

    @property
    def cache_path(self) -> Path:
        """The embedded response cache (used when no Redis is set); separate from the ledger."""
        return self.home / "cache.db"

    @property
    def events_path(self) -> Path:
        return self.home / "events.jsonl"

    @property
    def effective_sandbox_backend(self) -> Literal["docker", "process"]:
        return self.sandbox_backend or ("process" if self.is_embedded else "docker")


def default_cache_dir() -> Path:
    """Where wflo keeps what it can rebuild (compiled prices, the ledger's DDL): ``$XDG_CACHE_HOME/wflo``,
    else ``~/.cache/wflo``. Nothing in it is needed; a process that cannot write it does without."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "wflo"


def keep_cached(path: Path, value: Any) -> None:
    """Write ``value`` as JSON to the cache file ``path`` whole (a rename, so concurrent processes never
    read half a file) or not at all: a read-only or full cache directory only means a rebuild later."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".", delete=False) as out:
            try:
                json.dump(value, out)
            except BaseException:
                os.unlink(out.name)
                raise
        os.replace(out.name, path)
    except OSError:
        pass


def load_settings(**overrides: Any) -> WfloSettings:
    """Read settings; any invalid value becomes one ``ConfigError`` line naming the variable."""
    try:
        return WfloSettings(**overrides)
    except ValidationError as err:
        problems = []
        for e in err.errors():
            name = ENV_PREFIX + "_".join(str(p) for p in e["loc"]).upper() if e["loc"] else ENV_PREFIX
            problems.append(f"{name}: {e['msg'].removeprefix('Value error, ')}")
        raise ConfigError("invalid settings: " + "; ".join(problems)) from None


def redact_url(url: str) -> str:
    """A URL safe to log: the password replaced by ``***``."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)
