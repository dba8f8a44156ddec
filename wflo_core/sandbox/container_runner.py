"""The program every sandbox container runs as its PID 1: one job in on stdin, results out, exit.

The host starts it as ``python3 -I -S -c <this file's source> <lifetime seconds>`` with the image's
own interpreter, so it uses only the standard library and never imports wflo. It waits (in a warm
pool, possibly minutes) for one job on its attached stdin, runs it, streams the job's output back,
stops whatever the job left running, reports usage and the work dir's files, and exits, so a
container can never serve a second job. EOF on stdin at any time (the caller closed its end or
died) ends everything at once, and the container removes itself.

It shares the container with the untrusted job (same uid, no capabilities), so it makes itself
non-dumpable first: the job can then neither ptrace it nor reach its file descriptors through
``/proc/1``; and as PID 1 of the container it cannot be signalled from inside. The host still
treats everything it sends as untrusted and caps it.

Wire format (integers big-endian):

* in: ``u32`` header length, the header: NUL-separated fields ``timeout, cpu_seconds,
  max_output_bytes, max_files_out_bytes, argc, argv..., then name, size per input file``, then
  the files' bytes in that order. (No JSON here, nor the ``signal`` module: both import ``enum``
  and ``re``, which would double the runner's start-up time.)
* out: frames of ``u8`` kind + ``u32`` length + payload: ``R`` (empty) once the runner is ready
  for its job, ``o``/``e`` a chunk of the job's stdout/stderr, ``f`` one work-dir file (``u32``
  name length, UTF-8 name, content), and ``r`` the report (JSON, always the last frame).
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # the C module behind signal, without enum
import os
import resource
import select
import stat
import struct
import sys
import time
from typing import Any

WORKDIR = "/work"
CHUNK = 65536
_FRAME = struct.Struct(">cI")


def main() -> None:
    _signal.signal(_signal.SIGINT, _signal.SIG_DFL)  # PID 1 ignores signals it has no handler for
    _make_undumpable()
    os.write(1, _FRAME.pack(b"R", 0))  # a warm pool hands out only runners that got this far
    header = _read_job(deadline=time.monotonic() + float(sys.argv[1]))
    if header is None:
        return  # pool closed, caller gone, or too old: nothing ran
    started = time.monotonic()
    pid, out_fd, err_fd = _spawn(header["argv"], cpu_seconds=int(header["cpu_seconds"]))
    report = _supervise(pid, out_fd, err_fd, header, deadline=started + float(header["timeout"]))
    _kill_everything()
    report.update(_usage())
    frames: list[bytes] = []  # files and report leave in one write: one wake-up on the host side
    report["files_truncated"] = _collect_files(int(header["max_files_out_bytes"]), frames)
    frames.append(_frame(b"r", _json(report).encode()))
    _write_all(b"".join(frames))


def _make_undumpable() -> None:
    """PR_SET_DUMPABLE 0, checked with PR_GET_DUMPABLE; no job may start if that failed.

    Through ``_ctypes`` directly: the ``ctypes`` package costs more start-up time than all the
    rest of the runner.
    """
    ct: Any = __import__("_ctypes")  # only here, once

    class Int(ct._SimpleCData):  # type: ignore[misc]
        _type_ = "i"

    class ULong(ct._SimpleCData):  # type: ignore[misc]
        _type_ = "L"

    class Libc:
        _handle = ct.dlopen(None, os.RTLD_NOW)

    class Function(ct.CFuncPtr):  # type: ignore[misc]
        _flags_ = ct.FUNCFLAG_CDECL
        _restype_ = Int

    prctl = Function(("prctl", Libc()))
    zero = ULong(0)
    prctl(Int(4), zero, zero, zero, zero)  # PR_SET_DUMPABLE
    if prctl(Int(3), zero, zero, zero, zero) != 0:  # PR_GET_DUMPABLE
        raise SystemExit("wflo runner: could not make itself non-dumpable")


def _read_exactly(size: int, deadline: float) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        if not select.select([0], [], [], max(0.0, deadline - time.monotonic()))[0]:
            return None
        chunk = os.read(0, min(size - len(data), 1 << 20))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def _read_job(deadline: float) -> dict[str, Any] | None:
    """The header, with the input files already written to the work dir; None if none came."""
    size = _read_exactly(4, deadline)
    header_bytes = size and _read_exactly(struct.unpack(">I", size)[0], deadline + 60)
    if not header_bytes:
        return None
    fields = [os.fsdecode(field) for field in header_bytes.split(b"\0")]
    argc = int(fields[4])
    header: dict[str, Any] = {
        "timeout": float(fields[0]),
        "cpu_seconds": int(fields[1]),
        "max_output_bytes": int(fields[2]),
        "max_files_out_bytes": int(fields[3]),
        "argv": fields[5 : 5 + argc],
    }
    rest = fields[5 + argc :]
    for name, length in zip(rest[::2], map(int, rest[1::2]), strict=True):
        data = _read_exactly(length, deadline + 60) if length else b""
        if data is None:
            return None
        if name.startswith("/") or ".." in name.split("/"):  # the host checks too
            raise SystemExit(f"wflo runner: refusing input file name {name!r}")
        path = os.path.join(WORKDIR, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(data)
    return header


def _spawn(argv: list[str], *, cpu_seconds: int) -> tuple[int, int, int]:
    """Start the job in its own session, stdin from /dev/null, under its own CPU-time limit."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: this process is single-threaded, so fork + exec is safe
        try:
            os.setsid()
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            os.closerange(3, 1024)
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
            os.chdir(WORKDIR)
            os.execvp(argv[0], argv)
        except OSError as err:
            os.write(2, f"wflo runner: cannot run {argv[0]!r}: {err.strerror}\n".encode())
        finally:
            os._exit(127)
    os.close(out_w)
    os.close(err_w)
    return pid, out_r, err_r


def _supervise(pid: int, out_fd: int, err_fd: int, header: dict[str, Any], *, deadline: float) -> dict[str, Any]:
    """Forward the job's output until it closes both streams, then wait for its exit status."""
    cap = int(header["max_output_bytes"])
    kinds, sent = {out_fd: b"o", err_fd: b"e"}, {out_fd: 0, err_fd: 0}
    report: dict[str, Any] = {"exit_code": None, "timed_out": False, "output_over": False}
    poller = select.poll()
    for fd in (0, out_fd, err_fd):
        poller.register(fd, select.POLLIN)
    open_fds = {out_fd, err_fd}
    while open_fds:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            report["timed_out"] = True
            return report
        for fd, _ in poller.poll(remaining * 1000):
            if fd == 0:  # the caller closed the connection (or died): stop now
                if not os.read(0, CHUNK):
                    _kill_everything()
                    raise SystemExit(0)
                continue
            chunk = os.read(fd, CHUNK)
            if not chunk:
                poller.unregister(fd)
                open_fds.discard(fd)
                continue
            room = cap - sent[fd]
            if chunk[:room]:
                _send(kinds[fd], chunk[:room])
            sent[fd] += len(chunk)
            if sent[fd] > cap:
                report["output_over"] = True
                report["stdout_truncated" if fd == out_fd else "stderr_truncated"] = True
                return report
    while (remaining := deadline - time.monotonic()) > 0:  # output ends, maybe before the process
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            report["exit_code"] = os.waitstatus_to_exitcode(status)
            if report["exit_code"] < 0:
                report["exit_code"] = 128 - report["exit_code"]
            return report
        time.sleep(min(0.001, remaining))
    report["timed_out"] = True
    return report


def _kill_everything(timeout: float = 5.0) -> None:
    """SIGKILL every other process in the container and reap them all (as PID 1, orphans are ours)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(-1, _signal.SIGKILL)
        except OSError:
            pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            return
        time.sleep(0.001)


def _usage() -> dict[str, Any]:
    """CPU time and peak memory of the whole container (this runner's few ms included), and any OOM."""
    cg = "/sys/fs/cgroup/"
    cpu_ns = _first(cg + "cpuacct/cpuacct.usage").strip()
    cpu_us = _field(_first(cg + "cpu.stat"), "usage_usec")
    peak = _first(cg + "memory/memory.max_usage_in_bytes", cg + "memory.peak").strip()
    ooms = _field(_first(cg + "memory/memory.oom_control", cg + "memory.events"), "oom_kill")
    cpu_ms = int(cpu_ns) // 1_000_000 if cpu_ns.isdigit() else (cpu_us // 1000 if cpu_us else None)
    return {"cpu_ms": cpu_ms, "peak_memory_bytes": int(peak) if peak.isdigit() else None, "oom_killed": bool(ooms)}


def _first(*paths: str) -> str:
    for path in paths:
        try:
            with open(path) as fh:
                return fh.read()
        except OSError:
            pass
    return ""


def _field(text: str, key: str) -> int | None:
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return None


def _collect_files(budget: int, frames: list[bytes]) -> bool:
    """Frame the work dir's regular files (never via a symlink) up to ``budget`` bytes; skipped any?"""
    skipped = False
    for top, dirs, names in os.walk(WORKDIR):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(top, name)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                continue
            with os.fdopen(fd, "rb") as fh:
                info = os.fstat(fd)
                if not stat.S_ISREG(info.st_mode):
                    continue
                if info.st_size > budget:
                    skipped = True
                    continue
                data = fh.read(budget + 1)
            if len(data) > budget:
                skipped = True
                continue
            budget -= len(data)
            encoded = os.path.relpath(path, WORKDIR).encode("utf-8", "surrogateescape")
            frames.append(_frame(b"f", struct.pack(">I", len(encoded)) + encoded + data))
    return skipped


def _json(report: dict[str, Any]) -> str:
    """The report as JSON; its values are only None, booleans and integers."""

    def value(v: int | None) -> str:  # a bool is an int
        return "null" if v is None else "true" if v is True else "false" if v is False else str(int(v))

    return "{" + ",".join(f'"{key}":{value(v)}' for key, v in report.items()) + "}"


def _frame(kind: bytes, payload: bytes) -> bytes:
    return _FRAME.pack(kind, len(payload)) + payload


def _send(kind: bytes, payload: bytes) -> None:
    _write_all(_frame(kind, payload))


def _write_all(data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(1, view) :]


if __name__ == "__main__":
    main()
