"""Pytest fixtures for the LLM API stand-in (import them into a conftest or test module)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests._standin import LLMStandIn, running_standin

__all__ = ["llm_standin"]


@pytest.fixture(scope="session")
def llm_standin() -> Iterator[LLMStandIn]:
    """One stand-in OpenAI/Anthropic server for the run.

    It is shared: call ``reset()`` at the start of a test that configures it or inspects
    ``requests``.
    """
    yield from running_standin()
