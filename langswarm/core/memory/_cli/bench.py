"""``langswarm-memory bench``: the load benchmark's command line (argparse, kept as it was
when it was the only command, so its options and messages stay the same).

    langswarm-memory bench --backend sqlite --sessions 1000 --duration 10 --plot run.png

Usage errors (unknown options, bad values) print one line to stderr and exit with status 2;
a run that fails (say, Redis is unreachable) prints one line and exits with status 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NoReturn

from .. import exceptions

if TYPE_CHECKING:
    from .._bench.progress import Progress
    from .._bench.workload import Workload

__all__ = ["PROG", "build_parser", "run"]

PROG = "langswarm-memory"

BENCH_DESCRIPTION = """\
Load-benchmark the memory runtime with simulated agent traffic.

Each session repeats agent turns: add a user message, get the conversation context within a
token budget, add the assistant's reply (optionally with a tool call and its result in
between). Sessions run concurrently for --duration seconds or --turns turns each. A live
progress line shows throughput on stderr; at the end a table gives turns/s, messages/s and
latency percentiles (p50, p90, p99, p99.9, max) per operation, errors, peak RSS and storage
size. Latencies are recorded in HDR histograms (microsecond resolution).
"""

BENCH_EPILOG = """\
examples:
  langswarm-memory bench --backend memory --sessions 1000 --duration 10
  langswarm-memory bench --backend sqlite --sqlite-path /tmp/bench.db --durability committed \\
      --json run.json --plot run.png
  langswarm-memory bench --backend redis --redis-url redis://127.0.0.1:6379/0 --loop trio \\
      --tool-calls 0.2 --think-ms 50 --concurrency 200

Without --sqlite-path the SQLite backend uses a temporary file that is removed afterwards;
the Redis backend writes under a private key prefix and deletes its keys afterwards.
"""


class _Parser(argparse.ArgumentParser):
    """Reports usage errors as a single line (and status 2) instead of a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _number(
    kind: Callable[[str], float], test: Callable[[float], bool], what: str
) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = what  # argparse names the type in some messages
    return parse


_positive_int = _number(int, lambda v: v >= 1, "a positive integer")
_non_negative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
_positive_float = _number(float, lambda v: v > 0, "a positive number")
_non_negative_float = _number(float, lambda v: v >= 0, "a number >= 0")
_ratio = _number(float, lambda v: 0 <= v <= 1, "a ratio between 0 and 1")
_open_ratio = _number(float, lambda v: 0 <= v < 1, "a ratio from 0 up to (not including) 1")


def _output(suffix: str | None) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if suffix is not None and not text.lower().endswith(suffix):
            raise argparse.ArgumentTypeError(f"expected a file name ending in {suffix}: {text!r}")
        directory = os.path.dirname(os.path.abspath(text))
        if not os.path.isdir(directory):
            raise argparse.ArgumentTypeError(f"directory {directory!r} does not exist")
        return text

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG, description="Tools for the langswarm memory runtime.", allow_abbrev=False
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    bench = commands.add_parser(
        "bench",
        help="load-benchmark the memory runtime with simulated agent traffic",
        description=BENCH_DESCRIPTION,
        epilog=BENCH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    _backend_options(bench.add_argument_group("backend and runtime"))
    shape = bench.add_argument_group("workload")
    _workload_options(shape)
    _traffic_options(shape)
    _session_options(shape)
    _output_options(bench.add_argument_group("output"))
    bench.set_defaults(handler=bench_command, parser=bench)
    return parser


def _backend_options(where: argparse._ArgumentGroup) -> None:
    where.add_argument(
        "--backend",
        choices=("memory", "sqlite", "redis"),
        default="memory",
        help="storage backend (default: %(default)s)",
    )
    where.add_argument(
        "--sqlite-path",
        type=_output(None),
        metavar="PATH",
        help="SQLite database file for --backend sqlite (default: a temporary file, "
        "removed after the run)",
    )
    where.add_argument(
        "--redis-url",
        metavar="URL",
        help="Redis server for --backend redis (default: redis://127.0.0.1:6379/0)",
    )
    where.add_argument(
        "--durability",
        choices=("buffered", "committed"),
        help="when a write is acknowledged: once the session has it (buffered) or once it "
        "is stored (committed); default: the backend's, committed for sqlite and redis, "
        "buffered for memory",
    )
    where.add_argument(
        "--loop",
        choices=("asyncio", "trio"),
        default="asyncio",
        help="event loop to run on (default: %(default)s)",
    )


def _workload_options(shape: argparse._ArgumentGroup) -> None:
    shape.add_argument(
        "--sessions",
        type=_positive_int,
        default=1_000,
        metavar="N",
        help="number of sessions (default: %(default)s)",
    )
    shape.add_argument(
        "--users",
        type=_positive_int,
        metavar="N",
        help="number of users the sessions are dealt to round-robin (default: 100, or "
        "--sessions if fewer)",
    )
    shape.add_argument(
        "--turns",
        type=_positive_int,
        metavar="N",
        help="agent turns per session; the run ends when every session has done them",
    )
    shape.add_argument(
        "--duration",
        type=_positive_float,
        metavar="SECONDS",
        help="length of the measured phase (default: 10 unless --turns is given; with both, "
        "whichever ends first)",
    )
    shape.add_argument(
        "--concurrency",
        type=_positive_int,
        metavar="N",
        help="sessions driven at the same time (default: all of them); each driver serves "
        "its share of the sessions round-robin",
    )


def _traffic_options(shape: argparse._ArgumentGroup) -> None:
    shape.add_argument(
        "--message-chars",
        type=_positive_int,
        default=200,
        metavar="N",
        help="characters per user, assistant and tool-result message (default: %(default)s)",
    )
    shape.add_argument(
        "--context-tokens",
        type=_positive_int,
        default=4_000,
        metavar="N",
        help="token budget of each get-context call (default: %(default)s)",
    )
    shape.add_argument(
        "--tool-calls",
        type=_ratio,
        default=0.0,
        metavar="RATIO",
        help="fraction of turns in which the assistant calls a tool: the turn then also adds "
        "the tool call and its result and gets the context again (default: %(default)s)",
    )
    shape.add_argument(
        "--think-ms",
        type=_non_negative_float,
        default=0.0,
        metavar="MS",
        help="mean pause after each step of a session, drawn uniformly from 0.5-1.5x this "
        "(default: %(default)s, no pause)",
    )


def _session_options(shape: argparse._ArgumentGroup) -> None:
    shape.add_argument(
        "--read-ratio",
        type=_open_ratio,
        default=0.0,
        metavar="RATIO",
        help="fraction of steps that only read the history (get_messages with limit 20) "
        "instead of running a turn (default: %(default)s)",
    )
    shape.add_argument(
        "--summarize-every",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="summarize each session automatically every N messages "
        "(auto_summarize_threshold) and read context with the summary; 0 turns it off "
        "(default: %(default)s)",
    )
    shape.add_argument(
        "--prefill",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="user/assistant exchanges stored in each session before the clock starts "
        "(default: %(default)s)",
    )
    shape.add_argument(
        "--seed",
        type=int,
        default=1,
        metavar="N",
        help="seed of the generated traffic; the same seed gives every session the same "
        "steps (default: %(default)s)",
    )


def _output_options(output: argparse._ArgumentGroup) -> None:
    output.add_argument(
        "--json",
        type=_output(None),
        metavar="FILE",
        help="also write the full result (percentiles, HDR histograms, timeline) as JSON",
    )
    output.add_argument(
        "--plot",
        type=_output(".png"),
        metavar="FILE.png",
        help="also write a PNG of throughput and turn latency (p50, p99) per second",
    )
    output.add_argument(
        "--no-progress",
        action="store_true",
        help="do not show the live progress line on stderr",
    )


def _workload(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Workload:
    from .._bench.workload import Workload

    if args.sqlite_path is not None and args.backend != "sqlite":
        parser.error("--sqlite-path only applies to --backend sqlite")
    if args.redis_url is not None:
        if args.backend != "redis":
            parser.error("--redis-url only applies to --backend redis")
        if not args.redis_url.startswith(("redis://", "rediss://")):
            parser.error(
                f"--redis-url must start with redis:// or rediss://, not {args.redis_url!r}"
            )
    if args.users is not None and args.users > args.sessions:
        parser.error(f"--users ({args.users}) cannot exceed --sessions ({args.sessions})")
    try:
        return Workload(
            backend=args.backend,
            sqlite_path=args.sqlite_path,
            redis_url=args.redis_url or "redis://127.0.0.1:6379/0",
            durability=args.durability,
            loop=args.loop,
            sessions=args.sessions,
            users=args.users,
            turns=args.turns,
            duration=args.duration,
            concurrency=args.concurrency,
            message_chars=args.message_chars,
            context_tokens=args.context_tokens,
            tool_calls=args.tool_calls,
            think_ms=args.think_ms,
            read_ratio=args.read_ratio,
            summarize_every=args.summarize_every,
            prefill=args.prefill,
            seed=args.seed,
        )
    except ValueError as exc:
        parser.error(str(exc))


def _root_cause(exc: BaseException) -> BaseException:
    """The first leaf of an exception group (task groups wrap what failed inside them)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _close(progress: Progress | None) -> None:
    if progress is not None:
        progress.close()


def bench_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``bench``: build the workload, run it with live progress, print and save."""
    try:
        from .._bench import engine, report
        from .._bench.progress import Progress
    except ImportError as exc:
        print(
            f"{PROG} bench: error: {exc.name or exc} is missing; install the 'bench' extra: "
            "pip install 'langswarm-memory-runtime[bench]'",
            file=sys.stderr,
        )
        return 1
    workload = _workload(args, parser)
    progress = None if args.no_progress else Progress(sys.stderr)
    try:
        result = engine.run(workload, on_tick=progress)
    except KeyboardInterrupt:
        _close(progress)
        print(f"{PROG} bench: interrupted", file=sys.stderr)
        return 130
    except BaseException as exc:
        _close(progress)
        cause = _root_cause(exc)
        if not isinstance(cause, exceptions.MemoryError | OSError):
            raise
        print(f"{PROG} bench: error: {cause}", file=sys.stderr)
        return 1
    _close(progress)
    print(report.format_table(result))
    if args.json:
        report.write_json(result, args.json)
        print(f"\nwrote {args.json}")
    if args.plot:
        report.write_plot(result, args.plot)
        print(f"wrote {args.plot}")
    return 0


def run(argv: Sequence[str]) -> int:
    """Parse ``argv`` (starting with ``bench``) and run the benchmark; usage errors raise
    ``SystemExit(2)`` as argparse does."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        args.parser.error(f"unrecognized arguments: {' '.join(extra)}")
    status: int = args.handler(args, args.parser)
    return status
