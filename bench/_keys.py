"""One deciders' key pair per benchmark run, named by the environment.

The benchmarks' stores (and the child processes they start) take their
decision keys from ``$GATEKEEPER_SIGNING_KEY`` / ``$GATEKEEPER_TRUSTED_KEYS``,
as a deployment's processes do; this sets them once, in a temp dir.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from gatekeeper._signing import SIGNING_ENV, TRUSTED_ENV, SigningKey


def use_run_keys() -> None:
    """Set the key pair for this process and its children, unless one is set already."""
    if os.environ.get(SIGNING_ENV):
        return
    key = SigningKey.generate()
    path = Path(tempfile.mkdtemp(prefix="gk-bench-keys-")) / "decider.pem"
    path.write_bytes(key.private_pem())
    path.chmod(0o600)
    os.environ[SIGNING_ENV] = str(path)
    os.environ[TRUSTED_ENV] = f"{key.key_id}={key.public_text}"
