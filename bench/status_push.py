"""Status push: how many open resident pages one worker holds, what they cost, how fast a change
reaches them all.

    python bench/status_push.py                    # 2,000 open pages on one worker
    python bench/status_push.py --pages 5000 --subjects 50

Runs ``healthcode serve`` as the README starts it (gevent workers, private redis-server) with
one worker on 127.0.0.1, enrolls ``--subjects`` residents, opens ``--pages`` event streams
(``/me/events``) spread over them, then:

- counts the streams the worker holds, and its memory before and after (RSS from /proc);
- measures verify latency with the streams held against the same with none, in this run;
- changes every subject's status and times until every page has its event (p50, p99, max).

Everything stays on 127.0.0.1 and stops by itself (bounded by ``--seconds`` per phase).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from tests.support import ServeProcess  # noqa: E402

RESIDENT = {"name": "陳大文", "birth_date": "1980-01-02", "status": "green",
            "document": {"type": "travel_permit", "region": "MO"}}


def api(url: str, method: str, path: str, token: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(url + path, method=method,
                                     data=json.dumps(body).encode() if body else None,
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    pids = []
    for pid in map(int, children):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"redis-server" not in cmdline:
            pids.append(pid)
    return pids


class Page:
    """One open resident page's event stream, on a raw connection."""

    def __init__(self, token: str):
        self.token = token
        self.status = None
        self.event_at = None
        self.writer = None

    async def open(self, port: int) -> int:
        reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        self.writer.write((f"GET /me/events?v=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           f"Authorization: Bearer {self.token}\r\nAccept: text/event-stream"
                           f"\r\n\r\n").encode())
        await self.writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])
        self.reader = reader
        return self.status

    async def wait_event(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        buffer = b""
        while b"event: status" not in buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                chunk = await asyncio.wait_for(self.reader.read(4096), left)
            except asyncio.TimeoutError:
                return
            if not chunk:
                return
            buffer += chunk
        self.event_at = time.monotonic()

    def close(self):
        if self.writer is not None:
            self.writer.close()


def verify_latency(url: str, token: str, code: str, count: int) -> list[float]:
    out = []
    for _ in range(count):
        started = time.perf_counter()
        api(url, "POST", "/api/v1/verify", token, {"code": code})
        out.append((time.perf_counter() - started) * 1000)
    return out


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def run(args) -> None:
    folder = Path(tempfile.mkdtemp(prefix="hc-bench-push-"))
    server = ServeProcess(folder / "data", workers=1,
                          env={"HEALTHCODE_STATUS_STREAMS": str(args.pages + 100),
                               "HEALTHCODE_WORKER_CONNECTIONS": str(args.pages + 200),
                               "HEALTHCODE_LOG_LEVEL": "warning"}).start()
    try:
        authority = server.token("authority")
        gate = server.token("checkpoint")
        subjects, tokens = [], []
        for n in range(args.subjects):
            body = {**RESIDENT, "document": {**RESIDENT["document"], "number": f"H{n:07d}"}}
            sid = api(server.url, "POST", "/api/v1/residents", authority, body)["id"]
            subjects.append(sid)
            tokens.append(server.token("resident", "--subject", sid))
        code = api(server.url, "GET", f"/api/v1/residents/{subjects[0]}/code", authority)["code"]
        workers = worker_pids(server.proc.pid)
        base_rss = sum(rss_kb(p) for p in workers)
        quiet = verify_latency(server.url, gate, code, args.verifies)

        pages = [Page(tokens[i % len(tokens)]) for i in range(args.pages)]
        started = time.monotonic()
        statuses = []
        # in batches below the worker's in-flight cap: a burst past it is shed (503), which is
        # admission's job, not what this measures
        for batch in range(0, len(pages), 40):
            statuses += await asyncio.gather(*(p.open(server.port)
                                               for p in pages[batch:batch + 40]),
                                             return_exceptions=True)
        opened = time.monotonic() - started
        held = sum(1 for s in statuses if s == 200)
        refused = sum(1 for s in statuses if s == 503)
        failed = len(statuses) - held - refused
        await asyncio.sleep(2)
        held_rss = sum(rss_kb(p) for p in workers)
        busy = await asyncio.to_thread(verify_latency, server.url, gate, code, args.verifies)

        waits = [asyncio.create_task(p.wait_event(args.seconds)) for p in pages
                 if p.status == 200]
        changed_at = time.monotonic()
        for sid in subjects:
            await asyncio.to_thread(api, server.url, "PUT", f"/api/v1/residents/{sid}/status",
                                    authority, {"status": "yellow", "reason": "close_contact"})
        changes_took = time.monotonic() - changed_at
        await asyncio.gather(*waits)
        delays = [(p.event_at - changed_at) for p in pages if p.event_at is not None]
        for p in pages:
            p.close()

        print(f"status push, 1 gevent worker, {args.subjects} subjects, command: "
              f"python bench/status_push.py --pages {args.pages} --subjects {args.subjects}")
        print(f"  streams held: {held} of {args.pages} opened in {opened:.1f} s "
              f"(refused 503: {refused}, failed: {failed})")
        print(f"  worker memory: {base_rss / 1024:.1f} MB idle, {held_rss / 1024:.1f} MB holding "
              f"them: {(held_rss - base_rss) / max(held, 1):.1f} KB per open page")
        print(f"  verify latency, ms: none held p50 {statistics.median(quiet):.1f} "
              f"p99 {pct(quiet, 0.99):.1f}; {held} held p50 {statistics.median(busy):.1f} "
              f"p99 {pct(busy, 0.99):.1f} (ratio of medians {statistics.median(busy) / statistics.median(quiet):.2f})")
        if delays:
            print(f"  {len(delays)} of {held} pages told of their change "
                  f"({args.subjects} changes sent in {changes_took:.2f} s): "
                  f"p50 {statistics.median(delays):.2f} s, p99 {pct(delays, 0.99):.2f} s, "
                  f"max {max(delays):.2f} s after the first change")
        else:
            print("  no page was told of its change")
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--subjects", type=int, default=20)
    parser.add_argument("--verifies", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
