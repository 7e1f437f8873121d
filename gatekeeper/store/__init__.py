"""Stores: where approval requests, halts and the audit chain live.

``MemoryStore`` is embedded (one process); ``RedisStore`` is shared by every
agent and console process. Both pass one contract test suite.
"""

from ._base import AsyncStore, Store
from ._memory import MemoryStore
from ._redis import Durability, RedisStore, RetryPolicy

__all__ = ["AsyncStore", "Durability", "MemoryStore", "RedisStore", "RetryPolicy", "Store"]
