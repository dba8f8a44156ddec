"""The test harness's shared dockerd: a session ending never stops it under another session."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.services import _DockerLease


def test_the_starter_stops_the_daemon_only_when_no_other_session_holds_a_lease(tmp_path):
    path = tmp_path / "sessions.lock"
    starter, other = _DockerLease(path), _DockerLease(path)

    assert starter.release(last=True) is False  # another session still uses the daemon
    other.release()
    assert _DockerLease(path).release(last=True) is True


def test_a_session_starting_while_the_daemon_stops_waits_for_the_stop(tmp_path):
    path = tmp_path / "sessions.lock"
    stopping = _DockerLease(path)
    assert stopping.release(last=True) is True  # exclusive until close(): the daemon is being stopped
    code = ("import sys; sys.path.insert(0, sys.argv[2]); from pathlib import Path; "
            "from tests.services import _DockerLease; print('taking', flush=True); _DockerLease(Path(sys.argv[1])); "
            "print('taken', flush=True)")
    from tests.conftest import REPO_ROOT

    child = subprocess.Popen([sys.executable, "-c", code, str(path), str(REPO_ROOT)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline() == "taking\n"
    time.sleep(0.5)
    assert child.poll() is None  # still waiting for the stop to finish
    stopping.close()
    assert child.stdout.readline() == "taken\n"
    assert child.wait(30) == 0
