"""The audit trail: who did what to whom, in Redis streams sharded so no key is written globally.

Every enrollment, status change, lookup, conversion and sign-in is appended here, by ids and
codes only, never personal data. One stream that every request appends to would be a single
hot key on a single Redis Cluster slot, so the trail is spread over :data:`SHARDS` streams,
``hc:audit:{0}`` .. ``hc:audit:{15}``, each with its own hash tag. The shard is chosen from the
subject (else the actor), so one subject's trail stays in one stream, in order.

Stream ids are the Redis server's millisecond clock, so readers merge the shards in time order
by id; entries of one millisecond in different shards are ordered by shard. The id is the
entry's time: entries store no separate timestamp.

Retention (``HEALTHCODE_AUDIT_RETENTION_DAYS``) trims with ``XTRIM MINID``. Both the exact form
and the approximate one (``~``, which only drops whole stream nodes that lie entirely below the
MINID) never remove an entry whose id is at or above the MINID, so no entry younger than the
retention is lost. The MINID is the retention plus the tolerated clock skew before now, so a
server clock behind ours cannot make an entry look older than it is. The service trims
opportunistically: an append carries ``MINID ~`` at most once a minute per shard per process
(so the work is bounded and nothing extra is written); ``healthcode audit trim`` trims exactly.
Export (``healthcode audit export``) before trimming to archive.
"""
from __future__ import annotations

import heapq
import time
import zlib
from datetime import datetime, timezone
from typing import Iterator

from .record import format_time

#: Fixed: readers merge exactly these streams. Changing it would strand entries.
SHARDS = 16
#: Seconds between opportunistic trims of one shard by one process.
TRIM_INTERVAL = 60
PAGE = 1000


def shard_key(shard: int) -> str:
    return f"hc:audit:{{{shard}}}"


def shard_of(name: str) -> int:
    """The shard of a subject id (or an actor, for entries about no subject)."""
    return zlib.crc32(name.encode()) % SHARDS


def entry_fields(action: str, actor: str, fields: dict) -> dict:
    """The stored fields: strings, without empty values."""
    entry = {"action": action, "actor": actor}
    for key, value in fields.items():
        if value is None or value == "":
            continue
        entry[key] = value if value.__class__ is str else str(value)
    return entry


def id_ms(entry_id: str) -> int:
    return int(entry_id.partition("-")[0])


def _order(entry_id: str, shard: int) -> tuple[int, int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0), shard


def as_dict(entry_id: str, shard: int, fields: dict) -> dict:
    """One entry as readers see it: its id, shard and time, then the stored fields."""
    at = datetime.fromtimestamp(id_ms(entry_id) / 1000, timezone.utc)
    return {"id": entry_id, "shard": shard, "at": format_time(at), **fields}


class AuditLog:
    """Appends to and reads from the sharded trail (Redis errors are the store's to wrap)."""

    def __init__(self, retention_days: int, skew_seconds: int = 60, clock=time.time):
        self.retention_days = retention_days
        self.skew = skew_seconds
        self.clock = clock
        self._last_trim: dict[int, float] = {}

    # -- appending -----------------------------------------------------------------------------

    def minid(self, now: float | None = None) -> str | None:
        """Entries below this id are past the retention; None when nothing is ever trimmed."""
        if not self.retention_days:
            return None
        now = self.clock() if now is None else now
        cutoff = now - self.retention_days * 86400 - self.skew
        return f"{max(0, int(cutoff * 1000))}-0"

    @staticmethod
    def key_for(name: str) -> str:
        """The stream an entry about this subject (or by this actor) goes to."""
        return shard_key(shard_of(name))

    def add(self, client, action: str, actor: str, fields: dict, subject: str | None = None):
        """Queue (on a pipeline) or run one XADD; trims the shard when its minute is due."""
        shard = shard_of(subject or actor)
        minid = self._due(shard)
        kwargs = {"minid": minid, "approximate": True} if minid else {}
        return client.xadd(shard_key(shard), entry_fields(action, actor, fields), **kwargs)

    def _due(self, shard: int) -> str | None:
        if not self.retention_days:
            return None
        now = self.clock()
        if now - self._last_trim.get(shard, 0.0) < TRIM_INTERVAL:
            return None
        self._last_trim[shard] = now
        return self.minid(now)

    def trim(self, client, now: float | None = None, exact: bool = True) -> dict[int, int]:
        """Drop what is past the retention from every shard; entries removed per shard."""
        minid = self.minid(now)
        if minid is None:
            return {}
        return {shard: client.xtrim(shard_key(shard), minid=minid, approximate=not exact)
                for shard in range(SHARDS)}

    # -- reading -------------------------------------------------------------------------------

    @staticmethod
    def _forward(client, shard: int, start: str, end: str) -> Iterator[tuple]:
        key = shard_key(shard)
        while True:
            page = client.xrange(key, min=start, max=end, count=PAGE)
            for entry_id, fields in page:
                yield _order(entry_id, shard), entry_id, shard, fields
            if len(page) < PAGE:
                return
            start = "(" + page[-1][0]

    def entries(self, client, since_ms: int | None = None,
                until_ms: int | None = None) -> Iterator[dict]:
        """Every entry in [since, until] (milliseconds, inclusive), oldest first, all shards."""
        start = "-" if since_ms is None else f"{since_ms}-0"
        end = "+" if until_ms is None else f"{until_ms}-{2**64 - 1}"
        streams = [self._forward(client, shard, start, end) for shard in range(SHARDS)]
        for _, entry_id, shard, fields in heapq.merge(*streams):
            yield as_dict(entry_id, shard, fields)

    @staticmethod
    def newest(client, count: int) -> list[dict]:
        """The ``count`` newest entries over all shards, newest first."""
        candidates = []
        for shard in range(SHARDS):
            for entry_id, fields in client.xrevrange(shard_key(shard), count=count):
                candidates.append((_order(entry_id, shard), entry_id, shard, fields))
        candidates.sort(reverse=True)
        return [as_dict(entry_id, shard, fields)
                for _, entry_id, shard, fields in candidates[:count]]
