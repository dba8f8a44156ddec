"""``WfloResource``: where wflo keeps its state, as Dagster config; every wflo resource reads settings here.

Unset fields fall back to the ``WFLO_*`` environment (and ``.env``), so the embedded default needs no
config at all. Secrets and URLs can be given as ``dg.EnvVar`` so they never appear in the UI::

    wflo = WfloResource(database_url=dg.EnvVar("LEDGER_URL"), openai_api_key=dg.EnvVar("OPENAI_API_KEY"))
    defs = dg.Definitions(..., resources={"llm": LLMResource(wflo=wflo), "sandbox": SandboxResource(wflo=wflo)})
"""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import Field

from wflo_core.config import WfloSettings, load_settings
from wflo_core.services import WfloServices, acquire_services


class WfloResource(dg.ConfigurableResource):
    """Ledger, cache, events and provider settings shared by the LLM, sandbox and events resources."""

    home: str | None = Field(default=None, description="Embedded-mode state directory; unset = WFLO_HOME.")
    database_url: str | None = Field(default=None, description="Ledger URL (Postgres); unset = WFLO_DATABASE_URL.")
    redis_url: str | None = Field(default=None, description="Cache/breaker Redis; unset = WFLO_REDIS_URL.")
    kafka_bootstrap_servers: str | None = Field(
        default=None, description="Kafka host:port list; unset = WFLO_KAFKA_BOOTSTRAP_SERVERS.")
    openai_api_key: str | None = Field(default=None, description="Give as dg.EnvVar; unset = WFLO_OPENAI_API_KEY.")
    anthropic_api_key: str | None = Field(
        default=None, description="Give as dg.EnvVar; unset = WFLO_ANTHROPIC_API_KEY.")


def wflo_settings(wflo: WfloResource | None, **overrides: Any) -> WfloSettings:
    """The settings of a resource: its ``WfloResource`` config over the environment, then ``overrides``."""
    config = wflo.model_dump(exclude_none=True) if wflo is not None else {}
    return load_settings(**config, **{k: v for k, v in overrides.items() if v is not None})


def acquire(wflo: WfloResource | None, **overrides: Any) -> WfloServices:
    """This process's shared services for the resource's settings (release with ``release_services``)."""
    return acquire_services(wflo_settings(wflo, **overrides))
