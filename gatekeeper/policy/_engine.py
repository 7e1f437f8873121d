"""The compiled policy: an index of rules by tool name, and ``classify``.

Rules are compiled once, at load. ``classify`` looks up the rules that can
concern ``call.tool`` (a dict for exact names, a bounded cache for names that
glob patterns match), so its cost does not grow with rules for other tools.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal

from .._canonical import digest as _digest
from .._errors import PolicyError
from ..models import (
    ApprovalRequirement,
    BehaviourHit,
    Classification,
    HaltScope,
    Risk,
    ShadowNote,
    ToolCall,
    Verdict,
)
from ._behaviour import (
    CompiledLimit,
    CompiledNovelty,
    CompiledSequence,
    LimitUse,
    NewUse,
    Plan,
    SeqUse,
    StepMatcher,
    hits_from_wire,
)
from ._compiled import Applied, CompiledRule, glob_regex
from ._loading import parse_toml, parse_yaml, validate_document
from ._schema import (
    DEFAULT_RISK,
    AgentSpec,
    AutonomyRule,
    LimitRule,
    NoveltyRule,
    PolicyDocument,
    Rule,
    SequenceRule,
    ToolSpec,
    resolve_predicate,
)

__all__ = ["Policy"]

Watcher = CompiledSequence | CompiledLimit | CompiledNovelty

_GLOB_CHARS = frozenset("*?[")
_CACHE_SIZE: Final = 4096
_RISKS = (Risk.LOW, Risk.MEDIUM, Risk.HIGH, Risk.CRITICAL)
MAX_MISSES: Final = 10  # rules listed by Policy.misses; more are counted


class Policy:
    """A validated, compiled policy. Immutable; safe to share between threads.

    >>> policy = Policy.from_yaml('''
    ... version: 1
    ... rules:
    ...   - {id: read-only, match: {tool: "search_*"}, verdict: allow}
    ... ''')
    >>> policy.rules[0].id
    'read-only'
    """

    __slots__ = (
        "_agents",
        "_allow_all",
        "_answers",
        "_approval_default",
        "_autonomy",
        "_b_cache",
        "_b_exact",
        "_b_globbed",
        "_cache",
        "_exact",
        "_globbed",
        "_limit_rules",
        "_novelty_rules",
        "_sequence_rules",
        "_shadowing",
        "_tools",
        "digest",
        "document",
        "limits",
        "on_store_error",
        "rules",
        "sequences",
        "source",
    )

    document: PolicyDocument
    source: str
    digest: str
    rules: tuple[Rule, ...]
    sequences: tuple[SequenceRule, ...]
    limits: tuple[LimitRule, ...]
    on_store_error: Literal["fail_closed", "allow"]
    _agents: dict[str, frozenset[str]]
    _approval_default: ApprovalRequirement
    _answers: dict[tuple[Any, ...], Classification]
    _cache: dict[str, tuple[CompiledRule, ...]]
    _exact: dict[str, tuple[CompiledRule, ...]]
    _globbed: tuple[tuple[Callable[[str], object], CompiledRule], ...]
    _tools: dict[str, ToolSpec]
    _b_cache: dict[str, tuple[Watcher, ...]]
    _b_exact: dict[str, tuple[Watcher, ...]]
    _b_globbed: tuple[tuple[Callable[[str], object], Watcher], ...]
    _sequence_rules: dict[str, SequenceRule]
    _limit_rules: dict[str, LimitRule]
    _novelty_rules: dict[str, NoveltyRule]
    _autonomy: tuple[tuple[AutonomyRule, StepMatcher], ...]
    _shadowing: bool
    _allow_all: Classification

    def __init__(self, document: PolicyDocument, *, source: str = "<policy>") -> None:
        compiled = tuple(
            CompiledRule(rule, index, _predicate(rule, source))
            for index, rule in enumerate(document.rules)
        )
        exact: dict[str, list[CompiledRule]] = {}
        globbed: list[tuple[Callable[[str], object], CompiledRule]] = []
        for rule in compiled:
            patterns = rule.rule.match.tool
            for name in dict.fromkeys(patterns):  # a name listed twice is still one candidate
                if _GLOB_CHARS.isdisjoint(name):
                    exact.setdefault(name, []).append(rule)
            wild = tuple(p for p in patterns if not _GLOB_CHARS.isdisjoint(p))
            if wild:
                globbed.append((glob_regex(wild), rule))
        defaults = document.defaults.approval
        sets = object.__setattr__
        watched: list[Watcher] = [
            *(CompiledSequence(r, i) for i, r in enumerate(document.sequences)),
            *(CompiledLimit(r, i) for i, r in enumerate(document.limits)),
            *(CompiledNovelty(r, i) for i, r in enumerate(document.novelty)),
        ]
        b_exact: dict[str, list[Watcher]] = {}
        b_globbed: list[tuple[Callable[[str], object], Watcher]] = []
        for item in watched:
            for name in dict.fromkeys(item.tools):
                if _GLOB_CHARS.isdisjoint(name):
                    b_exact.setdefault(name, []).append(item)
            wild = tuple(p for p in item.tools if not _GLOB_CHARS.isdisjoint(p))
            if wild:
                b_globbed.append((glob_regex(wild), item))
        sets(self, "_b_exact", {name: tuple(items) for name, items in b_exact.items()})
        sets(self, "_b_globbed", tuple(b_globbed))
        sets(self, "_b_cache", {})
        sets(self, "_sequence_rules", {r.id: r for r in document.sequences})
        sets(self, "_limit_rules", {r.id: r for r in document.limits})
        sets(self, "_novelty_rules", {r.id: r for r in document.novelty})
        sets(self, "_autonomy", tuple((r, StepMatcher.of(r.match)) for r in document.autonomy))
        sets(
            self,
            "_shadowing",
            document.mode == "shadow" or any(r.shadow for r in compiled),
        )
        sets(
            self,
            "_allow_all",
            Classification(
                verdict=Verdict.ALLOW,
                risk=Risk.LOW,
                reasons=("the policy is in shadow mode: every call runs",),
            ),
        )
        sets(self, "document", document)
        sets(self, "source", source)
        sets(self, "digest", _digest(document.model_dump(mode="json", by_alias=True)))
        sets(self, "rules", tuple(document.rules))
        sets(self, "sequences", tuple(document.sequences))
        sets(self, "limits", tuple(document.limits))
        sets(self, "on_store_error", document.on_store_error)
        sets(self, "_exact", {name: tuple(rules) for name, rules in exact.items()})
        sets(self, "_globbed", tuple(globbed))
        sets(self, "_cache", {})
        sets(self, "_answers", {})
        sets(self, "_tools", dict(document.tools))
        sets(self, "_agents", {name: frozenset(a.scopes) for name, a in document.agents.items()})
        sets(
            self,
            "_approval_default",
            ApprovalRequirement(
                group=defaults.group,
                quorum=defaults.quorum,
                timeout=defaults.timeout,
                escalate_after=defaults.escalate_after,
                respond=defaults.respond,
            ),
        )

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"a Policy is immutable; can't set {name!r}")

    @property
    def default(self) -> Verdict:
        """The verdict when no rule matches (require_approval unless the file says otherwise)."""
        return self.document.default

    def __repr__(self) -> str:
        return f"<Policy {self.source} rules={len(self.rules)} digest={self.digest[:12]}>"

    # -- constructors ---------------------------------------------------------------------

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str = "<policy>") -> Policy:
        """Validate a mapping (as parsed from YAML/TOML/JSON); raises :class:`PolicyError`."""
        return cls(validate_document(data, source), source=source)

    @classmethod
    def from_yaml(cls, text: str, *, source: str = "<policy>") -> Policy:
        """Validate YAML text; errors name the line."""
        return cls(parse_yaml(text, source), source=source)

    @classmethod
    def from_toml(cls, text: str, *, source: str = "<policy>") -> Policy:
        """Validate TOML text."""
        return cls(parse_toml(text, source), source=source)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Policy:
        """Load ``.yaml``/``.yml`` or ``.toml`` by suffix; raises :class:`PolicyError`."""
        file = Path(path)
        source = str(path)
        suffix = file.suffix.lower()
        if suffix not in (".yaml", ".yml", ".toml"):
            raise PolicyError(
                f"{source}: unknown policy file type {suffix or '(none)'!r}; "
                "use .yaml, .yml or .toml",
                source=source,
            )
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise PolicyError(
                f"{source}: the policy file is not UTF-8 text: {exc}", source=source
            ) from exc
        except OSError as exc:
            raise PolicyError(
                f"{source}: can't read the policy file: {exc.strerror or exc}", source=source
            ) from exc
        if suffix == ".toml":
            return cls.from_toml(text, source=source)
        return cls.from_yaml(text, source=source)

    @classmethod
    def empty(cls) -> Policy:
        """The fail-safe policy: no rules, every call requires approval."""
        return cls(PolicyDocument(version=1), source="<default>")

    @staticmethod
    def json_schema() -> dict[str, Any]:
        """The JSON Schema of a policy file, for editors and ``gatekeeper policy schema``."""
        schema = PolicyDocument.model_json_schema(by_alias=True)
        return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}

    # -- lookups --------------------------------------------------------------------------

    def tool_spec(self, name: str) -> ToolSpec | None:
        """What the policy's ``tools`` section declares for tool ``name``."""
        return self._tools.get(name)

    def agent_spec(self, name: str) -> AgentSpec | None:
        """The policy's ``agents`` entry for ``name``."""
        return self.document.agents.get(name)

    def agent_scopes(self, agent: str) -> frozenset[str]:
        """Scopes the policy grants ``agent`` (empty for an agent it does not list)."""
        return self._agents.get(agent, frozenset())

    def rules_for_tool(self, tool: str) -> tuple[Rule, ...]:
        """The rules ``classify`` evaluates for a call to ``tool``, in file order."""
        return tuple(c.rule for c in self._candidates(tool))

    def misses(self, call: ToolCall) -> tuple[str, ...]:
        """For each rule naming ``call.tool`` that did not match, the first condition it failed.

        ``("rule big-refund: args.amount 50 is not > 100",)``: what a person
        needs when a call got the default although a rule names its tool. Pure,
        and never part of ``classify``: it is computed only when a call is
        explained or shown to a person. At most :data:`MAX_MISSES` rules are
        listed (then one line counts the rest); the agent's values in the text
        are bounded and every hidden character is shown as ``<U+XXXX>``.
        """
        lines: list[str] = []
        more = 0
        for rule in self._candidates(call.tool):
            why = rule.why_not(call)
            if why is None:
                continue
            if len(lines) < MAX_MISSES:
                lines.append(f"rule {rule.id}: {why}")
            else:
                more += 1
        if more:
            lines.append(f"and {more} more rule(s) that did not match")
        return tuple(lines)

    def _candidates(self, tool: str) -> tuple[CompiledRule, ...]:
        cached: tuple[CompiledRule, ...] | None = self._cache.get(tool)
        if cached is not None:
            return cached
        exact: tuple[CompiledRule, ...] = self._exact.get(tool, ())
        if not self._globbed:
            return exact
        matched = [rule for match, rule in self._globbed if match(tool)]
        if matched:
            by_index = {rule.index: rule for rule in (*exact, *matched)}
            found = tuple(by_index[i] for i in sorted(by_index))
        else:
            found = exact
        cache: dict[str, tuple[CompiledRule, ...]] = self._cache
        if len(cache) >= _CACHE_SIZE:
            # Evict the oldest name: tool names come from agents and are unbounded. Another
            # thread may evict at the same moment; losing that race is harmless.
            with contextlib.suppress(StopIteration, KeyError, RuntimeError):
                del cache[next(iter(cache))]
        cache[tool] = found
        return found

    # -- behaviour: sequences and limits ----------------------------------------------------

    def _watching(self, tool: str) -> tuple[Watcher, ...]:
        """The sequences, limits and novelty rules with a step or match that can name ``tool``."""
        cached: tuple[Watcher, ...] | None = self._b_cache.get(tool)
        if cached is not None:
            return cached
        found = list(self._b_exact.get(tool, ()))
        found.extend(item for match, item in self._b_globbed if match(tool) and item not in found)
        answer = tuple(found)
        cache = self._b_cache
        if len(cache) >= _CACHE_SIZE:
            with contextlib.suppress(StopIteration, KeyError, RuntimeError):
                del cache[next(iter(cache))]
        cache[tool] = answer
        return answer

    def plan(self, call: ToolCall) -> Plan | None:
        """What ``call`` means for the sequences and limits (None: it touches none). Pure.

        The store applies the plan and answers with what the call completes or
        exceeds (see :meth:`escalate`). Cost grows with the sequences and
        limits that name the call's tool, not with the others.
        """
        watching = self._watching(call.tool)
        if not watching:
            return None
        seqs: list[SeqUse] = []
        limits: list[LimitUse] = []
        new: list[NewUse] = []
        for item in watching:
            if isinstance(item, CompiledSequence):
                used = item.use(call)
                if used is not None:
                    seqs.append(used)
            elif isinstance(item, CompiledLimit):
                counted = item.use(call)
                if counted is not None:
                    limits.append(counted)
            else:
                fresh = item.use(call)
                if fresh is not None:
                    new.append(fresh)
        if not seqs and not limits and not new:
            return None
        shadow_all = self.document.mode == "shadow"
        return Plan(call.id, call.tool, tuple(seqs), tuple(limits), tuple(new), shadow_all)

    def hits(self, raw: Sequence[Mapping[str, Any]]) -> tuple[BehaviourHit, ...]:
        """The store's answer to a plan, as hits with sentences a person can read."""
        return hits_from_wire(raw, self._sequence_rules, self._limit_rules, self._novelty_rules)

    def autonomy_for(self, call: ToolCall, *, tool_only: bool = False) -> tuple[AutonomyRule, ...]:
        """The autonomy rules whose match covers ``call`` (see docs/policy.md, "Autonomy").

        ``tool_only``: the rules whose tools include ``call``'s, whatever its
        arguments (a denial of any of them demotes the agent).
        """
        return tuple(
            rule
            for rule, matcher in self._autonomy
            if (matcher.names(call.tool) if tool_only else matcher.matches(call, definite=True))
        )

    def denies_outright(self, tool: str, agent: str, server: str | None = None) -> bool:
        """Whether every call of ``tool`` by ``agent`` is denied, whatever its arguments.

        True when an enforced ``deny`` rule with no argument or ``python``
        condition applies to the agent (and server), or when no rule could
        apply and the policy's default is ``deny``. The MCP gateway leaves such
        tools out of the list it shows the agent. A ``halt`` rule does not
        count: a tripwire must stay where the agent can trip it.
        """
        if self.document.mode == "shadow":
            return False
        applicable = [
            r for r in self._candidates(tool) if not r.shadow and r.applies_to(agent, server)
        ]
        if any(r.verdict is Verdict.DENY and r.unconditional for r in applicable):
            return True
        return not applicable and self.document.default is Verdict.DENY

    def insist(self, cls: Classification, rule: str, reason: str) -> Classification:
        """``cls``, but a person must look at it: an allowed call is held, for ``reason``.

        For what the policy can't know and the caller does (``gatekeeper mcp``:
        a tool whose description changed since it was first seen). A held
        call keeps its approval requirement and gains the reason; a denied or
        halting call stays as it is (never less strict).
        """
        if cls.verdict.strictness > Verdict.REQUIRE_APPROVAL.strictness:
            return cls
        held = cls.verdict is Verdict.REQUIRE_APPROVAL
        return cls.model_copy(
            update={
                "verdict": Verdict.REQUIRE_APPROVAL,
                "risk": _RISKS[max(cls.risk.level, Risk.HIGH.level)],
                "rules": (rule, *(r for r in cls.rules if r != rule)),
                "reasons": (reason, *(cls.reasons if held else ())),
                "approval": cls.approval if held else self._approval_default,
            }
        )

    def escalate(self, cls: Classification, hits: tuple[BehaviourHit, ...]) -> Classification:
        """``cls`` made as strict as the strictest of ``hits`` (never less strict).

        A sequence raises the risk to high, a limit to medium; the hits' ids
        come first among the rules and their sentences first among the reasons
        (an allowed call's own reason is dropped: it does not explain the new
        verdict). A halt from a hit
        covers what the sequence or limit counts per: its session, or its agent.
        """
        if not hits:
            return cls
        top = max((cls.verdict, *(h.verdict for h in hits)), key=lambda v: v.strictness)
        level = cls.risk.level
        for h in hits:
            level = max(level, (Risk.HIGH if h.kind == "sequence" else Risk.MEDIUM).level)
        # A halt from a hit covers its session when the hit counts per session.
        halt_scope = cls.halt_scope
        if top is Verdict.HALT and cls.verdict is not Verdict.HALT:
            first = next(h for h in hits if h.verdict is Verdict.HALT)
            per = "agent"
            if first.kind == "sequence" and first.id in self._sequence_rules:
                per = self._sequence_rules[first.id].per
            elif first.kind == "limit" and first.id in self._limit_rules:
                per = self._limit_rules[first.id].per
            halt_scope = HaltScope.SESSION if per == "session" else HaltScope.AGENT
        approval = cls.approval
        if top is Verdict.REQUIRE_APPROVAL and cls.verdict is not Verdict.REQUIRE_APPROVAL:
            approval = self._approval_default
        return cls.model_copy(
            update={
                "verdict": top,
                "risk": _RISKS[level],
                "rules": (*(h.id for h in hits if h.id not in cls.rules), *cls.rules),
                # The hits explain the verdict first; why the call alone was allowed
                # does not explain it at all.
                "reasons": (
                    *(h.reason for h in hits),
                    *(cls.reasons if cls.verdict is not Verdict.ALLOW else ()),
                ),
                "approval": approval,
                "halt_scope": halt_scope,
                "behaviour": (*cls.behaviour, *hits),
            }
        )

    # -- classification -------------------------------------------------------------------

    def classify(self, call: ToolCall) -> Classification:
        """The verdict, risk, reasons and approval requirement for ``call``. Pure; no I/O.

        See docs/policy.md, "Precedence", for the exact rules. Rules in shadow
        mode don't decide; when one applies, ``Classification.shadow`` says
        what they would have made of the call. A policy in shadow mode allows
        every call and says, the same way, what it would have done.
        """
        applied = [a for a in (r.evaluate(call) for r in self._candidates(call.tool)) if a]
        if not self._shadowing:
            return self._decide(call, applied)
        enforced = [a for a in applied if not a.rule.shadow]
        if self.document.mode == "shadow":
            would = self._decide(call, applied)
            cls = self._allow_all
        else:
            cls = self._decide(call, enforced)
            if len(enforced) == len(applied):
                return cls
            would = self._decide(call, applied)
        shadows = tuple(a.rule.id for a in applied if a.rule.shadow)
        if self.document.mode != "shadow" and would.verdict is cls.verdict and not shadows:
            return cls
        note = ShadowNote(
            verdict=would.verdict, rules=shadows or would.rules, reasons=would.reasons
        )
        return cls.model_copy(update={"shadow": note})

    def _decide(self, call: ToolCall, applied: list[Applied]) -> Classification:
        reasons: list[str] = []
        risk_level = -1
        if applied:
            top = max(applied, key=lambda a: a.verdict.strictness).verdict
            winners = [a for a in applied if a.verdict is top]
            verdict = top
            reasons.extend(a.reason for a in winners)
            rule_ids = tuple(a.rule.id for a in winners)
            risk_level = max(a.risk.level for a in applied)
        else:
            winners = []
            verdict = self.document.default
            rule_ids = ()
            reasons.append(
                f"no rule matched tool {call.tool!r}; the policy default is {verdict.value}"
            )

        spec = self._tools.get(call.tool)
        if call.declared_risk is not None:
            risk_level = max(risk_level, call.declared_risk.level)
        if spec is not None and spec.risk is not None:
            risk_level = max(risk_level, spec.risk.level)

        rules_verdict = verdict
        irreversible = call.irreversible or (spec is not None and spec.irreversible)
        if irreversible:
            # Whatever the rules say, an irreversible call is at least high risk,
            # and only an allow rule that says allow_irreversible lets it pass.
            risk_level = max(risk_level, Risk.HIGH.level)
            explicitly_allowed = rules_verdict is Verdict.ALLOW and any(
                a.rule.allow_irreversible for a in winners
            )
            if not explicitly_allowed and verdict.strictness <= Verdict.REQUIRE_APPROVAL.strictness:
                verdict = Verdict.REQUIRE_APPROVAL
                reasons.append(f"{call.tool} is irreversible: a person must approve it")

        granted, required = self._scopes(call, spec)
        missing = sorted(set(required).difference(granted))
        if missing:
            names = ", ".join(missing)
            noun = "scope" if len(missing) == 1 else "scopes"
            reasons.append(f"needs {noun} {names}, which agent {call.agent} was not granted")
            if verdict is Verdict.ALLOW:
                verdict = Verdict.REQUIRE_APPROVAL
            risk_level = max(risk_level, Risk.MEDIUM.level)

        risk = _RISKS[risk_level] if risk_level >= 0 else DEFAULT_RISK[verdict]
        approval = (
            self._approval(applied)
            if verdict is Verdict.REQUIRE_APPROVAL
            else ApprovalRequirement()
        )
        halt_scope = winners[0].rule.halt_scope if verdict is Verdict.HALT else HaltScope.AGENT
        # Calls of one tool mostly classify alike: an answer already given is
        # reused (Classification is immutable), and every field is already of
        # its type, so a new one skips re-validation.
        key = (verdict, risk, rule_ids, tuple(reasons), approval, halt_scope, granted, required)
        known = self._answers.get(key)
        if known is None:
            if len(self._answers) >= _CACHE_SIZE:
                self._answers.clear()
            known = self._answers[key] = Classification.model_construct(
                verdict=verdict,
                risk=risk,
                rules=rule_ids,
                reasons=key[3],
                approval=approval,
                halt_scope=halt_scope,
                granted_scopes=granted,
                required_scopes=required,
                policy_digest=self.digest,
            )
        return known

    def _scopes(
        self, call: ToolCall, spec: ToolSpec | None
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(granted, required), sorted: what the classification records and checks.

        granted = call.granted_scopes ∪ agents[agent].scopes;
        required = call.required_scopes ∪ tools[tool].scopes.
        """
        granted = self._agents.get(call.agent, frozenset()).union(call.granted_scopes)
        required = set(call.required_scopes)
        if spec is not None:
            required.update(spec.scopes)
        return tuple(sorted(granted)), tuple(sorted(required))

    def _approval(self, applied: list[Applied]) -> ApprovalRequirement:
        specs = [
            a.rule.approval
            for a in applied
            if a.verdict is Verdict.REQUIRE_APPROVAL and a.rule.approval is not None
        ]
        if not specs:
            return self._approval_default
        default = self._approval_default
        group = next((s.group for s in specs if s.group is not None), default.group)
        quorums = [s.quorum for s in specs if "quorum" in s.model_fields_set]
        timeouts = [s.timeout for s in specs if s.timeout is not None]
        escalations = [s.escalate_after for s in specs if s.escalate_after is not None]
        answers = [s.respond for s in specs if "respond" in s.model_fields_set]
        return ApprovalRequirement(
            group=group,
            quorum=max(quorums) if quorums else default.quorum,
            timeout=min(timeouts) if timeouts else default.timeout,
            escalate_after=min(escalations) if escalations else default.escalate_after,
            # A rule that forbids a written answer wins over one that allows it.
            respond=all(answers) if answers else default.respond,
        )


def _predicate(rule: Rule, source: str) -> Callable[[ToolCall], object] | None:
    path = rule.match.python
    if path is None:
        return None
    try:
        return resolve_predicate(path)
    except ValueError as exc:  # validated at load; only a module changing underneath gets here
        raise PolicyError(
            f"{source}: rule '{rule.id}': match.python: {exc}",
            source=source,
            rule=rule.id,
            field="match.python",
        ) from exc
