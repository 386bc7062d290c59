"""The adapters' SDKs are optional: nothing imports them until an adapter module is imported,
and an adapter module whose SDK is missing says which extra to install."""

from __future__ import annotations

import subprocess
import sys

import pytest

SDKS = ("agents", "langchain_core", "openai", "anthropic")


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_importing_memory_imports_no_sdk() -> None:
    done = run_python(
        "import sys, langswarm.core.memory as m\n"
        f"print(sorted(s for s in {SDKS!r} if s in sys.modules))"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("module", "sdk", "extra"),
    [("agents_sdk", "agents", "agents"), ("langchain", "langchain_core", "langchain")],
)
def test_an_adapter_without_its_sdk_names_the_extra(module: str, sdk: str, extra: str) -> None:
    done = run_python(
        f"import sys\nsys.modules[{sdk!r}] = None\n"  # what Python does for a missing package
        f"import langswarm.core.memory.{module}"
    )
    assert done.returncode != 0
    assert f"pip install 'langswarm-memory-runtime[{extra}]'" in done.stderr


def test_each_adapter_imports_only_its_own_sdk() -> None:
    done = run_python(
        "import sys\nimport langswarm.core.memory.langchain\n"
        "print('agents' in sys.modules)\n"
        "import langswarm.core.memory.agents_sdk\n"
        "print('langchain_core' in sys.modules, 'agents' in sys.modules)"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True", "True"]
