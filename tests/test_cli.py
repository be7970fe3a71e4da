"""The healthcode command: keys, credentials, offline issue and verify."""
import json
import time

import pytest
from click.testing import CliRunner

from healthcode.cli import main
from tests.support import decode_qr
from tests import tokens_util as tu


@pytest.fixture
def env(tmp_path, redis_server, redis_client):
    return {"HEALTHCODE_DATA_DIR": str(tmp_path / "data"), "REDIS_URL": redis_server.url,
            "HEALTHCODE_ISSUER": "HC-CLI", "HEALTHCODE_SUBJECT_SECRET": "cli-secret-0123456789",
            "HEALTHCODE_SECRET_KEY": "test-session-secret-0123456789"}


@pytest.fixture
def cli(env):
    runner = CliRunner()

    def run(*args, input=None):
        return runner.invoke(main, list(args), env=env, input=input, catch_exceptions=False)

    run.env = env
    return run


def test_keys_generate_rotate_list_retire(cli):
    first = cli("keys", "generate").output.strip()
    second = cli("keys", "rotate").output.strip()
    listing = cli("keys", "list").output
    assert f"{first}\tverify-only" in listing and f"{second}\tactive" in listing
    assert cli("keys", "retire", second).exit_code == 1  # the active key
    assert cli("keys", "retire", first).exit_code == 0
    assert f"{first}\tretired" in cli("keys", "list").output


def test_tokens_create_prints_the_bearer_token_last(cli, redis_client):
    result = cli("tokens", "create", "--role", "checkpoint", "--label", "gate 1")
    assert result.exit_code == 0
    token = result.output.strip().splitlines()[-1]
    assert token.startswith("hc_")
    cred_id = token[3:].split(".")[0]
    assert redis_client.hget(f"hc:cred:{cred_id}", "role") == "checkpoint"
    assert "gate 1" in cli("tokens", "list").output
    assert token.split(".")[1] not in cli("tokens", "list").output
    assert cli("tokens", "revoke", cred_id).exit_code == 0
    assert not redis_client.exists(f"hc:cred:{cred_id}")


def test_a_resident_token_needs_a_subject(cli):
    assert cli("tokens", "create", "--role", "resident").exit_code == 1
    assert cli("tokens", "create", "--role", "resident",
               "--subject=-AbCdEfGhIjKlMnO").exit_code == 0


def test_issue_offline_then_verify(cli, tmp_path):
    status = tmp_path / "status.json"
    status.write_text(json.dumps({"name": "陳大文", "status": "green", "document": {
        "type": "travel_permit", "number": "H1234567", "region": "MO"}}))
    out = tmp_path / "code.png"
    cli("keys", "generate")
    result = cli("issue", str(status), "--out", str(out))
    assert result.exit_code == 0, result.output
    code = result.output.strip().splitlines()[-1]
    assert decode_qr(out.read_bytes()) == code

    verified = cli("verify", code)
    assert verified.exit_code == 0, verified.output
    answer = json.loads(verified.output)
    assert answer["valid"] and answer["status"] == "green" and answer["scheme"] == "native"

    later = cli("verify", code, "--at", "2099-01-01T00:00:00Z")
    assert later.exit_code == 1 and json.loads(later.output)["reason"] == "expired"


def test_verify_with_a_published_trust_list_only(cli, tmp_path, env):
    """An offline scanner holds only our JWKS, not our data dir."""
    cli("keys", "generate")
    status = tmp_path / "s.json"
    status.write_text(json.dumps({"name": "Ana", "status": "yellow", "reason": "quarantine",
                                  "document": {"type": "id", "number": "1", "region": "MO"}}))
    code = cli("issue", str(status), "--out", str(tmp_path / "c.svg")).output.strip()
    code = code.splitlines()[-1]
    from healthcode.keys import KeyRing
    jwks = KeyRing(tmp_path / "data" / "keys").jwks()
    trust = tmp_path / "trust.jwks.json"
    trust.write_text(json.dumps({"issuer": "HC-CLI", "scheme": "native", **jwks}))

    scanner_env = {**env, "HEALTHCODE_DATA_DIR": str(tmp_path / "scanner")}
    result = CliRunner().invoke(main, ["verify", code, "--trust", str(trust)], env=scanner_env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["status"] == "yellow"
    untrusted = CliRunner().invoke(main, ["verify", code], env=scanner_env)
    assert untrusted.exit_code == 1
    assert json.loads(untrusted.output)["reason"] == "untrusted_issuer"


def test_verify_rejects_a_tampered_code(cli, tmp_path):
    cli("keys", "generate")
    from healthcode.keys import KeyRing
    ring = KeyRing(tmp_path / "data" / "keys")
    bad = tu.tampered(tu.signed(ring, iss="HC-CLI", iat=int(time.time())))
    result = cli("verify", bad)
    assert result.exit_code == 1
    assert json.loads(result.output)["reason"] == "bad_signature"


def test_issue_refuses_bad_status_json(cli, tmp_path):
    cli("keys", "generate")
    status = tmp_path / "bad.json"
    status.write_text(json.dumps({"name": "X", "status": "red", "document": {
        "type": "id", "number": "1", "region": "MO"}}))
    result = cli("issue", str(status))
    assert result.exit_code == 1 and "reason" in result.output


def test_trust_add_list_remove(cli, tmp_path):
    import jwt as pyjwt
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(pyjwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    source = tmp_path / "partner.json"
    source.write_text(json.dumps({"keys": [{**jwk, "kid": "p-1"}]}))
    assert cli("trust", "add", str(source)).exit_code == 1  # which issuer? never guessed
    added = cli("trust", "add", str(source), "--issuer", "https://partner.example",
                "--scheme", "mo")
    assert added.exit_code == 0, added.output
    listing = cli("trust", "list", "--entries").output
    assert "partner.jwks.json\tjwk\thttps://partner.example\tp-1\tmo" in listing
    assert "issuer\tmo\thttps://partner.example\t1 keys" in listing
    assert cli("trust", "remove", "partner.jwks.json").exit_code == 0
    assert "partner" not in cli("trust", "list").output
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert cli("trust", "add", str(bad), "--issuer", "x").exit_code == 1


def test_mappings_add_validates_and_installs(cli, tmp_path):
    from tests.support import REPO

    added = cli("mappings", "add", str(REPO / "mapping" / "partners" / "hk.toml"))
    assert added.exit_code == 0, added.output
    assert cli("mappings", "list").output.startswith("hk\t")
    broken = tmp_path / "broken.toml"
    broken.write_text('scheme = "zz"\nname = "Z"\nregion = "ZZ"\n')
    result = cli("mappings", "add", str(broken))
    assert result.exit_code == 1 and "broken.toml" in result.output
    assert "hk" in cli("schemes").output
    assert cli("mappings", "remove", "hk").exit_code == 0
    assert cli("mappings", "list").output == ""


def test_policies_add_validates_and_installs(cli, tmp_path):
    policy = tmp_path / "dcc.toml"
    policy.write_text('scheme = "eu-dcc"\n[policy]\n[[policy.grant]]\nstatus = "green"\n'
                      'evidence = "test"\nresult = "negative"\nwithin_hours = 48\n')
    assert cli("policies", "add", str(policy)).exit_code == 0
    assert "eu-dcc\taccept green\t0 requirements\t1 grants" in cli("policies", "list").output
    policy.write_text('scheme = "eu-dcc"\n[policy]\naccept = ["purple"]\n')
    result = cli("policies", "add", str(policy))
    assert result.exit_code == 1 and "policy.accept" in result.output
    assert cli("policies", "remove", "eu-dcc").exit_code == 0


def test_verify_reads_partner_codes_through_installed_mapping_files(cli, tmp_path, env):
    """The CLI knows the same schemes as the service: partners installed by mapping file."""
    import jwt as pyjwt
    from cryptography.hazmat.primitives.asymmetric import ec

    from healthcode.record import Record
    from mapping import Signer
    from mapping.partner_jwt import PartnerJWTAdapter
    from mapping.partner_schema import load_mapping
    from tests.support import REPO

    example = REPO / "mapping" / "partners" / "mo.toml"
    assert cli("mappings", "add", str(example)).exit_code == 0
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(pyjwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    keys = tmp_path / "mo-keys.json"
    keys.write_text(json.dumps({"keys": [{**jwk, "kid": "mo-1"}]}))
    mapping = load_mapping(example)
    assert cli("trust", "add", str(keys), "--issuer", mapping.issuers[0],
               "--scheme", "mo").exit_code == 0
    record = Record.from_dict({"subject": {"name": "陳大文"}, "status": "green"})
    code = PartnerJWTAdapter(mapping).encode(record, signer=Signer(
        private_key=key, kid="mo-1", issuer=mapping.issuers[0]))
    result = cli("verify", code)
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["scheme"] == "mo" and answer["status"] == "green"


@pytest.mark.parametrize("kind", ["crit", "exp 2^63", "iat -10^12", "ten years"])
def test_verify_refuses_hostile_native_codes_without_a_traceback(cli, tmp_path, kind):
    cli("keys", "generate")
    from healthcode.keys import KeyRing
    ring = KeyRing(tmp_path / "data" / "keys")
    now = int(time.time())
    code = {
        "crit": lambda: tu.forged_with_header(ring, {"crit": ["x"]}, iss="HC-CLI"),
        "exp 2^63": lambda: tu.signed_claims(ring, {**tu.claims(iss="HC-CLI"), "exp": 2**63}),
        "iat -10^12": lambda: tu.signed_claims(ring, {**tu.claims(iss="HC-CLI"),
                                                      "iat": -10**12}),
        "ten years": lambda: tu.signed_claims(ring, {**tu.claims(iss="HC-CLI", sv=0),
                                                     "exp": now + 10 * 365 * 86400}),
    }[kind]()
    result = CliRunner().invoke(main, ["verify", code], env=cli.env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code == 1, result.output
    assert json.loads(result.output)["reason"] in ("malformed", "expired", "bad_signature")


def test_issue_refuses_a_ttl_beyond_the_one_shot_bound(cli, tmp_path):
    status = tmp_path / "status.json"
    status.write_text(json.dumps({"name": "A", "status": "green", "document": {
        "type": "id", "number": "1", "region": "MO"}}))
    cli("keys", "generate")
    result = CliRunner().invoke(main, ["issue", str(status), "--out", str(tmp_path / "c.png"),
                                       "--ttl", str(10 * 365 * 86400)], env=cli.env)
    assert result.exit_code != 0 and "ttl" in result.output.lower()


def test_issue_refuses_a_status_file_nested_too_deep(cli, tmp_path):
    status = tmp_path / "status.json"
    status.write_text('{"name": ' + tu.deep_json_text(100_000) + "}")
    cli("keys", "generate")
    result = CliRunner().invoke(main, ["issue", str(status)], env=cli.env)
    assert result.exit_code == 1 and "too deep" in result.output


def test_a_kid_that_starts_with_a_dash_is_still_a_kid(cli):
    """base64url kids begin with "-" one time in 64: `keys retire` must not read one as an
    option (it did, and stopped with a usage error)."""
    result = cli("keys", "retire", "-hUNqubE")
    assert result.exit_code == 1, result.output  # refused as unknown, not a usage error (2)
    assert "-hUNqubE" in result.output
