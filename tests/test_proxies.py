"""Strict-Transport-Security over TLS only; a forwarded scheme is believed only from the number
of proxies the operator said to trust."""
import pytest

from healthcode import create_app


def make_app(tmp_path, redis_server, proxies):
    return create_app({"TESTING": True, "REDIS_URL": redis_server.url,
                       "DATA_DIR": str(tmp_path / "data"), "ISSUER": "HC-TEST",
                       "SUBJECT_SECRET": "test-subject-secret-0123456789",
                       "SECRET_KEY": "test-session-secret-0123456789",
                       "TRUSTED_PROXIES": proxies})


def test_hsts_over_tls(client):
    response = client.get("/healthz", base_url="https://localhost")
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"


def test_no_hsts_over_plain_http(client):
    assert "Strict-Transport-Security" not in client.get("/healthz").headers


@pytest.mark.parametrize("proxies, believed", [(0, False), (1, True)])
def test_a_forwarded_scheme_counts_only_from_a_trusted_proxy(tmp_path, redis_server,
                                                            redis_client, proxies, believed):
    client = make_app(tmp_path, redis_server, proxies).test_client()
    response = client.get("/healthz", headers={"X-Forwarded-Proto": "https",
                                               "X-Forwarded-For": "203.0.113.9"})
    assert ("Strict-Transport-Security" in response.headers) is believed


def test_only_the_trusted_hops_are_read(tmp_path, redis_server, redis_client):
    """With one trusted proxy, a client's own X-Forwarded-Proto before it is ignored."""
    client = make_app(tmp_path, redis_server, 1).test_client()
    response = client.get("/healthz", headers={"X-Forwarded-Proto": "https, http"})
    assert "Strict-Transport-Security" not in response.headers
