"""Bulk enrollment: `healthcode residents import FILE` and POST /api/v1/residents/batch, with
the single enrollment's validation, audit and storage; a re-run resumes."""
import json

import pytest
from click.testing import CliRunner
from flask import Flask
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from healthcode import bulk
from healthcode.cli import main
from tests.conftest import RESIDENT


def person(i: int, **change) -> dict:
    return {**RESIDENT, "name": f"Resident {i}",
            "document": {"type": "id_card", "number": f"M{i:07d}", "region": "MO"}, **change}


@pytest.fixture
def cli(app, redis_server):
    env = {"HEALTHCODE_DATA_DIR": app.config["DATA_DIR"], "REDIS_URL": redis_server.url,
           "HEALTHCODE_SUBJECT_SECRET": app.config["SUBJECT_SECRET"],
           "HEALTHCODE_SECRET_KEY": "test-session-secret-0123456789"}
    runner = CliRunner()

    def run(*args):
        return runner.invoke(main, list(args), env=env, catch_exceptions=False)

    return run


def enrolled_ids(redis_client) -> set:
    return {k[4:20] for k in redis_client.keys("hc:{*}:st")}


def test_an_import_reports_bad_lines_by_number_and_enrolls_the_rest(cli, app, client, creds,
                                                                    redis_client, tmp_path):
    lines = [json.dumps(person(1), ensure_ascii=False),
             "{not json",
             json.dumps(person(2, status="purple")),
             "",
             json.dumps(person(3, favourite_colour="green")),
             json.dumps(person(4)),
             json.dumps(person(1)),  # the same document again
             json.dumps([1, 2]),
             json.dumps(person(5, document={"type": "id_card", "number": "X"}))]
    source = tmp_path / "people.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rejects = tmp_path / "rejects.jsonl"
    result = cli("residents", "import", str(source), "--rejects", str(rejects))
    assert result.exit_code == 1
    assert "enrolled 2, already enrolled 1 (skipped), rejected 5 of 8 lines" in result.output
    reported = {r["line"]: r for r in map(json.loads, rejects.read_text().splitlines())}
    assert sorted(reported) == [2, 3, 5, 8, 9]
    assert reported[2]["error"] == "not_json"
    assert (reported[3]["field"], reported[5]["field"], reported[9]["field"]) == (
        "status", "favourite_colour", "document.region")
    assert reported[8]["error"] == "invalid_field"
    assert len(enrolled_ids(redis_client)) == 2
    # an imported resident is like one enrolled through the API
    single = client.post("/api/v1/residents", json=person(6), headers=creds.authority)
    imported_id = next(iter(enrolled_ids(redis_client) - {single.get_json()["id"]}))
    shown = client.get(f"/api/v1/residents/{imported_id}", headers=creds.authority).get_json()
    reference = client.get(f"/api/v1/residents/{single.get_json()['id']}",
                           headers=creds.authority).get_json()
    assert set(shown) == set(reference) and set(shown["record"]) == set(reference["record"])
    assert shown["status_version"] == 1
    code = client.get(f"/api/v1/residents/{imported_id}/code", headers=creds.authority)
    verdict = client.post("/api/v1/verify", json={"code": code.get_json()["code"]},
                          headers=creds.checkpoint).get_json()
    assert verdict["valid"] and verdict["checked_online"]


def test_rejects_go_to_stderr_without_a_rejects_file(cli, tmp_path):
    source = tmp_path / "people.jsonl"
    source.write_text(json.dumps(person(1)) + "\n" + json.dumps({"name": "x"}) + "\n")
    result = cli("residents", "import", str(source), "--jobs", "1")
    assert "line 2: invalid_field: document: required" in result.output
    assert "enrolled 1," in result.output


def test_a_rerun_resumes_an_interrupted_import(cli, app, redis_client, tmp_path):
    people = [json.dumps(person(i)) for i in range(2500)]
    source = tmp_path / "people.jsonl"
    source.write_text("\n".join(people[:1200]) + "\n" + people[1200][:30])  # cut mid-line
    first = cli("residents", "import", str(source), "--batch", "500")
    assert "enrolled 1200" in first.output and "rejected 1 " in first.output
    source.write_text("\n".join(people) + "\n")
    second = cli("residents", "import", str(source), "--batch", "500")
    assert second.exit_code == 0
    assert "enrolled 1300, already enrolled 1200 (skipped), rejected 0 of 2500" in second.output
    assert len(enrolled_ids(redis_client)) == 2500
    entries = list(app.extensions["healthcode.store"].audit_export())
    listed = [s for e in entries if e["action"] == "enroll" for s in e["subjects"].split()]
    assert sorted(listed) == sorted(enrolled_ids(redis_client))  # each once, none missing
    assert all(e["actor"] == "operator:import" and len(e["subjects"].split()) <= 100
               for e in entries)


def test_the_batch_endpoint_answers_per_item_in_order(client, creds, redis_client):
    items = [person(1), person(2, status="red"), person(1), "not an object", person(3)]
    response = client.post("/api/v1/residents/batch", json={"residents": items},
                           headers=creds.authority)
    assert response.status_code == 200
    body = response.get_json()
    assert (body["enrolled"], body["already_enrolled"], body["rejected"]) == (2, 1, 2)
    outcomes = [(r["index"], r["outcome"]) for r in body["results"]]
    assert outcomes == [(0, "enrolled"), (1, "rejected"), (2, "already_enrolled"),
                        (3, "rejected"), (4, "enrolled")]
    assert body["results"][1]["error"] == "invalid_field" and body["results"][1]["field"] == "reason"
    assert body["results"][0]["id"] == body["results"][2]["id"]
    assert enrolled_ids(redis_client) == {body["results"][0]["id"], body["results"][4]["id"]}


@pytest.mark.parametrize("change, field", [
    ({"status": "blue"}, "status"),
    ({"name": ""}, "name"),
    ({"document": None}, "document"),
    ({"birth_date": "2001-02-30"}, "subject.birth_date"),
    ({"evidence": {"tests": [{"type": "pcr"}]}}, "evidence.tests.result"),
])
def test_a_batch_validates_as_a_single_enrollment_does(client, creds, change, field):
    single = client.post("/api/v1/residents", json={**RESIDENT, **change},
                         headers=creds.authority).get_json()
    batch = client.post("/api/v1/residents/batch", json={"residents": [{**RESIDENT, **change}]},
                        headers=creds.authority).get_json()
    (result,) = batch["results"]
    assert {k: v for k, v in result.items() if k not in ("index", "outcome")} == single
    assert single["field"] == field


def test_batch_limits(client, creds):
    url = "/api/v1/residents/batch"
    too_many = {"residents": [person(i) for i in range(bulk.MAX_BATCH + 1)]}
    for body in ({"residents": []}, {"residents": {}}, {}, too_many, {"residents": [1], "x": 1}):
        response = client.post(url, json=body, headers=creds.authority)
        assert response.status_code in (400, 413), body.keys()
        if response.status_code == 400:
            assert response.get_json()["error"] == "invalid_field"
    big = client.post(url, json={"residents": [person(i) for i in range(bulk.MAX_BATCH)]},
                      headers=creds.authority)
    assert big.status_code == 200 and big.get_json()["enrolled"] == bulk.MAX_BATCH
    huge = client.post(url, data=b'{"residents": ["' + b"x" * bulk.MAX_BATCH_BODY + b'"]}',
                       content_type="application/json", headers=creds.authority)
    assert huge.status_code == 413
    # the larger cap is the batch endpoint's only
    single = client.post("/api/v1/residents", json=person(0, name="x" * 70_000),
                         headers=creds.authority)
    assert single.status_code == 413


def test_only_authorities_enroll_in_bulk(client, creds):
    response = client.post("/api/v1/residents/batch", json={"residents": [person(1)]},
                           headers=creds.checkpoint)
    assert response.status_code == 403


def test_an_import_cut_between_record_and_status_completes_on_the_rerun(app, client, creds,
                                                                          redis_client):
    store = app.extensions["healthcode.store"]
    first = client.post("/api/v1/residents/batch", json={"residents": [person(1)]},
                        headers=creds.authority).get_json()["results"][0]
    sid = first["id"]
    redis_client.delete(f"hc:{{{sid}}}:st")  # as if the import died after the record's SET
    with pytest.raises(Exception):
        store.resident(sid)  # a record without a status is nobody
    again = client.post("/api/v1/residents/batch", json={"residents": [person(1)]},
                        headers=creds.authority).get_json()["results"][0]
    assert again["outcome"] == "enrolled"
    shown = client.get(f"/api/v1/residents/{sid}", headers=creds.authority).get_json()
    assert shown["status_version"] == 1 and shown["record"]["subject"]["name"] == "Resident 1"


#: the parser behind request.get_json, which the single enrollment reads its body with
API_JSON = Flask(__name__).json
_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**80, 2**80) | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=4),
    max_leaves=12)


def _as_the_api_reads(raw: bytes):
    try:
        return API_JSON.loads(raw.strip())
    except (ValueError, UnicodeDecodeError):
        return "not_json"


def _as_a_line_reads(raw: bytes):
    parsed = bulk.parse_line(raw)
    return parsed.reason if isinstance(parsed, Exception) else parsed


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_values, st.booleans())
def test_a_line_reads_as_the_api_reads_a_body(value, ascii_only):
    # NaN, infinities, integers beyond 64 bits and lone surrogates included: the fast
    # parser refuses them, and the API's parser decides
    raw = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    assert repr(_as_a_line_reads(raw)) == repr(_as_the_api_reads(raw))


@settings(deadline=None)
@given(st.binary(max_size=40) | st.sampled_from(
    [b"\xef\xbb\xbf{}", b'{"a": 1, "a": 2}', b"NaN", b"1e999", b'"\\ud800"', b"[1,]", b"{}x",
     b'{"dose_number": 18446744073709551616}', b"-9223372036854775809"]))
def test_so_does_a_line_of_any_bytes(raw):
    assume(raw.strip())  # a blank line is skipped, not a body
    assert repr(_as_a_line_reads(raw)) == repr(_as_the_api_reads(raw))


def test_a_line_nesting_too_deep_is_refused_as_the_api_refuses_the_body(cli, client, creds,
                                                                         tmp_path):
    nested: list = []
    for _ in range(40):  # the single enrollment takes at most 32 levels
        nested = [nested]
    deep = json.dumps({**person(1), "evidence": {"tests": nested}})
    single = client.post("/api/v1/residents", data=deep, content_type="application/json",
                         headers=creds.authority)
    assert single.get_json()["error"] == "too_deep"
    source = tmp_path / "people.jsonl"
    source.write_text(deep + "\n" + "[" * 40_000 + "\n" + json.dumps(person(2)) + "\n")
    rejects = tmp_path / "rejects.jsonl"
    result = cli("residents", "import", str(source), "--rejects", str(rejects))
    assert "enrolled 1, already enrolled 0 (skipped), rejected 2 of 3 lines" in result.output
    assert [json.loads(r)["error"] for r in rejects.read_text().splitlines()] == [
        "too_deep", "too_deep"]
