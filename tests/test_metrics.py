"""What /metrics counts: requests, verify outcomes, conversions by partner and rule, Redis, with
label values from fixed vocabularies only (the whole-service view under gunicorn is tested
in tests/test_serving.py)."""
from prometheus_client import REGISTRY

from tests.views.test_convert_partners import (partner_code, partner_keys,  # noqa: F401
                                               record_for, world)


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_conversions_count_by_partner_outcome_and_rule(world, partner_keys):  # noqa: F811
    mapping = world["mappings"]["mo"]
    green = partner_code(world, "mo", partner_keys, record_for("mo", mapping))
    red = partner_code(world, "mo", partner_keys, record_for("mo", mapping, status="red",
                                                             number="H7654321"))
    before = {
        "converted": sample("healthcode_conversions_total", partner="mo", to="native",
                            outcome="converted"),
        "refused": sample("healthcode_conversions_total", partner="mo", to="native",
                          outcome="policy_refused"),
        "fired": sample("healthcode_conversion_rules_total", partner="mo", rule="accept",
                        result="fired"),
        "said_no": sample("healthcode_conversion_rules_total", partner="mo", rule="accept",
                          result="refused")}
    client, headers = world["client"], world["headers"]["partner"]
    assert client.post("/api/v1/convert", json={"code": green, "to": "native"},
                       headers=headers).status_code == 200
    refused = client.post("/api/v1/convert", json={"code": red, "to": "native"},
                          headers=headers)
    assert refused.get_json()["error"] == "policy_refused"
    assert sample("healthcode_conversions_total", partner="mo", to="native",
                  outcome="converted") == before["converted"] + 1
    assert sample("healthcode_conversions_total", partner="mo", to="native",
                  outcome="policy_refused") == before["refused"] + 1
    assert sample("healthcode_conversion_rules_total", partner="mo", rule="accept",
                  result="fired") == before["fired"] + 1
    assert sample("healthcode_conversion_rules_total", partner="mo", rule="accept",
                  result="refused") == before["said_no"] + 1


def test_label_values_never_come_from_the_request(world):  # noqa: F811
    client, headers = world["client"], world["headers"]["partner"]
    client.post("/api/v1/convert", json={"code": "junk", "to": "<script>", "from": "x" * 50},
                headers=headers)
    text = client.get("/metrics").get_data(as_text=True)
    assert "<script>" not in text and "x" * 50 not in text
    assert 'partner="unknown",to="unknown"' in text


def test_verify_outcomes_requests_and_redis_operations(client, creds, enrolled):
    code = client.get(f"/api/v1/residents/{enrolled['id']}/code",
                      headers=creds.authority).get_json()["code"]
    valid = sample("healthcode_verifications_total", scheme="native", outcome="valid")
    ok = sample("healthcode_requests_total", endpoint="/api/v1/verify", status="200")
    reads = sample("healthcode_redis_duration_seconds_count", operation="current_status")
    assert client.post("/api/v1/verify", json={"code": code},
                       headers=creds.checkpoint).get_json()["valid"]
    assert sample("healthcode_verifications_total", scheme="native",
                  outcome="valid") == valid + 1
    assert sample("healthcode_requests_total", endpoint="/api/v1/verify",
                  status="200") == ok + 1
    assert sample("healthcode_redis_duration_seconds_count",
                  operation="current_status") == reads + 1
    exposition = client.get("/metrics")
    assert exposition.status_code == 200
    assert exposition.content_type.startswith("text/plain")


def test_the_cli_does_not_import_prometheus_client_before_serve_sets_its_directory():
    """prometheus_client picks its storage when imported: were the CLI to import it before
    `healthcode serve` sets PROMETHEUS_MULTIPROC_DIR, every worker would count for itself."""
    import subprocess
    import sys

    from tests.support import REPO

    probe = "import sys, healthcode.cli; print('prometheus_client' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr
