"""Page sign-in: server-side sessions behind an HttpOnly SameSite=Strict cookie, CSRF tokens,
sign-out, one-time links, and the cookie standing in for the credential on the API."""
import re
import time

import pytest
import redis

from healthcode import create_app
from healthcode.sessions import COOKIE, FORM_COOKIE
from tests.support import free_port


# -- helpers shared by the page tests -------------------------------------------------------------

def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def meta_csrf(html: str) -> str:
    return re.search(r'<meta name="csrf-token" content="([^"]+)"', html).group(1)


def sign_in(client, token: str, page: str = "me"):
    """Sign in through the form, as a browser would: fetch the form, post it with its token."""
    form = client.get(f"/{page}")
    return client.post("/signin", data={"csrf_token": csrf_of(form.get_data(as_text=True)),
                                        "token": token, "next": page})


def cookie_header(response, name: str) -> str:
    found = [c for c in response.headers.getlist("Set-Cookie") if c.startswith(f"{name}=")]
    assert found, f"no {name} cookie set"
    return found[-1]


def session_cookie(client):
    cookie = client.get_cookie(COOKIE)
    return cookie.value if cookie else None


def create_link(client, creds, sid):
    response = client.post(f"/api/v1/residents/{sid}/links", headers=creds.authority)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


# -- sign-in --------------------------------------------------------------------------------------

def test_signing_in_sets_an_httponly_samesite_strict_cookie(client, creds, enrolled):
    response = sign_in(client, creds.token("resident", enrolled["id"]))
    assert response.status_code == 303 and response.headers["Location"].endswith("/me")
    cookie = cookie_header(response, COOKIE)
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # TESTING turns Secure off, for plain-HTTP test servers
    page = client.get("/me")
    assert page.status_code == 200 and 'id="code"' in page.get_data(as_text=True)


def test_cookies_are_secure_unless_switched_off(tmp_path, redis_server, redis_client):
    app = create_app({"TESTING": True, "SECURE_COOKIES": True, "REDIS_URL": redis_server.url,
                      "DATA_DIR": str(tmp_path), "SUBJECT_SECRET": "s" * 20,
                      "SECRET_KEY": "test-session-secret-0123"})
    client = app.test_client()
    _, token = app.extensions["healthcode.store"].create_credential("checkpoint")
    response = sign_in(client, token, "checkpoint")
    assert "Secure" in cookie_header(response, COOKIE)


def test_without_configuration_cookies_are_secure_outside_testing(tmp_path, redis_server,
                                                                  redis_client):
    from healthcode.bootstrap import initialise

    initialise({"DATA_DIR": str(tmp_path), "SUBJECT_SECRET": "s" * 20})  # `healthcode init`
    secret_file = tmp_path / "session.secret"
    assert secret_file.exists() and secret_file.stat().st_mode & 0o077 == 0
    app = create_app({"REDIS_URL": redis_server.url, "DATA_DIR": str(tmp_path),
                      "SUBJECT_SECRET": "s" * 20})
    assert app.config["SECURE_COOKIES"] is True
    again = create_app({"REDIS_URL": redis_server.url, "DATA_DIR": str(tmp_path),
                        "SUBJECT_SECRET": "s" * 20})
    assert again.config["SECRET_KEY"] == app.config["SECRET_KEY"]  # workers agree


def test_redis_keeps_only_hashes_of_the_cookie_and_no_token(client, creds, enrolled,
                                                            redis_client):
    token = creds.token("resident", enrolled["id"])
    sign_in(client, token)
    session_id = session_cookie(client)
    keys = redis_client.keys("hc:sess:*")
    assert len(keys) == 1
    dump = " ".join(keys + [str(redis_client.get(k)) for k in keys])
    assert session_id not in dump and token not in dump
    assert token.split(".")[1] not in dump  # not even the secret half


@pytest.mark.parametrize("form, reason_text", [
    ({"token": "hc_nope.nope"}, "This access code is not valid."),
    ({"token": ""}, "This access code is not valid."),
])
def test_a_bad_access_code_is_refused_in_words(client, form, reason_text):
    page = client.get("/me?lang=en")
    response = client.post("/signin", data={"csrf_token": csrf_of(page.get_data(as_text=True)),
                                            "next": "me", **form})
    assert response.status_code == 401
    assert reason_text in response.get_data(as_text=True)
    assert session_cookie(client) is None


def test_a_credential_without_a_page_cannot_sign_in(client, creds):
    response = sign_in(client, creds.token("authority"))
    assert response.status_code == 403
    assert "This access code has no page here." in response.get_data(as_text=True)
    assert session_cookie(client) is None


def test_each_role_lands_on_its_own_page(client, creds, enrolled):
    response = sign_in(client, creds.token("checkpoint"), page="me")
    assert response.headers["Location"].endswith("/checkpoint")


def test_signing_in_needs_the_forms_csrf_token(client, creds, enrolled):
    token = creds.token("resident", enrolled["id"])
    client.get("/me")  # the form nonce cookie is set
    missing = client.post("/signin", data={"token": token, "next": "me"})
    assert missing.status_code == 403 and session_cookie(client) is None
    forged = client.post("/signin", data={"token": token, "next": "me", "csrf_token": "0" * 64})
    assert forged.status_code == 403 and session_cookie(client) is None


def test_a_csrf_token_is_useless_without_its_cookie(app, creds, enrolled):
    """Another site can copy our form, token and all, but cannot make the browser send our
    SameSite=Strict cookie with it, so the copied token checks against nothing."""
    attacker, victim = app.test_client(), app.test_client()
    stolen = csrf_of(attacker.get("/me").get_data(as_text=True))
    victim.get("/me")  # the victim has a form cookie of their own
    response = victim.post("/signin", data={"csrf_token": stolen, "next": "me",
                                            "token": creds.token("resident", enrolled["id"])})
    assert response.status_code == 403


def test_every_sign_in_opens_a_new_session(client, creds, enrolled):
    token = creds.token("resident", enrolled["id"])
    sign_in(client, token)
    first = session_cookie(client)
    sign_in(client, token)
    second = session_cookie(client)
    assert first != second
    client.set_cookie(COOKIE, first)
    assert 'id="code"' not in client.get("/me").get_data(as_text=True)  # the old one ended


# -- the cookie on the API, and CSRF on unsafe methods --------------------------------------------

def test_the_session_cookie_stands_for_its_credential_on_the_api(client, creds, enrolled):
    sid = enrolled["id"]
    sign_in(client, creds.token("resident", sid))
    me = client.get("/api/v1/whoami").get_json()
    assert me["role"] == "resident" and me["subject"] == sid
    assert client.get(f"/api/v1/residents/{sid}/code?format=png").status_code == 200
    assert client.get("/api/v1/residents/BBBBBBBBBBBBBBBB/code").status_code == 403


def test_cookie_authenticated_posts_need_the_csrf_header(client, creds, enrolled):
    sign_in(client, creds.token("checkpoint"), page="checkpoint")
    page = client.get("/checkpoint").get_data(as_text=True)
    without = client.post("/api/v1/verify", json={"code": "x"})
    assert without.status_code == 403 and without.get_json()["error"] == "csrf_failed"
    wrong = client.post("/api/v1/verify", json={"code": "x"}, headers={"X-CSRF-Token": "f" * 64})
    assert wrong.status_code == 403 and wrong.get_json()["error"] == "csrf_failed"
    right = client.post("/api/v1/verify", json={"code": "x"},
                        headers={"X-CSRF-Token": meta_csrf(page)})
    assert right.status_code == 200 and right.get_json()["valid"] is False


def test_bearer_calls_need_no_csrf_token(client, creds):
    response = client.post("/api/v1/verify", json={"code": "x"}, headers=creds.checkpoint)
    assert response.status_code == 200


def test_a_bearer_header_wins_over_the_cookie(client, creds, enrolled):
    sign_in(client, creds.token("checkpoint"), page="checkpoint")
    me = client.get("/api/v1/whoami", headers=creds.authority).get_json()
    assert me["role"] == "authority"


# -- sign-out and revocation ----------------------------------------------------------------------

def test_signing_out_ends_the_session_on_the_server(client, creds, enrolled, redis_client):
    sign_in(client, creds.token("resident", enrolled["id"]))
    session_id = session_cookie(client)
    page = client.get("/me").get_data(as_text=True)
    response = client.post("/signout", data={"csrf_token": csrf_of(page), "next": "me"})
    assert response.status_code == 303 and "signed_out=1" in response.headers["Location"]
    assert session_cookie(client) is None
    assert redis_client.keys("hc:sess:*") == []
    client.set_cookie(COOKIE, session_id)  # a copied cookie is worth nothing now
    assert client.get("/api/v1/whoami").status_code == 401
    after = client.get("/me?lang=en").get_data(as_text=True)
    assert "You have signed out." not in after  # only on the redirect target
    assert "You have signed out." in client.get("/me?signed_out=1&lang=en").get_data(
        as_text=True)


def test_signing_out_needs_the_csrf_token(client, creds, enrolled):
    sign_in(client, creds.token("resident", enrolled["id"]))
    response = client.post("/signout", data={"next": "me"})
    assert response.status_code == 403
    assert client.get("/api/v1/whoami").status_code == 200


def test_revoking_the_credential_signs_its_pages_out(app, client, creds, enrolled):
    sign_in(client, creds.token("checkpoint"), page="checkpoint")
    cred_id = client.get("/api/v1/whoami").get_json()["id"]
    app.extensions["healthcode.store"].revoke_credential(cred_id)
    assert client.get("/api/v1/whoami").status_code == 401
    assert 'id="video"' not in client.get("/checkpoint").get_data(as_text=True)


def test_a_known_session_outlives_a_store_outage(app, client, creds, enrolled):
    """As credentials do: a scanner page that was signed in keeps verifying."""
    sign_in(client, creds.token("checkpoint"), page="checkpoint")
    session_id = session_cookie(client)
    sessions = app.extensions["healthcode.sessions"]
    known = sessions.load(session_id)
    sessions.r = redis.Redis(port=free_port(), socket_timeout=0.2, socket_connect_timeout=0.2)
    assert sessions.load(session_id) == known
    from healthcode.errors import StoreUnavailable
    with pytest.raises(StoreUnavailable):
        sessions.load("never-seen-before")


# -- one-time links -------------------------------------------------------------------------------

def test_an_authority_creates_a_one_time_link(app, client, creds, enrolled, redis_client):
    before = time.time()
    link = create_link(client, creds, enrolled["id"])
    assert re.fullmatch(r"/me/login/[A-Za-z0-9_-]{32}", link["url"])
    assert enrolled["id"] not in link["url"]
    from healthcode.record import parse_time
    expires = parse_time(link["expires_at"], "expires_at").timestamp()
    assert before + app.config["LINK_TTL"] - 2 <= expires <= time.time() + app.config["LINK_TTL"]
    token = link["url"].rsplit("/", 1)[1]
    keys = redis_client.keys("hc:link:*")
    assert len(keys) == 1 and token not in keys[0]  # stored hashed
    assert 0 < redis_client.ttl(keys[0]) <= app.config["LINK_TTL"]
    actions = [e["action"] for e in app.extensions["healthcode.store"].audit_entries()]
    assert "link_create" in actions


@pytest.mark.parametrize("role, status", [("checkpoint", 403), ("partner", 403),
                                          ("resident", 403), (None, 401)])
def test_only_an_authority_creates_links(client, creds, enrolled, role, status):
    headers = {} if role is None else (creds.resident(enrolled["id"]) if role == "resident"
                                       else creds.headers(role))
    response = client.post(f"/api/v1/residents/{enrolled['id']}/links", headers=headers)
    assert response.status_code == status


def test_no_link_for_an_unknown_resident(client, creds):
    for sid in ("AAAAAAAAAAAAAAAA", "not-an-id"):
        response = client.post(f"/api/v1/residents/{sid}/links", headers=creds.authority)
        assert response.status_code == 404


def test_a_link_signs_in_once(app, client, creds, enrolled):
    url = create_link(client, creds, enrolled["id"])["url"]
    # opening the link (or a chat app's preview fetching it) does not use it up
    for _ in range(2):
        shown = client.get(url)
        assert shown.status_code == 200
    response = client.post(url, data={"csrf_token": csrf_of(shown.get_data(as_text=True))})
    assert response.status_code == 303 and response.headers["Location"].endswith("/me")
    me = client.get("/api/v1/whoami").get_json()
    assert me["role"] == "resident" and me["subject"] == enrolled["id"]
    assert 'id="code"' in client.get("/me").get_data(as_text=True)

    other = app.test_client()
    again = other.get(url)
    assert again.status_code == 410
    page = other.get("/me").get_data(as_text=True)
    replay = other.post(url, data={"csrf_token": csrf_of(page)})
    assert replay.status_code == 410 and other.get_cookie(COOKIE) is None


def test_a_link_expires(client, creds, enrolled, redis_client):
    url = create_link(client, creds, enrolled["id"])["url"]
    shown = client.get(url)
    (key,) = redis_client.keys("hc:link:*")
    redis_client.pexpire(key, 1)
    time.sleep(0.01)
    response = client.post(url, data={"csrf_token": csrf_of(shown.get_data(as_text=True))})
    assert response.status_code == 410
    assert "expired or has already been used" in response.get_data(as_text=True)
    assert session_cookie(client) is None


def test_redeeming_a_link_needs_the_csrf_token(client, creds, enrolled):
    url = create_link(client, creds, enrolled["id"])["url"]
    client.get(url)
    assert client.post(url, data={}).status_code == 403
    assert client.get(url).status_code == 200  # a refused post does not use the link up


def test_sign_ins_are_audited_without_secrets(app, client, creds, enrolled):
    token = creds.token("resident", enrolled["id"])
    sign_in(client, token)
    entries = app.extensions["healthcode.store"].audit_entries()
    signin = next(e for e in entries if e["action"] == "page_signin")
    assert signin["subject"] == enrolled["id"] and signin["kind"] == "token"
    assert token.split(".")[1] not in str(entries)


def test_the_form_cookie_is_strict_too(client):
    response = client.get("/me")
    cookie = cookie_header(response, FORM_COOKIE)
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie


@pytest.mark.parametrize("raw, expected", [("false", False), ("0", False), ("off", False),
                                           ("true", True), ("1", True), ("Yes", True)])
def test_secure_cookies_are_switched_by_the_environment(raw, expected):
    from healthcode.config import load_env
    assert load_env({"HEALTHCODE_SECURE_COOKIES": raw})["SECURE_COOKIES"] is expected


def test_a_bad_cookie_setting_stops_start_up():
    from healthcode.config import load_env
    from healthcode.errors import ConfigurationError
    with pytest.raises(ConfigurationError):
        load_env({"HEALTHCODE_SECURE_COOKIES": "maybe"})


@pytest.mark.parametrize("setting", [{"SECRET_KEY": "short"}, {"SESSION_TTL": 5},
                                     {"LINK_TTL": 10 ** 9}])
def test_unusable_session_settings_stop_start_up(tmp_path, redis_server, setting):
    from healthcode.errors import ConfigurationError
    with pytest.raises(ConfigurationError):
        create_app({"TESTING": True, "REDIS_URL": redis_server.url, "DATA_DIR": str(tmp_path),
                    "SUBJECT_SECRET": "s" * 20, "SECRET_KEY": "test-session-secret-0123",
                    **setting})
