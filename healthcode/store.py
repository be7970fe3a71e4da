"""State in Redis: residents, status versions, audit trail, credentials, caches.

Key layout. Every key about one subject carries the subject id as a hash tag, so a subject's
keys share a Redis Cluster slot and can change together in one MULTI:

=================================  ======================================================
``hc:{<sid>}:st``                  ``"<status>|<version>"``: the only key read on a verify
``hc:{<sid>}:rec``                 JSON: the full record (evidence, masked document number)
``hc:{<sid>}:hist``                list of JSON: every status change of this subject (a list,
                                   not a stream: a one-entry stream costs ~4.7 KB, a list ~100 B)
``hc:{<sid>}:code``                the current dynamic code (expires before the code does)
``hc:img:{<token hash>}:<fmt>``    rendered QR images, per token, expiring with the token
``hc:audit``                       stream: every status change, lookup and conversion
``hc:cred:<credential id>``        hash: role, subject, label, SHA-256 of the secret
``hc:rl:<credential id>:<minute>`` lookup rate-limit counters
``hc:sess:<sha256 of session id>`` page sessions (:mod:`healthcode.sessions`)
``hc:link:<sha256 of token>``      one-time sign-in links for the resident page
=================================  ======================================================

Keys of other families (credentials, rate limits, images, and the sessions and links of
:mod:`healthcode.sessions`) are read and written one key per command, so they need no shared
tag; a scan that must see them all (:meth:`RedisStore.credentials`) visits every primary of a
cluster. ``tests/test_key_slots.py`` checks both rules against the commands actually sent.

Redis errors are wrapped as :class:`~healthcode.errors.StoreUnavailable` here, so callers decide
what an outage means (verify degrades; writes answer 503).
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import redis
from flask import current_app
from redis import exceptions as rx
from redis.sentinel import MasterNotFoundError, SlaveNotFoundError

from . import redis_topology
from .errors import Conflict, NotFound, StoreUnavailable
from .record import format_time

AUDIT_STREAM = "hc:audit"
ROLES = ("authority", "checkpoint", "partner", "resident")


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
    """Turn any Redis failure into StoreUnavailable, keeping the cause for the logs."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except _OUTAGES as exc:
            raise StoreUnavailable("the state store is unavailable; try again shortly") from exc

    return wrapper


@dataclass(frozen=True)
class Credential:
    id: str
    role: str
    subject: str | None
    label: str | None


@dataclass(frozen=True)
class StatusChange:
    status: str
    version: int
    previous: str | None
    reasons: tuple[str, ...]


class RedisStore:
    """All of the service's state, behind methods named for what they mean."""

    def __init__(self, client: redis.Redis):
        self.r = client

    @classmethod
    def from_url(cls, url: str, timeout: float = 0.5) -> "RedisStore":
        """A store on any topology ``REDIS_URL`` names (:mod:`healthcode.redis_topology`)."""
        return cls(redis_topology.connect(url, timeout=timeout))

    @wraps_redis
    def ping(self) -> bool:
        return bool(self.r.ping())

    @wraps_redis
    def topology(self) -> dict:
        """Which topology answered and whether all of it serves (see ``/readyz``)."""
        return redis_topology.describe(self.r)

    # -- residents ----------------------------------------------------------------------------

    @wraps_redis
    def create_resident(self, sid: str, data: dict, status: str, reasons: tuple[str, ...],
                        actor: str) -> int:
        """Enroll a subject at status version 1; :class:`Conflict` if already enrolled."""
        st_key = _k(sid, "st")
        now = format_time(datetime.now(timezone.utc))
        # A WatchError says the watched key was touched or (redis-py) that the connection
        # broke while watching, as in a failover: not that the resident exists. Look again.
        for _ in range(20):
            with self.r.pipeline(transaction=True) as pipe:  # one slot: cluster-safe
                try:
                    pipe.watch(st_key)
                    if pipe.exists(st_key):
                        raise Conflict("this resident is already enrolled", id=sid)
                    pipe.multi()
                    pipe.set(st_key, f"{status}|1")
                    pipe.set(_k(sid, "rec"), json.dumps({**data, "created_at": now,
                                                         "updated_at": now}, ensure_ascii=False))
                    pipe.rpush(_k(sid, "hist"),
                               _change_entry(actor, None, status, reasons, 1, now))
                    pipe.execute()
                    break
                except redis.WatchError:
                    continue
        else:
            raise StoreUnavailable("the enrollment kept colliding; try again")
        self.audit("enroll", actor=actor, subject=sid, to=status, reason=",".join(reasons),
                   version=1)
        return 1

    @wraps_redis
    def resident(self, sid: str) -> tuple[dict, str, int]:
        """The stored record, current status and status version."""
        st, rec = self.r.mget(_k(sid, "st"), _k(sid, "rec"))
        if st is None or rec is None:
            raise NotFound("no such resident")
        status, version = _split_status(st)
        return json.loads(rec), status, version

    @wraps_redis
    def current_status(self, sid: str) -> tuple[str, int] | None:
        """The hot path of every online verify: one GET."""
        st = self.r.get(_k(sid, "st"))
        return None if st is None else _split_status(st)

    @wraps_redis
    def change_status(self, sid: str, status: str, reasons: tuple[str, ...],
                      actor: str, note: str | None = None) -> StatusChange:
        """Set a new status, bump the version and record the change, atomically per subject."""
        st_key, rec_key = _k(sid, "st"), _k(sid, "rec")
        for _ in range(20):
            with self.r.pipeline(transaction=True) as pipe:  # one slot: cluster-safe
                try:
                    pipe.watch(st_key, rec_key)
                    # two GETs, not MGET: a cluster pipeline refuses multi-key reads even
                    # within one slot
                    st, rec = pipe.get(st_key), pipe.get(rec_key)
                    if st is None or rec is None:
                        raise NotFound("no such resident")
                    previous, version = _split_status(st)
                    data = json.loads(rec)
                    version += 1
                    now = format_time(datetime.now(timezone.utc))
                    data["record"]["status"] = status
                    data["record"]["reasons"] = list(reasons)
                    data["updated_at"] = now
                    pipe.multi()
                    pipe.set(st_key, f"{status}|{version}")
                    pipe.set(rec_key, json.dumps(data, ensure_ascii=False))
                    pipe.rpush(_k(sid, "hist"), _change_entry(actor, previous, status, reasons,
                                                              version, now, note))
                    # the cached code shows the old status: the next fetch signs a new one
                    pipe.delete(_k(sid, "code"))
                    pipe.execute()
                except redis.WatchError:
                    continue
            self.audit("status_change", actor=actor, subject=sid, **{"from": previous},
                       to=status, reason=",".join(reasons), version=version)
            return StatusChange(status=status, version=version, previous=previous,
                                reasons=reasons)
        raise StoreUnavailable("the status is changing too fast; try again")

    @wraps_redis
    def history(self, sid: str) -> list[dict]:
        """Every status change of a subject, oldest first."""
        return [json.loads(entry) for entry in self.r.lrange(_k(sid, "hist"), 0, -1)]

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
        """Append to the audit stream. Callers pass ids and codes, never personal data."""
        entry = {"at": format_time(datetime.now(timezone.utc)), "action": action,
                 "actor": actor}
        entry.update({k: str(v) for k, v in fields.items() if v is not None and v != ""})
        return self.r.xadd(AUDIT_STREAM, entry)

    @wraps_redis
    def audit_entries(self, count: int = 100) -> list[dict]:
        return [dict(fields, id=entry_id) for entry_id, fields in
                self.r.xrevrange(AUDIT_STREAM, count=count)]

    # -- credentials --------------------------------------------------------------------------

    @wraps_redis
    def create_credential(self, role: str, subject: str | None = None,
                          label: str | None = None) -> tuple[Credential, str]:
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
        self.r.hset(f"hc:cred:{cred_id}", mapping=fields)
        return Credential(cred_id, role, subject, label), f"hc_{cred_id}.{secret}"

    @wraps_redis
    def check_credential(self, token: str) -> Credential | None:
        """The credential a bearer token names, if its secret matches (constant-time)."""
        if not token.startswith("hc_") or "." not in token:
            return None
        cred_id, _, secret = token[3:].partition(".")
        if not cred_id or len(cred_id) > 32 or not secret:
            return None
        fields = self.r.hgetall(f"hc:cred:{cred_id}")
        if not fields or not hmac.compare_digest(fields.get("hash", ""), _hash_secret(secret)):
            return None
        return Credential(cred_id, fields["role"], fields.get("subject"), fields.get("label"))

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

    # -- rate limits --------------------------------------------------------------------------

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


def _split_status(value: str) -> tuple[str, int]:
    status, _, version = value.partition("|")
    return status, int(version)


def _hash_secret(secret: str) -> str:
    # Secrets are 192 random bits, so a fast hash is as good as a slow one here.
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _change_entry(actor, previous, status, reasons, version, now, note=None) -> str:
    entry = {"at": now, "actor": actor, "from": previous, "to": status, "version": version,
             "reasons": list(reasons)}
    if note:
        entry["note"] = note
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":"))


# -- Flask wiring --------------------------------------------------------------------------------

def init_app(app) -> None:
    app.extensions["healthcode.store"] = RedisStore.from_url(
        app.config["REDIS_URL"], timeout=app.config["REDIS_TIMEOUT"])


def get_store() -> RedisStore:
    return current_app.extensions["healthcode.store"]
