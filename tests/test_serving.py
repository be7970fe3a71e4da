"""The service under real gunicorn: `gunicorn wsgi:app`, and `healthcode serve` on its own
private Redis when REDIS_URL is unset."""
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import requests

from tests.support import REPO, free_port


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
    assert "one-time-token-that-must-not-be-logged" not in output
