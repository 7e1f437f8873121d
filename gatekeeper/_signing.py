"""Ed25519 signatures on what only the deciding side may say.

Decisions (each approver's vote), resumes of a halt and audit anchors are
signed by the deciders' private key, which agents never hold; agents hold the
public halves (several at once, each with an id, for rotation) and verify
before anything runs.

A signed record is the canonical JSON of ``{"body": B, "key_id": K, "sig": S}``
where ``S`` is the base64 Ed25519 signature of ``PURPOSE + "\\n" +
canonical_json(B)``; the purpose (``gatekeeper.vote.v1`` and so on) keeps a
signature made for one kind of record from being passed off as another.

Example::

    key = SigningKey.generate()
    trusted = TrustedKeys({key.key_id: key.public_text})
    signed = key.sign("gatekeeper.vote.v1", {"request_id": "r1", "approve": True})
    body = trusted.verify("gatekeeper.vote.v1", signed)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ._canonical import canonical_json
from ._errors import ConfigError, TamperingDetected

__all__ = ["ANCHOR", "RESUME", "VOTE", "DecisionKeys", "SigningKey", "TrustedKeys", "key_id_of"]

VOTE = "gatekeeper.vote.v1"
RESUME = "gatekeeper.resume.v1"
ANCHOR = "gatekeeper.anchor.v1"

SIGNING_ENV = "GATEKEEPER_SIGNING_KEY"
TRUSTED_ENV = "GATEKEEPER_TRUSTED_KEYS"

#: A signed record is never larger than this (a vote carries edited arguments).
MAX_SIGNED_BYTES = 4 * 1024 * 1024


def key_id_of(public_raw: bytes) -> str:
    """The default id of a public key: the first 16 hex digits of its sha256."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


def _message(purpose: str, body: Mapping[str, Any]) -> bytes:
    return purpose.encode("ascii") + b"\n" + canonical_json(dict(body))


class SigningKey:
    """The deciders' private key. Keep it out of every agent's reach."""

    def __init__(self, private: Ed25519PrivateKey, key_id: str | None = None) -> None:
        self._private = private
        raw = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.public_raw = raw
        self.key_id = key_id or key_id_of(raw)

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r})"  # never the key itself

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], key_id: str | None = None) -> SigningKey:
        """Load a PEM (PKCS#8) private key, as ``gatekeeper keys generate`` writes it."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"can't read the signing key {os.fspath(path)}: {exc}") from exc
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"{os.fspath(path)} is not a PEM Ed25519 private key "
                "(make one with `gatekeeper keys generate`)"
            ) from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{os.fspath(path)} holds a key that is not Ed25519")
        return cls(key, key_id)

    def private_pem(self) -> bytes:
        return self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def public_text(self) -> str:
        """The public half as base64 (what ``trusted_keys`` lists)."""
        return base64.b64encode(self.public_raw).decode("ascii")

    def sign(self, purpose: str, body: Mapping[str, Any]) -> str:
        """The signed record of ``body``, as canonical JSON text."""
        sig = self._private.sign(_message(purpose, body))
        record = {"body": dict(body), "key_id": self.key_id, "sig": base64.b64encode(sig).decode()}
        return canonical_json(record).decode("utf-8")


class TrustedKeys:
    """The public keys whose signatures an agent accepts, by key id."""

    def __init__(self, keys: Mapping[str, str | bytes] | None = None) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {}
        for kid, value in (keys or {}).items():
            self.add(kid, value)

    def __repr__(self) -> str:
        return f"TrustedKeys({sorted(self._keys)!r})"

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def ids(self) -> list[str]:
        return sorted(self._keys)

    def id_of(self, public_raw: bytes) -> str | None:
        """The id this public key is trusted under, if it is."""
        for kid, key in self._keys.items():
            raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            if raw == public_raw:
                return kid
        return None

    def add(self, key_id: str, public: str | bytes) -> None:
        if not key_id or not isinstance(key_id, str):
            raise ConfigError("a trusted key needs a non-empty id")
        try:
            raw = public if isinstance(public, bytes) else base64.b64decode(public, validate=True)
            self._keys[key_id] = Ed25519PublicKey.from_public_bytes(raw)
        except (ValueError, binascii.Error) as exc:
            raise ConfigError(
                f"trusted key {key_id!r} is not a base64 Ed25519 public key (32 bytes)"
            ) from exc

    def verify(self, purpose: str, signed: str | bytes) -> dict[str, Any]:
        """The body of a signed record, once its signature checks out.

        Raises :class:`~gatekeeper.TamperingDetected` when the record is not
        readable, names a key that is not trusted, or its signature is wrong.
        """
        if len(signed) > MAX_SIGNED_BYTES:
            raise TamperingDetected("a signed record is over the size limit")
        try:
            record = json.loads(signed)
            body, kid, sig = record["body"], record["key_id"], record["sig"]
            if not isinstance(body, dict) or not isinstance(kid, str):
                raise TypeError
            raw_sig = base64.b64decode(sig, validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise TamperingDetected("a signed record is not readable") from exc
        key = self._keys.get(kid)
        if key is None:
            raise TamperingDetected(f"record signed by key {kid[:40]!r}, which is not trusted")
        try:
            key.verify(raw_sig, _message(purpose, body))
        except InvalidSignature as exc:
            raise TamperingDetected(f"the signature of a {purpose} record is wrong") from exc
        return body


class DecisionKeys:
    """What one process holds: the signing key (deciders only) and the trusted keys.

    A process with only ``trusted`` can verify but not decide. With only a
    signing key, its own public half is trusted (one process doing both, as
    in the demo and in tests).
    """

    def __init__(self, signing: SigningKey | None = None, trusted: TrustedKeys | None = None):
        self.signing = signing
        self.trusted = trusted or TrustedKeys()
        if signing is not None:
            # Sign under the id the agents trust this key by, if they list it.
            listed = self.trusted.id_of(signing.public_raw)
            if listed is not None:
                signing.key_id = listed
            elif not len(self.trusted):
                self.trusted.add(signing.key_id, signing.public_raw)

    @classmethod
    def ephemeral(cls) -> DecisionKeys:
        """A fresh key pair for one process (MemoryStore's default)."""
        return cls(SigningKey.generate())

    @classmethod
    def load(
        cls,
        signing_key: str | os.PathLike[str] | None = None,
        trusted: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    ) -> DecisionKeys:
        signing = SigningKey.from_file(signing_key) if signing_key else None
        return cls(signing, TrustedKeys(dict(trusted or {})))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DecisionKeys:
        """Keys named by the environment (what a store uses when given none).

        ``GATEKEEPER_SIGNING_KEY``: path of the deciders' PEM private key (set
        it for the deciding side only). ``GATEKEEPER_TRUSTED_KEYS``: trusted
        public keys as ``id=base64`` pairs separated by commas.
        """
        env = os.environ if environ is None else environ
        trusted: dict[str, str] = {}
        for item in filter(None, (p.strip() for p in env.get(TRUSTED_ENV, "").split(","))):
            kid, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"{TRUSTED_ENV}: expected id=base64 pairs, got {item[:40]!r}")
            trusted[kid.strip()] = value.strip()
        return cls.load(env.get(SIGNING_ENV) or None, trusted)

    @property
    def can_decide(self) -> bool:
        return self.signing is not None

    def signer(self) -> SigningKey:
        if self.signing is None:
            raise ConfigError(
                "this process holds no decision signing key, so it can't decide, resume "
                "or anchor: give the deciding side `decisions.signing_key` "
                "(agents never get it)"
            )
        return self.signing
