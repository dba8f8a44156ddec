"""One long-lived helper process that starts every sandbox of a :class:`ProcessSandbox`.

Each exec before bubblewrap (a shell to join the cgroups, ``setpriv`` to drop to the run's uid)
costs milliseconds of loading and linking, and moving an already running bubblewrap into its
cgroups waits out a kernel grace period. The helper, a small single-threaded Python started once,
forks instead: the child moves itself into the run's cgroups (a write of 0 to each v1 ``tasks``
file, which the kernel does without its global threadgroup lock), drops to the run's uid and
execs bubblewrap. Bubblewrap is thus born inside the groups and dies with the helper
(``--die-with-parent``); the helper dies with the thread that started it or when its socket closes.

The helper reaps its children and writes each one's wait status to a pipe given with the
request, which is how the caller learns a sandbox's exit. This file runs as that helper
(``python -I -S launcher.py``) and imports only the standard library.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

_PR_SET_PDEATHSIG = 1
_STATUS = struct.Struct("i")
_KILLED = int(signal.SIGKILL)  # the wait status of a process killed by SIGKILL
_MAX_REQUEST = 1 << 20


class LauncherError(Exception):
    """The helper is gone or refused the request."""


@dataclass
class Launched:
    """A sandbox's first process, started by the helper (so not the caller's child)."""

    pid: int
    stdout: IO[bytes]
    stderr: IO[bytes]
    #: Readable once the process exited: its wait status (EOF alone: the helper died first).
    status: int
    returncode: int | None = field(default=None)

    def poll(self) -> int | None:
        """The exit code if it has exited, else None (never blocks)."""
        if self.returncode is None and select.select([self.status], [], [], 0)[0]:
            self.returncode = os.waitstatus_to_exitcode(self.read_status())
        return self.returncode

    def read_status(self) -> int:
        """The wait status (blocks until the process has exited)."""
        data = os.read(self.status, _STATUS.size)
        return _STATUS.unpack(data)[0] if len(data) == _STATUS.size else _KILLED

    def close(self) -> None:
        for stream in (self.stdout, self.stderr):
            stream.close()
        with contextlib.suppress(OSError):
            os.close(self.status)


class Launcher:
    """The caller's end: starts the helper and asks it for sandboxes, one request at a time."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            try:
                self._proc = subprocess.Popen(
                    [sys.executable, "-I", "-S", str(Path(__file__).resolve())],
                    stdin=theirs.fileno(),
                    start_new_session=True,
                )
            except OSError as err:
                ours.close()
                raise LauncherError(f"its launcher process could not start with {sys.executable!r}: {err}") from None
        self._sock = ours
        self._lock = threading.Lock()

    def spawn(
        self, argv: list[str], *, env: dict[str, str], uid: int | None, tasks: list[str], stdin: int
    ) -> Launched:
        """Start ``argv`` (in the ``tasks`` files' groups, as ``uid``) with ``stdin`` and fresh pipes."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        status_r, status_w = os.pipe()
        request = json.dumps({"argv": argv, "env": env, "uid": uid, "tasks": tasks}).encode()
        try:
            with self._lock:
                socket.send_fds(self._sock, [request], [stdin, out_w, err_w, status_w])
                reply = self._sock.recv(4096)
        except OSError as err:
            for fd in (out_r, err_r, status_r):
                os.close(fd)
            raise LauncherError(
                f"its launcher process is gone ({err}); close this ProcessSandbox and open a new one"
            ) from None
        finally:
            for fd in (out_w, err_w, status_w):
                os.close(fd)
        gone = "its launcher process exited; close this ProcessSandbox and open a new one"
        answer: dict[str, Any] = json.loads(reply) if reply else {"error": gone}
        if "pid" not in answer:
            for fd in (out_r, err_r, status_r):
                os.close(fd)
            raise LauncherError(answer["error"])
        return Launched(answer["pid"], os.fdopen(out_r, "rb"), os.fdopen(err_r, "rb"), status_r)

    def close(self) -> None:
        """Close the socket: the helper exits, and with it any bubblewrap still running."""
        self._sock.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=5)
        if self._proc.returncode is None:
            self._proc.kill()
            self._proc.wait()


def _child(request: dict[str, Any], fds: list[int]) -> None:
    """In the forked child: stdio, session, cgroups, uid, then exec (never returns)."""
    try:
        for target, fd in enumerate(fds[:3]):
            os.dup2(fd, target)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        os.setsid()
        # Python ignores these; the sandbox gets the defaults, as subprocess gives its children.
        for signum in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(signum, signal.SIG_DFL)
        for path in request["tasks"]:
            fd = os.open(path, os.O_WRONLY)
            os.write(fd, b"0")  # this (only) thread moves itself: no global lock taken
            os.close(fd)
        uid = request["uid"]
        if uid is not None:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
        os.execve(request["argv"][0], request["argv"], request["env"])
    except BaseException as err:  # noqa: BLE001  (reported on the sandbox's stderr)
        with contextlib.suppress(OSError):
            os.write(2, f"wflo-launcher: {type(err).__name__}: {err}\n".encode())
    os._exit(127)


def _serve(control: socket.socket) -> None:
    """Answer requests until the caller closes the socket; report each child's exit status."""
    children: dict[int, tuple[int, int]] = {}  # pidfd -> (pid, status pipe)
    while True:
        readable = select.select([control.fileno(), *children], [], [])[0]
        for fd in readable:
            if fd == control.fileno():
                try:
                    message, fds, _, _ = socket.recv_fds(control, _MAX_REQUEST, 4)
                except OSError:
                    return
                if not message:
                    return
                children.update(_start(control, json.loads(message), fds))
            else:
                pid, status_w = children.pop(fd)
                status = os.waitpid(pid, 0)[1]
                with contextlib.suppress(OSError):
                    os.write(status_w, _STATUS.pack(status))
                os.close(status_w)
                os.close(fd)


def _start(control: socket.socket, request: dict[str, Any], fds: list[int]) -> dict[int, tuple[int, int]]:
    try:
        pid = os.fork()
    except OSError as err:
        for fd in fds:
            os.close(fd)
        control.send(json.dumps({"error": f"could not fork: {err}"}).encode())
        return {}
    if pid == 0:
        _child(request, fds)
    for fd in fds[:3]:
        os.close(fd)
    control.send(json.dumps({"pid": pid}).encode())
    return {os.pidfd_open(pid): (pid, fds[3])}


def main() -> None:
    parent = os.getppid()
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the caller died before the line above
        return
    control = socket.socket(fileno=os.dup(0))
    os.close(0)
    os.open(os.devnull, os.O_RDONLY)
    _serve(control)


if __name__ == "__main__":
    main()
