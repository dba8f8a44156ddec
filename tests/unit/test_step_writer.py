"""The background step writer reports every failed write, however long before the flush it failed."""

from __future__ import annotations

import logging

import pytest

from wflo_core.config import load_settings
from wflo_core.services import build_services
from wflo_core.steps.writer import StepWriter


def _fail() -> None:
    raise RuntimeError("relation \"steps\" does not exist")


def test_a_write_that_failed_before_the_flush_is_still_reported_once() -> None:
    writer = StepWriter()
    failed = writer.submit(_fail)
    with pytest.raises(RuntimeError):
        failed.result()  # done, and out of the pending set, long before the flush
    writer.submit(lambda: None).result()

    errors = writer.flush()

    assert [str(e) for e in errors] == ['relation "steps" does not exist']
    assert writer.flush() == [] and writer.close() == []


def test_services_log_a_failed_write_at_close(caplog: pytest.LogCaptureFixture) -> None:
    services = build_services(load_settings())
    services.step_writer.submit(_fail)

    with caplog.at_level(logging.WARNING, logger="wflo_core.services"):
        services.close()

    [record] = [r for r in caplog.records if r.name == "wflo_core.services"]
    assert "could not write a step's ledger row (RuntimeError: relation \"steps\" does not exist)" in record.message
