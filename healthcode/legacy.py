"""The store layout of the release before sealed compact records: recognised, and converted.

Up to that release a subject's keys held plain JSON (``hc:{<sid>}:rec``)::

    {"record": <Record.to_dict(), status and reasons the *current* ones>,
     "created_at": "<ISO time>", "updated_at": "<ISO time>"}

and a list of JSON entries (``hc:{<sid>}:hist``), the enrollment first::

    {"at":"<ISO time>","actor":"...","from":null,"to":"green","version":1,"reasons":[]}
    {"at":"...","actor":"...","from":"green","to":"yellow","version":2,"reasons":[...],
     "note":"..."}

and the whole audit trail was one stream, ``hc:audit``, whose entries carry their own ``at``.
Now the record is compact and sealed (:mod:`healthcode.compact`, :mod:`healthcode.recordcrypt`)
with the enrollment status, its reasons, who enrolled and when; the list holds only the changes
after enrollment, sealed, and the audit trail is sharded (:mod:`healthcode.audit`). The status
key, credentials, sessions, sign-in links, rate limits and cached codes and images kept their
format (a credential's ``mode`` and a session's ``mode`` are new, optional fields; a cached code
that no longer verifies is signed anew), so only records, histories and the audit stream need
converting: ``healthcode store migrate`` (:mod:`healthcode.migrate`).

The old JSON is recognised by how ``json.dumps`` began it: a sealed value starts with its key
id byte and 12 random nonce bytes, which match these prefixes with a chance of 2^-64 or less.
"""
from __future__ import annotations

import json
import logging
import time
from datetime import datetime

from . import compact
from .errors import HealthCodeError, StoreMigrationNeeded
from .record import parse_time

log = logging.getLogger("healthcode")

#: the audit stream of the earlier release: one key, read beside the shards until it is gone
LEGACY_AUDIT = "hc:audit"

#: ``json.dumps({"record": ...})`` and ``json.dumps({"at": ...}, separators=(",", ":"))``
_RECORD_PREFIX = b'{"record": '
_ENTRY_PREFIX = b'{"at":"'


def is_legacy_record(raw: bytes | None) -> bool:
    return raw is not None and raw.startswith(_RECORD_PREFIX)


def is_legacy_entry(raw: bytes | None) -> bool:
    return raw is not None and raw.startswith(_ENTRY_PREFIX)


#: seconds between two log lines about old-format data, per process: every read of an old
#: record would otherwise log one
LOG_INTERVAL = 60.0
_logged = [float("-inf")]


def migration_needed(what: str) -> StoreMigrationNeeded:
    """The error to answer with on meeting old-format data, logged (no subject, no data)."""
    now = time.monotonic()
    if now - _logged[0] >= LOG_INTERVAL:
        _logged[0] = now
        log.error("store_migration_needed: an old-format %s was read; run `healthcode store "
                  "migrate` (README, Upgrading)", what)
    return StoreMigrationNeeded(
        "this record is stored in an earlier release's format; the operator must run "
        "`healthcode store migrate`")


class Unconvertible(HealthCodeError):
    """A subject's old-format keys do not hold what the earlier release wrote."""

    reason = "unconvertible"
    status = 500


def _seconds(text: str) -> int | float:
    """POSIX seconds of an old ISO time: whole where it was, else exact to the microsecond
    (a double holds today's times to a fraction of a microsecond)."""
    moment: datetime = parse_time(text, "at")
    return int(moment.timestamp()) if not moment.microsecond else moment.timestamp()


def _load(raw: bytes, what: str) -> dict:
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise Unconvertible(reason="not_json", what=what) from None
    if not isinstance(value, dict):
        raise Unconvertible(reason="not_json", what=what)
    return value


def convert(cipher, sid: str, status_value: str, rec: bytes,
            hist: list[bytes]) -> tuple[bytes, list[bytes]]:
    """The new record and history of one subject from its old keys.

    ``hist`` may end with sealed entries: changes a new-release worker made before the
    migration (its status script appends without reading the record). They stay as they are.
    Raises :class:`Unconvertible` (with a reason code) where the keys do not agree with each
    other as the earlier release always left them; nothing is then written.
    """
    from .store import seal_record  # the store imports this module for its error path

    data = _load(rec, "record")
    record = data.get("record")
    if not isinstance(record, dict):
        raise Unconvertible(reason="record_missing", what="record")
    status, _, version_text = status_value.partition("|")
    if not version_text.isdigit():
        raise Unconvertible(reason="status_unreadable", what="status")
    old, new = [], []
    for raw in hist:
        if is_legacy_entry(raw):
            if new:  # an old entry after a new one: both releases wrote at once
                raise Unconvertible(reason="history_interleaved", what="history")
            old.append(_load(raw, "history"))
        else:
            new.append(raw)
    if not old or old[0].get("version") != 1 or old[0].get("from") is not None:
        raise Unconvertible(reason="enrollment_missing", what="history")
    for number, entry in enumerate(old, start=1):
        if entry.get("version") != number or not isinstance(entry.get("to"), str) or (
                number > 1 and entry.get("from") != old[number - 2]["to"]):
            raise Unconvertible(reason="history_inconsistent", what="history")
    last = compact.loads(cipher.open(sid, new[-1]))["to"] if new else old[-1]["to"]
    if len(old) + len(new) != int(version_text) or last != status:
        raise Unconvertible(reason="history_disagrees_with_status", what="history")
    subject = record.get("subject")
    if isinstance(subject, dict) and subject.get("subject_id") not in (None, sid):
        raise Unconvertible(reason="subject_mismatch", what="record")

    enrollment = old[0]
    record = {**record, "status": enrollment["to"]}
    record.pop("reasons", None)
    if enrollment.get("reasons"):
        record["reasons"] = list(enrollment["reasons"])
    try:
        sealed = seal_record(cipher, sid, record, enrollment["actor"],
                             _seconds(enrollment["at"]))
        changes = []
        for entry in old[1:]:
            change = {"at": _seconds(entry["at"]), "actor": entry["actor"], "to": entry["to"],
                      "reasons": list(entry.get("reasons") or [])}
            if entry.get("note"):
                change["note"] = entry["note"]
            changes.append(cipher.seal(sid, compact.dumps(change)))
    except (KeyError, TypeError, HealthCodeError):
        raise Unconvertible(reason="history_inconsistent", what="history") from None
    return sealed, changes + new
