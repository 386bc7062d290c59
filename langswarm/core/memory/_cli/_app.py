"""The ``langswarm-memory`` command group, and the entry point that turns every outcome into
an exit status: 0 done, 1 failed (one line on stderr), 2 bad usage (one line), 130
interrupted."""

from __future__ import annotations

import importlib.metadata
import logging
import sys
from collections.abc import Sequence

import click

from .._export import VERSION as EXPORT_VERSION
from ..backends._sqlite_schema import SCHEMA_VERSION
from . import bench
from ._common import PROG, Group, Options
from ._doctor import doctor_command
from ._erase import erase_user_command
from ._sessions import cleanup_command, sessions_group, stats_command
from ._transfer import export_command, import_command, migrate_command

__all__ = ["cli", "main"]


def version() -> str:
    """The installed distribution's version (whatever its name on the package index)."""
    names = importlib.metadata.packages_distributions().get("langswarm", [])
    for name in sorted(set(names), key=lambda n: "memory" not in n):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(
            f"{PROG} {version()} (export format {EXPORT_VERSION}, SQLite schema {SCHEMA_VERSION})"
        )
        ctx.exit(0)


@click.group(
    PROG,
    cls=Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="""\b
Every command takes its store as a URL (--url, or $LANGSWARM_MEMORY_URL):
  sqlite:///relative/path.db  sqlite:////absolute/path.db
  redis://[user:password@]host:6379/0  rediss://... (TLS)  redis+cluster://host:port,host:port
Run "langswarm-memory COMMAND --help" for a command's options and examples.

\b
examples:
  export LANGSWARM_MEMORY_URL=sqlite:////var/lib/app/memory.db
  langswarm-memory sessions list --user alice
  langswarm-memory export -o backup.jsonl.gz
  langswarm-memory migrate sqlite:////var/lib/app/memory.db redis://cache:6379/0
  langswarm-memory doctor
""",
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="print the version and exit",
)
@click.option(
    "--loop",
    type=click.Choice(["asyncio", "trio"]),
    default="asyncio",
    show_default=True,
    help="event loop the command runs on",
)
@click.pass_context
def cli(ctx: click.Context, loop: str) -> None:
    """Inspect, export, import, migrate and check langswarm memory stores."""
    ctx.obj = Options(loop=loop)


@cli.command(
    "bench",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench_command(args: tuple[str, ...]) -> int:
    """Load-benchmark the memory runtime with simulated agent traffic (see bench --help)."""
    return bench.run(["bench", *args])


for _command in (
    sessions_group,
    stats_command,
    export_command,
    import_command,
    migrate_command,
    cleanup_command,
    erase_user_command,
    doctor_command,
):
    cli.add_command(_command)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _show_warnings() -> None:
    """Library warnings (a session that cannot be read, say) reach stderr, one line each."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``langswarm-memory`` console script; returns the exit status
    (usage errors raise ``SystemExit(2)``, as ``bench``'s argparse parser does)."""
    args = list(sys.argv[1:] if argv is None else argv)
    _show_warnings()
    try:
        status = cli.main(args, prog_name=PROG, standalone_mode=False)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else PROG
        click.echo(f"{where}: error: {_one_line(exc.format_message())} (see --help)", err=True)
        raise SystemExit(2) from None
    except click.ClickException as exc:
        where = getattr(exc, "where", PROG)
        click.echo(f"{where}: error: {_one_line(exc.format_message())}", err=True)
        return exc.exit_code
    except click.Abort:
        click.echo(f"{PROG}: interrupted", err=True)
        return 130
    return status if isinstance(status, int) else 0
