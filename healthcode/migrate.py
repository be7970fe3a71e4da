"""``healthcode store migrate``: convert an earlier release's data to this release's layout.

What changed and how old data is recognised is in :mod:`healthcode.legacy`. The run:

1. scans every primary for record keys (SCAN with MATCH, as the credential listing does; never
   KEYS) and reads the first bytes of each, so a record already in the new format costs one
   GETRANGE and is left alone;
2. reads the old-format subjects of the batch (one pipeline per primary), converts each in
   Python (the record is sealed there: AES-GCM with the newest record key, the subject id as
   associated data, as a new enrollment would be) and writes each subject's record and history
   in one script on its slot, only if its keys still hold what was read (a status change
   meanwhile makes it go round again); the scripts go in one pipeline per primary, followed by
   one WAIT where there are replicas. A crash leaves every subject converted or untouched;
3. only if no subject failed, moves the old audit stream's entries into their shards
   (:meth:`healthcode.audit.AuditLog.move_legacy`). The old stream's presence is what
   ``/readyz`` reports as old data, so it goes last.

Re-running converts what is left and changes nothing already converted. ``dry_run`` only counts.
Reports name keys and reason codes, never what a record holds.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import legacy
from .errors import HealthCodeError
from .store import NotReplicated, RedisStore

#: record keys classified per round trip (per primary on a cluster)
BATCH = 500
#: reads and conditional writes of a subject before it is reported as changing too fast
ATTEMPTS = 5


@dataclass
class Report:
    dry_run: bool
    converted: int = 0
    current: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # key -> reason code
    audit: dict[str, int] | None = None  # None: not attempted (a subject failed)

    def lines(self) -> list[str]:
        would = "would convert" if self.dry_run else "converted"
        out = [f"records: {would} {self.converted}, already current {self.current}, "
               f"failed {len(self.failed)}"]
        out += [f"failed {key}: {reason}" for key, reason in sorted(self.failed.items())]
        if self.audit is None:
            out.append("audit: not moved while a record failed; fix it and run again")
        else:
            moved = "would move" if self.dry_run else "moved"
            out.append(f"audit: {moved} {self.audit['moved']}, found moved "
                       f"{self.audit['already']}, kept {self.audit['kept']} entries of "
                       f"{legacy.LEGACY_AUDIT}")
            if self.audit["kept"]:
                out.append("audit: kept entries' shards already hold newer ones; tail, export "
                           "and trim read them in hc:audit (README, Upgrading)")
        return out


def run(store: RedisStore, dry_run: bool = False, progress=None) -> Report:
    """Migrate everything (see the module docstring); ``progress(n)`` after each batch."""
    report = Report(dry_run)
    batch: list[str] = []
    for key in store.record_keys():
        batch.append(key)
        if len(batch) == BATCH:
            _records(store, batch, report)
            if progress:
                progress(len(batch))
            batch = []
    if batch:
        _records(store, batch, report)
        if progress:
            progress(len(batch))
    if not report.failed:
        report.audit = store.move_legacy_audit(dry_run=dry_run)
    return report


def _records(store: RedisStore, keys: list[str], report: Report) -> None:
    """Convert the old-format subjects among ``keys``: read in one pipeline per primary,
    converted here, written in one per primary; those changed meanwhile go round again."""
    pending = []
    for key, head in zip(keys, store.heads(keys)):
        if legacy.is_legacy_record(head):
            pending.append(key[key.index("{") + 1:key.rindex("}")])
        else:
            report.current += 1
    for _ in range(ATTEMPTS):
        if not pending:
            return
        writes = []
        for sid, before in zip(pending, store.subjects_keys(pending)):
            st, rec, hist = before
            if not legacy.is_legacy_record(rec):
                report.current += 1  # converted by a concurrent run
                continue
            try:
                if st is None:
                    raise legacy.Unconvertible(reason="status_missing")
                record, history = legacy.convert(store.cipher, sid, st, rec, hist)
            except HealthCodeError as exc:  # unconvertible, or a change it cannot open
                report.failed[_key(sid)] = exc.reason
                continue
            if report.dry_run:
                report.converted += 1
            else:
                writes.append((sid, before, record, history))
        if not writes:
            return
        try:
            written = store.replace_subjects(writes)
        except NotReplicated:
            for sid, *_ in writes:
                report.failed[_key(sid)] = "not_replicated"
            return
        report.converted += sum(written)
        pending = [sid for (sid, *_), done in zip(writes, written) if not done]
    for sid in pending:
        report.failed[_key(sid)] = "kept_changing"


def _key(sid: str) -> str:
    return f"hc:{{{sid}}}:rec"
