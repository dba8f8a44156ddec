"""Choosing and opening the configured sandbox backend."""

from __future__ import annotations

from typing import Literal

from wflo_core.config import WfloSettings, load_settings
from wflo_core.errors import ConfigError
from wflo_core.sandbox.base import Sandbox
from wflo_core.sandbox.policy import SandboxLimits

BackendName = Literal["docker", "process"]


def open_sandbox(
    settings: WfloSettings | None = None,
    *,
    backend: BackendName | None = None,
    limits: SandboxLimits | None = None,
    warm_pool_size: int | None = None,
) -> Sandbox:
    """The sandbox the settings ask for: Docker in production, the process backend embedded.

    ``backend`` and ``warm_pool_size`` override ``WFLO_SANDBOX_BACKEND``/``WFLO_SANDBOX_WARM_POOL``.
    Unset, the process backend keeps two sandboxes set up ahead and Docker none (each would be an
    idle container).
    Close it (or use it as a context manager) to release warm containers.
    """
    settings = settings or load_settings()
    chosen = backend or settings.effective_sandbox_backend
    if chosen not in ("docker", "process"):
        raise ConfigError(f"sandbox backend must be 'docker' or 'process', not {chosen!r}")
    warm = settings.sandbox_warm_pool if warm_pool_size is None else warm_pool_size
    if chosen == "docker":
        from wflo_core.sandbox.docker import DockerSandbox

        return DockerSandbox(
            image=settings.sandbox_image,
            docker_host=settings.docker_host,
            runtime=settings.sandbox_runtime,
            warm_pool_size=0 if warm is None else warm,
            limits=limits,
        )
    from wflo_core.sandbox.process import DEFAULT_WARM_POOL, ProcessSandbox

    return ProcessSandbox(limits=limits, warm_pool_size=DEFAULT_WARM_POOL if warm is None else warm)
