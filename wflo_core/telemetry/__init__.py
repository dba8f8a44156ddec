"""OpenTelemetry GenAI spans for every LLM call, under step and run spans; export is off by default."""

from wflo_core.telemetry.spans import configure as configure
from wflo_core.telemetry.spans import flush as flush
from wflo_core.telemetry.spans import record_run as record_run
from wflo_core.telemetry.spans import record_step as record_step
from wflo_core.telemetry.spans import traced_complete as traced_complete
from wflo_core.telemetry.spans import traced_stream as traced_stream

__all__ = ["configure", "flush", "record_run", "record_step", "traced_complete", "traced_stream"]
