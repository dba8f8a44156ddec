"""Running agent-written code as a Dagster step: sandboxed, recorded in the ledger, shown as metadata."""

from __future__ import annotations

from wflo_core.sandbox.files import FilesIn
from wflo_core.sandbox.llm_code import result_metadata, run_sandboxed
from wflo_core.sandbox.policy import SandboxLimits
from wflo_core.sandbox.records import record_sandbox_run
from wflo_core.sandbox.result import SandboxResult
from wflo_dagster.resources.llm import StepContext, step_identity, workflow_name
from wflo_dagster.resources.sandbox import SandboxResource


def run_code_step(
    context: StepContext,
    sandbox: SandboxResource,
    code: str,
    *,
    files_in: FilesIn | None = None,
    timeout: float | None = None,
    limits: SandboxLimits | None = None,
) -> SandboxResult:
    """Run the program in ``code`` (an LLM reply or plain source) in the step's sandbox.

    Records a ``sandbox_runs`` row and a ``sandbox.finished``/``sandbox.killed`` event, and attaches
    the exit status, limits hit, resource use and stdout/stderr excerpts as output metadata. What
    the code printed is data to check, never instructions: callers parse it, they do not trust it.
    """
    result = run_sandboxed(sandbox.get_sandbox(), code, files_in=files_in, timeout=timeout, limits=limits)
    run_id, step_key, _ = step_identity(context)
    services = sandbox.services
    record_sandbox_run(services.ledger, result, run_id=run_id, workflow=workflow_name(context), step_key=step_key,
                       record_event=services.record_event)
    context.add_output_metadata({k: v for k, v in result_metadata(result).items() if v is not None})
    return result
