"""Step decorators: ``llm_asset`` and ``llm_op`` make steps whose LLM calls are tracked, budgeted and reported."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import dagster as dg

from wflo_core.budgets.estimate import PlannedCall, encode_plan
from wflo_core.errors import WfloError
from wflo_core.keys import BUDGET_TAG, PLANNED_CALLS_KEY
from wflo_core.money import parse_usd
from wflo_dagster.failures import as_failure
from wflo_dagster.hooks import LLM_RESOURCE_KEY, WFLO_HOOKS
from wflo_dagster.resources.llm import LLMResource, StepContext


def track_llm_step(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a compute function: open the step in the ledger, attach its cost metadata at the end,
    and turn wflo errors (``BudgetExceeded``...) into a ``dagster.Failure`` with one clear line.

    A function that takes no ``LLMResource`` (a sandbox step, say) is given one as an extra ``llm``
    parameter: Dagster then provides the resource, and the wrapper keeps it to itself.
    """
    signature = inspect.signature(fn, eval_str=True)
    own = next((name for name, p in signature.parameters.items() if p.annotation is LLMResource), None)

    @functools.wraps(fn)
    def wrapper(context: StepContext, *args: Any, **kwargs: Any) -> Any:
        llm = kwargs[own] if own else kwargs.pop(LLM_RESOURCE_KEY)
        try:
            recorder = llm._open_step(context)
            result = fn(context, *args, **kwargs)
        except WfloError as err:
            raise as_failure(err) from err
        context.add_output_metadata(recorder.totals.as_metadata())
        return result

    # Dagster reads the compute function's signature for inputs, config and resources; resolve it
    # here, in the user's module, since string annotations would be looked up in this one.
    if own is None:
        extra = inspect.Parameter(LLM_RESOURCE_KEY, inspect.Parameter.KEYWORD_ONLY, annotation=LLMResource)
        signature = signature.replace(parameters=[*signature.parameters.values(), extra])
    wrapper.__signature__ = signature  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**typing.get_type_hints(fn), **({} if own else {LLM_RESOURCE_KEY: LLMResource})}
    return wrapper


def _op_tags(budget_usd: Decimal | str | None, kwargs: dict[str, Any]) -> dict[str, str]:
    op_tags = dict(kwargs.pop("op_tags", None) or kwargs.pop("tags", None) or {})
    if budget_usd is not None:
        op_tags[BUDGET_TAG] = str(parse_usd(budget_usd, "budget_usd"))
    return op_tags


def llm_asset(*, budget_usd: Decimal | str | None = None, planned_calls: Sequence[PlannedCall] = (),
              **asset_kwargs: Any) -> Callable[..., dg.AssetsDefinition]:
    """``@dg.asset`` plus wflo's hooks, cost metadata and an optional per-asset budget.

    ``budget_usd`` becomes the asset's ``wflo/budget_usd`` op tag: every materialization's calls are
    held against it before they are sent. ``planned_calls`` declares the calls the asset expects to
    make, so ``wflo estimate JOB`` can bound a job's cost before it runs.
    """
    op_tags = _op_tags(budget_usd, asset_kwargs)
    hooks = set(asset_kwargs.pop("hooks", None) or set()) | WFLO_HOOKS
    if planned_calls:
        asset_kwargs["metadata"] = {**(asset_kwargs.get("metadata") or {}),
                                    PLANNED_CALLS_KEY: encode_plan(planned_calls)}

    def decorator(fn: Callable[..., Any]) -> dg.AssetsDefinition:
        return dg.asset(op_tags=op_tags, hooks=hooks, **asset_kwargs)(track_llm_step(fn))

    return decorator


def llm_op(*, budget_usd: Decimal | str | None = None, **op_kwargs: Any) -> Callable[..., dg.OpDefinition]:
    """``@dg.op`` with the same tracking as :func:`llm_asset`: cost metadata, one-line failures, and
    the step hook, so an op needs no ``@track_llm_step`` or ``.with_hooks(...)`` of its own.

    ``budget_usd`` limits the op's calls in each run (like ``llm_asset(budget_usd=)``).
    """
    tags = _op_tags(budget_usd, op_kwargs)

    def decorator(fn: Callable[..., Any]) -> dg.OpDefinition:
        op = dg.op(tags=tags, **op_kwargs)(track_llm_step(fn))
        return op.with_hooks(WFLO_HOOKS)

    return decorator
