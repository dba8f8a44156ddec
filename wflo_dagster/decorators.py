"""Step decorators: ``llm_asset`` and ``llm_op`` make steps whose LLM calls are tracked, budgeted and reported."""

from __future__ import annotations

import functools
import inspect
import time
import typing
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from typing import Any

import dagster as dg

from wflo_core import telemetry
from wflo_core.budgets.estimate import PlannedCall, encode_plan
from wflo_core.errors import AwaitingApproval, WfloError
from wflo_core.keys import BUDGET_TAG, PLANNED_CALLS_KEY, RUN_BUDGET_TAG, WAITING_TAG
from wflo_core.money import parse_usd
from wflo_dagster.checks import cost_check_spec, cost_verdict
from wflo_dagster.failures import as_failure, wflo_cause
from wflo_dagster.hooks import LLM_RESOURCE_KEY, WFLO_HOOKS
from wflo_dagster.resources.llm import LLMResource, StepContext, step_identity


def _step_span(context: StepContext, started_ns: int, error: BaseException | None,
               cost_usd: Decimal | None = None) -> None:
    """The step's OpenTelemetry span (its calls' spans are already its children)."""
    run_id, step_key, attempt = step_identity(context)
    extra = {"wflo.attempt": attempt, **({"wflo.cost_usd": str(cost_usd)} if cost_usd is not None else {})}
    telemetry.record_step(run_id, step_key, context.job_name, started_ns,
                          status="failed" if error else "succeeded", error=error, attributes=extra)


def track_llm_step(fn: Callable[..., Any], *, max_cost_usd: Decimal | None = None) -> Callable[..., Any]:
    """Wrap a compute function: open the step in the ledger, attach its cost metadata to what it
    outputs, and turn wflo errors (``BudgetExceeded``...) into a ``dagster.Failure`` with one clear line.

    A budget that asks for approval (``AwaitingApproval``) stops the step cleanly instead: it yields
    no output, the steps after it are skipped, and the run waits for the decision without failing.
    Generator functions work too: each ``Output``/``MaterializeResult`` they yield carries the totals
    so far. A function that takes no ``LLMResource`` (a sandbox step, say) is given one as an extra
    ``llm`` parameter: Dagster then provides the resource, and the wrapper keeps it to itself.
    With ``max_cost_usd`` (an asset declaring the cost check, see :func:`llm_asset`) the step ends
    by yielding the check's result, judged on its totals.
    """
    signature = inspect.signature(fn, eval_str=True)
    own = next((name for name, p in signature.parameters.items() if p.annotation is LLMResource), None)

    @functools.wraps(fn)
    def wrapper(context: StepContext, *args: Any, **kwargs: Any) -> Iterator[Any]:
        llm = kwargs[own] if own else kwargs.pop(LLM_RESOURCE_KEY)
        started_ns = time.time_ns()
        try:
            recorder = llm._open_step(context)
            produced = fn(context, *args, **kwargs)
            if inspect.isgenerator(produced):
                for item in produced:
                    recorder.opened()  # no output of a step whose ledger row could not be written
                    yield _with_metadata(item, recorder.totals.as_metadata())
                recorder.opened()
                _step_span(context, started_ns, None, recorder.totals.cost_usd)
                if max_cost_usd is not None:
                    yield cost_verdict(recorder.totals.cost_usd, max_cost_usd, context.run_id)
                return
            recorder.opened()
        except AwaitingApproval as err:
            context.instance.add_run_tags(context.run_id, {WAITING_TAG: err.approval_id or ""})
            context.log.warning(f"{err}. The step stops here without output; the steps after it are skipped.")
            return
        except WfloError as err:
            _step_span(context, started_ns, err)
            raise as_failure(err) from err
        except dg.Failure as err:
            _step_span(context, started_ns, err)
            raise
        except Exception as err:
            _step_span(context, started_ns, err)
            cause = wflo_cause(err)  # e.g. BudgetExceeded inside an agent framework's own error
            if cause is None:
                raise
            raise as_failure(cause) from err
        _step_span(context, started_ns, None, recorder.totals.cost_usd)
        yield from _outputs(context, produced, recorder.totals.as_metadata())
        if max_cost_usd is not None:
            yield cost_verdict(recorder.totals.cost_usd, max_cost_usd, context.run_id)

    # Dagster reads the compute function's signature for inputs, config and resources; resolve it
    # here, in the user's module, since string annotations would be looked up in this one.
    if own is None:
        extra = inspect.Parameter(LLM_RESOURCE_KEY, inspect.Parameter.KEYWORD_ONLY, annotation=LLMResource)
        signature = signature.replace(parameters=[*signature.parameters.values(), extra])
    wrapper.__signature__ = signature  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**typing.get_type_hints(fn), **({} if own else {LLM_RESOURCE_KEY: LLMResource})}
    return wrapper


def _op_tags(budget_usd: Decimal | str | None, run_budget_usd: Decimal | str | None,
             kwargs: dict[str, Any]) -> dict[str, str]:
    op_tags = dict(kwargs.pop("op_tags", None) or kwargs.pop("tags", None) or {})
    if budget_usd is not None:
        op_tags[BUDGET_TAG] = str(parse_usd(budget_usd, "budget_usd"))
    if run_budget_usd is not None:
        op_tags[RUN_BUDGET_TAG] = str(parse_usd(run_budget_usd, "run_budget_usd"))
    return op_tags


def llm_asset(*, budget_usd: Decimal | str | None = None, run_budget_usd: Decimal | str | None = None,
              planned_calls: Sequence[PlannedCall] | None = None, max_cost_usd: Decimal | str | None = None,
              **asset_kwargs: Any) -> Callable[..., dg.AssetsDefinition]:
    """``@dg.asset`` plus wflo's hooks, cost metadata and optional budgets.

    ``budget_usd`` limits each materialization of the asset (per run and partition): its calls are
    held against it before they are sent, and a changed value applies from the next run. A standing
    limit across materializations is ``wflo budgets set asset KEY LIMIT``. ``run_budget_usd`` limits
    every run the asset is part of, however it is launched. ``planned_calls`` declares the calls the
    asset expects to make, so ``wflo estimate JOB`` can bound a job's cost before it runs; without it
    the asset is unbounded there (``planned_calls=[]`` declares an asset that makes no LLM call).
    ``max_cost_usd`` declares the ``cost_per_materialization`` check on the asset, evaluated in its
    own step (no step of its own): it fails, severity ERROR, when the step's calls cost more.
    """
    op_tags = _op_tags(budget_usd, run_budget_usd, asset_kwargs)
    asset_kwargs.setdefault("output_required", False)  # a step waiting for approval yields nothing
    hooks = set(asset_kwargs.pop("hooks", None) or set()) | WFLO_HOOKS
    if planned_calls is not None:
        asset_kwargs["metadata"] = {**(asset_kwargs.get("metadata") or {}),
                                    PLANNED_CALLS_KEY: encode_plan(planned_calls)}

    limit = None if max_cost_usd is None else parse_usd(max_cost_usd, "max_cost_usd")

    def decorator(fn: Callable[..., Any]) -> dg.AssetsDefinition:
        if limit is not None:
            asset_kwargs["check_specs"] = [*asset_kwargs.get("check_specs", ()),
                                           cost_check_spec(_asset_key(fn, asset_kwargs), limit)]
        return dg.asset(op_tags=op_tags, hooks=hooks, **asset_kwargs)(track_llm_step(fn, max_cost_usd=limit))

    return decorator


def _asset_key(fn: Callable[..., Any], asset_kwargs: dict[str, Any]) -> dg.AssetKey:
    """The key ``dg.asset`` will give the asset (a check spec must name it before the asset exists)."""
    if asset_kwargs.get("key") is not None:
        return dg.AssetKey.from_coercible(asset_kwargs["key"])
    prefix = asset_kwargs.get("key_prefix") or []
    return dg.AssetKey([*([prefix] if isinstance(prefix, str) else prefix), asset_kwargs.get("name") or fn.__name__])


def llm_op(*, budget_usd: Decimal | str | None = None, run_budget_usd: Decimal | str | None = None,
           **op_kwargs: Any) -> Callable[..., dg.PendingNodeInvocation[dg.OpDefinition]]:
    """``@dg.op`` with the same tracking as :func:`llm_asset`: cost metadata, one-line failures, and
    the step hook, so an op needs no ``@track_llm_step`` or ``.with_hooks(...)`` of its own.

    ``budget_usd`` limits the op's calls in each run; ``run_budget_usd`` the whole run's.
    """
    tags = _op_tags(budget_usd, run_budget_usd, op_kwargs)
    if "out" not in op_kwargs:
        op_kwargs["out"] = dg.Out(is_required=False)  # a step waiting for approval yields nothing

    def decorator(fn: Callable[..., Any]) -> dg.PendingNodeInvocation[dg.OpDefinition]:
        return dg.op(tags=tags, **op_kwargs)(track_llm_step(fn)).with_hooks(WFLO_HOOKS)

    return decorator


def _with_metadata(item: Any, metadata: dict[str, Any]) -> Any:
    """``item`` with the step's cost metadata merged in, when it is an output or a materialization."""
    if isinstance(item, dg.Output):
        return item.with_metadata({**metadata, **item.metadata})
    if isinstance(item, dg.MaterializeResult):
        return dg.MaterializeResult(asset_key=item.asset_key, metadata={**metadata, **(item.metadata or {})},
                                    check_results=item.check_results, data_version=item.data_version,
                                    tags=item.tags)
    return item


def _outputs(context: StepContext, value: Any, metadata: dict[str, Any]) -> Iterator[Any]:
    """What a plain ``return value`` of the step means to Dagster, as outputs carrying the metadata."""
    if isinstance(value, dg.Output | dg.MaterializeResult):
        yield _with_metadata(value, metadata)
        return
    names = list(context.op_def.output_dict)
    if len(names) > 1 and isinstance(value, tuple):
        for i, (name, part) in enumerate(zip(names, value, strict=True)):
            yield dg.Output(part, output_name=name, metadata=metadata if i == 0 else None)
        return
    yield dg.Output(value, output_name=names[0] if names else "result", metadata=metadata)
