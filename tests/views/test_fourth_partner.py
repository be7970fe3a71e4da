"""A fourth partner joins with two files and no code: its mapping file and its key set, put in
the data dir through the CLI, and the running service converts its codes both ways."""
import json
import re
from datetime import datetime, timedelta, timezone

import jwt
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import ec

from healthcode import create_app
from healthcode.cli import main
from healthcode.record import Record
from healthcode.trust import TrustStore
from mapping import Signer
from mapping.partner_jwt import PartnerJWTAdapter, load_partners
from mapping.partner_schema import load_mapping
from tests.mapping.test_partner_jwt import TW

TW_ISSUER = "https://hc.cdc.example.tw"


def test_taiwan_by_file_only(tmp_path, redis_server, redis_client):
    data = tmp_path / "data"
    env = {"HEALTHCODE_DATA_DIR": str(data), "REDIS_URL": redis_server.url,
           "HEALTHCODE_ISSUER": "HC-TEST",
           "HEALTHCODE_SUBJECT_SECRET": "fourth-partner-secret-0123"}
    taiwan_key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "tw.toml").write_text(TW)
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(taiwan_key.public_key()))
    (tmp_path / "tw-keys.json").write_text(json.dumps({"keys": [{**jwk, "kid": "tw-2026"}]}))

    cli = CliRunner()
    for args in (["mappings", "add", str(tmp_path / "tw.toml")],
                 ["trust", "add", str(tmp_path / "tw-keys.json"), "--issuer", TW_ISSUER,
                  "--scheme", "tw", "--name", "taiwan"]):
        result = cli.invoke(main, args, env=env)
        assert result.exit_code == 0, result.output

    app = create_app({"TESTING": True, "REDIS_URL": redis_server.url, "DATA_DIR": str(data),
                      "ISSUER": "HC-TEST", "SUBJECT_SECRET": "fourth-partner-secret-0123",
                      "SECRET_KEY": "test-session-secret-0123",
                      "CREDENTIAL_CACHE_SECONDS": 0})
    client = app.test_client()
    store = app.extensions["healthcode.store"]
    partner = {"Authorization": f"Bearer {store.create_credential('partner')[1]}"}
    checkpoint = {"Authorization": f"Bearer {store.create_credential('checkpoint')[1]}"}
    schemes = {s["scheme"]: s for s in client.get("/api/v1/schemes").get_json()["schemes"]}
    assert schemes["tw"]["region"] == "TW" and schemes["tw"]["agreement"]

    now = datetime.now(timezone.utc).replace(microsecond=0)
    holder = Record.from_dict({
        "subject": {"name": "林美玲", "name_latin": "Lin Mei Ling", "birth_date": "1991-07",
                    "document": {"type": "residence_card", "number": "A800000014",
                                 "region": "TW"}},
        "status": "green", "provenance": {"scheme": "tw", "valid_until": now + timedelta(hours=1)}})
    taiwan_code = PartnerJWTAdapter(load_mapping(tmp_path / "tw.toml")).encode(
        holder, signer=Signer(private_key=taiwan_key, kid="tw-2026", issuer=TW_ISSUER), at=now)
    assert taiwan_code.startswith("TW1:")

    ours = client.post("/api/v1/convert", json={"code": taiwan_code, "to": "native"},
                       headers=partner)
    assert ours.status_code == 200, ours.get_json()
    assert ours.get_json()["source_scheme"] == "tw"
    answer = client.post("/api/v1/verify", json={"code": ours.get_json()["code"]},
                         headers=checkpoint).get_json()
    assert answer["valid"] and answer["status"] == "green"

    back = client.post("/api/v1/convert", headers=partner, json={
        "code": ours.get_json()["code"], "to": "tw",
        "document": {"type": "residence_card", "number": "A800000014", "region": "TW"}})
    assert back.status_code == 200, back.get_json()
    assert back.get_json()["code"].startswith("TW1:")

    # Taiwan's side reads it with the same file, trusting our published keys.
    side = tmp_path / "taiwan-side"
    side.mkdir()
    (side / "tw.toml").write_text(re.sub(r"^issuers = .*$", 'issuers = ["HC-TEST"]', TW,
                                         flags=re.M))
    trust = TrustStore()
    trust.add_jwks(client.get("/.well-known/jwks.json").get_json(), issuer="HC-TEST",
                   scheme="tw")
    decoded = load_partners(side)[0].decode(back.get_json()["code"], trust=trust).record
    assert decoded.subject.name == "林美玲" and decoded.status == "green"
    assert decoded.subject.document == holder.subject.document
