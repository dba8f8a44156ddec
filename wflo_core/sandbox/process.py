"""The process backend: bubblewrap namespaces + cgroups/rlimits, no container engine needed.

Each run gets fresh user, pid, network (loopback only, down), IPC, UTS, mount and cgroup
namespaces from bubblewrap, a root filesystem holding only the host's ``/usr`` read-only plus a
private ``/proc`` and ``/dev``, an empty environment, and a ``/work`` directory that is the only
writable place. When the caller is root (the CI machines, a run container) it also gets:

* its own unprivileged uid (so RLIMIT_NPROC counts only its processes and it can signal nothing
  outside the sandbox),
* a size-limited tmpfs as the work dir (disk fill stops at ``workdir_bytes``),
* cgroup v1 groups: memory (OOM kill, reported as ``memory``), pids and CPU share, with exact CPU
  time and peak memory.

What it does NOT guarantee (use :class:`~wflo_core.sandbox.docker.DockerSandbox`, ideally with
gVisor, where these matter):

* It shares the host kernel and installs no seccomp filter: a kernel bug reachable from an
  unprivileged user namespace is an escape.
* The host's ``/usr`` is readable inside (no secrets belong there, but it is the host's).
* Without root, or without cgroup v1 controllers (cgroup v2 is not used yet): memory is limited
  by RLIMIT_AS only (a ``MemoryError``, not reported as ``memory``); the pid limit is
  RLIMIT_NPROC, which counts every process of the calling user, so it is set to the user's
  current count plus ``pids`` (racy if the user starts other processes meanwhile); the work dir is a plain
  directory limited per file (RLIMIT_FSIZE) but not in total; there is no CPU-share limit; and
  ``cpu_ms``/``peak_memory_bytes`` are None (bwrap's inner processes escape the launcher's rusage).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import select
import selectors
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal, cast, overload

from wflo_core.errors import SandboxError
from wflo_core.sandbox.base import WORKDIR, Sandbox, SandboxJob
from wflo_core.sandbox.cgroups import RunCgroup
from wflo_core.sandbox.files import read_files, write_files
from wflo_core.sandbox.output import CappedBuffer
from wflo_core.sandbox.policy import SandboxLimits
from wflo_core.sandbox.result import KilledReason, SandboxResult

#: Per-run uids are drawn from this range, which no real account uses.
UID_RANGE = (300_000, 365_535)
_SANDBOX_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": WORKDIR,
    "TMPDIR": WORKDIR,
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
}
_MS_NOSUID, _MS_NODEV, _MNT_DETACH = 2, 4, 2
#: Runs as root first: joins the run's cgroups (one cgroup.procs file per argument up to ``--``),
#: then becomes setpriv -> bwrap, so no process of the run ever exists outside them.
_LAUNCH = (
    'while [ "$1" != -- ]; do { echo $$ > "$1"; } 2>/dev/null'
    ' || { echo "wflo-launch: cannot join cgroup $1" >&2; exit 125; }; shift; done; shift; exec "$@"'
)
#: Inside the sandbox, read-only: the directory holding the script that starts the job.
_LAUNCH_DIR = "/.wflo"


@dataclass
class _Run:
    """One run's own uid, work dir, cgroups and bubblewrap, which waits at its block fd for the job.

    Everything slow (namespaces, mounts, cgroups) is set up before the job is known; the job's
    argv, files and limits are applied to the waiting sandbox just before it is released.
    """

    name: str
    dir: Path
    uid: int | None
    cgroup: RunCgroup | None
    workdir_bytes: int
    proc: subprocess.Popen[bytes]
    #: The host pid of bwrap's sandboxed child (blocked; it forks the job once released).
    child_pid: int
    release_fd: int

    @property
    def work(self) -> Path:
        return self.dir / "work"


class ProcessSandbox(Sandbox):
    """Runs code under bubblewrap on this host (the embedded default).

    With ``prestart=True`` the next run's sandbox (uid, tmpfs, cgroups, namespaces) is set up in
    the background after each run, so a run only writes its files and limits into a sandbox that
    already waits; each prepared sandbox still serves exactly one run.
    """

    name: Literal["process"] = "process"

    def __init__(
        self, *, limits: SandboxLimits | None = None, base_dir: Path | None = None, prestart: bool = False
    ) -> None:
        super().__init__(limits=limits)
        self.bwrap = shutil.which("bwrap")
        if self.bwrap is None:
            raise SandboxError(
                "the process sandbox needs bubblewrap: install it with `apt-get install bubblewrap` "
                "(or set WFLO_SANDBOX_BACKEND=docker)"
            )
        self.is_root = os.geteuid() == 0
        self.use_cgroups = RunCgroup.available()
        self._nproc_flag = _nproc_flag()
        self.base_dir = base_dir or Path(tempfile.gettempdir()) / f"wflo-sandbox-{os.geteuid()}"
        self.base_dir.mkdir(mode=0o711, parents=True, exist_ok=True)
        reap_stale_runs(self.base_dir)
        # Finished runs are removed, and the next one prepared, off the caller's path.
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wflo-sandbox-process")
        self.prestart = prestart
        #: How many runs were served by a sandbox set up ahead of them.
        self.prestarted_runs = 0
        self._next: Future[_Run] | None = None
        self._lock = threading.Lock()
        if prestart:
            self._prepare_next()

    @property
    def prepared_run(self) -> str | None:
        """The name of the sandbox waiting for the next run, if one is ready."""
        upcoming = self._next
        if upcoming is None or not upcoming.done() or upcoming.exception() is not None:
            return None
        return upcoming.result().name

    def close(self) -> None:
        with self._lock:
            upcoming, self._next, self.prestart = self._next, None, False
        if upcoming is not None:
            with contextlib.suppress(Exception):
                self._discard(upcoming.result())
        self._worker.shutdown(wait=True)

    def _execute(self, job: SandboxJob) -> SandboxResult:
        run = self._take_prepared(job.limits) or self._start(job.limits)
        try:
            return self._run(run, job)
        finally:
            # Every process of the run is dead here; what is left is bookkeeping.
            try:
                self._worker.submit(_remove_run, run)
            except RuntimeError:  # closed meanwhile
                _remove_run(run)
            if self.prestart:
                self._prepare_next()

    def _prepare_next(self) -> None:
        with self._lock:
            if self._next is None and self.prestart:
                self._next = self._worker.submit(self._start, self.default_limits)

    def _take_prepared(self, limits: SandboxLimits) -> _Run | None:
        with self._lock:
            upcoming, self._next = self._next, None
        if upcoming is None:
            return None
        try:
            run = upcoming.result()  # usually ready long ago
        except SandboxError:
            return None
        if run.workdir_bytes == limits.workdir_bytes and run.proc.poll() is None:
            self.prestarted_runs += 1
            return run
        self._discard(run)
        return None

    def _discard(self, run: _Run) -> None:
        _kill(run.proc, run.cgroup)
        _reap(run.proc.pid, None)
        for stream in (run.proc.stdout, run.proc.stderr):
            if stream is not None:
                stream.close()
        os.close(run.release_fd)
        _remove_run(run)

    def _start(self, limits: SandboxLimits) -> _Run:
        """Set up a run's uid, work dir, cgroups and namespaces; bwrap then waits for the job."""
        workdir_bytes = limits.workdir_bytes
        name = f"{os.getpid()}-{secrets.token_hex(6)}"
        run_dir = self.base_dir / name
        work = run_dir / "work"
        work.mkdir(parents=True, mode=0o711)
        (run_dir / "launch").mkdir(mode=0o755)
        os.chmod(run_dir, 0o711)
        uid = secrets.randbelow(UID_RANGE[1] - UID_RANGE[0]) + UID_RANGE[0] if self.is_root else None
        cgroup = RunCgroup(name) if self.use_cgroups else None
        info_r, info_w = os.pipe()
        block_r, block_w = os.pipe()
        try:
            if uid is not None:
                _mount_tmpfs(work, size=workdir_bytes, uid=uid)
            if cgroup is not None:
                cgroup.create(memory_bytes=limits.memory_bytes, pids=limits.pids, cpus=limits.cpus)
            argv = self._argv(run_dir, uid, cgroup, info_fd=info_w, block_fd=block_r)
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                pass_fds=(info_w, block_r),
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            )
        except BaseException:
            os.close(block_w)
            os.close(info_r)
            _remove_parts(run_dir, cgroup, mounted=uid is not None)
            raise
        finally:
            os.close(info_w)
            os.close(block_r)
        run = _Run(name, run_dir, uid, cgroup, workdir_bytes, proc, 0, block_w)
        try:
            run.child_pid = _child_pid(info_r)
        except SandboxError as err:
            errors = os.read(proc.stderr.fileno(), 2000) if proc.poll() is not None and proc.stderr else b""
            self._discard(run)
            raise SandboxError(f"{err}: {errors.decode(errors='replace').strip()}") from None
        finally:
            os.close(info_r)
        return run

    def _argv(
        self, run_dir: Path, uid: int | None, cgroup: RunCgroup | None, *, info_fd: int, block_fd: int
    ) -> list[str]:
        launch = [
            "/bin/sh",
            "-c",
            _LAUNCH,
            "wflo-launch",
            *map(str, cgroup.procs_files if cgroup else []),
            "--",
        ]
        drop = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"] if uid is not None else []
        bwrap = self._bwrap_args(run_dir)
        bwrap += ["--info-fd", str(info_fd), "--block-fd", str(block_fd)]
        return [*launch, *drop, *bwrap, "--", "/bin/sh", f"{_LAUNCH_DIR}/run"]

    def _bwrap_args(self, run_dir: Path) -> list[str]:
        args = [str(self.bwrap), "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
        args += ["--ro-bind", "/usr", "/usr"]
        for top in ("bin", "sbin", "lib", "lib32", "lib64"):
            host = Path("/") / top
            if host.is_symlink():
                args += ["--symlink", os.readlink(host), f"/{top}"]
            elif host.is_dir():
                args += ["--ro-bind", str(host), f"/{top}"]
        args += ["--proc", "/proc", "--dev", "/dev", "--bind", str(run_dir / "work"), WORKDIR, "--chdir", WORKDIR]
        args += ["--ro-bind", str(run_dir / "launch"), _LAUNCH_DIR]
        # Read-only root and /dev (no /dev/shm either): the work dir is the only writable place.
        args += ["--remount-ro", "/dev", "--remount-ro", "/", "--hostname", "sandbox", "--clearenv"]
        for name, value in _SANDBOX_ENV.items():
            args += ["--setenv", name, value]
        return args

    def _run(self, run: _Run, job: SandboxJob) -> SandboxResult:
        """Give the waiting sandbox its files, limits and command, release it, and supervise the job."""
        limits = job.limits
        write_files(run.work, job.files, uid=run.uid)
        if run.cgroup is not None:
            run.cgroup.set_limits(memory_bytes=limits.memory_bytes, pids=limits.pids, cpus=limits.cpus)
            run.cgroup.reset_usage()  # count the job, not the setup
        cpu = limits.effective_cpu_seconds
        nproc = limits.pids if run.uid is not None else _processes_of(os.getuid()) + limits.pids
        # The job's own shell lowers its limits, then becomes the job (the host may lack
        # CAP_SYS_RESOURCE to set another uid's limits): nothing of the job runs before this.
        ulimits = [
            f"ulimit -S -t {cpu}",
            f"ulimit -H -t {cpu + 1}",
            f"ulimit {self._nproc_flag} {nproc}",
            "ulimit -c 0",
            "ulimit -n 256",
            f"ulimit -f {-(-limits.workdir_bytes // 512)}",
        ]
        if run.cgroup is None:
            ulimits.append(f"ulimit -v {limits.memory_bytes // 1024}")
        script = run.dir / "launch" / "run"
        script.write_text(
            " && ".join(ulimits)
            + ' || { echo "wflo-launch: cannot set the sandbox limits" >&2; exit 125; }\n'
            + f"exec {shlex.join(job.argv)}\n"
        )
        return self._supervise(run, job)

    def _supervise(self, run: _Run, job: SandboxJob) -> SandboxResult:
        limits = job.limits
        proc, cgroup, work = run.proc, run.cgroup, run.work
        stdout, stderr = CappedBuffer(limits.max_output_bytes), CappedBuffer(limits.max_output_bytes)
        killed: KilledReason | None = None
        started = time.monotonic()
        deadline = started + limits.timeout_seconds
        os.write(run.release_fd, b"go")
        os.close(run.release_fd)
        assert proc.stdout is not None and proc.stderr is not None  # started with both piped
        try:
            killed = _pump(proc, {proc.stdout: stdout, proc.stderr: stderr}, deadline)
            if killed is not None:
                _kill(proc, cgroup)
            reaped = _reap(proc.pid, deadline)
            if reaped is None:
                killed = KilledReason.TIMEOUT
                _kill(proc, cgroup)
                reaped = _reap(proc.pid, None)
        except BaseException:
            _kill(proc, cgroup)
            _reap(proc.pid, None)
            raise
        finally:
            for stream in (proc.stdout, proc.stderr):
                stream.close()
        proc.returncode = os.waitstatus_to_exitcode(reaped)
        wall_ms = int((time.monotonic() - started) * 1000)
        exit_code = 128 - proc.returncode if proc.returncode < 0 else proc.returncode
        if exit_code == 125 and stderr.getvalue().startswith(b"wflo-launch:"):
            raise SandboxError(f"the process sandbox could not start: {stderr.getvalue().decode().strip()}")
        if cgroup is not None:
            cgroup.kill_all()
        if killed is None and cgroup is not None and cgroup.oom_killed():
            killed = KilledReason.MEMORY
        if killed is None and exit_code == 128 + signal.SIGXCPU:
            killed = KilledReason.CPU
        files, files_truncated = read_files(work, max_total_bytes=limits.max_files_out_bytes)
        return SandboxResult(
            backend=self.name,
            exit_code=exit_code,
            stdout=stdout.getvalue(),
            stderr=stderr.getvalue(),
            stdout_truncated=stdout.truncated,
            stderr_truncated=stderr.truncated,
            files_out=files,
            files_out_truncated=files_truncated,
            wall_ms=wall_ms,
            cpu_ms=cgroup.cpu_ms() if cgroup else None,
            peak_memory_bytes=cgroup.peak_memory_bytes() if cgroup else None,
            killed_reason=killed,
            limits=limits,
        )


def _pump(proc: subprocess.Popen[bytes], sinks: dict[IO[bytes], CappedBuffer], deadline: float) -> KilledReason | None:
    """Copy both pipes into their capped buffers until EOF, the deadline, or too much output."""
    with selectors.DefaultSelector() as selector:
        for stream in sinks:
            os.set_blocking(stream.fileno(), False)
            selector.register(stream, selectors.EVENT_READ)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return KilledReason.TIMEOUT
            for key, _ in selector.select(remaining):
                stream = cast(IO[bytes], key.fileobj)  # only the pipes in sinks are registered
                chunk = os.read(stream.fileno(), 65536)
                if not chunk:
                    selector.unregister(stream)
                elif sinks[stream].write(chunk):
                    return KilledReason.OUTPUT_LIMIT
    return None


@overload
def _reap(pid: int, deadline: None) -> int: ...


@overload
def _reap(pid: int, deadline: float) -> int | None: ...


def _reap(pid: int, deadline: float | None) -> int | None:
    """Wait for the launcher; its wait status, or None if it still runs at ``deadline`` (None = block)."""
    try:
        if deadline is not None:
            with _pidfd(pid) as fd:  # readable the moment the process exits
                if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                    return None
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:
        return None if deadline is not None else 0


@contextlib.contextmanager
def _pidfd(pid: int) -> Iterator[int]:
    fd = os.pidfd_open(pid)
    try:
        yield fd
    finally:
        os.close(fd)


def _remove_run(run: _Run) -> None:
    _remove_parts(run.dir, run.cgroup, mounted=run.uid is not None)


def _remove_parts(run_dir: Path, cgroup: RunCgroup | None, *, mounted: bool) -> None:
    if cgroup is not None:
        cgroup.remove()
    if mounted and os.path.ismount(run_dir / "work"):
        _umount(run_dir / "work")
    shutil.rmtree(run_dir, ignore_errors=True)


def _nproc_flag() -> str:
    """The ``ulimit`` option of /bin/sh for RLIMIT_NPROC: ``-u`` in bash, ``-p`` in dash."""
    return "-u" if subprocess.run(["/bin/sh", "-c", "ulimit -u"], capture_output=True).returncode == 0 else "-p"


def _child_pid(info: int, timeout: float = 30.0) -> int:
    """The sandboxed child's host pid, from the JSON bwrap writes to its info fd."""
    data = b""
    deadline = time.monotonic() + timeout
    while b"}" not in data:
        if not select.select([info], [], [], max(0.0, deadline - time.monotonic()))[0]:
            raise SandboxError("the process sandbox did not start within 30 s")
        chunk = os.read(info, 4096)
        if not chunk:
            raise SandboxError("the process sandbox could not start (bubblewrap exited during setup)")
        data += chunk
    pid = json.loads(data).get("child-pid")
    if not isinstance(pid, int):
        raise SandboxError(f"bubblewrap reported no child pid: {data!r}")
    return pid


def _kill(proc: subprocess.Popen[bytes], cgroup: RunCgroup | None) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if cgroup is not None:
        cgroup.kill_all()


def _mount_tmpfs(path: Path, *, size: int, uid: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    options = f"size={size},uid={uid},gid={uid},mode=0700".encode()
    if libc.mount(b"wflo-sandbox", str(path).encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, options) != 0:
        err = ctypes.get_errno()
        raise SandboxError(f"could not mount the sandbox work dir tmpfs at {path}: {os.strerror(err)}")


def _umount(path: Path) -> None:
    ctypes.CDLL(None, use_errno=True).umount2(str(path).encode(), _MNT_DETACH)


def _processes_of(uid: int) -> int:
    """How many processes (threads included, as RLIMIT_NPROC counts them) ``uid`` runs now."""
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
    return count


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_stale_runs(base_dir: Path) -> list[str]:
    """Remove work dirs, mounts and cgroups of runs whose owning process has died (e.g. SIGKILL)."""
    names = set(RunCgroup.stale_names()) | {p.name for p in base_dir.iterdir() if p.is_dir()}
    reaped = []
    for name in sorted(names):
        owner = name.split("-", 1)[0]
        if not owner.isdigit() or _alive(int(owner)):
            continue
        if RunCgroup.available():
            RunCgroup(name).remove()
        work = base_dir / name / "work"
        if os.path.ismount(work):
            _umount(work)
        shutil.rmtree(base_dir / name, ignore_errors=True)
        reaped.append(name)
    return reaped
