"""A rule compiled for evaluation: globs as regexes, args as three-valued conditions."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from typing import NamedTuple

from ..models import HaltScope, Risk, ToolCall, Verdict
from ._matchers import ArgCondition, compile_args, shown_value
from ._schema import ApprovalSpec, Rule

__all__ = ["Applied", "CompiledRule", "glob_regex"]


def glob_regex(patterns: tuple[str, ...]) -> Callable[[str], object]:
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns)).match


class Applied(NamedTuple):
    """A rule that applies to a call, with the verdict it gives and why."""

    rule: CompiledRule
    verdict: Verdict
    reason: str
    risk: Risk


class CompiledRule:
    """A validated rule, ready to evaluate: globs as regexes, args as three-valued conditions."""

    __slots__ = (
        "_agent",
        "_agent_patterns",
        "_applied",
        "_conditions",
        "_predicate",
        "_server",
        "_server_patterns",
        "allow_irreversible",
        "approval",
        "halt_scope",
        "id",
        "index",
        "risk",
        "rule",
        "shadow",
        "verdict",
    )

    def __init__(self, rule: Rule, index: int, predicate: Callable[[ToolCall], object] | None):
        self.rule = rule
        self.index = index
        self.id = rule.id
        self.verdict = rule.verdict
        self.risk = rule.effective_risk
        self.approval: ApprovalSpec | None = rule.approval
        self.allow_irreversible = rule.allow_irreversible
        self.halt_scope = rule.halt_scope or HaltScope.AGENT
        self.shadow = rule.mode == "shadow"
        agent = rule.match.agent
        self._agent = None if agent is None or agent == ("*",) else glob_regex(agent)
        self._agent_patterns = agent or ()
        server = rule.match.server
        self._server = None if server is None else glob_regex(server)
        self._server_patterns = server or ()
        self._conditions: tuple[ArgCondition, ...] = compile_args(rule.match.args)
        self._predicate = predicate
        self._applied = Applied(
            self, self.verdict, rule.reason or f"rule {rule.id} matched", self.risk
        )

    def applies_to(self, agent: str, server: str | None) -> bool:
        """Whether the rule's agent and server conditions hold (its tool already matched)."""
        if self._agent is not None and not self._agent(agent):
            return False
        return self._server is None or (server is not None and bool(self._server(server)))

    @property
    def unconditional(self) -> bool:
        """Whether it applies whatever the call's arguments (no args, no python)."""
        return not self._conditions and self._predicate is None

    def evaluate(self, call: ToolCall) -> Applied | None:
        """How this rule applies to ``call`` (tool already matched), or None if it does not."""
        if self._agent is not None and not self._agent(call.agent):
            return None
        if self._server is not None and (call.server is None or not self._server(call.server)):
            return None
        unknown: str | None = None
        for condition in self._conditions:
            result = condition.evaluate(call.args)
            if result is False:
                return None
            if result is not True and unknown is None:
                unknown = result
        if self._predicate is not None:
            failure: str | None = None
            try:
                answer = self._predicate(call)
            except Exception as exc:  # a broken predicate must not crash, nor let the call pass
                failure = f"{type(exc).__name__}: {exc}"
            else:
                if answer is False:
                    return None
                if answer is not True:
                    failure = f"the python predicate returned {answer!r}, not a bool"
            if failure is not None:
                verdict = max(self.verdict, Verdict.REQUIRE_APPROVAL, key=lambda v: v.strictness)
                risk = max(self.risk, Risk.MEDIUM, key=lambda r: r.level)
                return Applied(
                    self, verdict, f"rule {self.id} could not be evaluated: {failure}", risk
                )
        if unknown is None:
            return self._applied
        if self.verdict is Verdict.ALLOW:
            return None  # an allow rule needs a definite match
        return Applied(
            self, self.verdict, f"rule {self.id}: {unknown}; treated as matching", self.risk
        )

    def why_not(self, call: ToolCall) -> str | None:
        """The first condition of this rule that ``call`` fails, in words; None if it applies.

        For explaining a classification only: ``classify`` never calls it. The
        conditions are tried in the order ``evaluate`` tries them (agent,
        ``args`` as written, ``python``), so the answer names the condition
        that decided.
        """
        if self._agent is not None and not self._agent(call.agent):
            patterns = ", ".join(self._agent_patterns)
            return f"agent {shown_value(call.agent)} is not {patterns}"
        if self._server is not None and (call.server is None or not self._server(call.server)):
            patterns = ", ".join(self._server_patterns)
            if call.server is None:
                return f"the call comes through no MCP server, not {patterns}"
            return f"server {shown_value(call.server)} is not {patterns}"
        unknown: str | None = None
        for condition in self._conditions:
            failed = condition.why_false(call.args)
            if failed is not None:
                return failed
            result = condition.evaluate(call.args)
            if result is not True and unknown is None:
                unknown = str(result)
        if self._predicate is not None:
            try:
                answer = self._predicate(call)
            except Exception:  # then the rule applies (see evaluate)
                return None
            if answer is False:
                return f"python predicate {self.rule.match.python} returned False"
        if unknown is not None and self.verdict is Verdict.ALLOW:
            return f"{unknown}, and an allow rule needs a definite match"
        return None
