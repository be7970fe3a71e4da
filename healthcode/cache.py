"""A small in-process cache for answers that normally come from Redis.

Checked credentials and page sessions are remembered for ``fresh`` seconds, so the hot verify
path costs no extra round trip. While Redis is down, an entry this worker has already checked
stays usable for up to ``stale`` seconds: verification must survive a store outage, and a
checkpoint whose credential was good a minute ago has not become an attacker. Something never
seen before cannot be checked then, and the outage is raised.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Generic, TypeVar

from .errors import StoreUnavailable

T = TypeVar("T")

#: how long a known entry outlives a store outage, seconds
STALE_SECONDS = 3600


class OutageTolerantCache(Generic[T]):
    def __init__(self, fresh: float, stale: float = STALE_SECONDS, max_entries: int = 10_000):
        self.fresh = fresh
        self.stale = stale
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
            raise
        with self._lock:
            if value is None:
                self._entries.pop(key, None)
            else:
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()  # crude, but bounded; a miss only costs a lookup
                self._entries[key] = (value, now)
        return value

    def forget(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)
