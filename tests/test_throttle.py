"""Guessing is throttled (issue 11, item 5): failed authentication is counted per client
address and per credential id in Redis; past the bound the answer is 429 rate_limited with
Retry-After, and the genuine holder is not locked out for long."""
import re
import secrets

import pytest

from tests.conftest import RESIDENT

PER_ADDRESS = 30
PER_CREDENTIAL = 10


@pytest.fixture
def app(app):
    app.config.update(AUTH_FAILURES_PER_ADDRESS=PER_ADDRESS,
                      AUTH_FAILURES_PER_CREDENTIAL=PER_CREDENTIAL, AUTH_FAILURE_WINDOW=60)
    return app


def from_address(address):
    return {"REMOTE_ADDR": address}


def whoami(client, token, address="10.0.0.1"):
    return client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"},
                      environ_base=from_address(address))


def random_token(i):
    """What a guesser sends: garbage of every shape, and tokens shaped like ours."""
    if i % 2:
        return f"hc_{secrets.token_hex(6)}.{secrets.token_urlsafe(24)}"
    return secrets.token_urlsafe(8 + i % 40)


def test_a_burst_of_random_bearer_tokens_is_429_past_the_bound(client):
    answers = [whoami(client, random_token(i)) for i in range(2000)]
    codes = [a.status_code for a in answers]
    assert codes[:PER_ADDRESS] == [401] * PER_ADDRESS
    assert set(codes[PER_ADDRESS:]) == {429}
    limited = answers[-1]
    assert limited.get_json()["error"] == "rate_limited"
    assert 0 < int(limited.headers["Retry-After"]) <= 60


def test_another_address_is_not_affected(client, creds):
    for i in range(PER_ADDRESS + 5):
        whoami(client, random_token(i), address="10.0.0.66")
    assert whoami(client, creds.token("checkpoint"), address="10.0.0.2").status_code == 200
    assert whoami(client, random_token(1), address="10.0.0.3").status_code == 401


def test_wrong_secrets_for_one_credential_id_are_429_past_the_bound(client, creds):
    """From many addresses (so only the per-credential bound applies)."""
    token = creds.token("checkpoint")
    cred_id = token.split(".")[0]
    codes = [whoami(client, f"{cred_id}.{secrets.token_urlsafe(24)}",
                    address=f"10.1.{i // 200}.{i % 200}").status_code for i in range(500)]
    assert codes[:PER_CREDENTIAL] == [401] * PER_CREDENTIAL
    assert set(codes[PER_CREDENTIAL:]) == {429}


def test_guessing_at_an_id_does_not_lock_its_genuine_holder_out(client, creds):
    """Secrets are 192 random bits: the per-id bound slows and flags an attack, it is not what
    keeps the secret safe; so the right secret passes however many wrong ones came before."""
    token = creds.token("checkpoint")
    cred_id = token.split(".")[0]
    for i in range(3 * PER_CREDENTIAL):
        whoami(client, f"{cred_id}.{secrets.token_urlsafe(24)}", address=f"10.2.0.{i}")
    assert whoami(client, token, address="10.3.0.1").status_code == 200


def test_a_blocked_address_keeps_a_credential_this_worker_knows_good(client, creds):
    """A token already checked good is not a guess: a checkpoint behind the same NAT as the
    guesser keeps working."""
    token = creds.token("checkpoint")
    assert whoami(client, token, address="10.4.0.1").status_code == 200
    for i in range(PER_ADDRESS + 5):
        whoami(client, random_token(i), address="10.4.0.1")
    assert whoami(client, random_token(3), address="10.4.0.1").status_code == 429
    assert whoami(client, token, address="10.4.0.1").status_code == 200


def test_the_genuine_holder_recovers_when_the_window_ends(app, client, creds):
    import time
    app.config["AUTH_FAILURE_WINDOW"] = 2
    token = creds.token("authority")  # never used yet from this address: not known good
    for i in range(PER_ADDRESS + 5):
        whoami(client, random_token(i), address="10.5.0.1")
    blocked = whoami(client, token, address="10.5.0.1")
    assert blocked.status_code == 429
    wait = int(blocked.headers["Retry-After"])
    assert 0 < wait <= 2
    time.sleep(wait + 0.1)
    assert whoami(client, token, address="10.5.0.1").status_code == 200


def test_failures_are_counted_in_redis_under_their_own_hash_tags(client, redis_client):
    whoami(client, random_token(1), address="10.6.0.1")
    keys = redis_client.keys("hc:rl:*")
    assert any(re.fullmatch(r"hc:rl:\{authfail:addr:10\.6\.0\.1\}", k) for k in keys), keys
    assert any(re.fullmatch(r"hc:rl:\{authfail:cred:[0-9a-f]+\}", k) for k in keys), keys
    assert all(0 < redis_client.ttl(k) <= 60 for k in keys)  # never a counter without expiry


# -- pages ----------------------------------------------------------------------------------------

def csrf_of(html):
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def test_signin_guesses_are_429_past_the_bound(client, creds):
    form = client.get("/checkpoint", environ_base=from_address("10.7.0.1"))
    csrf = csrf_of(form.get_data(as_text=True))
    codes = []
    for i in range(300):
        response = client.post("/signin", data={"csrf_token": csrf, "next": "checkpoint",
                                                "token": random_token(i)},
                               environ_base=from_address("10.7.0.1"))
        codes.append(response.status_code)
    assert codes[:PER_ADDRESS] == [401] * PER_ADDRESS
    assert set(codes[PER_ADDRESS:]) == {429}
    assert 0 < int(response.headers["Retry-After"]) <= 60
    assert "wait" in response.get_data(as_text=True).lower()
    # a genuine access code from another address still signs in
    other = client.get("/checkpoint", environ_base=from_address("10.7.0.2"))
    ok = client.post("/signin", data={"csrf_token": csrf_of(other.get_data(as_text=True)),
                                      "next": "checkpoint", "token": creds.token("checkpoint")},
                     environ_base=from_address("10.7.0.2"))
    assert ok.status_code == 303


def test_one_time_link_guesses_are_429_past_the_bound(client, creds, enrolled):
    codes = []
    for i in range(PER_ADDRESS + 20):
        token = secrets.token_urlsafe(24)
        page = client.get(f"/me/login/{token}", environ_base=from_address("10.8.0.1"))
        codes.append(page.status_code)
    assert codes[:PER_ADDRESS] == [410] * PER_ADDRESS
    assert set(codes[PER_ADDRESS:]) == {429}
    # a real link from another address works
    link = client.post(f"/api/v1/residents/{enrolled['id']}/links",
                       headers=creds.authority).get_json()["url"]
    assert client.get(link, environ_base=from_address("10.8.0.2")).status_code == 200
