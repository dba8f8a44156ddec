"""Jobs the deployment tests launch in run containers: slow enough to overlap, and to be killed.

Served by a second code location (``dagster api grpc -f`` this file); the directory is bind-mounted
at the same path into run containers, which import it next to the wflo package of the run image.
"""

import time

import dagster as dg

from wflo_dagster.resources.llm import LLMResource


class NapConfig(dg.Config):
    seconds: float = 6.0


@dg.op
def nap(config: NapConfig) -> None:
    time.sleep(config.seconds)


@dg.job(executor_def=dg.in_process_executor, description="Sleeps; for run-concurrency limits.")
def nap_job() -> None:
    nap()


@dg.op
def open_wflo_run_then_nap(context: dg.OpExecutionContext, config: NapConfig, llm: LLMResource) -> None:
    """Opens the wflo run and step records as every LLM step does, then sleeps until killed."""
    llm._open_step(context)
    context.log.info("wflo run opened; napping")
    time.sleep(config.seconds)


@dg.job(executor_def=dg.in_process_executor, description="An agent step that hangs; for kill tests.")
def hanging_agent_job() -> None:
    open_wflo_run_then_nap()


defs = dg.Definitions(jobs=[nap_job, hanging_agent_job], resources={"llm": LLMResource()})
