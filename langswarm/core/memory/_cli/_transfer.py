"""``export``, ``import`` and ``migrate``: moving sessions between stores and files."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TextIO

import anyio
import click

from .._export import LAYOUTS, End, Event, ExportWriter, Layout, SessionRecord, read_export
from ..backends.base import Backend
from ..exceptions import MemoryValidationError
from ..interfaces import Message
from ._common import (
    Selection,
    open_store,
    run,
    selection_options,
    sqlite_path,
    url_argument,
    url_option,
)
from ._copy import READ_AHEAD, listing, message_pages, read_pages, read_session
from ._importer import Importer, ImportReport
from ._progress import Progress

__all__ = ["export_command", "import_command", "migrate_command"]

_progress_option = click.option(
    "--progress/--no-progress",
    default=True,
    help="show progress on stderr: a bar on a terminal, a line a second otherwise",
)


@click.command(
    "export",
    epilog="""\b
examples:
  langswarm-memory export --url sqlite:////var/lib/app/memory.db -o all.jsonl
  langswarm-memory export --user alice -o alice.jsonl.gz       # store from $LANGSWARM_MEMORY_URL
  langswarm-memory export --session 8f14e45f --layout sessions | jq .messages[].content
""",
)
@url_option
@selection_options
@click.option(
    "--output",
    "-o",
    default="-",
    metavar="FILE",
    help="file to write (.gz: compressed); - or nothing: standard output",
)
@click.option(
    "--layout",
    type=click.Choice(LAYOUTS),
    default="records",
    show_default=True,
    help="records: a line per session, summary and message; sessions: a line per "
    "session, its summaries and messages nested",
)
@_progress_option
def export_command(
    url: str, selection: Selection, output: str, layout: Layout, progress: bool
) -> int:
    """Export sessions as JSON Lines (format in docs/cli.md), streaming: memory stays flat
    whatever the size. A file is written under FILE.partial and renamed when complete."""
    out, finish = _open_output(output)
    shown = Progress("export", None, enabled=progress)
    ok = False
    try:
        status = run(lambda: _export(url, selection, out, layout, shown))
        ok = status == 0
    finally:
        shown.close()
        finish(ok)
    if ok:
        _done("exported", shown, output)
    return status


async def _export(
    url: str, selection: Selection, out: TextIO, layout: Layout, progress: Progress
) -> int:
    async with open_store(url) as store:
        progress.start(await _total(store, selection))
        writer = ExportWriter(out, layout)
        await _write_sessions(store, selection, writer, progress)
        writer.close()
    return 0


async def _write_sessions(
    store: Backend, selection: Selection, writer: ExportWriter, progress: Progress
) -> None:
    send, receive = anyio.create_memory_object_stream[SessionRecord | list[tuple[int, Message]]](
        READ_AHEAD
    )
    async with anyio.create_task_group() as tasks, receive:
        tasks.start_soon(read_pages, store, selection, send)
        sid = ""
        async for item in receive:
            if isinstance(item, SessionRecord):
                writer.session(item)
                sid = item.meta.session_id
                progress.advance(sessions=1)
            else:
                writer.messages(sid, item)
                progress.advance(messages=len(item))


async def _total(store: Backend, selection: Selection) -> int | None:
    if not selection.everything:
        return len(selection.sessions) or None
    total = (await store.get_usage_stats()).get("total_sessions")
    return total if isinstance(total, int) else None


def _open_output(output: str) -> tuple[TextIO, Callable[[bool], None]]:
    if output == "-":
        return sys.stdout, lambda ok: sys.stdout.flush()
    partial = output + ".partial"
    file = open(partial, "wb")  # noqa: SIM115 - closed by finish
    out: TextIO
    if output.endswith(".gz"):
        # No name or time in the gzip header: the same export compresses to the same bytes.
        packed = gzip.GzipFile(filename="", mode="wb", fileobj=file, mtime=0)
        out = io.TextIOWrapper(packed, encoding="utf-8", newline="\n")
    else:
        out = io.TextIOWrapper(file, encoding="utf-8", newline="\n")

    def finish(ok: bool) -> None:
        out.close()
        file.close()
        if ok:
            os.replace(partial, output)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(partial)

    return out, finish


def _done(verb: str, progress: Progress, where: str) -> None:
    seconds = progress.elapsed
    rate = progress.messages / seconds if seconds > 0 else 0.0
    target = "" if where == "-" else f" to {where}"
    click.echo(
        f"{verb} {progress.sessions:,} sessions, {progress.messages:,} messages{target} "
        f"in {seconds:.1f} s ({rate:,.0f} messages/s)",
        err=True,
    )


# -- import ---------------------------------------------------------------------------------


@click.command(
    "import",
    epilog="""\b
examples:
  langswarm-memory import --url redis://cache:6379/0 all.jsonl
  langswarm-memory import alice.jsonl.gz             # store from $LANGSWARM_MEMORY_URL
  langswarm-memory export -u sqlite:///a.db | langswarm-memory import -u sqlite:///b.db -
""",
)
@url_option
@click.argument("file", metavar="FILE")
@_progress_option
def import_command(url: str, file: str, progress: bool) -> int:
    """Import an export (FILE, .gz, or - for standard input) into the store.

    Importing is idempotent: messages are stored once per id, so importing a file twice, or
    again after an interruption, stores nothing twice. A session the store holds under the
    same id but as another session is skipped and reported (exit status 1)."""
    lines = _open_input(file)
    shown = Progress("import", None, enabled=progress)
    try:
        with contextlib.closing(lines):
            status = run(lambda: _import(url, lines, file, shown))
    finally:
        shown.close()
    return status


def _open_input(file: str) -> _Lines:
    if file == "-":
        return _Lines(sys.stdin, close=False)
    try:
        if file.endswith(".gz"):
            return _Lines(gzip.open(file, "rt", encoding="utf-8"))
        return _Lines(open(file, encoding="utf-8"))
    except OSError as exc:
        raise click.BadParameter(str(exc), param_hint="FILE") from None


class _Lines:
    """Lines of a text stream, closed once read (standard input is left open)."""

    def __init__(self, stream: TextIO, *, close: bool = True) -> None:
        self.stream, self._close = stream, close

    def __iter__(self) -> Iterator[str]:
        return iter(self.stream)

    def close(self) -> None:
        if self._close:
            self.stream.close()


async def _import(url: str, lines: Iterable[str], name: str, progress: Progress) -> int:
    name = "standard input" if name == "-" else name
    async with open_store(url, create=True) as store, anyio.create_task_group() as tasks:
        importer = Importer(store, tasks)
        try:
            await _feed(importer, read_export(lines, name), progress)
        except MemoryValidationError:
            await importer.flush()  # what came before the bad line is kept
            await importer.close_batches()
            raise
        report = await importer.close()
    return _report("imported", report, progress)


async def _feed(importer: Importer, events: Iterable[Event], progress: Progress) -> None:
    start: int | None = None
    for event in events:
        if isinstance(event, SessionRecord):
            await importer.end()
            start = await importer.begin(event)
            progress.advance(sessions=1)
        elif isinstance(event, End):
            await importer.end()
        elif start is not None and event[0] >= start:
            await importer.add(*event)
            progress.advance(messages=1)


def _report(verb: str, report: ImportReport, progress: Progress) -> int:
    seconds = progress.elapsed
    rate = report.messages / seconds if seconds > 0 else 0.0
    click.echo(
        f"{verb} {report.sessions:,} sessions ({report.created:,} new, {report.updated:,} "
        f"updated, {report.unchanged:,} already complete), {report.messages:,} messages and "
        f"{report.summaries:,} summaries stored in {seconds:.1f} s ({rate:,.0f} messages/s)",
        err=True,
    )
    if not report.failed:
        return 0
    shown = list(report.failed.items())[:10]
    more = len(report.failed) - len(shown)
    click.echo(f"skipped {len(report.failed):,} sessions:", err=True)
    for session_id, why in shown:
        click.echo(f"  {session_id}: {why}", err=True)
    if more:
        click.echo(f"  ... and {more:,} more", err=True)
    return 1


# -- migrate --------------------------------------------------------------------------------


@click.command(
    "migrate",
    epilog="""\b
examples:
  langswarm-memory migrate sqlite:////var/lib/app/memory.db redis://cache:6379/0
  langswarm-memory migrate --user alice sqlite:///memory.db redis+cluster://n1:7000,n2:7000

Interrupted (Ctrl-C), it stops cleanly; run the same command again to resume: sessions the
target holds complete are skipped, and a session cut half-way goes on where it stopped.
""",
)
@url_argument("src")
@url_argument("dst")
@selection_options
@_progress_option
def migrate_command(src: str, dst: str, selection: Selection, progress: bool) -> int:
    """Copy sessions from store SRC into store DST, without a file in between (export and
    import in one go). Sessions keep their ids, numbering, summaries, status and times."""
    if _same_store(src, dst):
        raise click.UsageError("SRC and DST are the same store")
    shown = Progress("migrate", None, enabled=progress)
    try:
        status = run(lambda: _migrate(src, dst, selection, shown))
    finally:
        shown.close()
    if status == 130:
        click.echo("run the same command again to resume", err=True)
    return status


def _same_store(src: str, dst: str) -> bool:
    a, b = sqlite_path(src), sqlite_path(dst)
    if a is not None and b is not None:
        return os.path.realpath(a) == os.path.realpath(b)
    return src == dst


async def _migrate(src: str, dst: str, selection: Selection, progress: Progress) -> int:
    async with (
        open_store(src) as source,
        open_store(dst, create=True) as target,
        anyio.create_task_group() as tasks,
    ):
        progress.start(await _total(source, selection))
        importer = Importer(target, tasks)
        async for meta in listing(source, selection):
            record = await read_session(source, meta.session_id)
            if record is None:
                continue
            start = await importer.begin(record)
            if start is not None:
                async for page in message_pages(source, record, start):
                    for seq, message in page:
                        await importer.add(seq, message)
                    progress.advance(messages=len(page))
                await importer.end()
            progress.advance(sessions=1)
        report = await importer.close()
    return _report("migrated", report, progress)
