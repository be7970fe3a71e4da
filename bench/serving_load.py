"""What the serving benchmarks share: a `healthcode serve` with a resident, a verify probe that
measures other clients' latency, and percentiles.

Everything targets 127.0.0.1 only and is bounded in time by its caller.
"""
from __future__ import annotations

import http.client
import json
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from tests.support import ServeProcess  # noqa: E402

# a bench stopped with TERM (timeout, Ctrl-C) still leaves its `with serve()` blocks, so no
# server it started outlives it
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def log(message: str) -> None:
    print(message, flush=True)


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def serve(workers: int | None = None, env: dict | None = None) -> ServeProcess:
    """A started `healthcode serve` in a fresh temporary data dir (private Redis)."""
    data = Path(tempfile.mkdtemp(prefix="healthcode-bench-")) / "data"
    return ServeProcess(data, workers=workers, env=env).start()


def request(port: int, method: str, path: str, body: dict | None = None,
            token: str | None = None, timeout: float = 10) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        connection.request(method, path, body=json.dumps(body) if body is not None else None,
                           headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


def resident_body(i: int) -> dict:
    return {"name": "陳大文", "birth_date": "1980-01-02", "status": "green",
            "document": {"type": "travel_permit", "number": f"H{i:08d}", "region": "MO"}}


def prepare(server: ServeProcess) -> dict:
    """Credentials and one resident's current code, through the CLI and the API."""
    authority = server.token("authority")
    checkpoint = server.token("checkpoint")
    for _ in range(5):  # a loaded machine can make the first Redis round trip time out (503)
        status, created = request(server.port, "POST", "/api/v1/residents", resident_body(0),
                                  authority)
        if status != 503:
            break
        time.sleep(1)
    assert status == 201, created
    status, code = request(server.port, "GET", f"/api/v1/residents/{created['id']}/code",
                           token=authority)
    assert status == 200, code
    status, answer = request(server.port, "POST", "/api/v1/verify", {"code": code["code"]},
                             checkpoint)
    assert status == 200 and answer["valid"], answer
    return {"authority": authority, "checkpoint": checkpoint, "code": code["code"],
            "sid": created["id"]}


class VerifyProbe:
    """Other clients: ``clients`` threads, each verifying on its own keep-alive connection every
    ``interval`` seconds; latency of every answer, and failures (errors, timeouts, non-200)."""

    def __init__(self, port: int, token: str, code: str, clients: int = 2,
                 interval: float = 0.02, timeout: float = 5.0):
        self.port, self.timeout, self.interval, self.clients = port, timeout, interval, clients
        self.body = json.dumps({"code": code})
        self.headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        self.latencies: list[float] = []
        self.statuses: dict[str, int] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def _note(self, outcome: str, seconds: float | None) -> None:
        with self._lock:
            self.statuses[outcome] = self.statuses.get(outcome, 0) + 1
            if seconds is not None:
                self.latencies.append(seconds * 1000)

    def _client(self) -> None:
        connection = None
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                if connection is None:
                    connection = http.client.HTTPConnection("127.0.0.1", self.port,
                                                            timeout=self.timeout)
                connection.request("POST", "/api/v1/verify", body=self.body,
                                   headers=self.headers)
                response = connection.getresponse()
                response.read()
                elapsed = time.perf_counter() - started
                self._note(str(response.status), elapsed if response.status == 200 else None)
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as exc:
                self._note(type(exc).__name__, None)
                if connection is not None:
                    connection.close()
                connection = None
            pause = self.interval - (time.perf_counter() - started)
            if pause > 0:
                self._stop.wait(pause)
        if connection is not None:
            connection.close()

    def run(self, seconds: float) -> dict:
        self.latencies.clear()
        self.statuses.clear()
        self._stop.clear()
        threads = [threading.Thread(target=self._client, daemon=True)
                   for _ in range(self.clients)]
        for thread in threads:
            thread.start()
        time.sleep(seconds)
        self._stop.set()
        for thread in threads:
            thread.join(self.timeout + 1)
        ok = self.statuses.get("200", 0)
        total = sum(self.statuses.values())
        return {"requests": total, "ok": ok, "failed": total - ok,
                "outcomes": dict(self.statuses),
                "p50_ms": percentile(self.latencies, 50), "p99_ms": percentile(self.latencies, 99),
                "max_ms": max(self.latencies) if self.latencies else None}


def describe(label: str, result: dict) -> str:
    def ms(value):
        return "-" if value is None else f"{value:.1f} ms"

    return (f"{label:44s} verify p50 {ms(result['p50_ms']):>9s}  p99 {ms(result['p99_ms']):>9s}"
            f"  max {ms(result['max_ms']):>9s}  ok {result['ok']}/{result['requests']}"
            + (f"  other outcomes {({k: v for k, v in result['outcomes'].items() if k != '200'})}"
               if result["failed"] else ""))
