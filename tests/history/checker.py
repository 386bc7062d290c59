"""Checks a history of memory calls made by several processes on one store (DESIGN.md §12).

Input: the calls the workers logged (``worker.load_history``) and the final state of every
session, read once every worker has exited. Each call is an interval ``[inv, end]`` on the
shared monotonic clock; ``end`` is infinite for a call whose process died during it (it may
or may not have taken effect). Only a call that ended before another began is ordered before
it: calls that overlap may take effect in either order, so every rule reports only what no
such order can explain. An acknowledged archive or delete holds for the session id, through
whichever handle it was made (a handle that cannot do it must raise).

A *view* is a list of messages someone saw: a successful ``get_messages()`` (full),
``get_conversation_context()`` (a window), or the final state (full, read after everything).
Nothing in the workload trims or expires messages (no ``max_messages``, no TTL), so only a
delete removes them. A delete "may fall between" a call A and a later view R when it did not
end before A began and began before R ended. Any attempted delete counts, whatever it
returned: the checker never assumes a delete failed.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

__all__ = ["FinalSession", "Op", "Violation", "check_history", "format_report"]

INF = 2**63
WRITES = ("add_one", "add_many")
#: Errors that mean the call was refused before anything was stored.
REFUSALS = frozenset({"MemoryValidationError", "SessionNotFoundError", "SessionOwnershipError"})
EXAMPLES = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class Op:
    """One logged call. ``ok`` is None when no completion was logged (the process died)."""

    op_id: str
    process: int
    task: int
    seq: int  # position in its task's sequence of calls
    op: str
    session: str
    user: str
    args: dict[str, Any]
    inv: int
    end: int = INF
    ok: bool | None = None
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # the exception's class name
    message: str = ""
    ours: bool = True  # the exception derives from langswarm's MemoryError

    @property
    def refused(self) -> bool:
        return self.ok is False and self.error in REFUSALS

    @property
    def written(self) -> list[str]:
        return list(self.args.get("ids", ())) if self.op in WRITES else []


@dataclass(frozen=True, slots=True)
class FinalSession:
    """A session as read after all workers exited."""

    owner: str
    status: str
    metadata: dict[str, Any]
    ids: list[str]
    bad: list[str] = field(default_factory=list)  # ids whose content is not what was written


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str
    session: str
    detail: str


@dataclass(frozen=True, slots=True)
class _View:
    label: str
    session: str
    user: str
    inv: int
    end: int
    ids: list[str]
    full: bool
    bad: list[str]


def _examples(items: list[str]) -> str:
    more = f" (+{len(items) - EXAMPLES} more)" if len(items) > EXAMPLES else ""
    return "; ".join(items[:EXAMPLES]) + more


def _between(deletes: list[Op], first: Op, later_end: int) -> bool:
    """May one of ``deletes`` fall between ``first`` and a call that ended at ``later_end``?"""
    return any(d.end > first.inv and d.inv < later_end for d in deletes)


def _find_cycle(edges: Mapping[str, Mapping[str, str]]) -> list[str]:
    """A cycle ``[a, b, ..., a]`` in the graph, or ``[]`` (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    for root in list(edges):
        if root in state:
            continue
        state[root], path = 1, [root]
        stack: list[Iterator[str]] = [iter(edges.get(root, {}))]
        while stack:
            child = next(stack[-1], None)
            if child is None:
                stack.pop()
                state[path.pop()] = 2
            elif state.get(child) == 1:
                return [*path[path.index(child) :], child]
            elif child not in state:
                state[child] = 1
                path.append(child)
                stack.append(iter(edges.get(child, {})))
    return []


class _Checker:
    """The history indexed per session; each ``rule_*`` method adds what it finds."""

    def __init__(self, ops: list[Op], final: Mapping[str, FinalSession | None]) -> None:
        self.ops, self.final = ops, final
        self.found: list[Violation] = []
        self.t0 = min((o.inv for o in ops), default=0)
        self.by: dict[tuple[str, str], list[Op]] = defaultdict(list)
        self.writer: dict[str, tuple[Op, int]] = {}  # message id -> (its append, position)
        self.views: dict[str, list[_View]] = defaultdict(list)
        for o in ops:
            self.by[o.session, o.op].append(o)
            self.writer.update((mid, (o, pos)) for pos, mid in enumerate(o.written))
            if o.op in ("read", "context") and o.ok:
                ids, bad = list(o.result["ids"]), list(o.result.get("bad", ()))
                view = _View(o.op_id, o.session, o.user, o.inv, o.end, ids, o.op == "read", bad)
                self.views[o.session].append(view)
        for sid, f in final.items():
            if f is not None:
                self.views[sid].append(
                    _View("final", sid, f.owner, INF - 1, INF, f.ids, True, f.bad)
                )
        self.sessions = sorted({o.session for o in ops} | set(final))
        self.first_seen: dict[str, str] = {}
        for views in self.views.values():
            for v in views:
                for mid in v.ids:
                    self.first_seen.setdefault(mid, v.label)

    def of(self, sid: str, *kinds: str) -> list[Op]:
        return [o for k in kinds for o in self.by.get((sid, k), ())]

    def flag(self, rule: str, sid: str, detail: str) -> None:
        self.found.append(Violation(rule, sid, detail))

    def at(self, t: int) -> str:
        return "never" if t >= INF - 1 else f"+{(t - self.t0) / 1e6:.1f}ms"

    def describe(self, o: Op) -> str:
        outcome = "unknown" if o.ok is None else ("ok" if o.ok else o.error)
        return f"{o.op_id} {o.op}({o.user}) {outcome} [{self.at(o.inv)}..{self.at(o.end)}]"

    def rule_views(self) -> None:
        """(a, f) What any view shows. No message twice ("duplicate"); only messages a call
        wrote to this session and was not refused for ("phantom"); with the content written
        ("content"); only messages by the viewer ("foreign-message": a session holds only
        its owner's messages, and a user's view shows only their own session)."""
        for sid, views in self.views.items():
            for v in views:
                dups = [f"{m} x{n}" for m, n in Counter(v.ids).items() if n > 1]
                phantom, foreign = [], []
                for mid in v.ids:
                    w = self.writer.get(mid)
                    if w is None or w[0].session != sid or w[0].refused:
                        phantom.append(mid if w is None else f"{mid} by {self.describe(w[0])}")
                    elif w[0].user != v.user:
                        foreign.append(f"{mid} by {self.describe(w[0])}")
                for rule, items in (("duplicate", dups), ("phantom", phantom), ("content", v.bad)):
                    if items:
                        self.flag(rule, sid, f"{v.label}: {_examples(items)}")
                if foreign:
                    detail = f"{v.label} by user {v.user} returned {_examples(foreign)}"
                    self.flag("foreign-message", sid, detail)

    def rule_lost_writes(self) -> None:
        """(a) An append acknowledged OK, with no delete of its session that may fall after
        it, is in the final state ("lost-write")."""
        for sid in self.sessions:
            final, deletes = self.final.get(sid), self.of(sid, "delete")
            present = set(final.ids) if final is not None else set()
            lost = [
                f"{mid} ({self.describe(a)})"
                for a in self.of(sid, *WRITES)
                if a.ok and not any(d.end > a.inv for d in deletes)
                for mid in a.written
                if mid not in present
            ]
            if lost:
                where = "final state" if final is not None else "store (no session)"
                detail = f"{len(lost)} acknowledged messages missing from the {where}: "
                self.flag("lost-write", sid, detail + _examples(lost))

    def rule_metadata(self) -> None:
        """(a) A metadata key (one per task) ends with the value of its last acknowledged
        update that no delete may follow, or of a later attempt ("lost-metadata"); unless a
        delete overlaps it, the updating call reads its own value back ("metadata-read-back")."""
        for sid in self.sessions:
            final, deletes = self.final.get(sid), self.of(sid, "delete")
            updates: dict[str, list[Op]] = defaultdict(list)
            for u in self.of(sid, "metadata"):
                updates[u.args["key"]].append(u)
                back = u.result.get("metadata", {})
                own = back.get(u.args["key"]) == u.args["value"]
                if u.ok and not own and not _between(deletes, u, u.end):
                    self.flag("metadata-read-back", sid, f"{self.describe(u)} read {back}")
            for key, tries in updates.items():
                acked = [u for u in tries if u.ok and not any(d.end > u.inv for d in deletes)]
                if not acked:
                    continue
                last = max(acked, key=lambda u: u.seq)
                allowed = {u.args["value"] for u in tries if u.seq >= last.seq and not u.refused}
                value = None if final is None else final.metadata.get(key)
                if value not in allowed:
                    detail = f"{key} is {value!r} in the end; {self.describe(last)} wrote"
                    self.flag("lost-metadata", sid, f"{detail} {last.args['value']}")

    def rule_writer_order(self) -> None:
        """(b) Each task's messages appear in every view in the order the task wrote them.
        A message of an earlier call that failed without a refusal may land late, so a pair
        counts only when the earlier call was acknowledged or both are from one call."""
        for sid, views in self.views.items():
            for v in views:
                top: dict[tuple[int, int], tuple[int, int]] = {}  # task -> max (seq, pos)
                top_in_call: dict[str, int] = {}  # op id -> max pos
                bad: list[str] = []
                for mid in v.ids:
                    if mid not in self.writer:
                        continue
                    a, pos = self.writer[mid]
                    task, prev = (a.process, a.task), top.get((a.process, a.task), (-1, -1))
                    if top_in_call.get(a.op_id, -1) > pos or ((a.seq, pos) < prev and a.ok):
                        bad.append(f"{mid} after a later write of p{task[0]}t{task[1]} {prev}")
                    top[task] = max(prev, (a.seq, pos))
                    top_in_call[a.op_id] = max(top_in_call.get(a.op_id, -1), pos)
                if bad:
                    self.flag("writer-order", sid, f"{v.label}: {_examples(bad)}")

    def rule_read_order(self) -> None:
        """(c) One total order explains every view of a session: the "a comes right before
        b" pairs of all views form no cycle (ids are unique, so incarnations never mix)."""
        for sid, views in self.views.items():
            edges: dict[str, dict[str, str]] = defaultdict(dict)
            for v in views:
                for a, b in pairwise(v.ids):
                    if a != b:
                        edges[a].setdefault(b, v.label)
            cycle = _find_cycle(edges)
            if cycle:
                steps = [f"{a} -> {b} ({edges[a][b]})" for a, b in pairwise(cycle)]
                both = sum(1 for a in edges for b in edges[a] if a in edges.get(b, {})) // 2
                detail = f"{both} adjacent pairs seen in both orders; a cycle: "
                self.flag("read-order", sid, detail + _examples(steps))

    def rule_read_after_ack(self) -> None:
        """(d) A view by user U begun after U's append on that session was acknowledged (in
        any process), with no delete that may fall between, shows it: a full read contains
        it ("stale-read"); a context window, the newest suffix within a budget, contains it
        if it is newer than the window's oldest message ("stale-context"; that order comes
        from the latest full view showing the oldest message; pairs it does not order are
        skipped). Windows are never empty: every budget fits the newest message. Another
        user's appends are not required: that user's session is none of U's business."""
        latest: dict[str, _View] = {}
        for views in self.views.values():
            for v in sorted((v for v in views if v.full), key=lambda v: v.inv):
                latest.update(dict.fromkeys(v.ids, v))
        positions: dict[int, dict[str, int]] = {}
        for sid, views in self.views.items():
            appends = sorted((a for a in self.of(sid, *WRITES) if a.ok), key=lambda a: a.end)
            ends, deletes = [a.end for a in appends], self.of(sid, "delete")
            for v in views:
                if v.label == "final":
                    continue  # the final state is judged by rule_lost_writes
                excuse = max((d.end for d in deletes if d.inv < v.end), default=-1)
                shown = set(v.ids)
                missing = [
                    (mid, a)
                    for a in appends[bisect_left(ends, excuse) : bisect_left(ends, v.inv)]
                    if a.inv >= excuse and a.user == v.user
                    for mid in a.written
                    if mid not in shown
                ]
                if not v.full and v.ids:
                    order = latest.get(v.ids[0])
                    if order is not None and id(order) not in positions:
                        positions[id(order)] = {m: i for i, m in enumerate(order.ids)}
                    pos = positions.get(id(order), {})
                    oldest = pos.get(v.ids[0], INF)
                    missing = [(m, a) for m, a in missing if pos.get(m, -1) > oldest]
                if missing:
                    rule, what = ("stale-read", "read") if v.full else ("stale-context", "window")
                    items = [f"{m} ({self.describe(a)})" for m, a in missing]
                    detail = f"{v.label} ({what} at {self.at(v.inv)}) lacks {len(items)} acked: "
                    self.flag(rule, sid, detail + _examples(items))

    def rule_archive(self) -> None:
        """(e) An append begun after an archive was acknowledged, with no delete that may
        fall between, fails and is not stored ("archive-ignored"); an acknowledged archive
        that no delete may follow holds in the final state ("archive-undone")."""
        for sid in self.sessions:
            deletes, final = self.of(sid, "delete"), self.final.get(sid)
            for ar in (o for o in self.of(sid, "archive") if o.ok):
                for a in self.of(sid, *WRITES):
                    if a.inv <= ar.end or _between(deletes, ar, a.end):
                        continue
                    stored = [self.first_seen[m] for m in a.written if m in self.first_seen]
                    if a.ok or (stored and not a.refused):
                        what = "acknowledged" if a.ok else f"stored ({stored[0]})"
                        detail = f"{self.describe(a)} {what} after {self.describe(ar)}"
                        self.flag("archive-ignored", sid, detail)
                status = "missing" if final is None else final.status
                if status != "archived" and not any(d.end > ar.inv for d in deletes):
                    detail = f"final session is {status} after {self.describe(ar)}"
                    self.flag("archive-undone", sid, detail)

    def rule_delete(self) -> None:
        """(e) A view begun after a delete was acknowledged shows no message acknowledged
        before that delete began ("delete-ignored"). The final session exists only if an
        open may follow the last acknowledged delete ("resurrected"). A call reports the
        session missing only if some delete began before it ended ("spurious-not-found")."""
        for sid in self.sessions:
            deletes = self.of(sid, "delete")
            acked = [d for d in deletes if d.ok]
            for v in self.views.get(sid, ()):
                cut = max((d.inv for d in acked if d.end < v.inv), default=-1)
                writers = [(mid, self.writer[mid][0]) for mid in v.ids if mid in self.writer]
                shown = [f"{m} ({self.describe(a)})" for m, a in writers if a.ok and a.end < cut]
                if shown:
                    detail = f"{v.label} at {self.at(v.inv)} shows messages deleted before it: "
                    self.flag("delete-ignored", sid, detail + _examples(shown))
            if self.final.get(sid) is not None and acked:
                last = max(acked, key=lambda d: d.inv)
                if not any(not o.refused and o.end > last.inv for o in self.of(sid, "open")):
                    detail = f"final session exists, but no open may follow {self.describe(last)}"
                    self.flag("resurrected", sid, detail)
        for o in self.ops:
            if o.error == "SessionNotFoundError" and not any(
                d.inv < o.end for d in self.of(o.session, "delete")
            ):
                self.flag("spurious-not-found", o.session, self.describe(o))

    def rule_ownership(self) -> None:
        """(f) ``get_or_create_session(U, sid)`` never hands U another user's session: it
        reports U as owner ("ownership"); two users are both granted one id only with a
        delete that may fall between the two calls ("two-owners"); the final owner made an
        open that no acknowledged delete followed, and every acknowledged open that no delete
        may follow is by the final owner ("final-owner")."""
        for sid in self.sessions:
            opens, final = self.of(sid, "open"), self.final.get(sid)
            deletes = self.of(sid, "delete")
            granted = [o for o in opens if o.ok]
            for o in granted:
                if o.result.get("owner") != o.user:
                    self.flag("ownership", sid, f"{self.describe(o)} got {o.result}")
            pairs = [
                f"{self.describe(a)} and {self.describe(b)}"
                for i, a in enumerate(granted)
                for b in granted[i + 1 :]
                if a.user != b.user
                and not _between(deletes, a, b.end)
                and not _between(deletes, b, a.end)
            ]
            if pairs:
                self.flag("two-owners", sid, f"{len(pairs)} pairs: {_examples(pairs)}")
            acked = [d for d in deletes if d.ok]
            if final is not None and not any(
                o.user == final.owner and not o.refused and all(d.inv < o.end for d in acked)
                for o in opens
            ):
                detail = f"{final.owner} owns it but made no open after the last acked delete"
                self.flag("final-owner", sid, detail)
            owner = "missing" if final is None else f"owned by {final.owner}"
            for o in granted:
                if (final is None or final.owner != o.user) and all(
                    d.end <= o.inv for d in deletes
                ):
                    self.flag("final-owner", sid, f"final session {owner} after {self.describe(o)}")

    def rule_errors(self) -> None:
        """Every error raised derives from langswarm's MemoryError ("unexpected-error")."""
        for o in self.ops:
            if o.ok is False and not o.ours:
                self.flag("unexpected-error", o.session, f"{self.describe(o)}: {o.message}")


def check_history(ops: list[Op], final: Mapping[str, FinalSession | None]) -> list[Violation]:
    """Every violation of every rule (the ``rule_*`` methods of the checker)."""
    checker = _Checker(ops, final)
    for name in sorted(dir(checker)):
        if name.startswith("rule_"):
            getattr(checker, name)()
    return checker.found


def format_report(violations: list[Violation], ops: list[Op], per_rule: int = 6) -> str:
    """A readable summary: the rules broken and the calls made, then a few examples each."""
    by_rule: dict[str, list[Violation]] = defaultdict(list)
    for v in violations:
        by_rule[v.rule].append(v)
    outcomes = Counter(
        f"{o.op}:{'unknown' if o.ok is None else 'ok' if o.ok else o.error}" for o in ops
    )
    counts = ", ".join(f"{rule} {len(found)}" for rule, found in sorted(by_rule.items()))
    processes = len({o.process for o in ops})
    lines = [
        f"{len(violations)} violations ({counts}); {len(ops)} calls by {processes} processes",
        "calls: " + ", ".join(f"{k}={n}" for k, n in sorted(outcomes.items())),
    ]
    for rule, found in sorted(by_rule.items()):
        lines.append(f"[{rule}] {len(found)}")
        lines += [f"  {v.session}: {v.detail}" for v in found[:per_rule]]
    return "\n".join(lines)
