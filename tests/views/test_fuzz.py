"""Bad input gets a clear 4xx, never a 500: arbitrary JSON at every endpoint that takes a body,
sent with a credential the endpoint accepts."""
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import RESIDENT
# every endpoint that reads a JSON body, with the role that may call it
from tests.views.test_hostile_input import JSON_ENDPOINTS as ENDPOINTS

# extremes explicitly: hypothesis favours small numbers, and the bugs live at the edges
EXTREMES = [2**63, -2**63, 2**70, 10**20, -1, 0, 1e308, -1e308, float("inf"), 1e-320]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.sampled_from(EXTREMES), st.floats(allow_nan=False), st.text(max_size=40))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=5)),
    max_leaves=12)
# bodies close to valid ones reach deeper than random objects
FULL_RESIDENT = {**RESIDENT, "family_name": "陳", "given_name": "大文", "reason": None,
                 "evidence": {
                     "tests": RESIDENT["evidence"]["tests"],
                     "vaccinations": [{"product": "EU/1/20/1528", "dose_number": 2,
                                       "series_doses": 2, "administered_on": "2021-06-01",
                                       "country": "MO"}],
                     "recoveries": [{"first_positive_on": "2022-01-03",
                                     "valid_until": "2022-07-01"}]}}


def leaf_paths(value, prefix=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaf_paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaf_paths(item, prefix + (index,))
    yield prefix


def replaced(value, path, new):
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = replaced(value[path[0]], path[1:], new)
    return copy


PATHS = sorted(set(leaf_paths(FULL_RESIDENT)), key=str)
# a valid body with exactly one place (a leaf or a whole branch) replaced: every field is
# reached equally often, which random nesting would almost never do
near_resident = st.builds(lambda path, new: replaced(FULL_RESIDENT, path, new),
                          st.sampled_from(PATHS), json_values)
near_code = st.fixed_dictionaries({"code": st.one_of(st.text(max_size=300), json_values),
                                   "to": st.one_of(st.sampled_from(["native", "mo", "eu-dcc",
                                                                    "shc", "x"]), json_values)})
bodies = st.one_of(json_values, near_resident, near_code)


@pytest.mark.parametrize("method, path, role", ENDPOINTS, ids=[e[1] for e in ENDPOINTS])
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(body=bodies)
def test_no_body_makes_a_server_error(app, client, creds, enrolled, method, path, role, body):
    app.config["LOOKUP_RATE"] = 10_000
    response = client.open(path.format(sid=enrolled["id"]), method=method,
                           data=json.dumps(body), content_type="application/json",
                           headers=creds.headers(role))
    assert response.status_code < 500, (body, response.get_json())
    payload = response.get_json()
    assert isinstance(payload, dict)
    if response.status_code >= 400:
        assert isinstance(payload.get("error"), str) and payload.get("message")


HOSTILE = EXTREMES + [None, True, "", " ", "x" * 5000, "９９", "2021-02-30", "1e309", [], {},
                      [1, 2], {"a": 1}, "\u0000", "9999-12-31T23:59:59+14:00"]


@pytest.mark.parametrize("path", PATHS, ids=lambda p: ".".join(map(str, p)) or "body")
def test_every_field_of_an_enrollment_takes_every_hostile_value(app, client, creds, path):
    """Exhaustive where the random fuzz is sparse: each field, each edge value."""
    for index, value in enumerate(HOSTILE):
        body = replaced(FULL_RESIDENT, path, value)
        if isinstance(body, dict) and isinstance(body.get("document"), dict):
            body["document"] = {**body["document"], "number": f"N{index}-{path}"[:60]}
        for url in ("/api/v1/residents", "/api/v1/codes"):
            response = client.post(url, data=json.dumps(body), content_type="application/json",
                                   headers=creds.authority)
            assert response.status_code < 500, (url, value, response.get_json())


OTHER_BODIES = [
    ("PUT", "/api/v1/residents/{sid}/status", "authority",
     {"status": "red", "reason": "close_contact", "reasons": ["symptoms"], "note": "n"}),
    ("POST", "/api/v1/convert", "partner",
     {"code": "eyJhbGciOiJFUzI1NiJ9.e30.c2ln", "to": "mo", "from": "native",
      "document": {"type": "passport", "number": "P1", "region": "HK"}}),
    ("POST", "/api/v1/lookup", "checkpoint",
     {"document": {"type": "passport", "number": "P1", "region": "HK"}}),
    ("POST", "/api/v1/verify", "checkpoint", {"code": "eyJhbGciOiJFUzI1NiJ9.e30.c2ln"}),
]


@pytest.mark.parametrize("method, path, role, base", OTHER_BODIES,
                         ids=[b[1] for b in OTHER_BODIES])
def test_every_field_of_the_other_bodies_takes_every_hostile_value(app, client, creds, enrolled,
                                                                  method, path, role, base):
    app.config["LOOKUP_RATE"] = 10_000
    for leaf in sorted(set(leaf_paths(base)), key=str):
        for value in HOSTILE:
            body = replaced(base, leaf, value)
            response = client.open(path.format(sid=enrolled["id"]), method=method,
                                   data=json.dumps(body), content_type="application/json",
                                   headers=creds.headers(role))
            assert response.status_code < 500, (leaf, value, response.get_json())


def test_a_presented_document_takes_every_hostile_value(app, client, creds, enrolled):
    """With a genuine code, conversion reaches the document check; every bad document fails
    cleanly there."""
    code = client.get(f"/api/v1/residents/{enrolled['id']}/code",
                      headers=creds.authority).get_json()["code"]
    base = {"code": code, "to": "eu-dcc",
            "document": {"type": "travel_permit", "number": "H1234567", "region": "MO"}}
    for leaf in sorted(set(leaf_paths(base["document"])), key=str):
        for value in HOSTILE:
            body = {**base, "document": replaced(base["document"], leaf, value)}
            response = client.post("/api/v1/convert", data=json.dumps(body),
                                   content_type="application/json",
                                   headers=creds.headers("partner"))
            assert response.status_code < 500, (leaf, value, response.get_json())
            assert response.status_code >= 400
