"""The console's transparency report: ``/report``, its downloads, and its stylesheet.

The page shows exactly what ``gatekeeper report --format html`` writes (the
same :func:`~gatekeeper._report.render_html_body`), for anyone signed in with
the ``read`` scope: approvers, and auditors' tokens. Building it reads the
whole audit log once, in the request's worker thread.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from typing import Annotated

from fastapi import APIRouter, Query, Request
from markupsafe import Markup
from starlette.responses import Response

from .._gate import Gatekeeper
from .._report import (
    Report,
    gate_report,
    render_html,
    render_html_body,
    render_json,
    render_markdown,
    window_start,
)
from .._report import parse_time as parse_until
from .._report._html import stylesheet
from ._browse import Gate, Signed
from ._deps import Refused, render

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

Window = Annotated[str, Query(max_length=100)]
_DOWNLOADS = {
    "html": ("text/html; charset=utf-8", render_html),
    "md": ("text/markdown; charset=utf-8", render_markdown),
    "json": ("application/json", render_json),
}


def _report(gate: Gatekeeper, since: str, until: str) -> Report:
    """The report of the window the page's fields give; ValueError names a bad field."""
    now = gate.clock.now()
    start = window_start(since, now)
    end: dt.datetime | None = parse_until(until) if until.strip() else None
    if start is not None and end is not None and end < start:
        raise ValueError(
            f"until {end:%Y-%m-%d %H:%M} UTC is before since {start:%Y-%m-%d %H:%M} UTC"
        )
    return gate_report(gate, since=start, until=end)


@router.get("/report")
def report(
    request: Request, gate: Gate, _viewer: Signed, since: Window = "30d", until: Window = ""
) -> Response:
    try:
        built = _report(gate, since, until)
    except ValueError as exc:
        return render(
            request,
            "report.html",
            status_code=422,
            body=None,
            since=since,
            until=until,
            error=str(exc),
            downloads={},
        )
    query = {"since": since, "until": until}
    downloads = {
        kind: "/report/download?" + urllib.parse.urlencode({**query, "format": kind})
        for kind in _DOWNLOADS
    }
    return render(
        request,
        "report.html",
        body=Markup(render_html_body(built)),  # noqa: S704 - every value in it is escaped there
        since=since,
        until=until,
        error=None,
        downloads=downloads,
    )


@router.get("/report/download")
def download(
    gate: Gate,
    _viewer: Signed,
    since: Window = "30d",
    until: Window = "",
    kind: Annotated[str, Query(alias="format", max_length=10)] = "html",
) -> Response:
    if kind not in _DOWNLOADS:
        raise Refused(422, "invalid", f"format must be html, md or json, not {kind!r}")
    try:
        built = _report(gate, since, until)
    except ValueError as exc:
        raise Refused(422, "invalid", str(exc)) from None
    media_type, draw = _DOWNLOADS[kind]
    name = f"gatekeeper-report-{built.until:%Y%m%d-%H%M}.{kind}"
    return Response(
        draw(built),
        media_type=media_type,
        headers={"content-disposition": f'attachment; filename="{name}"'},
    )


@router.get("/report.css")
def report_css() -> Response:
    """The report's stylesheet (no secrets in it: served to anyone, like /static)."""
    return Response(
        stylesheet(standalone=False),
        media_type="text/css",
        headers={"cache-control": "public, max-age=300"},
    )
