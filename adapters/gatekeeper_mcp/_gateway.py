"""The gateway: an MCP server to agents, an MCP client to upstreams, a gate in between.

Every ``tools/call`` goes through the same gate as a guarded function: the
policy classifies it (with ``server:`` the upstream's name, and the tool's
MCP annotations as hints that only ever add caution), allowed calls are
forwarded at once, held calls wait in the store for a person (the client
meanwhile gets progress notices, so it does not time out), and only an
approved call is sent upstream, with exactly the approved arguments. What
does not run comes back as a tool result with ``isError`` and the sentence
the model reads. A client that cancels its request withdraws the request.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from mcp import types
from mcp.server import NotificationOptions, Server, ServerRequestContext
from mcp.server.auth.middleware.auth_context import get_access_token

from gatekeeper import Gatekeeper
from gatekeeper._answers import Response
from gatekeeper._config_mcp import McpConfig
from gatekeeper._errors import GatekeeperError, StoreUnavailable, ToolCallBlocked
from gatekeeper._framework import arefuse_unknown_tool
from gatekeeper._session import on_held
from gatekeeper._text import pretty_json
from gatekeeper._version import __version__
from gatekeeper.logs import get_logger
from gatekeeper.models import ApprovalRequest

from ._catalog import CHANGED_RULE, Offered, Pins, PinsError, offer
from ._upstream import Upstream, UpstreamDown, UpstreamFailed

__all__ = ["Gateway", "Identity"]

log = get_logger("gatekeeper.mcp")

_REFRESH_EVERY = 60.0  # seconds an upstream's tool list is trusted before it is read again
_RETRY_LIST = 10.0  # seconds before an upstream whose tools could not be listed is tried again
_LIST_PATIENCE = 5.0  # seconds tools/list waits for upstreams not listed yet
_PINS_EVERY = 1.0  # seconds between looks at the pins file (for `gatekeeper mcp accept`)


@dataclass(frozen=True)
class Identity:
    """Who is calling: the agent, its scopes, and its gatekeeper session."""

    agent: str
    scopes: tuple[str, ...]
    session_id: str


class ResultTooLarge(Exception):
    """The upstream's result is larger than the gateway passes back."""


class UpstreamToolError(Exception):
    """The upstream ran the tool and answered with ``isError``: passed back unchanged."""

    def __init__(self, result: types.CallToolResult, summary: str) -> None:
        super().__init__(summary)
        self.result = result


@dataclass(frozen=True)
class Passed:
    """An upstream result on its way back; its repr is what the audit log records."""

    result: types.CallToolResult
    size: int
    sha256: str
    excerpt: str

    def __repr__(self) -> str:
        return f"MCP result: {self.size} bytes, sha256 {self.sha256}, begins {self.excerpt!r}"


def _excerpt(result: types.CallToolResult, limit: int) -> str:
    parts: list[str] = []
    for block in result.content:
        text = getattr(block, "text", None)
        parts.append(text if isinstance(text, str) else f"[{block.type}]")
    whole = " ".join(parts)
    return whole if len(whole) <= limit else whole[:limit] + "…"


def _error(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


@dataclass
class _Held:
    """A call's state, for its progress notices (and the elicitation, if any)."""

    started: float = field(default_factory=time.monotonic)
    request: ApprovalRequest | None = None
    held: anyio.Event = field(default_factory=anyio.Event)
    scopes: list[anyio.CancelScope] = field(default_factory=list)  # of the tasks beside it


class Gateway:
    """The MCP gateway of one config: its upstreams, its catalog, its server."""

    def __init__(
        self,
        gate: Gatekeeper,
        config: McpConfig,
        *,
        base_dir: str | Path = ".",
        default_agent: str = "default",
        refresh_every: float = _REFRESH_EVERY,
    ) -> None:
        self.gate = gate
        self.config = config
        self.pins = Pins(Path(base_dir, config.pins))
        self.upstreams = {u.name: Upstream(u, self._tools_changed) for u in config.upstreams}
        self._configs = {u.name: u for u in config.upstreams}
        self._offers: dict[str, dict[str, Offered]] = {u.name: {} for u in config.upstreams}
        self._listed_at: dict[str, float] = {}
        self._failed_at: dict[str, float] = {}
        self._catalog_lock = anyio.Lock()
        self._merged: dict[str, Offered] | None = None  # every offer by name, until a relist
        self._listed: dict[str, list[types.Tool]] = {}  # each upstream's tools as last read
        self._pins_stamp: tuple[int, int, int] | None = None  # the pins file as last checked
        self._pins_looked = -1e9
        self._pins_problem: PinsError | None = None
        self._relisting: set[str] = set()  # upstreams being read in the background
        self._tasks: anyio.abc.TaskGroup | None = None  # for each call's keep-alive
        self.refresh_every = refresh_every
        self.stdio_identity = Identity(
            agent=config.agent or default_agent,
            scopes=tuple(config.scopes),
            session_id=f"mcp-{secrets.token_hex(8)}",
        )
        self._tokens = {t.token_sha256: t for t in config.http.tokens}
        self._session_owner: dict[str, str] = {}  # MCP session id -> its agent's token sha256
        # Whether the HTTP transport opened this MCP session (set by http_app).
        self.session_known: Any = lambda _session: False
        self._instance = secrets.token_hex(6)
        self._downstream: set[Any] = set()  # server sessions told when the tool list changes
        self.transport = "stdio"
        self.server: Server[Gateway] = Server(
            "gatekeeper",
            version=__version__,
            instructions=(
                "Tools from several MCP servers behind gatekeeper. Some calls wait for a person "
                "to approve them; a refused call says why."
            ),
            lifespan=self._lifespan,
            get_tool_input_schema=self._input_schema,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )

    # -- lifecycle ---------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def run_upstreams(self) -> AsyncIterator[Gateway]:
        """Keep every upstream connected while the block runs."""
        async with anyio.create_task_group() as tg:
            for upstream in self.upstreams.values():
                tg.start_soon(upstream.supervise)
            self._tasks = tg
            try:
                yield self
            finally:
                self._tasks = None
                for upstream in self.upstreams.values():
                    upstream.stop()
                tg.cancel_scope.cancel()

    @contextlib.asynccontextmanager
    async def _lifespan(self, _server: Server[Gateway]) -> AsyncIterator[Gateway]:
        async with self.run_upstreams():
            yield self

    def init_options(self) -> Any:
        return self.server.create_initialization_options(NotificationOptions(tools_changed=True))

    # -- the catalog -------------------------------------------------------------------------
    async def _tools_changed(self) -> None:
        for session in list(self._downstream):
            try:
                await session.send_tool_list_changed()
            except Exception:  # a client that went away: forget it
                self._downstream.discard(session)

    async def catalog(
        self, for_tool: str | None = None, *, patience: float | None = None
    ) -> dict[str, Offered]:
        """Every tool offered now, by the name agents call it.

        Only an upstream never listed yet is waited for (for a call, only the one
        whose prefix the tool has); one that is due to be read again is read in
        the background meanwhile, so one upstream that is slow, down or restless
        never holds up calls to the others. ``patience``: at most that long for
        those never listed (read on in the background; clients are told when
        their tools arrive).
        """
        now = time.monotonic()
        if now - self._pins_looked >= _PINS_EVERY:  # an operator's `mcp accept`, or an edit
            self._pins_looked = now
            if self.pins.stamp() != self._pins_stamp:
                self._merged = None
        waiting = self._waiting(for_tool)
        if waiting and patience is not None and self._tasks is not None:
            for name in waiting:
                self._relist_soon(name)
            with anyio.move_on_after(patience):
                while any(name in self._relisting for name in waiting):  # noqa: ASYNC110
                    await anyio.sleep(0.02)  # (the relists are tasks of the gateway's group)
            waiting = []
        if self._tasks is not None:
            for name in self._stale():
                if name not in waiting:
                    self._relist_soon(name)
        if self._merged is not None and not waiting:
            return self._merged
        async with self._catalog_lock:
            if patience is None:
                waiting = self._waiting(for_tool) if self._tasks is not None else self._stale()
            if waiting:  # read them side by side: one slow upstream does not hold up the rest
                async with anyio.create_task_group() as tg:
                    for name in waiting:
                        tg.start_soon(self._relist, name)
            if self._merged is None:
                # Every list checked against the pins as they are now, then offered.
                self._pins_problem = None
                for name, tools in self._listed.items():
                    self._offers[name] = self._offer_all(name, tools)
                self._pins_stamp = self.pins.stamp()
                if self._pins_problem is not None:
                    raise self._pins_problem  # not cached: tried again on the next call
                self._merged = {k: v for offers in self._offers.values() for k, v in offers.items()}
            return self._merged

    def _waiting(self, for_tool: str | None) -> list[str]:
        """The upstreams a caller must wait for: never listed, never failed (and own the tool)."""
        return [
            name
            for name, config in self._configs.items()
            if name not in self._listed
            and name not in self._failed_at
            and (for_tool is None or for_tool.startswith(config.tool_prefix))
        ]

    def _relist_soon(self, name: str) -> None:
        """Read ``name``'s tools again in the background (once at a time)."""
        if name in self._relisting or self._tasks is None:
            return
        self._relisting.add(name)

        async def relist() -> None:
            before = {t.name for t in self._listed.get(name, [])}
            try:
                await self._relist(name)
                if name in self._listed and {t.name for t in self._listed[name]} != before:
                    await self._tools_changed()  # e.g. an upstream that came up late
            except Exception:
                log.exception("reading the tools of upstream %s failed", name)
                self._failed_at[name] = time.monotonic()
            finally:
                self._relisting.discard(name)

        self._tasks.start_soon(relist)

    def _stale(self) -> list[str]:
        """The upstreams whose tool list is due to be read again."""
        now = time.monotonic()
        return [
            name
            for name, upstream in self.upstreams.items()
            if (
                # told its list changed (at most once a second), or not read for a while
                (upstream.tools_stale and now - self._listed_at.get(name, -1e9) >= 1.0)
                or now - self._listed_at.get(name, -1e9) >= self.refresh_every
            )
            and now - self._failed_at.get(name, -1e9) >= _RETRY_LIST
        ]

    async def _relist(self, name: str) -> None:
        try:
            tools = await self.upstreams[name].list_tools()
        except UpstreamDown as exc:
            # Its tools stay as last seen (calls of them get the error); tried again later.
            if str(exc) != self.upstreams[name].error:  # the supervisor has said that one
                log.warning("%s", exc)
            self._failed_at[name] = time.monotonic()
            return
        self._listed_at[name] = time.monotonic()
        self._failed_at.pop(name, None)
        self._listed[name] = tools
        self._merged = None

    def _offer_all(self, upstream: str, tools: list[types.Tool]) -> dict[str, Offered]:
        config = self._configs[upstream]
        offers: dict[str, Offered] = {}
        now = self.gate.clock.now()
        for tool in tools:
            made = offer(config, tool)
            if isinstance(made, str):
                log.warning("%s", made)
                continue
            if made.name in offers:
                log.warning(
                    "upstream %s advertises tool %s twice; the first is offered",
                    upstream,
                    json.dumps(tool.name[:80]),
                )
                continue
            try:
                checked = self.pins.check(made, now)
            except PinsError as exc:  # nothing of this upstream is offered unchecked
                log.error("%s", exc)
                self._pins_problem = PinsError(
                    f"the MCP gateway can't check its tools against their pins, so it offers "
                    f"none: {exc}"
                )
                return {}
            if checked.changed:
                log.warning("%s", checked.changed)
            offers[made.name] = checked
        return offers

    def _input_schema(self, name: str) -> Mapping[str, Any] | None:
        for offers in self._offers.values():
            if name in offers:
                schema = offers[name].defn.get("input_schema")
                return schema if isinstance(schema, dict) else None
        return None

    def _spawn(self, state: _Held, job: Any, *args: Any) -> None:
        """Run ``job`` beside a call, in the gateway's task group, until the call ends."""
        scope = anyio.CancelScope()
        state.scopes.append(scope)

        async def guarded() -> None:
            with scope:
                try:
                    await job(*args)
                except Exception:  # never the gateway's end: the call itself goes on
                    log.exception("a task beside a tool call failed")

        if self._tasks is None:
            raise RuntimeError("the gateway is not running (Gateway.run_upstreams)")
        self._tasks.start_soon(guarded)

    # -- identity -------------------------------------------------------------------------------
    def verify(self, token: str) -> Any:
        """The agent a bearer token belongs to (its config entry), or None."""
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
        return self._tokens.get(digest)

    def identity(self, ctx: ServerRequestContext[Any]) -> Identity:
        if self.transport == "stdio":
            return self.stdio_identity
        access = get_access_token()
        entry = self._tokens.get(access.client_id) if access is not None else None
        if entry is None:  # the HTTP app refuses these before a handler runs
            raise PermissionError("this request carries no known agent token")
        request = ctx.request
        session = request.headers.get("mcp-session-id") if request is not None else None
        sid = f"mcp-{entry.agent}-{self._instance}"  # no session: one per agent per process
        if session and self.session_known(session):
            # A session the SDK opened (and binds to the token that opened it). A header
            # it does not know (the 2026 protocol has no sessions, and does not check it)
            # is the agent's own choice, and would let it start afresh at will.
            owner = self._session_owner.setdefault(session, entry.token_sha256)
            if owner != entry.token_sha256:
                raise PermissionError("this MCP session belongs to another agent")
            sid = f"mcp-{session}"
        return Identity(agent=entry.agent, scopes=tuple(entry.scopes), session_id=sid)

    # -- tools/list --------------------------------------------------------------------------
    async def _list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        self._remember(ctx)
        who = self.identity(ctx)
        offers = await self.catalog(patience=_LIST_PATIENCE)
        tools = [
            o.as_tool()
            for o in offers.values()
            if not (
                self.config.hide_denied
                and self.gate.policy.denies_outright(o.name, who.agent, o.upstream)
            )
        ]
        return types.ListToolsResult(tools=tools)

    def _remember(self, ctx: ServerRequestContext[Any]) -> None:
        with contextlib.suppress(Exception):
            if ctx.session.can_send_request:
                self._downstream.add(ctx.session)

    # -- tools/call --------------------------------------------------------------------------
    async def _call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        who = self.identity(ctx)
        args = params.arguments if params.arguments is not None else {}
        try:
            offers = await self.catalog(for_tool=params.name)
        except PinsError as exc:
            return _error(f"{params.name[:200]} did not run: {exc}")
        found = offers.get(params.name)
        async with self.gate.session(agent=who.agent, scopes=who.scopes, session_id=who.session_id):
            if found is None:
                name = params.name
                if len(name) > 200:  # audited and echoed bounded, with what identifies it
                    whole = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()
                    name = f"{name[:120]}…(sha256 {whole[:16]}, {len(params.name)} chars)"
                refused = await arefuse_unknown_tool(self.gate, name, args)
                return _error(refused.model_message)
            problem = _invalid(found, args)
            if problem is not None:
                return _error(problem)
            return await self._run(ctx, found, args)

    async def _run(
        self, ctx: ServerRequestContext[Any], found: Offered, args: dict[str, Any]
    ) -> types.CallToolResult:
        upstream = self.upstreams[found.upstream]
        state = _Held()
        limit, excerpt = self.config.max_result_bytes, self.config.audit_excerpt

        async def relay(progress: float, total: float | None, message: str | None) -> None:
            # Said by the upstream, not by gatekeeper: marked so, and bounded.
            said = f"[{found.upstream}] {message[:1000]}" if message else f"[{found.upstream}]"
            with contextlib.suppress(Exception):
                await ctx.session.report_progress(progress, total, said)

        async def forward(**approved: Any) -> Passed:
            result = await upstream.call(found.original, approved, progress=relay)
            if result.meta:  # its serverInfo stamp, and anything in gatekeeper's name, dropped
                result.meta.pop(types.SERVER_INFO_META_KEY, None)
                for k in [k for k in result.meta if k.lower().startswith("gatekeeper")]:
                    del result.meta[k]
            body = result.model_dump_json(by_alias=True, exclude_none=True)
            size = len(body.encode())
            if size > limit:
                raise ResultTooLarge(
                    f"the result of {found.name} is {size} bytes, more than this gateway passes "
                    f"back ({limit}, mcp.max_result_bytes); the tool ran, its result was dropped"
                )
            if result.is_error:
                raise UpstreamToolError(result, _excerpt(result, excerpt))
            sha = hashlib.sha256(body.encode()).hexdigest()
            return Passed(result, size, sha, _excerpt(result, excerpt))

        tool = self.gate.tool(
            found.name,
            forward,
            irreversible=found.irreversible,
            risk=found.risk,
            schema=found.defn.get("input_schema") or None,
            server=found.upstream,
        )
        if found.changed is not None:
            tool.spec.must_ask = (CHANGED_RULE, found.changed)

        def held(request: ApprovalRequest) -> None:
            state.request = request
            state.held.set()

        # Beside the call: its keep-alive, and the question to the person at the client.
        # Tasks of the gateway's own group, not a group per call: that is cheaper.
        self._spawn(state, self._keep_alive, ctx, state)
        if self._can_elicit(ctx):
            self._spawn(state, self._elicit, ctx, state)
        try:
            with on_held(held):
                ran = await tool.arun(args)
        except ToolCallBlocked as exc:
            return _error(exc.model_message)
        except UpstreamToolError as exc:
            return exc.result
        except (ResultTooLarge, UpstreamFailed, UpstreamDown) as exc:
            return _error(str(exc))
        except StoreUnavailable as exc:
            return _error(
                f"{found.name} did not run: gatekeeper can't reach its store ({exc}); "
                "nothing is run unchecked"
            )
        except GatekeeperError as exc:  # e.g. a store user that may not act for this agent
            log.warning("%s did not run: %s", found.name, exc)
            return _error(f"{found.name} did not run: {exc}")
        finally:
            for scope in state.scopes:
                scope.cancel()
        if isinstance(ran.result, Response):  # a person wrote the result instead of running it
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=str(ran.result))],
                meta={"gatekeeper/approval": ran.note} if ran.note else None,
            )
        result: types.CallToolResult = ran.result.result
        note = ran.note
        if note:  # unchanged content; what the approvers did goes alongside
            meta = dict(result.meta or {})
            meta["gatekeeper/approval"] = note
            result = result.model_copy(update={"meta": meta})
        return result

    async def _keep_alive(self, ctx: ServerRequestContext[Any], state: _Held) -> None:
        """Progress notices while the call waits, so clients don't time out: one at once
        when it is held, then one every ``progress_every`` seconds."""
        beats, told_held = 0, False
        while True:
            with anyio.move_on_after(self.config.progress_every):
                if told_held:
                    await anyio.sleep_forever()
                await state.held.wait()
            beats += 1
            req = state.request
            if req is not None:
                told_held = True
                message = (
                    f"held for a person's approval (request {req.id}): waiting for a decision "
                    "in Slack, the web console or `gatekeeper approve`"
                )
            else:
                message = "running"
            with contextlib.suppress(Exception):
                await ctx.session.report_progress(float(beats), None, message)

    # -- elicitation ----------------------------------------------------------------------------
    def _can_elicit(self, ctx: ServerRequestContext[Any]) -> bool:
        if self.config.elicit is None or self.transport != "stdio":
            return False
        if not self.gate.store.decision_keys.can_decide:  # `mcp serve` refuses to start so
            return False
        try:
            capable = ctx.session.check_client_capability(
                types.ClientCapabilities(elicitation=types.ElicitationCapability())
            )
            return bool(capable and ctx.session.can_send_request)
        except Exception:
            return False

    async def _elicit(self, ctx: ServerRequestContext[Any], state: _Held) -> None:
        """Ask the person at the MCP client, once the call is held."""
        await state.held.wait()
        req = state.request
        approver = self.config.elicit
        if req is None or approver is None:
            return
        shown = pretty_json(req.call.args, limit=4000)
        reasons = "; ".join(req.classification.reasons)[:1000]
        message = (
            f"gatekeeper holds a call for your approval.\n\nTool: {req.call.tool}\n"
            f"Arguments (exactly what will run):\n{shown}\n\nWhy it is held: {reasons}\n\n"
            f"Approve as {approver}?"
        )
        schema = {
            "type": "object",
            "properties": {
                "decision": {"type": "string", "enum": ["approve", "deny"], "title": "Decision"},
                "comment": {"type": "string", "title": "Comment (optional)"},
            },
            "required": ["decision"],
        }
        try:
            answer = await ctx.session.elicit_form(
                message, schema, related_request_id=ctx.request_id
            )
        except Exception as exc:
            log.warning("could not ask through the MCP client: %s", exc)
            return
        if answer.action != "accept" or not isinstance(answer.content, dict):
            return  # declined or dismissed: the request waits for the other channels
        decision = answer.content.get("decision")
        comment = answer.content.get("comment")
        comment = comment if isinstance(comment, str) and comment.strip() else None
        try:
            if decision == "approve":
                await anyio.to_thread.run_sync(
                    lambda: self.gate.approve(
                        req.id,
                        approver=approver,
                        comment=comment,
                        via="mcp-elicitation",
                        expect_digest=req.call.args_digest,
                    )
                )
            elif decision == "deny":
                await anyio.to_thread.run_sync(
                    lambda: self.gate.deny(
                        req.id, approver=approver, comment=comment, via="mcp-elicitation"
                    )
                )
        except Exception as exc:  # decided elsewhere first, or no signing key here
            log.warning("the decision given through the MCP client was not recorded: %s", exc)


def _invalid(found: Offered, args: Any) -> str | None:
    """Why ``args`` don't fit the tool's input schema, or None."""
    if not isinstance(args, dict):
        return f"{found.name}: the arguments must be a JSON object"
    import jsonschema  # type: ignore[import-untyped]  # jsonschema ships no type hints

    validator = found.validator
    if validator is None:
        return None
    try:
        error = jsonschema.exceptions.best_match(validator.iter_errors(args))
    except Exception as exc:  # a schema that breaks the validator: the upstream checks its input
        log.warning("could not check the arguments of %s: %s", found.name, exc)
        return None
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(the arguments)"
    return f"{found.name}: invalid arguments at {where}: {error.message[:500]}; nothing ran"
