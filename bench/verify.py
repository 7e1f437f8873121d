"""The cost the release path adds by checking signed votes (Ed25519), per release.

Prints the time of ``approved_run`` (one signed vote, quorum 1) against a bare
function call and a sha256 digest of the arguments, measured in the same run.
Run: ``.venv/bin/python bench/verify.py``.
"""

from __future__ import annotations

import timeit

from gatekeeper._canonical import digest
from gatekeeper._signing import SigningKey, TrustedKeys
from gatekeeper._votes import approved_run, sign_vote
from gatekeeper.models import RequestStatus
from gatekeeper.testing import ManualClock
from tests.storekit import make_request, vote


def main() -> None:
    clock = ManualClock()
    key = SigningKey.generate()
    trusted = TrustedKeys({key.key_id: key.public_text})
    req = make_request(clock)
    signed = sign_vote(key, req, vote(clock, req, "alice"), None)
    approved = req.model_copy(update={"status": RequestStatus.APPROVED, "decisions": (signed,)})
    n = 2000

    def best(fn: object) -> float:
        return min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e6  # type: ignore[arg-type]

    bare = best(lambda: None)
    dig = best(lambda: digest(req.args))
    check = best(lambda: approved_run(approved, req.call, 1, trusted))
    print(f"bare call          {bare:8.2f} µs")
    print(f"digest of the args {dig:8.2f} µs")
    print(f"approved_run       {check:8.2f} µs  ({check / dig:.1f}x a digest; one Ed25519 verify)")


if __name__ == "__main__":
    main()
