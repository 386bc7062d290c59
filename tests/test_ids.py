"""Session and user ids: the ``default:`` prefix names a user's default session, and no other
user can take it, by any call that creates a session."""

from __future__ import annotations

import pytest

from langswarm.core.memory import MemoryManager
from langswarm.core.memory.backends.memory import InMemoryBackend
from langswarm.core.memory.exceptions import SessionOwnershipError
from tests.helpers import manager_on

pytestmark = pytest.mark.anyio


async def test_another_users_default_session_id_cannot_be_taken() -> None:
    async with manager_on(InMemoryBackend()) as memory:
        with pytest.raises(SessionOwnershipError, match="reserved"):
            await memory.create_session("bob", "default:alice")
        with pytest.raises(SessionOwnershipError, match="reserved"):
            await memory.get_or_create_session("bob", "default:alice")
        mine = await memory.create_session("bob", "s")
        with pytest.raises(SessionOwnershipError, match="reserved"):
            await mine.fork("default:alice")
        alice = await memory.get_or_create_session("alice")
        assert alice.session_id == "default:alice"
        assert alice.metadata.user_id == "alice"
        own = await memory.create_session("carol", "default:carol")
        assert (await memory.get_or_create_session("carol")).session_id == own.session_id


async def test_the_default_session_is_per_user(tmp_path: object) -> None:
    config = {"backend": "sqlite", "config": {"db_path": f"{tmp_path}/ids.db"}}
    async with MemoryManager.from_config(memory=config) as memory:
        a = await memory.get_or_create_session("a")
        b = await memory.get_or_create_session("b")
        assert (a.session_id, b.session_id) == ("default:a", "default:b")
