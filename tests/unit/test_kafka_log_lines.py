"""librdkafka's log lines: a broker that stays down is said once, not at every reconnect."""

from __future__ import annotations

import logging

import pytest

from wflo_core.events.sinks import kafka
from wflo_core.events.sinks.kafka import DistinctLogLines

REFUSED = ("[thrd:127.0.0.1:9/bootstrap]: 127.0.0.1:9/bootstrap: Connect to ipv4#127.0.0.1:9 failed: "
           "Connection refused (after {ms}ms in state CONNECT{suppressed})")


def refused(ms: int, suppressed: str = "") -> tuple[int, str, str, str, str]:
    """One call as confluent-kafka makes it."""
    return (logging.ERROR, "%s [%s] %s", "FAIL", "wflo#producer-1", REFUSED.format(ms=ms, suppressed=suppressed))


def test_a_repeated_line_is_logged_once_and_again_after_the_interval(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(kafka.time, "monotonic", lambda: now[0])
    lines = DistinctLogLines()
    with caplog.at_level(logging.ERROR, logger="wflo.events.kafka"):
        for n in range(20):
            lines.log(*refused(n, ", 4 identical error(s) suppressed" if n % 3 else ""))
        lines.log(logging.ERROR, "%s [%s] %s", "FAIL", "wflo#producer-1", "SASL authentication failed")
        now[0] += kafka.REPEAT_LOG_S
        lines.log(*refused(0))
    logged = [r.getMessage() for r in caplog.records]
    assert logged == [
        "FAIL [wflo#producer-1] " + REFUSED.format(ms=0, suppressed=""),
        "FAIL [wflo#producer-1] SASL authentication failed",
        "FAIL [wflo#producer-1] " + REFUSED.format(ms=0, suppressed=""),
    ]
    assert {r.levelno for r in caplog.records} == {logging.ERROR}
