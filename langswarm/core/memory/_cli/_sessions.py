"""``sessions list``, ``sessions show``, ``stats`` and ``cleanup``: looking into a store and
clearing it out."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click

from .._export import dump, message_fields, meta_fields, session_fields, summary_fields
from ..interfaces import Message, SessionMetadata, SessionStatus
from ._common import CommandError, Group, Selection, open_store, run, selection_options, url_option
from ._copy import listing, message_pages, read_session

__all__ = ["cleanup_command", "sessions_group", "stats_command"]

#: Rows of a table formatted together (a long listing streams in blocks this long).
TABLE_BLOCK = 200
#: Sessions a dry run of ``cleanup`` lists, and sessions deleted per call.
SHOWN = 20
DELETE_BATCH = 500


def when(moment: datetime | None) -> str:
    """A time for people: UTC, to the second."""
    if moment is None:
        return "never"
    return datetime.fromtimestamp(moment.timestamp(), UTC).strftime("%Y-%m-%d %H:%M:%S")


def table(rows: Sequence[Sequence[str]], widths: list[int]) -> str:
    """``rows`` in columns at least ``widths`` wide (widened in place to fit)."""
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows
    )


@click.group("sessions", cls=Group)
def sessions_group() -> None:
    """List sessions and look into one."""


@sessions_group.command(
    "list",
    epilog="""\b
examples:
  langswarm-memory sessions list --url sqlite:///memory.db
  langswarm-memory sessions list --user alice --status active --newer-than 7d
  langswarm-memory sessions list --older-than 90d --limit 0 --json | jq -r '.[].session_id'
""",
)
@url_option
@selection_options
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    help="list at most N sessions, newest update first (0: all)",
)
@click.option("--json", "as_json", is_flag=True, help="a JSON array instead of a table")
def list_command(url: str, selection: Selection, limit: int, as_json: bool) -> int:
    """List sessions, most recently updated first."""
    return run(lambda: _list(url, selection, limit, as_json))


async def _list(url: str, selection: Selection, limit: int, as_json: bool) -> int:
    header = ["SESSION", "USER", "STATUS", "MESSAGES", "UPDATED (UTC)"]
    widths = [len(h) for h in header]
    block: list[list[str]] = [header] if not as_json else []
    shown = 0
    async with open_store(url) as store:
        if as_json:
            click.echo("[", nl=False)
        async for meta in listing(store, selection):
            if as_json:
                click.echo(("," if shown else "") + "\n" + dump(meta_fields(meta)), nl=False)
            else:
                block.append(_row(meta))
                if len(block) >= TABLE_BLOCK:
                    click.echo(table(block, widths))
                    block = []
            shown += 1
            if shown == limit:
                break
    if as_json:
        click.echo("\n]" if shown else "]")
    elif block and (shown or len(block) > 1):
        click.echo(table(block, widths))
    if not shown and not as_json:
        click.echo("no sessions match", err=True)
    return 0


def _row(meta: SessionMetadata) -> list[str]:
    return [
        meta.session_id,
        meta.user_id,
        meta.status.value,
        f"{meta.message_count:,}",
        when(meta.updated_at),
    ]


@sessions_group.command(
    "show",
    epilog="""\b
examples:
  langswarm-memory sessions show 8f14e45f
  langswarm-memory sessions show 8f14e45f --messages 0 --full
  langswarm-memory sessions show 8f14e45f --json | jq '.messages | length'
""",
)
@url_option
@click.argument("session_id")
@click.option(
    "--messages",
    "-n",
    "newest",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="show the newest N messages (0: all)",
)
@click.option(
    "--full",
    is_flag=True,
    help="print each message's whole text (default: one line, cut at 100 characters)",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="the session as one JSON object, every message included (fields as in an export)",
)
def show_command(url: str, session_id: str, newest: int, full: bool, as_json: bool) -> int:
    """Show one session: metadata, summaries, messages and token counts."""
    return run(lambda: _show(url, session_id, newest, full, as_json))


async def _show(url: str, session_id: str, newest: int, full: bool, as_json: bool) -> int:
    async with open_store(url) as store:
        record = await read_session(store, session_id)
        if record is None:
            raise CommandError(f"no session {session_id!r} in this store")
        kept: deque[tuple[int, Message]] = deque(maxlen=None if as_json or not newest else newest)
        count = tokens = 0
        async for page in message_pages(store, record, record.first_seq):
            kept.extend(page)
            count += len(page)
            tokens += sum(m.token_count or 0 for _, m in page)
    if as_json:
        fields = session_fields(record)
        del fields["type"]
        fields["summaries"] = [summary_fields(s) for s in record.summaries]
        fields["messages"] = [message_fields(seq, m) for seq, m in kept]
        click.echo(dump(fields))
        return 0
    meta = record.meta
    settings = " ".join(
        f"{k}={getattr(meta, k)}"
        for k in ("max_messages", "max_tokens", "auto_summarize_threshold")
    )
    gaps = record.next_seq - record.first_seq - count
    info = [
        ("session", meta.session_id),
        ("user", meta.user_id),
        ("status", meta.status.value),
        ("created", when(meta.created_at) + " UTC"),
        ("updated", when(meta.updated_at) + " UTC"),
        ("expires", when(meta.expires_at) + ("" if meta.expires_at is None else " UTC")),
        ("settings", settings),
        ("metadata", dump(meta.metadata)),
        (
            "messages",
            f"{count:,} stored, seq {record.first_seq} to {record.next_seq - 1}"
            f"{f' ({gaps:,} removed)' if gaps else ''}, {tokens:,} tokens",
        ),
        ("summaries", f"{len(record.summaries):,}"),
    ]
    click.echo(table([[k, v] for k, v in info], [9, 0]))
    _show_summaries(record.summaries, full)
    _show_messages(list(kept), count, full)
    return 0


def _cut(text: str, full: bool) -> str:
    if full:
        return text
    line = " ".join(text.split())
    return line if len(line) <= 100 else line[:99] + "…"


def _show_summaries(summaries: Sequence[Any], full: bool) -> None:
    if not summaries:
        return
    click.echo("\nsummaries, oldest first:")
    rows = [["COVERS", "TYPE", "TOKENS", "MADE (UTC)", "TEXT"]]
    for s in summaries:
        rows.append(
            [
                f"< {s.covers_through}",
                s.summary_type.value,
                f"{s.token_count:,}",
                when(s.created_at),
                _cut(s.summary_text, full),
            ]
        )
    click.echo(table(rows, [0] * 5))


def _show_messages(kept: list[tuple[int, Message]], count: int, full: bool) -> None:
    if not kept:
        return
    what = "every message" if len(kept) == count else f"newest {len(kept):,} of {count:,}"
    click.echo(f"\nmessages ({what}):")
    rows = [["SEQ", "TIME (UTC)", "ROLE", "TOKENS", "TEXT"]]
    for seq, m in kept:
        text = m.text()
        if m.has_tool_calls and not text:
            text = "[tool call]"
        rows.append(
            [
                str(seq),
                when(m.timestamp),
                m.role.value,
                "" if m.token_count is None else f"{m.token_count:,}",
                _cut(text, full),
            ]
        )
    click.echo(table(rows, [0] * 5))


# -- stats ----------------------------------------------------------------------------------


@click.command(
    "stats",
    epilog="""\b
examples:
  langswarm-memory stats --url redis://cache:6379/0
  langswarm-memory stats --json
""",
)
@url_option
@click.option("--json", "as_json", is_flag=True, help="the figures as a JSON object")
def stats_command(url: str, as_json: bool) -> int:
    """Count sessions (by status), messages and summaries, and the storage they take."""
    return run(lambda: _stats(url, as_json))


async def _stats(url: str, as_json: bool) -> int:
    async with open_store(url) as store:
        stats = await store.get_usage_stats()
    if as_json:
        click.echo(dump(stats))
        return 0
    size = stats.get("storage_size_mb")
    rows = [
        ["backend", str(stats.get("backend", store.name))],
        ["sessions", f"{stats.get('total_sessions', 0):,}"],
        *[
            [f"  {status}", f"{n:,}"]
            for status, n in sorted(stats.get("sessions_by_status", {}).items())
        ],
        ["messages", f"{stats.get('total_messages', 0):,}"],
        ["summaries", f"{stats.get('total_summaries', 0):,}"],
        ["storage", "unknown" if size is None else f"{size:,.1f} MB"],
    ]
    if stats.get("corrupt_sessions"):
        rows.append(["unreadable", f"{stats['corrupt_sessions']:,} sessions"])
    click.echo(table(rows, [0, 0]))
    return 0


# -- cleanup --------------------------------------------------------------------------------


@click.command(
    "cleanup",
    epilog="""\b
examples:
  langswarm-memory cleanup --older-than 90d                 # shows what would go
  langswarm-memory cleanup --older-than 90d --yes           # deletes it
  langswarm-memory cleanup --status archived --older-than 30d --yes
  langswarm-memory cleanup --user alice --yes               # everything of one user
""",
)
@url_option
@selection_options
@click.option(
    "--expired", is_flag=True, help="only sessions past their expiry time, or marked expired"
)
@click.option(
    "--yes",
    "-y",
    is_flag=True,
    help="delete them; without it nothing is deleted, only listed (a dry run)",
)
def cleanup_command(url: str, selection: Selection, expired: bool, yes: bool) -> int:
    """Delete sessions (with their messages and summaries) that match every filter given.

    Without --yes this is a dry run. A session updated after it was selected by
    --older-than is kept."""
    if selection.everything and not expired:
        raise click.UsageError(
            "say which sessions to delete: --older-than, --status, --user, --session or --expired"
        )
    return run(lambda: _cleanup(url, selection, expired, yes))


async def _cleanup(url: str, selection: Selection, expired: bool, yes: bool) -> int:
    now = selection.now.timestamp()
    batch: list[str] = []
    sessions = messages = deleted = 0
    async with open_store(url) as store:
        async for meta in listing(store, selection):
            if expired and not _expired(meta, now):
                continue
            sessions += 1
            messages += meta.message_count
            if not yes:
                if sessions <= SHOWN:
                    click.echo(" ".join(_row(meta)))
                continue
            batch.append(meta.session_id)
            if len(batch) == DELETE_BATCH:
                deleted += await store.delete_sessions(batch, idle_before=selection.updated_before)
                batch = []
        if batch:
            deleted += await store.delete_sessions(batch, idle_before=selection.updated_before)
    if yes:
        kept = (
            f" ({sessions - deleted:,} updated meanwhile were kept)" if deleted < sessions else ""
        )
        click.echo(f"deleted {deleted:,} sessions ({messages:,} messages){kept}", err=True)
        return 0
    if sessions > SHOWN:
        click.echo(f"... and {sessions - SHOWN:,} more", err=True)
    click.echo(
        f"would delete {sessions:,} sessions ({messages:,} messages); run again with --yes "
        "to delete them",
        err=True,
    )
    return 0


def _expired(meta: SessionMetadata, now: float) -> bool:
    if meta.status is SessionStatus.EXPIRED:
        return True
    return meta.expires_at is not None and meta.expires_at.timestamp() <= now
