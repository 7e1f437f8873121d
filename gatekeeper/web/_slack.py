"""``POST /slack/interactions``: Slack's interactivity request URL.

Every request is checked before anything is read from it: the body must be
signed with the app's signing secret (``X-Slack-Signature``), the timestamp
(``X-Slack-Request-Timestamp``) must be within five minutes, and a signature
seen before is a replay. Any failure answers 401/409 and changes nothing.
The answer goes back at once; deciding and updating the message run after it.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Request
from starlette.responses import JSONResponse, Response

from .._errors import GatekeeperError
from ..logs import get_logger
from ._deps import read_bounded

__all__ = ["router"]

log = get_logger("gatekeeper.web")

router = APIRouter(tags=["slack"], include_in_schema=False)

MAX_BODY = 256 * 1024  # Slack's payloads are a few KiB
MAX_SKEW = 300  # seconds, as Slack recommends
REPLAY_TTL = 2 * MAX_SKEW + 60  # a signature outlives its timestamp window


def _refuse(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


@router.post("/slack/interactions")
async def slack_interactions(request: Request, background: BackgroundTasks) -> Response:
    service = getattr(request.app.state, "slack", None)
    if service is None or service.verifier is None:
        return _refuse(404, "not_found", "Slack interactivity over HTTP is not configured")
    body = await read_bounded(request, MAX_BODY)
    if body is None:
        return _refuse(413, "too_large", "the request body is too large")
    timestamp = request.headers.get("x-slack-request-timestamp", "")
    signature = request.headers.get("x-slack-signature", "")
    try:
        skew = abs(time.time() - int(timestamp))
    except ValueError:
        return _refuse(401, "bad_signature", "missing or malformed X-Slack-Request-Timestamp")
    if skew > MAX_SKEW:
        return _refuse(401, "stale", "the request timestamp is more than 5 minutes off")
    if not service.verifier.is_valid(body, timestamp, signature):
        log.warning("slack: refused a request with a bad signature")
        return _refuse(401, "bad_signature", "the Slack signature does not match")
    store = service.gate.store.aio
    try:
        fresh = await store.use_once(f"slack:signature:{signature}", REPLAY_TTL)
    except GatekeeperError as exc:
        return _refuse(503, "unavailable", f"can't check for replays: {exc.message}")
    if not fresh:
        log.warning("slack: refused a replayed request")
        return _refuse(409, "replayed", "this request was already received")
    try:
        form = urllib.parse.parse_qs(body.decode("utf-8"), strict_parsing=True)
        payload: Any = json.loads(form["payload"][0])
        if not isinstance(payload, dict):
            raise ValueError("the payload is not an object")
    except (UnicodeDecodeError, ValueError, KeyError) as exc:
        return _refuse(400, "bad_request", f"not a Slack interaction payload: {exc}")
    reply = service.interactions.handle(payload)
    if reply.work is not None:
        background.add_task(reply.work)  # runs after the answer is sent, in a worker thread
    if reply.body is not None:
        return JSONResponse(reply.body)
    return Response(status_code=200)
