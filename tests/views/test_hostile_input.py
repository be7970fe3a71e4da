"""What a hostile pass found (issue 11, item 2), each through HTTP: 4xx, or 200 with
``valid: false`` at verify, never a 500."""
import json
import time

import pytest

from tests import tokens_util as tu
from tests.conftest import RESIDENT


def ring_of(app):
    return app.extensions["healthcode.keys"]


def post(client, path, body, headers):
    return client.post(path, data=body if isinstance(body, str) else json.dumps(body),
                       content_type="application/json", headers=headers)


@pytest.mark.parametrize("crit", ["abc", ["x"], [1], [], None, ["exp"], ["b64"]], ids=repr)
def test_a_crit_header_with_a_forged_signature_is_refused_at_verify(app, client, creds, crit):
    code = tu.forged_with_header(ring_of(app), {"crit": crit}, iss="HC-TEST")
    response = post(client, "/api/v1/verify", {"code": code}, creds.checkpoint)
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert answer["valid"] is False and answer["reason"] in ("malformed", "bad_signature")


@pytest.mark.parametrize("crit", ["abc", ["x"], [1]], ids=repr)
def test_a_crit_header_with_a_forged_signature_is_refused_at_convert(app, client, creds, crit):
    code = tu.forged_with_header(ring_of(app), {"crit": crit}, iss="HC-TEST")
    response = post(client, "/api/v1/convert", {"code": code, "to": "eu-dcc"}, creds.partner)
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["error"] in ("malformed", "bad_signature")


JSON_ENDPOINTS = [
    ("POST", "/api/v1/residents", "authority"),
    ("PUT", "/api/v1/residents/{sid}/status", "authority"),
    ("POST", "/api/v1/codes", "authority"),
    ("POST", "/api/v1/verify", "checkpoint"),
    ("POST", "/api/v1/convert", "partner"),
    ("POST", "/api/v1/lookup", "checkpoint"),
]


@pytest.mark.parametrize("depth", [1_000, 5_000, 20_000])
@pytest.mark.parametrize("method, path, role", JSON_ENDPOINTS, ids=[e[1] for e in JSON_ENDPOINTS])
def test_deeply_nested_json_is_refused_before_parsing(client, creds, enrolled, method, path, role,
                                                      depth):
    body = '{"code": ' + tu.deep_json_text(depth) + "}"
    response = client.open(path.format(sid=enrolled["id"]), method=method, data=body,
                           content_type="application/json", headers=creds.headers(role))
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"] == "too_deep"


def test_brackets_inside_strings_do_not_count_as_nesting(client, creds):
    response = post(client, "/api/v1/verify", {"code": "[" * 9000 + "{" * 9000}, creds.checkpoint)
    assert response.status_code == 413  # too long a code, but read as one string: not too deep
    response = post(client, "/api/v1/verify", {"code": '\\"[[[' * 300}, creds.checkpoint)
    assert response.status_code == 200


def test_the_nesting_real_bodies_need_is_accepted(client, creds):
    """An enrollment nests four deep (body, evidence, tests, test): far below the cap."""
    response = post(client, "/api/v1/residents", RESIDENT, creds.authority)
    assert response.status_code == 201


@pytest.mark.parametrize("fmt", [{}, [], [1], {"a": 1}, 1, True, "gif"], ids=repr)
def test_a_one_shot_format_that_is_not_a_name_is_invalid_field(client, creds, fmt):
    response = post(client, "/api/v1/codes", {"name": "A B", "status": "green", "format": fmt},
                    creds.authority)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"] == "invalid_field"
    assert response.get_json()["field"] == "format"


@pytest.mark.parametrize("fmt", [{}, [], [1]], ids=repr)
def test_a_conversion_format_that_is_not_a_name_is_invalid_field(client, creds, fmt):
    response = post(client, "/api/v1/convert", {"code": "x", "to": "eu-dcc", "format": fmt},
                    creds.partner)
    assert response.status_code == 400
    assert response.get_json()["field"] == "format"


NOW = int(time.time())
ABSURD = [
    ("exp 2^63", {"exp": 2**63}),
    ("exp 10^400", {"exp": 10**400}),
    ("iat -10^12", {"iat": -10**12}),
    ("iat -10^12, exp a lifetime later", {"iat": -10**12, "exp": -10**12 + 300}),
    ("exp ten years ahead", {"exp": NOW + 10 * 365 * 86400}),
    ("one-shot exp ten years ahead", {"exp": NOW + 10 * 365 * 86400, "sv": 0}),
]


@pytest.mark.parametrize("override", [o for _, o in ABSURD], ids=[i for i, _ in ABSURD])
def test_absurd_times_under_our_signature_do_not_verify(app, client, creds, override):
    code = tu.signed_claims(ring_of(app), {**tu.claims(iat=NOW), **override})
    response = post(client, "/api/v1/verify", {"code": code}, creds.checkpoint)
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert answer["valid"] is False and answer["reason"] in ("malformed", "expired")
    converted = post(client, "/api/v1/convert", {"code": code, "to": "eu-dcc"}, creds.partner)
    assert converted.status_code == 422, converted.get_json()
    assert converted.get_json()["error"] in ("malformed", "expired")


def test_a_dynamic_code_longer_than_dynamic_lifetime_does_not_verify(app, client, creds, enrolled):
    """A dynamic code (status version ≥ 1) lives CODE_TTL (300 s here); signing more with our
    key is a bug or a leaked key, not a code we issued."""
    ring = ring_of(app)
    ok = tu.signed_claims(ring, {**tu.claims(sub=enrolled["id"], iat=NOW), "exp": NOW + 300})
    long = tu.signed_claims(ring, {**tu.claims(sub=enrolled["id"], iat=NOW), "exp": NOW + 7200})
    assert post(client, "/api/v1/verify", {"code": ok}, creds.checkpoint).get_json()["valid"]
    answer = post(client, "/api/v1/verify", {"code": long}, creds.checkpoint).get_json()
    assert (answer["valid"], answer["reason"]) == (False, "malformed")


def test_a_one_shot_code_lives_as_long_as_it_was_issued_for(client, creds):
    """The one-shot bound is MAX_ONE_SHOT_TTL (30 days): the longest POST /api/v1/codes
    issues; such a code verifies for all of it."""
    issued = post(client, "/api/v1/codes", {"name": "A B", "status": "green",
                                            "ttl": 30 * 86400}, creds.authority)
    assert issued.status_code == 201
    answer = post(client, "/api/v1/verify", {"code": issued.get_json()["code"]},
                  creds.checkpoint).get_json()
    assert answer["valid"] is True
