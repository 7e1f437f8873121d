"""``/metrics``: the Prometheus metrics of ``gatekeeper serve`` (docs/observability.md).

Served only when the gate's telemetry has metrics on. Scrapers send a
bearer token (an ``api_tokens`` entry with scope ``read``), as Prometheus
does with ``authorization: {credentials_file: ...}``; with
``telemetry.metrics_public`` the endpoint is open, for a scraper on a
private network.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from ._deps import Refused, check_scope, get_gate, viewer

__all__ = ["router"]

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """The metrics in Prometheus's text format; 404 when metrics are off."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    telemetry = get_gate(request).telemetry
    registry = telemetry.registry
    if registry is None:
        raise Refused(404, "not_found", "metrics are off (telemetry.metrics in gatekeeper.yaml)")
    if not telemetry.metrics_public:
        check_scope(viewer(request), "read")
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
