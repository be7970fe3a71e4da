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

The earlier release kept the whole trail in one stream, ``hc:audit``
(:data:`~healthcode.legacy.LEGACY_AUDIT`). ``healthcode store migrate`` moves its entries into
their shards with their ids (:meth:`AuditLog.move_legacy`), so their time and order stay as
they were. A stream only takes an id above its last one, so an entry can move only into a shard
that holds nothing newer: all of them, when the migration runs before the new release serves
(README, Upgrading). Any entry that cannot move stays where it is, and until the old stream is
gone the readers merge it as one more source, each of its entries shown with the shard it
belongs to, and trimming trims it too: tail and export show the same entries, in the same
order, before, during and after a migration.
"""
from __future__ import annotations

import heapq
import time
import zlib
from datetime import datetime, timezone
from typing import Iterator

from redis.exceptions import ResponseError

from .legacy import LEGACY_AUDIT
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


def legacy_shard(fields: dict) -> int:
    """The shard an entry of the earlier release's single stream belongs in."""
    return shard_of(fields.get("subject") or fields.get("actor") or "")


def _unique(ordered):
    """Drop the second copy of an entry seen in its shard and in the old stream (moved but
    not yet deleted there): same id, same shard, same fields, next to each other in order."""
    previous = None
    for item in ordered:
        _, _, entry_id, shard, fields = item
        if previous is not None and previous[2:] == (entry_id, shard, fields):
            continue
        previous = item
        yield item


#: sources in merge order for equal ids: a shard, then the old stream
_SHARD, _LEGACY = 0, 1

#: deletes a stream once it is empty, atomically (never one an old-release host just wrote)
_DROP_EMPTY = "if redis.call('XLEN', KEYS[1]) == 0 then return redis.call('DEL', KEYS[1]) end " \
              "return 0"


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
        """Drop what is past the retention from every shard (and the old stream, keyed -1,
        deleted once empty); entries removed per shard."""
        minid = self.minid(now)
        if minid is None:
            return {}
        removed = {shard: client.xtrim(shard_key(shard), minid=minid, approximate=not exact)
                   for shard in range(SHARDS)}
        if client.exists(LEGACY_AUDIT):
            removed[-1] = client.xtrim(LEGACY_AUDIT, minid=minid, approximate=not exact)
            client.eval(_DROP_EMPTY, 1, LEGACY_AUDIT)
        return removed

    # -- the earlier release's single stream ---------------------------------------------------

    def move_legacy(self, client, dry_run: bool = False) -> dict[str, int]:
        """Move the old stream's entries into their shards, ids and fields unchanged.

        Per page of the old stream: an XADD with the entry's own id into its shard, then one
        XDEL of what moved. An XADD is refused where the shard's last id is not below the
        entry's; the entry is then either there already (a run cut between XADD and XDEL: it
        is deleted from the old stream now) or the shard holds newer entries, and it stays in
        the old stream, which the readers keep merging. Resumable and idempotent; the old
        stream is deleted once empty. Counts: ``moved``, ``already`` (found moved), ``kept``;
        with ``dry_run`` what would happen, nothing written.
        """
        counts = {"moved": 0, "already": 0, "kept": 0}
        last_ids: dict[int, tuple[int, int]] = {}
        start = "-"
        while True:
            page = client.xrange(LEGACY_AUDIT, min=start, count=PAGE)
            if not page:
                break
            start = "(" + page[-1][0]
            if dry_run:
                doubtful = []
                for entry_id, fields in page:
                    shard = legacy_shard(fields)
                    if shard not in last_ids:
                        last_ids[shard] = _last_id(client, shard_key(shard))
                    if _order(entry_id, shard)[:2] > last_ids[shard]:
                        counts["moved"] += 1
                    else:
                        doubtful.append((entry_id, fields))
                for held in _holding(client, doubtful):
                    counts["already" if held else "kept"] += 1
                if len(page) < PAGE:
                    break
                continue
            with client.pipeline(transaction=False) as pipe:
                for entry_id, fields in page:
                    pipe.xadd(shard_key(legacy_shard(fields)), fields, id=entry_id)
                added = pipe.execute(raise_on_error=False)
            gone, refused = [], []
            for (entry_id, fields), result in zip(page, added):
                if not isinstance(result, Exception):
                    counts["moved"] += 1
                    gone.append(entry_id)
                elif "equal or smaller" in str(result):
                    refused.append((entry_id, fields))
                else:
                    raise result
            for (entry_id, _), held in zip(refused, _holding(client, refused)):
                if held:
                    counts["already"] += 1
                    gone.append(entry_id)
                else:
                    counts["kept"] += 1
            if gone:
                client.xdel(LEGACY_AUDIT, *gone)
            if len(page) < PAGE:
                break
        if not dry_run:
            client.eval(_DROP_EMPTY, 1, LEGACY_AUDIT)
        return counts

    # -- reading -------------------------------------------------------------------------------

    @staticmethod
    def _forward(client, shard: int | None, start: str, end: str) -> Iterator[tuple]:
        """One source's entries in order: a shard, or (None) the old stream."""
        key, source = (shard_key(shard), _SHARD) if shard is not None else (LEGACY_AUDIT,
                                                                             _LEGACY)
        while True:
            page = client.xrange(key, min=start, max=end, count=PAGE)
            for entry_id, fields in page:
                where = shard if shard is not None else legacy_shard(fields)
                yield _order(entry_id, where), source, entry_id, where, fields
            if len(page) < PAGE:
                return
            start = "(" + page[-1][0]

    def entries(self, client, since_ms: int | None = None,
                until_ms: int | None = None) -> Iterator[dict]:
        """Every entry in [since, until] (milliseconds, inclusive), oldest first, all shards."""
        start = "-" if since_ms is None else f"{since_ms}-0"
        end = "+" if until_ms is None else f"{until_ms}-{2**64 - 1}"
        streams = [self._forward(client, shard, start, end) for shard in (*range(SHARDS), None)]
        for _, _, entry_id, shard, fields in _unique(heapq.merge(*streams)):
            yield as_dict(entry_id, shard, fields)

    @staticmethod
    def newest(client, count: int) -> list[dict]:
        """The ``count`` newest entries over all shards, newest first."""
        candidates = []
        for shard in range(SHARDS):
            for entry_id, fields in client.xrevrange(shard_key(shard), count=count):
                candidates.append((_order(entry_id, shard), _SHARD, entry_id, shard, fields))
        for entry_id, fields in client.xrevrange(LEGACY_AUDIT, count=count):
            shard = legacy_shard(fields)
            candidates.append((_order(entry_id, shard), _LEGACY, entry_id, shard, fields))
        candidates.sort(key=lambda c: c[:2])
        newest = list(_unique(candidates))[-count:]
        return [as_dict(entry_id, shard, fields)
                for _, _, entry_id, shard, fields in reversed(newest)]


def _last_id(client, key: str) -> tuple[int, int]:
    """The id a stream last took (kept when its entries are trimmed); (0, 0) for none."""
    try:
        last = client.xinfo_stream(key)["last-generated-id"]
    except ResponseError as exc:
        if "no such key" not in str(exc).lower():
            raise
        return (0, 0)
    return _order(last, 0)[:2]


def _holding(client, entries: list[tuple[str, dict]]) -> list[bool]:
    """For each old entry, whether its shard has this very entry (same id, same fields):
    moved by a run cut before deleting it from the old stream. One pipeline."""
    if not entries:
        return []
    with client.pipeline(transaction=False) as pipe:
        for entry_id, fields in entries:
            pipe.xrange(shard_key(legacy_shard(fields)), min=entry_id, max=entry_id, count=1)
        found = pipe.execute()
    return [bool(hit) and hit[0][1] == fields for hit, (_, fields) in zip(found, entries)]
