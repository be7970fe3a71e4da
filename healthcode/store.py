"""State in Redis: residents, status versions, audit trail, credentials, caches.

Key layout. Every key about one subject carries the subject id as a hash tag, so a subject's
keys share a Redis Cluster slot and change together in one script:

=================================  ======================================================
``hc:{<sid>}:st``                  ``"<status>|<version>"``: the only key read on a verify
``hc:{<sid>}:rec``                 the full record, compact (:mod:`healthcode.compact`) and
                                   sealed (:mod:`healthcode.recordcrypt`), with who enrolled
                                   the subject and when: the history's first entry
``hc:{<sid>}:hist``                list of sealed compact entries: every status change after
                                   enrollment. Created by the first change only: most
                                   residents never change, and an empty list key costs ~220 B
``hc:{<sid>}:code``                the current dynamic code (expires before the code does)
``hc:img:{<token hash>}:<fmt>``    rendered QR images, per token, expiring with the token
``hc:audit:{<0..15>}``             streams: the sharded audit trail (:mod:`healthcode.audit`)
``hc:audit``                       the earlier release's single audit stream: read beside the
                                   shards until ``healthcode store migrate`` has moved it
                                   (:mod:`healthcode.legacy`, :mod:`healthcode.migrate`)
``hc:idem:{<cred id>:<key hash>}`` sealed first answers to Idempotency-Key requests, 24 h
``hc:cred:<credential id>``        hash: role, subject, label, mode, SHA-256 of the secret
``hc:rl:<credential id>:<minute>`` lookup rate-limit counters
``hc:rl:{authfail:addr:<a>}``      failed authentications per client address (expires with
                                   its window)
``hc:rl:{authfail:cred:<id>}``     failed authentications per credential id (likewise)
``hc:sess:<sha256 of session id>`` page sessions (:mod:`healthcode.sessions`)
``hc:link:<sha256 of token>``      one-time sign-in links for the resident page
``hc:rev:{<signature hash hex>}``  a revoked one-shot code (expires with the code): the online
                                   check reads this one key, spread over the cluster's slots
``hc:{revoked}:sig``, ``:ver``     revoked codes' signature hashes (sorted set by expiry)
                                   and a change counter, for the trust bundle
=================================  ======================================================

Keys of other families (credentials, rate limits, images, and the sessions and links of
:mod:`healthcode.sessions`) are read and written one key per command, so they need no shared
tag; a scan that must see them all (:meth:`RedisStore.credentials`) visits every primary of a
cluster. ``tests/test_key_slots.py`` checks both rules against the commands actually sent.

Writes of one subject run as one Lua script on the primary that owns the subject's slot, and a
``WAIT`` follows on the same connection, in the same round trip, where the deployment has
replicas (``HEALTHCODE_WAIT_REPLICAS``): an acknowledged write is then on a replica too, and
survives a failover. A write the replicas did not confirm in time raises
:class:`NotReplicated` (503, ``store_unavailable``): it was made on the primary but may be lost.

Redis errors are wrapped as :class:`~healthcode.errors.StoreUnavailable` here, so callers decide
what an outage means (verify degrades; writes answer 503).
"""
from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import redis
from flask import current_app
from redis import exceptions as rx
from redis.client import NEVER_DECODE
from redis.sentinel import MasterNotFoundError, SlaveNotFoundError

from . import compact, legacy, redis_topology
from .audit import AuditLog
from . import metrics
from .errors import Conflict, NotFound, StoreUnavailable
from .record import format_time, mask_name
from .recordcrypt import RecordUnreadable

REVOKED_SIGNATURES = "hc:{revoked}:sig"
REVOKED_VERSION = "hc:{revoked}:ver"
ROLES = ("authority", "checkpoint", "partner", "resident")
#: Seconds between looks at how many replicas a primary has connected (for WAIT).
REPLICA_PROBE_SECONDS = 5.0


#: what :meth:`RedisStore.create_credential` hands out: ``hc_<hex id>.<url-safe secret>``; a
#: bearer token of another shape is refused without a round trip (and during an outage, 401)
TOKEN_SHAPE = re.compile(r"hc_([0-9a-f]{1,32})\.([A-Za-z0-9_-]{1,150})")


def credential_id(token: str) -> str | None:
    """The credential id a bearer token names, if it has the shape of one of ours."""
    match = TOKEN_SHAPE.fullmatch(token)
    return match.group(1) if match else None


def _k(sid: str, part: str) -> str:
    return f"hc:{{{sid}}}:{part}"


#: failures that mean "the store is not there right now", as opposed to a bug in a command:
#: on a cluster or under Sentinel these are what a failover looks like from the client
#: (a primary gone, its slots not yet served, no primary known to the sentinels)
_OUTAGES = (rx.ConnectionError, rx.TimeoutError, rx.BusyLoadingError, rx.ReadOnlyError,
            rx.ClusterDownError, rx.ClusterError, rx.MasterDownError, rx.SlotNotCoveredError,
            rx.TryAgainError, rx.OutOfMemoryError, MasterNotFoundError, SlaveNotFoundError,
            OSError)


def wraps_redis(fn):
    """Turn any Redis failure into StoreUnavailable, keeping the cause for the logs; time each
    operation and count its outages for ``/metrics``."""
    operation = fn.__name__

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        failed = False
        try:
            return fn(*args, **kwargs)
        except _OUTAGES as exc:
            failed = True
            raise StoreUnavailable("the state store is unavailable; try again shortly") from exc
        finally:
            metrics.observe_redis(operation, time.perf_counter() - started, failed)

    return wrapper


@dataclass(frozen=True)
class Credential:
    id: str
    role: str
    subject: str | None
    label: str | None
    mode: str | None = None  # a checkpoint credential bound to a checkpoint mode


@dataclass(frozen=True)
class StatusChange:
    status: str
    version: int
    previous: str | None
    reasons: tuple[str, ...]


class _Script:
    """A Lua script run by EVALSHA, loaded on the node that lacks it."""

    def __init__(self, source: str):
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


#: Enroll one subject unless enrolled: status key and sealed record together, or nothing.
_ENROLL = _Script("""
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
return 1
""")

#: Bump the status version, append the change, drop the cached code: atomically, and only if
#: the version is the one the caller expects (ARGV[3], '' for any). Returns {version, previous}
#: or {-1} (not enrolled) or {-2, previous, version} (the version moved on).
_CHANGE = _Script("""
local st = redis.call('GET', KEYS[1])
if not st then return {-1} end
local bar = string.find(st, '|', 1, true)
local previous = string.sub(st, 1, bar - 1)
local version = tonumber(string.sub(st, bar + 1))
if ARGV[3] ~= '' and tonumber(ARGV[3]) ~= version then return {-2, previous, version} end
version = version + 1
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. version)
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('DEL', KEYS[3])
return {version, previous}
""")

#: Replace an old-format subject's record and history by their conversion, atomically, unless
#: its keys changed since they were read: ARGV = status, record and history length as read,
#: then the new record and the new history entries. Returns 1 if written, else 0.
_REPLACE = _Script("""
if redis.call('GET', KEYS[1]) ~= ARGV[1] or redis.call('GET', KEYS[2]) ~= ARGV[2]
   or redis.call('LLEN', KEYS[3]) ~= tonumber(ARGV[3]) then return 0 end
redis.call('SET', KEYS[2], ARGV[4])
redis.call('DEL', KEYS[3])
for i = 5, #ARGV, 500 do
  redis.call('RPUSH', KEYS[3], unpack(ARGV, i, math.min(i + 499, #ARGV)))
end
return 1
""")

#: Re-write a key's value unchanged: a write that reaches the replication stream, so a WAIT
#: after it tells whether everything written to that primary before is on a replica.
_TOUCH = _Script("""
local v = redis.call('GET', KEYS[1])
if v then redis.call('SET', KEYS[1], v, 'KEEPTTL') end
return v and 1 or 0
""")


class RedisStore:
    """All of the service's state, behind methods named for what they mean.

    :param client: a redis-py client (``Redis``, a Sentinel-managed ``Redis`` or
        ``RedisCluster``) with ``decode_responses=True``.
    :param cipher: seals records at rest (:class:`~healthcode.recordcrypt.RecordCipher`).
    :param wait_replicas: replicas that must confirm each write; None: 1 when the topology
        has replicas (detected once, at the first write), else 0.
    :param wait_timeout: milliseconds a write waits for them.
    """

    def __init__(self, client, cipher=None, *, wait_replicas: int | None = 0,
                 wait_timeout: int = 200, audit_retention_days: int = 400,
                 clock_skew: int = 60):
        self.r = client
        self.cipher = cipher
        self.audit_log = AuditLog(audit_retention_days, clock_skew)
        self._wait_replicas = wait_replicas
        self.wait_timeout = int(wait_timeout)
        self._kind = redis_topology.kind_of(client)
        self._cluster = self._kind == redis_topology.CLUSTER
        self._stale_topology = False
        self._loaded: set[tuple[int, str]] = set()
        self._connected: dict[int, tuple[int, float]] = {}

    @classmethod
    def from_url(cls, url: str, timeout: float = 0.5, **options) -> "RedisStore":
        """A store on any topology ``REDIS_URL`` names (:mod:`healthcode.redis_topology`)."""
        return cls(redis_topology.connect(url, timeout=timeout), **options)

    @wraps_redis
    def ping(self) -> bool:
        return bool(self.r.ping())

    @wraps_redis
    def topology(self) -> dict:
        """Which topology answered and whether all of it serves (see ``/readyz``)."""
        return redis_topology.describe(self.r)

    # -- one slot, one connection, one round trip ---------------------------------------------

    def wait_replicas(self) -> int:
        """How many replicas must confirm a write (0: WAIT is off)."""
        if self._wait_replicas is None:
            self._wait_replicas = 1 if self._has_replicas() else 0
        return self._wait_replicas

    def _has_replicas(self) -> bool:
        if self._cluster:
            return bool(self.r.get_replicas())
        if self._kind == redis_topology.SENTINEL:
            return True  # a Sentinel-managed primary is there to fail over to its replicas
        return int(self.r.info("replication").get("connected_slaves", 0)) > 0

    def _replicas_to_wait(self, client) -> int:
        """WAIT_REPLICAS, or fewer where that primary has fewer replicas connected right now.

        After a failover the promoted primary has no replica until the old one rejoins; it
        cannot be failed over either, so a write it acknowledges cannot be lost to a failover
        (it is in its append-only file). Waiting for a replica it does not have would refuse
        every write to its slots until then. A frozen or lagging replica still counts as
        connected, so it is waited for. The count is looked up (ROLE) at most every
        REPLICA_PROBE_SECONDS per primary, and again after a write it did not confirm.
        """
        wanted = self.wait_replicas()
        if not wanted:
            return 0
        seen = self._connected.get(id(client))
        now = time.monotonic()
        if seen is None or now - seen[1] > REPLICA_PROBE_SECONDS:
            role = client.execute_command("ROLE")
            connected = len(role[2]) if role and role[0] == "master" else 0
            self._connected[id(client)] = seen = (connected, now)
        return min(wanted, seen[0])

    def _node(self, key: str):
        """A client whose connections reach the primary owning ``key`` (itself, off a cluster)."""
        if not self._cluster:
            return self.r
        if self._stale_topology:
            self._stale_topology = False
            self.r.nodes_manager.initialize()
        return self.r.get_redis_connection(self.r.get_node_from_key(key))

    def _on_slot(self, key: str, build, *, wait: bool = False, scripts=()) -> list:
        """Queue commands for ``key``'s slot with ``build(pipe)`` and send them at once.

        With ``wait``, a WAIT follows on the same connection (a WAIT only counts the writes of
        its own connection), and :class:`NotReplicated` says too few replicas confirmed.
        A MOVED (a failover or resharding on a cluster) refreshes the slot map and retries
        once; so does a script the node has not loaded yet.
        """
        def send(client, replicas):
            with client.pipeline(transaction=False) as pipe:
                build(pipe)
                if replicas:
                    pipe.execute_command("WAIT", replicas, self.wait_timeout)
                return pipe.execute(raise_on_error=False)

        return self._round_trip(key, send, wait=wait, scripts=scripts)

    def _on_slot_packed(self, key: str, packed: bytes, replies: int, *,
                        wait: bool = False) -> list:
        """As :meth:`_on_slot`, for commands already in the wire protocol (:func:`resp`):
        ``replies`` answers, each the server's reply as text (or None) or the error it was.

        For the bulk writes, where redis-py's pipeline costs the client several times what
        packing the commands here does: one connection, one send, the replies read in order.
        """
        def send(client, replicas):
            payload = packed
            if replicas:
                payload += resp(b"WAIT", b"%d" % replicas, b"%d" % self.wait_timeout)
            return _exchange(client, payload, replies + (1 if replicas else 0))

        return self._round_trip(key, send, wait=wait)

    def _round_trip(self, key: str, send, *, wait: bool, scripts=()) -> list:
        """``send(client, replicas)`` on the primary owning ``key``: its results, WAIT's
        checked and removed (see :meth:`_on_slot`)."""
        for attempt in range(2):
            client = self._node(key)
            try:
                replicas = self._replicas_to_wait(client) if wait else 0
                for script in scripts:
                    # loaded ahead, so a first EVALSHA does not fail and send its WAIT twice
                    if (id(client), script.sha) not in self._loaded:
                        client.script_load(script.source)
                        self._loaded.add((id(client), script.sha))
                results = send(client, replicas)
            except _OUTAGES:
                self._stale_topology = self._cluster
                raise
            errors = [r for r in results if isinstance(r, Exception)]
            if errors and attempt == 0:
                if any(isinstance(e, (rx.MovedError, rx.AskError)) for e in errors):
                    self._stale_topology = True
                    continue
                if any(isinstance(e, rx.NoScriptError) for e in errors):
                    # the server restarted, or flushed its scripts
                    self._loaded -= {(id(client), script.sha) for script in scripts}
                    continue
            if errors:
                raise errors[0]
            if replicas:
                confirmed = results.pop()
                if confirmed < replicas:
                    self._connected.pop(id(client), None)  # look again before the next write
                    raise NotReplicated(key, results, confirmed, replicas)
            return results
        raise AssertionError("unreachable")  # pragma: no cover

    @wraps_redis
    def confirm(self, key: str) -> None:
        """Make sure what was written to ``key``'s primary so far is on enough replicas.

        For a retry of a write whose WAIT fell short: a fresh connection's WAIT would count
        nothing of the earlier write, so an unchanged re-write of the key goes first; the
        replication stream is ordered, so its acknowledgement covers every earlier write.
        """
        self._on_slot(key, lambda p: p.evalsha(_TOUCH.sha, 1, key), wait=True,
                      scripts=(_TOUCH,))

    # -- sealing records ----------------------------------------------------------------------

    def _seal(self, sid: str, data: dict) -> bytes:
        return self.cipher.seal(sid, compact.dumps(data))

    def _open(self, sid: str, raw: bytes) -> dict:
        try:
            return compact.loads(self.cipher.open(sid, raw))
        except RecordUnreadable:
            # looked at only once opening failed: the read path pays nothing for it
            if legacy.is_legacy_record(raw) or legacy.is_legacy_entry(raw):
                raise legacy.migration_needed("record or history") from None
            raise

    def stored_record(self, sid: str, record: dict, actor: str, now: int) -> bytes:
        """The sealed form of a new subject's record, with the history's first entry."""
        return seal_record(self.cipher, sid, record, actor, now)

    def _record_view(self, sid: str, stored: dict) -> dict:
        record = stored["record"]
        subject = record.setdefault("subject", {})
        subject["subject_id"] = sid
        if "masked_name" not in subject and subject.get("name"):
            subject["masked_name"] = mask_name(subject["name"])
        return record

    # -- residents ----------------------------------------------------------------------------

    @wraps_redis
    def create_resident(self, sid: str, data: dict, status: str, reasons: tuple[str, ...],
                        actor: str) -> int:
        """Enroll a subject at status version 1; :class:`Conflict` if already enrolled."""
        st_key = _k(sid, "st")
        sealed = self.stored_record(sid, data["record"], actor, int(time.time()))
        try:
            (created,) = self._on_slot(
                st_key, lambda p: p.evalsha(_ENROLL.sha, 2, st_key, _k(sid, "rec"),
                                            f"{status}|1", sealed),
                wait=True, scripts=(_ENROLL,))
        except NotReplicated as exc:
            if exc.results[0]:
                self._audit_enroll(actor, sid, status, reasons)
            raise exc.answered(1)
        if not created:
            raise Conflict("this resident is already enrolled", id=sid)
        self._audit_enroll(actor, sid, status, reasons)
        return 1

    def _audit_enroll(self, actor, sid, status, reasons):
        self.audit("enroll", actor=actor, subject=sid, to=status, reason=",".join(reasons),
                   version=1)

    @wraps_redis
    def enroll_many(self, items: list[tuple[str, str, bytes]], actor: str,
                    reasons: list[tuple[str, ...]] | None = None) -> list[bool]:
        """Enroll many subjects (sid, status, sealed record); True where newly enrolled.

        One pipeline per primary (commands grouped by the node owning each slot), each
        followed by WAIT; then one audit entry per group of up to AUDIT_GROUP residents
        enrolled at one status (:mod:`healthcode.bulk`), likewise grouped.
        """
        from .bulk import AUDIT_GROUP

        created = [False] * len(items)
        # Two SET NX per subject, the record first, rather than the enrollment script: a
        # script costs Redis several times two SETs, and the order keeps them consistent with
        # concurrent single enrollments. Where the subject exists both fail (already
        # enrolled). A single enrollment between the two sees no status key and writes both
        # (its record replaces ours), so our status SET fails: already enrolled, and the
        # record is the one its status came with. An import cut between the two leaves a
        # record without a status (invisible: a resident needs both), which the re-run's
        # status SET then completes.
        for indexes in self._by_node([_k(sid, "st") for sid, _, _ in items]):
            packed = b"".join([_enroll_commands(*items[i]) for i in indexes])
            results = self._on_slot_packed(_k(items[indexes[0]][0], "st"), packed,
                                           2 * len(indexes), wait=True)
            for i, result in zip(indexes, results[1::2]):
                created[i] = result is not None  # SET NX answers OK, or nil where it exists
        groups: dict = {}
        for i, (sid, status, _) in enumerate(items):
            if created[i]:
                why = ",".join(reasons[i]) if reasons else ""
                groups.setdefault((status, why), []).append(sid)
        entries = []
        for (status, why), sids in groups.items():
            for at in range(0, len(sids), AUDIT_GROUP):
                chunk = sids[at:at + AUDIT_GROUP]
                entries.append((chunk[0], {"subjects": " ".join(chunk), "to": status,
                                           "reason": why, "version": 1}))
        for indexes in self._by_node([self.audit_log.key_for(first) for first, _ in entries]):
            def build(pipe, indexes=indexes):
                for i in indexes:
                    first, fields = entries[i]
                    self.audit_log.add(pipe, "enroll", actor, fields, subject=first)
            self._on_slot(self.audit_log.key_for(entries[indexes[0]][0]), build, wait=True)
        return created

    def _by_node(self, keys: list[str]) -> list[list[int]]:
        """Indexes of ``keys`` grouped by the primary owning their slot (one group off a
        cluster), so each group can go in one pipeline."""
        if not self._cluster:
            return [list(range(len(keys)))] if keys else []
        groups: dict = {}
        for i, key in enumerate(keys):
            groups.setdefault(self.r.get_node_from_key(key).name, []).append(i)
        return list(groups.values())

    @wraps_redis
    def resident(self, sid: str) -> tuple[dict, str, int]:
        """The stored record (with its current status and reasons), status and version."""
        st_key = _k(sid, "st")

        def build(pipe):
            pipe.get(st_key)
            pipe.execute_command("GET", _k(sid, "rec"), **{NEVER_DECODE: True})
            pipe.execute_command("LINDEX", _k(sid, "hist"), -1, **{NEVER_DECODE: True})

        st, rec, last = self._on_slot(st_key, build)
        if st is None or rec is None:
            raise NotFound("no such resident")
        status, version = _split_status(st)
        stored = self._open(sid, rec)
        record = self._record_view(sid, stored)
        created = _iso(stored["created_at"])
        updated = created
        record["status"] = status
        if last is not None:
            change = self._open(sid, last)
            updated = _iso(change["at"])
            record["reasons"] = change.get("reasons", [])
        if not record.get("reasons"):
            record.pop("reasons", None)
        return {"record": record, "created_at": created, "updated_at": updated}, status, version

    @wraps_redis
    def current_status(self, sid: str) -> tuple[str, int] | None:
        """The hot path of every online verify: one GET."""
        st = self.r.get(_k(sid, "st"))
        return None if st is None else _split_status(st)

    @wraps_redis
    def change_status(self, sid: str, status: str, reasons: tuple[str, ...],
                      actor: str, note: str | None = None,
                      expected_version: int | None = None) -> StatusChange:
        """Set a new status, bump the version and record the change, atomically per subject.

        With ``expected_version``, :class:`Conflict` unless the status is still at it.
        """
        st_key = _k(sid, "st")
        entry = {"at": int(time.time()), "actor": actor, "to": status, "reasons": list(reasons)}
        if note:
            entry["note"] = note  # free text may name people: it is sealed like the record
        sealed = self._seal(sid, entry)
        expected = "" if expected_version is None else str(expected_version)
        keys = (st_key, _k(sid, "hist"), _k(sid, "code"))
        pending = None
        try:
            (result,) = self._on_slot(
                st_key, lambda p: p.evalsha(_CHANGE.sha, 3, *keys, status, sealed, expected),
                wait=True, scripts=(_CHANGE,))
        except NotReplicated as exc:
            result, pending = exc.results[0], exc
        if result[0] == -1:
            raise NotFound("no such resident")
        if result[0] == -2:
            conflict = Conflict("the status has changed since the version you expected",
                                status_version=int(result[2]))
            conflict.detail["status"] = result[1]  # ("status" names the HTTP status as a kwarg)
            raise conflict
        version, previous = int(result[0]), result[1]
        self.audit("status_change", actor=actor, subject=sid, **{"from": previous},
                   to=status, reason=",".join(reasons), version=version)
        change = StatusChange(status=status, version=version, previous=previous,
                              reasons=reasons)
        if pending is not None:
            raise pending.answered(change)
        return change

    @wraps_redis
    def history(self, sid: str) -> list[dict]:
        """Every status change of a subject, oldest first, enrollment included."""
        def build(pipe):
            pipe.execute_command("GET", _k(sid, "rec"), **{NEVER_DECODE: True})
            pipe.execute_command("LRANGE", _k(sid, "hist"), 0, -1, **{NEVER_DECODE: True})

        rec, changes = self._on_slot(_k(sid, "st"), build)
        if rec is None:
            return []
        stored = self._open(sid, rec)
        record = stored["record"]
        out = [{"at": _iso(stored["created_at"]), "actor": stored["actor"], "from": None,
                "to": record.get("status"), "version": 1,
                "reasons": list(record.get("reasons", []))}]
        for raw in changes:
            change = self._open(sid, raw)
            entry = {"at": _iso(change["at"]), "actor": change["actor"], "from": out[-1]["to"],
                     "to": change["to"], "version": out[-1]["version"] + 1,
                     "reasons": change.get("reasons", [])}
            if change.get("note"):
                entry["note"] = change["note"]
            out.append(entry)
        return out

    @wraps_redis
    def sealed_keys(self):
        """Every key holding sealed data (records and histories), on every primary."""
        for pattern in ("hc:{*}:rec", "hc:{*}:hist"):
            yield from redis_topology.scan_iter(self.r, pattern, count=1000)

    @wraps_redis
    def rekey(self, key: str) -> bool:
        """Re-seal one record or history under the newest record key; True if it changed.

        Atomic per key (WATCH): a concurrent status change makes it retry.
        """
        sid = key[key.index("{") + 1:key.index("}")]
        newest = self.cipher.newest
        client = self._node(key)
        for _ in range(20):
            with client.pipeline() as pipe:
                try:
                    pipe.watch(key)
                    kind = pipe.type(key)
                    if kind == "string":
                        raw = pipe.execute_command("GET", key, **{NEVER_DECODE: True})
                        values = [raw] if raw is not None else []
                    else:
                        values = pipe.execute_command("LRANGE", key, 0, -1,
                                                      **{NEVER_DECODE: True})
                    if all(v[0] == newest for v in values):
                        return False
                    if any(legacy.is_legacy_record(v) or legacy.is_legacy_entry(v)
                           for v in values):
                        raise legacy.migration_needed("record or history")
                    fresh = [self.cipher.seal(sid, self.cipher.open(sid, v)) for v in values]
                    pipe.multi()
                    if kind == "string":
                        pipe.set(key, fresh[0], keepttl=True)
                    else:
                        pipe.delete(key)
                        pipe.rpush(key, *fresh)
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue
        raise StoreUnavailable(f"{key} kept changing; run rekey again")

    # -- the earlier release's layout (healthcode.legacy, healthcode.migrate) -------------------

    @wraps_redis
    def record_keys(self):
        """Every subject's record key, on every primary."""
        yield from redis_topology.scan_iter(self.r, "hc:{*}:rec", count=1000)

    @wraps_redis
    def heads(self, keys: list[str], size: int = 16) -> list[bytes | None]:
        """The first ``size`` bytes of each string key (None where missing), one pipeline per
        primary: enough to tell an old JSON record from a sealed one without reading it."""
        out: list = [None] * len(keys)
        for indexes in self._by_node(keys):
            def build(pipe, indexes=indexes):
                for i in indexes:
                    pipe.execute_command("GETRANGE", keys[i], 0, size - 1,
                                         **{NEVER_DECODE: True})
            for i, head in zip(indexes, self._on_slot(keys[indexes[0]], build)):
                out[i] = head or None
        return out

    @wraps_redis
    def subjects_keys(self, sids: list[str]) -> list[tuple[str | None, bytes | None, list]]:
        """Each subject's status, record and history as stored (bytes, unopened); one
        pipeline per primary."""
        out: list = [None] * len(sids)
        for indexes in self._by_node([_k(sid, "st") for sid in sids]):
            def build(pipe, indexes=indexes):
                for i in indexes:
                    pipe.get(_k(sids[i], "st"))
                    pipe.execute_command("GET", _k(sids[i], "rec"), **{NEVER_DECODE: True})
                    pipe.execute_command("LRANGE", _k(sids[i], "hist"), 0, -1,
                                         **{NEVER_DECODE: True})
            results = self._on_slot(_k(sids[indexes[0]], "st"), build)
            for n, i in enumerate(indexes):
                st, rec, hist = results[3 * n:3 * n + 3]
                out[i] = (st, rec, list(hist))
        return out

    @wraps_redis
    def replace_subjects(self, items: list[tuple[str, tuple, bytes, list[bytes]]]) -> list[bool]:
        """Write converted subjects (sid, keys as read, new record, new history), each in one
        script that writes only if its keys still hold what was read; False where they
        changed meanwhile. One pipeline per primary, one WAIT after it: a WAIT confirms every
        earlier write of its connection."""
        out = [False] * len(items)
        for indexes in self._by_node([_k(item[0], "st") for item in items]):
            def build(pipe, indexes=indexes):
                for i in indexes:
                    sid, (st, rec, hist), record, history = items[i]
                    pipe.evalsha(_REPLACE.sha, 3, _k(sid, "st"), _k(sid, "rec"),
                                 _k(sid, "hist"), st, rec, len(hist), record, *history)
            key = _k(items[indexes[0]][0], "st")
            try:
                results = self._on_slot(key, build, wait=True, scripts=(_REPLACE,))
            except NotReplicated as exc:
                results = exc.results
                self.confirm(key)  # once more, on a fresh connection; raises if still short
            for i, done in zip(indexes, results):
                out[i] = bool(done)
        return out

    @wraps_redis
    def has_legacy_audit(self) -> bool:
        """Whether the earlier release's audit stream is still there (one EXISTS)."""
        return bool(self.r.exists(legacy.LEGACY_AUDIT))

    @wraps_redis
    def move_legacy_audit(self, dry_run: bool = False) -> dict[str, int]:
        """Move the earlier release's audit entries into their shards (see
        :meth:`~healthcode.audit.AuditLog.move_legacy`)."""
        return self.audit_log.move_legacy(self.r, dry_run=dry_run)

    # -- codes and images ---------------------------------------------------------------------

    @wraps_redis
    def cached_code(self, sid: str) -> str | None:
        return self.r.get(_k(sid, "code"))

    @wraps_redis
    def cache_code(self, sid: str, token: str, seconds: int) -> None:
        self.r.set(_k(sid, "code"), token, ex=max(1, int(seconds)))

    @staticmethod
    def _image_key(token: str, fmt: str) -> str:
        digest = hashlib.sha256(token.encode()).hexdigest()[:32]
        return f"hc:img:{{{digest}}}:{fmt}"

    @wraps_redis
    def cached_image(self, token: str, fmt: str) -> bytes | None:
        raw = self.r.get(self._image_key(token, fmt))
        return None if raw is None else bytes.fromhex(raw)

    @wraps_redis
    def cache_image(self, token: str, fmt: str, image: bytes, seconds: int) -> None:
        # hex keeps the client in decode_responses mode; images are a few KiB and short-lived
        self.r.set(self._image_key(token, fmt), image.hex(), ex=max(1, int(seconds)))

    # -- audit --------------------------------------------------------------------------------

    @wraps_redis
    def audit(self, action: str, *, actor: str, **fields) -> str:
        """Append to the audit trail. Callers pass ids and codes, never personal data."""
        return self.audit_log.add(self.r, action, actor, fields, subject=fields.get("subject"))

    @wraps_redis
    def audit_entries(self, count: int = 100) -> list[dict]:
        """The newest entries over every shard, newest first."""
        return self.audit_log.newest(self.r, count)

    def audit_export(self, since_ms: int | None = None, until_ms: int | None = None):
        """Every entry in the window, oldest first (a generator: Redis errors surface as
        :class:`StoreUnavailable` while iterating)."""
        try:
            yield from self.audit_log.entries(self.r, since_ms, until_ms)
        except _OUTAGES as exc:
            raise StoreUnavailable("the state store is unavailable; try again shortly") from exc

    @wraps_redis
    def audit_trim(self, now: float | None = None, exact: bool = True) -> dict[int, int]:
        return self.audit_log.trim(self.r, now, exact=exact)

    # -- idempotency --------------------------------------------------------------------------

    @staticmethod
    def _idem_key(scope: str, key: str) -> str:
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
        return f"hc:idem:{{{scope}:{digest}}}"

    @wraps_redis
    def idempotency_reserve(self, scope: str, key: str, record: dict,
                            seconds: int) -> dict | None:
        """Claim ``key`` for this scope (SET NX); None if claimed, else what is stored."""
        name = self._idem_key(scope, key)
        sealed = self.cipher.seal(name, compact.dumps(record))
        (claimed, existing) = self._on_slot(name, lambda p: (
            p.set(name, sealed, nx=True, ex=seconds),
            p.execute_command("GET", name, **{NEVER_DECODE: True})))
        if claimed:
            return None
        if existing is None:  # expired between the two commands: claim again
            return self.idempotency_reserve(scope, key, record, seconds)
        return compact.loads(self.cipher.open(name, existing))

    @wraps_redis
    def idempotency_save(self, scope: str, key: str, record: dict, seconds: int) -> None:
        name = self._idem_key(scope, key)
        sealed = self.cipher.seal(name, compact.dumps(record))
        self._on_slot(name, lambda p: p.set(name, sealed, ex=seconds), wait=True)

    @wraps_redis
    def idempotency_release(self, scope: str, key: str) -> None:
        self.r.delete(self._idem_key(scope, key))

    # -- credentials --------------------------------------------------------------------------

    @wraps_redis
    def create_credential(self, role: str, subject: str | None = None,
                          label: str | None = None,
                          mode: str | None = None) -> tuple[Credential, str]:
        """A new bearer token ``hc_<id>.<secret>``; only the secret's SHA-256 is stored."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if role == "resident" and not subject:
            raise ValueError("a resident credential is bound to one subject")
        cred_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(24)
        fields = {"role": role, "hash": _hash_secret(secret),
                  "created_at": format_time(datetime.now(timezone.utc))}
        if subject:
            fields["subject"] = subject
        if label:
            fields["label"] = label
        if mode:
            if role != "checkpoint":
                raise ValueError("only a checkpoint credential is bound to a mode")
            fields["mode"] = mode
        key = f"hc:cred:{cred_id}"
        self._on_slot(key, lambda p: p.hset(key, mapping=fields), wait=True)
        return Credential(cred_id, role, subject, label, mode), f"hc_{cred_id}.{secret}"

    @wraps_redis
    def check_credential(self, token: str) -> Credential | None:
        """The credential a bearer token names, if its secret matches (constant-time)."""
        match = TOKEN_SHAPE.fullmatch(token)
        if match is None:
            return None
        cred_id, secret = match.groups()
        fields = self.r.hgetall(f"hc:cred:{cred_id}")
        if not fields or not hmac.compare_digest(fields.get("hash", ""), _hash_secret(secret)):
            return None
        return Credential(cred_id, fields["role"], fields.get("subject"), fields.get("label"),
                          fields.get("mode"))

    @wraps_redis
    def credentials(self) -> list[dict]:
        out = []
        for key in redis_topology.scan_iter(self.r, "hc:cred:*"):  # every primary
            fields = self.r.hgetall(key)
            fields.pop("hash", None)
            out.append({"id": key.split(":", 2)[2], **fields})
        return sorted(out, key=lambda c: c.get("created_at", ""))

    @wraps_redis
    def revoke_credential(self, cred_id: str) -> bool:
        return bool(self.r.delete(f"hc:cred:{cred_id}"))

    # -- revoked one-shot codes ---------------------------------------------------------------

    @staticmethod
    def _revoked_key(digest: str) -> str:
        return f"hc:rev:{{{base64.b64decode(digest).hex()}}}"

    @wraps_redis
    def revoke_code(self, digest: str, expires_at: int) -> None:
        """Mark a code revoked until ``expires_at`` (POSIX seconds), by its SIGNATURE hash.

        Two key families in two slots, written one after the other (never one multi-key
        command): the per-code key answers the online check, so verifies spread over the
        cluster instead of all reading one hot key; the bundle's sorted set lists it offline.
        """
        self.r.set(self._revoked_key(digest), "1", exat=int(expires_at))
        self.revoke_signature_hash(digest, expires_at)

    @wraps_redis
    def is_revoked(self, digest: str) -> bool:
        return bool(self.r.exists(self._revoked_key(digest)))

    # -- rate limits --------------------------------------------------------------------------

    @wraps_redis
    def strike(self, bucket: str, window: int) -> tuple[int, int]:
        """Count one failure in a window that opens with the first one and lasts ``window``
        seconds; returns the count and the seconds left.

        The window opens at the first failure rather than on the clock, so a burst is never
        split in two by a minute boundary, and the seconds left are an exact Retry-After. One
        key, in one MULTI: the key can never be left without its expiry.
        """
        key = f"hc:rl:{bucket}"
        with self.r.pipeline(transaction=True) as pipe:
            pipe.set(key, 0, ex=window, nx=True)
            pipe.incr(key)
            pipe.ttl(key)
            _, count, ttl = pipe.execute()
        return int(count), max(1, int(ttl))

    @wraps_redis
    def strikes(self, bucket: str) -> tuple[int, int]:
        """The failures counted in ``bucket``'s open window and its seconds left (0, 0 if none)."""
        key = f"hc:rl:{bucket}"
        with self.r.pipeline(transaction=False) as pipe:
            pipe.get(key)
            pipe.ttl(key)
            count, ttl = pipe.execute()
        return (int(count), max(1, int(ttl))) if count is not None else (0, 0)

    @wraps_redis
    def hit(self, bucket: str, window: int = 60) -> int:
        """Count one event in the current fixed window; returns the count so far."""
        slot = int(time.time() // window)
        key = f"hc:rl:{bucket}:{slot}"
        with self.r.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, window * 2)
            count, _ = pipe.execute()
        return int(count)

    # -- revoked codes, for the trust bundle ---------------------------------------------------
    # ``hc:{revoked}:sig`` is a sorted set of SIGNATURE hashes (base64 of the first 16 bytes of
    # the SHA-256 of a code's signature, see healthcode.trust.bundle.signature_hash) scored by
    # the revoked code's expiry, so the list only holds codes that could still verify;
    # ``hc:{revoked}:ver`` counts changes, so a worker rebuilds its bundle only when it moved.
    # Both share one hash tag (one Cluster slot).

    @wraps_redis
    def revoke_signature_hash(self, digest: str, expires_at: float) -> bool:
        """List a revoked code by its signature hash until ``expires_at`` (epoch seconds)."""
        with self.r.pipeline(transaction=True) as pipe:
            pipe.zadd(REVOKED_SIGNATURES, {digest: float(expires_at)})
            pipe.zremrangebyscore(REVOKED_SIGNATURES, "-inf", time.time())
            pipe.incr(REVOKED_VERSION)
            added, _, _ = pipe.execute()
        return bool(added)

    @wraps_redis
    def revoked_signature_hashes(self, now: float | None = None) -> list[str]:
        """The SIGNATURE hashes of revoked codes not yet expired (empty when none)."""
        now = time.time() if now is None else now
        return sorted(self.r.zrangebyscore(REVOKED_SIGNATURES, now, "+inf"))

    @wraps_redis
    def revocations_version(self) -> int:
        return int(self.r.get(REVOKED_VERSION) or 0)


    # -- status push --------------------------------------------------------------------------

    @wraps_redis
    def publish_status(self, sid: str, status: str, version: int) -> None:
        """Tell open resident pages of this subject that its status changed
        (:mod:`healthcode.status_push`); the subject's own channel, tagged like its keys."""
        self.r.publish(f"hc:{{{sid}}}:status", f"{status}|{version}")


def resp(*args: bytes) -> bytes:
    """One command in the Redis wire protocol (RESP): an array of bulk strings."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def _enroll_commands(sid: str, status: str, sealed: bytes) -> bytes:
    """``SET hc:{sid}:rec <sealed> NX`` then ``SET hc:{sid}:st <status>|1 NX``, packed (as
    :func:`resp` would, in one step: a province's import packs a hundred million)."""
    tag = sid.encode()
    value = b"%s|1" % status.encode()
    return (b"*4\r\n$3\r\nSET\r\n$%d\r\nhc:{%s}:rec\r\n$%d\r\n%s\r\n$2\r\nNX\r\n"
            b"*4\r\n$3\r\nSET\r\n$%d\r\nhc:{%s}:st\r\n$%d\r\n%s\r\n$2\r\nNX\r\n"
            % (len(tag) + 9, tag, len(sealed), sealed, len(tag) + 8, tag, len(value), value))


def _exchange(client, payload: bytes, replies: int) -> list:
    """Send packed commands on one of ``client``'s connections and read ``replies`` replies
    (an error reply is returned as its exception, as a pipeline does), retried and
    disconnected on failure as redis-py's pipelines are."""
    pool = client.connection_pool
    conn = pool.get_connection()

    def once():
        conn.send_packed_command([payload])
        read, out = conn.read_response, []
        for _ in range(replies):
            try:
                out.append(read())
            except rx.ResponseError as exc:
                out.append(exc)
        return out

    try:
        return conn.retry.call_with_retry(once, lambda error: conn.disconnect())
    finally:
        pool.release(conn)


def _split_status(value: str) -> tuple[str, int]:
    status, _, version = value.partition("|")
    return status, int(version)


def _hash_secret(secret: str) -> str:
    # Secrets are 192 random bits, so a fast hash is as good as a slow one here.
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def seal_record(cipher, sid: str, record: dict, actor: str, now: int) -> bytes:
    """A new subject's record as stored: compact, sealed, with who enrolled them and when.

    The subject id (it is the key) and a masked name derivable from the name are left out.
    """
    subject = record.get("subject")
    if subject:
        subject = {k: v for k, v in subject.items() if k != "subject_id"}
        if subject.get("masked_name") == mask_name(subject.get("name")):
            subject.pop("masked_name", None)  # absent, too, where the name masks to nothing
        record = {**record, "subject": subject}
    return cipher.seal(sid, compact.dumps({"record": record, "created_at": now,
                                           "actor": actor}))


def _iso(seconds: int) -> str:
    return format_time(datetime.fromtimestamp(seconds, timezone.utc))


class NotReplicated(StoreUnavailable):
    """The write was made on the primary, but too few replicas confirmed it in time."""

    def __init__(self, key: str, results: list, confirmed: int, wanted: int):
        super().__init__(f"the write was not confirmed by {wanted} replica(s) in time "
                         f"({confirmed} did); retry with the same Idempotency-Key")
        self.key = key
        self.results = results
        self.answer = None

    def answered(self, answer) -> "NotReplicated":
        """The same error carrying what the write returned, for an idempotent retry."""
        self.answer = answer
        return self


# -- Flask wiring --------------------------------------------------------------------------------

def store_options(config, cipher) -> dict:
    """The store's settings from the service configuration (shared by the app and the CLI)."""
    return {"cipher": cipher, "wait_replicas": config["WAIT_REPLICAS"],
            "wait_timeout": config["WAIT_TIMEOUT"],
            "audit_retention_days": config["AUDIT_RETENTION_DAYS"],
            "clock_skew": config["CLOCK_SKEW"]}


def init_app(app) -> None:
    app.extensions["healthcode.store"] = RedisStore.from_url(
        app.config["REDIS_URL"], timeout=app.config["REDIS_TIMEOUT"],
        **store_options(app.config, app.extensions["healthcode.record_cipher"]))


def get_store() -> RedisStore:
    return current_app.extensions["healthcode.store"]
