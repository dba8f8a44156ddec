"""The CloudEvents 1.0 JSON envelope around every wflo event, and its strict decoder.

One event on the wire (structured mode, ``application/cloudevents+json``)::

    {"specversion": "1.0", "id": "…", "source": "/wflo/gateway", "type": "io.wflo.llm_call.settled",
     "subject": "runs/8f2c/steps/summarize", "time": "2026-11-24T10:00:00Z",
     "datacontenttype": "application/json", "dataschema": "urn:wflo:io.wflo.llm_call.settled:1",
     "dataversion": "1", "partitionkey": "8f2c", "sequence": "00000000000000004711",
     "data": {…, "cost_usd": "0.0123"}}
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from wflo_core.errors import EventError
from wflo_core.events.schemas import EVENT_TYPES, EventData

DEFAULT_SOURCE = "/wflo"
# Ids of events with a natural identity are uuid5 in this namespace, so re-emitting the same fact
# (a retried hook, a re-settled call) yields the same id and consumers' dedupe drops it.
EVENT_ID_NAMESPACE = uuid.UUID("6c0b2f0e-7a53-4f7b-9a53-1c6f5b3e9e21")
_MAX_ERRORS_SHOWN = 3

NonEmpty = Annotated[str, Field(min_length=1, max_length=1024)]


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 event whose ``data`` is the JSON form of an :class:`EventData` model."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    specversion: Literal["1.0"] = "1.0"
    id: NonEmpty
    source: NonEmpty
    type: NonEmpty
    subject: str | None = None
    time: AwareDatetime
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str | None = None
    dataversion: str | None = None
    """Extension attribute: the version of the ``data`` schema for this ``type``."""
    partitionkey: str | None = None
    """Extension attribute (CloudEvents partitioning): the Kafka key, a run id."""
    sequence: str | None = None
    """Extension attribute (CloudEvents sequence): set by the relay to the zero-padded outbox row id,
    so a run's events sort into the order they were committed in, whichever process wrote them."""
    data: dict[str, Any]

    @property
    def run_id(self) -> str | None:
        value = self.data.get("run_id")
        return value if isinstance(value, str) else None

    def data_model(self) -> EventData:
        """The typed payload; ``EventError`` if the type is unknown or the data does not fit it."""
        model = EVENT_TYPES.get(self.type)
        if model is None:
            raise EventError(
                f"unknown event type {self.type!r}; known types: io.wflo.run.started, ... "
                f"(see wflo_core.events.schemas.EVENT_TYPES)",
                event_type=self.type,
            )
        if self.dataversion is not None and self.dataversion != model.version:
            raise EventError(
                f"event {self.id} has {self.type} data version {self.dataversion!r} but this wflo reads "
                f"version {model.version!r}; upgrade the consumer",
                event_type=self.type,
            )
        try:
            return model.model_validate(self.data)
        except ValidationError as err:
            raise EventError(
                f"event {self.id} ({self.type}) has invalid data: {_summary(err)}", event_type=self.type
            ) from None


def new_event(
    data: EventData,
    *,
    source: str = DEFAULT_SOURCE,
    id: str | None = None,
    time: datetime | None = None,
) -> CloudEvent:
    """Wrap ``data`` in an envelope; the id is derived from ``data.dedupe_key`` when it has one."""
    return CloudEvent(
        id=id or event_id(data),
        source=source,
        type=data.type,
        subject=data.subject,
        time=time or datetime.now(UTC),
        dataschema=f"urn:wflo:{data.type}:{data.version}",
        dataversion=data.version,
        partitionkey=data.partition_key,
        data=data.model_dump(mode="json"),
    )


def event_id(data: EventData) -> str:
    """uuid5 of the fact's natural identity (so a re-emitted fact keeps its id), else a random uuid4."""
    key = data.dedupe_key
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{data.type}|{key}") if key else uuid.uuid4())


def encode_new_event(data: EventData, *, source: str = DEFAULT_SOURCE, time: datetime | None = None) -> tuple[str, str]:
    """``(id, JSON)``: the text of ``encode_event(new_event(data))``, without building the envelope
    model or dumping ``data`` twice (a third of the cost), for the LLM call path that only stores it."""
    id = event_id(data)
    head: dict[str, str] = {"specversion": "1.0", "id": id, "source": source, "type": data.type}
    if (subject := data.subject) is not None:
        head["subject"] = subject
    head["time"] = (time or datetime.now(UTC)).astimezone(UTC).isoformat().replace("+00:00", "Z")
    head["datacontenttype"] = "application/json"
    head["dataschema"] = f"urn:wflo:{data.type}:{data.version}"
    head["dataversion"] = data.version
    head["partitionkey"] = data.partition_key
    return id, f'{_dumps(head)[:-1]},"data":{data.model_dump_json()}}}'


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
"""Compact and UTF-8 as pydantic writes JSON, so both encoders give the same text."""


def encode_event(event: CloudEvent) -> bytes:
    return event.model_dump_json(exclude_none=True).encode()


def decode_event(raw: bytes | str, *, require_known_type: bool = True) -> CloudEvent:
    """Parse one event; any malformed input raises ``EventError`` saying what is wrong.

    With ``require_known_type`` the ``data`` is also validated against its schema, so a consumer
    can trust ``event.data_model()``.
    """
    try:
        event = CloudEvent.model_validate_json(raw)
    except ValidationError as err:
        raise EventError(f"not a CloudEvents 1.0 JSON event: {_summary(err)}") from None
    except (ValueError, RecursionError) as err:  # e.g. bytes that are not UTF-8
        raise EventError(f"not a CloudEvents 1.0 JSON event: {type(err).__name__}: {err}") from None
    if require_known_type:
        event.data_model()
    return event


def _summary(err: ValidationError) -> str:
    parts = []
    for e in err.errors(include_url=False, include_input=False)[:_MAX_ERRORS_SHOWN]:
        where = ".".join(str(p) for p in e["loc"]) or "(event)"
        parts.append(f"{where}: {e['msg']}")
    more = err.error_count() - _MAX_ERRORS_SHOWN
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")
