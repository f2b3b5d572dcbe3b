"""`pywats-events dlq list|show|purge|replay`: the dead-letter queue, events a handler gave up on."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from datetime import datetime, timezone
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table
from rich.text import Text

from .._exceptions import ConfigurationError
from ..broker_dead_letters import BrokerDeadLetter, BrokerDeadLetters, broker_dead_letters
from ..config import Settings
from ..exit_codes import ExitCode
from ..logging_setup import configure_logging, redact
from .app import (
    ConfigOpt,
    DataDirOpt,
    JsonOpt,
    app,
    base_overrides,
    err,
    extensible_command,
    fail_config,
    load_cli_settings,
    log_config,
    out,
    progress_bar,
    purge,
    put,
    require_store,
)

__all__ = ["dlq_app"]

_T = TypeVar("_T")

dlq_app = typer.Typer(help="Dead-letter queue: events a handler gave up on.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")


def _parse_time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise fail_config(ConfigurationError(name, f"not an ISO date/time: {value!r}")) from None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


#: DLQ ids are 32 hex digits; `show`/`replay` also take a unique prefix of one
_ID_WIDTH = 32
#: console width from which `dlq list` prints a table
_WIDE = 130


def _dlq(settings: Settings) -> Any:
    """The DLQ of the configured data directory; exit 2 when there is none (never creates one)."""
    from ..policies import SqliteDeadLetterQueue

    return SqliteDeadLetterQueue(require_store(settings.dlq_path, "dead-letter queue", settings))


def _broker(settings: Settings) -> BrokerDeadLetters | None:
    """Distributed mode keeps dead letters on the broker: its dead-letter queue, if a plugin names it."""
    if not settings.listener.distributed:
        return None
    try:
        return broker_dead_letters(settings)
    except ConfigurationError as exc:
        raise fail_config(exc) from None


def _on_broker(call: Coroutine[Any, Any, _T]) -> _T:
    try:
        return asyncio.run(call)
    except ConfigurationError as exc:
        raise fail_config(exc) from None


def _broker_select(
    broker: BrokerDeadLetters,
    handler: str | None,
    event_type: str | None,
    error: str | None,
    since: str | None,
    until: str | None,
) -> list[BrokerDeadLetter]:
    """The broker's dead letters matching the filters (`--event-type`: part of the routing key, which
    names the message type)."""
    t_since, t_until = _parse_time(since, "--since"), _parse_time(until, "--until")
    found: list[BrokerDeadLetter] = []
    for e in _on_broker(broker.browse()):
        failed = _parse_stamp(e.failed_at)
        if handler and handler not in e.handlers.split(","):
            continue
        if event_type and event_type.lower() not in e.routing_key.lower():
            continue
        if error and error.lower() not in f"{e.error_type} {e.reason}".lower():
            continue
        if t_since is not None and (failed is None or failed < t_since):
            continue
        if t_until is not None and (failed is None or failed > t_until):
            continue
        found.append(e)
    return found


def _parse_stamp(value: str) -> datetime | None:
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _broker_ids(entries: list[BrokerDeadLetter], given: list[str]) -> list[str]:
    """`_resolve_ids` for the broker's dead letters (several copies may share an id)."""
    return _match_ids(sorted({e.id for e in entries}), given)


def _broker_list(entries: list[BrokerDeadLetter], where: str, as_json: bool) -> None:
    if as_json:
        for e in entries:
            out.print_json(data=_redacted(e.to_dict(full=False)), indent=None)
        return
    out.print(f"dead letters on the broker, {where} ({len(entries)}); times UTC")
    for e in entries:
        head = f"{e.id}  {e.failed_at or '?'}  {e.handlers or '-'}  {e.routing_key}  attempts {e.attempts}"
        out.print(Text(head, style="bold"))
        kind = e.error_type.rsplit(".", 1)[-1]
        out.print(Text(f"    {redact(f'{kind}: {e.reason}')[:300]}"))


def _redacted(d: dict[str, Any]) -> dict[str, Any]:
    d["error"] = redact(d["error"])
    return d


def _dlq_select(
    settings: Settings,
    handler: str | None,
    event_type: str | None,
    error: str | None,
    since: str | None,
    until: str | None,
) -> list[Any]:
    t_since, t_until = _parse_time(since, "--since"), _parse_time(until, "--until")
    entries = _dlq(settings).get_entries(handler=handler, event_type=event_type, since=t_since)
    if error:
        needle = error.lower()
        entries = [e for e in entries if needle in e.error.lower() or needle in e.error_type.lower()]
    if t_until is not None:
        entries = [e for e in entries if e.last_failure <= t_until]
    return entries


HandlerOpt = Annotated[str | None, typer.Option(help="Only entries of this handler.")]
TypeOpt = Annotated[str | None, typer.Option("--event-type", help="Only this event type, e.g. test.result.")]
ErrorOpt = Annotated[str | None, typer.Option(help="Only entries whose error (type or text) contains this.")]
SinceOpt = Annotated[str | None, typer.Option(help="Last failure at or after (ISO time).")]
UntilOpt = Annotated[str | None, typer.Option(help="Last failure at or before (ISO time).")]


@dlq_app.command("list")
def dlq_list(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    handler: HandlerOpt = None,
    event_type: TypeOpt = None,
    error: ErrorOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List dead letters (in distributed mode: those on the broker's dead-letter queue)."""
    settings = load_cli_settings(config, base_overrides(data_dir))
    broker = _broker(settings)
    if broker is not None:
        _broker_list(_broker_select(broker, handler, event_type, error, since, until), broker.where, as_json)
        return
    entries = _dlq_select(settings, handler, event_type, error, since, until)
    if as_json:
        for e in entries:
            out.print_json(data=_dlq_dict(e, full=False), indent=None)
        return
    rows = [
        (
            e.id,
            e.last_failure.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
            e.handler,
            e.event.type_name,
            str(e.attempts),
            redact(f"{e.error_type.rsplit('.', 1)[-1]}: {e.error}")[:300],
        )
        for e in entries
    ]
    if out.width < _WIDE:
        # a narrow console (or a pipe) would squeeze a table until ids are cut: one entry per two lines
        out.print(f"dead letters ({len(entries)}); times UTC")
        for row in rows:
            out.print(Text(f"{row[0]}  {row[1]}  {row[2]}  {row[3]}  attempts {row[4]}", style="bold"))
            out.print(Text(f"    {row[5]}"))
        return
    table = Table(title=f"dead letters ({len(entries)})", expand=True)
    # ids are what `dlq show` / `dlq replay` take: never cut them; the error text wraps instead
    table.add_column("id", no_wrap=True, min_width=_ID_WIDTH)
    table.add_column("last failure (UTC)", no_wrap=True)
    table.add_column("handler", no_wrap=True)
    table.add_column("event type", no_wrap=True)
    table.add_column("attempts", justify="right", no_wrap=True)
    table.add_column("error", ratio=1, min_width=20)
    for row in rows:
        table.add_row(*row)
    out.print(table)


def _dlq_dict(e: Any, *, full: bool) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": e.id,
        "handler": e.handler,
        "event_type": e.event.type_name,
        "event_id": e.event.id,
        "error_type": e.error_type,
        "error": redact(e.error),
        "attempts": e.attempts,
        "first_failure": e.first_failure.isoformat(),
        "last_failure": e.last_failure.isoformat(),
    }
    if full:
        d["event"] = json.loads(e.event.to_json())
    return d


@dlq_app.command("show")
def dlq_show(entry_id: str, config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Show one dead letter with its event (in distributed mode: the broker's message)."""
    settings = load_cli_settings(config, base_overrides(data_dir))
    broker = _broker(settings)
    if broker is not None:
        entries = _broker_select(broker, None, None, None, None, None)
        wanted = _broker_ids(entries, [entry_id])[0]
        for e in entries:
            if e.id == wanted:
                out.print_json(data=_redacted(e.to_dict(full=True)))
        return
    dlq = _dlq(settings)
    entry = dlq.get(_resolve_ids(dlq, [entry_id])[0])
    if entry is None:
        err.print(f"no dead letter {entry_id!r}")
        raise typer.Exit(ExitCode.ERROR)
    out.print_json(data=_dlq_dict(entry, full=True))


def _resolve_ids(dlq: Any, given: list[str]) -> list[str]:
    """Full ids for `given` ids or unique id prefixes (as `dlq list` shows them); exit 1 naming a bad one."""
    return _match_ids([e.id for e in dlq.get_entries()], given)


def _match_ids(known: list[str], given: list[str]) -> list[str]:
    """Each of `given` (an id or a unique id prefix) as the one id of `known` it names; exit 1 otherwise."""
    resolved: list[str] = []
    for wanted in given:
        wanted = wanted.strip().rstrip("…")
        matches = [k for k in known if k == wanted] or [k for k in known if wanted and k.startswith(wanted)]
        if len(matches) != 1:
            problem = "matches several dead letters" if matches else "is no dead letter"
            err.print(f"{wanted!r} {problem} (see `pywats-events dlq list`)")
            raise typer.Exit(ExitCode.ERROR)
        resolved.append(matches[0])
    return resolved


@dlq_app.command("purge")
def dlq_purge(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    handler: HandlerOpt = None,
    event_type: TypeOpt = None,
    error: ErrorOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Delete dead letters (all, or those matching the filters)."""
    settings = load_cli_settings(config, base_overrides(data_dir))
    broker = _broker(settings)
    if broker is not None:
        found = _broker_select(broker, handler, event_type, error, since, until)
        ids = {e.id for e in found}
        purge(len(found), "dead letters", lambda: _on_broker(broker.purge(ids)), yes=yes, where=broker.where)
        return
    entries = _dlq_select(settings, handler, event_type, error, since, until)

    def remove() -> int:
        dlq = _dlq(settings)
        return sum(1 for e in entries if dlq.remove(e.id))

    purge(len(entries), "dead letters", remove, yes=yes)


def dlq_replay(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    handler: HandlerOpt = None,
    event_type: TypeOpt = None,
    error: ErrorOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    ids: Annotated[
        list[str] | None, typer.Argument(help="Entries to replay (ids or unique id prefixes); default all.")
    ] = None,
    entry_id: Annotated[
        list[str] | None, typer.Option("--id", help="Replay only this entry (repeatable).")
    ] = None,
    plugin_settings: dict[str, Any] | None = None,
) -> None:
    """Hand dead letters back to the handler that failed them, with the current configuration.

    The handlers deliver where `run` would: give their destination the same way (file, environment or the
    plugins' options, e.g. `--wats-url`; without a WATS server the WATS handlers write into the local
    outbox). Safe while the listener runs: the replay has its own journal."""
    o = base_overrides(data_dir)
    for setting, value in (plugin_settings or {}).items():
        put(o, setting, value)
    settings = load_cli_settings(config, o, announce=False)
    configure_logging(level=settings.listener.log_level, json_lines=settings.listener.log_json)
    log_config(config, settings)
    explicit = [*(ids or []), *(entry_id or [])]
    broker = _broker(settings)
    if broker is not None:
        _broker_replay(broker, _broker_select(broker, handler, event_type, error, since, until), explicit)
        return
    entries = _dlq_select(settings, handler, event_type, error, since, until)
    if explicit:
        wanted = set(_resolve_ids(_dlq(settings), explicit))
        entries = [e for e in entries if e.id in wanted]
    if not entries:
        out.print("nothing to replay")
        return
    from ..listener import replay_dead_letters

    try:
        with progress_bar("replaying dead letters", len(entries)) as advance:
            result = asyncio.run(replay_dead_letters(settings, [e.id for e in entries], progress=advance))
    except ConfigurationError as exc:
        raise fail_config(exc) from None
    target = ", ".join(result.destinations) or "?"
    out.print(
        f"replayed {result.replayed} dead letters to {redact(target)}: {result.failed_again} failed again"
        f" (DLQ now {result.dlq_size})"
    )
    if result.skipped:
        err.print(
            f"skipped {len(result.skipped)} entries whose handler is not configured (listener.handlers);"
            " they stay in the DLQ (see the log for the handler names)"
        )
    if result.stopped_early:
        err.print(
            f"stopped early: {result.not_replayed} selected entries were not replayed and stay in the DLQ"
            f" (a handler did not finish within listener.drain_timeout ="
            f" {settings.listener.drain_timeout:g}s;"
            " is WATS reachable?)"
        )
        raise typer.Exit(ExitCode.ERROR)
    if result.skipped:
        raise typer.Exit(ExitCode.ERROR)


def _broker_replay(broker: BrokerDeadLetters, entries: list[BrokerDeadLetter], explicit: list[str]) -> None:
    """Distributed mode: the dead letters go back to the queue they came from, where the listeners run
    them through the handlers that failed them (attempt count reset)."""
    if explicit:
        wanted = set(_broker_ids(entries, explicit))
        entries = [e for e in entries if e.id in wanted]
    if not entries:
        out.print("nothing to replay")
        return
    ids = {e.id for e in entries}
    replayed = _on_broker(broker.replay(ids))
    selected = sum(1 for e in entries if e.id in ids)
    out.print(f"replayed {replayed} dead letters from {broker.where} to the listeners' queues")
    if replayed < selected:
        err.print(f"{selected - replayed} selected dead letters were not replayed and stay on the broker")
        raise typer.Exit(ExitCode.ERROR)


extensible_command(dlq_app, "replay", dlq_replay, after="entry_id", path="dlq replay")
