"""Recently checked API tokens, so a busy client is not looked up in the database per request.

A hit skips the token's read (and its transaction) entirely. Entries live ``TOKEN_CACHE_S``
seconds; a token's expiry is still checked on every hit. Revoking a token or granting a role
in this process empties the cache at once; another process (a second API worker, the CLI
working on the database) is seen within ``TOKEN_CACHE_S``. Keys are the tokens' hashes.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime

from aifactory.services.permissions import Principal

#: Seconds a checked token is trusted without looking at the database again.
TOKEN_CACHE_S = 5.0
_MAX_ENTRIES = 10_000


class TokenCache:
    """Token hash -> (principal, token expiry, monotonic deadline of the entry)."""

    def __init__(self, ttl_s: float = TOKEN_CACHE_S) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[Principal, datetime, float]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str, now: datetime) -> Principal | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        principal, expires_at, deadline = entry
        if time.monotonic() >= deadline or expires_at <= now:
            with self._lock:
                self._entries.pop(digest, None)
            return None
        return principal

    def put(self, digest: str, principal: Principal, expires_at: datetime) -> None:
        with self._lock:
            if len(self._entries) >= _MAX_ENTRIES:
                self._entries.clear()  # a flood of distinct tokens: start again, never grow
            self._entries[digest] = (principal, expires_at, time.monotonic() + self.ttl_s)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


#: This process's cache (API workers share it; identity changes here clear it).
TOKENS = TokenCache()
