"""Load shedding: past the in-flight cap a request is answered 503 with Retry-After at once;
operators' endpoints are never shed; the count shows in /metrics."""
import threading
import time

import pytest

from healthcode import create_app
from healthcode.admission import QUEUE_OF_OUR_OWN


@pytest.fixture
def capped_app(tmp_path, redis_server, redis_client):
    app = create_app({"TESTING": True, "REDIS_URL": redis_server.url,
                      "DATA_DIR": str(tmp_path / "data"), "ISSUER": "HC-TEST",
                      "SUBJECT_SECRET": "test-subject-secret-0123456789",
                      "SECRET_KEY": "test-session-secret-0123456789",
                      "MAX_IN_FLIGHT": 2, "SHED_RETRY_AFTER": 3})
    release = threading.Event()

    @app.post("/api/v1/hold")
    def hold():
        release.wait(10)
        return {"held": True}

    app.release = release
    return app


def _admission(app):
    return app.wsgi_app  # the outermost middleware (healthcode.admission.Admission)


def _metric(client, name):
    for line in client.get("/metrics").get_data(as_text=True).splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exposed")


def test_past_the_cap_requests_are_shed_at_once(capped_app):
    client = capped_app.test_client()
    shed_before = _metric(client, "healthcode_shed_total")
    answers = []
    holders = [threading.Thread(target=lambda: answers.append(
        capped_app.test_client().post("/api/v1/hold", json={}).status_code)) for _ in range(2)]
    for thread in holders:
        thread.start()
    deadline = time.monotonic() + 5
    while _admission(capped_app).in_flight < 2:
        assert time.monotonic() < deadline, "the holding requests never started"
        time.sleep(0.01)
    try:
        started = time.perf_counter()
        shed = client.get("/readyz", headers={"X-Request-ID": "shed-1"})
        elapsed = time.perf_counter() - started
        assert shed.status_code == 503
        assert shed.get_json()["error"] == "overloaded"
        assert shed.headers["Retry-After"] == "3"
        assert shed.headers["X-Request-ID"] == "shed-1"
        assert elapsed < 0.5
        # operators still see the service
        assert client.get("/healthz").status_code == 200
        assert _metric(client, "healthcode_shed_total") == shed_before + 1
        assert _metric(client, "healthcode_in_flight_requests") >= 2
    finally:
        capped_app.release.set()
        for thread in holders:
            thread.join(10)
    assert answers == [200, 200]
    assert _admission(capped_app).in_flight == 0
    assert client.get("/readyz").status_code == 200


def test_a_request_that_fails_still_leaves_the_count(capped_app):
    @capped_app.get("/api/v1/fails")
    def fails():
        raise RuntimeError("boom")

    client = capped_app.test_client()
    for _ in range(5):
        assert client.get("/api/v1/fails").status_code == 500
    assert _admission(capped_app).in_flight == 0
    assert client.get("/readyz").status_code == 200


def test_the_body_is_read_before_the_request_counts(capped_app):
    """A body arrives before its request takes a slot: the app gets it from memory; one over
    the cap is passed on unread for the app's own 413."""
    _, token = capped_app.extensions["healthcode.store"].create_credential("checkpoint")
    client = capped_app.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    response = client.post("/api/v1/verify", data=b'{"code": "not a code"}',
                           content_type="application/json", headers=auth)
    assert response.status_code == 200 and response.get_json()["valid"] is False
    too_big = client.post("/api/v1/verify", data=b"x" * (capped_app.config["MAX_BODY"] + 1),
                          content_type="application/json", headers=auth)
    assert too_big.status_code == 413 and too_big.get_json()["error"] == "too_large"
    assert _admission(capped_app).in_flight == 0


@pytest.mark.parametrize("name, value", [("HEALTHCODE_MAX_IN_FLIGHT", "0"),
                                         ("HEALTHCODE_BODY_TIMEOUT", "0"),
                                         ("HEALTHCODE_WORKER_CLASS", "eventlet"),
                                         ("HEALTHCODE_LOG_FORMAT", "xml"),
                                         ("HEALTHCODE_TRUSTED_PROXIES", "-1")])
def test_bad_serving_settings_stop_start_up(name, value):
    from healthcode import config
    from healthcode.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=name):
        config.validate(config.load_env({name: value}))


def test_a_worker_behind_its_queue_bound_sheds(capped_app):
    """The loop-lag bound: while the worker's loop runs late past MAX_QUEUE_MS, new requests
    are shed; once it catches up, they are served again."""
    client = capped_app.test_client()
    assert client.get("/readyz").status_code == 200  # starts the lag monitor in this process
    admission = _admission(capped_app)
    limit = capped_app.config["MAX_QUEUE_MS"] / 1000
    admission.max_in_flight = 100
    admission.lag.seconds = limit * 1.5
    # a late loop with no queue of ours is the machine's doing: nothing is shed
    assert client.get("/readyz").status_code == 200
    admission.in_flight = QUEUE_OF_OUR_OWN  # as if that many requests were being worked on
    try:
        shed = client.get("/readyz")
        assert shed.status_code == 503 and shed.get_json()["error"] == "overloaded"
        assert shed.headers["Retry-After"] == "3"
        assert client.get("/healthz").status_code == 200
        admission.lag.seconds = limit * 0.5
        assert client.get("/readyz").status_code == 200
    finally:
        admission.in_flight = 0


def test_the_lag_monitor_measures_a_blocked_gevent_loop():
    """Run in a child process: gevent's patching must not leak into the test session."""
    import subprocess
    import sys

    code = (
        "from gevent import monkey; monkey.patch_all()\n"
        "import time, gevent\n"
        "from healthcode.admission import LoopLag\n"
        "lag = LoopLag(); lag.ensure_running(); gevent.sleep(0.1)\n"
        "idle = lag.seconds\n"
        "for _ in range(20):\n"
        "    t = time.perf_counter()\n"
        "    while time.perf_counter() - t < 0.03: pass\n"  # 30 ms of CPU, no yield
        "    gevent.sleep(0.001)\n"  # a request waiting on Redis
        "print(idle, lag.seconds)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    idle, busy = float(out[0]), float(out[1])
    assert busy > 0.01 and busy > idle * 2
