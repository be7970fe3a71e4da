"""Every 500 leaves one log record with its traceback and the request id; every response names
its request id; JSON lines are an option and carry no personal data or secrets."""
import io
import json
import logging

import pytest

from healthcode import create_app, logs


@pytest.fixture
def failing_app(app):
    @app.get("/api/v1/boom/<secret>")
    def boom(secret):
        raise RuntimeError("a bug, not bad input")

    return app


def test_a_500_is_logged_once_with_its_traceback_and_request_id(failing_app, caplog):
    with caplog.at_level(logging.INFO, logger="healthcode"):
        response = failing_app.test_client().get("/api/v1/boom/one-time-token",
                                                 headers={"X-Request-ID": "gate-7.req-42"})
    assert response.status_code == 500
    assert response.get_json() == {"error": "internal_error", "message": "internal error",
                                   "request_id": "gate-7.req-42"}
    assert response.headers["X-Request-ID"] == "gate-7.req-42"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    record = errors[0]
    assert record.name == "healthcode"
    assert record.exc_info and record.exc_info[0] is RuntimeError
    assert record.request_id == "gate-7.req-42"
    # the route pattern, never the path: a path may hold a one-time token
    assert "/api/v1/boom/<secret>" in record.getMessage()
    assert "one-time-token" not in caplog.text


def test_the_package_logger_writes_somewhere(failing_app):
    """The bug of issue 11: a NullHandler left Flask adding none, and 500s reached nobody."""
    handlers = logging.getLogger("healthcode").handlers
    assert not any(isinstance(h, logging.NullHandler) for h in handlers)
    streams = [h for h in handlers if isinstance(h, logging.StreamHandler)]
    assert len(streams) == 1
    captured = io.StringIO()
    streams[0].setStream(captured)
    try:
        failing_app.test_client().get("/api/v1/boom/x", headers={"X-Request-ID": "abc-1"})
    finally:
        streams[0].setStream(__import__("sys").stderr)
    text = captured.getvalue()
    assert text.count("Traceback (most recent call last)") == 1
    assert "RuntimeError: a bug, not bad input" in text and "[request abc-1]" in text


@pytest.mark.parametrize("offered", [None, "", "x" * 65, "two words", "a\r\nSet-Cookie: x=1",
                                     "-leading-dash", "é"])
def test_an_unsafe_or_missing_request_id_is_replaced(client, offered):
    headers = {"X-Request-ID": offered} if offered is not None else {}
    try:
        response = client.get("/healthz", headers=headers)
    except ValueError:  # werkzeug itself refuses a header with a newline: nothing to test
        assert "\n" in offered
        return
    rid = response.headers["X-Request-ID"]
    assert rid != offered and len(rid) == 32 and int(rid, 16) >= 0


def test_each_request_gets_its_own_id(client):
    ids = {client.get("/healthz").headers["X-Request-ID"] for _ in range(5)}
    assert len(ids) == 5


def test_json_lines_one_per_request_without_personal_data(tmp_path, redis_server, redis_client,
                                                          capsys):
    app = create_app({"TESTING": True, "REDIS_URL": redis_server.url,
                      "DATA_DIR": str(tmp_path / "data"), "ISSUER": "HC-TEST",
                      "SUBJECT_SECRET": "test-subject-secret-0123456789",
                      "SECRET_KEY": "test-session-secret-0123456789",
                      "LOG_FORMAT": "json"})
    try:
        store = app.extensions["healthcode.store"]
        _, token = store.create_credential("authority", label="t")
        client = app.test_client()
        capsys.readouterr()
        created = client.post("/api/v1/residents?token=should-not-appear", headers={
            "Authorization": f"Bearer {token}", "X-Request-ID": "r-1"}, json={
            "name": "Ana Lopes", "birth_date": "1980-01-02", "status": "green",
            "document": {"type": "id_card", "number": "7654321", "region": "MO"}})
        assert created.status_code == 201
        client.get(f"/api/v1/residents/{created.get_json()['id']}",
                   headers={"Authorization": f"Bearer {token}", "X-Request-ID": "r-2"})
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()
                 if line.startswith("{")]
        requests = [line for line in lines if line["logger"] == "healthcode.access"]
        assert [(r["request_id"], r["method"], r["route"], r["status"]) for r in requests] == [
            ("r-1", "POST", "/api/v1/residents", 201),
            ("r-2", "GET", "/api/v1/residents/<sid>", 200)]
        assert all(isinstance(r["duration_ms"], float) for r in requests)
        text = json.dumps(lines, ensure_ascii=False)
        for secret in (token, "should-not-appear", "Ana Lopes", "7654321", "1980-01-02",
                       created.get_json()["id"]):
            assert secret not in text
    finally:
        logs.configure("text", "info")
