"""``wflo events``: tail the event stream, relay the outbox, create the Kafka topics."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(help="wflo's event stream (Kafka, or the JSONL file embedded).", no_args_is_help=True)


@app.command("tail")
def tail(
    types: Annotated[
        list[str] | None,
        typer.Option(
            "--type",
            "-t",
            help="Only this type; repeatable. 'llm_call.settled' or the full 'io.wflo.…' name.",
        ),
    ] = None,
    run: Annotated[str | None, typer.Option("--run", "-r", help="Only events of this run id.")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep waiting for new events.")] = False,
    source: Annotated[str | None, typer.Option(help="kafka or file; default: kafka if configured.")] = None,
    json_lines: Annotated[bool, typer.Option("--json", help="Print raw CloudEvents JSON lines.")] = False,
) -> None:
    """Print events, oldest first, filtered by type and run."""
    from wflo_core.config import load_settings
    from wflo_core.errors import ConfigError
    from wflo_core.events.reader import read_jsonl, read_kafka
    from wflo_core.events.topics import TopicLayout
    from wflo_dagster.cli.event_view import EventPrinter

    settings = load_settings()
    source = source or ("kafka" if settings.kafka_bootstrap_servers else "file")
    if source == "kafka":
        if not settings.kafka_bootstrap_servers:
            raise ConfigError("--source kafka needs WFLO_KAFKA_BOOTSTRAP_SERVERS (e.g. localhost:9092)")
        records = read_kafka(
            settings.kafka_bootstrap_servers,
            TopicLayout.from_settings(settings).events,
            follow=follow,
            timeout_s=30,
        )
    elif source == "file":
        records = read_jsonl(settings.events_path, follow=follow)
    else:
        raise ConfigError(f"--source must be kafka or file, got {source!r}")
    wanted = {t if t.startswith("io.wflo.") else f"io.wflo.{t}" for t in types or []}
    printer = EventPrinter(wanted_types=wanted, run_id=run, raw=json_lines)
    try:
        for record in records:
            printer.show(record)
    except KeyboardInterrupt:
        pass
    if not follow and printer.shown == 0:
        typer.echo("no matching events", err=True)


@app.command("relay")
def relay(
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep relaying until interrupted.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between passes with --follow.")] = 1.0,
    limit: Annotated[int, typer.Option(help="Events per batch.")] = 2000,
) -> None:
    """Publish events committed to the ledger's outbox (once, or continuously with --follow)."""
    import signal
    import threading

    from wflo_core.config import load_settings
    from wflo_core.events import OutboxRelay, build_event_sink
    from wflo_core.events.relay import relay_catch_up
    from wflo_core.events.sinks import publish_breaker
    from wflo_core.ledger import open_ledger

    settings = load_settings()
    with open_ledger(settings) as ledger:
        sink = build_event_sink(settings)
        try:
            if follow:
                stop = threading.Event()
                signal.signal(signal.SIGTERM, lambda *_: stop.set())
                try:
                    OutboxRelay(ledger, sink).relay_forever(stop, interval_s=interval, limit=limit)
                except KeyboardInterrupt:
                    pass
                return
            stats = relay_catch_up(ledger, sink, publish_breaker(settings), limit=limit)
        finally:
            sink.close()
    typer.echo(
        f"published {stats.published}, dead-lettered {stats.dead_lettered}, "
        f"still pending {stats.failed + stats.deferred}"
        + (" (another relay is running)" if stats.busy else "")
    )
    if stats.errors:
        typer.secho(f"last error: {stats.errors[-1]}", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(2)


@app.command("topics")
def topics() -> None:
    """Create the event, trigger and dead-letter topics (WFLO_KAFKA_PARTITIONS partitions each)."""
    from wflo_core.config import load_settings
    from wflo_core.events.topics import TopicLayout, ensure_topics

    settings = load_settings()
    created = set(ensure_topics(settings))
    for name in TopicLayout.from_settings(settings).all:
        typer.echo(f"{name}: {'created' if name in created else 'exists'}")
