"""Fixtures of the fuzz suites (see ``_fixtures``), and a summary line that says how many
examples ran."""

from __future__ import annotations

from typing import Any

from tests.fuzz._fixtures import bounded_shrinking as bounded_shrinking
from tests.fuzz._fixtures import store as store
from tests.fuzz._support import EXAMPLES


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if EXAMPLES:
        total = sum(EXAMPLES.values())
        terminalreporter.write_line(f"fuzz: {total} examples in {len(EXAMPLES)} suite cases")
