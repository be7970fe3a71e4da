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


def test_the_document_states_the_limits_the_parsers_enforce(app, client):
    """Unknown fields are refused by these bodies, so the document says
    additionalProperties: false; required strings are non-empty; sizes are the configured ones."""
    doc = client.get("/openapi.json").get_json()
    schemas = doc["components"]["schemas"]

    def body(path, method="post"):
        schema = doc["paths"][path][method]["requestBody"]["content"]["application/json"]
        schema = schema["schema"]
        return schemas[schema["$ref"].rsplit("/", 1)[1]] if "$ref" in schema else schema

    for schema in (body("/api/v1/residents"), body("/api/v1/residents/{id}/status", "put"),
                   body("/api/v1/codes"), body("/api/v1/convert"), body("/api/v1/lookup"),
                   schemas["Document"], schemas["Evidence"]):
        assert schema["additionalProperties"] is False
    for name in ("type", "number", "region"):
        assert schemas["Document"]["properties"][name]["minLength"] == 1
        assert schemas["Document"]["properties"][name]["maxLength"] == 64
    assert body("/api/v1/residents")["properties"]["name"]["minLength"] == 1
    limit = app.config["MAX_CODE_LENGTH"]
    assert body("/api/v1/verify")["properties"]["code"]["maxLength"] == limit
    ttl = body("/api/v1/codes")["properties"]["ttl"]
    assert (ttl["minimum"], ttl["maximum"]) == (10, 30 * 86400)
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if "security" in op:
                assert {"401", "429"} <= set(op["responses"]), (method, path)
