"""Turn OpenAI/Anthropic SDK exceptions into wflo's provider error categories.

The category decides whether the gateway retries: rate limits and outages are retryable,
rejected requests and bad credentials are not. Messages never include keys or headers.
"""

from __future__ import annotations

import email.utils
import re
import sys
import time
from collections.abc import Mapping
from typing import Any

from wflo_core.errors import (
    ProviderAuthFailed,
    ProviderError,
    ProviderRateLimited,
    ProviderRequestRejected,
    ProviderUnavailable,
)

_SDKS = ("openai", "anthropic")
_SECRET_LIKE = re.compile(r"(sk-[A-Za-z0-9_\-*]{3,}|sk-ant-[A-Za-z0-9_\-*]+|Bearer\s+\S+)")
_DETAIL_CHARS = 300


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, or ``Retry-After`` as seconds or an HTTP date."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def translate_sdk_error(err: Exception, *, provider: str, model: str) -> ProviderError:
    """The wflo error for an SDK exception; raise it ``from err`` so the SDK error stays the cause."""
    where = f"{provider} model {model!r}"
    if isinstance(err, _sdk_classes("APITimeoutError")):
        return ProviderUnavailable(
            f"ProviderUnavailable: {where} did not answer before the timeout; wflo retries this, "
            f"raise WFLO_LLM_TIMEOUT_SECONDS if the model is slow",
            provider=provider,
            model=model,
            status_code=None,
            billed=None,
        )
    if isinstance(err, _sdk_classes("APIConnectionError")):
        return ProviderUnavailable(
            f"ProviderUnavailable: the connection to {where} failed ({type(err.__cause__ or err).__name__}); "
            f"wflo retries this; if it persists check the base URL and the network",
            provider=provider,
            model=model,
            status_code=None,
            billed=None,
        )
    if isinstance(err, _sdk_classes("APIStatusError")):
        return _from_status(err, provider=provider, model=model, where=where)
    return ProviderUnavailable(
        f"ProviderUnavailable: {where} failed with {type(err).__name__}",
        provider=provider,
        model=model,
        status_code=None,
        billed=None,
    )


def _sdk_classes(name: str) -> tuple[type[Exception], ...]:
    """``name`` (e.g. ``APIStatusError``) of each SDK already imported: an SDK that is not loaded
    cannot have raised, and importing it here would cost the seconds the lazy import saved."""
    return tuple(getattr(sys.modules[sdk], name) for sdk in _SDKS if sdk in sys.modules)


def _from_status(err: Any, *, provider: str, model: str, where: str) -> ProviderError:
    status: int = err.status_code
    fields: dict[str, Any] = {"provider": provider, "model": model, "status_code": status}
    if status == 429:
        retry_after = parse_retry_after(err.response.headers)
        wait = f"retry after {retry_after:g}s" if retry_after is not None else "no Retry-After given"
        return ProviderRateLimited(
            f"ProviderRateLimited: {where} returned HTTP 429 ({wait}); wflo retries this, "
            f"lower step concurrency or raise the provider's rate limit if it persists",
            retry_after=retry_after,
            billed=False,
            **fields,
        )
    if status in (401, 403):
        return ProviderAuthFailed(
            f"ProviderAuthFailed: {where} returned HTTP {status}; the API key is missing, wrong or "
            f"lacks access to this model: set WFLO_{_key_var(provider)}",
            billed=False,
            **fields,
        )
    if status >= 500 or status in (408, 409):
        return ProviderUnavailable(
            f"ProviderUnavailable: {where} returned HTTP {status}; wflo retries this",
            billed=None,
            **fields,
        )
    return ProviderRequestRejected(
        f"ProviderRequestRejected: {where} rejected the request with HTTP {status}: "
        f"{_detail(err)}; fix the request (model name, parameters, messages), retrying will not help",
        billed=False,
        **fields,
    )


def _key_var(provider: str) -> str:
    return "ANTHROPIC_API_KEY" if provider == "anthropic" else f"{provider.upper()}_API_KEY"


def _detail(err: Any) -> str:
    """The provider's own explanation, shortened and with anything key-like masked."""
    body = err.body
    text = ""
    if isinstance(body, dict):
        inner = body.get("error", body)
        text = str(inner.get("message", "")) if isinstance(inner, dict) else str(inner)
    text = text or "no details"
    return _SECRET_LIKE.sub("***", text)[:_DETAIL_CHARS]
