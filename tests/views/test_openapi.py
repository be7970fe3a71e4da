"""The published API description is valid OpenAPI and describes every API route."""
import re

from openapi_spec_validator import validate


def test_openapi_document_is_valid(client):
    validate(client.get("/openapi.json").get_json())


def test_every_api_route_is_described(app, client):
    paths = client.get("/openapi.json").get_json()["paths"]
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or not (rule.rule.startswith(("/api/", "/.well-known/"))
                                             or rule.rule in ("/healthz", "/readyz",
                                                              "/metrics", "/openapi.json")):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", "{id}", rule.rule)
        assert path in paths, f"{rule.rule} is not in openapi.json"
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in paths[path], f"{method} {rule.rule} is not described"


def test_the_code_reasons_are_the_contract_vocabulary(client):
    from healthcode.errors import CODE_REASONS
    schema = client.get("/openapi.json").get_json()["components"]["schemas"]["Verification"]
    enum = schema["properties"]["reason"]["oneOf"][1]["enum"]
    assert set(enum) == CODE_REASONS
