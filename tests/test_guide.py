"""The user guide's code blocks, each run as written on asyncio and on trio.

Each test holds one block of ``memory-user-guide.md`` verbatim between a "guide: <title>"
marker comment and an "end guide" one (indented into an ``async def`` because the blocks
await), with the setup the surrounding guide text implies before it and assertions after it.
``test_blocks_are_verbatim`` checks the embedded code against the guide's block hashes.
"""

from __future__ import annotations

import hashlib
import re
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from langswarm.core.memory import get_global_memory_manager, initialize_memory
from langswarm.core.memory.interfaces import Message, MessageRole, SessionStatus

pytestmark = pytest.mark.anyio

GUIDE = Path(__file__).resolve().parents[2] / "shared" / "spec" / "memory-user-guide.md"


def _embedded_blocks() -> dict[str, str]:
    source = Path(__file__).read_text()
    pattern = r"^ *# --- guide: (.+?) ---\n(.*?)\n *# --- end guide ---$"
    found = re.findall(pattern, source, re.S | re.M)
    return {title: textwrap.dedent(body).strip("\n") for title, body in found}


def test_blocks_are_verbatim() -> None:
    """Every embedded block hashes to the guide block of the same title."""
    embedded = _embedded_blocks()
    assert embedded, "no guide blocks found in this module"
    for title, body in embedded.items():
        assert hashlib.sha256(body.encode()).hexdigest() == GUIDE_BLOCKS[title], title


def test_hashes_match_the_guide() -> None:
    """When the guide sits next to the repository (as in development), re-derive the hashes."""
    if not GUIDE.exists():
        assert len(GUIDE_BLOCKS) == 27
        return
    lines = GUIDE.read_text().split("\n")
    title, blocks, i = "", {}, 0
    while i < len(lines):
        if lines[i].startswith(("## ", "### ")):
            title = re.sub(r"[#*📚]", "", lines[i]).strip()
        if lines[i].strip() == "```python":
            j = i + 1
            while lines[j].strip() != "```":
                j += 1
            body = "\n".join(x.rstrip() for x in lines[i + 1 : j]).strip("\n")
            blocks[title] = hashlib.sha256(body.encode()).hexdigest()
            i = j
        i += 1
    assert blocks == GUIDE_BLOCKS

GUIDE_BLOCKS = {
    'Simple Memory Setup': '5011ac94feac18ca7daa6cf9a2f44c0a77c2d7a947743c867ed72de4687e458b',
    'Different Environment Setups': 'b886b3014471f75cc07ce4ad6b4cd36c48242d7689c8c62db49207c0b66a45e8',
    'In-Memory Backend (Development)': 'ecffa866f9fabfc6ae60e85bb33e82739d7aecc8ecb70744e775803c16c50a20',
    'SQLite Backend (Local Persistence)': '136dbfb85aafbc108b5fe286389ca3c983a36de1c1059dba52aa96c009e31a18',
    'Redis Backend (Distributed)': '34c99158d4455fa3cafdad57ca0af0f7f034b154fbe304f1b1d11ef3b7da4342',
    'Creating Messages': '11c73ea5a35226efb5e7ebdbada095f858e579590d5c87db456829c7bb292cf8',
    'Retrieving Messages': '2a2ab731aa99cb46979540bc070ce380de441265e696753b1a4ae0019ab77360',
    'Message Filtering': '89c6abd7fce566698c319150066dd4047131f587ac32c67b6060f0998c89e1fa',
    'Creating and Managing Sessions': '2d1ff607cb06fe62eb58df878d3dc53f0f7b2fc92bf857313f6ff874947cb164',
    'Session Configuration': '14b57d2eb7e1cc10eb7f49a33b12d12c7e90f46f6b3153742dc067865378fb7f',
    'Session Lifecycle': 'b54b34842104fe5a5f6d076772d232c71f137aa9d87a08eb448f8eec1e334440',
    'OpenAI Integration': '8192f76b9d79841bfe9671987ab1cc8c4713a750223a69d10145b5364f0dcbf9',
    'Anthropic Integration': '389db1b8cd487df11cc34bdbdfa1945843974a2ad7c0a64fb5b8b07d09b741b8',
    'Function and Tool Calls': 'e6604744a09f2090fd91f4f2c50d8a73940d7454a4e530d15cc170c1bb887e2d',
    'Automatic Summarization': 'fb75872faddbdb329c89337bf56baf4667b8846615bf53b72c6ff96c8ffa2302',
    'Manual Summarization': '0db7f7b75a4ae732485b761732fc45f6db4ed022f126dacc29989305f56a0cc0',
    'Summary-Based Context': '055beb650a1e8160e32339eb218b6333b1ff2a7d785592a7a825459d5f0a1be0',
    'Session Statistics': 'f2c10bc82aaa6c89c3e4c823375a322a7fc386378ba28fd59b7c672af3401ac6',
    'System-Wide Analytics': 'ed9c1a78665a1a7618fd27829acc31084b6b719ea292a33735f4d53d133f340c',
    'User Analytics': '6e8ba87ef3f8e1e461a62dc5c13e56bc568565b26fd5f30bc9dc026505ee7d36',
    'Custom Message Metadata': '5e6fa277b628a1732c4c2b0eaeeb072c3d75250394599c7a15c17b54eaccdce2',
    'Batch Operations': '3c105c166171d3551e7e2bbd3ce646683457ee77fe6766c3266e3e78d94094b8',
    'Session Cleanup': '636134fb5719f141d34252a31fe460a3a631b47a0604adcf69f7426d6b47e28c',
    'Connection Issues': 'b15cd80eecff23b9b67e513e715d4adf2c14086ec3a419c2bf460be57141393f',
    'Session Errors': 'fa6bbfeafa1ebab7543d8fbe97a22155343ad26b27b09b3320bddc7dca5a7894',
    'Graceful Degradation': '049e140ad53681e8b8b0b8381a3fcf02d658defbc42b122479b4323bbb28c6f9',
    'Complete Example': 'f4fa29ce97a04e35b80d540d64d1b3afd339ee1bd79d203f6e3bbdc58952a666',
}



async def test_quick_start(capsys: pytest.CaptureFixture[str]) -> None:
    """The guide's 'Simple Memory Setup' block."""
    # --- guide: Simple Memory Setup ---
    from langswarm.core.memory import initialize_memory, MemorySessionContext

    # One-line setup for development
    initialize_memory("development")

    # Start using memory immediately
    async with MemorySessionContext(user_id="user123") as session:
        # Add a user message
        from langswarm.core.memory import create_openai_message
        await session.add_message(create_openai_message("user", "Hello!"))

        # Add assistant response
        await session.add_message(create_openai_message("assistant", "Hi there! How can I help?"))

        # Get conversation history
        messages = await session.get_messages()
        print(f"Conversation has {len(messages)} messages")
    # --- end guide ---
    out = capsys.readouterr().out
    assert "Conversation has 2 messages" in out
    stats = await get_global_memory_manager().backend.get_usage_stats()
    assert stats["total_messages"] == 2



async def test_in_memory_backend() -> None:
    """The guide's 'In-Memory Backend (Development)' block."""
    # --- guide: In-Memory Backend (Development) ---
    # Automatic selection for development
    initialize_memory("development")

    # Features:
    # - Zero setup required
    # - Fastest performance
    # - No external dependencies
    # - Data lost when application stops
    # - Perfect for testing
    # --- end guide ---
    memory = get_global_memory_manager()
    assert memory.backend.name == "memory"
    session = await memory.create_session(user_id="u")
    assert await session.get_messages() == []



async def test_creating_messages() -> None:
    """The guide's 'Creating Messages' block."""
    initialize_memory("development")
    # --- guide: Creating Messages ---
    from langswarm.core.memory import (
        create_openai_message,
        create_anthropic_message,
        MemorySessionContext
    )

    async with MemorySessionContext(user_id="user123") as session:
        # User messages
        user_msg = create_openai_message("user", "What's the weather like?")
        await session.add_message(user_msg)

        # Assistant responses
        assistant_msg = create_openai_message("assistant", "I'll check the weather for you.")
        await session.add_message(assistant_msg)

        # System messages
        system_msg = create_openai_message("system", "You are a helpful weather assistant.")
        await session.add_message(system_msg)

        # Tool/function calls
        function_msg = create_openai_message(
            "assistant",
            content=None,
            function_call={
                "name": "get_weather",
                "arguments": '{"location": "San Francisco"}'
            }
        )
        await session.add_message(function_msg)
    # --- end guide ---
    stored = await session.get_messages()
    assert [m.role for m in stored] == [
        MessageRole.USER, MessageRole.ASSISTANT, MessageRole.SYSTEM, MessageRole.ASSISTANT
    ]
    assert stored[-1].content is None
    assert stored[-1].function_call == {
        "name": "get_weather", "arguments": '{"location": "San Francisco"}'
    }



async def test_retrieving_messages(capsys: pytest.CaptureFixture[str]) -> None:
    """The guide's 'Retrieving Messages' block."""
    from langswarm.core.memory import create_openai_message

    initialize_memory("development")
    session = await get_global_memory_manager().create_session(user_id="user123")
    for i in range(30):
        await session.add_message(create_openai_message("user", f"question {i}"))
        await session.add_message(create_openai_message("assistant", f"answer {i}"))
    await session.add_message(create_openai_message("system", "be brief"))
    # --- guide: Retrieving Messages ---
    # Get all messages
    all_messages = await session.get_messages()

    # Get recent messages (last 20)
    recent_messages = await session.get_messages(limit=20)

    # Get messages from last hour
    from datetime import datetime, timedelta
    recent_time = datetime.now() - timedelta(hours=1)
    hour_messages = await session.get_messages(since=recent_time)

    # Get only user and assistant messages
    from langswarm.core.memory.interfaces import MessageRole
    conversation = await session.get_messages(
        roles=[MessageRole.USER, MessageRole.ASSISTANT]
    )

    # Get conversation context for LLM (within token limit)
    context = await session.get_conversation_context(max_tokens=4000)
    print(f"Context: {len(context)} messages, ~4000 tokens")
    # --- end guide ---
    assert len(all_messages) == 61
    assert [m.content for m in recent_messages] == [m.content for m in all_messages[-20:]]
    assert len(hour_messages) == 61
    assert len(conversation) == 60
    assert all(m.role in (MessageRole.USER, MessageRole.ASSISTANT) for m in conversation)
    assert sum(m.token_count or 0 for m in context) <= 4000
    assert context == all_messages[-len(context):]
    assert "Context: 61 messages" in capsys.readouterr().out



async def test_message_filtering() -> None:
    """The guide's 'Message Filtering' block."""
    from datetime import datetime, timedelta

    from langswarm.core.memory import create_openai_message

    initialize_memory("development")
    session = await get_global_memory_manager().create_session(user_id="user123")
    for i in range(12):
        await session.add_message(create_openai_message("user", f"question {i}"))
        await session.add_message(create_openai_message("assistant", f"answer {i}"))
    # --- guide: Message Filtering ---
    # Filter by role
    user_messages = await session.get_messages(roles=[MessageRole.USER])
    assistant_messages = await session.get_messages(roles=[MessageRole.ASSISTANT])

    # Filter by time range
    morning_messages = await session.get_messages(
        since=datetime.now().replace(hour=9, minute=0, second=0),
        limit=50
    )

    # Get recent messages within token budget
    recent_context = await session.get_recent_messages(token_limit=2000)

    # Combine filters
    filtered_messages = await session.get_messages(
        limit=10,
        since=datetime.now() - timedelta(hours=2),
        roles=[MessageRole.USER, MessageRole.ASSISTANT]
    )
    # --- end guide ---
    assert len(user_messages) == 12 and len(assistant_messages) == 12
    assert all(m.role is MessageRole.USER for m in user_messages)
    expected_morning = [
        m for m in await session.get_messages()
        if m.timestamp >= datetime.now().replace(hour=9, minute=0, second=0)
    ][-50:]
    assert [m.message_id for m in morning_messages] == [m.message_id for m in expected_morning]
    assert sum(m.token_count or 0 for m in recent_context) <= 2000
    assert len(recent_context) == 24
    assert [m.content for m in filtered_messages] == [
        m.content for m in (await session.get_messages())[-10:]
    ]



async def test_creating_and_managing_sessions(capsys: pytest.CaptureFixture[str]) -> None:
    """The guide's 'Creating and Managing Sessions' block."""
    initialize_memory("development")
    # --- guide: Creating and Managing Sessions ---
    from langswarm.core.memory import get_global_memory_manager

    memory = get_global_memory_manager()

    # Create session with auto-generated ID
    session = await memory.create_session(user_id="user123")
    print(f"Created session: {session.session_id}")

    # Create session with specific ID
    session = await memory.create_session(
        user_id="user123",
        session_id="chat_conversation_1"
    )

    # Get existing session
    existing_session = await memory.get_session("chat_conversation_1")
    if existing_session:
        print("Found existing session")

    # Get or create pattern (common pattern)
    session = await memory.get_or_create_session(
        user_id="user123",
        session_id="default_chat"
    )
    # --- end guide ---
    out = capsys.readouterr().out
    assert "Found existing session" in out
    assert session.session_id == "default_chat"
    assert existing_session is not None
    assert existing_session.session_id == "chat_conversation_1"
    again = await memory.get_or_create_session(user_id="user123", session_id="default_chat")
    assert again.session_id == "default_chat"
    assert await memory.get_session("missing") is None



async def test_session_configuration() -> None:
    """The guide's 'Session Configuration' block."""
    initialize_memory("development")
    memory = get_global_memory_manager()
    # --- guide: Session Configuration ---
    # Create session with custom configuration
    session = await memory.create_session(
        user_id="user123",
        max_messages=500,              # Limit conversation length
        max_tokens=16000,             # Token limit for context
        auto_summarize_threshold=100,  # Summarize every 100 messages
        metadata={
            "app": "customer_support",
            "department": "technical",
            "priority": "high"
        }
    )

    # Update session configuration
    await session.update_metadata({
        "max_tokens": 32000,  # Increase token limit
        "status": "escalated",
        "assigned_agent": "agent_456"
    })
    # --- end guide ---
    meta = session.metadata
    assert meta.max_messages == 500
    assert meta.max_tokens == 32000
    assert meta.auto_summarize_threshold == 100
    assert meta.metadata["app"] == "customer_support"
    assert meta.metadata["status"] == "escalated"
    assert meta.metadata["assigned_agent"] == "agent_456"
    assert meta.status is SessionStatus.ACTIVE
    reloaded = await memory.get_session(session.session_id)
    assert reloaded is not None and reloaded.metadata.max_tokens == 32000



async def test_session_lifecycle(capsys: pytest.CaptureFixture[str]) -> None:
    """The guide's 'Session Lifecycle' block."""
    initialize_memory("development")
    memory = get_global_memory_manager()
    kept = await memory.create_session(user_id="user123")
    # --- guide: Session Lifecycle ---
    # Active session (default)
    session = await memory.create_session(user_id="user123")
    # Session is automatically active

    # Archive session when conversation ends
    await session.archive_session()
    print("Session archived - no longer active")

    # Delete session and all messages (permanent)
    await session.delete_session()
    print("Session deleted permanently")

    # List user's sessions
    from langswarm.core.memory.interfaces import SessionStatus

    user_sessions = await memory.backend.list_sessions(
        user_id="user123",
        status=SessionStatus.ACTIVE,
        limit=20
    )

    for session_meta in user_sessions:
        print(f"Session {session_meta.session_id}: {session_meta.created_at}")
    # --- end guide ---
    out = capsys.readouterr().out
    assert "Session archived" in out and "Session deleted permanently" in out
    assert [m.session_id for m in user_sessions] == [kept.session_id]
    assert f"Session {kept.session_id}:" in out
    assert await memory.get_session(session.session_id) is None



async def test_session_statistics(capsys: pytest.CaptureFixture[str]) -> None:
    """The guide's 'Session Statistics' block."""
    from langswarm.core.memory import create_openai_message

    initialize_memory("development")
    session = await get_global_memory_manager().create_session(user_id="user123")
    await session.add_message(create_openai_message("user", "How many moons has Mars?"))
    await session.add_message(create_openai_message("assistant", "Two: Phobos and Deimos."))
    await session.add_message(create_openai_message("user", "Thanks"))
    # --- guide: Session Statistics ---
    # Get session-level statistics
    session_stats = {
        "total_messages": len(await session.get_messages()),
        "user_messages": len(await session.get_messages(roles=[MessageRole.USER])),
        "assistant_messages": len(await session.get_messages(roles=[MessageRole.ASSISTANT])),
        "total_tokens": sum(msg.token_count or 0 for msg in await session.get_messages()),
        "conversation_duration": session.metadata.updated_at - session.metadata.created_at,
        "summary_count": len(await session.get_summaries())
    }

    print(f"Session Statistics:")
    for key, value in session_stats.items():
        print(f"  {key}: {value}")
    # --- end guide ---
    assert session_stats["total_messages"] == 3
    assert session_stats["user_messages"] == 2
    assert session_stats["assistant_messages"] == 1
    assert session_stats["total_tokens"] > 3 * 3
    assert session_stats["conversation_duration"].total_seconds() >= 0
    assert session_stats["summary_count"] == 0
    assert "total_messages: 3" in capsys.readouterr().out



async def test_system_wide_analytics(capsys: pytest.CaptureFixture[str]) -> None:
    """The guide's 'System-Wide Analytics' block."""
    from langswarm.core.memory import create_openai_message

    initialize_memory("development")
    for user in ("a", "b"):
        s = await get_global_memory_manager().create_session(user_id=user)
        for i in range(3 if user == "a" else 5):
            await s.add_message(create_openai_message("user", f"m{i}"))
    # --- guide: System-Wide Analytics ---
    # Get memory system statistics
    memory = get_global_memory_manager()

    # Backend usage statistics
    backend_stats = await memory.backend.get_usage_stats()
    print(f"Backend Statistics:")
    print(f"  Total sessions: {backend_stats['total_sessions']}")
    print(f"  Total messages: {backend_stats['total_messages']}")
    print(f"  Storage size: {backend_stats.get('storage_size_mb', 'N/A')}MB")

    # System-wide statistics
    system_stats = await memory.get_system_stats()
    print(f"System Statistics:")
    print(f"  Active sessions: {system_stats['active_sessions']}")
    print(f"  Average messages per session: {system_stats['avg_messages_per_session']}")
    # --- end guide ---
    out = capsys.readouterr().out
    assert "Total sessions: 2" in out
    assert "Total messages: 8" in out
    assert "Active sessions: 2" in out
    assert "Average messages per session: 4.0" in out



async def test_user_analytics(capsys: pytest.CaptureFixture[str]) -> None:
    """The guide's 'User Analytics' block."""
    initialize_memory("development")
    memory = get_global_memory_manager()
    user_id = "user123"
    first = await memory.create_session(user_id=user_id)
    await memory.create_session(user_id=user_id)
    last = await memory.create_session(user_id=user_id)
    await memory.create_session(user_id="someone_else")
    await first.archive_session()
    # --- guide: User Analytics ---
    # Get all sessions for a user
    user_sessions = await memory.backend.list_sessions(
        user_id="user123",
        limit=100
    )

    # Calculate user statistics
    user_stats = {
        "total_sessions": len(user_sessions),
        "active_sessions": len([s for s in user_sessions if s.status == SessionStatus.ACTIVE]),
        "archived_sessions": len([s for s in user_sessions if s.status == SessionStatus.ARCHIVED]),
        "oldest_session": min(user_sessions, key=lambda s: s.created_at).created_at,
        "newest_session": max(user_sessions, key=lambda s: s.created_at).created_at
    }

    print(f"User {user_id} Statistics:")
    for key, value in user_stats.items():
        print(f"  {key}: {value}")
    # --- end guide ---
    assert user_stats["total_sessions"] == 3
    assert user_stats["active_sessions"] == 2
    assert user_stats["archived_sessions"] == 1
    assert user_stats["oldest_session"] == first.metadata.created_at
    assert user_stats["newest_session"] == last.metadata.created_at
    assert "User user123 Statistics:" in capsys.readouterr().out



async def test_custom_message_metadata() -> None:
    """The guide's 'Custom Message Metadata' block."""
    from langswarm.core.memory import create_openai_message

    initialize_memory("development")
    session = await get_global_memory_manager().create_session(user_id="user123")
    await session.add_message(create_openai_message("user", "low priority note"))
    # --- guide: Custom Message Metadata ---
    # Add custom metadata to messages
    from langswarm.core.memory.interfaces import Message, MessageRole
    from datetime import datetime

    custom_message = Message(
        role=MessageRole.USER,
        content="Help me with my project",
        timestamp=datetime.now(),
        message_id="msg_12345",
        metadata={
            "source": "mobile_app",
            "location": "San Francisco",
            "user_agent": "iOS App v2.1",
            "priority": "high",
            "department": "engineering"
        }
    )

    await session.add_message(custom_message)

    # Query messages by metadata
    messages_with_metadata = await session.get_messages()
    high_priority = [
        msg for msg in messages_with_metadata
        if msg.metadata.get("priority") == "high"
    ]
    # --- end guide ---
    assert [m.message_id for m in high_priority] == ["msg_12345"]
    assert high_priority[0].metadata["location"] == "San Francisco"



async def test_batch_operations() -> None:
    """The guide's 'Batch Operations' block."""
    from langswarm.core.memory import create_openai_message

    initialize_memory("development")
    session = await get_global_memory_manager().create_session(user_id="user123")
    # --- guide: Batch Operations ---
    # Add multiple messages efficiently
    messages_to_add = [
        create_openai_message("user", "Question 1"),
        create_openai_message("assistant", "Answer 1"),
        create_openai_message("user", "Question 2"),
        create_openai_message("assistant", "Answer 2")
    ]

    # Add messages in batch
    for message in messages_to_add:
        await session.add_message(message)

    # Note: Individual adds are atomic and safe
    # Batch operations maintain consistency
    # --- end guide ---
    stored = await session.get_messages()
    assert [m.content for m in stored] == ["Question 1", "Answer 1", "Question 2", "Answer 2"]



async def test_session_cleanup(capsys: pytest.CaptureFixture[str]) -> None:
    """The guide's 'Session Cleanup' block."""
    from datetime import datetime, timedelta

    from tests.helpers import backdate

    initialize_memory("development")
    fresh = await get_global_memory_manager().create_session(user_id="user123")
    stale = await get_global_memory_manager().create_session(user_id="user123")
    archived = await get_global_memory_manager().create_session(user_id="user123")
    await archived.archive_session()
    await backdate(get_global_memory_manager(), stale.session_id, days=45)
    await backdate(get_global_memory_manager(), archived.session_id, days=20)
    # --- guide: Session Cleanup ---
    # Clean up old sessions
    memory = get_global_memory_manager()

    # Clean up sessions older than 30 days
    cleaned_count = await memory.cleanup_all_sessions(max_age_days=30)
    print(f"Cleaned up {cleaned_count} old sessions")

    # Manual cleanup with custom criteria
    all_sessions = await memory.backend.list_sessions(limit=1000)
    for session_meta in all_sessions:
        # Custom cleanup logic
        if (session_meta.status == SessionStatus.ARCHIVED and
            (datetime.now() - session_meta.updated_at).days > 90):
            await memory.backend.delete_session(session_meta.session_id)
            print(f"Deleted old archived session: {session_meta.session_id}")
    # --- end guide ---
    out = capsys.readouterr().out
    assert "Cleaned up 1 old sessions" in out
    remaining = {m.session_id for m in await memory.backend.list_sessions(limit=1000)}
    assert remaining == {fresh.session_id, archived.session_id}



async def test_session_errors(capsys: pytest.CaptureFixture[str]) -> None:
    """The guide's 'Session Errors' block."""
    from langswarm.core.memory import MemorySessionContext, create_openai_message
    from langswarm.core.memory.exceptions import MemoryError

    initialize_memory("development")
    # --- guide: Session Errors ---
    try:
        async with MemorySessionContext(user_id="user123") as session:
            await session.add_message(create_openai_message("user", "Hello"))
            messages = await session.get_messages()

    except MemoryError as e:
        print(f"Memory operation failed: {e}")
        # Handle error gracefully
    except Exception as e:
        print(f"Unexpected error: {e}")
        # Session context handles cleanup automatically
    # --- end guide ---
    assert capsys.readouterr().out == ""
    assert messages[0].content == "Hello"



async def test_graceful_degradation() -> None:
    """The guide's 'Graceful Degradation' block."""
    from langswarm.core.memory import create_openai_message
    from langswarm.core.memory.exceptions import MemoryError

    initialize_memory("development")
    # --- guide: Graceful Degradation ---
    # Implement fallback strategy
    async def get_conversation_safely(user_id: str):
        try:
            memory = get_global_memory_manager()
            session = await memory.get_or_create_session(user_id)
            return await session.get_conversation_context()
        except MemoryError:
            # Fallback to empty conversation
            print("Memory unavailable, starting fresh conversation")
            return []
        except Exception as e:
            print(f"Unexpected memory error: {e}")
            return []
    # --- end guide ---
    assert await get_conversation_safely("user123") == []
    session = await get_global_memory_manager().get_or_create_session("user123")
    await session.add_message(create_openai_message("user", "remember me"))
    context = await get_conversation_safely("user123")
    assert [m.content for m in context] == ["remember me"]



async def test_complete_example(capsys: pytest.CaptureFixture[str]) -> None:
    """The guide's 'Complete Example' block."""
    # --- guide: Complete Example ---
    import asyncio
    from langswarm.core.memory import (
        initialize_memory,
        MemorySessionContext,
        create_openai_message,
        messages_to_openai_format
    )

    async def chatbot_example():
        """Complete example of memory usage in a chatbot"""

        # Initialize memory system
        initialize_memory("development")

        # Simulate a conversation
        user_id = "user_123"

        async with MemorySessionContext(
            user_id=user_id,
            max_tokens=4000,
            auto_summarize_threshold=20
        ) as session:

            # Add conversation messages
            conversations = [
                ("user", "Hi, I'm working on a Python project"),
                ("assistant", "Great! I'd be happy to help with Python. What are you building?"),
                ("user", "A web scraper using requests and BeautifulSoup"),
                ("assistant", "Excellent choice! What specific challenges are you facing?"),
                ("user", "How do I handle pagination in web scraping?"),
                ("assistant", "Here are several strategies for handling pagination...")
            ]

            for role, content in conversations:
                await session.add_message(create_openai_message(role, content))

            # Get conversation context for LLM
            context = await session.get_conversation_context(max_tokens=3000)
            print(f"Context has {len(context)} messages")

            # Convert to OpenAI format for API call
            openai_format = messages_to_openai_format(context)
            print(f"Ready for OpenAI API with {len(openai_format)} messages")

            # Get session statistics
            all_messages = await session.get_messages()
            print(f"Total conversation: {len(all_messages)} messages")

            # Check if summarization occurred
            summaries = await session.get_summaries()
            if summaries:
                print(f"Created {len(summaries)} summaries")

            return session.session_id

    # Run the example
    async def main():
        session_id = await chatbot_example()
        print(f"Conversation stored in session: {session_id}")

    if __name__ == "__main__":
        asyncio.run(main())
    # --- end guide ---
    await main()
    out = capsys.readouterr().out
    assert "Context has 6 messages" in out
    assert "Ready for OpenAI API with 6 messages" in out
    assert "Total conversation: 6 messages" in out
    assert "Conversation stored in session: session_" in out



async def test_environment_setups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_alias: Callable[..., Any]) -> None:
    """The guide's environment setups; redis.example.com:6379 is served by a private redis-server."""
    monkeypatch.setenv("LANGSWARM_MEMORY_DB", str(tmp_path / "prod" / "memory.db"))
    redis_alias("redis.example.com", 6379)
    # --- guide: Different Environment Setups ---
    # Development - fast in-memory storage
    initialize_memory("development")

    # Testing - SQLite in-memory database
    initialize_memory("testing")

    # Production - persistent SQLite database
    initialize_memory("production")

    # Custom configuration
    initialize_memory(memory={
        "backend": "redis",
        "config": {
            "host": "redis.example.com",
            "port": 6379
        }
    })
    # --- end guide ---
    memory = get_global_memory_manager()
    assert memory.backend.name == "redis"
    session = await memory.create_session(user_id="u")
    await session.add_message(Message(role=MessageRole.USER, content="stored in redis"))
    assert [m.content for m in await session.get_messages()] == ["stored in redis"]



async def test_sqlite_backend() -> None:
    """The guide's SQLite block; /data/conversations.db is only configured, never opened."""
    # --- guide: SQLite Backend (Local Persistence) ---
    # Automatic SQLite setup
    initialize_memory("production")

    # Custom SQLite configuration
    initialize_memory(memory={
        "backend": "sqlite",
        "config": {
            "db_path": "/data/conversations.db",
            "enable_wal": True  # Better performance
        }
    })

    # Features:
    # - Persistent local storage
    # - No external services required
    # - ACID transactions
    # - Great for single-server deployments
    # --- end guide ---
    memory = get_global_memory_manager()
    assert memory.backend.name == "sqlite"
    assert memory.durability.value == "committed"



async def test_redis_backend(redis_alias: Callable[..., Any]) -> None:
    """The guide's Redis block against a private redis-server that requires its password."""
    redis_alias("localhost", 6379, "--requirepass", "optional_password")
    # --- guide: Redis Backend (Distributed) ---
    # Redis configuration
    initialize_memory(memory={
        "backend": "redis",
        "config": {
            "host": "localhost",
            "port": 6379,
            "db": 0,
            "password": "optional_password",
            "pool_size": 10,
            "ttl_seconds": 86400  # 24 hour session expiration
        }
    })

    # Features:
    # - High performance
    # - Distributed/clustered support
    # - Automatic session expiration
    # - Perfect for multi-server deployments
    # --- end guide ---
    memory = get_global_memory_manager()
    session = await memory.create_session(user_id="u")
    await session.add_message(Message(role=MessageRole.USER, content="hello"))
    stats = await memory.backend.get_usage_stats()
    assert stats["total_messages"] == 1



async def test_connection_issues(capsys: pytest.CaptureFixture[str]) -> None:
    """The guide's fallback: an unreachable Redis host raises MemoryConnectionError quickly."""
    started = time.monotonic()
    # --- guide: Connection Issues ---
    from langswarm.core.memory.exceptions import MemoryConnectionError, MemoryError

    try:
        # Initialize memory
        initialize_memory(memory={
            "backend": "redis",
            "config": {"host": "unreachable-host"}
        })
    except MemoryConnectionError as e:
        print(f"Failed to connect to memory backend: {e}")
        # Fallback to local storage
        initialize_memory("development")
    # --- end guide ---
    assert time.monotonic() - started < 5
    assert "Failed to connect to memory backend" in capsys.readouterr().out
    assert get_global_memory_manager().backend.name == "memory"



async def test_openai_integration(llm_standin: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The guide's OpenAI block with the official SDK against the local stand-in API."""
    from langswarm.core.memory import MemorySessionContext, create_openai_message

    llm_standin.reset()
    llm_standin.configure(reply="Quantum computers use qubits.")
    monkeypatch.setenv("OPENAI_BASE_URL", llm_standin.openai_base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    initialize_memory("development")
    # --- guide: OpenAI Integration ---
    import openai
    from langswarm.core.memory import messages_to_openai_format

    # Get conversation context
    async with MemorySessionContext(user_id="user123") as session:
        # Add user message
        await session.add_message(create_openai_message("user", "Explain quantum computing"))

        # Get context for OpenAI API
        context_messages = await session.get_conversation_context(max_tokens=3000)
        openai_format = messages_to_openai_format(context_messages)

        # Call OpenAI API
        client = openai.AsyncOpenAI()
        response = await client.chat.completions.create(
            model="gpt-4",
            messages=openai_format,
            max_tokens=1000
        )

        # Save assistant response
        assistant_message = create_openai_message("assistant", response.choices[0].message.content)
        await session.add_message(assistant_message)
    # --- end guide ---
    await client.close()
    request = llm_standin.requests[-1]
    assert request.status == 200
    assert request.body["messages"] == [{"role": "user", "content": "Explain quantum computing"}]
    stored = await session.get_messages()
    assert [m.content for m in stored] == ["Explain quantum computing", "Quantum computers use qubits."]



async def test_anthropic_integration(llm_standin: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The guide's Anthropic block with the official SDK against the local stand-in API."""
    from langswarm.core.memory import MemorySessionContext, create_anthropic_message

    llm_standin.reset()
    llm_standin.configure(reply="Waves fold the light.")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", llm_standin.anthropic_base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    initialize_memory("development")
    # --- guide: Anthropic Integration ---
    import anthropic
    from langswarm.core.memory import messages_to_anthropic_format

    # Get conversation context
    async with MemorySessionContext(user_id="user123") as session:
        # Add user message
        await session.add_message(create_anthropic_message("user", "Write a poem about the ocean"))

        # Get context for Anthropic API
        context_messages = await session.get_conversation_context(max_tokens=8000)
        anthropic_format = messages_to_anthropic_format(context_messages)

        # Call Anthropic API
        client = anthropic.AsyncAnthropic()
        response = await client.messages.create(
            model="claude-3-opus-20240229",
            messages=anthropic_format,
            max_tokens=1000
        )

        # Save assistant response
        assistant_message = create_anthropic_message("assistant", response.content[0].text)
        await session.add_message(assistant_message)
    # --- end guide ---
    await client.close()
    request = llm_standin.requests[-1]
    assert request.status == 200
    assert request.body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Write a poem about the ocean"}]}
    ] or request.body["messages"] == [{"role": "user", "content": "Write a poem about the ocean"}]
    stored = await session.get_messages()
    assert stored[-1].content == "Waves fold the light." or stored[-1].text() == "Waves fold the light."



async def test_function_and_tool_calls() -> None:
    """The guide's tool-call block; the stored conversation converts to valid SDK requests."""
    from pydantic import TypeAdapter
    import anthropic.types
    import openai.types.chat

    from langswarm.core.memory import (
        create_anthropic_message,
        create_openai_message,
        messages_to_anthropic_request,
        messages_to_openai_format,
    )

    initialize_memory("development")
    session = await get_global_memory_manager().create_session(user_id="user123")
    await session.add_message(create_openai_message("user", "Find ML material and recent AI papers"))
    # --- guide: Function and Tool Calls ---
    # OpenAI function calling
    function_call_msg = create_openai_message(
        "assistant",
        content=None,
        function_call={
            "name": "search_knowledge_base",
            "arguments": '{"query": "machine learning", "limit": 5}'
        }
    )
    await session.add_message(function_call_msg)

    # Function result
    function_result = create_openai_message(
        "function",
        content='{"results": ["ML basics", "Neural networks", "Deep learning"]}',
        name="search_knowledge_base"
    )
    await session.add_message(function_result)

    # Anthropic tool usage
    tool_use_msg = create_anthropic_message(
        "assistant",
        content=[
            {"type": "text", "text": "I'll search for that information."},
            {
                "type": "tool_use",
                "id": "tool_123",
                "name": "web_search",
                "input": {"query": "latest AI research"}
            }
        ]
    )
    await session.add_message(tool_use_msg)

    # Tool result
    tool_result_msg = create_anthropic_message(
        "user",
        content=[
            {
                "type": "tool_result",
                "tool_use_id": "tool_123",
                "content": "Found 10 recent papers on AI research..."
            }
        ]
    )
    await session.add_message(tool_result_msg)
    # --- end guide ---
    stored = await session.get_messages()
    assert len(stored) == 5
    TypeAdapter(list[openai.types.chat.ChatCompletionMessageParam]).validate_python(
        messages_to_openai_format(stored)
    )
    _, anthropic_messages = messages_to_anthropic_request(stored)
    TypeAdapter(list[anthropic.types.MessageParam]).validate_python(anthropic_messages)
    context = await session.get_conversation_context(max_tokens=10_000)
    assert context == stored



async def test_automatic_summarization(capsys: pytest.CaptureFixture[str]) -> None:
    """The guide's 'Automatic Summarization' block."""
    from langswarm.core.memory import create_openai_message

    initialize_memory("development")
    memory = get_global_memory_manager()
    # --- guide: Automatic Summarization ---
    # Configure auto-summarization when creating session
    session = await memory.create_session(
        user_id="user123",
        auto_summarize_threshold=50  # Summarize every 50 messages
    )

    # Add messages - summarization happens automatically
    for i in range(60):  # This will trigger auto-summarization
        await session.add_message(create_openai_message("user", f"Message {i}"))
        await session.add_message(create_openai_message("assistant", f"Response {i}"))

    # Check summaries
    summaries = await session.get_summaries()
    print(f"Created {len(summaries)} automatic summaries")
    # --- end guide ---
    assert "Created 2 automatic summaries" in capsys.readouterr().out
    assert [s.covers_through for s in summaries] == [50, 100]
    assert summaries[1].message_count == 100



async def test_manual_summarization(capsys: pytest.CaptureFixture[str]) -> None:
    """The guide's 'Manual Summarization' block."""
    from langswarm.core.memory import create_openai_message

    initialize_memory("development")
    session = await get_global_memory_manager().create_session(user_id="user123")
    await session.add_message(create_openai_message("user", "My name is Ada and my order is 4417."))
    await session.add_message(create_openai_message("assistant", "Thanks Ada, order 4417 ships Friday."))
    # --- guide: Manual Summarization ---
    from langswarm.core.memory.interfaces import SummaryType

    # Create manual summary
    summary = await session.create_summary(summary_type=SummaryType.MANUAL)
    print(f"Summary: {summary.summary_text}")
    print(f"Covers {summary.message_count} messages")

    # View all summaries
    all_summaries = await session.get_summaries()
    for summary in all_summaries:
        print(f"{summary.created_at}: {summary.summary_text[:100]}...")
        print(f"  Type: {summary.summary_type}")
        print(f"  Messages: {summary.message_count}")
        print(f"  Tokens: {summary.token_count}")
    # --- end guide ---
    out = capsys.readouterr().out
    assert "Covers 2 messages" in out
    assert "4417" in summary.summary_text
    assert "Type: manual" in out



async def test_summary_based_context() -> None:
    """The guide's 'Summary-Based Context' block."""
    from langswarm.core.memory import create_openai_message
    from langswarm.core.memory.interfaces import SummaryType

    initialize_memory("development")
    session = await get_global_memory_manager().create_session(user_id="user123")
    for i in range(40):
        await session.add_message(create_openai_message("user", f"Question {i} about invoice {9000 + i}"))
    summary = await session.create_summary(summary_type=SummaryType.MANUAL)
    await session.add_message(create_openai_message("assistant", "Latest answer"))
    # --- guide: Summary-Based Context ---
    # Get context including summaries for very long conversations
    full_context = await session.get_conversation_context(
        max_tokens=8000,
        include_summaries=True  # Include relevant summaries
    )

    # This gives you:
    # 1. Relevant conversation summaries
    # 2. Recent conversation messages
    # 3. All within token limit
    # --- end guide ---
    assert full_context[0].role is MessageRole.SYSTEM
    assert summary.summary_text in full_context[0].content
    assert [m.content for m in full_context[1:]] == ["Latest answer"]
    assert sum(m.token_count or 0 for m in full_context) <= 8000
