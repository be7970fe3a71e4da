"""Status changes pushed to open resident pages, through Redis pub/sub and server-sent events.

An open page used to learn of a new status only at its next renewal, up to minutes later, while
the checkpoint already answered "superseded". Now every status change is published on the
subject's own channel (``hc:{<sid>}:status``, ``"<status>|<version>"``), and the page holds an
``EventSource`` on ``/me/events``: it fetches its new code within a second of the change.

One pub/sub connection per worker, not one per page: a worker's hub holds a single pattern
subscription (``hc:{*}:status``) in a background thread and wakes the pages of the subject a
message names. A thousand open pages then cost a thousand idle sockets in the worker (cheap with
gunicorn's gevent workers, which ``healthcode serve`` runs) and one Redis connection. On a Redis
Cluster a PUBLISH reaches every node, so the hub may listen on any of them; behind Sentinel it
follows the primary. The page keeps its timed renewal, so a lost message, a restarted worker or
a closed stream delays a change to the next renewal, never loses it.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from flask import current_app

log = logging.getLogger(__name__)

PATTERN = "hc:{*}:status"
#: a worker whose pages have all gone closes its pub/sub connection after this long
IDLE_SECONDS = 30


def channel(sid: str) -> str:
    return f"hc:{{{sid}}}:status"


@dataclass(eq=False)
class _Waiter:
    event: threading.Event = field(default_factory=threading.Event)
    change: tuple[str, int] | None = None


class StatusHub:
    """Wakes the streams of a subject when its status changes (one per worker process)."""

    def __init__(self, client, limit: int):
        self.client = client
        self.limit = limit
        self._waiters: dict[str, set[_Waiter]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = None

    @property
    def open_streams(self) -> int:
        with self._lock:
            return sum(len(w) for w in self._waiters.values())

    def register(self, sid: str) -> _Waiter | None:
        """A waiter for this subject's next change; None when the worker holds its limit."""
        waiter = _Waiter()
        with self._lock:
            if sum(len(w) for w in self._waiters.values()) >= self.limit:
                return None
            self._waiters.setdefault(sid, set()).add(waiter)
        self._ensure_listening()  # after the waiter is in: an idle listener may just be ending
        return waiter

    def unregister(self, sid: str, waiter: _Waiter) -> None:
        with self._lock:
            waiters = self._waiters.get(sid)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[sid]

    def deliver(self, sid: str, value: str) -> None:
        status, _, version = value.partition("|")
        try:
            change = (status, int(version))
        except ValueError:
            return
        with self._lock:
            waiters = list(self._waiters.get(sid, ()))
        for waiter in waiters:
            waiter.change = change
            waiter.event.set()

    def _ensure_listening(self) -> None:
        # started lazily in the process that serves streams: a thread started before gunicorn
        # forks its workers would not survive the fork
        import os

        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            return
        with self._lock:
            if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._listen, name="status-hub", daemon=True)
            self._thread.start()

    def _idle(self) -> bool:
        with self._lock:
            return not self._waiters

    def _stop_if_idle(self) -> bool:
        """End this listener if no page waits, atomically with :meth:`register`'s check."""
        with self._lock:
            if self._waiters:
                return False
            self._thread = None
            return True

    def _listen(self) -> None:
        """Listen while pages wait; a worker without open pages holds no pub/sub connection
        (the thread ends after ``IDLE_SECONDS`` and the next page starts it again)."""
        backoff = 0.5
        idle_since = None
        while True:
            pubsub = None
            try:
                pubsub = self.client.pubsub(ignore_subscribe_messages=True)
                pubsub.psubscribe(PATTERN)
                backoff = 0.5
                while True:
                    if self._idle():
                        idle_since = idle_since or time.monotonic()
                        if time.monotonic() - idle_since > IDLE_SECONDS and self._stop_if_idle():
                            return
                    else:
                        idle_since = None
                    message = pubsub.get_message(timeout=1.0)
                    if message and message.get("type") == "pmessage":
                        name = message["channel"]
                        if name.startswith("hc:{") and name.endswith("}:status"):
                            self.deliver(name[4:-8], message["data"])
            except Exception:  # noqa: BLE001 - an outage: pages fall back to their renewal
                if self._stop_if_idle():
                    return  # nobody waits: no reason to keep knocking
                log.warning("status push: pub/sub connection lost; retrying in %.1f s", backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:  # noqa: BLE001
                        pass


def get_hub() -> StatusHub:
    return current_app.extensions["healthcode.status_hub"]


def init_app(app) -> None:
    store = app.extensions["healthcode.store"]
    app.extensions["healthcode.status_hub"] = StatusHub(store.r,
                                                        int(app.config["STATUS_STREAMS"]))
