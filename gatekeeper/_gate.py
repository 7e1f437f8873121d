"""``Gatekeeper``: guards tools, holds calls for people, releases approved ones."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import inspect
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from . import _pipeline as pipe
from ._answers import QUESTION_DOC, QUESTION_TOOL, Response, as_question
from ._canonical import digest
from ._clock import Clock, SystemClock, new_id
from ._decisions import Decisions
from ._errors import (
    AgentHalted,
    ArgumentsChanged,
    InvalidToolCall,
    PolicyError,
    TamperingDetected,
    ToolCallBlocked,
    ToolCallDenied,
)
from ._flow import APPROVED_QUESTION, adrive, drive, guarded_call
from ._framework import GuardedTool, arefuse_unknown_tool, make_tool, refuse_unknown_tool
from ._grant_decisions import GrantDecisions
from ._session import Session, check_call_key, current_call_key, current_session
from ._telemetry import OFF, Telemetry
from ._tool import ToolSpec
from ._votes import answered_by, approved_run, denied_by
from .audit import draft
from .logs import get_logger, request_fields
from .models import (
    ApprovalRequest,
    Approver,
    HaltScope,
    Risk,
    ToolCall,
)
from .policy import Policy
from .store import MemoryStore, Store
from .store._redis_ops import CLUSTER_GLOBAL_LIMIT

if TYPE_CHECKING:
    from .channels import Channel

__all__ = ["Gatekeeper"]

P = ParamSpec("P")
R = TypeVar("R")
log = get_logger("gatekeeper.calls")

#: Seconds the clocks of the agent, the deciders and Redis may disagree by: a
#: vote signed later than the request's expiry plus this does not count. (The
#: agent itself stops waiting at its own expiry, on its own clock.)
CLOCK_SKEW = 5.0


class Gatekeeper(Decisions, GrantDecisions):
    """The checkpoint between an agent and its tools.

    Example::

        gate = Gatekeeper(policy=Policy.from_file("policy.yaml"))

        @gate.guard(irreversible=True, scopes={"payments:write"})
        def refund(order_id: str, amount: float) -> str: ...

        with gate.session(agent="billing-bot", reason="customer asked"):
            refund("A-1", 20.0)   # waits for a person; runs only if approved

    ``approvers=None`` accepts any approver name (handy in notebooks and
    tests); configs made by :meth:`from_config` always list them.
    """

    def __init__(
        self,
        *,
        policy: Policy | None = None,
        store: Store | None = None,
        channels: Sequence[Channel] = (),
        approvers: Iterable[Approver] | None = None,
        clock: Clock | None = None,
        ids: Callable[[], str] = new_id,
        default_agent: str = "default",
        default_timeout: float = 900.0,
        max_args_bytes: int = 2 * 1024 * 1024,
        resume_within: float = 86400.0,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.clock = clock or getattr(store, "clock", None) or SystemClock()
        self.policy = policy or Policy.empty()
        self.store: Store = store if store is not None else MemoryStore(clock=self.clock)
        keys = getattr(self.store, "keys", None)
        for rule in self.policy.limits:
            if rule.per == "global" and getattr(keys, "cluster", False):
                raise PolicyError(
                    f"limit {rule.id!r}: {CLUSTER_GLOBAL_LIMIT}", rule=rule.id, field="per"
                )
        self.approvers = None if approvers is None else {a.name: a for a in approvers}
        self.default_timeout = default_timeout
        self.max_args_bytes = max_args_bytes
        #: Seconds after its expiry an approved, parked call (one whose run ended
        #: to be resumed later) may still be run when the run resumes.
        self.resume_within = resume_within
        self._ids = ids
        #: Traces and metrics (docs/observability.md); by default none, at no cost.
        self.telemetry = telemetry if telemetry is not None else OFF
        self._default_session = Session.create(default_agent)
        self._demoted: set[str] = set()  # autonomy grants this process saw end (said once)
        self._questions: set[str] = set()  # names of this gate's ask-a-person tools
        self._guarded: set[str] = set()  # names of the functions guarded with @gate.guard
        self.channels: list[Channel] = []
        for channel in channels:
            self.add_channel(channel)

    @classmethod
    def from_config(cls, path: str | Path | None = None, **overrides: Any) -> Gatekeeper:
        """A gate built from a ``gatekeeper.yaml`` (default: ``$GATEKEEPER_CONFIG``)."""
        from ._config import load_config

        return load_config(path).build_gate(**overrides)

    def add_channel(self, channel: Channel) -> None:
        """Tell ``channel`` about every new request from now on."""
        bind = getattr(channel, "bind", None)
        if callable(bind):
            bind(self)
        self.channels.append(channel)

    # -- guarding ---------------------------------------------------------------------
    @overload
    def guard(self, func: Callable[P, R], /) -> Callable[P, R]: ...

    @overload
    def guard(
        self,
        func: None = None,
        /,
        *,
        name: str | None = None,
        scopes: Iterable[str] = (),
        irreversible: bool = False,
        risk: Risk | str | None = None,
        exclude: Iterable[str] = (),
    ) -> Callable[[Callable[P, R]], Callable[P, R]]: ...

    def guard(
        self,
        func: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        scopes: Iterable[str] = (),
        irreversible: bool = False,
        risk: Risk | str | None = None,
        exclude: Iterable[str] = (),
    ) -> Any:
        """Put every call of a function through the gate. Bare or with options.

        ``scopes`` are what the tool needs; ``irreversible`` tools never run
        unattended unless a rule allows it explicitly; ``exclude`` names
        parameters that are not shown, hashed or policy-checked (framework
        context objects). The wrapper keeps the function's name, docstring,
        signature and ``__wrapped__``.
        """

        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            spec = ToolSpec.create(
                fn,
                name=name,
                scopes=scopes,
                irreversible=irreversible,
                risk=risk,
                exclude=exclude,
            )
            wrapper: Callable[..., Any]
            if spec.is_async:

                @functools.wraps(fn)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    return await self._acall(spec, args, kwargs)

                wrapper = async_wrapper
            else:

                @functools.wraps(fn)
                def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                    return self._call(spec, args, kwargs)

                wrapper = sync_wrapper
            if spec.name in self._questions:
                raise ValueError(
                    f"{spec.name!r} is this gate's ask-a-person tool (gate.ask_tool); "
                    "give the tool another name"
                )
            self._guarded.add(spec.name)
            self.telemetry.know_tool(spec.name)
            wrapper.__dict__["__gatekeeper_tool__"] = spec  # adapters find the spec here
            return wrapper

        return decorate(func) if func is not None else decorate

    def tool(
        self,
        name: str,
        func: Callable[..., Any],
        *,
        scopes: Iterable[str] = (),
        irreversible: bool = False,
        risk: Risk | str | None = None,
        schema: Mapping[str, Any] | None = None,
        server: str | None = None,
    ) -> GuardedTool:
        """Gate a tool whose arguments arrive as one mapping (a framework's tool call).

        ``func`` runs as ``func(**args)``, with exactly the approved (or
        edited) arguments. ``schema`` (the tool's JSON Schema, as the model
        is shown it) lets approvers' edits be checked when they are made.
        ``server`` names where the tool lives (the MCP gateway passes the
        upstream's name), for policy rules that match ``server:``.
        This is what the framework adapters build on; see
        :class:`~gatekeeper.GuardedTool`.
        """
        self.telemetry.know_tool(name)
        return make_tool(
            self,
            name,
            func,
            scopes=scopes,
            irreversible=irreversible,
            risk=risk,
            schema=schema,
            server=server,
        )

    # -- asking a person -------------------------------------------------------------
    def ask_tool(
        self, name: str = QUESTION_TOOL, *, description: str | None = None
    ) -> Callable[[str], str]:
        """A tool the agent calls to ask a person a question and get the answer back.

        Returns a plain function ``name(question: str) -> str`` with a
        docstring a model can read (``description`` replaces it), ready to
        hand to a framework like any tool — it is already behind this gate,
        so don't wrap it again. Each call is held as a *question*: the people
        who decide requests see it in Slack, the console and the CLI and
        answer it (``respond``) or decline it (``deny``, with a reason the
        model reads, raised as :class:`~gatekeeper.ApprovalDenied`). It
        never runs anything and can't be approved. The policy judges it like
        any tool, by ``name``: a rule can route questions to a group, set
        their timeout, or deny them; an allowed question is still held.
        Framework adapters that gate tools by name (the LangChain middleware,
        say) hold calls of ``name`` as questions too.
        """

        if name in self._guarded:
            raise ValueError(
                f"this gate already guards a tool named {name!r}: give the ask-a-person "
                "tool another name (gate.ask_tool(name=...))"
            )

        def ask(question: str) -> str:
            raise AssertionError("never runs: a question is answered by a person")

        ask.__name__ = ask.__qualname__ = name
        ask.__doc__ = description or QUESTION_DOC
        spec = ToolSpec.create(ask, name=name, scopes=(), irreversible=False, risk=None, exclude=())
        spec.question = True
        self._questions.add(name)

        @functools.wraps(ask)
        def ask_a_person(question: str) -> str:
            result: str = self._call(spec, (question,), {})
            return result

        ask_a_person.__dict__["__gatekeeper_tool__"] = spec
        return ask_a_person

    def ask(self, question: str, *, reason: str | None = None) -> Response:
        """Ask a person ``question`` and wait for the answer (see :meth:`ask_tool`)."""
        spec = self._question_spec()
        answer: Response = self._call(spec, (question,), {}, reason)
        return answer

    async def aask(self, question: str, *, reason: str | None = None) -> Response:
        """:meth:`ask` for async code."""
        spec = self._question_spec(is_async=True)
        answer: Response = await self._acall(spec, (question,), {}, reason)
        return answer

    def _question_spec(self, *, is_async: bool = False) -> ToolSpec:
        async def aask(question: str) -> str:
            raise AssertionError("never runs: a question is answered by a person")

        def ask(question: str) -> str:
            raise AssertionError("never runs: a question is answered by a person")

        spec = ToolSpec.create(
            aask if is_async else ask,
            name=QUESTION_TOOL,
            scopes=(),
            irreversible=False,
            risk=None,
            exclude=(),
        )
        spec.question = True
        self._questions.add(QUESTION_TOOL)
        return spec

    def refuse_unknown_tool(
        self, name: str, args: Mapping[str, Any], *, reason: str | None = None
    ) -> ToolCallDenied:
        """Audit a call to a tool that does not exist and return the error for the model."""
        return refuse_unknown_tool(self, name, args, reason=reason)

    async def arefuse_unknown_tool(
        self, name: str, args: Mapping[str, Any], *, reason: str | None = None
    ) -> ToolCallDenied:
        """:meth:`refuse_unknown_tool` for async code (the store's async face)."""
        return await arefuse_unknown_tool(self, name, args, reason=reason)

    def session(
        self,
        agent: str | None = None,
        *,
        scopes: Iterable[str] = (),
        reason: str | None = None,
        session_id: str | None = None,
    ) -> Session:
        """A session to run calls in: ``with gate.session(agent=...):`` (or ``async with``)."""
        return Session.create(
            agent or self._default_session.agent,
            scopes=scopes,
            reason=reason,
            session_id=session_id,
        )

    # -- the guarded call (gatekeeper/_flow.py), and the pieces it uses -------------------------
    def _call(
        self,
        spec: ToolSpec,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        reason: str | None = None,
    ) -> Any:
        """One call of a guarded tool, on the store's blocking face."""
        return drive(self, guarded_call(self, spec, args, kwargs, reason))

    async def _acall(
        self,
        spec: ToolSpec,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        reason: str | None = None,
    ) -> Any:
        """One call of a guarded tool, on the store's async face (``store.aio``)."""
        return await adrive(self, guarded_call(self, spec, args, kwargs, reason))

    def _prepare(
        self, spec: ToolSpec, args: tuple[Any, ...], kwargs: Mapping[str, Any], reason: str | None
    ) -> tuple[ToolCall, Any, Any]:
        session = current_session() or self._default_session
        bound = spec.bind(args, kwargs, self.max_args_bytes)
        call = pipe.build_call(self._ids(), spec, bound, session, self.clock.now(), reason)
        cls = self.policy.classify(call)
        if spec.must_ask is not None:
            cls = self.policy.insist(cls, *spec.must_ask)
        if spec.question:
            _check_question(call)
            cls = as_question(cls)
        return call, bound.bound, cls

    def _outcome(self, call: ToolCall, start: float, *, ok: bool, outcome: str) -> None:
        took = (time.perf_counter() - start) * 1000
        event = pipe.outcome_event(call, self.clock.now(), ok=ok, outcome=outcome, duration_ms=took)
        self.store.record_soon([event])

    def _refused(self, call: ToolCall, cls: Any) -> None:
        self.store.record_soon([pipe.call_event(call, cls, kind="call.refused")])

    def _halt_target(self, call: ToolCall, cls: Any) -> tuple[HaltScope, str]:
        scope = cls.halt_scope
        target = {HaltScope.ALL: "*", HaltScope.AGENT: call.agent}.get(scope, call.session_id)
        return scope, target

    def _halt_for(self, call: ToolCall, cls: Any, _cancelled: list[str]) -> AgentHalted:
        scope, target = self._halt_target(call, cls)
        reasons = "; ".join(cls.reasons)
        return AgentHalted(
            f"Tool call {call.tool} halted the {scope.value} {target}: {reasons}".replace(
                "the all *", "every agent"
            ),
            scope=scope.value,
            tool=call.tool,
            call_id=call.id,
        )

    def _new_request(
        self, spec: ToolSpec, call: ToolCall, cls: Any, key: str | None = None, park: bool = False
    ) -> ApprovalRequest:
        timeout = cls.approval.timeout or self.default_timeout
        key = check_call_key(key) if key is not None else current_call_key()
        lease = getattr(self.store, "lease_ttl", None)
        if park:  # nobody waits: the request lives until its expiry, its approval a while after
            if key is None:
                raise InvalidToolCall(
                    f"tool call {call.tool}: a call that does not wait needs a key to be "
                    "resumed by (the framework's tool-call id, or gatekeeper.call_key)",
                    tool=call.tool,
                    call_id=call.id,
                )
            lease = timeout + self.resume_within
        return pipe.new_request(
            self._ids(),
            call,
            cls,
            call.created_at,
            timeout,
            spec.args_schema,
            question=spec.question,
            lease=lease,
            key=key,
            parked=park,
        )

    def _answer(self, held: ApprovalRequest, final: ApprovalRequest) -> Response:
        """The person's answer to ``held``, once its signature checks out.

        Raises :class:`~gatekeeper.TamperingDetected` when no trusted key
        signed it in time, and :class:`~gatekeeper.ToolCallBlocked` when the
        rule that held the call (as this process classified it) takes no
        written answer.
        """
        trusted = self.store.decision_keys.trusted
        deadline = held.expires_at + dt.timedelta(seconds=CLOCK_SKEW)
        decision = answered_by(final, held.call, trusted, deadline)
        call = held.call
        if not held.classification.approval.respond and held.kind != "question":
            raise ToolCallBlocked(
                f"Tool call {call.tool}: {decision.approver} wrote an answer instead of "
                "deciding, but its rule takes none (respond: false)",
                tool=call.tool,
                request_id=held.id,
                call_id=call.id,
            )
        text = decision.response or ""
        return Response(text, approver=decision.approver, request_id=held.id, tool=call.tool)

    def _denial(self, held: ApprovalRequest, final: ApprovalRequest) -> ApprovalRequest:
        """``final`` with who denied it and why as the deciders signed them (not as stored)."""
        denial = denied_by(final, held.call, self.store.decision_keys.trusted)
        return final.model_copy(update={"decided_by": denial.approver, "comment": denial.comment})

    def _approved_question(self, req: ApprovalRequest) -> ToolCallBlocked:
        return ToolCallBlocked(
            f"Question {req.id} was approved, not answered: {APPROVED_QUESTION}",
            tool=req.call.tool,
            request_id=req.id,
            call_id=req.call.id,
        )

    def _release_args(
        self,
        spec: ToolSpec,
        bound: inspect.BoundArguments,
        held: ApprovalRequest,
        final: ApprovalRequest,
    ) -> tuple[inspect.BoundArguments, str]:
        """The arguments to run and their digest, once signed votes approve exactly them.

        ``held`` is the request as this process made it (memory: the call,
        the quorum); ``final`` as the store returned it, which anyone with
        the agent's credentials may have written. Raises TamperingDetected
        or ArgumentsChanged; nothing runs then.
        """
        trusted = self.store.decision_keys.trusted
        deadline = held.expires_at + dt.timedelta(seconds=CLOCK_SKEW)
        run_digest, edited = approved_run(final, held.call, held.quorum, trusted, deadline)
        if edited is not None:
            return spec.rebind(edited, bound), run_digest
        if digest(spec.json_of(bound)) != run_digest:
            self.store.record_soon(
                [pipe.call_event(held.call, held.classification, request=held, kind="call.refused")]
            )
            raise ArgumentsChanged(
                f"Tool call {held.call.tool}: the arguments changed after they were approved",
                tool=held.call.tool,
                request_id=held.id,
                call_id=held.call.id,
            )
        return bound, run_digest

    def _tampering_event(self, held: ApprovalRequest, exc: TamperingDetected) -> dict[str, Any]:
        log.error("refused to release request %s: %s", held.id, exc, extra=request_fields(held))
        call = held.call
        return draft(
            "request.tampering",
            at_ms=int(self.clock.now().timestamp() * 1000),
            actor=f"agent:{call.agent}",
            request_id=held.id,
            call_id=call.id,
            tool=call.tool,
            agent=call.agent,
            session_id=call.session_id,
            data={"problem": exc.message},
        )

    # -- channels --------------------------------------------------------------------------

    def _tell(self, what: str, req: ApprovalRequest) -> None:
        """Call ``notify`` or ``update`` on every channel; a failing one is audited, not fatal."""
        for channel in self.channels:
            try:
                getattr(channel, what)(req)
            except Exception as exc:
                self._channel_failed(channel, req, exc)

    def _channel_failed(
        self, channel: object, req: ApprovalRequest, exc: BaseException, *, now: bool = False
    ) -> None:
        """Audit a channel failure (``now``: durably before returning, for long-lived servers)."""
        log.warning(
            "channel %s failed for request %s: %s",
            type(channel).__name__,
            req.id,
            exc,
            extra=request_fields(req),
        )
        event = draft(
            "channel.failed",
            at_ms=int(self.clock.now().timestamp() * 1000),
            actor="system",
            request_id=req.id,
            call_id=req.call.id,
            tool=req.call.tool,
            agent=req.call.agent,
            session_id=req.call.session_id,
            data={"channel": type(channel).__name__, "error": pipe.outcome_text(exc=exc)},
        )
        if now:
            self.store.record([event])
        else:
            self.store.record_soon([event])

    async def _atell(self, what: str, req: ApprovalRequest) -> None:
        """Async ``_tell``: the channel's ``a<what>``, else ``<what>`` in a thread."""
        for channel in self.channels:
            try:
                coro = getattr(channel, f"a{what}", None)
                if coro is not None:
                    await coro(req)
                else:
                    await asyncio.to_thread(getattr(channel, what), req)
            except Exception as exc:
                self._channel_failed(channel, req, exc)

    def _halted_by(self, cls: Any) -> str:
        return f"policy:{cls.rules[0]}" if cls.rules else "policy"

    def close(self) -> None:
        """Flush the audit log and release the store's connections."""
        self.store.close()


def _check_question(call: ToolCall) -> None:
    """A question is words: refuse anything else before anyone is asked."""
    text = call.args.get("question")
    if set(call.args) != {"question"} or not isinstance(text, str) or not text.strip():
        raise InvalidToolCall(
            f"{call.tool}: ask a question in words: the only argument is `question`, a "
            "non-blank string",
            tool=call.tool,
            call_id=call.id,
        )
