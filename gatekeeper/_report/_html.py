"""The report as HTML: one self-contained page, or the body the console's /report shows.

Both are the same markup (:func:`render_html_body`); the page adds its own
stylesheet inline and a Content-Security-Policy that lets it fetch nothing and
run nothing, so a name that slipped past escaping still could not act. Every
name and sentence from the log goes through :func:`._format.esc` inside a
``<bdi>``; a table lists at most :data:`ROWS` rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from importlib import resources

from ._charts import COLOURS, calls_over_time, latency_chart, verdict_mix
from ._format import duration, esc, share, when, window
from ._model import VERDICTS, AgentRow, Report, Verdicts

__all__ = ["ROWS", "render_html", "render_html_body", "stylesheet"]

ROWS = 500
_NUM = ' class="num"'
_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'"
)


def stylesheet(*, standalone: bool) -> str:
    """The report's CSS (the console serves it at /report.css); ``standalone`` adds what the
    console's own stylesheet gives its pages (fonts, tables)."""
    files = ["standalone.css", "report.css"] if standalone else ["report.css"]
    here = resources.files("gatekeeper._report")
    parts = [here.joinpath(f).read_text(encoding="utf-8") for f in files]
    return "\n".join([*parts, _SWATCH_CSS, ""])


def _b(text: str | None, limit: int = 200) -> str:
    """A name from the log: escaped, visible, bounded and isolated from the text around it."""
    if text is None:
        return '<span class="muted">—</span>'
    return f"<bdi>{esc(text, limit)}</bdi>"


def _code(text: str | None, limit: int = 200) -> str:
    if text is None:
        return '<span class="muted">—</span>'
    return f"<code><bdi>{esc(text, limit)}</bdi></code>"


def _table(
    table_id: str, columns: Sequence[tuple[str, bool]], rows: Iterable[Sequence[str]]
) -> list[str]:
    """A table of ``rows`` (cells already HTML); ``columns`` are (heading, is a number)."""
    head = "".join(f'<th scope="col"{_NUM if num else ""}>{label}</th>' for label, num in columns)
    out = [f'<div class="table-wrap"><table class="grid" id="{table_id}">']
    out.append(f"<thead><tr>{head}</tr></thead><tbody>")
    shown = left = 0
    for row in rows:
        if shown >= ROWS:
            left += 1
            continue
        cells = "".join(
            f'<td data-label="{label}"{_NUM if num else ""}>{cell}</td>'
            for (label, num), cell in zip(columns, row, strict=True)
        )
        out.append(f"<tr>{cells}</tr>")
        shown += 1
    if not shown:
        out.append(f'<tr><td colspan="{len(columns)}" class="empty">None in this window.</td></tr>')
    out.append("</tbody></table></div>")
    if left:
        out.append(f'<p class="muted">… and {left:,} more rows (the JSON report has them all).</p>')
    return out


def _counts(v: Verdicts) -> list[str]:
    return [f"{v.of(k):,}" for k in VERDICTS]


_VERDICT_COLUMNS = [(k, True) for k in VERDICTS]


def _scopes(scopes: list[str] | None) -> str:
    if scopes is None:
        return '<span class="muted">not in the policy</span>'
    if not scopes:
        return '<span class="muted">none</span>'
    return " ".join(_code(s, 100) for s in scopes)


def render_html_body(report: Report) -> str:
    """The report's content, for a page that has the report's stylesheet (no ``<h1>``)."""
    out = ['<div class="report" id="report">']
    out.append(
        f'<p class="muted" id="report-window">Window: {esc(window(report))}. Generated '
        f"{when(report.generated_at)} UTC from {report.events:,} audit events in the window "
        f"({report.read:,} read).</p>"
    )
    loaded = report.policies.loaded
    if loaded is not None:
        out.append(
            f'<p id="report-policy">Policy loaded now: {_code(loaded.source)} '
            f"(sha256 <code>{esc(loaded.digest[:12])}</code>).</p>"
        )
    out += _charts(report)
    out += _calls(report)
    out += _agents(report)
    out += _approvals(report)
    out += _halts(report)
    out += _behaviour(report)
    out += _autonomy(report)
    out += _policies(report)
    if report.unreadable or report.notes:
        out.append('<h2 id="report-notes">Notes</h2><ul>')
        if report.unreadable:
            out.append(f"<li>{report.unreadable:,} audit entries could not be read.</li>")
        out += [f"<li>{esc(note, 500)}</li>" for note in report.notes]
        out.append("</ul>")
    out.append("</div>")
    return "\n".join(out)


def render_html(report: Report) -> str:
    """The report as one HTML page that works offline: inline CSS and SVG, nothing fetched."""
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<meta name="referrer" content="no-referrer">',
            f"<title>gatekeeper transparency report · {esc(window(report))}</title>",
            f"<style>\n{stylesheet(standalone=True)}</style>",
            "</head>",
            "<body>",
            '<main id="main">',
            "<h1>Transparency report</h1>",
            render_html_body(report),
            "</main>",
            "</body>",
            "</html>",
            "",
        ]
    )


def _charts(report: Report) -> list[str]:
    out = ['<div class="report-charts">']
    if report.calls.total:
        out += [
            '<figure class="report-figure report-wide" id="figure-calls">',
            "<figcaption>Calls over time</figcaption>",
            calls_over_time(report.timeline),
            "</figure>",
        ]
    out += [
        '<figure class="report-figure" id="figure-mix">',
        "<figcaption>Verdict mix</figcaption>",
        verdict_mix(report.calls),
        "</figure>",
    ]
    if report.latency.decisions:
        out += [
            '<figure class="report-figure" id="figure-latency">',
            "<figcaption>Approval latency</figcaption>",
            latency_chart(report.latency),
            "</figure>",
        ]
    out.append("</div>")
    return out


def _calls(report: Report) -> list[str]:
    total = report.calls.total
    out = ['<h2 id="report-calls">Calls</h2>']
    rows = [
        [
            f'<span class="swatch" data-verdict="{k}"></span>{k}',
            f"{report.calls.of(k):,}",
            share(report.calls.of(k), total),
        ]
        for k in VERDICTS
    ]
    rows.append(["<strong>total</strong>", f"<strong>{total:,}</strong>", ""])
    out += _table("calls-table", [("verdict", False), ("calls", True), ("share", True)], rows)
    return out


def _agents(report: Report) -> list[str]:
    out = ['<h2 id="report-agents">Agents and the scopes they hold</h2>']
    columns = [
        ("agent", False),
        ("scopes in the policy", False),
        ("scopes its sessions held", False),
        ("calls", True),
        *_VERDICT_COLUMNS,
    ]
    out += _table(
        "agents-table",
        columns,
        (
            [
                _code(a.agent),
                _scopes(a.policy_scopes),
                _scopes(a.session_scopes),
                f"{a.calls.total:,}",
                *_counts(a.calls),
            ]
            for a in report.agents
        ),
    )
    if report.other_agents is not None:
        o = report.other_agents
        out.append(f'<p class="muted">And {o.rows:,} more agents with {o.calls.total:,} calls.</p>')
    out.append('<h2 id="report-tools">Calls by verdict, per agent and tool</h2>')
    columns = [("agent", False), ("tool", False), *_VERDICT_COLUMNS, ("total", True)]
    out += _table("tools-table", columns, _tool_rows(report.agents))
    return out


def _tool_rows(agents: list[AgentRow]) -> Iterable[list[str]]:
    for a in agents:
        for t in a.tools:
            yield [_code(a.agent), _code(t.tool), *_counts(t.calls), f"{t.calls.total:,}"]
        if a.other_tools is not None:
            o = a.other_tools
            more = f'<span class="muted">{o.rows:,} more tools</span>'
            yield [_code(a.agent), more, *_counts(o.calls), f"{o.calls.total:,}"]


def _stat(stat_id: str, label: str, value: str) -> str:
    return f'<div><dt>{label}</dt><dd id="{stat_id}">{value}</dd></div>'


def _approvals(report: Report) -> list[str]:
    r, lat = report.requests, report.latency
    out = ['<h2 id="report-latency">Held calls and approval latency</h2>', '<dl class="stats">']
    for name in ("held", "approved", "denied", "answered", "expired", "cancelled", "abandoned"):
        out.append(_stat(f"requests-{name}", name, f"{getattr(r, name):,}"))
    out.append("</dl>")
    out.append(
        f'<p class="muted">After approval: ran {r.executed:,}, failed {r.failed:,}, outcome '
        f"unknown {r.outcome_unknown:,}.</p>"
    )
    out.append('<dl class="stats">')
    out.append(_stat("latency-decisions", "decisions measured", f"{lat.decisions:,}"))
    out.append(_stat("latency-p50", "p50", duration(lat.p50_s)))
    out.append(_stat("latency-p95", "p95", duration(lat.p95_s)))
    out.append(_stat("latency-max", "longest", duration(lat.max_s)))
    out.append("</dl>")
    out.append(
        '<p class="muted">From a call being held to the person\'s decision that ended its '
        "request (approved, denied or answered).</p>"
    )
    if lat.unmatched:
        out.append(
            f'<p class="muted">{lat.unmatched:,} decisions were on calls held before the log '
            "began.</p>"
        )
    out.append('<h2 id="report-approvers">Who approved and denied what</h2>')
    out += _table(
        "approvers-table",
        [("approver", False), ("approved", True), ("denied", True), ("answered", True)],
        (
            [_b(p.approver), f"{p.approved:,}", f"{p.denied:,}", f"{p.answered:,}"]
            for p in report.approvers
        ),
    )
    out.append("<h3>What each decided</h3>")
    out += _table(
        "decided-table",
        [
            ("approver", False),
            ("agent", False),
            ("tool", False),
            ("approved", True),
            ("denied", True),
            ("answered", True),
        ],
        (
            [
                _b(p.approver),
                _code(w.agent),
                _code(w.tool),
                f"{w.approved:,}",
                f"{w.denied:,}",
                f"{w.answered:,}",
            ]
            for p in report.approvers
            for w in p.what
        ),
    )
    out.append(f'<h3 id="report-decisions">The newest {len(report.decisions)} decisions</h3>')
    out += _table(
        "decisions-table",
        [
            ("time (UTC)", False),
            ("approver", False),
            ("decision", False),
            ("agent", False),
            ("tool", False),
            ("request", False),
            ("comment", False),
        ],
        (
            [
                when(d.at),
                _b(d.approver),
                d.decision,
                _code(d.agent),
                _code(d.tool),
                _code(d.request_id, 40),
                _b(d.comment, 300) if d.comment else "",
            ]
            for d in report.decisions
        ),
    )
    return out


def _halts(report: Report) -> list[str]:
    h = report.halts
    out = ['<h2 id="report-halts">Halts</h2>', '<dl class="stats">']
    out.append(_stat("halts-set", "halts set", f"{h.set:,}"))
    out.append(_stat("halts-cleared", "lifted", f"{h.cleared:,}"))
    out.append(_stat("halts-calls", "calls refused by a halt verdict", f"{h.halted_calls:,}"))
    out.append("</dl>")
    if h.items:
        out += _table(
            "halts-table",
            [
                ("time (UTC)", False),
                ("halt", False),
                ("scope", False),
                ("target", False),
                ("by", False),
                ("reason", False),
                ("requests cancelled", True),
            ],
            (
                [
                    when(i.at),
                    i.action,
                    esc(i.scope, 20),
                    _code(i.target),
                    _b(i.by),
                    _b(i.reason, 300) if i.reason else "",
                    f"{i.cancelled:,}",
                ]
                for i in h.items
            ),
        )
    return out


def _behaviour(report: Report) -> list[str]:
    out = ['<h2 id="report-behaviour">Sequence, limit and novelty hits</h2>']
    if not report.behaviour:
        out.append(
            '<p class="empty">No call completed a sequence, reached a limit or did something '
            "new.</p>"
        )
        return out
    out += _table(
        "behaviour-table",
        [("kind", False), ("rule", False), ("calls", True), ("verdicts", False), ("agents", False)],
        (
            [
                esc(b.kind, 20),
                _code(b.id),
                f"{b.hits:,}",
                ", ".join(f"{esc(v, 40)} {n:,}" for v, n in b.verdicts.items()),
                ", ".join(f"{_code(a)} {n:,}" for a, n in b.agents.items()),
            ]
            for b in report.behaviour
        ),
    )
    return out


def _autonomy(report: Report) -> list[str]:
    a, g = report.autonomy, report.grants
    out = ['<h2 id="report-autonomy">Autonomy and standing approvals</h2>', '<dl class="stats">']
    out.append(_stat("autonomy-promoted", "promotions", f"{a.promoted:,}"))
    out.append(_stat("autonomy-demoted", "demotions", f"{a.demoted:,}"))
    for name in ("created", "used", "revoked", "expired"):
        out.append(_stat(f"grants-{name}", f"standing approvals {name}", f"{getattr(g, name):,}"))
    out.append("</dl>")
    if a.items:
        out += _table(
            "autonomy-table",
            [
                ("time (UTC)", False),
                ("change", False),
                ("agent", False),
                ("tool", False),
                ("rule", False),
                ("reason", False),
            ],
            (
                [
                    when(i.at),
                    esc(i.kind, 20),
                    _code(i.agent),
                    _code(i.tool),
                    _code(i.rule),
                    _b(i.reason, 300) if i.reason else "",
                ]
                for i in a.items
            ),
        )
    return out


def _policies(report: Report) -> list[str]:
    p = report.policies
    out = ['<h2 id="report-policies">Policy versions in force</h2>']
    out += _table(
        "policies-table",
        [
            ("policy (sha256)", False),
            ("calls", True),
            ("first call", False),
            ("last call", False),
            ("", False),
        ],
        (
            [
                _code(v.digest[:12], 20),
                f"{v.calls:,}",
                when(v.first_seen),
                when(v.last_seen),
                "<strong>loaded now</strong>" if v.loaded else "",
            ]
            for v in p.versions
        ),
    )
    out.append(
        f'<p class="muted" id="policies-unrecorded">Calls whose event names no policy version: '
        f"{p.unrecorded:,}.</p>"
    )
    return out


# The legend swatches of the calls table take the charts' colours (CSS can't read Python).
_SWATCH_CSS = "\n".join(
    f'.swatch[data-verdict="{k}"] {{ background: {c}; }}' for k, c in COLOURS.items()
)
