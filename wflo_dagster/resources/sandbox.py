"""``SandboxResource``: runs agent-written code in the configured sandbox backend.

@asset
def analysis(sandbox: SandboxResource, generated_code: str) -> dict:
    result = sandbox.run(generated_code, files_in={"data.csv": csv_bytes}, timeout=20)
    return json.loads(result.stdout)
"""

from __future__ import annotations

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

from wflo_core.sandbox import Sandbox, SandboxLimits, SandboxResult, open_sandbox
from wflo_core.sandbox.files import FilesIn
from wflo_core.services import WfloServices, release_services
from wflo_dagster.resources.wflo import WfloResource, acquire


class SandboxResource(ConfigurableResource):
    """The sandbox for a step: Docker in production, the process backend embedded."""

    backend: str | None = Field(
        default=None,
        description="Unset = WFLO_SANDBOX_BACKEND, else docker if a database URL is set.",
    )
    warm_pool_size: int | None = Field(
        default=None,
        ge=0,
        le=32,
        description="Sandboxes set up ahead (containers, or process sandboxes); unset = WFLO_SANDBOX_WARM_POOL.",
    )
    timeout_seconds: float = Field(default=30.0, gt=0, description="Default wall-clock limit per run.")
    memory_mb: int = Field(default=256, ge=16, description="Default memory limit per run, MiB.")
    wflo: WfloResource | None = Field(default=None, description="Ledger and Docker settings.")

    _sandbox: Sandbox | None = PrivateAttr(default=None)
    _services: WfloServices | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._open()

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None
        if self._services is not None:
            release_services(self._services)
            self._services = None

    @property
    def services(self) -> WfloServices:
        """Where sandbox runs are recorded (the process's shared services for these settings)."""
        if self._services is None:
            self._services = acquire(self.wflo)
        return self._services

    @property
    def default_limits(self) -> SandboxLimits:
        return SandboxLimits(timeout_seconds=self.timeout_seconds, memory_bytes=self.memory_mb * 1024 * 1024)

    def get_sandbox(self) -> Sandbox:
        """The open backend (for :func:`wflo_core.sandbox.run_sandboxed`)."""
        return self._open()

    def run(
        self,
        code: str,
        *,
        files_in: FilesIn | None = None,
        timeout: float | None = None,
        limits: SandboxLimits | None = None,
    ) -> SandboxResult:
        """Run Python ``code`` with ``files_in`` in the work dir; see :meth:`Sandbox.run`."""
        return self._open().run(code, files_in=files_in, timeout=timeout, limits=limits)

    def _open(self) -> Sandbox:
        if self._sandbox is None:
            self._sandbox = open_sandbox(
                self.services.settings,
                backend=self.backend,  # type: ignore[arg-type]  (checked by open_sandbox)
                limits=self.default_limits,
                warm_pool_size=self.warm_pool_size,
            )
        return self._sandbox
