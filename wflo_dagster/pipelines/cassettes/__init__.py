"""The replay cassette of the example pipelines, registered as a ``wflo.cassettes`` entry point."""

from pathlib import Path

EXAMPLES = Path(__file__).with_name("research_agent.jsonl")
"""Recorded answers for every call the example pipelines make (``scripts/make_demo_cassette.py``)."""
