"""``erase-user``: everything stored for one user, gone in one command."""

from __future__ import annotations

import click

from .._config import memory_from_url
from .._manager import MemoryManager
from ._common import open_store, run, url_option

__all__ = ["erase_user_command"]


@click.command(
    "erase-user",
    epilog="""\b
examples:
  langswarm-memory erase-user alice --url sqlite:///memory.db        # shows what would go
  langswarm-memory erase-user alice --url redis://cache:6379/0 --yes  # erases it
""",
)
@url_option
@click.argument("user_id")
@click.option(
    "--yes", "-y", is_flag=True, help="erase; without it nothing changes, what would go is counted"
)
def erase_user_command(url: str, user_id: str, yes: bool) -> int:
    """Delete every session of USER_ID with its messages, summaries, metadata and index
    entries, including sessions other processes have open. Without --yes this is a dry run."""
    return run(lambda: _erase(url, user_id, yes))


async def _erase(url: str, user_id: str, yes: bool) -> int:
    if not yes:
        async with open_store(url) as store:
            found = await store.list_sessions(user_id=user_id, limit=None)
        messages = sum(m.message_count for m in found)
        click.echo(
            f"would erase {len(found):,} sessions ({messages:,} messages) of {user_id}; "
            "run again with --yes to erase them",
            err=True,
        )
        return 0
    async with open_store(url):  # the same checks (and errors) as every other command
        pass
    async with MemoryManager.from_config(memory=memory_from_url(url)) as memory:
        erased = await memory.erase_user(user_id)
    click.echo(
        f"erased {erased['sessions']:,} sessions ({erased['messages']:,} messages) of {user_id}",
        err=True,
    )
    return 0
