"""``gatekeeper keys``, ``gatekeeper acl`` and the audit anchor: the trust boundary's tools."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .._archive import ArchiveError, whole_chain
from .._config import ENV_CONFIG, find_config, load_config
from .._errors import ConfigError, TamperingDetected
from .._gate import Gatekeeper
from .._signing import ANCHOR, SigningKey
from .._text import inline
from ..store._acl import acl_rules, acl_user
from ._commands import IO
from ._progress import progress_bar

__all__ = ["ROLES", "acl", "acl_prefix", "audit_anchor", "audit_verify_anchored", "keys_generate"]


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
    io.say("or, in a config without a decisions: section, in every process's environment:")
    io.say(f"export GATEKEEPER_TRUSTED_KEYS={key.key_id}={key.public_text}")
    return 0


ROLES = ("agents", "decider", "auditor")
DEFAULT_PREFIX = "gatekeeper"


def acl_prefix(prefix: str | None, config_path: str | None) -> tuple[str, str]:
    """The store prefix to use, and where it came from.

    ``--prefix`` wins; else the config's ``store.prefix`` when a config is
    given (``-c``, ``$GATEKEEPER_CONFIG``) or ./gatekeeper.yaml exists; else
    the default.
    """
    if prefix is not None:
        return prefix, "--prefix"
    file = find_config(config_path)
    if config_path is None and ENV_CONFIG not in os.environ and not file.exists():
        return DEFAULT_PREFIX, "the default; no config found"
    try:
        return load_config(file).store.prefix, f"store.prefix of {file}"
    except ConfigError as exc:
        raise ConfigError(f"{exc} (or give the store's prefix with --prefix)") from exc


def acl(
    prefix: str | None,
    agents: list[str],
    io: IO,
    *,
    roles: list[str] | None = None,
    config_path: str | None = None,
) -> int:
    """Print ``ACL SETUSER`` lines (redis-cli syntax) with fresh passwords and each URL user.

    ``roles`` (default: all of :data:`ROLES`) limits the users printed, so an
    agent can be added without resetting the deciders' and auditors' passwords.
    """
    chosen = list(dict.fromkeys(roles or ROLES))
    if "agents" in chosen and not agents:
        raise ConfigError(
            "name at least one agent: gatekeeper acl --agent NAME [--agent ...] "
            "(or leave agents out with --role decider / --role auditor)"
        )
    if agents and "agents" not in chosen:
        raise ConfigError("--agent needs --role agents (or no --role, for every role)")
    prefix, source = acl_prefix(prefix, config_path)
    others = [r for r in chosen if r != "agents"]
    passwords: dict[str, str] = {}
    io.say(f"# Redis ACL users for deployment {prefix!r} ({source}); keep the passwords secret.")
    io.say("# `reset` gives a user a new password: a running process that uses one of")
    io.say("# these users needs its new URL (add an agent alone with --role agents).")
    for argv in acl_rules(prefix, agents=agents, passwords=passwords, roles=others):
        io.say(" ".join(shlex.quote(a) for a in argv))
    io.say("# ACL users live in the server's memory and vanish on restart unless saved:")
    io.say("# ACL SAVE (with an aclfile configured) or CONFIG REWRITE (users in redis.conf).")
    io.say("# store URLs: redis://USER:PASSWORD@HOST:PORT/0 with")
    for agent in agents:
        user = acl_user(prefix, "agent", agent)
        note = ""
        if user != f"{prefix}-agent-{agent}":
            note = " (a hash of the name: it has characters other than letters, digits, _ . -)"
        io.say(f"#   agent {inline(agent)!r}: user {user}{note}")
    if "decider" in others:
        io.say(f"#   deciders (serve, approvers' CLI): user {acl_user(prefix, 'decider')}")
    if "auditor" in others:
        io.say(f"#   auditors: user {acl_user(prefix, 'auditor')}")
    return 0


def audit_anchor(gate: Gatekeeper, io: IO) -> int:
    """Print a signed statement of the chain's head and length, to keep elsewhere."""
    seq, head = gate.store.audit_head()
    body = {"seq": seq, "hash": head, "at": int(gate.clock.now().timestamp() * 1000)}
    io.say(gate.store.decision_keys.signer().sign(ANCHOR, body))
    return 0


def audit_verify_anchored(
    gate: Gatekeeper,
    anchor_file: str,
    io: IO,
    *,
    archive: str | None = None,
    no_progress: bool = False,
) -> int:
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
    try:
        with progress_bar(io.err, "verifying", no_progress=no_progress) as bar:
            report = gate.verify_audit(archive=archive, progress=bar)
    except ArchiveError as exc:
        return io.fail(str(exc))
    if not report.ok:
        io.say(f"BROKEN: {report.problem}")
        return 1
    first = report.trimmed.seq if report.trimmed is not None else 0
    total = first + report.count
    if total < seq:
        io.say(
            f"TRUNCATED: the anchor says {seq} events (head {want[:16]}), the log holds "
            f"{total}: events were removed"
        )
        return 1
    if seq and seq < first:
        io.say(
            f"event {seq} was archived and trimmed from the store: give --archive DIR to "
            "check the anchor"
        )
        return 1
    if seq and seq == first and report.trimmed is not None:
        found: str | None = report.trimmed.hash
    else:
        entries = whole_chain(gate.store, archive) if archive else gate.store.audit_entries()
        found = next((e.hash for i, e in enumerate(entries, first + 1) if i == seq), None)
    if seq and found != want:
        io.say(f"REWRITTEN: event {seq} is not the one anchored (head {want[:16]})")
        return 1
    io.say(f"ok: {total} events, chain intact, and it extends the anchor at event {seq}")
    return 0
