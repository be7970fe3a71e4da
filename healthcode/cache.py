"""A small in-process cache for answers that normally come from Redis.

Checked credentials and page sessions are remembered for ``fresh`` seconds, so the hot verify
path costs no extra round trip. While Redis is down, an entry this worker checked within the
last ``stale`` seconds stays usable: a checkpoint whose credential was good a moment ago has not
become an attacker, and a scan in progress should not fail on a blip of the store.

The bound is counted from the entry's last successful check, not from the start of the outage,
because it is also the revocation latency during an outage: a credential revoked just before
Redis went down is refused at most ``stale`` seconds after it was last checked (then
:class:`~healthcode.errors.StoreUnavailable`, 503). A longer bound keeps checkpoints working
through longer outages at the price of honouring revocations that much later; the service's
default (``CREDENTIAL_OUTAGE_SECONDS``) is as short as the cache itself, 5 s. Something never
checked cannot be checked then, and the outage is raised.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Generic, TypeVar

from .errors import StoreUnavailable

T = TypeVar("T")

#: how long a known entry outlives a store outage by default, seconds (CREDENTIAL_OUTAGE_SECONDS)
STALE_SECONDS = 5


class OutageTolerantCache(Generic[T]):
    def __init__(self, fresh: float, stale: float = STALE_SECONDS, max_entries: int = 10_000):
        self.fresh = fresh
        self.stale = max(stale, fresh)  # an entry fresh enough to skip Redis is never too old
        self.max_entries = max_entries
        self._entries: dict[str, tuple[T, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: str, load: Callable[[], T | None]) -> T | None:
        """The cached value while fresh, else ``load()``; ``None`` results are not kept."""
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry and now - entry[1] < self.fresh:
            return entry[0]
        try:
            value = load()
        except StoreUnavailable:
            if entry and now - entry[1] < self.stale:
                return entry[0]
            if entry:  # too old to vouch for: drop it, so it cannot come back
                self.forget(key)
            raise
        with self._lock:
            if value is None:
                self._entries.pop(key, None)
            else:
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()  # crude, but bounded; a miss only costs a lookup
                self._entries[key] = (value, now)
        return value

    def known(self, key: str) -> bool:
        """Whether ``key`` was found good here before (however long ago): not a guess."""
        return key in self._entries

    def forget(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)
