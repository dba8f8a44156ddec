"""How ``wflo events tail`` shows one event: a rich line with the fields that matter per type."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from wflo_core.errors import EventError
from wflo_core.events.envelope import CloudEvent, decode_event
from wflo_core.events.reader import Record

_COLOURS = {
    "run": "bold cyan",
    "step": "cyan",
    "llm_call": "green",
    "budget": "yellow",
    "sandbox": "magenta",
    "approval": "blue",
    "event": "red",
}
_HIDDEN = {"run_id", "step_key", "idempotency_key", "payload_excerpt"}


class EventPrinter:
    """Filters records by type and run and prints them; malformed records print as warnings."""

    def __init__(
        self, *, wanted_types: set[str], run_id: str | None, raw: bool = False, console: Console | None = None
    ) -> None:
        self.wanted_types = wanted_types
        self.run_id = run_id
        self.raw = raw
        self.console = console or Console(highlight=False, soft_wrap=True)
        self.shown = 0

    def show(self, record: Record) -> None:
        try:
            event = decode_event(record.value, require_known_type=False)
        except EventError as err:
            self.console.print(f"[red]! {escape(record.position)}: {escape(str(err))}[/red]")
            return
        if self.wanted_types and event.type not in self.wanted_types:
            return
        if self.run_id and event.run_id != self.run_id:
            return
        self.shown += 1
        if self.raw:
            self.console.out(record.value.decode(errors="replace"), highlight=False)
            return
        self.console.print(self.line(event))

    @staticmethod
    def line(event: CloudEvent) -> str:
        short = event.type.removeprefix("io.wflo.")
        colour = _COLOURS.get(short.split(".", 1)[0], "white")
        where = event.run_id or event.partitionkey or "-"
        if step := event.data.get("step_key"):
            where += f"/{step}"
        fields = " ".join(
            f"{k}={_fmt(k, v)}"
            for k, v in event.data.items()
            if k not in _HIDDEN and v not in (None, {}, [], 0, "0")
        )
        stamp = event.time.strftime("%H:%M:%S.%f")[:-3]
        return (
            f"[dim]{stamp}[/dim] [{colour}]{short:<26}[/{colour}] [bold]{escape(where)}[/bold] "
            f"{escape(fields)}"
        )


def _fmt(key: str, value: object) -> str:
    if key.endswith("_usd"):
        return f"${value}"
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."
