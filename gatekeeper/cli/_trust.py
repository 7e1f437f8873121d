"""``gatekeeper keys``, ``gatekeeper acl`` and the audit anchor: the trust boundary's tools."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .._errors import ConfigError, TamperingDetected
from .._gate import Gatekeeper
from .._signing import ANCHOR, SigningKey
from ..audit import verify_chain
from ..store._acl import acl_rules, acl_user
from ._commands import IO

__all__ = ["acl", "audit_anchor", "audit_verify_anchored", "keys_generate"]


def keys_generate(directory: str, key_id: str | None, *, force: bool, io: IO) -> int:
    """Write ``decider.pem`` (private, mode 0600) and print the line agents trust."""
    key = SigningKey(Ed25519PrivateKey.generate(), key_id)
    path = Path(directory) / "decider.pem"
    if path.exists() and not force:
        raise ConfigError(f"{path} exists; pass --force to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_pem())
    io.say(f"wrote {path} (the private key: deciding processes only, never an agent)")
    io.say("for gatekeeper.yaml (an agent's config gets the last line only):")
    io.say("decisions:")
    io.say(f"  signing_key: {path.resolve()}  # deciding processes only")
    io.say(f"  trusted_keys: {{{key.key_id}: {key.public_text}}}  # every process")
    return 0


def acl(prefix: str, agents: list[str], io: IO) -> int:
    """Print ``ACL SETUSER`` lines (redis-cli syntax) with fresh passwords and each URL user."""
    if not agents:
        raise ConfigError("name at least one agent: gatekeeper acl --agent NAME [--agent ...]")
    passwords: dict[str, str] = {}
    io.say(f"# Redis ACL users for deployment {prefix!r}; keep the passwords secret.")
    for argv in acl_rules(prefix, agents=agents, passwords=passwords):
        io.say(" ".join(shlex.quote(a) for a in argv))
    io.say("# store URLs: redis://USER:PASSWORD@HOST:PORT/0 with")
    for agent in agents:
        user = acl_user(prefix, "agent", agent)
        io.say(f"#   agent {agent}: user {user}")
    io.say(f"#   deciders (serve, approvers' CLI): user {acl_user(prefix, 'decider')}")
    io.say(f"#   auditors: user {acl_user(prefix, 'auditor')}")
    return 0


def audit_anchor(gate: Gatekeeper, io: IO) -> int:
    """Print a signed statement of the chain's head and length, to keep elsewhere."""
    seq, head = gate.store.audit_head()
    body = {"seq": seq, "hash": head, "at": int(gate.clock.now().timestamp() * 1000)}
    io.say(gate.store.decision_keys.signer().sign(ANCHOR, body))
    return 0


def audit_verify_anchored(gate: Gatekeeper, anchor_file: str, io: IO) -> int:
    """Check the chain, and that it still holds the anchored head (not truncated or emptied)."""
    try:
        text = Path(anchor_file).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"can't read the anchor {anchor_file}: {exc}") from exc
    try:
        anchor = gate.store.decision_keys.trusted.verify(ANCHOR, text)
        seq, want = int(anchor["seq"]), str(anchor["hash"])
    except (TamperingDetected, KeyError, TypeError, ValueError) as exc:
        io.say(f"BAD ANCHOR: {exc}")
        return 1
    report = verify_chain(gate.store.audit_entries(), head=gate.store.audit_head())
    if not report.ok:
        io.say(f"BROKEN: {report.problem}")
        return 1
    if report.count < seq:
        io.say(
            f"TRUNCATED: the anchor says {seq} events (head {want[:16]}), the log holds "
            f"{report.count}: events were removed"
        )
        return 1
    found = next((e.hash for i, e in enumerate(gate.store.audit_entries(), 1) if i == seq), None)
    if seq and found != want:
        io.say(f"REWRITTEN: event {seq} is not the one anchored (head {want[:16]})")
        return 1
    io.say(f"ok: {report.count} events, chain intact, and it extends the anchor at event {seq}")
    return 0
