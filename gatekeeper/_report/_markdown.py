"""The report as Markdown (GitHub-flavoured tables): for a terminal, a ticket or a wiki.

Every name and sentence from the log goes through :func:`._format.md`; a table
lists at most :data:`ROWS` rows and says how many more the JSON has.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ._format import duration, md, share, when, window
from ._model import VERDICTS, AgentRow, Report, Verdicts

__all__ = ["ROWS", "render_markdown"]

ROWS = 500


def _table(header: Sequence[str], align: str, rows: Iterable[Sequence[str]]) -> list[str]:
    """A GFM table; ``align`` has one letter per column: ``l`` left, ``r`` right."""
    rule = ["---:" if a == "r" else "---" for a in align]
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    shown = 0
    left = 0
    for row in rows:
        if shown < ROWS:
            out.append("| " + " | ".join(row) + " |")
            shown += 1
        else:
            left += 1
    if not shown:
        return ["None in this window."]
    if left:
        out.append("")
        out.append(f"... and {left:,} more rows (`--format json` has them all).")
    return out


def _counts(v: Verdicts) -> list[str]:
    return [f"{v.of(k):,}" for k in VERDICTS]


def _scopes(scopes: list[str] | None) -> str:
    if scopes is None:
        return "(not in the policy)"
    return ", ".join(md(s, 100) for s in scopes) or "(none)"


def render_markdown(report: Report) -> str:
    """The report as one Markdown document."""
    out: list[str] = ["# Transparency report", ""]
    out.append(f"Window: {window(report)}. Generated {when(report.generated_at)} UTC from ")
    out[-1] += f"{report.events:,} audit events in the window ({report.read:,} read)."
    loaded = report.policies.loaded
    if loaded is not None:
        out += ["", f"Policy loaded now: {md(loaded.source)} (sha256 {loaded.digest[:12]})."]
    out += ["", "## Calls", ""]
    total = report.calls.total
    out += _table(
        ["verdict", "calls", "share"],
        "lrr",
        [[k, f"{report.calls.of(k):,}", share(report.calls.of(k), total)] for k in VERDICTS],
    )
    out += ["", f"{total:,} calls in all."]
    out += _agents(report)
    out += _approvals(report)
    out += _halts(report)
    out += _behaviour(report)
    out += _autonomy(report)
    out += _policies(report)
    if report.unreadable or report.notes:
        out += ["", "## Notes", ""]
        if report.unreadable:
            out.append(f"- {report.unreadable:,} audit entries could not be read.")
        out += [f"- {md(note, 500)}" for note in report.notes]
    return "\n".join(out) + "\n"


def _agents(report: Report) -> list[str]:
    out = ["", "## Agents and the scopes they hold", ""]
    header = ["agent", "scopes in the policy", "scopes its sessions held", "calls", *VERDICTS]
    out += _table(
        header,
        "lll" + "r" * 6,
        (
            [
                md(a.agent),
                _scopes(a.policy_scopes),
                _scopes(a.session_scopes),
                f"{a.calls.total:,}",
                *_counts(a.calls),
            ]
            for a in report.agents
        ),
    )
    if report.other_agents is not None:
        other = report.other_agents
        out += ["", f"And {other.rows:,} more agents with {other.calls.total:,} calls."]
    out += ["", "## Calls by verdict, per agent and tool", ""]
    out += _table(["agent", "tool", *VERDICTS, "total"], "ll" + "r" * 6, _tool_rows(report.agents))
    return out


def _tool_rows(agents: list[AgentRow]) -> Iterable[list[str]]:
    for a in agents:
        for t in a.tools:
            yield [md(a.agent), md(t.tool), *_counts(t.calls), f"{t.calls.total:,}"]
        if a.other_tools is not None:
            o = a.other_tools
            name = f"({o.rows:,} more tools)"
            yield [md(a.agent), name, *_counts(o.calls), f"{o.calls.total:,}"]


def _approvals(report: Report) -> list[str]:
    r, lat = report.requests, report.latency
    out = ["", "## Held calls and approval latency", ""]
    out.append(
        f"- Held: {r.held:,}. Approved {r.approved:,}, denied {r.denied:,}, answered "
        f"{r.answered:,}, expired {r.expired:,}, cancelled {r.cancelled:,}, abandoned "
        f"{r.abandoned:,}."
    )
    out.append(
        f"- After approval: ran {r.executed:,}, failed {r.failed:,}, "
        f"outcome unknown {r.outcome_unknown:,}."
    )
    if lat.decisions:
        out.append(
            f"- Approval latency, from held to a person's decision ({lat.decisions:,} "
            f"decisions): p50 **{duration(lat.p50_s)}**, p95 **{duration(lat.p95_s)}**, "
            f"longest {duration(lat.max_s)}."
        )
        out.append("")
        out += _table(
            ["wait", "decisions"],
            "lr",
            ([b.label, f"{b.count:,}"] for b in lat.buckets if b.count),
        )
    else:
        out.append("- Approval latency: no decisions in the window.")
    if lat.unmatched:
        out += ["", f"{lat.unmatched:,} decisions were on calls held before the log began."]
    out += ["", "## Who approved and denied what", ""]
    out += _table(
        ["approver", "approved", "denied", "answered"],
        "lrrr",
        (
            [md(p.approver), f"{p.approved:,}", f"{p.denied:,}", f"{p.answered:,}"]
            for p in report.approvers
        ),
    )
    out += ["", "What each decided:", ""]
    out += _table(
        ["approver", "agent", "tool", "approved", "denied", "answered"],
        "lllrrr",
        (
            [
                md(p.approver),
                md(w.agent),
                md(w.tool),
                f"{w.approved:,}",
                f"{w.denied:,}",
                f"{w.answered:,}",
            ]
            for p in report.approvers
            for w in p.what
        ),
    )
    if report.decisions:
        out += ["", f"The newest {len(report.decisions)} decisions, newest first:", ""]
        out += _table(
            ["time (UTC)", "approver", "decision", "agent", "tool", "request", "comment"],
            "lllllll",
            (
                [
                    when(d.at),
                    md(d.approver),
                    d.decision,
                    md(d.agent),
                    md(d.tool),
                    md(d.request_id, 40),
                    md(d.comment, 300),
                ]
                for d in report.decisions
            ),
        )
    return out


def _halts(report: Report) -> list[str]:
    h = report.halts
    out = ["", "## Halts", ""]
    out.append(
        f"- Halts set: {h.set:,}; lifted: {h.cleared:,}; calls refused by a halt verdict: "
        f"{h.halted_calls:,}."
    )
    if h.items:
        out.append("")
        out += _table(
            ["time (UTC)", "halt", "scope", "target", "by", "reason", "requests cancelled"],
            "llllllr",
            (
                [
                    when(i.at),
                    i.action,
                    md(i.scope, 20),
                    md(i.target),
                    md(i.by),
                    md(i.reason, 300),
                    f"{i.cancelled:,}",
                ]
                for i in h.items
            ),
        )
    return out


def _behaviour(report: Report) -> list[str]:
    out = ["", "## Sequence, limit and novelty hits", ""]
    if not report.behaviour:
        return [*out, "No call completed a sequence, reached a limit or did something new."]
    out += _table(
        ["kind", "rule", "calls", "verdicts", "agents"],
        "llrll",
        (
            [
                md(b.kind, 20),
                md(b.id),
                f"{b.hits:,}",
                ", ".join(f"{md(v, 40)} {n:,}" for v, n in b.verdicts.items()),
                ", ".join(f"{md(a)} {n:,}" for a, n in b.agents.items()),
            ]
            for b in report.behaviour
        ),
    )
    return out


def _autonomy(report: Report) -> list[str]:
    a, g = report.autonomy, report.grants
    out = ["", "## Autonomy and standing approvals", ""]
    out.append(f"- Promotions: {a.promoted:,}; demotions: {a.demoted:,}.")
    out.append(
        f"- Standing approvals: created {g.created:,}, used {g.used:,}, revoked "
        f"{g.revoked:,}, expired {g.expired:,}."
    )
    if a.items:
        out.append("")
        out += _table(
            ["time (UTC)", "change", "agent", "tool", "rule", "reason"],
            "llllll",
            (
                [when(i.at), md(i.kind, 20), md(i.agent), md(i.tool), md(i.rule), md(i.reason, 300)]
                for i in a.items
            ),
        )
    return out


def _policies(report: Report) -> list[str]:
    p = report.policies
    out = ["", "## Policy versions in force", ""]
    if p.versions:
        out += _table(
            ["policy (sha256)", "calls", "first call", "last call", ""],
            "lrlll",
            (
                [
                    md(v.digest[:12], 20),
                    f"{v.calls:,}",
                    when(v.first_seen),
                    when(v.last_seen),
                    "loaded now" if v.loaded else "",
                ]
                for v in p.versions
            ),
        )
        out.append("")
    out.append(f"- Calls whose event names no policy version: {p.unrecorded:,}.")
    return out
