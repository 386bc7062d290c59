"""Renders a :class:`~.results.BenchResult`: console table, JSON document, PNG plot."""

from __future__ import annotations

import json
import os
import platform
from typing import Any, Final

from .results import CREATE_SESSION, BenchResult, Bucket
from .workload import OPERATIONS

__all__ = ["PERCENTILES", "SCHEMA", "format_table", "to_dict", "write_json", "write_plot"]

#: Identifies the JSON layout; bump when a field changes meaning.
SCHEMA: Final = "langswarm-memory-bench/1"
PERCENTILES: Final = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9))


def op_stats(histogram: Any) -> dict[str, float | int]:
    """Count, mean, percentiles and max of one histogram, in milliseconds."""
    stats: dict[str, float | int] = {
        "count": int(histogram.get_total_count()),
        "mean_ms": round(histogram.get_mean_value() / 1000, 4),
    }
    for name, pct in PERCENTILES:
        stats[f"{name}_ms"] = histogram.get_value_at_percentile(pct) / 1000
    stats["max_ms"] = histogram.get_max_value() / 1000
    return stats


def _ops(result: BenchResult) -> list[str]:
    """Operations that happened, in report order, setup last."""
    names = [op for op in (*OPERATIONS, CREATE_SESSION) if op in result.histograms]
    return [op for op in names if result.histograms[op].get_total_count() > 0]


def to_dict(result: BenchResult) -> dict[str, Any]:
    """The JSON document (see ``SCHEMA``): plain types only."""
    return {
        "schema": SCHEMA,
        "started_at": result.started_at,
        "environment": _environment(),
        "workload": result.workload.as_dict(),
        "run": _run(result),
        "throughput": _throughput(result),
        "latency_unit": "ms",
        "operations": {op: _operation(result, op) for op in _ops(result)},
        "errors": _errors(result),
        "resources": _resources(result),
        "timeline": [_bucket(b) for b in result.timeline],
    }


def _environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "langswarm_memory": _version(),
    }


def _run(result: BenchResult) -> dict[str, Any]:
    return {
        "backend": result.backend,
        "durability": result.durability,
        "loop": result.loop,
        "concurrency": result.workload.drivers,
        "elapsed_s": round(result.elapsed_s, 4),
        "setup_s": round(result.setup_s, 4),
        "drain_s": round(result.drain_s, 4),
    }


def _throughput(result: BenchResult) -> dict[str, Any]:
    return {
        "turns": result.turns,
        "failed_turns": result.failed_turns,
        "messages": result.messages,
        "reads": result.reads,
        "turns_per_s": round(result.turns_per_s, 2),
        "messages_per_s": round(result.messages_per_s, 2),
    }


def _operation(result: BenchResult, op: str) -> dict[str, Any]:
    """One operation's latency statistics, its phase, and its histogram (HDR encoded)."""
    return {
        **op_stats(result.histograms[op]),
        "phase": "setup" if op == CREATE_SESSION else "run",
        "hdr": result.histograms[op].encode().decode("ascii"),
    }


def _errors(result: BenchResult) -> dict[str, Any]:
    return {
        "total": result.error_count,
        "by_kind": [
            {"op": e.op, "error": e.error, "count": e.count, "example": e.example}
            for e in result.errors
        ],
    }


def _resources(result: BenchResult) -> dict[str, Any]:
    return {
        "rss_start_mb": _round(result.rss_start_mb),
        "peak_rss_mb": _round(result.peak_rss_mb),
        "storage_size_mb": _round(result.storage.get("storage_size_mb")),
        "stored_sessions": result.storage.get("total_sessions"),
        "stored_messages": result.storage.get("total_messages"),
        "stored_summaries": result.storage.get("total_summaries"),
    }


def _bucket(b: Bucket) -> dict[str, Any]:
    return {
        "start_s": b.start_s,
        "duration_s": round(b.duration_s, 4),
        "turns": b.turns,
        "messages": b.messages,
        "reads": b.reads,
        "errors": b.errors,
        "turns_per_s": round(b.turns_per_s, 2),
        "messages_per_s": round(b.messages_per_s, 2),
        "turn_p50_ms": b.turn_p50_ms,
        "turn_p99_ms": b.turn_p99_ms,
        "rss_mb": _round(b.rss_mb),
    }


def _round(value: Any, digits: int = 2) -> float | None:
    return None if value is None else round(float(value), digits)


def _version() -> str | None:
    try:
        from importlib.metadata import version

        return version("langswarm-memory-runtime")
    except Exception:
        return None


def write_json(result: BenchResult, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(to_dict(result), f, indent=2)
        f.write("\n")


def _title(result: BenchResult) -> str:
    w = result.workload
    return (
        f"{result.backend} ({result.durability}) on {result.loop}: "
        f"{w.sessions:,} sessions / {w.user_count:,} users, concurrency {w.drivers:,}, "
        f"{w.message_chars}-char messages, context {w.context_tokens:,} tokens"
    )


def format_table(result: BenchResult) -> str:
    """The console report: throughput, per-operation latency, errors, resources."""
    lines = [
        f"langswarm-memory bench  {_title(result)}",
        f"measured {result.elapsed_s:.2f} s  (setup {result.setup_s:.2f} s, "
        f"drain {result.drain_s:.2f} s)",
        "",
        f"  {'turns':<10}{result.turns:>12,}  {result.turns_per_s:>12,.1f} /s",
        f"  {'messages':<10}{result.messages:>12,}  {result.messages_per_s:>12,.1f} /s",
    ]
    if result.reads:
        lines.append(
            f"  {'reads':<10}{result.reads:>12,}  {result.reads / result.elapsed_s:>12,.1f} /s"
        )
    lines.append(f"  {'errors':<10}{result.error_count:>12,}")
    header = f"  {'operation (ms)':<24}{'count':>10}" + "".join(
        f"{name:>10}" for name, _ in PERCENTILES
    )
    lines += ["", header + f"{'max':>10}", "  " + "-" * (len(header) + 8)]
    for op in _ops(result):
        s = op_stats(result.histograms[op])
        label = f"{op} (setup)" if op == CREATE_SESSION else op
        cells = "".join(f"{s[f'{name}_ms']:>10.3f}" for name, _ in PERCENTILES)
        lines.append(f"  {label:<24}{s['count']:>10,}{cells}{s['max_ms']:>10.3f}")
    if result.errors:
        lines += ["", "  errors:"]
        lines += [f"    {e.count:>8,}  {e.op}: {e.error}: {e.example}" for e in result.errors[:10]]
    storage = result.storage.get("storage_size_mb")
    stored = f"storage {storage:.1f} MB" if storage is not None else "storage n/a (in memory)"
    lines += [
        "",
        f"  peak RSS {_mb(result.peak_rss_mb)} (at start {_mb(result.rss_start_mb)}), {stored}, "
        f"stored: {result.storage.get('total_sessions', 0):,} sessions, "
        f"{result.storage.get('total_messages', 0):,} messages, "
        f"{result.storage.get('total_summaries', 0):,} summaries",
    ]
    return "\n".join(lines)


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} MB"


def write_plot(result: BenchResult, path: str) -> None:
    """Throughput and turn latency per second of the measured phase, as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    timeline = result.timeline
    mid = [b.start_s + b.duration_s / 2 for b in timeline]
    fig = Figure(figsize=(10, 6.5), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.plot(mid, [b.turns_per_s for b in timeline], marker="o", label="turns/s")
    top.plot(mid, [b.messages_per_s for b in timeline], marker="s", label="messages/s")
    top.set_ylabel("operations per second")
    top.set_ylim(bottom=0)
    top.set_title("Throughput (1 s buckets)")
    top.legend(loc="best")
    top.grid(alpha=0.3)
    top.yaxis.set_major_formatter(_thousands())

    p99 = [b.turn_p99_ms for b in timeline]
    p50 = [b.turn_p50_ms for b in timeline]
    bottom.plot(mid, [_nan(v) for v in p99], marker="o", color="tab:red", label="turn p99")
    bottom.plot(mid, [_nan(v) for v in p50], marker=".", color="tab:gray", label="turn p50")
    bottom.set_ylabel("turn latency (ms)")
    bottom.set_xlabel("time since start of measured phase (s)")
    bottom.set_ylim(bottom=0)
    bottom.set_title("Turn latency per second")
    bottom.legend(loc="best")
    bottom.grid(alpha=0.3)
    fig.suptitle(_title(result), fontsize=10)
    fig.savefig(path, format="png")


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value


def _thousands() -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _pos: f"{v:,.0f}")
