"""Fixtures: one real Redis per test session (a single server, a 3-primary cluster or a Sentinel
set-up, chosen by HEALTHCODE_TEST_REDIS=single|cluster|sentinel), flushed before every test; an
app built by the factory with a throwaway data dir; credentials for every role."""
from __future__ import annotations

import os

import pytest

from healthcode import create_app
from healthcode.store import ROLES
from tests.support import redis_topology


@pytest.fixture(scope="session")
def redis_server():
    """The session's Redis; ``.url`` is in the service's REDIS_URL convention for its kind."""
    server = redis_topology()
    server.start()
    yield server
    server.close()


@pytest.fixture
def redis_client(redis_server):
    """A client of the right kind (RedisCluster, Sentinel primary or plain), flushed first
    (every primary on a cluster)."""
    client = redis_server.client()
    redis_server.flush(client)
    yield client
    client.close()


@pytest.fixture
def app(tmp_path, redis_server, redis_client):
    app = create_app({
        "TESTING": True,
        "REDIS_URL": redis_server.url,
        "DATA_DIR": str(tmp_path / "data"),
        "ISSUER": "HC-TEST",
        "SUBJECT_SECRET": "test-subject-secret-0123456789",
        "SECRET_KEY": "test-session-secret-0123456789",
        "CODE_TTL": 300,
        "CREDENTIAL_CACHE_SECONDS": 0,
    })
    yield app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


class Credentials:
    """Bearer headers per role; ``resident(sid)`` makes one bound to a subject."""

    def __init__(self, app):
        self.app = app
        self._tokens = {}

    def token(self, role: str, subject: str | None = None) -> str:
        key = (role, subject)
        if key not in self._tokens:
            store = self.app.extensions["healthcode.store"]
            _, token = store.create_credential(role, subject=subject, label=f"test {role}")
            self._tokens[key] = token
        return self._tokens[key]

    def headers(self, role: str, subject: str | None = None) -> dict:
        return {"Authorization": f"Bearer {self.token(role, subject)}"}

    def __getattr__(self, role):
        if role in ROLES and role != "resident":
            return self.headers(role)
        raise AttributeError(role)

    def resident(self, subject: str) -> dict:
        return self.headers("resident", subject)


@pytest.fixture
def creds(app):
    return Credentials(app)


RESIDENT = {
    "name": "陳大文", "birth_date": "1980-01-02",
    "document": {"type": "travel_permit", "number": "H1234567", "region": "MO"},
    "status": "green", "reasons": [],
    "evidence": {"tests": [{"type": "pcr", "result": "negative",
                            "sampled_at": "2026-11-27T08:00:00Z"}]},
}


@pytest.fixture
def enrolled(client, creds):
    """A resident enrolled green through the API; returns the 201 body."""
    response = client.post("/api/v1/residents", json=RESIDENT, headers=creds.authority)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def pytest_report_header(config):
    return f"redis topology: {os.environ.get('HEALTHCODE_TEST_REDIS') or 'single'}"
