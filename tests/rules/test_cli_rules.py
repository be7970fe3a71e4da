"""healthcode rules|valuesets|modes and tokens --mode: any country's published rules in one
command, broken ones refused by name, and the app refusing to start on a broken file."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from healthcode import create_app
from healthcode.errors import ConfigurationError
from tests.rules.helpers import PRODUCT_ALLOWED, eu_rule, write_rules
from tests.support import conformance_dir
from tests.test_cli import cli, env  # noqa: F401 (fixtures: the same CLI runner)


def test_a_countrys_published_rules_load_with_one_command(cli, env):
    rules = conformance_dir("eu-rules")
    added = cli("rules", "add", str(rules / "AT"))
    assert added.exit_code == 0, added.output
    assert "16 rule(s) added" in added.output
    listing = cli("rules", "list").output.splitlines()
    assert len(listing) == 16 and listing[0].startswith("GR-AT-0000\t1.0.0\tAcceptance\tAT")
    assert sorted(p.name for p in (Path(env["HEALTHCODE_DATA_DIR"]) / "rules").iterdir())[0] \
        == "GR-AT-0000_1.0.0.json"


def test_a_folder_with_a_broken_rule_adds_nothing_unless_told(cli, env):
    mt = conformance_dir("eu-rules") / "MT"
    refused = cli("rules", "add", str(mt))
    assert refused.exit_code == 1
    assert "TR-MT-0001.json: not a readable JSON file" in refused.output
    assert "VR-MT-0005.json: VR-MT-0005: Logic: an \"if\"-operation" in refused.output
    assert cli("rules", "list").output == ""
    partial = cli("rules", "add", "--skip-invalid", str(mt))
    assert partial.exit_code == 0 and "6 rule(s) added" in partial.output


def test_remove_one_version_or_all(cli, tmp_path):
    source = tmp_path / "src"
    write_rules(source, eu_rule(1, PRODUCT_ALLOWED), eu_rule(1, PRODUCT_ALLOWED, version="1.1.0"))
    assert cli("rules", "add", str(source)).exit_code == 0
    assert cli("rules", "remove", "VR-AT-0001", "--version", "1.0.0").exit_code == 0
    assert [line.split("\t")[1] for line in cli("rules", "list").output.splitlines()] == ["1.1.0"]
    assert cli("rules", "remove", "VR-AT-0001").exit_code == 0
    assert cli("rules", "remove", "VR-AT-0001").exit_code == 1
    assert cli("rules", "remove", "../../etc").exit_code == 1


def test_rules_test_passes_the_eu_suite_and_fails_on_a_wrong_expectation(cli, tmp_path):
    at = conformance_dir("eu-rules") / "AT"
    good = cli("rules", "test", str(at))
    assert good.exit_code == 0 and good.output.strip().endswith("101 passed, 0 failed")
    folder = tmp_path / "VR-AT-0001"
    (folder / "tests").mkdir(parents=True)
    (folder / "rule.json").write_text(json.dumps(eu_rule(1, PRODUCT_ALLOWED)))
    test = {"name": "Sputnik", "payload": {"v": [{"mp": "Sputnik-V"}]}, "expected": True,
            "external": {}}
    (folder / "tests" / "t1.json").write_text(json.dumps(test))
    bad = cli("rules", "test", str(tmp_path))
    assert bad.exit_code == 1
    assert "FAIL VR-AT-0001" in bad.output and "expected true, got false" in bad.output
    assert bad.output.strip().endswith("0 passed, 1 failed")


def test_rules_test_fails_on_broken_rule_files(cli):
    result = cli("rules", "test", str(conformance_dir("eu-rules") / "MT"))
    assert result.exit_code == 1 and "BROKEN" in result.output


def test_valuesets_add_the_eu_files(cli):
    added = cli("valuesets", "add", str(conformance_dir("eudcc-schema") / "valuesets"))
    assert added.exit_code == 0, added.output
    listing = dict(line.split("\t") for line in cli("valuesets", "list").output.splitlines())
    assert listing["vaccines-covid-19-names"] == "39 codes"
    assert listing["disease-agent-targeted"] == "1 codes"


def test_valuesets_refuse_what_is_not_a_value_set(cli, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"valueSetId": "x"}))
    result = cli("valuesets", "add", str(bad))
    assert result.exit_code == 1 and "bad.json: x: valueSetValues" in result.output


def test_tokens_bound_to_a_mode(cli, env, redis_client):
    modes = Path(env["HEALTHCODE_DATA_DIR"]) / "modes"
    modes.mkdir(parents=True)
    (modes / "entry-at.toml").write_text('country = "AT"\n')
    unknown = cli("tokens", "create", "--role", "checkpoint", "--mode", "elsewhere")
    assert unknown.exit_code == 1 and "no mode 'elsewhere'" in unknown.output
    wrong_role = cli("tokens", "create", "--role", "authority", "--mode", "entry-at")
    assert wrong_role.exit_code == 1
    created = cli("tokens", "create", "--role", "checkpoint", "--mode", "entry-at")
    assert created.exit_code == 0 and "bound to mode entry-at" in created.output
    cred_id = created.output.strip().splitlines()[-1][3:].split(".")[0]
    assert redis_client.hget(f"hc:cred:{cred_id}", "mode") == "entry-at"
    assert "entry-at\tAT\tAcceptance,Invalidation" in cli("modes", "list").output


@pytest.mark.parametrize("folder, name, content, message", [
    ("rules", "VR-AT-0001_1.0.0.json", json.dumps(eu_rule(1, {"or": [True]})),
     "VR-AT-0001_1.0.0.json: VR-AT-0001: Logic: unrecognised operator"),
    ("valuesets", "v.json", "{", "v.json: not a readable JSON file"),
    ("modes", "gate.toml", 'country = "Austria"\n', "gate.toml: country"),
    ("modes", "gate.toml", 'country = "AT"\nextra_rules = ["nope.json"]\n',
     "gate.toml: extra_rules: no rule file nope.json"),
])
def test_the_service_does_not_start_on_a_broken_file(tmp_path, redis_server, folder, name,
                                                     content, message):
    data = tmp_path / "data"
    (data / folder).mkdir(parents=True)
    (data / folder / name).write_text(content)
    with pytest.raises(ConfigurationError) as refused:
        create_app({"TESTING": True, "REDIS_URL": redis_server.url, "DATA_DIR": str(data),
                    "SUBJECT_SECRET": "start-secret-0123456789",
                    "SECRET_KEY": "start-session-secret-0123456789"})
    assert message in refused.value.message
