"""The interface every sandbox backend implements, and how code becomes a command to run.

A backend only implements :meth:`Sandbox._execute` for a fully prepared :class:`SandboxJob`:
argv, input files and limits. Everything else (defaults, validation, languages) lives here so
that all backends accept exactly the same calls and give exactly the same kind of result.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

from wflo_core.errors import ConfigError
from wflo_core.sandbox.files import FilesIn, normalize_files
from wflo_core.sandbox.policy import SandboxLimits
from wflo_core.sandbox.result import SandboxResult

#: Inside every sandbox the code runs in this directory, the only writable place.
WORKDIR = "/work"


@dataclass(frozen=True)
class Language:
    """How source code in one language is stored in the work dir and started."""

    name: str
    filename: str
    argv: tuple[str, ...]


LANGUAGES: dict[str, Language] = {
    "python": Language("python", "main.py", ("python3", "main.py")),
    "bash": Language("bash", "main.sh", ("bash", "main.sh")),
}


@dataclass(frozen=True)
class SandboxJob:
    """One fully prepared run: what to execute, with which files, under which limits."""

    argv: tuple[str, ...]
    files: dict[str, bytes]
    limits: SandboxLimits


class Sandbox(ABC):
    """Runs untrusted code with no network, no host secrets and bounded resources."""

    #: Short backend name recorded with every result ("docker", "process").
    name: str = "abstract"

    def __init__(self, *, limits: SandboxLimits | None = None) -> None:
        self.default_limits = limits or SandboxLimits()

    def run(
        self,
        code: str | None = None,
        *,
        command: Sequence[str] | None = None,
        files_in: FilesIn | None = None,
        timeout: float | None = None,
        limits: SandboxLimits | None = None,
        network: bool = False,
        language: str = "python",
    ) -> SandboxResult:
        """Run ``code`` (a program in ``language``) or ``command`` (an argv) in the work dir.

        ``files_in`` are written to the work dir first (relative names); ``timeout`` overrides
        ``limits.timeout_seconds``. The result always comes back, whatever the code does; only a
        broken backend raises (:class:`~wflo_core.errors.SandboxError`).
        """
        if network:
            raise ConfigError(
                "sandboxed code never gets network access in wflo; pass the data it needs as files_in"
            )
        if (code is None) == (command is None):
            raise ConfigError("pass exactly one of code='...' or command=[...] to Sandbox.run")
        effective = (limits or self.default_limits).with_timeout(timeout)
        files = normalize_files(files_in, max_total_bytes=effective.workdir_bytes)
        if code is not None:
            lang = LANGUAGES.get(language)
            if lang is None:
                raise ConfigError(
                    f"sandbox language {language!r} is not known; use one of {', '.join(sorted(LANGUAGES))}"
                )
            files = {**files, lang.filename: code.encode()}
            argv = lang.argv
        else:
            argv = tuple(command or ())
            if not argv:
                raise ConfigError("sandbox command must not be empty, e.g. command=['python3', 'job.py']")
        return self._execute(SandboxJob(argv=argv, files=files, limits=effective))

    @abstractmethod
    def _execute(self, job: SandboxJob) -> SandboxResult:
        """Run one prepared job to completion (or kill), clean up everything, report."""

    def close(self) -> None:  # noqa: B027  (optional hook: most backends hold nothing)
        """Release what the backend holds between runs (warm containers, clients)."""

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
