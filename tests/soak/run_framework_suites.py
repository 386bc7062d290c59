"""The Agents SDK's and langchain-core's own store tests, run against the langswarm adapters.

    .venv/bin/python tests/soak/run_framework_suites.py --agents SOURCE [--agents-ref REF]
        [--langchain SOURCE] [--backend memory|sqlite|redis ...] [--keep]

A SOURCE is a source tree holding ``tests/``, an sdist (``pip download --no-deps --no-binary
:all: openai-agents==0.24.0``) or a git directory, such as a mirror of the framework's
repository (``--agents-ref`` picks the commit; default: the tag of the installed version).
Not part of the test suite (pytest does not collect it): it needs those sources, and the
frameworks' test-only packages, which it installs into ``--deps`` (not the venv) if missing.

Each suite is copied into a temporary directory, where only the store its tests construct is
rewritten: the imports of ``SQLiteSession``, ``AsyncSQLiteSession``, ``RedisSession`` and
``SQLAlchemySession`` (Agents SDK) and ``InMemoryChatMessageHistory`` (langchain-core) come
from this module instead, whose classes take the same constructor arguments and build a
``LangswarmSession`` / ``LangswarmChatMessageHistory`` over a langswarm store (one per file,
URL, engine or key prefix the tests name) on the chosen backend. pytest then runs the copies
with the frameworks' own configuration and conftest files, this module loaded as a plugin that
records which tests built a langswarm store. Redis runs on a redis-server of our own.

Reported per backend: the protocol-level tests (those that built a langswarm store, minus the
ones in ``EXPECTED``, which test the frameworks' own stores: their tables, connections, private
hooks), each ``EXPECTED`` group, and the tests that built no store of ours.
"""

from __future__ import annotations

import argparse
import ast
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from agents.memory import SessionSettings
from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import BaseMessage

from langswarm.core.memory import MemoryManager
from langswarm.core.memory._tokens import get_encoding
from langswarm.core.memory.agents_sdk import LangswarmSession
from langswarm.core.memory.langchain import LangswarmChatMessageHistory

BACKEND_ENV, SCRATCH_ENV = "LANGSWARM_SUITE_BACKEND", "LANGSWARM_SUITE_SCRATCH"
REDIS_ENV, REPORT_ENV = "LANGSWARM_SUITE_REDIS_URL", "LANGSWARM_SUITE_REPORT"
HERE = Path(__file__).resolve().parent
#: What the rewritten tests import from this module, by framework package.
STORES = {
    "agents": ("SQLiteSession", "AsyncSQLiteSession", "RedisSession", "SQLAlchemySession"),
    "langchain_core": ("InMemoryChatMessageHistory",),
}
AGENTS_STORE_FILES = [
    "tests/memory/test_session.py",
    "tests/memory/test_session_limit.py",
    *(f"tests/extensions/memory/test_{n}_session.py" for n in ("async_sqlite", "redis")),
    *(f"tests/extensions/memory/test_{n}_session.py" for n in ("sqlalchemy", "encrypt")),
]
LANGCHAIN_FILES = [
    "tests/unit_tests/chat_history/test_chat_history.py",
    "tests/unit_tests/runnables/test_history.py",
]
#: Test-only packages the frameworks' suites import, by module: distribution.
DEPS = {
    "pytest_asyncio": "pytest-asyncio", "pytest_mock": "pytest-mock",
    "inline_snapshot": "inline-snapshot", "asttokens": "asttokens", "executing": "executing",
    "rich": "rich", "markdown_it": "markdown-it-py", "mdurl": "mdurl",
    "blockbuster": "blockbuster", "forbiddenfruit": "forbiddenfruit",
}  # fmt: skip
Settings = SessionSettings | dict[str, Any] | None

# -- the stand-in stores (imported by the rewritten test files) ---------------------------------

_managers: dict[str, MemoryManager] = {}
_built = [0]


def store(name: str | None) -> MemoryManager:
    """The langswarm store for what a test names (a file, URL, engine, key prefix); ``None``
    (an SDK ``:memory:`` database): a store of its own."""
    _built[0] += 1
    if name is not None and name in _managers:
        return _managers[name]
    backend = os.environ.get(BACKEND_ENV, "sqlite")
    memory: dict[str, Any] = {"backend": backend}
    if backend == "sqlite":
        db = Path(os.environ.get(SCRATCH_ENV) or tempfile.gettempdir()) / f"{uuid.uuid4()}.db"
        memory["config"] = {"db_path": str(db)}
    elif backend == "redis":
        memory["config"] = {"url": os.environ[REDIS_ENV], "key_prefix": uuid.uuid4().hex}
    manager = MemoryManager.from_config(memory=memory)
    if name is not None:
        _managers[name] = manager
    return manager


class SQLiteSession(LangswarmSession):
    """``SQLiteSession(session_id, db_path, session_settings)``: one store per file."""

    def __init__(
        self, session_id: str, db_path: Any = ":memory:", session_settings: Settings = None
    ) -> None:
        name = None if str(db_path) == ":memory:" else f"file:{Path(db_path).resolve()}"
        super().__init__(session_id, manager=store(name), session_settings=session_settings)


class AsyncSQLiteSession(SQLiteSession):
    """``AsyncSQLiteSession``: the constructor of ``SQLiteSession``."""


class RedisSession(LangswarmSession):
    """``RedisSession`` and ``.from_url``: one store per client (or URL) and key prefix."""

    def __init__(
        self,
        session_id: str,
        *,
        redis_client: Any,
        key_prefix: str = "agents:session",
        session_settings: Settings = None,
        **_: Any,
    ) -> None:
        name = f"redis:{id(redis_client)}:{key_prefix}"
        super().__init__(session_id, manager=store(name), session_settings=session_settings)

    @classmethod
    def from_url(cls, session_id: str, *, url: str, **options: Any) -> RedisSession:
        options.pop("redis_kwargs", None)
        return cls(session_id, redis_client=url, **options)

    async def ping(self) -> bool:
        """Whether the store answers (the SDK's test helpers ask before using a session)."""
        await self.manager.backend.list_sessions(limit=1)
        return True


class SQLAlchemySession(LangswarmSession):
    """``SQLAlchemySession`` and ``.from_url``: one store per engine or URL (``:memory:``
    URLs: one per session, as each gets an engine of its own)."""

    def __init__(
        self, session_id: str, *, engine: Any, session_settings: Settings = None, **_: Any
    ) -> None:
        name = engine if isinstance(engine, str) else f"engine:{id(engine)}"
        own = name.endswith(":memory:")
        super().__init__(
            session_id, manager=store(None if own else name), session_settings=session_settings
        )

    @classmethod
    def from_url(
        cls, session_id: str, *, url: str, session_settings: Settings = None, **_: Any
    ) -> SQLAlchemySession:
        return cls(session_id, engine=f"url:{url}", session_settings=session_settings)


class InMemoryChatMessageHistory(LangswarmChatMessageHistory):
    """``InMemoryChatMessageHistory(messages=...)``: a history of its own, seeded with
    ``messages``; equal to another history that holds the same messages."""

    def __init__(self, messages: Sequence[BaseMessage] | None = None, **_: Any) -> None:
        super().__init__(f"history-{uuid.uuid4().hex}", manager=store("langchain"))
        if messages:
            self.add_messages(messages)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, BaseChatMessageHistory):
            return bool(self.messages == other.messages)
        return NotImplemented

    __hash__ = LangswarmChatMessageHistory.__hash__


# -- the pytest plugin (``-p run_framework_suites`` in the suite's process) --------------------

_outcomes: dict[str, list[Any]] = {}
_RANK = {"passed": 0, "skipped": 1, "failed": 2}


def pytest_configure(config: pytest.Config) -> None:
    # langswarm reads its token encoder's files on first use, inside the event loop; that
    # one-time read is loaded here first, as in any process that has counted tokens before
    # (langchain-core's conftest runs blockbuster, which fails a test on any blocking call).
    get_encoding()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[Any]:
    before = _built[0]
    try:
        return (yield)
    finally:
        _outcomes.setdefault(item.nodeid, ["passed", False])[1] = _built[0] > before


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    outcome = "failed" if report.failed else "skipped" if report.skipped else "passed"
    if report.when == "call" or outcome != "passed":
        entry = _outcomes.setdefault(report.nodeid, [outcome, False])
        if _RANK[outcome] > _RANK[entry[0]]:
            entry[0] = outcome


def pytest_sessionfinish(session: pytest.Session) -> None:
    if os.environ.get(REPORT_ENV):
        Path(os.environ[REPORT_ENV]).write_text(json.dumps(_outcomes))


# -- preparing and running a suite --------------------------------------------------------------


def copy_sources(source: Path, ref: str | None, package: str, dest: Path) -> None:
    """Copy ``tests/`` and ``pyproject.toml`` (pytest's configuration) into ``dest``."""
    dest.mkdir(parents=True)
    if (source / "tests").is_dir():
        shutil.copytree(source / "tests", dest / "tests")
        shutil.copy(source / "pyproject.toml", dest)
    elif source.is_dir():  # a git directory
        git = ["git", "--git-dir", str(source)]
        tag = f"refs/tags/v{importlib.metadata.version(package)}"
        if ref is None:
            verify = [*git, "rev-parse", "-q", "--verify", tag]
            found = subprocess.run(verify, capture_output=True, check=False).returncode == 0
            ref = tag if found else "HEAD"
            print(f"{package}: the tests of {ref}" + ("" if found else f" (no {tag})"))
        archive = [*git, "archive", ref, "tests", "pyproject.toml"]
        tree = subprocess.run(archive, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=tree, check=True)
    else:  # an sdist
        with tarfile.open(source) as sdist:
            members = [m for m in sdist.getmembers() if m.name.count("/") >= 1]
            for member in members:
                member.name = member.name.split("/", 1)[1]
            wanted = [m for m in members if m.name.split("/")[0] in ("tests", "pyproject.toml")]
            sdist.extractall(dest, members=wanted, filter="data")


def rewrite(path: Path, package: str) -> int:
    """Import ``package``'s store classes from this module instead; how many imports changed."""
    source = path.read_text()
    lines = source.splitlines(keepends=True)
    imports = [
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom)
        and (node.module or "").split(".")[0] == package
        and any(alias.name in STORES[package] for alias in node.names)
    ]
    for node in sorted(imports, key=lambda n: n.lineno, reverse=True):
        ours = [a for a in node.names if a.name in STORES[package]]
        rest = [a for a in node.names if a.name not in STORES[package]]
        new = [ast.ImportFrom("run_framework_suites", ours, 0)]
        new[:0] = [ast.ImportFrom(node.module, rest, 0)] if rest else []
        indent = " " * node.col_offset
        lines[node.lineno - 1 : node.end_lineno] = [f"{indent}{ast.unparse(n)}\n" for n in new]
    path.write_text("".join(lines))
    return len(imports)


def runner_files(root: Path) -> list[str]:
    """The Agents SDK's other test files that build an SDK store and use the Runner."""
    found = []
    for path in sorted((root / "tests").rglob("test_*.py")):
        name = str(path.relative_to(root))
        if (
            name not in AGENTS_STORE_FILES
            and "Runner" in path.read_text()
            and rewrite(path, "agents")
        ):
            found.append(name)
    return found


def ensure_deps(target: Path) -> None:
    """Install the suites' test-only packages into ``target`` (not the venv) if missing."""
    sys.path.insert(0, str(target))
    missing = [dist for module, dist in DEPS.items() if importlib.util.find_spec(module) is None]
    if missing:
        pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target"]
        subprocess.run([*pip, str(target), *missing], check=True)


def run_pytest(root: Path, files: list[str], env: dict[str, str], timeout: int) -> dict[str, Any]:
    """Run ``files`` under ``root`` with this module as a plugin; outcome and use by test."""
    report = root / f"report-{uuid.uuid4().hex}.json"
    plugins = ["-p", "run_framework_suites", "-p", "no:cacheprovider"]
    command = [sys.executable, "-m", "pytest", *plugins, "-q", "-o", "addopts="]
    command += ["--timeout", str(timeout), *files]
    env = {**os.environ, **env, REPORT_ENV: str(report)}
    env["PYTHONPATH"] = os.pathsep.join([str(root), env["PYTHONPATH"]])
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, check=False)
    (root / f"{report.stem}.log").write_text(done.stdout + done.stderr)
    if not report.exists():
        raise SystemExit(f"pytest did not run in {root}:\n{done.stdout[-3000:]}{done.stderr}")
    outcomes: dict[str, Any] = json.loads(report.read_text())
    return outcomes


# -- reporting -----------------------------------------------------------------------------------

#: Where the tests of the frameworks' own stores are listed, by reason (see ``expected``).
EXPECTED_LIST = HERE.parents[1] / "docs" / "adapters.md"


def expected(path: Path = EXPECTED_LIST) -> dict[str, str]:
    """Reason by test name (without parameters) or test file, from the bullets ``- **reason**:
    `name`, ...`` of the section of ``path`` that lists them."""
    text = path.read_text().split("<!-- not-protocol -->")[1]
    reasons: dict[str, str] = {}
    for bullet in text.split("\n- ")[1:]:
        why = bullet.split("**")[1]
        reasons.update((name, why) for name in re.findall(r"`([^`]+)`", bullet))
    return reasons


def summary(title: str, outcomes: dict[str, Any]) -> list[str]:
    """Counts by group: protocol-level (built a langswarm store), each ``EXPECTED`` reason,
    and no store of ours; the failures of the first and last groups by name."""
    reasons = expected()
    groups: dict[str, dict[str, list[str]]] = {}
    for test_id, (outcome, used) in sorted(outcomes.items()):
        path, _, name = test_id.partition("::")
        why = reasons.get(name.split("::")[-1].split("[")[0]) or reasons.get(path)
        group = why or ("protocol-level: on a langswarm store" if used else "no langswarm store")
        counts = groups.setdefault(group, {"passed": [], "failed": [], "skipped": []})
        counts[outcome].append(test_id)
    lines = [title]
    for group, counts in sorted(groups.items(), key=lambda g: not g[0].startswith("protocol")):
        lines.append(
            f"    {group[:72]:<72}{sum(map(len, counts.values())):>5} run"
            f"{len(counts['passed']):>5} passed{len(counts['failed']):>4} failed"
            f"{len(counts['skipped']):>4} skipped"
        )
        if group.startswith(("protocol", "no ")):
            lines += [f"        FAILED {test_id}" for test_id in counts["failed"]]
    return lines


Suite = Callable[[dict[str, str], int], list[str]]


def prepare(args: argparse.Namespace, work: Path) -> list[Suite]:
    """Copy and rewrite each framework's tests; a callable per framework that runs them."""
    suites: list[Suite] = []
    if args.agents is not None:
        agents = work / "agents"
        copy_sources(args.agents, args.agents_ref, "openai-agents", agents)
        rewritten = sum(rewrite(agents / name, "agents") for name in AGENTS_STORE_FILES)
        runners = runner_files(agents)
        print(f"agents: {rewritten} store imports rewritten, {len(runners)} Runner files")

        def run_agents(env: dict[str, str], timeout: int) -> list[str]:
            stores = run_pytest(agents, AGENTS_STORE_FILES, env, timeout)
            runs = run_pytest(agents, runners, env, timeout)
            return [
                *summary(f"  Agents SDK store tests ({len(AGENTS_STORE_FILES)} files)", stores),
                *summary(f"  Agents SDK Runner tests ({len(runners)} files)", runs),
            ]

        suites.append(run_agents)
    if args.langchain is not None:
        langchain = work / "langchain"
        copy_sources(args.langchain, args.langchain_ref, "langchain-core", langchain)
        rewritten = sum(rewrite(langchain / name, "langchain_core") for name in LANGCHAIN_FILES)
        print(f"langchain-core: {rewritten} history imports rewritten")

        def run_langchain(env: dict[str, str], timeout: int) -> list[str]:
            outcomes = run_pytest(langchain, LANGCHAIN_FILES, env, timeout)
            return summary(
                f"  langchain-core history tests ({len(LANGCHAIN_FILES)} files)", outcomes
            )

        suites.append(run_langchain)
    return suites


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=Path, help="openai-agents sources: dir, sdist, git")
    parser.add_argument("--agents-ref", help="commit or tag, when --agents is a git directory")
    parser.add_argument("--langchain", type=Path, help="langchain-core sources: dir, sdist, git")
    parser.add_argument("--langchain-ref", help="commit or tag, when --langchain is a git dir")
    parser.add_argument("--backend", action="append", choices=["memory", "sqlite", "redis"])
    parser.add_argument("--deps", type=Path, default=Path.home() / ".cache" / "langswarm-suites")
    parser.add_argument("--timeout", type=int, default=120, help="seconds per test")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(argv)
    if args.agents is None and args.langchain is None:
        parser.error("give --agents and/or --langchain")
    ensure_deps(args.deps)
    work = Path(tempfile.mkdtemp(prefix="framework-suites-"))
    redis: Any = None
    try:
        suites = prepare(args, work)
        env = {SCRATCH_ENV: str(work), "PYTHONPATH": os.pathsep.join([str(HERE), str(args.deps)])}
        for backend in args.backend or ["memory", "sqlite", "redis"]:
            if backend == "redis" and redis is None:
                redis = start_redis(work)
                env[REDIS_ENV] = redis.url
            print(f"backend: {backend}", flush=True)
            for suite in suites:
                print("\n".join(suite({**env, BACKEND_ENV: backend}, args.timeout)), flush=True)
    finally:
        if redis is not None:
            redis.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"work directory (pytest logs): {work}" if args.keep else "")
    return 0


def start_redis(directory: Path) -> Any:
    """A redis-server of our own on a free loopback port (the test suite's harness)."""
    sys.path.insert(0, str(HERE.parents[1]))
    from tests._servers import RedisServer, free_port

    server = RedisServer(port=free_port(), directory=directory)
    server.start()
    return server


if __name__ == "__main__":
    sys.exit(main())
