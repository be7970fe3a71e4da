"""The service under real gunicorn: `gunicorn wsgi:app`, and `healthcode serve` on its own
private Redis when REDIS_URL is unset."""
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.support import REPO, ServeProcess, free_port


def wait_ready(url, proc, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stdout.read() if proc.stdout else ''}")
        try:
            response = requests.get(url, timeout=1)
            if response.status_code == 200:
                return response
        except (requests.ConnectionError, requests.Timeout):
            pass  # not listening yet, or its first request (Redis connections) is slow
        time.sleep(0.2)
    raise AssertionError("server did not become ready")


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_gunicorn_serves_wsgi_app(tmp_path, redis_server, redis_client):
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_server.url, "HEALTHCODE_DATA_DIR": str(tmp_path),
           "HEALTHCODE_SUBJECT_SECRET": "serving-subject-secret-0123",
           "HEALTHCODE_SECRET_KEY": "serving-session-secret-0123"}
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-w", "2", "-b",
                             f"127.0.0.1:{port}", "wsgi:app"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        ready = wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
        assert ready.json()["checks"] == {"redis": True, "signing_key": True}
        jwks = requests.get(f"http://127.0.0.1:{port}/.well-known/jwks.json").json()
        assert len(jwks["keys"]) == 1  # two workers started, one key was made
    finally:
        stop(proc)


def test_healthcode_serve_runs_on_a_private_persistent_redis(tmp_path):
    port = free_port()
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(HEALTHCODE_DATA_DIR=str(data))
    exe = shutil.which("healthcode") or pytest.fail("the healthcode script is not installed")
    proc = subprocess.Popen([exe, "serve", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
        created = subprocess.run([exe, "tokens", "create", "--role", "authority"], env=env,
                                 capture_output=True, text=True, check=True)
        token = created.stdout.strip().splitlines()[-1]
        response = requests.post(f"http://127.0.0.1:{port}/api/v1/residents",
                                 headers={"Authorization": f"Bearer {token}"},
                                 json={"name": "Ana Lopes", "status": "green", "document": {
                                     "type": "id_card", "number": "7654321", "region": "MO"}})
        assert response.status_code == 201
        secret_path = f"http://127.0.0.1:{port}/me/login/one-time-token-that-must-not-be-logged"
        requests.get(secret_path)
    finally:
        stop(proc)
    output = proc.stdout.read()
    assert "created signing key" in output and "tokens create --role authority" in output
    assert (data / "redis" / "appendonly.aof").exists() or \
        any((data / "redis").glob("appendonlydir/*"))
    assert not (data / "redis" / "redis.sock").exists(), "the private redis was not stopped"
    assert "hc_" not in output, "a bearer token reached the log"
    assert "/me/login/[redacted]" in output
    assert re.search(r'"POST /api/v1/residents" 201 \d+ [\d.]+s [0-9a-f]{32}', output), \
        "the access line names the request id"
    assert "one-time-token-that-must-not-be-logged" not in output


# -- operations: HUP, TERM, control sockets, files (issue 11 item 7, 8) ------------------------

# These tests are about operations, not load: on a shared, loaded machine the loop-lag bound
# could shed one of their few requests (shedding has its own tests in tests/test_admission.py)
CALM = {"HEALTHCODE_MAX_QUEUE_MS": "0"}

RESIDENT_BODY = {"name": "Ana Lopes", "birth_date": "1980-01-02", "status": "green",
                 "document": {"type": "id_card", "number": "7654321", "region": "MO"}}


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and \
        Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def wait_for(predicate, seconds=20, message="condition"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {message}")



@pytest.fixture
def served(tmp_path):
    server = ServeProcess(tmp_path / "data", workers=1, env=CALM)
    server.start()
    yield server
    server.stop()


def test_hup_reloads_configuration_and_leaves_the_private_redis_alone(served):
    token = served.token("authority")
    auth = {"Authorization": f"Bearer {token}"}
    redis_pid = served.redis_pid()
    old_workers = set(served.worker_pids())
    schemes = requests.get(f"{served.url}/api/v1/schemes").json()
    assert "mo" not in json.dumps(schemes)
    served.cli("mappings", "add", str(REPO / "mapping" / "partners" / "mo.toml"))

    served.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: served.worker_pids() and not set(served.worker_pids()) & old_workers,
             message="new workers")
    wait_for(lambda: '"mo"' in requests.get(f"{served.url}/api/v1/schemes").text,
             message="the new partner mapping to be served")
    assert served.redis_pid() == redis_pid and alive(redis_pid)
    assert requests.get(f"{served.url}/readyz").json()["checks"]["redis"] is True
    created = requests.post(f"{served.url}/api/v1/residents", json=RESIDENT_BODY, headers=auth)
    assert created.status_code == 201, created.text
    assert "Handling signal: hup" in served.log()


def test_term_drains_the_workers_and_stops_redis_last(served):
    token = served.token("authority")
    redis_pid = served.redis_pid()
    workers = served.worker_pids()
    assert workers and alive(redis_pid)
    gone = {}

    def watch():
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and len(gone) < len(workers) + 1:
            for pid in workers + [redis_pid]:
                if pid not in gone and not alive(pid):
                    gone[pid] = time.monotonic()
            time.sleep(0.005)

    body = json.dumps(RESIDENT_BODY).encode()
    conn = socket.create_connection(("127.0.0.1", served.port), timeout=10)
    conn.sendall(b"POST /api/v1/residents HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/json\r\nAuthorization: Bearer " + token.encode()
                 + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:10])
    time.sleep(0.5)  # the request is in the worker, its body half sent
    watcher = threading.Thread(target=watch)
    watcher.start()
    served.proc.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    assert alive(redis_pid), "Redis stopped while a worker was still draining"
    conn.sendall(body[10:])
    answer = conn.recv(65536).decode()
    conn.close()
    assert answer.startswith("HTTP/1.1 201"), answer[:200]
    assert served.proc.wait(40) == 0
    watcher.join(45)
    assert set(gone) == set(workers) | {redis_pid}, "not everything stopped"
    assert gone[redis_pid] >= max(gone[w] for w in workers)


def test_two_instances_each_have_their_own_control_socket(tmp_path):
    with ServeProcess(tmp_path / "a" / "data", workers=1, env=CALM) as first, \
            ServeProcess(tmp_path / "b" / "data", workers=1, env=CALM) as second:
        for server in (first, second):
            ctl = server.data_dir.resolve() / "gunicorn.ctl"
            assert stat.S_ISSOCK(ctl.stat().st_mode)
            assert requests.get(f"{server.url}/readyz").status_code == 200
            # each socket reaches its own instance: gunicornc lists that instance's workers
            shown = subprocess.run([shutil.which("gunicornc") or "gunicornc", "-s", str(ctl),
                                    "-c", "show workers", "-j"], capture_output=True,
                                   text=True, timeout=30)
            assert shown.returncode == 0, shown.stderr
            listed = {w["pid"] for w in json.loads(shown.stdout)["workers"]}
            assert listed == set(server.worker_pids())


def test_the_private_redis_keeps_its_data_owner_only(tmp_path):
    data = tmp_path / "data"
    (data / "redis").mkdir(parents=True)
    (data / "redis").chmod(0o755)
    loose = data / "redis" / "dump-from-an-older-version.rdb"
    loose.write_bytes(b"")
    loose.chmod(0o644)
    with ServeProcess(data, workers=1, env=CALM) as server:
        token = server.token("authority")
        assert requests.post(f"{server.url}/api/v1/residents", json=RESIDENT_BODY,
                             headers={"Authorization": f"Bearer {token}"}).status_code == 201
    directory = data / "redis"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = [p for p in directory.rglob("*") if p.is_file()]
    assert any("appendonly" in p.name for p in files), files
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for path in directory.rglob("*"):
        if path.is_dir():
            assert stat.S_IMODE(path.stat().st_mode) == 0o700, path


# -- headers, slow clients, logs, metrics under real gunicorn (items 1, 3, 8, 10) -------------

def test_headers_no_server_allow_on_405_no_hsts_over_plain_http(served):
    ok = requests.get(f"{served.url}/healthz", headers={"X-Forwarded-Proto": "https"})
    assert "Server" not in ok.headers
    # a client's own X-Forwarded-Proto is not believed (no trusted proxy is configured)
    assert "Strict-Transport-Security" not in ok.headers
    assert len(ok.headers["X-Request-ID"]) == 32
    refused = requests.delete(f"{served.url}/api/v1/verify")
    assert refused.status_code == 405
    assert refused.json()["error"] == "method_not_allowed"
    assert set(refused.headers["Allow"].replace(" ", "").split(",")) >= {"POST"}
    assert "Server" not in refused.headers


def test_slow_clients_do_not_hold_up_others_and_are_cut_off(tmp_path):
    env = {**CALM, "HEALTHCODE_HEADER_TIMEOUT": "2", "HEALTHCODE_BODY_TIMEOUT": "1.5"}
    with ServeProcess(tmp_path / "data", workers=1, env=env) as server:
        token = server.token("checkpoint")
        slow_heads = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(5)]
        slow_bodies = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(5)]
        for s in slow_heads:
            s.sendall(b"POST /api/v1/verify HTTP/1.1\r\nHost: x\r\n")
        for s in slow_bodies:
            s.sendall(b"POST /signin HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                      b"Content-Type: application/x-www-form-urlencoded\r\n\r\nto")
        started = time.monotonic()
        # one worker, ten slow clients on it: another client's verify still answers
        for _ in range(5):
            answer = requests.post(f"{server.url}/api/v1/verify", json={"code": "x.y.z"},
                                   headers={"Authorization": f"Bearer {token}"}, timeout=2)
            assert answer.status_code == 200 and answer.json()["valid"] is False
        assert time.monotonic() - started < 2
        for s in slow_bodies:
            s.settimeout(6)
            reply = b""
            while b'"}' not in reply:  # the head and the JSON body may come apart
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
            assert reply.startswith(b"HTTP/1.1 408"), reply[:100]
            assert b'"request_timeout"' in reply
        for s in slow_heads:
            s.settimeout(6)
            assert s.recv(4096) == b"", "a slow head was not cut off"  # closed, no answer
        assert time.monotonic() - started < 6
        for s in slow_heads + slow_bodies:
            s.close()


def test_a_500_under_gunicorn_leaves_one_line_with_traceback_and_request_id(tmp_path,
                                                                            redis_server):
    port = free_port()
    log_path = tmp_path / "gunicorn.log"
    env = {**os.environ, "REDIS_URL": redis_server.url, "HEALTHCODE_DATA_DIR": str(tmp_path),
           "HEALTHCODE_SUBJECT_SECRET": "serving-subject-secret-0123",
           "HEALTHCODE_SECRET_KEY": "serving-session-secret-0123",
           "HEALTHCODE_BIND": f"127.0.0.1:{port}", "HEALTHCODE_WORKERS": "1",
           "HEALTHCODE_LOG_FORMAT": "json", **CALM}
    with open(log_path, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c",
                                 "python:healthcode.gunicorn_conf",
                                 "tests.serving_app:failing_app()"],
                                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
            failed = requests.get(f"http://127.0.0.1:{port}/api/v1/boom?token=hc_secret",
                                  headers={"X-Request-ID": "probe-500"})
            assert failed.status_code == 500
            assert failed.json()["request_id"] == "probe-500"
            requests.get(f"http://127.0.0.1:{port}/healthz")
            time.sleep(0.5)
        finally:
            stop(proc)
    text = log_path.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # all JSON
    assert any(line["logger"] == "gunicorn.error" for line in lines)
    errors = [line for line in lines if line["level"] == "error"]
    assert len(errors) == 1, errors
    assert errors[0]["request_id"] == "probe-500"
    assert "RuntimeError: a bug, not bad input" in errors[0]["traceback"]
    access = [(line["request_id"], line["route"], line["status"]) for line in lines
              if line["logger"] == "healthcode.access"]
    assert ("probe-500", "/api/v1/boom", 500) in access
    assert sum(1 for a in access if a[1] == "/healthz") >= 1
    assert "hc_secret" not in log_path.read_text()


def _scrape(url):
    values = {}
    for line in requests.get(f"{url}/metrics").text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def test_metrics_count_the_whole_service_not_one_worker(tmp_path):
    with ServeProcess(tmp_path / "data", workers=2, env=CALM) as server:
        metrics_dir = server.data_dir.resolve() / "metrics"
        token = server.token("authority")
        auth = {"Authorization": f"Bearer {token}"}
        created = requests.post(f"{server.url}/api/v1/residents", json=RESIDENT_BODY,
                                headers=auth).json()
        code = requests.get(f"{server.url}/api/v1/residents/{created['id']}/code",
                            headers=auth).json()["code"]
        requests.post(f"{server.url}/api/v1/verify", json={"code": code}, headers=auth)
        requests.post(f"{server.url}/api/v1/verify", json={"code": code[:-4] + "AAAA"},
                      headers=auth)
        sent = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # fresh connections until both workers counted
            requests.get(f"{server.url}/healthz", headers={"Connection": "close"})
            sent += 1
            writers = {p.stem.rsplit("_", 1)[-1] for p in metrics_dir.glob("counter_*.db")}
            if len(writers) >= 2 and sent >= 10:
                break
        assert len(writers) >= 2, "only one worker ever answered"
        for _ in range(3):  # every scrape, whichever worker answers it, sees the whole count
            values = _scrape(server.url)
            assert values['healthcode_requests_total{endpoint="/healthz",status="200"}'] == sent
        assert values['healthcode_verifications_total{outcome="valid",scheme="native"}'] == 1
        assert values['healthcode_verifications_total{outcome="bad_signature",'
                      'scheme="native"}'] == 1
        assert values['healthcode_redis_duration_seconds_count{operation="create_resident"}'] == 1
        assert values["healthcode_shed_total"] == 0
        old = server.worker_pids()
        server.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: server.worker_pids() and not set(server.worker_pids()) & set(old),
                 message="new workers")
        # the old workers' counts survive them; their live gauges are dropped
        wait_for(lambda: not any((metrics_dir / f"gauge_livesum_{pid}.db").exists()
                                 for pid in old), message="dead workers' gauges to be removed")
        values = _scrape(server.url)
        assert values['healthcode_requests_total{endpoint="/healthz",status="200"}'] == sent
