"""wflo errors → ``dagster.Failure``, in one place, so the event log shows one clear line."""

from __future__ import annotations

from decimal import Decimal

import dagster as dg

from wflo_core.errors import WfloError


def wflo_cause(err: BaseException) -> WfloError | None:
    """The wflo error behind ``err``: agent frameworks and SDKs wrap what the drop-in transport raised."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, WfloError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def as_failure(err: WfloError) -> dg.Failure:
    metadata = {f"wflo/{k}": (str(v) if isinstance(v, Decimal) else v) for k, v in err.fields.items()
                if isinstance(v, str | int | Decimal)}
    return dg.Failure(description=str(err), metadata=metadata, allow_retries=err.retryable)
