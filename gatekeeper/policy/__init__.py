"""The policy: which tool calls run, which wait for a person, which are refused.

A policy is a YAML (or TOML) file, validated at load into :class:`Policy`;
``policy.classify(call)`` is pure and fast. See docs/policy.md.

>>> from gatekeeper.policy import Policy
>>> policy = Policy.from_yaml("version: 1\\ndefault: deny\\n")
>>> policy.default
<Verdict.DENY: 'deny'>
"""

from __future__ import annotations

from ._duration import parse_duration
from ._engine import Policy
from ._schema import (
    AgentSpec,
    ApprovalSpec,
    LimitRule,
    Match,
    PolicyDocument,
    Rule,
    SequenceRule,
    ToolSpec,
)

__all__ = [
    "AgentSpec",
    "ApprovalSpec",
    "LimitRule",
    "Match",
    "Policy",
    "PolicyDocument",
    "Rule",
    "SequenceRule",
    "ToolSpec",
    "parse_duration",
]
