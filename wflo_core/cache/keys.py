"""Which requests are cached, and under which key.

The key is ``llm:v1:<sha256>`` of the canonical JSON of *every* field of the ``LLMRequest``
(provider, model, messages, sampling parameters, tools, response_format, seed, stop, extra...), so
any parameter that can change the output changes the key, and keys stay short however long the
prompt is (the payload is never part of the key).

Caching rule (``CacheMode``):

* ``"auto"`` (default) caches only requests whose output is meant to be reproducible:
  ``temperature == 0`` or a ``seed`` is set. ``temperature=None`` means the provider's default
  (usually 1), so such requests are *not* cached.
* ``"always"`` caches whatever the sampling parameters are (the caller accepts replaying one sample).
* ``"never"`` opts a single call out.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Literal

from wflo_core.calls import LLMRequest
from wflo_core.errors import ConfigError

CacheMode = Literal["auto", "always", "never"]

#: Bumped whenever the canonical form below changes, so old entries are never misread.
KEY_VERSION = "v1"
KEY_PREFIX = f"llm:{KEY_VERSION}:"


def _canonical(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # temperature=0 and temperature=0.0 are the same request
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise ConfigError(
        f"LLMRequest contains a {type(value).__name__} value ({value!r:.60}) that has no JSON form, "
        f"so the request cannot be cached; pass plain JSON values in tools/response_format/extra "
        f"or call with cache='never'"
    )


def canonical_request_json(request: LLMRequest) -> str:
    """The request as canonical JSON: sorted keys, no whitespace, NaN refused."""
    try:
        return json.dumps(_canonical(request), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False, allow_nan=False)
    except ValueError as err:
        raise ConfigError(f"LLMRequest cannot be cached: {err}; call with cache='never'") from err


def cache_key(request: LLMRequest) -> str:
    """A short, stable key for the request: ``llm:v1:`` + 64 hex digits."""
    digest = hashlib.sha256(canonical_request_json(request).encode()).hexdigest()
    return KEY_PREFIX + digest


def is_cacheable(request: LLMRequest, mode: CacheMode = "auto") -> bool:
    """Whether a response to ``request`` may be stored and served again (see the module docstring)."""
    if mode == "never":
        return False
    if mode == "always":
        return True
    if mode == "auto":
        return request.temperature == 0 or request.seed is not None
    raise ConfigError(f"cache mode {mode!r} is not one of 'auto', 'always', 'never'")
