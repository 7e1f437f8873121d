"""A store whose every operation runs with the credentials of the role that makes it.

``RoleSplitStore`` is how a deployment with the shipped ACL users looks from
the store's callers: what an agent's gate does (admit, hold, wait, claim,
finish, expire, cancel its own request, record its events) goes through a
``RedisStore`` logged in as *that agent's* ACL user, holding only the trusted
public key; everything else (decide, halt, resume, the console's reads,
sealing) through one logged in as the decider user, holding the signing key.
The store contract suite runs against it, so every operation is shown to work
under the ACL users, and none of the agent's to need more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import redis
from redis.cluster import RedisCluster

from gatekeeper._clock import Clock
from gatekeeper._signing import DecisionKeys, SigningKey, TrustedKeys
from gatekeeper.models import ApprovalRequest
from gatekeeper.store import RedisStore
from gatekeeper.store._acl import acl_rules, acl_user
from gatekeeper.store._endpoints import parse_endpoint
from tests.storekit import MANUAL_LEASE

Draft = Mapping[str, Any]


class RoleSplitStore:
    """Agent-side operations as the agent's ACL user, the rest as the decider's."""

    def __init__(self, url: str, prefix: str, clock: Clock, *, audit_chains: int = 1) -> None:
        self._url, self._prefix, self.clock = url, prefix, clock
        self._cluster = url.startswith("redis+cluster://")
        self._admin: Any = (
            parse_endpoint(url).client(max_connections=4, socket_timeout=10)
            if self._cluster
            else redis.Redis.from_url(url)
        )
        key = SigningKey.generate()
        self._trusted = {key.key_id: key.public_text}
        self._passwords: dict[str, str] = {}
        for argv in acl_rules(prefix, passwords=self._passwords, roles=("decider",)):
            self._acl(argv)
        self.decider = RedisStore(
            self._login(acl_user(prefix, "decider")),
            prefix=prefix,
            clock=clock,
            decision_keys=DecisionKeys(key),
            lease=MANUAL_LEASE,
            audit_chains=audit_chains,
        )
        self.decider.load_scripts()  # agents may only run them
        self.decision_keys = self.decider.decision_keys
        self.keys = self.decider.keys
        self._agents: dict[str, RedisStore] = {}
        self.aio = _AsyncSplit(self)

    def _acl(self, argv: list[str]) -> None:
        """``ACL SETUSER ...`` on the server, or on every node of a cluster (replicas too)."""
        if self._cluster:
            self._admin.execute_command(*argv, target_nodes=RedisCluster.ALL_NODES)
        else:
            self._admin.execute_command(*argv)

    def _login(self, user: str) -> str:
        scheme = "redis+cluster://" if self._cluster else "redis://"
        return self._url.replace(scheme, f"{scheme}{user}:{self._passwords[user]}@", 1)

    def agent(self, name: str) -> RedisStore:
        """The store of agent ``name``'s processes: its own ACL user, public keys only."""
        store = self._agents.get(name)
        if store is None:
            for argv in acl_rules(self._prefix, agents=[name], passwords=self._passwords, roles=()):
                self._acl(argv)
            store = RedisStore(
                self._login(acl_user(self._prefix, "agent", name)),
                prefix=self._prefix,
                clock=self.clock,
                decision_keys=DecisionKeys(trusted=TrustedKeys(self._trusted)),
                lease=MANUAL_LEASE,
            )
            self._agents[name] = store
        return store

    def _of_request(self, request_id: str) -> RedisStore:
        return self.agent(self.decider.get(request_id).call.agent)

    # -- what an agent's gate does ----------------------------------------------------------
    def admit(
        self,
        event: Draft,
        *,
        agent: str,
        session_id: str,
        plan: Mapping[str, Any] | None = None,
        verdict: str = "allow",
    ) -> list[dict[str, Any]]:
        return self.agent(agent).admit(
            event, agent=agent, session_id=session_id, plan=plan, verdict=verdict
        )

    def observe(
        self,
        plan: Mapping[str, Any],
        *,
        agent: str,
        mode: str = "attempt",
        request_id: str | None = None,
    ) -> list[dict[str, Any]]:
        return self.agent(agent).observe(plan, agent=agent, mode=mode, request_id=request_id)

    def hold(
        self, request: ApprovalRequest, event: Draft, plan: Mapping[str, Any] | None = None
    ) -> ApprovalRequest:
        return self.agent(request.call.agent).hold(request, event, plan)

    def grants_for(self, agent: str) -> tuple[dict[str, str], int | None]:
        return self.agent(agent).grants_for(agent)

    @property
    def lease_ttl(self) -> float | None:
        return self.decider.lease_ttl

    def renew(self, request_ids: Sequence[str], *, ttl: float) -> Any:
        by_agent: dict[str, list[str]] = {}
        for rid in request_ids:
            by_agent.setdefault(self.decider.get(rid).call.agent, []).append(rid)
        out: dict[str, Any] = {}
        for agent, ids in by_agent.items():
            out.update(self.agent(agent).renew(ids, ttl=ttl))
        return out

    def keep(self, request_id: str) -> None:
        self._of_request(request_id).keep(request_id)

    def drop(self, request_id: str) -> None:
        self._of_request(request_id).drop(request_id)

    def wait(self, request_id: str, timeout: float) -> ApprovalRequest:
        return self._of_request(request_id).wait(request_id, timeout)

    def claim(
        self,
        request_id: str,
        *,
        args_digest: str,
        token: str | None = None,
        created_at: Any = None,
        plan: Mapping[str, Any] | None = None,
    ) -> ApprovalRequest:
        return self._of_request(request_id).claim(
            request_id, args_digest=args_digest, token=token, created_at=created_at, plan=plan
        )

    def refuse(self, request_id: str, *, why: str) -> ApprovalRequest:
        return self._of_request(request_id).refuse(request_id, why=why)

    def finish(
        self, request_id: str, *, ok: bool, outcome: str | None, token: str | None = None
    ) -> ApprovalRequest:
        return self._of_request(request_id).finish(request_id, ok=ok, outcome=outcome, token=token)

    def close_unclaimed_soon(self, request_id: str, *, token: str, why: str) -> None:
        self._of_request(request_id).close_unclaimed_soon(request_id, token=token, why=why)

    def finish_soon(
        self, request_id: str, *, ok: bool, outcome: str | None, token: str | None = None
    ) -> None:
        self._of_request(request_id).finish_soon(request_id, ok=ok, outcome=outcome, token=token)

    def expire(self, request_id: str) -> ApprovalRequest:
        return self._of_request(request_id).expire(request_id)

    def cancel(self, request_id: str, *, by: str, reason: str | None = None) -> ApprovalRequest:
        store = self._of_request(request_id) if by.startswith("agent:") else self.decider
        return store.cancel(request_id, by=by, reason=reason)

    def flag_tampering(self, request_id: str, why: str, event: Draft) -> None:
        self._of_request(request_id).flag_tampering(request_id, why, event)

    def record(self, events: Sequence[Draft]) -> None:
        for event in events:
            agent = event.get("agent")
            store = self.agent(agent) if isinstance(agent, str) else self.decider
            store.record([event])

    def record_soon(self, events: Sequence[Draft]) -> None:
        self.record(events)

    def flush(self) -> None:
        for store in list(self._agents.values()):
            store.flush()
        self.decider.flush()

    # -- everything else: the deciding side -----------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        return getattr(self.decider, name)

    def audit_entries(self, *, after: str | None = None, chain: int | None = None) -> Any:
        self.flush()
        return self.decider.audit_entries(after=after, chain=chain)

    def audit_head(self, chain: int = 0) -> tuple[int, str]:
        self.flush()
        return self.decider.audit_head(chain)

    def audit_page(self, *, before: str | None = None, limit: int = 50) -> Any:
        self.flush()
        return self.decider.audit_page(before=before, limit=limit)

    def close(self) -> None:
        try:
            for store in self._agents.values():
                store.close()
            self.decider.close()
        finally:
            for user in self._passwords:
                self._acl(["ACL", "DELUSER", user])
            self._admin.close()


class _AsyncSplit:
    """The async faces, split the same way."""

    def __init__(self, split: RoleSplitStore) -> None:
        self._split = split

    async def _of_request(self, request_id: str) -> Any:
        req = await self._split.decider.aio.get(request_id)
        return self._split.agent(req.call.agent).aio

    async def admit(
        self,
        event: Draft,
        *,
        agent: str,
        session_id: str,
        plan: Mapping[str, Any] | None = None,
        verdict: str = "allow",
    ) -> list[dict[str, Any]]:
        return await self._split.agent(agent).aio.admit(
            event, agent=agent, session_id=session_id, plan=plan, verdict=verdict
        )

    async def observe(
        self,
        plan: Mapping[str, Any],
        *,
        agent: str,
        mode: str = "attempt",
        request_id: str | None = None,
    ) -> list[dict[str, Any]]:
        aio = self._split.agent(agent).aio
        return await aio.observe(plan, agent=agent, mode=mode, request_id=request_id)

    async def hold(
        self, request: ApprovalRequest, event: Draft, plan: Mapping[str, Any] | None = None
    ) -> ApprovalRequest:
        return await self._split.agent(request.call.agent).aio.hold(request, event, plan)

    async def grants_for(self, agent: str) -> tuple[dict[str, str], int | None]:
        return await self._split.agent(agent).aio.grants_for(agent)

    async def wait(self, request_id: str, timeout: float) -> ApprovalRequest:
        return await (await self._of_request(request_id)).wait(request_id, timeout)

    async def claim(
        self,
        request_id: str,
        *,
        args_digest: str,
        token: str | None = None,
        created_at: Any = None,
        plan: Mapping[str, Any] | None = None,
    ) -> ApprovalRequest:
        aio = await self._of_request(request_id)
        return await aio.claim(
            request_id, args_digest=args_digest, token=token, created_at=created_at, plan=plan
        )

    async def refuse(self, request_id: str, *, why: str) -> ApprovalRequest:
        return await (await self._of_request(request_id)).refuse(request_id, why=why)

    async def finish(
        self, request_id: str, *, ok: bool, outcome: str | None, token: str | None = None
    ) -> ApprovalRequest:
        aio = await self._of_request(request_id)
        return await aio.finish(request_id, ok=ok, outcome=outcome, token=token)

    async def expire(self, request_id: str) -> ApprovalRequest:
        return await (await self._of_request(request_id)).expire(request_id)

    async def cancel(
        self, request_id: str, *, by: str, reason: str | None = None
    ) -> ApprovalRequest:
        aio = (
            await self._of_request(request_id)
            if by.startswith("agent:")
            else self._split.decider.aio
        )
        return await aio.cancel(request_id, by=by, reason=reason)

    async def record(self, events: Sequence[Draft]) -> None:
        self._split.record(events)

    def record_soon(self, events: Sequence[Draft]) -> None:
        self._split.record(events)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._split.decider.aio, name)
