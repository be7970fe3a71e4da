"""The API against its own description (issue 11): schemathesis generates requests from
``/openapi.json`` for every operation and every role, and each answer must be no 5xx, have a
status, content type, headers and body the document allows, and, for a request the document
calls valid, must not be refused as malformed (then the document would hide a limit the code
enforces). Bounded and derandomized, so it runs in CI in well under a minute."""
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance,
                                               response_headers_conformance,
                                               response_schema_conformance,
                                               status_code_conformance)

ROLES = ("authority", "checkpoint", "partner", "resident", "none")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
EXAMPLES = 20  # per operation, per generation mode: bounded for CI


@pytest.fixture
def schema(app):
    app.config["LOOKUP_RATE"] = 10_000
    return schemathesis.openapi.from_wsgi("/openapi.json", app)


def operations():
    """Every operation with valid requests; those that take input also with invalid ones
    (an operation without parameters or body has no invalid request to make)."""
    from healthcode import openapi
    out = []
    for path, item in openapi.spec()["paths"].items():
        for method, op in item.items():
            out.append(pytest.param(path, method, GenerationMode.POSITIVE,
                                    id=f"{method.upper()} {path} positive"))
            if "requestBody" in op or "parameters" in op:
                out.append(pytest.param(path, method, GenerationMode.NEGATIVE,
                                        id=f"{method.upper()} {path} negative"))
    return out


@pytest.mark.parametrize("path, method, mode", operations())
def test_every_operation_answers_as_documented_for_every_role(schema, creds, enrolled, path,
                                                               method, mode):
    operation = schema[path][method.upper()]
    headers = {role: creds.headers(role) for role in ROLES[:3]}
    headers["resident"] = creds.resident(enrolled["id"])
    headers["none"] = {}

    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode), role=st.sampled_from(ROLES),
           ours=st.booleans())
    def run(case, role, ours):
        if ours and "id" in (case.path_parameters or {}):
            case.path_parameters["id"] = enrolled["id"]  # reach past the 404
        case.headers = {**(case.headers or {}), **headers[role]}
        if role == "none":
            case.headers.pop("Authorization", None)
        response = case.call_and_validate(checks=CHECKS)
        if mode is GenerationMode.POSITIVE:
            # schemathesis's positive_data_acceptance wants 2xx, but a well-formed request about
            # a code that fails is rightly 422 at /convert; what must not happen is a request
            # the document calls valid refused as a bad request (400) or too large (413)
            assert response.status_code not in (400, 413), (
                f"{method.upper()} {path} refused a request its document allows: "
                f"{response.status_code} {response.text[:300]}\nbody: {case.body!r}"[:1500])

    run()
