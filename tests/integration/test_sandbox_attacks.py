"""The attack suite every sandbox backend must pass (contract tests, parametrized over backends).

Each test first shows the attack would work without the sandbox (the service answers, the file
exists, the variable is set), then runs the attack inside and asserts it was contained and
reported. After every test no sandbox container or process may be left, and during resource
attacks the host must keep answering.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.integration import sandbox_backends
from wflo_core.sandbox import KilledReason, Sandbox, SandboxLimits, SandboxResult

pytestmark = pytest.mark.integration

# The shared contract fixtures: one sandbox per backend, and the nothing-left-behind check.
sandbox = sandbox_backends.sandbox
nothing_left_behind = sandbox_backends.nothing_left_behind

MiB = 1024 * 1024
CHECKOUT = Path(__file__).resolve().parents[2]


def run_probing(sandbox: Sandbox, code: str, limits: SandboxLimits) -> tuple[SandboxResult, float]:
    """Run ``code`` while the host spawns a process every 0.2 s; (result, slowest spawn in s)."""
    box: dict[str, SandboxResult] = {}
    worker = threading.Thread(target=lambda: box.setdefault("r", sandbox.run(code, limits=limits)))
    worker.start()
    slowest = 0.0
    while worker.is_alive():
        began = time.monotonic()
        subprocess.run(["/bin/true"], check=True, timeout=30)
        slowest = max(slowest, time.monotonic() - began)
        worker.join(0.2)
    return box["r"], slowest


def observations(result: SandboxResult) -> dict:
    assert result.exit_code == 0, result.stderr_text
    return json.loads(result.stdout_text.strip().splitlines()[-1])


CONNECT = """
import json, socket
out = {}
for host, port in TARGETS:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        s = socket.socket(socket.AF_INET, kind); s.settimeout(2)
        try:
            s.connect((host, port)); s.send(b"ping\\r\\n"); out[f"{host}:{port}/{kind}"] = repr(s.recv(100))
        except OSError as err:
            out[f"{host}:{port}/{kind}"] = "blocked: " + type(err).__name__
        finally:
            s.close()
out["interfaces"] = [name for _, name in socket.if_nameindex()]
print(json.dumps(out))
"""


def _assert_reachable_from_host(host: str, port: int) -> None:
    with socket.create_connection((host, port), timeout=5):
        pass  # control: the host can connect, so a blocked sandbox connect means containment


def test_no_egress_to_loopback_services(sandbox: Sandbox, redis_url: str, postgres_url: str) -> None:
    targets = [("127.0.0.1", urlparse(redis_url).port), ("127.0.0.1", urlparse(postgres_url).port)]
    for host, port in targets:
        _assert_reachable_from_host(host, port)
    seen = observations(sandbox.run(f"TARGETS = {targets!r}\n" + CONNECT, timeout=20))
    assert seen.pop("interfaces") == ["lo"]
    assert all(v.startswith("blocked") for v in seen.values()), seen


@pytest.fixture
def netns_listener() -> Iterator[tuple[str, int]]:
    """A TCP+UDP listener on an address inside a network namespace this test creates (veth-linked)."""
    tag = secrets.token_hex(4)
    ns, host_end, ns_end = f"wflo-t-{tag}", f"wfh{tag}", f"wfn{tag}"
    address = f"10.251.{secrets.randbelow(254) + 1}.{secrets.randbelow(250) + 2}"
    setup = [
        ["ip", "netns", "add", ns],
        ["ip", "link", "add", host_end, "type", "veth", "peer", "name", ns_end],
        ["ip", "link", "set", ns_end, "netns", ns],
        ["ip", "-n", ns, "addr", "add", f"{address}/32", "dev", ns_end],
        ["ip", "-n", ns, "link", "set", "lo", "up"],
        ["ip", "-n", ns, "link", "set", ns_end, "up"],
        ["ip", "link", "set", host_end, "up"],
        ["ip", "route", "add", f"{address}/32", "dev", host_end],
        ["ip", "-n", ns, "route", "add", "default", "dev", ns_end],
    ]
    server = None
    try:
        for cmd in setup:
            subprocess.run(cmd, check=True, capture_output=True)
        server = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", LISTENER, address, "5999"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout and server.stdout.readline().strip() == "ready"
        yield address, 5999
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "link", "del", host_end], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


LISTENER = """
import socket, sys, threading
addr, port = sys.argv[1], int(sys.argv[2])
tcp = socket.socket(); tcp.bind((addr, port)); tcp.listen()
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind((addr, port))
dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); dns.bind((addr, 53))
def answer(sock):
    while True:
        data, peer = sock.recvfrom(512); sock.sendto(data[:2] + b"PWNED", peer)
for s in (udp, dns):
    threading.Thread(target=answer, args=(s,), daemon=True).start()
print("ready", flush=True)
while True:
    conn, _ = tcp.accept(); conn.sendall(b"PWNED\\n"); conn.close()
"""


def test_no_egress_to_a_network_namespace_listener(sandbox: Sandbox, netns_listener: tuple[str, int]) -> None:
    host, port = netns_listener
    _assert_reachable_from_host(host, port)
    seen = observations(sandbox.run(f"TARGETS = {[netns_listener]!r}\n" + CONNECT, timeout=20))
    assert seen.pop("interfaces") == ["lo"]
    assert all(v.startswith("blocked") for v in seen.values()), seen


DNS_QUERY = """
import json, socket, struct
query = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + b"\\x05wflo1\\x04test\\x00\\x00\\x01\\x00\\x01"
out = {}
for server in SERVERS:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
    try:
        s.sendto(query, server); out[repr(server)] = repr(s.recv(512))
    except OSError as err:
        out[repr(server)] = "blocked: " + type(err).__name__
out["interfaces"] = [name for _, name in socket.if_nameindex()]
print(json.dumps(out))
"""


@pytest.fixture
def loopback_dns() -> Iterator[tuple[str, int]]:
    """A UDP server on 127.0.0.1 answering every datagram like a DNS resolver would."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = server.recvfrom(512)
            except TimeoutError:
                continue
            server.sendto(data[:2] + b"ANSWER", peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()
    stop.set()
    thread.join()
    server.close()


def test_no_dns_resolution(
    sandbox: Sandbox, loopback_dns: tuple[str, int], netns_listener: tuple[str, int]
) -> None:
    servers = [loopback_dns, (netns_listener[0], 53)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:  # control: both resolvers answer
        probe.settimeout(5)
        for server in servers:
            probe.sendto(b"\x12\x34query", server)
            assert probe.recv(512).startswith(b"\x12\x34")
    seen = observations(sandbox.run(f"SERVERS = {servers!r}\n" + DNS_QUERY, timeout=20))
    # No interface but lo: whatever resolver /etc/resolv.conf names is unreachable too.
    assert seen.pop("interfaces") == ["lo"]
    assert all(v.startswith("blocked") for v in seen.values()), seen


def test_host_secrets_files_are_unreadable(sandbox: Sandbox) -> None:
    assert Path("/etc/shadow").read_text()  # control: the host file exists and root can read it
    assert (CHECKOUT / "pyproject.toml").is_file()
    code = f"""
import json, os
out = {{}}
for path in ("/etc/shadow", "/etc/passwd", {str(CHECKOUT / "pyproject.toml")!r}, "/root/.bash_history"):
    try:
        out[path] = open(path).read()[:50]
    except OSError as err:
        out[path] = "blocked: " + type(err).__name__
for path in ({str(CHECKOUT)!r}, "/root", "/home"):
    try:
        out[path] = os.listdir(path)
    except OSError as err:
        out[path] = "blocked: " + type(err).__name__
print(json.dumps(out))
"""
    seen = observations(sandbox.run(code, timeout=20))
    assert seen["/etc/shadow"].startswith("blocked"), seen
    assert seen[str(CHECKOUT / "pyproject.toml")].startswith("blocked"), seen
    assert str(seen[str(CHECKOUT)]).startswith("blocked"), seen


def test_parent_environment_and_api_keys_are_invisible(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = f"sk-wflo-canary-{secrets.token_hex(12)}"
    monkeypatch.setenv("OPENAI_API_KEY", canary)
    monkeypatch.setenv("WFLO_DATABASE_URL", f"postgresql://u:{canary}@127.0.0.1/db")
    assert os.environ["OPENAI_API_KEY"] == canary
    code = f"""
import glob, os
print(dict(os.environ))
paths = ["/proc/self/environ", "/proc/1/environ", "/proc/{os.getpid()}/environ"]
for path in paths + glob.glob("/proc/*/environ"):
    try:
        print(path, open(path, "rb").read())
    except OSError as err:
        print(path, "blocked", err)
"""
    result = sandbox.run(code, timeout=20)
    assert result.exit_code == 0, result.stderr_text
    assert "OPENAI_API_KEY" not in result.stdout_text
    assert canary not in result.stdout_text + result.stderr_text
    assert f"/proc/{os.getpid()}/environ blocked" in result.stdout_text


def test_writes_outside_the_work_dir_fail(sandbox: Sandbox, tmp_path: Path) -> None:
    host_marker = tmp_path / "escaped.txt"
    targets = [
        "/etc/wflo-escape",
        "/usr/wflo-escape",
        "/tmp/wflo-escape",
        "/wflo-escape",
        "/dev/shm/wflo-escape",
        "/var/tmp/wflo-escape",
        str(host_marker),
        "/work/inside.txt",
    ]
    code = f"""
import json
out = {{}}
for path in {targets!r}:
    try:
        with open(path, "w") as fh:
            fh.write("x")
        out[path] = "written"
    except OSError as err:
        out[path] = "blocked: " + type(err).__name__
print(json.dumps(out))
"""
    result = sandbox.run(code, timeout=20)
    seen = observations(result)
    assert seen.pop("/work/inside.txt") == "written"  # control: the work dir is writable
    assert all(v.startswith("blocked") for v in seen.values()), seen
    assert not host_marker.exists()
    assert result.files_out["inside.txt"] == b"x"


def test_fork_bomb_is_contained(sandbox: Sandbox) -> None:
    code = """
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
"""
    limits = SandboxLimits(timeout_seconds=4, pids=32)
    result, slowest = run_probing(sandbox, code, limits)
    assert result.killed_reason is KilledReason.TIMEOUT
    assert result.wall_ms < 15_000
    assert slowest < 3.0, f"host spawn took {slowest:.1f} s during the fork bomb"


def test_memory_bomb_is_oom_killed(sandbox: Sandbox) -> None:
    code = "blocks = []\nwhile True:\n    blocks.append(bytearray(8 * 1024 * 1024))\n"
    result, slowest = run_probing(sandbox, code, SandboxLimits(timeout_seconds=30, memory_bytes=96 * MiB))
    assert result.killed_reason is KilledReason.MEMORY, (result.exit_code, result.stderr_text[-300:])
    assert result.exit_code == 137
    assert result.peak_memory_bytes is not None and result.peak_memory_bytes <= 97 * MiB
    assert slowest < 3.0


def test_cpu_spin_is_stopped_by_the_cpu_limit(sandbox: Sandbox) -> None:
    limits = SandboxLimits(timeout_seconds=60, cpu_seconds=1)
    result, slowest = run_probing(sandbox, "while True:\n    pass\n", limits)
    assert result.killed_reason is KilledReason.CPU
    # RLIMIT_CPU fires on tick-sampled CPU time; the cgroup reports the exact runtime, which on a
    # busy (virtual) machine can be well below the tick count, hence the low bound.
    assert result.cpu_ms is not None and 500 <= result.cpu_ms <= 5000
    assert slowest < 3.0


def test_sleep_forever_is_killed_at_the_wall_clock_limit(sandbox: Sandbox) -> None:
    started = time.monotonic()
    result = sandbox.run("import time\ntime.sleep(10_000)\n", timeout=2)
    assert result.killed_reason is KilledReason.TIMEOUT
    assert 2000 <= result.wall_ms < 6000
    assert time.monotonic() - started < 15


def test_disk_fill_stops_at_the_work_dir_size(sandbox: Sandbox) -> None:
    code = """
import errno, json
written, failure = 0, None
try:
    for i in range(1000):
        with open(f"fill-{i}.bin", "wb") as fh:
            for _ in range(4):
                fh.write(b"\\0" * 262144); fh.flush(); written += 262144
except OSError as err:
    failure = errno.errorcode[err.errno]
print(json.dumps({"written": written, "failure": failure}))
"""
    limits = SandboxLimits(timeout_seconds=30, workdir_bytes=8 * MiB, max_files_out_bytes=4 * MiB)
    result, slowest = run_probing(sandbox, code, limits)
    seen = observations(result)
    assert seen["failure"] == "ENOSPC"
    assert seen["written"] <= 8 * MiB
    assert result.files_out_truncated
    assert sum(len(data) for data in result.files_out.values()) <= 4 * MiB
    assert slowest < 3.0


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_output_flood_is_cut_off(sandbox: Sandbox, stream: str) -> None:
    code = f"import sys\nwhile True:\n    sys.{stream}.write('x' * 65536)\n"
    limits = SandboxLimits(timeout_seconds=30, max_output_bytes=256 * 1024)
    result, slowest = run_probing(sandbox, code, limits)
    assert result.killed_reason is KilledReason.OUTPUT_LIMIT
    flooded = result.stdout if stream == "stdout" else result.stderr
    assert len(flooded) == 256 * 1024 and set(flooded) == {ord("x")}
    assert getattr(result, f"{stream}_truncated")
    assert slowest < 3.0


def test_code_cannot_kill_its_parent_or_host_processes(sandbox: Sandbox) -> None:
    bystander = subprocess.Popen(["sleep", "120"])
    try:
        code = f"""
import json, os, signal
out = {{}}
for name, pid in (("parent", {os.getpid()}), ("bystander", {bystander.pid})):
    try:
        os.kill(pid, signal.SIGKILL); out[name] = "sent"
    except OSError as err:
        out[name] = "blocked: " + type(err).__name__
print(json.dumps(out), flush=True)
os.kill(-1, signal.SIGKILL)
"""
        result = sandbox.run(code, timeout=20)
        seen = json.loads(result.stdout_text.splitlines()[0])
        assert seen["parent"].startswith("blocked") and seen["bystander"].startswith("blocked"), seen
        assert bystander.poll() is None, "a host process was killed from inside the sandbox"
        os.kill(os.getpid(), 0)  # and we are obviously still here to check
    finally:
        bystander.kill()
        bystander.wait()


def test_code_runs_unprivileged(sandbox: Sandbox) -> None:
    code = """
import json, os
lines = open("/proc/self/status").read().splitlines()
status = dict(line.split(":\\t", 1) for line in lines if ":\\t" in line)
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "caps": status["CapEff"].strip(),
                  "bounding": status["CapBnd"].strip(), "no_new_privs": status["NoNewPrivs"].strip(),
                  "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit())}))
"""
    seen = observations(sandbox.run(code, timeout=20))
    assert seen["uid"] != 0 and seen["gid"] != 0
    assert int(seen["caps"], 16) == 0 and int(seen["bounding"], 16) == 0
    assert seen["no_new_privs"] == "1"
    assert len(seen["pids"]) <= 3, f"host processes visible: {seen['pids']}"
